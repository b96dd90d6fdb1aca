//! The diff: desired objects × live objects × state records → [`NodeChange`]s.
//!
//! 1. **Kinds.** Each desired object's kind is looked up in the cluster's discovery. A kind
//!    the cluster does not serve but that a CRD rendered in the same plan defines is planned
//!    as a create (checked offline against the CRD's schema when it has one); any other
//!    missing kind is [`DiffError::KindNotInstalled`].
//! 2. **Refresh.** Live objects are read with the fewest requests: one LIST per kind and
//!    namespace holding two or more wanted objects, one GET otherwise, at most `parallelism`
//!    at a time.
//! 3. **Decide**, per object:
//!    - absent → create (no request: the body shown is the desired one);
//!    - the fast path: desired digest = recorded applied digest and live resourceVersion =
//!      recorded one → no-op, no request;
//!    - otherwise a server-side apply dry run (manager `meshplan`, strict field validation,
//!      never forced), normalised and compared with the normalised live object: equal →
//!      no-op (or adopt when the state does not know the object), else update, or replace
//!      when an immutable field changes (static table, or the server's "field is
//!      immutable"); a conflict with another manager is reported, never forced;
//!    - hooks are not diffed; objects whose content is known only during apply are marked.
//! 4. **Prune.** Objects recorded for a node in scope and no longer rendered (or recorded for a
//!    node that left the plan) are deletes; records of objects already gone are forgotten.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt as _;
use serde_json::Value;

use crate::cluster::{ApplyOptions, Cluster, ClusterError, KindRef, ObjectRef};
use crate::state::ObjectRecord;
use meshplan_k8s::Structural;

use super::change::{Action, NodeChange, NodeStatus, ObjectChange};
use super::error::DiffError;
use super::fields::{
    changed_fields, create_fields, desired_vs_live, display_path, is_under_any, normalize,
    to_field_changes, unknown_fields,
};
use super::input::{DesiredObject, DesiredState, DiffInput};

/// The outcome of one dry run, by (node, object).
type Decided<'a> = ((&'a str, &'a ObjectRef), Result<ObjectChange, DiffError>);

/// A wanted live object and where it is wanted.
struct Want<'a> {
    node: &'a str,
    desired: &'a DesiredObject,
}

