//! Readiness rules: when is an applied object ready? Pure functions of the object's body.
//!
//! One rule per kind ([`Rule::for_object`]), decided the way the tools operators trust decide
//! it: workloads as `kubectl rollout status` does (observedGeneration first, then updated,
//! ready/available and old replicas), Jobs by their `Complete` / `Failed` conditions, CRDs by
//! `Established`, Namespaces by phase `Active`, APIServices by `Available`, cert-manager's
//! Certificate / Issuer / ClusterIssuer by `Ready`; everything else (Services,
//! PodDisruptionBudgets, ConfigMaps...) is ready at once. A node's `wait = { condition }`
//! replaces the built-in rule of its objects that have a status; `wait = false` switches
//! waiting off (CRDs and Namespaces are still waited for: the objects after them need them).
//!
//! Every evaluation says [`Readiness::Ready`], [`Readiness::Waiting`] with what it waits for
//! and the status seen, or [`Readiness::Failed`] with why waiting is pointless (a failed Job),
//! so that a timeout can say what it waited for and the last status seen.

use serde_json::Value;

use crate::cluster::ObjectRef;
use crate::model::Wait;

/// The result of evaluating a rule on an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not ready yet; the reason says what is missing (e.g. `1 of 3 updated replicas are
    /// available`).
    Waiting(String),
    /// It will not become ready (e.g. a failed Job).
    Failed(String),
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }

    /// Whether waiting is over (ready or failed).
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Waiting(_))
    }
}

/// A built-in rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    Crd,
    Namespace,
    ApiService,
    /// cert-manager's Certificate, Issuer, ClusterIssuer: condition `Ready`.
    CertManagerReady,
}

/// How to decide that an object is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Ready as soon as it exists.
    Exists,
    Builtin(Builtin),
    /// A condition type that must be `True` (`wait = { condition = "..." }`).
    Condition(String),
}

/// Kinds that have no status to wait for: ready when they exist, even under a node's custom
/// condition.
const STATUSLESS: &[(&str, &str)] = &[
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "ServiceAccount"),
    ("", "Service"),
    ("", "Endpoints"),
    ("", "LimitRange"),
    ("", "ResourceQuota"),
    ("policy", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("networking.k8s.io", "IngressClass"),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("scheduling.k8s.io", "PriorityClass"),
    ("storage.k8s.io", "StorageClass"),
];

impl Rule {
    /// The built-in rule of a kind (None: ready as soon as it exists).
    pub fn builtin(object: &ObjectRef) -> Option<Builtin> {
        Some(match (object.group(), object.kind.as_str()) {
            ("apps", "Deployment") => Builtin::Deployment,
            ("apps", "StatefulSet") => Builtin::StatefulSet,
            ("apps", "DaemonSet") => Builtin::DaemonSet,
            ("batch", "Job") => Builtin::Job,
            ("apiextensions.k8s.io", "CustomResourceDefinition") => Builtin::Crd,
            ("", "Namespace") => Builtin::Namespace,
            ("apiregistration.k8s.io", "APIService") => Builtin::ApiService,
            ("cert-manager.io", "Certificate" | "Issuer" | "ClusterIssuer") => {
                Builtin::CertManagerReady
            }
            _ => return None,
        })
    }

    /// The rule for an object of a node with the wait settings `wait`; None when the object
    /// is not waited for (`wait = false`, apart from CRDs and Namespaces).
    pub fn for_object(object: &ObjectRef, wait: &Wait) -> Option<Self> {
        let builtin = Self::builtin(object);
        if matches!(builtin, Some(Builtin::Crd | Builtin::Namespace)) {
            return builtin.map(Self::Builtin);
        }
        if !wait.enabled {
            return None;
        }
        let statusless = STATUSLESS
            .iter()
            .any(|(g, k)| *g == object.group() && *k == object.kind);
        Some(match (&wait.condition, builtin) {
            (Some(condition), _) if !statusless => Self::Condition(condition.clone()),
            (_, Some(b)) => Self::Builtin(b),
            _ => Self::Exists,
        })
    }

    /// What the rule waits for, for messages: `rollout complete`, `condition Ready=True`.
    pub fn describe(&self) -> String {
        match self {
            Self::Exists => "the object to exist".to_owned(),
            Self::Builtin(b) => match b {
                Builtin::Deployment | Builtin::StatefulSet | Builtin::DaemonSet => {
                    "the rollout to complete".to_owned()
                }
                Builtin::Job => "the Job to complete".to_owned(),
                Builtin::Crd => "condition Established=True".to_owned(),
                Builtin::Namespace => "phase Active".to_owned(),
                Builtin::ApiService => "condition Available=True".to_owned(),
                Builtin::CertManagerReady => "condition Ready=True".to_owned(),
            },
            Self::Condition(c) => format!("condition {c}=True"),
        }
    }

