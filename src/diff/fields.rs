//! Structured comparison of objects: normalisation, changed fields, immutable fields,
//! sensitive paths, and the [`FieldChange`]s a change shows.
//!
//! 1. [`normalize`] strips what the server sets and meshplan never owns (managedFields,
//!    resourceVersion, generation, uid, timestamps, status), so that a dry-run result and the
//!    live object compare equal when applying would change nothing.
//! 2. [`changed_fields`] walks two normalised objects and lists the changed leaves only: maps
//!    key by key, lists item by item when their lengths agree (else the list as a whole).
//! 3. [`immutable_prefixes`] is the static table of fields the API server refuses to change
//!    (a Job's template, a Service's clusterIP, workload selectors, ...): a change under one
//!    of them replaces the object.
//! 4. [`is_sensitive`]: a Secret's `data` / `stringData` and any path the render marked.
//! 5. The fields shown for a desired object ([`to_field_changes`], [`create_fields`],
//!    [`unknown_fields`], [`desired_vs_live`]): sensitive values masked, unknown and
//!    immutable fields marked.

use std::collections::BTreeSet;

use serde_json::Value;

use super::change::FieldChange;
use super::input::DesiredObject;

/// Metadata fields the server owns.
const SERVER_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
];

/// The object without server-owned fields: `status`, and in `metadata` the fields of
/// [`SERVER_METADATA`]. Empty `labels` / `annotations` maps are dropped.
pub fn normalize(object: &Value) -> Value {
    let mut out = object.clone();
    if let Value::Object(map) = &mut out {
        map.remove("status");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for key in SERVER_METADATA {
                meta.remove(*key);
            }
            for key in ["labels", "annotations"] {
                if meta
                    .get(key)
                    .is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()) || v.is_null())
                {
                    meta.remove(key);
                }
            }
        }
    }
    out
}

/// One changed leaf: (JSON pointer, before, after); None means absent.
pub type Change = (String, Option<Value>, Option<Value>);

/// The changed leaves between `before` and `after`, sorted by pointer.
pub fn changed_fields(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(String::new(), Some(before), Some(after), &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn walk(pointer: String, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Change>) {
    match (a, b) {
        (Some(x), Some(y)) if x == y => {}
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                walk(push(&pointer, k), x.get(k), y.get(k), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                walk(push(&pointer, &i.to_string()), Some(p), Some(q), out);
            }
        }
        (None, None) => {}
        (a, b) => out.push((pointer, a.cloned(), b.cloned())),
    }
}

/// Appends one segment to a JSON pointer, escaping `~` and `/`.
pub fn push(pointer: &str, segment: &str) -> String {
    format!(
        "{pointer}/{}",
        segment.replace('~', "~0").replace('/', "~1")
    )
}

/// The segments of a JSON pointer, unescaped.
pub fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Whether `pointer` is `prefix` or lies below it.
pub fn is_under(pointer: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || pointer == prefix
        || (pointer.starts_with(prefix) && pointer.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// A pointer as people read it: `spec.template.spec.containers[0].image`,
/// `metadata.labels["app.kubernetes.io/name"]`.
pub fn display_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in segments(pointer) {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else if !seg.is_empty()
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        } else {
            out.push_str(&format!("[{}]", serde_json::Value::String(seg)));
        }
    }
    if out.is_empty() {
        "(whole object)".to_owned()
    } else {
        out
    }
}

/// JSON pointers of fields the API server does not let an update change, for a kind.
pub fn immutable_prefixes(api_version: &str, kind: &str) -> &'static [&'static str] {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("batch", "Job") => &["/spec/selector", "/spec/template", "/spec/completionMode"],
        ("", "Service") => &["/spec/clusterIP", "/spec/clusterIPs"],
        ("apps", "Deployment" | "DaemonSet" | "ReplicaSet") => &["/spec/selector"],
        ("apps", "StatefulSet") => &[
            "/spec/selector",
            "/spec/volumeClaimTemplates",
            "/spec/serviceName",
            "/spec/podManagementPolicy",
        ],
        ("", "PersistentVolumeClaim") => &[
            "/spec/accessModes",
            "/spec/selector",
            "/spec/storageClassName",
            "/spec/volumeMode",
            "/spec/volumeName",
        ],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => &["/roleRef"],
        ("apiextensions.k8s.io", "CustomResourceDefinition") => &["/spec/scope"],
        ("storage.k8s.io", "StorageClass") => &[
            "/provisioner",
            "/parameters",
            "/reclaimPolicy",
            "/volumeBindingMode",
        ],
        ("policy", "PodDisruptionBudget") => &[],
        _ => &[],
    }
}

