//! Fault injection, request counters and the audit log, and the routes of the admin endpoint
//! that exposes them (`/_sandbox/...`, bearer token required like every other request; served
//! by the `admin_api` module over the shared state).
//!
//! 1. Every API request (not admin requests) is classified into a [`RequestInfo`] (verb,
//!    resource, namespace, name) before it runs.
//! 2. [`Observer::faults_for`] counts it against every [`FaultRule`] that matches (each rule
//!    counts its own matches) and returns what to inject: added latency, an error Status, or a
//!    dropped connection, for the rule's `nth` match (and `times - 1` more after it).
//! 3. After the response is decided, [`Observer::record`] bumps the counter of (verb,
//!    resource) and appends an [`AuditEntry`] to the in-memory log and, as a JSON line, to
//!    the audit files (the data directory's `audit.log`, `--audit FILE`).
//!
//! Admin endpoint (JSON):
//! - `GET /_sandbox/faults`, `POST /_sandbox/faults` (a [`FaultRule`]), `DELETE /_sandbox/faults`
//! - `POST /_sandbox/watches/close`: ends every open watch stream
//! - `POST /_sandbox/controllers/{name}/pause`, `POST /_sandbox/controllers/{name}/resume`
//! - `GET /_sandbox/audit` (`?since=SEQ`), `GET /_sandbox/counters`
//! - `GET /_sandbox/clock`, `POST /_sandbox/clock/advance` (`{"seconds": N}`): the cluster's
//!   virtual clock (see [`crate::clock`])

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::status::ApiError;

/// How many audit entries stay in memory (the files keep all of them).
pub(crate) const AUDIT_MEMORY_LIMIT: usize = 100_000;

/// What a fault does to the request it hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum FaultAction {
    /// Answer this HTTP code with a Status body (500 InternalError, 409 Conflict, 429
    /// TooManyRequests and 503 ServiceUnavailable with `Retry-After: 1`, others a generic
    /// Status).
    Error { code: u16 },
    /// Close the connection without answering.
    Drop,
    /// Wait this long before handling the request.
    Latency { ms: u64 },
}

/// The verb filter that matches every write that changes the store, whatever its verb.
pub const WRITE_VERB: &str = "write";

/// Whether `req` changes the store: a mutating verb and no `dryRun` parameter.
fn is_write(req: &RequestInfo) -> bool {
    matches!(
        req.verb.as_str(),
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) && !req.query.split('&').any(|p| p.starts_with("dryRun="))
}

fn one() -> u64 {
    1
}

/// A fault rule. Empty filters match everything; `resource` is the plural (`configmaps`) or
/// the plural with its subresource (`deployments/status`); `verb` is the Kubernetes verb
/// (get, list, watch, create, update, patch, delete, deletecollection), or [`WRITE_VERB`]
/// for every write that changes the store (create, update, patch, delete, deletecollection
/// without `dryRun`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Resources (plurals) the rule never matches, e.g. `leases` to leave a client's locks
    /// alone while faulting everything else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
    /// The first matching request (1-based, counted per rule) that the fault hits.
    #[serde(default = "one")]
    pub nth: u64,
    /// How many consecutive matching requests it hits from the `nth` on.
    #[serde(default = "one")]
    pub times: u64,
    /// After its first hit, the rule matches only requests with the same verb for the same
    /// object: its `times` hits are one request and the client's retries of it, whatever
    /// other requests run at the same time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sticky: bool,
    pub action: FaultAction,
}

impl FaultRule {
    /// A rule for the `nth` request matching `verb` and `resource`.
    pub fn new(verb: &str, resource: &str, nth: u64, action: FaultAction) -> Self {
        Self {
            verb: Some(verb.to_string()),
            resource: Some(resource.to_string()),
            namespace: None,
            name: None,
            except: Vec::new(),
            nth,
            times: 1,
            sticky: false,
            action,
        }
    }

    /// Fails the request it hits first and its retries, `attempts` in all (a failure that
    /// outlasts a client's retries): [`FaultRule::sticky`] with `times = attempts`.
    pub fn persistent(mut self, attempts: u64) -> Self {
        self.times = attempts;
        self.sticky = true;
        self
    }

    /// Lifts the resource filter: the rule matches requests for every resource.
    pub fn all_resources(mut self) -> Self {
        self.resource = None;
        self
    }

    /// Excludes a resource (plural) from the rule.
    pub fn except(mut self, resource: &str) -> Self {
        self.except.push(resource.to_string());
        self
    }

