//! `meshplan check`: the health of the applied mesh, the way an operator verifies a Linkerd
//! install with cert-manager by hand.
//!
//! 1. [`facts::gather`] reads the cluster in one place (its clock, `linkerd-config`, the issuer
//!    Secret and Certificate, Deployments, webhooks with dry-run probes, Jobs, namespaces).
//! 2. [`evaluate`] (pure) turns the facts into one [`Outcome`] per check, each passed, warned
//!    or failed, with a hint:
//!    - `control-plane`: a control plane namespace with its `linkerd-config`;
//!    - `trust-anchor`: the trust anchor in `linkerd-config` (`identityTrustAnchorsPEM`) is the
//!      issuer Secret's `ca.crt` (fingerprints of both when not);
//!    - `issuer-chain`: the issuer certificate is a CA signed by the trust anchor;
//!    - `issuer-expiry`, `trust-anchor-expiry`: valid longer than the warn / fail thresholds,
//!      by the cluster's clock;
//!    - `control-plane-workloads`, `viz-workloads`: every Deployment available;
//!    - `webhooks`: every admission webhook of the control plane and viz answers;
//!    - `meshed-jobs`: no Job is kept running by a classic proxy.
//!
//! [`certs`] parses certificates (x509-parser) and computes SHA-256 fingerprints.

pub mod certs;
pub mod facts;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value as Json;

use crate::lint::facts::config_values;
use crate::lint::linkerd::{
    ISSUER_SECRET, LINKERD_CONFIG, control_plane_settings, injection, native_sidecar_annotation,
};

use certs::{Cert, human_duration, is_signed_by, parse_pem_bundle};
pub use facts::{HealthFacts, HealthRequest, ProbeOutcome, WebhookProbe, gather};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub id: &'static str,
    pub status: Status,
    pub message: String,
    /// What to do (or look at), for warnings and failures.
    pub hint: Option<String>,
}

/// When certificates are judged close to expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Warn when a certificate expires within this.
    pub warn: Duration,
    /// Fail when a certificate expires within this.
    pub fail: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            warn: Duration::from_secs(24 * 3600),
            fail: Duration::from_secs(3600),
        }
    }
}

/// Every check's outcome, in a fixed order.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub outcomes: Vec<Outcome>,
    /// The clock the certificates were judged by.
    pub now: jiff::Timestamp,
    pub clock_from_cluster: bool,
}

impl HealthReport {
    pub fn count(&self, status: Status) -> usize {
        self.outcomes.iter().filter(|o| o.status == status).count()
    }

    /// Healthy: nothing failed (and nothing warned, when warnings are denied).
    pub fn is_healthy(&self, deny_warnings: bool) -> bool {
        self.count(Status::Fail) == 0 && (!deny_warnings || self.count(Status::Warn) == 0)
    }
}

fn outcome(id: &'static str, status: Status, message: String, hint: Option<String>) -> Outcome {
    Outcome {
        id,
        status,
        message,
        hint,
    }
}

/// A key of a Secret's `data` (base64-decoded) or `stringData`.
fn secret_text(secret: &Json, key: &str) -> Option<String> {
    if let Some(b64) = secret
        .pointer("/data")
        .and_then(|d| d.get(key))
        .and_then(Json::as_str)
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        return String::from_utf8(bytes).ok();
    }
    secret
        .pointer("/stringData")
        .and_then(|d| d.get(key))
        .and_then(Json::as_str)
        .map(str::to_string)
}

