//! The phased apply of `meshplan apply` (see `docs/apply.md`, "Reads and unknowns"): apply
//! every node whose objects are known, deferring the nodes rendered during apply, unresolved
//! reads, unevaluated checks and everything downstream of them; evaluate the checks and wait
//! for the objects of the reads that became reachable; plan again ([`Replan`]); repeat until
//! nothing is deferred. A node the first plan rendered with placeholders goes on only when,
//! planned with the real values, it is what the plan showed ([`super::as_planned`];
//! [`PhaseError::NotAsPlanned`] otherwise).
//!
//! All phases are one journaled run ([`PhasedRun`]): a failure in any phase, or between
//! phases ([`PhaseError`]), rolls back what every phase did; the journal is cleared after the
//! last phase, once the previous render of every applied node is kept in the state. A check
//! that passes is reported as [`Event::CheckPassed`]; the values that were unknown at plan
//! time come back in [`Outcome::Completed`] (sensitive ones masked). Nothing here prints.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::LocalBoxFuture;
use serde_json::Value;

use super::adapter::{self, AdaptError};
use super::as_planned;
use super::context::{Interrupt, RunOptions};
use super::engine::{PhasedRun, apply_phase};
use super::error::ApplyError;
use super::events::{Event, Reporter};
use super::input::ObjectAction;
use super::readiness::condition_is;
use crate::cluster::{Cluster, ClusterError, ObjectRef};
use crate::diff::planner::select;
use crate::diff::previous::{PreviousError, PreviousRenders, RenderedLog, store_previous};
use crate::diff::{ChangeSet, NodeChange, NodeStatus};
use crate::graph::PlanGraph;
use crate::model::{Address, EvalError, NodeSpec, Plan, human_duration};
use crate::state::StateStore;

/// How many planning rounds an apply may take before it gives up (reads that never resolve).
pub const MAX_PHASES: usize = 16;

/// Plans the apply again between phases: render, refresh and diff with a fresh discovery
/// (kinds installed by the last phase are known now). The future need not be `Send`: a
/// phased apply runs on the command's task.
pub trait Replan {
    type Error: miette::Diagnostic + Send + Sync + 'static;

    /// The change set now; `previous` is what was applied last per node, and every node
    /// rendered is logged in `rendered`.
    fn replan<'a>(
        &'a self,
        previous: &'a PreviousRenders,
        rendered: &'a RenderedLog,
    ) -> LocalBoxFuture<'a, Result<ChangeSet, Self::Error>>;
}

/// What a phased apply works with.
pub struct Phases<'a, R: Replan> {
    pub cluster: &'a dyn Cluster,
    pub store: &'a dyn StateStore,
    pub plan: &'a Plan,
    pub graph: &'a PlanGraph,
    pub replan: &'a R,
    pub options: &'a RunOptions,
    pub reporter: &'a dyn Reporter,
    pub interrupt: &'a Interrupt,
}

/// How a phased apply ended (errors aside).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A phase failed; its rollback restored what every phase did, and the report went out
    /// as the run's `finished` event. `cause` is the run's root cause.
    Failed { cause: Option<String> },
    /// Every phase succeeded.
    Completed {
        /// Whether anything was sent to the cluster.
        applied: bool,
        /// The values that were unknown at plan time, in plan order.
        known_after_apply: Vec<KnownAfterApply>,
    },
}

/// A node whose value or objects were unknown at plan time.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownAfterApply {
    pub node: String,
    pub value: KnownValue,
}

/// What became of it.
#[derive(Debug, Clone, PartialEq)]
pub enum KnownValue {
    /// A read's value.
    Value(Value),
    /// A sensitive read's value (never shown).
    Sensitive,
    /// A read whose object or value is not there.
    NotFound,
    /// A node rendered during apply with the values read.
    Rendered,
    /// A node planned with placeholders, rendered with the values read: as planned.
    AsPlanned,
}

/// Why a phased apply stopped between phases (everything done so far is rolled back first).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PhaseError<E: miette::Diagnostic + Send + Sync + 'static> {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Replan(E),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Adapt(#[from] AdaptError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Apply(#[from] ApplyError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Cluster(#[from] ClusterError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Previous(#[from] PreviousError),

    #[error("{0}")]
    Eval(EvalError),

    #[error("{node}: {object} did not reach {condition}={status} within {}", human_duration(*timeout))]
    CheckTimedOut {
        node: String,
        object: Box<ObjectRef>,
        condition: String,
        status: String,
        timeout: std::time::Duration,
    },

    #[error("{node}: {object} did not appear (with the value read) within {}", human_duration(*timeout))]
    ReadTimedOut {
        node: String,
        object: Box<ObjectRef>,
        timeout: std::time::Duration,
    },

    #[error("interrupted between phases; nothing more was started")]
    Interrupted,

    #[error(
        "these nodes stay unknown: {} (a read whose object never appears, or a check that never passes)",
        nodes.join(", ")
    )]
    StayUnknown { nodes: Vec<String> },

    #[error("apply did not converge in {MAX_PHASES} phases")]
    NoConvergence,

    #[error(
        "{node}: rendered with the values read, it is not what the plan showed:\n  {}",
        differences.join("\n  ")
    )]
    #[diagnostic(
        code(apply::not_as_planned),
        help(
            "nothing of it was applied; run `meshplan plan` again to see the node with the values as they are now"
        )
    )]
    NotAsPlanned {
        node: String,
        differences: Vec<String>,
    },
}

