//! The API sandbox, driven by the real kubectl and by kube 5.

mod auth;
mod certmanager;
mod controllers;
mod faults;
mod http;
mod kube_client;
mod kubectl;
mod podmonitor;
mod raw;
mod restart;
mod soak;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use meshplan::sandbox::{BlockingSandbox, SandboxConfig};
use tempfile::TempDir;

pub const KUBECTL: &str = "/usr/bin/kubectl";

/// A fresh sandbox with its own kubeconfig and kubectl cache directory.
pub struct Cluster {
    /// Runs for the cluster's lifetime.
    pub sandbox: BlockingSandbox,
    pub dir: TempDir,
    pub kubeconfig: PathBuf,
    pub cache: PathBuf,
}

/// What a kubectl run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts exit 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "kubectl failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts a failure and returns stderr.
    #[track_caller]
    pub fn failed(&self) -> &str {
        assert_ne!(
            self.code, 0,
            "kubectl unexpectedly succeeded:\n{}",
            self.stdout
        );
        &self.stderr
    }
}

impl Cluster {
    pub fn start() -> Self {
        Self::start_with(SandboxConfig::default())
    }

    pub fn start_with(config: SandboxConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = BlockingSandbox::start(config).unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sandbox.write_kubeconfig(&kubeconfig).unwrap();
        let cache = dir.path().join("kube-cache");
        std::fs::create_dir_all(&cache).unwrap();
        Self {
            sandbox,
            dir,
            kubeconfig,
            cache,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", &self.cache)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl to completion.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// Starts kubectl in the background with stdout piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Writes a manifest into the cluster's temp dir and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// Writes `text` to `name` and runs `kubectl apply --server-side -f` on it.
    pub fn apply(&self, name: &str, text: &str) -> Run {
        let f = self.file(name, text);
        self.kubectl(&["apply", "--server-side", "-f", &f])
    }

    /// `kubectl get ... -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let run = self.kubectl(&all);
        serde_json::from_str(run.ok()).unwrap()
    }
}

pub const WIDGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
                minimum: 0
              color:
                type: string
                default: blue
          status:
            type: object
            properties:
              ready:
                type: boolean
"#;

pub fn widget(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

pub const CM1: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\n  namespace: default\ndata:\n  a: \"1\"\n  b: \"2\"\n";

impl Cluster {
    /// Installs the Widget CRD and waits until it is Established.
    pub fn install_widgets(&self) {
        let crd = self.file("crd.yaml", WIDGET_CRD);
        self.kubectl(&["apply", "--server-side", "-f", &crd]).ok();
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/widgets.example.com",
        ])
        .ok();
    }

    /// Server-side applies cm1 (data a=1, b=2).
    pub fn apply_cm1(&self) {
        let f = self.file("cm1.yaml", CM1);
        self.kubectl(&["apply", "--server-side", "-f", &f]).ok();
    }

    pub fn rv(&self, args: &[&str]) -> String {
        self.get_json(args)["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    }
}
