//! Saved change sets (`meshplan plan --out FILE`): versioned data that `apply FILE` loads and
//! checks before doing anything.
//!
//! A saved change set holds its format version, the digests of the inputs (plan files,
//! variable values, charts), the state's lineage and serial, the cluster's URL, and the change
//! set itself, whose objects carry the live resourceVersion seen by the plan and the desired
//! digest, and whether the plan adopted a lost state (`--adopt-lost-state`: apply adopts it
//! too, without the flag). It never holds a secret value: sensitive fields appear only as `sensitive: true`,
//! and no desired body is written (apply renders again and must find the same digests).
//!
//! [`load`] refuses a file of a newer format than this meshplan knows, and anything that does
//! not parse, with a message that says why; [`check_current`] (in [`stale`]) refuses one
//! that is no longer what apply would do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::change::ChangeSet;
use crate::load::LoadedPlan;
use crate::planfile::FileId;

pub mod stale;

pub use stale::{Now, StaleError, check_current};

/// The saved change set format this meshplan writes and reads.
pub const SAVED_FORMAT: u32 = 1;

/// The `kind` field of a saved change set file.
pub const SAVED_KIND: &str = "meshplan-change-set";

/// Digests of everything the change set was computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputDigests {
    /// The plan file and every file it reads (manifests, values files, var files).
    pub plan: String,
    /// The final values of the plan's variables.
    pub values: String,
    /// Per helm node address: the chart's identity and content digest.
    #[serde(default)]
    pub charts: BTreeMap<String, String>,
}

impl InputDigests {
    /// The digests of a loaded plan's files and variable values, and of the charts its
    /// change set rendered (render keys).
    pub fn of(loaded: &LoadedPlan, change_set: &ChangeSet) -> Self {
        let mut hasher = blake3::Hasher::new();
        let mut id = 0;
        while let Some(file) = loaded.sources.get(FileId(id)) {
            hasher.update(file.name.as_bytes());
            hasher.update(&[0]);
            hasher.update(&(file.text.len() as u64).to_le_bytes());
            hasher.update(file.text.as_bytes());
            id += 1;
        }
        let values: serde_json::Map<String, serde_json::Value> = loaded
            .plan
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        Self {
            plan: hasher.finalize().to_hex().to_string(),
            values: crate::state::digest_json(&serde_json::Value::Object(values)),
            charts: change_set
                .nodes
                .iter()
                .filter_map(|n| n.render_key.clone().map(|k| (n.address.clone(), k)))
                .collect(),
        }
    }
}

/// The state the change set was computed against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRef {
    pub lineage: String,
    pub serial: u64,
}

/// A change set written to a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedChangeSet {
    pub kind: String,
    pub format: u32,
    /// The meshplan version that wrote it.
    pub meshplan_version: String,
    pub created_at: jiff::Timestamp,
    /// The plan file as given on the command line.
    pub plan_file: String,
    pub inputs: InputDigests,
    pub state: StateRef,
    /// The API server URL.
    pub cluster: String,
    /// Nodes given with `--target` (empty: the whole plan).
    #[serde(default)]
    pub targets: Vec<String>,
    /// The plan adopted the objects of a lost state (`--adopt-lost-state`): `apply FILE`
    /// adopts them the same way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt_lost_state: bool,
    pub change_set: ChangeSet,
}

impl SavedChangeSet {
    /// A saved change set of the current format, created now.
    pub fn new(
        plan_file: String,
        inputs: InputDigests,
        state: StateRef,
        cluster: String,
        targets: Vec<String>,
        change_set: ChangeSet,
    ) -> Self {
        Self {
            kind: SAVED_KIND.to_owned(),
            format: SAVED_FORMAT,
            meshplan_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: jiff::Timestamp::now(),
            plan_file,
            inputs,
            state,
            cluster,
            targets,
            adopt_lost_state: false,
            change_set,
        }
    }

    /// The plan file it names: as written when that exists, else relative to the directory
    /// of the saved file at `saved_path`.
    pub fn plan_path(&self, saved_path: &Path) -> PathBuf {
        let named = PathBuf::from(&self.plan_file);
        if named.exists() {
            return named;
        }
        saved_path
            .parent()
            .map(|d| d.join(&named))
            .filter(|p| p.exists())
            .unwrap_or(named)
    }
}

