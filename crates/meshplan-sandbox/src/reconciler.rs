//! The controller loop: runs the pure controllers of [`super::controllers`] against the store,
//! and the admission check that simulates unreachable webhooks.
//!
//! 1. The loop wakes on every committed write (the store's broadcast of events), on a
//!    timer when a configured delay or a certificate's renewal time comes due, on a
//!    pause/resume, and ends with the sandbox.
//! 2. Each pass snapshots what the controllers read (under the store lock), computes the
//!    writes without the lock (certificate issuance generates keys), then commits them through
//!    the same write path as API requests: statuses through the status subresource with the
//!    snapshot's resourceVersion (a concurrent change makes the write a conflict, and the
//!    next pass retries), Secrets by server-side apply. Each write bumps the resourceVersion
//!    and emits watch events like any other.
//! 3. Passes are idempotent: the controllers return nothing when the stored status is
//!    already what they would write, so the loop settles.
//!
//! Managers recorded in managedFields: `kube-controller-manager` (workloads, Jobs),
//! `kube-apiserver` (Namespaces, APIServices), `cert-manager-certificates-issuing`
//! (Certificate Secrets and statuses), `cert-manager-issuers` and
//! `cert-manager-clusterissuers` (issuer statuses), `cert-manager-cainjector` (the CA
//! bundles of annotated webhooks, CRDs and APIServices).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::config::{Controller, ControllerConfig, Pauses};
use super::controllers::{cainjector, certmanager, linkerd, webhooks, workloads};
use super::request::FieldValidation;
use super::shared::Shared;
use super::status::ApiError;
use super::store::{Event, Key, State, key};
use super::write::{self, PatchKind, WriteOptions};

const MANAGER_KCM: &str = "kube-controller-manager";
const MANAGER_APISERVER: &str = "kube-apiserver";
const MANAGER_ISSUING: &str = "cert-manager-certificates-issuing";

const WORKLOAD_KINDS: &[(&str, &str)] = &[
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("apps", "replicasets"),
    ("batch", "jobs"),
];

