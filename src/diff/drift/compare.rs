//! One object's drift: a pure function of what meshplan last applied and the live object.
//!
//! Only what meshplan owns is compared, the way the API server itself tracks ownership: the
//! fields of the applied body (its field set, with list items keyed as the kind's list types
//! say) and the fields meshplan's `Apply` entry of `metadata.managedFields` holds.
//!
//! 1. Every leaf field meshplan applied is looked up in the live object. A different value is
//!    *modified* (or *removed* when it is gone); the same value held by another manager and no
//!    longer by meshplan is *taken over*. The manager named is the one whose managedFields
//!    entry covers the field now (the most recent, when several do), with its time.
//! 2. Every field meshplan's `Apply` entry holds that the applied body does not have is
//!    *unrecorded*: an apply under meshplan's name that this state does not know.
//! 3. Not compared: the object's identity and server-set metadata, `status`, fields owned only
//!    by other managers, and the fields of ignore rules (removed from the applied body by the
//!    caller, and skipped in step 2).
//!
//! Values compare as JSON, except that a number and a numeric string, and two Kubernetes
//! quantities of the same amount (`0.5` and `500m`, `1Gi` and `1024Mi`), are equal: the API
//! server may store either form. A sensitive value (a Secret's data, or any value the state
//! sealed) is compared by its keyed digest and never shown.

use serde_json::Value;

use crate::cluster::FIELD_MANAGER;
use crate::model::IgnoredFields;
use crate::model::ignore::pointer_segments;
use crate::state::crypto::is_marker;
use meshplan_k8s::fields_v1::{
    self, FieldSet, ManagedFieldsEntry, OPERATION_APPLY, PathElement, path_string,
};
use meshplan_k8s::lists::ListTypes;

use super::report::{FieldChangeKind, FieldDrift, FieldOwner};

/// What one comparison needs.
pub struct Comparison<'a> {
    /// The body meshplan last applied, sensitive values as state markers, ignored fields
    /// removed.
    pub applied: &'a Value,
    /// The live object, managedFields included.
    pub live: &'a Value,
    /// How the kind's lists and maps are keyed and owned.
    pub list_types: &'a dyn ListTypes,
    /// The fields meshplan neither compares nor owns.
    pub ignored: &'a IgnoredFields,
    /// The state's marker of a sensitive value (a keyed digest).
    pub marker: &'a dyn Fn(&Value) -> String,
}

