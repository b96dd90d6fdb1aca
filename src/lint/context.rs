//! The lint input, indexed once for every check: objects with their node, namespaces, the
//! Linkerd control plane and viz extension, helm values; and the constructors of findings'
//! locations.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::model::{Address, Chart, Helm, ManifestObject, Node, NodeSpec, deep_merge};
use crate::render::{
    KNOWN_AFTER_APPLY, NodeStatus, ReadValue, RenderScope, RenderedObject, scope::evaluate_marked,
};

use super::linkerd::{
    ControlPlaneSettings, NamespaceMeta, control_plane_settings, is_control_plane_chart,
    is_viz_chart,
};
use super::path::{self, Seg};
use super::{ChartInfo, FilePosition, Finding, LintInput};
use crate::model::lint_checks::CheckId;

/// One rendered object and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Obj<'a> {
    pub node: &'a Node,
    pub rendered: &'a RenderedObject,
    /// The plan's own object (manifest nodes): file positions of its fields.
    pub manifest: Option<&'a ManifestObject>,
}

impl Obj<'_> {
    pub fn kind(&self) -> &str {
        &self.rendered.object_ref.kind
    }

    pub fn group(&self) -> &str {
        self.rendered.object_ref.group()
    }

    pub fn body(&self) -> &Json {
        &self.rendered.object
    }

    pub fn namespace(&self) -> Option<&str> {
        self.rendered.object_ref.namespace.as_deref()
    }

    pub fn name(&self) -> &str {
        &self.rendered.object_ref.name
    }

    /// Whether the object's field at `pointer` holds `(known after apply)`.
    pub fn is_unknown(&self, pointer: &str) -> bool {
        self.rendered
            .unknown_paths
            .iter()
            .any(|p| pointer.starts_with(p.as_str()))
    }
}

/// Where a namespace's labels come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Plan(Address),
    Cluster,
}

/// The Linkerd control plane the plan installs, or the one installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    pub origin: Origin,
    pub namespace: String,
    pub settings: ControlPlaneSettings,
}

/// The viz extension the plan installs.
#[derive(Debug, Clone)]
pub struct Viz<'a> {
    pub node: &'a Node,
    pub namespace: String,
    /// Chart defaults merged with the plan's values.
    pub values: Json,
}

/// The indexed input.
pub struct Context<'a> {
    pub input: &'a LintInput<'a>,
    pub objects: Vec<Obj<'a>>,
    pub namespaces: BTreeMap<String, (NamespaceMeta, Origin)>,
    pub control_plane: Option<ControlPlane>,
    pub viz: Option<Viz<'a>>,
    /// Each helm node's own values (values files, then `values`), evaluated.
    pub helm_values: BTreeMap<Address, Json>,
    notes: RefCell<Vec<String>>,
}

/// The chart name of a helm node as written (`linkerd/linkerd-viz` → `linkerd-viz`).
pub fn chart_name(helm: &Helm) -> String {
    match &helm.chart {
        Chart::Repo { name, .. } => name.clone(),
        Chart::Oci(url) => url.rsplit('/').next().unwrap_or_default().to_string(),
        Chart::Local(path) => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .trim_end_matches(".tgz")
            .to_string(),
    }
}

