//! Kind scope: whether an `apiVersion`/`kind` is namespaced.
//!
//! Answers come from, in order: the cluster's discovery ([`Discovery`], fetched by the
//! cluster layer), CustomResourceDefinitions rendered anywhere in the same plan ([`PlanKinds`]
//! learns them, so a PodMonitor whose CRD the plan creates is scoped offline), and the built-in
//! Kubernetes kinds ([`builtin_scope`]). A kind none of them knows is [`KindScope::Unknown`]:
//! render keeps such objects as written and the plan stage reports "kind X is not installed
//! and not created by the plan".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use meshplan_k8s::Discovery;

/// Whether objects of a kind live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindScope {
    Namespaced,
    Cluster,
    /// Neither the cluster nor the plan knows the kind.
    Unknown,
}

impl KindScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KindScope::Namespaced => "namespaced",
            KindScope::Cluster => "cluster",
            KindScope::Unknown => "unknown",
        }
    }
}

/// Something that knows whether a kind is namespaced: `Some(true)` namespaced, `Some(false)`
/// cluster-scoped, `None` unknown.
pub trait KindScopes: Send + Sync {
    fn is_namespaced(&self, api_version: &str, kind: &str) -> Option<bool>;
}

/// The group of an `apiVersion` (`""` for the core group).
fn group_of(api_version: &str) -> &str {
    meshplan_k8s::split_api_version(api_version).0
}

/// The cluster's discovery: a kind is scoped as any served version of its group says.
impl KindScopes for Discovery {
    fn is_namespaced(&self, api_version: &str, kind: &str) -> Option<bool> {
        let group = group_of(api_version);
        self.resources
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .map(|r| r.namespaced)
    }
}

/// Scopes of the kinds every Kubernetes cluster serves (used when discovery does not answer,
/// e.g. offline).
pub fn builtin_scope(api_version: &str, kind: &str) -> Option<bool> {
    let group = group_of(api_version);
    let cluster: &[(&str, &str)] = &[
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
        ),
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
        ),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        (
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding",
        ),
        ("apiregistration.k8s.io", "APIService"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("networking.k8s.io", "IngressClass"),
        ("node.k8s.io", "RuntimeClass"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ];
    let namespaced: &[(&str, &str)] = &[
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "Service"),
        ("", "ServiceAccount"),
        ("", "Pod"),
        ("", "PersistentVolumeClaim"),
        ("", "Endpoints"),
        ("", "LimitRange"),
        ("", "ResourceQuota"),
        ("", "Event"),
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ReplicaSet"),
        ("apps", "ControllerRevision"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("policy", "PodDisruptionBudget"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("coordination.k8s.io", "Lease"),
        ("discovery.k8s.io", "EndpointSlice"),
    ];
    if cluster.contains(&(group, kind)) {
        Some(false)
    } else if namespaced.contains(&(group, kind)) {
        Some(true)
    } else {
        None
    }
}

/// Kind scopes as render sees them: discovery (optional), then CRDs rendered in the plan,
/// then the built-in kinds.
#[derive(Clone, Default)]
pub struct PlanKinds<'a> {
    discovery: Option<&'a dyn KindScopes>,
    /// (group, kind) → namespaced, from CRDs in the plan.
    crds: BTreeMap<(String, String), bool>,
}

impl std::fmt::Debug for PlanKinds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanKinds")
            .field("discovery", &self.discovery.is_some())
            .field("crds", &self.crds)
            .finish()
    }
}

impl<'a> PlanKinds<'a> {
    pub fn new(discovery: Option<&'a dyn KindScopes>) -> Self {
        Self {
            discovery,
            crds: BTreeMap::new(),
        }
    }

    /// Learns the kind of a CustomResourceDefinition (`spec.group`, `spec.names.kind`,
    /// `spec.scope`); other objects and incomplete CRDs are ignored.
    pub fn learn(&mut self, object: &Value) {
        if object.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            return;
        }
        let Some(spec) = object.get("spec") else {
            return;
        };
        let group = spec.get("group").and_then(Value::as_str);
        let kind = spec.pointer("/names/kind").and_then(Value::as_str);
        let scope = spec.get("scope").and_then(Value::as_str);
        if let (Some(group), Some(kind), Some(scope)) = (group, kind, scope) {
            self.crds
                .insert((group.to_string(), kind.to_string()), scope == "Namespaced");
        }
    }

    /// The scope of a kind; see the module docs for the order of the sources.
    pub fn scope(&self, api_version: &str, kind: &str) -> KindScope {
        let answer = self
            .discovery
            .and_then(|d| d.is_namespaced(api_version, kind))
            .or_else(|| {
                self.crds
                    .get(&(group_of(api_version).to_string(), kind.to_string()))
                    .copied()
            })
            .or_else(|| builtin_scope(api_version, kind));
        match answer {
            Some(true) => KindScope::Namespaced,
            Some(false) => KindScope::Cluster,
            None => KindScope::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn discovery_then_plan_crds_then_builtins() {
        let discovery = Discovery::new(vec![meshplan_k8s::ApiResourceInfo {
            group: "cert-manager.io".into(),
            version: "v1".into(),
            kind: "ClusterIssuer".into(),
            plural: "clusterissuers".into(),
            namespaced: false,
            verbs: vec!["get".into()],
            subresources: vec![],
        }]);
        let mut kinds = PlanKinds::new(Some(&discovery));
        assert_eq!(
            kinds.scope("cert-manager.io/v1", "ClusterIssuer"),
            KindScope::Cluster
        );
        assert_eq!(
            kinds.scope("monitoring.coreos.com/v1", "PodMonitor"),
            KindScope::Unknown
        );
        kinds.learn(&json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                     "names": {"kind": "PodMonitor"}}
        }));
        assert_eq!(
            kinds.scope("monitoring.coreos.com/v1", "PodMonitor"),
            KindScope::Namespaced
        );
        assert_eq!(kinds.scope("v1", "Namespace"), KindScope::Cluster);
        assert_eq!(kinds.scope("apps/v1", "Deployment"), KindScope::Namespaced);
    }
}
