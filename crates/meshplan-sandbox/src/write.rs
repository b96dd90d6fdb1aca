//! The write path: create, replace, patch, apply and delete, all under the store lock.
//!
//! Every write follows the same steps:
//! 1. build the candidate object (body, patched live object, or server-side apply merge);
//! 2. [`prepare`] it: URL/body agreement, names, server-set fields, CR schema (unknown fields,
//!    pruning, defaults, validation), status rules, generation, Namespace and CRD specifics;
//! 3. maintain `metadata.managedFields` through [`super::fieldmanager`];
//! 4. [`commit`] it unless nothing changed (the no-op rule) or it is a dry run.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::fieldmanager::{self, Context};
use super::names;
use super::patch::{self, JsonPatchError};
use super::registry::{self, ResourceType};
use super::request::FieldValidation;
use super::status::{ApiError, Cause};
use super::store::{Key, State, key};
use meshplan_k8s::CustomResourceListTypes;
use meshplan_k8s::go::go_quote;
use meshplan_k8s::lists::{BuiltinListTypes, ListType, ListTypes};

/// The finalizer the sandbox puts on CRDs so their custom resources are removed first.
pub(crate) const CRD_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Namespaces that cannot be deleted.
pub(crate) const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Options of one write request.
#[derive(Debug, Clone)]
pub(crate) struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub validation: FieldValidation,
    pub force: bool,
}

/// The outcome of a write.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

/// How a PATCH body is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Apply,
    Merge,
    Json,
    Strategic,
}

/// Now as RFC 3339 whole seconds `Z`.
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.get_mut("metadata").and_then(Value::as_object_mut)
}

/// Whether an object has a deletionTimestamp.
pub(crate) fn is_deleting(obj: &Value) -> bool {
    meta(obj).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|v| !v.is_null()))
}

fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The object as served at `ty`'s version.
pub(crate) fn present(ty: &ResourceType, mut obj: Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(ty.api_version()));
    }
    obj
}

enum AnyListTypes<'a> {
    Builtin(BuiltinListTypes),
    Custom(CustomResourceListTypes<'a>),
}

impl AnyListTypes<'_> {
    fn rules(&self) -> &dyn ListTypes {
        match self {
            Self::Builtin(b) => b,
            Self::Custom(c) => c,
        }
    }
}

impl ListTypes for AnyListTypes<'_> {
    fn list_type(&self, path: &[&str]) -> ListType {
        self.rules().list_type(path)
    }

    fn map_is_atomic(&self, path: &[&str]) -> bool {
        self.rules().map_is_atomic(path)
    }

    fn keys_are_map_keys(&self, path: &[&str]) -> bool {
        self.rules().keys_are_map_keys(path)
    }

    fn key_default(&self, path: &[&str], key: &str) -> Option<Value> {
        self.rules().key_default(path, key)
    }
}

fn list_types(ty: &ResourceType) -> AnyListTypes<'_> {
    match &ty.schema {
        Some(schema) => AnyListTypes::Custom(CustomResourceListTypes { schema }),
        None => AnyListTypes::Builtin(BuiltinListTypes),
    }
}

/// The key of an object of `ty` named `name` in `namespace`.
pub(crate) fn object_key(ty: &ResourceType, namespace: Option<&str>, name: &str) -> Key {
    let ns = if ty.namespaced {
        namespace.unwrap_or("")
    } else {
        ""
    };
    key(&ty.group, &ty.plural, ns, name)
}

fn gvk_string(ty: &ResourceType) -> String {
    format!("{}/{}, Kind={}", ty.group, ty.version, ty.kind)
}

/// Refuses creates in a missing (404) or terminating (403) namespace.
fn check_namespace(
    st: &State,
    ty: &ResourceType,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    if !ty.namespaced {
        return Ok(());
    }
    let ns = namespace.unwrap_or("");
    match st.get(&key("", "namespaces", "", ns)) {
        None => Err(ApiError::not_found("namespaces", "", ns)),
        Some(n) if is_deleting(n) => Err(ApiError::forbidden(
            &ty.plural,
            &ty.group,
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )
        .with_causes(vec![Cause {
            reason: "NamespaceTerminating".into(),
            message: format!("namespace {ns} is being terminated"),
            field: "metadata.namespace".into(),
        }])),
        Some(_) => Ok(()),
    }
}

fn stale_check(
    ty: &ResourceType,
    live: &Value,
    candidate: &Value,
    name: &str,
) -> Result<(), ApiError> {
    if let Some(rv) = meta_str(candidate, "resourceVersion")
        && !rv.is_empty()
        && Some(rv) != meta_str(live, "resourceVersion")
    {
        return Err(ApiError::stale(&ty.plural, &ty.group, name));
    }
    Ok(())
}

fn strip_field_prefix(field: &str, message: &str) -> String {
    message
        .strip_prefix(&format!("{field}: "))
        .unwrap_or(message)
        .to_string()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Metadata fields of the wrong JSON type are refused the way the API server's decoder
/// refuses them (400).
fn check_metadata_types(ty: &ResourceType, meta: &Map<String, Value>) -> Result<(), ApiError> {
    let refuse = |field: &str, found: &Value, go_type: &str| {
        Err(ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: json: cannot unmarshal {} into Go struct field ObjectMeta.metadata.{field} of type {go_type}",
            json_type(found),
            kind = ty.kind,
            v = ty.version,
        )))
    };
    for field in ["labels", "annotations"] {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                if let Some(bad) = map.values().find(|v| !v.is_string()) {
                    return refuse(field, bad, "string");
                }
            }
            Some(other) => return refuse(field, other, "map[string]string"),
        }
    }
    match meta.get("finalizers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            if let Some(bad) = items.iter().find(|v| !v.is_string()) {
                return refuse("finalizers", bad, "string");
            }
        }
        Some(other) => return refuse("finalizers", other, "[]string"),
    }
    for (field, go_type) in [
        ("ownerReferences", "[]v1.OwnerReference"),
        ("managedFields", "[]v1.ManagedFieldsEntry"),
    ] {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                if let Some(bad) = items.iter().find(|v| !v.is_object()) {
                    return refuse(field, bad, go_type.trim_start_matches("[]"));
                }
            }
            Some(other) => return refuse(field, other, go_type),
        }
    }
    for field in ["name", "generateName", "namespace"] {
        if let Some(found) = meta.get(field).filter(|v| !v.is_string() && !v.is_null()) {
            return refuse(field, found, "string");
        }
    }
    Ok(())
}

