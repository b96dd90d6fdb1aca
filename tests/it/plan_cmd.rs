//! `meshplan plan` against a sandbox: creates, adopt, updates of single fields, secrets,
//! conflicts, saved change sets, targets, prune, the fast path and errors.

use std::path::{Path, PathBuf};

use meshplan::cluster::ObjectRef;
use meshplan::state::{ObjectRecord, SledStore, StateStore, WriteBatch};
use serde_json::Value;

use crate::support::{meshplan, redact};
use meshplan_sandbox::kubectl::Cluster;

/// A plan with one manifest node: a ConfigMap and a Secret in `default`.
const APP_PLAN: &str = r#"
[plan]
name = "app"

[vars]
mode = "blue"
password = "aHVudGVyMi1vbGQ="   # hunter2-old

[manifest.app]
namespace = "default"
yaml = '''
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: ${var.mode}
  size: "3"
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
type: Opaque
data:
  password: ${var.password}
'''
"#;

/// What meshplan renders for [`APP_PLAN`] (with its ownership marks), for kubectl to apply.
/// Objects with the plan's marks and a state without records are a lost state: a plan over
/// them adopts it explicitly (`--adopt-lost-state`) until records are written.
fn app_objects(mode: &str, password: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: default
  labels:
    app.kubernetes.io/managed-by: meshplan
  annotations:
    meshplan.io/plan: app
    meshplan.io/node: manifest.app
data:
  mode: {mode}
  size: "3"
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: default
  labels:
    app.kubernetes.io/managed-by: meshplan
  annotations:
    meshplan.io/plan: app
    meshplan.io/node: manifest.app
type: Opaque
data:
  password: {password}
"#
    )
}

/// A sandbox, a plan file and a state directory.
struct Setup {
    cluster: Cluster,
    plan: PathBuf,
    state: PathBuf,
}

impl Setup {
    fn new(plan_text: &str) -> Self {
        let cluster = Cluster::start();
        let plan = cluster.dir.path().join("plan.toml");
        std::fs::write(&plan, plan_text).unwrap();
        let state = cluster.dir.path().join("state");
        Self {
            cluster,
            plan,
            state,
        }
    }

    /// Runs `meshplan plan` with the sandbox's kubeconfig and the stand-in charts.
    fn plan(&self, extra: &[&str]) -> (Option<i32>, String, String) {
        let mut cmd = meshplan();
        cmd.arg("plan")
            .arg(&self.plan)
            .arg("--kubeconfig")
            .arg(&self.cluster.kubeconfig)
            .arg("--state")
            .arg(&self.state)
            .args([
                "--repo-dir",
                "linkerd=plans/charts",
                "--repo-dir",
                "jetstack=plans/charts",
            ])
            .args(extra);
        let out = cmd.output().unwrap();
        let clean = |b: &[u8]| {
            redact(&String::from_utf8_lossy(b))
                .replace(&self.cluster.dir.path().display().to_string(), "[TMP]")
        };
        (out.status.code(), clean(&out.stdout), clean(&out.stderr))
    }