/// The immutable prefix `pointer` lies under, if any.
pub fn immutable_prefix(api_version: &str, kind: &str, pointer: &str) -> Option<&'static str> {
    immutable_prefixes(api_version, kind)
        .iter()
        .copied()
        .find(|p| is_under(pointer, p))
}

/// Whether the value at `pointer` of a `kind` object is sensitive: under `data` or
/// `stringData` of a v1 Secret, or under one of `marked` (pointers from the render).
pub fn is_sensitive(
    api_version: &str,
    kind: &str,
    pointer: &str,
    marked: &BTreeSet<String>,
) -> bool {
    (api_version == "v1"
        && kind == "Secret"
        && (is_under(pointer, "/data") || is_under(pointer, "/stringData")))
        || marked
            .iter()
            .any(|m| is_under(pointer, m) || is_under(m, pointer))
}

/// Whether `pointer` lies under one of `paths` (e.g. the render's unknown or volatile paths).
pub fn is_under_any(pointer: &str, paths: &BTreeSet<String>) -> bool {
    paths.iter().any(|p| is_under(pointer, p))
}

/// The fields of a create worth showing: unknown and sensitive ones.
pub fn create_fields(d: &DesiredObject) -> Vec<FieldChange> {
    let mut out = unknown_fields(d);
    let o = &d.object;
    let mut sensitive: BTreeSet<String> = d.sensitive_paths.clone();
    if o.api_version == "v1" && o.kind == "Secret" {
        for key in ["/data", "/stringData"] {
            if let Some(Value::Object(map)) = d.body.pointer(key) {
                for k in map.keys() {
                    sensitive.insert(push(key, k));
                }
            }
        }
    }
    for p in sensitive {
        if d.body.pointer(&p).is_some() && !is_under_any(&p, &d.unknown_paths) {
            out.push(FieldChange {
                path: display_path(&p),
                pointer: p,
                before: None,
                after: None,
                sensitive: true,
                unknown: false,
                forces_replacement: false,
            });
        }
    }
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    out
}

/// The fields whose values are known only during apply.
pub fn unknown_fields(d: &DesiredObject) -> Vec<FieldChange> {
    d.unknown_paths
        .iter()
        .map(|p| FieldChange {
            path: display_path(p),
            pointer: p.clone(),
            before: None,
            after: None,
            sensitive: is_sensitive(&d.object.api_version, &d.object.kind, p, &d.sensitive_paths),
            unknown: true,
            forces_replacement: false,
        })
        .collect()
}

/// The fields `desired` sets that differ from `live` (when no dry run result exists).
pub fn desired_vs_live(d: &DesiredObject, live: &Value) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    leaves_vs(String::new(), &d.body, Some(live), &mut changes);
    to_field_changes(d, changes)
}

fn leaves_vs(pointer: String, desired: &Value, live: Option<&Value>, out: &mut Vec<Change>) {
    match (desired, live) {
        (Value::Object(map), Some(Value::Object(other))) => {
            for (k, v) in map {
                leaves_vs(push(&pointer, k), v, other.get(k), out);
            }
        }
        (Value::Array(items), Some(Value::Array(other))) if items.len() == other.len() => {
            for (i, (v, o)) in items.iter().zip(other).enumerate() {
                leaves_vs(push(&pointer, &i.to_string()), v, Some(o), out);
            }
        }
        (d, l) if Some(d) == l => {}
        (d, l) => out.push((pointer, l.cloned(), Some(d.clone()))),
    }
}

