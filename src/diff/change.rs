//! The change set: what `meshplan plan` computed, per node in graph order, per object.
//!
//! Everything here is plain data, deterministic (sorted where order is not the graph's) and
//! safe to show: sensitive values never enter these types. Field changes under a sensitive
//! path carry no values, only `sensitive: true`; the desired body kept for an in-process apply
//! ([`ObjectChange::desired`]) is never serialised.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cluster::{FieldConflict, ObjectRef};

/// Version of the change set's JSON shape (`--output json` and saved change sets).
pub const CHANGE_SET_FORMAT: u32 = 1;

/// What will happen to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The object does not exist: server-side apply creates it.
    Create,
    /// The object exists and the apply changes some of the fields meshplan owns.
    Update,
    /// An immutable field changes: the object is deleted and created again.
    Replace,
    /// The object was applied by this plan before and is no longer rendered (prune).
    Delete,
    /// Nothing to do.
    NoOp,
    /// The object exists with the desired content but is not in the state: apply records it,
    /// nothing is sent to the cluster.
    Adopt,
    /// The object exists and its desired content depends on values known only during apply:
    /// apply decides then.
    KnownAfterApply,
    /// The state records an object that no longer exists: apply drops the record.
    Forget,
    /// A helm hook that apply will run (its node is installed or upgraded and the hook is
    /// for that phase; the others are left out of the change set); not diffed.
    Hook,
    /// Another field manager took fields meshplan applied (`kubectl edit`, `kubectl scale`):
    /// drift. Apply takes them back only with `--force-conflicts`.
    Conflict,
}

impl Action {
    /// The fixed symbol shown before the object.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::NoOp => " ",
            Action::Adopt => "<=",
            Action::KnownAfterApply => "?",
            Action::Forget => ".",
            Action::Hook => ">",
            Action::Conflict => "~",
        }
    }

    /// The word shown after the object.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "will be created",
            Action::Update => "will be updated in place",
            Action::Replace => "must be replaced",
            Action::Delete => "will be deleted",
            Action::NoOp => "is unchanged",
            Action::Adopt => {
                "will be adopted (already as desired; recorded in the state, nothing sent)"
            }
            Action::KnownAfterApply => "may change: its content is known after apply",
            Action::Forget => "is already gone (only its state record is removed)",
            Action::Hook => "will run",
            Action::Conflict => "will take fields back from another field manager",
        }
    }

    /// Whether apply would do something for this action (change the cluster or the state).
    /// A conflict is a change: the fields go back to meshplan (with `--force-conflicts`).
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Action::Create
                | Action::Update
                | Action::Replace
                | Action::Delete
                | Action::Adopt
                | Action::KnownAfterApply
                | Action::Forget
                | Action::Conflict
        )
    }
}

/// Whether two references may name the same object (kind and name equal; a namespace left
/// out on either side matches any: the safe direction for [`NodeChange::may_change_read_of`]).
fn same_object(a: &ObjectRef, b: &ObjectRef) -> bool {
    a.kind == b.kind
        && a.name == b.name
        && (a.namespace == b.namespace || a.namespace.is_none() || b.namespace.is_none())
}

/// Whether a field change only puts, changes or removes meshplan's ownership marks: the
/// field is a mark (`metadata.labels["app.kubernetes.io/managed-by"]`), or the labels or
/// annotations as a whole (absent before or after) differ only in marks.
fn only_marks(field: &FieldChange) -> bool {
    if field.sensitive || field.unknown {
        return false;
    }
    let segments = super::fields::segments(&field.pointer);
    match segments.as_slice() {
        [metadata, map, key] if metadata == "metadata" => crate::model::is_ownership_mark(map, key),
        [metadata, map] if metadata == "metadata" => {
            let keys = |v: &Option<Value>| match v {
                None => Some(serde_json::Map::new()),
                Some(Value::Object(m)) => Some(m.clone()),
                Some(_) => None,
            };
            let (Some(before), Some(after)) = (keys(&field.before), keys(&field.after)) else {
                return false;
            };
            before
                .keys()
                .chain(after.keys())
                .all(|k| before.get(k) == after.get(k) || crate::model::is_ownership_mark(map, k))
        }
        _ => false,
    }
}

