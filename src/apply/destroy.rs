//! Destroy: delete every object the plan owns, in reverse dependency order.
//!
//! 1. The objects are the state's records (of the targeted nodes and the nodes that depend
//!    on them, when `targets` is given). A targeted node with `prevent_destroy` refuses the
//!    whole destroy before anything is deleted.
//! 2. One unit per node; a node is destroyed after the nodes that depend on it, a CRD after
//!    the units holding objects of its kind, a Namespace after the units holding objects in
//!    it. Inside a node: other objects, then Namespaces, then CRDs.
//! 3. Per object: a live object without the plan's ownership marks (label
//!    `app.kubernetes.io/managed-by: meshplan`, annotation `meshplan.io/plan`) is left in
//!    place and reported; a Namespace that holds objects the plan does not own is left in
//!    place with those objects listed, unless `take_foreign`; otherwise it is deleted
//!    (journaled, record removed in the same batch). A record of an object already gone is
//!    dropped.
//! 4. Requests: the live objects of a kind and namespace that holds several records are
//!    listed once ([`Listings`]) instead of read one by one; each delete is conditional on the
//!    resourceVersion read, so the journal's snapshot is exactly what was deleted (a changed
//!    object is read again). The `Before` entries of a group's deletions of listed objects are
//!    journaled ahead of its deletes, 128 to a commit ([`DestroyRunner::prepare_deletes`]);
//!    deletes run concurrently (`--parallelism`), their other journal writes are committed
//!    together. An object the API server removed at once (its answer to the
//!    DELETE is a `Status`, or the object without `deletionTimestamp`) is done then, with no
//!    wait; once a group's deletes are sent, the objects whose deletion is pending
//!    (finalizers) are waited for until gone through one watch per kind and namespace.
//! 5. A failure stops new deletions; nothing is recreated (the records of what was deleted
//!    are already gone, so the state matches the cluster).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::context::{
    Context, Deletion, Interrupt, PREPARED_PER_COMMIT, RunOptions, ensure_no_unfinished, finish,
};
use super::error::{ApplyError, StepError};
use super::events::{Event, Reporter, RunKind, RunOutcome, StepAction, Summary};
use super::input::ObjectClass;
use super::journal::{RecordChange, read_live};
use super::rollback::{HasObject, add_structural_deps};
use super::scheduler::{Schedule, StepRunner, Unit, UnitEnd, find_cycle};
use crate::cluster::{Cluster, ClusterError, KindRef, ObjectRef};
use crate::render::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, PLAN_ANNOTATION};
use crate::state::{Mutation, RecordedObject, RunRecord, StateStore, WriteBatch};

/// A node of the plan, as destroy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestroyNode {
    pub address: String,
    pub depends_on: BTreeSet<String>,
    pub prevent_destroy: bool,
}

/// What to destroy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DestroyRequest {
    /// The plan's name (ownership marks).
    pub plan: String,
    /// The plan's nodes (nodes recorded in the state but gone from the plan are destroyed
    /// too, without dependencies).
    pub nodes: Vec<DestroyNode>,
    /// Destroy only these nodes and the nodes that depend on them (`--target`).
    pub targets: Option<BTreeSet<String>>,
    /// Delete Namespaces even when they hold objects the plan does not own.
    pub take_foreign: bool,
}

impl DestroyRequest {
    /// The nodes to destroy among the `recorded` ones: the targets and every node depending
    /// on them, or everything.
    pub fn selected_nodes(&self, recorded: &BTreeSet<String>) -> BTreeSet<String> {
        let Some(targets) = &self.targets else {
            return recorded.clone();
        };
        let mut selected: BTreeSet<String> = targets.clone();
        let mut changed = true;
        while changed {
            changed = false;
            for n in &self.nodes {
                if !selected.contains(&n.address)
                    && n.depends_on.iter().any(|d| selected.contains(d))
                {
                    selected.insert(n.address.clone());
                    changed = true;
                }
            }
        }
        selected.retain(|n| recorded.contains(n));
        selected
    }

