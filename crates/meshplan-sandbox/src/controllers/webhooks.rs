//! Admission webhooks that are not reachable yet.
//!
//! On a real cluster, right after cert-manager (or any operator with admission webhooks) is
//! installed, writes to its API group fail until the webhook's pods serve:
//!
//! ```text
//! Internal error occurred: failed calling webhook "webhook.cert-manager.io": failed to call
//! webhook: Post "https://cert-manager-webhook.cert-manager.svc:443/validate?timeout=30s":
//! dial tcp 10.43.0.10:443: connect: connection refused
//! ```
//!
//! [`refusal`] reproduces that: given the installed Mutating/ValidatingWebhookConfigurations and
//! a write request, it finds the first matching webhook (mutating before validating, each list
//! in name order as the API server sorts them; rules with `*`, `*/*` and `x/*`, scope,
//! `namespaceSelector`/`objectSelector` with matchLabels and matchExpressions) whose
//! `failurePolicy` is `Fail` and whose backend is not serving, and returns its name and the
//! exact message; the API server answers it as a 500 `InternalError` Status (`status_body`
//! builds the full body with `details.causes`; the sandbox's write path sends the message
//! only). [`backend_status`] decides whether a webhook Service serves: its backing
//! Deployment (matched by the Service selector) must have been Available for a given delay;
//! before that the message is `connect: connection refused`; with no backing Deployment it is
//! `no endpoints available for service`, and without the Service `service "x" not found`.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use super::workloads;

/// The operation of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// POST, or an apply that creates.
    Create,
    /// PUT/PATCH.
    Update,
    /// DELETE.
    Delete,
    /// CONNECT (exec, proxy...): the sandbox serves no such request; rules may name it.
    #[cfg_attr(not(test), expect(dead_code, reason = "no CONNECT request is served"))]
    Connect,
}

impl Operation {
    /// The name used in webhook rules.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

/// A write the API server is about to admit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteRequest<'a> {
    /// API group (`""` for core).
    pub group: &'a str,
    /// Version.
    pub version: &'a str,
    /// Plural resource.
    pub resource: &'a str,
    /// Subresource (`status`, `scale`...), if any.
    pub subresource: Option<&'a str>,
    /// The operation.
    pub operation: Operation,
    /// The namespace for a namespaced resource; None for a cluster-scoped one.
    pub namespace: Option<&'a str>,
    /// Labels of that namespace, if known (the API server always adds
    /// `kubernetes.io/metadata.name`).
    pub namespace_labels: Option<&'a Map<String, Value>>,
    /// Labels of the object (new object, or the old one for a delete), if known.
    pub object_labels: Option<&'a Map<String, Value>>,
}

/// Whether a webhook's Service answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackendStatus {
    /// Serving: the write goes through.
    Ready,
    /// The Service exists and has endpoints that do not listen yet.
    ConnectionRefused {
        /// The Service's cluster IP as shown in the message.
        cluster_ip: String,
    },
    /// The Service has no ready endpoints.
    NoEndpoints,
    /// The Service does not exist.
    ServiceMissing,
}

/// The `clientConfig.service` of a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceRef {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// Path (default `/`).
    pub path: String,
    /// Port (default 443).
    pub port: i64,
}

/// A refused write: which webhook refused it and the API server's message (the full text of
/// the 500 Status, `Internal error occurred: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The webhook's name, e.g. `webhook.cert-manager.io`.
    pub webhook: String,
    /// The Status message.
    pub message: String,
    /// The cause (the message without the `Internal error occurred: ` prefix).
    pub cause: String,
}

impl Refusal {
    /// The pair (webhook name, message).
    #[cfg(test)]
    pub(crate) fn into_pair(self) -> (String, String) {
        (self.webhook, self.message)
    }
}

/// The Status body the API server answers with (HTTP 500).
#[cfg(test)]
pub(crate) fn status_body(refusal: &Refusal) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": refusal.message,
        "reason": "InternalError",
        "details": {"causes": [{"message": refusal.cause}]},
        "code": 500
    })
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn list_matches(list: &[&str], value: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == value)
}

