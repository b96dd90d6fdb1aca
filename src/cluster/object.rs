//! References to Kubernetes objects and kinds, as the cluster door and the state name them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind at one API version: `apps/v1` `Deployment`, `v1` `ConfigMap`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KindRef {
    /// `group/version`, or `version` alone for the core group (`v1`).
    pub api_version: String,
    pub kind: String,
}

impl KindRef {
    pub fn new(api_version: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
        }
    }

    /// The API group: empty for the core group.
    pub fn group(&self) -> &str {
        split_api_version(&self.api_version).0
    }

    /// The version part of `api_version`.
    pub fn version(&self) -> &str {
        split_api_version(&self.api_version).1
    }
}

impl fmt::Display for KindRef {
    /// `PodMonitor (monitoring.coreos.com/v1)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind, self.api_version)
    }
}

/// One object: its kind at an API version, its namespace (None for cluster-scoped objects)
/// and its name. Ordered by apiVersion, kind, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(
        api_version: impl Into<String>,
        kind: impl Into<String>,
        namespace: Option<&str>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.map(str::to_owned),
            name: name.into(),
        }
    }

    /// Reads apiVersion, kind, metadata.namespace and metadata.name of an object body; None
    /// when apiVersion, kind or name is missing.
    pub fn from_object(body: &serde_json::Value) -> Option<Self> {
        let text = |p: &str| body.pointer(p).and_then(|v| v.as_str());
        Some(Self {
            api_version: text("/apiVersion")?.to_owned(),
            kind: text("/kind")?.to_owned(),
            namespace: text("/metadata/namespace")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            name: text("/metadata/name")?.to_owned(),
        })
    }

    pub fn kind_ref(&self) -> KindRef {
        KindRef::new(self.api_version.clone(), self.kind.clone())
    }

    /// The API group: empty for the core group.
    pub fn group(&self) -> &str {
        split_api_version(&self.api_version).0
    }

    /// Whether writing or deleting the object changes the kinds the cluster serves (a CRD, an
    /// APIService): a cached discovery is stale after it.
    pub fn defines_kinds(&self) -> bool {
        matches!(
            (self.group(), self.kind.as_str()),
            ("apiextensions.k8s.io", "CustomResourceDefinition")
                | ("apiregistration.k8s.io", "APIService")
        )
    }

    /// The short form kubectl users read, without the API version: `Kind/name` or
    /// `Kind/namespace/name` (render and validate messages use it).
    pub fn short(&self) -> impl fmt::Display + '_ {
        Short(self)
    }
}

/// [`ObjectRef::short`]: `Kind/namespace/name`.
struct Short<'a>(&'a ObjectRef);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ObjectRef {
            kind,
            namespace,
            name,
            ..
        } = self.0;
        match namespace {
            Some(ns) => write!(f, "{kind}/{ns}/{name}"),
            None => write!(f, "{kind}/{name}"),
        }
    }
}

impl fmt::Display for ObjectRef {
    /// `apps/v1 Deployment linkerd/linkerd-destination`, `v1 Namespace linkerd`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.api_version, self.kind)?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        write!(f, "{}", self.name)
    }
}

/// Splits `group/version` (core group: `v1` → `("", "v1")`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// A v1 Secret with `stringData`, rewritten for server-side apply: each `stringData` value
/// base64-encoded into `data` (over a `data` key of the same name), `stringData` removed.
/// None for any other object, or when nothing needs rewriting.
///
/// The API server folds `stringData` into `data` only after its field manager has merged an
/// apply, so an applier of `stringData` owns `stringData` keys that never exist and no `data`
/// key: a key dropped from the manifest then stays in the Secret forever, and an unchanged
/// re-apply still rewrites the object. Applying the same bytes as `data` makes the applier own
/// the keys it sends. `stringData` values that are not strings are left for the server to
/// refuse.
pub fn secret_as_data(body: &serde_json::Value) -> Option<serde_json::Value> {
    use base64::Engine as _;
    use serde_json::Value;

    let is_secret = body.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && body.get("kind").and_then(Value::as_str) == Some("Secret");
    if !is_secret {
        return None;
    }
    let strings = body.get("stringData")?.as_object()?;
    if !strings.values().all(Value::is_string) {
        return None;
    }
    let mut out = body.clone();
    let map = out.as_object_mut()?;
    map.shift_remove("stringData");
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !data.is_object() {
        *data = Value::Object(serde_json::Map::new());
    }
    let data = data.as_object_mut()?;
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        data.insert(
            key.clone(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_object_and_displays_it() {
        let body = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"namespace": "linkerd", "name": "linkerd-destination"}
        });
        let r = ObjectRef::from_object(&body).unwrap();
        assert_eq!(r.group(), "apps");
        assert_eq!(
            r.to_string(),
            "apps/v1 Deployment linkerd/linkerd-destination"
        );
        let ns = ObjectRef::new("v1", "Namespace", None, "linkerd");
        assert_eq!(ns.group(), "");
        assert_eq!(ns.to_string(), "v1 Namespace linkerd");
        assert_eq!(
            r.short().to_string(),
            "Deployment/linkerd/linkerd-destination"
        );
        assert_eq!(ns.short().to_string(), "Namespace/linkerd");
        let cert = ObjectRef::new(
            "cert-manager.io/v1",
            "Certificate",
            Some("linkerd"),
            "linkerd-identity-issuer",
        );
        assert_eq!(cert.group(), "cert-manager.io");
        assert_eq!(
            cert.short().to_string(),
            "Certificate/linkerd/linkerd-identity-issuer"
        );
        assert_eq!(
            ObjectRef::from_object(&serde_json::json!({"kind": "X"})),
            None
        );
        assert_eq!(
            KindRef::new("monitoring.coreos.com/v1", "PodMonitor").to_string(),
            "PodMonitor (monitoring.coreos.com/v1)"
        );
    }

    #[test]
    fn secret_string_data_becomes_data_for_apply() {
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "a"},
            "data": {"keep": "eA==", "both": "b2xk"},
            "stringData": {"both": "new", "user": "admin"}
        });
        let out = secret_as_data(&body).unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s", "namespace": "a"},
                "data": {"keep": "eA==", "both": "bmV3", "user": "YWRtaW4="}
            })
        );
        assert!(out.get("stringData").is_none());
    }

    #[test]
    fn other_objects_and_plain_secrets_are_left_alone() {
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "stringData": {"a": "b"}});
        assert_eq!(secret_as_data(&cm), None);
        let plain =
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "Yg=="}});
        assert_eq!(secret_as_data(&plain), None);
        let odd = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "stringData": {"n": 1}});
        assert_eq!(secret_as_data(&odd), None);
    }
}
