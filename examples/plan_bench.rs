//! The project's benchmark: every command of meshplan against a sandbox, side by side with what a
//! user runs without meshplan, on the same objects, in the same run.
//!
//! ```text
//! cargo build --release --bin meshplan --example plan_bench
//! target/release/examples/plan_bench [--configmaps 1000,10000] [--no-linkerd] [--no-kubectl]
//!                                    [--only plan|apply] [--keep DIR] [--repeat N]
//! ```
//!
//! `--configmaps 0` runs the Linkerd-like stack only. `--keep DIR`: after the warm plan and
//! drift of each size, write the arguments of both runs (one per line) to
//! `DIR/<objects>/plan.args` and `drift.args` and wait, with the sandbox serving and the state
//! and plan files in place, until the file `DIR/<objects>/release` exists (to profile a run by
//! hand). `--repeat N`: the cold plan, each `helm template` and `kubectl diff` with a fresh
//! cache run N times each, and the median is reported (see [`REPEAT`]).
//!
//! Three sizes: the sample Linkerd plan with the stand-in charts, and plans of 1,000 and
//! 10,000 ConfigMaps. Per size, each on a fresh sandbox:
//!
//! 1. **plan**: the rendered objects are applied by field manager `meshplan` without the
//!    ownership marks (as another tool leaves them); **cold plan** with an empty state (no
//!    records, no render or discovery cache: every chart is rendered, every object read and
//!    dry-run), then once more saved with `--out` (real keys, for `apply FILE`, where the
//!    shown plan renders stand-ins); the objects are applied again with the marks (as a
//!    previous apply would have left them), and a cold plan with `--adopt-lost-state` adopts them (every chart rendered
//!    again over the live objects, to take their generated material); the state then
//!    gets the records an apply writes, and **warm plan** is a no-op plan (the fast path);
//!    10 objects are changed in the cluster and **10 changed** plans them. The alternative:
//!    `helm template` of each chart (as the render ran it) and `kubectl diff --server-side`
//!    over the rendered objects (fresh kubectl cache, then warm). **drift** runs with the warm
//!    plan's records (no render, no dry run), before and after the 10 changes; its CI
//!    alternative is `helm template` of each chart plus `kubectl diff` with a warm cache.
//! 2. **apply** then **destroy** (waiting until everything is gone) on an empty cluster with an
//!    empty state; the alternative: `kubectl apply --server-side` of the rendered objects
//!    (CRDs and namespaces first, as a separate call), then `kubectl delete --wait=false`
//!    of them, on another empty sandbox.
//!
//! Each run reports wall time, the requests the sandbox received (from its audit log), and the
//! peak memory (max RSS) of the command (`/usr/bin/time`); requests of the seeding are not
//! counted. The sandbox runs in this process, a plain API server (`SandboxConfig::api_only`),
//! except for the Linkerd stack's apply and destroy, whose waits need the simulated controllers
//! (cert-manager, workloads, webhooks; without delays). Not timed tests: numbers depend on
//! the machine.

// A benchmark program: it prints its results.
#![allow(unreachable_pub, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use meshplan::cluster::{ApplyOptions, Cluster, ConnectOptions, KubeCluster, ObjectRef};
use meshplan::render::{HelmOutput, HelmProcess, HelmRunError, HelmRunner};
use meshplan::state::{ObjectRecord, SledStore, StateStore, WriteBatch};
use meshplan_sandbox::{BlockingSandbox, ControllerConfig, SandboxConfig};
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error>;

fn kubeconfig(port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: b\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: b\n  context:\n    cluster: b\n    user: b\n    namespace: default\ncurrent-context: b\nusers:\n- name: b\n  user: {{}}\n"
    )
}

/// One measured run (or several, one after the other, added up).
#[derive(Clone)]
struct Measure {
    label: String,
    seconds: f64,
    max_rss_mb: f64,
    requests: Vec<(String, String)>,
    exit: Option<i32>,
}

impl Measure {
    fn line(&self) -> String {
        let mut by_method: BTreeMap<&str, usize> = BTreeMap::new();
        let mut dry = 0;
        for (m, p) in &self.requests {
            *by_method.entry(m.as_str()).or_default() += 1;
            if p.contains("dryRun") {
                dry += 1;
            }
        }
        let methods: Vec<String> = by_method.iter().map(|(m, n)| format!("{m} {n}")).collect();
        let requests = if self.requests.is_empty() {
            "0".to_owned()
        } else if dry > 0 {
            format!(
                "{} ({}; {dry} dry runs)",
                self.requests.len(),
                methods.join(", ")
            )
        } else {
            format!("{} ({})", self.requests.len(), methods.join(", "))
        };
        format!(
            "| {} | {:.2} s | {} | {:.0} MB | {} |",
            self.label,
            self.seconds,
            requests,
            self.max_rss_mb,
            self.exit.map_or("-".to_owned(), |c| c.to_string())
        )
    }

