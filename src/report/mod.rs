//! Reports: turning engine results into text for people and JSON for programs. The engine
//! never prints; it returns data and emits events, and commands print what these modules make
//! of them (data on stdout, progress on stderr).
//!
//! - [`plan`]: the change set of `meshplan plan`, human (Terraform-like) and JSON.
//! - [`drift`]: the drift report of `meshplan drift`: human, JSON, Markdown, JUnit XML.
//! - [`progress`]: apply / rollback / destroy progress (live view, plain lines, JSON lines).

pub mod drift;
pub mod plan;
pub mod progress;

pub use plan::{HumanOptions, render_human, render_json};
