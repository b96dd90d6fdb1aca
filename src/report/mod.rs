//! Reports: turning engine results into text for people and JSON for programs. The engine
//! never prints; it returns data and emits events, and commands print what these modules make
//! of them (data on stdout, progress on stderr).
//!
//! - [`plan`]: the change set of `meshplan plan`, human (Terraform-like) and JSON.
//! - [`drift`]: the drift report of `meshplan drift`: human, JSON, Markdown, JUnit XML.
//! - [`progress`]: apply / rollback / destroy progress (live view, plain lines, JSON lines).
//! - [`apply`]: what apply and destroy say besides progress (values known after apply, the
//!   objects a destroy deletes or keeps).
//! - [`state`]: the `state list` and `state show` output.
//! - [`validate`]: the summary line of `meshplan validate`.
//! - [`lint`]: lint findings, human, JSON and SARIF 2.1.0.
//! - [`health`]: the health report of `meshplan check`, human and JSON.

pub mod apply;
pub mod drift;
pub mod health;
pub mod lint;
pub mod plan;
pub mod progress;
pub mod state;
pub mod validate;

pub use plan::{HumanOptions, render_human, render_json, render_json_event};