/// Judges the facts.
pub fn evaluate(facts: &HealthFacts, thresholds: &Thresholds) -> HealthReport {
    let mut out = Vec::new();
    let now = facts.now;
    let cp = facts.control_plane_namespace.as_deref();
    let config = match (cp, &facts.linkerd_config) {
        (None, _) => {
            out.push(outcome(
                "control-plane",
                Status::Fail,
                "no Linkerd control plane: the plan installs none and no namespace is labelled \
                 linkerd.io/is-control-plane=true"
                    .into(),
                Some("apply the plan first (meshplan apply)".into()),
            ));
            None
        }
        (Some(ns), None) => {
            out.push(outcome(
                "control-plane",
                Status::Fail,
                format!("namespace {ns} has no {LINKERD_CONFIG} ConfigMap"),
                Some("the control plane is not installed there: apply the plan".into()),
            ));
            None
        }
        (Some(ns), Some(config)) => {
            out.push(outcome(
                "control-plane",
                Status::Pass,
                format!("control plane in namespace {ns} ({LINKERD_CONFIG} found)"),
                None,
            ));
            Some((ns, config_values(config)))
        }
    };

    if let Some((ns, values)) = &config {
        certificates(facts, ns, values, thresholds, &mut out);
    }
    if let Some(ns) = cp {
        out.push(workloads("control-plane-workloads", ns, facts));
    }
    if let Some(ns) = facts.viz_namespace.as_deref() {
        out.push(workloads("viz-workloads", ns, facts));
    }
    out.push(webhooks(facts));
    let native = config
        .as_ref()
        .map(|(_, v)| control_plane_settings(v, None).native_sidecar)
        .unwrap_or(false);
    if cp.is_some() {
        out.push(meshed_jobs(facts, native));
    }
    HealthReport {
        outcomes: out,
        now,
        clock_from_cluster: facts.clock_from_cluster,
    }
}

