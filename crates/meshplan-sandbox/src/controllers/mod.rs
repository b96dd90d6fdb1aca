//! Simulated controllers: the pure parts that make the sandbox behave like a living cluster.
//!
//! Every function here is I/O-free and clock-free: it takes objects as the store holds them
//! (`serde_json::Value`) and a "now", and returns the status (or object) to write, or None
//! when nothing changes. The controller loop (in the sandbox server) owns the store, the
//! delays, the switches and the real clock.
//!
//! - [`workloads`]: settled statuses (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
//!   Namespace, APIService), [`workloads::rollout_needed`] and the in-between
//!   [`workloads::deployment_progressing_status`].
//! - [`certmanager`]: Issuer/ClusterIssuer readiness, Certificate issuance and renewal, the
//!   Secret and status cert-manager writes, the virtual [`certmanager::Clock`].
//! - [`cainjector`]: cert-manager's CA injector: the `caBundle` of webhooks, CRDs and
//!   APIServices annotated `cert-manager.io/inject-ca-from(-secret)`.
//! - [`pki`]: real x509 material (rcgen; RSA keys from the `rsa` crate), read back with
//!   x509-parser.
//! - [`linkerd`]: which Jobs a Linkerd proxy keeps alive, and whether a control plane runs.
//! - [`webhooks`]: the "failed calling webhook … connection refused" refusal of writes while an
//!   admission webhook's backend does not serve yet.
//!
//! # What the controller loop does with them
//!
//! 1. Keep one [`certmanager::Clock`] (`scale` from the configuration, 1.0 by default) and
//!    compute the virtual `now = clock.now(real_now)` on each pass for the cert-manager
//!    functions (certificate validity and renewal run on virtual time). Workloads and webhooks
//!    take the real time: their delays are configured in real time, and the webhook delay is
//!    measured from the Deployment's `Available` `lastTransitionTime` (whole seconds).
//! 2. On every stored write of a workload kind, when [`workloads::rollout_needed`] is true
//!    (new object or template change), optionally write
//!    [`workloads::deployment_progressing_status`] at once, then after the configured delay
//!    write [`workloads::settled_status`] through the status subresource (no generation bump).
//!    For a Job, first ask [`linkerd::is_meshed_job_with`] (control plane from
//!    [`linkerd::control_plane`] over the Namespaces, Deployments and the `linkerd-config`
//!    ConfigMap): if true write [`workloads::job_running_status`] instead and never complete it
//!    (re-check when the Job, its Namespace or the control plane changes).
//! 3. For admission, before storing any create/update/delete, call [`webhooks::refusal`] with
//!    all Mutating/ValidatingWebhookConfigurations and a backend closure built from
//!    [`webhooks::backend_status`] (the Service named by the webhook, the Deployments of its
//!    namespace, the configured availability delay, now). On `Some(r)` answer HTTP 500
//!    `InternalError` with the refusal's message and store nothing.
//! 4. When cert-manager's CRDs are installed: for each Issuer/ClusterIssuer fetch the Secret at
//!    [`certmanager::issuer_secret_location`] and write [`certmanager::reconcile_issuer`]'s
//!    status; re-run when that Secret changes.
//! 5. For each Certificate, fetch the issuer ([`certmanager::issuer_ref`]: namespaced Issuer or
//!    ClusterIssuer), the issuer's CA Secret, and the Certificate's own Secret
//!    (`spec.secretName` in its namespace), then act on [`certmanager::reconcile_certificate`]:
//!    `Issue` → server-side apply the Secret (field manager `cert-manager-certificates-issuing`,
//!    so other fields of an existing Secret survive) and then write the status; `Waiting` →
//!    write the status if Some and retry when the issuer or a Secret changes; `UpToDate` →
//!    write the status if Some, apply `secret_update` if Some, and schedule a wake-up at real time
//!    `clock.real_at(renewal_time)`. An `Err` is a spec problem: write
//!    [`certmanager::failed_status`] and retry on the next change of the Certificate.
//!    Re-run a Certificate whenever its Secret is changed or deleted by someone else.
//! 6. For every webhook configuration, CRD and APIService that asks for a CA bundle
//!    ([`cainjector::wants_injection`]), server-side apply [`cainjector::injection`] with field
//!    manager [`cainjector::MANAGER`], forcing ownership, once the Secret it names exists; again
//!    whenever that Secret or the object changes.