/// Whether the file at `path` looks like a saved change set (JSON: its first non-blank byte
/// is `{`) rather than a plan (TOML). An unreadable file is not one.
pub fn looks_saved(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|b| b.iter().copied().find(|c| !c.is_ascii_whitespace()))
        == Some(b'{')
}

/// Why a saved change set cannot be written or used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SavedError {
    #[error("cannot write the change set to {path}")]
    #[diagnostic(code(saved::write))]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the saved change set {path}")]
    #[diagnostic(code(saved::read))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a meshplan change set: {message}")]
    #[diagnostic(
        code(saved::not_a_change_set),
        help("give the file written by `meshplan plan --out FILE`")
    )]
    NotAChangeSet { path: PathBuf, message: String },
    #[error(
        "{path} was written by a newer meshplan (change set format {found}; this meshplan knows up to {known})"
    )]
    #[diagnostic(
        code(saved::newer_format),
        help("use the meshplan that wrote it, or plan again with this one")
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        known: u32,
    },
}

/// Writes `saved` to `path` (JSON), replacing the file atomically (temporary file + rename).
pub fn write(path: &Path, saved: &SavedChangeSet) -> Result<(), SavedError> {
    let err = |source| SavedError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut text = serde_json::to_string_pretty(saved)
        .map_err(|e| err(std::io::Error::other(e.to_string())))?;
    text.push('\n');
    // A message kept in the change set (a server's reason) may quote a sensitive value.
    let text = crate::render::masking::redact_output(&text).into_owned();
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Reads a saved change set, checking its kind and format version.
pub fn load(path: &Path) -> Result<SavedChangeSet, SavedError> {
    let text = std::fs::read_to_string(path).map_err(|source| SavedError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let not = |message: String| SavedError::NotAChangeSet {
        path: path.to_path_buf(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| not(format!("not JSON ({e})")))?;
    if value.get("kind").and_then(serde_json::Value::as_str) != Some(SAVED_KIND) {
        return Err(not(format!("its `kind` is not `{SAVED_KIND}`")));
    }
    let format = value
        .get("format")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| not("it has no `format` number".to_owned()))?;
    if format > u64::from(SAVED_FORMAT) {
        return Err(SavedError::NewerFormat {
            path: path.to_path_buf(),
            found: u32::try_from(format).unwrap_or(u32::MAX),
            known: SAVED_FORMAT,
        });
    }
    serde_json::from_value(value).map_err(|e| not(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ObjectRef;
    use crate::diff::{Action, NodeChange, NodeStatus, ObjectChange};

    fn sample() -> SavedChangeSet {
        let mut c = ObjectChange::new(
            ObjectRef::new("v1", "Secret", Some("a"), "s"),
            Action::Update,
        );
        c.desired = Some(serde_json::json!({"data": {"k": "c2VjcmV0"}}));
        c.live_resource_version = Some("12".into());
        SavedChangeSet::new(
            "plan.toml".into(),
            InputDigests::default(),
            StateRef {
                lineage: "l".into(),
                serial: 3,
            },
            "http://127.0.0.1:1".into(),
            vec![],
            ChangeSet {
                plan: "p".into(),
                nodes: vec![NodeChange {
                    address: "manifest.a".into(),
                    status: NodeStatus::Planned,
                    objects: vec![c],
                    render_key: None,
                    unknown_inputs: Vec::new(),
                }],
            },
        )
    }

    #[test]
    fn round_trips_without_desired_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let saved = sample();
        write(&path, &saved).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("c2VjcmV0"), "{text}");
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.state.serial, 3);
        assert_eq!(
            loaded.change_set.nodes[0].objects[0]
                .live_resource_version
                .as_deref(),
            Some("12")
        );
        assert_eq!(loaded.change_set.nodes[0].objects[0].desired, None);
    }

    #[test]
    fn refuses_newer_formats_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let mut v = serde_json::to_value(sample()).unwrap();
        v["format"] = 99.into();
        std::fs::write(&path, v.to_string()).unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            matches!(e, SavedError::NewerFormat { found: 99, .. }),
            "{e}"
        );
        std::fs::write(&path, "{}").unwrap();
        assert!(matches!(
            load(&path).unwrap_err(),
            SavedError::NotAChangeSet { .. }
        ));
        std::fs::write(&path, "no").unwrap();
        assert!(matches!(
            load(&path).unwrap_err(),
            SavedError::NotAChangeSet { .. }
        ));
    }
}
