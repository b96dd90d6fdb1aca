//! Benchmark of `meshplan plan` against a sandbox, side by side with `kubectl diff --server-side`.
//!
//! ```text
//! cargo build --release --bin meshplan --example plan_bench
//! target/release/examples/plan_bench [--configmaps 1000,10000] [--no-linkerd] [--no-kubectl]
//! ```
//!
//! For each scenario (the sample Linkerd plan with the stand-in charts, and plans of N
//! ConfigMaps), on a fresh sandbox:
//!
//! 1. the rendered objects are applied by field manager `meshplan` (as a previous apply would
//!    have left them);
//! 2. **cold plan**: `meshplan plan` with an empty state (no records, no render or discovery
//!    cache): every object is read and dry-run;
//! 3. the state then gets the object records an apply writes, and **warm plan** runs a no-op
//!    plan (caches and records present: the fast path);
//! 4. 10 objects are changed in the cluster, and **10 changed** plans them;
//! 5. `kubectl diff --server-side` over the same rendered objects (fresh kubectl cache, then
//!    warm cache);
//! 6. **drift**: `meshplan drift` with the records of step 3 (no render, no dry run), before
//!    and after the 10 changes, against its CI alternative on the same objects: `helm template`
//!    of the plan's charts (one run per chart, as timed during the render of step 1, summed)
//!    plus `kubectl diff --server-side` (warm cache).
//!
//! Each run reports wall time, the requests the sandbox received (from its audit log), and the
//! peak memory (max RSS) of the command (`/usr/bin/time`). Requests of the seeding are not
//! counted.

// A benchmark program: it prints its results.
#![allow(unreachable_pub, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use meshplan::cluster::{ApplyOptions, Cluster, ConnectOptions, KubeCluster, ObjectRef};
use meshplan::state::{ObjectRecord, SledStore, StateStore, WriteBatch};
use meshplan_sandbox::{BlockingSandbox, SandboxConfig};
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error>;

fn kubeconfig(port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: b\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: b\n  context:\n    cluster: b\n    user: b\n    namespace: default\ncurrent-context: b\nusers:\n- name: b\n  user: {{}}\n"
    )
}

/// One measured run.
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
        format!(
            "| {} | {:.2} s | {} ({}; dry runs {dry}) | {:.0} MB | {} |",
            self.label,
            self.seconds,
            self.requests.len(),
            methods.join(", "),
            self.max_rss_mb,
            self.exit.map_or("-".to_owned(), |c| c.to_string())
        )
    }
}

/// Runs a command under `/usr/bin/time`, counting the sandbox requests it causes.
fn measure(
    label: &str,
    sandbox: &BlockingSandbox,
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
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let before = sandbox.audit().last().map_or(0, |e| e.seq);
    let started = Instant::now();
    let out = cmd.output()?;
    let seconds = started.elapsed().as_secs_f64();
    let requests: Vec<(String, String)> = sandbox
        .audit()
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
    if std::env::var_os("BENCH_SHOW_STDERR").is_some()
        || (!matches!(exit, Some(0 | 2)) && !label.starts_with("kubectl"))
    {
        eprintln!("{label} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(Measure {
        label: label.to_owned(),
        seconds,
        max_rss_mb: max_rss_kb / 1024.0,
        requests,
        exit,
    })
}

/// Runs helm, timing each `helm template` (the first run per chart counts: the render runs a
/// chart twice to find regenerated material).
struct TimedHelm {
    inner: meshplan::render::HelmProcess,
    runs: std::sync::Mutex<BTreeMap<String, f64>>,
}

impl meshplan::render::HelmRunner for TimedHelm {
    fn run(
        &self,
        args: Vec<String>,
    ) -> futures::future::BoxFuture<
        '_,
        Result<meshplan::render::HelmOutput, meshplan::render::HelmRunError>,
    > {
        Box::pin(async move {
            let template = args.first().map(String::as_str) == Some("template");
            let chart = args.get(2).cloned().unwrap_or_default();
            let started = Instant::now();
            let out = self.inner.run(args).await;
            if template && let Ok(mut runs) = self.runs.lock() {
                runs.entry(chart)
                    .or_insert_with(|| started.elapsed().as_secs_f64());
            }
            out
        })
    }
}