    /// Runs one after the other, as one: times and requests add up, the peak is the largest.
    fn then(&self, label: &str, other: &Measure) -> Measure {
        let mut requests = self.requests.clone();
        requests.extend(other.requests.iter().cloned());
        Measure {
            label: label.to_owned(),
            seconds: self.seconds + other.seconds,
            max_rss_mb: self.max_rss_mb.max(other.max_rss_mb),
            requests,
            exit: match (self.exit, other.exit) {
                (Some(0), b) => b,
                (a, _) => a,
            },
        }
    }
}

/// `--repeat N`: the cold plan and its alternative (each `helm template`, and `kubectl diff`
/// with a fresh cache) run N times, and the median run is reported. A chart that generates RSA
/// keys takes a random time to render (key generation searches for primes), so one run of
/// each compares two draws rather than the two commands.
static REPEAT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn repeat() -> usize {
    REPEAT.get().copied().unwrap_or(1).max(1)
}

/// The run with the median wall time (the upper one of an even count), labelled with how
/// many runs it is the median of.
fn median(mut runs: Vec<Measure>) -> Measure {
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let n = runs.len();
    let mut m = runs.swap_remove(n / 2);
    if n > 1 {
        m.label = format!("{} (median of {n})", m.label);
    }
    m
}

/// Runs a command under `/usr/bin/time`, counting the sandbox requests it causes.
fn measure(
    label: &str,
    sandbox: Option<&BlockingSandbox>,
    program: &Path,
    args: &[String],
    env: &[(&str, &Path)],
) -> Result<Measure, Error> {
    let dir = tempfile::tempdir()?;
    let time_out = dir.path().join("time");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(&time_out)
        .arg(program)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let before = sandbox
        .and_then(|s| s.audit().last().map(|e| e.seq))
        .unwrap_or(0);
    let started = Instant::now();
    let out = cmd.output()?;
    let seconds = started.elapsed().as_secs_f64();
    let requests: Vec<(String, String)> = sandbox
        .map(|s| s.audit())
        .unwrap_or_default()
        .iter()
        .filter(|e| e.seq > before)
        .map(|e| (e.method.clone(), format!("{}?{}", e.path, e.query)))
        .collect();
    let timing = std::fs::read_to_string(&time_out).unwrap_or_default();
    let max_rss_kb: f64 = timing
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let exit = out.status.code();
    // `plan`, `drift` and `kubectl diff` say "there are changes" with their own exit codes.
    let expected = match exit {
        Some(0) => true,
        Some(1) => label.starts_with("kubectl diff"),
        Some(2) => label.starts_with("meshplan plan") || label.starts_with("meshplan drift"),
        _ => false,
    };
    if std::env::var_os("BENCH_SHOW_STDERR").is_some() || !expected {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        eprintln!(
            "{label} exited with {exit:?}:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(Measure {
        label: label.to_owned(),
        seconds,
        max_rss_mb: max_rss_kb / 1024.0,
        requests,
        exit,
    })
}

/// Runs real helm and keeps the arguments (and a copy of the values file) of the first
/// `helm template` of each release, to run them again as a user would.
struct RecordingHelm {
    inner: HelmProcess,
    dir: PathBuf,
    calls: Mutex<BTreeMap<String, Vec<String>>>,
}

impl HelmRunner for RecordingHelm {
    fn run(&self, args: Vec<String>) -> BoxFuture<'_, Result<HelmOutput, HelmRunError>> {
        if args.first().map(String::as_str) == Some("template")
            && let Some(release) = args.get(1).cloned()
            && let Ok(mut calls) = self.calls.lock()
            && !calls.contains_key(&release)
        {
            let mut kept = args.clone();
            if let Some(i) = kept.iter().position(|a| a == "--values") {
                let copy = self.dir.join(format!("values-{release}.json"));
                if std::fs::copy(&kept[i + 1], &copy).is_ok() {
                    kept[i + 1] = copy.display().to_string();
                }
            }
            calls.insert(release, kept);
        }
        self.inner.run(args)
    }
}

/// What the render of a plan gives the benchmark.
struct Rendered {
    /// Every object (hooks excluded).
    objects: Vec<Value>,
    /// The `helm template` command of each release.
    helm_calls: Vec<Vec<String>>,
}

