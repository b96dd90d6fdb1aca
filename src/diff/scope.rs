//! What the diff covers, settled before any request: a pure function of the [`DiffInput`].
//!
//! 1. **Kinds.** Each desired object's kind is looked up in the cluster's discovery
//!    ([`KindStatus`]): served; not served but defined by a CRD this plan renders (the object
//!    is then checked offline against the CRD's schema when it has one); or neither
//!    (pending: allowed only when a node upstream changes first, which the engine checks once
//!    every change is decided). Hooks and objects whose name or namespace is known only
//!    during apply are not looked up.
//! 2. **Objects to decide**: the objects of rendered nodes and of nodes rendered during apply
//!    (read and check nodes have none), each with its node, its kind and the state's record
//!    of it under that node.
//! 3. **Prunes**: records of nodes in scope (and, with `prune_other_nodes`, of nodes that left
//!    the plan) whose objects are no longer rendered. A node rendered only during apply keeps
//!    its records: its objects are not known yet.
//! 4. **Reads**: the live objects the refresh reads: desired objects and prunes whose kind the
//!    cluster serves.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::cluster::ObjectRef;
use crate::state::ObjectRecord;
use meshplan_k8s::Structural;

use super::decide::{KindStatus, Wanted};
use super::error::DiffError;
use super::fields::display_path;
use super::input::{DesiredObject, DesiredState, DiffInput};

/// What the diff covers.
#[derive(Debug)]
pub(super) struct Scope<'a> {
    /// The objects to decide, in node order then render order; one per (node, object), the
    /// last rendering of an object winning.
    pub(super) objects: Vec<Wanted<'a>>,
    /// The state's record of each (node, object) (the first one, should there be several).
    records: BTreeMap<(&'a str, &'a ObjectRef), &'a ObjectRecord>,
    /// Records whose objects are no longer rendered, sorted by (node, object).
    pub(super) prunes: Vec<&'a ObjectRecord>,
    /// The live objects to read.
    pub(super) reads: BTreeSet<&'a ObjectRef>,
    /// Objects whose kind is neither served nor defined by the plan, with their node, in
    /// node order.
    pub(super) pending_kinds: Vec<(&'a str, &'a DesiredObject)>,
}