/// Plans the given nodes (and the prune of records no longer rendered).
pub async fn diff(
    cluster: &dyn Cluster,
    input: DiffInput<'_>,
) -> Result<Vec<NodeChange>, DiffError> {
    let parallelism = input.parallelism.max(1);
    let desired_refs: BTreeSet<&ObjectRef> = input
        .nodes
        .iter()
        .flat_map(|n| n.objects.iter().map(|o| &o.object))
        .collect();
    let node_names: BTreeSet<&str> = input.nodes.iter().map(|n| n.address.as_str()).collect();
    let mut records_by_object: BTreeMap<&ObjectRef, Vec<&ObjectRecord>> = BTreeMap::new();
    for r in input.records {
        records_by_object.entry(&r.object).or_default().push(r);
    }

    // 1. Kinds, and which objects need their live copy.
    let mut from_plan_kinds: BTreeSet<(&str, &ObjectRef)> = BTreeSet::new();
    let mut missing_kinds: Vec<(&str, &DesiredObject)> = Vec::new();
    let mut to_read: BTreeSet<&ObjectRef> = BTreeSet::new();
    for node in input.nodes {
        for d in &node.objects {
            if d.hook.is_some() || d.has_unknown_identity() {
                continue;
            }
            let kind = d.object.kind_ref();
            if input.discovery.find(&kind).is_some() {
                to_read.insert(&d.object);
                continue;
            }
            match input.plan_crds.find(&kind) {
                Some(schema) => {
                    if let Some(schema) = schema {
                        validate_offline(&node.address, d, schema)?;
                    }
                    from_plan_kinds.insert((node.address.as_str(), &d.object));
                }
                None => {
                    missing_kinds.push((node.address.as_str(), d));
                }
            }
        }
    }
    // Records to prune: in scope and not rendered anymore. A node rendered only during apply
    // keeps its records (its objects are not known yet).
    let during_apply: BTreeSet<&str> = input
        .nodes
        .iter()
        .filter(|n| matches!(n.state, DesiredState::DuringApply { .. }))
        .map(|n| n.address.as_str())
        .collect();
    let mut prunes: Vec<&ObjectRecord> = input
        .records
        .iter()
        .filter(|r| !desired_refs.contains(&r.object))
        .filter(|r| !during_apply.contains(r.node.as_str()))
        .filter(|r| node_names.contains(r.node.as_str()) || input.prune_other_nodes)
        .collect();
    prunes.sort_by(|a, b| (&a.node, &a.object).cmp(&(&b.node, &b.object)));
    for r in &prunes {
        if input.discovery.find(&r.object.kind_ref()).is_some() {
            to_read.insert(&r.object);
        }
    }

    // 2. Refresh.
    let started = std::time::Instant::now();
    let live = refresh(cluster, &to_read, input, parallelism).await?;
    tracing::info!(elapsed = ?started.elapsed(), objects = to_read.len(), "refreshed");

    // 3. Decide: the fast path and creates without requests, the rest with a dry run.
    let mut wants: Vec<Want<'_>> = Vec::new();
    let mut decided: BTreeMap<(&str, &ObjectRef), ObjectChange> = BTreeMap::new();
    for node in input.nodes {
        if matches!(node.state, DesiredState::Read { .. } | DesiredState::Check) {
            continue;
        }
        for d in &node.objects {
            let key = (node.address.as_str(), &d.object);
            if let Some(hook) = &d.hook {
                let mut c = base_change(d, Action::Hook);
                c.hook = Some(hook.clone());
                decided.insert(key, c);
                continue;
            }
            if matches!(node.state, DesiredState::DuringApply { .. }) || d.has_unknown_identity() {
                let mut c = base_change(d, Action::KnownAfterApply);
                c.fields = unknown_fields(d);
                decided.insert(key, c);
                continue;
            }
            if missing_kinds
                .iter()
                .any(|(n, m)| *n == node.address && m.object == d.object)
            {
                let mut c = base_change(d, Action::Create);
                c.kind_pending = true;
                c.fields = create_fields(d);
                decided.insert(key, c);
                continue;
            }
            if from_plan_kinds.contains(&key) {
                let mut c = base_change(d, Action::Create);
                c.kind_created_by_plan = true;
                c.fields = create_fields(d);
                decided.insert(key, c);
                continue;
            }
            let Some(current) = live.get(&d.object).and_then(Option::as_ref) else {
                let mut c = base_change(d, Action::Create);
                c.fields = create_fields(d);
                decided.insert(key, c);
                continue;
            };
            let live_rv = resource_version(current);
            if !d.unknown_paths.is_empty() {
                let mut c = base_change(d, Action::KnownAfterApply);
                c.live_resource_version = live_rv;
                c.fields = desired_vs_live(d, current);
                decided.insert(key, c);
                continue;
            }
            let recorded = records_by_object.get(&d.object).and_then(|rs| {
                rs.iter()
                    .find(|r| r.node == node.address)
                    .or_else(|| rs.first())
                    .copied()
            });
            if let Some(r) = recorded
                && r.node == node.address
                && r.applied_digest == d.digest
                && r.resource_version.is_some()
                && r.resource_version == live_rv
            {
                let mut c = base_change(d, Action::NoOp);
                c.live_resource_version = live_rv;
                decided.insert(key, c);
                continue;
            }
            wants.push(Want {
                node: &node.address,
                desired: d,
            });
        }
    }

    let options = ApplyOptions {
        dry_run: true,
        force: false,
        ..ApplyOptions::default()
    };
    let options = &options;
    let live_ref = &live;
    let records_ref = &records_by_object;
    let results: Vec<Decided<'_>> = futures::stream::iter(wants.into_iter().map(|w| async move {
        let Want { node, desired } = w;
        let current = live_ref.get(&desired.object).and_then(Option::as_ref);
        let in_state = records_ref
            .get(&desired.object)
            .is_some_and(|rs| rs.iter().any(|r| r.node == node));
        let result = match current {
            Some(current) => {
                dry_run_change(cluster, node, desired, current, in_state, options).await
            }
            None => Ok(base_change(desired, Action::Create)),
        };
        ((node, &desired.object), result)
    }))
    .buffer_unordered(parallelism)
    .collect()
    .await;
    tracing::info!(elapsed = ?started.elapsed(), "dry runs done");
    let mut errors: BTreeMap<(usize, &ObjectRef), DiffError> = BTreeMap::new();
    let order: BTreeMap<&str, usize> = input
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.address.as_str(), i))
        .collect();
    for (key, result) in results {
        match result {
            Ok(c) => {
                decided.insert(key, c);
            }
            Err(e) => {
                errors.insert((order.get(key.0).copied().unwrap_or(usize::MAX), key.1), e);
            }
        }
    }
    if let Some((_, first)) = errors.into_iter().next() {
        return Err(first);
    }

    // 4. Assemble in node order, prunes last within their node.
    let mut out: Vec<NodeChange> = Vec::new();
    for node in input.nodes {
        let status = match &node.state {
            DesiredState::Rendered => NodeStatus::Planned,
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
            prunes
                .iter()
                .filter(|r| r.node == node.address)
                .map(|r| prune_change(r, &live)),
        );
        out.push(NodeChange {
            address: node.address.clone(),
            status,
            objects,
            render_key: node.render_key.clone(),
        });
    }
    let mut removed: BTreeMap<&str, Vec<ObjectChange>> = BTreeMap::new();
    for r in prunes
        .iter()
        .filter(|r| !node_names.contains(r.node.as_str()))
    {
        removed
            .entry(r.node.as_str())
            .or_default()
            .push(prune_change(r, &live));
    }
    for (address, objects) in removed {
        out.push(NodeChange {
            address: address.to_owned(),
            status: NodeStatus::Removed,
            objects,
            render_key: None,
        });
    }
    // A kind nobody installs is an error, unless something upstream changes first (a chart
    // may install an operator that registers it): then it is checked during apply.
    let changed: BTreeSet<&str> = out
        .iter()
        .filter(|n| n.changes_cluster())
        .map(|n| n.address.as_str())
        .chain(input.changed_outside.iter().map(String::as_str))
        .collect();
    for (node, d) in missing_kinds {
        let upstream_changes = input.upstream.get(node).is_some_and(|deps| {
            deps.iter()
                .any(|u| u != node && changed.contains(u.as_str()))
        });
        if !upstream_changes {
            return Err(DiffError::KindNotInstalled {
                node: node.to_owned(),
                kind: d.object.kind_ref().to_string(),
                object: Box::new(d.object.clone()),
            });
        }
    }
    Ok(out)
}

