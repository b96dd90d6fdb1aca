//! Reports: turning engine results into text for people and JSON for programs. The engine
//! never prints; it returns data and emits events, and commands print what these modules make
//! of them (data on stdout, progress on stderr).
//!
//! - [`plan`]: the change set of `meshplan plan`, human (Terraform-like) and JSON.
//! - [`drift`]: the drift report of `meshplan drift`: human, JSON, Markdown, JUnit XML.
//! - [`progress`]: apply / rollback / destroy progress (live view, plain lines, JSON lines).
//! - [`apply`]: what apply and destroy say besides progress (values known after apply, the
//!   objects a destroy deletes or keeps).
//! - [`show`]: the rendered objects of `meshplan show` (YAML or JSON, sensitive values masked).
//! - [`state`]: the `state list` and `state show` output.
//! - [`validate`]: the summary line of `meshplan validate` (and its JSON).
//! - [`version`]: the `meshplan version` lines (and their JSON).
//! - [`session_header`]: the line naming the cluster and the state that plan, apply, destroy
//!   and rollback start with.
//! - [`lint`]: lint findings, human, JSON and SARIF 2.1.0.
//! - [`health`]: the health report of `meshplan check`, human and JSON.

pub mod apply;
pub mod drift;
pub mod health;
pub mod lint;
pub mod plan;
pub mod progress;
pub mod show;
pub mod state;
pub mod validate;
pub mod version;

pub use plan::{HumanOptions, render_human, render_json, render_json_event};

/// The line a command that works on a cluster starts with (stderr):
/// `Cluster https://10.0.0.1:6443 (context k3s), state /srv/mesh/state/linkerd`.
pub fn session_header(server: &str, context: Option<&str>, state: &str) -> String {
    format!(
        "Cluster {}, state {state}",
        session_header_cluster(server, context)
    )
}

/// The cluster as the session line names it: `https://10.0.0.1:6443 (context k3s)`.
pub fn session_header_cluster(server: &str, context: Option<&str>) -> String {
    match context {
        Some(c) => format!("{server} (context {c})"),
        None => format!("{server} (no context)"),
    }
}
