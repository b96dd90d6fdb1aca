//! Stage 3, the graph: a petgraph DAG of the plan's nodes.
//!
//! 1. Every enabled node is a vertex, keyed by its [`Address`].
//! 2. An edge `A → B` means "B needs A first". It comes from B's `depends_on` or from a
//!    `${A...}` reference inside B; each edge keeps every origin with its span.
//! 3. Cycles are errors that list the nodes of the cycle in order, with the span of each edge
//!    (a node depending on itself is a cycle of one).
//! 4. [`PlanGraph::layers`] groups nodes that can run together (a node's layer is one more
//!    than its deepest dependency); [`PlanGraph::destroy_layers`] is the reverse.
//! 5. Renderings ([`render`]): text, DOT and Mermaid, all deterministic.

pub mod render;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use petgraph::algo::{has_path_connecting, tarjan_scc};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::model::{Address, Plan, Reference};
use crate::planfile::{Diagnostic, DiagnosticKind, Span};

pub use render::{GRAPH_FORMAT, render_dot, render_json, render_mermaid, render_text};

/// Why an edge exists.
#[derive(Debug, Clone, PartialEq)]
pub enum EdgeOrigin {
    /// An entry of `depends_on`.
    DependsOn { span: Span },
    /// A `${TYPE.NAME.ATTR}` reference.
    Reference { reference: Reference, span: Span },
}

impl EdgeOrigin {
    pub fn span(&self) -> &Span {
        match self {
            EdgeOrigin::DependsOn { span } | EdgeOrigin::Reference { span, .. } => span,
        }
    }
}

/// The reasons for one edge, in source order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Edge {
    pub origins: Vec<EdgeOrigin>,
}

impl Edge {
    /// True when the edge only comes from references (drawn dashed).
    pub fn is_reference_only(&self) -> bool {
        self.origins
            .iter()
            .all(|o| matches!(o, EdgeOrigin::Reference { .. }))
    }
}

/// The dependency graph of a plan (acyclic once built).
#[derive(Debug, Clone)]
pub struct PlanGraph {
    name: String,
    graph: DiGraph<Address, Edge>,
    index: BTreeMap<Address, NodeIndex>,
}

/// Builds the graph of a plan; cycles are reported as diagnostics (all of them).
pub fn build(plan: &Plan) -> Result<PlanGraph, Vec<Diagnostic>> {
    let mut graph = DiGraph::new();
    let mut index = BTreeMap::new();
    for address in plan.nodes.keys() {
        index.insert(address.clone(), graph.add_node(address.clone()));
    }
    // (dependency, dependent) → edge, collected in a BTreeMap for a deterministic edge order.
    let mut edges: BTreeMap<(Address, Address), Edge> = BTreeMap::new();
    for node in plan.nodes.values() {
        for dep in &node.depends_on {
            if index.contains_key(&dep.target) {
                edges
                    .entry((dep.target.clone(), node.address.clone()))
                    .or_default()
                    .origins
                    .push(EdgeOrigin::DependsOn {
                        span: dep.span.clone(),
                    });
            }
        }
        for r in node.references() {
            if let Reference::Node { address, .. } = &r.reference
                && index.contains_key(address)
            {
                edges
                    .entry((address.clone(), node.address.clone()))
                    .or_default()
                    .origins
                    .push(EdgeOrigin::Reference {
                        reference: r.reference.clone(),
                        span: r.span.clone(),
                    });
            }
        }
    }
    for ((from, to), mut edge) in edges {
        edge.origins.sort_by_key(|o| o.span().key());
        if let (Some(&a), Some(&b)) = (index.get(&from), index.get(&to)) {
            graph.add_edge(a, b, edge);
        }
    }
    let g = PlanGraph {
        name: plan.name.clone(),
        graph,
        index,
    };
    let cycles = g.cycles();
    if cycles.is_empty() {
        Ok(g)
    } else {
        Err(cycles)
    }
}

impl PlanGraph {
    /// The plan's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every node, in address order.
    pub fn nodes(&self) -> impl Iterator<Item = &Address> {
        self.index.keys()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, address: &Address) -> bool {
        self.index.contains_key(address)
    }

    /// Direct dependencies of a node (what must be done before it), sorted.
    pub fn dependencies(&self, address: &Address) -> Vec<&Address> {
        self.neighbours(address, petgraph::Direction::Incoming)
    }

    /// Direct dependents of a node (what waits for it), sorted.
    pub fn dependents(&self, address: &Address) -> Vec<&Address> {
        self.neighbours(address, petgraph::Direction::Outgoing)
    }

