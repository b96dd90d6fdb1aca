//! Rollback: put every object a run touched back as it was before the run's first step on
//! it, and the state's records with it; and [`resume_unfinished`] for runs a crash or a
//! failed rollback left in the journal.
//!
//! 1. Read the run's journal from the state. Per object, the *first* `Before` entry holds the
//!    target: the live object before the run touched it (or its absence) and the state's
//!    record then (per node, when several nodes touched it). Later steps on the same object do
//!    not matter: rollback restores the net effect, reading the live object now (so a step
//!    whose outcome is unknown is handled), in the node that touched the object first.
//! 2. Build one unit per node, in reverse dependency order (reverse journal order when the
//!    dependencies are unknown); inside a node the objects in reverse order by class: other
//!    objects, then Namespaces, then CRDs.
//! 3. Per object: created → deleted and waited for until gone (objects that controllers
//!    created in reaction, such as cert-manager's Secrets, are listed, not deleted); changed
//!    → restored to the snapshot (server fields stripped, replaced under field manager
//!    meshplan); deleted → recreated. Then its state record is restored, atomically.
//! 4. When every object was restored the run is cleared; otherwise the journal stays.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::time::Instant;

use super::context::{Context, Interrupt, RunOptions, finish, resume_hint};
use super::error::{ApplyError, StepError};
use super::events::{Event, Reporter, RunKind, RunOutcome, StepAction, Summary};
use super::input::ObjectClass;
use super::journal::read_live;
use super::scheduler::{Schedule, StepRunner, Unit, UnitEnd};
use crate::cluster::{
    Cluster, ClusterError, DeleteOptions, DeleteOutcome, ObjectRef, Propagation, WriteOptions,
};
use crate::state::{
    JournalRecord, LiveSnapshot, ObjectRecord, StateStore, UnfinishedRun, WriteBatch,
};

/// Metadata fields the server owns: stripped from a snapshot before it is written back.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "selfLink",
];

/// One object to put back.
pub(crate) struct RestoreStep {
    pub object: ObjectRef,
    pub target: LiveSnapshot,
    pub previous_record: Option<ObjectRecord>,
    /// The step number of the run's first step on the object.
    pub first_step: u64,
    /// Every node whose record of the object the run may have changed, with the record
    /// before the run (an object is normally one node's; a run may move it).
    pub records: BTreeMap<String, Option<ObjectRecord>>,
}

/// The snapshot cleaned for a write: server metadata stripped.
pub fn strip_server_fields(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in SERVER_METADATA {
            meta.remove(*key);
        }
    }
    body
}

/// The object as compared for "was it changed": server fields and status stripped.
fn comparable(body: &Value) -> Value {
    let mut body = strip_server_fields(body);
    if let Some(map) = body.as_object_mut() {
        map.remove("status");
    }
    body
}

