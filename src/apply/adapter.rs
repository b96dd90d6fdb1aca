//! The change set of the plan stage (plus the graph's edges and the nodes' wait, timeout and
//! `prevent_destroy` settings) translated into the executor's [`ApplyInput`] and
//! [`DestroyRequest`].
//!
//! Object actions map one to one (create, update, replace, delete, adopt, no-op, forget; a
//! conflict is an update forced with `--force-conflicts`, refused without); hooks become [`HookObject`]s. Nodes whose objects are not all known yet (rendered during
//! apply or with placeholders, unresolved reads, checks not yet evaluated, objects `(known after apply)` or of a
//! kind not installed yet) and everything downstream of them are *deferred*: the caller
//! applies the rest first, resolves what became known and plans again
//! (see `docs/apply.md`, "Reads and unknowns").

use std::collections::BTreeSet;

use crate::diff::{Action, ChangeSet, NodeChange, NodeStatus};
use crate::graph::PlanGraph;
use crate::model::{Address, Plan};
use crate::render::{HookDeletePolicy, HookPhase};

use super::destroy::{DestroyNode, DestroyRequest};
use super::input::{ApplyInput, ApplyNode, ApplyObject, HookObject, ObjectAction};

/// Why a change set cannot be applied as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum AdaptError {
    #[error("{node}: {object} has no desired body (a saved change set must be planned again)")]
    #[diagnostic(code(apply::no_body))]
    NoBody { node: String, object: String },
    #[error("{node}: {object} conflicts with another field manager")]
    #[diagnostic(
        code(apply::conflict),
        help("plan again to see the fields and the manager; `--force-conflicts` takes them")
    )]
    Conflict { node: String, object: String },
}

/// Nodes that cannot be applied yet, and every node downstream of them. `evaluated` holds the
/// checks that already passed in this run.
pub fn deferred_nodes(
    change_set: &ChangeSet,
    graph: &PlanGraph,
    evaluated: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut deferred: BTreeSet<String> = change_set
        .nodes
        .iter()
        .filter(|n| is_unknown(n, evaluated))
        .map(|n| n.address.clone())
        .collect();
    // Downstream closure.
    let mut frontier: Vec<String> = deferred.iter().cloned().collect();
    while let Some(a) = frontier.pop() {
        let Some(address) = Address::parse(&a) else {
            continue;
        };
        for d in graph.dependents(&address) {
            let name = d.to_string();
            if deferred.insert(name.clone()) {
                frontier.push(name);
            }
        }
    }
    deferred
}

fn is_unknown(node: &NodeChange, evaluated: &BTreeSet<String>) -> bool {
    match &node.status {
        NodeStatus::RenderedDuringApply { .. } | NodeStatus::ReadDuringApply => true,
        NodeStatus::CheckDuringApply => !evaluated.contains(&node.address),
        NodeStatus::Planned | NodeStatus::ReadNow | NodeStatus::Removed => {
            node.has_unknown_inputs()
                || node
                    .objects
                    .iter()
                    .any(|o| o.action == Action::KnownAfterApply || o.kind_pending)
        }
    }
}

/// The executor's input for the nodes of `change_set` that are not in `skip`. A conflict
/// (fields another manager took) is an update when `force_conflicts` (the engine then applies
/// with force, taking the fields back), else refused.
pub fn apply_input(
    change_set: &ChangeSet,
    plan: &Plan,
    graph: &PlanGraph,
    skip: &BTreeSet<String>,
    force_conflicts: bool,
) -> Result<ApplyInput, AdaptError> {
    take_apply_input(&mut change_set.clone(), plan, graph, skip, force_conflicts)
}

