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
}