/// Label keys and values, and annotation keys, checked as apimachinery checks them.
fn label_problems(meta: &Map<String, Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut invalid = |field: &str, value: &str, problems: Vec<String>| {
        if !problems.is_empty() {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: {}: {}",
                    go_quote(value),
                    problems.join(", ")
                ),
                field: field.to_string(),
            });
        }
    };
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (key, value) in labels {
            invalid("metadata.labels", key, names::is_qualified_name(key));
            let text = value.as_str().unwrap_or_default();
            invalid("metadata.labels", text, names::is_valid_label_value(text));
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        for key in annotations.keys() {
            invalid(
                "metadata.annotations",
                key,
                names::is_qualified_name(&key.to_lowercase()),
            );
        }
    }
    causes
}

/// Everything but metadata and status: what a generation bump looks at.
fn spec_part(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
        map.remove("apiVersion");
        map.remove("kind");
    }
    copy
}

/// Checks and completes a candidate object (see the module overview, step 2).
#[allow(clippy::too_many_arguments)]
fn prepare(
    ty: &ResourceType,
    old: Option<&Value>,
    candidate: Value,
    url_namespace: Option<&str>,
    url_name: Option<&str>,
    sub: Option<&str>,
    check_unknown: Option<FieldValidation>,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let mut obj = candidate;
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    };
    if let Some(av) = map.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != ty.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            ty.api_version()
        )));
    }
    if let Some(kind) = map.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != ty.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            ty.kind
        )));
    }
    map.insert("apiVersion".into(), json!(ty.api_version()));
    map.insert("kind".into(), json!(ty.kind));
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if metadata.is_null() {
        *metadata = Value::Object(Map::new());
    }
    let Some(m) = metadata.as_object_mut() else {
        return Err(ApiError::bad_request("metadata must be an object"));
    };
    check_metadata_types(ty, m)?;

    // Name and namespace agree with the URL.
    let body_name = m.get("name").and_then(Value::as_str).map(str::to_string);
    let name = match (body_name, url_name) {
        (Some(b), Some(u)) if b != u => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({b}) does not match the name on the URL ({u})"
            )));
        }
        (Some(b), _) if !b.is_empty() => b,
        (_, Some(u)) => u.to_string(),
        _ => match m.get("generateName").and_then(Value::as_str) {
            Some(prefix) if old.is_none() && !prefix.is_empty() => {
                let problems = names::validate_generate_name(ty.name_rule, prefix);
                if !problems.is_empty() {
                    return Err(ApiError::invalid_field(
                        &ty.kind,
                        &ty.group,
                        "",
                        "FieldValueInvalid",
                        "metadata.generateName",
                        format!(
                            "Invalid value: {}: {}",
                            go_quote(prefix),
                            problems.join(", ")
                        ),
                    ));
                }
                names::generate_name(prefix)
            }
            _ => {
                return Err(ApiError::invalid_field(
                    &ty.kind,
                    &ty.group,
                    "",
                    "FieldValueRequired",
                    "metadata.name",
                    format!("Required value: {}", names::NAME_REQUIRED),
                ));
            }
        },
    };
    m.insert("name".into(), json!(name));
    if ty.namespaced {
        let url_ns = url_namespace.unwrap_or("");
        match m.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                m.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        m.remove("namespace");
    }
    if old.is_none() {
        let problems = names::validate_name(ty.name_rule, &name);
        if !problems.is_empty() {
            return Err(ApiError::invalid_field(
                &ty.kind,
                &ty.group,
                &name,
                "FieldValueInvalid",
                "metadata.name",
                format!(
                    "Invalid value: {}: {}",
                    go_quote(&name),
                    problems.join(", ")
                ),
            ));
        }
    }
    let label_causes = label_problems(m);
    if !label_causes.is_empty() {
        return Err(ApiError::invalid(&ty.kind, &ty.group, &name, label_causes));
    }

    // Server-set fields.
    m.remove("selfLink");
    m.remove("resourceVersion");
    match old.and_then(meta) {
        Some(om) => {
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match om.get(field) {
                    Some(v) => m.insert(field.into(), v.clone()),
                    None => m.remove(field),
                };
            }
        }
        None => {
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now()));
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("generation");
        }
    }
    // An object being deleted cannot gain finalizers it did not have.
    if let Some(old) = old
        && is_deleting(old)
    {
        let before = finalizers(old);
        let now_list: Vec<Value> = finalizers(&obj)
            .into_iter()
            .filter(|f| before.contains(f))
            .map(Value::String)
            .collect();
        if let Some(m) = meta_mut(&mut obj) {
            if now_list.is_empty() {
                m.remove("finalizers");
            } else {
                m.insert("finalizers".into(), Value::Array(now_list));
            }
        }
    }

    // The status subresource changes status only.
    if sub == Some("status")
        && let Some(old) = old
    {
        {
            let mut result = old.clone();
            if let Some(rmap) = result.as_object_mut() {
                match obj.get("status") {
                    Some(s) => rmap.insert("status".into(), s.clone()),
                    None => rmap.remove("status"),
                };
            }
            obj = result;
        }
    }

    // Custom resources: unknown fields, pruning, defaults, validation.
    if let Some(schema) = &ty.schema {
        if let Some(mode) = check_unknown {
            let unknown = schema.unknown_fields(&obj);
            if !unknown.is_empty() {
                match mode {
                    FieldValidation::Strict => {
                        let list: Vec<String> = unknown
                            .iter()
                            .map(|p| format!("unknown field \"{p}\""))
                            .collect();
                        return Err(ApiError::bad_request(format!(
                            "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                            list.join(", "),
                            kind = ty.kind,
                            v = ty.version
                        )));
                    }
                    FieldValidation::Warn => {
                        warnings.extend(unknown.iter().map(|p| format!("unknown field \"{p}\"")));
                    }
                    FieldValidation::Ignore => {}
                }
            }
        }
        schema.prune(&mut obj);
        schema.apply_defaults(&mut obj);
        let errors = schema.validate(&obj);
        if !errors.is_empty() {
            let causes = errors
                .iter()
                .map(|e| Cause {
                    reason: e.reason.to_string(),
                    message: strip_field_prefix(&e.field, &e.message),
                    field: e.field.clone(),
                })
                .collect();
            return Err(ApiError::invalid(&ty.kind, &ty.group, &name, causes));
        }
    }

    // Status is not written through the main endpoint of a type with a status subresource.
    if ty.has_status
        && sub.is_none()
        && let Some(map) = obj.as_object_mut()
    {
        match old.and_then(|o| o.get("status")) {
            Some(s) => map.insert("status".into(), s.clone()),
            None => map.remove("status"),
        };
    }

    // Generation.
    if ty.tracks_generation {
        let generation = match old {
            None => 1,
            Some(old) => {
                let before = meta(old)
                    .and_then(|m| m.get("generation"))
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                // The scale subresource writes the spec (replicas): a spec change.
                if sub != Some("status") && spec_part(old) != spec_part(&obj) {
                    before + 1
                } else {
                    before
                }
            }
        };
        if let Some(m) = meta_mut(&mut obj) {
            m.insert("generation".into(), json!(generation));
        }
    }

    if ty.is_namespace() {
        prepare_namespace(&mut obj, &name, old.is_none());
    }
    canonical_order(&mut obj);
    if ty.is_crd() && sub.is_none() {
        prepare_crd(&mut obj, old, &name)?;
    }
    Ok(obj)
}

