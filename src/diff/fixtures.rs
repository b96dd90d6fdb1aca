//! Small objects for the diff's unit tests: a ConfigMap in namespace `d`, its live copy as
//! the server returns it, the desired object and state record of node `manifest.a`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::cluster::ObjectRef;
use crate::state::{ObjectRecord, ProtectedBody};

use super::input::{DesiredNode, DesiredObject, DesiredState};

/// The node every fixture belongs to.
pub(super) const NODE: &str = "manifest.a";

/// A ConfigMap `name` in namespace `d` with `data`.
pub(super) fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "d"}, "data": data})
}

/// `body` as the server returns it: with a resourceVersion, a uid and managedFields.
pub(super) fn live(mut body: Value, rv: &str) -> Value {
    body["metadata"]["resourceVersion"] = rv.into();
    body["metadata"]["uid"] = "u".into();
    body["metadata"]["managedFields"] = json!([{"manager": "x"}]);
    body
}

/// `body` as the render stage gives it (no unknown, sensitive or volatile paths).
pub(super) fn desired(body: Value) -> DesiredObject {
    DesiredObject {
        object: ObjectRef::from_object(&body).unwrap(),
        digest: crate::state::digest_json(&body),
        body,
        unknown_paths: BTreeSet::new(),
        sensitive_paths: BTreeSet::new(),
        volatile_paths: BTreeSet::new(),
        hook: None,
    }
}

/// A rendered node [`NODE`] with `objects`.
pub(super) fn node(objects: Vec<DesiredObject>) -> DesiredNode {
    DesiredNode {
        address: NODE.into(),
        state: DesiredState::Rendered,
        objects,
        render_key: None,
    }
}

/// The record of `d` applied as it is under [`NODE`], last seen at resourceVersion `rv`.
pub(super) fn record(d: &DesiredObject, rv: &str) -> ObjectRecord {
    ObjectRecord {
        node: NODE.into(),
        object: d.object.clone(),
        uid: Some("u".into()),
        resource_version: Some(rv.into()),
        applied_digest: d.digest.clone(),
        last_applied: ProtectedBody::plain(json!({})).unwrap(),
    }
}
