//! `meshplan sandbox serve --data DIR` survives a restart: objects, resourceVersions and CRDs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{CM1, KUBECTL, WIDGET_CRD, widget};

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
    let out = Command::new(KUBECTL)
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