/// Objects a controller creates in reaction to `object` and that rollback leaves in place.
fn reaction_objects(object: &ObjectRef, body: Option<&Value>) -> Vec<(ObjectRef, String)> {
    match (object.group(), object.kind.as_str(), body) {
        ("cert-manager.io", "Certificate", Some(b)) => b
            .pointer("/spec/secretName")
            .and_then(Value::as_str)
            .map(|name| {
                vec![(
                    ObjectRef::new("v1", "Secret", object.namespace.as_deref(), name),
                    format!("created by cert-manager for {object}, which the rollback deleted"),
                )]
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

impl StepRunner<RestoreStep> for Context<'_> {
    fn run_step<'a>(
        &'a self,
        unit: &'a str,
        step: &'a RestoreStep,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let restored = self
                .reporting_retries(
                    unit,
                    &step.object,
                    deadline,
                    self.restore(unit, step, deadline),
                )
                .await;
            match restored {
                Ok(Some(action)) => {
                    self.took(unit, &step.object, action);
                    self.reporter.event(&Event::StepDone {
                        node: unit.to_owned(),
                        object: step.object.clone(),
                        action,
                    });
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err((action, e)) => Err(self.failed(unit, action, &e)),
            }
        })
    }
}

impl Context<'_> {
    fn restore_err(node: &str, object: &ObjectRef, source: ClusterError) -> StepError {
        StepError::Write {
            node: node.to_owned(),
            object: Box::new(object.clone()),
            source: Box::new(source),
        }
    }

    /// Puts one object back; the action taken (None: it was as before already).
    async fn restore(
        &self,
        node: &str,
        step: &RestoreStep,
        deadline: Option<Instant>,
    ) -> Result<Option<StepAction>, (StepAction, StepError)> {
        let object = &step.object;
        if object.defines_kinds() {
            // Putting a CRD back changes the cluster's kinds: forget the cached discovery.
            self.store()
                .commit(WriteBatch::new().clear_discovery())
                .map_err(|source| {
                    (
                        StepAction::Restore,
                        StepError::State {
                            node: node.to_owned(),
                            object: Box::new(object.clone()),
                            source: Box::new(source),
                        },
                    )
                })?;
        }
        let current = read_live(self.cluster, object)
            .await
            .map_err(|e| (StepAction::Restore, Self::restore_err(node, object, e)))?;
        let target = match &step.target {
            LiveSnapshot::Absent => None,
            LiveSnapshot::Present(body) => Some(self.store().reveal(body).map_err(|source| {
                (
                    StepAction::Restore,
                    StepError::State {
                        node: node.to_owned(),
                        object: Box::new(object.clone()),
                        source: Box::new(source),
                    },
                )
            })?),
        };
        let action = match (&target, &current) {
            (None, None) => None,
            (None, Some(cur)) => {
                let act = StepAction::UndoCreate;
                self.reporter.event(&Event::StepStarted {
                    node: node.to_owned(),
                    object: object.clone(),
                    action: act,
                });
                let deleted = self
                    .cluster
                    .delete(
                        object,
                        &DeleteOptions {
                            propagation: Some(Propagation::Background),
                            ..DeleteOptions::default()
                        },
                    )
                    .await
                    .map_err(|e| (act, Self::restore_err(node, object, e)))?;
                // Gone at once unless the API server said its deletion is pending.
                if deleted == DeleteOutcome::Pending {
                    self.await_gone(node, object, deadline)
                        .await
                        .map_err(|e| (act, e))?;
                }
                // What a controller made from it stays; reported at the end of the run if it
                // exists then (it may come a moment after the deletion, or go with its
                // namespace later in the rollback).
                for (reaction, reason) in reaction_objects(object, Some(cur)) {
                    self.leave(&reaction, reason);
                }
                Some(act)
            }
            (Some(snap), Some(cur)) if comparable(snap) == comparable(cur) => None,
            (Some(snap), current) => {
                let act = if current.is_some() {
                    StepAction::Restore
                } else {
                    StepAction::Recreate
                };
                self.reporter.event(&Event::StepStarted {
                    node: node.to_owned(),
                    object: object.clone(),
                    action: act,
                });
                self.put_back(node, object, snap, step.previous_record.as_ref())
                    .await
                    .map_err(|e| (act, e))?;
                Some(act)
            }
        };
        // The state's record as it was before the run.
        let store = self.store();
        let state_err = |source| {
            (
                action.unwrap_or(StepAction::Restore),
                StepError::State {
                    node: node.to_owned(),
                    object: Box::new(object.clone()),
                    source: Box::new(source),
                },
            )
        };
        let mut batch = WriteBatch::new();
        for (record_node, previous) in &step.records {
            let now = store.object(record_node, object).map_err(state_err)?;
            if now != *previous {
                batch = match previous {
                    Some(record) => batch.put_object(record.clone()),
                    None => batch.remove_object(record_node, object),
                };
            }
        }
        if !batch.ops.is_empty() {
            self.journal.commit(batch).await.map_err(state_err)?;
        }
        Ok(action)
    }
}

