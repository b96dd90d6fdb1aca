//! How lists and maps of an object merge and are owned: the list types of structured-merge-diff
//! (`x-kubernetes-list-type`, `patchMergeKey`, `x-kubernetes-map-type`), as a trait that a
//! CRD's structural schema and the built-in kinds' rules both implement.

use serde_json::Value;

/// How a list at some path merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole (the default).
    Atomic,
    /// Items are scalars, merged as a set (`x-kubernetes-list-type: set`).
    Set,
    /// Items are objects identified by these keys (`x-kubernetes-list-type: map`).
    Map(Vec<String>),
}

/// Tells the merge how lists merge. `path` is the list's field path from the object root,
/// field names only (list items along the way are skipped), e.g.
/// `["spec", "template", "spec", "containers"]`.
pub trait ListTypes: Send + Sync {
    fn list_type(&self, path: &[&str]) -> ListType;

    /// Whether the object at `path` (same path form as [`ListTypes::list_type`]; for the
    /// items of a list, the list's path) is atomic (`x-kubernetes-map-type: atomic`,
    /// `+structType=atomic`): replaced and owned as a whole. Default: granular.
    fn map_is_atomic(&self, path: &[&str]) -> bool {
        let _ = path;
        false
    }

    /// Whether the keys of the object at `path` are map keys rather than declared fields
    /// (`additionalProperties`, `x-kubernetes-preserve-unknown-fields` without `properties`,
    /// built-in `map[string]T`). A map key is owned itself even when its value is an object
    /// (FieldsV1 `".": {}` beside its children). Default: declared fields.
    fn keys_are_map_keys(&self, path: &[&str]) -> bool {
        let _ = path;
        false
    }

    /// The default of the key field `key` of the associative list at `path`, used to
    /// identify items that omit it (as the API server's schema defaults do). Default:
    /// `"TCP"` for a `protocol` key (every built-in list keyed by protocol defaults it),
    /// nothing otherwise.
    fn key_default(&self, path: &[&str], key: &str) -> Option<Value> {
        let _ = path;
        (key == "protocol").then(|| Value::String("TCP".to_string()))
    }
}

/// The list and map rules of the built-in kinds (the `listType`/`patchMergeKey`/`mapType`/
/// `structType` markers of the core types) and of object metadata.
///
/// Lists: containers, initContainers, ephemeralContainers, volumes, imagePullSecrets,
/// resourceClaims and schedulingGates by `name` (anywhere), a container's env by `name`,
/// ports by `containerPort`+`protocol`, volumeMounts by `mountPath`, volumeDevices by
/// `devicePath`; Service `spec.ports` by `port`+`protocol`; `metadata.ownerReferences` by
/// `uid`; `status.conditions` by `type`; hostAliases by `ip`; topologySpreadConstraints by
/// `topologyKey`+`whenUnsatisfiable`; the `webhooks` of webhook configurations by `name`;
/// `metadata.finalizers` is a set; everything else atomic.
/// Atomic objects: `spec.selector` (workloads and Services), label/namespace/pod/node
/// selectors, env `valueFrom` references, owner references, image pull secrets, roleRef.
///
/// Map-list keys are computed from the key fields present in an item, with `protocol`
/// defaulting to `"TCP"` as the real schema defaults it, so that a container port without a
/// protocol is identified as `k:{"containerPort":80,"protocol":"TCP"}` like on a real server.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinListTypes;

impl ListTypes for BuiltinListTypes {
    fn list_type(&self, path: &[&str]) -> ListType {
        let keys = |k: &[&str]| ListType::Map(k.iter().map(|s| s.to_string()).collect());
        let Some((&last, parents)) = path.split_last() else {
            return ListType::Atomic;
        };
        let parent = parents.last().copied().unwrap_or_default();
        let in_container = matches!(
            parent,
            "containers" | "initContainers" | "ephemeralContainers"
        );
        match (path, last) {
            (["metadata", "finalizers"], _) => ListType::Set,
            (["metadata", "ownerReferences"], _) => keys(&["uid"]),
            (["webhooks"], _) => keys(&["name"]),
            (["spec", "ports"], _) => keys(&["port", "protocol"]),
            (["status", "conditions"], _) => keys(&["type"]),
            (_, "ports") if in_container => keys(&["containerPort", "protocol"]),
            (_, "env") if in_container => keys(&["name"]),
            (_, "volumeMounts") if in_container => keys(&["mountPath"]),
            (_, "volumeDevices") if in_container => keys(&["devicePath"]),
            (_, "resizePolicy") if in_container => keys(&["resourceName"]),
            (_, "containers" | "initContainers" | "ephemeralContainers") => keys(&["name"]),
            (_, "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates") => {
                keys(&["name"])
            }
            (_, "hostAliases") => keys(&["ip"]),
            (_, "topologySpreadConstraints") => keys(&["topologyKey", "whenUnsatisfiable"]),
            _ => ListType::Atomic,
        }
    }

    fn map_is_atomic(&self, path: &[&str]) -> bool {
        matches!(
            path,
            ["metadata", "ownerReferences"]
                | [.., "imagePullSecrets"]
                | [
                    ..,
                    "nodeAffinity",
                    "requiredDuringSchedulingIgnoredDuringExecution"
                ]
                | [.., "spec", "selector"]
                | [
                    ..,
                    "labelSelector"
                        | "namespaceSelector"
                        | "podSelector"
                        | "nodeSelector"
                        | "configMapKeyRef"
                        | "secretKeyRef"
                        | "fieldRef"
                        | "resourceFieldRef"
                        | "roleRef"
                ]
        )
    }
}
