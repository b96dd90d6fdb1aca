//! `meshplan lint` as a user runs it, offline, on the fixtures of every check
//! (`tests/fixtures/lint/<case>`: the project's own stand-in charts and manifests). Each
//! fixture holds true findings and near misses: the report is snapshotted exactly, and the
//! near misses are asserted absent. JSON and SARIF (validated against the SARIF 2.1.0 schema)
//! carry the same findings.

use serde_json::Value;

use crate::support::{root, run};

const STAND_IN: [&str; 4] = [
    "--repo-dir",
    "linkerd=plans/charts",
    "--repo-dir",
    "jetstack=plans/charts",
];
const SHOP: [&str; 2] = ["--repo-dir", "shop=tests/fixtures/lint/charts"];
const EDGE: [&str; 2] = ["--repo-dir", "edge=tests/fixtures/lint/charts/edge"];

fn lint(case: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let plan = format!("tests/fixtures/lint/{case}/plan.toml");
    let mut args = vec!["lint", plan.as_str(), "--offline"];
    args.extend_from_slice(&STAND_IN);
    args.extend_from_slice(&SHOP);
    args.extend_from_slice(&EDGE);
    args.extend_from_slice(extra);
    run(&args)
}

/// Lints `case`, checks the exit code, snapshots the report and asserts that none of the
/// near misses appears in it.
fn check_case(case: &str, code: i32, near_misses: &[&str]) -> String {
    let (got, stdout, stderr) = lint(case, &[]);
    assert_eq!(got, Some(code), "{case}: exit code\n{stdout}\n{stderr}");
    assert_eq!(stderr, "", "{case}: nothing on stderr");
    for miss in near_misses {
        assert!(
            !stdout.contains(miss),
            "{case}: the near miss {miss} is reported\n{stdout}"
        );
    }
    insta::assert_snapshot!(case, stdout);
    stdout
}

#[test]
fn meshed_job() {
    let out = check_case(
        "meshed_job",
        1,
        &[
            "shop/backup",
            "shop/warmup",
            "shop/node-check",
            "default/cleanup",
        ],
    );
    assert!(
        out.contains("lint: 3 errors, 0 warnings, 0 suppressed."),
        "{out}"
    );
    // The hook Job's fix names the chart's value for its pod annotations.
    assert!(
        out.contains("set the chart value `migrate.podAnnotations`"),
        "{out}"
    );
}

#[test]
fn meshed_job_native_sidecars_are_a_near_miss() {
    let out = check_case("meshed_job_native", 0, &["meshed-job"]);
    assert!(out.starts_with("lint: no findings.\n"), "{out}");
}

#[test]
fn chart_values() {
    let out = check_case(
        "chart_values",
        0,
        &[
            "podAnnotations",
            "nodeSelector",
            "commonLabels",
            "`tls",
            "`config",
            "cache.port",
            "`global",
            "prometheus.enabled",
        ],
    );
    assert!(out.contains("did you mean `proxy.logLevel`?"), "{out}");
    assert!(out.contains("did you mean `dashboard`?"), "{out}");
    assert!(out.contains("`cache.auth.enabld`"), "{out}");
    // Warnings pass unless denied.
    let (code, _, _) = lint("chart_values", &["--deny", "warnings"]);
    assert_eq!(code, Some(1));
}

#[test]
fn crd_schema() {
    let out = check_case("crd_schema", 1, &["api-tls", "default/shop-ok"]);
    assert!(out.contains("did you mean `sourceLabels`?"), "{out}");
    assert!(out.contains("did you mean `secretName`?"), "{out}");
    assert!(out.contains("lint: 6 errors"), "{out}");
}

#[test]
fn issuer() {
    let out = check_case("issuer", 1, &["web-tls"]);
    assert!(out.contains("error[issuer-certificate]"), "{out}");
    assert!(out.contains("warning[issuer-key-algorithm]"), "{out}");
}

#[test]
fn control_plane_namespace() {
    check_case("namespace", 1, &["Namespace linkerd-viz"]);
}

#[test]
fn ingress() {
    let out = check_case(
        "ingress",
        1,
        &[
            "web-ingress-internal",
            "api-with-override",
            "api-nginx",
            "traefik-internal",
        ],
    );
    for id in [
        "viz-dashboard-host",
        "ingress-dst-override",
        "ingress-inject-mode",
    ] {
        assert!(out.contains(&format!("[{id}]")), "{id}\n{out}");
    }
}

#[test]
fn monitoring() {
    check_case(
        "monitoring",
        0,
        &["linkerd-controller", "PodMonitor monitoring/shop"],
    );
}

