//! Running `helm template`: the only part of the render stage that does I/O.
//!
//! - [`HelmRunner`] runs helm with arguments and returns its output; [`HelmProcess`] runs the
//!   real binary (`MESHPLAN_HELM`, else `helm` on `PATH`). Tests wrap it to count calls.
//! - [`resolve_chart`] turns the model's chart into helm arguments: a repository alias (or a
//!   local directory for the alias from `repo_dirs`, so plans run with no network), a local
//!   path, or an `oci://` reference.
//! - [`parse_documents`] splits helm's multi-document YAML into JSON objects, skipping empty
//!   documents and keeping the `# Source:` path of each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use serde_json::Value as Json;

use crate::model::Chart;

use super::cache::{ChartIdentity, scan_chart};

/// Environment variable naming the helm binary.
pub const HELM_ENV: &str = "MESHPLAN_HELM";

/// What helm printed and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Why helm could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum HelmRunError {
    #[error("helm binary `{program}` not found")]
    NotFound { program: String },
    #[error("cannot run helm binary `{program}`")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs helm with the given arguments.
pub trait HelmRunner: Send + Sync {
    fn run(&self, args: Vec<String>) -> BoxFuture<'_, Result<HelmOutput, HelmRunError>>;

    /// What identifies the helm binary (path, size and modification time), so that its
    /// version can be cached; None when unknown (the version is asked every run).
    fn binary(&self) -> Option<String> {
        None
    }
}

/// The real helm binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmProcess {
    pub program: PathBuf,
}

impl HelmProcess {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }

    /// `MESHPLAN_HELM` when set and not empty, else `helm` (looked up on `PATH` when run).
    pub fn from_env() -> Self {
        Self::from_setting(std::env::var_os(HELM_ENV))
    }

    /// As [`HelmProcess::from_env`], with the variable's value given.
    pub fn from_setting(setting: Option<std::ffi::OsString>) -> Self {
        match setting.filter(|s| !s.is_empty()) {
            Some(program) => Self::new(program),
            None => Self::new("helm"),
        }
    }
}

impl HelmProcess {
    /// The binary that runs: the program as given when it names a path, else the first
    /// match on `PATH`.
    fn resolve(&self) -> Option<PathBuf> {
        if self.program.components().count() > 1 {
            return Some(self.program.clone());
        }
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(&self.program))
            .find(|p| p.is_file())
    }
}

impl HelmRunner for HelmProcess {
    fn binary(&self) -> Option<String> {
        let path = std::fs::canonicalize(self.resolve()?).ok()?;
        let meta = std::fs::metadata(&path).ok()?;
        let modified = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(format!(
            "{} {} {}",
            path.display(),
            meta.len(),
            modified.as_nanos()
        ))
    }

    fn run(&self, args: Vec<String>) -> BoxFuture<'_, Result<HelmOutput, HelmRunError>> {
        Box::pin(async move {
            let program = self.program.display().to_string();
            let output = tokio::process::Command::new(&self.program)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|source| {
                    if source.kind() == std::io::ErrorKind::NotFound {
                        HelmRunError::NotFound {
                            program: program.clone(),
                        }
                    } else {
                        HelmRunError::Io {
                            program: program.clone(),
                            source,
                        }
                    }
                })?;
            Ok(HelmOutput {
                success: output.status.success(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            })
        })
    }
}

/// A chart, ready for helm's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedChart {
    /// The chart argument (a path, `oci://...` or a chart name with `--repo`).
    pub reference: String,
    /// `--repo URL` for repository charts.
    pub repo_url: Option<String>,
    /// `--version`, for remote charts.
    pub version: Option<String>,
    pub identity: ChartIdentity,
    /// How the chart is shown in messages.
    pub display: String,
    /// Why the chart may generate material on every render (see
    /// [`super::cache::ChartScan::generates`]); None for a local chart whose templates call
    /// no generating function.
    pub generates: Option<String>,
}

/// Why a chart from a repository or registry may generate material: its templates are not
/// read before helm fetches it.
const REMOTE_MAY_GENERATE: &str = "a remote chart (its templates are not read)";

/// Why a chart could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartProblem {
    /// A local chart (or a chart in a repository directory) does not exist.
    NotFound {
        path: PathBuf,
    },
    /// The chart in a repository directory has another version than the plan pins.
    VersionMismatch {
        path: PathBuf,
        wanted: String,
        found: String,
    },
    Unreadable {
        path: PathBuf,
        message: String,
    },
}

/// The help of a chart that does not exist: the nearest chart in the same directory (`did you
/// mean`), else where the chart was looked for. `chart` as the plan names it (`repo/name` or a
/// path).
pub fn chart_not_found_help(chart: &str, path: &Path) -> String {
    let wanted = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = path.parent().unwrap_or(Path::new("."));
    let names: Vec<String> = std::fs::read_dir(parent)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join("Chart.yaml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    match crate::planfile::did_you_mean(&wanted, names.iter().map(String::as_str)) {
        Some(near) => {
            let shown = match chart.rsplit_once('/') {
                Some((prefix, _)) => format!("{prefix}/{near}"),
                None => near,
            };
            format!("did you mean `{shown}`? (charts in `{}`)", parent.display())
        }
        None if names.is_empty() => format!(
            "`{}` holds no chart: check the repository directory given for the chart's alias (`--repo-dir ALIAS=DIR`) or the path",
            parent.display()
        ),
        None => format!("check the chart name; `{}` holds {}", parent.display(), {
            let mut names = names;
            names.sort();
            names.join(", ")
        }),
    }
}