/// [`apply_input`], moving the desired bodies of the nodes it adapts out of `change_set`
/// instead of copying them: an apply of many objects holds each body once. The nodes in
/// `skip` keep theirs.
pub fn take_apply_input(
    change_set: &mut ChangeSet,
    plan: &Plan,
    graph: &PlanGraph,
    skip: &BTreeSet<String>,
    force_conflicts: bool,
) -> Result<ApplyInput, AdaptError> {
    let mut nodes = Vec::new();
    for change in &mut change_set.nodes {
        if skip.contains(&change.address) {
            continue;
        }
        let address = Address::parse(&change.address);
        let model = address.as_ref().and_then(|a| plan.node(a));
        let mut node = ApplyNode::new(change.address.clone());
        if let Some(a) = &address {
            node.depends_on = graph
                .dependencies(a)
                .into_iter()
                .map(ToString::to_string)
                .collect();
        }
        if let Some(m) = model {
            node.wait = m.wait.clone();
            node.timeout = m.timeout.or(m.wait.timeout);
        }
        for o in &mut change.objects {
            let object = o.object.to_string();
            let action = match o.action {
                Action::Create => ObjectAction::Create,
                Action::Update => ObjectAction::Update,
                Action::Replace => ObjectAction::Replace,
                Action::Delete => ObjectAction::Delete,
                Action::Adopt => ObjectAction::Adopt,
                Action::NoOp => ObjectAction::NoOp,
                Action::Forget => ObjectAction::Forget,
                // Deferred above: a node holding one is never adapted; kept safe here.
                Action::KnownAfterApply => ObjectAction::Update,
                Action::Conflict if force_conflicts => ObjectAction::Update,
                Action::Conflict => {
                    return Err(AdaptError::Conflict {
                        node: change.address.clone(),
                        object,
                    });
                }
                Action::Hook => {
                    let Some(body) = o.desired.take() else {
                        return Err(AdaptError::NoBody {
                            node: change.address.clone(),
                            object,
                        });
                    };
                    let marks = o.hook.clone().unwrap_or(crate::diff::HookMarks {
                        phases: Vec::new(),
                        weight: 0,
                        delete_policies: Vec::new(),
                    });
                    node.hooks.push(HookObject {
                        object: o.object.clone(),
                        body,
                        phases: marks
                            .phases
                            .iter()
                            .filter_map(|p| HookPhase::parse(p))
                            .collect(),
                        weight: marks.weight,
                        delete_policies: marks
                            .delete_policies
                            .iter()
                            .filter_map(|p| HookDeletePolicy::parse(p))
                            .collect(),
                    });
                    continue;
                }
            };
            let needs_body = matches!(
                action,
                ObjectAction::Create
                    | ObjectAction::Update
                    | ObjectAction::Replace
                    | ObjectAction::Adopt
            );
            if needs_body && o.desired.is_none() {
                return Err(AdaptError::NoBody {
                    node: change.address.clone(),
                    object,
                });
            }
            node.objects.push(ApplyObject {
                object: o.object.clone(),
                action,
                desired: o.desired.take().map(std::sync::Arc::new),
                digest: o.desired_digest.clone(),
                sensitive_paths: o.sensitive_paths.clone(),
            });
        }
        nodes.push(node);
    }
    Ok(ApplyInput {
        plan: change_set.plan.clone(),
        nodes,
    })
}

