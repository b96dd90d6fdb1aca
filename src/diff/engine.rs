//! The diff: desired objects × live objects × state records → [`NodeChange`]s, gathered then
//! decided.
//!
//! 1. **Scope** (`scope`, pure): each object's kind (checked offline when a CRD of
//!    the plan defines it), the objects to decide, the records to prune, the live objects to
//!    read.
//! 2. **Gather** (`gather`, every request of the diff): refresh the live objects,
//!    then one server-side apply dry run per object whose change depends on one.
//! 3. **Decide** ([`super::decide`], pure): one [`ObjectChange`] per object from (desired,
//!    live, record, dry run), one per prune from (record, live). Of the decisions that fail,
//!    the first in node order (then object order) fails the diff.
//! 4. **Assemble** (pure): the node changes in graph order, each with its objects in render
//!    order and its prunes last, then the nodes that left the plan
//!    ([`NodeStatus::Removed`]). A kind that nothing installs fails the diff
//!    ([`DiffError::KindNotInstalled`], naming the kind, the node and what provides it) unless
//!    a node it depends on is rendered only during apply (it may hold the CRD): it is then
//!    checked during apply.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::{Cluster, ObjectRef};

use super::change::{NodeChange, NodeStatus, ObjectChange};
use super::decide;
use super::error::DiffError;
use super::gather::{Gathered, gather};
use super::input::{DesiredState, DiffInput};
use super::scope::{Scope, scope};

/// The decided changes by (node, object).
type Decided<'a> = BTreeMap<(&'a str, &'a ObjectRef), ObjectChange>;

/// Plans the given nodes (and the prune of records no longer rendered).
pub async fn diff(
    cluster: &dyn Cluster,
    input: DiffInput<'_>,
) -> Result<Vec<NodeChange>, DiffError> {
    let scope = scope(input)?;
    let mut gathered = gather(cluster, &scope, input).await?;
    let decided = decide_objects(input, &scope, &mut gathered)?;
    let changes = assemble(input, &scope, decided, &gathered);
    check_pending_kinds(input, &scope)?;
    Ok(changes)
}

/// Decides every object of the scope, taking its dry run's answer out of `gathered`.
fn decide_objects<'a>(
    input: DiffInput<'_>,
    scope: &Scope<'a>,
    gathered: &mut Gathered<'a>,
) -> Result<Decided<'a>, DiffError> {
    let order: BTreeMap<&str, usize> = input
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.address.as_str(), i))
        .collect();
    let mut decided = Decided::new();
    let mut errors: BTreeMap<(usize, &ObjectRef), DiffError> = BTreeMap::new();
    for wanted in &scope.objects {
        let key = (wanted.node, &wanted.desired.object);
        let dry_run = gathered.dry_runs.remove(&key);
        let live = gathered.live(&wanted.desired.object);
        match decide::decide(wanted, live, scope.record(wanted), dry_run) {
            Ok(change) => {
                decided.insert(key, change);
            }
            Err(e) => {
                let at = order.get(wanted.node).copied().unwrap_or(usize::MAX);
                errors.insert((at, key.1), e);
            }
        }
    }
    match errors.into_iter().next() {
        Some((_, first)) => Err(first),
        None => Ok(decided),
    }
}