/// The drifted fields of one object, in path order.
pub fn compare(c: &Comparison<'_>) -> Vec<FieldDrift> {
    let entries = fields_v1::managed_fields(c.live);
    let ours: FieldSet = entries
        .iter()
        .filter(|e| e.manager == FIELD_MANAGER)
        .fold(FieldSet::default(), |acc, e| acc.union(&e.set));
    let applied_set = fields_v1::field_set(c.list_types, c.applied);
    let mut out = Vec::new();
    for path in applied_set.leaves() {
        if !is_compared(&path) {
            continue;
        }
        let applied = fields_v1::resolve(c.list_types, c.applied, &path);
        let live = fields_v1::resolve(c.list_types, c.live, &path);
        let sensitive = applied.is_some_and(is_sealed) || is_secret_data(c.applied, &path);
        let equal = values_equal(applied, live, c.marker);
        let owner = other_owner(&entries, &path);
        let change = if !equal {
            if live.is_none_or(Value::is_null) {
                FieldChangeKind::Removed
            } else {
                FieldChangeKind::Modified
            }
        } else if owner.is_some() && !ours.covers(&path) {
            FieldChangeKind::TakenOver
        } else {
            continue;
        };
        let pointer = fields_v1::pointer(c.list_types, c.live, &path)
            .or_else(|| fields_v1::pointer(c.list_types, c.applied, &path))
            .unwrap_or_default();
        out.push(FieldDrift {
            path: path_string(&path),
            pointer,
            change,
            applied: (!sensitive).then(|| applied.cloned()).flatten(),
            live: (!sensitive).then(|| live.cloned()).flatten(),
            sensitive,
            owner: owner.map(owner_of),
        });
    }
    // What meshplan's own apply entry holds beyond the applied body.
    let applied_by_us: FieldSet = entries
        .iter()
        .filter(|e| {
            e.manager == FIELD_MANAGER && e.operation == OPERATION_APPLY && e.subresource.is_none()
        })
        .fold(FieldSet::default(), |acc, e| acc.union(&e.set));
    for path in applied_by_us.leaves() {
        if !is_compared(&path) || applied_set.covers(&path) || covers_below(&applied_set, &path) {
            continue;
        }
        let Some(pointer) = fields_v1::pointer(c.list_types, c.live, &path) else {
            // Owned but absent (an empty value the server dropped): nothing to show.
            continue;
        };
        if c.ignored.covers(&pointer_segments(&pointer)).is_some() {
            continue;
        }
        let live = fields_v1::resolve(c.list_types, c.live, &path);
        let sensitive = is_secret_data(c.live, &path);
        out.push(FieldDrift {
            path: path_string(&path),
            pointer,
            change: FieldChangeKind::Unrecorded,
            applied: None,
            live: (!sensitive).then(|| live.cloned()).flatten(),
            sensitive,
            owner: entries
                .iter()
                .find(|e| e.manager == FIELD_MANAGER && e.operation == OPERATION_APPLY)
                .map(owner_of),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Whether some path of `set` lies below `path` (a granular object the applied body sets
/// field by field, owned as a whole by an entry).
fn covers_below(set: &FieldSet, path: &[PathElement]) -> bool {
    let mut current = set;
    for pe in path {
        match current.children.get(pe) {
            Some(child) => current = child,
            None => return false,
        }
    }
    !current.is_empty()
}

/// Whether a field is compared at all (see the module overview, step 3).
fn is_compared(path: &[PathElement]) -> bool {
    let names: Vec<Option<&str>> = path.iter().take(2).map(PathElement::field_name).collect();
    !matches!(
        names.as_slice(),
        [Some("apiVersion" | "kind" | "status"), ..]
            | [
                Some("metadata"),
                Some(
                    "name"
                        | "namespace"
                        | "uid"
                        | "resourceVersion"
                        | "generation"
                        | "creationTimestamp"
                        | "deletionTimestamp"
                        | "deletionGracePeriodSeconds"
                        | "managedFields"
                        | "selfLink"
                )
            ]
    )
}

/// The most recent managedFields entry of another manager that covers `path` (status writes
/// excluded: a controller's status is never drift).
fn other_owner<'e>(
    entries: &'e [ManagedFieldsEntry],
    path: &[PathElement],
) -> Option<&'e ManagedFieldsEntry> {
    entries
        .iter()
        .filter(|e| e.manager != FIELD_MANAGER && e.subresource.as_deref() != Some("status"))
        .filter(|e| e.set.covers(path))
        .max_by(|a, b| a.time.cmp(&b.time))
}

fn owner_of(e: &ManagedFieldsEntry) -> FieldOwner {
    FieldOwner {
        manager: e.manager.clone(),
        operation: e.operation.clone(),
        subresource: e.subresource.clone(),
        time: e.time.clone(),
    }
}

/// Whether `value` is a state marker standing for a sensitive value.
fn is_sealed(value: &Value) -> bool {
    value.as_str().is_some_and(is_marker)
}

/// Whether `path` lies under `data` or `stringData` of a v1 Secret.
fn is_secret_data(object: &Value, path: &[PathElement]) -> bool {
    object.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && object.get("kind").and_then(Value::as_str) == Some("Secret")
        && matches!(
            path.first().and_then(PathElement::field_name),
            Some("data" | "stringData")
        )
}

/// Whether the applied and live values agree (see the module overview).
fn values_equal(
    applied: Option<&Value>,
    live: Option<&Value>,
    marker: &dyn Fn(&Value) -> String,
) -> bool {
    match (applied, live) {
        (Some(a), Some(l)) if is_sealed(a) => a.as_str() == Some(marker(l).as_str()),
        (Some(a), Some(l)) => a == l || same_amount(a, l),
        (None | Some(Value::Null), None | Some(Value::Null)) => true,
        _ => false,
    }
}

/// Whether two scalars are the same number or Kubernetes quantity in different forms.
fn same_amount(a: &Value, b: &Value) -> bool {
    match (quantity(a), quantity(b)) {
        (Some(x), Some(y)) => x == y || ((x - y).abs() <= f64::EPSILON * x.abs().max(y.abs())),
        _ => false,
    }
}

/// The amount of a number or of a quantity string (`500m`, `1Gi`, `1e3`, `2`).
fn quantity(value: &Value) -> Option<f64> {
    let text = match value {
        Value::Number(n) => return n.as_f64(),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    let suffixes: [(&str, f64); 16] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("", 1.0),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = text.strip_suffix(suffix) {
            let ok = !number.is_empty()
                && number
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E'))
                && number.chars().any(|c| c.is_ascii_digit());
            if ok && let Ok(n) = number.parse::<f64>() {
                return Some(n * factor);
            }
            if !suffix.is_empty() {
                continue;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::ignore::{IgnoreFacts, IgnoreRule};
    use meshplan_k8s::lists::BuiltinListTypes;

    fn marker(v: &Value) -> String {
        format!(
            "(sensitive:{})",
            blake3::hash(v.to_string().as_bytes()).to_hex()
        )
    }

    fn applied_deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "viz", "labels": {"tier": "front"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                        "resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}}}]}}}})
    }

    /// The live object as the server keeps it after meshplan applied `applied`, plus `more`
    /// managedFields entries.
    fn live(applied: &Value, more: Vec<Value>) -> Value {
        let mut live = applied.clone();
        live["metadata"]["uid"] = json!("u1");
        live["metadata"]["resourceVersion"] = json!("7");
        live["status"] = json!({"replicas": 1});
        let set = fields_v1::field_set(&BuiltinListTypes, applied);
        let mut entries = vec![json!({"manager": "meshplan", "operation": "Apply",
            "apiVersion": "apps/v1", "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": set.to_fields_v1()})];
        entries.extend(more);
        live["metadata"]["managedFields"] = Value::Array(entries);
        live
    }

    fn drift(applied: &Value, live: &Value, ignored: &IgnoredFields) -> Vec<FieldDrift> {
        compare(&Comparison {
            applied,
            live,
            list_types: &BuiltinListTypes,
            ignored,
            marker: &marker,
        })
    }

    fn take(live: &mut Value, manager: &str, sub: Option<&str>, fields: Value, path: &[&str]) {
        // The other manager takes the field from meshplan (as an Update does).
        let entries = live["metadata"]["managedFields"].as_array_mut().unwrap();
        let mut ours = FieldSet::from_fields_v1(&entries[0]["fieldsV1"]).unwrap();
        let theirs = FieldSet::from_fields_v1(&fields).unwrap();
        ours = ours.difference(&theirs);
        entries[0]["fieldsV1"] = ours.to_fields_v1();
        let mut entry = json!({"manager": manager, "operation": "Update", "apiVersion": "apps/v1",
            "time": "2025-02-02T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields});
        if let Some(s) = sub {
            entry["subresource"] = json!(s);
        }
        entries.push(entry);
        let _ = path;
    }

    #[test]
    fn right_after_apply_nothing_drifts_and_status_is_never_compared() {
        let applied = applied_deployment();
        let mut current = live(
            &applied,
            vec![json!({"manager": "kube-controller-manager",
            "operation": "Update", "apiVersion": "apps/v1", "subresource": "status",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:replicas": {}}}})],
        );
        // The server keeps quantities in its canonical form.
        current["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
            json!("500m");
        current["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] =
            json!("1024Mi");
        // Fields only other managers own are theirs.
        current["spec"]["template"]["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/restartedAt": "now"});
        assert_eq!(drift(&applied, &current, &IgnoredFields::default()), vec![]);
    }

    #[test]
    fn a_scale_names_the_field_both_values_and_the_manager() {
        let applied = applied_deployment();
        let mut current = live(&applied, vec![]);
        current["spec"]["replicas"] = json!(3);
        take(
            &mut current,
            "kubectl",
            Some("scale"),
            json!({"f:spec": {"f:replicas": {}}}),
            &[],
        );
        let found = drift(&applied, &current, &IgnoredFields::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(f.path, ".spec.replicas");
        assert_eq!(f.pointer, "/spec/replicas");
        assert_eq!(f.change, FieldChangeKind::Modified);
        assert_eq!(
            (f.applied.clone(), f.live.clone()),
            (Some(json!(1)), Some(json!(3)))
        );
        let owner = f.owner.as_ref().unwrap();
        assert_eq!(owner.manager, "kubectl");
        assert_eq!(owner.subresource.as_deref(), Some("scale"));
        assert_eq!(owner.time.as_deref(), Some("2025-02-02T00:00:00Z"));

        // With an ignore rule for the field, nothing drifts (the caller removed it from the
        // applied body).
        let rule = IgnoreRule {
            node: None,
            kind: Some("Deployment".into()),
            name: None,
            namespace: None,
            fields: vec![crate::model::FieldPointer::parse("/spec/replicas").unwrap()],
            reason: None,
            span: crate::planfile::Span::file_start(crate::planfile::FileId(0)),
        };
        let ignored = IgnoredFields::of([&rule], &IgnoreFacts::default(), "helm.x", &applied);
        let mut without = applied.clone();
        ignored.remove_from(&mut without);
        assert_eq!(drift(&without, &current, &ignored), vec![]);
    }

    #[test]
    fn a_container_field_edited_by_hand_is_found_by_its_key() {
        let applied = applied_deployment();
        let mut current = live(&applied, vec![]);
        current["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        take(
            &mut current,
            "kubectl-edit",
            None,
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {"f:image": {}}}}}}}),
            &[],
        );
        let found = drift(&applied, &current, &IgnoredFields::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(
            found[0].path,
            ".spec.template.spec.containers[name=\"web\"].image"
        );
        assert_eq!(found[0].pointer, "/spec/template/spec/containers/0/image");
        assert_eq!(found[0].owner.as_ref().unwrap().manager, "kubectl-edit");
    }

    #[test]
    fn removed_taken_over_and_unrecorded_fields() {
        let applied = applied_deployment();
        let mut current = live(&applied, vec![]);
        // A label removed by hand: the field is gone from every entry.
        current["metadata"]["labels"] = json!({});
        let entries = current["metadata"]["managedFields"].as_array_mut().unwrap();
        let mut ours = FieldSet::from_fields_v1(&entries[0]["fieldsV1"]).unwrap();
        ours = ours.difference(
            &FieldSet::from_fields_v1(&json!({"f:metadata": {"f:labels": {"f:tier": {}}}}))
                .unwrap(),
        );
        // A field meshplan's apply entry holds that the state never applied.
        ours.insert(&[
            PathElement::Field("spec".into()),
            PathElement::Field("paused".into()),
        ]);
        entries[0]["fieldsV1"] = ours.to_fields_v1();
        current["spec"]["paused"] = json!(true);
        // The same selector, now another manager's.
        take(
            &mut current,
            "helm",
            None,
            json!({"f:spec": {"f:selector": {}}}),
            &[],
        );
        let found = drift(&applied, &current, &IgnoredFields::default());
        let summary: Vec<(&str, FieldChangeKind, Option<&str>)> = found
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.change,
                    f.owner.as_ref().map(|o| o.manager.as_str()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (".metadata.labels.tier", FieldChangeKind::Removed, None),
                (
                    ".spec.paused",
                    FieldChangeKind::Unrecorded,
                    Some("meshplan")
                ),
                (".spec.selector", FieldChangeKind::TakenOver, Some("helm")),
            ]
        );
        assert_eq!(found[0].applied, Some(json!("front")));
        assert_eq!(found[0].live, None);
    }

    #[test]
    fn sensitive_values_compare_by_digest_and_are_never_shown() {
        let secret = |v: &str| {
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s", "namespace": "d"}, "data": {"tls.crt": v}})
        };
        let mut applied = secret("T0xE");
        applied["data"]["tls.crt"] = json!(marker(&json!("T0xE")));
        let same = live(&secret("T0xE"), vec![]);
        assert_eq!(drift(&applied, &same, &IgnoredFields::default()), vec![]);
        let mut changed = live(&secret("TkVX"), vec![]);
        take(
            &mut changed,
            "kubectl-patch",
            None,
            json!({"f:data": {"f:tls.crt": {}}}),
            &[],
        );
        let found = drift(&applied, &changed, &IgnoredFields::default());
        assert_eq!(found.len(), 1);
        assert!(found[0].sensitive);
        assert_eq!(
            (found[0].applied.clone(), found[0].live.clone()),
            (None, None)
        );
        let text = serde_json::to_string(&found).unwrap();
        assert!(!text.contains("TkVX") && !text.contains("T0xE"), "{text}");
    }

    #[test]
    fn quantities_and_numbers_in_either_form() {
        for (a, b) in [
            (json!("0.5"), json!("500m")),
            (json!("1Gi"), json!("1024Mi")),
            (json!(2), json!("2")),
            (json!("1e3"), json!("1k")),
        ] {
            assert!(values_equal(Some(&a), Some(&b), &marker), "{a} {b}");
        }
        for (a, b) in [
            (json!("500m"), json!("501m")),
            (json!("web"), json!("webm")),
            (json!("1Gi"), json!("1G")),
            (json!(true), json!("true")),
        ] {
            assert!(!values_equal(Some(&a), Some(&b), &marker), "{a} {b}");
        }
    }
}