/// Applies `first` and the phases after it (see the module overview). `previous` is what was
/// applied last per node; `rendered` what the plan of `first` rendered.
pub async fn apply_in_phases<R: Replan>(
    phases: &Phases<'_, R>,
    first: ChangeSet,
    previous: PreviousRenders,
    rendered: RenderedLog,
) -> Result<Outcome, PhaseError<R::Error>> {
    let mut run = PhasedRun::new();
    let result = run_phases(phases, first, previous, rendered, &mut run).await;
    // A failure between phases (a read that never resolves, an interrupt, a plan error) ends
    // the whole run: everything the earlier phases did is rolled back (or, with
    // --no-rollback, kept with its journal). The report (every action, every rollback
    // action) goes out as the run's `finished` event.
    if let Err(error) = &result
        && run.id().is_some()
    {
        run.roll_back(
            phases.cluster,
            phases.store,
            phases.options,
            phases.reporter,
            phases.interrupt,
            error.to_string(),
        )
        .await;
    }
    result
}

async fn run_phases<R: Replan>(
    phases: &Phases<'_, R>,
    first: ChangeSet,
    mut previous: PreviousRenders,
    rendered: RenderedLog,
    run: &mut PhasedRun,
) -> Result<Outcome, PhaseError<R::Error>> {
    let unknown_at_plan: Vec<String> = first
        .nodes
        .iter()
        .filter(|n| {
            n.has_unknown_inputs()
                || matches!(
                    n.status,
                    NodeStatus::ReadDuringApply | NodeStatus::RenderedDuringApply { .. }
                )
        })
        .map(|n| n.address.clone())
        .collect();
    // What the plan showed of the nodes it rendered with placeholders.
    let mut promised: BTreeMap<String, NodeChange> = first
        .nodes
        .iter()
        .filter(|n| n.has_unknown_inputs())
        .map(|n| (n.address.clone(), n.clone()))
        .collect();
    let planned_with_placeholders: BTreeSet<String> = promised.keys().cloned().collect();

    let mut change_set = first;
    let mut evaluated: BTreeSet<String> = BTreeSet::new();
    let mut applied = false;
    // The nodes whose render `previous` now holds, to keep in the state at the end.
    let mut renders: BTreeSet<Address> = BTreeSet::new();
    for phase in 0..MAX_PHASES {
        let deferred = adapter::deferred_nodes(&change_set, phases.graph, &evaluated);
        let input = adapter::take_apply_input(
            &mut change_set,
            phases.plan,
            phases.graph,
            &deferred,
            phases.options.force_conflicts,
        )?;
        let has_work = input
            .nodes
            .iter()
            .any(|n| n.objects.iter().any(|o| o.action != ObjectAction::NoOp));
        if has_work {
            let summary = apply_phase(
                phases.cluster,
                phases.store,
                &input,
                phases.options,
                phases.reporter,
                phases.interrupt,
                run,
            )
            .await?;
            applied = true;
            if !summary.outcome.is_success() {
                // The phase's rollback restored what every phase of this apply did; the
                // report went out as the run's `finished` event.
                return Ok(Outcome::Failed {
                    cause: summary.root_cause,
                });
            }
        }
        // What each applied node rendered to (render stability of later plans); kept in
        // the state once the whole apply succeeded. Moved out of the log (a later plan logs
        // its own render again): one copy of the objects, not three.
        if let Ok(mut log) = rendered.lock() {
            for n in &input.nodes {
                if let Some(address) = Address::parse(&n.address)
                    && let Some(p) = log.remove(&address)
                    && previous.get(&address) != Some(&p)
                {
                    previous.insert(address.clone(), p);
                    renders.insert(address);
                }
            }
        }
        drop(input);
        if deferred.is_empty() {
            break;
        }
        if has_work {
            run.phase_done(phases.reporter);
        }
        let interrupt = phases.interrupt.graceful();
        if interrupt.is_cancelled() {
            return Err(PhaseError::Interrupted);
        }
        let progressed = tokio::select! {
            biased;
            () = interrupt.cancelled() => return Err(PhaseError::Interrupted),
            progressed = resolve_reachable(phases, &change_set, &deferred, &mut evaluated) => progressed?,
        };
        change_set = phases
            .replan
            .replan(&previous, &rendered)
            .await
            .map_err(PhaseError::Replan)?;
        for now in change_set.nodes.iter().filter(|n| !n.has_unknown_inputs()) {
            if let Some(planned) = promised.remove(&now.address) {
                let differences = as_planned::differences(&planned, now);
                if !differences.is_empty() {
                    return Err(PhaseError::NotAsPlanned {
                        node: now.address.clone(),
                        differences,
                    });
                }
            }
        }
        let still = adapter::deferred_nodes(&change_set, phases.graph, &evaluated);
        if !progressed && still == deferred {
            return Err(PhaseError::StayUnknown {
                nodes: still.into_iter().collect(),
            });
        }
        if phase + 1 == MAX_PHASES {
            return Err(PhaseError::NoConvergence);
        }
    }
    for address in &renders {
        if let Some(p) = previous.get(address) {
            store_previous(phases.store, address, p)?;
        }
    }
    if let Some(summary) = run.close(phases.store, phases.reporter)?
        && !summary.outcome.is_success()
    {
        return Ok(Outcome::Failed {
            cause: summary.root_cause,
        });
    }
    Ok(Outcome::Completed {
        applied,
        known_after_apply: known_after_apply(phases, &unknown_at_plan, &planned_with_placeholders)
            .await,
    })
}

