//! The decision for one object: a pure function of what was gathered.
//!
//! [`decide`] turns (the desired object in its node, the live object, the state's record of
//! it, the answer of the server-side apply dry run) into an [`ObjectChange`]; [`prune`] does
//! the same for a record whose object is no longer rendered. No requests, no clock: the same
//! facts give the same change, so every case is unit-tested here without a cluster.
//!
//! The routes, first match wins (objects that reach the last one are those for which
//! [`needs_dry_run`] holds: the gather step sends a dry run for exactly these):
//!
//! 1. a helm hook → `Hook` (hooks are not diffed);
//! 2. its node renders only during apply, or its name or namespace is unknown →
//!    `KnownAfterApply`;
//! 3. its kind is not installed yet (pending) or is defined by a CRD of the plan → `Create`,
//!    marked so;
//! 4. no live object → `Create` (the body shown is the desired one);
//! 5. some of its values are known only during apply → `KnownAfterApply`, showing the fields
//!    the desired body sets to something else than the live object has;
//! 6. the fast path: the desired digest is the recorded applied digest and the live
//!    resourceVersion is the recorded one → `NoOp`;
//! 7. otherwise the dry run ([`DryRun`]) decides: its normalised result compared with the
//!    normalised live object — equal → `NoOp` (`Adopt` when the state has no record), else
//!    `Update`, or `Replace` when a field of the static immutable table changes; the
//!    server's "field is immutable" → `Replace`; other field managers owning fields the apply
//!    would set → `Conflict` (fields that only meshplan itself holds, left by a rollback's
//!    replace, are taken back: `Update`); an invalid object → [`DiffError::Rejected`]; a
//!    failed request → [`DiffError::Cluster`].
//!
//! A conflict is data, never an error: the change names the other managers and their fields
//! ([`ObjectChange::conflicts`]); what a conflict means is its caller's policy (drift: the
//! plan shows it as a change that takes the fields back; apply refuses it unless
//! `--force-conflicts`).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::cluster::{ClusterError, FIELD_MANAGER, FieldConflict};
use crate::state::ObjectRecord;

use super::change::{Action, ObjectChange};
use super::error::DiffError;
use super::fields::{
    changed_fields, create_fields, desired_vs_live, is_under_any, normalize, to_field_changes,
    unknown_fields,
};
use super::input::DesiredObject;

/// How a desired object's kind is known, before any request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindStatus {
    /// The cluster serves it (its discovery lists it).
    Served,
    /// The cluster does not serve it; a CRD that this plan renders defines it.
    CreatedByPlan,
    /// Neither: a node upstream may install it during apply (else the plan fails).
    Pending,
    /// Not looked up: hooks, and objects whose name or namespace is known only during apply.
    NotLookedUp,
}

/// One desired object in its context: what is known about it before any request.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The address of the node that renders it.
    pub node: &'a str,
    pub desired: &'a DesiredObject,
    pub kind: KindStatus,
    /// Its node is rendered only during apply: its content is not final.
    pub node_during_apply: bool,
}

/// The server's answer to a server-side apply dry run, as data.
#[derive(Debug)]
pub enum DryRun {
    /// The object as the apply would leave it.
    Applied(Value),
    /// Other field managers own fields the apply would set (never forced).
    Conflict(Vec<FieldConflict>),
    /// The server refuses to change an immutable field: its message and the fields it names
    /// (as it writes them: `spec.template`).
    Immutable {
        message: String,
        fields: BTreeSet<String>,
    },
    /// The server refuses the object for another reason.
    Invalid(String),
    /// The request failed.
    Failed(ClusterError),
}

impl From<Result<Value, ClusterError>> for DryRun {
    /// Sorts the server's answer: a 409 that names conflicting fields, a 422 that says "field
    /// is immutable", any other 422, any other error.
    fn from(answer: Result<Value, ClusterError>) -> Self {
        match answer {
            Ok(dry) => DryRun::Applied(dry),
            Err(ClusterError::Conflict { conflicts, .. }) if !conflicts.is_empty() => {
                DryRun::Conflict(conflicts)
            }
            Err(ClusterError::Invalid {
                message, causes, ..
            }) if message.contains("field is immutable")
                || causes
                    .iter()
                    .any(|c| c.message.contains("field is immutable")) =>
            {
                let fields = causes
                    .into_iter()
                    .filter(|c| c.message.contains("immutable"))
                    .map(|c| c.field)
                    .collect();
                DryRun::Immutable { message, fields }
            }
            Err(ClusterError::Invalid { message, .. }) => DryRun::Invalid(message),
            Err(source) => DryRun::Failed(source),
        }
    }
}

