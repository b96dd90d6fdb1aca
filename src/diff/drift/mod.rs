//! Drift: the live cluster against what meshplan last applied, for every object the plan
//! owns. Read-only: no render, no dry run, no write (to the cluster or the state).
//!
//! 1. The state's records are the objects the plan owns; each holds the body meshplan last
//!    applied ([`crate::state::ObjectRecord::last_applied`], sensitive values as keyed
//!    digests).
//! 2. [`gather`] reads the live objects (one LIST per kind, GETs for the rest) and the CRDs
//!    whose schemas key the fields of custom kinds.
//! 3. Per record, the fields of ignore rules (the plan's and the built-in ones) are dropped
//!    from the applied body and [`compare::compare`] finds the fields that drifted: changed,
//!    removed, taken over by another manager, or held by meshplan without this state knowing.
//!    An object that is gone is *missing*.
//! 4. Objects labelled and annotated as this plan's that the state does not know are
//!    *unmanaged*, unless a controller derived them (their controller owner is an object the
//!    plan owns) or they are helm hooks (never recorded).
//!
//! The result is a [`DriftReport`] (`report/` renders it). What drift means for the exit code
//! is the command's business.

pub mod compare;
mod gather;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::cluster::{Cluster, ClusterError, Discovery, KindRef, ObjectRef};
use crate::model::ignore::IgnoreFacts;
use crate::model::{Address, IgnoredFields, Plan};
use crate::render::{NODE_ANNOTATION, PLAN_ANNOTATION};
use crate::state::{ObjectRecord, StateError, StateStore};
use meshplan_k8s::CustomResourceListTypes;
use meshplan_k8s::lists::{BuiltinListTypes, ListTypes};
use meshplan_k8s::schema::Structural;

pub use report::{
    DRIFT_REPORT_FORMAT, DriftReport, DriftSummary, FieldChangeKind, FieldDrift, FieldOwner,
    NodeDrift, ObjectDrift, ObjectStatus, StateInfo, UnmanagedObject,
};

/// Why a drift check failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DriftError {
    #[error("cannot read the objects of kind {kind}")]
    #[diagnostic(code(drift::list))]
    List {
        kind: String,
        #[source]
        source: ClusterError,
    },

    #[error("cannot read {object}")]
    #[diagnostic(code(drift::read))]
    Read {
        object: Box<ObjectRef>,
        #[source]
        source: ClusterError,
    },

    #[error("cannot read the cluster's discovery")]
    #[diagnostic(code(drift::discovery))]
    Discovery {
        #[source]
        source: ClusterError,
    },

    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] StateError),
}

/// What a drift check needs.
pub struct DriftRequest<'a> {
    /// The plan (its name, nodes and ignore rules).
    pub plan: &'a Plan,
    /// The state, read-only.
    pub store: &'a dyn StateStore,
    /// Where the state came from (for the report).
    pub state: StateInfo,
    /// Only these nodes (empty: every node the state records).
    pub targets: &'a [Address],
    /// The discovery to use (None: fetched).
    pub discovery: Option<Discovery>,
    /// At most this many requests at a time.
    pub parallelism: usize,
}