/// The destroy request of a plan: every node with its dependencies and `prevent_destroy`.
pub fn destroy_request(
    plan: &Plan,
    graph: &PlanGraph,
    targets: Option<BTreeSet<String>>,
    take_foreign: bool,
) -> DestroyRequest {
    DestroyRequest {
        plan: plan.name.clone(),
        nodes: plan
            .nodes
            .iter()
            .map(|(address, node)| DestroyNode {
                address: address.to_string(),
                depends_on: graph
                    .dependencies(address)
                    .into_iter()
                    .map(ToString::to_string)
                    .collect(),
                prevent_destroy: node.prevent_destroy,
            })
            .collect(),
        targets,
        take_foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ObjectRef;
    use crate::diff::ObjectChange;
    use serde_json::json;

    fn cs(nodes: Vec<NodeChange>) -> ChangeSet {
        ChangeSet {
            plan: "p".into(),
            nodes,
        }
    }

    fn obj(name: &str, action: Action) -> ObjectChange {
        let mut o = ObjectChange::new(
            ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("default".into()),
                name: name.into(),
            },
            action,
        );
        o.desired = Some(json!({"apiVersion": "v1", "kind": "ConfigMap"}));
        o
    }

    fn loaded(text: &str) -> crate::load::LoadedPlan {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        crate::load::load(&crate::load::LoadRequest {
            plan: path,
            vars: Vec::new(),
            var_files: Vec::new(),
        })
        .unwrap()
    }

    const PLAN: &str = r#"
[plan]
name = "p"
[manifest.a]
namespace = "default"
yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"
timeout = "30s"
[read.r]
api_version = "v1"
kind = "ConfigMap"
namespace = "default"
name = "a"
key = "x"
depends_on = ["manifest.a"]
[manifest.b]
namespace = "default"
yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  x: ${read.r.value}\n"
[manifest.c]
namespace = "default"
yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"
depends_on = ["manifest.b"]
"#;

    #[test]
    fn actions_map_one_to_one_and_dependencies_come_from_the_graph() {
        let l = loaded(PLAN);
        let set = cs(vec![
            NodeChange {
                address: "manifest.a".into(),
                status: NodeStatus::Planned,
                objects: vec![
                    obj("a", Action::Create),
                    obj("old", Action::Delete),
                    obj("x", Action::Adopt),
                ],
                render_key: None,
                unknown_inputs: Vec::new(),
            },
            NodeChange {
                address: "manifest.c".into(),
                status: NodeStatus::Planned,
                objects: vec![obj("c", Action::NoOp)],
                render_key: None,
                unknown_inputs: Vec::new(),
            },
        ]);
        let input = apply_input(&set, &l.plan, &l.graph, &BTreeSet::new(), false).unwrap();
        assert_eq!(input.nodes.len(), 2);
        let a = &input.nodes[0];
        let actions: Vec<ObjectAction> = a.objects.iter().map(|o| o.action).collect();
        assert_eq!(
            actions,
            [
                ObjectAction::Create,
                ObjectAction::Delete,
                ObjectAction::Adopt
            ]
        );
        assert_eq!(a.timeout, Some(std::time::Duration::from_secs(30)));
        assert_eq!(
            input.nodes[1].depends_on,
            BTreeSet::from(["manifest.b".to_owned()])
        );
    }

    #[test]
    fn unknown_nodes_and_their_dependents_are_deferred() {
        let l = loaded(PLAN);
        let set = cs(vec![
            NodeChange {
                address: "manifest.a".into(),
                status: NodeStatus::Planned,
                objects: vec![obj("a", Action::Create)],
                render_key: None,
                unknown_inputs: Vec::new(),
            },
            NodeChange {
                address: "read.r".into(),
                status: NodeStatus::ReadDuringApply,
                objects: Vec::new(),
                render_key: None,
                unknown_inputs: Vec::new(),
            },
            NodeChange {
                address: "manifest.b".into(),
                status: NodeStatus::Planned,
                objects: vec![obj("b", Action::KnownAfterApply)],
                render_key: None,
                unknown_inputs: Vec::new(),
            },
        ]);
        let deferred = deferred_nodes(&set, &l.graph, &BTreeSet::new());
        assert_eq!(
            deferred,
            BTreeSet::from([
                "read.r".to_owned(),
                "manifest.b".to_owned(),
                "manifest.c".to_owned()
            ])
        );
        let input = apply_input(&set, &l.plan, &l.graph, &deferred, false).unwrap();
        assert_eq!(input.nodes.len(), 1);
        assert_eq!(input.nodes[0].address, "manifest.a");
    }

    #[test]
    fn conflicts_and_missing_bodies_are_refused() {
        let l = loaded(PLAN);
        let mut bodiless = obj("a", Action::Create);
        bodiless.desired = None;
        for o in [obj("a", Action::Conflict), bodiless] {
            let set = cs(vec![NodeChange {
                address: "manifest.a".into(),
                status: NodeStatus::Planned,
                objects: vec![o],
                render_key: None,
                unknown_inputs: Vec::new(),
            }]);
            assert!(apply_input(&set, &l.plan, &l.graph, &BTreeSet::new(), false).is_err());
        }
        // With --force-conflicts a conflict is an update that takes the fields back.
        let set = cs(vec![NodeChange {
            address: "manifest.a".into(),
            status: NodeStatus::Planned,
            objects: vec![obj("a", Action::Conflict)],
            render_key: None,
            unknown_inputs: Vec::new(),
        }]);
        let input = apply_input(&set, &l.plan, &l.graph, &BTreeSet::new(), true).unwrap();
        assert_eq!(input.nodes[0].objects[0].action, ObjectAction::Update);
    }
}
