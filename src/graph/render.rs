//! Text, DOT and Mermaid renderings of a [`PlanGraph`]. Deterministic: nodes in address
//! order, edges sorted. Edges that only come from `${...}` references are drawn dashed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::{Address, NodeKind};

use super::PlanGraph;

/// Layers, one node per line with what it waits for:
///
/// ```text
/// layer 1
///   helm.cert_manager
/// layer 2
///   manifest.selfsigned_issuer  <- helm.cert_manager
/// ```
pub fn render_text(graph: &PlanGraph) -> String {
    let mut out = String::new();
    let layers = graph.layers();
    let _ = writeln!(
        out,
        "plan {}: {} node{}, {} edge{}, {} layer{}",
        graph.name(),
        graph.len(),
        plural(graph.len()),
        graph.edges().len(),
        plural(graph.edges().len()),
        layers.len(),
        plural(layers.len())
    );
    for (i, layer) in layers.iter().enumerate() {
        let _ = writeln!(out, "layer {}", i + 1);
        let width = layer.iter().map(|a| a.to_string().len()).max().unwrap_or(0);
        for address in layer {
            let deps = graph.dependencies(address);
            if deps.is_empty() {
                let _ = writeln!(out, "  {address}");
            } else {
                let deps: Vec<String> = deps.iter().map(|a| a.to_string()).collect();
                let _ = writeln!(
                    out,
                    "  {:<width$}  <- {}",
                    address.to_string(),
                    deps.join(", ")
                );
            }
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn dot_shape(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Manifest => "box",
        NodeKind::Helm => "component",
        NodeKind::Read => "note",
        NodeKind::Check => "diamond",
    }
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Graphviz DOT: `dot -Tsvg` draws it. Edges point from a dependency to its dependent.
pub fn render_dot(graph: &PlanGraph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", dot_quote(graph.name()));
    out.push_str("  rankdir=LR;\n");
    out.push_str("  node [fontname=\"monospace\"];\n");
    for (i, layer) in graph.layers().iter().enumerate() {
        let _ = writeln!(out, "  // layer {}", i + 1);
        for address in layer {
            let _ = writeln!(
                out,
                "  {} [shape={}];",
                dot_quote(&address.to_string()),
                dot_shape(address.kind)
            );
        }
    }
    for (from, to, edge) in graph.edges() {
        let style = if edge.is_reference_only() {
            " [style=dashed]"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {} -> {}{style};",
            dot_quote(&from.to_string()),
            dot_quote(&to.to_string())
        );
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart (renders on GitHub and GitLab).
pub fn render_mermaid(graph: &PlanGraph) -> String {
    let ids: BTreeMap<&Address, String> = graph
        .nodes()
        .enumerate()
        .map(|(i, a)| (a, format!("n{i}")))
        .collect();
    let id = |a: &Address| ids.get(a).cloned().unwrap_or_default();
    let mut out = String::from("flowchart LR\n");
    for address in graph.nodes() {
        let label = address.to_string();
        let shape = match address.kind {
            NodeKind::Manifest => format!("[\"{label}\"]"),
            NodeKind::Helm => format!("[[\"{label}\"]]"),
            NodeKind::Read => format!("[/\"{label}\"/]"),
            NodeKind::Check => format!("{{\"{label}\"}}"),
        };
        let _ = writeln!(out, "  {}{shape}", id(address));
    }
    for (from, to, edge) in graph.edges() {
        let arrow = if edge.is_reference_only() {
            "-.->"
        } else {
            "-->"
        };
        let _ = writeln!(out, "  {} {arrow} {}", id(from), id(to));
    }
    out
}
