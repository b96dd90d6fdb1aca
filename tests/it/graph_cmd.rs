//! `meshplan graph`: text, DOT and Mermaid renderings of the sample plan, and the ordering the
//! issue asks for, read back from the DOT output itself.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::run;

fn graph(format: &str, extra: &[&str]) -> String {
    let mut args = vec!["graph", "plans/linkerd.toml", "--format", format];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
    stdout
}

/// Edges `"a" -> "b"` of a DOT text, as an adjacency map.
fn dot_edges(dot: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in dot.lines() {
        if let Some((from, rest)) = line.trim().split_once(" -> ") {
            let to = rest.split(['[', ';']).next().unwrap().trim();
            edges
                .entry(from.trim_matches('"').to_string())
                .or_default()
                .insert(to.trim_matches('"').to_string());
        }
    }
    edges
}

fn reaches(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut todo = vec![from.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(n) = todo.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n.clone()) {
            todo.extend(edges.get(&n).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn dot_orders_the_stack_as_the_issue_asks() {
    let dot = graph("dot", &[]);
    assert!(dot.starts_with("digraph \"linkerd\" {\n"));
    let edges = dot_edges(&dot);
    for chain in [
        "helm.cert_manager",
        "manifest.selfsigned_issuer",
        "manifest.root_ca",
        "manifest.ca_issuer",
        "manifest.identity_issuer",
        "read.trust_anchor",
    ] {
        assert!(
            !reaches(&edges, "helm.linkerd_crds", chain),
            "crds → {chain}"
        );
        assert!(
            !reaches(&edges, chain, "helm.linkerd_crds"),
            "{chain} → crds"
        );
    }
    assert!(reaches(
        &edges,
        "helm.cert_manager",
        "manifest.identity_issuer"
    ));
    assert!(reaches(
        &edges,
        "read.trust_anchor",
        "helm.linkerd_control_plane"
    ));
    assert!(reaches(
        &edges,
        "helm.linkerd_viz",
        "manifest.linkerd_podmonitors"
    ));
    assert!(!reaches(
        &edges,
        "manifest.linkerd_podmonitors",
        "helm.linkerd_viz"
    ));
    // No cycle: nothing reaches itself.
    for node in edges.keys() {
        let next = &edges[node];
        assert!(
            next.iter().all(|n| !reaches(&edges, n, node)),
            "cycle through {node}"
        );
    }
}

#[test]
fn dot_snapshot() {
    insta::assert_snapshot!(graph("dot", &[]));
}

#[test]
fn text_snapshot() {
    insta::assert_snapshot!(graph("text", &[]));
}

#[test]
fn mermaid_snapshot_with_the_dashboard() {
    insta::assert_snapshot!(graph("mermaid", &["--var", "viz_dashboard_ingress=true"]));
}

#[test]
fn default_format_is_text_and_output_is_deterministic() {
    let (code, first, _) = run(&["graph", "plans/linkerd.toml"]);
    assert_eq!(code, Some(0));
    assert_eq!(first, graph("text", &[]));
    for _ in 0..3 {
        assert_eq!(graph("dot", &[]), graph("dot", &[]));
    }
}