fn resource_matches(patterns: &[&str], resource: &str, sub: Option<&str>) -> bool {
    patterns.iter().any(|p| {
        let (pr, ps) = match p.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (*p, None),
        };
        let res_ok = pr == "*" || pr == resource;
        // As the API server's matcher: `x/*` also matches `x` itself; `x` matches no
        // subresource.
        let sub_ok = match (ps, sub) {
            (Some("*"), _) | (None, None) => true,
            (Some(s), Some(actual)) => s == actual,
            (None, Some(_)) | (Some(_), None) => false,
        };
        res_ok && sub_ok
    })
}

fn rule_matches(rule: &Value, req: &WriteRequest<'_>) -> bool {
    let scope = rule.get("scope").and_then(Value::as_str).unwrap_or("*");
    let scope_ok = match scope {
        "Cluster" => req.namespace.is_none(),
        "Namespaced" => req.namespace.is_some(),
        _ => true,
    };
    scope_ok
        && list_matches(&strs(rule.get("operations")), req.operation.as_str())
        && list_matches(&strs(rule.get("apiGroups")), req.group)
        && list_matches(&strs(rule.get("apiVersions")), req.version)
        && resource_matches(&strs(rule.get("resources")), req.resource, req.subresource)
}

/// Evaluates a label selector (matchLabels, matchExpressions with In, NotIn, Exists,
/// DoesNotExist). An absent or empty selector matches everything.
pub(crate) fn selector_matches(selector: Option<&Value>, labels: &Map<String, Value>) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_null()) else {
        return true;
    };
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let labels_ok = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let exprs_ok = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                let values = strs(e.get("values"));
                match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                    "In" => label(key).is_some_and(|v| values.contains(&v)),
                    "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                    "Exists" => label(key).is_some(),
                    "DoesNotExist" => label(key).is_none(),
                    _ => false,
                }
            })
        });
    labels_ok && exprs_ok
}

fn namespace_selector_matches(webhook: &Value, req: &WriteRequest<'_>) -> bool {
    let selector = webhook.get("namespaceSelector");
    if req.group.is_empty() && req.resource == "namespaces" {
        // A Namespace is matched on its own labels.
        let empty = Map::new();
        return selector_matches(selector, req.object_labels.unwrap_or(&empty));
    }
    let Some(ns) = req.namespace else {
        // Cluster-scoped: the namespace selector does not apply.
        return true;
    };
    let mut labels = req.namespace_labels.cloned().unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), json!(ns));
    selector_matches(selector, &labels)
}

fn object_selector_matches(webhook: &Value, req: &WriteRequest<'_>) -> bool {
    let empty = Map::new();
    selector_matches(
        webhook.get("objectSelector"),
        req.object_labels.unwrap_or(&empty),
    )
}

/// Webhook configurations do not go through webhooks (the API server exempts them).
fn exempt(req: &WriteRequest<'_>) -> bool {
    req.group == "admissionregistration.k8s.io"
        && matches!(
            req.resource,
            "validatingwebhookconfigurations" | "mutatingwebhookconfigurations"
        )
}

/// The webhooks (in API server order) of the given configurations that match `req`.
pub(crate) fn matching_webhooks<'a>(
    configs: &'a [Value],
    req: &WriteRequest<'_>,
) -> Vec<&'a Value> {
    if exempt(req) {
        return Vec::new();
    }
    let mut sorted: Vec<&Value> = configs.iter().collect();
    sorted.sort_by_key(|c| {
        c.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    });
    sorted
        .into_iter()
        .filter(|c| c.pointer("/metadata/deletionTimestamp").is_none())
        .filter_map(|c| c.get("webhooks").and_then(Value::as_array))
        .flatten()
        .filter(|w| {
            w.get("rules")
                .and_then(Value::as_array)
                .is_some_and(|rules| rules.iter().any(|r| rule_matches(r, req)))
                && namespace_selector_matches(w, req)
                && object_selector_matches(w, req)
        })
        .collect()
}

