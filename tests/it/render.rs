//! The render stage on the sample plan with the stand-in charts: unknowns, namespaces,
//! ownership marks, hooks, helm errors and the render cache.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use meshplan::load::{LoadRequest, LoadedPlan, load};
use meshplan::model::Address;
use meshplan::render::{
    DumpOptions, HelmOutput, HelmProcess, HelmRunError, HelmRunner, HookDeletePolicy, HookPhase,
    KindScope, MANAGED_BY_LABEL, MemoryCache, NODE_ANNOTATION, NodeStatus, PLAN_ANNOTATION,
    PlanRender, ReadValue, RenderError, RenderInputs, RenderOptions, RenderSource, Renderer,
    dump_render,
};

use crate::support::root;

/// Runs real helm and counts `helm template` and `helm version` calls.
pub struct Counting {
    inner: HelmProcess,
    pub templates: AtomicUsize,
    pub versions: AtomicUsize,
}

impl Counting {
    pub fn new(inner: HelmProcess) -> Arc<Self> {
        Arc::new(Self {
            inner,
            templates: AtomicUsize::new(0),
            versions: AtomicUsize::new(0),
        })
    }

    pub fn count(&self) -> usize {
        self.templates.load(Ordering::SeqCst)
    }
}

impl HelmRunner for Counting {
    fn binary(&self) -> Option<String> {
        self.inner.binary()
    }

    fn run(&self, args: Vec<String>) -> BoxFuture<'_, Result<HelmOutput, HelmRunError>> {
        match args.first().map(String::as_str) {
            Some("template") => self.templates.fetch_add(1, Ordering::SeqCst),
            Some("version") => self.versions.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        self.inner.run(args)
    }
}

pub fn load_plan(path: &std::path::Path, vars: &[&str]) -> LoadedPlan {
    load(&LoadRequest {
        plan: path.to_path_buf(),
        vars: vars.iter().map(|s| s.to_string()).collect(),
        var_files: Vec::new(),
    })
    .unwrap()
}

pub fn sample() -> LoadedPlan {
    load_plan(&root().join("plans/linkerd.toml"), &[])
}

pub fn offline_options() -> RenderOptions {
    let charts = root().join("plans/charts");
    RenderOptions {
        repo_dirs: BTreeMap::from([
            ("jetstack".to_string(), charts.clone()),
            ("linkerd".to_string(), charts),
        ]),
        ..Default::default()
    }
}

pub fn renderer(helm: Arc<dyn HelmRunner>, cache: Arc<MemoryCache>) -> Renderer {
    Renderer::new(helm, cache, offline_options())
}

pub fn helm() -> HelmProcess {
    HelmProcess::new("helm")
}

pub const TRUST_ANCHOR: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBfakeTrustAnchorForTests\n-----END CERTIFICATE-----\n";

pub fn trust_anchor(pem: &str) -> BTreeMap<Address, ReadValue> {
    BTreeMap::from([(
        Address::parse("read.trust_anchor").unwrap(),
        ReadValue {
            value: pem.into(),
            sensitive: true,
        },
    )])
}

