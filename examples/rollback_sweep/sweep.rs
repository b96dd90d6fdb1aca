//! The rollback sweep: `meshplan apply` run once per failure point, each run checked to leave
//! the cluster and the state exactly as they were before it.
//!
//! Used by the integration tests (a small plan, in CI) and by `examples/rollback_sweep` (any
//! plan, the sample Linkerd plan in the longer run). Three sweeps:
//!
//! - **writes**: for N = 1, 2, ... a run where the sandbox answers the Nth write request
//!   (create, update, patch or delete; dry runs are not writes; the apply's own Lease is left
//!   alone) with a 500. The sweep ends at the first N past the apply's last write, where the
//!   apply succeeds.
//! - **waits**: for each `manifest` and `helm` node, a run of a copy of the plan where that node
//!   waits for a condition that never comes, with a one second timeout.
//! - **kills**: `kill -9` at chosen write counts of applies that alternate between two variable
//!   settings; after each kill the state must be readable at once (no `state unlock`: the dead
//!   run's locks free themselves) and the next apply (completing or rolling back the
//!   unfinished run) must converge (`plan --detailed-exitcode` exits 0).
//!
//! Every failed run must exit 1, say it rolled back, and leave:
//!
//! - every object of the cluster as before, compared without `resourceVersion`, `uid`,
//!   timestamps, `generation`, `managedFields` and `status` (what the API server and the
//!   controllers own). Objects a controller made from another (a controller ownerReference,
//!   such as a Deployment's ReplicaSets) are left to that controller, but none may outlive its
//!   owner;
//! - no new object that the run's report does not list as left in place (cert-manager's
//!   Secrets of Certificates the rollback deleted); the sweep then deletes the listed ones, as an
//!   operator would, before the next run;
//! - the state's records as before (`meshplan state list`, without its header), and no
//!   unfinished run.
//!
//! One sandbox serves a whole sweep: each run starts from the cluster the previous run's
//! rollback restored, and is compared with the cluster as it was set up. After a run that
//! failed its check, or succeeded, the sweep sets up a fresh sandbox for the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshplan_sandbox::{BlockingSandbox, FaultAction, FaultRule, SandboxConfig, WRITE_VERB};
use serde_json::Value;

/// How many attempts of one request a failure must outlast to fail the step: meshplan's
/// requests are tried 6 times.
pub const FAILING_ATTEMPTS: u64 = 6;

/// What to sweep: the binaries, the plan and the cluster it expects.
#[derive(Clone)]
pub struct Target {
    /// The meshplan binary.
    pub bin: PathBuf,
    pub kubectl: PathBuf,
    /// The working directory of every meshplan run (relative `--repo-dir` paths).
    pub workdir: PathBuf,
    pub plan: PathBuf,
    /// Arguments of every `plan` and `apply` (such as `--repo-dir`).
    pub common: Vec<String>,
    /// Manifests the cluster already has (applied with `kubectl apply --server-side`).
    pub cluster: Vec<PathBuf>,
    pub sandbox: SandboxConfig,
    /// The longest one meshplan run may take before it is killed and counted as failed.
    pub run_limit: Duration,
}

/// Where each run starts.
#[derive(Clone, Debug)]
pub enum Start {
    /// An empty cluster (but for [`Target::cluster`]) and an empty state.
    Empty,
    /// After a successful apply with these arguments (such as `--var mode=blue`).
    Previous(Vec<String>),
}

/// One sweep's settings.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub start: Start,
    /// Arguments of every swept apply (such as `--var mode=green`).
    pub args: Vec<String>,
    /// Stop after this many failure points (None: all of them).
    pub limit: Option<u64>,
    /// The write and retry sweeps fail write `first`, then every `step`th write after it
    /// (1 and 1: every write).
    pub first: u64,
    pub step: u64,
}

impl Sweep {
    /// The write numbers the write and retry sweeps fail, in order.
    fn points(&self) -> impl Iterator<Item = u64> {
        (self.first.max(1)..).step_by(usize::try_from(self.step.max(1)).unwrap_or(1))
    }

    /// The number of writes of a successful apply, when the point past its last write was
    /// `n` (known only when every write is swept).
    fn writes_before(&self, n: u64) -> Option<u64> {
        (self.step <= 1).then(|| n - 1)
    }
}