impl<'a> Context<'a> {
    pub fn new(input: &'a LintInput<'a>) -> Self {
        let plan = input.plan;
        let mut notes = Vec::new();
        let mut objects = Vec::new();
        for (address, render) in &input.render.nodes {
            let Some(node) = plan.nodes.get(address) else {
                continue;
            };
            if let NodeStatus::RenderedDuringApply {
                unknown_references, ..
            } = &render.status
            {
                notes.push(format!(
                    "{address}: rendered only during apply (its values use {}): its objects \
                     are not checked, its values are",
                    unknown_references.join(", ")
                ));
            }
            let manifest = match &node.spec {
                NodeSpec::Manifest(m)
                    if render.hooks.is_empty() && m.objects.len() == render.objects.len() =>
                {
                    Some(m)
                }
                _ => None,
            };
            for (i, rendered) in render.objects.iter().chain(&render.hooks).enumerate() {
                objects.push(Obj {
                    node,
                    rendered,
                    manifest: manifest.and_then(|m| m.objects.get(i)),
                });
            }
        }

        let reads: BTreeMap<Address, ReadValue> = BTreeMap::new();
        let scope = RenderScope::new(plan, &reads);
        let mut helm_values = BTreeMap::new();
        for node in plan.nodes.values() {
            let NodeSpec::Helm(h) = &node.spec else {
                continue;
            };
            let mut values = Json::Object(serde_json::Map::new());
            for layer in h
                .values_files
                .iter()
                .map(|f| &f.values)
                .chain(std::iter::once(&h.values))
            {
                if let Ok(m) = evaluate_marked(layer, &scope) {
                    deep_merge(&mut values, m.value);
                }
            }
            helm_values.insert(node.address.clone(), values);
        }

        let mut namespaces: BTreeMap<String, (NamespaceMeta, Origin)> = BTreeMap::new();
        if let Some(cluster) = input.cluster {
            for (name, meta) in &cluster.namespaces {
                namespaces.insert(name.clone(), (meta.clone(), Origin::Cluster));
            }
        }
        for o in &objects {
            if o.kind() == "Namespace" && o.group().is_empty() {
                namespaces.insert(
                    o.name().to_string(),
                    (
                        NamespaceMeta::of(o.body()),
                        Origin::Plan(o.node.address.clone()),
                    ),
                );
            }
        }

        let mut ctx = Self {
            input,
            objects,
            namespaces,
            control_plane: None,
            viz: None,
            helm_values,
            notes: RefCell::new(notes),
        };
        ctx.control_plane = ctx.find_control_plane();
        ctx.viz = ctx.find_viz();
        ctx
    }

    /// The notes gathered while checking.
    pub fn into_notes(self) -> Vec<String> {
        self.notes.into_inner()
    }

    /// Records something that could not be checked.
    pub fn note(&self, text: impl Into<String>) {
        self.notes.borrow_mut().push(text.into());
    }

