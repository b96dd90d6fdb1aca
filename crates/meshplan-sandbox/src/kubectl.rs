//! The sandbox driven by the real kubectl, for tests and benchmarks: a [`Cluster`] is a
//! running sandbox with its own kubeconfig and kubectl cache directory (kubectl caches
//! discovery per host:port for hours, so every cluster gets a fresh one) and runs kubectl
//! against it.
//!
//! This is test support: its methods panic when the sandbox cannot start or kubectl cannot
//! run, with the reason, as a failed test should.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

use crate::{BlockingSandbox, SandboxConfig};

/// The kubectl to run: `MESHPLAN_KUBECTL` when set, else `kubectl` from `PATH`, else
/// `/usr/bin/kubectl`.
pub fn kubectl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MESHPLAN_KUBECTL").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl"))
}

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
        let dir = tempfile::tempdir().expect("a temporary directory for the cluster");
        let sandbox = BlockingSandbox::start(config).expect("the sandbox starts");
        let kubeconfig = dir.path().join("kubeconfig");
        sandbox
            .write_kubeconfig(&kubeconfig)
            .expect("the sandbox writes its kubeconfig");
        let cache = dir.path().join("kube-cache");
        std::fs::create_dir_all(&cache).expect("a kubectl cache directory");
        Self {
            sandbox,
            dir,
            kubeconfig,
            cache,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_binary());
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", &self.cache)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl to completion.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("kubectl runs"))
    }

    /// Starts kubectl in the background with stdout piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts")
    }

    /// Writes a manifest into the cluster's temp dir and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("the manifest is written");
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
        serde_json::from_str(run.ok()).expect("kubectl prints JSON")
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

    /// The resourceVersion of the object `kubectl get ARGS` shows.
    pub fn rv(&self, args: &[&str]) -> String {
        self.get_json(args)["metadata"]["resourceVersion"]
            .as_str()
            .expect("the object has a resourceVersion")
            .to_string()
    }
}