/// Renders a plan's objects with the library (as `plan` does), hooks excluded.
fn render_objects(
    plan: &Path,
    repo_dirs: &BTreeMap<String, PathBuf>,
    reads: BTreeMap<String, Value>,
    discovery: meshplan::cluster::Discovery,
    kube_version: String,
    work: &Path,
) -> Result<Rendered, Error> {
    let loaded = meshplan::load::load(&meshplan::load::LoadRequest {
        plan: plan.to_path_buf(),
        ..Default::default()
    })
    .map_err(|d| {
        let messages: Vec<String> = d.items.iter().map(|x| x.message.clone()).collect();
        format!("plan does not load: {}", messages.join("; "))
    })?;
    let helm = Arc::new(RecordingHelm {
        inner: HelmProcess::from_env(),
        dir: work.to_path_buf(),
        calls: Mutex::new(BTreeMap::new()),
    });
    let renderer = meshplan::render::Renderer::new(
        helm.clone(),
        Arc::new(meshplan::render::MemoryCache::new()),
        meshplan::render::RenderOptions {
            repo_dirs: repo_dirs.clone(),
            discovery: Some(discovery),
            kube_version: Some(kube_version),
            parallelism: 4,
            // The objects the alternative applies, with real keys.
            stand_in_keys: false,
        },
    );
    let inputs = meshplan::render::RenderInputs {
        reads: reads
            .into_iter()
            .filter_map(|(a, v)| {
                Some((
                    meshplan::model::Address::parse(&a)?,
                    meshplan::render::ReadValue {
                        value: v,
                        sensitive: true,
                    },
                ))
            })
            .collect(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rendered = rt
        .block_on(renderer.render(&loaded.plan, &inputs))
        .map_err(|e| format!("render failed: {e:?}"))?;
    let helm_calls = helm
        .calls
        .lock()
        .map(|c| c.values().cloned().collect())
        .unwrap_or_default();
    Ok(Rendered {
        objects: rendered
            .nodes
            .values()
            .flat_map(|n| n.objects.iter().map(|o| o.object.clone()))
            .collect(),
        helm_calls,
    })
}

/// `object` without meshplan's ownership marks (the managed-by label, the plan and node
/// annotations).
fn without_ownership_marks(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for (field, key) in [
            ("labels", meshplan::render::MANAGED_BY_LABEL),
            ("annotations", meshplan::render::PLAN_ANNOTATION),
            ("annotations", meshplan::render::NODE_ANNOTATION),
        ] {
            if let Some(map) = meta.get_mut(field).and_then(Value::as_object_mut) {
                map.remove(key);
            }
        }
    }
    object
}

/// Applies objects as field manager `meshplan` (CRDs and namespaces first), in parallel.
fn seed(
    rt: &tokio::runtime::Runtime,
    cluster: &KubeCluster,
    objects: &[Value],
) -> Result<BTreeMap<ObjectRef, Value>, Error> {
    rt.block_on(async {
        let rank = |o: &Value| match o["kind"].as_str() {
            Some("CustomResourceDefinition") => 0,
            Some("Namespace") => 1,
            _ => 2,
        };
        let mut applied = BTreeMap::new();
        for phase in 0..3 {
            let batch: Vec<&Value> = objects.iter().filter(|o| rank(o) == phase).collect();
            if phase == 2 {
                let _ = cluster.discover().await;
            }
            let results: Vec<Result<Value, meshplan::cluster::ClusterError>> =
                futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
                    futures::stream::iter(
                        batch.into_iter().map(|o| async move {
                            cluster.apply(o, &ApplyOptions::default()).await
                        }),
                    ),
                    32,
                ))
                .await;
            for r in results {
                let v = r.map_err(|e| format!("seeding failed: {e}"))?;
                if let Some(r) = ObjectRef::from_object(&v) {
                    applied.insert(r, v);
                }
            }
        }
        Ok::<_, Error>(applied)
    })
}