    /// The chart a helm node declares, or None (with a note) when it could not be read.
    pub fn chart(&self, node: &Node, check: CheckId) -> Option<&'a ChartInfo> {
        match self.input.charts.get(&node.address) {
            Some(Ok(info)) => Some(info),
            Some(Err(why)) => {
                self.note(format!(
                    "{}: `{check}` not checked: its chart cannot be read ({why})",
                    node.address
                ));
                None
            }
            None => None,
        }
    }

    /// The namespace a helm node installs into (static), `default` when it sets none.
    pub fn release_namespace(&self, node: &Node) -> Option<String> {
        match &node.namespace {
            None => Some("default".to_string()),
            Some(t) => match t.evaluate(&self.input.plan.static_scope()) {
                Ok(Json::String(s)) => Some(s),
                Ok(other) => Some(other.to_string()),
                Err(_) => None,
            },
        }
    }

    /// A helm node's effective values: its chart's defaults merged with its own values.
    pub fn effective_values(&self, node: &Node) -> Json {
        let mut values = match self.input.charts.get(&node.address) {
            Some(Ok(info)) => info.values.clone(),
            _ => Json::Object(serde_json::Map::new()),
        };
        if let Some(own) = self.helm_values.get(&node.address) {
            deep_merge(&mut values, own.clone());
        }
        values
    }

    fn helm_nodes(&self) -> impl Iterator<Item = (&'a Node, &'a Helm)> + '_ {
        self.input
            .plan
            .nodes
            .values()
            .filter_map(|n| match &n.spec {
                NodeSpec::Helm(h) => Some((n, h)),
                _ => None,
            })
    }

    fn find_control_plane(&self) -> Option<ControlPlane> {
        for (node, helm) in self.helm_nodes() {
            let name = match self.input.charts.get(&node.address) {
                Some(Ok(info)) if !info.name.is_empty() => info.name.clone(),
                _ => chart_name(helm),
            };
            if !is_control_plane_chart(&name) {
                continue;
            }
            let declares = match self.input.charts.get(&node.address) {
                Some(Ok(info)) => Some(info.default_at(&["proxy", "nativeSidecar"]).is_some()),
                _ => None,
            };
            let values = self.effective_values(node);
            return Some(ControlPlane {
                origin: Origin::Plan(node.address.clone()),
                namespace: self.release_namespace(node).unwrap_or_default(),
                settings: control_plane_settings(&values, declares),
            });
        }
        let installed = self.input.cluster?.control_planes.first()?;
        Some(ControlPlane {
            origin: Origin::Cluster,
            namespace: installed.namespace.clone(),
            settings: control_plane_settings(&installed.values, None),
        })
    }

    fn find_viz(&self) -> Option<Viz<'a>> {
        self.helm_nodes().find_map(|(node, helm)| {
            let name = match self.input.charts.get(&node.address) {
                Some(Ok(info)) if !info.name.is_empty() => info.name.clone(),
                _ => chart_name(helm),
            };
            is_viz_chart(&name).then(|| Viz {
                node,
                namespace: self.release_namespace(node).unwrap_or_default(),
                values: self.effective_values(node),
            })
        })
    }

    /// The labels and annotations of a namespace (the plan's, else the cluster's).
    pub fn namespace_meta(&self, name: &str) -> Option<&NamespaceMeta> {
        self.namespaces.get(name).map(|(m, _)| m)
    }

    // ----- findings ------------------------------------------------------------------------

    /// A finding about a whole node (at its header in the plan file).
    pub fn at_node(&self, check: CheckId, node: &Node, message: String, fix: String) -> Finding {
        Finding {
            check,
            severity: check.severity(),
            node: node.address.clone(),
            object: None,
            field: None,
            file: FilePosition::of(self.input.sources, &node.span),
            template: None,
            message,
            why: check.why().to_string(),
            fix,
            suppressed: None,
        }
    }

    /// A finding about an object, or one of its fields: at the field in the manifest file
    /// when the plan wrote the object, else at the node's header with the chart template.
    pub fn at_object(
        &self,
        check: CheckId,
        obj: &Obj<'_>,
        field: Option<&[Seg]>,
        message: String,
        fix: String,
    ) -> Finding {
        let span = match obj.manifest {
            Some(m) => match field.zip(m.raw(self.input.sources)) {
                Some((path, raw)) => path::raw_span(&raw, path),
                None => m.span.clone(),
            },
            None => obj.node.span.clone(),
        };
        Finding {
            check,
            severity: check.severity(),
            node: obj.node.address.clone(),
            object: Some(obj.rendered.object_ref.clone()),
            field: field.map(path::text).filter(|t| !t.is_empty()),
            file: FilePosition::of(self.input.sources, &span),
            template: obj
                .manifest
                .is_none()
                .then(|| obj.rendered.source.clone())
                .flatten(),
            message,
            why: check.why().to_string(),
            fix,
            suppressed: None,
        }
    }

    /// A finding at a span of the plan's files.
    pub fn at_span(
        &self,
        check: CheckId,
        node: &Node,
        span: &crate::planfile::Span,
        field: Option<String>,
        message: String,
        fix: String,
    ) -> Finding {
        Finding {
            check,
            severity: check.severity(),
            node: node.address.clone(),
            object: None,
            field,
            file: FilePosition::of(self.input.sources, span),
            template: None,
            message,
            why: check.why().to_string(),
            fix,
            suppressed: None,
        }
    }

    /// A finding about a helm value at `path`: at the key in the values file or the plan
    /// that sets it (the last layer that does), else at the node's header.
    pub fn at_value(
        &self,
        check: CheckId,
        node: &Node,
        path: &[Seg],
        message: String,
        fix: String,
    ) -> Finding {
        let mut span = node.span.clone();
        if let NodeSpec::Helm(h) = &node.spec {
            let layers = h
                .values_files
                .iter()
                .map(|f| Some(&f.raw))
                .chain(std::iter::once(h.values_raw.as_ref()));
            for raw in layers.flatten() {
                if raw_has(raw, path) {
                    span = path::raw_span(raw, path);
                }
            }
        }
        Finding {
            check,
            severity: check.severity(),
            node: node.address.clone(),
            object: None,
            field: Some(path::text(path)),
            file: FilePosition::of(self.input.sources, &span),
            template: None,
            message,
            why: check.why().to_string(),
            fix,
            suppressed: None,
        }
    }
}

/// Whether `raw` writes every key of `path`.
fn raw_has(raw: &crate::planfile::RawValue, path: &[Seg]) -> bool {
    use crate::planfile::RawKind;
    let mut cur = raw;
    for seg in path {
        match (seg, &cur.kind) {
            (Seg::Key(k), RawKind::Table(t)) => match t.get(k) {
                Some(e) => cur = &e.value,
                None => return false,
            },
            (Seg::Index(i), RawKind::Array(items)) => match items.get(*i) {
                Some(v) => cur = v,
                None => return false,
            },
            _ => return false,
        }
    }
    true
}

/// Whether a value is the `(known after apply)` placeholder.
pub fn is_placeholder(v: &Json) -> bool {
    v.as_str() == Some(KNOWN_AFTER_APPLY)
}