    /// Restricts the rule to one object name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    fn matches(&self, req: &RequestInfo) -> bool {
        let eq =
            |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        let resource_ok = self.resource.as_deref().is_none_or(|r| {
            r == req.resource || req.resource.split('/').next() == Some(r) && !r.contains('/')
        });
        let verb_ok = match self.verb.as_deref() {
            Some(WRITE_VERB) => is_write(req),
            _ => eq(&self.verb, &req.verb),
        };
        let excepted = self
            .except
            .iter()
            .any(|r| req.resource.split('/').next() == Some(r.as_str()));
        req.is_resource
            && !excepted
            && verb_ok
            && resource_ok
            && eq(&self.namespace, &req.namespace)
            && eq(&self.name, &req.name)
    }
}

/// A rule as listed by the admin endpoint: the rule and how many requests it matched.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FaultState {
    pub id: u64,
    #[serde(flatten)]
    pub rule: FaultRule,
    pub matched: u64,
    /// A sticky rule's object after its first hit: (verb, resource, namespace, name).
    #[serde(skip)]
    pub pinned: Option<(String, String, String, String)>,
}

/// A request as the observer sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestInfo {
    /// An API resource request (not discovery, OpenAPI, health).
    pub is_resource: bool,
    pub verb: String,
    /// Plural, or `plural/subresource`; for other requests the path.
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub field_manager: Option<String>,
    /// Who it was served as; empty when refused with 401.
    pub user: String,
}

/// One audit log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// 1, 2, 3... in the order the responses were decided.
    pub seq: u64,
    /// RFC 3339 with milliseconds.
    pub time: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub verb: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// HTTP status; 0 when the connection was dropped by a fault.
    pub status: u16,
    /// `meshplan-sandbox` (token or client certificate), `system:anonymous`, or empty (401).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_manager: Option<String>,
    /// The injected fault, if one hit this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// What to do to one request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Injection {
    pub latency: Duration,
    /// An error to answer, or a drop (None inside), from the first hitting rule.
    pub outcome: Option<Option<ApiError>>,
}

impl Injection {
    pub(crate) fn describe(&self) -> Option<String> {
        match &self.outcome {
            Some(Some(e)) => Some(format!("error {}", e.code)),
            Some(None) => Some("drop".into()),
            None if !self.latency.is_zero() => {
                Some(format!("latency {}ms", self.latency.as_millis()))
            }
            None => None,
        }
    }
}

/// Faults, counters and the audit log, behind one lock in the shared state.
#[derive(Debug, Default)]
pub(crate) struct Observer {
    rules: Vec<FaultState>,
    next_rule: u64,
    counters: BTreeMap<(String, String), u64>,
    /// The latest entries, oldest first; a deque, so that dropping the oldest once the limit
    /// is reached costs nothing (a `Vec` moved all 100,000 entries on every request).
    audit: VecDeque<AuditEntry>,
    seq: u64,
    files: Vec<(PathBuf, std::fs::File)>,
}

/// Why an audit file cannot be opened.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot open the audit log {path}")]
#[diagnostic(code(sandbox::audit))]
pub struct AuditFileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The error a fault of `code` answers with.
pub(crate) fn fault_error(code: u16, req: &RequestInfo) -> ApiError {
    let name = if req.name.is_empty() {
        "unknown"
    } else {
        &req.name
    };
    let resource = req.resource.split('/').next().unwrap_or("");
    match code {
        409 => ApiError {
            code,
            reason: "Conflict".into(),
            message: format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been \
                 modified; please apply your changes to the latest version and try again"
            ),
            details: None,
        },
        429 => ApiError {
            code,
            reason: "TooManyRequests".into(),
            message: "the server has received too many requests and has asked us to try again \
                      later"
                .into(),
            details: None,
        },
        503 => ApiError {
            code,
            reason: "ServiceUnavailable".into(),
            message: "the server is currently unable to handle the request".into(),
            details: None,
        },
        500 => ApiError::internal_error("Internal error occurred: injected fault"),
        _ => ApiError {
            code,
            reason: String::new(),
            message: format!("injected fault (HTTP {code})"),
            details: None,
        },
    }
}