pub(crate) mod cainjector;
pub(crate) mod certmanager;
pub(crate) mod linkerd;
pub(crate) mod pki;
pub(crate) mod webhooks;
pub(crate) mod workloads;

#[cfg(test)]
mod tests {
    //! A miniature loop over an in-memory store, walking through the acceptance scenarios.

    use super::*;
    use jiff::{SignedDuration, Timestamp};
    use serde_json::{Value, json};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn set_status(obj: &mut Value, status: Option<Value>) {
        if let Some(s) = status {
            obj["status"] = s;
        }
    }

    #[test]
    fn cert_manager_install_then_chain_with_webhook_delay() {
        let clock =
            certmanager::Clock::new(t("2030-01-01T00:00:00Z"), t("2026-05-01T00:00:00Z"), 3600.0)
                .unwrap();
        let real = |secs: i64| {
            t("2030-01-01T00:00:00Z")
                .checked_add(SignedDuration::from_secs(secs))
                .unwrap()
        };
        let webhook_delay = SignedDuration::from_secs(2);

        // The cert-manager install: webhook Deployment + Service + validating configuration.
        let mut webhook_deploy = json!({"kind":"Deployment","metadata":{"name":"cert-manager-webhook",
            "namespace":"cert-manager","generation":1},
            "spec":{"replicas":1,"template":{"metadata":{"labels":{"app":"webhook"}},"spec":{}}}});
        let service = json!({"kind":"Service","metadata":{"name":"cert-manager-webhook","namespace":"cert-manager"},
            "spec":{"clusterIP":"10.43.12.7","selector":{"app":"webhook"}}});
        let vwc = json!({"kind":"ValidatingWebhookConfiguration","metadata":{"name":"cert-manager-webhook"},
            "webhooks":[{"name":"webhook.cert-manager.io","failurePolicy":"Fail","timeoutSeconds":30,
              "rules":[{"apiGroups":["cert-manager.io"],"apiVersions":["v1"],"operations":["CREATE","UPDATE"],"resources":["*/*"]}],
              "clientConfig":{"service":{"name":"cert-manager-webhook","namespace":"cert-manager","path":"/validate"}}}]});
        let write = webhooks::WriteRequest {
            group: "cert-manager.io",
            version: "v1",
            resource: "clusterissuers",
            subresource: None,
            operation: webhooks::Operation::Create,
            namespace: None,
            namespace_labels: None,
            object_labels: None,
        };
        let admit = |deploys: &[Value], now: Timestamp| {
            webhooks::refusal(&[], std::slice::from_ref(&vwc), &write, |_| {
                webhooks::backend_status(Some(&service), deploys, webhook_delay, now)
            })
        };

        // Real t=0: the webhook Deployment is not available yet → refused.
        let r = admit(std::slice::from_ref(&webhook_deploy), real(0)).unwrap();
        assert!(
            r.message
                .contains("dial tcp 10.43.12.7:443: connect: connection refused")
        );
        // The workload controller settles the Deployment at real t=1.
        assert!(workloads::rollout_needed(&webhook_deploy));
        let settled = workloads::settled_status(&webhook_deploy, real(1));
        set_status(&mut webhook_deploy, settled);
        assert!(admit(std::slice::from_ref(&webhook_deploy), real(2)).is_some());
        assert!(admit(std::slice::from_ref(&webhook_deploy), real(3)).is_none());

        // Now the chain, in virtual time.
        let now = clock.now(real(3));
        let mut ss = json!({"kind":"ClusterIssuer","metadata":{"name":"selfsigned","generation":1},"spec":{"selfSigned":{}}});
        let st = certmanager::reconcile_issuer(&ss, None, now);
        set_status(&mut ss, st);
        let mut root = json!({"kind":"Certificate","metadata":{"name":"root","namespace":"cert-manager","generation":1},
            "spec":{"isCA":true,"commonName":"root","secretName":"root-ca","privateKey":{"algorithm":"ECDSA"},
                    "issuerRef":{"name":"selfsigned","kind":"ClusterIssuer","group":"cert-manager.io"}}});
        let certmanager::CertificateAction::Issue {
            secret: root_secret,
            status,
            ..
        } = certmanager::reconcile_certificate(certmanager::CertificateInputs {
            certificate: &root,
            issuer: Some(&ss),
            ca_secret: None,
            secret: None,
            now,
        })
        .unwrap()
        else {
            panic!("root must issue")
        };
        root["status"] = status;
        let mut ca = json!({"kind":"ClusterIssuer","metadata":{"name":"ca","generation":1},"spec":{"ca":{"secretName":"root-ca"}}});
        let (ns, name) = certmanager::issuer_secret_location(&ca).unwrap();
        assert_eq!((ns.as_str(), name.as_str()), ("cert-manager", "root-ca"));
        let st = certmanager::reconcile_issuer(&ca, Some(&root_secret), now);
        set_status(&mut ca, st);
        assert!(certmanager::issuer_is_ready(&ca));

        let mut leaf = json!({"kind":"Certificate","metadata":{"name":"anchor","namespace":"linkerd","generation":1},
            "spec":{"isCA":true,"commonName":"root.linkerd.cluster.local","secretName":"anchor","duration":"48h","renewBefore":"25h",
                    "privateKey":{"algorithm":"ECDSA"},
                    "issuerRef":{"name":"ca","kind":"ClusterIssuer","group":"cert-manager.io"}}});
        let mut leaf_secret: Option<Value> = None;
        let mut issued = 0;
        // Drive the loop once per real second for 30 s (30 virtual hours).
        for s in 3..=33 {
            let now = clock.now(real(s));
            match certmanager::reconcile_certificate(certmanager::CertificateInputs {
                certificate: &leaf,
                issuer: Some(&ca),
                ca_secret: Some(&root_secret),
                secret: leaf_secret.as_ref(),
                now,
            })
            .unwrap()
            {
                certmanager::CertificateAction::Issue { secret, status, .. } => {
                    issued += 1;
                    assert_eq!(
                        certmanager::secret_data(&secret, "ca.crt"),
                        certmanager::secret_data(&root_secret, "tls.crt")
                    );
                    leaf_secret = Some(secret);
                    leaf["status"] = status;
                }
                certmanager::CertificateAction::UpToDate { status, .. } => {
                    set_status(&mut leaf, status);
                }
                other => panic!("{other:?}"),
            }
        }
        // Issued at virtual 3h, renewed once at 3h + 23h = 26h (before 33h), not again.
        assert_eq!(issued, 2);
        assert_eq!(leaf["status"]["revision"], 2);
        assert_eq!(leaf["status"]["notBefore"], "2026-05-02T02:00:00Z");
    }

