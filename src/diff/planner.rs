//! The plan stage as a whole: render, refresh, diff, and resolve reads that can be resolved
//! now.
//!
//! 1. Every node in scope is rendered. The values of reads are unknown (placeholders),
//!    except, in a first plan (the state records nothing upstream of the read), those of
//!    reads whose object exists now ([`reads_now`]).
//! 2. Everything is diffed in one batch ([`super::engine::diff`]).
//! 3. A read whose object exists is resolved (its value is the same during apply) when
//!    nothing upstream of it changes what it reads: no change of the cluster, except an
//!    update that only puts the plan's ownership marks on objects (adopting what another
//!    tool installed: no controller derives a value from those marks). A read resolved in
//!    step 1 whose upstream does change it is dropped: known only during apply. The nodes
//!    that use a read resolved or dropped are rendered again and diffed again; this repeats
//!    while reads get resolved or dropped, so a re-plan right after an apply is empty instead
//!    of full of `(known after apply)`.
//!
//! A first plan renders the users of a read once, with the value, in the common cases (a
//! first install has no object to read; a first plan over an existing installation changes
//! at most the marks): nothing is cached yet, and the placeholder render is left for when
//! the read's upstream changes it. Later plans start with the placeholders, as the plans
//! before them did: both renders are in the render cache then.
//!
//! Rendering is behind [`Renderer`] (the render stage implements it); reading values behind
//! the cluster door.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::cluster::{Cluster, Discovery};
use crate::graph::PlanGraph;
use crate::model::{Address, NodeSpec, ObjectRef, Plan, Read as ReadSpec, ReadSelect};
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
    /// The values of reads whose object exists now ([`reads_now`]); the plan starts with
    /// those of the nodes in scope.
    pub reads_now: &'a BTreeMap<Address, ReadValue>,
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
    let started = std::time::Instant::now();
    let targets: BTreeMap<Address, (ObjectRef, &ReadSpec)> = order
        .iter()
        .filter_map(|a| read_target(request.plan, request.discovery, a).map(|t| (a.clone(), t)))
        .collect();
    // A first plan (the state records nothing upstream of a read; e.g. over what another tool
    // installed) renders the users of a read whose object exists with its value at once:
    // nothing is cached yet, and the placeholder render is then needed only when the read's
    // upstream changes it. Later plans render with placeholders first, as the previous plans
    // did (from the render cache), and with the value once nothing upstream changes it.
    let recorded: BTreeSet<&str> = request.records.iter().map(|r| r.node.as_str()).collect();
    let first_plan = |read: &Address| {
        upstream
            .get(&read.to_string())
            .is_none_or(|deps| !deps.iter().any(|d| recorded.contains(d.as_str())))
    };
    let mut reads: BTreeMap<Address, ReadValue> = request
        .reads_now
        .iter()
        .filter(|(a, _)| targets.contains_key(*a) && first_plan(a))
        .map(|(a, v)| (a.clone(), v.clone()))
        .collect();
    // Reads resolved, then found to change: known only during apply.
    let mut dropped: BTreeSet<Address> = BTreeSet::new();
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
        let by_address: BTreeMap<&str, &NodeChange> =
            changes.iter().map(|c| (c.address.as_str(), c)).collect();
        // Whether anything upstream of a read changes what it reads.
        let changes_read = |a: &Address| {
            let Some((target, read)) = targets.get(a) else {
                return true;
            };
            let reads_metadata = matches!(
                &read.select,
                ReadSelect::Field(path) if path.first().is_none_or(|p| p == "metadata")
            );
            upstream.get(&a.to_string()).is_some_and(|deps| {
                deps.iter().any(|d| {
                    by_address
                        .get(d.as_str())
                        .is_some_and(|c| c.may_change_read_of(target, reads_metadata))
                })
            })
        };
        let newly_dropped: Vec<Address> =
            reads.keys().filter(|a| changes_read(a)).cloned().collect();
        let newly: Vec<Address> = request
            .reads_now
            .keys()
            .filter(|a| {
                targets.contains_key(*a)
                    && !reads.contains_key(*a)
                    && !dropped.contains(*a)
                    && !changes_read(a)
            })
            .cloned()
            .collect();
        drop(by_address);
        if newly.is_empty() && newly_dropped.is_empty() {
            break;
        }
        for a in &newly_dropped {
            reads.remove(a);
            dropped.insert(a.clone());
        }
        for a in &newly {
            if let Some(value) = request.reads_now.get(a) {
                reads.insert(a.clone(), value.clone());
            }
        }
        let changed_reads: Vec<Address> = newly.into_iter().chain(newly_dropped).collect();
        // The reads resolved or dropped, and the nodes that use them.
        let mut again: BTreeSet<Address> = changed_reads.iter().cloned().collect();
        for r in &changed_reads {
            again.extend(request.graph.dependents(r).into_iter().cloned());
        }
        let again: Vec<Address> = order
            .iter()
            .filter(|a| again.contains(*a))
            .cloned()
            .collect();
        tracing::info!(elapsed = ?started.elapsed(), reads = changed_reads.len(), "reads resolved or dropped");
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

/// The values of the `read` nodes whose object (and selected key or field) exists now: what
/// [`plan`] starts with, and what the lint renders with. `only`: the nodes in scope (None:
/// all).
pub async fn reads_now(
    cluster: &dyn Cluster,
    plan: &Plan,
    discovery: &Discovery,
    only: Option<&BTreeSet<Address>>,
) -> Result<BTreeMap<Address, ReadValue>, DiffError> {
    let mut reads = BTreeMap::new();
    for address in plan
        .nodes
        .keys()
        .filter(|a| only.is_none_or(|only| only.contains(*a)))
    {
        let Some((target, read)) = read_target(plan, discovery, address) else {
            continue;
        };
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
        }
    }
    Ok(reads)
}

/// The object a `read` node reads, when it can be read at plan time (its kind is served).
fn read_target<'a>(
    plan: &'a Plan,
    discovery: &Discovery,
    address: &Address,
) -> Option<(ObjectRef, &'a ReadSpec)> {
    let node = plan.node(address)?;
    let NodeSpec::Read(read) = &node.spec else {
        return None;
    };
    let target = read.object_ref(node, &plan.static_scope()).ok()?;
    discovery.find(&target.kind_ref())?;
    Some((target, read))
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
