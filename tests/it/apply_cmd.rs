//! `meshplan apply`, `destroy`, `rollback` and `state` as a user runs them, against a
//! sandbox: the sample plan end to end, a second apply that sends nothing, prune, the writer
//! lock, stale saved change sets, destroy with prevent_destroy and
//! foreign objects.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use meshplan_sandbox::SandboxConfig;
use serde_json::Value;

use crate::support::root;
use meshplan_sandbox::kubectl::Cluster;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_meshplan");

/// How many times the transport sends a request that keeps failing: a fault meant to fail a
/// step must hit every attempt.
pub(crate) const ATTEMPTS: u64 = 6;

pub(crate) struct Setup {
    pub(crate) cluster: Cluster,
    pub(crate) plan: PathBuf,
    pub(crate) state: PathBuf,
}

fn quick() -> SandboxConfig {
    let mut config = SandboxConfig::default();
    config.controllers.rollout_delay = Duration::from_millis(30);
    config.controllers.webhook_delay = Duration::from_millis(50);
    config
}

impl Setup {
    /// A sandbox with the cluster's own Prometheus pieces (namespace and PodMonitor CRD) and
    /// the sample plan.
    pub(crate) fn sample() -> Self {
        let cluster = Cluster::start_with(quick());
        cluster
            .apply(
                "monitoring.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: monitoring\n",
            )
            .ok();
        let crd =
            std::fs::read_to_string(root().join("tests/fixtures/crds/podmonitor.yaml")).unwrap();
        cluster.apply("podmonitor-crd.yaml", &crd).ok();
        let state = cluster.dir.path().join("state");
        Self {
            cluster,
            plan: root().join("plans/linkerd.toml"),
            state,
        }
    }

    pub(crate) fn with_plan(text: &str) -> Self {
        let cluster = Cluster::start_with(quick());
        let plan = cluster.dir.path().join("plan.toml");
        std::fs::write(&plan, text).unwrap();
        let state = cluster.dir.path().join("state");
        Self {
            cluster,
            plan,
            state,
        }
    }

    pub(crate) fn command(&self, sub: &str, plan: &std::path::Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(root())
            .arg(sub)
            .arg(plan)
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
            .args(extra)
            .stdin(Stdio::null());
        cmd
    }

    pub(crate) fn run(&self, sub: &str, extra: &[&str]) -> (i32, String, String) {
        let out = self.command(sub, &self.plan, extra).output().unwrap();
        decode(out)
    }

    pub(crate) fn apply(&self, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec!["--auto-approve"];
        args.extend_from_slice(extra);
        self.run("apply", &args)
    }

    pub(crate) fn state_cmd(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .current_dir(root())
            .arg("state")
            .args(args)
            .arg("--state")
            .arg(&self.state)
            .output()
            .unwrap();
        decode(out)
    }

