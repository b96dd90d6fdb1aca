//! What every run (apply, rollback, destroy) shares: its [`RunOptions`], the [`Interrupt`]
//! that stops it, and the [`Context`] its steps run in, with the journaled primitives (apply,
//! delete, wait until gone or ready) that the forward apply, the rollback and destroy build on.
//!
//! The step kinds live with their runs ([`engine`](super::engine),
//! [`rollback`](super::rollback), [`destroy`](super::destroy)); they all use this module and
//! none of them uses another's context code, so the arrows between them go one way.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{ApplyError, StepError};
use super::events::{ActionTaken, Event, LeftInPlace, Reporter, StepAction, Summary};
use super::journal::{Journal, RecordChange, read_live};
use super::readiness::{Readiness, Rule, job_timeout_hint};
use super::snapshots::Snapshots;
use crate::cluster::{
    self, Cluster, ClusterError, DeleteOptions, DeleteOutcome, ObjectRef, Propagation, WaitOutcome,
};
use crate::state::{Mutation, StateStore};

/// How to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// How many steps (writes and waits) at once (`--parallelism`).
    pub parallelism: usize,
    /// How long one object may take to become ready (or to be deleted), unless its node
    /// says otherwise (`wait.timeout`).
    pub object_timeout: Duration,
    /// Upper bound for the whole run (rollback not included).
    pub overall_timeout: Option<Duration>,
    /// Take fields other managers own (`--force-conflicts`).
    pub force_conflicts: bool,
    /// Leave everything in place on failure (`--no-rollback`).
    pub no_rollback: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            parallelism: 10,
            object_timeout: Duration::from_secs(300),
            overall_timeout: None,
            force_conflicts: false,
            no_rollback: false,
        }
    }
}

/// Ctrl-C (and SIGTERM, SIGHUP), as the engine sees it: the first
/// [`Interrupt::stop_gracefully`] stops new steps and lets in-flight ones finish, then rolls
/// back; [`Interrupt::stop_now`] abandons in-flight steps at once and keeps the journal.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    graceful: CancellationToken,
    immediate: CancellationToken,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stop_gracefully(&self) {
        self.graceful.cancel();
    }

    pub fn stop_now(&self) {
        self.graceful.cancel();
        self.immediate.cancel();
    }

    /// The first call stops gracefully, the next ones at once (what Ctrl-C does).
    pub fn press(&self) {
        if self.graceful.is_cancelled() {
            self.stop_now();
        } else {
            self.stop_gracefully();
        }
    }

    /// Presses on every Ctrl-C until the returned task is aborted; on Unix also on every
    /// SIGTERM (what CI cancellation, `timeout` and Kubernetes send) and SIGHUP (a closed
    /// terminal), in any mix: the first signal stops gracefully, the next one at once.
    ///
    /// On Unix the handlers are installed before this returns (a signal right after it is not
    /// left to the default action, which ends the process without a rollback), and one stream
    /// per signal receives them from then on (none is missed between two presses; two of the
    /// same kind that arrive before the first one is handled count as one).
    pub fn listen_for_signals(&self) -> tokio::task::JoinHandle<()> {
        let interrupt = self.clone();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{Signal, SignalKind, signal};
            let mut int = signal(SignalKind::interrupt()).ok();
            let mut term = signal(SignalKind::terminate()).ok();
            let mut hup = signal(SignalKind::hangup()).ok();
            /// The next signal of `stream`; never, without one.
            async fn next(stream: &mut Option<Signal>) -> Option<()> {
                match stream {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            }
            if int.is_some() {
                return tokio::spawn(async move {
                    loop {
                        let got = tokio::select! {
                            got = next(&mut int) => got,
                            got = next(&mut term) => got,
                            got = next(&mut hup) => got,
                        };
                        if got.is_none() {
                            break;
                        }
                        interrupt.press();
                    }
                });
            }
        }
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                interrupt.press();
            }
        })
    }

    pub(crate) fn graceful(&self) -> &CancellationToken {
        &self.graceful
    }

    pub(crate) fn immediate(&self) -> &CancellationToken {
        &self.immediate
    }
}