#[test]
fn suppressed_findings_repeat_their_reason() {
    let out = check_case("suppress", 0, &[]);
    assert!(out.contains("error[meshed-job] (suppressed)"), "{out}");
    assert!(
        out.contains("suppressed: the reindex image wraps its command in linkerd-await"),
        "{out}"
    );
    assert!(
        out.contains("the suppression of `crd-schema` matched no finding"),
        "{out}"
    );
}

#[test]
fn the_sample_plan_is_clean() {
    let mut args = vec!["lint", "plans/linkerd.toml", "--offline"];
    args.extend_from_slice(&STAND_IN);
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.starts_with("lint: no findings.\n"), "{out}");
    // With the dashboard behind Traefik too.
    args.extend(["--var", "viz_dashboard_ingress=true"]);
    let (code, out, _) = run(&args);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("lint: no findings.\n"), "{out}");
}

#[test]
fn json_carries_every_finding() {
    let (code, out, _) = lint("meshed_job", &["--format", "json"]);
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["format_version"], 1);
    assert_eq!(report["online"], false);
    assert_eq!(report["summary"]["errors"], 3);
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 3);
    let hook = &findings[0];
    assert_eq!(hook["check"], "meshed-job");
    assert_eq!(hook["severity"], "error");
    assert_eq!(hook["node"], "helm.shop");
    assert_eq!(hook["object"]["kind"], "Job");
    assert_eq!(hook["object"]["name"], "shop-migrate");
    assert_eq!(hook["template"], "db-migrate/templates/migrate-job.yaml");
    assert_eq!(hook["file"], "tests/fixtures/lint/meshed_job/plan.toml");
    assert!(hook["line"].as_u64().unwrap() > 1);
    let reindex = &findings[1];
    assert_eq!(reindex["file"], "tests/fixtures/lint/meshed_job/jobs.yaml");
    assert_eq!(reindex["field"], "spec.template.metadata.annotations");
}