/// One changed field, by path. Sensitive fields carry no values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Display path: `spec.template.spec.containers[0].image`, `data["ca.crt"]`.
    pub path: String,
    /// JSON pointer (RFC 6901) of the field.
    pub pointer: String,
    /// The value now (None: absent, or sensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The value after apply (None: removed, or sensitive, or unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// The values are sensitive: shown as `(sensitive, changed)`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sensitive: bool,
    /// The value after apply is known only during apply.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unknown: bool,
    /// The field is immutable: changing it replaces the object.
    #[serde(default, skip_serializing_if = "is_false")]
    pub forces_replacement: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A helm hook's marks, for display and apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookMarks {
    /// e.g. `["post-install", "post-upgrade"]`.
    pub phases: Vec<String>,
    pub weight: i64,
    pub delete_policies: Vec<String>,
}

/// What will happen to one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectChange {
    pub object: ObjectRef,
    pub action: Action,
    /// The live object's resourceVersion when the plan read it (None: absent or not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_resource_version: Option<String>,
    /// blake3 digest of the desired body (what apply records as the applied digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_digest: Option<String>,
    /// Only the changed fields (for creates: only unknown and sensitive ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// Every changed field lies where the chart generates fresh material on each render.
    #[serde(default, skip_serializing_if = "is_false")]
    pub regenerated_only: bool,
    /// The object's kind is defined by a CRD that this plan creates.
    #[serde(default, skip_serializing_if = "is_false")]
    pub kind_created_by_plan: bool,
    /// The object's kind is not installed yet and no CRD of the plan defines it, but nodes
    /// it depends on change first (and may install it): checked during apply.
    #[serde(default, skip_serializing_if = "is_false")]
    pub kind_pending: bool,
    /// Why a replace is needed (the immutable fields, or the server's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_reason: Option<String>,
    /// Fields owned by other managers (conflicts), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<FieldConflict>,
    /// For hooks: their phases and delete policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookMarks>,
    /// The desired body, for an apply in the same process. Never serialised (it may hold
    /// sensitive values).
    #[serde(skip)]
    pub desired: Option<Value>,
    /// JSON pointers of the desired body that are known only during apply (placeholders and
    /// what depends on them), for an apply in the same process to compare the final render
    /// with. Never serialised (the unknown `fields` say it for people and programs).
    #[serde(skip)]
    pub desired_unknown: BTreeSet<String>,
    /// The JSON pointers of `desired` that hold sensitive values besides a Secret's data (the
    /// render's marks), so that apply records them sealed. Never serialised.
    #[serde(skip)]
    pub sensitive_paths: BTreeSet<String>,
}

impl ObjectChange {
    /// Whether applying this change writes to the cluster (adopting or forgetting a record
    /// changes only the state).
    pub fn changes_cluster(&self) -> bool {
        matches!(
            self.action,
            Action::Create
                | Action::Update
                | Action::Replace
                | Action::Delete
                | Action::KnownAfterApply
                | Action::Conflict
        )
    }

    /// A change with nothing but its object and action.
    pub fn new(object: ObjectRef, action: Action) -> Self {
        Self {
            object,
            action,
            live_resource_version: None,
            desired_digest: None,
            fields: Vec::new(),
            regenerated_only: false,
            kind_created_by_plan: false,
            kind_pending: false,
            replace_reason: None,
            conflicts: Vec::new(),
            hook: None,
            desired: None,
            desired_unknown: BTreeSet::new(),
            sensitive_paths: BTreeSet::new(),
        }
    }
}

/// What is known about a node at plan time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum NodeStatus {
    /// Rendered now; its objects are planned.
    Planned,
    /// Its inputs are known only during apply: rendered then. `objects` holds what is known.
    RenderedDuringApply { reason: String },
    /// A `read` whose value is known only during apply.
    ReadDuringApply,
    /// A `read` resolved at plan time (its value is never shown here).
    ReadNow,
    /// A `check`, evaluated during apply.
    CheckDuringApply,
    /// The node is no longer in the plan (removed or disabled): its objects are deleted.
    Removed,
}

