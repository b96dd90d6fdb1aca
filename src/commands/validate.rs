//! `meshplan validate PLAN`: load the plan (parse, model, graph) and print a summary.

use crate::cli::{ExitStatus, ValidateArgs};
use crate::load::load;

use super::{load_request, print_diagnostics};

pub async fn run(args: ValidateArgs) -> miette::Result<ExitStatus> {
    let loaded = match load(&load_request(&args.input)) {
        Ok(loaded) => loaded,
        Err(diags) => {
            print_diagnostics(&diags);
            return Ok(ExitStatus::Error);
        }
    };
    let plan = &loaded.plan;
    let disabled = if plan.disabled.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = plan.disabled.keys().map(|a| a.to_string()).collect();
        format!(" ({} disabled: {})", names.len(), names.join(", "))
    };
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    println!(
        "plan {} is valid: {}{disabled}, {}, {}, {}, {}",
        plan.name,
        count(plan.nodes.len(), "node"),
        count(loaded.graph.edges().len(), "edge"),
        count(loaded.graph.layers().len(), "layer"),
        count(plan.vars.len(), "var"),
        count(plan.repos.len(), "repo")
    );
    Ok(ExitStatus::Success)
}
