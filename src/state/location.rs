//! Where a plan's state lives, and where the Lease that guards its applies lives.
//!
//! The backend is, in order of precedence: `--state-backend`, `MESHPLAN_STATE_BACKEND`, the
//! plan's `[state] backend`, else `local`.
//!
//! - **local**: a directory. `--state DIR` (relative to the working directory), else the
//!   plan's `[state] dir` (relative to the plan file), else `state/<plan name>` beside the
//!   plan file. Never relative to the working directory unless given on the command line.
//! - **kubernetes**: Secrets and a Lease in `[state] namespace` (default
//!   [`DEFAULT_NAMESPACE`]) of the plan's cluster, named after `[state] name` (default: the
//!   plan name).
//!
//! Every apply, destroy and rollback also holds a Lease in the target cluster, whatever the
//! backend ([`LeaseLocation`]): with the kubernetes backend it is the state's own Lease; with
//! the local backend it is `meshplan-lock-<name>` in `[state] namespace`, default
//! [`DEFAULT_LOCAL_LEASE_NAMESPACE`] (a namespace every cluster has, so that a local state
//! creates nothing in the cluster beyond the Lease, which is removed when the run ends).
//!
//! Pure: the working directory is handed in.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::model::{StateBackend, StateSettings};

use super::StateError;

/// The folder beside the plan file that holds the local states of its plans.
pub const DEFAULT_STATE_ROOT: &str = "state";
/// The namespace of the `kubernetes` backend's Secrets and Lease.
pub const DEFAULT_NAMESPACE: &str = "meshplan-system";
/// The namespace of the apply's Lease when the state is local.
pub const DEFAULT_LOCAL_LEASE_NAMESPACE: &str = "kube-system";
/// How long a Lease lasts without being renewed (renewed every third of it).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(30);
/// The environment variable that chooses the backend (below `--state-backend`).
pub const BACKEND_ENV: &str = "MESHPLAN_STATE_BACKEND";

/// A state in a namespace of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeLocation {
    pub namespace: String,
    /// The state's name (a DNS label): names its Secrets and its Lease.
    pub name: String,
}

impl KubeLocation {
    /// The Secret that indexes the state's current generation.
    pub fn index_name(&self) -> String {
        format!("meshplan-state-{}", self.name)
    }

    /// The Secret holding chunk `i` of the generation `token`.
    pub fn chunk_name(&self, token: &str, i: usize) -> String {
        format!("meshplan-state-{}-{token}-{i}", self.name)
    }

    /// The writer lock.
    pub fn lease(&self, duration: Duration) -> LeaseLocation {
        LeaseLocation {
            namespace: self.namespace.clone(),
            name: lease_name(&self.name),
            duration,
        }
    }

    /// `kubernetes:NAMESPACE/NAME`, how errors and messages name the state.
    pub fn describe(&self) -> String {
        format!("kubernetes:{}/{}", self.namespace, self.name)
    }
}

/// Where a state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    Local { dir: PathBuf },
    Kubernetes(KubeLocation),
}

impl StateLocation {
    pub fn backend(&self) -> StateBackend {
        match self {
            Self::Local { .. } => StateBackend::Local,
            Self::Kubernetes(_) => StateBackend::Kubernetes,
        }
    }
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { dir } => write!(f, "{}", dir.display()),
            Self::Kubernetes(k) => write!(
                f,
                "Secrets meshplan-state-{}* in namespace {}",
                k.name, k.namespace
            ),
        }
    }
}

/// A Lease lock: where, and how long it lasts without renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseLocation {
    pub namespace: String,
    pub name: String,
    pub duration: Duration,
}

impl fmt::Display for LeaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lease {}/{}", self.namespace, self.name)
    }
}

/// The Lease that guards the applies of the state (or plan) `name`.
pub fn lease_name(name: &str) -> String {
    format!("meshplan-lock-{name}")
}

/// What the command line says about the state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides<'a> {
    /// `--state DIR`.
    pub dir: Option<&'a Path>,
    /// `--state-backend` (or its environment variable, which clap reads).
    pub backend: Option<StateBackend>,
}

/// The resolved state of one plan: where it lives and the Lease of its applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub location: StateLocation,
    pub lease: LeaseLocation,
}

/// Resolves the state of the plan `plan_name` whose file is in `plan_dir` (as given,
/// relative to `cwd` when relative). See the module docs for the rules.
pub fn resolve(
    plan_name: &str,
    plan_dir: &Path,
    settings: &StateSettings,
    overrides: Overrides<'_>,
    cwd: &Path,
) -> Result<Resolved, StateError> {
    let backend = overrides
        .backend
        .or(settings.backend)
        .unwrap_or(StateBackend::Local);
    let name = settings
        .name
        .clone()
        .unwrap_or_else(|| plan_name.to_owned());
    let duration = settings.lease_duration.unwrap_or(DEFAULT_LEASE_DURATION);
    Ok(match backend {
        StateBackend::Local => {
            let dir = match (overrides.dir, &settings.dir) {
                (Some(dir), _) => cwd.join(dir),
                (None, Some(dir)) => cwd.join(dir),
                (None, None) => cwd.join(plan_dir).join(DEFAULT_STATE_ROOT).join(plan_name),
            };
            Resolved {
                location: StateLocation::Local {
                    dir: normalize(&dir),
                },
                lease: LeaseLocation {
                    namespace: settings
                        .namespace
                        .clone()
                        .unwrap_or_else(|| DEFAULT_LOCAL_LEASE_NAMESPACE.to_owned()),
                    name: lease_name(&name),
                    duration,
                },
            }
        }
        StateBackend::Kubernetes => {
            if let Some(dir) = overrides.dir {
                return Err(StateError::DirWithKubernetes {
                    dir: dir.to_path_buf(),
                });
            }
            let location = KubeLocation {
                namespace: settings
                    .namespace
                    .clone()
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
                name,
            };
            Resolved {
                lease: location.lease(duration),
                location: StateLocation::Kubernetes(location),
            }
        }
    })
}