/// Checks every object the plan owns (see the module overview).
pub async fn detect(
    cluster: &dyn Cluster,
    request: DriftRequest<'_>,
) -> Result<DriftReport, DriftError> {
    let plan = request.plan;
    let targets: BTreeSet<String> = request.targets.iter().map(ToString::to_string).collect();
    let all = request.store.objects()?;
    let records: Vec<&ObjectRecord> = all
        .iter()
        .filter(|r| targets.is_empty() || targets.contains(&r.node))
        .collect();
    let discovery = match request.discovery {
        Some(d) => {
            cluster.prime_discovery(d.clone()).await;
            d
        }
        None => cluster
            .discover()
            .await
            .map_err(|source| DriftError::Discovery { source })?,
    };
    // Applied bodies, redacted (sensitive values as digests): never decrypted.
    let applied: Vec<&Value> = records.iter().map(|r| r.last_applied.redacted()).collect();
    let recorded_crds = recorded_crds(&all);
    let custom_kinds: BTreeSet<KindRef> = records
        .iter()
        .map(|r| r.object.kind_ref())
        .filter(|k| !is_builtin_group(k.group()))
        .filter(|k| !recorded_crds.contains_key(&(k.group().to_owned(), k.kind.clone())))
        .collect();
    let refs: Vec<&ObjectRef> = records.iter().map(|r| &r.object).collect();
    let live = gather::gather(
        cluster,
        &refs,
        &custom_kinds,
        &discovery,
        request.parallelism,
    )
    .await?;
    let mut facts = IgnoreFacts::default();
    facts.learn(all.iter().map(|r| r.last_applied.redacted()), None);
    let schemas = Schemas::new(&recorded_crds, &live.crds);
    let marker = |v: &Value| request.store.cipher().marker(v);

    let mut nodes: BTreeMap<String, NodeDrift> = BTreeMap::new();
    for (record, body) in records.iter().zip(&applied) {
        let address = Address::parse(&record.node);
        let in_plan = address.as_ref().is_some_and(|a| plan.node(a).is_some());
        let node = nodes
            .entry(record.node.clone())
            .or_insert_with(|| NodeDrift {
                address: record.node.clone(),
                in_plan,
                objects: Vec::new(),
            });
        let current = live.objects.get(&record.object).and_then(Option::as_ref);
        let Some(current) = current else {
            let note = live
                .gone_kinds
                .contains(&record.object.kind_ref())
                .then(|| format!("its kind {} is no longer served", record.object.kind_ref()));
            node.objects.push(ObjectDrift {
                object: record.object.clone(),
                status: ObjectStatus::Missing,
                fields: Vec::new(),
                note,
            });
            continue;
        };
        let rules: Vec<&crate::model::IgnoreRule> = match &address {
            Some(a) => plan.ignore_rules(a).collect(),
            None => plan.ignore.iter().collect(),
        };
        let ignored = IgnoredFields::of(rules, &facts, &record.node, body);
        let mut compared = (*body).clone();
        ignored.remove_from(&mut compared);
        let lt = schemas.list_types(&record.object.kind_ref());
        let fields = compare::compare(&compare::Comparison {
            applied: &compared,
            live: current,
            list_types: lt.as_ref(),
            ignored: &ignored,
            marker: &marker,
        });
        let live_uid = current.pointer("/metadata/uid").and_then(Value::as_str);
        let note = match (record.uid.as_deref(), live_uid) {
            (Some(recorded), Some(now)) if recorded != now => {
                Some("deleted and created again since meshplan applied it (another uid)".to_owned())
            }
            _ => None,
        };
        node.objects.push(ObjectDrift {
            object: record.object.clone(),
            status: if fields.is_empty() {
                ObjectStatus::InSync
            } else {
                ObjectStatus::Changed
            },
            fields,
            note,
        });
    }
    let unmanaged = unmanaged(&plan.name, &all, &live.labelled, &targets);
    Ok(DriftReport::new(
        plan.name.clone(),
        cluster.url().to_owned(),
        request.state,
        nodes.into_values().collect(),
        unmanaged,
    ))
}