/// Writes the records an apply would: per object of the plan report, its digest and the live
/// resourceVersion.
fn write_records(
    state: &Path,
    report: &Value,
    live: &BTreeMap<ObjectRef, Value>,
    objects: &[Value],
) -> Result<usize, Error> {
    let rendered: BTreeMap<ObjectRef, &Value> = objects
        .iter()
        .filter_map(|o| Some((ObjectRef::from_object(o)?, o)))
        .collect();
    let store = SledStore::open(state, "bench")?;
    let mut batch = WriteBatch::new();
    let mut n = 0;
    for node in report["nodes"].as_array().into_iter().flatten() {
        for o in node["objects"].as_array().into_iter().flatten() {
            let Ok(r) = serde_json::from_value::<ObjectRef>(o["object"].clone()) else {
                continue;
            };
            let r_key = r.clone();
            let (Some(digest), Some(current)) = (o["desired_digest"].as_str(), live.get(&r)) else {
                continue;
            };
            if o["action"] == "hook" {
                continue;
            }
            batch = batch.put_object(ObjectRecord {
                node: node["address"].as_str().unwrap_or_default().to_owned(),
                object: r,
                uid: current["metadata"]["uid"].as_str().map(str::to_owned),
                resource_version: current["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned),
                applied_digest: digest.to_owned(),
                // What apply records: the desired body (the rendered object when known).
                last_applied: store
                    .protect(rendered.get(&r_key).copied().unwrap_or(current), &[])?,
            });
            n += 1;
        }
    }
    store.commit(batch)?;
    Ok(n)
}

struct Scenario {
    name: String,
    plan: PathBuf,
    repo_dirs: BTreeMap<String, PathBuf>,
    reads: BTreeMap<String, Value>,
    /// Objects to create before seeding that the plan does not own (e.g. the read's Secret).
    extra: Vec<Value>,
    /// What the cluster must hold before an apply from empty (the plan's prerequisites).
    prerequisites: Vec<Value>,
    /// Apply and destroy need the simulated controllers (waits for conditions and rollouts).
    controllers: bool,
}

/// A started sandbox with a kubeconfig, a client and a runtime for the harness's own requests.
struct Env {
    sandbox: BlockingSandbox,
    kubeconfig: PathBuf,
    rt: tokio::runtime::Runtime,
    cluster: KubeCluster,
}

impl Env {
    fn start(dir: &Path, name: &str, config: SandboxConfig) -> Result<Self, Error> {
        let sandbox = BlockingSandbox::start(config)?;
        let kc = dir.join(format!("kubeconfig-{name}"));
        std::fs::write(&kc, kubeconfig(sandbox.addr().port()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let cluster = rt.block_on(KubeCluster::connect(&ConnectOptions {
            kubeconfig: Some(kc.clone()),
            context: None,
            ..ConnectOptions::default()
        }))?;
        Ok(Self {
            sandbox,
            kubeconfig: kc,
            rt,
            cluster,
        })
    }

    fn kubectl_env<'a>(&'a self, cache: &'a Path, home: &'a Path) -> [(&'a str, &'a Path); 3] {
        [
            ("KUBECONFIG", &self.kubeconfig),
            ("KUBECACHEDIR", cache),
            ("HOME", home),
        ]
    }
}

/// The measured runs of one size.
#[derive(Default)]
struct Results {
    rows: Vec<Measure>,
    /// Named figures for the ratios and the summary.
    named: BTreeMap<&'static str, Measure>,
}

impl Results {
    fn push(&mut self, key: &'static str, m: Measure) {
        self.rows.push(m.clone());
        self.named.insert(key, m);
    }

    fn seconds(&self, key: &str) -> Option<f64> {
        self.named.get(key).map(|m| m.seconds)
    }
}

fn meshplan_args(command: &str, s: &Scenario, plan: &Path, kc: &Path, state: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        command.into(),
        plan.display().to_string(),
        "--kubeconfig".into(),
        kc.display().to_string(),
        "--state".into(),
        state.display().to_string(),
    ];
    for (alias, dir) in &s.repo_dirs {
        args.push("--repo-dir".into());
        args.push(format!("{alias}={}", dir.display()));
    }
    args
}

/// MESHPLAN_KUBECTL, else kubectl on PATH (as the tests find it).
fn kubectl() -> PathBuf {
    meshplan_sandbox::kubectl::kubectl_binary()
}

fn write_list(path: &Path, objects: &[&Value]) -> Result<(), Error> {
    std::fs::write(
        path,
        serde_json::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": objects}))?,
    )?;
    Ok(())
}

/// The plan runs: cold, warm no-op, 10 changed; `helm template` and `kubectl diff`.
fn plan_runs(
    s: &Scenario,
    meshplan: &Path,
    with_kubectl: bool,
    work: &Path,
    keep: Option<&Path>,
    out: &mut Results,
) -> Result<Rendered, Error> {
    // A plain API server: no simulated controllers acting on the seeded objects.
    let env = Env::start(work, "plan", SandboxConfig::api_only())?;
    seed(&env.rt, &env.cluster, &s.extra)?;
    let discovery = env.rt.block_on(env.cluster.discover())?;
    let version = env.rt.block_on(env.cluster.server_version())?;
    let rendered = render_objects(
        &s.plan,
        &s.repo_dirs,
        s.reads.clone(),
        discovery,
        version.git_version,
        work,
    )?;
    let objects = &rendered.objects;
    // For the cold plan the objects carry no ownership marks (as another tool, e.g. helm,
    // leaves them): with the marks, an empty state over them is a lost state, which plan
    // refuses without --adopt-lost-state.
    let unmarked: Vec<Value> = objects.iter().map(without_ownership_marks).collect();
    seed(&env.rt, &env.cluster, &unmarked)?;
    let all = work.join("rendered.json");
    write_list(&all, &objects.iter().collect::<Vec<_>>())?;
    let state = work.join("plan-state");
    let args = meshplan_args("plan", s, &s.plan, &env.kubeconfig, &state);
    let mut json_args = args.clone();
    json_args.extend(["--output".into(), "json".into()]);
    let mut colds = Vec::new();
    for i in 0..repeat() {
        // Each cold plan with a state of its own; the first one's is the state of the runs
        // below.
        let mut cold_args = match i {
            0 => args.clone(),
            _ => meshplan_args(
                "plan",
                s,
                &s.plan,
                &env.kubeconfig,
                &work.join(format!("plan-state-cold-{i}")),
            ),
        };
        cold_args.extend(["--output".into(), "json".into()]);
        colds.push(measure(
            "meshplan plan, cold",
            Some(&env.sandbox),
            meshplan,
            &cold_args,
            &[],
        )?);
    }
    out.push("plan cold", median(colds));
    // A plan saved for `apply FILE` renders the charts' own keys (a shown plan renders
    // stand-ins).
    let mut saved_args = meshplan_args(
        "plan",
        s,
        &s.plan,
        &env.kubeconfig,
        &work.join("plan-state-saved"),
    );
    saved_args.extend([
        "--out".into(),
        work.join("saved.json").display().to_string(),
    ]);
    let saved = measure(
        "meshplan plan --out FILE, cold",
        Some(&env.sandbox),
        meshplan,
        &saved_args,
        &[],
    )?;
    out.push("plan cold saved", saved);
    // What the plan renders (from the cold plan's render cache), for the records below.
    let report_out = Command::new(meshplan).args(&json_args).output()?;
    let first_report: Value = serde_json::from_slice(&report_out.stdout)?;
    // The marks a previous apply leaves, for every later run.
    let mut live = seed(&env.rt, &env.cluster, objects)?;
    // A lost state: no records, objects with the plan's marks, adopted explicitly (the
    // charts' generated material is taken from the live objects: rendered again over them).
    let mut adopt_args = meshplan_args(
        "plan",
        s,
        &s.plan,
        &env.kubeconfig,
        &work.join("plan-state-adopt"),
    );
    adopt_args.extend([
        "--output".into(),
        "json".into(),
        "--adopt-lost-state".into(),
    ]);
    let adopted = measure(
        "meshplan plan, cold, --adopt-lost-state over marked objects",
        Some(&env.sandbox),
        meshplan,
        &adopt_args,
        &[],
    )?;
    out.push("plan cold adopt", adopted);
    // The records an apply writes (from the plan's report; again once reads resolve). With
    // records the state is not lost.
    write_records(&state, &first_report, &live, objects)?;
    for _ in 0..3 {
        let report_out = Command::new(meshplan).args(&json_args).output()?;
        let report: Value = serde_json::from_slice(&report_out.stdout)?;
        write_records(&state, &report, &live, objects)?;
        if report["has_changes"] == false {
            break;
        }
    }
    // Once to warm the caches of what the records changed (render of nodes using reads).
    Command::new(meshplan).args(&args).output()?;
    let warm = measure(
        "meshplan plan, warm no-op",
        Some(&env.sandbox),
        meshplan,
        &args,
        &[],
    )?;
    out.push("plan warm", warm);
    // Drift reads the records of the warm plan: no render, no dry run.
    let drift_args: Vec<String> = vec![
        "drift".into(),
        s.plan.display().to_string(),
        "--kubeconfig".into(),
        env.kubeconfig.display().to_string(),
        "--state".into(),
        state.display().to_string(),
    ];
    let drift = measure(
        "meshplan drift, no drift",
        Some(&env.sandbox),
        meshplan,
        &drift_args,
        &[],
    )?;
    out.push("drift none", drift);
    if let Some(keep) = keep {
        hold(&keep.join(objects.len().to_string()), &args, &drift_args)?;
    }
    // Change 10 objects in the cluster, as meshplan's manager (drift of owned fields).
    let targets: Vec<ObjectRef> = live
        .keys()
        .filter(|r| {
            r.kind == "ConfigMap"
                || r.kind == "ServiceAccount"
                || r.kind == "Service"
                || r.kind == "ClusterRole"
        })
        .take(10)
        .cloned()
        .collect();
    for r in &targets {
        let mut body = objects
            .iter()
            .find(|o| ObjectRef::from_object(o).as_ref() == Some(r))
            .cloned()
            .ok_or("object to change not rendered")?;
        body["metadata"]["labels"]["bench.meshplan.io/changed"] = "yes".into();
        let v = env
            .rt
            .block_on(env.cluster.apply(&body, &ApplyOptions::default()))?;
        live.insert(r.clone(), v);
    }
    let changed = measure(
        "meshplan plan, 10 changed",
        Some(&env.sandbox),
        meshplan,
        &args,
        &[],
    )?;
    out.push("plan changed", changed);
    let drifted = measure(
        "meshplan drift, 10 changed",
        Some(&env.sandbox),
        meshplan,
        &drift_args,
        &[],
    )?;
    out.push("drift changed", drifted);
    if !with_kubectl {
        return Ok(rendered);
    }
    // What the render ran, one chart after the other, as a user runs `helm template`.
    let helm = HelmProcess::from_env().program;
    let mut templates: Option<Measure> = None;
    for call in &rendered.helm_calls {
        let label = format!("helm template {}", call.get(1).map_or("", String::as_str));
        let m = median(
            (0..repeat())
                .map(|_| measure(&label, None, &helm, call, &[]))
                .collect::<Result<Vec<_>, _>>()?,
        );
        out.rows.push(m.clone());
        templates = Some(match templates {
            None => m,
            Some(t) => t.then("helm template (every chart)", &m),
        });
    }
    let diff_args: Vec<String> = vec![
        "diff".into(),
        "--server-side".into(),
        "--field-manager=meshplan".into(),
        "-f".into(),
        all.display().to_string(),
    ];
    let cache = work.join("kube-cache-plan");
    std::fs::create_dir_all(&cache)?;
    let env_vars = env.kubectl_env(&cache, work);
    let mut fresh = Vec::new();
    for i in 0..repeat() {
        // A fresh kubectl cache each time; the first one is the warm cache below.
        let fresh_cache = match i {
            0 => cache.clone(),
            _ => work.join(format!("kube-cache-plan-{i}")),
        };
        std::fs::create_dir_all(&fresh_cache)?;
        fresh.push(measure(
            "kubectl diff --server-side (fresh cache)",
            Some(&env.sandbox),
            &kubectl(),
            &diff_args,
            &env.kubectl_env(&fresh_cache, work),
        )?);
    }
    let k1 = median(fresh);
    out.push("kubectl diff fresh", k1.clone());
    let k2 = measure(
        "kubectl diff --server-side (warm cache)",
        Some(&env.sandbox),
        &kubectl(),
        &diff_args,
        &env_vars,
    )?;
    out.push("kubectl diff warm", k2.clone());
    // Drift's CI alternative: render the charts, then diff with a warm kubectl cache.
    let drift_alternative = match &templates {
        Some(t) => t.then(
            "helm template of each chart + kubectl diff (warm cache)",
            &k2,
        ),
        None => k2.clone(),
    };
    out.named.insert("drift alternative", drift_alternative);
    let alternative = match templates {
        Some(t) => t.then(
            "helm template of each chart + kubectl diff --server-side",
            &k1,
        ),
        None => k1.then(
            "kubectl diff --server-side",
            &Measure {
                label: String::new(),
                seconds: 0.0,
                max_rss_mb: 0.0,
                requests: Vec::new(),
                exit: Some(0),
            },
        ),
    };
    out.named.insert("plan alternative", alternative);
    Ok(rendered)
}

/// Writes the arguments of the warm plan and drift to `dir` and waits until `dir/release`
/// exists.
fn hold(dir: &Path, plan: &[String], drift: &[String]) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("plan.args"), plan.join("\n") + "\n")?;
    std::fs::write(dir.join("drift.args"), drift.join("\n") + "\n")?;
    let release = dir.join("release");
    eprintln!(
        "kept: arguments in {}; waiting for {}",
        dir.display(),
        release.display()
    );
    while !release.exists() {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Apply from empty then destroy; `kubectl apply --server-side` then `kubectl delete
/// --wait=false` of the same objects on another sandbox.
fn apply_runs(
    s: &Scenario,
    meshplan: &Path,
    with_kubectl: bool,
    work: &Path,
    rendered: &Rendered,
    out: &mut Results,
) -> Result<(), Error> {
    let config = || {
        if s.controllers {
            SandboxConfig {
                controllers: ControllerConfig {
                    rollout_delay: Duration::ZERO,
                    webhook_delay: Duration::ZERO,
                    ..ControllerConfig::default()
                },
                ..SandboxConfig::default()
            }
        } else {
            SandboxConfig::api_only()
        }
    };
    let env = Env::start(work, "apply", config())?;
    seed(&env.rt, &env.cluster, &s.prerequisites)?;
    let state = work.join("apply-state");
    let plan = destroyable_copy(&s.plan, work)?;
    let mut apply = meshplan_args("apply", s, &plan, &env.kubeconfig, &state);
    apply.push("--auto-approve".into());
    let m = measure("meshplan apply", Some(&env.sandbox), meshplan, &apply, &[])?;
    out.push("apply", m);
    let mut destroy = meshplan_args("destroy", s, &plan, &env.kubeconfig, &state);
    destroy.push("--auto-approve".into());
    let m = measure(
        "meshplan destroy (until gone)",
        Some(&env.sandbox),
        meshplan,
        &destroy,
        &[],
    )?;
    out.push("destroy", m);
    drop(env);
    if !with_kubectl {
        return Ok(());
    }
    let env = Env::start(work, "kubectl", config())?;
    seed(&env.rt, &env.cluster, &s.prerequisites)?;
    // CRDs and namespaces first, as a separate call: kubectl applies a list in its order.
    let is_crd = |o: &&Value| o["kind"] == "CustomResourceDefinition" || o["kind"] == "Namespace";
    let crds: Vec<&Value> = rendered.objects.iter().filter(is_crd).collect();
    let rest: Vec<&Value> = rendered.objects.iter().filter(|o| !is_crd(o)).collect();
    let crds_file = work.join("kubectl-crds.json");
    let rest_file = work.join("kubectl-rest.json");
    write_list(&crds_file, &crds)?;
    write_list(&rest_file, &rest)?;
    let cache = work.join("kube-cache-apply");
    std::fs::create_dir_all(&cache)?;
    let env_vars = env.kubectl_env(&cache, work);
    let kubectl_apply = |file: &Path| -> Result<Measure, Error> {
        let args: Vec<String> = vec![
            "apply".into(),
            "--server-side".into(),
            "--field-manager=meshplan".into(),
            "-f".into(),
            file.display().to_string(),
        ];
        measure(
            "kubectl apply --server-side",
            Some(&env.sandbox),
            &kubectl(),
            &args,
            &env_vars,
        )
    };
    let applied = if crds.is_empty() {
        kubectl_apply(&rest_file)?
    } else {
        let first = kubectl_apply(&crds_file)?;
        // As a user does: once the CRDs are served, the objects of their kinds.
        std::thread::sleep(Duration::from_millis(500));
        first.then(
            "kubectl apply --server-side (CRDs and namespaces, then the rest)",
            &kubectl_apply(&rest_file)?,
        )
    };
    out.push("kubectl apply", applied);
    let delete = |file: &Path| -> Result<Measure, Error> {
        let args: Vec<String> = vec![
            "delete".into(),
            "--wait=false".into(),
            "--ignore-not-found".into(),
            "-f".into(),
            file.display().to_string(),
        ];
        measure(
            "kubectl delete --wait=false",
            Some(&env.sandbox),
            &kubectl(),
            &args,
            &env_vars,
        )
    };
    let deleted = if crds.is_empty() {
        delete(&rest_file)?
    } else {
        delete(&rest_file)?.then(
            "kubectl delete --wait=false (the rest, then CRDs and namespaces)",
            &delete(&crds_file)?,
        )
    };
    out.push("kubectl delete", deleted);
    Ok(())
}

/// A copy of the plan (with its manifests) without `prevent_destroy`, so the benchmark can
/// destroy everything it applied.
fn destroyable_copy(plan: &Path, work: &Path) -> Result<PathBuf, Error> {
    let text = std::fs::read_to_string(plan)?;
    if !text.contains("prevent_destroy") {
        return Ok(plan.to_path_buf());
    }
    let dir = work.join("plan-copy");
    std::fs::create_dir_all(&dir)?;
    let source = plan.parent().ok_or("the plan has no directory")?;
    copy_dir(&source.join("manifests"), &dir.join("manifests"))?;
    let copy = dir.join(plan.file_name().ok_or("the plan has no name")?);
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("prevent_destroy"))
        .collect();
    std::fs::write(&copy, kept.join("\n"))?;
    Ok(copy)
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    if !from.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "n/a".to_owned(),
    }
}

