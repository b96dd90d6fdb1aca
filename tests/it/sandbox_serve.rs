//! `meshplan sandbox serve`: TLS and an audit file with kubectl; `--data DIR` survives a
//! restart (objects, resourceVersions and CRDs).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use meshplan_sandbox::kubectl::{CM1, WIDGET_CRD, kubectl_binary, widget};

struct Served {
    child: Child,
}

impl Served {
    fn start(kubeconfig: &Path, data: &Path) -> (Self, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshplan"))
            .args(["sandbox", "serve", "--port", "0", "--kubeconfig"])
            .arg(kubeconfig)
            .arg("--data")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("http://127.0.0.1:"), "{line}");
        (Self { child }, line)
    }

    /// SIGTERM, then the exit status must be success.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "serve exited with {exit:?}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str]) -> String {
    let out = Command::new(kubectl_binary())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn serve_restart_with_data_keeps_objects_versions_and_crds() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let data = dir.path().join("data");
    let files = dir.path();
    std::fs::write(files.join("crd.yaml"), WIDGET_CRD).unwrap();
    std::fs::write(files.join("cm.yaml"), CM1).unwrap();
    std::fs::write(files.join("w1.yaml"), widget("w1", "  size: 3\n")).unwrap();
    let path = |n: &str| files.join(n).to_string_lossy().into_owned();

    let (served, _) = Served::start(&kubeconfig, &data);
    let cache1 = dir.path().join("cache1");
    kubectl(
        &kubeconfig,
        &cache1,
        &["apply", "--server-side", "-f", &path("crd.yaml")],
    );
    kubectl(
        &kubeconfig,
        &cache1,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
        ],
    );
    kubectl(
        &kubeconfig,
        &cache1,
        &["apply", "--server-side", "-f", &path("cm.yaml")],
    );
    kubectl(
        &kubeconfig,
        &cache1,
        &["apply", "--server-side", "-f", &path("w1.yaml")],
    );
    let before_cm = kubectl(&kubeconfig, &cache1, &["get", "cm", "cm1", "-o", "json"]);
    let before_w = kubectl(&kubeconfig, &cache1, &["get", "widget", "w1", "-o", "json"]);
    served.stop();

    let (served, _) = Served::start(&kubeconfig, &data);
    let cache2 = dir.path().join("cache2");
    let after_cm = kubectl(&kubeconfig, &cache2, &["get", "cm", "cm1", "-o", "json"]);
    let after_w = kubectl(&kubeconfig, &cache2, &["get", "widget", "w1", "-o", "json"]);
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    assert_eq!(parse(&before_cm), parse(&after_cm));
    assert_eq!(parse(&before_w), parse(&after_w));
    let resources = kubectl(
        &kubeconfig,
        &cache2,
        &["api-resources", "--api-group=example.com"],
    );
    assert!(resources.contains("widgets"), "{resources}");
    // The resourceVersion counter continues where it stopped.
    let old_rv: u64 = parse(&before_w)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    std::fs::write(files.join("cm2.yaml"), CM1.replace("cm1", "cm2")).unwrap();
    kubectl(
        &kubeconfig,
        &cache2,
        &["apply", "--server-side", "-f", &path("cm2.yaml")],
    );
    let new_rv: u64 = parse(&kubectl(
        &kubeconfig,
        &cache2,
        &["get", "cm", "cm2", "-o", "json"],
    ))["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(new_rv > old_rv, "{new_rv} <= {old_rv}");
    served.stop();
}

#[test]
fn serve_with_tls_and_an_audit_file_works_with_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let audit = dir.path().join("audit.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshplan"))
        .args([
            "sandbox",
            "serve",
            "--port",
            "0",
            "--tls",
            "--no-controllers",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--audit")
        .arg(&audit)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("https://127.0.0.1:"), "{line}");
    let out = Command::new(meshplan_sandbox::kubectl::kubectl_binary())
        .args(["get", "configmaps", "-n", "kube-system", "-o", "name"])
        .env("KUBECONFIG", &kubeconfig)
        .env("KUBECACHEDIR", dir.path().join("cache"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(child.wait().unwrap().success());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lists: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["verb"] == "list" && e["resource"] == "configmaps")
        .collect();
    assert_eq!(lists.len(), 1, "{entries:?}");
    assert_eq!(lists[0]["namespace"], "kube-system");
    assert_eq!(lists[0]["status"], 200);
    assert_eq!(
        lists[0]["user"], "meshplan-sandbox",
        "kubectl authenticated over TLS"
    );
}
