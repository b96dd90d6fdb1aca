//! The command line as kubectl, helm and Terraform users expect it: `-o` refused with a
//! pointer to `--out` and `--output`, usage errors exit 1, `--color` and logs without escape
//! codes in files, KUBECONFIG lists, TLS errors that say TLS, the session line, `version`,
//! `completions`, `man`, and `--output json` on validate, graph and state.

use std::process::{Command, Stdio};

use meshplan_sandbox::SandboxConfig;
use meshplan_sandbox::kubectl::Cluster;
use serde_json::Value;

use crate::apply_cmd::{BIN, Setup, decode};
use crate::support::{root, run};

const SMALL: &str = r#"
[plan]
name = "small"

[manifest.app]
namespace = "default"
yaml = '''
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: hunter2
'''
"#;

#[test]
fn dash_o_is_refused_and_names_out_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["plan"])
        .arg(root().join("plans/linkerd.toml"))
        .args(["-o", "json"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let (code, stdout, stderr) = decode(out);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("`-o json` is not an option"), "{stderr}");
    assert!(stderr.contains("--out FILE"), "{stderr}");
    assert!(stderr.contains("--output json"), "{stderr}");
    assert!(
        !dir.path().join("json").exists(),
        "no change set is written to a file named json"
    );
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let (code, _, err) = run(&["plan", "plans/linkerd.toml", "--no-such-flag"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");
    let (code, out, _) = run(&["plan", "--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Examples:"), "{out}");
    assert!(
        out.contains("meshplan plan plans/linkerd.toml --out linkerd.plan"),
        "{out}"
    );
    assert!(
        !out.contains("-o,"),
        "plan has no -o alias for --out: {out}"
    );
}

#[test]
fn completions_and_man_pages_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.len() > 1000, "{shell}: {out}");
        assert!(out.contains("meshplan"), "{shell}");
        for word in ["plan", "apply", "kubeconfig", "repo-dir"] {
            assert!(out.contains(word), "{shell} completes {word}");
        }
    }
    let (code, out, _) = run(&["man"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(".TH meshplan 1"), "{out}");
    assert!(out.contains("completions"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let plan = std::fs::read_to_string(dir.path().join("meshplan-plan.1")).unwrap();
    assert!(plan.contains(".TH meshplan-plan 1"), "{plan}");
    assert!(plan.contains("detailed\\-exitcode"), "{plan}");
    assert!(dir.path().join("meshplan-state-list.1").is_file());
}

/// `helm version` as the installed helm prints it.
fn helm_version() -> String {
    let out = Command::new("helm")
        .args(["version", "--template", "{{.Version}}"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn version_names_meshplan_helm_and_the_server_of_a_kubeconfig_list() {
    let cluster = Cluster::start();
    let missing = cluster.dir.path().join("missing-kubeconfig");
    // A KUBECONFIG list whose first file does not exist: skipped, as kubectl skips it.
    let list = std::env::join_paths([&missing, &cluster.kubeconfig]).unwrap();
    let out = Command::new(BIN)
        .args(["version"])
        .env("KUBECONFIG", &list)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.starts_with(&format!("meshplan {}\n", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let helm = helm_version();
    assert!(helm.starts_with('v'), "{helm}");
    assert!(
        out.contains(&format!("helm     {helm} from helm\n")),
        "{out}"
    );
    assert!(out.contains("server   v1."), "{out}");
    assert!(out.contains(&cluster.sandbox.url()), "{out}");

    let out = Command::new(BIN)
        .args(["version", "--output", "json", "--kubeconfig"])
        .arg(&missing)
        .output()
        .unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["helm"]["known"]["version"], helm.as_str());
    assert!(
        json["server"]["unknown"]["reason"]
            .as_str()
            .unwrap()
            .contains("missing-kubeconfig"),
        "{json:#}"
    );
}

#[test]
fn verbose_logs_in_a_file_have_no_escape_codes() {
    let s = Setup::with_plan(SMALL);
    let log = s.cluster.dir.path().join("plan.log");
    let plan = |extra: &[&str]| {
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = s.command("plan", &s.plan, extra);
        cmd.arg("-v")
            .env_remove("NO_COLOR")
            .stderr(Stdio::from(file));
        let status = cmd.status().unwrap();
        assert_eq!(status.code(), Some(0));
        std::fs::read_to_string(&log).unwrap()
    };
    let text = plan(&[]);
    assert!(text.contains("INFO"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    // The same logs with colour asked for do carry escape codes.
    let colored = plan(&["--color", "always"]);
    assert!(colored.contains('\u{1b}'), "{colored:?}");
}

#[test]
fn plan_starts_with_the_cluster_and_the_state() {
    let s = Setup::with_plan(SMALL);
    let (code, out, err) = s.run("plan", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let first = err.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "Cluster {} (context {}), state {}",
            s.cluster.sandbox.url(),
            meshplan_sandbox::CONTEXT_NAME,
            s.state.display()
        ),
        "{err}"
    );
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.starts_with("Cluster "), "{err}");
}

#[test]
fn a_certificate_for_another_name_is_a_tls_error() {
    let config = SandboxConfig {
        tls: true,
        ..SandboxConfig::default()
    };
    let cluster = Cluster::start_with(config);
    let plan = cluster.dir.path().join("plan.toml");
    std::fs::write(&plan, SMALL).unwrap();
    let state = cluster.dir.path().join("state");
    let s = Setup {
        cluster,
        plan,
        state,
    };
    // The kubeconfig expects the server's certificate to be for another name.
    let text = std::fs::read_to_string(&s.cluster.kubeconfig).unwrap();
    let text = text.replacen(
        "    server: ",
        "    tls-server-name: not-the-sandbox.example\n    server: ",
        1,
    );
    std::fs::write(&s.cluster.kubeconfig, text).unwrap();
    let (code, out, err) = s.run("plan", &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("TLS with the cluster at https://"), "{err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(!err.contains("unreachable"), "{err}");
}

#[test]
fn validate_graph_and_state_speak_json() {
    let (code, out, _) = run(&["validate", "plans/linkerd.toml", "--output", "json"]);
    assert_eq!(code, Some(0));
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["plan"], "linkerd");
    assert!(
        json["nodes"]
            .as_array()
            .unwrap()
            .contains(&Value::from("helm.linkerd_control_plane"))
    );

    let (code, out, err) = run(&[
        "validate",
        "tests/fixtures/invalid/undefined_var/plan.toml",
        "--output",
        "json",
    ]);
    assert_eq!(code, Some(1), "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["valid"], false);
    let problem = &json["problems"][0];
    assert_eq!(problem["code"], "plan::undefined_var");
    assert!(
        problem["labels"][0]["line"].as_u64().unwrap() > 0,
        "{json:#}"
    );
    assert!(
        problem["labels"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("plan.toml")
    );

    let (code, out, _) = run(&["graph", "plans/linkerd.toml", "--output", "json"]);
    assert_eq!(code, Some(0));
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["layers"][0],
        serde_json::json!([
            "helm.cert_manager",
            "helm.linkerd_crds",
            "manifest.linkerd_namespace"
        ])
    );
    let edge = json["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to"] == "helm.linkerd_control_plane" && e["from"] == "read.trust_anchor")
        .unwrap();
    assert_eq!(edge["via"], serde_json::json!(["reference"]));

    let s = Setup::with_plan(SMALL);
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let plan = s.plan.to_str().unwrap();
    let (code, out, _) = s.state_cmd(&["list", plan, "--output", "json"]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["records"].as_array().unwrap().len(), 2, "{json:#}");
    assert_eq!(json["records"][0]["node"], "manifest.app");
    let (code, out, _) = s.state_cmd(&["show", plan, "manifest.app", "--output", "json"]);
    assert_eq!(code, 0);
    assert!(!out.contains("hunter2"), "{out}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["records"][0]["last_applied"]["data"]["mode"], "blue",
        "{json:#}"
    );
}

#[test]
fn show_prints_each_nodes_objects_with_secrets_masked() {
    let (code, out, err) = run(&[
        "show",
        "plans/linkerd.toml",
        "--repo-dir",
        "linkerd=plans/charts",
        "--repo-dir",
        "jetstack=plans/charts",
        "--target",
        "helm.linkerd_control_plane",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(
            "# helm.linkerd_control_plane: rendered with placeholders for read.trust_anchor.value (known after apply)\n---\n# node: helm.linkerd_control_plane\n# Source: linkerd-control-plane/templates/"
        ),
        "{out}"
    );
    assert!(out.contains("ca-bundle.crt: (known after apply)"), "{out}");
    assert!(!out.contains("# node: helm.linkerd_viz"), "only the target");

    // viz's webhook Secrets are generated by the chart: masked.
    let (code, out, err) = run(&[
        "show",
        "plans/linkerd.toml",
        "--repo-dir",
        "linkerd=plans/charts",
        "--target",
        "helm.linkerd_viz",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("tls.key: (sensitive)"), "{out}");
    assert!(!out.contains("PRIVATE KEY"), "{out}");

    let (code, out, err) = run(&[
        "show",
        "plans/linkerd.toml",
        "--repo-dir",
        "linkerd=plans/charts",
        "--target",
        "helm.linkerd_viz",
        "--format",
        "json",
        "--show-sensitive",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    let viz = &json["nodes"][0];
    assert_eq!(viz["address"], "helm.linkerd_viz");
    assert_eq!(viz["status"], "rendered");
    let secret = viz["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"]["kind"] == "Secret")
        .unwrap();
    assert_ne!(
        secret["object"]["data"]["tls.key"], "(sensitive)",
        "--show-sensitive shows it"
    );
}