/// A core/v1 Secret as the API server stores it: what its v1 → internal conversion
/// (`Convert_v1_Secret_To_core_Secret`) and defaulting (`SetDefaults_Secret`) do on every
/// write. Each `stringData` key goes base64-encoded into `data` (winning over a `data` key of
/// the same name), `stringData` itself is never kept, and an absent or empty `type` becomes
/// `Opaque`. `data` keys come out sorted, as the server's JSON encoding of a map writes them.
///
/// Non-apply writes fold before the managed fields are computed (the server converts the body
/// before its field manager sees it, so the writer owns `f:data` keys); server-side apply folds
/// after (the field manager merges the versioned configuration, so the applier owns
/// `f:stringData` keys and nobody owns the folded `data` keys).
fn fold_secret(ty: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    if !ty.is_secret() {
        return Ok(());
    }
    let Some(map) = obj.as_object_mut() else {
        return Ok(());
    };
    let strings = match map.shift_remove("stringData") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(strings)) => strings,
        Some(other) => {
            return Err(secret_decode_error(&format!(
                "cannot unmarshal {} into Go struct field Secret.stringData of type map[string]string",
                json_type(&other)
            )));
        }
    };
    if !strings.is_empty() {
        let mut data = match map.shift_remove("data") {
            Some(Value::Object(data)) => data,
            _ => Map::new(),
        };
        for (k, v) in strings {
            let text = match v {
                Value::String(text) => text,
                Value::Null => String::new(),
                other => {
                    return Err(secret_decode_error(&format!(
                        "cannot unmarshal {} into Go struct field Secret.stringData of type string",
                        json_type(&other)
                    )));
                }
            };
            data.insert(k, json!(BASE64.encode(text.as_bytes())));
        }
        data.sort_keys();
        map.insert("data".into(), Value::Object(data));
    }
    let typed = map
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !typed {
        map.insert("type".into(), json!("Opaque"));
    }
    Ok(())
}

fn secret_decode_error(detail: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Secret in version \"v1\" cannot be handled as a Secret: json: {detail}"
    ))
}

/// `apiVersion`, `kind`, `metadata` first, the rest in the client's order.
fn canonical_order(obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        let mut rest = std::mem::take(map);
        for key in ["apiVersion", "kind", "metadata"] {
            if let Some(v) = rest.shift_remove(key) {
                map.insert(key.to_string(), v);
            }
        }
        map.extend(rest);
    }
}

fn prepare_namespace(obj: &mut Value, name: &str, created: bool) {
    if let Some(m) = meta_mut(obj) {
        let labels = m.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if let Some(map) = obj.as_object_mut() {
        let spec = map.entry("spec").or_insert_with(|| json!({}));
        if let Some(s) = spec.as_object_mut()
            && !s.contains_key("finalizers")
        {
            s.insert("finalizers".into(), json!(["kubernetes"]));
        }
        if created {
            map.insert("status".into(), json!({"phase": "Active"}));
        }
    }
}

fn condition(kind: &str, reason: &str, message: &str, old: Option<&Value>, at: &str) -> Value {
    let since = old
        .and_then(|o| o.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|x| x["type"] == kind && x["status"] == "True")
        })
        .and_then(|c| c.get("lastTransitionTime"))
        .cloned()
        .unwrap_or_else(|| json!(at));
    json!({
        "type": kind,
        "status": "True",
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
    })
}

