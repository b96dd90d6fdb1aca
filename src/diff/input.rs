//! What the diff is given: the desired objects per node as the render stage produced them
//! ([`DesiredNode`], [`DesiredObject`]), the state's records, the cluster's discovery and the
//! CRDs the plan renders ([`PlanCrds`]), together in one [`DiffInput`].
//!
//! Plain data and lookups over it: no requests, no decisions.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::cluster::{Discovery, KindRef, ObjectRef, split_api_version};
use crate::state::ObjectRecord;

use super::change::HookMarks;

/// The placeholder render puts where a value is known only during apply.
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

/// One object the plan wants, as the render stage produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    pub object: ObjectRef,
    pub body: Value,
    /// blake3 digest of the body (what apply records).
    pub digest: String,
    /// JSON pointers whose values are known only during apply.
    pub unknown_paths: BTreeSet<String>,
    /// JSON pointers of sensitive values (besides a Secret's data, always sensitive).
    pub sensitive_paths: BTreeSet<String>,
    /// JSON pointers where the chart generates fresh material on every render.
    pub volatile_paths: BTreeSet<String>,
    /// Set for helm hooks.
    pub hook: Option<HookMarks>,
}

impl DesiredObject {
    /// Whether the object's name or namespace (or its whole metadata) is known only during
    /// apply: it cannot be looked up now.
    pub(super) fn has_unknown_identity(&self) -> bool {
        self.unknown_paths.iter().any(|p| {
            p == "/metadata/name" || p == "/metadata/namespace" || p == "/metadata" || p.is_empty()
        }) || self.object.namespace.as_deref() == Some(KNOWN_AFTER_APPLY)
            || self.object.name == KNOWN_AFTER_APPLY
    }
}

/// What the render stage knows about a node.
#[derive(Debug, Clone, PartialEq)]
pub enum DesiredState {
    /// Rendered: its objects are planned.
    Rendered,
    /// Rendered with a placeholder for each of `references` (values known only during
    /// apply): its objects are planned, the fields that depend on them are unknown; rendered
    /// again with the real values during apply.
    Placeholders { references: Vec<String> },
    /// Rendered only during apply (its inputs are unknown now); `objects` may list what is
    /// known.
    DuringApply { reason: String },
    /// A read node: resolved now or during apply.
    Read { resolved: bool },
    /// A check node.
    Check,
}

/// One node of the plan as rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredNode {
    pub address: String,
    pub state: DesiredState,
    pub objects: Vec<DesiredObject>,
    /// A helm node's render cache key (the digest of its chart, values and helm inputs).
    pub render_key: Option<String>,
}

impl DesiredNode {
    /// Whether the node may yet define kinds the plan does not know of: it is rendered only
    /// during apply (a CRD may be among its objects), or one of its CRDs has a group or kind
    /// known only during apply.
    pub fn may_define_kinds_later(&self) -> bool {
        matches!(self.state, DesiredState::DuringApply { .. })
            || self.objects.iter().any(|o| {
                o.object.kind == "CustomResourceDefinition"
                    && (o.has_unknown_identity()
                        || o.unknown_paths.iter().any(|p| {
                            p == "/spec"
                                || p.starts_with("/spec/group")
                                || p.starts_with("/spec/names")
                        }))
            })
    }
}

/// What the diff needs besides the cluster.
#[derive(Debug, Clone, Copy)]
pub struct DiffInput<'a> {
    /// The nodes to plan, in graph order.
    pub nodes: &'a [DesiredNode],
    /// Every object record of the state.
    pub records: &'a [ObjectRecord],
    /// The cluster's discovery (fetched once per run).
    pub discovery: &'a Discovery,
    /// Nodes whose records may be pruned when not rendered (the nodes in scope); records of
    /// nodes in neither `nodes` nor here are pruned only if `prune_other_nodes`.
    pub prune_other_nodes: bool,
    /// CRDs rendered anywhere in the plan (kinds created by the plan).
    pub plan_crds: &'a PlanCrds,
    /// At most this many requests at a time.
    pub parallelism: usize,
    /// Per node address, every node it depends on (transitively).
    pub upstream: &'a BTreeMap<String, BTreeSet<String>>,
    /// Nodes outside `nodes` not fully known yet ([`DesiredNode::may_define_kinds_later`]).
    pub unknown_outside: &'a BTreeSet<String>,
}

/// Kinds defined by CRDs that the plan renders: (group, kind) → versions with schemas.
#[derive(Debug, Clone, Default)]
pub struct PlanCrds {
    kinds: BTreeMap<(String, String), BTreeMap<String, Option<Value>>>,
}

impl PlanCrds {
    /// Learns every CustomResourceDefinition among `objects`.
    pub fn learn<'a>(&mut self, objects: impl IntoIterator<Item = &'a Value>) {
        for o in objects {
            if o.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition")
                || split_api_version(o.get("apiVersion").and_then(Value::as_str).unwrap_or("")).0
                    != "apiextensions.k8s.io"
            {
                continue;
            }
            let text = |p: &str| o.pointer(p).and_then(Value::as_str).map(str::to_owned);
            let (Some(group), Some(kind)) = (text("/spec/group"), text("/spec/names/kind")) else {
                continue;
            };
            let versions = self.kinds.entry((group, kind)).or_default();
            for v in o
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = v.get("name").and_then(Value::as_str) {
                    versions.insert(
                        name.to_owned(),
                        v.pointer("/schema/openAPIV3Schema").cloned(),
                    );
                }
            }
        }
    }

    /// Whether the plan defines `kind` at its version; the version's schema if it has one.
    pub(super) fn find(&self, kind: &KindRef) -> Option<Option<&Value>> {
        self.kinds
            .get(&(kind.group().to_owned(), kind.kind.clone()))
            .and_then(|versions| versions.get(kind.version()))
            .map(Option::as_ref)
    }
}