/// Objects labelled as meshplan's, annotated with this plan's name, that the state does not
/// record (see the module overview, step 4).
fn unmanaged(
    plan: &str,
    records: &[ObjectRecord],
    labelled: &[Value],
    targets: &BTreeSet<String>,
) -> Vec<UnmanagedObject> {
    let known: BTreeSet<(String, String, Option<String>, String)> = records
        .iter()
        .map(|r| {
            (
                r.object.group().to_owned(),
                r.object.kind.clone(),
                r.object.namespace.clone(),
                r.object.name.clone(),
            )
        })
        .collect();
    let known_uids: BTreeSet<&str> = records.iter().filter_map(|r| r.uid.as_deref()).collect();
    let mut out: Vec<UnmanagedObject> = Vec::new();
    for item in labelled {
        let annotation = |key: &str| {
            item.pointer("/metadata/annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
        };
        if annotation(PLAN_ANNOTATION) != Some(plan) || annotation("helm.sh/hook").is_some() {
            continue;
        }
        let Some(object) = ObjectRef::from_object(item) else {
            continue;
        };
        let key = (
            object.group().to_owned(),
            object.kind.clone(),
            object.namespace.clone(),
            object.name.clone(),
        );
        if known.contains(&key) {
            continue;
        }
        let derived = item
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|o| {
                o.get("uid")
                    .and_then(Value::as_str)
                    .is_some_and(|uid| known_uids.contains(uid))
            });
        if derived {
            continue;
        }
        let node = annotation(NODE_ANNOTATION).map(str::to_owned);
        if !targets.is_empty() && node.as_ref().is_none_or(|n| !targets.contains(n)) {
            continue;
        }
        let created_by = meshplan_k8s::fields_v1::managed_fields(item)
            .into_iter()
            .min_by(|a, b| a.time.cmp(&b.time))
            .map(|e| FieldOwner {
                manager: e.manager,
                operation: e.operation,
                subresource: e.subresource,
                time: e.time,
            });
        if out.iter().any(|u| u.object == object) {
            continue;
        }
        out.push(UnmanagedObject {
            object,
            node,
            created_by,
        });
    }
    out.sort_by(|a, b| a.object.cmp(&b.object));
    out
}

/// The CRDs the state records (applied by the plan), by the (group, kind) they define.
fn recorded_crds(records: &[ObjectRecord]) -> BTreeMap<(String, String), Value> {
    records
        .iter()
        .filter(|r| r.object.kind == "CustomResourceDefinition")
        .filter_map(|r| {
            let body = r.last_applied.redacted();
            let group = body.pointer("/spec/group")?.as_str()?.to_owned();
            let kind = body.pointer("/spec/names/kind")?.as_str()?.to_owned();
            Some(((group, kind), body.clone()))
        })
        .collect()
}

/// The API groups of the kinds Kubernetes itself serves (their list types are built in).
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
];

fn is_builtin_group(group: &str) -> bool {
    BUILTIN_GROUPS.contains(&group)
}

/// The compiled schemas of the custom kinds, from the CRDs the state records or that were
/// read.
struct Schemas {
    compiled: BTreeMap<(String, String, String), Structural>,
}

impl Schemas {
    fn new(
        recorded: &BTreeMap<(String, String), Value>,
        read: &BTreeMap<(String, String), Value>,
    ) -> Self {
        let mut compiled = BTreeMap::new();
        for crd in recorded.values().chain(read.values()) {
            let text = |p: &str| crd.pointer(p).and_then(Value::as_str).map(str::to_owned);
            let (Some(group), Some(kind)) = (text("/spec/group"), text("/spec/names/kind")) else {
                continue;
            };
            for v in crd
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(version), Some(schema)) = (
                    v.get("name").and_then(Value::as_str),
                    v.pointer("/schema/openAPIV3Schema"),
                ) else {
                    continue;
                };
                if let Ok(s) = Structural::compile(schema) {
                    compiled.insert((group.clone(), version.to_owned(), kind.clone()), s);
                }
            }
        }
        Self { compiled }
    }

    /// The list types of `kind`: its CRD's schema (metadata as built in), or the built-in
    /// rules.
    fn list_types(&self, kind: &KindRef) -> Box<dyn ListTypes + '_> {
        match self.compiled.get(&(
            kind.group().to_owned(),
            kind.version().to_owned(),
            kind.kind.clone(),
        )) {
            Some(schema) => Box::new(CustomResourceListTypes { schema }),
            None => Box::new(BuiltinListTypes),
        }
    }
}