/// CRD checks, defaults and the status the API server writes in the same request.
fn prepare_crd(obj: &mut Value, old: Option<&Value>, name: &str) -> Result<(), ApiError> {
    let invalid = |field: &str, reason: &str, message: String| {
        ApiError::invalid_field(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            name,
            reason,
            field,
            message,
        )
    };
    let group = obj
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let plural = obj
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = obj
        .pointer("/spec/names/kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if group.is_empty() {
        return Err(invalid(
            "spec.group",
            "FieldValueRequired",
            "Required value".into(),
        ));
    }
    if plural.is_empty() {
        return Err(invalid(
            "spec.names.plural",
            "FieldValueRequired",
            "Required value".into(),
        ));
    }
    if kind.is_empty() {
        return Err(invalid(
            "spec.names.kind",
            "FieldValueRequired",
            "Required value".into(),
        ));
    }
    if name != format!("{plural}.{group}") {
        return Err(invalid(
            "metadata.name",
            "FieldValueInvalid",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match obj.pointer("/spec/scope").and_then(Value::as_str) {
        Some("Namespaced" | "Cluster") => {}
        Some(other) => {
            return Err(invalid(
                "spec.scope",
                "FieldValueNotSupported",
                format!(
                    "Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
                ),
            ));
        }
        None => {
            return Err(invalid(
                "spec.scope",
                "FieldValueRequired",
                "Required value".into(),
            ));
        }
    }
    let versions = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        return Err(invalid(
            "spec.versions",
            "FieldValueRequired",
            "Required value: must have exactly one version marked as storage version".into(),
        ));
    }
    let storage: Vec<String> = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    if storage.len() != 1 {
        return Err(invalid(
            "spec.versions",
            "FieldValueInvalid",
            format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                serde_json::to_string(&versions).unwrap_or_default()
            ),
        ));
    }
    if let Some(names) = obj
        .pointer_mut("/spec/names")
        .and_then(Value::as_object_mut)
    {
        names
            .entry("singular")
            .or_insert_with(|| json!(kind.to_lowercase()));
        names
            .entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
    registry::crd_types(obj).map_err(|e| invalid(&e.field, "FieldValueInvalid", e.message))?;

    if !is_deleting(obj)
        && let Some(m) = meta_mut(obj)
    {
        let list = m.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(items) = list.as_array_mut()
            && !items.iter().any(|f| f == CRD_FINALIZER)
        {
            items.push(json!(CRD_FINALIZER));
        }
    }
    let at = now();
    let mut stored: Vec<String> = old
        .and_then(|o| o.pointer("/status/storedVersions"))
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for s in storage {
        if !stored.contains(&s) {
            stored.push(s);
        }
    }
    let accepted = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let status = json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found", old, &at),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted", old, &at),
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    });
    if let Some(map) = obj.as_object_mut() {
        map.insert("status".into(), status);
    }
    Ok(())
}

/// Rebuilds the CRD-defined types from the stored CRDs.
pub(crate) fn rebuild_registry(st: &mut State) {
    let State {
        objects, registry, ..
    } = st;
    let crds: Vec<&Value> = objects
        .range(key("apiextensions.k8s.io", "customresourcedefinitions", "", "")..)
        .take_while(|((g, r, _, _), _)| {
            g == "apiextensions.k8s.io" && r == "customresourcedefinitions"
        })
        .map(|(_, v)| v)
        .collect();
    registry.set_crds(&crds);
}

/// Stores `obj` unless nothing changed or this is a dry run; removes it when a deletion has no
/// finalizers left. Returns the object as stored (or as it would be).
fn commit(
    st: &mut State,
    ty: &ResourceType,
    key: Key,
    old: Option<&Value>,
    obj: Value,
    dry_run: bool,
) -> Value {
    let mut obj = obj;
    if let Some(old) = old {
        if let (Some(m), Some(rv)) = (meta_mut(&mut obj), meta_str(old, "resourceVersion")) {
            m.insert("resourceVersion".into(), json!(rv));
        }
        if obj == *old {
            return old.clone();
        }
    }
    if dry_run {
        return obj;
    }
    let finished = is_deleting(&obj) && finalizers(&obj).is_empty() && !ty.is_namespace();
    let stored = st.put(key.clone(), obj);
    let out = if finished {
        st.remove(&key).unwrap_or(stored)
    } else {
        stored
    };
    if ty.is_crd() {
        rebuild_registry(st);
    }
    out
}

fn strip_managed(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(m) = meta_mut(&mut copy) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    copy
}

fn ctx<'a>(
    ty: &'a ResourceType,
    manager: &'a str,
    api_version: &'a str,
    now: &'a str,
    sub: Option<&'a str>,
    lt: &'a AnyListTypes<'a>,
) -> Context<'a> {
    Context {
        manager,
        api_version,
        now,
        subresource: sub,
        ignore_status: ty.has_status && sub.is_none(),
        list_types: lt,
    }
}