impl Observer {
    /// Opens (appending) the audit files.
    pub(crate) fn open_files(&mut self, paths: &[PathBuf]) -> Result<(), AuditFileError> {
        for path in paths {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| AuditFileError {
                    path: path.clone(),
                    source,
                })?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| AuditFileError {
                    path: path.clone(),
                    source,
                })?;
            self.files.push((path.clone(), file));
        }
        Ok(())
    }

    /// Adds a rule; returns its id.
    pub(crate) fn add_fault(&mut self, rule: FaultRule) -> u64 {
        self.next_rule += 1;
        self.rules.push(FaultState {
            id: self.next_rule,
            rule,
            matched: 0,
            pinned: None,
        });
        self.next_rule
    }

    pub(crate) fn clear_faults(&mut self) {
        self.rules.clear();
    }

    pub(crate) fn faults(&self) -> Vec<FaultState> {
        self.rules.clone()
    }

    /// Counts `req` against every rule and returns what to inject.
    pub(crate) fn faults_for(&mut self, req: &RequestInfo) -> Injection {
        let mut injection = Injection::default();
        for state in &mut self.rules {
            if !state.rule.matches(req) {
                continue;
            }
            let object = || {
                (
                    req.verb.clone(),
                    req.resource.clone(),
                    req.namespace.clone(),
                    req.name.clone(),
                )
            };
            if state.pinned.as_ref().is_some_and(|p| *p != object()) {
                continue;
            }
            state.matched += 1;
            let first = state.rule.nth.max(1);
            let hits =
                state.matched >= first && state.matched < first.saturating_add(state.rule.times);
            if !hits {
                continue;
            }
            if state.rule.sticky && state.pinned.is_none() {
                state.pinned = Some(object());
            }
            match &state.rule.action {
                FaultAction::Latency { ms } => injection.latency += Duration::from_millis(*ms),
                FaultAction::Error { code } if injection.outcome.is_none() => {
                    injection.outcome = Some(Some(fault_error(*code, req)));
                }
                FaultAction::Drop if injection.outcome.is_none() => injection.outcome = Some(None),
                _ => {}
            }
        }
        injection
    }

    /// Counts and logs one answered (or dropped) request.
    pub(crate) fn record(&mut self, req: &RequestInfo, status: u16, fault: Option<String>) {
        *self
            .counters
            .entry((req.verb.clone(), req.resource.clone()))
            .or_insert(0) += 1;
        self.seq += 1;
        let entry = AuditEntry {
            seq: self.seq,
            time: jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            verb: req.verb.clone(),
            resource: req.resource.clone(),
            namespace: req.namespace.clone(),
            name: req.name.clone(),
            status,
            user: req.user.clone(),
            field_manager: req.field_manager.clone(),
            fault,
        };
        if !self.files.is_empty()
            && let Ok(mut line) = serde_json::to_vec(&entry)
        {
            line.push(b'\n');
            for (path, file) in &mut self.files {
                if let Err(e) = file.write_all(&line) {
                    tracing::warn!("cannot write the audit log {}: {e}", path.display());
                }
            }
        }
        self.audit.push_back(entry);
        while self.audit.len() > AUDIT_MEMORY_LIMIT {
            self.audit.pop_front();
        }
    }

    /// Audit entries with a sequence number above `since`.
    pub(crate) fn audit_since(&self, since: u64) -> Vec<AuditEntry> {
        let start = self.audit.partition_point(|e| e.seq <= since);
        self.audit.range(start..).cloned().collect()
    }

    /// Requests per (verb, resource).
    pub(crate) fn counters(&self) -> BTreeMap<(String, String), u64> {
        self.counters.clone()
    }
}

/// The audit log of a data directory.
pub(crate) fn data_dir_audit_path(dir: &Path) -> PathBuf {
    dir.join("audit.log")
}

