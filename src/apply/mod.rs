//! Stage 6, apply: execute a change set on the cluster, in order, in parallel, waited for,
//! journaled, and rolled back on failure; and destroy.
//!
//! ```text
//! ApplyInput (nodes, dependencies, object actions, hooks)
//!   └─ engine::apply ─► scheduler (units per node, bounded parallelism, stop on failure)
//!        ├─ steps: server-side apply / delete / adopt / forget / hooks   (engine)
//!        │    each journaled before and after (journal), then waited for (readiness)
//!        └─ on failure or first Ctrl-C: drain, then rollback::roll_back_run through
//!           the same scheduler, restoring the journal's snapshots in reverse order
//! DestroyRequest ─► destroy::destroy (reverse dependency order, ownership checked)
//! unfinished runs ─► rollback::resume_unfinished (complete or roll back)
//! ```
//!
//! - [`input`]: what the executor is asked to do (translated from the change set).
//! - [`context`]: what every run shares: [`RunOptions`], [`Interrupt`], and the context its
//!   steps run in (journaled apply / delete, waits). Engine, rollback and destroy build on it;
//!   the engine calls the rollback, never the other way round.
//! - [`readiness`]: pure readiness rules, one per kind, and custom conditions.
//! - [`scheduler`]: the DAG walk that never `?`s out.
//! - [`journal`]: journaled mutations and atomic state records per step; [`snapshots`]: the
//!   live objects journaled before writes, listed once per node, kind and namespace.
//! - [`engine`]: the forward steps and [`apply`]; [`rollback`]: restore and resume;
//!   [`destroy`](mod@destroy): destroy.
//! - [`events`]: the [`Reporter`] the engine emits to and the run [`Summary`]. The engine
//!   never prints.
//!
//! - [`adapter`]: the plan stage's change set translated into [`ApplyInput`] and
//!   [`DestroyRequest`]; nodes not known yet are deferred to a later phase.
//! - [`phases`]: the phased apply of `meshplan apply` (see `docs/apply.md`): apply what is
//!   known, evaluate checks and wait for reads, plan again, one journaled run for all phases;
//!   [`as_planned`]: a node planned with placeholders must be, with the real values, what
//!   the plan showed.

pub mod adapter;
pub mod as_planned;
pub mod context;
pub mod destroy;
pub mod engine;
pub mod error;
pub mod events;
pub mod input;
mod journal;
pub mod phases;
pub mod readiness;
pub mod rollback;
mod scheduler;
mod snapshots;

pub use context::{Interrupt, RunOptions};
pub use destroy::{DestroyNode, DestroyRequest, destroy, is_owned};
pub use engine::{PhasedRun, apply, apply_phase};
pub use error::{ApplyError, StepError};
pub use events::{
    ActionTaken, Event, LeftInPlace, NoReporter, RecordingReporter, Reporter, RunKind, RunOutcome,
    RunReport, Skipped, StepAction, Summary,
};
pub use input::{ApplyInput, ApplyNode, ApplyObject, HookObject, ObjectAction, ObjectClass};
pub use phases::{
    KnownAfterApply, KnownValue, Outcome, PhaseError, Phases, Replan, apply_in_phases,
};
pub use readiness::{Builtin, Readiness, Rule, job_timeout_hint};
pub use rollback::{ResumeChoice, resume_unfinished, strip_server_fields};