/// Evaluates the checks and waits for the objects of the reads whose dependencies are all
/// applied. Returns whether something was resolved.
async fn resolve_reachable<R: Replan>(
    phases: &Phases<'_, R>,
    change_set: &ChangeSet,
    deferred: &BTreeSet<String>,
    evaluated: &mut BTreeSet<String>,
) -> Result<bool, PhaseError<R::Error>> {
    let plan = phases.plan;
    let scope = plan.static_scope();
    let mut progressed = false;
    for node in &change_set.nodes {
        if !deferred.contains(&node.address) {
            continue;
        }
        let Some(address) = Address::parse(&node.address) else {
            continue;
        };
        let ready = phases
            .graph
            .dependencies(&address)
            .iter()
            .all(|d| !deferred.contains(&d.to_string()));
        if !ready {
            continue;
        }
        let Some(model) = plan.node(&address) else {
            continue;
        };
        let timeout = model
            .timeout
            .or(model.wait.timeout)
            .unwrap_or(phases.options.object_timeout);
        match (&node.status, &model.spec) {
            (NodeStatus::CheckDuringApply, NodeSpec::Check(check)) => {
                let target = check.object_ref(model, &scope).map_err(PhaseError::Eval)?;
                let (condition, status) = (check.condition.clone(), check.status.clone());
                let met = move |o: Option<&Value>| {
                    o.is_some_and(|o| condition_is(o, &condition, &status))
                };
                let outcome = phases.cluster.wait_for(&target, &met, timeout).await?;
                if !outcome.is_met() {
                    return Err(PhaseError::CheckTimedOut {
                        node: node.address.clone(),
                        object: Box::new(target),
                        condition: check.condition.clone(),
                        status: check.status.clone(),
                        timeout,
                    });
                }
                phases.reporter.event(&Event::CheckPassed {
                    node: node.address.clone(),
                    object: target,
                    condition: check.condition.clone(),
                });
                evaluated.insert(node.address.clone());
                progressed = true;
            }
            (NodeStatus::ReadDuringApply, NodeSpec::Read(read)) => {
                let target = read.object_ref(model, &scope).map_err(PhaseError::Eval)?;
                let wanted = read.select.clone();
                let exists =
                    move |o: Option<&Value>| o.is_some_and(|o| select(o, &wanted).is_some());
                let outcome = phases.cluster.wait_for(&target, &exists, timeout).await?;
                if !outcome.is_met() {
                    return Err(PhaseError::ReadTimedOut {
                        node: node.address.clone(),
                        object: Box::new(target),
                        timeout,
                    });
                }
                progressed = true;
            }
            _ => {}
        }
    }
    Ok(progressed)
}

/// The values of the nodes that were unknown at plan time (sensitive ones masked).
async fn known_after_apply<R: Replan>(
    phases: &Phases<'_, R>,
    nodes: &[String],
    planned_with_placeholders: &BTreeSet<String>,
) -> Vec<KnownAfterApply> {
    let plan = phases.plan;
    let scope = plan.static_scope();
    let mut out = Vec::new();
    for a in nodes {
        let Some(address) = Address::parse(a) else {
            continue;
        };
        let Some(model) = plan.node(&address) else {
            continue;
        };
        let value = match &model.spec {
            NodeSpec::Read(read) => {
                let Ok(target) = read.object_ref(model, &scope) else {
                    continue;
                };
                let live = phases.cluster.get(&target).await.ok().flatten();
                match live.as_ref().and_then(|o| select(o, &read.select)) {
                    Some(_) if read.sensitive => KnownValue::Sensitive,
                    Some(v) => KnownValue::Value(v),
                    None => KnownValue::NotFound,
                }
            }
            _ if planned_with_placeholders.contains(a) => KnownValue::AsPlanned,
            _ => KnownValue::Rendered,
        };
        out.push(KnownAfterApply {
            node: a.clone(),
            value,
        });
    }
    out
}