/// A non-apply write of `candidate` over `live` (None: create).
#[allow(clippy::too_many_arguments)]
fn write_update(
    st: &mut State,
    ty: &ResourceType,
    live: Option<Value>,
    candidate: Value,
    namespace: Option<&str>,
    url_name: Option<&str>,
    sub: Option<&str>,
    opts: &WriteOptions,
    manager: &str,
) -> Result<Written, ApiError> {
    let mut warnings = Vec::new();
    let mut prepared = prepare(
        ty,
        live.as_ref(),
        candidate,
        namespace,
        url_name,
        sub,
        Some(opts.validation),
        &mut warnings,
    )?;
    fold_secret(ty, &mut prepared)?;
    super::lease::check(
        ty,
        &prepared,
        meta_str(&prepared, "name").unwrap_or_default(),
    )?;
    super::limits::check_data_size(
        ty,
        &prepared,
        meta_str(&prepared, "name").unwrap_or_default(),
    )?;
    let name = meta_str(&prepared, "name").unwrap_or_default().to_string();
    let key = object_key(ty, namespace, &name);
    if live.is_none() {
        check_namespace(st, ty, namespace, &name)?;
        if st.get(&key).is_some() {
            return Err(ApiError::already_exists(&ty.plural, &ty.group, &name));
        }
    }
    let clears_managed = prepared
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    if let Some(live) = &live
        && !clears_managed
        && strip_managed(live) == strip_managed(&prepared)
    {
        return Ok(Written {
            object: present(ty, live.clone()),
            created: false,
            warnings,
        });
    }
    let api_version = ty.api_version();
    let at = now();
    let lt = list_types(ty);
    let c = ctx(ty, manager, &api_version, &at, sub, &lt);
    let managed = fieldmanager::update(live.as_ref(), &prepared, &c);
    let object = commit(st, ty, key, live.as_ref(), managed, opts.dry_run);
    Ok(Written {
        object: present(ty, object),
        created: live.is_none(),
        warnings,
    })
}

/// POST: creates an object.
pub(crate) fn create(
    st: &mut State,
    ty: &ResourceType,
    namespace: Option<&str>,
    body: Value,
    opts: &WriteOptions,
    manager: &str,
) -> Result<Written, ApiError> {
    write_update(st, ty, None, body, namespace, None, None, opts, manager)
}

/// PUT: replaces an object (or its status).
#[allow(clippy::too_many_arguments)]
pub(crate) fn replace(
    st: &mut State,
    ty: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    sub: Option<&str>,
    body: Value,
    opts: &WriteOptions,
    manager: &str,
) -> Result<Written, ApiError> {
    let key = object_key(ty, namespace, name);
    let live = st
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
    stale_check(ty, &live, &body, name)?;
    write_update(
        st,
        ty,
        Some(live),
        body,
        namespace,
        Some(name),
        sub,
        opts,
        manager,
    )
}

/// PATCH of every kind; server-side apply creates a missing object.
#[allow(clippy::too_many_arguments)]
pub(crate) fn patch(
    st: &mut State,
    ty: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    sub: Option<&str>,
    kind: PatchKind,
    body: Value,
    opts: &WriteOptions,
    manager: &str,
) -> Result<Written, ApiError> {
    if kind == PatchKind::Apply {
        return apply(st, ty, namespace, name, sub, body, opts);
    }
    let key = object_key(ty, namespace, name);
    let live = st
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
    let mut doc = present(ty, live.clone());
    match kind {
        PatchKind::Merge => {
            if !body.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            patch::merge_patch(&mut doc, &body);
        }
        PatchKind::Strategic => {
            if ty.crd.is_some() {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                ));
            }
            if !body.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            patch::strategic_merge_patch(&mut doc, &body, &BuiltinListTypes);
        }
        PatchKind::Json => match patch::json_patch(&mut doc, &body) {
            Ok(()) => {}
            Err(JsonPatchError::Malformed(m)) => return Err(ApiError::bad_request(m)),
            Err(JsonPatchError::Failed(m)) => {
                return Err(ApiError::invalid_field(
                    &ty.kind,
                    &ty.group,
                    name,
                    "FieldValueInvalid",
                    "",
                    m,
                ));
            }
        },
        PatchKind::Apply => {}
    }
    stale_check(ty, &live, &doc, name)?;
    write_update(
        st,
        ty,
        Some(live),
        doc,
        namespace,
        Some(name),
        sub,
        opts,
        manager,
    )
}