/// `path` without `.` components and with `..` folded into their parent, where there is
/// one (lexical only: symbolic links are not followed).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                let folded =
                    matches!(out.components().next_back(), Some(Component::Normal(_))) && out.pop();
                if !folded && !matches!(out.components().next_back(), Some(Component::RootDir)) {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> StateSettings {
        StateSettings::default()
    }

    fn local(r: &Resolved) -> &Path {
        match &r.location {
            StateLocation::Local { dir } => dir,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_local_state_sits_beside_the_plan_whatever_the_working_directory() {
        let from_root = resolve(
            "linkerd",
            Path::new("plans"),
            &settings(),
            Overrides::default(),
            Path::new("/repo"),
        )
        .unwrap();
        assert_eq!(local(&from_root), Path::new("/repo/plans/state/linkerd"));
        let from_plans = resolve(
            "linkerd",
            Path::new(""),
            &settings(),
            Overrides::default(),
            Path::new("/repo/plans"),
        )
        .unwrap();
        assert_eq!(local(&from_plans), local(&from_root));
        assert_eq!(from_root.lease.namespace, "kube-system");
        assert_eq!(from_root.lease.name, "meshplan-lock-linkerd");
    }

    #[test]
    fn the_plan_names_its_directory_and_the_command_line_wins() {
        // What the model makes of `dir = "../state/linkerd"` in plans/linkerd.toml.
        let s = StateSettings {
            dir: Some(PathBuf::from("plans/../state/linkerd")),
            ..settings()
        };
        let r = resolve(
            "linkerd",
            Path::new("plans"),
            &s,
            Overrides::default(),
            Path::new("/repo"),
        )
        .unwrap();
        assert_eq!(local(&r), Path::new("/repo/state/linkerd"));
        let r = resolve(
            "linkerd",
            Path::new("plans"),
            &s,
            Overrides {
                dir: Some(Path::new("elsewhere")),
                backend: None,
            },
            Path::new("/work"),
        )
        .unwrap();
        assert_eq!(local(&r), Path::new("/work/elsewhere"));
        let r = resolve(
            "linkerd",
            Path::new("plans"),
            &s,
            Overrides {
                dir: Some(Path::new("/var/lib/mp")),
                backend: None,
            },
            Path::new("/work"),
        )
        .unwrap();
        assert_eq!(local(&r), Path::new("/var/lib/mp"));
    }

    #[test]
    fn the_kubernetes_backend_names_its_secrets_and_lease() {
        let s = StateSettings {
            backend: Some(StateBackend::Kubernetes),
            lease_duration: Some(Duration::from_secs(5)),
            ..settings()
        };
        let r = resolve(
            "linkerd",
            Path::new("plans"),
            &s,
            Overrides::default(),
            Path::new("/repo"),
        )
        .unwrap();
        let StateLocation::Kubernetes(k) = &r.location else {
            panic!("{r:?}")
        };
        assert_eq!(k.namespace, "meshplan-system");
        assert_eq!(k.index_name(), "meshplan-state-linkerd");
        assert_eq!(k.chunk_name("ab12", 3), "meshplan-state-linkerd-ab12-3");
        assert_eq!(
            r.lease,
            LeaseLocation {
                namespace: "meshplan-system".into(),
                name: "meshplan-lock-linkerd".into(),
                duration: Duration::from_secs(5),
            }
        );
        // The command line chooses the backend over the plan; --state only names a
        // local directory.
        let r = resolve(
            "linkerd",
            Path::new("plans"),
            &s,
            Overrides {
                dir: None,
                backend: Some(StateBackend::Local),
            },
            Path::new("/repo"),
        )
        .unwrap();
        assert_eq!(r.location.backend(), StateBackend::Local);
        let err = resolve(
            "linkerd",
            Path::new("plans"),
            &s,
            Overrides {
                dir: Some(Path::new("st")),
                backend: None,
            },
            Path::new("/repo"),
        )
        .unwrap_err();
        assert!(matches!(err, StateError::DirWithKubernetes { .. }), "{err}");
    }

    #[test]
    fn normalize_folds_dots() {
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), Path::new("/a/c/d"));
        assert_eq!(normalize(Path::new("/../a")), Path::new("/a"));
        assert_eq!(normalize(Path::new("../a/..")), Path::new(".."));
    }
}
