//! What the executor is asked to do: nodes with their dependencies, wait settings and
//! object actions.
//!
//! This is the executor's own input, deliberately small: the change set of the diff stage
//! (and the graph's edges) are translated into it, so the executor does not depend on how
//! the plan stage represents its results.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::ObjectRef;
use crate::model::Wait;
use crate::render::{HookDeletePolicy, HookPhase};

/// What to do to one ordinary object of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectAction {
    /// Server-side apply; the object does not exist yet.
    Create,
    /// Server-side apply; the object exists and changes.
    Update,
    /// An immutable field changes: delete (and wait until gone), then create.
    Replace,
    /// Delete (prune): the object is no longer rendered.
    Delete,
    /// Already as desired but not in the state: record it, send nothing.
    Adopt,
    /// Nothing to do (its readiness is not waited for either).
    NoOp,
    /// The state records an object that no longer exists: drop the record.
    Forget,
}

impl ObjectAction {
    /// Whether the action changes the cluster.
    pub fn is_cluster_change(self) -> bool {
        matches!(
            self,
            Self::Create | Self::Update | Self::Replace | Self::Delete
        )
    }

    /// The fixed symbol of the action (`+ ~ -/+ -`).
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Create => "+",
            Self::Update => "~",
            Self::Replace => "-/+",
            Self::Delete => "-",
            Self::Adopt => "<=",
            Self::NoOp => " ",
            Self::Forget => ".",
        }
    }
}

/// One ordinary object of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyObject {
    pub object: ObjectRef,
    pub action: ObjectAction,
    /// The desired body (required for create, update, replace and adopt). Shared: the
    /// steps of a run refer to it rather than copy it.
    pub desired: Option<std::sync::Arc<Value>>,
    /// blake3 digest of the desired body, recorded as the applied digest (computed from
    /// `desired` when None).
    pub digest: Option<String>,
    /// JSON pointers of `desired` holding sensitive values besides a Secret's data: the
    /// state records them sealed.
    pub sensitive_paths: BTreeSet<String>,
}

/// One Helm hook object of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct HookObject {
    pub object: ObjectRef,
    pub body: Value,
    pub phases: Vec<HookPhase>,
    /// Lower weights run first.
    pub weight: i64,
    pub delete_policies: Vec<HookDeletePolicy>,
}

/// One node to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyNode {
    /// The node address, e.g. `helm.linkerd_crds`.
    pub address: String,
    /// Addresses of nodes that must be applied first (nodes not in the input are ignored).
    pub depends_on: BTreeSet<String>,
    pub wait: Wait,
    /// Upper bound for the whole node (writes, retries and waits).
    pub timeout: Option<Duration>,
    pub objects: Vec<ApplyObject>,
    pub hooks: Vec<HookObject>,
}

impl ApplyNode {
    /// A node with no dependencies, default waits and no objects.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            depends_on: BTreeSet::new(),
            wait: Wait::default(),
            timeout: None,
            objects: Vec::new(),
            hooks: Vec::new(),
        }
    }

    /// Whether applying the node changes the cluster (then its hooks run).
    pub fn changes_cluster(&self) -> bool {
        self.objects.iter().any(|o| o.action.is_cluster_change())
    }

    /// Whether the node is being installed (none of its objects existed before), as opposed
    /// to upgraded. Only meaningful when [`Self::changes_cluster`].
    pub fn is_install(&self) -> bool {
        self.objects
            .iter()
            .all(|o| matches!(o.action, ObjectAction::Create))
    }
}

/// The executor's whole input.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApplyInput {
    /// The plan's name (ownership marks).
    pub plan: String,
    /// In graph order.
    pub nodes: Vec<ApplyNode>,
}

/// The order class of an object inside its node: CRDs first, Namespaces next, then the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectClass {
    Crd,
    Namespace,
    Other,
}

impl ObjectClass {
    pub fn of(object: &ObjectRef) -> Self {
        match (object.group(), object.kind.as_str()) {
            ("apiextensions.k8s.io", "CustomResourceDefinition") => Self::Crd,
            ("", "Namespace") => Self::Namespace,
            _ => Self::Other,
        }
    }
}
