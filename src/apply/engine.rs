//! The forward apply: the executor's steps (server-side apply, replace, prune, adopt, forget,
//! hooks), each journaled and waited for, and the run around them.
//!
//! 1. Refuse to start over an unfinished run (it must be completed or rolled back first).
//! 2. Begin a run in the journal; build one unit per node: pre-hooks (one group each, by
//!    weight), CRDs (applied, waited for `Established`), Namespaces (`Active`), the other
//!    objects (applied concurrently, each waited for by its readiness rule), post-hooks, then
//!    the node's deletions (others, Namespaces, CRDs). Hooks run only when the node changes.
//! 3. Schedule the units ([`scheduler`](super::scheduler)). On a failure or a first interrupt
//!    nothing new starts and in-flight steps finish; then, unless `no_rollback`, the run is
//!    rolled back through the same scheduler ([`rollback`](super::rollback)). A second
//!    interrupt abandons in-flight steps at once and keeps the journal.
//! 4. On success the run is cleared from the journal; the report lists every action.
//!
//! [`apply_phase`] runs one phase of a [`PhasedRun`] (`meshplan apply` re-plans between
//! phases): all phases journal into the same run, a failure in any of them rolls back the
//! whole run, and the caller clears the journal after the last phase. [`apply`] is a run of
//! one phase.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::context::{Context, Interrupt, RunOptions, ensure_no_unfinished, finish, resume_hint};
use super::error::{ApplyError, StepError};
use super::events::{
    ActionTaken, Event, Reporter, RunKind, RunOutcome, Skipped, StepAction, Summary,
};
use super::input::{ApplyInput, ApplyNode, ApplyObject, HookObject, ObjectAction, ObjectClass};
use super::journal::{Journal, RecordChange};
use super::readiness::{Readiness, Rule};
use super::rollback;
use super::scheduler::{Schedule, StepRunner, Unit, UnitEnd, find_cycle, indices};
use super::snapshots::Snapshots;
use crate::cluster::{Cluster, ObjectRef};
use crate::render::{HookDeletePolicy, HookPhase};
use crate::state::{Mutation, RunRecord, StateStore, WriteBatch, digest_json};

/// One forward step.
pub(crate) enum ForwardStep {
    Object {
        object: ApplyObject,
        rule: Option<Rule>,
        wait_timeout: Duration,
    },
    Hook {
        hook: HookObject,
        wait_timeout: Duration,
    },
}

impl ForwardStep {
    fn action(&self) -> StepAction {
        match self {
            Self::Hook { .. } => StepAction::Hook,
            Self::Object { object, .. } => match object.action {
                ObjectAction::Create => StepAction::Create,
                ObjectAction::Update | ObjectAction::Replace => StepAction::Update,
                ObjectAction::Delete => StepAction::Delete,
                ObjectAction::Adopt | ObjectAction::NoOp => StepAction::Adopt,
                ObjectAction::Forget => StepAction::Forget,
            },
        }
    }

    fn object(&self) -> &ObjectRef {
        match self {
            Self::Hook { hook, .. } => &hook.object,
            Self::Object { object, .. } => &object.object,
        }
    }
}

impl StepRunner<ForwardStep> for Context<'_> {
    /// The `Before` entries of the group's creates and updates, in one commit.
    fn start_group<'a>(&'a self, unit: &'a str, steps: &'a [ForwardStep]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut objects = Vec::with_capacity(steps.len());
            for step in steps {
                if let ForwardStep::Object { object, .. } = step
                    && matches!(object.action, ObjectAction::Create | ObjectAction::Update)
                    && object.desired.is_some()
                {
                    objects.push(&object.object);
                }
            }
            self.prepare_writes(unit, &objects).await;
        })
    }

    fn run_step<'a>(
        &'a self,
        unit: &'a str,
        step: &'a ForwardStep,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let action = step.action();
            self.reporter.event(&Event::StepStarted {
                node: unit.to_owned(),
                object: step.object().clone(),
                action,
            });
            let run = async {
                match step {
                    ForwardStep::Object {
                        object,
                        rule,
                        wait_timeout,
                    } => {
                        self.run_object(unit, object, rule.as_ref(), *wait_timeout, deadline)
                            .await
                    }
                    ForwardStep::Hook { hook, wait_timeout } => {
                        self.run_hook(unit, hook, *wait_timeout, deadline).await
                    }
                }
            };
            let result = self
                .reporting_retries(unit, step.object(), deadline, run)
                .await;
            match result {
                Ok(()) => {
                    self.reporter.event(&Event::StepDone {
                        node: unit.to_owned(),
                        object: step.object().clone(),
                        action,
                    });
                    Ok(())
                }
                Err(e) => Err(self.failed(unit, action, &e)),
            }
        })
    }
}