    fn neighbours(&self, address: &Address, dir: petgraph::Direction) -> Vec<&Address> {
        let Some(&i) = self.index.get(address) else {
            return Vec::new();
        };
        let mut out: Vec<&Address> = self
            .graph
            .neighbors_directed(i, dir)
            .map(|n| &self.graph[n])
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every edge as (dependency, dependent, reasons), sorted by (dependency, dependent).
    pub fn edges(&self) -> Vec<(&Address, &Address, &Edge)> {
        let mut out: Vec<_> = self
            .graph
            .edge_references()
            .map(|e| (&self.graph[e.source()], &self.graph[e.target()], e.weight()))
            .collect();
        out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out
    }

    /// Whether `to` (transitively) depends on `from`.
    pub fn has_path(&self, from: &Address, to: &Address) -> bool {
        match (self.index.get(from), self.index.get(to)) {
            (Some(&a), Some(&b)) => has_path_connecting(&self.graph, a, b, None),
            _ => false,
        }
    }

    /// True when neither node depends (transitively) on the other.
    pub fn are_independent(&self, a: &Address, b: &Address) -> bool {
        !self.has_path(a, b) && !self.has_path(b, a)
    }

    /// Layers for apply: layer 0 has no dependencies; each node sits one layer after its
    /// deepest dependency. Nodes are sorted inside a layer.
    pub fn layers(&self) -> Vec<Vec<Address>> {
        let mut depth: BTreeMap<&Address, usize> = BTreeMap::new();
        // Kahn's algorithm in address order, so the result never depends on insertion order.
        let mut remaining: BTreeMap<&Address, usize> = self
            .index
            .keys()
            .map(|a| (a, self.dependencies(a).len()))
            .collect();
        let mut ready: VecDeque<&Address> = remaining
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(a, _)| *a)
            .collect();
        while let Some(a) = ready.pop_front() {
            let d = self
                .dependencies(a)
                .iter()
                .filter_map(|dep| depth.get(dep))
                .map(|d| d + 1)
                .max()
                .unwrap_or(0);
            depth.insert(a, d);
            for next in self.dependents(a) {
                if let Some(n) = remaining.get_mut(next) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        ready.push_back(next);
                    }
                }
            }
        }
        let mut layers: Vec<Vec<Address>> = Vec::new();
        for (a, d) in depth {
            if layers.len() <= d {
                layers.resize_with(d + 1, Vec::new);
            }
            layers[d].push(a.clone());
        }
        for layer in &mut layers {
            layer.sort();
        }
        layers
    }

    /// Apply order: the layers, flattened.
    pub fn apply_order(&self) -> Vec<Address> {
        self.layers().into_iter().flatten().collect()
    }

    /// Layers for destroy: dependents before their dependencies (the layers reversed).
    pub fn destroy_layers(&self) -> Vec<Vec<Address>> {
        let mut layers = self.layers();
        layers.reverse();
        layers
    }

    /// Destroy order: the destroy layers, flattened.
    pub fn destroy_order(&self) -> Vec<Address> {
        self.destroy_layers().into_iter().flatten().collect()
    }

    /// The given nodes and everything they depend on (for `--target`), sorted.
    pub fn with_dependencies(&self, targets: &[Address]) -> BTreeSet<Address> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<&Address> = targets.iter().filter(|t| self.contains(t)).collect();
        while let Some(a) = todo.pop() {
            if out.insert(a.clone()) {
                todo.extend(self.dependencies(a));
            }
        }
        out
    }

    /// One diagnostic per cycle (per strongly connected component), naming every node of
    /// one cycle in order, starting from the smallest address.
    fn cycles(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut components = tarjan_scc(&self.graph);
        for c in &mut components {
            c.sort_by(|a, b| self.graph[*a].cmp(&self.graph[*b]));
        }
        components.sort_by(|a, b| {
            let first = |c: &Vec<NodeIndex>| c.first().map(|i| &self.graph[*i]);
            first(a).cmp(&first(b))
        });
        for component in components {
            let Some(&start) = component.first() else {
                continue;
            };
            let self_loop = self.graph.find_edge(start, start).is_some();
            if component.len() == 1 && !self_loop {
                continue;
            }
            let members: BTreeSet<NodeIndex> = component.iter().copied().collect();
            let path = if self_loop {
                vec![start, start]
            } else {
                self.shortest_cycle(start, &members)
            };
            out.push(self.cycle_diagnostic(&path));
        }
        out
    }

    /// Follows "depends on" (incoming edges) from `start` back to `start`, breadth first,
    /// visiting neighbours in address order; returns start, ..., start.
    fn shortest_cycle(&self, start: NodeIndex, members: &BTreeSet<NodeIndex>) -> Vec<NodeIndex> {
        let mut parent: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            let mut next: Vec<NodeIndex> = self
                .graph
                .neighbors_directed(n, petgraph::Direction::Incoming)
                .filter(|m| members.contains(m))
                .collect();
            next.sort_by(|a, b| self.graph[*a].cmp(&self.graph[*b]));
            next.dedup();
            for m in next {
                if m == start {
                    let mut path = vec![start];
                    let mut cur = n;
                    let mut back = vec![];
                    while cur != start {
                        back.push(cur);
                        cur = parent.get(&cur).copied().unwrap_or(start);
                    }
                    back.reverse();
                    path.extend(back);
                    path.push(start);
                    return path;
                }
                if m != start && !parent.contains_key(&m) {
                    parent.insert(m, n);
                    queue.push_back(m);
                }
            }
        }
        vec![start, start]
    }

    fn cycle_diagnostic(&self, path: &[NodeIndex]) -> Diagnostic {
        let names: Vec<String> = path.iter().map(|i| self.graph[*i].to_string()).collect();
        let message = if let [a, b] = path
            && a == b
        {
            format!("{} depends on itself", self.graph[*a])
        } else {
            format!("dependency cycle: {}", names.join(" → "))
        };
        let mut d = Diagnostic::new(DiagnosticKind::Cycle, message);
        for (step, pair) in path.windows(2).enumerate() {
            let (dependent, dependency) = (pair[0], pair[1]);
            if let Some(e) = self.graph.find_edge(dependency, dependent)
                && let Some(origin) = self.graph[e].origins.first()
            {
                let how = match origin {
                    EdgeOrigin::DependsOn { .. } => "depends on",
                    EdgeOrigin::Reference { .. } => "refers to",
                };
                d = d.label(
                    origin.span().clone(),
                    format!(
                        "{}. {} {how} {}",
                        step + 1,
                        self.graph[dependent],
                        self.graph[dependency]
                    ),
                );
            }
        }
        d.help(
            "remove one of these dependencies (a depends_on entry or a ${...} reference) to break \
             the cycle",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{self, BuildInput};
    use crate::planfile::{SourceMap, parse_plan};

    fn graph(text: &str) -> Result<PlanGraph, Vec<Diagnostic>> {
        let mut sources = SourceMap::new();
        let file = sources.add("plan.toml", text);
        let (raw, diags) = parse_plan(file, text);
        assert!(diags.is_empty(), "{diags:?}");
        let plan = model::build(&raw, &BuildInput::default(), &mut sources).unwrap();
        build(&plan)
    }

    const HEAD: &str = "[plan]\nname = \"t\"\n[repos]\nr = \"https://example.com\"\n";

    fn node(name: &str, deps: &[&str]) -> String {
        let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
        format!(
            "[helm.{name}]\nchart = \"r/{name}\"\ndepends_on = [{}]\n",
            deps.join(", ")
        )
    }

    #[test]
    fn layers_and_reverse() {
        let text = format!(
            "{HEAD}{}{}{}{}",
            node("a", &[]),
            node("b", &["helm.a"]),
            node("c", &["helm.a"]),
            node("d", &["helm.b", "helm.c"])
        );
        let g = graph(&text).unwrap();
        let show = |layers: Vec<Vec<Address>>| -> Vec<Vec<String>> {
            layers
                .into_iter()
                .map(|l| l.into_iter().map(|a| a.to_string()).collect())
                .collect()
        };
        assert_eq!(
            show(g.layers()),
            [vec!["helm.a"], vec!["helm.b", "helm.c"], vec!["helm.d"]]
        );
        assert_eq!(
            show(g.destroy_layers()),
            [vec!["helm.d"], vec!["helm.b", "helm.c"], vec!["helm.a"]]
        );
        let a = Address::parse("helm.a").unwrap();
        let d = Address::parse("helm.d").unwrap();
        assert!(g.has_path(&a, &d));
        assert!(!g.has_path(&d, &a));
        let b = Address::parse("helm.b").unwrap();
        let c = Address::parse("helm.c").unwrap();
        assert!(g.are_independent(&b, &c));
        assert_eq!(g.with_dependencies(std::slice::from_ref(&b)).len(), 2);
    }

    #[test]
    fn references_make_edges() {
        let text = format!(
            "{HEAD}[read.ca]\napi_version = \"v1\"\nkind = \"Secret\"\nname = \"s\"\nkey = \"ca.crt\"\n{}[helm.x.values]\nca = \"${{read.ca.value}}\"\n",
            node("x", &[])
        );
        let g = graph(&text).unwrap();
        let edges = g.edges();
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0].0.to_string(), "read.ca");
        assert!(edges[0].2.is_reference_only());
    }

    #[test]
    fn cycles_name_every_node_in_order() {
        let text = format!(
            "{HEAD}{}{}{}{}",
            node("a", &["helm.c"]),
            node("b", &["helm.a"]),
            node("c", &["helm.b"]),
            node("z", &["helm.z"])
        );
        let diags = graph(&text).unwrap_err();
        assert_eq!(diags.len(), 2);
        assert_eq!(
            diags[0].message,
            "dependency cycle: helm.a → helm.c → helm.b → helm.a"
        );
        assert_eq!(diags[0].labels.len(), 3);
        assert_eq!(diags[0].labels[0].text, "1. helm.a depends on helm.c");
        assert_eq!(diags[1].message, "helm.z depends on itself");
    }
}
