//! `meshplan drift` against a sandbox after applying the sample plan, as an operator's CI runs
//! it: no drift right after apply (every format); a PodMonitor patched by hand (the field,
//! both values, the manager; JSON valid against the documented schema, JUnit with one
//! failure, Markdown a table) and put back by `apply --force-conflicts`; a Deployment scaled
//! by hand (drift, plan exit 2, apply refuses and writes nothing, an ignore rule quiets all
//! three and leaves `replicas` to kubectl); cert-manager re-issuing the identity issuer
//! Secret; a deleted PodMonitor (missing); an object marked as the plan's that the state does
//! not know (unmanaged); a drift run while another process holds the state; and the errors
//! (unreachable cluster, unreadable state, broken plan) that exit 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::apply_cmd::{BIN, Setup, decode};
use crate::support::root;

/// Runs `meshplan drift` on `plan` against the setup's cluster and state.
fn drift(s: &Setup, plan: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .arg("drift")
        .arg(plan)
        .arg("--kubeconfig")
        .arg(&s.cluster.kubeconfig)
        .arg("--state")
        .arg(&s.state)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    decode(out)
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("docs/drift-report.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

/// The JSON report, checked against the documented schema.
fn json_report(s: &Setup, plan: &Path) -> (i32, Value) {
    let (code, out, err) = drift(s, plan, &["--format", "json"]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let validator = schema();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the report does not match the schema: {errors:#?}\n{out}"
    );
    (code, report)
}

/// A parsed JUnit file: (test cases, failures), with the totals of `<testsuites>` checked.
fn junit(text: &str) -> (usize, Vec<(String, String)>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut declared = (None, None);
    let mut current = String::new();
    let mut depth = 0;
    loop {
        let event = reader.read_event().unwrap();
        let opens = matches!(event, Event::Start(_));
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |name: &str| {
                    e.attributes()
                        .filter_map(Result::ok)
                        .find(|a| a.key.as_ref() == name)
                        .map(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                .unwrap()
                                .into_owned()
                        })
                };
                match e.name().as_ref() {
                    "testsuites" => {
                        assert_eq!(depth, 0, "testsuites is the root");
                        declared = (
                            attr("tests").and_then(|t| t.parse::<usize>().ok()),
                            attr("failures").and_then(|t| t.parse::<usize>().ok()),
                        );
                    }
                    "testsuite" => assert!(attr("name").is_some()),
                    "testcase" => {
                        cases += 1;
                        current = attr("name").unwrap();
                        assert!(attr("classname").is_some());
                    }
                    "failure" => {
                        failures.push((current.clone(), attr("message").unwrap_or_default()));
                    }
                    other => panic!("unexpected element {other}"),
                }
                if opens {
                    depth += 1;
                }
            }
            Event::End(_) => depth -= 1,
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(declared, (Some(cases), Some(failures.len())), "{text}");
    (cases, failures)
}

/// The sample plan with `extra` appended, in the cluster's directory (its manifests copied
/// beside it).
fn plan_with(s: &Setup, name: &str, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("plans/linkerd.toml")).unwrap();
    let dir = s.cluster.dir.path();
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    for entry in std::fs::read_dir(root().join("plans/manifests")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join("manifests").join(entry.file_name())).unwrap();
    }
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

#[test]
fn drift_of_a_patched_and_deleted_podmonitor_and_of_unknown_objects() {
    let s = Setup::sample();
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");

    // Right after apply: no drift, in every format.
    let (code, out, err) = drift(&s, &s.plan, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("No drift: every object plan linkerd owns (")
            && out.contains(") matches what was last applied."),
        "{out}"
    );
    let (code, report) = json_report(&s, &s.plan);
    assert_eq!(code, 0);
    assert_eq!(report["has_drift"], false);
    assert_eq!(report["state"]["source"], "database");
    let owned = report["summary"]["objects"].as_u64().unwrap();
    assert!(owned > 100, "{report}");
    assert_eq!(report["summary"]["in_sync"].as_u64(), Some(owned));
    let (code, md, _) = drift(&s, &s.plan, &["--format", "markdown"]);
    assert_eq!(code, 0);
    assert!(md.contains("**No drift**"), "{md}");
    let (code, xml, _) = drift(&s, &s.plan, &["--format", "junit"]);
    assert_eq!(code, 0);
    let (cases, failures) = junit(&xml);
    assert_eq!((cases as u64, failures.len()), (owned, 0));

    // A field meshplan owns, patched by hand.
    s.cluster
        .kubectl(&[
            "-n",
            "monitoring",
            "patch",
            "podmonitor",
            "linkerd-controller",
            "--type=merge",
            "-p",
            r#"{"spec":{"namespaceSelector":{"matchNames":["linkerd"]}}}"#,
        ])
        .ok();
    let (code, out, err) = drift(&s, &s.plan, &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        out.contains("  ~ monitoring.coreos.com/v1 PodMonitor monitoring/linkerd-controller has changed\n      .spec.namespaceSelector.matchNames: [\"linkerd\",\"linkerd-viz\"] → [\"linkerd\"] (changed by kubectl-patch, Update, "),
        "{out}"
    );
    let (code, report) = json_report(&s, &s.plan);
    assert_eq!(code, 2);
    assert_eq!(report["summary"]["changed"], 1);
    let node = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["address"] == "manifest.linkerd_podmonitors")
        .unwrap();
    let changed = node["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["status"] == "changed")
        .unwrap();
    let field = &changed["fields"][0];
    assert_eq!(field["path"], ".spec.namespaceSelector.matchNames");
    assert_eq!(field["pointer"], "/spec/namespaceSelector/matchNames");
    assert_eq!(field["change"], "modified");
    assert_eq!(
        field["applied"],
        serde_json::json!(["linkerd", "linkerd-viz"])
    );
    assert_eq!(field["live"], serde_json::json!(["linkerd"]));
    assert_eq!(field["owner"]["manager"], "kubectl-patch");
    assert!(field["owner"]["time"].is_string());
    // The JUnit file, written with --output-file while the human report goes to stdout.
    let file = s.cluster.dir.path().join("drift.xml");
    let (code, out, _) = drift(
        &s,
        &s.plan,
        &["--format", "junit", "--output-file", file.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(
        out.contains("Drift: 1 changed, 0 missing, 0 unmanaged"),
        "{out}"
    );
    let (_, failures) = junit(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0]
            .0
            .contains("PodMonitor monitoring/linkerd-controller")
    );
    assert!(failures[0].1.contains(".spec.namespaceSelector.matchNames"));
    let (_, md, _) = drift(&s, &s.plan, &["--format", "markdown"]);
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 3, "a header, its rule and one row:\n{md}");
    assert_eq!(rows[1], "|---|---|---|---|---|---|---|");
    assert!(
        rows[2].contains("`.spec.namespaceSelector.matchNames`"),
        "{md}"
    );

    // apply --force-conflicts takes the field back; drift is quiet again.
    let (code, out, err) = s.apply(&["--force-conflicts"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let monitor = s
        .cluster
        .get_json(&["podmonitor", "-n", "monitoring", "linkerd-controller"]);
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        serde_json::json!(["linkerd", "linkerd-viz"])
    );
    let (code, out, err) = drift(&s, &s.plan, &[]);
    assert_eq!(code, 0, "{out}\n{err}");

    // cert-manager re-issues the identity issuer Secret once it is deleted: not drift.
    let before = s
        .cluster
        .get_json(&["secret", "-n", "linkerd", "linkerd-identity-issuer"]);
    s.cluster
        .kubectl(&[
            "-n",
            "linkerd",
            "delete",
            "secret",
            "linkerd-identity-issuer",
        ])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let again = s.cluster.kubectl(&[
            "-n",
            "linkerd",
            "get",
            "secret",
            "linkerd-identity-issuer",
            "-o",
            "json",
        ]);
        if again.code == 0 {
            let again: Value = serde_json::from_str(&again.stdout).unwrap();
            assert_ne!(
                again["metadata"]["uid"], before["metadata"]["uid"],
                "a new Secret"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cert-manager did not re-issue the Secret"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out, err) = drift(&s, &s.plan, &[]);
    assert_eq!(code, 0, "a re-issued Secret is not drift:\n{out}\n{err}");

    // A PodMonitor deleted by hand is missing; an object marked as the plan's that the state
    // does not know is unmanaged.
    s.cluster
        .kubectl(&["-n", "monitoring", "delete", "podmonitor", "linkerd-proxy"])
        .ok();
    s.cluster
        .apply(
            "stray.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stray\n  namespace: default\n  labels: {app.kubernetes.io/managed-by: meshplan}\n  annotations: {meshplan.io/plan: linkerd, meshplan.io/node: manifest.extra}\ndata: {a: \"1\"}\n",
        )
        .ok();
    let (code, out, err) = drift(&s, &s.plan, &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        out.contains(
            "  - monitoring.coreos.com/v1 PodMonitor monitoring/linkerd-proxy is missing\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("  ! v1 ConfigMap default/stray (node manifest.extra, created by kubectl"),
        "{out}"
    );
    assert!(
        out.contains("Drift: 0 changed, 1 missing, 1 unmanaged"),
        "{out}"
    );
    let (_, report) = json_report(&s, &s.plan);
    assert_eq!(report["summary"]["missing"], 1);
    assert_eq!(report["unmanaged"][0]["object"]["name"], "stray");
    let (_, xml, _) = drift(&s, &s.plan, &["--format", "junit"]);
    let (_, failures) = junit(&xml);
    assert_eq!(failures.len(), 2, "{failures:?}");

    // While another process holds the state (its writer lock and its database), drift reads
    // the snapshot that process published.
    let holder = {
        use meshplan::state::StateStore as _;
        let store = meshplan::state::SledStore::open(&s.state, "apply").unwrap();
        let serial = store.meta().unwrap().serial;
        (store, serial)
    };
    let (code, report) = json_report(&s, &s.plan);
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["state"]["source"], "snapshot");
    assert_eq!(report["state"]["serial"], holder.1);
    assert!(
        report["state"]["held_by"]
            .as_str()
            .is_some_and(|h| h.starts_with("meshplan apply (pid ")),
        "{report}"
    );
    assert_eq!(report["summary"]["missing"], 1);
    let (code, out, _) = drift(&s, &s.plan, &[]);
    assert_eq!(code, 2);
    assert!(out.starts_with("Note: meshplan apply (pid "), "{out}");
    drop(holder);
}

#[test]
fn a_scaled_deployment_is_drift_until_an_ignore_rule_gives_replicas_up() {
    let s = Setup::sample();
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    s.cluster
        .kubectl(&[
            "-n",
            "linkerd-viz",
            "scale",
            "deploy",
            "web",
            "--replicas=3",
        ])
        .ok();

    let (code, out, err) = drift(&s, &s.plan, &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        out.contains("  ~ apps/v1 Deployment linkerd-viz/web has changed\n      .spec.replicas: 1 → 3 (changed by kubectl, Update of scale, "),
        "{out}"
    );

    // The plan shows the change that takes the field back (exit 2, not an error).
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        out.contains("  ~ apps/v1 Deployment linkerd-viz/web will take fields back from another field manager\n      # .spec.replicas is owned by field manager \"kubectl\"\n"),
        "{out}"
    );

    // Apply without --force-conflicts refuses before writing anything.
    let before = s.writes();
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("--force-conflicts"), "{err}");
    assert!(
        err.contains("helm.linkerd_viz: apps/v1 Deployment linkerd-viz/web"),
        "{err}"
    );
    assert_eq!(s.writes(), before, "the refused apply wrote to the cluster");

    // With an ignore rule for replicas, plan, apply and drift are quiet.
    let plan = plan_with(
        &s,
        "ignore.toml",
        "[[ignore]]\nkind = \"Deployment\"\nname = \"web\"\nnamespace = \"linkerd-viz\"\nfields = [\"/spec/replicas\"]\nreason = \"scaled by hand\"\n",
    );
    let run = |sub: &str, extra: &[&str]| decode(s.command(sub, &plan, extra).output().unwrap());
    let (code, out, err) = run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = run("apply", &["--auto-approve"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("No changes."), "{err}");
    let (code, out, err) = drift(&s, &plan, &[]);
    assert_eq!(code, 0, "{out}\n{err}");

    // The field is kubectl's: scaling again is not drift, and an apply leaves it alone.
    s.cluster
        .kubectl(&[
            "-n",
            "linkerd-viz",
            "scale",
            "deploy",
            "web",
            "--replicas=4",
        ])
        .ok();
    let (code, out, err) = drift(&s, &plan, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = run("apply", &["--auto-approve"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let web = s.cluster.get_json(&[
        "deploy",
        "-n",
        "linkerd-viz",
        "web",
        "--show-managed-fields",
    ]);
    assert_eq!(web["spec"]["replicas"], 4);
    let ours = web["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "meshplan" && e["operation"] == "Apply")
        .unwrap();
    assert!(
        ours["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "{ours:#}"
    );

    // Sensitive values are reported as changed but never shown: a Secret's data, and the
    // trust anchor the plan read from a Secret into a ConfigMap.
    let anchor = s.cluster.get_json(&[
        "configmap",
        "-n",
        "linkerd",
        "linkerd-identity-trust-roots",
    ])["data"]["ca-bundle.crt"]
        .as_str()
        .unwrap()
        .to_owned();
    let first_line = anchor.lines().find(|l| !l.starts_with("-----")).unwrap();
    let key = s
        .cluster
        .get_json(&["secret", "-n", "linkerd", "linkerd-sp-validator-k8s-tls"])["data"]["tls.key"]
        .as_str()
        .unwrap()
        .to_owned();
    s.cluster
        .kubectl(&[
            "-n",
            "linkerd",
            "patch",
            "configmap",
            "linkerd-identity-trust-roots",
            "--type=merge",
            "-p",
            r#"{"data":{"ca-bundle.crt":"forged-anchor"}}"#,
        ])
        .ok();
    s.cluster
        .kubectl(&[
            "-n",
            "linkerd",
            "patch",
            "secret",
            "linkerd-sp-validator-k8s-tls",
            "--type=merge",
            "-p",
            r#"{"data":{"tls.key":"Zm9yZ2VkLWtleQ=="}}"#,
        ])
        .ok();
    let (code, out, err) = drift(&s, &plan, &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        out.contains("Drift: 2 changed, 0 missing, 0 unmanaged"),
        "{out}"
    );
    assert!(
        out.contains("  ~ v1 ConfigMap linkerd/linkerd-identity-trust-roots has changed\n")
            && out.contains("  ~ v1 Secret linkerd/linkerd-sp-validator-k8s-tls has changed\n"),
        "{out}"
    );
    assert_eq!(
        out.matches(": (sensitive) → (sensitive) (changed by kubectl-patch, Update, ")
            .count(),
        2,
        "{out}"
    );
    let (code, report) = json_report(&s, &plan);
    assert_eq!(code, 2);
    let text = report.to_string();
    for output in [&out, &text] {
        for secret in [
            "forged-anchor",
            first_line,
            "Zm9yZ2VkLWtleQ==",
            key.as_str(),
        ] {
            assert!(!output.contains(secret), "{secret} shown:\n{output}");
        }
    }
    let fields: Vec<&Value> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["objects"].as_array().unwrap())
        .filter(|o| o["status"] == "changed")
        .flat_map(|o| o["fields"].as_array().unwrap())
        .collect();
    assert_eq!(fields.len(), 2, "{report:#}");
    for f in fields {
        assert_eq!(f["sensitive"], true, "{f}");
        assert_eq!(f["change"], "modified", "{f}");
        assert!(f.get("applied").is_none_or(Value::is_null), "{f}");
        assert!(f.get("live").is_none_or(Value::is_null), "{f}");
    }
    // apply --force-conflicts puts both back; drift is quiet again.
    let (code, out, err) = run("apply", &["--auto-approve", "--force-conflicts"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let roots = s
        .cluster
        .get_json(&["configmap", "-n", "linkerd", "linkerd-identity-trust-roots"]);
    assert_eq!(roots["data"]["ca-bundle.crt"], anchor.as_str());
    let (code, out, err) = drift(&s, &plan, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn errors_exit_1_never_0_or_2() {
    let s = Setup::with_plan(crate::apply_cmd::SMALL);
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = drift(&s, &s.plan, &[]);
    assert_eq!(code, 0, "{out}\n{err}");

    // An unreachable cluster.
    let unreachable = s.cluster.dir.path().join("unreachable");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &unreachable,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .args(["drift", s.plan.to_str().unwrap(), "--kubeconfig"])
        .arg(&unreachable)
        .arg("--state")
        .arg(&s.state)
        .output()
        .unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");

    // A state that cannot be read: none at all, then one whose key is another.
    let other = s.cluster.dir.path().join("other-state");
    let out = Command::new(BIN)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .args(["drift", s.plan.to_str().unwrap(), "--kubeconfig"])
        .arg(&s.cluster.kubeconfig)
        .arg("--state")
        .arg(&other)
        .output()
        .unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("there is no state at"), "{err}");
    assert!(!other.exists(), "drift created a state");
    let out = Command::new(BIN)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env(
            "MESHPLAN_STATE_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .args(["drift", s.plan.to_str().unwrap(), "--kubeconfig"])
        .arg(&s.cluster.kubeconfig)
        .arg("--state")
        .arg(&s.state)
        .output()
        .unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("encrypted with another key"), "{err}");

    // A command line with an error (clap's own usage errors exit 1 too).
    let (code, out, err) = drift(&s, &s.plan, &["--format", "yaml"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("invalid value 'yaml'"), "{err}");

    // A plan with an error.
    let broken = s.cluster.dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[plan]\nname = \"small\"\n[manifest.x]\nfiel = \"x.yaml\"\n",
    )
    .unwrap();
    let (code, out, err) = drift(&s, &broken, &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("unknown field `fiel`"), "{err}");
    assert!(err.contains("broken.toml:4:1"), "{err}");
}

/// A webhook whose CA bundle cert-manager's CA injector fills in (the chart sets a
/// placeholder): the built-in rule gives the field up, so nothing conflicts or drifts.
const INJECTED: &str = r#"
[plan]
name = "injected"

[manifest.crd]
yaml = '''
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificates.cert-manager.io
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {plural: certificates, singular: certificate, kind: Certificate, listKind: CertificateList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
'''

[manifest.ca]
namespace = "default"
yaml = '''
apiVersion: v1
kind: Secret
metadata:
  name: web-ca
type: Opaque
data:
  ca.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJmYWtlCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K
'''

[manifest.webhook]
depends_on = ["manifest.crd", "manifest.ca"]
yaml = '''
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: web-validator
  annotations:
    cert-manager.io/inject-ca-from-secret: default/web-ca
webhooks:
- name: validate.web.example.com
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Ignore
  clientConfig:
    caBundle: Cg==
    service: {name: web-validator, namespace: default}
  rules:
  - {apiGroups: ["example.com"], apiVersions: ["v1"], operations: ["CREATE"], resources: ["widgets"]}
'''
"#;

#[test]
fn a_ca_bundle_the_injector_writes_is_neither_drift_nor_a_conflict() {
    let s = Setup::with_plan(INJECTED);
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJmYWtlCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let w = s
            .cluster
            .get_json(&["validatingwebhookconfiguration", "web-validator"]);
        if w["webhooks"][0]["clientConfig"]["caBundle"] == ca {
            break;
        }
        assert!(Instant::now() < deadline, "no CA bundle injected: {w:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out, err) = drift(&s, &s.plan, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("No changes."), "{err}");
    let w = s
        .cluster
        .get_json(&["validatingwebhookconfiguration", "web-validator"]);
    assert_eq!(w["webhooks"][0]["clientConfig"]["caBundle"], ca);
}
