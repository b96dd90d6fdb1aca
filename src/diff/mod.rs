//! Stage 5, the diff: desired objects × live objects × state records → a [`ChangeSet`].
//!
//! - [`input`]: what the diff is given (desired nodes and objects as rendered, state records,
//!   discovery, the CRDs the plan renders).
//! - [`change`]: the change set model (per node in graph order, per object an [`Action`]
//!   with only the changed fields), its summary and text dump.
//! - [`fields`]: normalisation, structured field comparison, the immutable-field table,
//!   sensitive paths, the field changes shown.
//! - [`engine`]: refresh (LIST/GET with bounded parallelism), the fast path, server-side
//!   apply dry runs, conflicts, replaces, prune.
//! - [`planner`]: the whole plan stage (render through [`Renderer`], diff, resolve the reads
//!   that can be resolved now, render and diff their users again).
//! - [`saved`]: saved change sets (`plan -o FILE`) and their loader.
//!
//! Pure apart from the cluster door; the engine never prints (see `report/`).

pub mod change;
pub mod engine;
pub mod error;
pub mod fields;
pub mod input;
pub mod planner;
pub mod render_bridge;
pub mod saved;

pub use change::{
    Action, CHANGE_SET_FORMAT, ChangeSet, FieldChange, HookMarks, NodeChange, NodeStatus,
    ObjectChange, Summary,
};
pub use engine::diff;
pub use error::DiffError;
pub use input::{DesiredNode, DesiredObject, DesiredState, DiffInput, KNOWN_AFTER_APPLY, PlanCrds};
pub use planner::{PlanError, PlanRequest, ReadValue, RenderFailure, Renderer, plan};
pub use saved::{InputDigests, SavedChangeSet, SavedError, StateRef};
