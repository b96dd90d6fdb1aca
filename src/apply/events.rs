//! What the engine tells the outside world: [`Event`]s sent to a [`Reporter`] while it runs,
//! and the [`RunReport`] it returns at the end. The engine never prints; `report::progress`
//! renders events as plain lines, JSON lines or a live view.

use std::sync::Mutex;

use serde::Serialize;

use crate::cluster::ObjectRef;

/// What a step does to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    /// Server-side apply creating the object.
    Create,
    /// Server-side apply updating the object.
    Update,
    /// Delete (prune, replace, hook clean-up or destroy), waited for until gone.
    Delete,
    /// Recorded in the state, nothing sent.
    Adopt,
    /// State record dropped (the object was already gone).
    Forget,
    /// A Helm hook run (created, waited for).
    Hook,
    /// Rollback: a created object deleted.
    UndoCreate,
    /// Rollback: an updated object restored to its snapshot.
    Restore,
    /// Rollback: a deleted object recreated.
    Recreate,
}

impl StepAction {
    /// The word shown in progress lines.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Adopt => "adopt",
            Self::Forget => "forget",
            Self::Hook => "run hook",
            Self::UndoCreate => "delete (undo create)",
            Self::Restore => "restore",
            Self::Recreate => "recreate",
        }
    }
}

/// Which kind of run emits the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Apply,
    Rollback,
    Destroy,
}

/// One thing that happened. Sensitive values never appear in events.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run: String,
        kind: RunKind,
        nodes: usize,
    },
    NodeStarted {
        node: String,
    },
    StepStarted {
        node: String,
        object: ObjectRef,
        action: StepAction,
    },
    /// Still waiting; `reason` says for what and what was seen last.
    Waiting {
        node: String,
        object: ObjectRef,
        reason: String,
    },
    StepDone {
        node: String,
        object: ObjectRef,
        action: StepAction,
    },
    /// A request of the step failed in a way worth another attempt (a 503, a broken
    /// connection...): it is sent again after `delay_ms`. Only a failure that persists
    /// fails the step.
    Retrying {
        node: String,
        object: ObjectRef,
        /// The request, e.g. `PATCH configmaps app/settings`.
        request: String,
        /// What went wrong, e.g. `HTTP 503 Service Unavailable (Retry-After: 1s)`.
        reason: String,
        /// The attempt about to be made (2 for the first retry).
        attempt: u32,
        /// Attempts in all.
        attempts: u32,
        delay_ms: u64,
    },
    StepFailed {
        node: String,
        object: ObjectRef,
        action: StepAction,
        message: String,
    },
    NodeDone {
        node: String,
    },
    NodeFailed {
        node: String,
        message: String,
    },
    /// Not run: a dependency failed or the run stopped first.
    NodeSkipped {
        node: String,
        reason: String,
    },
    RollbackStarted {
        reason: String,
    },
    /// A phase of an apply finished its steps; the apply goes on with the nodes that needed
    /// values read from the cluster (only `finished` ends the run).
    PhaseDone {
        phase: usize,
        actions: usize,
    },
    /// A `check` evaluated during apply passed: the object has the condition (a phased apply
    /// goes on with the nodes that depend on the check).
    CheckPassed {
        node: String,
        object: ObjectRef,
        condition: String,
    },
    /// An object left in place on purpose (created by a controller in reaction, not owned).
    LeftInPlace {
        object: ObjectRef,
        reason: String,
    },
    Finished {
        summary: Summary,
    },
}

/// Receives the engine's events. Called from the engine's tasks: implementations must be
/// quick and must not block.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);
}

/// A reporter that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReporter;

impl Reporter for NoReporter {
    fn event(&self, _event: &Event) {}
}

/// A reporter that keeps every event (tests, and the final report of a command).
#[derive(Debug, Default)]
pub struct RecordingReporter {
    events: Mutex<Vec<Event>>,
}

impl RecordingReporter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The events so far, in the order received.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Reporter for RecordingReporter {
    fn event(&self, event: &Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event.clone());
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Everything was done.
    Succeeded,
    /// A step failed (or the run was interrupted) and the rollback put everything back.
    RolledBack,
    /// A step failed and nothing was rolled back (`no_rollback`): the journal is kept.
    FailedNoRollback,
    /// The rollback itself failed: the journal is kept for `resume_unfinished`.
    RollbackFailed,
    /// Stopped at once (second interrupt): in-flight steps abandoned, journal kept.
    Aborted,
    /// A destroy or resume that failed part-way (no rollback for those).
    Failed,
}

impl RunOutcome {
    pub fn is_success(self) -> bool {
        matches!(self, Self::Succeeded)
    }
}

/// One action taken, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionTaken {
    pub node: String,
    pub object: ObjectRef,
    pub action: StepAction,
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub run: String,
    pub kind: RunKind,
    pub outcome: RunOutcome,
    /// The error that failed the run, once (None on success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_cause: Option<String>,
    /// Every action of the run that changed the cluster or the state, in order.
    pub actions: Vec<ActionTaken>,
    /// Every rollback action, in order.
    pub rolled_back: Vec<ActionTaken>,
    /// Nodes not run, with why.
    pub skipped: Vec<Skipped>,
    /// Objects deliberately left in place, with why.
    pub left_in_place: Vec<LeftInPlace>,
    /// What to do next when the run left a journal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
}

impl Summary {
    /// Whether the run failed and left its journal (to complete or roll back later).
    pub fn left_journal(&self) -> bool {
        !self.outcome.is_success() && self.next_step.is_some()
    }
}

/// A node that did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub node: String,
    pub reason: String,
}

/// An object deliberately left in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftInPlace {
    pub object: ObjectRef,
    pub reason: String,
}

/// What the engine returns: the summary (also sent as [`Event::Finished`]).
pub type RunReport = Summary;
