//! `meshplan check` on the applied sample stack (plans/linkerd.toml with the stand-in charts,
//! on a sandbox with the cluster's own Prometheus pieces): every check passes; near the
//! issuer's expiry (cert-manager paused, the sandbox clock advanced) it warns; with another CA
//! as the trust anchor in linkerd-config it fails naming both fingerprints; a Job kept running
//! by a proxy is named.

use serde_json::Value;

use crate::apply_cmd::{Setup, decode};
use crate::support::root;
use meshplan::health::certs::parse_pem_bundle;

fn check(s: &Setup, extra: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(crate::apply_cmd::BIN)
        .current_dir(root())
        .arg("check")
        .arg(&s.plan)
        .arg("--kubeconfig")
        .arg(&s.cluster.kubeconfig)
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    decode(out)
}

fn line<'a>(out: &'a str, id: &str) -> &'a str {
    out.lines()
        .find(|l| l.len() > 7 && l[7..].starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("no line for {id}:\n{out}"))
}

fn secret_text(secret: &Value, key: &str) -> String {
    use base64::Engine as _;
    let b64 = secret["data"][key].as_str().unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn check_the_applied_sample_stack_then_an_expiring_issuer_then_a_foreign_trust_anchor() {
    let s = Setup::sample();
    let (code, _, err) = s.apply(&[]);
    assert_eq!(code, 0, "{err}");

    // Healthy: every check passes.
    let (code, out, err) = check(&s, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    for id in [
        "control-plane",
        "trust-anchor",
        "issuer-chain",
        "issuer-expiry",
        "trust-anchor-expiry",
        "control-plane-workloads",
        "viz-workloads",
        "webhooks",
        "meshed-jobs",
    ] {
        assert!(line(&out, id).starts_with("[pass]"), "{id}\n{out}");
    }
    assert!(
        out.contains("healthy: 0 failed, 0 warnings, 9 passed."),
        "{out}"
    );
    assert!(out.contains("by the cluster's clock"), "{out}");
    assert!(
        line(&out, "webhooks").contains("linkerd-proxy-injector.linkerd.io"),
        "{out}"
    );
    let (code, json, _) = check(&s, &["--format", "json"]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["healthy"], true);
    assert_eq!(report["clock"], "cluster");
    assert_eq!(report["checks"].as_array().unwrap().len(), 9);

    // cert-manager stops renewing and 40 hours pass: the 48h issuer certificate has 8 left.
    s.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::CertManager, true);
    s.cluster
        .sandbox
        .advance_clock(jiff::SignedDuration::from_hours(40));
    let (code, out, err) = check(&s, &[]);
    assert_eq!(code, 0, "a warning is still healthy\n{out}\n{err}");
    let expiry = line(&out, "issuer-expiry");
    assert!(expiry.starts_with("[warn]"), "{out}");
    assert!(
        expiry.contains("the issuer certificate expires in 7h")
            && expiry.contains("warn threshold of 1d"),
        "{out}"
    );
    assert!(
        out.contains("hint: cert-manager should have renewed it at"),
        "{out}"
    );
    assert!(
        line(&out, "trust-anchor-expiry").starts_with("[pass]"),
        "{out}"
    );
    assert!(
        out.contains("healthy: 0 failed, 1 warning, 8 passed."),
        "{out}"
    );
    // CI can gate on warnings, and on its own thresholds.
    let (code, out, _) = check(&s, &["--deny", "warnings"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unhealthy: 0 failed, 1 warning"), "{out}");
    let (code, out, _) = check(&s, &["--fail-expiry", "12h"]);
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "issuer-expiry").starts_with("[FAIL]"), "{out}");
    let (code, out, _) = check(&s, &["--warn-expiry", "6h"]);
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "issuer-expiry").starts_with("[pass]"), "{out}");

    // Another CA as the trust anchor in linkerd-config: proxies would not trust the issuer.
    let other =
        std::fs::read_to_string(root().join("tests/fixtures/certs/other-root-ca.crt")).unwrap();
    let mut config = s
        .cluster
        .get_json(&["-n", "linkerd", "configmap", "linkerd-config"]);
    let values = config["data"]["values"].as_str().unwrap().to_string();
    let mut doc: Value = serde_saphyr::from_str(&values).unwrap();
    doc["identityTrustAnchorsPEM"] = Value::String(other.clone());
    config["data"]["values"] = Value::String(serde_json::to_string(&doc).unwrap());
    for key in [
        "resourceVersion",
        "managedFields",
        "uid",
        "creationTimestamp",
    ] {
        config["metadata"].as_object_mut().unwrap().remove(key);
    }
    let file = s.cluster.file(
        "linkerd-config.json",
        &serde_json::to_string(&config).unwrap(),
    );
    s.cluster.kubectl(&["replace", "-f", &file]).ok();
    let issuer = s
        .cluster
        .get_json(&["-n", "linkerd", "secret", "linkerd-identity-issuer"]);
    let ca = parse_pem_bundle(&secret_text(&issuer, "ca.crt")).unwrap();
    let other = parse_pem_bundle(&other).unwrap();
    let (code, out, _) = check(&s, &[]);
    assert_eq!(code, 1, "{out}");
    let anchor = line(&out, "trust-anchor");
    assert!(anchor.starts_with("[FAIL]"), "{out}");
    assert!(anchor.contains(&other[0].fingerprint), "{out}");
    assert!(anchor.contains(&ca[0].fingerprint), "{out}");
    assert_ne!(other[0].fingerprint, ca[0].fingerprint);
    assert!(
        line(&out, "issuer-chain").starts_with("[FAIL]")
            && line(&out, "issuer-chain").contains("is not signed by the trust anchor"),
        "{out}"
    );
    assert!(out.contains("unhealthy: 2 failed"), "{out}");

    // A Job in the meshed viz namespace: its proxy keeps it running.
    s.cluster
        .apply(
            "stuck-job.yaml",
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: stuck, namespace: linkerd-viz}\n\
             spec:\n  template:\n    spec: {restartPolicy: Never, containers: [{name: j, image: busybox}]}\n",
        )
        .ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let job = s.cluster.get_json(&["-n", "linkerd-viz", "job", "stuck"]);
        if job["status"]["active"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, out, _) = check(&s, &[]);
    assert_eq!(code, 1);
    let jobs = line(&out, "meshed-jobs");
    assert!(
        jobs.starts_with("[FAIL]") && jobs.contains("linkerd-viz/stuck"),
        "{out}"
    );
}

#[test]
fn check_without_a_control_plane_fails_and_says_to_apply() {
    let s = Setup::with_plan(
        "[plan]\nname = \"empty\"\n[manifest.ns]\nyaml = \"\"\"\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n\"\"\"\n",
    );
    let (code, out, err) = check(&s, &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(line(&out, "control-plane").starts_with("[FAIL]"), "{out}");
    assert!(out.contains("hint: apply the plan first"), "{out}");
    // A bad threshold is a usage error.
    let (code, _, err) = check(&s, &["--warn-expiry", "soon"]);
    assert_eq!(code, 1);
    assert!(err.contains("--warn-expiry soon: not a duration"), "{err}");
}
