//! The summary line of `meshplan validate`.

use crate::load::LoadedPlan;

/// `plan NAME is valid: N nodes (D disabled: ...), E edges, L layers, V vars, R repos`.
pub fn summary(loaded: &LoadedPlan) -> String {
    let plan = &loaded.plan;
    let disabled = if plan.disabled.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = plan.disabled.keys().map(|a| a.to_string()).collect();
        format!(" ({} disabled: {})", names.len(), names.join(", "))
    };
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "plan {} is valid: {}{disabled}, {}, {}, {}, {}\n",
        plan.name,
        count(plan.nodes.len(), "node"),
        count(loaded.graph.edges().len(), "edge"),
        count(loaded.graph.layers().len(), "layer"),
        count(plan.vars.len(), "var"),
        count(plan.repos.len(), "repo")
    )
}