/// One write the pass decided on.
enum Action {
    Status {
        group: &'static str,
        resource: &'static str,
        object: Value,
        status: Value,
        manager: &'static str,
    },
    Apply {
        group: &'static str,
        resource: &'static str,
        object: Value,
        manager: &'static str,
        /// Committed only when the apply succeeded (a Certificate's status after its Secret).
        then: Option<Box<Action>>,
    },
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn obj_key(group: &str, resource: &str, obj: &Value) -> Key {
    key(
        group,
        resource,
        meta_str(obj, "namespace"),
        meta_str(obj, "name"),
    )
}

fn to_instant(at: Timestamp) -> Instant {
    let wait = at.duration_since(Timestamp::now());
    let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
    Instant::now() + wait
}

/// The loop's memory between passes.
struct LoopState {
    config: ControllerConfig,
    clock: Option<certmanager::Clock>,
    /// Workloads waiting for their delay: generation seen and when it is due.
    pending: BTreeMap<Key, (i64, Instant)>,
}

/// What one pass reads.
struct Snapshot {
    workloads: Vec<(&'static str, &'static str, Value)>,
    namespaces: Vec<Value>,
    apiservices: Vec<Value>,
    deployments: Vec<Value>,
    linkerd_config: Option<Value>,
    cert_manager: bool,
    issuers: Vec<Value>,
    cluster_issuers: Vec<Value>,
    certificates: Vec<Value>,
    secrets: BTreeMap<(String, String), Value>,
    /// Objects that ask cert-manager's CA injector for a CA bundle.
    injectable: Vec<(cainjector::Target, Value)>,
}

fn snapshot(st: &State, cfg: &ControllerConfig, pauses: &Pauses) -> Snapshot {
    let all =
        |g: &str, r: &str| -> Vec<Value> { st.list(g, r, None).into_iter().cloned().collect() };
    let workloads_on = cfg.workloads && !pauses.is_paused(Controller::Workloads);
    let mut workloads = Vec::new();
    if workloads_on {
        for (g, r) in WORKLOAD_KINDS {
            for o in st.list(g, r, None) {
                workloads.push((*g, *r, o.clone()));
            }
        }
    }
    let cert_manager = cfg.cert_manager
        && !pauses.is_paused(Controller::CertManager)
        && st
            .registry
            .find_any_version(certmanager::GROUP, "certificates")
            .is_some();
    let mut secrets = BTreeMap::new();
    if cert_manager {
        for s in st.list("", "secrets", None) {
            secrets.insert(
                (
                    meta_str(s, "namespace").to_string(),
                    meta_str(s, "name").to_string(),
                ),
                s.clone(),
            );
        }
    }
    let mut injectable = Vec::new();
    if cert_manager {
        for target in cainjector::Target::ALL {
            let (group, resource, ..) = target.resource();
            for o in st.list(group, resource, None) {
                if cainjector::wants_injection(o) && !write::is_deleting(o) {
                    injectable.push((target, o.clone()));
                }
            }
        }
    }
    let namespaces = all("", "namespaces");
    // The control plane's configuration, in a namespace labelled as the control plane.
    let linkerd_config = namespaces
        .iter()
        .filter(|ns| {
            ns.pointer("/metadata/labels")
                .and_then(|l| l.get(linkerd::CONTROL_PLANE_LABEL))
                .and_then(Value::as_str)
                == Some("true")
        })
        .find_map(|ns| {
            st.get(&key(
                "",
                "configmaps",
                meta_str(ns, "name"),
                "linkerd-config",
            ))
        })
        .cloned();
    Snapshot {
        workloads,
        namespaces,
        apiservices: if workloads_on {
            all("apiregistration.k8s.io", "apiservices")
        } else {
            Vec::new()
        },
        deployments: all("apps", "deployments"),
        linkerd_config,
        cert_manager,
        issuers: if cert_manager {
            all(certmanager::GROUP, "issuers")
        } else {
            Vec::new()
        },
        cluster_issuers: if cert_manager {
            all(certmanager::GROUP, "clusterissuers")
        } else {
            Vec::new()
        },
        certificates: if cert_manager {
            all(certmanager::GROUP, "certificates")
        } else {
            Vec::new()
        },
        secrets,
        injectable,
    }
}

impl LoopState {
    /// Decides the writes of one pass; returns them and when to look again.
    fn plan(&mut self, snap: &Snapshot, pauses: &Pauses) -> (Vec<Action>, Option<Instant>) {
        let mut actions = Vec::new();
        let mut next: Option<Instant> = None;
        let mut wake = |at: Instant| {
            next = Some(next.map_or(at, |n| n.min(at)));
        };
        let now = Timestamp::now();
        let instant_now = Instant::now();

        // Workloads.
        let linkerd_on = self.config.linkerd && !pauses.is_paused(Controller::Linkerd);
        let cp = linkerd::control_plane(
            &snap.namespaces,
            &snap.deployments,
            snap.linkerd_config.as_ref(),
        );
        let mut seen = Vec::new();
        for (group, resource, obj) in &snap.workloads {
            if write::is_deleting(obj) {
                continue;
            }
            let k = obj_key(group, resource, obj);
            let is_job = *resource == "jobs";
            let settled = if is_job {
                let ns = snap
                    .namespaces
                    .iter()
                    .find(|n| meta_str(n, "name") == meta_str(obj, "namespace"));
                if linkerd_on && linkerd::is_meshed_job_with(obj, ns, cp) {
                    // The proxy keeps the pod running: active, never complete.
                    if let Some(status) = workloads::job_running_status(obj, now) {
                        actions.push(Action::Status {
                            group,
                            resource,
                            object: obj.clone(),
                            status,
                            manager: MANAGER_KCM,
                        });
                    }
                    self.pending.remove(&k);
                    continue;
                }
                workloads::job_complete_status(obj, now)
            } else {
                // None once the settled status is stored (the in-between Progressing status
                // already observes the generation, so `rollout_needed` cannot tell).
                workloads::settled_status(obj, now)
            };
            let Some(status) = settled else {
                self.pending.remove(&k);
                continue;
            };
            seen.push(k.clone());
            let gen_now = generation(obj);
            let due = match self.pending.get(&k) {
                Some((g, due)) if *g == gen_now => *due,
                _ => {
                    let due = instant_now + self.config.rollout_delay;
                    self.pending.insert(k.clone(), (gen_now, due));
                    let progressing = if self.config.rollout_delay.is_zero() {
                        // Settled in this very pass: no in-between status.
                        None
                    } else if *resource == "deployments" {
                        workloads::deployment_progressing_status(obj, now)
                    } else if is_job {
                        workloads::job_running_status(obj, now)
                    } else {
                        None
                    };
                    if let Some(status) = progressing {
                        actions.push(Action::Status {
                            group,
                            resource,
                            object: obj.clone(),
                            status,
                            manager: MANAGER_KCM,
                        });
                    }
                    due
                }
            };
            if due <= instant_now {
                self.pending.remove(&k);
                actions.push(Action::Status {
                    group,
                    resource,
                    object: obj.clone(),
                    status,
                    manager: MANAGER_KCM,
                });
            } else {
                wake(due);
            }
        }
        self.pending.retain(|k, _| seen.contains(k));
        for ns in &snap.namespaces {
            if self.config.workloads
                && !pauses.is_paused(Controller::Workloads)
                && !write::is_deleting(ns)
                && let Some(status) = workloads::namespace_status(ns)
            {
                actions.push(Action::Status {
                    group: "",
                    resource: "namespaces",
                    object: ns.clone(),
                    status,
                    manager: MANAGER_APISERVER,
                });
            }
        }
        for svc in &snap.apiservices {
            if let Some(status) = workloads::apiservice_status(svc, now) {
                actions.push(Action::Status {
                    group: "apiregistration.k8s.io",
                    resource: "apiservices",
                    object: svc.clone(),
                    status,
                    manager: MANAGER_APISERVER,
                });
            }
        }

        if snap.cert_manager {
            self.plan_cert_manager(snap, &mut actions, &mut wake);
        }
        (actions, next)
    }

