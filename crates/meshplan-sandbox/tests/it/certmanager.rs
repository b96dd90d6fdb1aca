//! cert-manager in the sandbox: the stand-in chart rendered by helm and applied by kubectl, the
//! webhook that refuses writes until its Deployment serves, and a CA chain of real
//! certificates that openssl verifies, renewed on a scaled clock.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use meshplan_sandbox::{ControllerConfig, SandboxConfig};
use serde_json::Value;

use meshplan_sandbox::kubectl::Cluster;

const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../plans/charts/cert-manager"
);

/// `helm template` of the stand-in cert-manager chart with its CRDs.
fn render_chart(dir: &Path) -> String {
    let out = Command::new("helm")
        .args([
            "template",
            "cert-manager",
            CHART,
            "--namespace",
            "cert-manager",
            "--set",
            "crds.enabled=true",
        ])
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn install_cert_manager(c: &Cluster) {
    c.apply(
        "cm-ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: cert-manager}\n",
    )
    .ok();
    let chart = render_chart(c.dir.path());
    c.apply("cert-manager.yaml", &chart).ok();
}

const SELF_SIGNED: &str = "apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: selfsigned}\nspec: {selfSigned: {}}\n";

const CHAIN: &str = r#"apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: root-ca, namespace: cert-manager}
spec:
  isCA: true
  commonName: root-ca
  secretName: root-ca
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: selfsigned, kind: ClusterIssuer, group: cert-manager.io}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: ca}
spec: {ca: {secretName: root-ca}}
---
apiVersion: v1
kind: Namespace
metadata: {name: linkerd}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: linkerd-trust-anchor, namespace: linkerd}
spec:
  isCA: true
  commonName: root.linkerd.cluster.local
  secretName: linkerd-trust-anchor
  duration: 48h
  renewBefore: 25h
  privateKey: {algorithm: ECDSA}
  usages: [cert sign, crl sign, server auth, client auth]
  issuerRef: {name: ca, kind: ClusterIssuer, group: cert-manager.io}
"#;