/// What a sweep found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Failure points run.
    pub tried: u64,
    /// Failure points whose run exited 1 and whose check found nothing.
    pub passed: u64,
    /// `point: what was wrong`, for each point that did not pass.
    pub failures: Vec<String>,
    /// Objects the runs' reports listed as left in place (and that the sweep removed).
    pub left_in_place: u64,
    /// Writes of the successful apply that ended a write sweep.
    pub writes: Option<u64>,
    /// Points with nothing to fail: nodes that waited for nothing (or had nothing to do).
    pub not_applicable: Vec<String>,
}

impl Outcome {
    /// Counts a judged point; true when it passed (its cluster can serve the next point).
    fn count(
        &mut self,
        point: &str,
        passed: &str,
        result: Result<Vec<String>, String>,
        progress: &mut dyn FnMut(&str),
    ) -> bool {
        match result {
            Ok(left) => {
                self.passed += 1;
                self.left_in_place += left.len() as u64;
                progress(&format!("{point}: {passed}{}", listed(&left)));
                true
            }
            Err(e) => {
                progress(&format!("{point}: FAILED"));
                self.failures.push(format!("{point}: {e}"));
                false
            }
        }
    }

    pub fn summary(&self) -> String {
        let mut text = format!("{} tried, {} passed", self.tried, self.passed);
        if let Some(w) = self.writes {
            text.push_str(&format!(", {w} writes in a successful apply"));
        }
        if self.left_in_place > 0 {
            text.push_str(&format!(
                ", {} objects listed as left in place",
                self.left_in_place
            ));
        }
        if !self.not_applicable.is_empty() {
            text.push_str(&format!(
                ", nothing to wait for in {}",
                self.not_applicable.join(", ")
            ));
        }
        text
    }
}