    /// Evaluates the rule on the object as it is now (None: it does not exist).
    pub fn evaluate(&self, object: Option<&Value>) -> Readiness {
        let Some(o) = object else {
            return Readiness::Waiting("the object does not exist yet".to_owned());
        };
        if is_deleting(o) {
            return Readiness::Waiting("the object is being deleted".to_owned());
        }
        match self {
            Self::Exists => Readiness::Ready,
            Self::Condition(c) => condition_true(o, c),
            Self::Builtin(b) => match b {
                Builtin::Deployment => deployment(o),
                Builtin::StatefulSet => stateful_set(o),
                Builtin::DaemonSet => daemon_set(o),
                Builtin::Job => job(o),
                Builtin::Crd => crd(o),
                Builtin::Namespace => namespace(o),
                Builtin::ApiService => condition_true(o, "Available"),
                Builtin::CertManagerReady => condition_true(o, "Ready"),
            },
        }
    }
}

fn is_deleting(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

fn int(o: &Value, pointer: &str) -> Option<i64> {
    o.pointer(pointer).and_then(Value::as_i64)
}

fn text<'a>(o: &'a Value, pointer: &str) -> Option<&'a str> {
    o.pointer(pointer).and_then(Value::as_str)
}

/// The condition of `type_` in `status.conditions`.
fn condition<'a>(o: &'a Value, type_: &str) -> Option<&'a Value> {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

fn condition_status<'a>(o: &'a Value, type_: &str) -> Option<&'a str> {
    condition(o, type_)
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
}

/// Whether the object reports condition `type_` with `status` (a `check` node's test).
pub fn condition_is(o: &Value, type_: &str, status: &str) -> bool {
    condition_status(o, type_) == Some(status)
}

/// `reason: message` of a condition, or its status.
fn condition_detail(c: &Value) -> String {
    let field = |k: &str| c.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    match (field("reason"), field("message")) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (Some(r), None) => r.to_owned(),
        (None, Some(m)) => m.to_owned(),
        (None, None) => format!("status {}", field("status").unwrap_or("Unknown")),
    }
}

fn condition_true(o: &Value, type_: &str) -> Readiness {
    match condition(o, type_) {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => Readiness::Ready,
        Some(c) => Readiness::Waiting(format!(
            "condition {type_} is not True ({})",
            condition_detail(c)
        )),
        None => Readiness::Waiting(format!("condition {type_} is not reported yet")),
    }
}

/// Whether the controller has seen the latest spec (`kubectl rollout status`'s first check).
fn generation_observed(o: &Value) -> Option<Readiness> {
    let generation = int(o, "/metadata/generation")?;
    let observed = int(o, "/status/observedGeneration").unwrap_or(0);
    (observed < generation).then(|| {
        Readiness::Waiting(format!(
            "waiting for the controller to observe generation {generation} (observed {observed})"
        ))
    })
}