fn certificates(
    facts: &HealthFacts,
    ns: &str,
    values: &Json,
    thresholds: &Thresholds,
    out: &mut Vec<Outcome>,
) {
    let anchors_pem = values
        .get("identityTrustAnchorsPEM")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let anchors = match parse_pem_bundle(anchors_pem) {
        Ok(a) => a,
        Err(why) => {
            out.push(outcome(
                "trust-anchor",
                Status::Fail,
                format!("identityTrustAnchorsPEM of {ns}/{LINKERD_CONFIG} is unusable: {why}"),
                Some(
                    "install the control plane with the trust anchor (the issuer's ca.crt)".into(),
                ),
            ));
            return;
        }
    };
    let secret_name = format!("{ns}/{ISSUER_SECRET}");
    let Some(secret) = &facts.issuer_secret else {
        out.push(outcome(
            "trust-anchor",
            Status::Fail,
            format!("there is no Secret {secret_name}: the identity issuer is missing"),
            Some(
                "the issuer Certificate (cert-manager) writes it: check that the Certificate \
                 exists and is Ready"
                    .into(),
            ),
        ));
        return;
    };
    let anchor_prints: Vec<&str> = anchors.iter().map(|a| a.fingerprint.as_str()).collect();
    match secret_text(secret, "ca.crt").map(|t| parse_pem_bundle(&t)) {
        Some(Ok(ca)) => {
            let ca = &ca[0];
            if anchor_prints.contains(&ca.fingerprint.as_str()) {
                out.push(outcome(
                    "trust-anchor",
                    Status::Pass,
                    format!(
                        "the trust anchor in {ns}/{LINKERD_CONFIG} is the issuer's CA (ca.crt of \
                         Secret {secret_name}, SHA-256 {})",
                        ca.fingerprint
                    ),
                    None,
                ));
            } else {
                out.push(outcome(
                    "trust-anchor",
                    Status::Fail,
                    format!(
                        "the trust anchor in {ns}/{LINKERD_CONFIG} (SHA-256 {}) is not the \
                         issuer's CA (ca.crt of Secret {secret_name}, SHA-256 {})",
                        anchor_prints.join(", "),
                        ca.fingerprint
                    ),
                    Some(
                        "proxies will not trust the certificates the issuer signs: install the \
                         control plane with identityTrustAnchorsPEM set to the issuer's ca.crt \
                         (re-apply the plan), or rotate the trust anchor as Linkerd's docs \
                         describe"
                            .into(),
                    ),
                ));
            }
        }
        Some(Err(why)) => out.push(outcome(
            "trust-anchor",
            Status::Fail,
            format!("ca.crt of Secret {secret_name} is unusable: {why}"),
            None,
        )),
        None => out.push(outcome(
            "trust-anchor",
            Status::Warn,
            format!("Secret {secret_name} has no ca.crt: the trust anchor cannot be compared"),
            Some(
                "with cert-manager (scheme kubernetes.io/tls) the issuer Secret holds ca.crt"
                    .into(),
            ),
        )),
    }

    let issuer_pem = secret_text(secret, "tls.crt").or_else(|| secret_text(secret, "crt.pem"));
    let issuer = match issuer_pem.map(|t| parse_pem_bundle(&t)) {
        Some(Ok(certs)) => certs.into_iter().next(),
        Some(Err(why)) => {
            out.push(outcome(
                "issuer-chain",
                Status::Fail,
                format!("the issuer certificate of Secret {secret_name} is unusable: {why}"),
                None,
            ));
            None
        }
        None => {
            out.push(outcome(
                "issuer-chain",
                Status::Fail,
                format!("Secret {secret_name} holds no certificate (tls.crt)"),
                None,
            ));
            None
        }
    };
    if let Some(issuer) = &issuer {
        let signer = anchors.iter().find(|a| is_signed_by(issuer, a));
        let (status, message) = match (issuer.is_ca, signer) {
            (false, _) => (
                Status::Fail,
                format!("the issuer certificate {} is not a CA", issuer.subject),
            ),
            (true, None) => (
                Status::Fail,
                format!(
                    "the issuer certificate {} (SHA-256 {}) is not signed by the trust anchor \
                     (SHA-256 {})",
                    issuer.subject,
                    issuer.fingerprint,
                    anchor_prints.join(", ")
                ),
            ),
            (true, Some(anchor)) => (
                Status::Pass,
                format!(
                    "the issuer certificate {} is a CA signed by the trust anchor {}",
                    issuer.subject, anchor.subject
                ),
            ),
        };
        let hint = (status != Status::Pass).then(|| {
            "issue the identity issuer from the trust anchor's CA (isCA: true), as the plan's \
             issuer Certificate does"
                .to_string()
        });
        out.push(outcome("issuer-chain", status, message, hint));
        let mut expiry_outcome = expiry(
            "issuer-expiry",
            "the issuer certificate",
            std::slice::from_ref(issuer),
            facts.now,
            thresholds,
        );
        if expiry_outcome.status != Status::Pass
            && let Some(cert) = &facts.issuer_certificate
            && let Some(renewal) = cert.pointer("/status/renewalTime").and_then(Json::as_str)
            && renewal
                .parse::<jiff::Timestamp>()
                .is_ok_and(|t| t < facts.now)
        {
            expiry_outcome.hint = Some(format!(
                "cert-manager should have renewed it at {renewal} (Certificate {}/{}): check \
                 that cert-manager runs and the Certificate is Ready",
                cert.pointer("/metadata/namespace")
                    .and_then(Json::as_str)
                    .unwrap_or_default(),
                cert.pointer("/metadata/name")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
            ));
        }
        out.push(expiry_outcome);
    }
    out.push(expiry(
        "trust-anchor-expiry",
        "the trust anchor",
        &anchors,
        facts.now,
        thresholds,
    ));
}