/// The route an object's decision takes (see the module overview), cheap to compute.
enum Route<'v> {
    Hook,
    DuringApply,
    KindPending,
    KindCreatedByPlan,
    Absent,
    PartlyUnknown(&'v Value),
    FastPath(&'v Value),
    DryRun(&'v Value),
}

/// The route of `wanted`'s decision; `record` is its record under the same node.
fn route<'v>(
    wanted: &Wanted<'_>,
    live: Option<&'v Value>,
    record: Option<&ObjectRecord>,
) -> Route<'v> {
    let d = wanted.desired;
    if d.hook.is_some() {
        return Route::Hook;
    }
    if wanted.node_during_apply || d.has_unknown_identity() {
        return Route::DuringApply;
    }
    match wanted.kind {
        KindStatus::Pending => return Route::KindPending,
        KindStatus::CreatedByPlan => return Route::KindCreatedByPlan,
        KindStatus::Served | KindStatus::NotLookedUp => {}
    }
    let Some(live) = live else {
        return Route::Absent;
    };
    if !d.unknown_paths.is_empty() {
        return Route::PartlyUnknown(live);
    }
    if let Some(r) = record
        && r.applied_digest == d.digest
        && r.resource_version.is_some()
        && r.resource_version == resource_version(live)
    {
        return Route::FastPath(live);
    }
    Route::DryRun(live)
}

/// The record when it is the object's record in the same node (a record under another
/// node does not count).
fn same_node<'r>(
    wanted: &Wanted<'_>,
    record: Option<&'r ObjectRecord>,
) -> Option<&'r ObjectRecord> {
    record.filter(|r| r.node == wanted.node)
}

/// Whether the change of `wanted` depends on a server-side apply dry run: the object exists,
/// its content is fully known and the fast path does not apply.
pub fn needs_dry_run(
    wanted: &Wanted<'_>,
    live: Option<&Value>,
    record: Option<&ObjectRecord>,
) -> bool {
    matches!(
        route(wanted, live, same_node(wanted, record)),
        Route::DryRun(_)
    )
}

/// Decides the change of one desired object.
///
/// - `live`: the object as the refresh read it (None: absent, or its kind is not served);
/// - `record`: the state's record of the object under the same node (None: the state does
///   not know it there; a record under another node counts as none);
/// - `dry_run`: the server's answer to the apply dry run, needed exactly when
///   [`needs_dry_run`] holds and ignored otherwise. Without one where it is needed, the
///   change is `KnownAfterApply` (apply decides then).
///
/// Fails only on the dry run's answer: the server refuses the object
/// ([`DiffError::Rejected`]) or the request failed ([`DiffError::Cluster`]).
pub fn decide(
    wanted: &Wanted<'_>,
    live: Option<&Value>,
    record: Option<&ObjectRecord>,
    dry_run: Option<DryRun>,
) -> Result<ObjectChange, DiffError> {
    let d = wanted.desired;
    let record = same_node(wanted, record);
    let decided = match route(wanted, live, record) {
        Route::Hook => {
            let mut c = change(d, Action::Hook);
            c.hook = d.hook.clone();
            c
        }
        Route::DuringApply => {
            let mut c = change(d, Action::KnownAfterApply);
            c.fields = unknown_fields(d);
            c
        }
        Route::KindPending => {
            let mut c = change(d, Action::Create);
            c.kind_pending = true;
            c.fields = create_fields(d);
            c
        }
        Route::KindCreatedByPlan => {
            let mut c = change(d, Action::Create);
            c.kind_created_by_plan = true;
            c.fields = create_fields(d);
            c
        }
        Route::Absent => {
            let mut c = change(d, Action::Create);
            c.fields = create_fields(d);
            c
        }
        Route::PartlyUnknown(live) => known_after_apply(d, live),
        Route::FastPath(live) => {
            let mut c = change(d, Action::NoOp);
            c.live_resource_version = resource_version(live);
            c
        }
        Route::DryRun(live) => match dry_run {
            Some(dry_run) => return from_dry_run(wanted, live, record.is_some(), dry_run),
            // Not asked: apply decides then.
            None => known_after_apply(d, live),
        },
    };
    Ok(decided)
}

