//! The state backends and their locks as operators meet them, with the `meshplan` binary
//! against a sandbox: a state in the cluster shared by two working directories (and two
//! "machines"), the Lease that keeps two applies apart whatever the backend, kill -9 without
//! `state unlock`, a 500 at every state write, migration between backends, and a local state
//! found beside its plan from any working directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use meshplan_sandbox::kubectl::Cluster;
use meshplan_sandbox::{FaultAction, FaultRule, SandboxConfig, WRITE_VERB};
use serde_json::Value;

use crate::support::root;

const BIN: &str = env!("CARGO_BIN_EXE_meshplan");
/// A state key (32 bytes, base64) for the states in the cluster.
pub(crate) const KEY: &str = "c3RhdGUta2V5LWZvci10aGUtdGVzdHMtb25seS0zMmI=";

/// A small plan kept in the cluster: a namespace, two ConfigMaps that follow `mode`, and a
/// Deployment (whose rollout a test can hold).
pub(crate) const SHARED: &str = r#"
[plan]
name = "shared"

[state]
backend = "kubernetes"
lease_duration = "3s"

[vars]
mode = "a"

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
  mode: ${var.mode}
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
      annotations:
        mode: ${var.mode}
    spec:
      containers:
      - name: web
        image: nginx:1.27