fn prune_change(r: &ObjectRecord, live: &BTreeMap<ObjectRef, Option<Value>>) -> ObjectChange {
    match live.get(&r.object) {
        Some(Some(current)) => {
            let mut c = ObjectChange::new(r.object.clone(), Action::Delete);
            c.live_resource_version = resource_version(current);
            c
        }
        // Not read (kind gone from the cluster) or absent.
        _ => ObjectChange::new(r.object.clone(), Action::Forget),
    }
}

fn base_change(d: &DesiredObject, action: Action) -> ObjectChange {
    let mut c = ObjectChange::new(d.object.clone(), action);
    c.desired_digest = Some(d.digest.clone());
    // The body is kept only where apply sends or records it.
    if !matches!(action, Action::NoOp | Action::Conflict) {
        c.desired = Some(d.body.clone());
    }
    c
}

fn resource_version(o: &Value) -> Option<String> {
    o.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

async fn dry_run_change(
    cluster: &dyn Cluster,
    node: &str,
    d: &DesiredObject,
    live: &Value,
    in_state: bool,
    options: &ApplyOptions,
) -> Result<ObjectChange, DiffError> {
    let live_rv = resource_version(live);
    match cluster.apply(&d.body, options).await {
        Ok(dry) => {
            let changes = changed_fields(&normalize(live), &normalize(&dry));
            let fields = to_field_changes(d, changes);
            let action = if fields.is_empty() {
                if in_state {
                    Action::NoOp
                } else {
                    Action::Adopt
                }
            } else if fields.iter().any(|f| f.forces_replacement) {
                Action::Replace
            } else {
                Action::Update
            };
            let mut c = base_change(d, action);
            c.live_resource_version = live_rv;
            c.regenerated_only = !fields.is_empty()
                && !d.volatile_paths.is_empty()
                && fields
                    .iter()
                    .all(|f| is_under_any(&f.pointer, &d.volatile_paths));
            if action == Action::Replace {
                let paths: Vec<&str> = fields
                    .iter()
                    .filter(|f| f.forces_replacement)
                    .map(|f| f.path.as_str())
                    .collect();
                c.replace_reason = Some(format!("immutable fields change: {}", paths.join(", ")));
            }
            c.fields = fields;
            Ok(c)
        }
        Err(ClusterError::Conflict {
            conflicts, message, ..
        }) if !conflicts.is_empty() => {
            let _ = message;
            // Fields meshplan itself holds as an `Update` manager (left by a rollback's
            // replace) are not another manager's: apply takes them back.
            if conflicts
                .iter()
                .all(|c| c.manager == crate::cluster::FIELD_MANAGER)
            {
                let mut c = base_change(d, Action::Update);
                c.live_resource_version = live_rv;
                c.fields = desired_vs_live(d, live);
                return Ok(c);
            }
            let mut c = base_change(d, Action::Conflict);
            c.live_resource_version = live_rv;
            c.conflicts = conflicts;
            c.fields = desired_vs_live(d, live);
            Ok(c)
        }
        Err(ClusterError::Invalid {
            message, causes, ..
        }) if message.contains("field is immutable")
            || causes
                .iter()
                .any(|c| c.message.contains("field is immutable")) =>
        {
            let mut c = base_change(d, Action::Replace);
            c.live_resource_version = live_rv;
            let mut fields = desired_vs_live(d, live);
            let immutable: BTreeSet<String> = causes
                .iter()
                .filter(|c| c.message.contains("immutable"))
                .map(|c| c.field.clone())
                .collect();
            for f in &mut fields {
                if immutable
                    .iter()
                    .any(|i| f.path == *i || f.path.starts_with(&format!("{i}.")))
                {
                    f.forces_replacement = true;
                }
            }
            c.fields = fields;
            c.replace_reason = Some(message);
            Ok(c)
        }
        Err(ClusterError::Invalid { message, .. }) => Err(DiffError::Rejected {
            node: node.to_owned(),
            object: Box::new(d.object.clone()),
            message,
        }),
        Err(source) => Err(DiffError::Cluster {
            node: node.to_owned(),
            object: Box::new(d.object.clone()),
            source,
        }),
    }
}

/// Reads the live objects: a LIST per (kind, namespace) with two or more wanted objects, a
/// GET per other object.
async fn refresh(
    cluster: &dyn Cluster,
    wanted: &BTreeSet<&ObjectRef>,
    input: DiffInput<'_>,
    parallelism: usize,
) -> Result<BTreeMap<ObjectRef, Option<Value>>, DiffError> {
    let mut groups: BTreeMap<(KindRef, Option<String>), Vec<&ObjectRef>> = BTreeMap::new();
    for o in wanted {
        groups
            .entry((o.kind_ref(), o.namespace.clone()))
            .or_default()
            .push(o);
    }
    let owner = |o: &ObjectRef| -> String {
        input
            .nodes
            .iter()
            .find(|n| n.objects.iter().any(|d| &d.object == o))
            .map(|n| n.address.clone())
            .or_else(|| {
                input
                    .records
                    .iter()
                    .find(|r| &r.object == o)
                    .map(|r| r.node.clone())
            })
            .unwrap_or_default()
    };
    // The discovery said the kind was served, the server says it is not (a CRD deleted since
    // the discovery was fetched). When a CRD of this plan defines the kind, its objects are
    // absent and will be created after the CRD; otherwise the error stands (and a plan on a
    // cached discovery fetches a fresh one).
    let kind_gone = |kind: &KindRef, e: &ClusterError| {
        (e.is_not_found() || matches!(e, ClusterError::KindNotInstalled { .. }))
            && input.plan_crds.find(kind).is_some()
    };
    type Fetched = Result<Vec<(ObjectRef, Option<Value>)>, (ObjectRef, ClusterError)>;
    let fetched: Vec<Fetched> = futures::stream::iter(groups.into_iter().map(
        |((kind, namespace), objects)| async move {
            if objects.len() >= 2 {
                let items = match cluster.list(&kind, namespace.as_deref(), None).await {
                    Ok(list) => list.items,
                    Err(e) if kind_gone(&kind, &e) => Vec::new(),
                    Err(e) if e.is_not_found() => {
                        let kind = kind.clone();
                        return Err((
                            (*objects[0]).clone(),
                            ClusterError::KindNotInstalled { kind },
                        ));
                    }
                    Err(e) => return Err(((*objects[0]).clone(), e)),
                };
                let mut by_name: BTreeMap<String, Value> = items
                    .into_iter()
                    .filter_map(|item| {
                        let name = item.pointer("/metadata/name")?.as_str()?.to_owned();
                        Some((name, item))
                    })
                    .collect();
                Ok(objects
                    .into_iter()
                    .map(|o| ((*o).clone(), by_name.remove(&o.name).map(slim)))
                    .collect())
            } else {
                let mut out = Vec::new();
                for o in objects {
                    let got = match cluster.get(o).await {
                        Ok(got) => got,
                        Err(e) if kind_gone(&kind, &e) => None,
                        Err(e) => return Err(((*o).clone(), e)),
                    };
                    out.push(((*o).clone(), got.map(slim)));
                }
                Ok(out)
            }
        },
    ))
    .buffer_unordered(parallelism)
    .collect()
    .await;
    let mut live = BTreeMap::new();
    let mut first_error: Option<(ObjectRef, ClusterError)> = None;
    for f in fetched {
        match f {
            Ok(items) => live.extend(items),
            Err((o, e)) => {
                if first_error.as_ref().is_none_or(|(fo, _)| o < *fo) {
                    first_error = Some((o, e));
                }
            }
        }
    }
    if let Some((o, source)) = first_error {
        return Err(match source {
            ClusterError::KindNotInstalled { kind } => DiffError::KindNotInstalled {
                node: owner(&o),
                kind: kind.to_string(),
                object: Box::new(o),
            },
            source => DiffError::Cluster {
                node: owner(&o),
                object: Box::new(o),
                source,
            },
        });
    }
    Ok(live)
}

/// A live object without its managedFields (never compared, often the largest part).
fn slim(mut object: Value) -> Value {
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        meta.remove("managedFields");
    }
    object
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
    use std::sync::Mutex;
    use std::time::Duration;

    use futures::future::BoxFuture;
    use serde_json::json;

    use super::*;
    use crate::cluster::{
        ApiResourceInfo, Condition, DeleteOptions, Discovery, ObjectList, ServerVersion,
        WaitOutcome, WriteOptions,
    };
    use crate::diff::input::{DesiredNode, PlanCrds};
    use crate::state::ProtectedBody;

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
        ) -> BoxFuture<'a, Result<bool, ClusterError>> {
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

    fn cm(name: &str, data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": "d"}, "data": data})
    }

    fn live(mut body: Value, rv: &str) -> Value {
        body["metadata"]["resourceVersion"] = rv.into();
        body["metadata"]["uid"] = "u".into();
        body["metadata"]["managedFields"] = json!([{"manager": "x"}]);
        body
    }

    fn desired(body: Value) -> DesiredObject {
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

    fn node(objects: Vec<DesiredObject>) -> DesiredNode {
        DesiredNode {
            address: "manifest.a".into(),
            state: DesiredState::Rendered,
            objects,
            render_key: None,
        }
    }

    fn record(d: &DesiredObject, rv: &str) -> ObjectRecord {
        ObjectRecord {
            node: "manifest.a".into(),
            object: d.object.clone(),
            uid: Some("u".into()),
            resource_version: Some(rv.into()),
            applied_digest: d.digest.clone(),
            last_applied: ProtectedBody::plain(json!({})).unwrap(),
        }
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
                changed_outside: &none,
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
            changed_outside: &none,
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