/// An existing object whose change is decided during apply: the fields the desired body
/// sets to something else than the live object has.
fn known_after_apply(d: &DesiredObject, live: &Value) -> ObjectChange {
    let mut c = change(d, Action::KnownAfterApply);
    c.live_resource_version = resource_version(live);
    c.fields = desired_vs_live(d, live);
    c
}

/// The change a dry run's answer gives for an existing object.
fn from_dry_run(
    wanted: &Wanted<'_>,
    live: &Value,
    in_state: bool,
    dry_run: DryRun,
) -> Result<ObjectChange, DiffError> {
    let d = wanted.desired;
    let live_rv = resource_version(live);
    match dry_run {
        DryRun::Applied(dry) => {
            let changes = changed_fields(&normalize(live), &normalize(&dry));
            let fields = to_field_changes(d, changes);
            let action = if fields.is_empty() {
                if in_state {
                    Action::NoOp
                } else {
                    Action::Adopt
                }
            } else if fields.iter().any(|f| f.forces_replacement) {
                Action::Replace
            } else {
                Action::Update
            };
            let mut c = change(d, action);
            c.live_resource_version = live_rv;
            c.regenerated_only = !fields.is_empty()
                && !d.volatile_paths.is_empty()
                && fields
                    .iter()
                    .all(|f| is_under_any(&f.pointer, &d.volatile_paths));
            if action == Action::Replace {
                let paths: Vec<&str> = fields
                    .iter()
                    .filter(|f| f.forces_replacement)
                    .map(|f| f.path.as_str())
                    .collect();
                c.replace_reason = Some(format!("immutable fields change: {}", paths.join(", ")));
            }
            c.fields = fields;
            Ok(c)
        }
        // Fields meshplan itself holds as an `Update` manager (left by a rollback's replace)
        // are not another manager's: apply takes them back.
        DryRun::Conflict(conflicts) if conflicts.iter().all(|c| c.manager == FIELD_MANAGER) => {
            let mut c = change(d, Action::Update);
            c.live_resource_version = live_rv;
            c.fields = desired_vs_live(d, live);
            Ok(c)
        }
        DryRun::Conflict(conflicts) => {
            let mut c = change(d, Action::Conflict);
            c.live_resource_version = live_rv;
            c.conflicts = conflicts;
            c.fields = desired_vs_live(d, live);
            Ok(c)
        }
        DryRun::Immutable { message, fields } => {
            let mut c = change(d, Action::Replace);
            c.live_resource_version = live_rv;
            let mut shown = desired_vs_live(d, live);
            for f in &mut shown {
                if fields
                    .iter()
                    .any(|i| f.path == *i || f.path.starts_with(&format!("{i}.")))
                {
                    f.forces_replacement = true;
                }
            }
            c.fields = shown;
            c.replace_reason = Some(message);
            Ok(c)
        }
        DryRun::Invalid(message) => Err(DiffError::Rejected {
            node: wanted.node.to_owned(),
            object: Box::new(d.object.clone()),
            message,
        }),
        DryRun::Failed(source) => Err(DiffError::Cluster {
            node: wanted.node.to_owned(),
            object: Box::new(d.object.clone()),
            source,
        }),
    }
}

/// The change for a record whose object is no longer rendered: `Delete` when the object is
/// live, `Forget` (only the record goes) when it is gone or was not read (its kind is no
/// longer served).
pub fn prune(record: &ObjectRecord, live: Option<&Value>) -> ObjectChange {
    match live {
        Some(current) => {
            let mut c = ObjectChange::new(record.object.clone(), Action::Delete);
            c.live_resource_version = resource_version(current);
            c
        }
        None => ObjectChange::new(record.object.clone(), Action::Forget),
    }
}

