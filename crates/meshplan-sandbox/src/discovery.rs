//! Discovery documents: `/version`, the legacy `/api` and `/apis` trees and aggregated
//! discovery v2 (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`).

use serde_json::{Value, json};

use super::registry::{Registry, ResourceType};

/// The Content-Type of aggregated discovery responses; kube 5 ignores the body without it.
pub(crate) const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// `/version` of a Kubernetes 1.32 server.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0",
        "gitCommit": "70d3cc986aa8221cd1dfb1121852688902d3bf53",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T17:59:15Z",
        "goVersion": "go1.23.3",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api`.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ]
    })
}

fn group_version_entry(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| group_version_entry(group, v))
        .collect();
    let preferred = entries.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": entries, "preferredVersion": preferred})
}

/// `/apis`: every non-core group.
pub(crate) fn api_group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|g| !g.name.is_empty())
        .map(|g| api_group(&g.name, &g.versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, None when the group is not served.
pub(crate) fn api_group_doc(registry: &Registry, group: &str) -> Option<Value> {
    let info = registry
        .groups()
        .into_iter()
        .find(|g| g.name == group && !group.is_empty())?;
    let mut doc = api_group(&info.name, &info.versions);
    if let Some(map) = doc.as_object_mut() {
        map.insert("kind".into(), json!("APIGroup"));
        map.insert("apiVersion".into(), json!("v1"));
    }
    Some(doc)
}

fn storage_version_hash(t: &ResourceType) -> String {
    let hash = blake3::hash(format!("{}/{}/{}", t.group, t.version, t.kind).as_bytes());
    let bytes = hash.as_bytes();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(&bytes[..8])
}

/// `/api/v1` or `/apis/{group}/{version}`, None when not served.
pub(crate) fn api_resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = registry.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in &types {
        let mut entry = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": t.verbs(),
        });
        if let Some(map) = entry.as_object_mut() {
            if !t.short_names.is_empty() {
                map.insert("shortNames".into(), json!(t.short_names));
            }
            if !t.categories.is_empty() {
                map.insert("categories".into(), json!(t.categories));
            }
            map.insert("storageVersionHash".into(), json!(storage_version_hash(t)));
        }
        resources.push(entry);
        if t.has_status {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if t.scale.is_some() {
            resources.push(json!({
                "name": format!("{}/scale", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn aggregated_resource(t: &ResourceType) -> Value {
    let response_kind = json!({"group": t.group, "version": t.version, "kind": t.kind});
    let mut entry = json!({
        "resource": t.plural,
        "responseKind": response_kind,
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular,
        "verbs": t.verbs(),
    });
    if let Some(map) = entry.as_object_mut() {
        if !t.short_names.is_empty() {
            map.insert("shortNames".into(), json!(t.short_names));
        }
        if !t.categories.is_empty() {
            map.insert("categories".into(), json!(t.categories));
        }
        let mut subresources = Vec::new();
        if t.has_status {
            subresources.push(json!({
                "subresource": "status",
                "responseKind": response_kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if t.scale.is_some() {
            subresources.push(json!({
                "subresource": "scale",
                "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                "verbs": ["get", "patch", "update"],
            }));
        }
        if !subresources.is_empty() {
            map.insert("subresources".into(), Value::Array(subresources));
        }
    }
    entry
}

/// Aggregated discovery: the core group for `/api` (`core = true`), the others for `/apis`.
pub(crate) fn aggregated(registry: &Registry, core: bool) -> Value {
    let items: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|g| g.name.is_empty() == core)
        .map(|g| {
            let versions: Vec<Value> = g
                .versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = registry
                        .in_group_version(&g.name, v)
                        .iter()
                        .map(|t| aggregated_resource(t))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g.name, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resource_list_uses_plain_v1() {
        let reg = Registry::new();
        let doc = api_resource_list(&reg, "", "v1").expect("core");
        assert_eq!(doc["groupVersion"], "v1");
        let ns_status = doc["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|e| e["name"] == "namespaces/status"))
            .cloned()
            .expect("namespaces/status");
        assert_eq!(ns_status["singularName"], "");
        assert!(ns_status.get("shortNames").is_none());
    }

    #[test]
    fn aggregated_splits_core_from_groups() {
        let reg = Registry::new();
        let core = aggregated(&reg, true);
        assert_eq!(core["items"].as_array().map(Vec::len), Some(1));
        let rest = aggregated(&reg, false);
        assert!(
            rest["items"]
                .as_array()
                .is_some_and(|i| i.iter().any(|g| g["metadata"]["name"] == "apps"))
        );
    }

    #[test]
    fn version_has_all_nine_fields() {
        assert_eq!(version().as_object().map(|m| m.len()), Some(9));
    }
}
