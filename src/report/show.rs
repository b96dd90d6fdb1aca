//! `meshplan show`: the objects each node renders to, as YAML documents or one JSON document.
//!
//! Nodes in apply order, objects in render order, hooks after them. Values known only during
//! apply read `(known after apply)`; sensitive values (a Secret's `data` and `stringData`,
//! values built from sensitive reads) read `(sensitive)` unless they are asked for in clear.
//! YAML documents carry comments naming the node, the chart template (`# Source:`), hook
//! marks and the fields known after apply, so the output reads like `helm template`.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::model::Address;
use crate::render::{KNOWN_AFTER_APPLY, NodeRender, NodeStatus, PlanRender, RenderedObject};

/// Version of the JSON shape.
pub const SHOW_FORMAT: u32 = 1;

const SENSITIVE: &str = "(sensitive)";

/// How to show a render.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShowOptions {
    /// Print sensitive values in clear.
    pub show_sensitive: bool,
}

/// The object as shown: unknown values replaced, sensitive ones masked unless asked for.
pub fn shown_object(o: &RenderedObject, options: ShowOptions) -> Value {
    let mut object = o.object.clone();
    if !options.show_sensitive {
        for path in &o.sensitive_paths {
            if let Some(v) = object.pointer_mut(path) {
                mask(v);
            }
        }
    }
    for path in &o.unknown_paths {
        if let Some(v) = object.pointer_mut(path) {
            *v = Value::String(KNOWN_AFTER_APPLY.to_owned());
        }
    }
    object
}

/// Replaces every leaf under `v` with `(sensitive)` (keys stay: they are not secret).
fn mask(v: &mut Value) {
    match v {
        Value::Object(map) => map.values_mut().for_each(mask),
        Value::Array(items) => items.iter_mut().for_each(mask),
        Value::Null => {}
        other => *other = Value::String(SENSITIVE.to_owned()),
    }
}