/// Expiry of the certificate that expires first.
fn expiry(
    id: &'static str,
    what: &str,
    certs: &[Cert],
    now: jiff::Timestamp,
    thresholds: &Thresholds,
) -> Outcome {
    let Some(cert) = certs.iter().min_by_key(|c| c.not_after) else {
        return outcome(id, Status::Fail, format!("{what}: no certificate"), None);
    };
    let renew = Some(format!(
        "renew {what} (cert-manager renews a Certificate at its renewBefore; check that it runs)"
    ));
    if cert.not_before > now {
        return outcome(
            id,
            Status::Fail,
            format!(
                "{what} is not valid before {} (the cluster's clock says {now})",
                cert.not_before
            ),
            Some("check the clocks of the cluster and of the issuer".into()),
        );
    }
    let left = cert.not_after.as_second() - now.as_second();
    let left_text = human_duration(left);
    let limit = |d: Duration| human_duration(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if left <= 0 {
        return outcome(
            id,
            Status::Fail,
            format!(
                "{what} expired at {} ({} ago)",
                cert.not_after,
                human_duration(-left)
            ),
            renew,
        );
    }
    let within = |d: Duration| u64::try_from(left).is_ok_and(|l| l < d.as_secs());
    if within(thresholds.fail) {
        return outcome(
            id,
            Status::Fail,
            format!(
                "{what} expires in {left_text} (at {}), within the fail threshold of {}",
                cert.not_after,
                limit(thresholds.fail)
            ),
            renew,
        );
    }
    if within(thresholds.warn) {
        return outcome(
            id,
            Status::Warn,
            format!(
                "{what} expires in {left_text} (at {}), within the warn threshold of {}",
                cert.not_after,
                limit(thresholds.warn)
            ),
            renew,
        );
    }
    outcome(
        id,
        Status::Pass,
        format!(
            "{what} is valid until {} ({left_text} left)",
            cert.not_after
        ),
        None,
    )
}

/// Whether a Deployment is available (its `Available` condition, else its replica counts).
fn is_available(d: &Json) -> bool {
    let conditions = d
        .pointer("/status/conditions")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(c) = conditions
        .iter()
        .find(|c| c.get("type").and_then(Json::as_str) == Some("Available"))
    {
        return c.get("status").and_then(Json::as_str) == Some("True");
    }
    let wanted = d
        .pointer("/spec/replicas")
        .and_then(Json::as_i64)
        .unwrap_or(1);
    let available = d
        .pointer("/status/availableReplicas")
        .and_then(Json::as_i64)
        .unwrap_or(0);
    available >= wanted
}

fn workloads(id: &'static str, ns: &str, facts: &HealthFacts) -> Outcome {
    let deployments = facts.deployments.get(ns).cloned().unwrap_or_default();
    if deployments.is_empty() {
        return outcome(
            id,
            Status::Fail,
            format!("namespace {ns} has no Deployments"),
            Some("apply the plan".into()),
        );
    }
    let name = |d: &Json| {
        d.pointer("/metadata/name")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let down: Vec<String> = deployments
        .iter()
        .filter(|d| !is_available(d))
        .map(name)
        .collect();
    if down.is_empty() {
        let names: Vec<String> = deployments.iter().map(name).collect();
        outcome(
            id,
            Status::Pass,
            format!(
                "{} Deployments of {ns} available ({})",
                names.len(),
                names.join(", ")
            ),
            None,
        )
    } else {
        outcome(
            id,
            Status::Fail,
            format!("Deployments of {ns} not available: {}", down.join(", ")),
            Some(format!(
                "look at them with `kubectl -n {ns} rollout status deployment/{}` and their pods' \
                 events",
                down[0]
            )),
        )
    }
}

fn webhooks(facts: &HealthFacts) -> Outcome {
    const ID: &str = "webhooks";
    if facts.webhooks.is_empty() {
        return outcome(
            ID,
            Status::Warn,
            "no admission webhook of the control plane or viz was found".into(),
            Some("Linkerd's proxy injector is a webhook: check the control plane install".into()),
        );
    }
    let mut unreachable = Vec::new();
    let mut not_probed = Vec::new();
    let mut answered = Vec::new();
    for w in &facts.webhooks {
        match &w.outcome {
            ProbeOutcome::Answered => answered.push(w.webhook.clone()),
            ProbeOutcome::Unreachable(message) => unreachable.push(format!(
                "{} of {} (Service {}): {message}",
                w.webhook, w.configuration, w.service
            )),
            ProbeOutcome::NotProbed(why) => {
                not_probed.push(format!("{} of {}: {why}", w.webhook, w.configuration))
            }
        }
    }
    if !unreachable.is_empty() {
        return outcome(
            ID,
            Status::Fail,
            format!(
                "admission webhooks do not answer: {}",
                unreachable.join("; ")
            ),
            Some(
                "writes they guard fail (or, with failurePolicy Ignore, pods start without a \
                 proxy): check the webhook's Deployment and Service"
                    .into(),
            ),
        );
    }
    if !not_probed.is_empty() {
        return outcome(
            ID,
            Status::Warn,
            format!("admission webhooks not probed: {}", not_probed.join("; ")),
            None,
        );
    }
    outcome(
        ID,
        Status::Pass,
        format!(
            "{} admission webhooks answer ({})",
            answered.len(),
            answered.join(", ")
        ),
        None,
    )
}

fn meshed_jobs(facts: &HealthFacts, native: bool) -> Outcome {
    const ID: &str = "meshed-jobs";
    let mut stuck = Vec::new();
    for job in &facts.jobs {
        let active = job
            .pointer("/status/active")
            .and_then(Json::as_i64)
            .unwrap_or(0);
        let finished = job
            .pointer("/status/conditions")
            .and_then(Json::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    matches!(
                        c.get("type").and_then(Json::as_str),
                        Some("Complete" | "Failed")
                    ) && c.get("status").and_then(Json::as_str) == Some("True")
                })
            });
        if active == 0 || finished {
            continue;
        }
        let ns = job
            .pointer("/metadata/namespace")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let meta = facts.namespaces.get(ns);
        let Some(template) = job.pointer("/spec/template") else {
            continue;
        };
        if injection(template, ns, meta).is_none()
            || native
            || native_sidecar_annotation(template, meta).is_some()
        {
            continue;
        }
        let name = job
            .pointer("/metadata/name")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let since = job
            .pointer("/status/startTime")
            .and_then(Json::as_str)
            .map(|t| format!(" (running since {t})"))
            .unwrap_or_default();
        stuck.push(format!("{ns}/{name}{since}"));
    }
    if stuck.is_empty() {
        return outcome(
            ID,
            Status::Pass,
            "no Job is kept running by a Linkerd proxy".into(),
            None,
        );
    }
    outcome(
        ID,
        Status::Fail,
        format!(
            "Jobs stuck with a Linkerd proxy (its container keeps the pod running): {}",
            stuck.join(", ")
        ),
        Some(
            "annotate the Jobs' pod templates with linkerd.io/inject: disabled (`meshplan lint` \
             finds these before apply) or run proxies as native sidecars, then delete the stuck \
             Jobs"
                .into(),
        ),
    )
}

/// The namespaces the plan installs the control plane and viz into.
pub fn plan_namespaces(plan: &crate::model::Plan) -> HealthRequest {
    let mut request = HealthRequest::default();
    for node in plan.nodes.values() {
        let crate::model::NodeSpec::Helm(helm) = &node.spec else {
            continue;
        };
        let name = crate::lint::context::chart_name(helm);
        let namespace = match &node.namespace {
            None => Some("default".to_string()),
            Some(t) => match t.evaluate(&plan.static_scope()) {
                Ok(Json::String(s)) => Some(s),
                _ => None,
            },
        };
        if crate::lint::linkerd::is_control_plane_chart(&name) {
            request.control_plane_namespace = namespace;
        } else if crate::lint::linkerd::is_viz_chart(&name) {
            request.viz_namespace = namespace;
        }
    }
    request
}

/// Outcomes by id (for tests and JSON).
pub fn by_id(report: &HealthReport) -> BTreeMap<&'static str, &Outcome> {
    report.outcomes.iter().map(|o| (o.id, o)).collect()
}