    #[test]
    fn meshed_job_never_completes_and_disabled_one_does() {
        let now = t("2026-05-01T00:00:00Z");
        let ns = json!({"kind":"Namespace","metadata":{"name":"apps","annotations":{"linkerd.io/inject":"enabled"}}});
        let cp_ns = json!({"kind":"Namespace","metadata":{"name":"linkerd","labels":{"linkerd.io/is-control-plane":"true"}}});
        let mut deploys: Vec<Value> = ["linkerd-destination", "linkerd-proxy-injector"]
            .iter()
            .map(|n| json!({"kind":"Deployment","metadata":{"name":n,"namespace":"linkerd","generation":1},
                            "spec":{"replicas":1,"template":{"spec":{}}}}))
            .collect();
        for d in &mut deploys {
            let st = workloads::settled_status(d, now);
            set_status(d, st);
        }
        let cp = linkerd::control_plane(&[ns.clone(), cp_ns], &deploys, None);
        assert!(cp.running);

        let job = |inject: Option<&str>| {
            let mut j = json!({"kind":"Job","metadata":{"name":"migrate","namespace":"apps","generation":1},
                "spec":{"template":{"metadata":{},"spec":{"restartPolicy":"Never"}}}});
            if let Some(v) = inject {
                j["spec"]["template"]["metadata"]["annotations"] = json!({"linkerd.io/inject": v});
            }
            j
        };
        // The loop's Job step.
        let step = |j: &mut Value, at: Timestamp| {
            let st = if linkerd::is_meshed_job_with(j, Some(&ns), cp) {
                workloads::job_running_status(j, at)
            } else {
                workloads::job_complete_status(j, at)
            };
            set_status(j, st);
        };
        let mut meshed = job(None);
        let mut opted_out = job(Some("disabled"));
        for s in 0..5 {
            let at = now.checked_add(SignedDuration::from_secs(s)).unwrap();
            step(&mut meshed, at);
            step(&mut opted_out, at);
        }
        assert!(meshed["status"].get("succeeded").is_none());
        assert_eq!(meshed["status"]["active"], 1);
        assert_eq!(opted_out["status"]["succeeded"], 1);
        assert_eq!(opted_out["status"]["conditions"][1]["type"], "Complete");
    }
}