/// The Service a webhook calls (None for a webhook called by URL).
pub(crate) fn webhook_service(webhook: &Value) -> Option<ServiceRef> {
    let svc = webhook.pointer("/clientConfig/service")?;
    Some(ServiceRef {
        namespace: svc.get("namespace")?.as_str()?.to_string(),
        name: svc.get("name")?.as_str()?.to_string(),
        path: svc
            .get("path")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_string(),
        port: svc.get("port").and_then(Value::as_i64).unwrap_or(443),
    })
}

fn cause_for(webhook: &Value, svc: &ServiceRef, backend: &BackendStatus) -> Option<String> {
    let name = webhook.get("name").and_then(Value::as_str).unwrap_or("");
    let timeout = webhook
        .get("timeoutSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(10);
    let url = format!(
        "https://{}.{}.svc:{}{}?timeout={timeout}s",
        svc.name, svc.namespace, svc.port, svc.path
    );
    let why = match backend {
        BackendStatus::Ready => return None,
        BackendStatus::ConnectionRefused { cluster_ip } => {
            format!(
                "dial tcp {cluster_ip}:{}: connect: connection refused",
                svc.port
            )
        }
        BackendStatus::NoEndpoints => {
            format!("no endpoints available for service \"{}\"", svc.name)
        }
        BackendStatus::ServiceMissing => format!("service \"{}\" not found", svc.name),
    };
    Some(format!(
        "failed calling webhook \"{name}\": failed to call webhook: Post \"{url}\": {why}"
    ))
}

/// The refusal of a write, if a matching webhook with `failurePolicy: Fail` cannot be called.
/// `backend` tells whether a webhook Service serves (see [`backend_status`]).
pub(crate) fn refusal(
    mutating: &[Value],
    validating: &[Value],
    req: &WriteRequest<'_>,
    backend: impl Fn(&ServiceRef) -> BackendStatus,
) -> Option<Refusal> {
    matching_webhooks(mutating, req)
        .into_iter()
        .chain(matching_webhooks(validating, req))
        .filter(|w| w.get("failurePolicy").and_then(Value::as_str) != Some("Ignore"))
        .find_map(|w| {
            let svc = webhook_service(w)?;
            let cause = cause_for(w, &svc, &backend(&svc))?;
            Some(Refusal {
                webhook: w
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                message: format!("Internal error occurred: {cause}"),
                cause,
            })
        })
}

/// When a Deployment became Available (its Available condition's `lastTransitionTime`, whole
/// seconds), if it is available now.
pub(crate) fn available_since(deployment: &Value) -> Option<Timestamp> {
    if !workloads::deployment_available(deployment) {
        return None;
    }
    deployment
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| {
            c.get("type").and_then(Value::as_str) == Some("Available")
                && c.get("status").and_then(Value::as_str) == Some("True")
        })?
        .get("lastTransitionTime")?
        .as_str()?
        .parse()
        .ok()
}

/// A deterministic cluster IP in 10.43.0.0/16 for a Service that has none.
fn fake_cluster_ip(namespace: &str, name: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("10.43.{}.{}", (h >> 8) & 0xff, (h & 0xff).clamp(2, 254))
}