/// Server-side apply (`application/apply-patch+yaml`).
fn apply(
    st: &mut State,
    ty: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    sub: Option<&str>,
    mut config: Value,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    let manager = match opts.field_manager.as_deref() {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => {
            return Err(ApiError::invalid_field(
                "PatchOptions",
                "meta.k8s.io",
                "",
                "FieldValueRequired",
                "fieldManager",
                "Required value: is required for apply patch",
            ));
        }
    };
    let Some(map) = config.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the apply configuration must be an object",
        ));
    };
    let av = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if av != ty.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            ty.api_version()
        )));
    }
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != ty.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            ty.kind
        )));
    }
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(m) = metadata.as_object_mut() else {
        return Err(ApiError::bad_request("metadata must be an object"));
    };
    check_metadata_types(ty, m)?;
    if m.get("managedFields").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    match m.get("name").and_then(Value::as_str) {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        Some(_) => {}
        None => {
            m.insert("name".into(), json!(name));
        }
    }
    if ty.namespaced {
        let url_ns = namespace.unwrap_or("");
        match m.get("namespace").and_then(Value::as_str) {
            Some(ns) if ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            Some(_) => {}
            None => {
                m.insert("namespace".into(), json!(url_ns));
            }
        }
    }
    let key = object_key(ty, namespace, name);
    let live = st.get(&key).cloned();
    match &live {
        Some(live) => stale_check(ty, live, &config, name)?,
        None => {
            check_namespace(st, ty, namespace, name)?;
            if sub.is_some() {
                return Err(ApiError::not_found(&ty.plural, &ty.group, name));
            }
        }
    }
    if let Some(m) = meta_mut(&mut config) {
        m.remove("resourceVersion");
    }
    if let Some(schema) = &ty.schema {
        let unknown = schema.unknown_fields(&config);
        if let Some(first) = unknown.first() {
            return Err(ApiError::internal(format!(
                "failed to create typed patch object ({}/{name}; {}): .{first}: field not declared in schema",
                namespace.filter(|_| ty.namespaced).unwrap_or(""),
                gvk_string(ty)
            )));
        }
    }
    let api_version = ty.api_version();
    let at = now();
    let lt = list_types(ty);
    let c = ctx(ty, &manager, &api_version, &at, sub, &lt);
    let live_presented = live.clone().map(|l| present(ty, l));
    let merged = match fieldmanager::apply(live_presented.as_ref(), &config, opts.force, &c) {
        Ok(merged) => merged,
        Err(conflicts) => {
            let message = fieldmanager::conflict_message(&conflicts);
            let causes = conflicts
                .iter()
                .map(|x| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: fieldmanager::conflict_cause_message(x),
                    field: x.path.clone(),
                })
                .collect();
            return Err(ApiError::apply_conflict(
                message, &ty.plural, &ty.group, name, causes,
            ));
        }
    };
    let mut warnings = Vec::new();
    let prepared = prepare(
        ty,
        live.as_ref(),
        merged.clone(),
        namespace,
        Some(name),
        sub,
        None,
        &mut warnings,
    )?;
    // Fields the server set while preparing (a namespace's label and finalizer, a CRD's
    // defaulted names, schema defaults) belong to the request's manager, as they would after
    // a create or update, so the object never ends up untracked.
    let mut prepared = fieldmanager::update(Some(&merged), &prepared, &c);
    // A Secret's stringData is folded into data after the field manager, as the real server
    // converts the merged object only then: the Apply entry keeps `f:stringData`.
    fold_secret(ty, &mut prepared)?;
    super::lease::check(
        ty,
        &prepared,
        meta_str(&prepared, "name").unwrap_or_default(),
    )?;
    super::limits::check_data_size(
        ty,
        &prepared,
        meta_str(&prepared, "name").unwrap_or_default(),
    )?;
    let object = commit(st, ty, key, live.as_ref(), prepared, opts.dry_run);
    Ok(Written {
        object: present(ty, object),
        created: live.is_none(),
        warnings,
    })
}

/// What a DELETE asks for.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeleteOptions {
    pub dry_run: bool,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `propagationPolicy: Orphan` (or `orphanDependents: true`): dependents lose their owner
    /// reference instead of being garbage collected.
    pub orphan: bool,
}

impl DeleteOptions {
    /// Reads a DeleteOptions body (may be empty) and the query's `dryRun`.
    pub(crate) fn from_body(body: Option<&Value>, query_dry_run: bool) -> Self {
        let dry_body = body
            .and_then(|b| b.get("dryRun"))
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "All"));
        let pre = body.and_then(|b| b.get("preconditions"));
        let orphan = body.is_some_and(|b| {
            b.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan")
                || b.get("orphanDependents").and_then(Value::as_bool) == Some(true)
        });
        Self {
            dry_run: query_dry_run || dry_body,
            orphan,
            uid: pre
                .and_then(|p| p.get("uid"))
                .and_then(Value::as_str)
                .map(str::to_string),
            resource_version: pre
                .and_then(|p| p.get("resourceVersion"))
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

/// DELETE of one object: marks it deleting when finalizers hold it, removes it otherwise.
pub(crate) fn delete(
    st: &mut State,
    ty: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let key = object_key(ty, namespace, name);
    let live = st
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
    if let Some(uid) = &opts.uid
        && Some(uid.as_str()) != meta_str(&live, "uid")
    {
        let mut err = ApiError::stale(&ty.plural, &ty.group, name);
        err.message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            super::status::qualified(&ty.plural, &ty.group),
            meta_str(&live, "uid").unwrap_or_default()
        );
        return Err(err);
    }
    if let Some(rv) = &opts.resource_version
        && Some(rv.as_str()) != meta_str(&live, "resourceVersion")
    {
        let mut err = ApiError::stale(&ty.plural, &ty.group, name);
        err.message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            super::status::qualified(&ty.plural, &ty.group),
            meta_str(&live, "resourceVersion").unwrap_or_default()
        );
        return Err(err);
    }
    if ty.is_namespace() && PROTECTED_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            &ty.plural,
            &ty.group,
            name,
            "this namespace may not be deleted",
        ));
    }
    if opts.orphan && !opts.dry_run {
        orphan_dependents(st, meta_str(&live, "uid").unwrap_or_default());
    }
    let two_phase = !finalizers(&live).is_empty() || ty.is_namespace();
    if !two_phase {
        if opts.dry_run {
            return Ok(present(ty, live));
        }
        let removed = st.remove(&key).unwrap_or(live);
        if ty.is_crd() {
            rebuild_registry(st);
        }
        return Ok(present(ty, removed));
    }
    if is_deleting(&live) {
        return Ok(present(ty, live));
    }
    let mut marked = live.clone();
    if let Some(m) = meta_mut(&mut marked) {
        m.insert("deletionTimestamp".into(), json!(now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
    }
    if ty.is_namespace()
        && let Some(map) = marked.as_object_mut()
    {
        map.insert("status".into(), json!({"phase": "Terminating"}));
    }
    if opts.dry_run {
        return Ok(present(ty, marked));
    }
    let stored = st.put(key, marked);
    Ok(present(ty, stored))
}

/// Resources whose storage answers a DELETE with the deleted object even when it was removed
/// at once (`ReturnDeletedObject: true` in their registry); every other kind answers with a
/// success `Status` then [S: apiserver registry/generic/registry/store.go finalizeDelete].
const RETURN_DELETED_OBJECT: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "serviceaccounts"),
    ("storage.k8s.io", "storageclasses"),
];

