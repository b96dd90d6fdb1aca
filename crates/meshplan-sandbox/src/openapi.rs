//! Minimal OpenAPI documents: enough for kubectl to trust server-side field validation.
//!
//! `/openapi/v3` lists every served group/version with a hash of its document; each per-GV
//! document has, per kind, a PATCH operation carrying `x-kubernetes-group-version-kind` and a
//! `fieldValidation` query parameter (what kubectl looks for before sending
//! `fieldValidation=Strict`). `/openapi/v2` is answered with an empty protobuf body.

use serde_json::{Map, Value, json};

use super::registry::Registry;

/// Content-Type of the empty `/openapi/v2` answer.
pub(crate) const V2_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `api/v1` or `apis/{group}/{version}`: the key of a GV in the v3 index.
pub(crate) fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The v3 document of one group/version, None when it is not served.
pub(crate) fn gv_document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = registry.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for t in &types {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
        ]);
        let schema_name = format!(
            "{}.{}.{}",
            if t.group.is_empty() { "core" } else { &t.group },
            t.version,
            t.kind
        );
        let op = json!({
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "operationId": format!("patch{}", t.kind),
            "parameters": params,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema_name}")}}}}},
        });
        let post = json!({
            "x-kubernetes-action": "post",
            "x-kubernetes-group-version-kind": gvk,
            "operationId": format!("create{}", t.kind),
            "parameters": params,
            "responses": {"201": {"description": "Created"}},
        });
        let base = if t.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}",
                gv_key(group, version),
                t.plural
            )
        } else {
            format!("/{}/{}", gv_key(group, version), t.plural)
        };
        paths.insert(base.clone(), json!({"post": post}));
        paths.insert(format!("{base}/{{name}}"), json!({"patch": op}));
        schemas.insert(
            schema_name,
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [gvk],
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// A short stable hash of a document (changes whenever the document changes).
pub(crate) fn hash(doc: &Value) -> String {
    let text = doc.to_string();
    blake3::hash(text.as_bytes()).to_hex().to_uppercase()[..32].to_string()
}

/// The `/openapi/v3` index.
pub(crate) fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for g in registry.groups() {
        for v in &g.versions {
            if let Some(doc) = gv_document(registry, &g.name, v) {
                let key = gv_key(&g.name, v);
                let url = format!("/openapi/v3/{key}?hash={}", hash(&doc));
                paths.insert(key, json!({"serverRelativeURL": url}));
            }
        }
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lists_every_group_version() {
        let reg = Registry::new();
        let idx = index(&reg);
        assert!(
            idx["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .is_some_and(|u| u.starts_with("/openapi/v3/api/v1?hash="))
        );
        assert!(idx["paths"].get("apis/apps/v1").is_some());
        assert!(idx["paths"].get("apis/apiextensions.k8s.io/v1").is_some());
    }

    #[test]
    fn patch_operations_carry_field_validation() {
        let reg = Registry::new();
        let doc = gv_document(&reg, "", "v1").expect("core doc");
        let op = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "ConfigMap");
        assert!(
            op["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x["name"] == "fieldValidation"))
        );
    }
}