/// Whether `service` (None: missing) serves: some Deployment in its namespace whose pod
/// template labels match the Service selector has been Available for at least `delay` at
/// `now`. Available for less → connection refused; no such Deployment → no endpoints.
pub(crate) fn backend_status(
    service: Option<&Value>,
    deployments: &[Value],
    delay: SignedDuration,
    now: Timestamp,
) -> BackendStatus {
    let Some(service) = service else {
        return BackendStatus::ServiceMissing;
    };
    let ns = service
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = service
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(selector) = service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty())
    else {
        return BackendStatus::NoEndpoints;
    };
    let backing: Vec<&Value> = deployments
        .iter()
        .filter(|d| d.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns))
        .filter(|d| {
            let labels = d
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object);
            labels.is_some_and(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v)))
        })
        .collect();
    if backing.is_empty() {
        return BackendStatus::NoEndpoints;
    }
    let serving = backing.iter().any(|d| {
        available_since(d)
            .and_then(|t| t.checked_add(delay).ok())
            .is_some_and(|ready_at| now >= ready_at)
    });
    if serving {
        return BackendStatus::Ready;
    }
    let cluster_ip = service
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(str::to_string)
        .unwrap_or_else(|| fake_cluster_ip(ns, name));
    BackendStatus::ConnectionRefused { cluster_ip }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// cert-manager's validating webhook configuration, as its chart installs it.
    fn cm_validating() -> Value {
        json!({"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingWebhookConfiguration",
          "metadata":{"name":"cert-manager-webhook"},
          "webhooks":[{"name":"webhook.cert-manager.io",
            "namespaceSelector":{"matchExpressions":[{"key":"cert-manager.io/disable-validation","operator":"NotIn","values":["true"]}]},
            "rules":[{"apiGroups":["cert-manager.io","acme.cert-manager.io"],"apiVersions":["v1"],
                      "operations":["CREATE","UPDATE"],"resources":["*/*"]}],
            "admissionReviewVersions":["v1"],"timeoutSeconds":30,"failurePolicy":"Fail","sideEffects":"None",
            "clientConfig":{"service":{"name":"cert-manager-webhook","namespace":"cert-manager","path":"/validate"}}}]})
    }

    fn cm_mutating() -> Value {
        json!({"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingWebhookConfiguration",
          "metadata":{"name":"cert-manager-webhook"},
          "webhooks":[{"name":"webhook.cert-manager.io",
            "rules":[{"apiGroups":["cert-manager.io"],"apiVersions":["v1"],
                      "operations":["CREATE"],"resources":["certificaterequests"]}],
            "timeoutSeconds":30,"failurePolicy":"Fail",
            "clientConfig":{"service":{"name":"cert-manager-webhook","namespace":"cert-manager","path":"/mutate"}}}]})
    }

    fn req<'a>(
        group: &'a str,
        resource: &'a str,
        op: Operation,
        ns: Option<&'a str>,
    ) -> WriteRequest<'a> {
        WriteRequest {
            group,
            version: "v1",
            resource,
            subresource: None,
            operation: op,
            namespace: ns,
            namespace_labels: None,
            object_labels: None,
        }
    }

    fn refused(_: &ServiceRef) -> BackendStatus {
        BackendStatus::ConnectionRefused {
            cluster_ip: "10.43.0.10".into(),
        }
    }

    #[test]
    fn cert_manager_write_is_refused_with_the_real_message() {
        let v = [cm_validating()];
        let r = refusal(
            &[],
            &v,
            &req("cert-manager.io", "clusterissuers", Operation::Create, None),
            refused,
        )
        .unwrap();
        assert_eq!(r.webhook, "webhook.cert-manager.io");
        assert_eq!(
            r.message,
            "Internal error occurred: failed calling webhook \"webhook.cert-manager.io\": \
             failed to call webhook: Post \"https://cert-manager-webhook.cert-manager.svc:443/validate?timeout=30s\": \
             dial tcp 10.43.0.10:443: connect: connection refused"
        );
        let body = status_body(&r);
        assert_eq!(body["code"], 500);
        assert_eq!(body["reason"], "InternalError");
        assert_eq!(body["status"], "Failure");
        assert_eq!(body["details"]["causes"][0]["message"], r.cause);
        assert!(r.message.ends_with(&r.cause));
        let (name, msg) = r.clone().into_pair();
        assert_eq!(
            (name.as_str(), msg.as_str()),
            (r.webhook.as_str(), r.message.as_str())
        );

        // Once the backend serves, the write goes through.
        assert_eq!(
            refusal(
                &[],
                &v,
                &req("cert-manager.io", "clusterissuers", Operation::Create, None),
                |_| BackendStatus::Ready
            ),
            None
        );
    }

    #[test]
    fn rules_select_group_operation_resource_and_scope() {
        let v = [cm_validating()];
        // Other groups, DELETE, and subresources all pass ("*/*" covers subresources).
        assert!(
            refusal(
                &[],
                &v,
                &req("", "configmaps", Operation::Create, Some("default")),
                refused
            )
            .is_none()
        );
        assert!(
            refusal(
                &[],
                &v,
                &req(
                    "cert-manager.io",
                    "certificates",
                    Operation::Delete,
                    Some("a")
                ),
                refused
            )
            .is_none()
        );
        let mut status_write = req(
            "cert-manager.io",
            "certificates",
            Operation::Update,
            Some("a"),
        );
        status_write.subresource = Some("status");
        assert!(refusal(&[], &v, &status_write, refused).is_some());
        assert!(
            refusal(
                &[],
                &v,
                &req(
                    "acme.cert-manager.io",
                    "orders",
                    Operation::Update,
                    Some("a")
                ),
                refused
            )
            .is_some()
        );

        let rule = |resources: Value, scope: &str| {
            json!({"metadata":{"name":"x"},"webhooks":[{"name":"w.example.com","failurePolicy":"Fail",
              "rules":[{"apiGroups":["*"],"apiVersions":["*"],"operations":["*"],"resources":resources,"scope":scope}],
              "clientConfig":{"service":{"name":"s","namespace":"n"}}}]})
        };
        let plain = [rule(json!(["*"]), "*")];
        assert!(
            refusal(
                &[],
                &plain,
                &req("apps", "deployments", Operation::Create, Some("d")),
                refused
            )
            .is_some()
        );
        assert!(
            refusal(&[], &plain, &status_write, refused).is_none(),
            "\"*\" excludes subresources"
        );
        let sub_only = [rule(json!(["*/status"]), "*")];
        assert!(refusal(&[], &sub_only, &status_write, refused).is_some());
        assert!(
            refusal(
                &[],
                &sub_only,
                &req("apps", "deployments", Operation::Create, Some("d")),
                refused
            )
            .is_none()
        );
        let pods_sub = [rule(json!(["pods/*"]), "*")];
        let mut exec = req("", "pods", Operation::Connect, Some("d"));
        exec.subresource = Some("exec");
        assert!(refusal(&[], &pods_sub, &exec, refused).is_some());
        assert!(
            refusal(
                &[],
                &pods_sub,
                &req("", "pods", Operation::Create, Some("d")),
                refused
            )
            .is_some()
        );
        assert!(
            refusal(
                &[],
                &pods_sub,
                &req("", "services", Operation::Create, Some("d")),
                refused
            )
            .is_none()
        );
        let cluster_only = [rule(json!(["*"]), "Cluster")];
        assert!(
            refusal(
                &[],
                &cluster_only,
                &req("apps", "deployments", Operation::Create, Some("d")),
                refused
            )
            .is_none()
        );
        assert!(
            refusal(
                &[],
                &cluster_only,
                &req(
                    "rbac.authorization.k8s.io",
                    "clusterroles",
                    Operation::Create,
                    None
                ),
                refused
            )
            .is_some()
        );
        let namespaced_only = [rule(json!(["*"]), "Namespaced")];
        assert!(
            refusal(
                &[],
                &namespaced_only,
                &req(
                    "rbac.authorization.k8s.io",
                    "clusterroles",
                    Operation::Create,
                    None
                ),
                refused
            )
            .is_none()
        );
        // Path defaults to "/" and timeout to 10s.
        let r = refusal(
            &[],
            &plain,
            &req("apps", "deployments", Operation::Create, Some("d")),
            refused,
        )
        .unwrap();
        assert!(
            r.message
                .contains("Post \"https://s.n.svc:443/?timeout=10s\""),
            "{}",
            r.message
        );
        // Webhook configurations themselves are exempt.
        assert!(
            refusal(
                &[],
                &plain,
                &req(
                    "admissionregistration.k8s.io",
                    "validatingwebhookconfigurations",
                    Operation::Create,
                    None
                ),
                refused
            )
            .is_none()
        );
    }

    #[test]
    fn namespace_selector_and_failure_policy() {
        let v = [cm_validating()];
        let disabled: Map<String, Value> =
            serde_json::from_value(json!({"cert-manager.io/disable-validation":"true"})).unwrap();
        let mut r = req(
            "cert-manager.io",
            "certificates",
            Operation::Create,
            Some("cert-manager"),
        );
        r.namespace_labels = Some(&disabled);
        assert!(refusal(&[], &v, &r, refused).is_none());
        let other: Map<String, Value> = serde_json::from_value(json!({"team":"a"})).unwrap();
        r.namespace_labels = Some(&other);
        assert!(refusal(&[], &v, &r, refused).is_some());

        // Selector on the implicit namespace name label.
        let by_name = json!({"matchLabels":{"kubernetes.io/metadata.name":"apps"}});
        let empty = Map::new();
        assert!(selector_matches(Some(&by_name), &{
            let mut m = empty.clone();
            m.insert("kubernetes.io/metadata.name".into(), json!("apps"));
            m
        }));
        assert!(!selector_matches(Some(&by_name), &empty));
        let exists = json!({"matchExpressions":[{"key":"a","operator":"Exists"}]});
        let dne = json!({"matchExpressions":[{"key":"a","operator":"DoesNotExist"}]});
        let inn = json!({"matchExpressions":[{"key":"a","operator":"In","values":["x","y"]}]});
        let has_a: Map<String, Value> = serde_json::from_value(json!({"a":"y"})).unwrap();
        assert!(
            selector_matches(Some(&exists), &has_a) && !selector_matches(Some(&exists), &empty)
        );
        assert!(selector_matches(Some(&dne), &empty) && !selector_matches(Some(&dne), &has_a));
        assert!(selector_matches(Some(&inn), &has_a) && !selector_matches(Some(&inn), &empty));
        assert!(selector_matches(None, &empty));

        // failurePolicy Ignore never refuses.
        let mut ignore = cm_validating();
        ignore["webhooks"][0]["failurePolicy"] = json!("Ignore");
        assert!(
            refusal(
                &[],
                &[ignore],
                &req("cert-manager.io", "issuers", Operation::Create, Some("a")),
                refused
            )
            .is_none()
        );
    }

    #[test]
    fn mutating_webhooks_are_called_first() {
        let m = [cm_mutating()];
        let v = [cm_validating()];
        let r = refusal(
            &m,
            &v,
            &req(
                "cert-manager.io",
                "certificaterequests",
                Operation::Create,
                Some("a"),
            ),
            refused,
        )
        .unwrap();
        assert!(r.message.contains("/mutate?timeout=30s"), "{}", r.message);
        let r = refusal(
            &m,
            &v,
            &req(
                "cert-manager.io",
                "certificates",
                Operation::Create,
                Some("a"),
            ),
            refused,
        )
        .unwrap();
        assert!(r.message.contains("/validate?timeout=30s"), "{}", r.message);
    }

    fn webhook_deployment(available_at: Option<&str>) -> Value {
        let mut d = json!({"kind":"Deployment","metadata":{"name":"cert-manager-webhook","namespace":"cert-manager","generation":1},
            "spec":{"replicas":1,"selector":{"matchLabels":{"app.kubernetes.io/name":"webhook"}},
                    "template":{"metadata":{"labels":{"app.kubernetes.io/name":"webhook","app.kubernetes.io/instance":"cert-manager"}},
                                "spec":{"containers":[{"name":"w","image":"x"}]}}}});
        if let Some(at) = available_at {
            let st = workloads::deployment_status(&d, t(at)).unwrap();
            d["status"] = st;
        }
        d
    }

    fn webhook_service() -> Value {
        json!({"kind":"Service","metadata":{"name":"cert-manager-webhook","namespace":"cert-manager"},
               "spec":{"clusterIP":"10.43.0.10","selector":{"app.kubernetes.io/name":"webhook","app.kubernetes.io/instance":"cert-manager"},
                       "ports":[{"port":443,"targetPort":10250}]}})
    }

    #[test]
    fn backend_serves_after_the_deployment_was_available_long_enough() {
        let svc = webhook_service();
        let delay = SignedDuration::from_secs(5);
        let now = t("2026-04-01T00:00:10Z");
        // Not yet available.
        assert_eq!(
            backend_status(Some(&svc), &[webhook_deployment(None)], delay, now),
            BackendStatus::ConnectionRefused {
                cluster_ip: "10.43.0.10".into()
            }
        );
        // Available for 3s of 5s.
        let d = webhook_deployment(Some("2026-04-01T00:00:07Z"));
        assert!(matches!(
            backend_status(Some(&svc), std::slice::from_ref(&d), delay, now),
            BackendStatus::ConnectionRefused { .. }
        ));
        // Available for exactly 5s.
        assert_eq!(
            backend_status(
                Some(&svc),
                std::slice::from_ref(&d),
                delay,
                t("2026-04-01T00:00:12Z")
            ),
            BackendStatus::Ready
        );
        assert_eq!(available_since(&d), Some(t("2026-04-01T00:00:07Z")));
        // No Service; a Service whose selector matches nothing; a Deployment elsewhere.
        assert_eq!(
            backend_status(None, &[], delay, now),
            BackendStatus::ServiceMissing
        );
        let mut other = d.clone();
        other["metadata"]["namespace"] = json!("default");
        assert_eq!(
            backend_status(Some(&svc), &[other], delay, t("2026-04-01T01:00:00Z")),
            BackendStatus::NoEndpoints
        );
        // Without a clusterIP: a stable made-up address in the service CIDR.
        let mut no_ip = svc.clone();
        no_ip["spec"].as_object_mut().unwrap().remove("clusterIP");
        let a = backend_status(Some(&no_ip), &[webhook_deployment(None)], delay, now);
        let b = backend_status(Some(&no_ip), &[webhook_deployment(None)], delay, now);
        assert_eq!(a, b);
        match a {
            BackendStatus::ConnectionRefused { cluster_ip } => {
                assert!(cluster_ip.starts_with("10.43."))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn end_to_end_refused_until_the_delay_passes() {
        let v = [cm_validating()];
        let svc = webhook_service();
        let dep = webhook_deployment(Some("2026-04-01T00:00:00Z"));
        let delay = SignedDuration::from_secs(3);
        let write = req(
            "cert-manager.io",
            "issuers",
            Operation::Create,
            Some("default"),
        );
        let at = |now: &str| {
            refusal(&[], &v, &write, |s| {
                assert_eq!(
                    (s.namespace.as_str(), s.name.as_str()),
                    ("cert-manager", "cert-manager-webhook")
                );
                backend_status(Some(&svc), std::slice::from_ref(&dep), delay, t(now))
            })
        };
        assert!(
            at("2026-04-01T00:00:02Z")
                .unwrap()
                .message
                .contains("connect: connection refused")
        );
        assert_eq!(at("2026-04-01T00:00:03Z"), None);
        // Missing service and no endpoints wording.
        let r = refusal(&[], &v, &write, |_| BackendStatus::ServiceMissing).unwrap();
        assert!(
            r.cause
                .ends_with(": service \"cert-manager-webhook\" not found"),
            "{}",
            r.cause
        );
        let r = refusal(&[], &v, &write, |_| BackendStatus::NoEndpoints).unwrap();
        assert!(
            r.cause
                .ends_with(": no endpoints available for service \"cert-manager-webhook\""),
            "{}",
            r.cause
        );
    }
}