/// A change of `d` with its digest; the desired body is kept only where apply sends or
/// records it (a conflict's, for an apply with `--force-conflicts`).
fn change(d: &DesiredObject, action: Action) -> ObjectChange {
    let mut c = ObjectChange::new(d.object.clone(), action);
    c.desired_digest = Some(d.digest.clone());
    if action != Action::NoOp {
        c.desired = Some(d.body.clone());
        c.desired_unknown = d.unknown_paths.clone();
        c.sensitive_paths = d.sensitive_paths.clone();
    }
    c
}

fn resource_version(o: &Value) -> Option<String> {
    o.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::{InvalidCause, ObjectRef};
    use crate::diff::fixtures::{NODE, cm, desired, live, record};

    fn wanted(d: &DesiredObject) -> Wanted<'_> {
        Wanted {
            node: NODE,
            desired: d,
            kind: KindStatus::Served,
            node_during_apply: false,
        }
    }

    /// What a dry run returns: `body` as the server would leave it.
    fn applied(body: &Value, rv: &str) -> Option<DryRun> {
        Some(DryRun::Applied(live(body.clone(), rv)))
    }

    fn decided(
        d: &DesiredObject,
        current: Option<&Value>,
        record: Option<&ObjectRecord>,
        dry_run: Option<DryRun>,
    ) -> ObjectChange {
        decide(&wanted(d), current, record, dry_run).unwrap()
    }

    fn paths(c: &ObjectChange) -> Vec<&str> {
        c.fields.iter().map(|f| f.path.as_str()).collect()
    }

    fn job(name: &str, image: &str) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": "d"},
               "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn secret(value: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "s", "namespace": "d"}, "data": {"tls.crt": value}})
    }

    #[test]
    fn an_absent_object_is_created_without_a_dry_run() {
        let d = desired(cm("a", json!({"k": "1"})));
        assert!(!needs_dry_run(&wanted(&d), None, None));
        let c = decided(&d, None, None, None);
        assert_eq!(c.action, Action::Create);
        assert!(c.fields.is_empty(), "{c:?}");
        assert_eq!(c.live_resource_version, None);
        assert_eq!(c.desired_digest.as_deref(), Some(d.digest.as_str()));
        assert_eq!(c.desired.as_ref(), Some(&d.body));
    }

    #[test]
    fn the_fast_path_needs_the_recorded_digest_and_resource_version() {
        let d = desired(cm("a", json!({"k": "1"})));
        let current = live(d.body.clone(), "5");
        let w = wanted(&d);
        let same = record(&d, "5");
        assert!(!needs_dry_run(&w, Some(&current), Some(&same)));
        let c = decided(&d, Some(&current), Some(&same), None);
        assert_eq!(c.action, Action::NoOp);
        assert_eq!(c.live_resource_version.as_deref(), Some("5"));
        assert_eq!(c.desired, None, "a no-op keeps no body");

        // The object moved on the server, the plan's body changed, the record is another
        // node's or has no resourceVersion: the server must be asked.
        let moved = record(&d, "4");
        let mut other_digest = record(&d, "5");
        other_digest.applied_digest = "older".into();
        let mut other_node = record(&d, "5");
        other_node.node = "manifest.b".into();
        let mut no_rv = record(&d, "5");
        no_rv.resource_version = None;
        for r in [&moved, &other_digest, &other_node, &no_rv] {
            assert!(needs_dry_run(&w, Some(&current), Some(r)), "{r:?}");
        }
        assert!(needs_dry_run(&w, Some(&current), None));
    }

    #[test]
    fn a_dry_run_that_changes_fields_is_an_update_showing_only_those() {
        let d = desired(cm("a", json!({"k": "1", "same": "x"})));
        let current = live(cm("a", json!({"k": "0", "same": "x"})), "5");
        let mut server = d.body.clone();
        server["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z".into();
        server["status"] = json!({"x": 1});
        let c = decided(
            &d,
            Some(&current),
            Some(&record(&d, "4")),
            applied(&server, "5"),
        );
        assert_eq!(c.action, Action::Update);
        assert_eq!(paths(&c), ["data.k"]);
        assert_eq!(c.fields[0].pointer, "/data/k");
        assert_eq!(c.fields[0].before, Some(json!("0")));
        assert_eq!(c.fields[0].after, Some(json!("1")));
        assert!(!c.fields[0].forces_replacement);
        assert_eq!(c.live_resource_version.as_deref(), Some("5"));
        assert_eq!(c.desired.as_ref(), Some(&d.body));
        assert!(!c.regenerated_only);
    }

    #[test]
    fn an_object_already_as_desired_is_adopted_unless_the_state_records_it() {
        let d = desired(cm("a", json!({"k": "1"})));
        let current = live(d.body.clone(), "7");
        let c = decided(&d, Some(&current), None, applied(&d.body, "7"));
        assert_eq!(c.action, Action::Adopt);
        assert!(c.fields.is_empty());
        assert_eq!(c.desired.as_ref(), Some(&d.body), "adopt records the body");
        // Recorded under this node (at an older resourceVersion): nothing to do.
        let c = decided(
            &d,
            Some(&current),
            Some(&record(&d, "3")),
            applied(&d.body, "7"),
        );
        assert_eq!(c.action, Action::NoOp);
        // Recorded under another node only: adopted into this one.
        let mut elsewhere = record(&d, "3");
        elsewhere.node = "manifest.b".into();
        let c = decided(&d, Some(&current), Some(&elsewhere), applied(&d.body, "7"));
        assert_eq!(c.action, Action::Adopt);
    }

    #[test]
    fn a_change_of_an_immutable_field_of_the_table_replaces() {
        let d = desired(job("j", "new"));
        let current = live(job("j", "old"), "3");
        let c = decided(&d, Some(&current), None, applied(&d.body, "3"));
        assert_eq!(c.action, Action::Replace);
        assert_eq!(
            c.replace_reason.as_deref(),
            Some("immutable fields change: spec.template.spec.containers[0].image")
        );
        assert_eq!(paths(&c), ["spec.template.spec.containers[0].image"]);
        assert!(c.fields[0].forces_replacement);
    }

    #[test]
    fn the_servers_field_is_immutable_replaces() {
        // A ConfigMap marked immutable: no table knows, the server says so (422).
        let mut body = cm("a", json!({"k": "1"}));
        body["immutable"] = true.into();
        let d = desired(body);
        let mut before = cm("a", json!({"k": "0"}));
        before["immutable"] = true.into();
        let current = live(before, "2");
        let answer = DryRun::from(Err(ClusterError::Invalid {
            object: Box::new(d.object.clone()),
            causes: vec![InvalidCause {
                field: "data".into(),
                reason: "FieldValueForbidden".into(),
                message: "Forbidden: field is immutable when `immutable` is set".into(),
            }],
            message: "ConfigMap \"a\" is invalid: data: Forbidden: field is immutable when `immutable` is set".into(),
        }));
        assert!(
            matches!(&answer, DryRun::Immutable { fields, .. } if fields.contains("data")),
            "{answer:?}"
        );
        let c = decided(&d, Some(&current), None, Some(answer));
        assert_eq!(c.action, Action::Replace);
        assert!(
            c.replace_reason
                .as_deref()
                .is_some_and(|r| r.contains("field is immutable")),
            "{c:?}"
        );
        assert_eq!(paths(&c), ["data.k"]);
        assert!(c.fields[0].forces_replacement);
        assert_eq!(c.fields[0].before, Some(json!("0")));
        assert_eq!(c.fields[0].after, Some(json!("1")));
    }

    #[test]
    fn a_conflict_is_a_change_naming_the_other_manager() {
        let d = desired(cm("a", json!({"k": "1"})));
        let current = live(cm("a", json!({"k": "0"})), "5");
        let conflict = |manager: &str| {
            DryRun::from(Err(ClusterError::Conflict {
                object: Box::new(d.object.clone()),
                conflicts: vec![FieldConflict {
                    manager: manager.into(),
                    field: ".data.k".into(),
                }],
                message: "conflict".into(),
            }))
        };
        let c = decided(&d, Some(&current), None, Some(conflict("kubectl")));
        assert_eq!(c.action, Action::Conflict);
        assert_eq!(c.conflicts.len(), 1);
        assert_eq!(c.conflicts[0].manager, "kubectl");
        assert_eq!(c.conflicts[0].field, ".data.k");
        assert_eq!(paths(&c), ["data.k"]);
        assert_eq!(c.fields[0].before, Some(json!("0")));
        assert_eq!(c.fields[0].after, Some(json!("1")));
        assert_eq!(c.live_resource_version.as_deref(), Some("5"));
        assert_eq!(
            c.desired.as_ref(),
            Some(&d.body),
            "a conflict is applied as planned with --force-conflicts"
        );

        // Fields only meshplan itself holds (left by a rollback's replace) are taken back.
        let c = decided(&d, Some(&current), None, Some(conflict(FIELD_MANAGER)));
        assert_eq!(c.action, Action::Update);
        assert!(c.conflicts.is_empty());
        assert_eq!(paths(&c), ["data.k"]);
    }

    #[test]
    fn a_refused_object_or_a_failed_request_fails_the_decision() {
        let d = desired(cm("bad", json!({"k": "1"})));
        let current = live(cm("bad", json!({"k": "0"})), "6");
        let invalid = DryRun::from(Err(ClusterError::Invalid {
            object: Box::new(d.object.clone()),
            causes: vec![],
            message: "unknown field \"spec\"".into(),
        }));
        let e = decide(&wanted(&d), Some(&current), None, Some(invalid)).unwrap_err();
        assert!(
            matches!(&e, DiffError::Rejected { node, object, message }
                if node == NODE && object.name == "bad" && message.contains("unknown field")),
            "{e}"
        );
        // A resourceVersion conflict names no field: not another manager's, a failure.
        let stale = DryRun::from(Err(ClusterError::Conflict {
            object: Box::new(d.object.clone()),
            conflicts: vec![],
            message: "the object has been modified".into(),
        }));
        assert!(matches!(stale, DryRun::Failed(_)), "{stale:?}");
        let e = decide(&wanted(&d), Some(&current), None, Some(stale)).unwrap_err();
        assert!(
            matches!(&e, DiffError::Cluster { node, source: ClusterError::Conflict { .. }, .. } if node == NODE),
            "{e}"
        );
    }

    #[test]
    fn values_known_only_during_apply_are_marked() {
        // An existing object with one unknown value: no dry run; the fields it sets differ.
        let mut d = desired(cm("a", json!({"k": "(known after apply)", "v": "2"})));
        d.unknown_paths.insert("/data/k".into());
        let current = live(cm("a", json!({"k": "0", "v": "1"})), "5");
        assert!(!needs_dry_run(&wanted(&d), Some(&current), None));
        let c = decided(&d, Some(&current), None, None);
        assert_eq!(c.action, Action::KnownAfterApply);
        assert_eq!(c.live_resource_version.as_deref(), Some("5"));
        assert_eq!(paths(&c), ["data.k", "data.v"]);
        assert!(c.fields[0].unknown);
        assert_eq!(c.fields[0].before, Some(json!("0")));
        assert_eq!(c.fields[0].after, None);
        assert!(!c.fields[1].unknown);
        assert_eq!(c.fields[1].after, Some(json!("2")));

        // Absent: a create that shows the unknown field.
        let c = decided(&d, None, None, None);
        assert_eq!(c.action, Action::Create);
        assert_eq!(paths(&c), ["data.k"]);
        assert!(c.fields[0].unknown);

        // Its node renders during apply, or its name is unknown: nothing can be compared.
        let during = Wanted {
            node_during_apply: true,
            ..wanted(&d)
        };
        assert!(!needs_dry_run(&during, Some(&current), None));
        let c = decide(&during, Some(&current), None, None).unwrap();
        assert_eq!(c.action, Action::KnownAfterApply);
        assert_eq!(c.live_resource_version, None);
        assert_eq!(paths(&c), ["data.k"]);
        let mut nameless = desired(cm("(known after apply)", json!({})));
        nameless.unknown_paths.insert("/metadata/name".into());
        let c = decided(&nameless, None, None, None);
        assert_eq!(c.action, Action::KnownAfterApply);
        assert_eq!(paths(&c), ["metadata.name"]);
    }

    #[test]
    fn without_its_dry_run_an_existing_object_is_decided_during_apply() {
        let d = desired(cm("a", json!({"k": "1"})));
        let current = live(cm("a", json!({"k": "0"})), "5");
        assert!(needs_dry_run(&wanted(&d), Some(&current), None));
        let c = decided(&d, Some(&current), None, None);
        assert_eq!(c.action, Action::KnownAfterApply);
        assert_eq!(paths(&c), ["data.k"]);
        // A dry run where none is needed is ignored.
        let c = decided(&d, None, None, applied(&d.body, "1"));
        assert_eq!(c.action, Action::Create);
    }

    #[test]
    fn sensitive_values_never_enter_the_change() {
        let d = desired(secret("TkVX"));
        let c = decided(&d, None, None, None);
        assert_eq!(c.action, Action::Create);
        assert_eq!(paths(&c), ["data[\"tls.crt\"]"]);
        assert!(c.fields[0].sensitive);

        let current = live(secret("T0xE"), "2");
        let c = decided(&d, Some(&current), None, applied(&d.body, "2"));
        assert_eq!(c.action, Action::Update);
        assert!(c.fields[0].sensitive);
        assert_eq!((&c.fields[0].before, &c.fields[0].after), (&None, &None));
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("TkVX") && !text.contains("T0xE"), "{text}");

        // A path the render marked sensitive, in a ConfigMap.
        let mut marked = desired(cm("a", json!({"pem": "NEW"})));
        marked.sensitive_paths.insert("/data/pem".into());
        let current = live(cm("a", json!({"pem": "OLD"})), "2");
        let c = decided(&marked, Some(&current), None, applied(&marked.body, "2"));
        assert!(c.fields[0].sensitive);
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("NEW") && !text.contains("OLD"), "{text}");
    }

    #[test]
    fn regenerated_material_is_marked() {
        let mut d = desired(secret("TkVX"));
        d.volatile_paths.insert("/data/tls.crt".into());
        let current = live(secret("T0xE"), "2");
        let c = decided(&d, Some(&current), None, applied(&d.body, "2"));
        assert_eq!(c.action, Action::Update);
        assert!(c.regenerated_only);
    }

    #[test]
    fn kinds_the_plan_creates_or_waits_for_are_creates_and_hooks_are_not_diffed() {
        let d = desired(cm("a", json!({"k": "1"})));
        let current = live(d.body.clone(), "5");
        let by_plan = Wanted {
            kind: KindStatus::CreatedByPlan,
            ..wanted(&d)
        };
        assert!(!needs_dry_run(&by_plan, Some(&current), None));
        let c = decide(&by_plan, Some(&current), None, None).unwrap();
        assert_eq!(c.action, Action::Create);
        assert!(c.kind_created_by_plan && !c.kind_pending);
        let pending = Wanted {
            kind: KindStatus::Pending,
            ..wanted(&d)
        };
        let c = decide(&pending, None, None, None).unwrap();
        assert_eq!(c.action, Action::Create);
        assert!(c.kind_pending && !c.kind_created_by_plan);

        let mut hook = desired(cm("h", json!({})));
        hook.hook = Some(crate::diff::HookMarks {
            phases: vec!["post-install".into()],
            weight: 0,
            delete_policies: vec![],
        });
        let current = live(hook.body.clone(), "1");
        assert!(!needs_dry_run(&wanted(&hook), Some(&current), None));
        let c = decided(&hook, Some(&current), None, None);
        assert_eq!(c.action, Action::Hook);
        assert_eq!(c.hook, hook.hook);
    }

    #[test]
    fn a_record_no_longer_rendered_is_deleted_or_forgotten() {
        let d = desired(cm("old", json!({})));
        let r = record(&d, "6");
        let current = live(d.body.clone(), "8");
        let c = prune(&r, Some(&current));
        assert_eq!(c.action, Action::Delete);
        assert_eq!(
            c.object,
            ObjectRef::new("v1", "ConfigMap", Some("d"), "old")
        );
        assert_eq!(c.live_resource_version.as_deref(), Some("8"));
        let c = prune(&r, None);
        assert_eq!(c.action, Action::Forget);
        assert_eq!(c.live_resource_version, None);
    }
}