impl<'a> Scope<'a> {
    /// The state's record of `wanted` under its node.
    pub(super) fn record(&self, wanted: &Wanted<'_>) -> Option<&'a ObjectRecord> {
        self.records
            .get(&(wanted.node, &wanted.desired.object))
            .copied()
    }
}

/// Settles what the diff covers. Fails when an object of a kind that a CRD of the plan
/// defines does not match that CRD's schema ([`DiffError::CrdSchema`]).
pub(super) fn scope(input: DiffInput<'_>) -> Result<Scope<'_>, DiffError> {
    let mut objects: Vec<Wanted<'_>> = Vec::new();
    let mut positions: BTreeMap<(&str, &ObjectRef), usize> = BTreeMap::new();
    let mut reads: BTreeSet<&ObjectRef> = BTreeSet::new();
    let mut pending_kinds = Vec::new();
    for node in input.nodes {
        let decided = !matches!(node.state, DesiredState::Read { .. } | DesiredState::Check);
        for d in &node.objects {
            let kind = kind_status(input, &node.address, d)?;
            match kind {
                KindStatus::Served => {
                    reads.insert(&d.object);
                }
                KindStatus::Pending => pending_kinds.push((node.address.as_str(), d)),
                KindStatus::CreatedByPlan | KindStatus::NotLookedUp => {}
            }
            if !decided {
                continue;
            }
            let wanted = Wanted {
                node: &node.address,
                desired: d,
                kind,
                node_during_apply: matches!(node.state, DesiredState::DuringApply { .. }),
            };
            match positions.get(&(node.address.as_str(), &d.object)) {
                Some(&i) => objects[i] = wanted,
                None => {
                    positions.insert((node.address.as_str(), &d.object), objects.len());
                    objects.push(wanted);
                }
            }
        }
    }
    let mut records = BTreeMap::new();
    for r in input.records {
        records.entry((r.node.as_str(), &r.object)).or_insert(r);
    }
    let prunes = prunes(input);
    for r in &prunes {
        if input.discovery.find(&r.object.kind_ref()).is_some() {
            reads.insert(&r.object);
        }
    }
    Ok(Scope {
        objects,
        records,
        prunes,
        reads,
        pending_kinds,
    })
}

/// How `d`'s kind is known; checks it offline when a CRD of the plan defines it.
fn kind_status(
    input: DiffInput<'_>,
    node: &str,
    d: &DesiredObject,
) -> Result<KindStatus, DiffError> {
    if d.hook.is_some() || d.has_unknown_identity() {
        return Ok(KindStatus::NotLookedUp);
    }
    let kind = d.object.kind_ref();
    if input.discovery.find(&kind).is_some() {
        return Ok(KindStatus::Served);
    }
    match input.plan_crds.find(&kind) {
        Some(schema) => {
            if let Some(schema) = schema {
                validate_offline(node, d, schema)?;
            }
            Ok(KindStatus::CreatedByPlan)
        }
        None => Ok(KindStatus::Pending),
    }
}

/// Records in scope whose objects are not rendered anymore, sorted by (node, object).
fn prunes(input: DiffInput<'_>) -> Vec<&ObjectRecord> {
    let desired: BTreeSet<&ObjectRef> = input
        .nodes
        .iter()
        .flat_map(|n| n.objects.iter().map(|o| &o.object))
        .collect();
    let in_plan: BTreeSet<&str> = input.nodes.iter().map(|n| n.address.as_str()).collect();
    let during_apply: BTreeSet<&str> = input
        .nodes
        .iter()
        .filter(|n| matches!(n.state, DesiredState::DuringApply { .. }))
        .map(|n| n.address.as_str())
        .collect();
    let mut prunes: Vec<&ObjectRecord> = input
        .records
        .iter()
        .filter(|r| !desired.contains(&r.object))
        .filter(|r| !during_apply.contains(r.node.as_str()))
        .filter(|r| in_plan.contains(r.node.as_str()) || input.prune_other_nodes)
        .collect();
    prunes.sort_by(|a, b| (&a.node, &a.object).cmp(&(&b.node, &b.object)));
    prunes
}

/// Checks an object of a kind the plan creates against the CRD's schema, offline.
fn validate_offline(node: &str, d: &DesiredObject, schema: &Value) -> Result<(), DiffError> {
    let err = |errors: Vec<String>| DiffError::CrdSchema {
        node: node.to_owned(),
        object: Box::new(d.object.clone()),
        errors,
    };
    let structural = Structural::compile(schema)
        .map_err(|e| err(vec![format!("the CRD's schema is not usable: {e}")]))?;
    let mut errors: Vec<String> = structural
        .unknown_fields(&d.body)
        .into_iter()
        .map(|f| format!("{f}: field not declared in schema"))
        .collect();
    let mut body = d.body.clone();
    structural.apply_defaults(&mut body);
    errors.extend(
        structural
            .validate(&body)
            .into_iter()
            .filter(|e| !d.unknown_paths.iter().any(|p| display_path(p) == e.field))
            .map(|e| e.message),
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(err(errors))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::{ApiResourceInfo, Discovery};
    use crate::diff::HookMarks;
    use crate::diff::fixtures::{NODE, cm, desired, node, record};
    use crate::diff::input::{DesiredNode, PlanCrds};

    fn configmaps_only() -> Discovery {
        Discovery::new(vec![ApiResourceInfo {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            namespaced: true,
            verbs: vec![],
            subresources: vec![],
        }])
    }

    fn input<'a>(
        nodes: &'a [DesiredNode],
        records: &'a [ObjectRecord],
        discovery: &'a Discovery,
        crds: &'a PlanCrds,
        upstream: &'a BTreeMap<String, BTreeSet<String>>,
        none: &'a BTreeSet<String>,
    ) -> DiffInput<'a> {
        DiffInput {
            nodes,
            records,
            discovery,
            prune_other_nodes: false,
            plan_crds: crds,
            parallelism: 1,
            upstream,
            unknown_outside: none,
        }
    }

    #[test]
    fn kinds_reads_records_and_prunes_are_settled_before_any_request() {
        let kept = desired(cm("kept", json!({})));
        let mut hook = desired(cm("hook", json!({})));
        hook.hook = Some(HookMarks {
            phases: vec!["post-install".into()],
            weight: 0,
            delete_policies: vec![],
        });
        let widget = desired(json!({"apiVersion": "example.com/v1", "kind": "Widget",
                                    "metadata": {"name": "w", "namespace": "d"}}));
        let read = desired(cm("read", json!({})));
        let gone = desired(cm("gone", json!({})));
        let mut other = record(&desired(cm("other", json!({}))), "1");
        other.node = "manifest.left".into();
        let nodes = [
            node(vec![kept.clone(), hook, widget]),
            DesiredNode {
                address: "read.r".into(),
                state: DesiredState::Read { resolved: true },
                objects: vec![read],
                render_key: None,
            },
        ];
        let records = [record(&kept, "1"), record(&gone, "2"), other];
        let (discovery, crds) = (configmaps_only(), PlanCrds::default());
        let (upstream, none) = (BTreeMap::new(), BTreeSet::new());
        let s = scope(input(&nodes, &records, &discovery, &crds, &upstream, &none)).unwrap();

        let decided: Vec<(&str, &str, KindStatus)> = s
            .objects
            .iter()
            .map(|w| (w.node, w.desired.object.name.as_str(), w.kind))
            .collect();
        assert_eq!(
            decided,
            [
                (NODE, "kept", KindStatus::Served),
                (NODE, "hook", KindStatus::NotLookedUp),
                (NODE, "w", KindStatus::Pending),
            ],
            "a read node's objects are read, not decided"
        );
        let reads: Vec<&str> = s.reads.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(reads, ["gone", "kept", "read"]);
        let prunes: Vec<&str> = s.prunes.iter().map(|r| r.object.name.as_str()).collect();
        assert_eq!(
            prunes,
            ["gone"],
            "a node that left the plan is pruned only on request"
        );
        assert_eq!(s.pending_kinds.len(), 1);
        assert_eq!(
            s.record(&s.objects[0]).map(|r| r.applied_digest.as_str()),
            Some(kept.digest.as_str())
        );
        assert!(s.record(&s.objects[1]).is_none());
    }
}