/// How a meshplan run ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// The cluster and state as compared between runs.
#[derive(Clone, Debug, Default, PartialEq)]
struct Snapshot {
    /// Objects no controller made, normalized, by `group/resource namespace/name`.
    objects: BTreeMap<String, Value>,
    /// `(key, kind, resource, group, namespace, name)` of each of [`Self::objects`].
    refs: BTreeMap<String, ObjectId>,
    /// Objects a controller made: key and the uid of its controlling owner.
    derived: Vec<(String, String)>,
    /// Every uid in the cluster.
    uids: BTreeSet<String>,
    /// `meshplan state list` without its header (which counts the journal's writes).
    records: String,
    /// The state has a run that neither finished nor was rolled back.
    unfinished: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObjectId {
    pub kind: String,
    pub resource: String,
    pub group: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectId {
    /// How meshplan names the object in its reports (without the apiVersion).
    fn shown(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The object as compared: without the metadata the API server owns and without status.
fn normalized(object: &Value) -> Value {
    let mut object = meshplan::apply::strip_server_fields(object);
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

/// `core/configmaps app/settings`, `apiextensions.k8s.io/customresourcedefinitions widgets.example.com`.
fn object_key(group: &str, resource: &str, namespace: &str, name: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    if namespace.is_empty() {
        format!("{group}/{resource} {name}")
    } else {
        format!("{group}/{resource} {namespace}/{name}")
    }
}

/// The uid of the object's controlling owner, if a controller made it.
fn controller_owner(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == Value::Bool(true))
        .and_then(|r| r["uid"].as_str())
        .map(str::to_owned)
}

/// A sandbox with the cluster's manifests, the swept plan's state directory, and the snapshot
/// every run is compared with.
pub struct Env<'a> {
    target: &'a Target,
    pub sandbox: BlockingSandbox,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub state: PathBuf,
    baseline: Snapshot,
}

impl<'a> Env<'a> {
    /// Starts a sandbox, gives it the cluster's manifests, runs the previous apply if any and
    /// takes the baseline snapshot.
    pub fn new(target: &'a Target, start: &Start) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let sandbox =
            BlockingSandbox::start(target.sandbox.clone()).map_err(|e| format!("sandbox: {e}"))?;
        let kubeconfig = dir.path().join("kubeconfig");
        sandbox
            .write_kubeconfig(&kubeconfig)
            .map_err(|e| format!("kubeconfig: {e}"))?;
        let state = dir.path().join("state");
        let mut env = Self {
            target,
            sandbox,
            dir,
            kubeconfig,
            state,
            baseline: Snapshot::default(),
        };
        for manifest in &target.cluster {
            let path = manifest.to_string_lossy().into_owned();
            env.kubectl(&["apply", "--server-side", "-f", &path])?;
        }
        if !target.cluster.is_empty() {
            env.kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd",
                "--all",
            ])?;
        }
        if let Start::Previous(args) = start {
            let run = env.apply(&target.plan, args)?;
            if run.code != 0 {
                return Err(format!("the previous apply failed:\n{}", run.text()));
            }
        }
        env.settle();
        env.baseline = env.snapshot()?;
        if env.baseline.unfinished {
            return Err("the state has an unfinished run after the setup".to_owned());
        }
        Ok(env)
    }

    fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.target.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("kubectl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A meshplan command, not started.
    pub fn command(&self, sub: &str, plan: &Path, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.target.bin);
        cmd.current_dir(&self.target.workdir)
            .arg(sub)
            .arg(plan)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--state")
            .arg(&self.state)
            .args(&self.target.common)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs meshplan to completion (killed after [`Target::run_limit`]).
    pub fn meshplan(&self, sub: &str, plan: &Path, args: &[String]) -> Result<Run, String> {
        let child = self
            .command(sub, plan, args)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.target.bin.display()))?;
        let pid = child.id();
        let limit = self.target.run_limit;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(limit) {
            Ok(Ok(out)) => Ok(Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }),
            Ok(Err(e)) => Err(format!("meshplan {sub}: {e}")),
            Err(_) => {
                // Our own child, by its pid.
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                Err(format!("meshplan {sub} ran longer than {limit:?}; killed"))
            }
        }
    }

    pub fn apply(&self, plan: &Path, args: &[String]) -> Result<Run, String> {
        let mut all = vec!["--auto-approve".to_owned()];
        all.extend_from_slice(args);
        self.meshplan("apply", plan, &all)
    }

    /// Applies with `rule` as the sandbox's only fault; returns the run and how many requests
    /// the fault hit (the faults are cleared afterwards).
    pub fn apply_with_fault(
        &self,
        plan: &Path,
        args: &[String],
        rule: FaultRule,
    ) -> Result<(Run, usize), String> {
        self.sandbox.clear_faults();
        let seen = self.sandbox.audit().last().map_or(0, |e| e.seq);
        self.sandbox.add_fault(rule);
        let run = self.apply(plan, args);
        self.sandbox.clear_faults();
        let hit = self
            .sandbox
            .audit()
            .iter()
            .filter(|e| e.seq > seen && e.fault.is_some())
            .count();
        Ok((run?, hit))
    }

    fn state_list(&self) -> Result<String, String> {
        let out = Command::new(&self.target.bin)
            .current_dir(&self.target.workdir)
            .arg("state")
            .arg("list")
            .arg(&self.target.plan)
            .arg("--state")
            .arg(&self.state)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("meshplan state list: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "meshplan state list: the state is unreadable: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(text)
    }

    /// Waits until nothing has been written to the sandbox for half a second (controllers
    /// reacting, garbage collection), at most 30 seconds.
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = self.sandbox.resource_version();
        let mut quiet = 0;
        while quiet < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.sandbox.resource_version();
            if now == last {
                quiet += 1;
            } else {
                quiet = 0;
                last = now;
            }
        }
    }

    fn snapshot(&self) -> Result<Snapshot, String> {
        let mut snap = Snapshot::default();
        for ((group, resource, namespace, name), object) in self.sandbox.objects() {
            if resource == "events" {
                continue;
            }
            let key = object_key(&group, &resource, &namespace, &name);
            if let Some(uid) = object.pointer("/metadata/uid").and_then(Value::as_str) {
                snap.uids.insert(uid.to_owned());
            }
            if let Some(owner) = controller_owner(&object) {
                snap.derived.push((key, owner));
                continue;
            }
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            snap.refs.insert(
                key.clone(),
                ObjectId {
                    kind,
                    resource,
                    group,
                    namespace,
                    name,
                },
            );
            snap.objects.insert(key, normalized(&object));
        }
        let listed = self.state_list()?;
        snap.unfinished = listed.contains("unfinished run");
        snap.records = listed.lines().skip(1).collect::<Vec<_>>().join("\n");
        Ok(snap)
    }

    /// Compares the cluster and state after a failed run with the baseline; returns the
    /// objects the report listed as left in place.
    pub fn check(&self, report: &str) -> Result<Vec<ObjectId>, String> {
        self.settle();
        let after = self.snapshot()?;
        let before = &self.baseline;
        let mut problems = Vec::new();
        let mut left = Vec::new();
        for (key, old) in &before.objects {
            match after.objects.get(key) {
                None => problems.push(format!("{key} is gone")),
                Some(new) if new != old => problems.push(format!(
                    "{key} differs:\n{}",
                    diff(old, new).unwrap_or_default()
                )),
                Some(_) => {}
            }
        }
        let listed: Vec<&str> = report
            .lines()
            .filter(|l| l.contains("left in place"))
            .collect();
        for (key, id) in &after.refs {
            if before.objects.contains_key(key) {
                continue;
            }
            let shown = id.shown();
            if listed.iter().any(|l| l.contains(&shown)) {
                left.push(id.clone());
            } else {
                problems.push(format!(
                    "{key} is new and the report does not list it as left in place"
                ));
            }
        }
        for (key, owner) in &after.derived {
            if !after.uids.contains(owner) {
                problems.push(format!("{key} outlived its owner {owner}"));
            }
        }
        if after.unfinished {
            problems.push("the state has an unfinished run".to_owned());
        }
        if after.records != before.records {
            problems.push(format!(
                "the state's records changed:\nbefore:\n{}\nafter:\n{}",
                before.records, after.records
            ));
        }
        if problems.is_empty() {
            Ok(left)
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Deletes objects a report listed as left in place, as an operator would.
    fn remove(&self, left: &[ObjectId]) -> Result<(), String> {
        for id in left {
            let what = if id.group.is_empty() {
                id.resource.clone()
            } else {
                format!("{}.{}", id.resource, id.group)
            };
            let mut args = vec!["delete", what.as_str(), id.name.as_str(), "--wait=true"];
            if !id.namespace.is_empty() {
                args.extend(["-n", id.namespace.as_str()]);
            }
            self.kubectl(&args)?;
        }
        self.settle();
        Ok(())
    }

    /// Checks a run that should have failed and rolled back; Ok(left in place count).
    fn judge(&self, run: &Run) -> Result<Vec<String>, String> {
        if run.code != 1 {
            return Err(format!("exit {} (expected 1):\n{}", run.code, run.text()));
        }
        if !run.stderr.contains("rolled back") {
            return Err(format!(
                "the report does not say rolled back:\n{}",
                run.text()
            ));
        }
        let left = self
            .check(&run.text())
            .map_err(|e| format!("{e}\n--- report:\n{}", run.text()))?;
        self.remove(&left)?;
        Ok(left.iter().map(ObjectId::shown).collect())
    }
}

/// `; left in place (listed): Secret default/web-tls`, or nothing.
fn listed(left: &[String]) -> String {
    if left.is_empty() {
        String::new()
    } else {
        format!("; left in place (listed): {}", left.join(", "))
    }
}

fn diff(old: &Value, new: &Value) -> Option<String> {
    let a = serde_json::to_string_pretty(old).ok()?;
    let b = serde_json::to_string_pretty(new).ok()?;
    Some(
        similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .context_radius(2)
            .to_string(),
    )
}

/// The cluster the last point left (restored exactly), else a fresh one.
fn reuse_or_start<'a>(
    slot: &mut Option<Env<'a>>,
    target: &'a Target,
    start: &Start,
) -> Result<Env<'a>, String> {
    match slot.take() {
        Some(env) => Ok(env),
        None => Env::new(target, start),
    }
}

