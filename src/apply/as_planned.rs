//! Whether a node planned with placeholders is, with the real values, what the plan showed.
//!
//! A helm node whose values were known only during apply was planned with a placeholder for
//! each of them: its objects were listed, and the fields that depend on the values were shown
//! `(known after apply)`. Once the values are read, the phased apply plans the node again with
//! them and proceeds only when [`differences`] finds none:
//!
//! 1. the same objects (none missing, none added);
//! 2. every field that was known at plan time has the value the plan rendered (compared on the
//!    desired bodies, outside the paths that were unknown; by digest when the plan kept no
//!    body, as for objects that were unchanged).
//!
//! Pure; messages name objects and field paths, never values (they may be sensitive).

use std::collections::BTreeMap;

use crate::cluster::ObjectRef;
use crate::diff::fields::{display_path, is_under_any};
use crate::diff::{NodeChange, ObjectChange};
use crate::render::json::diff_paths;

/// What differs between the node as planned (with placeholders) and as planned now (with
/// the real values), one line per object; empty when it is as planned.
pub fn differences(planned: &NodeChange, now: &NodeChange) -> Vec<String> {
    let rendered = |n: &NodeChange| -> BTreeMap<ObjectRef, ObjectChange> {
        n.objects
            .iter()
            .filter(|o| o.desired_digest.is_some())
            .map(|o| (o.object.clone(), o.clone()))
            .collect()
    };
    let (before, after) = (rendered(planned), rendered(now));
    let mut out = Vec::new();
    for (object, p) in &before {
        let Some(n) = after.get(object) else {
            out.push(format!("{object}: in the plan, no longer rendered"));
            continue;
        };
        if p.desired_digest == n.desired_digest {
            continue;
        }
        match (&p.desired, &n.desired) {
            (Some(p_body), Some(n_body)) => {
                let fields: Vec<String> = diff_paths(p_body, n_body)
                    .into_iter()
                    .filter(|path| !is_under_any(path, &p.desired_unknown))
                    .map(|path| display_path(&path))
                    .collect();
                if !fields.is_empty() {
                    out.push(format!(
                        "{object}: {} {} other than in the plan",
                        fields.join(", "),
                        if fields.len() == 1 { "is" } else { "are" }
                    ));
                }
            }
            _ => out.push(format!("{object}: its content is other than in the plan")),
        }
    }
    for object in after.keys().filter(|o| !before.contains_key(*o)) {
        out.push(format!("{object}: rendered now, not in the plan"));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::diff::{Action, NodeStatus};

    fn object(name: &str, body: Value, unknown: &[&str]) -> ObjectChange {
        let mut o = ObjectChange::new(
            ObjectRef::new("v1", "ConfigMap", Some("linkerd"), name),
            Action::Create,
        );
        o.desired_digest = Some(crate::render::json::digest(&body));
        o.desired = Some(body);
        o.desired_unknown = unknown.iter().map(|s| (*s).to_owned()).collect();
        o
    }

    fn node(objects: Vec<ObjectChange>, unknown_inputs: &[&str]) -> NodeChange {
        NodeChange {
            address: "helm.cp".into(),
            status: NodeStatus::Planned,
            objects,
            render_key: None,
            unknown_inputs: unknown_inputs.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn unknown_fields_may_change_known_ones_may_not() {
        let planned = node(
            vec![
                object(
                    "roots",
                    json!({"data": {"ca": "PLACEHOLDER", "mode": "a"}}),
                    &["/data/ca"],
                ),
                object("same", json!({"data": {"x": "1"}}), &[]),
            ],
            &["read.anchor.value"],
        );
        let as_planned = node(
            vec![
                object("roots", json!({"data": {"ca": "REAL", "mode": "a"}}), &[]),
                object("same", json!({"data": {"x": "1"}}), &[]),
            ],
            &[],
        );
        assert_eq!(differences(&planned, &as_planned), Vec::<String>::new());

        let changed = node(
            vec![
                object("roots", json!({"data": {"ca": "REAL", "mode": "b"}}), &[]),
                object("new", json!({}), &[]),
            ],
            &[],
        );
        assert_eq!(
            differences(&planned, &changed),
            [
                "v1 ConfigMap linkerd/roots: data.mode is other than in the plan",
                "v1 ConfigMap linkerd/same: in the plan, no longer rendered",
                "v1 ConfigMap linkerd/new: rendered now, not in the plan",
            ]
        );
    }

    #[test]
    fn a_plan_without_a_body_compares_digests() {
        let mut kept = object("same", json!({"data": {"x": "1"}}), &[]);
        kept.desired = None;
        let planned = node(vec![kept], &["read.anchor.value"]);
        let now = node(vec![object("same", json!({"data": {"x": "2"}}), &[])], &[]);
        assert_eq!(
            differences(&planned, &now),
            ["v1 ConfigMap linkerd/same: its content is other than in the plan"]
        );
    }
}