/// Turns raw changes into field changes: masks sensitive values, marks unknown and
/// immutable fields.
pub fn to_field_changes(d: &DesiredObject, changes: Vec<Change>) -> Vec<FieldChange> {
    let o = &d.object;
    changes
        .into_iter()
        .filter(|(p, _, _)| !p.starts_with("/metadata/managedFields"))
        .map(|(pointer, before, after)| {
            let sensitive = is_sensitive(&o.api_version, &o.kind, &pointer, &d.sensitive_paths);
            let unknown = is_under_any(&pointer, &d.unknown_paths);
            FieldChange {
                path: display_path(&pointer),
                forces_replacement: immutable_prefix(&o.api_version, &o.kind, &pointer).is_some(),
                before: if sensitive { None } else { before },
                after: if sensitive || unknown { None } else { after },
                pointer,
                sensitive,
                unknown,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalisation_strips_server_fields() {
        let live = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "d", "uid": "u", "resourceVersion": "7",
                         "creationTimestamp": "2025-01-01T00:00:00Z", "managedFields": [],
                         "generation": 2, "annotations": {}},
            "data": {"k": "v"}, "status": {"x": 1}
        });
        assert_eq!(
            normalize(&live),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "a", "namespace": "d"}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn only_changed_leaves_are_listed() {
        let a = json!({"data": {"a": "1", "b": "2"}, "spec": {"ports": [{"port": 80}, {"port": 81}]},
                       "list": [1, 2]});
        let b = json!({"data": {"a": "1", "b": "3", "c": "4"},
                       "spec": {"ports": [{"port": 80}, {"port": 82}]}, "list": [1, 2, 3]});
        let changes = changed_fields(&a, &b);
        let pointers: Vec<&str> = changes.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            pointers,
            ["/data/b", "/data/c", "/list", "/spec/ports/1/port"]
        );
        assert_eq!(changes[1].1, None);
        assert_eq!(changes[1].2, Some(json!("4")));
        assert!(changed_fields(&a, &a).is_empty());
    }

    #[test]
    fn paths_read_like_kubectl() {
        assert_eq!(
            display_path("/spec/template/spec/containers/0/image"),
            "spec.template.spec.containers[0].image"
        );
        assert_eq!(
            display_path("/metadata/labels/app.kubernetes.io~1name"),
            "metadata.labels[\"app.kubernetes.io/name\"]"
        );
        assert_eq!(display_path("/data/ca.crt"), "data[\"ca.crt\"]");
        assert_eq!(display_path(""), "(whole object)");
    }

    #[test]
    fn immutable_fields_and_sensitivity() {
        assert_eq!(
            immutable_prefix("batch/v1", "Job", "/spec/template/spec/containers/0/image"),
            Some("/spec/template")
        );
        assert_eq!(
            immutable_prefix("batch/v1", "Job", "/spec/parallelism"),
            None
        );
        assert_eq!(
            immutable_prefix("v1", "Service", "/spec/clusterIP"),
            Some("/spec/clusterIP")
        );
        assert_eq!(
            immutable_prefix("v1", "Service", "/spec/clusterIPs/0"),
            Some("/spec/clusterIPs")
        );
        assert_eq!(
            immutable_prefix(
                "apps/v1",
                "StatefulSet",
                "/spec/volumeClaimTemplates/0/spec"
            ),
            Some("/spec/volumeClaimTemplates")
        );
        assert_eq!(
            immutable_prefix("apps/v1", "Deployment", "/spec/replicas"),
            None
        );
        let none = BTreeSet::new();
        assert!(is_sensitive("v1", "Secret", "/data/tls.key", &none));
        assert!(is_sensitive("v1", "Secret", "/stringData", &none));
        assert!(!is_sensitive("v1", "ConfigMap", "/data/x", &none));
        let marked = BTreeSet::from(["/data/pem".to_owned()]);
        assert!(is_sensitive("v1", "ConfigMap", "/data/pem", &marked));
        assert!(is_sensitive("v1", "ConfigMap", "/data", &marked));
        assert!(!is_sensitive("v1", "ConfigMap", "/data/pemx", &marked));
        assert!(is_under("/a/b", "/a"));
        assert!(!is_under("/ab", "/a"));
    }
}