/// What will happen for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeChange {
    /// The node's address, e.g. `helm.linkerd_crds`.
    pub address: String,
    #[serde(flatten)]
    pub status: NodeStatus,
    /// The node's objects, in render order (deletes last, sorted).
    pub objects: Vec<ObjectChange>,
    /// A helm node's render cache key: the digest of its chart, values and helm inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_key: Option<String>,
    /// Values known only during apply that the node's objects were rendered with
    /// placeholders for (e.g. `read.trust_anchor.value`); the fields that depend on them are
    /// `unknown`. Apply renders the node again with the real values and proceeds only when
    /// its objects and known fields are the ones shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_inputs: Vec<String>,
}

impl NodeChange {
    /// Whether applying this node changes objects in the cluster (adopting or forgetting
    /// records changes only the state).
    pub fn changes_cluster(&self) -> bool {
        matches!(self.status, NodeStatus::RenderedDuringApply { .. })
            || self.objects.iter().any(ObjectChange::changes_cluster)
    }

    /// Whether applying this node may change what a `read` of `target` reads: any change of
    /// the cluster, except an update that only puts meshplan's ownership marks on objects
    /// (adopting objects another tool applied): nothing derives a value from those marks.
    /// When the read selects a field of `target`'s metadata (`reads_metadata`), the marks put
    /// on `target` itself count.
    pub fn may_change_read_of(&self, target: &ObjectRef, reads_metadata: bool) -> bool {
        let marks_only = |o: &ObjectChange| {
            o.action == Action::Update
                && !o.fields.is_empty()
                && o.fields.iter().all(only_marks)
                && !(reads_metadata && same_object(&o.object, target))
        };
        matches!(self.status, NodeStatus::RenderedDuringApply { .. })
            || self
                .objects
                .iter()
                .any(|o| o.changes_cluster() && !marks_only(o))
    }

    /// Keeps only the hooks that apply will run: none when the node changes nothing in the
    /// cluster; `pre-install`/`post-install` hooks when the node is installed (every object
    /// is a create), `pre-upgrade`/`post-upgrade` ones otherwise — the engine's rule.
    pub fn retain_hooks_that_run(&mut self) {
        let changes = self.objects.iter().any(|o| {
            matches!(
                o.action,
                Action::Create
                    | Action::Update
                    | Action::Replace
                    | Action::Delete
                    | Action::Conflict
            )
        });
        let install = self
            .objects
            .iter()
            .filter(|o| o.action != Action::Hook)
            .all(|o| o.action == Action::Create);
        let wanted: [&str; 2] = if install {
            ["pre-install", "post-install"]
        } else {
            ["pre-upgrade", "post-upgrade"]
        };
        self.objects.retain(|o| {
            o.action != Action::Hook
                || (changes
                    && o.hook
                        .as_ref()
                        .is_some_and(|h| h.phases.iter().any(|p| wanted.contains(&p.as_str()))))
        });
    }

    /// Whether the node was rendered with placeholders for values known only during apply.
    pub fn has_unknown_inputs(&self) -> bool {
        !self.unknown_inputs.is_empty()
    }

    /// Whether applying this node changes something.
    pub fn has_changes(&self) -> bool {
        matches!(self.status, NodeStatus::RenderedDuringApply { .. })
            || self.objects.iter().any(|o| o.action.is_change())
    }
}

/// Counts of a change set. A replace counts as one add and one destroy, as in Terraform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    /// Replaces (already counted in `add` and `destroy`).
    pub replace: usize,
    pub adopt: usize,
    /// Existing objects whose change is decided during apply (counted in `change`).
    pub known_after_apply: usize,
    /// Nodes rendered during apply (their objects are not counted).
    pub rendered_during_apply: usize,
    /// State records of objects already gone.
    pub forget: usize,
    /// Objects whose fields another field manager took (counted in `change`).
    pub conflicts: usize,
}

