//! The simulated workload and Linkerd controllers, driven by the real kubectl.

use std::time::{Duration, Instant};

use meshplan_sandbox::{Controller, ControllerConfig, SandboxConfig};
use serde_json::Value;

use meshplan_sandbox::kubectl::Cluster;

fn deployment(name: &str, namespace: &str, image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n\
         \x20   metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n\
         \x20     - name: main\n        image: {image}\n"
    )
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a str> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .get("status")?
        .as_str()
}

fn config(delay_ms: u64) -> SandboxConfig {
    SandboxConfig {
        controllers: ControllerConfig {
            rollout_delay: Duration::from_millis(delay_ms),
            ..ControllerConfig::default()
        },
        ..SandboxConfig::default()
    }
}

/// Polls `f` until it returns Some, for at most 30 s.
fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not reached in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn deployment_rolls_out_after_the_delay_and_again_after_a_template_change() {
    let c = Cluster::start_with(config(1500));
    c.apply("web.yaml", &deployment("web", "default", "nginx:1.25", 3))
        .ok();
    // Right after the apply the rollout is in progress, not finished.
    let early = c.get_json(&["deploy", "web"]);
    assert_ne!(condition(&early, "Available"), Some("True"), "{early}");
    assert_eq!(early["status"]["observedGeneration"], 1);

    let out = c
        .kubectl(&["rollout", "status", "deploy/web", "--timeout=30s"])
        .ok()
        .to_string();
    assert!(out.contains("successfully rolled out"), "{out}");
    let done = c
        .sandbox
        .object("apps", "deployments", "default", "web")
        .unwrap();
    assert_eq!(condition(&done, "Available"), Some("True"));
    for field in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        assert_eq!(done["status"][field], 3, "{field}: {done}");
    }
    // The status was written by the controller manager through the status subresource.
    let managers: Vec<(&str, Option<&str>)> = done["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["manager"].as_str().unwrap(), m["subresource"].as_str()))
        .collect();
    assert!(
        managers.contains(&("kube-controller-manager", Some("status"))),
        "{managers:?}"
    );
    let settled_rv = done["metadata"]["resourceVersion"].clone();

    // A template change is a new rollout: generation 2, in progress, then done again.
    c.apply("web.yaml", &deployment("web", "default", "nginx:1.26", 3))
        .ok();
    let changed = c.get_json(&["deploy", "web"]);
    assert_eq!(changed["metadata"]["generation"], 2);
    assert_ne!(changed["metadata"]["resourceVersion"], settled_rv);
    // The rollout of generation 2 has not finished (the status still describes generation 1,
    // or the new rollout is in progress).
    assert!(
        changed["status"]["observedGeneration"] != 2 || changed["status"]["updatedReplicas"] != 3,
        "{changed}"
    );
    let out = c
        .kubectl(&["rollout", "status", "deploy/web", "--timeout=30s"])
        .ok()
        .to_string();
    assert!(out.contains("successfully rolled out"), "{out}");
    let again = c.get_json(&["deploy", "web"]);
    assert_eq!(again["status"]["observedGeneration"], 2);
    assert_eq!(again["status"]["updatedReplicas"], 3);

    // Settled: nothing more is written.
    let rv = again["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.get_json(&["deploy", "web"])["metadata"]["resourceVersion"],
        rv
    );
}

#[test]
fn statefulsets_daemonsets_jobs_and_cronjobs_settle() {
    let c = Cluster::start_with(config(200));
    let manifests = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: default}\n\
