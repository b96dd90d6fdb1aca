//! What `meshplan validate` prints: the summary line, or (`--output json`) the summary or every
//! problem with its place, as data for editors and CI.

use serde_json::{Value, json};

use crate::load::LoadedPlan;
use crate::planfile::Diagnostics;

/// Version of the JSON shape of `validate --output json`.
pub const VALIDATE_FORMAT: u32 = 1;

/// A valid plan as JSON: its name, nodes (and disabled ones), and counts.
pub fn summary_json(loaded: &LoadedPlan) -> String {
    let plan = &loaded.plan;
    pretty(&json!({
        "format_version": VALIDATE_FORMAT,
        "valid": true,
        "plan": plan.name,
        "nodes": plan.nodes.keys().map(ToString::to_string).collect::<Vec<_>>(),
        "disabled": plan.disabled.keys().map(ToString::to_string).collect::<Vec<_>>(),
        "edges": loaded.graph.edges().len(),
        "layers": loaded.graph.layers().len(),
        "vars": plan.vars.len(),
        "repos": plan.repos.len(),
    }))
}

/// An invalid plan as JSON: every problem with its code, message, help and places (file,
/// 1-based line and column, label).
pub fn diagnostics_json(diags: &Diagnostics) -> String {
    let problems: Vec<Value> = diags
        .items
        .iter()
        .map(|d| {
            let labels: Vec<Value> = d
                .labels
                .iter()
                .map(|l| {
                    let (line, column) = diags.sources.line_col(l.span.file, l.span.range.start);
                    json!({
                        "file": diags.sources.name(l.span.file),
                        "line": line,
                        "column": column,
                        "label": l.text,
                    })
                })
                .collect();
            json!({
                "code": d.kind.code(),
                "message": d.message,
                "help": d.help,
                "labels": labels,
            })
        })
        .collect();
    pretty(&json!({
        "format_version": VALIDATE_FORMAT,
        "valid": false,
        "problems": problems,
    }))
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

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