    fn plan_json(&self, extra: &[&str]) -> (Option<i32>, Value) {
        let mut args = vec!["--output", "json"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = self.plan(&args);
        let json = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
        (code, json)
    }

    /// `kubectl apply --server-side -f` of `yaml`, as `manager` (kubectl's default when None).
    fn kubectl_apply(&self, yaml: &str, manager: Option<&str>) {
        let file = self.cluster.file("objects.yaml", yaml);
        let mut args = vec!["apply", "--server-side", "-f", file.as_str()];
        let flag;
        if let Some(m) = manager {
            flag = format!("--field-manager={m}");
            args.push(&flag);
        }
        self.cluster.kubectl(&args).ok();
    }
}

/// Every (node, object, action) of a JSON plan report.
fn actions(report: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for node in report["nodes"].as_array().unwrap() {
        for o in node["objects"].as_array().unwrap() {
            let r: ObjectRef = serde_json::from_value(o["object"].clone()).unwrap();
            out.push((
                node["address"].as_str().unwrap().to_owned(),
                r.to_string(),
                o["action"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

fn object<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["objects"].as_array().unwrap())
        .find(|o| o["object"]["name"] == name)
        .unwrap_or_else(|| panic!("no object {name} in {report:#}"))
}

#[test]
fn sample_plan_on_an_empty_sandbox_creates_everything() {
    let setup = Setup::new("");
    let plan = crate::support::root().join("plans/linkerd.toml");
    let setup = Setup { plan, ..setup };
    // The sample plan expects the cluster's own Prometheus Operator: without its PodMonitor
    // CRD, plan stops at once and names the kind and what provides it.
    let (code, stdout, stderr) = setup.plan(&["--detailed-exitcode"]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("kind PodMonitor (monitoring.coreos.com/v1)")
            && stderr.contains("the Prometheus Operator's CRDs"),
        "{stderr}"
    );
    // With them (what plans/sandbox-cluster.toml gives an empty sandbox), everything is a create.
    setup.kubectl_apply(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: monitoring\n",
        None,
    );
    let crd =
        std::fs::read_to_string(crate::support::root().join("tests/fixtures/crds/podmonitor.yaml"))
            .unwrap();
    setup.kubectl_apply(&crd, None);
    let (code, stdout, stderr) = setup.plan(&["--detailed-exitcode"]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("read.trust_anchor\n  value (known after apply)\n"),
        "{stdout}"
    );
    // The control plane, whose trust anchor is read during apply, is planned with a
    // placeholder: its objects are listed and counted, the trust anchor's fields are
    // known after apply.
    assert!(
        stdout.contains(
            "helm.linkerd_control_plane (read.trust_anchor.value is known after apply: rendered with a placeholder)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  + v1 ConfigMap linkerd/linkerd-identity-trust-roots will be created\n      + data[\"ca-bundle.crt\"]: (known after apply)\n"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("rendered during apply"), "{stdout}");
    assert!(
        stdout.contains("Plan: 151 to add, 0 to change, 0 to destroy.\n"),
        "{stdout}"
    );
    insta::assert_snapshot!("sample_plan_human", stdout);

    let (code, report) = setup.plan_json(&[]);
    assert_eq!(code, Some(0));
    let all = actions(&report);
    let count = |a: &str| all.iter().filter(|(_, _, action)| action == a).count();
    // 109 objects of the other nodes and the 42 of the control plane.
    assert_eq!(count("create"), 151, "{all:#?}");
    assert_eq!(
        all.iter()
            .filter(|(node, _, _)| node == "helm.linkerd_control_plane")
            .count(),
        42,
        "{all:#?}"
    );
    // Helm hooks (cert-manager's startupapicheck, viz's namespace-metadata) are not diffed.
    assert_eq!(count("hook"), 9, "{all:#?}");
    assert_eq!(all.len(), 160, "{all:#?}");
    // Certificates are custom resources whose CRD the plan creates.
    let root_ca = object(&report, "root-ca");
    assert_eq!(root_ca["kind_created_by_plan"], true);
    let statuses: Vec<(&str, &str)> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["address"].as_str().unwrap(),
                n["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(statuses.contains(&("read.trust_anchor", "read_during_apply")));
    assert!(statuses.contains(&("helm.linkerd_control_plane", "planned")));
    assert!(statuses.contains(&("check.ca_issuer_ready", "check_during_apply")));
    let control_plane = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["address"] == "helm.linkerd_control_plane")
        .unwrap();
    assert_eq!(
        control_plane["unknown_inputs"],
        serde_json::json!(["read.trust_anchor.value"])
    );
    let roots = object(&report, "linkerd-identity-trust-roots");
    assert_eq!(roots["fields"][0]["path"], "data[\"ca-bundle.crt\"]");
    assert_eq!(roots["fields"][0]["unknown"], true);
    assert_eq!(report["summary"]["add"], 151);
    assert_eq!(report["summary"]["rendered_during_apply"], 0);
}

#[test]
fn objects_applied_by_kubectl_with_the_desired_content_are_adopted() {
    let setup = Setup::new(APP_PLAN);
    setup.kubectl_apply(&app_objects("blue", "aHVudGVyMi1vbGQ="), None);
    let (code, stdout, stderr) = setup.plan(&["--detailed-exitcode", "--adopt-lost-state"]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("  <= v1 ConfigMap default/settings will be adopted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  <= v1 Secret default/creds will be adopted"),
        "{stdout}"
    );
    assert!(!stdout.contains(" ~ "), "{stdout}");
    assert!(
        stdout.ends_with("Plan: 2 to adopt, 0 to add, 0 to change, 0 to destroy.\n"),
        "{stdout}"
    );
    let (_, report) = setup.plan_json(&["--adopt-lost-state"]);
    assert_eq!(
        actions(&report),
        [
            (
                "manifest.app".into(),
                "v1 ConfigMap default/settings".into(),
                "adopt".into()
            ),
            (
                "manifest.app".into(),
                "v1 Secret default/creds".into(),
                "adopt".into()
            ),
        ]
    );
}

#[test]
fn changing_one_value_updates_exactly_that_field() {
    let setup = Setup::new(APP_PLAN);
    // As a previous apply by meshplan left them.
    setup.kubectl_apply(&app_objects("blue", "aHVudGVyMi1vbGQ="), Some("meshplan"));
    let (code, stdout, _) = setup.plan(&[
        "--detailed-exitcode",
        "--var",
        "mode=green",
        "--adopt-lost-state",
    ]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stdout.contains(
            "  ~ v1 ConfigMap default/settings will be updated in place\n      - data.mode: blue\n      + data.mode: green\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("Plan: 0 to adopt, 0 to add, 1 to change, 0 to destroy.\n")
            || stdout.ends_with("Plan: 2 to adopt, 0 to add, 1 to change, 0 to destroy.\n")
            || stdout.ends_with("Plan: 1 to adopt, 0 to add, 1 to change, 0 to destroy.\n"),
        "{stdout}"
    );
    let (_, report) = setup.plan_json(&["--var", "mode=green", "--adopt-lost-state"]);
    let settings = object(&report, "settings");
    assert_eq!(settings["action"], "update");
    let fields = settings["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], "data.mode");
    assert_eq!(fields[0]["before"], "blue");
    assert_eq!(fields[0]["after"], "green");
    // The Secret is unchanged (adopted: the state does not know it yet).
    assert_eq!(object(&report, "creds")["action"], "adopt");
}

#[test]
fn secret_changes_never_show_their_values() {
    let setup = Setup::new(APP_PLAN);
    setup.kubectl_apply(&app_objects("blue", "aHVudGVyMi1vbGQ="), Some("meshplan"));
    let new = "bmV3LXBhc3N3b3Jk"; // new-password
    let var = format!("password={new}");
    let saved = setup.cluster.dir.path().join("saved.json");
    let saved_arg = saved.display().to_string();
    let (code, stdout, stderr) =
        setup.plan(&["--var", &var, "--out", &saved_arg, "--adopt-lost-state"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "  ~ v1 Secret default/creds will be updated in place\n      ~ data.password: (sensitive, changed)\n"
        ),
        "{stdout}"
    );
    let (_, report) = setup.plan_json(&["--var", &var, "--adopt-lost-state"]);
    let json_text = report.to_string();
    let saved_text = std::fs::read_to_string(&saved).unwrap();
    for text in [&stdout, &stderr, &json_text, &saved_text] {
        for secret in [new, "new-password", "aHVudGVyMi1vbGQ=", "hunter2-old"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
    }
    let creds = object(&report, "creds");
    assert_eq!(creds["action"], "update");
    assert_eq!(creds["fields"][0]["sensitive"], true);
    assert_eq!(creds["fields"][0].get("before"), None);
    assert_eq!(creds["fields"][0].get("after"), None);
}

/// A field another manager took is drift, not an error: the plan shows the change that takes
/// it back (naming the manager) and `--detailed-exitcode` exits 2. (Until conflicts were
/// drift, this plan failed with exit 1.)
#[test]
fn a_field_another_manager_took_is_a_change_that_takes_it_back() {
    let setup = Setup::new(APP_PLAN);
    setup.kubectl_apply(&app_objects("red", "aHVudGVyMi1vbGQ="), None);
    let (code, stdout, stderr) = setup.plan(&["--detailed-exitcode", "--adopt-lost-state"]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "  ~ v1 ConfigMap default/settings will take fields back from another field manager\n      # .data.mode is owned by field manager \"kubectl\"\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("      - data.mode: red\n      + data.mode: blue\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "take fields back from another field manager (apply needs --force-conflicts)"
        ),
        "{stdout}"
    );
    assert!(!stderr.contains("conflict"), "not an error: {stderr}");
    // Nothing was written: the value is still kubectl's.
    let live = setup
        .cluster
        .get_json(&["configmap", "settings", "-n", "default"]);
    assert_eq!(live["data"]["mode"], "red");
}

#[test]
fn a_saved_change_set_holds_what_apply_needs() {
    let setup = Setup::new(APP_PLAN);
    setup.kubectl_apply(&app_objects("blue", "aHVudGVyMi1vbGQ="), Some("meshplan"));
    let saved = setup.cluster.dir.path().join("change-set.json");
    let saved_arg = saved.display().to_string();
    let (code, _, stderr) = setup.plan(&[
        "--var",
        "mode=green",
        "--out",
        &saved_arg,
        "--adopt-lost-state",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Saved the change set to"), "{stderr}");
    let loaded = meshplan::diff::saved::load(&saved).unwrap();
    assert_eq!(loaded.format, meshplan::diff::saved::SAVED_FORMAT);
    assert_eq!(loaded.kind, "meshplan-change-set");
    assert!(
        loaded.adopt_lost_state,
        "the saved change set carries the adoption"
    );
    assert_eq!(loaded.change_set.plan, "app");
    assert_eq!(loaded.inputs.plan.len(), 64);
    assert_eq!(loaded.inputs.values.len(), 64);
    let store = SledStore::open(&setup.state, "test").unwrap();
    let meta = store.meta().unwrap();
    drop(store);
    assert_eq!(loaded.state.lineage, meta.lineage);
    assert_eq!(loaded.state.serial, meta.serial);
    let live = setup
        .cluster
        .get_json(&["configmap", "settings", "-n", "default"]);
    let (_, settings) = loaded
        .change_set
        .objects()
        .find(|(_, o)| o.object.name == "settings")
        .unwrap();
    assert_eq!(
        settings.live_resource_version.as_deref(),
        live["metadata"]["resourceVersion"].as_str()
    );
    assert_eq!(settings.action, meshplan::diff::Action::Update);
    assert_eq!(settings.desired_digest.as_ref().map(String::len), Some(64));
    // The plan's variables change the input digest.
    let again = setup.cluster.dir.path().join("again.json");
    setup.plan(&[
        "--var",
        "mode=pink",
        "--out",
        &again.display().to_string(),
        "--adopt-lost-state",
    ]);
    let other = meshplan::diff::saved::load(&again).unwrap();
    assert_ne!(other.inputs.values, loaded.inputs.values);
    assert_eq!(other.inputs.plan, loaded.inputs.plan);
}

#[test]
fn targets_plan_a_node_and_its_dependencies() {
    let setup = Setup::new("");
    let setup = Setup {
        plan: crate::support::root().join("plans/linkerd.toml"),
        ..setup
    };
    let (code, report) = setup.plan_json(&["--target", "manifest.root_ca"]);
    assert_eq!(code, Some(0));
    let nodes: Vec<&str> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        [
            "helm.cert_manager",
            "manifest.selfsigned_issuer",
            "manifest.root_ca"
        ]
    );
    let (code, _, stderr) = setup.plan(&["--target", "manifest.nope"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--target manifest.nope: no node with this address in the plan"),
        "{stderr}"
    );
}

/// Writes object records into the state, as an apply would.
fn record(state: &Path, node: &str, object: &Value, digest: &str) {
    let store = SledStore::open(state, "test").unwrap();
    let r = ObjectRef::from_object(object).unwrap();
    let body = store.protect(object, &[]).unwrap();
    store
        .commit(
            WriteBatch::new().put_object(ObjectRecord {
                node: node.to_owned(),
                object: r,
                uid: object["metadata"]["uid"].as_str().map(str::to_owned),
                resource_version: object["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned),
                applied_digest: digest.to_owned(),
                last_applied: body,
            }),
        )
        .unwrap();
}

#[test]
fn recorded_objects_take_the_fast_path_and_unrendered_ones_are_deleted() {
    let setup = Setup::new(APP_PLAN);
    setup.kubectl_apply(&app_objects("blue", "aHVudGVyMi1vbGQ="), Some("meshplan"));
    let (_, report) = setup.plan_json(&["--adopt-lost-state"]);
    for name in ["settings", "creds"] {
        let digest = object(&report, name)["desired_digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let kind = if name == "settings" {
            "configmap"
        } else {
            "secret"
        };
        let live = setup.cluster.get_json(&[kind, name, "-n", "default"]);
        record(&setup.state, "manifest.app", &live, &digest);
    }
    // An object the node no longer renders, and one of a node that left the plan.
    setup.kubectl_apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: old, namespace: default}\ndata: {a: b}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: gone-node, namespace: default}\n",
        Some("meshplan"),
    );
    let old = setup
        .cluster
        .get_json(&["configmap", "old", "-n", "default"]);
    record(&setup.state, "manifest.app", &old, "x");
    let gone = setup
        .cluster
        .get_json(&["configmap", "gone-node", "-n", "default"]);
    record(&setup.state, "manifest.removed", &gone, "y");
    // A record of an object that no longer exists.
    let mut ghost = old.clone();
    ghost["metadata"]["name"] = "ghost".into();
    record(&setup.state, "manifest.app", &ghost, "z");

    let (code, stdout, _) = setup.plan(&["--detailed-exitcode"]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stdout.contains("manifest.app\n  . v1 ConfigMap default/ghost is already gone (only its state record is removed)\n  - v1 ConfigMap default/old will be deleted\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("manifest.removed (no longer in the plan)\n  - v1 ConfigMap default/gone-node will be deleted\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Plan: 0 to add, 0 to change, 2 to destroy.\n"),
        "{stdout}"
    );
    let (_, report) = setup.plan_json(&[]);
    assert_eq!(object(&report, "settings")["action"], "no_op");
    assert_eq!(object(&report, "creds")["action"], "no_op");

    // With --target, other nodes are not pruned.
    let (_, report) = setup.plan_json(&["--target", "manifest.app"]);
    assert!(!report.to_string().contains("gone-node"), "{report:#}");
}

#[test]
fn no_changes_exit_zero_and_say_so() {
    let setup = Setup::new(APP_PLAN);
    setup.kubectl_apply(&app_objects("blue", "aHVudGVyMi1vbGQ="), Some("meshplan"));
    let (_, report) = setup.plan_json(&["--adopt-lost-state"]);
    for name in ["settings", "creds"] {
        let digest = object(&report, name)["desired_digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let kind = if name == "settings" {
            "configmap"
        } else {
            "secret"
        };
        let live = setup.cluster.get_json(&[kind, name, "-n", "default"]);
        record(&setup.state, "manifest.app", &live, &digest);
    }
    let before = setup.cluster.sandbox.audit().len();
    let (code, stdout, stderr) = setup.plan(&["--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout, "No changes. The cluster matches the plan.\n");
    // The fast path: discovery from the state's cache, one read per kind and namespace, no
    // dry run, no write.
    let mut requests: Vec<String> = setup.cluster.sandbox.audit()[before..]
        .iter()
        .map(|e| format!("{} {}?{}", e.method, e.path, e.query))
        .collect();
    requests.sort();
    assert_eq!(
        requests,
        [
            "GET /api/v1/namespaces/default/configmaps/settings?",
            "GET /api/v1/namespaces/default/secrets/creds?"
        ]
    );
    // The plan wrote no object records.
    let store = SledStore::open(&setup.state, "test").unwrap();
    assert_eq!(store.objects().unwrap().len(), 2);
}

#[test]
fn a_kind_nobody_installs_is_an_error_naming_node_and_object() {
    let setup = Setup::new(
        r#"
[plan]
name = "mon"

[manifest.monitors]
namespace = "default"
yaml = '''
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: web
spec:
  selector: {}
'''
"#,
    );
    let (code, stdout, stderr) = setup.plan(&[]);
    assert_eq!(code, Some(1), "{stdout}");
    let stderr = flat(&stderr);
    assert!(
        stderr.contains("manifest.monitors: kind PodMonitor (monitoring.coreos.com/v1) of monitoring.coreos.com/v1 PodMonitor"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is not installed in the cluster"),
        "{stderr}"
    );
}

#[test]
fn chart_and_helm_errors_name_the_node() {
    let setup = Setup::new(
        r#"
[plan]
name = "cp"

[repos]
linkerd = "https://helm.linkerd.io/stable"

[helm.control_plane]
chart = "linkerd/linkerd-control-plane"
version = "1.16.11"
namespace = "linkerd"
[helm.control_plane.values]
identityTrustAnchorsPEM = ""

[helm.missing]
chart = "linkerd/no-such-chart"
version = "1.0.0"
namespace = "linkerd"
"#,
    );
    let (code, _, stderr) = setup.plan(&[]);
    assert_eq!(code, Some(1));
    let stderr = flat(&stderr);
    assert!(
        stderr.contains("helm.missing: chart linkerd/no-such-chart does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("helm.control_plane: `helm template` failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Please provide the identity trust anchors"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_cluster_is_a_clear_error() {
    let setup = Setup::new(APP_PLAN);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = setup.cluster.dir.path().join("dead-kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_for(port)).unwrap();
    let out = meshplan()
        .arg("plan")
        .arg(&setup.plan)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--state")
        .arg(&setup.state)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!(
            "the cluster at http://127.0.0.1:{port} is unreachable"
        )),
        "{stderr}"
    );
}

#[test]
fn expired_credentials_are_a_clear_error() {
    // A server that answers 401 to every request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;
            let _ = write!(
                s,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let setup = Setup::new(APP_PLAN);
    let kubeconfig = setup.cluster.dir.path().join("401-kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_for(port)).unwrap();
    let out = meshplan()
        .arg("plan")
        .arg(&setup.plan)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--state")
        .arg(&setup.state)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("refused the credentials"), "{stderr}");
}

/// A kubeconfig for a server on 127.0.0.1:`port`.
fn kubeconfig_for(port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: expired\n"
    )
}

/// A miette report as one line: frame characters dropped, wrapped lines joined (without a
/// space after a hyphen, where the wrapping broke a word), whitespace collapsed.
fn flat(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = line.replace(['│', '×'], " ");
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() && !out.ends_with('-') {
            out.push(' ');
        }
        out.push_str(line);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