    /// The `selected` nodes that have `prevent_destroy`, in plan order: a destroy that
    /// selects any of them is refused as a whole.
    pub fn protected(&self, selected: &BTreeSet<String>) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.prevent_destroy && selected.contains(&n.address))
            .map(|n| n.address.clone())
            .collect()
    }

    /// What [`destroy`] would delete: the `records` (the state's) of the selected nodes, in
    /// their order. Refuses, before anything is shown or asked, when a selected node has
    /// `prevent_destroy`.
    pub fn preview<'r>(
        &self,
        records: &'r [RecordedObject],
    ) -> Result<Vec<&'r RecordedObject>, ApplyError> {
        let recorded: BTreeSet<String> = records.iter().map(|r| r.node.clone()).collect();
        let selected = self.selected_nodes(&recorded);
        let protected = self.protected(&selected);
        if !protected.is_empty() {
            return Err(ApplyError::Protected { nodes: protected });
        }
        Ok(records
            .iter()
            .filter(|r| selected.contains(&r.node))
            .collect())
    }
}

/// Objects a namespace gets by itself, never counted as foreign.
const AUTOMATIC: &[(&str, &str, &str)] = &[
    ("", "ServiceAccount", "default"),
    ("", "ConfigMap", "kube-root-ca.crt"),
];

pub(crate) struct DestroyStep {
    record: RecordedObject,
}

impl HasObject for DestroyStep {
    fn object(&self) -> &ObjectRef {
        &self.record.object
    }
    fn crd_kind(&self) -> Option<(String, String)> {
        self.record.defines.clone()
    }
}

/// Whether a live object carries the ownership marks of `plan`.
pub fn is_owned(body: &Value, plan: &str) -> bool {
    let label = body
        .pointer("/metadata/labels")
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .and_then(Value::as_str);
    let annotation = body
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(PLAN_ANNOTATION))
        .and_then(Value::as_str);
    label == Some(MANAGED_BY_VALUE) && annotation == Some(plan)
}

/// How many times a delete is retried when the object changed since it was read.
const CHANGED_RETRIES: usize = 3;

/// A kind and a namespace (None: cluster-scoped).
type KindIn = (KindRef, Option<String>);

/// The live objects of a kind in a namespace, by name, listed once (None: the listing failed;
/// objects are read one by one).
type Listing = Option<Mutex<BTreeMap<String, Value>>>;

/// Live objects for the destroy's steps: a kind and namespace holding several records is
/// listed once (at its first object), the others are read one by one. A listed object is
/// handed out once (its step deletes it conditionally on the resourceVersion listed); an
/// object missing from the listing is read again, since it may have been created since.
struct Listings {
    several: BTreeSet<KindIn>,
    lists: Mutex<BTreeMap<KindIn, Arc<OnceCell<Listing>>>>,
}

impl Listings {
    fn new(records: &[RecordedObject]) -> Self {
        let mut counts: BTreeMap<KindIn, usize> = BTreeMap::new();
        for r in records {
            *counts
                .entry((r.object.kind_ref(), r.object.namespace.clone()))
                .or_default() += 1;
        }
        Self {
            several: counts
                .into_iter()
                .filter(|(_, n)| *n >= 2)
                .map(|(k, _)| k)
                .collect(),
            lists: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether `object`'s kind and namespace are listed rather than read one by one.
    fn lists(&self, object: &ObjectRef) -> bool {
        self.several
            .contains(&(object.kind_ref(), object.namespace.clone()))
    }

    /// The object as its kind and namespace's listing shows it, handed out once; None when it
    /// is not listed (a kind read one by one, a listing that failed, or an object missing from
    /// it). Sends no request but the listing.
    async fn listed(&self, cluster: &dyn Cluster, object: &ObjectRef) -> Option<Value> {
        let key = (object.kind_ref(), object.namespace.clone());
        if !self.several.contains(&key) {
            return None;
        }
        let cell = self
            .lists
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let listing = cell
            .get_or_init(|| async {
                let list = cluster.list(&key.0, key.1.as_deref(), None).await.ok()?;
                let by_name = list
                    .items
                    .into_iter()
                    .filter_map(|item| {
                        let name = item.pointer("/metadata/name")?.as_str()?.to_owned();
                        Some((name, item))
                    })
                    .collect();
                Some(Mutex::new(by_name))
            })
            .await;
        listing.as_ref().and_then(|l| {
            l.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&object.name)
        })
    }

    /// The live object (None: absent): from the listing, else read on its own.
    async fn live(
        &self,
        cluster: &dyn Cluster,
        object: &ObjectRef,
    ) -> Result<Option<Value>, ClusterError> {
        match self.listed(cluster, object).await {
            Some(found) => Ok(Some(found)),
            None => read_live(cluster, object).await,
        }
    }
}

struct DestroyRunner<'a> {
    ctx: Context<'a>,
    take_foreign: bool,
    /// Every object the plan owns (all records), to tell foreign objects from own ones.
    owned: BTreeSet<ObjectRef>,
    listings: Listings,
    /// Per unit: the objects its running group deleted whose deletion is pending, waited for
    /// when the group ends.
    deleted: Mutex<BTreeMap<String, Vec<ObjectRef>>>,
    /// The objects read ahead of their group's deletes, by node and object; taken by their
    /// step.
    prepared: Mutex<BTreeMap<(String, ObjectRef), Prepared>>,
}