spec:\n  replicas: 2\n  serviceName: db\n  updateStrategy: {type: RollingUpdate}\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: db, image: postgres}]}\n\
---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent, namespace: default}\n\
spec:\n  updateStrategy: {type: RollingUpdate}\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec: {containers: [{name: a, image: busybox}]}\n\
---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: once, namespace: default}\n\
spec:\n  template:\n    spec: {restartPolicy: Never, containers: [{name: j, image: busybox}]}\n\
---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly, namespace: default}\n\
spec:\n  schedule: \"0 3 * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec: {restartPolicy: Never, containers: [{name: j, image: busybox}]}\n";
    c.apply("all.yaml", manifests).ok();
    c.kubectl(&["rollout", "status", "statefulset/db", "--timeout=30s"])
        .ok();
    c.kubectl(&["rollout", "status", "daemonset/agent", "--timeout=30s"])
        .ok();
    c.kubectl(&[
        "wait",
        "--for=condition=Complete",
        "job/once",
        "--timeout=30s",
    ])
    .ok();
    let job = c.get_json(&["job", "once"]);
    assert_eq!(job["status"]["succeeded"], 1);
    let sts = c.get_json(&["statefulset", "db"]);
    assert_eq!(sts["status"]["readyReplicas"], 2);
    // A CronJob is accepted as it is.
    let cron = c.get_json(&["cronjob", "nightly"]);
    assert_eq!(cron["spec"]["schedule"], "0 3 * * *");
}

const LINKERD_CONTROL_PLANE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: linkerd\n  labels: {linkerd.io/is-control-plane: \"true\"}\n\
---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n  annotations: {linkerd.io/inject: enabled}\n";

fn job(name: &str, inject: Option<&str>) -> String {
    let annotations = inject
        .map(|v| format!("      annotations: {{linkerd.io/inject: {v}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  template:\n    metadata:\n\
         {annotations}      labels: {{app: {name}}}\n    spec: {{restartPolicy: Never, containers: [{{name: j, image: busybox}}]}}\n"
    )
}

#[test]
fn a_meshed_job_never_completes_and_an_opted_out_one_does() {
    let c = Cluster::start_with(config(200));
    c.apply("ns.yaml", LINKERD_CONTROL_PLANE).ok();
    for name in ["linkerd-destination", "linkerd-proxy-injector"] {
        c.apply(
            &format!("{name}.yaml"),
            &deployment(name, "linkerd", "cr.l5d.io/linkerd/controller:edge", 1),
        )
        .ok();
        c.kubectl(&[
            "rollout",
            "status",
            "-n",
            "linkerd",
            &format!("deploy/{name}"),
            "--timeout=30s",
        ])
        .ok();
    }
    c.apply("meshed.yaml", &job("migrate", None)).ok();
    c.apply("optout.yaml", &job("migrate-optout", Some("disabled")))
        .ok();
    c.kubectl(&[
        "wait",
        "-n",
        "apps",
        "--for=condition=Complete",
        "job/migrate-optout",
        "--timeout=30s",
    ])
    .ok();
    // Well past the delay that completed the other Job, the meshed one still runs.
    let waited = c.kubectl(&[
        "wait",
        "-n",
        "apps",
        "--for=condition=Complete",
        "job/migrate",
        "--timeout=2s",
    ]);
    assert!(waited.failed().contains("timed out"), "{}", waited.stderr);
    let meshed = c.get_json(&["-n", "apps", "job", "migrate"]);
    assert_eq!(meshed["status"]["active"], 1, "{meshed}");
    assert!(meshed["status"].get("succeeded").is_none(), "{meshed}");

    // Without the Linkerd controller the same Job completes.
    let plain = Cluster::start_with(SandboxConfig {
        controllers: ControllerConfig {
            linkerd: false,
            rollout_delay: Duration::from_millis(200),
            ..ControllerConfig::default()
        },
        ..SandboxConfig::default()
    });
    plain.apply("ns.yaml", LINKERD_CONTROL_PLANE).ok();
    plain.apply("meshed.yaml", &job("migrate", None)).ok();
    plain
        .kubectl(&[
            "wait",
            "-n",
            "apps",
            "--for=condition=Complete",
            "job/migrate",
            "--timeout=30s",
        ])
        .ok();
}

#[test]
fn namespaces_are_active_and_apiservices_available() {
    let c = Cluster::start_with(config(200));
    c.apply(
        "svc.yaml",
        "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: v1beta1.metrics.k8s.io}\n\
spec:\n  group: metrics.k8s.io\n  version: v1beta1\n  groupPriorityMinimum: 100\n  versionPriority: 100\n  service: {name: metrics-server, namespace: kube-system}\n",
    )
    .ok();
    c.kubectl(&[
        "wait",
        "--for=condition=Available",
        "apiservice/v1beta1.metrics.k8s.io",
        "--timeout=30s",
    ])
    .ok();
    c.apply(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n",
    )
    .ok();
    assert_eq!(c.get_json(&["ns", "team"])["status"]["phase"], "Active");
}

#[test]
fn a_paused_controller_resumes_and_a_disabled_one_never_acts() {
    let c = Cluster::start_with(config(100));
    c.sandbox.set_paused(Controller::Workloads, true);
    c.apply("web.yaml", &deployment("web", "default", "nginx", 1))
        .ok();
    // Paused: many delays later there is still no status at all.
    std::thread::sleep(Duration::from_millis(800));
    let paused = c
        .sandbox
        .object("apps", "deployments", "default", "web")
        .unwrap();
    assert!(paused.get("status").is_none(), "{paused}");
    c.sandbox.set_paused(Controller::Workloads, false);
    eventually(|| {
        let d = c.sandbox.object("apps", "deployments", "default", "web")?;
        (condition(&d, "Available") == Some("True")).then_some(())
    });

    let off = Cluster::start_with(SandboxConfig::api_only());
    off.apply("web.yaml", &deployment("web", "default", "nginx", 1))
        .ok();
    std::thread::sleep(Duration::from_millis(800));
    let d = off
        .sandbox
        .object("apps", "deployments", "default", "web")
        .unwrap();
    assert!(d.get("status").is_none(), "{d}");
}

fn linkerd_config(native_sidecar: bool) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: linkerd-config, namespace: linkerd}}\ndata:\n  values: |\n\
         \x20   identityTrustDomain: cluster.local\n    proxy:\n      image:\n        name: cr.l5d.io/linkerd/proxy\n\
         \x20     nativeSidecar: {native_sidecar}\n    proxyInit:\n      runAsRoot: false\n"
    )
}