/// The node changes in graph order, prunes last within their node, removed nodes last.
fn assemble<'a>(
    input: DiffInput<'a>,
    scope: &Scope<'_>,
    mut decided: Decided<'a>,
    gathered: &Gathered<'_>,
) -> Vec<NodeChange> {
    let prune = |r: &crate::state::ObjectRecord| decide::prune(r, gathered.live(&r.object));
    let mut out: Vec<NodeChange> = Vec::new();
    for node in input.nodes {
        let status = match &node.state {
            DesiredState::Rendered | DesiredState::Placeholders { .. } => NodeStatus::Planned,
            DesiredState::DuringApply { reason } => NodeStatus::RenderedDuringApply {
                reason: reason.clone(),
            },
            DesiredState::Read { resolved: true } => NodeStatus::ReadNow,
            DesiredState::Read { resolved: false } => NodeStatus::ReadDuringApply,
            DesiredState::Check => NodeStatus::CheckDuringApply,
        };
        let mut objects: Vec<ObjectChange> = node
            .objects
            .iter()
            .filter_map(|d| decided.remove(&(node.address.as_str(), &d.object)))
            .collect();
        objects.extend(
            scope
                .prunes
                .iter()
                .filter(|r| r.node == node.address)
                .map(|r| prune(r)),
        );
        let unknown_inputs = match &node.state {
            DesiredState::Placeholders { references } => references.clone(),
            _ => Vec::new(),
        };
        let mut change = NodeChange {
            address: node.address.clone(),
            status,
            objects,
            render_key: node.render_key.clone(),
            unknown_inputs,
        };
        change.retain_hooks_that_run();
        out.push(change);
    }
    let in_plan: BTreeSet<&str> = input.nodes.iter().map(|n| n.address.as_str()).collect();
    let mut removed: BTreeMap<&str, Vec<ObjectChange>> = BTreeMap::new();
    for r in scope
        .prunes
        .iter()
        .filter(|r| !in_plan.contains(r.node.as_str()))
    {
        removed.entry(r.node.as_str()).or_default().push(prune(r));
    }
    for (address, objects) in removed {
        out.push(NodeChange {
            address: address.to_owned(),
            status: NodeStatus::Removed,
            objects,
            render_key: None,
            unknown_inputs: Vec::new(),
        });
    }
    out
}