/// An object read ahead of its group's deletes ([`DestroyRunner::prepare_deletes`]).
struct Prepared {
    /// As listed.
    live: Value,
    /// The journal step whose `Before` entry records `live`, when it is committed.
    step: Option<u64>,
}

impl StepRunner<DestroyStep> for DestroyRunner<'_> {
    /// The `Before` entries of the group's deletions of listed objects, ahead of its deletes.
    fn start_group<'a>(&'a self, unit: &'a str, steps: &'a [DestroyStep]) -> BoxFuture<'a, ()> {
        Box::pin(self.prepare_deletes(unit, steps))
    }

    fn run_step<'a>(
        &'a self,
        unit: &'a str,
        step: &'a DestroyStep,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let object = &step.record.object;
            let destroyed = self
                .ctx
                .reporting_retries(unit, object, deadline, self.destroy_one(unit, object))
                .await;
            match destroyed {
                Ok(Some(Destroyed::Pending)) => {
                    // Done once it is gone (`finish_group`).
                    self.ctx.took(unit, object, StepAction::Delete);
                    self.deleted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(unit.to_owned())
                        .or_default()
                        .push(object.clone());
                    Ok(())
                }
                Ok(Some(Destroyed::Done(action))) => {
                    self.ctx.took(unit, object, action);
                    self.ctx.reporter.event(&Event::StepDone {
                        node: unit.to_owned(),
                        object: object.clone(),
                        action,
                    });
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(self.ctx.failed(unit, StepAction::Delete, &e)),
            }
        })
    }

    fn finish_group<'a>(
        &'a self,
        unit: &'a str,
        _steps: &'a [DestroyStep],
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let deleted = self
                .deleted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(unit)
                .unwrap_or_default();
            match self.await_all_gone(unit, &deleted, deadline).await {
                Ok(()) => Ok(()),
                Err(e) => Err(self.ctx.failed(unit, StepAction::Delete, &e)),
            }
        })
    }
}

/// What a step did.
enum Destroyed {
    /// Deleted, its deletion pending (finalizers); done once it is gone.
    Pending,
    /// Done (deleted and gone at once, already gone, or forgotten).
    Done(StepAction),
}