fn deployment(o: &Value) -> Readiness {
    if let Some(w) = generation_observed(o) {
        return w;
    }
    if let Some(c) = condition(o, "Progressing")
        && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
    {
        return Readiness::Failed(format!(
            "the rollout exceeded its progress deadline ({})",
            condition_detail(c)
        ));
    }
    let replicas = int(o, "/spec/replicas").unwrap_or(1);
    let updated = int(o, "/status/updatedReplicas").unwrap_or(0);
    let total = int(o, "/status/replicas").unwrap_or(0);
    let available = int(o, "/status/availableReplicas").unwrap_or(0);
    if updated < replicas {
        return Readiness::Waiting(format!("{updated} of {replicas} replicas updated"));
    }
    if total > updated {
        return Readiness::Waiting(format!(
            "{} old replicas are pending termination",
            total - updated
        ));
    }
    if available < updated {
        return Readiness::Waiting(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    Readiness::Ready
}

fn stateful_set(o: &Value) -> Readiness {
    if let Some(w) = generation_observed(o) {
        return w;
    }
    if text(o, "/spec/updateStrategy/type").is_some_and(|t| t != "RollingUpdate") {
        // kubectl cannot check an OnDelete rollout either: ready once observed.
        return Readiness::Ready;
    }
    let replicas = int(o, "/spec/replicas").unwrap_or(1);
    let ready = int(o, "/status/readyReplicas").unwrap_or(0);
    if ready < replicas {
        return Readiness::Waiting(format!("{ready} of {replicas} pods are ready"));
    }
    if let Some(partition) = int(o, "/spec/updateStrategy/rollingUpdate/partition")
        && partition > 0
    {
        let updated = int(o, "/status/updatedReplicas").unwrap_or(0);
        let wanted = replicas - partition;
        if updated < wanted {
            return Readiness::Waiting(format!(
                "{updated} of {wanted} pods updated (partition {partition})"
            ));
        }
        return Readiness::Ready;
    }
    let current = text(o, "/status/currentRevision");
    let update = text(o, "/status/updateRevision");
    if current != update {
        let updated = int(o, "/status/updatedReplicas").unwrap_or(0);
        return Readiness::Waiting(format!(
            "{updated} of {replicas} pods are at the new revision"
        ));
    }
    Readiness::Ready
}

fn daemon_set(o: &Value) -> Readiness {
    if let Some(w) = generation_observed(o) {
        return w;
    }
    if text(o, "/spec/updateStrategy/type").is_some_and(|t| t != "RollingUpdate") {
        return Readiness::Ready;
    }
    let desired = int(o, "/status/desiredNumberScheduled").unwrap_or(0);
    let updated = int(o, "/status/updatedNumberScheduled").unwrap_or(0);
    let available = int(o, "/status/numberAvailable").unwrap_or(0);
    if updated < desired {
        return Readiness::Waiting(format!("{updated} of {desired} scheduled pods updated"));
    }
    if available < desired {
        return Readiness::Waiting(format!(
            "{available} of {desired} updated pods are available"
        ));
    }
    Readiness::Ready
}

fn job(o: &Value) -> Readiness {
    if condition_status(o, "Failed") == Some("True") {
        let detail = condition(o, "Failed")
            .map(condition_detail)
            .unwrap_or_default();
        return Readiness::Failed(format!("the Job failed ({detail})"));
    }
    if condition_status(o, "Complete") == Some("True") {
        return Readiness::Ready;
    }
    let active = int(o, "/status/active").unwrap_or(0);
    let succeeded = int(o, "/status/succeeded").unwrap_or(0);
    let failed = int(o, "/status/failed").unwrap_or(0);
    let completions = int(o, "/spec/completions").unwrap_or(1);
    Readiness::Waiting(format!(
        "{succeeded} of {completions} completions, {active} active, {failed} failed pods"
    ))
}

fn crd(o: &Value) -> Readiness {
    if condition_status(o, "NamesAccepted") == Some("False") {
        let detail = condition(o, "NamesAccepted")
            .map(condition_detail)
            .unwrap_or_default();
        return Readiness::Failed(format!("the CRD's names were not accepted ({detail})"));
    }
    condition_true(o, "Established")
}

fn namespace(o: &Value) -> Readiness {
    match text(o, "/status/phase") {
        Some("Active") => Readiness::Ready,
        Some(phase) => Readiness::Waiting(format!("phase is {phase}")),
        None => Readiness::Waiting("phase is not reported yet".to_owned()),
    }
}

/// Annotation that asks Linkerd to inject its proxy.
pub const LINKERD_INJECT: &str = "linkerd.io/inject";
/// Annotations that run the Linkerd proxy as a native sidecar (it then stops with the Job).
const LINKERD_NATIVE_SIDECAR: &[&str] = &[
    "config.alpha.linkerd.io/proxy-enable-native-sidecar",
    "config.beta.linkerd.io/proxy-enable-native-sidecar",
];

/// Why a Job that never completes is probably stuck, when it runs with a Linkerd proxy
/// injected the classic way (from the pod template's or the namespace's annotations): the
/// proxy container keeps the pod running after the Job's container exits. None when the Job
/// is not meshed, opts out, or uses native sidecars.
pub fn job_timeout_hint(job: &Value, namespace: Option<&Value>) -> Option<String> {
    let template = job.pointer("/spec/template/metadata/annotations");
    let ns = namespace.and_then(|n| n.pointer("/metadata/annotations"));
    let annotation = |source: Option<&Value>, key: &str| {
        source
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let inject = annotation(template, LINKERD_INJECT).or_else(|| annotation(ns, LINKERD_INJECT))?;
    if !matches!(inject.as_str(), "enabled" | "ingress") {
        return None;
    }
    let native = LINKERD_NATIVE_SIDECAR.iter().any(|key| {
        annotation(template, key)
            .or_else(|| annotation(ns, key))
            .is_some_and(|v| v == "true")
    });
    if native {
        return None;
    }
    let job_name = text(job, "/metadata/name").unwrap_or("the Job");
    let from = if annotation(template, LINKERD_INJECT).is_some() {
        "its pod template".to_owned()
    } else {
        format!(
            "namespace {}",
            text(job, "/metadata/namespace").unwrap_or("default")
        )
    };
    Some(format!(
        "Job {job_name} runs with the Linkerd proxy injected ({LINKERD_INJECT}: {inject} on {from}): \
         the proxy sidecar keeps the pod alive after the Job's container exits, so the Job never \
         completes. Annotate the Job's pod template with `{LINKERD_INJECT}: disabled`, or enable \
         native sidecars (`config.alpha.linkerd.io/proxy-enable-native-sidecar: \"true\"`, \
         Kubernetes 1.29 or later)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(api: &str, kind: &str) -> ObjectRef {
        ObjectRef::new(api, kind, Some("ns"), "x")
    }

    fn builtin(api: &str, kind: &str) -> Rule {
        Rule::Builtin(Rule::builtin(&r(api, kind)).unwrap())
    }

    #[test]
    fn deployments_follow_rollout_status() {
        let rule = builtin("apps/v1", "Deployment");
        let mut d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 3},
            "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}});
        assert!(
            matches!(rule.evaluate(Some(&d)), Readiness::Waiting(m) if m.contains("observe generation 2"))
        );
        d["status"]["observedGeneration"] = json!(2);
        d["status"]["updatedReplicas"] = json!(1);
        assert_eq!(
            rule.evaluate(Some(&d)),
            Readiness::Waiting("1 of 3 replicas updated".into())
        );
        d["status"]["updatedReplicas"] = json!(3);
        d["status"]["replicas"] = json!(4);
        assert!(
            matches!(rule.evaluate(Some(&d)), Readiness::Waiting(m) if m.contains("pending termination"))
        );
        d["status"]["replicas"] = json!(3);
        d["status"]["availableReplicas"] = json!(2);
        assert_eq!(
            rule.evaluate(Some(&d)),
            Readiness::Waiting("2 of 3 updated replicas are available".into())
        );
        d["status"]["availableReplicas"] = json!(3);
        assert_eq!(rule.evaluate(Some(&d)), Readiness::Ready);
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "too slow"}]);
        assert!(matches!(rule.evaluate(Some(&d)), Readiness::Failed(m) if m.contains("too slow")));
        assert!(!rule.evaluate(None).is_final());
    }

    #[test]
    fn stateful_sets_and_daemon_sets() {
        let sts = builtin("apps/v1", "StatefulSet");
        let mut s = json!({"metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": 1, "currentRevision": "a", "updateRevision": "b", "updatedReplicas": 1}});
        assert!(!sts.evaluate(Some(&s)).is_final());
        s["status"]["readyReplicas"] = json!(2);
        assert!(
            matches!(sts.evaluate(Some(&s)), Readiness::Waiting(m) if m.contains("new revision"))
        );
        s["status"]["currentRevision"] = json!("b");
        assert_eq!(sts.evaluate(Some(&s)), Readiness::Ready);
        let ds = builtin("apps/v1", "DaemonSet");
        let mut d = json!({"metadata": {"generation": 3},
            "status": {"observedGeneration": 3, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 1}});
        assert!(matches!(ds.evaluate(Some(&d)), Readiness::Waiting(m) if m.contains("1 of 2")));
        d["status"]["numberAvailable"] = json!(2);
        assert_eq!(ds.evaluate(Some(&d)), Readiness::Ready);
    }

    #[test]
    fn jobs_complete_or_fail() {
        let rule = builtin("batch/v1", "Job");
        let mut j = json!({"spec": {"completions": 1}, "status": {"active": 1}});
        assert!(matches!(rule.evaluate(Some(&j)), Readiness::Waiting(m) if m.contains("1 active")));
        j["status"]["conditions"] =
            json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]);
        assert!(
            matches!(rule.evaluate(Some(&j)), Readiness::Failed(m) if m.contains("BackoffLimitExceeded"))
        );
        j["status"]["conditions"] = json!([{"type": "Complete", "status": "True"}]);
        assert_eq!(rule.evaluate(Some(&j)), Readiness::Ready);
    }

    #[test]
    fn conditions_phases_and_immediate_kinds() {
        let crd = builtin("apiextensions.k8s.io/v1", "CustomResourceDefinition");
        assert!(!crd.evaluate(Some(&json!({}))).is_final());
        let established =
            json!({"status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert_eq!(crd.evaluate(Some(&established)), Readiness::Ready);
        let ns = builtin("v1", "Namespace");
        assert_eq!(
            ns.evaluate(Some(&json!({"status": {"phase": "Active"}}))),
            Readiness::Ready
        );
        assert_eq!(
            ns.evaluate(Some(&json!({"status": {"phase": "Terminating"}}))),
            Readiness::Waiting("phase is Terminating".into())
        );
        let cert = builtin("cert-manager.io/v1", "Certificate");
        let pending = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Issuing", "message": "in progress"}]}});
        assert_eq!(
            cert.evaluate(Some(&pending)),
            Readiness::Waiting("condition Ready is not True (Issuing: in progress)".into())
        );
        assert!(Rule::builtin(&r("cert-manager.io/v1", "ClusterIssuer")).is_some());
        assert!(Rule::builtin(&r("apiregistration.k8s.io/v1", "APIService")).is_some());
        let wait = Wait::default();
        assert_eq!(
            Rule::for_object(&r("v1", "Service"), &wait),
            Some(Rule::Exists)
        );
        assert_eq!(
            Rule::for_object(&r("policy/v1", "PodDisruptionBudget"), &wait),
            Some(Rule::Exists)
        );
        assert_eq!(Rule::Exists.evaluate(Some(&json!({}))), Readiness::Ready);
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert!(!Rule::Exists.evaluate(Some(&deleting)).is_final());
    }

    #[test]
    fn node_wait_settings_choose_the_rule() {
        let custom = Wait {
            enabled: true,
            condition: Some("Synced".into()),
            timeout: None,
        };
        assert_eq!(
            Rule::for_object(&r("example.com/v1", "Widget"), &custom),
            Some(Rule::Condition("Synced".into()))
        );
        // Objects without a status are not held by a custom condition.
        assert_eq!(
            Rule::for_object(&r("v1", "ConfigMap"), &custom),
            Some(Rule::Exists)
        );
        let off = Wait {
            enabled: false,
            condition: None,
            timeout: None,
        };
        assert_eq!(Rule::for_object(&r("apps/v1", "Deployment"), &off), None);
        // CRDs and Namespaces are always waited for.
        assert_eq!(
            Rule::for_object(&ObjectRef::new("v1", "Namespace", None, "n"), &off),
            Some(Rule::Builtin(Builtin::Namespace))
        );
        let rule = Rule::Condition("Synced".into());
        let ok = json!({"status": {"conditions": [{"type": "Synced", "status": "True"}]}});
        assert_eq!(rule.evaluate(Some(&ok)), Readiness::Ready);
        assert_eq!(rule.describe(), "condition Synced=True");
    }

    #[test]
    fn a_check_wants_its_condition_with_its_status() {
        let o = json!({"status": {"conditions": [
            {"type": "Available", "status": "True"},
            {"type": "Degraded", "status": "False"}
        ]}});
        assert!(condition_is(&o, "Available", "True"));
        assert!(condition_is(&o, "Degraded", "False"));
        assert!(!condition_is(&o, "Degraded", "True"));
        assert!(!condition_is(&o, "Ready", "True"));
        assert!(!condition_is(&json!({}), "Available", "True"));
    }

    #[test]
    fn meshed_jobs_get_a_hint() {
        let job = json!({"metadata": {"name": "migrate", "namespace": "app"},
            "spec": {"template": {"metadata": {}}}});
        let meshed = json!({"metadata": {"annotations": {"linkerd.io/inject": "enabled"}}});
        let hint = job_timeout_hint(&job, Some(&meshed)).unwrap();
        assert!(hint.contains("namespace app"), "{hint}");
        assert!(hint.contains("linkerd.io/inject: disabled"), "{hint}");
        assert!(hint.contains("native sidecars"), "{hint}");
        let mut opted_out = job.clone();
        opted_out["spec"]["template"]["metadata"]["annotations"] =
            json!({"linkerd.io/inject": "disabled"});
        assert_eq!(job_timeout_hint(&opted_out, Some(&meshed)), None);
        let mut native = job.clone();
        native["spec"]["template"]["metadata"]["annotations"] =
            json!({"config.alpha.linkerd.io/proxy-enable-native-sidecar": "true"});
        assert_eq!(job_timeout_hint(&native, Some(&meshed)), None);
        assert_eq!(job_timeout_hint(&job, None), None);
        let mut template = job;
        template["spec"]["template"]["metadata"]["annotations"] =
            json!({"linkerd.io/inject": "enabled"});
        assert!(
            job_timeout_hint(&template, None)
                .unwrap()
                .contains("its pod template")
        );
    }
}
