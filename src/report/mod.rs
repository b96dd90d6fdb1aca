//! Reports: turning engine results into text for people and JSON for programs. The engine
//! never prints; it returns data and emits events, and commands print what these modules make
//! of them (data on stdout, progress on stderr).
//!
//! - [`plan`]: the change set of `meshplan plan`, human (Terraform-like) and JSON.
//! - [`progress`]: apply / rollback / destroy progress (live view, plain lines, JSON lines).
//! - [`lint`]: lint findings, human, JSON and SARIF 2.1.0.
//! - [`health`]: the health report of `meshplan check`, human and JSON.

pub mod health;
pub mod lint;
pub mod plan;
pub mod progress;

pub use plan::{HumanOptions, render_human, render_json};