    fn plan_cert_manager(
        &mut self,
        snap: &Snapshot,
        actions: &mut Vec<Action>,
        wake: &mut impl FnMut(Instant),
    ) {
        let real_now = Timestamp::now();
        let clock = match self.clock {
            Some(c) => c,
            None => {
                let Ok(c) = certmanager::Clock::new(real_now, real_now, self.config.time_scale)
                else {
                    tracing::warn!("invalid cert-manager time scale {}", self.config.time_scale);
                    return;
                };
                self.clock = Some(c);
                c
            }
        };
        let now = clock.now(real_now);
        let secret = |ns: &str, name: &str| snap.secrets.get(&(ns.to_string(), name.to_string()));
        let issuer_secret = |issuer: &Value| {
            certmanager::issuer_secret_location(issuer).and_then(|(ns, name)| secret(&ns, &name))
        };
        for (resource, list, manager) in [
            ("issuers", &snap.issuers, "cert-manager-issuers"),
            (
                "clusterissuers",
                &snap.cluster_issuers,
                "cert-manager-clusterissuers",
            ),
        ] {
            for issuer in list {
                if let Some(status) =
                    certmanager::reconcile_issuer(issuer, issuer_secret(issuer), now)
                {
                    actions.push(Action::Status {
                        group: certmanager::GROUP,
                        resource,
                        object: issuer.clone(),
                        status,
                        manager,
                    });
                }
            }
        }
        for cert in &snap.certificates {
            if write::is_deleting(cert) {
                continue;
            }
            let ns = meta_str(cert, "namespace");
            let issuer = certmanager::issuer_ref(cert).and_then(|r| {
                let (list, want_ns) = if r.kind == "ClusterIssuer" {
                    (&snap.cluster_issuers, "")
                } else {
                    (&snap.issuers, r.namespace.as_deref().unwrap_or(ns))
                };
                list.iter()
                    .find(|i| meta_str(i, "name") == r.name && meta_str(i, "namespace") == want_ns)
            });
            let secret_name = cert
                .pointer("/spec/secretName")
                .and_then(Value::as_str)
                .unwrap_or("");
            let inputs = certmanager::CertificateInputs {
                certificate: cert,
                issuer,
                ca_secret: issuer.and_then(issuer_secret),
                secret: secret(ns, secret_name),
                now,
            };
            let status_action = |status: Value| Action::Status {
                group: certmanager::GROUP,
                resource: "certificates",
                object: cert.clone(),
                status,
                manager: MANAGER_ISSUING,
            };
            match certmanager::reconcile_certificate(inputs) {
                Ok(certmanager::CertificateAction::Issue { secret, status, .. }) => {
                    actions.push(Action::Apply {
                        group: "",
                        resource: "secrets",
                        object: secret,
                        manager: MANAGER_ISSUING,
                        then: Some(Box::new(status_action(status))),
                    });
                }
                Ok(certmanager::CertificateAction::UpToDate {
                    status,
                    secret_update,
                    renewal_time,
                }) => {
                    if let Some(status) = status {
                        actions.push(status_action(status));
                    }
                    if let Some(secret) = secret_update {
                        actions.push(Action::Apply {
                            group: "",
                            resource: "secrets",
                            object: secret,
                            manager: MANAGER_ISSUING,
                            then: None,
                        });
                    }
                    let at = to_instant(clock.real_at(renewal_time));
                    wake(at.max(Instant::now() + Duration::from_millis(20)));
                }
                Ok(certmanager::CertificateAction::Waiting { status, .. }) => {
                    if let Some(status) = status {
                        actions.push(status_action(status));
                    }
                }
                Err(e) => {
                    if let Some(status) = certmanager::failed_status(cert, &e, now) {
                        actions.push(status_action(status));
                    }
                }
            }
        }
        // The CA injector.
        let certificate = |ns: &str, name: &str| {
            snap.certificates
                .iter()
                .find(|c| meta_str(c, "namespace") == ns && meta_str(c, "name") == name)
        };
        for (target, object) in &snap.injectable {
            let Some(bundle) = cainjector::wanted_bundle(object, &secret, &certificate) else {
                continue;
            };
            if let Some(config) = cainjector::injection(*target, object, &bundle) {
                let (group, resource, ..) = target.resource();
                actions.push(Action::Apply {
                    group,
                    resource,
                    object: config,
                    manager: cainjector::MANAGER,
                    then: None,
                });
            }
        }
    }
}

fn commit(st: &mut State, action: Action) -> Result<(), ApiError> {
    match action {
        Action::Status {
            group,
            resource,
            mut object,
            status,
            manager,
        } => {
            let Some(ty) = st.registry.find_any_version(group, resource) else {
                return Ok(());
            };
            let namespace = meta_str(&object, "namespace").to_string();
            let name = meta_str(&object, "name").to_string();
            if let Some(map) = object.as_object_mut() {
                map.insert("status".into(), status);
                map.insert("apiVersion".into(), Value::String(ty.api_version()));
            }
            let opts = WriteOptions {
                dry_run: false,
                field_manager: Some(manager.to_string()),
                validation: FieldValidation::Ignore,
                force: false,
            };
            let sub = ty.has_status.then_some("status");
            write::replace(
                st,
                &ty,
                (!namespace.is_empty()).then_some(namespace.as_str()),
                &name,
                sub,
                object,
                &opts,
                manager,
            )
            .map(|_| ())
        }
        Action::Apply {
            group,
            resource,
            object,
            manager,
            then,
        } => {
            let Some(ty) = st.registry.find_any_version(group, resource) else {
                return Ok(());
            };
            // A write made for another object (a Certificate's Secret, then its status) is
            // dropped when that object is gone or being deleted since the snapshot: the next
            // pass decides again, as cert-manager does from its up-to-date cache (it never
            // writes the Secret of a Certificate that was deleted meanwhile).
            if let Some(Action::Status {
                group: owner_group,
                resource: owner_resource,
                object: owner,
                ..
            }) = then.as_deref()
            {
                let current = st.get(&key(
                    owner_group,
                    owner_resource,
                    meta_str(owner, "namespace"),
                    meta_str(owner, "name"),
                ));
                let same = current.is_some_and(|c| {
                    !write::is_deleting(c) && meta_str(c, "uid") == meta_str(owner, "uid")
                });
                if !same {
                    return Err(ApiError::stale(
                        owner_resource,
                        owner_group,
                        meta_str(owner, "name"),
                    ));
                }
            }
            let namespace = meta_str(&object, "namespace").to_string();
            let name = meta_str(&object, "name").to_string();
            let opts = WriteOptions {
                dry_run: false,
                field_manager: Some(manager.to_string()),
                validation: FieldValidation::Ignore,
                force: true,
            };
            write::patch(
                st,
                &ty,
                (!namespace.is_empty()).then_some(namespace.as_str()),
                &name,
                None,
                PatchKind::Apply,
                object,
                &opts,
                manager,
            )?;
            match then {
                Some(next) => commit(st, *next),
                None => Ok(()),
            }
        }
    }
}

/// Runs the controllers until the sandbox stops.
pub(crate) async fn run(shared: Arc<Shared>, config: ControllerConfig) {
    let mut rx = shared.lock().tx.subscribe();
    let mut stop = shared.shutdown.clone();
    let mut state = Some(LoopState {
        config,
        clock: None,
        pending: BTreeMap::new(),
    });
    loop {
        let Some(mut current) = state.take() else {
            return;
        };
        let snap = snapshot(&shared.lock(), &current.config, &shared.pauses);
        // cert-manager runs on the cluster's virtual clock (which the admin endpoint may move).
        current.clock = Some(shared.clock.get());
        // Issuance (key generation) runs off the async workers.
        let worker = shared.clone();
        let planned = tokio::task::spawn_blocking(move || {
            let result = current.plan(&snap, &worker.pauses);
            (current, result)
        })
        .await;
        let Ok((current, (actions, next))) = planned else {
            tracing::error!("the sandbox controllers stopped");
            return;
        };
        state = Some(current);
        if !actions.is_empty() {
            {
                let mut st = shared.lock();
                for action in actions {
                    if let Err(e) = commit(&mut st, action) {
                        tracing::debug!("controller write deferred: {e}");
                    }
                }
            }
            // Our own writes wake the next pass: let requests in between, and bound the pass
            // rate should a controller ever fail to settle.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Wait for a write the controllers read (others, such as ConfigMaps, do not wake them),
        // a due timer, or a pause/resume.
        loop {
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let wake = tokio::select! {
                received = rx.recv() => match received {
                    Ok(event) => {
                        // Coalesce a burst of writes into one pass.
                        let mut relevant = is_relevant(&event);
                        while let Ok(more) = rx.try_recv() {
                            relevant |= is_relevant(&more);
                        }
                        relevant
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = sleep => true,
                _ = shared.wake_controllers.notified() => true,
                _ = stop.wait_for(|s| *s) => return,
            };
            if wake {
                break;
            }
        }
    }
}

/// Whether a committed write can change what a controller decides.
fn is_relevant(event: &Event) -> bool {
    match (event.group.as_str(), event.resource.as_str()) {
        ("apps", _) | ("batch", "jobs") | ("apiregistration.k8s.io", _) => true,
        ("", "namespaces" | "secrets") => true,
        ("admissionregistration.k8s.io", _) => true,
        ("", "configmaps") => meta_str(&event.object, "name") == "linkerd-config",
        ("apiextensions.k8s.io", _) => true,
        (group, _) => group == certmanager::GROUP,
    }
}

/// The admission check of one write: the 500 a real API server answers while a matching
/// webhook's backend does not serve yet, or None.
#[allow(clippy::too_many_arguments)]
pub(crate) fn admission(
    st: &State,
    delay: Duration,
    group: &str,
    version: &str,
    resource: &str,
    subresource: Option<&str>,
    operation: webhooks::Operation,
    namespace: Option<&str>,
    object_labels: Option<&Map<String, Value>>,
) -> Option<ApiError> {
    let mutating: Vec<Value> = st
        .list(
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            None,
        )
        .into_iter()
        .cloned()
        .collect();
    let validating: Vec<Value> = st
        .list(
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            None,
        )
        .into_iter()
        .cloned()
        .collect();
    if mutating.is_empty() && validating.is_empty() {
        return None;
    }
    let namespace_labels = namespace.and_then(|ns| {
        st.get(&key("", "namespaces", "", ns))
            .and_then(|n| n.pointer("/metadata/labels"))
            .and_then(Value::as_object)
    });
    let req = webhooks::WriteRequest {
        group,
        version,
        resource,
        subresource,
        operation,
        namespace,
        namespace_labels,
        object_labels,
    };
    let delay = SignedDuration::try_from(delay).unwrap_or(SignedDuration::ZERO);
    let now = Timestamp::now();
    let refusal = webhooks::refusal(&mutating, &validating, &req, |svc| {
        let service = st.get(&key("", "services", &svc.namespace, &svc.name));
        let deployments: Vec<Value> = st
            .list("apps", "deployments", Some(&svc.namespace))
            .into_iter()
            .cloned()
            .collect();
        webhooks::backend_status(service, &deployments, delay, now)
    })?;
    Some(ApiError::internal_error(refusal.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default", "generation": generation,
                            "resourceVersion": "5"},
               "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}}}})
    }

    fn snapshot_of(workloads: Vec<(&'static str, &'static str, Value)>) -> Snapshot {
        Snapshot {
            workloads,
            namespaces: Vec::new(),
            apiservices: Vec::new(),
            deployments: Vec::new(),
            linkerd_config: None,
            cert_manager: false,
            issuers: Vec::new(),
            cluster_issuers: Vec::new(),
            certificates: Vec::new(),
            secrets: BTreeMap::new(),
            injectable: Vec::new(),
        }
    }

    fn state(delay: Duration) -> LoopState {
        LoopState {
            config: ControllerConfig {
                rollout_delay: delay,
                ..ControllerConfig::default()
            },
            clock: None,
            pending: BTreeMap::new(),
        }
    }

    fn statuses(actions: &[Action]) -> Vec<Value> {
        actions
            .iter()
            .map(|a| match a {
                Action::Status { status, .. } => status.clone(),
                Action::Apply { object, .. } => object.clone(),
            })
            .collect()
    }

    #[test]
    fn a_rollout_is_in_progress_until_the_delay_then_settles() {
        let pauses = Pauses::default();
        let mut st = state(Duration::from_secs(3600));
        let snap = snapshot_of(vec![("apps", "deployments", deployment(1))]);
        let (actions, next) = st.plan(&snap, &pauses);
        let written = statuses(&actions);
        assert_eq!(written.len(), 1);
        assert_eq!(written[0]["conditions"][0]["type"], "Progressing");
        assert!(next.is_some_and(|n| n > Instant::now() + Duration::from_secs(3000)));
        // Not due yet: nothing more, the same wake-up.
        let (actions, again) = st.plan(&snap, &pauses);
        assert!(actions.is_empty());
        assert_eq!(again, next);

        // A template change (new generation) restarts the delay from now.
        let (actions, _) = st.plan(
            &snapshot_of(vec![("apps", "deployments", deployment(2))]),
            &pauses,
        );
        assert_eq!(statuses(&actions)[0]["observedGeneration"], 2);

        // Without a delay the settled status comes at once, with no in-between status.
        let mut quick = state(Duration::ZERO);
        let (actions, next) = quick.plan(&snap, &pauses);
        let written = statuses(&actions);
        assert_eq!(written.len(), 1);
        assert_eq!(written[0]["availableReplicas"], 2);
        assert!(next.is_none());
    }

    #[test]
    fn a_paused_or_settled_workload_is_left_alone() {
        let pauses = Pauses::default();
        let mut quick = state(Duration::ZERO);
        let mut d = deployment(1);
        let snap = snapshot_of(vec![("apps", "deployments", d.clone())]);
        let (actions, _) = quick.plan(&snap, &pauses);
        d["status"] = statuses(&actions)[0].clone();
        let (actions, next) = quick.plan(&snapshot_of(vec![("apps", "deployments", d)]), &pauses);
        assert!(actions.is_empty(), "settled: nothing to write");
        assert!(next.is_none());

        pauses.set(Controller::Workloads, true);
        assert_eq!(pauses.paused(), vec!["workloads"]);
        let cfg = ControllerConfig::default();
        let (tx, _) = tokio::sync::broadcast::channel(4);
        let mut store = State::new(tx);
        store.put(key("apps", "deployments", "default", "web"), deployment(1));
        assert!(snapshot(&store, &cfg, &pauses).workloads.is_empty());
        pauses.set(Controller::Workloads, false);
        assert_eq!(snapshot(&store, &cfg, &pauses).workloads.len(), 1);
    }

    #[test]
    fn controller_names_round_trip() {
        for c in Controller::ALL {
            assert_eq!(Controller::parse(c.name()), Some(c));
        }
        assert_eq!(Controller::parse("nope"), None);
        assert!(!ControllerConfig::none().any_enabled());
    }
}
