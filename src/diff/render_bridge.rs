//! The render stage seen through the planner's [`Renderer`] trait: renders nodes with
//! [`crate::render::Renderer`] and turns its objects into [`DesiredNode`]s
//! ([`RenderStage`]; [`RecordingStage`] also keeps what each node rendered to, for apply to
//! store as its previous render); and the render cache kept in the state
//! ([`StateRenderCache`]).

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;

use crate::model::{Address, Plan};
use crate::render::{self, NodeRender, PreviousRender, RenderInputs, RenderedObject};

use super::change::HookMarks;
use super::input::{DesiredNode, DesiredObject, DesiredState};
use super::planner::{ReadValue, RenderFailure, Renderer};
use super::previous::RenderedLog;

/// The render stage for one plan.
pub struct RenderStage<'p> {
    pub renderer: render::Renderer,
    pub plan: &'p Plan,
    /// What was applied last, per node.
    pub previous: BTreeMap<Address, PreviousRender>,
    /// Nodes already rendered with the same plan, previous renders, discovery and state (the
    /// lint's render), and the read values they were rendered with: the first render of
    /// exactly these nodes with the same read values takes them instead of rendering again.
    pub rendered: std::sync::Mutex<RenderedWith>,
}

/// The values of reads as the render stage takes them.
pub fn render_reads(reads: &BTreeMap<Address, ReadValue>) -> BTreeMap<Address, render::ReadValue> {
    reads
        .iter()
        .map(|(a, r)| {
            (
                a.clone(),
                render::ReadValue {
                    value: r.value.clone(),
                    sensitive: r.sensitive,
                },
            )
        })
        .collect()
}

/// Nodes rendered already, with the read values they were rendered with.
#[derive(Default)]
pub struct RenderedWith {
    pub reads: BTreeMap<Address, ReadValue>,
    pub nodes: BTreeMap<Address, NodeRender>,
}

impl RenderStage<'_> {
    /// Renders `nodes` with the values read so far, as the renderer gives them (nothing for
    /// no nodes).
    pub async fn render_nodes(
        &self,
        nodes: &[Address],
        reads: &BTreeMap<Address, ReadValue>,
    ) -> Result<BTreeMap<Address, NodeRender>, RenderFailure> {
        if nodes.is_empty() {
            return Ok(BTreeMap::new());
        }
        if let Ok(mut rendered) = self.rendered.lock()
            && !rendered.nodes.is_empty()
            && rendered.reads == *reads
            && rendered.nodes.len() == nodes.len()
            && nodes.iter().all(|a| rendered.nodes.contains_key(a))
        {
            return Ok(std::mem::take(&mut rendered.nodes));
        }
        let inputs = RenderInputs {
            reads: render_reads(reads),
            previous: self.previous.clone(),
            targets: Some(nodes.iter().cloned().collect::<BTreeSet<_>>()),
            ..RenderInputs::default()
        };
        let rendered = self
            .renderer
            .render(self.plan, &inputs)
            .await
            .map_err(|e| Box::new(e) as RenderFailure)?;
        Ok(rendered.nodes)
    }
}

impl Renderer for RenderStage<'_> {
    fn render<'a>(
        &'a self,
        nodes: &'a [Address],
        reads: &'a BTreeMap<Address, ReadValue>,
    ) -> BoxFuture<'a, Result<Vec<DesiredNode>, RenderFailure>> {
        Box::pin(async move {
            let rendered = self.render_nodes(nodes, reads).await?;
            Ok(desired_nodes(nodes, rendered))
        })
    }
}

/// The render stage, keeping what each node rendered to in `log` (when given).
pub struct RecordingStage<'p, 'l> {
    pub inner: RenderStage<'p>,
    pub log: Option<&'l RenderedLog>,
}

impl Renderer for RecordingStage<'_, '_> {
    fn render<'a>(
        &'a self,
        nodes: &'a [Address],
        reads: &'a BTreeMap<Address, ReadValue>,
    ) -> BoxFuture<'a, Result<Vec<DesiredNode>, RenderFailure>> {
        Box::pin(async move {
            let rendered = self.inner.render_nodes(nodes, reads).await?;
            if let Some(log) = self.log
                && let Ok(mut log) = log.lock()
            {
                for (address, node) in &rendered {
                    if matches!(node.status, render::NodeStatus::Rendered) {
                        log.insert(address.clone(), node.to_previous());
                    }
                }
            }
            Ok(desired_nodes(nodes, rendered))
        })
    }
}