/// The way out when helm failed because it could not reach the chart's repository (its
/// message says so: a name that does not resolve, a refused connection, a timeout, a TLS
/// failure): render from a local directory of charts with `--repo-dir`. None otherwise.
pub fn unreachable_repo_help(chart: &str, repo_url: Option<&str>, stderr: &str) -> Option<String> {
    let url = repo_url?;
    let text = stderr.to_lowercase();
    let unreachable = [
        "cannot be reached",
        "could not be reached",
        "no such host",
        "connection refused",
        "network is unreachable",
        "i/o timeout",
        "dial tcp",
        "tls handshake",
        "x509:",
        "context deadline exceeded",
        "connection reset",
    ]
    .iter()
    .any(|needle| text.contains(needle));
    if !unreachable {
        return None;
    }
    let (alias, name) = chart.split_once('/').unwrap_or(("ALIAS", chart));
    Some(format!(
        "the chart repository {url} cannot be reached from here: to render without the network, give a local directory of charts for `{alias}` with `--repo-dir {alias}=DIR` (DIR/{name}/Chart.yaml; `helm pull {name} --repo {url} --untar --untardir DIR` on a machine that reaches it)"
    ))
}

/// Resolves the model's chart; `repo_dirs` maps repository aliases to local directories
/// (a `file://DIR` repository URL is such a directory too).
pub fn resolve_chart(
    chart: &Chart,
    version: Option<&str>,
    base_dir: &Path,
    repo_dirs: &BTreeMap<String, PathBuf>,
) -> Result<ResolvedChart, ChartProblem> {
    match chart {
        Chart::Repo { repo, url, name } => match repo_dirs
            .get(repo)
            .cloned()
            .or_else(|| url.strip_prefix("file://").map(PathBuf::from))
        {
            Some(dir) => {
                let path = base_dir.join(&dir).join(name);
                let resolved = local(&path, format!("{repo}/{name} (from {})", dir.display()))?;
                if let Some(wanted) = version {
                    let found = chart_version(&path)?;
                    if found.trim_start_matches('v') != wanted.trim_start_matches('v') {
                        return Err(ChartProblem::VersionMismatch {
                            path,
                            wanted: wanted.to_string(),
                            found,
                        });
                    }
                }
                Ok(resolved)
            }
            None => Ok(ResolvedChart {
                reference: name.clone(),
                repo_url: Some(url.clone()),
                version: version.map(str::to_string),
                identity: ChartIdentity::Repo {
                    url: url.clone(),
                    name: name.clone(),
                    version: version.map(str::to_string),
                },
                display: format!("{repo}/{name}"),
                generates: Some(REMOTE_MAY_GENERATE.to_owned()),
            }),
        },
        Chart::Oci(url) => Ok(ResolvedChart {
            reference: url.clone(),
            repo_url: None,
            version: version.map(str::to_string),
            identity: ChartIdentity::Oci {
                url: url.clone(),
                version: version.map(str::to_string),
            },
            display: url.clone(),
            generates: Some(REMOTE_MAY_GENERATE.to_owned()),
        }),
        Chart::Local(path) => {
            let path = base_dir.join(path);
            let display = path.display().to_string();
            local(&path, display)
        }
    }
}

fn local(path: &Path, display: String) -> Result<ResolvedChart, ChartProblem> {
    if !path.exists() {
        return Err(ChartProblem::NotFound {
            path: path.to_path_buf(),
        });
    }
    let scan = scan_chart(path).map_err(|e| ChartProblem::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(ResolvedChart {
        reference: path.display().to_string(),
        repo_url: None,
        version: None,
        identity: ChartIdentity::Local {
            name,
            content_digest: scan.content_digest,
        },
        display,
        generates: scan.generates,
    })
}

/// The `version` of a chart directory's `Chart.yaml`.
fn chart_version(dir: &Path) -> Result<String, ChartProblem> {
    let file = dir.join("Chart.yaml");
    let unreadable = |message: String| ChartProblem::Unreadable {
        path: file.clone(),
        message,
    };
    let text = std::fs::read_to_string(&file).map_err(|e| unreadable(e.to_string()))?;
    let chart: Json = serde_saphyr::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    match chart.get("version") {
        Some(Json::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(unreadable("no `version`".into())),
    }
}

/// Everything `helm template` needs besides the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateArgs<'a> {
    pub release: &'a str,
    pub namespace: &'a str,
    pub values_file: &'a Path,
    pub include_crds: bool,
    pub api_versions: &'a [String],
    pub kube_version: Option<&'a str>,
}

/// The arguments of `helm template`.
pub fn template_args(chart: &ResolvedChart, args: &TemplateArgs<'_>) -> Vec<String> {
    let mut out = vec![
        "template".to_string(),
        args.release.to_string(),
        chart.reference.clone(),
    ];
    if let Some(url) = &chart.repo_url {
        out.extend(["--repo".into(), url.clone()]);
    }
    if let Some(v) = &chart.version {
        out.extend(["--version".into(), v.clone()]);
    }
    out.extend([
        "--namespace".into(),
        args.namespace.to_string(),
        "--values".into(),
        args.values_file.display().to_string(),
    ]);
    if args.include_crds {
        out.push("--include-crds".into());
    }
    if let Some(kv) = args.kube_version {
        out.extend(["--kube-version".into(), kv.to_string()]);
    }
    for v in args.api_versions {
        out.extend(["--api-versions".into(), v.clone()]);
    }
    out
}

/// A document helm printed that is not YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDocument {
    pub source: Option<String>,
    pub message: String,
}