fn sarif_schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("tests/fixtures/sarif/sarif-schema-2.1.0.json"))
        .unwrap();
    // The 2.1.0 schema's `language` pattern ends in a stray `]`, which the meta-schema's
    // `format: regex` refuses; SARIF 2.1.0 Errata 01 corrected it to the pattern below. Our
    // logs set no `language`, so the correction changes nothing they are judged by.
    let broken = r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$""#;
    assert_eq!(
        text.matches(broken).count(),
        2,
        "the vendored schema changed"
    );
    let text = text.replace(broken, r#""^[a-zA-Z]{2}(-[a-zA-Z]{2})?$""#);
    let schema: Value = serde_json::from_str(&text).unwrap();
    // Draft 4, the schema's own `$schema`; formats (uri, date-time) asserted.
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

#[test]
fn sarif_validates_against_the_sarif_2_1_0_schema() {
    let validator = sarif_schema();
    for case in [
        "meshed_job",
        "chart_values",
        "crd_schema",
        "issuer",
        "namespace",
        "ingress",
        "monitoring",
        "suppress",
        "meshed_job_native",
    ] {
        let (_, out, err) = lint(case, &["--format", "sarif"]);
        let log: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{case}: {e}\n{out}\n{err}"));
        let errors: Vec<String> = validator
            .iter_errors(&log)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{case}: {errors:#?}");
        assert_eq!(log["version"], "2.1.0");
        let run = &log["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), meshplan::lint::CheckId::ALL.len());
        let (_, json, _) = lint(case, &["--format", "json"]);
        let json: Value = serde_json::from_str(&json).unwrap();
        let results = run["results"].as_array().unwrap();
        assert_eq!(
            results.len(),
            json["findings"].as_array().unwrap().len(),
            "{case}"
        );
        for r in results {
            let index = r["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(rules[index]["id"], r["ruleId"], "{case}");
            let region = &r["locations"][0]["physicalLocation"]["region"];
            assert!(region["startLine"].as_u64().unwrap() >= 1, "{case}");
        }
        if case == "suppress" {
            assert_eq!(results[0]["suppressions"][0]["kind"], "inSource");
            assert!(
                results[0]["suppressions"][0]["justification"]
                    .as_str()
                    .unwrap()
                    .contains("linkerd-await")
            );
        }
    }
    // The validator catches a broken log (the test is not vacuous).
    let broken = serde_json::json!({"version": "2.1.0", "runs": [{"results": []}]});
    assert!(
        !validator.is_valid(&broken),
        "a run without a tool is invalid"
    );
}

#[test]
fn a_plan_that_does_not_load_is_reported_like_validate() {
    let (code, out, err) = run(&[
        "lint",
        "tests/fixtures/invalid/suppress_unknown_check/plan.toml",
        "--offline",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert!(err.contains("plan::unknown_check"), "{err}");
    assert!(err.contains("did you mean `meshed-job`?"), "{err}");
}

// ----- plan and apply ---------------------------------------------------------------------

/// A cluster with a running Linkerd control plane of classic proxies (its linkerd-config
/// and the two Deployments the sandbox's Linkerd controller looks for).
const INSTALLED_CONTROL_PLANE: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: linkerd
  labels: {linkerd.io/is-control-plane: "true"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: linkerd-config, namespace: linkerd}
data:
  values: |
    identityTrustDomain: cluster.local
    proxy:
      nativeSidecar: false
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: linkerd-destination, namespace: linkerd}
spec:
  selector: {matchLabels: {app: destination}}
  template:
    metadata: {labels: {app: destination}}
    spec: {containers: [{name: destination, image: cr.l5d.io/linkerd/controller:stable-2.14.10}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: linkerd-proxy-injector, namespace: linkerd}
spec:
  selector: {matchLabels: {app: injector}}
  template:
    metadata: {labels: {app: injector}}
    spec: {containers: [{name: injector, image: cr.l5d.io/linkerd/controller:stable-2.14.10}]}
"#;

const SHOP_PLAN: &str = r#"[plan]
name = "shop"

[repos]
shop = "https://charts.example.com/shop"

[manifest.shop_namespace]
yaml = """
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  annotations:
    linkerd.io/inject: enabled
"""

[helm.shop]
chart = "shop/db-migrate"
version = "0.3.0"
namespace = "shop"
depends_on = ["manifest.shop_namespace"]
wait = { timeout = "5m" }
"#;

#[test]
fn a_meshed_hook_job_stops_plan_and_apply_before_any_write_and_the_fix_applies() {
    use crate::apply_cmd::Setup;
    let s = Setup::with_plan(SHOP_PLAN);
    s.cluster
        .apply("control-plane.yaml", INSTALLED_CONTROL_PLANE)
        .ok();
    for d in ["linkerd-destination", "linkerd-proxy-injector"] {
        s.cluster
            .kubectl(&[
                "rollout",
                "status",
                "-n",
                "linkerd",
                &format!("deployment/{d}"),
                "--timeout=30s",
            ])
            .ok();
    }
    let shop = ["--repo-dir", "shop=tests/fixtures/lint/charts"];
    let before = s.writes();

    // plan: the finding above the plan, exit 1, nothing written.
    let (code, out, err) = s.run("plan", &shop);
    assert_eq!(code, 1, "{out}\n{err}");
    let finding = out.find("error[meshed-job]: Job shop/shop-migrate (helm hook, pre-install, pre-upgrade) never completes").unwrap_or_else(|| panic!("{out}"));
    let plan = out
        .find("meshplan will perform the following actions")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(finding < plan, "findings come above the plan\n{out}");
    assert!(
        out.contains("the control plane runs classic proxies (the installed control plane in linkerd: proxy.nativeSidecar is false)"),
        "{out}"
    );
    assert!(
        out.contains("set the chart value `migrate.podAnnotations`"),
        "{out}"
    );
    assert!(
        err.contains("the plan stopped before any write: lint found 1 error-level finding"),
        "{err}"
    );
    assert_eq!(s.writes(), before, "plan wrote to the cluster");

    // apply: stops at once, before any write.
    let (code, out, err) = s.apply(&shop);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("error[meshed-job]"), "{out}");
    assert!(
        err.contains("apply stopped before any write: lint found 1 error-level finding"),
        "{err}"
    );
    assert!(
        !out.contains("meshplan will perform"),
        "no plan is shown\n{out}"
    );
    assert_eq!(s.writes(), before, "apply wrote to the cluster");

    // The fix the finding names: the plan is clean and apply succeeds (the hook Job completes).
    let fixed = format!(
        "{SHOP_PLAN}[helm.shop.values]\nmigrate = {{ podAnnotations = {{ \"linkerd.io/inject\" = \"disabled\" }} }}\n"
    );
    std::fs::write(&s.plan, fixed).unwrap();
    let (code, out, err) = s.run("plan", &shop);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        !out.contains("meshed-job") && !out.contains("lint:"),
        "{out}"
    );
    let (code, out, err) = s.apply(&shop);
    assert_eq!(code, 0, "{out}\n{err}");
    let api = s
        .cluster
        .get_json(&["-n", "shop", "deployment", "shop-api"]);
    assert_eq!(api["metadata"]["name"], "shop-api");
    let audit = s.cluster.sandbox.audit();
    assert!(
        audit
            .iter()
            .any(|e| e.resource == "jobs" && e.name == "shop-migrate" && e.method == "PATCH"),
        "the hook Job ran"
    );
}

/// Online, facts come from the cluster: its control plane's proxy mode, its CRDs, its issuers.
#[test]
fn online_the_cluster_supplies_the_control_plane_the_crds_and_the_issuers() {
    use crate::apply_cmd::Setup;
    let plan = r#"[plan]
name = "online"

[manifest.jobs]
yaml = """
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  annotations:
    linkerd.io/inject: enabled
---
apiVersion: batch/v1
kind: Job
metadata:
  name: reindex
  namespace: shop
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: reindex, image: registry.example.com/shop/search:1.4.2}]
---
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: shop
  namespace: shop
spec:
  selector: {matchLabels: {app: shop}}
  podMetricsEndpoints:
    - port: metrics
      relabelings:
        - source_labels: [__meta_kubernetes_pod_name]
          targetLabel: pod
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: linkerd-identity-issuer
  namespace: linkerd
spec:
  secretName: linkerd-identity-issuer
  duration: 48h
  renewBefore: 25h
  issuerRef: {name: mesh-ca, kind: ClusterIssuer}
  commonName: identity.linkerd.cluster.local
  isCA: true
  privateKey: {algorithm: ECDSA}
  usages: [cert sign, crl sign, server auth, client auth]
"""
"#;
    let s = Setup::with_plan(plan);
    for crds in ["podmonitor", "cert-manager"] {
        let text = std::fs::read_to_string(root().join(format!("tests/fixtures/crds/{crds}.yaml")))
            .unwrap();
        s.cluster.apply(&format!("{crds}-crds.yaml"), &text).ok();
    }
    // The installed control plane runs native sidecars.
    s.cluster
        .apply(
            "control-plane.yaml",
            &INSTALLED_CONTROL_PLANE.replace("nativeSidecar: false", "nativeSidecar: true"),
        )
        .ok();
    let lint = |extra: &[&str]| {
        let mut args = vec!["--format", "json"];
        args.extend_from_slice(extra);
        let out = std::process::Command::new(crate::apply_cmd::BIN)
            .current_dir(root())
            .arg("lint")
            .arg(&s.plan)
            .arg("--kubeconfig")
            .arg(&s.cluster.kubeconfig)
            .args(&args)
            .output()
            .unwrap();
        let (_, out, err) = crate::apply_cmd::decode(out);
        let report: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}\n{err}"));
        report
    };
    let report = lint(&[]);
    assert_eq!(report["online"], true);
    let checks: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    // The CRDs are the cluster's; native sidecars: the Job is fine; the issuer is nowhere.
    assert_eq!(checks, ["crd-schema", "issuer-certificate"], "{report:#}");
    assert!(
        report["findings"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("did you mean `sourceLabels`?")
    );
    assert!(
        report["findings"][1]["message"].as_str().unwrap().contains(
            "is issued by ClusterIssuer mesh-ca, which neither the plan nor the cluster has"
        ),
        "{report:#}"
    );
    s.cluster
        .apply(
            "mesh-ca.yaml",
            "apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: mesh-ca}\nspec: {selfSigned: {}}\n",
        )
        .ok();
    let report = lint(&[]);
    let checks: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["crd-schema"], "the issuer exists now: {report:#}");
    // Offline the same plan knows neither.
    let offline = lint(&["--offline"]);
    let checks: Vec<&str> = offline["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["meshed-job"], "{offline:#}");
    assert!(
        offline["not_checked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("PodMonitor")),
        "{offline:#}"
    );
    // Classic proxies installed: the Job is reported, naming the installed control plane.
    s.cluster
        .apply("control-plane.yaml", INSTALLED_CONTROL_PLANE)
        .ok();
    let report = lint(&[]);
    let job = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "meshed-job")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert!(
        job["message"]
            .as_str()
            .unwrap()
            .contains("the installed control plane in linkerd: proxy.nativeSidecar is false"),
        "{job:#}"
    );
}

/// The lint's render is only checked, never applied: a chart that generates keys (viz) is
/// rendered from its copy with cheap keys, never from the chart itself.
#[test]
fn the_lint_renders_stand_in_keys() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("helm.log");
    let script = crate::render_stability::logging_helm_of(dir.path(), &log, "$1 $2 $3");
    let mut args = vec!["lint", "plans/linkerd.toml", "--offline"];
    args.extend_from_slice(&STAND_IN);
    let out = crate::support::meshplan()
        .args(&args)
        .env("MESHPLAN_HELM", &script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let runs = std::fs::read_to_string(&log).unwrap();
    let viz: Vec<&str> = runs
        .lines()
        .filter(|l| l.starts_with("template linkerd-viz "))
        .collect();
    assert!(!viz.is_empty(), "{runs}");
    assert!(
        viz.iter().all(|l| l.contains("meshplan-chart-")),
        "viz rendered with its own keys: {runs}"
    );
}
