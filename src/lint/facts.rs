//! What the checks read from the cluster, gathered in one place before they run (so the
//! checks stay pure): namespaces, installed Linkerd control planes (their `linkerd-config`
//! values), CRDs, cert-manager issuers, Traefik workloads.
//!
//! [`needs`] says which of them a plan's checks look up (pure, from the render); [`gather`]
//! reads just those through `dyn Cluster` (read-only; a kind the cluster does not serve is
//! simply absent), so a plan that needs no fact costs no request. Tests build
//! [`ClusterFacts`] directly.

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

/// What the checks will look up in the cluster for one plan (read nothing else: a plan that
/// needs no fact costs no request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FactNeeds {
    /// Labels and annotations of namespaces the plan does not create.
    pub namespaces: bool,
    /// The installed control plane's `linkerd-config` (the plan installs none).
    pub control_planes: bool,
    /// CRDs of custom resources whose CRD the plan does not create.
    pub crds: bool,
    /// cert-manager issuers the identity issuer Certificate may name.
    pub issuers: bool,
    /// Traefik workloads (the plan has a Traefik Ingress).
    pub traefik: bool,
}

impl FactNeeds {
    pub fn any(&self) -> bool {
        self.namespaces || self.control_planes || self.crds || self.issuers || self.traefik
    }
}

/// The facts the checks need for `plan` as rendered (pure; a superset of what they use).
pub fn needs(plan: &crate::model::Plan, render: &crate::render::PlanRender) -> FactNeeds {
    use crate::render::RenderedObject;
    let objects: Vec<&RenderedObject> = render.objects().map(|(_, o)| o).collect();
    let is = |o: &RenderedObject, group: &str, kind: &str| {
        o.object_ref.group() == group && o.object_ref.kind == kind
    };
    let plan_namespaces: BTreeSet<&str> = objects
        .iter()
        .filter(|o| is(o, "", "Namespace"))
        .map(|o| o.object_ref.name.as_str())
        .collect();
    let defined: BTreeSet<(String, String)> = objects
        .iter()
        .filter(|o| is(o, "apiextensions.k8s.io", "CustomResourceDefinition"))
        .filter_map(|o| {
            let text = |p: &str| {
                o.object
                    .pointer(p)
                    .and_then(Json::as_str)
                    .map(str::to_string)
            };
            Some((text("/spec/group")?, text("/spec/names/kind")?))
        })
        .collect();
    let is_job = |o: &RenderedObject| is(o, "batch", "Job") || is(o, "batch", "CronJob");
    let is_ingress = |o: &RenderedObject| is(o, "networking.k8s.io", "Ingress");
    let issuer_certs = objects.iter().any(|o| {
        is(o, "cert-manager.io", "Certificate")
            && o.object.pointer("/spec/secretName").and_then(Json::as_str)
                == Some(super::linkerd::ISSUER_SECRET)
    });
    let control_plane_in_plan = plan.nodes.values().any(|n| match &n.spec {
        crate::model::NodeSpec::Helm(h) => {
            super::linkerd::is_control_plane_chart(&super::context::chart_name(h))
        }
        _ => false,
    });
    let outside = |o: &RenderedObject| {
        o.object_ref
            .namespace
            .as_deref()
            .is_some_and(|ns| !plan_namespaces.contains(ns))
    };
    let traefik = |o: &RenderedObject| {
        o.object
            .pointer("/spec/ingressClassName")
            .and_then(Json::as_str)
            == Some("traefik")
            || o.object
                .pointer("/metadata/annotations")
                .and_then(|a| a.get("kubernetes.io/ingress.class"))
                .and_then(Json::as_str)
                == Some("traefik")
    };
    FactNeeds {
        namespaces: objects
            .iter()
            .any(|o| (is_job(o) || is_ingress(o)) && outside(o)),
        control_planes: !control_plane_in_plan
            && (objects.iter().any(|o| is_job(o)) || issuer_certs),
        crds: objects.iter().any(|o| {
            let group = o.object_ref.group();
            !group.is_empty()
                && crate::render::kinds::builtin_scope(
                    &o.object_ref.api_version,
                    &o.object_ref.kind,
                )
                .is_none()
                && !defined.contains(&(group.to_string(), o.object_ref.kind.clone()))
        }),
        issuers: issuer_certs,
        traefik: objects.iter().any(|o| is_ingress(o) && traefik(o)),
    }
}

/// Reads the facts `needs` asks for. `discovery` (when given) tells which kinds the cluster
/// serves, so that a kind it does not serve costs no request. Fails only when the cluster
/// cannot be read.
pub async fn gather(
    cluster: &dyn Cluster,
    needs: &FactNeeds,
    discovery: Option<&crate::cluster::Discovery>,
) -> Result<ClusterFacts, ClusterError> {
    let mut facts = ClusterFacts::default();
    let served = |group: &str, kind: &str| discovery.is_none_or(|d| d.has_group_kind(group, kind));
    if needs.namespaces || needs.control_planes {
        let namespaces = cluster
            .list(&KindRef::new("v1", "Namespace"), None, None)
            .await?;
        for ns in &namespaces.items {
            let Some(name) = ns.pointer("/metadata/name").and_then(Json::as_str) else {
                continue;
            };
            let meta = NamespaceMeta::of(ns);
            if needs.control_planes
                && meta.labels.get(CONTROL_PLANE_LABEL).map(String::as_str) == Some("true")
            {
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
    }
    if needs.crds {
        facts.crds = optional_list(
            cluster,
            &KindRef::new("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            None,
        )
        .await?
        .unwrap_or_default();
    }
    if needs.issuers && served("cert-manager.io", "Issuer") {
        let issuers =
            optional_list(cluster, &KindRef::new("cert-manager.io/v1", "Issuer"), None).await?;
        let cluster_issuers = optional_list(
            cluster,
            &KindRef::new("cert-manager.io/v1", "ClusterIssuer"),
            None,
        )
        .await?;
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
    if needs.traefik {
        for kind in ["Deployment", "DaemonSet"] {
            let items = optional_list(
                cluster,
                &KindRef::new("apps/v1", kind),
                Some("app.kubernetes.io/name=traefik"),
            )
            .await?;
            facts.traefik.extend(items.unwrap_or_default());
        }
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
