//! What `check` reads from the cluster, gathered in one place (read-only, plus dry-run
//! probes of the admission webhooks): the cluster's clock, the control plane's
//! `linkerd-config` and issuer Secret (and its cert-manager Certificate), the Deployments of
//! the control plane and viz namespaces, the webhooks, the Jobs and the namespaces.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use crate::cluster::{Cluster, ClusterError, Discovery, KindRef, ObjectRef, WriteOptions};
use crate::lint::linkerd::{CONTROL_PLANE_LABEL, ISSUER_SECRET, LINKERD_CONFIG, NamespaceMeta};

/// Where to look (from the plan when it says; else found by the namespaces' labels).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthRequest {
    pub control_plane_namespace: Option<String>,
    pub viz_namespace: Option<String>,
}

/// What a dry-run request that an admission webhook must answer gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The API server called the webhook (the request passed, or was refused by something
    /// else than an unreachable webhook).
    Answered,
    /// The API server could not call the webhook: its message.
    Unreachable(String),
    /// No probe could be built for its rules (say why).
    NotProbed(String),
}

/// One webhook of a Mutating/ValidatingWebhookConfiguration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookProbe {
    /// `MutatingWebhookConfiguration/linkerd-proxy-injector-webhook-config`.
    pub configuration: String,
    /// The webhook's name, e.g. `linkerd-proxy-injector.linkerd.io`.
    pub webhook: String,
    /// `namespace/name` of its Service.
    pub service: String,
    pub outcome: ProbeOutcome,
}

/// The cluster as `check` sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HealthFacts {
    /// The cluster's clock (the API server's `Date`), else the local one.
    pub now: jiff::Timestamp,
    pub clock_from_cluster: bool,
    pub control_plane_namespace: Option<String>,
    pub viz_namespace: Option<String>,
    /// The `linkerd-config` ConfigMap of the control plane namespace.
    pub linkerd_config: Option<Json>,
    /// The `linkerd-identity-issuer` Secret.
    pub issuer_secret: Option<Json>,
    /// The cert-manager Certificate that writes the issuer Secret, if any.
    pub issuer_certificate: Option<Json>,
    /// Deployments by namespace (control plane and viz).
    pub deployments: BTreeMap<String, Vec<Json>>,
    pub webhooks: Vec<WebhookProbe>,
    /// Every Job of the cluster.
    pub jobs: Vec<Json>,
    pub namespaces: BTreeMap<String, NamespaceMeta>,
}