/// Writes failed at 1, 2, ... until the apply goes through.
pub fn writes(target: &Target, sweep: &Sweep, progress: &mut dyn FnMut(&str)) -> Outcome {
    let mut outcome = Outcome::default();
    let mut env: Option<Env> = None;
    for n in sweep.points() {
        if sweep.limit.is_some_and(|l| outcome.tried >= l) {
            break;
        }
        let current = match reuse_or_start(&mut env, target, &sweep.start) {
            Ok(e) => e,
            Err(e) => {
                outcome
                    .failures
                    .push(format!("setup before write {n}: {e}"));
                break;
            }
        };
        // A 500 that outlasts the client's retries of that request (a single 500 is retried),
        // at every write of the plan's objects and of the journal's rollback, not at the
        // apply's Lease (meshplan's own lock; a fault there fails the apply before it writes).
        let rule = FaultRule::new(WRITE_VERB, "", n, FaultAction::Error { code: 500 })
            .all_resources()
            .except("leases")
            .persistent(FAILING_ATTEMPTS);
        let (run, hit) = match current.apply_with_fault(&target.plan, &sweep.args, rule) {
            Ok(result) => result,
            Err(e) => {
                outcome.tried += 1;
                outcome.failures.push(format!("write {n}: {e}"));
                continue;
            }
        };
        if hit == 0 {
            // Past the last write: this apply had nothing to fail and must have succeeded.
            if run.code != 0 {
                outcome.tried += 1;
                outcome.failures.push(format!(
                    "write {n}: no write was failed, yet the apply exited {}:\n{}",
                    run.code,
                    run.text()
                ));
            } else {
                outcome.writes = sweep.writes_before(n);
            }
            break;
        }
        outcome.tried += 1;
        let result = current.judge(&run);
        if outcome.count(
            &format!("write {n}"),
            "rolled back exactly",
            result,
            progress,
        ) {
            env = Some(current);
        }
    }
    outcome
}

