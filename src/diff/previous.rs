//! What was applied last per node (its "previous render"), kept in the state's render cache
//! under `previous:<address>` so that a later plan renders the node the same way when its
//! inputs did not change (render stability, see `docs/render.md`).
//!
//! - [`RenderedLog`]: what each node rendered to during one plan run (filled by
//!   [`RecordingStage`](super::render_bridge::RecordingStage)); apply keeps the entries of the
//!   nodes it applied.
//! - [`load_previous`] / [`store_previous`]: read and write them (a Secret's data encrypted
//!   with the state key).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::model::Address;
use crate::render::PreviousRender;
use crate::state::{RenderCacheEntry, StateError, StateStore, WriteBatch};

/// The previous render of each node.
pub type PreviousRenders = BTreeMap<Address, PreviousRender>;

/// The renders of one plan run, by node (what is stored as "previous render" once applied).
pub type RenderedLog = std::sync::Mutex<PreviousRenders>;

/// Why a previous render could not be read or kept.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PreviousError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] StateError),

    #[error("cannot encode the render of {node} for the state: {error}")]
    Encode {
        node: String,
        error: serde_json::Error,
    },
}

/// The render-cache key under which a node's previous render is kept.
fn previous_key(address: &Address) -> String {
    format!("previous:{address}")
}

/// What was applied last per node recorded in the state (entries that do not read back are
/// left out: the node renders afresh).
pub fn load_previous(store: &dyn StateStore) -> Result<PreviousRenders, PreviousError> {
    let mut out = BTreeMap::new();
    let nodes: BTreeSet<String> = store.object_nodes()?;
    for node in nodes {
        let Some(address) = Address::parse(&node) else {
            continue;
        };
        let Some(entry) = store.render_cache(&previous_key(&address))? else {
            continue;
        };
        let Some(body) = entry.objects.first() else {
            continue;
        };
        let value = store.reveal(body)?;
        if let Ok(previous) = serde_json::from_value::<PreviousRender>(value) {
            out.insert(address, previous);
        }
    }
    Ok(out)
}

/// Keeps `previous` as the last applied render of its node (Secret data encrypted).
pub fn store_previous(
    store: &dyn StateStore,
    address: &Address,
    previous: &PreviousRender,
) -> Result<(), PreviousError> {
    let value = serde_json::to_value(previous).map_err(|error| PreviousError::Encode {
        node: address.to_string(),
        error,
    })?;
    let sensitive = secret_paths(&value);
    let extra: Vec<&str> = sensitive.iter().map(String::as_str).collect();
    let body = store.protect(&value, &extra)?;
    store.commit(WriteBatch::new().put_render(
        &previous_key(address),
        RenderCacheEntry {
            objects: vec![body],
            meta: BTreeMap::from([("kind".to_owned(), "previous-render".to_owned())]),
            created_at: jiff::Timestamp::now(),
        },
    ))?;
    Ok(())
}

/// The JSON pointers of the data of every Secret in a serialized previous render (its
/// objects and its chart output's documents), and of every path the render marked sensitive.
fn secret_paths(value: &Value) -> Vec<String> {
    let mut sensitive = Vec::new();
    let marked = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    if let Some(paths) = value.get("sensitive_paths").and_then(Value::as_array) {
        for (i, p) in paths.iter().enumerate() {
            for p in marked(Some(p)) {
                sensitive.push(format!("/objects/{i}{p}"));
            }
        }
    }
    let secret = |v: &Value| v.get("kind").and_then(Value::as_str) == Some("Secret");
    if let Some(objects) = value.get("objects").and_then(Value::as_array) {
        for (i, o) in objects.iter().enumerate() {
            if secret(o) {
                for k in ["data", "stringData"] {
                    if o.get(k).is_some() {
                        sensitive.push(format!("/objects/{i}/{k}"));
                    }
                }
            }
        }
    }
    if let Some(docs) = value
        .pointer("/chart_output/documents")
        .and_then(Value::as_array)
    {
        for (i, d) in docs.iter().enumerate() {
            for p in marked(d.get("sensitive_paths")) {
                sensitive.push(format!("/chart_output/documents/{i}/object{p}"));
            }
            if let Some(o) = d.get("object")
                && secret(o)
            {
                for k in ["data", "stringData"] {
                    if o.get(k).is_some() {
                        sensitive.push(format!("/chart_output/documents/{i}/object/{k}"));
                    }
                }
            }
        }
    }
    sensitive
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn masking_seals_the_render_marks_of_objects_and_chart_documents() {
        let config = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"conf": "key=x", "mode": "plain"}});
        let previous = PreviousRender {
            cache_key: Some("k".into()),
            chart_output: Some(crate::render::ChartOutput {
                documents: vec![crate::render::ChartDocument {
                    source: None,
                    object: config.clone(),
                    volatile_paths: BTreeSet::new(),
                    sensitive_paths: BTreeSet::from(["/data/conf".to_owned()]),
                }],
                ..Default::default()
            }),
            objects: vec![config],
            sensitive_paths: vec![BTreeSet::from(["/data/conf".to_owned()])],
        };
        let value = serde_json::to_value(&previous).unwrap();
        let paths = secret_paths(&value);
        assert_eq!(
            paths,
            [
                "/objects/0/data/conf",
                "/chart_output/documents/0/object/data/conf"
            ]
        );
        for p in &paths {
            assert_eq!(value.pointer(p).and_then(Value::as_str), Some("key=x"));
        }
    }
}