'''
"#;

/// A sandbox, a plan file, and working directories that run meshplan.
pub(crate) struct Env {
    pub cluster: Cluster,
    pub plan: PathBuf,
}

fn quick() -> SandboxConfig {
    let mut config = SandboxConfig::default();
    config.controllers.rollout_delay = Duration::from_millis(30);
    config.controllers.webhook_delay = Duration::from_millis(50);
    config
}

impl Env {
    pub fn new(plan: &str) -> Self {
        let cluster = Cluster::start_with(quick());
        let dir = cluster.dir.path().join("plans");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plan.toml");
        std::fs::write(&path, plan).unwrap();
        Self {
            cluster,
            plan: path,
        }
    }

    /// A working directory of its own (an operator's checkout, a CI runner).
    pub fn workdir(&self, name: &str) -> PathBuf {
        let dir = self.cluster.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    pub fn command(&self, cwd: &Path, sub: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(cwd)
            .arg(sub)
            .arg(&self.plan)
            .arg("--kubeconfig")
            .arg(&self.cluster.kubeconfig)
            .args(extra)
            .env("MESHPLAN_STATE_KEY", KEY)
            .env("NO_COLOR", "1")
            .env_remove("MESHPLAN_STATE_BACKEND")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, cwd: &Path, sub: &str, extra: &[&str]) -> (i32, String, String) {
        decode(self.command(cwd, sub, extra).output().unwrap())
    }

    pub fn apply(&self, cwd: &Path, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec!["--auto-approve"];
        args.extend_from_slice(extra);
        self.run(cwd, "apply", &args)
    }

    pub fn spawn_apply(&self, cwd: &Path, extra: &[&str]) -> Child {
        let mut args = vec!["--auto-approve"];
        args.extend_from_slice(extra);
        self.command(cwd, "apply", &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `meshplan state SUB PLAN` (no cluster flags needed for a local state).
    pub fn state(&self, cwd: &Path, sub: &str, extra: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .current_dir(cwd)
            .args(["state", sub])
            .arg(&self.plan)
            .arg("--kubeconfig")
            .arg(&self.cluster.kubeconfig)
            .args(extra)
            .env("MESHPLAN_STATE_KEY", KEY)
            .env("NO_COLOR", "1")
            .env_remove("MESHPLAN_STATE_BACKEND")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        decode(out)
    }

    /// The value of `key` in the annotations of the Deployment and the data of the
    /// ConfigMaps: one per object, sorted.
    pub fn modes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in ["settings", "more"] {
            let cm = self.cluster.get_json(&["configmap", "-n", "app", name]);
            out.push(format!(
                "{name}={}",
                cm["data"]["mode"].as_str().unwrap_or("-")
            ));
        }
        let web = self.cluster.get_json(&["deployment", "-n", "app", "web"]);
        out.push(format!(
            "web={}",
            web["spec"]["template"]["metadata"]["annotations"]["mode"]
                .as_str()
                .unwrap_or("-")
        ));
        out
    }

    /// Write requests (not dry runs) the sandbox has answered: `METHOD resource ns/name`.
    pub fn writes(&self) -> Vec<String> {
        self.cluster
            .sandbox
            .audit()
            .iter()
            .filter(|e| matches!(e.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
            .filter(|e| !e.query.contains("dryRun"))
            .map(|e| format!("{} {} {}/{}", e.method, e.resource, e.namespace, e.name))
            .collect()
    }

    /// The Secrets of the state in the cluster: (index, chunks).
    pub fn state_secrets(&self, name: &str) -> (Vec<Value>, Vec<Value>) {
        let list = self.cluster.get_json(&[
            "secrets",
            "-n",
            "meshplan-system",
            "-l",
            &format!("meshplan.io/state={name}"),
        ]);
        let mut index = Vec::new();
        let mut chunks = Vec::new();
        for item in list["items"].as_array().unwrap() {
            match item["metadata"]["labels"]["meshplan.io/part"].as_str() {
                Some("index") => index.push(item.clone()),
                _ => chunks.push(item.clone()),
            }
        }
        (index, chunks)
    }

    /// Chunks of the state that its index does not reference.
    pub fn orphan_chunks(&self, name: &str) -> Vec<String> {
        let (index, chunks) = self.state_secrets(name);
        let Some(index) = index.first() else {
            return chunks
                .iter()
                .map(|c| c["metadata"]["name"].as_str().unwrap().to_owned())
                .collect();
        };
        let meta = base64::engine::general_purpose::STANDARD
            .decode(index["data"]["meta"].as_str().unwrap())
            .unwrap();
        let meta: Value = serde_json::from_slice(&meta).unwrap();
        let token = meta["base"]["token"].as_str().unwrap_or("").to_owned();
        chunks
            .iter()
            .filter(|c| c["metadata"]["labels"]["meshplan.io/generation"].as_str() != Some(&token))
            .map(|c| c["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

pub(crate) fn decode(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `text` with whitespace (and the frame of a wrapped diagnostic) collapsed.
pub(crate) fn flat(text: &str) -> String {
    text.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn wait_exit(child: &mut Child) -> (i32, String, String) {
    decode(child.wait_with_output_ref())
}

/// `Child::wait_with_output` for a borrowed child.
trait WaitRef {
    fn wait_with_output_ref(&mut self) -> Output;
}

impl WaitRef for Child {
    fn wait_with_output_ref(&mut self) -> Output {
        use std::io::Read as _;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut o) = self.stdout.take() {
            let _ = o.read_to_end(&mut stdout);
        }
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_end(&mut stderr);
        }
        let status = self.wait().unwrap();
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

#[test]
fn two_applies_from_two_directories_one_proceeds_the_other_names_the_holder_twenty_times() {
    let env = Env::new(SHARED);
    let (a, b) = (env.workdir("a"), env.workdir("b"));
    let (code, _, err) = env.apply(&a, &["--var", "mode=start"]);
    assert_eq!(code, 0, "{err}");
    for trial in 0..20 {
        // Both start at once; the winner's rollout is held until the loser is done.
        env.cluster
            .sandbox
            .set_paused(meshplan_sandbox::Controller::Workloads, true);
        let (va, vb) = (format!("a{trial}"), format!("b{trial}"));
        let mut first = env.spawn_apply(&a, &["--var", &format!("mode={va}")]);
        let mut second = env.spawn_apply(&b, &["--var", &format!("mode={vb}")]);
        let (pa, pb) = (first.id(), second.id());
        // The loser ends on its own; the winner waits for its rollout.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (loser, loser_pid, winner, winner_value) = loop {
            if let Ok(Some(_)) = first.try_wait() {
                break (first, pa, second, vb);
            }
            if let Ok(Some(_)) = second.try_wait() {
                break (second, pb, first, va);
            }
            assert!(
                Instant::now() < deadline,
                "trial {trial}: neither apply ended"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let winner_pid = if loser_pid == pa { pb } else { pa };
        let mut loser = loser;
        let (code, out, err) = wait_exit(&mut loser);
        assert_eq!(
            code, 1,
            "trial {trial}: the loser (pid {loser_pid}):\n{out}\n{err}"
        );
        let text = flat(&err);
        assert!(
            text.contains("Lease meshplan-system/meshplan-lock-shared is held by meshplan apply")
                && text.contains(&format!("pid {winner_pid} on host")),
            "trial {trial}: the loser must name the winner (pid {winner_pid}):\n{err}"
        );
        env.cluster
            .sandbox
            .set_paused(meshplan_sandbox::Controller::Workloads, false);
        let mut winner = winner;
        let (code, out, err) = wait_exit(&mut winner);
        assert_eq!(code, 0, "trial {trial}: the winner:\n{out}\n{err}");
        // No interleaved writes: every object carries the winner's value.
        let want: Vec<String> = ["settings", "more", "web"]
            .iter()
            .map(|n| format!("{n}={winner_value}"))
            .collect();
        assert_eq!(env.modes(), want, "trial {trial}");
    }

    // With --lock-timeout the second waits for the first, then plans again and applies.
    env.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, true);
    let mut first = env.spawn_apply(&a, &["--var", "mode=first"]);
    let started = Instant::now();
    while !env
        .cluster
        .kubectl(&[
            "get",
            "lease",
            "-n",
            "meshplan-system",
            "meshplan-lock-shared",
        ])
        .stdout
        .contains("meshplan-lock-shared")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no Lease taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut second = env.spawn_apply(&b, &["--var", "mode=second", "--lock-timeout", "60s"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        second.try_wait().unwrap().is_none(),
        "the second apply must wait for the first"
    );
    env.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, false);
    let (code, _, err) = wait_exit(&mut first);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = wait_exit(&mut second);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        env.modes(),
        ["settings=second", "more=second", "web=second"]
    );
    let (code, out, err) = env.run(&b, "plan", &["--var", "mode=second", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

/// Draws kill points: a small deterministic generator (the runs stay reproducible).
struct Draw(u64);

impl Draw {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

/// Waits until the sandbox has answered `count` writes since `since`, or the child ended.
fn wait_for_writes(env: &Env, since: usize, count: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.writes().len() < since + count && Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Makes the Lease's holder look like a process of another machine (that cannot be judged
/// from here: only its expiry frees the lock).
fn move_holder_to_another_machine(env: &Env, namespace: &str, lease: &str) -> bool {
    let got = env
        .cluster
        .kubectl(&["get", "lease", "-n", namespace, lease, "-o", "json"]);
    if got.code != 0 {
        return false;
    }
    let lease_json: Value = serde_json::from_str(&got.stdout).unwrap();
    let Some(text) = lease_json["metadata"]["annotations"]["meshplan.io/holder"].as_str() else {
        return false;
    };
    let mut holder: Value = serde_json::from_str(text).unwrap();
    holder["host"] = Value::from("machine-a");
    env.cluster
        .kubectl(&[
            "annotate",
            "lease",
            "-n",
            namespace,
            lease,
            "--overwrite",
            &format!("meshplan.io/holder={holder}"),
        ])
        .ok();
    true
}

#[test]
fn kill_9_of_an_apply_on_one_machine_then_an_apply_on_another_converges() {
    let env = Env::new(SHARED);
    let (a, b) = (env.workdir("machine-a"), env.workdir("machine-b"));
    let (code, _, err) = env.apply(&a, &["--var", "mode=start"]);
    assert_eq!(code, 0, "{err}");
    let mut draw = Draw(12);
    let mut held = 0;
    for point in 0..10 {
        let since = env.writes().len();
        let mut child = env.spawn_apply(&a, &["--var", &format!("mode=a{point}")]);
        let at = 1 + draw.next(16) as usize;
        wait_for_writes(&env, since, at, &mut child);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // The run died on machine A; machine B cannot tell whether it still runs.
        if move_holder_to_another_machine(&env, "meshplan-system", "meshplan-lock-shared") {
            held += 1;
        }
        let choice = if point % 2 == 0 {
            "complete"
        } else {
            "rollback"
        };
        let value = format!("b{point}");
        let (code, out, err) = env.apply(
            &b,
            &[
                "--var",
                &format!("mode={value}"),
                "--lock-timeout",
                "60s",
                "--on-unfinished",
                choice,
            ],
        );
        assert_eq!(
            code, 0,
            "point {point} (killed after {at} writes):\n{out}\n{err}"
        );
        let (code, out, err) = env.run(
            &b,
            "plan",
            &["--var", &format!("mode={value}"), "--detailed-exitcode"],
        );
        assert_eq!(
            code, 0,
            "point {point}: the plan after B's apply:\n{out}\n{err}"
        );
        assert_eq!(
            env.modes(),
            ["settings", "more", "web"].map(|n| format!("{n}={value}")),
            "point {point}"
        );
        assert_eq!(env.orphan_chunks("shared"), Vec::<String>::new());
    }
    // Most points killed the run while it held the Lease: B had to wait for its expiry.
    assert!(held >= 5, "only {held} of 10 points held the Lease");
}

#[test]
fn a_500_at_each_state_write_leaves_a_whole_generation_and_no_orphans() {
    let env = Env::new(SHARED);
    let a = env.workdir("a");
    let (code, _, err) = env.apply(&a, &["--var", "mode=start"]);
    assert_eq!(code, 0, "{err}");
    let mut hit_index = 0;
    let mut hit_chunks = 0;
    let mut last = 0;
    // An apply with `rule` in place (three faults in a row: more than the state's own retries
    // absorb), then the checks; the requests the fault hit (none: the apply made fewer
    // matching writes, and succeeded).
    let mut round = 0;
    let mut faulted_apply = |rule: FaultRule| -> Vec<String> {
        round += 1;
        let value = format!("v{round}");
        let seen = env.cluster.sandbox.audit().last().map_or(0, |e| e.seq);
        env.cluster.sandbox.add_fault(FaultRule {
            namespace: Some("meshplan-system".into()),
            times: 3,
            ..rule
        });
        let (code, out, err) = env.apply(&a, &["--var", &format!("mode={value}")]);
        env.cluster.sandbox.clear_faults();
        let hits: Vec<String> = env
            .cluster
            .sandbox
            .audit()
            .iter()
            .filter(|e| e.seq > seen && e.fault.is_some())
            .map(|e| format!("{} {}", e.method, e.name))
            .collect();
        if hits.is_empty() {
            assert_eq!(code, 0, "round {round}: no fault hit, yet:\n{out}\n{err}");
            return hits;
        }
        // The state reads whole: one generation and its deltas, the old or the new.
        let (code, listed, err) = env.state(&a, "list", &[]);
        assert_eq!(
            code, 0,
            "round {round} ({hits:?}): the state is unreadable:\n{err}"
        );
        assert!(listed.starts_with("lineage "), "{listed}");
        // The next apply converges (finishing what the failed one left), and so does the plan.
        let (code, out, err) = env.apply(
            &a,
            &[
                "--var",
                &format!("mode={value}"),
                "--on-unfinished",
                "rollback",
            ],
        );
        assert_eq!(
            code, 0,
            "round {round} ({hits:?}): the next apply:\n{out}\n{err}"
        );
        let (code, out, err) = env.run(
            &a,
            "plan",
            &["--var", &format!("mode={value}"), "--detailed-exitcode"],
        );
        assert_eq!(code, 0, "round {round}: the plan after:\n{out}\n{err}");
        assert_eq!(
            env.orphan_chunks("shared"),
            Vec::<String>::new(),
            "round {round} ({hits:?})"
        );
        hits
    };
    let mut count = |hits: &[String]| {
        if hits.iter().any(|h| h.ends_with("meshplan-state-shared")) {
            hit_index += 1;
        } else {
            hit_chunks += 1;
        }
    };
    // Every state write of an apply in turn. How many there are, and where the checkpoint's
    // chunk writes fall among the index writes, depends on how the journal's commits group.
    for n in 1u64..100 {
        let hits = faulted_apply(FaultRule::new(
            WRITE_VERB,
            "secrets",
            n,
            FaultAction::Error { code: 500 },
        ));
        if hits.is_empty() {
            last = n - 1;
            break;
        }
        count(&hits);
    }
    // And the checkpoint's chunk writes by name: the first chunk created, the first old
    // chunk deleted.
    for verb in ["create", "delete"] {
        let hits = faulted_apply(FaultRule::new(
            verb,
            "secrets",
            1,
            FaultAction::Error { code: 500 },
        ));
        assert!(!hits.is_empty(), "no {verb} of a chunk in an apply");
        assert!(
            hits.iter().all(|h| !h.ends_with("meshplan-state-shared")),
            "{hits:?}"
        );
        count(&hits);
    }
    assert!(last >= 6, "only {last} state writes per apply");
    assert!(
        hit_index > 0 && hit_chunks >= 2,
        "index {hit_index}, chunks {hit_chunks}"
    );
}

/// The small plan with a local state.
fn local_plan() -> String {
    SHARED.replace(
        "[state]\nbackend = \"kubernetes\"\nlease_duration = \"3s\"\n",
        "[state]\nlease_duration = \"3s\"\n",
    )
}

#[test]
fn with_local_states_in_two_directories_the_clusters_lease_keeps_applies_apart() {
    let env = Env::new(&local_plan());
    let (a, b) = (env.workdir("a"), env.workdir("b"));
    let state_a = ["--state", "state-a"];
    let state_b = ["--state", "state-b"];
    env.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, true);
    let mut first = env.spawn_apply(&a, &[&state_a[..], &["--var", "mode=a"]].concat());
    let started = Instant::now();
    while env
        .cluster
        .kubectl(&["get", "lease", "-n", "kube-system", "meshplan-lock-shared"])
        .code
        != 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no Lease taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Longer than the lease's duration: the first renews it, so it stays held.
    std::thread::sleep(Duration::from_millis(3500));
    let before = env.writes().len();
    let (code, out, err) = env.apply(&b, &[&state_b[..], &["--var", "mode=b"]].concat());
    assert_eq!(code, 1, "{out}\n{err}");
    let text = flat(&err);
    assert!(
        text.contains("Lease kube-system/meshplan-lock-shared is held by meshplan apply")
            && text.contains(&format!("pid {} on host", first.id())),
        "{err}"
    );
    // The second wrote nothing at all (the first renews its Lease meanwhile).
    let since: Vec<String> = env.writes()[before..]
        .iter()
        .filter(|w| !w.starts_with("PUT leases "))
        .cloned()
        .collect();
    assert_eq!(since, Vec::<String>::new());
    // With --lock-timeout it waits for the first, then plans: its state has no records of
    // the objects the first applied, so it stops there (a lost state, or another state of
    // the plan), writing nothing; taking them over is explicit.
    let mut second = env.spawn_apply(
        &b,
        &[&state_b[..], &["--var", "mode=b", "--lock-timeout", "60s"]].concat(),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(second.try_wait().unwrap().is_none(), "the second must wait");
    env.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, false);
    let (code, _, err) = wait_exit(&mut first);
    assert_eq!(code, 0, "{err}");
    let before = env.writes().len();
    let (code, _, err) = wait_exit(&mut second);
    assert_eq!(code, 1, "{err}");
    assert!(
        flat(&err).contains("has no records of plan shared, but the cluster holds 4 objects"),
        "{err}"
    );
    assert_eq!(env.modes(), ["settings=a", "more=a", "web=a"]);
    let (code, _, err) = env.apply(
        &b,
        &[&state_b[..], &["--var", "mode=b", "--adopt-lost-state"]].concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(env.writes().len() > before);
    assert_eq!(env.modes(), ["settings=b", "more=b", "web=b"]);
    // The Lease is gone once both ended: nothing of meshplan's stays in the cluster.
    assert_ne!(
        env.cluster
            .kubectl(&["get", "lease", "-n", "kube-system", "meshplan-lock-shared"])
            .code,
        0
    );
}

#[test]
fn after_kill_9_the_next_apply_and_every_reader_need_no_unlock() {
    let env = Env::new(&local_plan());
    let a = env.workdir("a");
    let (code, _, err) = env.apply(&a, &["--var", "mode=start"]);
    assert_eq!(code, 0, "{err}");
    let mut draw = Draw(7);
    for point in 0..4 {
        let since = env.writes().len();
        let mut child = env.spawn_apply(&a, &["--var", &format!("mode=k{point}")]);
        wait_for_writes(&env, since, 2 + draw.next(8) as usize, &mut child);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Readers work at once: nobody holds the lock any more.
        let (code, listed, err) = env.state(&a, "list", &[]);
        assert_eq!(code, 0, "point {point}: {err}");
        let (code, out, err) = env.run(&a, "plan", &["--var", "mode=after"]);
        assert_eq!(code, 0, "point {point}: {out}\n{err}");
        // The next apply takes both locks (the local one, and the dead run's Lease) by itself.
        let choice = if listed.contains("unfinished run") {
            "rollback"
        } else {
            "complete"
        };
        let (code, out, err) = env.apply(&a, &["--var", "mode=after", "--on-unfinished", choice]);
        assert_eq!(code, 0, "point {point}:\n{out}\n{err}");
        assert!(!err.contains("state unlock"), "{err}");
        assert_eq!(env.modes(), ["settings=after", "more=after", "web=after"]);
    }
}

#[test]
fn a_state_migrates_local_to_kubernetes_to_local_with_identical_records() {
    let env = Env::new(&local_plan());
    let a = env.workdir("a");
    let (code, _, err) = env.apply(&a, &["--var", "mode=m"]);
    assert_eq!(code, 0, "{err}");
    let local_dir = env.plan.parent().unwrap().join("state").join("shared");
    assert!(local_dir.join("db").exists());
    let (code, before, err) = env.state(&a, "list", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(before.contains("manifest.web"), "{before}");

    let (code, _, err) = env.state(&a, "migrate", &["--to", "kubernetes"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Verified: lineage"), "{err}");
    assert!(
        !local_dir.join("db").exists(),
        "the source is removed once verified"
    );
    let (index, chunks) = env.state_secrets("shared");
    assert_eq!((index.len(), chunks.len()), (1, 1));
    let (code, in_cluster, err) = env.state(&a, "list", &["--state-backend", "kubernetes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(in_cluster, before);
    // The plan finds its objects recorded: nothing to change, in the cluster's state.
    let (code, out, err) = env.run(
        &a,
        "plan",
        &[
            "--var",
            "mode=m",
            "--state-backend",
            "kubernetes",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");

    let (code, _, err) = env.state(&a, "migrate", &["--to", "local"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(env.state_secrets("shared"), (vec![], vec![]));
    let (code, after, err) = env.state(&a, "list", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(after, before);
    let (code, out, err) = env.run(&a, "plan", &["--var", "mode=m", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");

    // Into a place that already holds a state: refused, the source kept.
    let (code, _, err) = env.state(&a, "migrate", &["--to", "kubernetes"]);
    assert_eq!(code, 0, "{err}");
    // A new local state beside it: empty, over objects another state (the one in the
    // cluster) records, so it is refused as a lost state unless adopting explicitly.
    let (code, _, err) = env.apply(&a, &["--var", "mode=n"]);
    assert_eq!(code, 1);
    assert!(
        flat(&err).contains("has no records of plan shared"),
        "{err}"
    );
    let (code, _, err) = env.apply(&a, &["--var", "mode=n", "--adopt-lost-state"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = env.state(&a, "migrate", &["--to", "kubernetes"]);
    assert_eq!(code, 1);
    assert!(flat(&err).contains("is not empty"), "{err}");
    assert!(local_dir.join("db").exists());
}

#[test]
fn a_local_state_is_found_beside_its_plan_from_any_working_directory() {
    // The sample plan in a copy of the repository's layout: its [state] dir names the
    // top-level state/ folder, whatever the working directory.
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let plans = repo.join("plans");
    std::fs::create_dir_all(plans.join("manifests")).unwrap();
    std::fs::copy(
        root().join("plans/linkerd.toml"),
        plans.join("linkerd.toml"),
    )
    .unwrap();
    for entry in std::fs::read_dir(root().join("plans/manifests")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            plans.join("manifests").join(entry.file_name()),
        )
        .unwrap();
    }
    let list = |cwd: &Path, plan: &Path| {
        let out = Command::new(BIN)
            .current_dir(cwd)
            .args(["state", "list"])
            .arg(plan)
            .env_remove("MESHPLAN_STATE_BACKEND")
            .output()
            .unwrap();
        let (code, out, err) = decode(out);
        assert_eq!(code, 0, "{err}");
        out.lines().next().unwrap().to_owned()
    };
    let from_repo = list(&repo, Path::new("plans/linkerd.toml"));
    let from_plans = list(&plans, Path::new("linkerd.toml"));
    let from_elsewhere = list(tmp.path(), &plans.join("linkerd.toml"));
    assert!(from_repo.starts_with("lineage "), "{from_repo}");
    assert_eq!(from_plans, from_repo);
    assert_eq!(from_elsewhere, from_repo);
    assert!(repo.join("state/linkerd/db").exists());
    assert!(!plans.join("state").exists());
    assert!(!tmp.path().join("state").exists());

    // Without a [state] table the state sits in state/<plan name> beside the plan: an
    // apply from one directory and a plan from another see the same records.
    let env = Env::new(&local_plan().replace("[state]\nlease_duration = \"3s\"\n", ""));
    let (x, y) = (env.workdir("x"), env.workdir("y"));
    let (code, _, err) = env.apply(&x, &["--var", "mode=here"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = env.run(&y, "plan", &["--var", "mode=here", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(env.plan.parent().unwrap().join("state/shared/db").exists());
    assert!(!x.join("state").exists() && !y.join("state").exists());
}

/// Every data entry of every Secret of meshplan's state, decoded (base64, then gunzip when
/// compressed): (secret/key, text).
fn state_blobs(cluster: &Cluster) -> Vec<(String, Vec<u8>)> {
    use std::io::Read as _;
    let list = cluster.get_json(&[
        "secrets",
        "-n",
        "meshplan-system",
        "-l",
        "app.kubernetes.io/managed-by=meshplan",
    ]);
    let mut out = Vec::new();
    for item in list["items"].as_array().unwrap() {
        let name = item["metadata"]["name"].as_str().unwrap();
        for (key, value) in item["data"].as_object().unwrap() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap())
                .unwrap();
            let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(raw.as_slice())
                    .read_to_end(&mut plain)
                    .unwrap();
                plain
            } else {
                raw
            };
            out.push((format!("{name}/{key}"), bytes));
        }
    }
    out
}

#[test]
fn the_sample_plan_in_the_cluster_applied_from_one_directory_plans_empty_from_another() {
    let cluster = Cluster::start_with(quick());
    cluster
        .apply(
            "monitoring.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: monitoring\n",
        )
        .ok();
    let crd = std::fs::read_to_string(root().join("tests/fixtures/crds/podmonitor.yaml")).unwrap();
    cluster.apply("podmonitor-crd.yaml", &crd).ok();
    let charts = root().join("plans/charts");
    let run = |cwd: &Path, args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(cwd)
            .args(args)
            .arg(root().join("plans/linkerd.toml"))
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(["--state-backend", "kubernetes"])
            .arg("--repo-dir")
            .arg(format!("linkerd={}", charts.display()))
            .arg("--repo-dir")
            .arg(format!("jetstack={}", charts.display()))
            .env("MESHPLAN_STATE_KEY", KEY)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        decode(out)
    };
    let a = cluster.dir.path().join("operator-a");
    let b = cluster.dir.path().join("ci-runner-b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (code, out, err) = run(&a, &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Another directory, no local state at all: the state in the cluster says everything
    // is applied — no regenerated certificate, nothing to adopt.
    let (code, out, err) = run(&b, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, "No changes. The cluster matches the plan.\n");
    for dir in [&a, &b] {
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            0,
            "{}",
            dir.display()
        );
    }

    // No Secret of the backend holds private key material or a sensitive value in clear:
    // every data entry decoded, and searched for every Secret value the plan applied.
    let blobs = state_blobs(&cluster);
    assert!(blobs.len() >= 2, "{blobs:?}");
    let mut sensitive: Vec<Vec<u8>> = Vec::new();
    let secrets = cluster.get_json(&["secrets", "-A"]);
    for s in secrets["items"].as_array().unwrap() {
        if s["metadata"]["namespace"] == "meshplan-system" {
            continue;
        }
        for value in s["data"].as_object().into_iter().flat_map(|d| d.values()) {
            let encoded = value.as_str().unwrap();
            let plain = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            if plain.len() >= 16 {
                sensitive.push(plain);
                sensitive.push(encoded.as_bytes().to_vec());
            }
        }
    }
    assert!(sensitive.len() >= 6, "the sample plan applies key material");
    for (name, bytes) in &blobs {
        assert!(
            !bytes.windows(11).any(|w| w == b"PRIVATE KEY"),
            "{name} holds a private key in clear"
        );
        for value in &sensitive {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_slice()),
                "{name} holds a sensitive value in clear"
            );
        }
    }
}

/// Starts an apply whose rollout never ends (workloads paused) and waits until it holds the
/// plan's Lease in the state's namespace.
fn apply_holding_the_lease(env: &Env, cwd: &Path, mode: &str) -> Child {
    env.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, true);
    let mut child = env.spawn_apply(cwd, &["--var", &format!("mode={mode}")]);
    let started = Instant::now();
    while env
        .cluster
        .kubectl(&[
            "get",
            "lease",
            "-n",
            "meshplan-system",
            "meshplan-lock-shared",
        ])
        .code
        != 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(60) && child.try_wait().unwrap().is_none(),
            "the apply took no Lease"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn state_unlock_breaks_a_lease_only_when_asked_and_confirmed() {
    let env = Env::new(&SHARED.replace("lease_duration = \"3s\"", "lease_duration = \"600s\""));
    let a = env.workdir("a");
    let (code, _, err) = env.state(&a, "unlock", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("The state is not locked"), "{err}");
    let (code, _, err) = env.apply(&a, &["--var", "mode=start"]);
    assert_eq!(code, 0, "{err}");

    // A run killed on another machine: its Lease runs for ten minutes.
    let mut child = apply_holding_the_lease(&env, &a, "x");
    let _ = child.kill();
    let _ = child.wait();
    assert!(move_holder_to_another_machine(
        &env,
        "meshplan-system",
        "meshplan-lock-shared"
    ));
    let (code, _, err) = env.apply(&a, &["--var", "mode=y"]);
    assert_eq!(code, 1);
    let text = flat(&err);
    assert!(
        text.contains("is held by meshplan apply")
            && text.contains(&format!("pid {} on host machine-a", child.id()))
            && text.contains("its lease runs until"),
        "{err}"
    );
    // unlock refuses to break a lock whose holder may still run, unless forced...
    let (code, _, err) = env.state(&a, "unlock", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(flat(&err).contains("is held by meshplan apply"), "{err}");
    // ... and confirmed (no terminal here: --auto-approve).
    let (code, _, err) = env.state(&a, "unlock", &["--force"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("without confirmation"), "{err}");
    let (code, _, err) = env.state(&a, "unlock", &["--force", "--auto-approve"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Broke the lock of meshplan apply"), "{err}");
    env.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, false);
    let (code, out, err) = env.apply(&a, &["--var", "mode=y", "--on-unfinished", "rollback"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.modes(), ["settings=y", "more=y", "web=y"]);
}

#[test]
fn an_apply_whose_lease_is_broken_stops_writing_and_says_so() {
    let env = Env::new(SHARED);
    let a = env.workdir("a");
    let (code, _, err) = env.apply(&a, &["--var", "mode=start"]);
    assert_eq!(code, 0, "{err}");
    let mut child = apply_holding_the_lease(&env, &a, "x");
    // The holder runs (on this machine): only a forced, confirmed unlock breaks its Lease.
    let (code, _, err) = env.state(&a, "unlock", &["--force", "--auto-approve"]);
    assert_eq!(code, 0, "{err}");
    // Its next renewal is refused: the run stops at once and keeps its journal.
    let (code, out, err) = wait_exit(&mut child);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("was lost"), "{err}");
    env.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, false);
    let (code, out, err) = env.apply(&a, &["--var", "mode=z", "--on-unfinished", "rollback"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = env.run(&a, "plan", &["--var", "mode=z", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn drift_reads_a_state_in_the_cluster_without_its_lease_while_a_run_holds_it() {
    let env = Env::new(SHARED);
    let (a, ci) = (env.workdir("operator-a"), env.workdir("ci-runner"));
    let (code, _, err) = env.apply(&a, &["--var", "mode=a"]);
    assert_eq!(code, 0, "{err}");
    let drift = |extra: &[&str]| {
        let mut args = vec!["--format", "json"];
        args.extend_from_slice(extra);
        let (code, out, err) = env.run(&ci, "drift", &args);
        let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
        (code, report)
    };
    // A runner without any local state reads the state from the cluster: no drift.
    let (code, report) = drift(&[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["state"]["source"], "cluster");
    assert!(report["state"]["held_by"].is_null(), "{report}");
    assert!(
        !ci.join("state").exists(),
        "drift created a local state in the runner"
    );

    // Another run holds the state's Lease (for ten minutes): an apply is refused, naming it...
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = rt
        .block_on(kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&env.cluster.kubeconfig).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        ))
        .unwrap();
    let remote = meshplan::state::Remote::connect(config).unwrap();
    let at = meshplan::state::KubeLocation {
        namespace: "meshplan-system".into(),
        name: "shared".into(),
    };
    let guard = rt
        .block_on(
            meshplan::state::LeaseLock::new(remote, at.lease(Duration::from_secs(600)))
                .acquire("apply", Duration::ZERO),
        )
        .unwrap();
    let (code, _, err) = env.apply(&a, &["--var", "mode=b"]);
    assert_eq!(code, 1, "{err}");
    assert!(flat(&err).contains("is held by meshplan apply"), "{err}");
    assert_eq!(env.modes(), ["settings=a", "more=a", "web=a"]);

    // ... while drift reads the state without it, names the holder, and writes nothing.
    env.cluster
        .kubectl(&[
            "patch",
            "configmap",
            "-n",
            "app",
            "settings",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"mode":"by-hand"}}"#,
        ])
        .ok();
    let writes = env.writes().len();
    let (code, report) = drift(&[]);
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["state"]["source"], "cluster");
    let held_by = report["state"]["held_by"].as_str().unwrap_or_default();
    assert!(
        held_by.contains("meshplan apply")
            && held_by.contains(&format!("pid {}", std::process::id())),
        "{report}"
    );
    assert_eq!(report["summary"]["changed"], 1, "{report}");
    let changed: Vec<&Value> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["objects"].as_array().unwrap())
        .filter(|o| o["status"] == "changed")
        .collect();
    assert_eq!(changed.len(), 1, "{report}");
    assert_eq!(changed[0]["object"]["name"], "settings", "{report}");
    assert_eq!(changed[0]["fields"][0]["live"], "by-hand", "{report}");
    assert_eq!(env.writes().len(), writes, "drift wrote to the cluster");
    // The human report says whose run holds the state.
    let (code, out, err) = env.run(&ci, "drift", &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("meshplan apply"), "{out}");

    // With the Lease given back, an apply takes the field back.
    rt.block_on(guard.release()).unwrap();
    let (code, _, err) = env.apply(&a, &["--var", "mode=a", "--force-conflicts"]);
    assert_eq!(code, 0, "{err}");
    let (code, report) = drift(&[]);
    assert_eq!(code, 0, "{report}");
}