impl Context<'_> {
    /// Writes the snapshot back. When meshplan had applied the object before the run, its
    /// previous configuration is applied again first (server-side apply as field manager
    /// meshplan), which restores the fields and their ownership exactly; whatever still
    /// differs from the snapshot (fields of other managers) is then replaced with the
    /// snapshot itself (server fields stripped).
    async fn put_back(
        &self,
        node: &str,
        object: &ObjectRef,
        snap: &Value,
        previous: Option<&ObjectRecord>,
    ) -> Result<(), StepError> {
        let err = |e| Self::restore_err(node, object, e);
        let write = WriteOptions::default();
        if let Some(previous) = previous {
            let body = self
                .store()
                .reveal(&previous.last_applied)
                .map_err(|source| StepError::State {
                    node: node.to_owned(),
                    object: Box::new(object.clone()),
                    source: Box::new(source),
                })?;
            match self
                .cluster
                .apply(&body, &crate::cluster::ApplyOptions::default())
                .await
            {
                Ok(_) => {}
                // Someone else took fields meanwhile: the replace below restores them.
                Err(e) if e.is_field_conflict() => {}
                Err(e) => return Err(err(e)),
            }
        }
        let mut attempts = 0;
        loop {
            let current = read_live(self.cluster, object).await.map_err(err)?;
            let Some(current) = current else {
                self.cluster
                    .create(&strip_server_fields(snap), &write)
                    .await
                    .map_err(err)?;
                return Ok(());
            };
            if comparable(&current) == comparable(snap) {
                return Ok(());
            }
            let mut body = strip_server_fields(snap);
            if let (Some(meta), Some(rv)) = (
                body.get_mut("metadata").and_then(Value::as_object_mut),
                current.pointer("/metadata/resourceVersion"),
            ) {
                meta.insert("resourceVersion".to_owned(), rv.clone());
            }
            match self.cluster.replace(&body, &write).await {
                Ok(_) => return Ok(()),
                // Changed meanwhile (a controller): read again and retry.
                Err(ClusterError::Conflict { conflicts, .. })
                    if conflicts.is_empty() && attempts < 3 =>
                {
                    attempts += 1;
                }
                Err(e) => return Err(err(e)),
            }
        }
    }
}

/// The objects of a run to restore, per node, with the nodes in the order they were first
/// touched.
fn restore_plan(run: &UnfinishedRun) -> Vec<(String, Vec<RestoreStep>)> {
    // Per object: the first Before of the run (whatever the node), in that node.
    let mut first: BTreeMap<ObjectRef, (String, RestoreStep)> = BTreeMap::new();
    for entry in &run.entries {
        let JournalRecord::Before { live } = &entry.record else {
            continue;
        };
        let previous = entry.previous_record.as_deref().cloned();
        match first.get_mut(&entry.object) {
            Some((node, step)) => {
                step.records
                    .entry(entry.node.clone())
                    .or_insert_with(|| previous.clone());
                if entry.step < step.first_step {
                    *node = entry.node.clone();
                    step.first_step = entry.step;
                    step.target = live.clone();
                    step.previous_record = previous.clone();
                    step.records.insert(entry.node.clone(), previous);
                }
            }
            None => {
                first.insert(
                    entry.object.clone(),
                    (
                        entry.node.clone(),
                        RestoreStep {
                            object: entry.object.clone(),
                            target: live.clone(),
                            previous_record: previous.clone(),
                            first_step: entry.step,
                            records: BTreeMap::from([(entry.node.clone(), previous)]),
                        },
                    ),
                );
            }
        }
    }
    let mut nodes: BTreeMap<String, Vec<RestoreStep>> = BTreeMap::new();
    for (_, (node, step)) in first {
        nodes.entry(node).or_default().push(step);
    }
    let mut out: Vec<(String, Vec<RestoreStep>)> = nodes.into_iter().collect();
    out.sort_by_key(|(_, steps)| steps.iter().map(|s| s.first_step).min().unwrap_or(0));
    out
}