    pub(crate) fn writes(&self) -> usize {
        self.cluster
            .sandbox
            .audit()
            .iter()
            .filter(|e| matches!(e.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
            .filter(|e| !e.query.contains("dryRun"))
            .count()
    }

    /// Writes the sandbox has answered, the apply's own Lease (its lock) left out.
    pub(crate) fn object_writes(&self) -> usize {
        self.cluster
            .sandbox
            .audit()
            .iter()
            .filter(|e| matches!(e.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
            .filter(|e| !e.query.contains("dryRun") && e.resource != "leases")
            .count()
    }
}

pub(crate) fn decode(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_sample_plan_applies_then_sends_nothing_and_plans_empty() {
    let s = Setup::sample();
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("Apply complete."), "{err}");
    assert!(
        err.contains("read.trust_anchor.value = (sensitive)"),
        "the value unknown at plan time is reported, masked: {err}"
    );
    // The control plane, planned with a placeholder for the trust anchor, was rendered with
    // the real one and applied because it was what the plan showed.
    assert!(
        out.contains("helm.linkerd_control_plane (read.trust_anchor.value is known after apply"),
        "{out}"
    );
    assert!(
        err.contains("helm.linkerd_control_plane: rendered with the values read, as planned"),
        "{err}"
    );
    // The plain-line progress a person reads: each node that did something once, with its
    // counts and duration, and a short summary (the full list of actions needs -v or JSON).
    for node in [
        "helm.cert_manager",
        "helm.linkerd_control_plane",
        "helm.linkerd_viz",
        "manifest.linkerd_podmonitors",
    ] {
        let lines = err
            .lines()
            .filter(|l| l.starts_with(&format!("{node}: ")))
            .count();
        assert_eq!(lines, 1, "{node} once: {err}");
    }
    assert!(
        err.contains("apply succeeded in ") && err.contains(": 151 created, 9 hooks run\n"),
        "{err}"
    );
    assert!(err.lines().count() < 30, "{err}");
    insta::with_settings!({filters => vec![
        (r"Cluster http://127\.0\.0\.1:\d+ ", "Cluster http://127.0.0.1:[PORT] "),
        (r"state /\S+", "state [STATE]"),
        (r"\((\d+(\.\d)?(ms|s)|\d+m(\d\ds)?|\d+h(\d\dm)?)\)", "([DURATION])"),
        (r" in (\d+(\.\d)?(ms|s)|\d+m(\d\ds)?|\d+h(\d\dm)?):", " in [DURATION]:"),
    ]}, {
        // "still waiting" lines come only when a node waits long, and nodes of one phase
        // finish in any order: timing, not substance.
        let mut shown: Vec<String> = Vec::new();
        let mut nodes: Vec<&str> = Vec::new();
        for line in err.lines().filter(|l| !l.contains(": still waiting after ")) {
            if line.starts_with("helm.") || line.starts_with("manifest.") {
                nodes.push(line);
                continue;
            }
            nodes.sort_unstable();
            shown.extend(nodes.drain(..).map(str::to_owned));
            shown.push(line.to_owned());
        }
        insta::assert_snapshot!("sample_apply_plain", shown.join("\n"));
    });
    // Every workload is ready.
    for kind in ["deployments", "statefulsets", "daemonsets"] {
        let list = s.cluster.get_json(&[kind, "-A"]);
        for item in list["items"].as_array().unwrap() {
            let want = item["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = item["status"]["readyReplicas"]
                .as_i64()
                .or(item["status"]["numberReady"].as_i64())
                .unwrap_or(0);
            assert!(
                ready >= want.min(1),
                "{kind} {} not ready: {:#}",
                item["metadata"]["name"],
                item["status"]
            );
        }
    }
    // The trust anchor in the control plane's config is the issuer Secret's ca.crt.
    let secret = s
        .cluster
        .get_json(&["secret", "-n", "linkerd", "linkerd-identity-issuer"]);
    let ca = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["ca.crt"].as_str().unwrap())
        .unwrap();
    let ca = String::from_utf8(ca).unwrap();
    let roots = s
        .cluster
        .get_json(&["configmap", "-n", "linkerd", "linkerd-identity-trust-roots"]);
    assert_eq!(
        roots["data"]["ca-bundle.crt"].as_str().unwrap().trim(),
        ca.trim()
    );

    // Each applied node's render is kept as its previous render (Secret data encrypted).
    {
        use meshplan::state::StateStore as _;
        let store = meshplan::state::SledStore::open(&s.state, "test").unwrap();
        for node in ["helm.linkerd_control_plane", "manifest.root_ca"] {
            let entry = store.render_cache(&format!("previous:{node}")).unwrap();
            assert!(entry.is_some(), "no previous render of {node}");
        }
    }

    // A second apply sends no write request.
    let before = s.writes();
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("No changes."), "{err}");
    assert_eq!(s.writes(), before, "the second apply wrote to the cluster");
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");

    // The state lists what was applied.
    let (code, out, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("manifest.root_ca  cert-manager.io/v1 Certificate cert-manager/root-ca"));

    // Prune: without the PodMonitors node, its objects (and only them) are deleted.
    let text = std::fs::read_to_string(&s.plan).unwrap();
    let cut = text.find("[manifest.linkerd_podmonitors]").unwrap();
    let pruned = s.cluster.dir.path().join("pruned.toml");
    std::fs::write(&pruned, &text[..cut]).unwrap();
    std::fs::create_dir_all(s.cluster.dir.path().join("manifests")).unwrap();
    for entry in std::fs::read_dir(root().join("plans/manifests")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            s.cluster
                .dir
                .path()
                .join("manifests")
                .join(entry.file_name()),
        )
        .unwrap();
    }
    let out = s.command("plan", &pruned, &[]).output().unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("Plan: 0 to add, 0 to change, 3 to destroy."),
        "{out}"
    );
    let before = s.cluster.sandbox.object_count();
    let out = s
        .command("apply", &pruned, &["--auto-approve"])
        .output()
        .unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(s.cluster.sandbox.object_count(), before - 3);
    let monitors = s.cluster.get_json(&["podmonitors", "-A"]);
    assert_eq!(monitors["items"].as_array().unwrap().len(), 0);
}

/// A small plan: a namespace, ConfigMaps and a Deployment, quick to apply many times.
pub(crate) const SMALL: &str = r#"
[plan]
name = "small"

[vars]
mode = "blue"

[manifest.ns]
yaml = '''
apiVersion: v1
kind: Namespace
metadata:
  name: app
'''

[manifest.config]
namespace = "app"
depends_on = ["manifest.ns"]
yaml = '''
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: ${var.mode}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: more
data:
  a: "1"
'''

[manifest.web]
namespace = "app"
depends_on = ["manifest.config"]
yaml = '''
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
'''
"#;

#[test]
fn two_concurrent_applies_one_proceeds_the_other_names_the_holder() {
    let s = Setup::with_plan(SMALL);
    // Hold the lock with a slow apply: the Deployment's rollout is paused.
    s.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, true);
    let mut first = s
        .command("apply", &s.plan, &["--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = s.state.join("lock");
    for _ in 0..200 {
        if lock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(lock.exists());
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    // The message may be wrapped: compare with whitespace collapsed.
    let flat = err.replace('│', " ");
    let flat: Vec<&str> = flat.split_whitespace().collect();
    let flat = flat.join(" ");
    assert!(flat.contains("is locked by meshplan apply (pid"), "{err}");
    assert!(
        flat.contains(&format!("pid {} on host", first.id())),
        "{err}"
    );
    s.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, false);
    let status = first.wait().unwrap();
    assert!(status.success());
}

#[test]
fn a_stale_saved_change_set_is_refused_with_the_reason() {
    let s = Setup::with_plan(SMALL);
    let saved = s.cluster.dir.path().join("changes.json");
    let (code, _, err) = s.run("plan", &["--out", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // Someone else applies first: the state moved on.
    let (code, _, err) = s.apply(&[]);
    assert_eq!(code, 0, "{err}");
    let out = s.command("apply", &saved, &[]).output().unwrap();
    let (code, _, err) = decode(out);
    assert_eq!(code, 1);
    assert!(err.contains("the saved change set is stale"), "{err}");
    assert!(err.contains("serial"), "{err}");

    // A fresh saved change set, then a live change of a planned object.
    let (code, _, _) = s.run(
        "plan",
        &["--var", "mode=green", "--out", saved.to_str().unwrap()],
    );
    assert_eq!(code, 0);
    s.cluster.apply(
        "edit.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: app\ndata:\n  extra: x\n",
    )
    .ok();
    let out = s
        .command("apply", &saved, &["--var", "mode=green"])
        .output()
        .unwrap();
    let (code, _, err) = decode(out);
    assert_eq!(code, 1);
    assert!(
        err.contains("changed in the cluster since it was planned"),
        "{err}"
    );
    // The plan file changed since (a node added).
    let (code, _, _) = s.run(
        "plan",
        &["--var", "mode=green", "--out", saved.to_str().unwrap()],
    );
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&s.plan).unwrap();
    std::fs::write(
        &s.plan,
        format!(
            "{text}\n[manifest.added]\nnamespace = \"app\"\nyaml = \"apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: added\\n\"\n"
        ),
    )
    .unwrap();
    let out = s
        .command("apply", &saved, &["--var", "mode=green"])
        .output()
        .unwrap();
    let (code, _, err) = decode(out);
    assert_eq!(code, 1);
    assert!(err.contains("the saved change set is stale"), "{err}");
    std::fs::write(&s.plan, text).unwrap();

    // A saved change set that is still current is applied.
    let (code, _, _) = s.run(
        "plan",
        &["--var", "mode=green", "--out", saved.to_str().unwrap()],
    );
    assert_eq!(code, 0);
    let out = s
        .command("apply", &saved, &["--var", "mode=green"])
        .output()
        .unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 0, "{out}\n{err}");
    let cm = s.cluster.get_json(&["configmap", "-n", "app", "settings"]);
    assert_eq!(cm["data"]["mode"], "green");
}

#[test]
fn apply_refuses_without_a_terminal_or_auto_approve() {
    let s = Setup::with_plan(SMALL);
    let (code, _, err) = s.run("apply", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("--auto-approve"), "{err}");
    assert_eq!(s.writes(), 0);
}

/// [`SMALL`] and a node of ten ConfigMaps that follow `mode`: many writes per run (the kill -9
/// sweep of `rollback_sweep`).
pub(crate) fn many_writes() -> String {
    let mut text = SMALL.to_owned();
    text.push_str(
        "\n[manifest.extra]\nnamespace = \"app\"\ndepends_on = [\"manifest.ns\"]\nyaml = \"\"\"\n",
    );
    for k in 0..10 {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra-{k}\ndata:\n  mode: ${{var.mode}}\n"
        ));
    }
    text.push_str("\"\"\"\n");
    text
}

