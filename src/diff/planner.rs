//! The plan stage as a whole: render, refresh, diff, and resolve reads that can be resolved
//! now.
//!
//! 1. Every node in scope is rendered with no read values (values of reads are unknown).
//! 2. Everything is diffed in one batch ([`super::engine::diff`]).
//! 3. A `read` whose dependencies change nothing in the cluster (adopting existing objects
//!    changes only the state), and whose object exists, is resolved
//!    now (its value is the same during apply); the nodes that use it are rendered again with
//!    the value, and diffed again. This repeats while reads get resolved, so a re-plan right
//!    after an apply is empty instead of full of `(known after apply)`.
//!
//! Rendering is behind [`Renderer`] (the render stage implements it); reading values behind
//! the cluster door.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::cluster::{Cluster, Discovery};
use crate::graph::PlanGraph;
use crate::model::{Address, NodeSpec, Plan, ReadSelect};
use crate::state::ObjectRecord;

use super::change::{ChangeSet, NodeChange};
use super::engine::diff;
use super::error::DiffError;
use super::input::{DesiredNode, DesiredState, DiffInput, PlanCrds};

/// A value read from the cluster for a `read` node.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadValue {
    pub value: Value,
    /// Never printed or stored in clear.
    pub sensitive: bool,
}

/// A render failure, as the render stage reports it (it names the node).
pub type RenderFailure = Box<dyn miette::Diagnostic + Send + Sync + 'static>;

/// Renders manifest and helm nodes into desired objects.
pub trait Renderer: Send + Sync {
    /// Renders `nodes` (manifest and helm nodes, in graph order) with the read values known
    /// so far; one [`DesiredNode`] per node, in the same order.
    fn render<'a>(
        &'a self,
        nodes: &'a [Address],
        reads: &'a BTreeMap<Address, ReadValue>,
    ) -> BoxFuture<'a, Result<Vec<DesiredNode>, RenderFailure>>;
}

/// Why planning failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Render(RenderFailure),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Diff(#[from] DiffError),
}

/// What to plan.
#[derive(Debug, Clone, Copy)]
pub struct PlanRequest<'a> {
    pub plan: &'a Plan,
    pub graph: &'a PlanGraph,
    /// `--target` nodes (empty: the whole plan). Targets plan their dependencies too, and
    /// nodes outside the targets are not pruned.
    pub targets: &'a [Address],
    pub records: &'a [ObjectRecord],
    pub discovery: &'a Discovery,
    pub parallelism: usize,
}

/// Computes the change set of a plan.
pub async fn plan(
    cluster: &dyn Cluster,
    renderer: &dyn Renderer,
    request: PlanRequest<'_>,
) -> Result<ChangeSet, PlanError> {
    let order: Vec<Address> = if request.targets.is_empty() {
        request.graph.apply_order()
    } else {
        let keep = request.graph.with_dependencies(request.targets);
        request
            .graph
            .apply_order()
            .into_iter()
            .filter(|a| keep.contains(a))
            .collect()
    };
    let upstream: BTreeMap<String, BTreeSet<String>> = order
        .iter()
        .map(|a| {
            let deps = request
                .graph
                .with_dependencies(std::slice::from_ref(a))
                .into_iter()
                .filter(|d| d != a)
                .map(|d| d.to_string())
                .collect();
            (a.to_string(), deps)
        })
        .collect();
    let nothing = BTreeSet::new();
    let mut reads: BTreeMap<Address, ReadValue> = BTreeMap::new();
    let started = std::time::Instant::now();
    let desired = render_all(renderer, request.plan, &order, &reads).await?;
    tracing::info!(elapsed = ?started.elapsed(), nodes = desired.len(), "rendered");
    let mut crds = PlanCrds::default();
    crds.learn(
        desired
            .iter()
            .flat_map(|n| n.objects.iter().map(|o| &o.body)),
    );
    let mut changes = diff(
        cluster,
        DiffInput {
            nodes: &desired,
            records: request.records,
            discovery: request.discovery,
            prune_other_nodes: request.targets.is_empty(),
            plan_crds: &crds,
            parallelism: request.parallelism,
            upstream: &upstream,
            unknown_outside: &nothing,
        },
    )
    .await?;

    loop {
        let changed: BTreeSet<&str> = changes
            .iter()
            .filter(|c| c.changes_cluster())
            .map(|c| c.address.as_str())
            .collect();
        let mut newly: Vec<Address> = Vec::new();
        for address in &order {
            let Some(node) = request.plan.node(address) else {
                continue;
            };
            let NodeSpec::Read(read) = &node.spec else {
                continue;
            };
            if reads.contains_key(address) {
                continue;
            }
            let upstream = request
                .graph
                .with_dependencies(std::slice::from_ref(address));
            if upstream
                .iter()
                .any(|a| a != address && changed.contains(a.to_string().as_str()))
            {
                continue;
            }
            let scope = request.plan.static_scope();
            let Ok(target) = read.object_ref(node, &scope) else {
                continue;
            };
            if request.discovery.find(&target.kind_ref()).is_none() {
                continue;
            }
            let live = cluster
                .get(&target)
                .await
                .map_err(|source| DiffError::Read {
                    node: address.to_string(),
                    object: Box::new(target.clone()),
                    source,
                })?;
            if let Some(value) = live.as_ref().and_then(|o| select(o, &read.select)) {
                reads.insert(
                    address.clone(),
                    ReadValue {
                        value,
                        sensitive: read.sensitive,
                    },
                );
                newly.push(address.clone());
            }
        }
        if newly.is_empty() {
            break;
        }
        // The nodes that use a newly resolved read, and the reads themselves.
        let mut again: BTreeSet<Address> = newly.iter().cloned().collect();
        for r in &newly {
            again.extend(request.graph.dependents(r).into_iter().cloned());
        }
        let again: Vec<Address> = order
            .iter()
            .filter(|a| again.contains(*a))
            .cloned()
            .collect();
        tracing::info!(elapsed = ?started.elapsed(), reads = newly.len(), "reads resolved");
        let rerendered = render_all(renderer, request.plan, &again, &reads).await?;
        tracing::info!(elapsed = ?started.elapsed(), nodes = rerendered.len(), "rendered again");
        crds.learn(
            rerendered
                .iter()
                .flat_map(|n| n.objects.iter().map(|o| &o.body)),
        );
        let redone_names: BTreeSet<&str> = again_names(&rerendered);
        let unknown_outside: BTreeSet<String> = desired
            .iter()
            .filter(|n| n.may_define_kinds_later() && !redone_names.contains(n.address.as_str()))
            .map(|n| n.address.clone())
            .collect();
        let redone = diff(
            cluster,
            DiffInput {
                nodes: &rerendered,
                records: request.records,
                discovery: request.discovery,
                prune_other_nodes: false,
                plan_crds: &crds,
                parallelism: request.parallelism,
                upstream: &upstream,
                unknown_outside: &unknown_outside,
            },
        )
        .await?;
        let mut redone: BTreeMap<String, NodeChange> =
            redone.into_iter().map(|c| (c.address.clone(), c)).collect();
        for c in &mut changes {
            if let Some(new) = redone.remove(&c.address) {
                *c = new;
            }
        }
    }
    tracing::info!(elapsed = ?started.elapsed(), "planned");
    Ok(ChangeSet {
        plan: request.plan.name.clone(),
        nodes: changes,
    })
}