/// How many `Before` entries [`Context::prepare_writes`] journals in one commit.
pub(crate) const PREPARED_PER_COMMIT: usize = 128;

/// What one run shares with its steps.
pub(crate) struct Context<'a> {
    pub cluster: &'a dyn Cluster,
    pub journal: Journal<'a>,
    pub reporter: &'a dyn Reporter,
    pub options: &'a RunOptions,
    pub plan: String,
    pub actions: Mutex<Vec<ActionTaken>>,
    pub root_cause: Mutex<Option<String>>,
    pub left_in_place: Mutex<Vec<LeftInPlace>>,
    pub immediate: CancellationToken,
    /// Cancelled by a graceful interrupt: readiness waits end early (writes still finish).
    /// Replaced by a fresh token before a rollback, whose waits must run to their end.
    pub interrupted: Mutex<CancellationToken>,
    /// Where the snapshots journaled before writes come from (listings, for an apply).
    pub snapshots: Snapshots,
    /// The steps of `Before` entries committed for a whole group ahead of its writes, by
    /// node and object ([`Context::prepare_writes`]); taken by the write.
    pub prepared: Mutex<BTreeMap<(String, ObjectRef), u64>>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        cluster: &'a dyn Cluster,
        store: &'a dyn StateStore,
        run: String,
        reporter: &'a dyn Reporter,
        options: &'a RunOptions,
        plan: String,
        immediate: CancellationToken,
    ) -> Self {
        Self {
            cluster,
            journal: Journal::new(store, run, 1),
            reporter,
            options,
            plan,
            actions: Mutex::new(Vec::new()),
            root_cause: Mutex::new(None),
            left_in_place: Mutex::new(Vec::new()),
            immediate,
            interrupted: Mutex::new(CancellationToken::new()),
            snapshots: Snapshots::none(),
            prepared: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn store(&self) -> &'a dyn StateStore {
        self.journal.store
    }

    pub(crate) fn took(&self, node: &str, object: &ObjectRef, action: StepAction) {
        if let Ok(mut a) = self.actions.lock() {
            a.push(ActionTaken {
                node: node.to_owned(),
                object: object.clone(),
                action,
            });
        }
    }

    /// Notes an object left in place on purpose. It is reported (an event, and the summary)
    /// by [`Self::take_left_in_place`] at the end of the run, if it is still there then.
    pub(crate) fn leave(&self, object: &ObjectRef, reason: String) {
        if let Ok(mut l) = self.left_in_place.lock() {
            l.push(LeftInPlace {
                object: object.clone(),
                reason,
            });
        }
    }

    /// Records the failure (the first one is the root cause) and returns its message.
    pub(crate) fn failed(&self, node: &str, action: StepAction, error: &StepError) -> String {
        let message = error.full_message();
        self.reporter.event(&Event::StepFailed {
            node: node.to_owned(),
            object: error.object().clone(),
            action,
            message: message.clone(),
        });
        if let Ok(mut root) = self.root_cause.lock()
            && root.is_none()
        {
            *root = Some(message.clone());
        }
        message
    }

    pub(crate) fn root_cause(&self) -> Option<String> {
        self.root_cause.lock().ok().and_then(|r| r.clone())
    }

    pub(crate) fn take_actions(&self) -> Vec<ActionTaken> {
        self.actions
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }

    /// The objects left in place that are still there at the end of the run, each reported
    /// now: a later step of the same run may have removed one (a Certificate's Secret goes
    /// with its namespace). An object that cannot be read is reported as left; so is every
    /// object of a run stopped at once (nothing is read then).
    pub(crate) async fn take_left_in_place(&self) -> Vec<LeftInPlace> {
        let noted = self
            .left_in_place
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default();
        let mut out = Vec::new();
        for left in noted {
            if !self.immediate.is_cancelled()
                && matches!(read_live(self.cluster, &left.object).await, Ok(None))
            {
                continue;
            }
            self.reporter.event(&Event::LeftInPlace {
                object: left.object.clone(),
                reason: left.reason.clone(),
            });
            out.push(left);
        }
        out
    }

    /// Runs `step` (a step of `node` on `object`) with the retries of its cluster requests
    /// reported as [`Event::Retrying`], and none of them going past `deadline`.
    pub(crate) async fn reporting_retries<T>(
        &self,
        node: &str,
        object: &ObjectRef,
        deadline: Option<Instant>,
        step: impl Future<Output = T>,
    ) -> T {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let scope = cluster::RequestScope {
            deadline,
            notices: Some(tx),
        };
        let step = cluster::with_request_scope(scope, step);
        tokio::pin!(step);
        let report = |notice: cluster::RetryNotice| {
            self.reporter.event(&Event::Retrying {
                node: node.to_owned(),
                object: object.clone(),
                request: notice.request,
                reason: notice.reason,
                attempt: notice.attempt,
                attempts: notice.attempts,
                delay_ms: u64::try_from(notice.delay.as_millis()).unwrap_or(u64::MAX),
            });
        };
        loop {
            tokio::select! {
                biased;
                Some(notice) = rx.recv() => report(notice),
                out = &mut step => {
                    while let Ok(notice) = rx.try_recv() {
                        report(notice);
                    }
                    return out;
                }
            }
        }
    }

    /// The time left before `deadline`, capped by `cap`.
    pub(crate) fn budget(cap: Duration, deadline: Option<Instant>) -> Duration {
        match deadline {
            Some(d) => cap.min(d.saturating_duration_since(Instant::now())),
            None => cap,
        }
    }

    pub(super) fn write_err(node: &str, object: &ObjectRef, source: ClusterError) -> StepError {
        StepError::Write {
            node: node.to_owned(),
            object: Box::new(object.clone()),
            source: Box::new(source),
        }
    }

    pub(super) fn state_err(
        node: &str,
        object: &ObjectRef,
        source: crate::state::StateError,
    ) -> StepError {
        StepError::State {
            node: node.to_owned(),
            object: Box::new(object.clone()),
            source: Box::new(source),
        }
    }

    /// The object before a write of `node` (None: absent), for the journal's snapshot.
    pub(crate) async fn live_before_write(
        &self,
        node: &str,
        object: &ObjectRef,
    ) -> Result<Option<Value>, ClusterError> {
        self.snapshots
            .before_write(self.cluster, node, object)
            .await
    }

    /// Journals the `Before` entries of the server-side applies of `objects` of `node`
    /// (objects whose snapshots come from a listing) ahead of the writes, in one commit per
    /// [`PREPARED_PER_COMMIT`] objects instead of about one per write.
    /// [`Context::apply_journaled`] then takes its step from here. Nothing is prepared when a
    /// snapshot cannot be read or the commit fails: each write then journals its own entry
    /// (and meets the error itself).
    pub(crate) async fn prepare_writes(&self, node: &str, objects: &[&ObjectRef]) {
        let mut covered = Vec::with_capacity(objects.len());
        for object in objects {
            if self.snapshots.covers(node, object) {
                covered.push(*object);
            }
        }
        let objects = covered;
        if objects.len() < 2 {
            return;
        }
        // In commits of at most PREPARED_PER_COMMIT entries: one commit of a whole group
        // (merged with the other nodes' groups) would hold tens of megabytes at once. The
        // reads one after the other: the first waits for the listing, the others take their
        // object from it.
        for chunk in objects.chunks(PREPARED_PER_COMMIT) {
            let mut lives = Vec::with_capacity(chunk.len());
            for object in chunk {
                match self.live_before_write(node, object).await {
                    Ok(live) => lives.push(live),
                    Err(_) => return,
                }
            }
            let mut entries = Vec::with_capacity(chunk.len());
            for (object, live) in chunk.iter().zip(&lives) {
                entries.push((*object, live.as_ref()));
            }
            let Ok(steps) = self
                .journal
                .before_all(node, Mutation::Apply, &entries)
                .await
            else {
                return;
            };
            let mut prepared = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
            for (object, step) in chunk.iter().zip(steps) {
                prepared.insert((node.to_owned(), (*object).clone()), step);
            }
        }
    }

    /// Server-side apply of `body` (journaled), retrying while an admission webhook is not
    /// reachable yet, within `deadline`. Returns the applied object.
    pub(crate) async fn apply_journaled(
        &self,
        node: &str,
        object: &ObjectRef,
        body: &Value,
        change: RecordChange,
        deadline: Option<Instant>,
    ) -> Result<Value, StepError> {
        let prepared = self
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(node.to_owned(), object.clone()));
        let step = match prepared {
            Some(step) => step,
            None => {
                let live = self
                    .live_before_write(node, object)
                    .await
                    .map_err(|e| Self::write_err(node, object, e))?;
                self.journal
                    .before(node, object, Mutation::Apply, live.as_ref())
                    .await
                    .map_err(|e| Self::state_err(node, object, e))?
            }
        };
        let options = cluster::ApplyOptions {
            force: self.options.force_conflicts,
            ..cluster::ApplyOptions::default()
        };
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        let result = loop {
            match self.cluster.apply(body, &options).await {
                // Fields meshplan itself holds as an `Update` manager (left by a rollback's
                // replace): taken back as the `Apply` manager.
                Err(ClusterError::Conflict { conflicts, .. })
                    if !options.force
                        && !conflicts.is_empty()
                        && conflicts
                            .iter()
                            .all(|c| c.manager == cluster::FIELD_MANAGER) =>
                {
                    let forced = cluster::ApplyOptions {
                        force: true,
                        ..options.clone()
                    };
                    break self
                        .cluster
                        .apply(body, &forced)
                        .await
                        .map_err(|e| Self::write_err(node, object, e));
                }
                Err(e) if e.is_webhook_unavailable() => {
                    let limit = deadline.unwrap_or(started + self.options.object_timeout);
                    let left = limit.saturating_duration_since(Instant::now());
                    if left.is_zero() || self.immediate.is_cancelled() {
                        break Err(StepError::WebhookUnavailable {
                            node: node.to_owned(),
                            object: Box::new(object.clone()),
                            waited: started.elapsed(),
                            message: e.to_string(),
                        });
                    }
                    self.reporter.event(&Event::Waiting {
                        node: node.to_owned(),
                        object: object.clone(),
                        reason: format!("the admission webhook is not reachable yet ({e})"),
                    });
                    tokio::select! {
                        () = tokio::time::sleep(backoff.min(left)) => {}
                        () = self.immediate.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) if e.is_field_conflict() => {
                    let conflicts = match &e {
                        ClusterError::Conflict { conflicts, .. } => conflicts.clone(),
                        _ => Vec::new(),
                    };
                    break Err(StepError::Conflict {
                        node: node.to_owned(),
                        object: Box::new(object.clone()),
                        conflicts,
                    });
                }
                Err(e) => break Err(Self::write_err(node, object, e)),
                Ok(v) => break Ok(v),
            }
        };
        let outcome = match &result {
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(e.full_message()),
        };
        self.journal
            .after(step, node, object, Mutation::Apply, outcome, change)
            .await
            .map_err(|e| Self::state_err(node, object, e))?;
        result
    }

    /// Deletes the object (journaled) and, when the API server says its deletion is pending
    /// (finalizers), waits until it is gone. Returns whether it existed.
    pub(crate) async fn delete_journaled(
        &self,
        node: &str,
        object: &ObjectRef,
        change: RecordChange,
        deadline: Option<Instant>,
    ) -> Result<bool, StepError> {
        let live = self
            .live_before_write(node, object)
            .await
            .map_err(|e| Self::write_err(node, object, e))?;
        let step = self
            .journal
            .before(node, object, Mutation::Delete, live.as_ref())
            .await
            .map_err(|e| Self::state_err(node, object, e))?;
        let result = if live.is_some() {
            self.cluster
                .delete(
                    object,
                    &DeleteOptions {
                        propagation: Some(Propagation::Background),
                        ..DeleteOptions::default()
                    },
                )
                .await
                .map_err(|e| Self::write_err(node, object, e))
        } else {
            Ok(DeleteOutcome::NotFound)
        };
        let outcome = match &result {
            Ok(_) => Ok(None),
            Err(e) => Err(e.full_message()),
        };
        self.journal
            .after(step, node, object, Mutation::Delete, outcome, change)
            .await
            .map_err(|e| Self::state_err(node, object, e))?;
        let outcome = result?;
        if outcome == DeleteOutcome::Pending {
            self.await_gone(node, object, deadline).await?;
        }
        Ok(outcome.existed())
    }

    /// Deletes the object as `live` shows it (journaled with `live` as its snapshot): the
    /// delete is conditional on `live`'s resourceVersion, so the journal holds exactly what
    /// was deleted. Does not wait until it is gone ([`Deletion::Pending`]: it is not yet). [`Deletion::Changed`] when the object
    /// changed since `live` was read (nothing was deleted: read it again and retry).
    /// `journaled`: the step whose committed `Before` entry already records `live`.
    pub(crate) async fn delete_exact(
        &self,
        node: &str,
        object: &ObjectRef,
        live: &Value,
        journaled: Option<u64>,
        change: RecordChange,
    ) -> Result<Deletion, StepError> {
        let step = match journaled {
            Some(step) => step,
            None => self
                .journal
                .before(node, object, Mutation::Delete, Some(live))
                .await
                .map_err(|e| Self::state_err(node, object, e))?,
        };
        let resource_version = live
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let result = self
            .cluster
            .delete(
                object,
                &DeleteOptions {
                    propagation: Some(Propagation::Background),
                    resource_version,
                    ..DeleteOptions::default()
                },
            )
            .await;
        let (outcome, deletion) = match result {
            Ok(DeleteOutcome::Gone) => (Ok(None), Ok(Deletion::Deleted)),
            Ok(DeleteOutcome::Pending) => (Ok(None), Ok(Deletion::Pending)),
            // Gone meanwhile: what the step wanted.
            Ok(DeleteOutcome::NotFound) => (Ok(None), Ok(Deletion::Gone)),
            Err(ClusterError::Conflict { conflicts, .. }) if conflicts.is_empty() => (
                Err("it changed since it was read (not deleted)".to_owned()),
                Ok(Deletion::Changed),
            ),
            Err(e) => {
                let e = Self::write_err(node, object, e);
                (Err(e.full_message()), Err(e))
            }
        };
        self.journal
            .after(step, node, object, Mutation::Delete, outcome, change)
            .await
            .map_err(|e| Self::state_err(node, object, e))?;
        deletion
    }

    /// Waits until the object no longer exists.
    pub(crate) async fn await_gone(
        &self,
        node: &str,
        object: &ObjectRef,
        deadline: Option<Instant>,
    ) -> Result<(), StepError> {
        let timeout = Self::budget(self.options.object_timeout, deadline);
        let gone = |o: Option<&Value>| o.is_none();
        match self.cluster.wait_for(object, &gone, timeout).await {
            Ok(WaitOutcome::Met(_)) => Ok(()),
            Ok(WaitOutcome::TimedOut(last)) => {
                Err(Self::not_gone(node, object, timeout, last.as_ref()))
            }
            Err(e) => Err(StepError::Wait {
                node: node.to_owned(),
                object: Box::new(object.clone()),
                source: Box::new(e),
            }),
        }
    }

    /// The error of an object still there after `timeout` (`last`: as last seen).
    pub(crate) fn not_gone(
        node: &str,
        object: &ObjectRef,
        timeout: Duration,
        last: Option<&Value>,
    ) -> StepError {
        let finalizers = last
            .and_then(|o| o.pointer("/metadata/finalizers"))
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|f| !f.is_empty());
        StepError::TimedOut {
            node: node.to_owned(),
            object: Box::new(object.clone()),
            timeout,
            waited_for: "the object to be deleted".to_owned(),
            last_seen: match finalizers {
                Some(f) => format!("still there, held by finalizers {f}"),
                None => "still there".to_owned(),
            },
            hint: None,
        }
    }

    /// Waits until `rule` holds for the object (watch-based), reporting what it waits for
    /// whenever that changes.
    pub(crate) async fn await_ready(
        &self,
        node: &str,
        object: &ObjectRef,
        rule: &Rule,
        timeout: Duration,
    ) -> Result<(), StepError> {
        // The condition must own what it uses: it sends each new reason through a watch
        // channel, and this function reports them while the wait runs.
        let (tx, mut rx) = tokio::sync::watch::channel(String::new());
        let owned_rule = rule.clone();
        let condition = move |o: Option<&Value>| match owned_rule.evaluate(o) {
            Readiness::Waiting(reason) => {
                tx.send_if_modified(|last| {
                    if *last == reason {
                        false
                    } else {
                        *last = reason;
                        true
                    }
                });
                false
            }
            Readiness::Ready | Readiness::Failed(_) => true,
        };
        let interrupted = self
            .interrupted
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        let wait = self.cluster.wait_for(object, &condition, timeout);
        tokio::pin!(wait);
        let outcome = loop {
            tokio::select! {
                outcome = &mut wait => break outcome,
                () = interrupted.cancelled() => {
                    return Err(StepError::Interrupted {
                        node: node.to_owned(),
                        object: Box::new(object.clone()),
                        waited_for: rule.describe(),
                    });
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        break (&mut wait).await;
                    }
                    let reason = rx.borrow_and_update().clone();
                    self.reporter.event(&Event::Waiting {
                        node: node.to_owned(),
                        object: object.clone(),
                        reason: format!("waiting for {}: {reason}", rule.describe()),
                    });
                }
            }
        };
        let outcome = outcome.map_err(|source| StepError::Wait {
            node: node.to_owned(),
            object: Box::new(object.clone()),
            source: Box::new(source),
        })?;
        let last = outcome.object().cloned();
        match (outcome.is_met(), rule.evaluate(last.as_ref())) {
            (_, Readiness::Ready) => Ok(()),
            (_, Readiness::Failed(reason)) => Err(StepError::NotReady {
                node: node.to_owned(),
                object: Box::new(object.clone()),
                // The object's own words (a condition's message) may quote anything.
                reason: meshplan_k8s::text::clip_message(&reason),
            }),
            (_, Readiness::Waiting(reason)) => {
                let hint = match (&last, object.group(), object.kind.as_str()) {
                    (Some(job), "batch", "Job") => {
                        let ns = match &object.namespace {
                            Some(ns) => {
                                let ns_ref = ObjectRef::new("v1", "Namespace", None, ns.clone());
                                self.cluster.get(&ns_ref).await.ok().flatten()
                            }
                            None => None,
                        };
                        job_timeout_hint(job, ns.as_ref())
                    }
                    _ => None,
                };
                Err(StepError::TimedOut {
                    node: node.to_owned(),
                    object: Box::new(object.clone()),
                    timeout,
                    waited_for: rule.describe(),
                    last_seen: meshplan_k8s::text::clip_message(&reason),
                    hint,
                })
            }
        }
    }
}

/// What [`Context::delete_exact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deletion {
    /// Deleted, and gone at once (the API server said so).
    Deleted,
    /// Deleted, and still there until its finalizers are done: wait until it is gone.
    Pending,
    /// It was already gone.
    Gone,
    /// It changed since it was read: not deleted.
    Changed,
}

/// Refuses to start when the state holds an unfinished run.
pub(crate) fn ensure_no_unfinished(store: &dyn StateStore) -> Result<(), ApplyError> {
    if let Some(run) = store.unfinished_runs()?.into_iter().next() {
        return Err(ApplyError::UnfinishedRun {
            run: run.run.run,
            command: run.run.command,
            started_at: run.run.started_at.to_string(),
        });
    }
    Ok(())
}

/// What to tell the user when a run left a journal.
pub(crate) fn resume_hint(run: &str) -> String {
    format!(
        "the journal of run {run} is kept: the next `meshplan apply` finishes it (complete it or roll it back), or run `meshplan rollback`"
    )
}

pub(crate) fn finish(reporter: &dyn Reporter, summary: Summary) -> Summary {
    reporter.event(&Event::Finished {
        summary: summary.clone(),
    });
    summary
}