#[test]
fn destroy_removes_what_the_plan_owns_and_honours_prevent_destroy() {
    let text = SMALL.replace(
        "[manifest.web]\n",
        "[manifest.web]\nprevent_destroy = true\n",
    );
    let s = Setup::with_plan(&text);
    let (code, _, err) = s.apply(&[]);
    assert_eq!(code, 0, "{err}");
    // A foreign object in the plan's namespace.
    s.cluster
        .apply(
            "foreign.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: foreign\n  namespace: app\n",
        )
        .ok();
    let (code, _, err) = s.run("destroy", &["--auto-approve"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("prevent_destroy is set on manifest.web"),
        "{err}"
    );
    let web = s
        .cluster
        .kubectl(&["get", "deployment", "-n", "app", "web", "-o", "name"]);
    assert_eq!(web.code, 0, "nothing was deleted");

    // Without prevent_destroy: the namespace with a foreign object is kept.
    std::fs::write(&s.plan, SMALL).unwrap();
    let (code, out, err) = s.run("destroy", &["--auto-approve"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("manifest.web  apps/v1 Deployment app/web"),
        "{out}"
    );
    assert!(err.contains("foreign"), "{err}");
    let cms = s.cluster.get_json(&["configmaps", "-n", "app"]);
    let names: Vec<&str> = cms["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .filter(|n| *n != "kube-root-ca.crt")
        .collect();
    assert_eq!(names, ["foreign"]);
    let (code, out, err) = s.run("destroy", &["--auto-approve", "--with-foreign-objects"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let ns = s
        .cluster
        .kubectl(&["get", "namespace", "app", "-o", "json"]);
    let gone = ns.code != 0
        || serde_json::from_str::<Value>(&ns.stdout).unwrap()["status"]["phase"] == "Terminating";
    assert!(gone, "{}", ns.stdout);
}

#[test]
fn destroy_of_the_sample_plan_refuses_root_ca_and_a_target_avoids_it() {
    let s = Setup::sample();
    let (code, _, err) = s.apply(&[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = s.run("destroy", &["--auto-approve"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("prevent_destroy is set on manifest.root_ca"),
        "{err}"
    );
    let (code, out, err) = s.run(
        "destroy",
        &[
            "--auto-approve",
            "--target",
            "helm.linkerd_crds",
            "--target",
            "manifest.linkerd_namespace",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let deploys = s.cluster.get_json(&["deployments", "-n", "linkerd"]);
    assert_eq!(deploys["items"].as_array().unwrap().len(), 0);
    let root_ca = s.cluster.kubectl(&[
        "get",
        "certificates.cert-manager.io",
        "-n",
        "cert-manager",
        "root-ca",
        "-o",
        "name",
    ]);
    assert_eq!(root_ca.code, 0, "root_ca is kept");
}

#[test]
fn state_commands_show_and_forget_records() {
    let s = Setup::with_plan(SMALL);
    let (code, _, err) = s.apply(&[]);
    assert_eq!(code, 0, "{err}");
    let plan = s.plan.to_str().unwrap();
    let (code, out, _) = s.state_cmd(&["show", plan, "manifest.config"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("# manifest.config  v1 ConfigMap app/settings"),
        "{out}"
    );
    assert!(out.contains("\"mode\": \"blue\""), "{out}");
    let (code, _, err) = s.state_cmd(&["rm", plan, "manifest.web"]);
    assert_eq!(code, 0, "{err}");
    let (_, listed, _) = s.state_cmd(&["list", plan]);
    assert!(!listed.contains("manifest.web"), "{listed}");
    assert!(
        listed.contains("manifest.config  v1 ConfigMap app/settings"),
        "{listed}"
    );
    // The Deployment is still there and as desired: the next plan adopts it.
    let (code, out, _) = s.run("plan", &["--output", "json"]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    let web = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["address"] == "manifest.web")
        .unwrap();
    assert_eq!(web["objects"][0]["action"], "adopt", "{web:#}");
    let (code, _, err) = s.state_cmd(&["rm", plan, "manifest.nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no records of manifest.nope"), "{err}");
}

#[test]
fn ctrl_c_stops_the_apply_and_rolls_it_back() {
    let s = Setup::with_plan(SMALL);
    // The Deployment never becomes ready: the apply waits.
    s.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, true);
    let child = s
        .command("apply", &s.plan, &["--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the Deployment was written (the apply is then waiting for it).
    for _ in 0..1000 {
        let found = s.cluster.sandbox.audit().iter().any(|e| {
            e.resource == "deployments" && e.method == "PATCH" && !e.query.contains("dryRun")
        });
        if found {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, out, err) = decode(child.wait_with_output().unwrap());
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("rolled back"), "{err}");
    // Everything the run created is gone again.
    let ns = s
        .cluster
        .kubectl(&["get", "configmap", "-n", "app", "settings"]);
    assert_ne!(ns.code, 0, "{}", ns.stdout);
    let (_, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert!(!listed.contains("manifest."), "{listed}");
}

/// A plan applied in two phases: the namespace and `source` first; `read.src` resolves once
/// `source` exists; then `consumer` (which uses the value read) and `later`.
pub(crate) const PHASED: &str = r#"
[plan]
name = "phased"

[manifest.ns]
yaml = '''
apiVersion: v1
kind: Namespace
metadata:
  name: app
'''

[manifest.source]
namespace = "app"
depends_on = ["manifest.ns"]
yaml = '''
apiVersion: v1
kind: ConfigMap
metadata:
  name: source
data:
  mode: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: early
stringData:
  token: one
'''

[read.src]
api_version = "v1"
kind = "ConfigMap"
namespace = "app"
name = "source"
key = "mode"
depends_on = ["manifest.source"]

[manifest.consumer]
namespace = "app"
yaml = '''
apiVersion: v1
kind: ConfigMap
metadata:
  name: later
data:
  first: "yes"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: consumer
data:
  mode: ${read.src.value}
'''
"#;

/// Namespaces, ConfigMaps and Secrets of the cluster, server fields stripped, by kind,
/// namespace and name.
pub(crate) fn dump(cluster: &Cluster) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    for kind in ["namespaces", "configmaps", "secrets"] {
        let list = cluster.get_json(&[kind, "-A"]);
        for item in list["items"].as_array().unwrap() {
            let key = format!(
                "{kind}/{}/{}",
                item["metadata"]["namespace"].as_str().unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap()
            );
            out.insert(key, meshplan::apply::strip_server_fields(item));
        }
    }
    out
}

#[test]
fn a_failure_in_the_second_phase_rolls_back_the_first_phase_too() {
    let s = Setup::with_plan(PHASED);
    let before = dump(&s.cluster);
    let (_, records_before, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    // The server-side apply of `consumer`, written in the second phase, answers 500, on
    // every attempt (a single 500 is retried and does not fail the step).
    s.cluster.sandbox.add_fault(meshplan_sandbox::FaultRule {
        times: ATTEMPTS,
        ..meshplan_sandbox::FaultRule::new(
            "patch",
            "configmaps",
            1,
            meshplan_sandbox::FaultAction::Error { code: 500 },
        )
        .named("consumer")
    });
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    let audit = s.cluster.sandbox.audit();
    let hit: Vec<_> = audit.iter().filter(|e| e.fault.is_some()).collect();
    assert_eq!(hit.len() as u64, ATTEMPTS, "{hit:#?}");
    for h in &hit {
        assert_eq!(h.name, "consumer");
        assert!(!h.query.contains("dryRun"), "{h:?}");
    }
    // The first phase really wrote: `source` was created before the read resolved.
    let source_written = audit
        .iter()
        .position(|e| e.name == "source" && e.method == "PATCH" && !e.query.contains("dryRun"))
        .expect("source was written");
    assert!(source_written < audit.iter().position(|e| e.fault.is_some()).unwrap());
    assert!(err.contains("rolled back"), "{err}");
    // One report for the whole run, and no log lines of the client library about the 500.
    assert_eq!(
        err.matches("apply failed and was rolled back").count(),
        1,
        "{err}"
    );
    assert!(!err.contains("kube_client"), "{err}");
    // Everything both phases created is gone again; the state holds no records.
    assert_eq!(dump(&s.cluster), before, "{err}");
    let (_, records_after, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    // The header's serial counts the journal's writes; the records below it are compared.
    let records = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert!(records_before.starts_with("lineage "), "{records_before}");
    assert_eq!(records(&records_after), records(&records_before));
    assert!(!records_after.contains("manifest."), "{records_after}");
    // Without the fault the same apply goes through.
    s.cluster.sandbox.clear_faults();
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let consumer = s.cluster.get_json(&["configmap", "-n", "app", "consumer"]);
    assert_eq!(consumer["data"]["mode"], "blue");
}

#[test]
fn no_rollback_in_the_second_phase_keeps_one_journal_that_rollback_undoes_entirely() {
    let s = Setup::with_plan(PHASED);
    let before = dump(&s.cluster);
    s.cluster.sandbox.add_fault(meshplan_sandbox::FaultRule {
        times: ATTEMPTS,
        ..meshplan_sandbox::FaultRule::new(
            "patch",
            "configmaps",
            1,
            meshplan_sandbox::FaultAction::Error { code: 500 },
        )
        .named("consumer")
    });
    let (code, out, err) = s.apply(&["--no-rollback"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("meshplan rollback"), "{err}");
    // Both phases' writes stay: the first phase's `source` and the second phase's `later`.
    let kept = dump(&s.cluster);
    assert!(kept.contains_key("configmaps/app/source"), "{kept:#?}");
    assert!(kept.contains_key("configmaps/app/later"), "{kept:#?}");
    assert!(!kept.contains_key("configmaps/app/consumer"), "{kept:#?}");
    // A plain apply refuses the unfinished run.
    s.cluster.sandbox.clear_faults();
    let (code, _, err) = s.apply(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unfinished run"), "{err}");
    // The one journal covers both phases: rollback restores the cluster as before phase 1.
    let out = s.command("rollback", &s.plan, &[]).output().unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(dump(&s.cluster), before, "{err}");
    let (_, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert!(!listed.contains("manifest."), "{listed}");
}

#[test]
fn a_read_that_never_resolves_rolls_back_the_earlier_phase() {
    // `read.src` reads a key that `source` does not hold: it never resolves.
    let plan = PHASED
        .replace("key = \"mode\"", "key = \"missing\"")
        .replace(
            "depends_on = [\"manifest.source\"]\n\n[manifest.consumer]",
            "depends_on = [\"manifest.source\"]\ntimeout = \"1s\"\n\n[manifest.consumer]",
        );
    assert!(plan.contains("timeout = \"1s\""));
    let s = Setup::with_plan(&plan);
    let before = dump(&s.cluster);
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("read.src"), "{err}");
    assert!(err.contains("rolled back"), "{err}");
    // `source` and `early` were written in the first phase, and are gone again.
    assert!(
        s.cluster
            .sandbox
            .audit()
            .iter()
            .any(|e| e.name == "source" && e.method == "PATCH"),
    );
    assert_eq!(dump(&s.cluster), before, "{err}");
    let (_, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert!(!listed.contains("manifest."), "{listed}");
}

/// Two phases on every apply: `check.web_available` is evaluated during apply, so `consumer`
/// is always applied in the second phase.
const CHECKED: &str = r#"
[plan]
name = "checked"

[vars]
level = "1"

[manifest.ns]
yaml = '''
apiVersion: v1
kind: Namespace
metadata:
  name: app
'''

[manifest.web]
namespace = "app"
depends_on = ["manifest.ns"]
yaml = '''
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  level: "${var.level}"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
'''

[check.web_available]
api_version = "apps/v1"
kind = "Deployment"
namespace = "app"
name = "web"
condition = "Available"
depends_on = ["manifest.web"]
timeout = "30s"

[manifest.consumer]
namespace = "app"
depends_on = ["check.web_available"]
yaml = '''
apiVersion: v1
kind: ConfigMap
metadata:
  name: consumer
data:
  level: "${var.level}"
'''
"#;

#[test]
fn over_a_previous_apply_a_second_phase_failure_restores_the_first_phase_updates() {
    let s = Setup::with_plan(CHECKED);
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let before = dump(&s.cluster);
    let (_, records_before, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    let since = s.cluster.sandbox.audit().len();
    // `consumer` is dry-run by the first plan and by the second phase's plan, then written:
    // the third server-side apply of it answers 500, and so do its retries.
    s.cluster.sandbox.add_fault(meshplan_sandbox::FaultRule {
        times: ATTEMPTS,
        ..meshplan_sandbox::FaultRule::new(
            "patch",
            "configmaps",
            3,
            meshplan_sandbox::FaultAction::Error { code: 500 },
        )
        .named("consumer")
    });
    let (code, out, err) = s.apply(&["--var", "level=2"]);
    let audit: Vec<_> = s.cluster.sandbox.audit().into_iter().skip(since).collect();
    assert_eq!(code, 1, "{out}\n{err}");
    // The first phase changed `settings`; the write of `consumer` in
    // the second phase failed.
    let hit = audit
        .iter()
        .position(|e| e.fault.is_some())
        .expect("the fault hit");
    assert!(!audit[hit].query.contains("dryRun"), "{:?}", audit[hit]);
    assert!(
        audit[..hit]
            .iter()
            .any(|e| e.name == "settings" && e.method == "PATCH" && !e.query.contains("dryRun"))
    );
    assert!(err.contains("rolled back"), "{err}");
    let after = dump(&s.cluster);
    assert_eq!(after["configmaps/app/settings"]["data"]["level"], "1");
    assert_eq!(after, before, "{err}");
    let (_, records_after, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    let records = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(records(&records_after), records(&records_before));
}

#[test]
fn apply_output_json_is_one_event_per_line_and_reports_the_rollback() {
    let s = Setup::with_plan(SMALL);
    // The third write (a ConfigMap of manifest.config; the Namespace and the other ConfigMap
    // were written before it) answers 500, and so do its retries (the next writes: nothing
    // else can start before it ends). The apply's Lease is left out of the count.
    s.cluster.sandbox.add_fault(meshplan_sandbox::FaultRule {
        times: ATTEMPTS,
        ..meshplan_sandbox::FaultRule::new(
            meshplan_sandbox::WRITE_VERB,
            "",
            3,
            meshplan_sandbox::FaultAction::Error { code: 500 },
        )
        .all_resources()
        .except("leases")
    });
    let (code, out, err) = s.apply(&["--output", "json"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}")))
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(events.iter().all(|e| e["format"] == 1), "{out}");
    assert!(
        events[1..].iter().all(|e| e["time"].is_string()),
        "every run event has a time: {out}"
    );
    // The change set first, then the run from start to finish.
    assert_eq!(names[0], "plan", "{names:?}");
    assert_eq!(names[1], "run_started", "{names:?}");
    // The run's report, then (the command failed) the error event that ends the output.
    assert_eq!(names[names.len() - 2], "finished", "{names:?}");
    assert_eq!(names.last(), Some(&"error"), "{names:?}");
    let error = events.last().unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("apply failed: manifest.config: "),
        "{error}"
    );
    let pos = |name: &str| names.iter().position(|n| *n == name).unwrap();
    let failed = &events[pos("step_failed")];
    assert_eq!(failed["node"], "manifest.config", "{failed}");
    assert!(
        failed["message"].as_str().unwrap().contains("500")
            || failed["message"].as_str().unwrap().contains("injected"),
        "{failed}"
    );
    assert!(pos("step_failed") < pos("rollback_started"), "{names:?}");
    // Every object the run created is deleted again, and the summary says so.
    let summary = &events[events.len() - 2]["summary"];
    assert_eq!(summary["outcome"], "rolled_back", "{summary:#}");
    let created: Vec<String> = summary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "create")
        .map(|a| a["object"]["name"].as_str().unwrap().to_owned())
        .collect();
    let undone: Vec<String> = summary["rolled_back"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "undo_create")
        .map(|a| a["object"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(created.contains(&"app".to_owned()), "{summary:#}");
    let mut sorted_created = created.clone();
    sorted_created.sort();
    let mut sorted_undone = undone.clone();
    sorted_undone.sort();
    assert_eq!(sorted_created, sorted_undone, "{summary:#}");
    assert!(summary["root_cause"].is_string(), "{summary:#}");
    // Nothing of it is left in the cluster.
    let ns = s.cluster.kubectl(&["get", "namespace", "app"]);
    assert_ne!(ns.code, 0, "{}", ns.stdout);
}

/// A plan of two Widgets (read with one LIST), and of their CRD when `with_crd`.
fn widgets(with_crd: bool) -> String {
    let mut text = String::from("[plan]\nname = \"widgets\"\n");
    if with_crd {
        text.push_str(&format!(
            "\n[manifest.crd]\nyaml = '''\n{}'''\n",
            meshplan_sandbox::kubectl::WIDGET_CRD
        ));
    }
    text.push_str("\n[manifest.widget]\nnamespace = \"default\"\n");
    if with_crd {
        text.push_str("depends_on = [\"manifest.crd\"]\n");
    }
    text.push_str(
        "yaml = '''\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: gadget\nspec:\n  size: 3\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: gizmo\nspec:\n  size: 4\n'''\n",
    );
    text
}

/// Discovery requests (`/api`, `/apis`) the sandbox answered after audit entry `since`.
fn discovery_requests(s: &Setup, since: u64) -> usize {
    s.cluster
        .sandbox
        .audit()
        .iter()
        .filter(|e| e.seq > since && (e.path == "/api" || e.path == "/apis"))
        .count()
}

fn last_seq(s: &Setup) -> u64 {
    s.cluster.sandbox.audit().last().map_or(0, |e| e.seq)
}

#[test]
fn an_apply_that_changes_crds_makes_the_next_plan_discover_again() {
    let s = Setup::with_plan(&widgets(true));
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The apply created a CRD: the cached discovery is stale and the next plan fetches it.
    let since = last_seq(&s);
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        discovery_requests(&s, since) > 0,
        "the plan used a stale discovery"
    );
    // Nothing changed the kinds since: the next plan uses the cache.
    let since = last_seq(&s);
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(discovery_requests(&s, since), 0);
}

#[test]
fn a_crd_deleted_behind_the_plans_back_is_planned_again_despite_the_cached_discovery() {
    let s = Setup::with_plan(&widgets(true));
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Someone else deletes the CRD (and with it the Widgets) while the discovery is cached.
    s.cluster
        .kubectl(&["delete", "crd", "widgets.example.com", "--wait=true"])
        .ok();
    // The Widgets are read with one LIST, which the server answers 404: no Widgets.
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}\n{err}");
    let creates = out.lines().filter(|l| l.contains("create")).count();
    assert!(
        creates >= 3,
        "the CRD and the Widgets are planned again:\n{out}"
    );
    // And the apply puts them back.
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let widget = s
        .cluster
        .get_json(&["widgets.example.com", "-n", "default", "gizmo"]);
    assert_eq!(widget["spec"]["size"], 4);
}

#[test]
fn a_kind_removed_behind_the_plans_back_is_reported_as_not_installed() {
    // The cluster has the CRD; the plan has only Widgets.
    let s = Setup::with_plan(&widgets(false));
    s.cluster
        .apply("crd.yaml", meshplan_sandbox::kubectl::WIDGET_CRD)
        .ok();
    s.cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
        ])
        .ok();
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Someone removes the CRD while the discovery is cached: the plan's requests about
    // Widgets answer 404, and the plan asks for a fresh discovery before it says why.
    s.cluster
        .kubectl(&["delete", "crd", "widgets.example.com", "--wait=true"])
        .ok();
    let since = last_seq(&s);
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        discovery_requests(&s, since) > 0,
        "no fresh discovery:\n{err}"
    );
    assert!(err.contains("is not installed in the cluster"), "{err}");
}

#[test]
fn a_phased_apply_reports_one_run_with_a_line_between_phases() {
    let events = |s: &Setup| -> Vec<Value> {
        let (code, out, err) = s.apply(&["--output", "json"]);
        assert_eq!(code, 0, "{out}\n{err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let count = |events: &[Value], name: &str| events.iter().filter(|e| e["event"] == name).count();
    // `consumer` needs the value read from `source`: two phases, one run.
    let s = Setup::with_plan(PHASED);
    let phased = events(&s);
    assert_eq!(count(&phased, "run_started"), 1, "{phased:#?}");
    assert_eq!(count(&phased, "finished"), 1, "{phased:#?}");
    let done: Vec<&Value> = phased
        .iter()
        .filter(|e| e["event"] == "phase_done")
        .collect();
    assert_eq!(done.len(), 1, "{phased:#?}");
    assert_eq!(done[0]["phase"], 1);
    // Phase 1 wrote the namespace, `source` and `early`.
    assert_eq!(done[0]["actions"], 3, "{phased:#?}");
    let finished = phased.last().unwrap();
    assert_eq!(finished["event"], "finished");
    assert_eq!(finished["summary"]["outcome"], "succeeded");
    let names: Vec<&str> = finished["summary"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["object"]["name"].as_str().unwrap())
        .collect();
    // Every phase's actions: the first phase's and the second's.
    for name in ["app", "source", "early", "later", "consumer"] {
        assert!(names.contains(&name), "{name}: {names:?}");
    }
    // One phase: no phase line.
    let s = Setup::with_plan(SMALL);
    let single = events(&s);
    assert_eq!(count(&single, "phase_done"), 0, "{single:#?}");
    assert_eq!(count(&single, "finished"), 1, "{single:#?}");
}

const STRING_DATA_SECRET: &str = r#"
[plan]
name = "secrets"

[manifest.s]
namespace = "default"
yaml = '''
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  user: admin
  password: s3cret
'''
"#;

#[test]
fn a_key_dropped_from_a_secrets_string_data_is_planned_and_removed() {
    // The API server folds stringData into data after server-side apply has merged: an
    // applier of stringData would own no data key, and a dropped key would stay for ever
    // while the plan said "No changes". meshplan applies such a Secret as data.
    let s = Setup::with_plan(STRING_DATA_SECRET);
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let secret = s
        .cluster
        .get_json(&["secret", "creds", "--show-managed-fields"]);
    assert_eq!(
        secret["data"],
        serde_json::json!({"password": "czNjcmV0", "user": "YWRtaW4="})
    );
    let entries = secret["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["manager"], "meshplan");
    assert_eq!(
        entries[0]["fieldsV1"]["f:data"],
        serde_json::json!({"f:password": {}, "f:user": {}})
    );
    assert!(entries[0]["fieldsV1"].get("f:stringData").is_none());

    // Unchanged: nothing to plan, nothing written.
    let before = s.writes();
    let rv = s.cluster.rv(&["secret", "creds"]);
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");

    // Without `user`: planned as a change, and applied away.
    std::fs::write(&s.plan, STRING_DATA_SECRET.replace("  user: admin\n", "")).unwrap();
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("0 to add, 1 to change, 0 to destroy"), "{out}");
    assert!(!out.contains("YWRtaW4="), "a secret value was shown: {out}");
    assert_eq!(s.writes(), before);
    assert_eq!(s.cluster.rv(&["secret", "creds"]), rv);
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        s.cluster.get_json(&["secret", "creds"])["data"],
        serde_json::json!({"password": "czNjcmV0"})
    );
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
}