/// The answer to a DELETE of one object, given what [`delete`] returned: the object while its
/// deletion is pending (it carries `deletionTimestamp`), else a success `Status` naming it
/// (which tells clients it is gone, not waiting for finalizers), except for the kinds of
/// [`RETURN_DELETED_OBJECT`].
pub(crate) fn delete_answer(ty: &ResourceType, deleted: Value) -> Value {
    if is_deleting(&deleted)
        || RETURN_DELETED_OBJECT.contains(&(ty.group.as_str(), ty.plural.as_str()))
    {
        return deleted;
    }
    let mut details = serde_json::Map::new();
    details.insert(
        "name".into(),
        json!(meta_str(&deleted, "name").unwrap_or_default()),
    );
    if !ty.group.is_empty() {
        details.insert("group".into(), json!(ty.group));
    }
    // Yes, the resource (as the API server puts it).
    details.insert("kind".into(), json!(ty.plural));
    if let Some(uid) = meta_str(&deleted, "uid") {
        details.insert("uid".into(), json!(uid));
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

/// Removes owner references to `uid` from every object (orphaning its dependents).
fn orphan_dependents(st: &mut State, uid: &str) {
    if uid.is_empty() {
        return;
    }
    let dependents: Vec<(Key, Value)> = st
        .objects
        .iter()
        .filter(|(_, obj)| owner_uids(obj).iter().any(|u| u == uid))
        .map(|(k, obj)| (k.clone(), obj.clone()))
        .collect();
    for (k, mut obj) in dependents {
        if let Some(m) = meta_mut(&mut obj) {
            let kept: Vec<Value> = m
                .get("ownerReferences")
                .and_then(Value::as_array)
                .map(|refs| {
                    refs.iter()
                        .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if kept.is_empty() {
                m.remove("ownerReferences");
            } else {
                m.insert("ownerReferences".into(), Value::Array(kept));
            }
        }
        st.put(k, obj);
    }
}

fn owner_uids(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Garbage collection: deletes objects all of whose owners are gone.
fn collect_garbage(st: &mut State) {
    // Only objects with owners can be collected: without any, there is nothing to look up.
    let owned: Vec<(&Key, Vec<String>)> = st
        .objects
        .iter()
        .filter(|(_, obj)| !is_deleting(obj))
        .map(|(k, obj)| (k, owner_uids(obj)))
        .filter(|(_, owners)| !owners.is_empty())
        .collect();
    if owned.is_empty() {
        return;
    }
    let live: std::collections::BTreeSet<&str> = st
        .objects
        .values()
        .filter_map(|o| meta_str(o, "uid"))
        .collect();
    let orphans: Vec<Key> = owned
        .into_iter()
        .filter(|(_, owners)| owners.iter().all(|u| !live.contains(u.as_str())))
        .map(|(k, _)| k.clone())
        .collect();
    for k in orphans {
        delete_stored(st, &k);
    }
}

/// Seeds a namespace the way a fresh cluster has it (no managedFields).
pub(crate) fn seed_namespace(st: &mut State, name: &str) {
    let k = key("", "namespaces", "", name);
    if st.get(&k).is_some() {
        return;
    }
    let obj = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": now(),
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    });
    st.put(k, obj);
}

/// One step of the cleanup: garbage-collects objects whose owners are all gone, deletes the
/// content of terminating namespaces and the custom resources of deleted CRDs, then removes
/// those once empty. Returns whether
/// anything is still pending.
pub(crate) fn reconcile(st: &mut State) -> bool {
    let mut pending = false;
    // A full scan: only when an object went away or one with owners was stored since the
    // last one (every write wakes the cleanup; scanning 10,000 objects after each of them
    // made every write slower the more objects the cluster held). What it removes counts
    // as a change, so an orphan's own dependents are collected by the next step.
    if st.owner_changes != st.collected_at {
        st.collected_at = st.owner_changes;
        collect_garbage(st);
    }
    let terminating: Vec<String> = st
        .list("", "namespaces", None)
        .into_iter()
        .filter(|n| is_deleting(n))
        .filter_map(|n| meta_str(n, "name").map(str::to_string))
        .collect();
    for ns in terminating {
        let content: Vec<Key> = st
            .objects
            .keys()
            .filter(|(_, _, n, _)| *n == ns)
            .cloned()
            .collect();
        if content.is_empty() {
            st.remove(&key("", "namespaces", "", &ns));
            continue;
        }
        pending = true;
        for k in content {
            delete_stored(st, &k);
        }
    }
    let deleting_crds: Vec<Value> = st
        .list("apiextensions.k8s.io", "customresourcedefinitions", None)
        .into_iter()
        .filter(|c| is_deleting(c))
        .cloned()
        .collect();
    for crd in deleting_crds {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = meta_str(&crd, "name").unwrap_or_default().to_string();
        let crs: Vec<Key> = st
            .objects
            .keys()
            .filter(|(g, r, _, _)| g == group && r == plural)
            .cloned()
            .collect();
        let crd_key = key(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            &name,
        );
        if crs.is_empty() {
            let mut done = crd.clone();
            let rest: Vec<Value> = finalizers(&crd)
                .into_iter()
                .filter(|f| f != CRD_FINALIZER)
                .map(Value::String)
                .collect();
            if let Some(m) = meta_mut(&mut done) {
                m.insert("finalizers".into(), Value::Array(rest.clone()));
            }
            if rest.is_empty() {
                st.remove(&crd_key);
            } else {
                st.put(crd_key, done);
            }
            rebuild_registry(st);
            continue;
        }
        pending = true;
        for k in crs {
            delete_stored(st, &k);
        }
    }
    pending
}

/// Deletes a stored object as a DELETE without options would.
fn delete_stored(st: &mut State, k: &Key) {
    let Some(obj) = st.get(k).cloned() else {
        return;
    };
    if is_deleting(&obj) {
        return;
    }
    let nested_namespace = k.0.is_empty() && k.1 == "namespaces";
    if finalizers(&obj).is_empty() && !nested_namespace {
        st.remove(k);
        return;
    }
    let mut marked = obj;
    if let Some(m) = meta_mut(&mut marked) {
        m.insert("deletionTimestamp".into(), json!(now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
    }
    st.put(k.clone(), marked);
}

/// Which manager name a non-apply write records when the request names none.
pub(crate) fn default_manager(user_agent: Option<&str>) -> String {
    match user_agent {
        Some(ua) if !ua.is_empty() => ua.split('/').next().unwrap_or(ua).to_string(),
        _ => "unknown".to_string(),
    }
}

/// Sets a simple dotted JSONPath (`.spec.replicas`), creating objects along the way.
fn set_path(obj: &mut Value, path: &str, value: Value) {
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = obj;
    for part in parents {
        if !cur.get(*part).is_some_and(Value::is_object)
            && let Some(map) = cur.as_object_mut()
        {
            map.insert((*part).to_string(), json!({}));
        }
        match cur.get_mut(*part) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(map) = cur.as_object_mut() {
        map.insert((*last).to_string(), value);
    }
}

/// A label selector object (`matchLabels`, `matchExpressions`) in its string form.
fn selector_string(selector: &Value) -> String {
    if let Some(text) = selector.as_str() {
        return text.to_string();
    }
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match expr.get("operator").and_then(Value::as_str) {
            Some("In") => parts.push(format!("{key} in ({})", values.join(","))),
            Some("NotIn") => parts.push(format!("{key} notin ({})", values.join(","))),
            Some("Exists") => parts.push(key.to_string()),
            Some("DoesNotExist") => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// The `autoscaling/v1` Scale of an object.
pub(crate) fn scale_of(ty: &ResourceType, obj: &Value) -> Value {
    let Some(paths) = &ty.scale else {
        return Value::Null;
    };
    let read = |p: &str| super::table::json_path(obj, p).cloned();
    let mut metadata = Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta(obj).and_then(|m| m.get(field)) {
            metadata.insert(field.to_string(), v.clone());
        }
    }
    let mut status = json!({
        "replicas": read(&paths.status_replicas).and_then(|v| v.as_i64()).unwrap_or(0),
    });
    if let Some(selector) = paths.label_selector.as_deref().and_then(read) {
        status["selector"] = json!(selector_string(&selector));
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": read(&paths.spec_replicas).and_then(|v| v.as_i64()).unwrap_or(0)},
        "status": status,
    })
}

/// GET of the `scale` subresource.
pub(crate) fn get_scale(
    st: &State,
    ty: &ResourceType,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let live = st
        .get(&object_key(ty, namespace, name))
        .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
    Ok(scale_of(ty, live))
}

/// PUT (`kind` None) or PATCH of the `scale` subresource: writes the replica count into the
/// object's spec (a spec change: generation +1), recorded in managedFields as an `Update` of
/// subresource `scale`, and answers the new Scale.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_scale(
    st: &mut State,
    ty: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    kind: Option<PatchKind>,
    body: Value,
    opts: &WriteOptions,
    manager: &str,
) -> Result<Written, ApiError> {
    let Some(paths) = ty.scale.clone() else {
        return Err(ApiError::no_route());
    };
    let live = st
        .get(&object_key(ty, namespace, name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
    let mut scale = scale_of(ty, &live);
    match kind {
        None => scale = body,
        Some(PatchKind::Json) => match patch::json_patch(&mut scale, &body) {
            Ok(()) => {}
            Err(JsonPatchError::Malformed(m)) => return Err(ApiError::bad_request(m)),
            Err(JsonPatchError::Failed(m)) => {
                return Err(ApiError::invalid_field(
                    "Scale",
                    "autoscaling",
                    name,
                    "FieldValueInvalid",
                    "",
                    m,
                ));
            }
        },
        Some(_) => patch::merge_patch(&mut scale, &body),
    }
    stale_check(ty, &live, &scale, name)?;
    let replicas = scale.pointer("/spec/replicas");
    let count = match replicas.and_then(Value::as_i64) {
        Some(n) if n >= 0 => n,
        _ => {
            let shown = replicas.map_or_else(|| "null".to_string(), Value::to_string);
            return Err(ApiError::invalid_field(
                "Scale",
                "autoscaling",
                name,
                "FieldValueInvalid",
                "spec.replicas",
                format!("Invalid value: {shown}: must be greater than or equal to 0"),
            ));
        }
    };
    let mut obj = live.clone();
    set_path(&mut obj, &paths.spec_replicas, json!(count));
    // The API server records the write under the `scale` subresource (its managedFields
    // entry says `subresource: scale`).
    let written = write_update(
        st,
        ty,
        Some(live),
        obj,
        namespace,
        Some(name),
        Some("scale"),
        opts,
        manager,
    )?;
    Ok(Written {
        object: scale_of(ty, &written.object),
        created: false,
        warnings: written.warnings,
    })
}