/// The counters as the admin endpoint lists them.
pub(crate) fn counters_json(counters: &BTreeMap<(String, String), u64>) -> Value {
    let items: Vec<Value> = counters
        .iter()
        .map(
            |((verb, resource), count)| json!({"verb": verb, "resource": resource, "count": count}),
        )
        .collect();
    json!({ "counters": items })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(verb: &str, resource: &str, name: &str) -> RequestInfo {
        RequestInfo {
            is_resource: true,
            verb: verb.into(),
            resource: resource.into(),
            name: name.into(),
            ..RequestInfo::default()
        }
    }

    #[test]
    fn a_persistent_rule_hits_one_object_and_its_retries_only() {
        let mut obs = Observer::default();
        obs.add_fault(
            FaultRule::new("patch", "", 2, FaultAction::Error { code: 500 })
                .all_resources()
                .persistent(3),
        );
        let mut hit = |name: &str| {
            obs.faults_for(&req("patch", "configmaps", name))
                .outcome
                .is_some()
        };
        // The first match passes; the second (b) is hit, and from then on only b is.
        assert!(!hit("a"));
        assert!(hit("b"));
        assert!(!hit("c"), "another object is not hit");
        assert!(hit("b"), "b's retry is hit");
        assert!(!hit("a"));
        assert!(hit("b"), "b's second retry is hit");
        assert!(!hit("b"), "three hits in all");
    }

    #[test]
    fn a_rule_hits_its_nth_match_only() {
        let mut obs = Observer::default();
        obs.add_fault(FaultRule::new(
            "create",
            "configmaps",
            3,
            FaultAction::Error { code: 500 },
        ));
        let mut hits = Vec::new();
        for i in 1..=5 {
            // Non-matching requests in between do not count.
            assert!(
                obs.faults_for(&req("get", "configmaps", "x"))
                    .outcome
                    .is_none()
            );
            if obs
                .faults_for(&req("create", "configmaps", ""))
                .outcome
                .is_some()
            {
                hits.push(i);
            }
        }
        assert_eq!(hits, vec![3]);
        assert_eq!(obs.faults()[0].matched, 5);
    }

    #[test]
    fn the_write_verb_counts_only_writes_that_change_the_store() {
        let mut obs = Observer::default();
        obs.add_fault(
            FaultRule::new(WRITE_VERB, "", 2, FaultAction::Error { code: 500 }).all_resources(),
        );
        let dry = RequestInfo {
            query: "dryRun=All&fieldManager=meshplan".into(),
            ..req("patch", "configmaps", "a")
        };
        let seen: Vec<bool> = [
            req("get", "configmaps", "a"),
            dry.clone(),
            req("patch", "configmaps", "a"),
            req("list", "secrets", ""),
            dry,
            req("delete", "deployments", "web"),
            req("create", "namespaces", ""),
        ]
        .iter()
        .map(|r| obs.faults_for(r).outcome.is_some())
        .collect();
        // Only the delete, the second real write, is hit.
        assert_eq!(seen, [false, false, false, false, false, true, false]);
        assert_eq!(obs.faults()[0].matched, 3);
    }

    #[test]
    fn subresource_rules_and_names_filter() {
        let rule = FaultRule::new("patch", "deployments", 1, FaultAction::Drop).named("web");
        assert!(rule.matches(&req("patch", "deployments/status", "web")));
        assert!(!rule.matches(&req("patch", "deployments", "api")));
        let status_only = FaultRule::new("patch", "deployments/status", 1, FaultAction::Drop);
        assert!(!status_only.matches(&req("patch", "deployments", "web")));
    }

    #[test]
    fn conflict_and_throttle_bodies_carry_their_reasons() {
        let r = req("update", "configmaps", "cm1");
        let e = fault_error(409, &r);
        assert_eq!(e.reason, "Conflict");
        assert!(e.message.contains("configmaps \"cm1\""));
        assert_eq!(fault_error(429, &r).reason, "TooManyRequests");
    }

    #[test]
    fn the_audit_in_memory_keeps_the_latest_entries() {
        let mut obs = Observer::default();
        for _ in 0..AUDIT_MEMORY_LIMIT + 5 {
            obs.record(&req("get", "configmaps", "a"), 200, None);
        }
        let all = obs.audit_since(0);
        assert_eq!(all.len(), AUDIT_MEMORY_LIMIT);
        assert_eq!(all.first().map(|e| e.seq), Some(6));
        assert_eq!(
            all.last().map(|e| e.seq),
            Some(AUDIT_MEMORY_LIMIT as u64 + 5)
        );
        let last = obs.audit_since(AUDIT_MEMORY_LIMIT as u64 + 3);
        assert_eq!(
            last.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [AUDIT_MEMORY_LIMIT as u64 + 4, AUDIT_MEMORY_LIMIT as u64 + 5]
        );
    }

    #[test]
    fn record_counts_and_audits_in_order() {
        let mut obs = Observer::default();
        obs.record(&req("get", "configmaps", "a"), 200, None);
        obs.record(&req("get", "configmaps", "b"), 404, None);
        obs.record(&req("create", "secrets", ""), 201, None);
        let c = obs.counters();
        assert_eq!(c[&("get".to_string(), "configmaps".to_string())], 2);
        assert_eq!(obs.audit_since(1).len(), 2);
        assert_eq!(obs.audit_since(0)[1].status, 404);
    }
}