/// The `manifest` and `helm` nodes of a plan, in file order.
pub fn object_nodes(text: &str) -> Result<Vec<String>, String> {
    let table: toml::Table = text.parse().map_err(|e| format!("plan: {e}"))?;
    let mut nodes = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        for kind in ["manifest", "helm"] {
            let Some(name) = line
                .strip_prefix(&format!("[{kind}."))
                .and_then(|rest| rest.strip_suffix(']'))
            else {
                continue;
            };
            let known = table
                .get(kind)
                .and_then(|t| t.get(name))
                .is_some_and(toml::Value::is_table);
            if known && !name.contains('.') {
                nodes.push(format!("{kind}.{name}"));
            }
        }
    }
    Ok(nodes)
}

/// The plan text with `node` waiting for a condition that never comes, for one second.
pub fn never_ready(text: &str, node: &str) -> Result<String, String> {
    let header = format!("[{node}]");
    let mut out = Vec::new();
    let mut inside = false;
    let mut found = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            inside = line.trim() == header;
            out.push(line.to_owned());
            if inside {
                found = true;
                out.push(r#"wait = { condition = "SweepNeverTrue", timeout = "1s" }"#.to_owned());
            }
            continue;
        }
        let key = trimmed.split('=').next().unwrap_or_default().trim();
        if inside && key == "wait" {
            if !trimmed.trim_end().ends_with('}') && !trimmed.contains("false") {
                return Err(format!("{node}: a wait table over several lines"));
            }
            continue;
        }
        out.push(line.to_owned());
    }
    if !found {
        return Err(format!("{node}: no [{node}] table in the plan"));
    }
    Ok(out.join("\n") + "\n")
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// One node at a time never becomes ready.
pub fn waits(target: &Target, sweep: &Sweep, progress: &mut dyn FnMut(&str)) -> Outcome {
    let mut outcome = Outcome::default();
    let text = match std::fs::read_to_string(&target.plan) {
        Ok(t) => t,
        Err(e) => {
            outcome
                .failures
                .push(format!("{}: {e}", target.plan.display()));
            return outcome;
        }
    };
    let nodes = match object_nodes(&text) {
        Ok(n) => n,
        Err(e) => {
            outcome.failures.push(e);
            return outcome;
        }
    };
    let mut env: Option<Env> = None;
    for node in nodes {
        if sweep.limit.is_some_and(|l| outcome.tried >= l) {
            break;
        }
        let current = match reuse_or_start(&mut env, target, &sweep.start) {
            Ok(e) => e,
            Err(e) => {
                outcome.failures.push(format!("setup before {node}: {e}"));
                break;
            }
        };
        // A copy of the plan's directory (relative files), with the changed plan in it.
        let plan_dir = target.plan.parent().unwrap_or(Path::new("."));
        let copy = current.dir.path().join(format!("plan-{node}"));
        let file_name = target
            .plan
            .file_name()
            .map_or_else(|| "plan.toml".into(), |n| n.to_owned());
        let prepared = copy_dir(plan_dir, &copy)
            .map_err(|e| format!("copying {}: {e}", plan_dir.display()))
            .and_then(|()| never_ready(&text, &node))
            .and_then(|changed| {
                std::fs::write(copy.join(&file_name), changed).map_err(|e| e.to_string())
            });
        if let Err(e) = prepared {
            outcome.failures.push(format!("{node}: {e}"));
            continue;
        }
        let run = match current.apply(&copy.join(&file_name), &sweep.args) {
            Ok(run) => run,
            Err(e) => {
                outcome.tried += 1;
                outcome.failures.push(format!("{node}: {e}"));
                continue;
            }
        };
        if run.code == 0 {
            // Nothing in the node waited (or it had nothing to do); the cluster changed.
            progress(&format!("{node}: nothing to wait for"));
            outcome.not_applicable.push(node);
            continue;
        }
        outcome.tried += 1;
        let result = if run.stderr.contains("was not ready after") {
            current.judge(&run)
        } else {
            Err(format!("no wait timed out:\n{}", run.text()))
        };
        if outcome.count(&node, "timed out and rolled back exactly", result, progress) {
            env = Some(current);
        }
    }
    outcome
}