/// The rendered `nodes`, in their order, as the diff sees them.
pub fn desired_nodes(
    nodes: &[Address],
    mut rendered: BTreeMap<Address, NodeRender>,
) -> Vec<DesiredNode> {
    nodes
        .iter()
        .filter_map(|a| rendered.remove(a).map(desired_node))
        .collect()
}

/// One rendered node as the diff sees it.
pub fn desired_node(node: NodeRender) -> DesiredNode {
    let state = match &node.status {
        render::NodeStatus::Rendered => DesiredState::Rendered,
        render::NodeStatus::RenderedWithPlaceholders { unknown_references } => {
            DesiredState::Placeholders {
                references: unknown_references.clone(),
            }
        }
        render::NodeStatus::RenderedDuringApply {
            unknown_references,
            refused_placeholders,
            ..
        } => DesiredState::DuringApply {
            reason: match refused_placeholders {
                None => format!(
                    "its version or namespace uses {}, known only during apply",
                    unknown_references.join(", ")
                ),
                Some(why) => format!(
                    "its values use {}, known only during apply, and {why}",
                    unknown_references.join(", ")
                ),
            },
        },
    };
    let render_key = node.helm.as_ref().map(|h| h.cache_key.clone());
    let objects = node
        .objects
        .into_iter()
        .chain(node.hooks)
        .map(desired_object)
        .collect();
    DesiredNode {
        address: node.address.to_string(),
        state,
        objects,
        render_key,
    }
}

fn desired_object(o: RenderedObject) -> DesiredObject {
    DesiredObject {
        object: o.object_ref,
        body: o.object,
        digest: o.digest,
        unknown_paths: o.unknown_paths,
        sensitive_paths: o.sensitive_paths,
        volatile_paths: o.volatile_paths,
        hook: o.hook.map(|h| HookMarks {
            phases: h.phases.iter().map(|p| p.as_str().to_owned()).collect(),
            weight: h.weight,
            delete_policies: h
                .delete_policies
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        }),
    }
}

/// The render cache kept in the state: chart outputs by render cache key, a chart's
/// generated Secrets encrypted with the state key.
pub struct StateRenderCache {
    pub store: std::sync::Arc<dyn crate::state::StateStore>,
}

impl render::RenderCache for StateRenderCache {
    fn get(&self, key: &str) -> Result<Option<serde_json::Value>, render::CacheError> {
        let err = |e: crate::state::StateError| render::CacheError {
            message: e.to_string(),
        };
        let Some(entry) = self.store.render_cache(key).map_err(err)? else {
            return Ok(None);
        };
        match entry.objects.first() {
            Some(body) => self.store.reveal(body).map(Some).map_err(err),
            None => Ok(None),
        }
    }

    fn put(&self, key: &str, output: &serde_json::Value) -> Result<(), render::CacheError> {
        let err = |e: crate::state::StateError| render::CacheError {
            message: e.to_string(),
        };
        let sensitive: Vec<String> = output
            .get("documents")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, d)| {
                d.pointer("/object/kind")
                    .and_then(serde_json::Value::as_str)
                    == Some("Secret")
            })
            .flat_map(|(i, d)| {
                ["data", "stringData"]
                    .into_iter()
                    .filter(move |k| d.pointer(&format!("/object/{k}")).is_some())
                    .map(move |k| format!("/documents/{i}/object/{k}"))
            })
            .collect();
        // And what the render found derived from sensitive inputs.
        let mut sensitive = sensitive;
        for (i, d) in output
            .get("documents")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let marked = d
                .get("sensitive_paths")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(serde_json::Value::as_str);
            sensitive.extend(marked.map(|p| format!("/documents/{i}/object{p}")));
        }
        let extra: Vec<&str> = sensitive.iter().map(String::as_str).collect();
        let body = self.store.protect(output, &extra).map_err(err)?;
        let entry = crate::state::RenderCacheEntry {
            objects: vec![body],
            meta: BTreeMap::from([("kind".to_owned(), "chart-output".to_owned())]),
            created_at: jiff::Timestamp::now(),
        };
        self.store
            .commit(crate::state::WriteBatch::new().put_render(key, entry))
            .map(|_| ())
            .map_err(err)
    }
}