/// Rollback units: per node, groups (others, Namespaces, CRDs), each in reverse step order;
/// a node waits for the nodes that depend on it (`deps`: node → its dependencies), or, when
/// unknown, for every node first touched after it.
fn restore_units(
    plan: Vec<(String, Vec<RestoreStep>)>,
    deps: Option<&BTreeMap<String, Vec<String>>>,
) -> Vec<Unit<RestoreStep>> {
    let names: Vec<String> = plan.iter().map(|(n, _)| n.clone()).collect();
    let mut units = Vec::new();
    for (i, (node, mut steps)) in plan.into_iter().enumerate() {
        steps.sort_by_key(|s| std::cmp::Reverse(s.first_step));
        let mut groups: Vec<Vec<RestoreStep>> = vec![Vec::new(), Vec::new(), Vec::new()];
        for s in steps {
            let g = match ObjectClass::of(&s.object) {
                ObjectClass::Other => 0,
                ObjectClass::Namespace => 1,
                ObjectClass::Crd => 2,
            };
            groups[g].push(s);
        }
        groups.retain(|g| !g.is_empty());
        let after: Vec<usize> = match deps {
            Some(deps) => names
                .iter()
                .enumerate()
                .filter(|(_, other)| deps.get(*other).is_some_and(|d| d.contains(&node)))
                .map(|(j, _)| j)
                .collect(),
            None => (i + 1..names.len()).collect(),
        };
        units.push(Unit {
            name: node,
            deps: after,
            groups,
            timeout: None,
        });
    }
    add_structural_deps(&mut units);
    units
}

/// Deleting CRDs waits for units with objects of their kinds; deleting Namespaces waits for
/// units with objects in them.
pub(crate) fn add_structural_deps<S: HasObject>(units: &mut [Unit<S>]) {
    // Per unit: the (group, kind)s of its objects and the namespaces they are in.
    type Holds = (BTreeSet<(String, String)>, BTreeSet<String>);
    let holds: Vec<Holds> = units
        .iter()
        .map(|u| {
            let mut kinds = BTreeSet::new();
            let mut namespaces = BTreeSet::new();
            for s in u.groups.iter().flatten() {
                let o = s.object();
                kinds.insert((o.group().to_owned(), o.kind.clone()));
                if let Some(ns) = &o.namespace {
                    namespaces.insert(ns.clone());
                }
            }
            (kinds, namespaces)
        })
        .collect();
    for i in 0..units.len() {
        let mut extra = Vec::new();
        for s in units[i].groups.iter().flatten() {
            let o = s.object();
            for (j, (kinds, namespaces)) in holds.iter().enumerate() {
                if i == j {
                    continue;
                }
                let needed = match ObjectClass::of(o) {
                    ObjectClass::Crd => s.crd_kind().is_some_and(|gk| kinds.contains(&gk)),
                    ObjectClass::Namespace => namespaces.contains(&o.name),
                    ObjectClass::Other => false,
                };
                if needed {
                    extra.push(j);
                }
            }
        }
        // Never create a cycle: only add an edge the other unit does not already imply.
        for j in extra {
            if !units[j].deps.contains(&i) && !units[i].deps.contains(&j) {
                units[i].deps.push(j);
            }
        }
    }
}

/// A step about one object.
pub(crate) trait HasObject {
    fn object(&self) -> &ObjectRef;
    /// For a CRD: the (group, kind) it defines, when known.
    fn crd_kind(&self) -> Option<(String, String)>;
}

impl HasObject for RestoreStep {
    fn object(&self) -> &ObjectRef {
        &self.object
    }
    fn crd_kind(&self) -> Option<(String, String)> {
        match &self.target {
            LiveSnapshot::Present(b) => crate::state::crd_defines(b.redacted()),
            LiveSnapshot::Absent => None,
        }
    }
}

/// Rolls back the run `run` of the state (read from its journal) through the scheduler,
/// then clears the run. The error message when some object could not be restored (the
/// journal then stays).
pub(crate) async fn roll_back_run(
    ctx: &Context<'_>,
    run: &str,
    deps: Option<&BTreeMap<String, Vec<String>>>,
    interrupt: &Interrupt,
) -> Result<(), String> {
    let store = ctx.store();
    let unfinished = store
        .unfinished_runs()
        .map_err(|e| format!("the journal could not be read: {e}"))?;
    let Some(journal) = unfinished.into_iter().find(|r| r.run.run == run) else {
        return Ok(());
    };
    let units = restore_units(restore_plan(&journal), deps);
    let schedule = Schedule {
        parallelism: ctx.options.parallelism,
        stop: tokio_util::sync::CancellationToken::new(),
        stop_on_failure: false,
        deadline: None,
        reporter: ctx.reporter,
    };
    let ends = tokio::select! {
        biased;
        () = interrupt.immediate().cancelled() => {
            return Err("stopped at once by a second interrupt".to_owned());
        }
        ends = schedule.run(&units, ctx) => ends,
    };
    ctx.journal
        .drain()
        .map_err(|e| format!("the journal could not be written: {e}"))?;
    let failures: Vec<String> = units
        .iter()
        .zip(&ends)
        .filter_map(|(u, e)| match e {
            UnitEnd::Done => None,
            UnitEnd::Failed(m) => Some(m.clone()),
            UnitEnd::Stopped => Some(format!("{}: stopped", u.name)),
            UnitEnd::Skipped(r) => Some(format!("{}: not rolled back ({r})", u.name)),
        })
        .collect();
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    store
        .commit(WriteBatch::new().clear_run(run))
        .map(|_| ())
        .map_err(|e| format!("the run could not be cleared from the journal: {e}"))
}