/// A small deterministic generator for the kill points (xorshift64*).
struct Points(u64);

impl Points {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below.max(1)
    }
}

/// What a kill sweep found.
#[derive(Debug, Default)]
pub struct Kills {
    pub points: u64,
    /// Kills that hit an apply between its journal's start and end.
    pub mid_run: u64,
    /// Points after which the state was readable and the next apply converged.
    pub converged: u64,
    pub failures: Vec<String>,
}

/// Write requests (not dry runs) the sandbox has answered.
fn writes_sent(env: &Env) -> u64 {
    env.sandbox
        .audit()
        .iter()
        .filter(|e| matches!(e.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
        .filter(|e| !e.query.contains("dryRun"))
        .count() as u64
}

/// Where each kill point's apply starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillFrom {
    /// One cluster for all points; applies alternate between `a` and `b` so each has work.
    Alternating,
    /// A fresh, empty cluster and state for every point; every apply takes `a` (a whole
    /// install, killed at a drawn write of it).
    Empty,
}

/// `kill -9` an apply once it has sent a chosen number of writes (1 to `spread`), then apply
/// again (completing the unfinished run or rolling it back, or `meshplan rollback`, in turn)
/// and plan: the plan must be empty.
#[allow(clippy::too_many_arguments)]
pub fn kills(
    target: &Target,
    from: KillFrom,
    a: &[String],
    b: &[String],
    points: u64,
    spread: u64,
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> Kills {
    let mut out = Kills::default();
    let mut slot: Option<Env> = None;
    let mut draw = Points(seed.max(1));
    for i in 0..points {
        if from == KillFrom::Empty || slot.is_none() {
            // The previous sandbox stops before the next one starts.
            drop(slot.take());
            match Env::new(target, &Start::Empty) {
                Ok(e) => slot = Some(e),
                Err(e) => {
                    out.failures.push(format!("point {i}: setup: {e}"));
                    break;
                }
            }
        }
        let Some(env) = slot.as_ref() else { break };
        let writes = || writes_sent(env);
        let args = if i % 2 == 1 && from == KillFrom::Alternating {
            b
        } else {
            a
        };
        let mut all = vec!["--auto-approve".to_owned()];
        all.extend_from_slice(args);
        let mut child = match env
            .command("apply", &target.plan, &all)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                out.failures.push(format!("point {i}: {e}"));
                break;
            }
        };
        let at = writes() + 1 + draw.next(spread);
        let deadline = Instant::now() + target.run_limit;
        while writes() < at && Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        out.points += 1;
        let result = (|| -> Result<bool, String> {
            let state_args = |sub: &str| -> Result<Run, String> {
                let o = Command::new(&target.bin)
                    .current_dir(&target.workdir)
                    .args(["state", sub])
                    .arg(&target.plan)
                    .arg("--state")
                    .arg(&env.state)
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| e.to_string())?;
                Ok(Run {
                    code: o.status.code().unwrap_or(-1),
                    stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                })
            };
            // No `state unlock`: the operating system released the dead apply's lock, and
            // its Lease in the cluster is taken over by the next run on this machine.
            let listed = state_args("list")?;
            if listed.code != 0 {
                return Err(format!("state unreadable after kill -9: {}", listed.text()));
            }
            let mid = listed.stdout.contains("unfinished run");
            let mut again = args.to_vec();
            if mid {
                // Without a choice, apply refuses to start over the unfinished run.
                let refused = env.apply(&target.plan, args)?;
                if refused.code != 1 || !refused.stderr.contains("unfinished run") {
                    return Err(format!(
                        "apply over an unfinished run without --on-unfinished exited {}:\n{}",
                        refused.code,
                        refused.text()
                    ));
                }
                match i % 3 {
                    // `meshplan rollback` finishes it on its own.
                    0 => {
                        let rollback = env.meshplan("rollback", &target.plan, &[])?;
                        let listed = state_args("list")?;
                        if rollback.code != 0 || listed.stdout.contains("unfinished run") {
                            return Err(format!(
                                "meshplan rollback exited {}:\n{}\n{}",
                                rollback.code,
                                rollback.text(),
                                listed.stdout
                            ));
                        }
                    }
                    1 => again.extend(["--on-unfinished".to_owned(), "complete".to_owned()]),
                    _ => again.extend(["--on-unfinished".to_owned(), "rollback".to_owned()]),
                }
            }
            let run = env.apply(&target.plan, &again)?;
            if run.code != 0 {
                return Err(format!(
                    "apply after the kill exited {}:\n{}",
                    run.code,
                    run.text()
                ));
            }
            let mut plan_args = args.to_vec();
            plan_args.push("--detailed-exitcode".to_owned());
            let plan = env.meshplan("plan", &target.plan, &plan_args)?;
            if plan.code != 0 {
                return Err(format!(
                    "not converged (plan exited {}):\n{}",
                    plan.code,
                    plan.text()
                ));
            }
            Ok(mid)
        })();
        match result {
            Ok(mid) => {
                out.converged += 1;
                out.mid_run += u64::from(mid);
                progress(&format!(
                    "kill {i} at write {at}: converged{}",
                    if mid {
                        " (after an unfinished run)"
                    } else {
                        ""
                    }
                ));
            }
            Err(e) => {
                progress(&format!("kill {i}: FAILED"));
                out.failures.push(format!("point {i}: {e}"));
            }
        }
    }
    out
}