#[test]
fn the_control_planes_proxy_mode_comes_from_its_linkerd_config() {
    let c = Cluster::start_with(config(200));
    c.apply("ns.yaml", LINKERD_CONTROL_PLANE).ok();
    for name in ["linkerd-destination", "linkerd-proxy-injector"] {
        c.apply(
            &format!("{name}.yaml"),
            &deployment(name, "linkerd", "cr.l5d.io/linkerd/controller:edge", 1),
        )
        .ok();
        c.kubectl(&[
            "rollout",
            "status",
            "-n",
            "linkerd",
            &format!("deploy/{name}"),
            "--timeout=30s",
        ])
        .ok();
    }
    // Native sidecars: the proxy stops with the Job's container, the meshed Job completes.
    c.apply("config.yaml", &linkerd_config(true)).ok();
    c.apply("native.yaml", &job("native", None)).ok();
    c.kubectl(&[
        "wait",
        "-n",
        "apps",
        "--for=condition=Complete",
        "job/native",
        "--timeout=30s",
    ])
    .ok();
    // Classic sidecars again: a new meshed Job keeps running.
    c.apply("config.yaml", &linkerd_config(false)).ok();
    c.apply("classic.yaml", &job("classic", None)).ok();
    let waited = c.kubectl(&[
        "wait",
        "-n",
        "apps",
        "--for=condition=Complete",
        "job/classic",
        "--timeout=2s",
    ]);
    assert!(waited.failed().contains("timed out"), "{}", waited.stderr);
    let classic = c.get_json(&["-n", "apps", "job", "classic"]);
    assert_eq!(classic["status"]["active"], 1, "{classic}");
}