/// How to finish an unfinished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeChoice {
    /// Keep what the run did: drop the journal, fixing the state's records of steps whose
    /// outcome is unknown from the live objects. A following apply converges the rest.
    Complete,
    /// Put everything the run touched back as it was before it.
    RollBack,
}

/// Finishes every unfinished run of the state (oldest first) as `choice` says; one summary
/// per run. A rollback that fails again keeps the journal (the summary says so).
pub async fn resume_unfinished(
    store: &dyn StateStore,
    cluster: &dyn Cluster,
    choice: ResumeChoice,
    options: &RunOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<Summary>, ApplyError> {
    let runs = store.unfinished_runs()?;
    let mut out = Vec::new();
    for run in runs {
        let id = run.run.run.clone();
        reporter.event(&Event::RunStarted {
            run: id.clone(),
            kind: RunKind::Rollback,
            nodes: restore_plan(&run).len(),
        });
        let ctx = Context::new(
            cluster,
            store,
            id.clone(),
            reporter,
            options,
            String::new(),
            tokio_util::sync::CancellationToken::new(),
        );
        let mut summary = Summary {
            run: id.clone(),
            kind: RunKind::Rollback,
            outcome: RunOutcome::Succeeded,
            root_cause: None,
            actions: Vec::new(),
            rolled_back: Vec::new(),
            skipped: Vec::new(),
            left_in_place: Vec::new(),
            next_step: None,
        };
        match choice {
            ResumeChoice::RollBack => {
                reporter.event(&Event::RollbackStarted {
                    reason: format!("finishing the unfinished {} run {id}", run.run.command),
                });
                let result = roll_back_run(&ctx, &id, None, &Interrupt::new()).await;
                summary.rolled_back = ctx.take_actions();
                summary.left_in_place = ctx.take_left_in_place().await;
                if let Err(message) = result {
                    summary.outcome = RunOutcome::RollbackFailed;
                    summary.root_cause = Some(message);
                    summary.next_step = Some(resume_hint(&id));
                } else {
                    summary.outcome = RunOutcome::RolledBack;
                }
            }
            ResumeChoice::Complete => {
                if let Err(message) = complete_run(&ctx, &run).await {
                    summary.outcome = RunOutcome::Failed;
                    summary.root_cause = Some(message);
                    summary.next_step = Some(resume_hint(&id));
                }
            }
        }
        out.push(finish(reporter, summary));
    }
    Ok(out)
}

/// Keeps what a run did: records of steps whose outcome is unknown are fixed from the live
/// objects (a deleted object loses its record; an applied one keeps the record it had, so
/// the next plan compares it afresh), then the run is cleared.
async fn complete_run(ctx: &Context<'_>, run: &UnfinishedRun) -> Result<(), String> {
    let store = ctx.store();
    let mut batch = WriteBatch::new();
    for open in run.open_steps() {
        let live = read_live(ctx.cluster, &open.object)
            .await
            .map_err(|e| format!("{}: {e}", open.object))?;
        if live.is_none()
            && store
                .object(&open.node, &open.object)
                .map_err(|e| e.to_string())?
                .is_some()
        {
            batch = batch.remove_object(&open.node, &open.object);
        }
    }
    store
        .commit(batch.clear_run(&run.run.run))
        .map(|_| ())
        .map_err(|e| format!("the run could not be cleared from the journal: {e}"))
}