fn run_scenario(
    s: &Scenario,
    meshplan: &Path,
    with_kubectl: bool,
    only: Option<&str>,
    keep: Option<&Path>,
) -> Result<(Vec<String>, Results), Error> {
    let work = tempfile::tempdir()?;
    let mut out = Results::default();
    let rendered = plan_runs(
        s,
        meshplan,
        with_kubectl && only != Some("apply"),
        work.path(),
        keep,
        &mut out,
    )?;
    if only == Some("apply") {
        out.rows.clear();
        out.named.clear();
    }
    if only != Some("plan") {
        apply_runs(s, meshplan, with_kubectl, work.path(), &rendered, &mut out)?;
    }
    let mut lines = vec![format!(
        "\n### {} ({} objects)\n\n| run | wall time | requests | peak memory | exit |\n|---|---|---|---|---|",
        s.name,
        rendered.objects.len()
    )];
    lines.extend(out.rows.iter().map(Measure::line));
    if let Some(alt) = out.named.get("plan alternative") {
        lines.push(format!(
            "| {} (sum) | {:.2} s | {} | | |",
            alt.label,
            alt.seconds,
            alt.requests.len()
        ));
    }
    lines.push(String::new());
    let s_ = |k: &str| out.seconds(k);
    lines.push(format!(
        "ratios: cold plan / alternative {} (saved with --out: {}); warm plan / alternative {}; 10 changed / kubectl diff (warm) {}; apply / kubectl apply {}; destroy / kubectl delete --wait=false {}",
        ratio(s_("plan cold"), s_("plan alternative")),
        ratio(s_("plan cold saved"), s_("plan alternative")),
        ratio(s_("plan warm"), s_("plan alternative")),
        ratio(s_("plan changed"), s_("kubectl diff warm")),
        ratio(s_("apply"), s_("kubectl apply")),
        ratio(s_("destroy"), s_("kubectl delete")),
    ));
    lines.push(format!(
        "drift / (helm template + kubectl diff, warm cache): {} (no drift), {} (10 changed)",
        ratio(s_("drift none"), s_("drift alternative")),
        ratio(s_("drift changed"), s_("drift alternative")),
    ));
    Ok((lines, out))
}

