//! What the checks read from the cluster, gathered in one place before they run (so the
//! checks stay pure): namespaces, installed Linkerd control planes (their `linkerd-config`
//! values), CRDs, cert-manager issuers, Traefik workloads.
//!
//! [`gather`] lists them through `dyn Cluster` (read-only; a kind the cluster does not serve
//! is simply absent). Tests build [`ClusterFacts`] directly.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use crate::cluster::{Cluster, ClusterError, KindRef, ObjectRef};

use super::linkerd::{CONTROL_PLANE_LABEL, LINKERD_CONFIG, NamespaceMeta};

/// A control plane installed in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct InstalledControlPlane {
    pub namespace: String,
    /// The `values` of its `linkerd-config` ConfigMap (null when it has none).
    pub values: Json,
}

/// The cluster as the checks see it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterFacts {
    pub namespaces: BTreeMap<String, NamespaceMeta>,
    pub control_planes: Vec<InstalledControlPlane>,
    /// CustomResourceDefinition objects.
    pub crds: Vec<Json>,
    /// cert-manager issuers: (`Issuer` or `ClusterIssuer`, namespace or "", name); None when
    /// cert-manager's kinds are not installed.
    pub issuers: Option<BTreeSet<(String, String, String)>>,
    /// Deployments and DaemonSets labelled `app.kubernetes.io/name=traefik`.
    pub traefik: Vec<Json>,
}

/// Reads the facts. Fails only when the cluster cannot be read at all.
pub async fn gather(cluster: &dyn Cluster) -> Result<ClusterFacts, ClusterError> {
    let mut facts = ClusterFacts::default();
    let namespaces = cluster
        .list(&KindRef::new("v1", "Namespace"), None, None)
        .await?;
    for ns in &namespaces.items {
        let Some(name) = ns.pointer("/metadata/name").and_then(Json::as_str) else {
            continue;
        };
        let meta = NamespaceMeta::of(ns);
        if meta.labels.get(CONTROL_PLANE_LABEL).map(String::as_str) == Some("true") {
            let config = cluster
                .get(&ObjectRef::new(
                    "v1",
                    "ConfigMap",
                    Some(name),
                    LINKERD_CONFIG,
                ))
                .await?;
            if let Some(config) = config {
                facts.control_planes.push(InstalledControlPlane {
                    namespace: name.to_string(),
                    values: config_values(&config),
                });
            }
        }
        facts.namespaces.insert(name.to_string(), meta);
    }
    facts.crds = optional_list(
        cluster,
        &KindRef::new("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        None,
    )
    .await?
    .unwrap_or_default();
    let issuers =
        optional_list(cluster, &KindRef::new("cert-manager.io/v1", "Issuer"), None).await?;
    let cluster_issuers = optional_list(
        cluster,
        &KindRef::new("cert-manager.io/v1", "ClusterIssuer"),
        None,
    )
    .await?;
    if issuers.is_some() || cluster_issuers.is_some() {
        let mut set = BTreeSet::new();
        for (kind, items) in [("Issuer", issuers), ("ClusterIssuer", cluster_issuers)] {
            for i in items.unwrap_or_default() {
                let text = |p: &str| {
                    i.pointer(p)
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                set.insert((
                    kind.to_string(),
                    text("/metadata/namespace"),
                    text("/metadata/name"),
                ));
            }
        }
        facts.issuers = Some(set);
    }
    for kind in ["Deployment", "DaemonSet"] {
        let items = optional_list(
            cluster,
            &KindRef::new("apps/v1", kind),
            Some("app.kubernetes.io/name=traefik"),
        )
        .await?;
        facts.traefik.extend(items.unwrap_or_default());
    }
    Ok(facts)
}

/// The `values` of a `linkerd-config` ConfigMap, parsed (null when absent or not YAML).
pub fn config_values(config: &Json) -> Json {
    config
        .pointer("/data/values")
        .and_then(Json::as_str)
        .and_then(|text| serde_saphyr::from_str::<Json>(text).ok())
        .unwrap_or(Json::Null)
}

/// A list of a kind the cluster may not serve: None when it does not.
async fn optional_list(
    cluster: &dyn Cluster,
    kind: &KindRef,
    selector: Option<&str>,
) -> Result<Option<Vec<Json>>, ClusterError> {
    match cluster.list(kind, None, selector).await {
        Ok(list) => Ok(Some(list.items)),
        Err(ClusterError::KindNotInstalled { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