impl Context<'_> {
    async fn run_object(
        &self,
        node: &str,
        o: &ApplyObject,
        rule: Option<&Rule>,
        wait_timeout: Duration,
        deadline: Option<Instant>,
    ) -> Result<(), StepError> {
        let object = &o.object;
        let desired = || {
            o.desired
                .as_deref()
                .cloned()
                .ok_or_else(|| StepError::NoBody {
                    node: node.to_owned(),
                    object: Box::new(object.clone()),
                })
        };
        let put = |desired: Value| {
            let digest = o.digest.clone().unwrap_or_else(|| digest_json(&desired));
            RecordChange::Put {
                desired,
                digest,
                sensitive: o.sensitive_paths.iter().cloned().collect(),
            }
        };
        // The object as the last write left it (or as read): a readiness rule that holds for
        // it needs no watch.
        let current: Option<Value>;
        match o.action {
            ObjectAction::NoOp => return Ok(()),
            ObjectAction::Create | ObjectAction::Update => {
                let body = desired()?;
                current = Some(
                    self.apply_journaled(node, object, &body, put(body.clone()), deadline)
                        .await?,
                );
                self.took(
                    node,
                    object,
                    if o.action == ObjectAction::Create {
                        StepAction::Create
                    } else {
                        StepAction::Update
                    },
                );
            }
            ObjectAction::Replace => {
                let body = desired()?;
                self.delete_journaled(node, object, RecordChange::Remove, deadline)
                    .await?;
                self.took(node, object, StepAction::Delete);
                current = Some(
                    self.apply_journaled(node, object, &body, put(body.clone()), deadline)
                        .await?,
                );
                self.took(node, object, StepAction::Create);
            }
            ObjectAction::Delete => {
                self.delete_journaled(node, object, RecordChange::Remove, deadline)
                    .await?;
                self.took(node, object, StepAction::Delete);
                return Ok(());
            }
            ObjectAction::Adopt | ObjectAction::Forget => {
                let live = self
                    .live_before_write(node, object)
                    .await
                    .map_err(|e| Context::write_err(node, object, e))?;
                let (mutation, change, action) = if o.action == ObjectAction::Adopt {
                    (Mutation::Apply, put(desired()?), StepAction::Adopt)
                } else {
                    (Mutation::Delete, RecordChange::Remove, StepAction::Forget)
                };
                let step = self
                    .journal
                    .before(node, object, mutation, live.as_ref())
                    .await
                    .map_err(|e| Context::state_err(node, object, e))?;
                self.journal
                    .after(step, node, object, mutation, Ok(live.as_ref()), change)
                    .await
                    .map_err(|e| Context::state_err(node, object, e))?;
                self.took(node, object, action);
                if o.action == ObjectAction::Forget {
                    return Ok(());
                }
                current = live;
            }
        }
        if let Some(rule) = rule
            && !matches!(rule.evaluate(current.as_ref()), Readiness::Ready)
        {
            let timeout = Context::budget(wait_timeout, deadline);
            self.await_ready(node, object, rule, timeout).await?;
        }
        Ok(())
    }

    async fn run_hook(
        &self,
        node: &str,
        hook: &HookObject,
        wait_timeout: Duration,
        deadline: Option<Instant>,
    ) -> Result<(), StepError> {
        let object = &hook.object;
        let policy = |p: HookDeletePolicy| hook.delete_policies.contains(&p);
        if policy(HookDeletePolicy::BeforeHookCreation)
            && self
                .delete_journaled(node, object, RecordChange::Keep, deadline)
                .await?
        {
            self.took(node, object, StepAction::Delete);
        }
        self.apply_journaled(node, object, &hook.body, RecordChange::Keep, deadline)
            .await?;
        self.took(node, object, StepAction::Hook);
        let rule = Rule::builtin(object).map_or(Rule::Exists, Rule::Builtin);
        let timeout = Context::budget(wait_timeout, deadline);
        match self.await_ready(node, object, &rule, timeout).await {
            Ok(()) => {
                if policy(HookDeletePolicy::HookSucceeded) {
                    self.delete_journaled(node, object, RecordChange::Keep, deadline)
                        .await?;
                    self.took(node, object, StepAction::Delete);
                }
                Ok(())
            }
            Err(e) => {
                if policy(HookDeletePolicy::HookFailed)
                    && self
                        .delete_journaled(node, object, RecordChange::Keep, deadline)
                        .await
                        .is_ok()
                {
                    self.took(node, object, StepAction::Delete);
                }
                Err(e)
            }
        }
    }
}