/// Renders a plan's objects with the library (as `plan` does), hooks excluded; also returns
/// the seconds of one `helm template` per chart, summed.
fn render_objects(
    plan: &Path,
    repo_dirs: &BTreeMap<String, PathBuf>,
    reads: BTreeMap<String, Value>,
    discovery: meshplan::cluster::Discovery,
    kube_version: String,
) -> Result<(Vec<Value>, f64), Error> {
    let loaded = meshplan::load::load(&meshplan::load::LoadRequest {
        plan: plan.to_path_buf(),
        ..Default::default()
    })
    .map_err(|d| {
        let messages: Vec<String> = d.items.iter().map(|x| x.message.clone()).collect();
        format!("plan does not load: {}", messages.join("; "))
    })?;
    let helm = Arc::new(TimedHelm {
        inner: meshplan::render::HelmProcess::from_env(),
        runs: std::sync::Mutex::new(BTreeMap::new()),
    });
    let renderer = meshplan::render::Renderer::new(
        helm.clone(),
        Arc::new(meshplan::render::MemoryCache::new()),
        meshplan::render::RenderOptions {
            repo_dirs: repo_dirs.clone(),
            discovery: Some(discovery),
            kube_version: Some(kube_version),
            parallelism: 4,
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
    let helm_seconds = helm.runs.lock().map(|r| r.values().sum()).unwrap_or(0.0);
    Ok((
        rendered
            .nodes
            .values()
            .flat_map(|n| n.objects.iter().map(|o| o.object.clone()))
            .collect(),
        helm_seconds,
    ))
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
}

fn run_scenario(s: &Scenario, meshplan: &Path, with_kubectl: bool) -> Result<Vec<String>, Error> {
    let work = tempfile::tempdir()?;
    // A plain API server: no simulated controllers acting on the seeded objects.
    let sandbox = BlockingSandbox::start(SandboxConfig::api_only())?;
    let kc = work.path().join("kubeconfig");
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
    seed(&rt, &cluster, &s.extra)?;
    let discovery = rt.block_on(cluster.discover())?;
    let version = rt.block_on(cluster.server_version())?;
    let (objects, helm_seconds) = render_objects(
        &s.plan,
        &s.repo_dirs,
        s.reads.clone(),
        discovery,
        version.git_version,
    )?;
    let mut live = seed(&rt, &cluster, &objects)?;
    let rendered = work.path().join("rendered.json");
    std::fs::write(
        &rendered,
        serde_json::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": objects}))?,
    )?;
    let state = work.path().join("state");
    let mut args: Vec<String> = vec![
        "plan".into(),
        s.plan.display().to_string(),
        "--kubeconfig".into(),
        kc.display().to_string(),
        "--state".into(),
        state.display().to_string(),
    ];
    for (alias, dir) in &s.repo_dirs {
        args.push("--repo-dir".into());
        args.push(format!("{alias}={}", dir.display()));
    }
    let mut json_args = args.clone();
    json_args.extend(["--output".into(), "json".into()]);
    let mut lines = vec![format!(
        "\n### {} ({} objects)\n\n| run | wall time | requests | peak memory | exit |\n|---|---|---|---|---|",
        s.name,
        objects.len()
    )];
    let cold = measure("meshplan plan, cold", &sandbox, meshplan, &json_args, &[])?;
    lines.push(cold.line());
    // The records an apply writes (from the plan's report; again once reads resolve).
    let mut recorded = 0;
    for _ in 0..3 {
        let report_out = Command::new(meshplan).args(&json_args).output()?;
        let report: Value = serde_json::from_slice(&report_out.stdout)?;
        recorded = write_records(&state, &report, &live, &objects)?;
        if report["has_changes"] == false {
            break;
        }
    }
    // Once to warm the caches of what the records changed (render of nodes using reads).
    Command::new(meshplan).args(&args).output()?;
    let warm = measure("meshplan plan, warm no-op", &sandbox, meshplan, &args, &[])?;
    lines.push(warm.line());
    let drift_args: Vec<String> = vec![
        "drift".into(),
        s.plan.display().to_string(),
        "--kubeconfig".into(),
        kc.display().to_string(),
        "--state".into(),
        state.display().to_string(),
    ];
    let drift = measure(
        "meshplan drift, no drift",
        &sandbox,
        meshplan,
        &drift_args,
        &[],
    )?;
    lines.push(drift.line());
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
        let v = rt.block_on(cluster.apply(&body, &ApplyOptions::default()))?;
        live.insert(r.clone(), v);
    }
    let changed = measure("meshplan plan, 10 changed", &sandbox, meshplan, &args, &[])?;
    lines.push(changed.line());
    let drifted = measure(
        "meshplan drift, 10 changed",
        &sandbox,
        meshplan,
        &drift_args,
        &[],
    )?;
    lines.push(drifted.line());
    if with_kubectl {
        let diff_args: Vec<String> = vec![
            "diff".into(),
            "--server-side".into(),
            "--field-manager=meshplan".into(),
            "-f".into(),
            rendered.display().to_string(),
        ];
        let cache = work.path().join("kube-cache");
        std::fs::create_dir_all(&cache)?;
        let env: [(&str, &Path); 3] = [
            ("KUBECONFIG", &kc),
            ("KUBECACHEDIR", &cache),
            ("HOME", work.path()),
        ];
        let k1 = measure(
            "kubectl diff --server-side (fresh cache)",
            &sandbox,
            Path::new("/usr/bin/kubectl"),
            &diff_args,
            &env,
        )?;
        lines.push(k1.line());
        let k2 = measure(
            "kubectl diff --server-side (warm cache)",
            &sandbox,
            Path::new("/usr/bin/kubectl"),
            &diff_args,
            &env,
        )?;
        lines.push(k2.line());
        lines.push(format!(
            "\ncold plan / kubectl diff (fresh cache): {:.2}×; 10 changed / kubectl diff (warm cache): {:.2}×",
            cold.seconds / k1.seconds,
            changed.seconds / k2.seconds
        ));
        let baseline = helm_seconds + k2.seconds;
        lines.push(format!(
            "drift / (helm template {helm_seconds:.2} s + kubectl diff warm {:.2} s): {:.2}× (no drift), {:.2}× (10 changed)",
            k2.seconds,
            drift.seconds / baseline,
            drifted.seconds / baseline
        ));
    }
    lines.push(format!("(records written for the warm runs: {recorded})"));
    drop(sandbox);
    Ok(lines)
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
    let counts: Vec<usize> = args
        .iter()
        .position(|a| a == "--configmaps")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10000]);
    let with_kubectl = !args.iter().any(|a| a == "--no-kubectl");
    let with_linkerd = !args.iter().any(|a| a == "--no-linkerd");
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
        scenarios.push(Scenario {
            name: "Linkerd-like stack (plans/linkerd.toml, stand-in charts)".into(),
            plan: root.join("plans/linkerd.toml"),
            repo_dirs: BTreeMap::from([("linkerd".into(), charts.clone()), ("jetstack".into(), charts.clone())]),
            reads: BTreeMap::from([("read.trust_anchor".into(), Value::String(ca.into()))]),
            extra: vec![
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "linkerd"}}),
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}}),
                json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                       "metadata": {"name": "linkerd-identity-issuer", "namespace": "linkerd"},
                       "data": {"ca.crt": base64_encode(ca), "tls.crt": "", "tls.key": ""}}),
                podmonitor_crd(),
            ],
        });
    }
    for n in counts {
        scenarios.push(Scenario {
            name: format!("{n} ConfigMaps"),
            plan: configmap_plan(work.path(), n)?,
            repo_dirs: BTreeMap::new(),
            reads: BTreeMap::new(),
            extra: Vec::new(),
        });
    }
    println!(
        "meshplan plan benchmark ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for s in &scenarios {
        for line in run_scenario(s, &meshplan, with_kubectl)? {
            println!("{line}");
        }
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