/// What a signal sweep found.
#[derive(Debug, Default)]
pub struct Signals {
    pub points: u64,
    /// Runs the signal stopped and rolled back exactly.
    pub rolled_back: u64,
    /// Runs that had ended their last step when the signal came (they succeeded).
    pub finished: u64,
    pub failures: Vec<String>,
}

/// Sends `signal` (`TERM`, `HUP`, `INT`) to the process `pid` (a child of ours).
pub fn send_signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .map_err(|e| format!("kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} {pid}: {status}"))
    }
}

/// `signal` (SIGTERM, SIGHUP) sent once to an apply that has sent a drawn number of writes
/// (1 to `spread`) since it started. Each stopped run must exit 1, say it rolled back, and
/// leave the cluster and the state as before it, with no writer lock left behind: the next
/// command (the check's `meshplan state list`, then the next point's apply) needs no
/// `meshplan state unlock`. A run that had finished its steps when the signal came must have
/// succeeded; a plan right after it must then be empty.
pub fn signals(
    target: &Target,
    sweep: &Sweep,
    signal: &str,
    points: u64,
    spread: u64,
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> Signals {
    let mut out = Signals::default();
    let mut slot: Option<Env> = None;
    let mut draw = Points(seed.max(1));
    for i in 0..points {
        let env = match reuse_or_start(&mut slot, target, &sweep.start) {
            Ok(e) => e,
            Err(e) => {
                out.failures.push(format!("point {i}: setup: {e}"));
                break;
            }
        };
        let mut all = vec!["--auto-approve".to_owned()];
        all.extend_from_slice(&sweep.args);
        let child = match env.command("apply", &target.plan, &all).spawn() {
            Ok(c) => c,
            Err(e) => {
                out.failures.push(format!("point {i}: {e}"));
                break;
            }
        };
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let at = writes_sent(&env) + 1 + draw.next(spread);
        let deadline = Instant::now() + target.run_limit;
        let mut ended = None;
        while writes_sent(&env) < at && Instant::now() < deadline {
            if let Ok(result) = rx.try_recv() {
                ended = Some(result);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        out.points += 1;
        let point = format!("{signal} {i} at write {at}");
        if ended.is_none()
            && let Err(e) = send_signal(pid, signal)
        {
            out.failures.push(format!("{point}: {e}"));
            break;
        }
        let output = match ended {
            Some(result) => result,
            None => match rx.recv_timeout(target.run_limit) {
                Ok(result) => result,
                Err(_) => {
                    let _ = send_signal(pid, "KILL");
                    out.failures
                        .push(format!("{point}: the apply did not end after the signal"));
                    continue;
                }
            },
        };
        let run = match output {
            Ok(o) => Run {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            },
            Err(e) => {
                out.failures.push(format!("{point}: {e}"));
                continue;
            }
        };
        if run.code == 0 {
            // The signal came after the last step: the apply ended as if it had not come.
            let mut plan_args = sweep.args.clone();
            plan_args.push("--detailed-exitcode".to_owned());
            match env.meshplan("plan", &target.plan, &plan_args) {
                Ok(plan) if plan.code == 0 => {
                    out.finished += 1;
                    progress(&format!("{point}: had finished; converged"));
                }
                Ok(plan) => out.failures.push(format!(
                    "{point}: the apply succeeded but the plan is not empty:\n{}",
                    plan.text()
                )),
                Err(e) => out.failures.push(format!("{point}: {e}")),
            }
            // The cluster changed: the next point starts afresh.
            continue;
        }
        let judged = env.judge(&run).and_then(|left| {
            if run.stderr.contains("interrupted") {
                Ok(left)
            } else {
                Err(format!(
                    "the report does not say it was interrupted:\n{}",
                    run.text()
                ))
            }
        });
        match judged {
            Ok(left) => {
                out.rolled_back += 1;
                progress(&format!("{point}: rolled back exactly{}", listed(&left)));
                slot = Some(env);
            }
            Err(e) => {
                progress(&format!("{point}: FAILED"));
                out.failures.push(format!("{point}: {e}"));
            }
        }
    }
    out
}

/// What a retry sweep found.
#[derive(Debug, Default)]
pub struct Retries {
    /// Failure points run.
    pub tried: u64,
    /// Points whose apply retried the failed write and succeeded without a rollback, after
    /// which the plan was empty.
    pub passed: u64,
    /// Retry events the passing runs reported.
    pub retries: u64,
    /// The progress lines of those retry events.
    pub retry_lines: Vec<String>,
    /// Writes of the apply that ended the sweep (no write left to fail).
    pub writes: Option<u64>,
    pub failures: Vec<String>,
}

impl Retries {
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} tried, {} retried and succeeded ({} retries reported)",
            self.tried, self.passed, self.retries
        );
        if let Some(w) = self.writes {
            text.push_str(&format!(", {w} writes in an apply"));
        }
        text
    }
}