impl DestroyRunner<'_> {
    /// Takes the objects of `steps` from their kind and namespace's listing (other than
    /// Namespaces, whose step looks for foreign objects first) and journals the `Before`
    /// entries of the deletions of the ones the plan owns, in one commit per
    /// [`PREPARED_PER_COMMIT`] objects instead of about one per delete: 10,000 deletions cost
    /// about 80 commits (each one flushed) instead of about 5,000. Each step then takes its
    /// object and its journal step from here ([`DestroyRunner::destroy_one`]). A listed object
    /// without the ownership marks is handed to its step with no entry; an object the listing
    /// does not show (gone already, or the listing failed) is left to its step, which reads
    /// it on its own, concurrently with the others. A commit that fails stops the
    /// preparation: the remaining steps journal their own entries (and meet the error there).
    async fn prepare_deletes(&self, node: &str, steps: &[DestroyStep]) {
        let objects: Vec<&ObjectRef> = steps
            .iter()
            .map(|s| &s.record.object)
            .filter(|o| self.listings.lists(o) && ObjectClass::of(o) != ObjectClass::Namespace)
            .collect();
        if objects.len() < 2 {
            return;
        }
        for chunk in objects.chunks(PREPARED_PER_COMMIT) {
            let mut listed = Vec::with_capacity(chunk.len());
            for object in chunk {
                if let Some(body) = self.listings.listed(self.ctx.cluster, object).await {
                    listed.push((*object, body));
                }
            }
            let entries: Vec<(&ObjectRef, Option<&Value>)> = listed
                .iter()
                .filter(|(_, body)| is_owned(body, &self.ctx.plan))
                .map(|(object, body)| (*object, Some(body)))
                .collect();
            let mut journaled = if entries.is_empty() {
                None
            } else {
                self.ctx
                    .journal
                    .before_all(node, Mutation::Delete, &entries)
                    .await
                    .ok()
                    .map(Vec::into_iter)
            };
            let commit_failed = !entries.is_empty() && journaled.is_none();
            drop(entries);
            let mut prepared = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
            for (object, body) in listed {
                let step = match journaled.as_mut() {
                    Some(steps) if is_owned(&body, &self.ctx.plan) => steps.next(),
                    _ => None,
                };
                prepared.insert(
                    (node.to_owned(), object.clone()),
                    Prepared { live: body, step },
                );
            }
            if commit_failed {
                return;
            }
        }
    }

    /// Waits until every object of `deleted` is gone (one watch per kind and namespace);
    /// each is done then. The first one still there at the deadline fails the group.
    async fn await_all_gone(
        &self,
        node: &str,
        deleted: &[ObjectRef],
        deadline: Option<Instant>,
    ) -> Result<(), StepError> {
        let mut groups: BTreeMap<KindIn, BTreeSet<String>> = BTreeMap::new();
        for o in deleted {
            groups
                .entry((o.kind_ref(), o.namespace.clone()))
                .or_default()
                .insert(o.name.clone());
        }
        let timeout = Context::budget(self.ctx.options.object_timeout, deadline);
        let cluster = self.ctx.cluster;
        let waits = groups.iter().map(|((kind, namespace), names)| async move {
            let left = cluster
                .wait_gone(kind, namespace.as_deref(), names, timeout)
                .await;
            ((kind, namespace), left)
        });
        let mut left: BTreeMap<ObjectRef, Value> = BTreeMap::new();
        let mut failure: Option<(ObjectRef, ClusterError)> = None;
        for ((kind, namespace), outcome) in futures::future::join_all(waits).await {
            match outcome {
                Ok(still) => left.extend(still.into_iter().map(|(name, last)| {
                    let o =
                        ObjectRef::new(&kind.api_version, &kind.kind, namespace.as_deref(), name);
                    (o, last)
                })),
                Err(e) => {
                    let first = deleted
                        .iter()
                        .find(|o| o.kind_ref() == *kind && o.namespace == *namespace)
                        .cloned();
                    if let Some(o) = first
                        && failure.is_none()
                    {
                        failure = Some((o, e));
                    }
                }
            }
        }
        let mut first_left = None;
        for o in deleted {
            let still = left.get(o).or_else(|| {
                // An object of a kind whose wait failed is not known to be gone either.
                failure
                    .as_ref()
                    .filter(|(f, _)| f.kind_ref() == o.kind_ref() && f.namespace == o.namespace)
                    .map(|_| &Value::Null)
            });
            match still {
                None => self.ctx.reporter.event(&Event::StepDone {
                    node: node.to_owned(),
                    object: o.clone(),
                    action: StepAction::Delete,
                }),
                Some(last) if first_left.is_none() => first_left = Some((o, last)),
                Some(_) => {}
            }
        }
        if let Some((object, source)) = failure {
            return Err(StepError::Wait {
                node: node.to_owned(),
                object: Box::new(object),
                source: Box::new(source),
            });
        }
        match first_left {
            None => Ok(()),
            Some((object, last)) => Err(Context::not_gone(
                node,
                object,
                timeout,
                Some(last).filter(|l| !l.is_null()),
            )),
        }
    }

    async fn destroy_one(
        &self,
        node: &str,
        object: &ObjectRef,
    ) -> Result<Option<Destroyed>, StepError> {
        let ctx = &self.ctx;
        let write_err = |source| StepError::Write {
            node: node.to_owned(),
            object: Box::new(object.clone()),
            source: Box::new(source),
        };
        let prepared = self
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(node.to_owned(), object.clone()));
        let (mut live, mut journaled) = match prepared {
            Some(p) => (Some(p.live), p.step),
            None => (
                self.listings
                    .live(ctx.cluster, object)
                    .await
                    .map_err(write_err)?,
                None,
            ),
        };
        let mut started = false;
        let mut attempt = 0;
        loop {
            let Some(body) = live else {
                if started {
                    // Gone while it was being deleted.
                    return Ok(Some(Destroyed::Done(StepAction::Delete)));
                }
                self.forget(node, object).await?;
                return Ok(Some(Destroyed::Done(StepAction::Forget)));
            };
            if !is_owned(&body, &ctx.plan) {
                ctx.leave(
                    object,
                    format!(
                        "it lacks the ownership marks of plan {} (label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}, annotation {PLAN_ANNOTATION}={})",
                        ctx.plan, ctx.plan
                    ),
                );
                return Ok(None);
            }
            if ObjectClass::of(object) == ObjectClass::Namespace && !self.take_foreign {
                let foreign = self
                    .foreign_objects(&object.name)
                    .await
                    .map_err(write_err)?;
                if !foreign.is_empty() {
                    let list: Vec<String> = foreign.iter().map(ToString::to_string).collect();
                    ctx.leave(
                        object,
                        format!(
                            "it holds objects this plan does not own: {} (`meshplan destroy --with-foreign-objects` deletes them too)",
                            list.join(", ")
                        ),
                    );
                    return Ok(None);
                }
            }
            if !started {
                started = true;
                ctx.reporter.event(&Event::StepStarted {
                    node: node.to_owned(),
                    object: object.clone(),
                    action: StepAction::Delete,
                });
            }
            if attempt == CHANGED_RETRIES {
                // Changed again and again: deleted as it is now, unconditionally (and waited
                // for here).
                ctx.delete_journaled(node, object, RecordChange::Remove, None)
                    .await?;
                return Ok(Some(Destroyed::Done(StepAction::Delete)));
            }
            attempt += 1;
            match ctx
                .delete_exact(node, object, &body, journaled.take(), RecordChange::Remove)
                .await?
            {
                Deletion::Pending => return Ok(Some(Destroyed::Pending)),
                Deletion::Deleted | Deletion::Gone => {
                    return Ok(Some(Destroyed::Done(StepAction::Delete)));
                }
                Deletion::Changed => {
                    live = read_live(ctx.cluster, object).await.map_err(write_err)?;
                }
            }
        }
    }

    /// Drops the record of an object that is gone (journaled).
    async fn forget(&self, node: &str, object: &ObjectRef) -> Result<(), StepError> {
        let journal = &self.ctx.journal;
        let state_err = |source| StepError::State {
            node: node.to_owned(),
            object: Box::new(object.clone()),
            source: Box::new(source),
        };
        let step = journal
            .before(node, object, crate::state::Mutation::Delete, None)
            .await
            .map_err(state_err)?;
        journal
            .after(
                step,
                node,
                object,
                crate::state::Mutation::Delete,
                Ok(None),
                RecordChange::Remove,
            )
            .await
            .map_err(state_err)
    }

    /// Objects in `namespace` that the plan does not own, were not made by a controller
    /// (no ownerReferences) and are not a namespace's automatic objects. Sorted.
    async fn foreign_objects(
        &self,
        namespace: &str,
    ) -> Result<Vec<ObjectRef>, crate::cluster::ClusterError> {
        let discovery = self.ctx.cluster.discover().await?;
        let mut seen = BTreeSet::new();
        let mut out = BTreeSet::new();
        for r in &discovery.resources {
            if !r.namespaced || !r.supports("list") || r.plural.contains('/') {
                continue;
            }
            if !seen.insert((r.group.clone(), r.kind.clone())) {
                continue;
            }
            if (r.group.as_str(), r.kind.as_str()) == ("", "Event")
                || (r.group.as_str(), r.kind.as_str()) == ("events.k8s.io", "Event")
            {
                continue;
            }
            let kind = crate::cluster::KindRef::new(r.api_version(), r.kind.clone());
            let list = match self.ctx.cluster.list(&kind, Some(namespace), None).await {
                Ok(l) => l,
                // Not allowed to look, or the kind went away meanwhile (its CRD deleted).
                Err(
                    crate::cluster::ClusterError::Forbidden { .. }
                    | crate::cluster::ClusterError::KindNotInstalled { .. }
                    | crate::cluster::ClusterError::NotFound { .. },
                ) => continue,
                Err(crate::cluster::ClusterError::Other { status, .. })
                    if matches!(status.code, 404 | 405) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            for item in list.items {
                let Some(o) = ObjectRef::from_object(&item) else {
                    continue;
                };
                let has_owner = item
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                let automatic = AUTOMATIC
                    .iter()
                    .any(|(g, k, n)| *g == o.group() && *k == o.kind && *n == o.name);
                let own = self.owned.iter().any(|x| {
                    x.group() == o.group()
                        && x.kind == o.kind
                        && x.namespace == o.namespace
                        && x.name == o.name
                });
                if !has_owner && !automatic && !own {
                    out.insert(o);
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// Deletes what the plan owns (see the module overview). Fails before deleting anything when
/// the state holds an unfinished run, a selected node has `prevent_destroy`, or the
/// dependencies form a cycle; everything after that is in the returned report.
pub async fn destroy(
    cluster: &dyn Cluster,
    store: &dyn StateStore,
    request: &DestroyRequest,
    options: &RunOptions,
    reporter: &dyn Reporter,
    interrupt: &Interrupt,
) -> Result<Summary, ApplyError> {
    ensure_no_unfinished(store)?;
    let records = store.recorded_objects()?;
    let owned: BTreeSet<ObjectRef> = records.iter().map(|r| r.object.clone()).collect();
    let listings = Listings::new(&records);
    let mut by_node: BTreeMap<String, Vec<RecordedObject>> = BTreeMap::new();
    for r in records {
        by_node.entry(r.node.clone()).or_default().push(r);
    }
    let recorded: BTreeSet<String> = by_node.keys().cloned().collect();
    let selected = request.selected_nodes(&recorded);
    let prevented = request.protected(&selected);
    if !prevented.is_empty() {
        return Err(ApplyError::PreventDestroy { nodes: prevented });
    }
    let names: Vec<String> = selected.iter().cloned().collect();
    let deps_of: BTreeMap<&str, &BTreeSet<String>> = request
        .nodes
        .iter()
        .map(|n| (n.address.as_str(), &n.depends_on))
        .collect();
    let mut units: Vec<Unit<DestroyStep>> = names
        .iter()
        .map(|name| {
            // Destroyed after every selected node that depends on it.
            let after = names
                .iter()
                .enumerate()
                .filter(|(_, other)| {
                    deps_of
                        .get(other.as_str())
                        .is_some_and(|d| d.contains(name))
                })
                .map(|(j, _)| j)
                .collect();
            let mut groups: Vec<Vec<DestroyStep>> = vec![Vec::new(), Vec::new(), Vec::new()];
            for record in by_node.remove(name).unwrap_or_default() {
                let g = match ObjectClass::of(&record.object) {
                    ObjectClass::Other => 0,
                    ObjectClass::Namespace => 1,
                    ObjectClass::Crd => 2,
                };
                groups[g].push(DestroyStep { record });
            }
            groups.retain(|g| !g.is_empty());
            Unit {
                name: name.clone(),
                deps: after,
                groups,
                timeout: None,
            }
        })
        .collect();
    add_structural_deps(&mut units);
    if let Some(nodes) = find_cycle(&units) {
        return Err(ApplyError::Cycle { nodes });
    }
    let run = RunRecord::start("destroy");
    store.commit(WriteBatch::new().begin_run(run.clone()))?;
    reporter.event(&Event::RunStarted {
        run: run.run.clone(),
        kind: RunKind::Destroy,
        nodes: units.len(),
    });
    let runner = DestroyRunner {
        ctx: Context::new(
            cluster,
            store,
            run.run.clone(),
            reporter,
            options,
            request.plan.clone(),
            interrupt.immediate().clone(),
        ),
        take_foreign: request.take_foreign,
        owned,
        listings,
        deleted: Mutex::new(BTreeMap::new()),
        prepared: Mutex::new(BTreeMap::new()),
    };
    let schedule = Schedule {
        parallelism: options.parallelism,
        stop: interrupt.graceful().child_token(),
        stop_on_failure: true,
        deadline: options.overall_timeout.map(|t| Instant::now() + t),
        reporter,
    };
    let ends = tokio::select! {
        biased;
        () = interrupt.immediate().cancelled() => None,
        ends = schedule.run(&units, &runner) => Some(ends),
    };
    let ctx = &runner.ctx;
    // The steps' queued `After` entries, before the run ends.
    ctx.journal.drain()?;
    let mut summary = Summary {
        run: run.run.clone(),
        kind: RunKind::Destroy,
        outcome: RunOutcome::Succeeded,
        root_cause: ctx.root_cause(),
        actions: ctx.take_actions(),
        rolled_back: Vec::new(),
        skipped: Vec::new(),
        left_in_place: ctx.take_left_in_place().await,
        next_step: None,
    };
    match ends {
        None => summary.outcome = RunOutcome::Aborted,
        Some(ends) => {
            summary.skipped = units
                .iter()
                .zip(&ends)
                .filter_map(|(u, e)| match e {
                    UnitEnd::Skipped(r) => Some(super::events::Skipped {
                        node: u.name.clone(),
                        reason: r.clone(),
                    }),
                    _ => None,
                })
                .collect();
            if !ends.iter().all(|e| *e == UnitEnd::Done) || interrupt.graceful().is_cancelled() {
                summary.outcome = RunOutcome::Failed;
                if summary.root_cause.is_none() {
                    summary.root_cause = Some("interrupted".to_owned());
                }
            }
        }
    }
    // Every deletion already removed its record with it: the state matches the cluster,
    // so the journal of a destroy is not kept.
    if let Err(e) = store.commit(WriteBatch::new().clear_run(&run.run)) {
        summary.outcome = RunOutcome::Failed;
        summary.root_cause = Some(format!("the run could not be closed in the state: {e}"));
    }
    if !summary.left_in_place.is_empty() && summary.outcome.is_success() {
        summary.next_step = Some(
            "some objects were left in place (listed above); their state records are kept"
                .to_owned(),
        );
    }
    Ok(finish(reporter, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(node: &str, name: &str) -> RecordedObject {
        RecordedObject {
            node: node.into(),
            object: ObjectRef::new("v1", "ConfigMap", Some("app"), name),
            defines: None,
        }
    }

    fn request(targets: Option<&[&str]>) -> DestroyRequest {
        let node = |address: &str, deps: &[&str], prevent_destroy: bool| DestroyNode {
            address: address.into(),
            depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
            prevent_destroy,
        };
        DestroyRequest {
            plan: "p".into(),
            nodes: vec![
                node("manifest.ca", &[], true),
                node("manifest.ns", &[], false),
                node("manifest.app", &["manifest.ns"], false),
            ],
            targets: targets.map(|t| t.iter().map(|a| (*a).to_owned()).collect()),
            take_foreign: false,
        }
    }

    #[test]
    fn the_preview_lists_the_selected_records_or_refuses_protected_nodes() {
        let records = vec![
            record("manifest.ca", "ca"),
            record("manifest.ns", "ns"),
            record("manifest.app", "app"),
        ];
        let e = request(None).preview(&records).unwrap_err();
        assert_eq!(
            e.to_string(),
            "refusing to destroy: prevent_destroy is set on manifest.ca"
        );
        let listed = request(Some(&["manifest.ns"])).preview(&records).unwrap();
        let names: Vec<&str> = listed.iter().map(|r| r.object.name.as_str()).collect();
        assert_eq!(names, ["ns", "app"]);
    }
}