/// Reads the facts and probes the webhooks of the control plane and viz namespaces.
pub async fn gather(
    cluster: &dyn Cluster,
    request: &HealthRequest,
) -> Result<HealthFacts, ClusterError> {
    let mut facts = HealthFacts::default();
    match cluster.server_time().await? {
        Some(t) => {
            facts.now = t;
            facts.clock_from_cluster = true;
        }
        None => facts.now = jiff::Timestamp::now(),
    }
    let namespaces = cluster
        .list(&KindRef::new("v1", "Namespace"), None, None)
        .await?;
    for ns in &namespaces.items {
        if let Some(name) = ns.pointer("/metadata/name").and_then(Json::as_str) {
            let mut meta = NamespaceMeta::of(ns);
            // The API server labels every namespace with its name.
            meta.labels
                .entry("kubernetes.io/metadata.name".into())
                .or_insert_with(|| name.to_string());
            facts.namespaces.insert(name.to_string(), meta);
        }
    }
    let labelled = |label: &str, value: &str| {
        facts
            .namespaces
            .iter()
            .find(|(_, m)| m.labels.get(label).map(String::as_str) == Some(value))
            .map(|(n, _)| n.clone())
    };
    facts.control_plane_namespace = request
        .control_plane_namespace
        .clone()
        .or_else(|| labelled(CONTROL_PLANE_LABEL, "true"));
    facts.viz_namespace = request
        .viz_namespace
        .clone()
        .or_else(|| labelled("linkerd.io/extension", "viz"));

    if let Some(cp) = facts.control_plane_namespace.clone() {
        facts.linkerd_config = cluster
            .get(&ObjectRef::new(
                "v1",
                "ConfigMap",
                Some(&cp),
                LINKERD_CONFIG,
            ))
            .await?;
        facts.issuer_secret = cluster
            .get(&ObjectRef::new("v1", "Secret", Some(&cp), ISSUER_SECRET))
            .await?;
        match cluster
            .list(
                &KindRef::new("cert-manager.io/v1", "Certificate"),
                Some(&cp),
                None,
            )
            .await
        {
            Ok(list) => {
                facts.issuer_certificate = list.items.into_iter().find(|c| {
                    c.pointer("/spec/secretName").and_then(Json::as_str) == Some(ISSUER_SECRET)
                });
            }
            Err(ClusterError::KindNotInstalled { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let watched: Vec<String> = facts
        .control_plane_namespace
        .iter()
        .chain(&facts.viz_namespace)
        .cloned()
        .collect();
    for ns in &watched {
        let list = cluster
            .list(&KindRef::new("apps/v1", "Deployment"), Some(ns), None)
            .await?;
        facts.deployments.insert(ns.clone(), list.items);
    }
    facts.jobs = cluster
        .list(&KindRef::new("batch/v1", "Job"), None, None)
        .await?
        .items;

    let discovery = cluster.discover().await?;
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let configs = cluster
            .list(
                &KindRef::new("admissionregistration.k8s.io/v1", kind),
                None,
                None,
            )
            .await?;
        for config in &configs.items {
            let config_name = config
                .pointer("/metadata/name")
                .and_then(Json::as_str)
                .unwrap_or_default();
            let webhooks = config
                .get("webhooks")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            for w in &webhooks {
                let svc_ns = w
                    .pointer("/clientConfig/service/namespace")
                    .and_then(Json::as_str)
                    .unwrap_or_default();
                let svc_name = w
                    .pointer("/clientConfig/service/name")
                    .and_then(Json::as_str)
                    .unwrap_or_default();
                if !watched.iter().any(|n| n == svc_ns) {
                    continue;
                }
                let outcome = match probe_body(w, &discovery, &facts.namespaces) {
                    Ok(body) => {
                        let options = WriteOptions {
                            field_manager: "meshplan-check".to_string(),
                            dry_run: true,
                        };
                        match cluster.create(&body, &options).await {
                            Err(e) if e.is_webhook_unavailable() => {
                                ProbeOutcome::Unreachable(e.to_string())
                            }
                            _ => ProbeOutcome::Answered,
                        }
                    }
                    Err(why) => ProbeOutcome::NotProbed(why),
                };
                facts.webhooks.push(WebhookProbe {
                    configuration: format!("{kind}/{config_name}"),
                    webhook: w
                        .get("name")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    service: format!("{svc_ns}/{svc_name}"),
                    outcome,
                });
            }
        }
    }
    Ok(facts)
}

/// An object whose dry-run CREATE the webhook's rules and selectors match. Err: why none.
pub fn probe_body(
    webhook: &Json,
    discovery: &Discovery,
    namespaces: &BTreeMap<String, NamespaceMeta>,
) -> Result<Json, String> {
    let rules = webhook
        .get("rules")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let strings = |v: Option<&Json>| -> Vec<String> {
        v.and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Json::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let resource = rules.iter().find_map(|rule| {
        let ops = strings(rule.get("operations"));
        if !ops.iter().any(|o| o == "CREATE" || o == "*") {
            return None;
        }
        let groups = strings(rule.get("apiGroups"));
        let versions = strings(rule.get("apiVersions"));
        let resources = strings(rule.get("resources"));
        discovery.resources.iter().find(|r| {
            (groups.iter().any(|g| g == "*" || *g == r.group))
                && (versions.iter().any(|v| v == "*" || *v == r.version))
                && resources
                    .iter()
                    .any(|res| res == &r.plural || (res == "*" && !r.plural.contains('/')))
                && r.supports("create")
        })
    });
    let Some(resource) = resource else {
        return Err("no rule of it matches a resource the cluster serves for CREATE".into());
    };
    let namespace = if resource.namespaced {
        let selector = webhook.get("namespaceSelector");
        let mut names: Vec<&String> = namespaces
            .iter()
            .filter(|(_, m)| selector_matches(selector, &m.labels))
            .map(|(n, _)| n)
            .collect();
        names.sort_by_key(|n| (n.as_str() != "default", n.as_str().to_string()));
        match names.first() {
            Some(n) => Some((*n).clone()),
            None => return Err("no namespace matches its namespaceSelector".into()),
        }
    } else {
        None
    };
    let mut labels = serde_json::Map::new();
    if let Some(sel) = webhook.get("objectSelector") {
        if let Some(m) = sel.get("matchLabels").and_then(Json::as_object) {
            labels.extend(m.clone());
        }
        for e in sel
            .get("matchExpressions")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let key = e.get("key").and_then(Json::as_str).unwrap_or_default();
            match e.get("operator").and_then(Json::as_str) {
                Some("In") => {
                    let v = e.pointer("/values/0").cloned().unwrap_or(json!(""));
                    labels.insert(key.to_string(), v);
                }
                Some("Exists") => {
                    labels.insert(key.to_string(), json!("probe"));
                }
                _ => {}
            }
        }
    }
    let mut metadata = json!({ "name": "meshplan-check-probe", "labels": labels });
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    let mut body = json!({
        "apiVersion": resource.api_version(),
        "kind": resource.kind.clone(),
        "metadata": metadata,
    });
    if resource.group.is_empty() && resource.kind == "Pod" {
        body["spec"] = json!({"containers": [{"name": "probe", "image": "meshplan-check-probe"}]});
    } else {
        body["spec"] = json!({});
    }
    Ok(body)
}

/// Whether a label selector (`matchLabels`, `matchExpressions`) matches `labels`; an absent
/// selector matches everything.
pub fn selector_matches(selector: Option<&Json>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = selector else {
        return true;
    };
    if let Some(m) = sel.get("matchLabels").and_then(Json::as_object)
        && !m
            .iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
    {
        return false;
    }
    let expressions = sel
        .get("matchExpressions")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    expressions.iter().all(|e| {
        let key = e.get("key").and_then(Json::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let have = labels.get(key).map(String::as_str);
        match e.get("operator").and_then(Json::as_str) {
            Some("In") => have.is_some_and(|v| values.contains(&v)),
            Some("NotIn") => have.is_none_or(|v| !values.contains(&v)),
            Some("Exists") => have.is_some(),
            Some("DoesNotExist") => have.is_none(),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_as_the_api_server_reads_them() {
        let labels: BTreeMap<String, String> = [
            (
                "kubernetes.io/metadata.name".to_string(),
                "apps".to_string(),
            ),
            ("tier".to_string(), "web".to_string()),
        ]
        .into();
        let sel = json!({"matchExpressions": [
            {"key": "config.linkerd.io/admission-webhooks", "operator": "NotIn", "values": ["disabled"]},
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
        ]});
        assert!(selector_matches(Some(&sel), &labels));
        let exists = json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}],
                            "matchLabels": {"tier": "db"}});
        assert!(!selector_matches(Some(&exists), &labels));
        assert!(selector_matches(None, &labels));
    }
}