/// A transient failure (`action`: a 500, a 503 with `Retry-After`, a dropped connection) at
/// write N = 1, 2, ... of the swept apply, one point per write until N passes the apply's
/// last write. The failed request must be retried and the apply must succeed without
/// rolling anything back, report the retry, and leave a cluster that the next plan finds as
/// planned (`plan --detailed-exitcode` exits 0). Each point starts from a fresh sandbox (the
/// previous point's apply succeeded).
pub fn retries(
    target: &Target,
    sweep: &Sweep,
    action: &FaultAction,
    progress: &mut dyn FnMut(&str),
) -> Retries {
    let mut out = Retries::default();
    for n in sweep.points() {
        if sweep.limit.is_some_and(|l| out.tried >= l) {
            break;
        }
        let env = match Env::new(target, &sweep.start) {
            Ok(e) => e,
            Err(e) => {
                out.failures.push(format!("setup before write {n}: {e}"));
                break;
            }
        };
        // The apply's Lease is left alone (its client retries by itself, unreported).
        let rule = FaultRule::new(WRITE_VERB, "", n, action.clone())
            .all_resources()
            .except("leases");
        let (run, hit) = match env.apply_with_fault(&target.plan, &sweep.args, rule) {
            Ok(result) => result,
            Err(e) => {
                out.tried += 1;
                out.failures.push(format!("write {n}: {e}"));
                continue;
            }
        };
        if hit == 0 {
            if run.code == 0 {
                out.writes = sweep.writes_before(n);
            } else {
                out.failures.push(format!(
                    "write {n}: no write was failed, yet the apply exited {}:\n{}",
                    run.code,
                    run.text()
                ));
            }
            break;
        }
        out.tried += 1;
        let lines: Vec<String> = run
            .stderr
            .lines()
            .filter(|l| l.contains("; retrying in "))
            .map(str::to_owned)
            .collect();
        let retried = lines.len() as u64;
        let problem = if run.code != 0 {
            Some(format!("the apply exited {}", run.code))
        } else if run.stderr.contains("rolled back") || run.stderr.contains("rolling back") {
            Some("the apply rolled back".to_owned())
        } else if retried == 0 {
            Some("no retry was reported".to_owned())
        } else {
            let mut plan_args = sweep.args.clone();
            plan_args.push("--detailed-exitcode".to_owned());
            match env.meshplan("plan", &target.plan, &plan_args) {
                Ok(plan) if plan.code == 0 => None,
                Ok(plan) => Some(format!("the plan after it is not empty:\n{}", plan.text())),
                Err(e) => Some(e),
            }
        };
        match problem {
            None => {
                out.passed += 1;
                out.retries += retried;
                out.retry_lines.extend(lines);
                progress(&format!("write {n}: retried and succeeded"));
            }
            Some(p) => {
                progress(&format!("write {n}: FAILED"));
                out.failures
                    .push(format!("write {n}: {p}\n--- report:\n{}", run.text()));
            }
        }
    }
    out
}