/// YAML documents, one per object, with comments; `order` is the nodes' apply order.
pub fn render_yaml(render: &PlanRender, order: &[Address], options: ShowOptions) -> String {
    let mut out = String::new();
    for node in order.iter().filter_map(|a| render.nodes.get(a)) {
        if let Some(note) = node_note(node) {
            let _ = writeln!(out, "# {}: {note}", node.address);
        }
        for o in node.objects.iter().chain(&node.hooks) {
            out.push_str("---\n");
            let _ = writeln!(out, "# node: {}", node.address);
            if let Some(source) = &o.source {
                let _ = writeln!(out, "# Source: {source}");
            }
            if let Some(h) = &o.hook {
                let phases: Vec<&str> = h.phases.iter().map(|p| p.as_str()).collect();
                let _ = writeln!(out, "# hook: {} (weight {})", phases.join(","), h.weight);
            }
            if !o.unknown_paths.is_empty() {
                let paths: Vec<&str> = o.unknown_paths.iter().map(String::as_str).collect();
                let _ = writeln!(out, "# known after apply: {}", paths.join(" "));
            }
            let object = shown_object(o, options);
            match serde_saphyr::to_string(&object) {
                Ok(yaml) => out.push_str(&yaml),
                Err(_) => {
                    let _ = writeln!(out, "{object}");
                }
            }
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

/// One JSON document: the plan, and per node its status and shown objects.
pub fn render_json(render: &PlanRender, order: &[Address], options: ShowOptions) -> String {
    let nodes: Vec<Value> = order
        .iter()
        .filter_map(|a| render.nodes.get(a))
        .map(|node| {
            let (status, extra) = match &node.status {
                NodeStatus::Rendered => ("rendered", json!({})),
                NodeStatus::RenderedWithPlaceholders { unknown_references } => (
                    "rendered_with_placeholders",
                    json!({"unknown_inputs": unknown_references}),
                ),
                NodeStatus::RenderedDuringApply {
                    unknown_references,
                    refused_placeholders,
                    ..
                } => (
                    "rendered_during_apply",
                    json!({"unknown_inputs": unknown_references, "reason": refused_placeholders}),
                ),
            };
            let objects: Vec<Value> = node
                .objects
                .iter()
                .chain(&node.hooks)
                .map(|o| {
                    json!({
                        "source": o.source,
                        "hook": o.hook.as_ref().map(|h| json!({
                            "phases": h.phases.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                            "weight": h.weight,
                        })),
                        "unknown_paths": o.unknown_paths,
                        "object": shown_object(o, options),
                    })
                })
                .collect();
            let mut entry = json!({
                "address": node.address.to_string(),
                "status": status,
                "objects": objects,
            });
            if let (Some(map), Value::Object(extra)) = (entry.as_object_mut(), extra) {
                map.extend(extra);
            }
            entry
        })
        .collect();
    let doc = json!({
        "format_version": SHOW_FORMAT,
        "plan": render.plan,
        "nodes": nodes,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

/// A comment about a node whose objects are not (all) known.
fn node_note(node: &NodeRender) -> Option<String> {
    match &node.status {
        NodeStatus::Rendered => None,
        NodeStatus::RenderedWithPlaceholders { unknown_references } => Some(format!(
            "rendered with placeholders for {} (known after apply)",
            unknown_references.join(", ")
        )),
        NodeStatus::RenderedDuringApply {
            unknown_references,
            refused_placeholders,
            ..
        } => Some(format!(
            "rendered during apply (uses {}){}",
            unknown_references.join(", "),
            refused_placeholders
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::model::ObjectRef;
    use crate::render::{KindScope, SincePrevious};

    fn secret() -> RenderedObject {
        RenderedObject {
            object_ref: ObjectRef::new("v1", "Secret", Some("d"), "s"),
            scope: KindScope::Namespaced,
            object: json!({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": "s", "namespace": "d"},
                           "data": {"token": "aHVudGVyMg==", "ca": "PLACEHOLDER"}}),
            source: Some("c/templates/s.yaml".into()),
            hook: None,
            digest: String::new(),
            unknown_paths: BTreeSet::from(["/data/ca".to_owned()]),
            sensitive_paths: BTreeSet::from(["/data".to_owned()]),
            volatile_paths: BTreeSet::new(),
            since_previous: SincePrevious::New,
        }
    }

    #[test]
    fn sensitive_values_are_masked_unknown_ones_marked() {
        let shown = shown_object(&secret(), ShowOptions::default());
        assert_eq!(shown["data"]["token"], SENSITIVE);
        assert_eq!(shown["data"]["ca"], KNOWN_AFTER_APPLY);
        let clear = shown_object(
            &secret(),
            ShowOptions {
                show_sensitive: true,
            },
        );
        assert_eq!(clear["data"]["token"], "aHVudGVyMg==");
        assert_eq!(clear["data"]["ca"], KNOWN_AFTER_APPLY);
    }

    #[test]
    fn yaml_documents_name_their_node_and_source() {
        let address = Address::parse("helm.app").unwrap();
        let render = PlanRender {
            plan: "p".into(),
            nodes: [(
                address.clone(),
                NodeRender {
                    address: address.clone(),
                    status: NodeStatus::Rendered,
                    objects: vec![secret()],
                    hooks: Vec::new(),
                    helm: None,
                },
            )]
            .into(),
            helm_version: None,
        };
        let yaml = render_yaml(
            &render,
            std::slice::from_ref(&address),
            ShowOptions::default(),
        );
        assert!(
            yaml.starts_with(
                "---\n# node: helm.app\n# Source: c/templates/s.yaml\n# known after apply: /data/ca\n"
            ),
            "{yaml}"
        );
        assert!(!yaml.contains("aHVudGVyMg=="), "{yaml}");
        let json: Value =
            serde_json::from_str(&render_json(&render, &[address], ShowOptions::default()))
                .unwrap();
        assert_eq!(json["nodes"][0]["status"], "rendered");
        assert_eq!(
            json["nodes"][0]["objects"][0]["object"]["data"]["token"],
            SENSITIVE
        );
    }
}