fn again_names(nodes: &[DesiredNode]) -> BTreeSet<&str> {
    nodes.iter().map(|n| n.address.as_str()).collect()
}

/// Renders the manifest and helm nodes among `order` and describes reads and checks.
async fn render_all(
    renderer: &dyn Renderer,
    plan: &Plan,
    order: &[Address],
    reads: &BTreeMap<Address, ReadValue>,
) -> Result<Vec<DesiredNode>, PlanError> {
    let to_render: Vec<Address> = order
        .iter()
        .filter(|a| {
            plan.node(a)
                .is_some_and(|n| matches!(n.spec, NodeSpec::Manifest(_) | NodeSpec::Helm(_)))
        })
        .cloned()
        .collect();
    let mut rendered: BTreeMap<String, DesiredNode> = renderer
        .render(&to_render, reads)
        .await
        .map_err(PlanError::Render)?
        .into_iter()
        .map(|n| (n.address.clone(), n))
        .collect();
    let mut out = Vec::new();
    for address in order {
        let key = address.to_string();
        match plan.node(address).map(|n| &n.spec) {
            Some(NodeSpec::Read(_)) => out.push(DesiredNode {
                address: key,
                state: DesiredState::Read {
                    resolved: reads.contains_key(address),
                },
                objects: Vec::new(),
                render_key: None,
            }),
            Some(NodeSpec::Check(_)) => out.push(DesiredNode {
                address: key,
                state: DesiredState::Check,
                objects: Vec::new(),
                render_key: None,
            }),
            Some(_) => {
                if let Some(n) = rendered.remove(&key) {
                    out.push(n);
                }
            }
            None => {}
        }
    }
    Ok(out)
}

/// The value a read selects from an object: a key of `data` (a Secret's base64-decoded), or
/// a dotted field path.
pub fn select(object: &Value, select: &ReadSelect) -> Option<Value> {
    match select {
        ReadSelect::Key(key) => {
            let raw = object.get("data")?.get(key)?;
            let is_secret = object.get("kind").and_then(Value::as_str) == Some("Secret");
            if is_secret {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw.as_str()?)
                    .ok()?;
                Some(Value::String(String::from_utf8(bytes).ok()?))
            } else {
                Some(raw.clone())
            }
        }
        ReadSelect::Field(path) => {
            let mut v = object;
            for p in path {
                v = match v {
                    Value::Array(items) => items.get(p.parse::<usize>().ok()?)?,
                    other => other.get(p)?,
                };
            }
            Some(v.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_select_keys_and_fields() {
        let secret = json!({"kind": "Secret", "data": {"ca.crt": "Q0VSVA=="}});
        assert_eq!(
            select(&secret, &ReadSelect::Key("ca.crt".into())),
            Some(json!("CERT"))
        );
        assert_eq!(select(&secret, &ReadSelect::Key("x".into())), None);
        let cm = json!({"kind": "ConfigMap", "data": {"a": "b"},
                        "status": {"ingress": [{"ip": "1.2.3.4"}]}});
        assert_eq!(select(&cm, &ReadSelect::Key("a".into())), Some(json!("b")));
        assert_eq!(
            select(
                &cm,
                &ReadSelect::Field(vec![
                    "status".into(),
                    "ingress".into(),
                    "0".into(),
                    "ip".into()
                ])
            ),
            Some(json!("1.2.3.4"))
        );
    }
}