/// Render inputs with the sample's trust anchor read.
fn with_trust_anchor() -> RenderInputs {
    RenderInputs {
        reads: trust_anchor(TRUST_ANCHOR),
        ..Default::default()
    }
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

async fn render_sample(reads: BTreeMap<Address, ReadValue>) -> PlanRender {
    let plan = sample();
    renderer(Arc::new(helm()), Arc::new(MemoryCache::new()))
        .render(
            &plan.plan,
            &RenderInputs {
                reads,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn trust_anchor_unknown_renders_the_control_plane_with_placeholders() {
    let render = render_sample(BTreeMap::new()).await;
    let cp = &render.nodes[&addr("helm.linkerd_control_plane")];
    assert_eq!(
        cp.status,
        NodeStatus::RenderedWithPlaceholders {
            unknown_references: vec!["read.trust_anchor.value".into()]
        }
    );
    // Every object of the chart is known (the chart's `required` takes the placeholder).
    let with_anchor = render_sample(trust_anchor(TRUST_ANCHOR)).await;
    let known = &with_anchor.nodes[&addr("helm.linkerd_control_plane")];
    let names = |n: &meshplan::render::NodeRender| -> Vec<String> {
        n.objects.iter().map(|o| o.object_ref.to_string()).collect()
    };
    assert!(cp.objects.len() > 30, "{}", cp.objects.len());
    assert_eq!(names(cp), names(known));
    // The fields that embed the trust anchor, and what the chart derives from it, are known
    // after apply; the rest is as with the real value.
    let object = |kind: &str, name: &str| {
        cp.objects
            .iter()
            .find(|o| o.object_ref.name == name && o.object_ref.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    assert_eq!(
        object("ConfigMap", "linkerd-identity-trust-roots")
            .unknown_paths
            .iter()
            .collect::<Vec<_>>(),
        ["/data/ca-bundle.crt"]
    );
    let identity = object("Deployment", "linkerd-identity");
    assert!(
        identity
            .unknown_paths
            .contains("/spec/template/metadata/annotations/linkerd.io~1trust-root-sha256"),
        "{:?}",
        identity.unknown_paths
    );
    assert!(
        identity.volatile_paths.is_empty(),
        "a placeholder render's differences are unknown, not generated material"
    );
    let real = known
        .objects
        .iter()
        .find(|o| o.object_ref == identity.object_ref)
        .unwrap();
    assert!(meshplan::render::json::equal_outside(
        &identity.object,
        &real.object,
        &identity.unknown_paths
    ));
    // The placeholder is PEM-shaped (the read takes `ca.crt`), never the real value.
    let env = identity.object.pointer(
        identity
            .unknown_paths
            .iter()
            .find(|p| p.contains("/env/"))
            .unwrap(),
    );
    assert!(
        env.and_then(|v| v.as_str())
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----\n"),
        "{env:?}"
    );
    // viz does not use the read: it renders now.
    let viz = &render.nodes[&addr("helm.linkerd_viz")];
    assert_eq!(viz.status, NodeStatus::Rendered);
    assert!(viz.objects.len() > 10, "{}", viz.objects.len());
    for a in ["helm.cert_manager", "helm.linkerd_crds", "manifest.root_ca"] {
        assert_eq!(render.nodes[&addr(a)].status, NodeStatus::Rendered, "{a}");
    }
    // Read and check nodes have no objects.
    assert!(!render.nodes.contains_key(&addr("read.trust_anchor")));
    assert!(!render.nodes.contains_key(&addr("check.ca_issuer_ready")));
}

#[tokio::test]
async fn trust_anchor_known_renders_everything_marked_and_namespaced() {
    let render = render_sample(trust_anchor(TRUST_ANCHOR)).await;
    assert!(
        render
            .helm_version
            .as_deref()
            .unwrap_or("")
            .starts_with('v')
    );
    for (address, node) in &render.nodes {
        assert_eq!(node.status, NodeStatus::Rendered, "{address}");
    }
    let mut count = 0;
    for (address, o) in render.objects() {
        count += 1;
        let meta = &o.object["metadata"];
        assert_eq!(
            meta["labels"][MANAGED_BY_LABEL], "meshplan",
            "{}",
            o.object_ref
        );
        assert_eq!(meta["annotations"][PLAN_ANNOTATION], "linkerd");
        assert_eq!(meta["annotations"][NODE_ANNOTATION], address.to_string());
        match o.scope {
            KindScope::Namespaced => assert!(meta["namespace"].is_string(), "{}", o.object_ref),
            KindScope::Cluster => assert!(meta.get("namespace").is_none(), "{}", o.object_ref),
            KindScope::Unknown => {}
        }
        assert_eq!(o.digest.len(), 64);
    }
    assert!(count > 60, "{count}");
    // Namespaces: release namespace for helm objects, the manifest's own otherwise.
    let cp = &render.nodes[&addr("helm.linkerd_control_plane")];
    let injector = cp
        .objects
        .iter()
        .find(|o| {
            o.object_ref.kind == "Deployment" && o.object_ref.name == "linkerd-proxy-injector"
        })
        .unwrap();
    assert_eq!(injector.object_ref.namespace.as_deref(), Some("linkerd"));
    let trust_roots = cp
        .objects
        .iter()
        .find(|o| {
            o.object_ref.kind == "ConfigMap" && o.object_ref.name == "linkerd-identity-trust-roots"
        })
        .unwrap();
    // The trust anchor came from a sensitive read: the paths holding it are sensitive.
    assert!(
        !trust_roots.sensitive_paths.is_empty(),
        "{:?}",
        trust_roots.object
    );
    // cert-manager's namespace is created by the node (create_namespace = true).
    let cm = &render.nodes[&addr("helm.cert_manager")];
    assert_eq!(
        cm.objects[0].object_ref.short().to_string(),
        "Namespace/cert-manager"
    );
    assert!(
        cm.objects
            .iter()
            .any(|o| o.object_ref.kind == "CustomResourceDefinition"
                && o.scope == KindScope::Cluster)
    );
    // Kinds learned from the plan's CRDs: the ClusterIssuer manifest is cluster-scoped offline.
    let ca = &render.nodes[&addr("manifest.ca_issuer")];
    assert_eq!(ca.objects[0].scope, KindScope::Cluster);
    // PodMonitors: no CRD in the plan and no discovery, so their scope is unknown.
    let pm = &render.nodes[&addr("manifest.linkerd_podmonitors")];
    assert!(pm.objects.iter().all(|o| o.scope == KindScope::Unknown));
    assert!(
        pm.objects
            .iter()
            .all(|o| o.object_ref.namespace.as_deref() == Some("monitoring"))
    );
}

#[tokio::test]
async fn hooks_are_kept_apart_with_phase_weight_and_policy() {
    let render = render_sample(trust_anchor(TRUST_ANCHOR)).await;
    let cm = &render.nodes[&addr("helm.cert_manager")];
    let job = cm
        .hooks
        .iter()
        .find(|o| o.object_ref.kind == "Job" && o.object_ref.name == "cert-manager-startupapicheck")
        .unwrap();
    let hook = job.hook.as_ref().unwrap();
    assert_eq!(hook.phases, [HookPhase::PostInstall]);
    assert_eq!(hook.weight, 1);
    assert_eq!(
        hook.delete_policies,
        [
            HookDeletePolicy::BeforeHookCreation,
            HookDeletePolicy::HookSucceeded
        ]
    );
    assert!(cm.objects.iter().all(|o| o.hook.is_none()));
    assert!(cm.hooks.len() >= 4);
    assert_eq!(
        job.object["metadata"]["labels"][MANAGED_BY_LABEL],
        "meshplan"
    );
    let viz = &render.nodes[&addr("helm.linkerd_viz")];
    let ns_meta = viz
        .hooks
        .iter()
        .find(|o| o.object_ref.kind == "Job" && o.object_ref.name == "namespace-metadata")
        .unwrap();
    let hook = ns_meta.hook.as_ref().unwrap();
    assert_eq!(hook.phases, [HookPhase::PostInstall]);
    assert_eq!(hook.weight, 1);
    assert_eq!(ns_meta.object_ref.namespace.as_deref(), Some("linkerd-viz"));
}

#[tokio::test]
async fn dump_of_the_sample_plan() {
    let render = render_sample(BTreeMap::new()).await;
    insta::assert_snapshot!(dump_render(&render, DumpOptions::default()));
}

#[tokio::test]
async fn helm_missing_is_a_clear_error() {
    let plan = sample();
    let r = renderer(
        Arc::new(HelmProcess::from_setting(Some("/nonexistent/helm".into()))),
        Arc::new(MemoryCache::new()),
    )
    .render(&plan.plan, &RenderInputs::default())
    .await
    .unwrap_err();
    // Reported once, naming every helm node that needs it; manifests still render.
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    let e = &r.errors[0];
    let RenderError::HelmNotFound { program, nodes, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(program, "/nonexistent/helm");
    let nodes: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    assert_eq!(
        nodes,
        [
            "helm.cert_manager",
            "helm.linkerd_control_plane",
            "helm.linkerd_crds",
            "helm.linkerd_viz"
        ]
    );
    let shown = format!("{:?}", miette::Report::new(r));
    assert_eq!(shown.matches("helm is not installed").count(), 1, "{shown}");
    assert!(shown.contains("bash scripts/install-helm.sh"), "{shown}");
    assert!(
        shown.contains("https://helm.sh/docs/intro/install/"),
        "{shown}"
    );
}

#[tokio::test]
async fn missing_chart_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.toml");
    std::fs::write(
        &plan_path,
        "[plan]\nname = \"m\"\n[repos]\nlinkerd = \"https://helm.linkerd.io/stable\"\n\
         [helm.nope]\nchart = \"linkerd/linkerd-nope\"\nnamespace = \"x\"\n",
    )
    .unwrap();
    let plan = load_plan(&plan_path, &[]);
    let r = renderer(Arc::new(helm()), Arc::new(MemoryCache::new()))
        .render(&plan.plan, &RenderInputs::default())
        .await
        .unwrap_err();
    match &r.errors[..] {
        [
            RenderError::ChartNotFound {
                node, chart, path, ..
            },
        ] => {
            assert_eq!(node.to_string(), "helm.nope");
            assert_eq!(chart, "linkerd/linkerd-nope");
            assert!(path.ends_with("plans/charts/linkerd-nope"));
        }
        other => panic!("{other:?}"),
    }
    let text = r.errors[0].to_string();
    assert!(
        text.contains("helm.nope") && text.contains("linkerd/linkerd-nope"),
        "{text}"
    );
}

#[tokio::test]
async fn a_chart_name_typo_suggests_the_nearest_chart() {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.toml");
    std::fs::write(
        &plan_path,
        "[plan]\nname = \"m\"\n[repos]\nlinkerd = \"https://helm.linkerd.io/stable\"\n\
         [helm.cp]\nchart = \"linkerd/linkerd-contrl-plane\"\nnamespace = \"x\"\n",
    )
    .unwrap();
    let plan = load_plan(&plan_path, &[]);
    let r = renderer(Arc::new(helm()), Arc::new(MemoryCache::new()))
        .render(&plan.plan, &RenderInputs::default())
        .await
        .unwrap_err();
    let shown = format!("{:?}", miette::Report::new(r));
    assert!(
        shown.contains("did you mean `linkerd/linkerd-control-plane`?"),
        "{shown}"
    );
}

#[tokio::test]
async fn an_unreachable_repository_suggests_repo_dir() {
    // A port nothing listens on: the repository refuses the connection at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.toml");
    std::fs::write(
        &plan_path,
        format!(
            "[plan]\nname = \"m\"\n[repos]\nfar = \"http://127.0.0.1:{port}/charts\"\n\
             [helm.app]\nchart = \"far/app\"\nversion = \"1.0.0\"\nnamespace = \"x\"\n"
        ),
    )
    .unwrap();
    let plan = load_plan(&plan_path, &[]);
    let r = renderer(Arc::new(helm()), Arc::new(MemoryCache::new()))
        .render(&plan.plan, &RenderInputs::default())
        .await
        .unwrap_err();
    let help = match &r.errors[..] {
        [RenderError::HelmFailed { help, .. }] => help.clone(),
        other => panic!("{other:?}"),
    };
    let help = *help.expect("a way out");
    assert!(help.contains("--repo-dir far=DIR"), "{help}");
    assert!(help.contains(&format!("127.0.0.1:{port}")), "{help}");
}

#[tokio::test]
async fn helm_failure_shows_its_stderr() {
    let plan = sample();
    let mut inputs = RenderInputs {
        reads: trust_anchor(""),
        ..Default::default()
    };
    inputs.targets = Some([addr("helm.linkerd_control_plane")].into());
    let r = renderer(Arc::new(helm()), Arc::new(MemoryCache::new()))
        .render(&plan.plan, &inputs)
        .await
        .unwrap_err();
    match &r.errors[..] {
        [
            RenderError::HelmFailed {
                node,
                chart,
                stderr,
                ..
            },
        ] => {
            assert_eq!(node.to_string(), "helm.linkerd_control_plane");
            assert!(chart.contains("linkerd/linkerd-control-plane"), "{chart}");
            assert!(
                stderr.contains("Please provide the identity trust anchors"),
                "{stderr}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        r.errors[0]
            .to_string()
            .contains("Please provide the identity trust anchors")
    );
}

/// Runs real helm; `helm version` answers only once a `helm template` has started (or after a
/// minute, so that a render that waits for the version before any template still ends), and
/// records which.
struct VersionAfterTemplate {
    inner: HelmProcess,
    template_started: tokio::sync::Notify,
    version_after_template: std::sync::Mutex<Vec<bool>>,
}

impl HelmRunner for VersionAfterTemplate {
    fn binary(&self) -> Option<String> {
        self.inner.binary()
    }

    fn run(&self, args: Vec<String>) -> BoxFuture<'_, Result<HelmOutput, HelmRunError>> {
        Box::pin(async move {
            match args.first().map(String::as_str) {
                Some("template") => self.template_started.notify_one(),
                Some("version") => {
                    let waited = tokio::time::timeout(
                        std::time::Duration::from_secs(60),
                        self.template_started.notified(),
                    )
                    .await
                    .is_ok();
                    self.version_after_template.lock().unwrap().push(waited);
                }
                _ => {}
            }
            self.inner.run(args).await
        })
    }
}

/// A first render (no previous render, a render cache that has never seen this helm binary)
/// does not wait for `helm version` to start its charts: the version is part of the cache key
/// only. The output is the one a render after the version gives.
#[tokio::test]
async fn a_first_render_starts_its_charts_while_helm_version_runs() {
    let plan = sample();
    let cache = Arc::new(MemoryCache::new());
    let helm = Arc::new(VersionAfterTemplate {
        inner: helm(),
        template_started: tokio::sync::Notify::new(),
        version_after_template: std::sync::Mutex::default(),
    });
    let early = renderer(helm.clone(), cache.clone())
        .render(&plan.plan, &with_trust_anchor())
        .await
        .unwrap();
    assert_eq!(*helm.version_after_template.lock().unwrap(), [true]);
    // The version and the outputs were cached under the keys with the version.
    let counting = Counting::new(super::render::helm());
    let again = renderer(counting.clone(), cache)
        .render(&plan.plan, &with_trust_anchor())
        .await
        .unwrap();
    assert_eq!(counting.count(), 0);
    assert_eq!(counting.versions.load(Ordering::SeqCst), 0);
    for (address, node) in &again.nodes {
        let (Some(h), Some(first)) = (&node.helm, &early.nodes[address].helm) else {
            continue;
        };
        assert_eq!(h.source, RenderSource::Cache, "{address}");
        assert_eq!(h.cache_key, first.cache_key, "{address}");
        assert_eq!(h.output, first.output, "{address}");
    }
}

#[tokio::test]
async fn cache_hit_avoids_running_helm() {
    let plan = sample();
    let cache = Arc::new(MemoryCache::new());
    let inputs = with_trust_anchor();
    let first = Counting::new(helm());
    let r1 = renderer(first.clone(), cache.clone())
        .render(&plan.plan, &inputs)
        .await
        .unwrap();
    // Four helm nodes, each rendered once: the control plane and viz generate certificates
    // (genCA), but with no previous render there is nothing to carry them over from, so they
    // are not rendered a second time to find them; and the control plane once more with a
    // canary for its sensitive input (the trust anchor), to find the fields derived from it.
    assert_eq!(first.count(), 5);
    // Four chart outputs, and helm's version (by the helm binary).
    assert_eq!(cache.len(), 5);
    let second = Counting::new(helm());
    let r2 = renderer(second.clone(), cache.clone())
        .render(&plan.plan, &inputs)
        .await
        .unwrap();
    assert_eq!(second.count(), 0);
    // helm's version, part of the cache key, is cached too (by the helm binary).
    assert_eq!(first.versions.load(Ordering::SeqCst), 1);
    assert_eq!(second.versions.load(Ordering::SeqCst), 0);
    for (address, node) in &r2.nodes {
        if let Some(h) = &node.helm {
            assert_eq!(h.source, RenderSource::Cache, "{address}");
        }
    }
    // The cached render is the same render, generated material included.
    assert_eq!(
        r1.objects()
            .map(|(_, o)| o.object.clone())
            .collect::<Vec<_>>(),
        r2.objects()
            .map(|(_, o)| o.object.clone())
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn output_order_does_not_depend_on_parallelism() {
    let plan = sample();
    let inputs = with_trust_anchor();
    let cache = Arc::new(MemoryCache::new());
    let mut serial = offline_options();
    serial.parallelism = 1;
    let a = Renderer::new(Arc::new(helm()), cache.clone(), serial)
        .render(&plan.plan, &inputs)
        .await
        .unwrap();
    let mut wide = offline_options();
    wide.parallelism = 8;
    // A fresh cache: everything is rendered again, in parallel.
    let b = Renderer::new(Arc::new(helm()), Arc::new(MemoryCache::new()), wide)
        .render(&plan.plan, &inputs)
        .await
        .unwrap();
    let ids = |r: &PlanRender| {
        r.objects()
            .map(|(a, o)| format!("{a} {}", o.object_ref.short()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
}

const MANIFEST_PLAN: &str = r#"
[plan]
name = "manifests"

[vars]
team = "payments"

[read.db_password]
api_version = "v1"
kind = "Secret"
namespace = "vault"
name = "db"
key = "password"

[manifest.apps]
namespace = "apps"
yaml = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  team: ${var.team}
  password: ${read.db_password.value}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: reader
  namespace: apps
rules: []
---
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: apps
spec: {}
---
apiVersion: example.io/v1
kind: Widget
metadata:
  name: w
"""

[manifest.crds]
[[manifest.crds.objects]]
apiVersion = "apiextensions.k8s.io/v1"
kind = "CustomResourceDefinition"
metadata = { name = "podmonitors.monitoring.coreos.com" }
spec = { group = "monitoring.coreos.com", scope = "Namespaced", names = { kind = "PodMonitor", plural = "podmonitors" }, versions = [] }
"#;

fn manifest_plan() -> (tempfile::TempDir, LoadedPlan) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, MANIFEST_PLAN).unwrap();
    let plan = load_plan(&path, &[]);
    (dir, plan)
}

#[tokio::test]
async fn manifests_mark_unknowns_namespaces_and_scopes() {
    let (_dir, plan) = manifest_plan();
    // No helm node: helm is never run, even when it is missing.
    let r = Renderer::new(
        Arc::new(HelmProcess::from_setting(Some("/nonexistent/helm".into()))),
        Arc::new(MemoryCache::new()),
        RenderOptions::default(),
    );
    let render = r
        .render(&plan.plan, &RenderInputs::default())
        .await
        .unwrap();
    let apps = &render.nodes[&addr("manifest.apps")];
    let settings = &apps.objects[0];
    assert_eq!(
        settings.object_ref.short().to_string(),
        "ConfigMap/apps/settings"
    );
    assert_eq!(settings.object["data"]["team"], "payments");
    assert_eq!(settings.object["data"]["password"], "(known after apply)");
    assert!(settings.is_known_after_apply());
    assert_eq!(
        settings.unknown_paths.iter().collect::<Vec<_>>(),
        ["/data/password"]
    );
    assert!(settings.sensitive_paths.contains("/data/password"));
    let role = &apps.objects[1];
    assert_eq!(role.object_ref.short().to_string(), "ClusterRole/reader");
    assert!(role.object["metadata"].get("namespace").is_none());
    // The PodMonitor's scope comes from the CRD in another node of the plan.
    let pm = &apps.objects[2];
    assert_eq!(pm.scope, KindScope::Namespaced);
    assert_eq!(pm.object_ref.namespace.as_deref(), Some("apps"));
    let widget = &apps.objects[3];
    assert_eq!(widget.scope, KindScope::Unknown);
    assert_eq!(widget.object_ref.namespace, None);
    insta::assert_snapshot!(dump_render(&render, DumpOptions { digests: true }));

    // Once the password is read, the object is complete and its value is sensitive.
    let reads = BTreeMap::from([(
        addr("read.db_password"),
        ReadValue {
            value: "hunter2-long".into(),
            sensitive: true,
        },
    )]);
    let render = r
        .render(
            &plan.plan,
            &RenderInputs {
                reads,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let settings = &render.nodes[&addr("manifest.apps")].objects[0];
    assert_eq!(settings.object["data"]["password"], "hunter2-long");
    assert!(!settings.is_known_after_apply());
    assert!(settings.sensitive_paths.contains("/data/password"));
    assert!(!dump_render(&render, DumpOptions::default()).contains("hunter2"));
}

#[tokio::test]
async fn discovery_drives_helm_capabilities_and_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("caps");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: caps\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caps\ndata:\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n  podmonitors: {{ .Capabilities.APIVersions.Has \"monitoring.coreos.com/v1/PodMonitor\" | quote }}\n---\napiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata:\n  name: caps\nspec: {}\n",
    )
    .unwrap();
    let path = dir.path().join("plan.toml");
    std::fs::write(
        &path,
        "[plan]\nname = \"caps\"\n[helm.caps]\nchart = \"./caps\"\nnamespace = \"obs\"\n",
    )
    .unwrap();
    let plan = load_plan(&path, &[]);
    let discovery = meshplan::cluster::Discovery::new(vec![meshplan::cluster::ApiResourceInfo {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        kind: "PodMonitor".into(),
        plural: "podmonitors".into(),
        namespaced: true,
        verbs: vec!["get".into()],
        subresources: vec![],
    }]);
    let options = RenderOptions {
        discovery: Some(discovery),
        kube_version: Some("v1.29.4".into()),
        ..Default::default()
    };
    let render = Renderer::new(Arc::new(helm()), Arc::new(MemoryCache::new()), options)
        .render(&plan.plan, &RenderInputs::default())
        .await
        .unwrap();
    let node = &render.nodes[&addr("helm.caps")];
    assert_eq!(node.objects[0].object["data"]["kube"], "v1.29.4");
    assert_eq!(node.objects[0].object["data"]["podmonitors"], "true");
    assert_eq!(node.objects[1].scope, KindScope::Namespaced);
    assert_eq!(node.objects[1].object_ref.namespace.as_deref(), Some("obs"));
}

#[tokio::test]
async fn unknown_kinds_are_reported_by_the_caller() {
    let render = render_sample(trust_anchor(TRUST_ANCHOR)).await;
    let unknown: Vec<String> = render
        .unknown_kinds()
        .iter()
        .map(|e| e.to_string())
        .collect();
    // Prometheus-Operator is not part of the plan and there is no discovery: its PodMonitors
    // are the only objects of an unknown kind (the plan's own CRDs scope the rest).
    assert_eq!(unknown.len(), 3, "{unknown:#?}");
    assert!(unknown.iter().all(|e| e.contains("kind PodMonitor (monitoring.coreos.com/v1) is not installed and not created by the plan")), "{unknown:#?}");
    assert!(
        unknown[0]
            .starts_with("manifest.linkerd_podmonitors: PodMonitor/monitoring/linkerd-controller:"),
        "{unknown:#?}"
    );
}

/// A helm stand-in: answers `version`, and `template` with a fixed text; records the values
/// file it was given (path, existence, mode).
struct Scripted {
    stdout: &'static str,
    seen: std::sync::Mutex<Vec<(String, bool, u32)>>,
    /// The values helm was given, in order.
    values: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl HelmRunner for Scripted {
    fn run(&self, args: Vec<String>) -> BoxFuture<'_, Result<HelmOutput, HelmRunError>> {
        use std::os::unix::fs::PermissionsExt;
        let stdout = if args[0] == "version" {
            "v4.1.4"
        } else {
            self.stdout
        };
        if let Some(i) = args.iter().position(|a| a == "--values") {
            let path = args[i + 1].clone();
            if let Ok(text) = std::fs::read_to_string(&path) {
                self.values
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&text).unwrap());
            }
            let meta = std::fs::metadata(&path);
            self.seen.lock().unwrap().push((
                path,
                meta.is_ok(),
                meta.map(|m| m.permissions().mode() & 0o777).unwrap_or(0),
            ));
        }
        Box::pin(async move {
            Ok(HelmOutput {
                success: true,
                stdout: stdout.to_string(),
                stderr: String::new(),
            })
        })
    }
}

#[tokio::test]
async fn values_file_is_private_and_removed_and_bad_output_is_named() {
    let plan = sample();
    let inputs = RenderInputs {
        targets: Some([addr("helm.linkerd_crds")].into()),
        ..Default::default()
    };
    let good = Arc::new(Scripted {
        stdout: "---\n# Source: x/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
        seen: Default::default(),
        values: Default::default(),
    });
    let render = renderer(good.clone(), Arc::new(MemoryCache::new()))
        .render(&plan.plan, &inputs)
        .await
        .unwrap();
    let node = &render.nodes[&addr("helm.linkerd_crds")];
    assert_eq!(
        node.objects[0].source.as_deref(),
        Some("x/templates/a.yaml")
    );
    let seen = good.seen.lock().unwrap().clone();
    // One `helm template` (the CRD chart's templates generate nothing), given the values file.
    assert_eq!(seen.len(), 1);
    for (path, existed, mode) in seen {
        assert!(existed);
        assert_eq!(mode, 0o600);
        assert!(
            !std::path::Path::new(&path).exists(),
            "{path} was left behind"
        );
    }

    let bad = Arc::new(Scripted {
        stdout: "---\n# Source: x/templates/broken.yaml\nkind: [\n",
        seen: Default::default(),
        values: Default::default(),
    });
    let err = renderer(bad, Arc::new(MemoryCache::new()))
        .render(&plan.plan, &inputs)
        .await
        .unwrap_err();
    match &err.errors[..] {
        [
            RenderError::BadOutput {
                node, source_file, ..
            },
        ] => {
            assert_eq!(node.to_string(), "helm.linkerd_crds");
            assert_eq!(source_file.as_deref(), Some("x/templates/broken.yaml"));
        }
        other => panic!("{other:?}"),
    }
}

/// Answers like [`Scripted`], holding each `template` call open for a moment and recording
/// how many were in flight at once.
struct Gate {
    in_flight: AtomicUsize,
    max: AtomicUsize,
}

impl HelmRunner for Gate {
    fn run(&self, args: Vec<String>) -> BoxFuture<'_, Result<HelmOutput, HelmRunError>> {
        Box::pin(async move {
            if args[0] == "template" {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(HelmOutput {
                success: true,
                stdout: if args[0] == "version" {
                    "v4.1.4".into()
                } else {
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n".into()
                },
                stderr: String::new(),
            })
        })
    }
}

#[tokio::test]
async fn helm_nodes_render_in_parallel_within_the_bound() {
    let plan = sample();
    let inputs = with_trust_anchor();
    for (bound, expected) in [(1, 1), (2, 2)] {
        let gate = Arc::new(Gate {
            in_flight: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
        });
        let options = RenderOptions {
            parallelism: bound,
            ..offline_options()
        };
        let render = Renderer::new(gate.clone(), Arc::new(MemoryCache::new()), options)
            .render(&plan.plan, &inputs)
            .await
            .unwrap();
        // Four helm nodes, all rendered.
        assert_eq!(
            render.nodes.values().filter(|n| n.helm.is_some()).count(),
            4
        );
        assert_eq!(gate.max.load(Ordering::SeqCst), expected, "bound {bound}");
    }
}

#[tokio::test]
async fn values_override_an_unknown_of_a_values_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("v.yaml"),
        "anchor: ${read.ca.value}\nkeep: 1\n",
    )
    .unwrap();
    let plan_text = |override_anchor: bool| {
        format!(
            "[plan]\nname = \"v\"\n[read.ca]\napi_version = \"v1\"\nkind = \"Secret\"\n\
             namespace = \"x\"\nname = \"ca\"\nkey = \"ca.crt\"\n\
             [helm.app]\nchart = \"{}\"\nnamespace = \"demo\"\nvalues_files = [\"v.yaml\"]\n{}",
            root()
                .join("tests/fixtures/charts/random-material")
                .display(),
            if override_anchor {
                "[helm.app.values]\nanchor = \"fixed\"\n"
            } else {
                ""
            }
        )
    };
    let path = dir.path().join("plan.toml");
    let values_seen: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let render = |text: String| {
        let path = path.clone();
        let values = values_seen.clone();
        async move {
            std::fs::write(&path, text).unwrap();
            let plan = load_plan(&path, &[]);
            let runner = Arc::new(Scripted {
                stdout: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
                seen: Default::default(),
                values,
            });
            renderer(runner, Arc::new(MemoryCache::new()))
                .render(&plan.plan, &RenderInputs::default())
                .await
                .unwrap()
                .nodes[&addr("helm.app")]
                .status
                .clone()
        }
    };
    // Without the override the anchor is known after apply: rendered with placeholders, the
    // values file's other values as given.
    assert_eq!(
        render(plan_text(false)).await,
        NodeStatus::RenderedWithPlaceholders {
            unknown_references: vec!["read.ca.value".into()]
        }
    );
    {
        let values = values_seen.lock().unwrap();
        assert_eq!(values.len(), 2, "two placeholder renders: {values:?}");
        for v in values.iter() {
            assert_eq!(v["keep"], 1);
            assert!(
                v["anchor"]
                    .as_str()
                    .unwrap()
                    .starts_with("-----BEGIN CERTIFICATE-----"),
                "{v}"
            );
        }
        assert_ne!(values[0]["anchor"], values[1]["anchor"]);
    }
    assert_eq!(render(plan_text(true)).await, NodeStatus::Rendered);
}

/// Ignore rules: the fields they name are not rendered (so apply gives them up), whether the
/// rule is the node's, the plan's or built in; other fields and objects are untouched.
#[tokio::test]
async fn ignored_fields_are_dropped_from_what_is_applied() {
    let loaded = load_plan(
        &root().join("tests/fixtures/valid/ignore_rules/plan.toml"),
        &[],
    );
    let rendered = renderer(Arc::new(helm()), Arc::new(MemoryCache::new()))
        .render(&loaded.plan, &RenderInputs::default())
        .await
        .unwrap();
    let object = |node: &str, kind: &str| {
        rendered.nodes[&addr(node)]
            .objects
            .iter()
            .find(|o| o.object_ref.kind == kind)
            .unwrap()
            .object
            .clone()
    };
    let deployment = object("manifest.web", "Deployment");
    // Built in: the HPA of the plan scales it.
    assert!(
        deployment["spec"].get("replicas").is_none(),
        "{deployment:#}"
    );
    // The plan-wide rule.
    assert!(
        deployment["spec"]["template"]["metadata"]
            .get("annotations")
            .and_then(|a| a.get("kubectl.kubernetes.io/restartedAt"))
            .is_none(),
        "{deployment:#}"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    // The node's rule.
    let tuning = object("manifest.web", "ConfigMap");
    assert_eq!(tuning["data"], serde_json::json!({"mode": "fast"}));
    // Built in: cert-manager injects the CA bundle of an annotated webhook.
    let webhook = object("manifest.webhook", "ValidatingWebhookConfiguration");
    assert!(
        webhook["webhooks"][0]["clientConfig"]
            .get("caBundle")
            .is_none(),
        "{webhook:#}"
    );
    assert_eq!(
        webhook["webhooks"][0]["clientConfig"]["service"]["name"],
        "web-validator"
    );
    // The HPA itself is rendered as written.
    let hpa = object("manifest.web", "HorizontalPodAutoscaler");
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
}

#[tokio::test]
async fn helm_version_is_asked_once_ahead_of_the_renders_that_share_it() {
    let plan = sample();
    let inputs = with_trust_anchor();
    let counting = Counting::new(helm());
    let version = Arc::new(tokio::sync::OnceCell::new());
    // Asked ahead (as a session does while it connects), and kept in the cache.
    let cache = Arc::new(MemoryCache::new());
    meshplan::render::prime_helm_version(counting.clone(), cache.clone(), version.clone()).await;
    assert_eq!(counting.versions.load(Ordering::SeqCst), 1);
    assert_eq!(cache.len(), 1);
    // Two renders with caches of their own (a lint and a change set): neither asks again.
    for _ in 0..2 {
        let r = renderer(counting.clone(), Arc::new(MemoryCache::new()))
            .with_helm_version(version.clone())
            .render(&plan.plan, &inputs)
            .await
            .unwrap();
        assert_eq!(r.helm_version.as_deref(), version.get().map(String::as_str));
    }
    assert_eq!(counting.versions.load(Ordering::SeqCst), 1);
    // A helm that cannot run leaves the version unknown: the render reports it per node.
    let missing = Arc::new(tokio::sync::OnceCell::new());
    meshplan::render::prime_helm_version(
        Arc::new(HelmProcess::from_setting(Some("/nonexistent/helm".into()))),
        Arc::new(MemoryCache::new()),
        missing.clone(),
    )
    .await;
    assert!(missing.get().is_none());
    let e = renderer(
        Arc::new(HelmProcess::from_setting(Some("/nonexistent/helm".into()))),
        Arc::new(MemoryCache::new()),
    )
    .with_helm_version(missing)
    .render(&plan.plan, &inputs)
    .await
    .unwrap_err();
    assert!(
        matches!(e.errors[0], RenderError::HelmNotFound { .. }),
        "{:?}",
        e.errors
    );
}
