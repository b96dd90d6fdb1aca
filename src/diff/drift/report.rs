//! The drift report: what `meshplan drift` found, as plain data.
//!
//! Per node (in the state's order), per object the plan owns: in sync, changed (the fields,
//! both values, the manager that changed them and when) or missing; then the objects that
//! carry the plan's marks but that the state does not know (unmanaged). Sensitive values never
//! enter these types: a sensitive field carries `sensitive: true` and no values.
//!
//! The JSON form (`--format json`) is this structure, versioned by [`DRIFT_REPORT_FORMAT`]
//! and described by `docs/drift-report.schema.json`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cluster::ObjectRef;

/// Version of the report's JSON shape.
pub const DRIFT_REPORT_FORMAT: u32 = 1;

/// The report's `kind` in JSON.
pub const DRIFT_REPORT_KIND: &str = "meshplan-drift-report";

/// How an owned object compares with what was last applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectStatus {
    /// Every field meshplan applied has its value and is still meshplan's.
    InSync,
    /// Some field differs or changed hands.
    Changed,
    /// The object is gone from the cluster.
    Missing,
}

impl ObjectStatus {
    pub fn is_drift(self) -> bool {
        !matches!(self, Self::InSync)
    }
}

/// What happened to one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldChangeKind {
    /// The live value differs from the value meshplan applied.
    Modified,
    /// The field meshplan applied is gone.
    Removed,
    /// Same value, but another manager owns the field now (the next apply conflicts if
    /// either side changes it).
    TakenOver,
    /// meshplan's field manager owns a field this state never applied (an apply from another
    /// state, or under meshplan's name).
    Unrecorded,
}

impl FieldChangeKind {
    /// The word shown for it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Modified => "changed",
            Self::Removed => "removed",
            Self::TakenOver => "taken over",
            Self::Unrecorded => "not in the state",
        }
    }
}

/// Who holds a field now, from the live object's managedFields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldOwner {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `scale`, `status`, ...; absent for the main resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// When the manager last wrote its fields (RFC 3339), if the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

impl FieldOwner {
    /// `kubectl (Update of scale, 2025-05-01T10:00:00Z)`.
    pub fn describe(&self) -> String {
        let mut what = self.operation.clone();
        if let Some(sub) = &self.subresource {
            let _ = write!(what, " of {sub}");
        }
        match &self.time {
            Some(t) => format!("{} ({what}, {t})", self.manager),
            None => format!("{} ({what})", self.manager),
        }
    }
}

/// One field that drifted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDrift {
    /// The path as the API server writes it: `.spec.template.spec.containers[name="web"].image`.
    pub path: String,
    /// JSON pointer (RFC 6901) of the field in the live object (in the applied one when the
    /// field is gone).
    pub pointer: String,
    pub change: FieldChangeKind,
    /// The value meshplan applied (None: sensitive, or not applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Value>,
    /// The live value (None: sensitive, or absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub sensitive: bool,
    /// The manager that holds the field now (None: nobody, e.g. a removed field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<FieldOwner>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One object the plan owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectDrift {
    pub object: ObjectRef,
    pub status: ObjectStatus,
    /// The drifted fields, in path order (empty unless `changed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDrift>,
    /// Something about the object worth saying (recreated by someone else, kind gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The objects of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDrift {
    pub address: String,
    /// Whether the node is still in the plan (records of a node removed from the plan are
    /// checked too, until an apply deletes them).
    pub in_plan: bool,
    pub objects: Vec<ObjectDrift>,
}

/// An object marked as the plan's that the state does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnmanagedObject {
    pub object: ObjectRef,
    /// The node its `meshplan.io/node` annotation names, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Who created it (the managedFields entry of the first writer), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<FieldOwner>,
}

/// Where the state came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateInfo {
    pub lineage: String,
    pub serial: u64,
    /// `database`, or `snapshot` when a writer held the state and its published snapshot was
    /// read.
    pub source: String,
    /// The writer holding the state while it was read, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// Runs that were begun and not finished (an interrupted apply): their objects may be
    /// reported as drift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unfinished_runs: Vec<String>,
}

/// Counts of a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftSummary {
    /// Objects the plan owns (the state's records checked).
    pub objects: usize,
    pub in_sync: usize,
    pub changed: usize,
    pub missing: usize,
    pub unmanaged: usize,
}

impl DriftSummary {
    /// Objects that drifted (changed, missing, unmanaged).
    pub fn drifted(&self) -> usize {
        self.changed + self.missing + self.unmanaged
    }
}

/// The result of `meshplan drift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub kind: String,
    /// [`DRIFT_REPORT_FORMAT`].
    pub format: u32,
    /// The plan's name.
    pub plan: String,
    /// The API server's URL.
    pub cluster: String,
    pub state: StateInfo,
    pub summary: DriftSummary,
    pub has_drift: bool,
    /// Per node, in address order.
    pub nodes: Vec<NodeDrift>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmanaged: Vec<UnmanagedObject>,
}

impl DriftReport {
    /// A report of `nodes` and `unmanaged`, its summary computed.
    pub fn new(
        plan: String,
        cluster: String,
        state: StateInfo,
        nodes: Vec<NodeDrift>,
        unmanaged: Vec<UnmanagedObject>,
    ) -> Self {
        let mut summary = DriftSummary {
            unmanaged: unmanaged.len(),
            ..DriftSummary::default()
        };
        for o in nodes.iter().flat_map(|n| &n.objects) {
            summary.objects += 1;
            match o.status {
                ObjectStatus::InSync => summary.in_sync += 1,
                ObjectStatus::Changed => summary.changed += 1,
                ObjectStatus::Missing => summary.missing += 1,
            }
        }
        Self {
            kind: DRIFT_REPORT_KIND.to_owned(),
            format: DRIFT_REPORT_FORMAT,
            plan,
            cluster,
            state,
            has_drift: summary.drifted() > 0,
            summary,
            nodes,
            unmanaged,
        }
    }

    /// Every object with its node, in order.
    pub fn objects(&self) -> impl Iterator<Item = (&str, &ObjectDrift)> {
        self.nodes
            .iter()
            .flat_map(|n| n.objects.iter().map(move |o| (n.address.as_str(), o)))
    }

    /// A deterministic one-line-per-finding dump (in-sync objects counted, not listed).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let drifted: Vec<&ObjectDrift> = node
                .objects
                .iter()
                .filter(|o| o.status.is_drift())
                .collect();
            let _ = writeln!(
                out,
                "{} ({} objects, {} drifted{})",
                node.address,
                node.objects.len(),
                drifted.len(),
                if node.in_plan {
                    ""
                } else {
                    ", not in the plan"
                }
            );
            for o in drifted {
                let _ = writeln!(out, "  {:?} {}", o.status, o.object);
                for f in &o.fields {
                    let owner = f
                        .owner
                        .as_ref()
                        .map(|w| format!(" by {}", w.manager))
                        .unwrap_or_default();
                    let _ = writeln!(out, "    {:?} {}{owner}", f.change, f.path);
                }
            }
        }
        for u in &self.unmanaged {
            let _ = writeln!(out, "Unmanaged {}", u.object);
        }
        out
    }
}
