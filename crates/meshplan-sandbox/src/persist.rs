//! Persistence of the store to a data directory: one JSON snapshot written atomically
//! (temporary file, then rename), shortly after writes and at shutdown.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::error::SandboxError;
use super::store::{State, key};
use super::write::rebuild_registry;

const SNAPSHOT: &str = "snapshot.json";
const FORMAT: &str = "meshplan-sandbox/v1";

pub(crate) fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT)
}

/// The snapshot document of the current state.
pub(crate) fn snapshot(st: &State) -> Value {
    let objects: Vec<Value> = st
        .objects
        .iter()
        .map(|((g, r, ns, name), obj)| {
            json!({"group": g, "resource": r, "namespace": ns, "name": name, "object": obj})
        })
        .collect();
    json!({"format": FORMAT, "resourceVersion": st.rv.to_string(), "objects": objects})
}

/// Writes a snapshot atomically.
pub(crate) fn write(dir: &Path, doc: &Value) -> Result<(), SandboxError> {
    std::fs::create_dir_all(dir).map_err(|source| SandboxError::DataWrite {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = snapshot_path(dir);
    let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
    let text = serde_json::to_vec(doc).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(|source| SandboxError::DataWrite {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| SandboxError::DataWrite { path, source })
}

/// Loads a snapshot into a fresh state; Ok(false) when the directory has none yet.
pub(crate) fn restore(dir: &Path, st: &mut State) -> Result<bool, SandboxError> {
    let path = snapshot_path(dir);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(SandboxError::DataRead { path, source }),
    };
    let doc: Value = serde_json::from_slice(&text).map_err(|e| SandboxError::DataCorrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if doc.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(SandboxError::DataCorrupt {
            path,
            message: format!("not a {FORMAT} snapshot"),
        });
    }
    let rv = doc
        .get("resourceVersion")
        .and_then(Value::as_str)
        .and_then(|r| r.parse::<u64>().ok())
        .unwrap_or(0);
    for entry in doc
        .get("objects")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let field = |f: &str| entry.get(f).and_then(Value::as_str).unwrap_or_default();
        let k = key(
            field("group"),
            field("resource"),
            field("namespace"),
            field("name"),
        );
        if let Some(obj) = entry.get("object") {
            st.objects.insert(k, obj.clone());
        }
    }
    st.rv = rv;
    st.compacted = rv;
    rebuild_registry(st);
    Ok(true)
}