/// The result of `meshplan plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// The plan's name.
    pub plan: String,
    /// Per node, in graph (apply) order; removed nodes last.
    pub nodes: Vec<NodeChange>,
}

impl ChangeSet {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for node in &self.nodes {
            if matches!(node.status, NodeStatus::RenderedDuringApply { .. }) {
                s.rendered_during_apply += 1;
            }
            for o in &node.objects {
                match o.action {
                    Action::Create => s.add += 1,
                    Action::Update => s.change += 1,
                    Action::Replace => {
                        s.replace += 1;
                        s.add += 1;
                        s.destroy += 1;
                    }
                    Action::Delete => s.destroy += 1,
                    Action::Adopt => s.adopt += 1,
                    Action::KnownAfterApply => {
                        s.known_after_apply += 1;
                        s.change += 1;
                    }
                    Action::Forget => s.forget += 1,
                    Action::Conflict => {
                        s.conflicts += 1;
                        s.change += 1;
                    }
                    Action::NoOp | Action::Hook => {}
                }
            }
        }
        s
    }

    /// Whether apply would change the cluster or the state.
    pub fn has_changes(&self) -> bool {
        self.nodes.iter().any(NodeChange::has_changes)
    }

    /// Whether another field manager took fields of some object (apply needs
    /// `--force-conflicts`).
    pub fn has_conflicts(&self) -> bool {
        self.objects().any(|(_, o)| o.action == Action::Conflict)
    }

    /// Every object change with its node's address, in order.
    pub fn objects(&self) -> impl Iterator<Item = (&str, &ObjectChange)> {
        self.nodes
            .iter()
            .flat_map(|n| n.objects.iter().map(move |o| (n.address.as_str(), o)))
    }

    /// A deterministic one-line-per-object dump (for snapshot tests and debugging).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let status = match &node.status {
                NodeStatus::Planned => "planned".to_owned(),
                NodeStatus::RenderedDuringApply { reason } => {
                    format!("rendered during apply ({reason})")
                }
                NodeStatus::ReadDuringApply => "read during apply".to_owned(),
                NodeStatus::ReadNow => "read now".to_owned(),
                NodeStatus::CheckDuringApply => "checked during apply".to_owned(),
                NodeStatus::Removed => "removed".to_owned(),
            };
            let _ = write!(out, "{} [{status}]", node.address);
            if !node.unknown_inputs.is_empty() {
                let _ = write!(
                    out,
                    " (placeholders for {})",
                    node.unknown_inputs.join(", ")
                );
            }
            let _ = writeln!(out);
            for o in &node.objects {
                let _ = write!(out, "  {:?} {}", o.action, o.object);
                let fields: BTreeSet<&str> = o.fields.iter().map(|f| f.path.as_str()).collect();
                if !fields.is_empty() {
                    let list: Vec<&str> = fields.into_iter().collect();
                    let _ = write!(out, " [{}]", list.join(", "));
                }
                let _ = writeln!(out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(pointer: &str, before: Option<Value>, after: Option<Value>) -> FieldChange {
        FieldChange {
            path: pointer.to_owned(),
            pointer: pointer.to_owned(),
            before,
            after,
            sensitive: false,
            unknown: false,
            forces_replacement: false,
        }
    }

    fn updated(name: &str, fields: Vec<FieldChange>) -> NodeChange {
        let mut o = ObjectChange::new(
            ObjectRef::new("cert-manager.io/v1", "Certificate", Some("linkerd"), name),
            Action::Update,
        );
        o.fields = fields;
        NodeChange {
            address: "manifest.issuer".into(),
            status: NodeStatus::Planned,
            objects: vec![o],
            render_key: None,
            unknown_inputs: Vec::new(),
        }
    }

    #[test]
    fn only_ownership_marks_leave_what_a_read_reads_alone() {
        let secret = ObjectRef::new("v1", "Secret", Some("linkerd"), "issuer");
        let marks = || {
            vec![
                field(
                    "/metadata/annotations",
                    None,
                    Some(serde_json::json!({"meshplan.io/plan": "p", "meshplan.io/node": "n"})),
                ),
                field(
                    "/metadata/labels/app.kubernetes.io~1managed-by",
                    Some("Helm".into()),
                    Some("meshplan".into()),
                ),
            ]
        };
        // Adopting the Certificate another tool applied: the Secret it issued stays.
        assert!(!updated("issuer", marks()).may_change_read_of(&secret, false));
        // Labels as a whole, other labels unchanged.
        let labels = field(
            "/metadata/labels",
            Some(serde_json::json!({"app": "x"})),
            Some(serde_json::json!({"app": "x", "app.kubernetes.io/managed-by": "meshplan"})),
        );
        assert!(!updated("issuer", vec![labels.clone()]).may_change_read_of(&secret, false));
        // Any other field changes it, as does another label.
        let mut spec = marks();
        spec.push(field(
            "/spec/duration",
            Some("24h".into()),
            Some("48h".into()),
        ));
        assert!(updated("issuer", spec).may_change_read_of(&secret, false));
        let other_label = field(
            "/metadata/labels",
            Some(serde_json::json!({"app": "x"})),
            Some(serde_json::json!({"app": "y", "app.kubernetes.io/managed-by": "meshplan"})),
        );
        assert!(updated("issuer", vec![other_label]).may_change_read_of(&secret, false));
        // An update without fields is not known to be marks only.
        assert!(updated("issuer", Vec::new()).may_change_read_of(&secret, false));
        // The marks of the object read count when the read selects its metadata.
        let cert = ObjectRef::new(
            "cert-manager.io/v1",
            "Certificate",
            Some("linkerd"),
            "issuer",
        );
        assert!(!updated("issuer", marks()).may_change_read_of(&cert, false));
        assert!(updated("issuer", marks()).may_change_read_of(&cert, true));
        // A create, or a node rendered during apply, may change anything.
        let mut created = updated("issuer", Vec::new());
        created.objects[0].action = Action::Create;
        assert!(created.may_change_read_of(&secret, false));
        let mut later = updated("issuer", marks());
        later.status = NodeStatus::RenderedDuringApply {
            reason: "a value is read during apply".into(),
        };
        assert!(later.may_change_read_of(&secret, false));
    }

    fn hook(name: &str, phase: &str) -> ObjectChange {
        let mut o = ObjectChange::new(
            ObjectRef::new("batch/v1", "Job", Some("d"), name),
            Action::Hook,
        );
        o.hook = Some(HookMarks {
            phases: vec![phase.to_owned()],
            weight: 0,
            delete_policies: Vec::new(),
        });
        o
    }

    fn node(actions: &[Action]) -> NodeChange {
        let mut objects: Vec<ObjectChange> = actions
            .iter()
            .enumerate()
            .map(|(i, a)| {
                ObjectChange::new(
                    ObjectRef::new("v1", "ConfigMap", Some("d"), format!("c{i}")),
                    *a,
                )
            })
            .collect();
        for phase in ["pre-install", "post-install", "post-upgrade", "test"] {
            objects.push(hook(phase, phase));
        }
        NodeChange {
            address: "helm.x".into(),
            status: NodeStatus::Planned,
            objects,
            render_key: None,
            unknown_inputs: Vec::new(),
        }
    }

    fn hooks(n: &NodeChange) -> Vec<&str> {
        n.objects
            .iter()
            .filter(|o| o.action == Action::Hook)
            .map(|o| o.object.name.as_str())
            .collect()
    }

    #[test]
    fn only_the_hooks_apply_runs_stay() {
        let mut install = node(&[Action::Create, Action::Create]);
        install.retain_hooks_that_run();
        assert_eq!(hooks(&install), ["pre-install", "post-install"]);
        let mut upgrade = node(&[Action::Create, Action::Update, Action::NoOp]);
        upgrade.retain_hooks_that_run();
        assert_eq!(hooks(&upgrade), ["post-upgrade"]);
        let mut unchanged = node(&[Action::NoOp, Action::Adopt]);
        unchanged.retain_hooks_that_run();
        assert!(hooks(&unchanged).is_empty());
    }
}
