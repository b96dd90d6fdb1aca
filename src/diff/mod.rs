//! Stage 5, the diff: desired objects × live objects × state records → a [`ChangeSet`],
//! gathered then decided.
//!
//! - [`input`]: what the diff is given (desired nodes and objects as rendered, state records,
//!   discovery, the CRDs the plan renders).
//! - `scope` (pure): each object's kind, the objects to decide, the records to prune, the
//!   live objects to read.
//! - `gather`: every request of the diff: refresh (LIST/GET with bounded parallelism), then
//!   the server-side apply dry runs the decisions need; answers kept as data.
//! - [`decide`] (pure): one object's change from (desired, live, record, dry run): creates,
//!   the fast path, updates, adoptions, replaces, conflicts, prunes.
//! - [`fields`]: normalisation, structured field comparison, the immutable-field table,
//!   sensitive paths, the field changes shown.
//! - [`engine`]: [`diff`]: scope → gather → decide → the node changes in graph order.
//! - [`change`]: the change set model (per node in graph order, per object an [`Action`]
//!   with only the changed fields), its summary and text dump.
//! - [`planner`]: the whole plan stage (render through [`Renderer`], diff, resolve the reads
//!   that can be resolved now, render and diff their users again).
//! - [`render_bridge`]: the render stage as the planner sees it, and the state's render cache;
//!   [`previous`]: what each node rendered to when it was applied last (render stability).
//! - [`saved`]: saved change sets (`plan --out FILE`), their loader, and the check that one is
//!   still current before `apply FILE` uses it.
//! - [`drift`]: `meshplan drift`: the live objects against what was last applied (the
//!   state), by the fields meshplan owns; read-only, no render, no dry run.
//!
//! Requests happen only in `gather` (through the cluster door); the engine never prints
//! (see `report/`).

pub mod change;
pub mod decide;
pub mod drift;
pub mod engine;
pub mod error;
pub mod fields;
#[cfg(test)]
mod fixtures;
mod gather;
pub mod input;
pub mod planner;
pub mod previous;
pub mod render_bridge;
pub mod saved;
mod scope;

pub use change::{
    Action, CHANGE_SET_FORMAT, ChangeSet, FieldChange, HookMarks, NodeChange, NodeStatus,
    ObjectChange, Summary,
};
pub use engine::diff;
pub use error::DiffError;
pub use gather::list_keys;
pub use input::{DesiredNode, DesiredObject, DesiredState, DiffInput, KNOWN_AFTER_APPLY, PlanCrds};
pub use planner::{PlanError, PlanRequest, ReadValue, RenderFailure, Renderer, plan, reads_now};
pub use saved::{InputDigests, SavedChangeSet, SavedError, StaleError, StateRef};
