//! Reports: turning engine results into text for people and JSON for programs. The engine
//! never prints; commands print what these functions return (data on stdout).
//!
//! - [`plan`]: the change set of `meshplan plan`, human (Terraform-like) and JSON.

pub mod plan;

pub use plan::{HumanOptions, render_human, render_json};
