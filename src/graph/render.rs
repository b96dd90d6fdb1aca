//! Text, DOT, Mermaid and JSON renderings of a [`PlanGraph`]. Deterministic: nodes in address
//! order, edges sorted. Edges that only come from `${...}` references are drawn dashed (in
//! JSON: `"via": "reference"`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::{Address, NodeKind};

use super::PlanGraph;

/// Version of the graph's JSON shape.
pub const GRAPH_FORMAT: u32 = 1;

/// The graph as data (`meshplan graph --output json`): the layers (apply order), the nodes
/// with their layer and dependencies, and the edges with why they exist (`depends_on`,
/// `reference`, or both).
pub fn render_json(graph: &PlanGraph) -> String {
    let layers = graph.layers();
    let layer_of: BTreeMap<&Address, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |a| (a, i + 1)))
        .collect();
    let nodes: Vec<serde_json::Value> = graph
        .nodes()
        .map(|a| {
            serde_json::json!({
                "address": a.to_string(),
                "type": a.kind.as_str(),
                "name": a.name,
                "layer": layer_of.get(a),
                "depends_on": graph.dependencies(a).iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    let edges: Vec<serde_json::Value> = graph
        .edges()
        .into_iter()
        .map(|(from, to, edge)| {
            let mut via: Vec<&str> = edge
                .origins
                .iter()
                .map(|o| match o {
                    super::EdgeOrigin::DependsOn { .. } => "depends_on",
                    super::EdgeOrigin::Reference { .. } => "reference",
                })
                .collect();
            via.sort_unstable();
            via.dedup();
            serde_json::json!({"from": from.to_string(), "to": to.to_string(), "via": via})
        })
        .collect();
    let doc = serde_json::json!({
        "format_version": GRAPH_FORMAT,
        "plan": graph.name(),
        "layers": layers
            .iter()
            .map(|l| l.iter().map(ToString::to_string).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        "nodes": nodes,
        "edges": edges,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

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