/// A kind that the cluster does not serve and no CRD of the plan defines is an error, unless
/// a node it depends on is not fully known yet: rendered only during apply (a CRD may be
/// among its objects), or with a CRD whose group or kind is known only during apply. The
/// kind is then checked during apply.
fn check_pending_kinds(input: DiffInput<'_>, scope: &Scope<'_>) -> Result<(), DiffError> {
    let unknown_yet: BTreeSet<&str> = input
        .nodes
        .iter()
        .filter(|n| n.may_define_kinds_later())
        .map(|n| n.address.as_str())
        .chain(input.unknown_outside.iter().map(String::as_str))
        .collect();
    for &(node, d) in &scope.pending_kinds {
        let may_come_from_upstream = input.upstream.get(node).is_some_and(|deps| {
            deps.iter()
                .any(|u| u != node && unknown_yet.contains(u.as_str()))
        });
        if !may_come_from_upstream {
            return Err(DiffError::kind_not_installed(
                node.to_owned(),
                d.object.clone(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use futures::future::BoxFuture;
    use serde_json::json;

    use serde_json::Value;

    use super::*;
    use crate::cluster::{
        ApiResourceInfo, ApplyOptions, ClusterError, Condition, DeleteOptions, Discovery, KindRef,
        ObjectList, ServerVersion, WaitOutcome, WriteOptions,
    };
    use crate::diff::change::Action;
    use crate::diff::fixtures::{cm, desired, live, node, record};
    use crate::diff::input::{DesiredNode, PlanCrds};
    use crate::state::ObjectRecord;

    /// A cluster in memory: live objects, a scripted apply answer, and a log of requests.
    #[derive(Default)]
    struct Fake {
        live: BTreeMap<ObjectRef, Value>,
        /// Answers of apply by object name (default: the body merged over the live object).
        apply_errors: BTreeMap<String, fn() -> ClusterError>,
        log: Mutex<Vec<String>>,
    }

    impl Fake {
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    fn merge(into: &mut Value, from: &Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v.clone(),
        }
    }

    impl Cluster for Fake {
        fn url(&self) -> &str {
            "fake"
        }
        fn server_version(&self) -> BoxFuture<'_, Result<ServerVersion, ClusterError>> {
            unimplemented!()
        }
        fn discover(&self) -> BoxFuture<'_, Result<Discovery, ClusterError>> {
            unimplemented!()
        }
        fn prime_discovery(&self, _: Discovery) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
        fn get<'a>(
            &'a self,
            object: &'a ObjectRef,
        ) -> BoxFuture<'a, Result<Option<Value>, ClusterError>> {
            self.log
                .lock()
                .unwrap()
                .push(format!("get {}", object.name));
            Box::pin(async move { Ok(self.live.get(object).cloned()) })
        }
        fn list<'a>(
            &'a self,
            kind: &'a KindRef,
            namespace: Option<&'a str>,
            _: Option<&'a str>,
        ) -> BoxFuture<'a, Result<ObjectList, ClusterError>> {
            self.log.lock().unwrap().push(format!(
                "list {} {}",
                kind.kind,
                namespace.unwrap_or("-")
            ));
            let items = self
                .live
                .iter()
                .filter(|(r, _)| r.kind == kind.kind && r.namespace.as_deref() == namespace)
                .map(|(_, v)| v.clone())
                .collect();
            Box::pin(async move {
                Ok(ObjectList {
                    items,
                    resource_version: "1".into(),
                })
            })
        }
        fn apply<'a>(
            &'a self,
            body: &'a Value,
            options: &'a ApplyOptions,
        ) -> BoxFuture<'a, Result<Value, ClusterError>> {
            assert!(options.dry_run && !options.force);
            let r = ObjectRef::from_object(body).unwrap();
            self.log.lock().unwrap().push(format!("apply {}", r.name));
            Box::pin(async move {
                if let Some(e) = self.apply_errors.get(&r.name) {
                    return Err(e());
                }
                let mut out = self.live.get(&r).cloned().unwrap_or(json!({}));
                merge(&mut out, body);
                Ok(out)
            })
        }
        fn create<'a>(
            &'a self,
            _: &'a Value,
            _: &'a WriteOptions,
        ) -> BoxFuture<'a, Result<Value, ClusterError>> {
            unimplemented!()
        }
        fn replace<'a>(
            &'a self,
            _: &'a Value,
            _: &'a WriteOptions,
        ) -> BoxFuture<'a, Result<Value, ClusterError>> {
            unimplemented!()
        }
        fn delete<'a>(
            &'a self,
            _: &'a ObjectRef,
            _: &'a DeleteOptions,
        ) -> BoxFuture<'a, Result<crate::cluster::DeleteOutcome, ClusterError>> {
            unimplemented!()
        }
        fn wait_for<'a>(
            &'a self,
            _: &'a ObjectRef,
            _: &'a Condition,
            _: Duration,
        ) -> BoxFuture<'a, Result<WaitOutcome, ClusterError>> {
            unimplemented!()
        }
    }

    fn discovery() -> Discovery {
        let res = |group: &str, kind: &str, plural: &str, namespaced: bool| ApiResourceInfo {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            verbs: vec![],
            subresources: vec![],
        };
        Discovery::new(vec![
            res("", "ConfigMap", "configmaps", true),
            res("", "Secret", "secrets", true),
            res("batch", "Job", "jobs", true),
            res(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
            ),
        ])
    }

    async fn run(
        fake: &Fake,
        nodes: &[DesiredNode],
        records: &[ObjectRecord],
    ) -> Result<Vec<NodeChange>, DiffError> {
        let d = discovery();
        let crds = PlanCrds::default();
        let upstream = BTreeMap::new();
        let none = BTreeSet::new();
        diff(
            fake,
            DiffInput {
                nodes,
                records,
                discovery: &d,
                prune_other_nodes: true,
                plan_crds: &crds,
                parallelism: 4,
                upstream: &upstream,
                unknown_outside: &none,
            },
        )
        .await
    }

    fn actions(changes: &[NodeChange]) -> Vec<(String, Action)> {
        changes
            .iter()
            .flat_map(|n| n.objects.iter().map(|o| (o.object.name.clone(), o.action)))
            .collect()
    }

    #[tokio::test]
    async fn the_fast_path_sends_no_dry_run_and_lists_kinds_with_several_objects() {
        let a = desired(cm("a", json!({"k": "1"})));
        let b = desired(cm("b", json!({"k": "2"})));
        let mut fake = Fake::default();
        fake.live
            .insert(a.object.clone(), live(a.body.clone(), "5"));
        fake.live
            .insert(b.object.clone(), live(b.body.clone(), "6"));
        let records = vec![record(&a, "5"), record(&b, "1")];
        let changes = run(&fake, &[node(vec![a, b])], &records).await.unwrap();
        // a: fast path; b: its resourceVersion moved, so a dry run (which finds nothing).
        assert_eq!(
            actions(&changes),
            [("a".into(), Action::NoOp), ("b".into(), Action::NoOp)]
        );
        assert_eq!(fake.log(), ["list ConfigMap d", "apply b"]);
    }

    #[tokio::test]
    async fn server_fields_never_show_and_unknown_objects_are_adopted() {
        let a = desired(cm("a", json!({"k": "1"})));
        let mut fake = Fake::default();
        let mut current = live(a.body.clone(), "5");
        current["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z".into();
        current["status"] = json!({"x": 1});
        fake.live.insert(a.object.clone(), current);
        let changes = run(&fake, &[node(vec![a])], &[]).await.unwrap();
        assert_eq!(actions(&changes), [("a".into(), Action::Adopt)]);
        assert_eq!(fake.log(), ["get a", "apply a"]);
    }

    #[tokio::test]
    async fn immutable_fields_replace_from_the_table_or_the_server() {
        let job = |image: &str, name: &str| {
            json!({"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": name, "namespace": "d"},
                   "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
        };
        let table = desired(job("new", "table"));
        let server = desired(job("new", "server"));
        let mut fake = Fake::default();
        fake.live
            .insert(table.object.clone(), live(job("old", "table"), "3"));
        fake.live
            .insert(server.object.clone(), live(job("old", "server"), "4"));
        fake.apply_errors.insert("server".into(), || ClusterError::Invalid {
            object: Box::new(ObjectRef::new("batch/v1", "Job", Some("d"), "server")),
            causes: vec![crate::cluster::InvalidCause {
                field: "spec.template".into(),
                reason: "FieldValueInvalid".into(),
                message: "Invalid value: ...: field is immutable".into(),
            }],
            message: "Job.batch \"server\" is invalid: spec.template: Invalid value: field is immutable".into(),
        });
        let changes = run(&fake, &[node(vec![table, server])], &[]).await.unwrap();
        assert_eq!(
            actions(&changes),
            [
                ("table".into(), Action::Replace),
                ("server".into(), Action::Replace)
            ]
        );
        let t = &changes[0].objects[0];
        assert_eq!(
            t.replace_reason.as_deref(),
            Some("immutable fields change: spec.template.spec.containers[0].image")
        );
        assert!(t.fields[0].forces_replacement);
        let s = &changes[0].objects[1];
        assert!(
            s.replace_reason
                .as_deref()
                .unwrap()
                .contains("field is immutable")
        );
        assert_eq!(s.fields[0].path, "spec.template.spec.containers[0].image");
        assert!(s.fields[0].forces_replacement);
    }

    #[tokio::test]
    async fn conflicts_and_rejections() {
        let a = desired(cm("a", json!({"k": "1"})));
        let bad = desired(cm("bad", json!({"k": "1"})));
        let mut fake = Fake::default();
        fake.live
            .insert(a.object.clone(), live(cm("a", json!({"k": "0"})), "5"));
        fake.apply_errors
            .insert("a".into(), || ClusterError::Conflict {
                object: Box::new(ObjectRef::new("v1", "ConfigMap", Some("d"), "a")),
                conflicts: vec![crate::cluster::FieldConflict {
                    manager: "kubectl".into(),
                    field: ".data.k".into(),
                }],
                message: "conflict".into(),
            });
        let changes = run(&fake, &[node(vec![a.clone()])], &[]).await.unwrap();
        let c = &changes[0].objects[0];
        assert_eq!(c.action, Action::Conflict);
        assert_eq!(c.conflicts[0].manager, "kubectl");
        assert_eq!(c.fields[0].before, Some(json!("0")));
        assert_eq!(c.fields[0].after, Some(json!("1")));

        fake.live
            .insert(bad.object.clone(), live(cm("bad", json!({"k": "0"})), "6"));
        fake.apply_errors
            .insert("bad".into(), || ClusterError::Invalid {
                object: Box::new(ObjectRef::new("v1", "ConfigMap", Some("d"), "bad")),
                causes: vec![],
                message: "unknown field \"spec\"".into(),
            });
        let e = run(&fake, &[node(vec![bad])], &[]).await.unwrap_err();
        assert!(
            matches!(&e, DiffError::Rejected { node, message, .. } if node == "manifest.a" && message.contains("unknown field")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn crd_kinds_of_the_plan_are_created_and_checked_offline() {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"kind": "Widget", "plural": "widgets"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}
        });
        let widget = |size: Value| {
            desired(json!({"apiVersion": "example.com/v1", "kind": "Widget",
                           "metadata": {"name": "w", "namespace": "d"}, "spec": {"size": size}}))
        };
        let mut crds = PlanCrds::default();
        crds.learn([&crd]);
        let d = discovery();
        let upstream = BTreeMap::new();
        let none = BTreeSet::new();
        let fake = Fake::default();
        let nodes = [node(vec![desired(crd.clone()), widget(json!(3))])];
        let input = DiffInput {
            nodes: &nodes,
            records: &[],
            discovery: &d,
            prune_other_nodes: true,
            plan_crds: &crds,
            parallelism: 4,
            upstream: &upstream,
            unknown_outside: &none,
        };
        let changes = diff(&fake, input).await.unwrap();
        assert_eq!(
            actions(&changes),
            [
                ("widgets.example.com".into(), Action::Create),
                ("w".into(), Action::Create)
            ]
        );
        assert!(changes[0].objects[1].kind_created_by_plan);
        // The Widget was never looked up: its kind is not served yet.
        assert_eq!(fake.log(), ["get widgets.example.com"]);

        let nodes = [node(vec![widget(json!("big"))])];
        let e = diff(
            &fake,
            DiffInput {
                nodes: &nodes,
                ..input
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, DiffError::CrdSchema { errors, .. } if errors[0].contains("spec.size")),
            "{e}"
        );
        // A kind neither served nor defined by the plan, with nothing upstream changing.
        let other = desired(json!({"apiVersion": "example.com/v2", "kind": "Gadget",
                                   "metadata": {"name": "g", "namespace": "d"}}));
        let nodes = [node(vec![other])];
        let e = diff(
            &fake,
            DiffInput {
                nodes: &nodes,
                ..input
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, DiffError::KindNotInstalled { node, .. } if node == "manifest.a"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn records_are_pruned_unless_their_node_renders_during_apply() {
        let kept = desired(cm("kept", json!({"k": "1"})));
        let old = desired(cm("old", json!({"k": "1"})));
        let mut fake = Fake::default();
        fake.live
            .insert(kept.object.clone(), live(kept.body.clone(), "5"));
        fake.live
            .insert(old.object.clone(), live(old.body.clone(), "6"));
        let records = vec![record(&kept, "5"), record(&old, "6")];
        let changes = run(&fake, &[node(vec![kept.clone()])], &records)
            .await
            .unwrap();
        assert_eq!(
            actions(&changes),
            [
                ("kept".into(), Action::NoOp),
                ("old".into(), Action::Delete)
            ]
        );
        assert_eq!(
            changes[0].objects[1].live_resource_version.as_deref(),
            Some("6")
        );
        let during = DesiredNode {
            state: DesiredState::DuringApply { reason: "r".into() },
            ..node(vec![])
        };
        let changes = run(&fake, &[during], &records).await.unwrap();
        assert!(changes[0].objects.is_empty(), "{changes:?}");
        assert!(changes[0].has_changes());
        // A node that left the plan: its objects are deleted under it.
        let changes = run(&fake, &[], &records).await.unwrap();
        assert_eq!(changes[0].status, NodeStatus::Removed);
        assert_eq!(changes[0].objects.len(), 2);
    }

    #[tokio::test]
    async fn secrets_are_masked_and_regenerated_material_is_marked() {
        let secret = |v: &str| {
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "s", "namespace": "d"}, "data": {"tls.crt": v}})
        };
        let mut s = desired(secret("TkVX"));
        s.volatile_paths.insert("/data/tls.crt".into());
        let mut fake = Fake::default();
        fake.live
            .insert(s.object.clone(), live(secret("T0xE"), "2"));
        let changes = run(&fake, &[node(vec![s])], &[]).await.unwrap();
        let c = &changes[0].objects[0];
        assert_eq!(c.action, Action::Update);
        assert!(c.regenerated_only);
        assert_eq!(c.fields.len(), 1);
        assert!(c.fields[0].sensitive);
        assert_eq!(c.fields[0].before, None);
        assert_eq!(c.fields[0].after, None);
        let text = serde_json::to_string(&changes).unwrap();
        assert!(!text.contains("TkVX") && !text.contains("T0xE"), "{text}");
    }
}