/// A plan of `n` ConfigMaps in namespace `bench`: one manifest node (and file) per 1,000
/// objects (the plan language reads at most 1,024 documents per YAML file).
fn configmap_plan(dir: &Path, n: usize) -> Result<PathBuf, Error> {
    let mut toml = String::from(
        "[plan]\nname = \"bench\"\n\n[manifest.namespace]\nyaml = '''\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n'''\n",
    );
    let chunk = 1000;
    for part in 0..n.div_ceil(chunk) {
        let mut yaml = String::new();
        for i in part * chunk..((part + 1) * chunk).min(n) {
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:05}\n  namespace: bench\n  labels:\n    app: bench\ndata:\n  index: \"{i}\"\n  payload: \"{}\"\n",
                "x".repeat(64)
            ));
        }
        let file = format!("configmaps-{n}-{part}.yaml");
        std::fs::write(dir.join(&file), yaml)?;
        toml.push_str(&format!(
            "\n[manifest.configmaps_{part}]\nfile = \"{file}\"\ndepends_on = [\"manifest.namespace\"]\n"
        ));
    }
    let plan = dir.join(format!("configmaps-{n}.toml"));
    std::fs::write(&plan, toml)?;
    Ok(plan)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // `--configmaps 0`: the Linkerd-like stack only.
    let counts: Vec<usize> = value("--configmaps")
        .map(|v| {
            v.split(',')
                .filter_map(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .collect()
        })
        .unwrap_or_else(|| vec![1000, 10000]);
    let only = value("--only");
    let with_kubectl = !args.iter().any(|a| a == "--no-kubectl");
    let with_linkerd = !args.iter().any(|a| a == "--no-linkerd");
    let keep = value("--keep").map(PathBuf::from);
    if let Some(n) = value("--repeat") {
        let n: usize = n
            .parse()
            .map_err(|_| format!("--repeat takes a number of runs, not {n:?}"))?;
        let _ = REPEAT.set(n);
    }
    let exe = std::env::current_exe()?;
    let meshplan = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("meshplan"))
        .ok_or("cannot locate the meshplan binary")?;
    if !meshplan.is_file() {
        return Err(format!("build the binary first: {} is missing", meshplan.display()).into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let charts = root.join("plans/charts");
    let work = tempfile::tempdir()?;
    let mut scenarios = Vec::new();
    if with_linkerd {
        let ca = "-----BEGIN CERTIFICATE-----\nMIIBbench\n-----END CERTIFICATE-----\n";
        let monitoring =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}});
        scenarios.push(Scenario {
            name: "Linkerd-like stack (plans/linkerd.toml, stand-in charts)".into(),
            plan: root.join("plans/linkerd.toml"),
            repo_dirs: BTreeMap::from([
                ("linkerd".into(), charts.clone()),
                ("jetstack".into(), charts.clone()),
            ]),
            reads: BTreeMap::from([("read.trust_anchor".into(), Value::String(ca.into()))]),
            extra: vec![
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "linkerd"}}),
                monitoring.clone(),
                json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                       "metadata": {"name": "linkerd-identity-issuer", "namespace": "linkerd"},
                       "data": {"ca.crt": base64_encode(ca), "tls.crt": "", "tls.key": ""}}),
                podmonitor_crd(),
            ],
            prerequisites: vec![monitoring, podmonitor_crd()],
            controllers: true,
        });
    }
    for n in &counts {
        scenarios.push(Scenario {
            name: format!("{n} ConfigMaps"),
            plan: configmap_plan(work.path(), *n)?,
            repo_dirs: BTreeMap::new(),
            reads: BTreeMap::new(),
            extra: Vec::new(),
            prerequisites: Vec::new(),
            controllers: false,
        });
    }
    println!(
        "meshplan benchmark ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let mut by_size: Vec<(String, Results)> = Vec::new();
    for s in &scenarios {
        let (lines, results) =
            run_scenario(s, &meshplan, with_kubectl, only.as_deref(), keep.as_deref())?;
        for line in lines {
            println!("{line}");
        }
        by_size.push((s.name.clone(), results));
    }
    // Growth: time at the largest ConfigMap size over time at the one before it.
    let sizes: Vec<&(String, Results)> = by_size
        .iter()
        .filter(|(n, _)| n.ends_with("ConfigMaps"))
        .collect();
    if let [.., small, large] = sizes.as_slice() {
        let growth: Vec<String> = ["plan cold", "plan warm", "plan changed", "apply", "destroy"]
            .iter()
            .map(|k| format!("{k} {}", ratio(large.1.seconds(k), small.1.seconds(k))))
            .collect();
        println!(
            "\ngrowth, {} over {}: {}",
            large.0,
            small.0,
            growth.join("; ")
        );
    }
    Ok(())
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A minimal PodMonitor CRD, standing in for the cluster's Prometheus Operator.
fn podmonitor_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "podmonitors.monitoring.coreos.com"},
        "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                 "names": {"kind": "PodMonitor", "listKind": "PodMonitorList", "plural": "podmonitors", "singular": "podmonitor"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    })
}
