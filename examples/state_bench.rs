//! What the `kubernetes` state backend costs, beside the local one: apply time of the sample
//! plan, the requests the state and the lock add, and the state's size in the cluster.
//!
//! ```text
//! cargo build --release --bin meshplan --example state_bench
//! target/release/examples/state_bench [--rounds 3]
//! ```
//!
//! Each round, for each backend in turn (local, then kubernetes), on a fresh sandbox with
//! what the sample plan expects of the cluster (the `monitoring` namespace and the
//! PodMonitor CRD):
//!
//! 1. **first apply** of `plans/linkerd.toml` (stand-in charts, `--auto-approve`): wall time
//!    and every request the sandbox answered, split into the state's Secrets, the Lease, and
//!    the rest (the plan's own reads and writes);
//! 2. **no-op apply** (nothing changes): the same counts;
//! 3. **plan** `--detailed-exitcode` from another working directory;
//! 4. the state's size: the data of the Secrets labelled `meshplan.io/state` (decoded bytes,
//!    and how many Secrets), and for the local backend the size of its directory.
//!
//! The time ratio (kubernetes / local) is taken per round from the same run, and the median
//! over the rounds reported.

// A benchmark program: it prints its results.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use meshplan_sandbox::{BlockingSandbox, SandboxConfig};

type Error = Box<dyn std::error::Error>;

/// The state key of the kubernetes backend (any 32 bytes in base64).
const KEY: &str = "YmVuY2htYXJrLWtleS1vZi10aGUtc3RhdGUtMzJieXQ=";

/// Requests of one command, by what they were about.
#[derive(Debug, Default, Clone)]
struct Requests {
    state: usize,
    lease: usize,
    other: usize,
}

#[derive(Debug, Clone)]
struct Run {
    seconds: f64,
    requests: Requests,
}

fn kubeconfig(port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: b\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: b\n  context:\n    cluster: b\n    user: b\n    namespace: default\ncurrent-context: b\nusers:\n- name: b\n  user: {{}}\n"
    )
}

struct Bench {
    meshplan: PathBuf,
    root: PathBuf,
}

impl Bench {
    fn run(
        &self,
        sandbox: &BlockingSandbox,
        cwd: &Path,
        kubeconfig: &Path,
        args: &[&str],
    ) -> Result<Run, Error> {
        let charts = self.root.join("plans/charts");
        let before = sandbox.audit().last().map_or(0, |e| e.seq);
        let started = Instant::now();
        let out = Command::new(&self.meshplan)
            .current_dir(cwd)
            .args(&args[..1])
            .arg(self.root.join("plans/linkerd.toml"))
            .args(&args[1..])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--repo-dir")
            .arg(format!("linkerd={}", charts.display()))
            .arg("--repo-dir")
            .arg(format!("jetstack={}", charts.display()))
            .env("MESHPLAN_STATE_KEY", KEY)
            .env_remove("MESHPLAN_STATE_BACKEND")
            .output()?;
        let seconds = started.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(format!(
                "meshplan {} failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let mut requests = Requests::default();
        for e in sandbox.audit().iter().filter(|e| e.seq > before) {
            if e.resource == "leases" {
                requests.lease += 1;
            } else if e.namespace == "meshplan-system" || e.name == "meshplan-system" {
                requests.state += 1;
            } else {
                requests.other += 1;
            }
        }
        Ok(Run { seconds, requests })
    }
}

/// The data bytes (decoded) and count of the state's Secrets.
fn state_size(sandbox: &BlockingSandbox) -> (usize, usize) {
    let mut bytes = 0;
    let mut secrets = 0;
    for ((_, resource, namespace, _), object) in sandbox.objects() {
        if resource != "secrets" || namespace != "meshplan-system" {
            continue;
        }
        secrets += 1;
        if let Some(data) = object["data"].as_object() {
            for v in data.values() {
                let text = v.as_str().unwrap_or("");
                let pad = text.bytes().rev().take_while(|b| *b == b'=').count();
                bytes += text.len() * 3 / 4 - pad;
            }
        }
    }
    (bytes, secrets)
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let exe = std::env::current_exe()?;
    let meshplan = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("meshplan"))
        .ok_or("cannot locate the meshplan binary")?;
    if !meshplan.is_file() {
        return Err(format!("build the binary first: {} is missing", meshplan.display()).into());
    }
    let bench = Bench {
        meshplan,
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    };
    let crd = std::fs::read_to_string(bench.root.join("tests/fixtures/crds/podmonitor.yaml"))?;
    let mut ratios = Vec::new();
    let mut table = Vec::new();
    for round in 1..=rounds {
        let mut first_times = Vec::new();
        for backend in ["local", "kubernetes"] {
            let sandbox = BlockingSandbox::start(SandboxConfig::default())?;
            let work = tempfile::tempdir()?;
            let kc = work.path().join("kubeconfig");
            std::fs::write(&kc, kubeconfig(sandbox.addr().port()))?;
            // What the sample plan expects of the cluster.
            let setup = work.path().join("setup.yaml");
            std::fs::write(
                &setup,
                format!(
                    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: monitoring\n---\n{crd}"
                ),
            )?;
            let kubectl = meshplan_sandbox::kubectl::kubectl_binary();
            let status = Command::new(kubectl)
                .args(["apply", "--server-side", "-f"])
                .arg(&setup)
                .env("KUBECONFIG", &kc)
                .env("KUBECACHEDIR", work.path().join("cache"))
                .output()?;
            if !status.status.success() {
                return Err(String::from_utf8_lossy(&status.stderr).into_owned().into());
            }
            let (a, b) = (work.path().join("a"), work.path().join("b"));
            std::fs::create_dir_all(&a)?;
            std::fs::create_dir_all(&b)?;
            let state_dir = work.path().join("state");
            let state_arg = state_dir.display().to_string();
            let location: Vec<&str> = if backend == "local" {
                vec!["--state", &state_arg]
            } else {
                vec!["--state-backend", "kubernetes"]
            };
            let with = |extra: &[&'static str]| -> Vec<&str> {
                let mut v: Vec<&str> = extra.to_vec();
                v.extend(location.iter().copied());
                v
            };
            let first = bench.run(&sandbox, &a, &kc, &with(&["apply", "--auto-approve"]))?;
            let noop = bench.run(&sandbox, &a, &kc, &with(&["apply", "--auto-approve"]))?;
            let plan = bench.run(&sandbox, &b, &kc, &with(&["plan", "--detailed-exitcode"]))?;
            let (bytes, secrets) = state_size(&sandbox);
            let local = dir_size(&state_dir);
            first_times.push(first.seconds);
            for (label, r) in [
                ("first apply", &first),
                ("no-op apply", &noop),
                ("plan", &plan),
            ] {
                table.push(format!(
                    "| {round} | {backend} | {label} | {:.2} s | {} | {} | {} |",
                    r.seconds, r.requests.state, r.requests.lease, r.requests.other
                ));
            }
            table.push(format!(
                "| {round} | {backend} | state size | {} | {} Secret(s), {bytes} bytes | local dir {local} bytes | |",
                "",
                secrets
            ));
            sandbox.shutdown()?;
        }
        ratios.push(first_times[1] / first_times[0]);
    }
    println!("| round | backend | run | time | state requests | lease requests | other requests |");
    println!("|---|---|---|---|---|---|---|");
    for line in &table {
        println!("{line}");
    }
    println!(
        "\nfirst apply, kubernetes / local: median {:.2} over {rounds} round(s) ({})",
        median(ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