fn secret_data(secret: &Value, key: &str) -> String {
    let b64 = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn webhook_refuses_cert_manager_writes_until_its_deployment_has_served_for_the_delay() {
    let c = Cluster::start_with(SandboxConfig {
        controllers: ControllerConfig {
            rollout_delay: Duration::from_millis(300),
            webhook_delay: Duration::from_secs(4),
            ..ControllerConfig::default()
        },
        ..SandboxConfig::default()
    });
    install_cert_manager(&c);
    let issuer = c.file("issuer.yaml", SELF_SIGNED);
    let refused = c.kubectl(&["apply", "--server-side", "-f", &issuer]);
    let stderr = refused.failed();
    assert!(
        stderr.contains(
            "Error from server (InternalError): Internal error occurred: failed calling webhook \
             \"webhook.cert-manager.io\": failed to call webhook: Post \
             \"https://cert-manager-webhook.cert-manager.svc:443/"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(":443: connect: connection refused"),
        "{stderr}"
    );
    // Writes outside the webhook's groups are not affected.
    c.apply(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: default}\n",
    )
    .ok();

    c.kubectl(&[
        "rollout",
        "status",
        "-n",
        "cert-manager",
        "deploy/cert-manager-webhook",
        "--timeout=30s",
    ])
    .ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refusals = 0;
    loop {
        let run = c.kubectl(&["apply", "--server-side", "-f", &issuer]);
        if run.code == 0 {
            break;
        }
        assert!(run.stderr.contains("connection refused"), "{}", run.stderr);
        refusals += 1;
        assert!(Instant::now() < deadline, "still refused after 30 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        c.sandbox
            .object("cert-manager.io", "clusterissuers", "", "selfsigned")
            .is_some()
    );
    // The webhook delay counts from the Deployment's availability, so the first writes after
    // `rollout status` were still refused.
    assert!(refusals > 0);
}

#[test]
fn cert_manager_chain_issues_real_certificates_and_renews_on_the_scaled_clock() {
    // One real second is two virtual hours: the leaf (48h, renewBefore 25h) renews 23 virtual
    // hours after issuance, about 11.5 s later.
    let c = Cluster::start_with(SandboxConfig {
        controllers: ControllerConfig {
            rollout_delay: Duration::from_millis(200),
            webhooks: false,
            time_scale: 7200.0,
            ..ControllerConfig::default()
        },
        ..SandboxConfig::default()
    });
    install_cert_manager(&c);
    c.apply("issuer.yaml", SELF_SIGNED).ok();
    c.apply("chain.yaml", CHAIN).ok();
    c.kubectl(&[
        "wait",
        "-n",
        "linkerd",
        "--for=condition=Ready",
        "certificate/linkerd-trust-anchor",
        "--timeout=60s",
    ])
    .ok();
    c.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "clusterissuer/ca",
        "--timeout=30s",
    ])
    .ok();

    // Settled: the controllers write nothing more until the renewal.
    let rv = c.sandbox.resource_version();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        c.sandbox.resource_version(),
        rv,
        "the controllers keep writing"
    );

    // The printer column reads the Ready condition.
    let table = c.kubectl(&[
        "get",
        "-n",
        "linkerd",
        "certificate",
        "linkerd-trust-anchor",
    ]);
    let row = table.ok().lines().nth(1).unwrap_or_default().to_string();
    assert!(row.contains(" True "), "{row}");

    let secret = c.get_json(&["-n", "linkerd", "secret", "linkerd-trust-anchor"]);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let tls_crt = secret_data(&secret, "tls.crt");
    let ca_crt = secret_data(&secret, "ca.crt");
    assert!(secret_data(&secret, "tls.key").contains("PRIVATE KEY"));
    let root = c.get_json(&["-n", "cert-manager", "secret", "root-ca"]);
    assert_eq!(ca_crt, secret_data(&root, "tls.crt"), "ca.crt is the root");

    let cert = c.get_json(&["-n", "linkerd", "certificate", "linkerd-trust-anchor"]);
    let not_before: jiff::Timestamp = cert["status"]["notBefore"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let not_after: jiff::Timestamp = cert["status"]["notAfter"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(not_after.duration_since(not_before).as_secs(), 48 * 3600);
    assert!(cert["status"]["renewalTime"].is_string());

    // openssl checks the chain at a moment inside the validity window: the certificates
    // carry virtual times, which run ahead of the real clock.
    let dir = c.dir.path();
    std::fs::write(dir.join("ca.crt"), &ca_crt).unwrap();
    std::fs::write(dir.join("tls.crt"), &tls_crt).unwrap();
    let at = (not_before.as_second() + 60).to_string();
    let ca_path = dir.join("ca.crt").to_string_lossy().into_owned();
    let tls_path = dir.join("tls.crt").to_string_lossy().into_owned();
    let (ok, out) = openssl(&["verify", "-attime", &at, "-CAfile", &ca_path, &tls_path]);
    assert!(ok, "{out}");
    assert!(out.contains(": OK"), "{out}");
    let (_, text) = openssl(&["x509", "-in", &tls_path, "-noout", "-text"]);
    assert!(text.contains("CA:TRUE"), "the leaf is a CA: {text}");
    assert!(text.contains("root.linkerd.cluster.local"), "{text}");
    assert!(
        text.contains("ecdsa-with-SHA256") || text.contains("id-ecPublicKey"),
        "{text}"
    );
    // Signed by the root, not self-signed.
    let (ok, out) = openssl(&["verify", "-attime", &at, "-CAfile", &tls_path, &tls_path]);
    assert!(!ok, "the leaf must not verify against itself: {out}");

    // Renewal: a new certificate in the Secret, the same CA.
    let deadline = Instant::now() + Duration::from_secs(60);
    let renewed = loop {
        let s = c
            .sandbox
            .object("", "secrets", "linkerd", "linkerd-trust-anchor")
            .unwrap();
        let crt = secret_data(&s, "tls.crt");
        if crt != tls_crt {
            break s;
        }
        assert!(Instant::now() < deadline, "not renewed within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(secret_data(&renewed, "ca.crt"), ca_crt);
    let cert = c.get_json(&["-n", "linkerd", "certificate", "linkerd-trust-anchor"]);
    assert_eq!(cert["status"]["revision"], 2, "{}", cert["status"]);
    let renewed_path = dir.join("renewed.crt");
    std::fs::write(&renewed_path, secret_data(&renewed, "tls.crt")).unwrap();
    let new_before: jiff::Timestamp = cert["status"]["notBefore"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(new_before > not_before);
    let at = (new_before.as_second() + 60).to_string();
    let (ok, out) = openssl(&[
        "verify",
        "-attime",
        &at,
        "-CAfile",
        &ca_path,
        &renewed_path.to_string_lossy(),
    ]);
    assert!(ok, "{out}");
}

#[test]
fn the_cluster_clock_moves_forward_on_request_and_certificates_follow_it() {
    // Anonymous: kubectl sends no credentials over plain HTTP, and the admin endpoint needs
    // them otherwise.
    let c = Cluster::start_with(SandboxConfig {
        controllers: ControllerConfig {
            rollout_delay: Duration::from_millis(200),
            webhooks: false,
            ..ControllerConfig::default()
        },
        auth: meshplan_sandbox::AuthMode::Anonymous,
        ..SandboxConfig::default()
    });
    install_cert_manager(&c);
    c.apply("issuer.yaml", SELF_SIGNED).ok();
    c.apply("chain.yaml", CHAIN).ok();
    c.kubectl(&[
        "wait",
        "-n",
        "linkerd",
        "--for=condition=Ready",
        "certificate/linkerd-trust-anchor",
        "--timeout=60s",
    ])
    .ok();
    let cert = c.get_json(&["-n", "linkerd", "certificate", "linkerd-trust-anchor"]);
    let not_after: jiff::Timestamp = cert["status"]["notAfter"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let clock = |c: &Cluster| -> jiff::Timestamp {
        let out = c.kubectl(&["get", "--raw", "/_sandbox/clock"]);
        let v: Value = serde_json::from_str(out.ok()).unwrap();
        v["now"].as_str().unwrap().parse().unwrap()
    };
    let before = clock(&c);
    assert!(not_after.duration_since(before) > jiff::SignedDuration::from_hours(47));

    // Every answer carries the cluster's clock as its Date (kubectl shows the headers at -v=8).
    let verbose = c.kubectl(&["get", "--raw", "/version", "-v=8"]);
    let date_line = verbose
        .stderr
        .lines()
        .find_map(|l| l.split_once("Date: ").map(|(_, d)| d.trim().to_string()))
        .unwrap_or_else(|| panic!("no Date header: {}", verbose.stderr));
    let date = jiff::fmt::rfc2822::parse(&date_line).unwrap().timestamp();
    assert!(date.duration_since(before).abs() < jiff::SignedDuration::from_secs(60));

    // cert-manager paused, 40 hours pass at once: the certificate is 8 hours from expiry and
    // nobody renews it; the Date header says so.
    let empty = c.file("empty.json", "{}");
    c.kubectl(&[
        "create",
        "--raw",
        "/_sandbox/controllers/cert-manager/pause",
        "-f",
        &empty,
    ])
    .ok();
    let advance = c.file("advance.json", r#"{"seconds": 144000}"#);
    let moved = c.kubectl(&["create", "--raw", "/_sandbox/clock/advance", "-f", &advance]);
    let moved: Value = serde_json::from_str(moved.ok()).unwrap();
    let after: jiff::Timestamp = moved["now"].as_str().unwrap().parse().unwrap();
    assert!(after.duration_since(before) >= jiff::SignedDuration::from_hours(40));
    assert!(not_after.duration_since(after) < jiff::SignedDuration::from_hours(9));
    let verbose = c.kubectl(&["get", "--raw", "/version", "-v=8"]);
    let date_line = verbose
        .stderr
        .lines()
        .find_map(|l| l.split_once("Date: ").map(|(_, d)| d.trim().to_string()))
        .unwrap();
    let date = jiff::fmt::rfc2822::parse(&date_line).unwrap().timestamp();
    assert!(date >= after, "{date} < {after}");
    std::thread::sleep(Duration::from_millis(300));
    let still = c.get_json(&["-n", "linkerd", "certificate", "linkerd-trust-anchor"]);
    assert_eq!(still["status"]["revision"], 1, "paused: not renewed");

    // Resumed, cert-manager sees the renewal time long past and renews on the moved clock.
    c.kubectl(&[
        "create",
        "--raw",
        "/_sandbox/controllers/cert-manager/resume",
        "-f",
        &empty,
    ])
    .ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    let renewed = loop {
        let cert = c.get_json(&["-n", "linkerd", "certificate", "linkerd-trust-anchor"]);
        if cert["status"]["revision"] == 2 {
            break cert;
        }
        assert!(Instant::now() < deadline, "not renewed: {}", cert["status"]);
        std::thread::sleep(Duration::from_millis(100));
    };
    let new_before: jiff::Timestamp = renewed["status"]["notBefore"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(new_before >= after, "{new_before} < {after}");
}

const INJECTED_WEBHOOK: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: web-validator
  annotations:
    cert-manager.io/inject-ca-from: cert-manager/root-ca
webhooks:
- name: validate.web.example.com
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Ignore
  clientConfig:
    caBundle: Cg==
    service: {name: web-validator, namespace: default}
  rules:
  - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"]}
"#;

#[test]
fn the_ca_injector_fills_in_and_owns_the_ca_bundle_of_an_annotated_webhook() {
    let c = Cluster::start_with(SandboxConfig {
        controllers: ControllerConfig {
            rollout_delay: Duration::from_millis(50),
            webhooks: false,
            ..ControllerConfig::default()
        },
        ..SandboxConfig::default()
    });
    install_cert_manager(&c);
    c.apply("issuer.yaml", SELF_SIGNED).ok();
    // The webhook first: the injector waits for the Certificate's Secret.
    let f = c.file("webhook.yaml", INJECTED_WEBHOOK);
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=meshplan",
        "-f",
        &f,
    ])
    .ok();
    c.apply("chain.yaml", CHAIN).ok();
    c.kubectl(&[
        "wait",
        "-n",
        "cert-manager",
        "--for=condition=Ready",
        "certificate/root-ca",
        "--timeout=60s",
    ])
    .ok();
    let root = c.get_json(&["-n", "cert-manager", "secret", "root-ca"]);
    let ca = root["data"]["ca.crt"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let webhook = loop {
        let w = c.get_json(&[
            "validatingwebhookconfiguration",
            "web-validator",
            "--show-managed-fields",
        ]);
        if w["webhooks"][0]["clientConfig"]["caBundle"] == ca.as_str() {
            break w;
        }
        assert!(Instant::now() < deadline, "no CA bundle injected: {w:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        webhook["webhooks"][0]["clientConfig"]["service"]["name"],
        "web-validator"
    );
    let entries = webhook["metadata"]["managedFields"].as_array().unwrap();
    let fields = |manager: &str| {
        entries
            .iter()
            .find(|e| e["manager"] == manager)
            .map(|e| (e["operation"].clone(), e["fieldsV1"].clone()))
            .unwrap_or_else(|| panic!("no entry of {manager}: {entries:#?}"))
    };
    let item = "k:{\"name\":\"validate.web.example.com\"}";
    let (operation, injector) = fields("cert-manager-cainjector");
    assert_eq!(operation, "Apply");
    assert_eq!(
        injector["f:webhooks"][item],
        serde_json::json!({".": {}, "f:clientConfig": {"f:caBundle": {}}, "f:name": {}})
    );
    let (_, applier) = fields("meshplan");
    let client = &applier["f:webhooks"][item]["f:clientConfig"];
    assert!(client.get("f:caBundle").is_none(), "{applier:#}");
    assert!(client.get("f:service").is_some(), "{applier:#}");

    // Applying the placeholder again conflicts with the injector; without it, it does not.
    let out = c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=meshplan",
        "-f",
        &f,
    ]);
    assert!(
        out.failed()
            .contains("conflict with \"cert-manager-cainjector\""),
        "{}",
        out.stderr
    );
    let without = c.file(
        "webhook-without.yaml",
        &INJECTED_WEBHOOK.replace("    caBundle: Cg==\n", ""),
    );
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=meshplan",
        "-f",
        &without,
    ])
    .ok();
    let w = c.get_json(&["validatingwebhookconfiguration", "web-validator"]);
    assert_eq!(w["webhooks"][0]["clientConfig"]["caBundle"], ca.as_str());
}