/// Splits helm's output into documents: `(source, object)`, in order; documents that hold only
/// comments or `null` are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<(Option<String>, Json)>, BadDocument> {
    let mut docs: Vec<Vec<&str>> = vec![Vec::new()];
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            docs.push(Vec::new());
        } else if let Some(current) = docs.last_mut() {
            current.push(line);
        }
    }
    let mut out = Vec::new();
    for lines in docs {
        let source = lines
            .iter()
            .find_map(|l| l.strip_prefix("# Source: "))
            .map(|s| s.trim().to_string());
        let only_comments = lines
            .iter()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        if only_comments {
            continue;
        }
        let body = lines.join("\n");
        let value: Json = serde_saphyr::from_str(&body).map_err(|e| BadDocument {
            source: source.clone(),
            message: e.to_string(),
        })?;
        match value {
            Json::Null => continue,
            Json::Object(_) => out.push((source, value)),
            other => {
                return Err(BadDocument {
                    source,
                    message: format!(
                        "a document is {} instead of a Kubernetes object",
                        match other {
                            Json::Array(_) => "a list",
                            _ => "a scalar",
                        }
                    ),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_skips_empty_documents_and_keeps_sources() {
        let text = "---\n# Source: c/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: \"1\"\n---\n# Source: c/templates/empty.yaml\n---\n# Source: c/templates/b.yaml\nkind: Secret\napiVersion: v1\nmetadata: {name: b}\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].0.as_deref(), Some("c/templates/a.yaml"));
        assert_eq!(docs[0].1["data"]["x"], "1");
        assert_eq!(docs[1].1["kind"], "Secret");
        let bad = parse_documents("---\n# Source: c/x.yaml\na: [\n").unwrap_err();
        assert_eq!(bad.source.as_deref(), Some("c/x.yaml"));
    }

    #[test]
    fn args_carry_every_option() {
        let chart = ResolvedChart {
            reference: "linkerd-crds".into(),
            repo_url: Some("https://helm.linkerd.io/stable".into()),
            version: Some("1.8.0".into()),
            identity: ChartIdentity::Repo {
                url: "u".into(),
                name: "n".into(),
                version: None,
            },
            display: "linkerd/linkerd-crds".into(),
            generates: None,
        };
        let api = vec!["apps/v1".to_string(), "v1".to_string()];
        let args = template_args(
            &chart,
            &TemplateArgs {
                release: "linkerd-crds",
                namespace: "linkerd",
                values_file: Path::new("/tmp/v.json"),
                include_crds: true,
                api_versions: &api,
                kube_version: Some("v1.31.0"),
            },
        );
        assert_eq!(
            args.join(" "),
            "template linkerd-crds linkerd-crds --repo https://helm.linkerd.io/stable \
             --version 1.8.0 --namespace linkerd --values /tmp/v.json --include-crds \
             --kube-version v1.31.0 --api-versions apps/v1 --api-versions v1"
        );
    }

    #[test]
    fn repo_dirs_resolve_aliases_and_check_versions() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let chart = Chart::Repo {
            repo: "linkerd".into(),
            url: "https://helm.linkerd.io/stable".into(),
            name: "linkerd-crds".into(),
        };
        let dirs = BTreeMap::from([("linkerd".to_string(), PathBuf::from("plans/charts"))]);
        let r = resolve_chart(&chart, Some("1.8.0"), root, &dirs).unwrap();
        assert!(r.reference.ends_with("plans/charts/linkerd-crds"));
        assert!(r.repo_url.is_none());
        assert!(matches!(
            resolve_chart(&chart, Some("9.9.9"), root, &dirs),
            Err(ChartProblem::VersionMismatch { .. })
        ));
        let missing = Chart::Repo {
            repo: "linkerd".into(),
            url: "u".into(),
            name: "nope".into(),
        };
        assert!(matches!(
            resolve_chart(&missing, None, root, &dirs),
            Err(ChartProblem::NotFound { .. })
        ));
        let remote = resolve_chart(&chart, Some("1.8.0"), root, &BTreeMap::new()).unwrap();
        assert_eq!(
            remote.repo_url.as_deref(),
            Some("https://helm.linkerd.io/stable")
        );
        assert_eq!(
            HelmProcess::from_setting(None).program,
            PathBuf::from("helm")
        );
    }
}