/// The units of a forward apply, in input order.
fn forward_units(
    input: &ApplyInput,
    options: &RunOptions,
) -> Result<Vec<Unit<ForwardStep>>, ApplyError> {
    let names: Vec<String> = input.nodes.iter().map(|n| n.address.clone()).collect();
    let index = indices(&names);
    input
        .nodes
        .iter()
        .map(|node| {
            let deps = node
                .depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect();
            Ok(Unit {
                name: node.address.clone(),
                deps,
                groups: node_groups(node, options),
                timeout: node.timeout,
            })
        })
        .collect()
}

/// A node's groups: pre-hooks, CRDs, Namespaces, the rest, post-hooks, then deletions.
fn node_groups(node: &ApplyNode, options: &RunOptions) -> Vec<Vec<ForwardStep>> {
    let wait_timeout = node.wait.timeout.unwrap_or(options.object_timeout);
    let mut groups: Vec<Vec<ForwardStep>> = Vec::new();
    let changes = node.changes_cluster();
    let install = node.is_install();
    let hooks = |pre: bool| -> Vec<Vec<ForwardStep>> {
        if !changes {
            return Vec::new();
        }
        let phase = match (pre, install) {
            (true, true) => HookPhase::PreInstall,
            (true, false) => HookPhase::PreUpgrade,
            (false, true) => HookPhase::PostInstall,
            (false, false) => HookPhase::PostUpgrade,
        };
        let mut selected: Vec<&HookObject> = node
            .hooks
            .iter()
            .filter(|h| h.phases.contains(&phase))
            .collect();
        selected.sort_by(|a, b| (a.weight, &a.object).cmp(&(b.weight, &b.object)));
        selected
            .into_iter()
            .map(|h| {
                vec![ForwardStep::Hook {
                    hook: h.clone(),
                    wait_timeout,
                }]
            })
            .collect()
    };
    groups.extend(hooks(true));
    let step = |o: &ApplyObject| ForwardStep::Object {
        rule: Rule::for_object(&o.object, &node.wait),
        object: o.clone(),
        wait_timeout,
    };
    let writes = |class: ObjectClass| -> Vec<ForwardStep> {
        node.objects
            .iter()
            .filter(|o| ObjectClass::of(&o.object) == class)
            .filter(|o| !matches!(o.action, ObjectAction::Delete | ObjectAction::NoOp))
            .map(step)
            .collect()
    };
    let deletes = |class: ObjectClass| -> Vec<ForwardStep> {
        node.objects
            .iter()
            .filter(|o| ObjectClass::of(&o.object) == class && o.action == ObjectAction::Delete)
            .map(step)
            .collect()
    };
    for class in [ObjectClass::Crd, ObjectClass::Namespace, ObjectClass::Other] {
        groups.push(writes(class));
    }
    groups.extend(hooks(false));
    for class in [ObjectClass::Other, ObjectClass::Namespace, ObjectClass::Crd] {
        groups.push(deletes(class));
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// One logical apply run that may span several phases (`meshplan apply` re-plans between
/// them): one run id and one journal for all phases, so that a failure in any phase rolls
/// back everything every phase did, and a crash leaves one journal that `meshplan rollback`
/// restores to before the first phase.
#[derive(Debug, Default)]
pub struct PhasedRun {
    run: Option<RunRecord>,
    next_step: u64,
    /// Phases that finished their steps.
    phases: usize,
    /// What the finished phases did (the final report lists every phase's actions).
    actions: Vec<ActionTaken>,
    /// How many of them the last finished phase did.
    last_phase_actions: usize,
    /// node → its dependencies, over all phases (the rollback order).
    deps: BTreeMap<String, Vec<String>>,
}

impl PhasedRun {
    pub fn new() -> Self {
        Self::default()
    }

    /// The run id, once the first phase began the run.
    pub fn id(&self) -> Option<&str> {
        self.run.as_ref().map(|r| r.run.as_str())
    }

    /// Says that the last phase finished its steps and another phase follows.
    pub fn phase_done(&self, reporter: &dyn Reporter) {
        if self.run.is_some() && self.phases > 0 {
            reporter.event(&Event::PhaseDone {
                phase: self.phases,
                actions: self.last_phase_actions,
            });
        }
    }

    /// Ends the run successfully: its journal is cleared and the report of every phase's
    /// actions sent as `finished` (nothing to do if no phase began the run).
    pub fn close(
        &mut self,
        store: &dyn StateStore,
        reporter: &dyn Reporter,
    ) -> Result<Option<Summary>, ApplyError> {
        let Some(run) = self.run.take() else {
            return Ok(None);
        };
        let mut summary = Summary {
            run: run.run.clone(),
            kind: RunKind::Apply,
            outcome: RunOutcome::Succeeded,
            root_cause: None,
            actions: std::mem::take(&mut self.actions),
            rolled_back: Vec::new(),
            skipped: Vec::new(),
            left_in_place: Vec::new(),
            next_step: None,
        };
        if let Err(e) = store.commit(WriteBatch::new().clear_run(&run.run)) {
            summary.outcome = RunOutcome::Failed;
            summary.root_cause = Some(format!("the run could not be closed in the state: {e}"));
            summary.next_step = Some(resume_hint(&run.run));
        }
        Ok(Some(finish(reporter, summary)))
    }

    /// Rolls back everything the run did in all its phases (after a failure between phases:
    /// a read that never resolves, an interrupt, a plan error), or with `no_rollback` keeps
    /// the journal and says how to resume. None when no phase began the run.
    pub async fn roll_back(
        &mut self,
        cluster: &dyn Cluster,
        store: &dyn StateStore,
        options: &RunOptions,
        reporter: &dyn Reporter,
        interrupt: &Interrupt,
        reason: String,
    ) -> Option<Summary> {
        let run = self.run.take()?;
        let mut summary = Summary {
            run: run.run.clone(),
            kind: RunKind::Apply,
            outcome: RunOutcome::FailedNoRollback,
            root_cause: Some(reason),
            actions: std::mem::take(&mut self.actions),
            rolled_back: Vec::new(),
            skipped: Vec::new(),
            left_in_place: Vec::new(),
            next_step: None,
        };
        if options.no_rollback {
            summary.next_step = Some(resume_hint(&run.run));
            return Some(finish(reporter, summary));
        }
        let ctx = Context::new(
            cluster,
            store,
            run.run.clone(),
            reporter,
            options,
            String::new(),
            interrupt.immediate().clone(),
        );
        reporter.event(&Event::RollbackStarted {
            reason: summary.root_cause.clone().unwrap_or_default(),
        });
        let rolled = rollback::roll_back_run(&ctx, &run.run, Some(&self.deps), interrupt).await;
        rolled_back_outcome(&ctx, &mut summary, rolled, interrupt, &run.run).await;
        Some(finish(reporter, summary))
    }
}

/// Fills the summary from a rollback's result.
async fn rolled_back_outcome(
    ctx: &Context<'_>,
    summary: &mut Summary,
    rolled: Result<(), String>,
    interrupt: &Interrupt,
    run: &str,
) {
    summary.rolled_back = ctx.take_actions();
    summary.left_in_place = ctx.take_left_in_place().await;
    match rolled {
        Ok(()) => summary.outcome = RunOutcome::RolledBack,
        Err(message) => {
            summary.outcome = if interrupt.immediate().is_cancelled() {
                RunOutcome::Aborted
            } else {
                RunOutcome::RollbackFailed
            };
            summary.root_cause = Some(format!(
                "{}; the rollback failed too: {message}",
                summary.root_cause.clone().unwrap_or_default()
            ));
            summary.next_step = Some(resume_hint(run));
        }
    }
}

/// Applies `input`: every node in dependency order, independent nodes concurrently, each
/// step journaled and waited for; on failure (or a first interrupt) stops, drains and rolls
/// back (unless `options.no_rollback`).
///
/// Fails only before anything was done: an unfinished run in the state, an unreadable state,
/// a dependency cycle. Everything after that is in the returned report (and the events).
pub async fn apply(
    cluster: &dyn Cluster,
    store: &dyn StateStore,
    input: &ApplyInput,
    options: &RunOptions,
    reporter: &dyn Reporter,
    interrupt: &Interrupt,
) -> Result<Summary, ApplyError> {
    let mut run = PhasedRun::new();
    let summary = apply_phase(
        cluster, store, input, options, reporter, interrupt, &mut run,
    )
    .await?;
    if summary.outcome.is_success()
        && let Some(closed) = run.close(store, reporter)?
    {
        return Ok(closed);
    }
    Ok(summary)
}

/// Applies one phase of `run` (see [`apply`]). The first phase begins the run; later phases
/// journal into the same run, continuing its step numbers. On success the run stays open
/// (the caller closes it with [`PhasedRun::close`] after the last phase). On failure the
/// rollback restores everything the run did in all its phases, in reverse order, and ends
/// the run; with `no_rollback` the journal is kept.
pub async fn apply_phase(
    cluster: &dyn Cluster,
    store: &dyn StateStore,
    input: &ApplyInput,
    options: &RunOptions,
    reporter: &dyn Reporter,
    interrupt: &Interrupt,
    phased: &mut PhasedRun,
) -> Result<Summary, ApplyError> {
    let units = forward_units(input, options)?;
    if let Some(nodes) = find_cycle(&units) {
        return Err(ApplyError::Cycle { nodes });
    }
    let (run, begins) = match &phased.run {
        Some(run) => (run.clone(), false),
        None => {
            ensure_no_unfinished(store)?;
            let run = RunRecord::start("apply");
            store.commit(WriteBatch::new().begin_run(run.clone()))?;
            phased.run = Some(run.clone());
            phased.next_step = 1;
            phased.phases = 0;
            phased.actions.clear();
            (run, true)
        }
    };
    for n in &input.nodes {
        let deps = phased.deps.entry(n.address.clone()).or_default();
        for d in &n.depends_on {
            if !deps.contains(d) {
                deps.push(d.clone());
            }
        }
    }
    if begins {
        reporter.event(&Event::RunStarted {
            run: run.run.clone(),
            kind: RunKind::Apply,
            nodes: units.len(),
        });
    }
    let mut ctx = Context::new(
        cluster,
        store,
        run.run.clone(),
        reporter,
        options,
        input.plan.clone(),
        interrupt.immediate().clone(),
    );
    ctx.journal = Journal::new(store, run.run.clone(), phased.next_step);
    ctx.snapshots = Snapshots::for_input(input);
    if let Ok(mut t) = ctx.interrupted.lock() {
        *t = interrupt.graceful().clone();
    }
    let stop = interrupt.graceful().child_token();
    let schedule = Schedule {
        parallelism: options.parallelism,
        stop: stop.clone(),
        stop_on_failure: true,
        deadline: options.overall_timeout.map(|t| Instant::now() + t),
        reporter,
    };
    let forward = tokio::select! {
        biased;
        () = interrupt.immediate().cancelled() => None,
        ends = schedule.run(&units, &ctx) => Some(ends),
    };
    // The steps' queued `After` entries, before the journal is read or the run ends.
    ctx.journal.drain()?;
    phased.next_step = ctx.journal.next_step();
    // Every phase's actions, this one's last.
    let mut actions = std::mem::take(&mut phased.actions);
    let this_phase = ctx.take_actions();
    let done_here = this_phase.len();
    actions.extend(this_phase);
    let mut summary = Summary {
        run: run.run.clone(),
        kind: RunKind::Apply,
        outcome: RunOutcome::Succeeded,
        root_cause: ctx.root_cause(),
        actions,
        rolled_back: Vec::new(),
        skipped: Vec::new(),
        left_in_place: Vec::new(),
        next_step: None,
    };
    let Some(ends) = forward else {
        phased.run = None;
        summary.outcome = RunOutcome::Aborted;
        summary.root_cause = Some(
            summary
                .root_cause
                .unwrap_or_else(|| "stopped at once by a second interrupt".to_owned()),
        );
        summary.next_step = Some(match in_flight(store, &run.run).as_slice() {
            [] => resume_hint(&run.run),
            steps => format!(
                "{}; in flight when it stopped (their outcome is unknown; the rollback reads \
                 them back): {}",
                resume_hint(&run.run),
                steps.join(", ")
            ),
        });
        return Ok(finish(reporter, summary));
    };
    summary.skipped = units
        .iter()
        .zip(&ends)
        .filter_map(|(u, e)| match e {
            UnitEnd::Skipped(r) => Some(Skipped {
                node: u.name.clone(),
                reason: r.clone(),
            }),
            _ => None,
        })
        .collect();
    let all_done = ends.iter().all(|e| *e == UnitEnd::Done);
    if all_done && !interrupt.graceful().is_cancelled() {
        // The run goes on (another phase: [`PhasedRun::phase_done`]) or ends with
        // [`PhasedRun::close`].
        phased.phases += 1;
        phased.last_phase_actions = done_here;
        phased.actions = summary.actions.clone();
        return Ok(summary);
    }
    // The run ends here, rolled back or kept for a resume.
    phased.run = None;
    if summary.root_cause.is_none() {
        summary.root_cause = Some("interrupted".to_owned());
    }
    if options.no_rollback {
        summary.outcome = RunOutcome::FailedNoRollback;
        summary.next_step = Some(resume_hint(&run.run));
        return Ok(finish(reporter, summary));
    }
    reporter.event(&Event::RollbackStarted {
        reason: summary.root_cause.clone().unwrap_or_default(),
    });
    if let Ok(mut t) = ctx.interrupted.lock() {
        *t = CancellationToken::new();
    }
    let rolled = rollback::roll_back_run(&ctx, &run.run, Some(&phased.deps), interrupt).await;
    rolled_back_outcome(&ctx, &mut summary, rolled, interrupt, &run.run).await;
    Ok(finish(reporter, summary))
}

/// The steps of `run` that began and never ended (`node object`), from its journal.
fn in_flight(store: &dyn StateStore, run: &str) -> Vec<String> {
    let Ok(runs) = store.unfinished_runs() else {
        return Vec::new();
    };
    runs.iter()
        .filter(|r| r.run.run == run)
        .flat_map(|r| r.open_steps())
        .map(|e| format!("{} {}", e.node, e.object))
        .collect()
}
