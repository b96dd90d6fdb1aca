//! Render stability: charts that generate material on every render (a test chart of our own
//! and the stand-in Linkerd control plane).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use meshplan::load::LoadedPlan;
use meshplan::model::Address;
use meshplan::render::{
    CarryOver, MemoryCache, NodeRender, PreviousRender, RenderInputs, RenderSource, SincePrevious,
};

use crate::render::{Counting, TRUST_ANCHOR, helm, load_plan, renderer, sample, trust_anchor};
use crate::support::root;

fn material_plan(dir: &std::path::Path, greeting: &str) -> LoadedPlan {
    let chart = root().join("tests/fixtures/charts/random-material");
    let path = dir.join("plan.toml");
    std::fs::write(
        &path,
        format!(
            "[plan]\nname = \"material\"\n[vars]\ngreeting = \"hello\"\n\
             [helm.material]\nchart = \"{}\"\nnamespace = \"demo\"\n\
             [helm.material.values]\ngreeting = \"${{var.greeting}}\"\n",
            chart.display()
        ),
    )
    .unwrap();
    load_plan(&path, &[&format!("greeting={greeting}")])
}

fn material() -> Address {
    Address::parse("helm.material").unwrap()
}

async fn render_material(
    plan: &LoadedPlan,
    previous: Option<PreviousRender>,
    cache: Arc<MemoryCache>,
) -> (NodeRender, usize) {
    render_material_with(plan, previous, cache, RenderInputs::default()).await
}

async fn render_material_with(
    plan: &LoadedPlan,
    previous: Option<PreviousRender>,
    cache: Arc<MemoryCache>,
    mut inputs: RenderInputs,
) -> (NodeRender, usize) {
    let counting = Counting::new(helm());
    if let Some(p) = previous {
        inputs.previous.insert(material(), p);
    }
    let r = renderer(counting.clone(), cache)
        .render(&plan.plan, &inputs)
        .await
        .unwrap();
    (r.nodes[&material()].clone(), counting.count())
}

/// The object of `node` named `name`.
fn named<'n>(node: &'n NodeRender, name: &str) -> &'n meshplan::render::RenderedObject {
    node.objects
        .iter()
        .find(|o| o.object_ref.name == name)
        .unwrap()
}

fn by_name(node: &NodeRender) -> BTreeMap<String, (SincePrevious, BTreeSet<String>)> {
    node.objects
        .iter()
        .chain(&node.hooks)
        .map(|o| {
            (
                format!("{}/{}", o.object_ref.kind, o.object_ref.name),
                (o.since_previous, o.volatile_paths.clone()),
            )
        })
        .collect()
}

/// The material chart rendered with one value and no previous render, then with another over
/// that render (fresh caches both times): the first render, the second, and how many times
/// helm rendered the second.
async fn render_with_changed_values(dir: &std::path::Path) -> (NodeRender, NodeRender, usize) {
    let (applied, _) = render_material(
        &material_plan(dir, "hello"),
        None,
        Arc::new(MemoryCache::new()),
    )
    .await;
    let (next, runs) = render_material(
        &material_plan(dir, "bonjour"),
        Some(applied.to_previous()),
        Arc::new(MemoryCache::new()),
    )
    .await;
    (applied, next, runs)
}

#[tokio::test]
async fn volatile_paths_are_found_by_rendering_twice() {
    let dir = tempfile::tempdir().unwrap();
    // Changed inputs over a previous render: rendered twice, at once, to find the material.
    let (_, node, runs) = render_with_changed_values(dir.path()).await;
    assert_eq!(runs, 2);
    let objects = by_name(&node);
    let paths = |k: &str| objects[k].1.iter().cloned().collect::<Vec<_>>();
    assert_eq!(
        paths("Secret/webhook-tls"),
        ["/data/tls.crt", "/data/tls.key"]
    );
    assert_eq!(
        paths("MutatingWebhookConfiguration/random-material-webhook"),
        ["/webhooks/0/clientConfig/caBundle"]
    );
    assert_eq!(
        paths("Deployment/webhook"),
        ["/spec/template/metadata/annotations/checksum~1config"]
    );
    assert_eq!(paths("Secret/token"), ["/stringData/token"]);
    assert!(paths("ConfigMap/greeting").is_empty());
    assert!(paths("Job/random-material-post-install").is_empty());
    let helm = node.helm.as_ref().unwrap();
    assert_eq!(helm.source, RenderSource::Helm);
    assert!(!helm.output.volatile_unknown);
    // Secrets are sensitive.
    assert!(
        named(&node, "token")
            .sensitive_paths
            .contains("/stringData")
    );
}

#[tokio::test]
async fn a_first_render_of_a_generating_chart_runs_helm_once() {
    let dir = tempfile::tempdir().unwrap();
    let plan = material_plan(dir.path(), "hello");
    let cache = Arc::new(MemoryCache::new());
    let (node, runs) = render_material(&plan, None, cache.clone()).await;
    // No previous render: nothing to carry generated material over from, nor to compare it
    // with, so no second render to find it.
    assert_eq!(runs, 1);
    let helm = node.helm.as_ref().unwrap();
    assert_eq!(helm.source, RenderSource::Helm);
    assert!(helm.output.volatile_unknown);
    assert!(matches!(
        &helm.carry_over,
        Some(CarryOver::Regenerated { reason }) if reason.contains("no previous render")
    ));
    let objects = by_name(&node);
    assert!(
        objects
            .values()
            .all(|(s, v)| *s == SincePrevious::New && v.is_empty())
    );
    // The same inputs again without a previous render (the plan after a plan, `apply FILE`
    // after `plan --out`): the cached render, generated material included.
    let (again, runs) = render_material(&plan, None, cache).await;
    assert_eq!(runs, 0);
    assert_eq!(again.helm.as_ref().unwrap().source, RenderSource::Cache);
    assert_eq!(again.objects, node.objects);
}

#[tokio::test]
async fn a_cached_single_render_is_not_reused_over_a_previous_render() {
    let dir = tempfile::tempdir().unwrap();
    // What was applied: the chart with other inputs, its material generated then.
    let (applied, _) = render_material(
        &material_plan(dir.path(), "bonjour"),
        None,
        Arc::new(MemoryCache::new()),
    )
    .await;
    // A plan of "hello" without a previous render fills the cache with a single render.
    let plan = material_plan(dir.path(), "hello");
    let cache = Arc::new(MemoryCache::new());
    let (_, runs) = render_material(&plan, None, cache.clone()).await;
    assert_eq!(runs, 1);
    // Now the node has a previous render: the cached output (whose generated material was
    // never found) is not used; the chart is rendered twice and the material carried over.
    let (next, runs) = render_material(&plan, Some(applied.to_previous()), cache.clone()).await;
    assert_eq!(runs, 2);
    let helm = next.helm.as_ref().unwrap();
    assert_eq!(helm.source, RenderSource::Helm);
    assert_eq!(helm.carry_over, Some(CarryOver::CarriedOver));
    assert!(!helm.output.volatile_unknown);
    let objects = by_name(&next);
    for (name, (since, _)) in &objects {
        let expected = if name == "ConfigMap/greeting" {
            SincePrevious::Changed
        } else {
            SincePrevious::Same
        };
        assert_eq!(*since, expected, "{name}");
    }
    // That render replaced the cache entry: the next plan over the same previous render reuses
    // it, carried over material included.
    let (again, runs) = render_material(&plan, Some(applied.to_previous()), cache).await;
    assert_eq!(runs, 0);
    assert_eq!(again.helm.as_ref().unwrap().source, RenderSource::Cache);
    assert_eq!(again.objects, next.objects);
}

#[tokio::test]
async fn replan_with_unchanged_inputs_reuses_the_applied_render() {
    let dir = tempfile::tempdir().unwrap();
    let plan = material_plan(dir.path(), "hello");
    let (applied, _) = render_material(&plan, None, Arc::new(MemoryCache::new())).await;
    // A new run: empty cache, the applied render from state.
    let (again, runs) = render_material(
        &plan,
        Some(applied.to_previous()),
        Arc::new(MemoryCache::new()),
    )
    .await;
    assert_eq!(runs, 0, "helm must not run when the inputs did not change");
    assert_eq!(again.helm.as_ref().unwrap().source, RenderSource::Previous);
    assert_eq!(again.objects, {
        let mut expected = applied.objects.clone();
        for o in &mut expected {
            o.since_previous = SincePrevious::Same;
        }
        expected
    });
    assert!(
        by_name(&again)
            .values()
            .all(|(s, _)| *s == SincePrevious::Same)
    );
}

#[tokio::test]
async fn changed_inputs_carry_generated_material_over() {
    let dir = tempfile::tempdir().unwrap();
    let (applied, next, runs) = render_with_changed_values(dir.path()).await;
    assert_eq!(runs, 2);
    assert_eq!(
        next.helm.as_ref().unwrap().carry_over,
        Some(CarryOver::CarriedOver)
    );
    let objects = by_name(&next);
    for (name, (since, _)) in &objects {
        let expected = if name == "ConfigMap/greeting" {
            SincePrevious::Changed
        } else {
            SincePrevious::Same
        };
        assert_eq!(*since, expected, "{name}");
    }
    // The certificate and the caBundle still come from the same (previous) render.
    let find = |n: &NodeRender, name: &str| named(n, name).object.clone();
    assert_eq!(find(&next, "webhook-tls"), find(&applied, "webhook-tls"));
    assert_eq!(
        find(&next, "random-material-webhook"),
        find(&applied, "random-material-webhook")
    );
    assert_eq!(find(&next, "greeting")["data"]["greeting"], "bonjour");
}

#[tokio::test]
async fn regenerated_material_is_reported_when_it_cannot_be_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let (applied, _) = render_material(
        &material_plan(dir.path(), "hello"),
        None,
        Arc::new(MemoryCache::new()),
    )
    .await;
    // The applied render had no webhook configuration (e.g. an older chart version).
    let mut previous = applied.to_previous();
    let output = previous.chart_output.as_mut().unwrap();
    output
        .documents
        .retain(|d| d.object["kind"] != "MutatingWebhookConfiguration");
    previous
        .objects
        .retain(|o| o["kind"] != "MutatingWebhookConfiguration");
    let plan = material_plan(dir.path(), "bonjour");
    let (next, _) = render_material(&plan, Some(previous), Arc::new(MemoryCache::new())).await;
    match &next.helm.as_ref().unwrap().carry_over {
        Some(CarryOver::Regenerated { reason }) => {
            assert!(
                reason.contains("MutatingWebhookConfiguration/random-material-webhook is new"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    let objects = by_name(&next);
    let since = |k: &str| objects[k].0;
    assert_eq!(
        since("Secret/webhook-tls"),
        SincePrevious::OnlyRegeneratedMaterial
    );
    assert_eq!(
        since("Deployment/webhook"),
        SincePrevious::OnlyRegeneratedMaterial
    );
    assert_eq!(
        since("Secret/token"),
        SincePrevious::OnlyRegeneratedMaterial
    );
    assert_eq!(since("ConfigMap/greeting"), SincePrevious::Changed);
    assert_eq!(
        since("MutatingWebhookConfiguration/random-material-webhook"),
        SincePrevious::New
    );
    assert_eq!(
        since("Job/random-material-post-install"),
        SincePrevious::Same
    );
}

#[tokio::test]
async fn regenerate_renders_anew_without_carrying_over() {
    let dir = tempfile::tempdir().unwrap();
    let plan = material_plan(dir.path(), "hello");
    let cache = Arc::new(MemoryCache::new());
    let (applied, _) = render_material(&plan, None, cache.clone()).await;
    let inputs = RenderInputs {
        regenerate: [material()].into(),
        ..Default::default()
    };
    // Same inputs, the applied render and a warm cache: still rendered anew.
    let (next, runs) =
        render_material_with(&plan, Some(applied.to_previous()), cache, inputs).await;
    assert_eq!(runs, 2);
    let helm = next.helm.as_ref().unwrap();
    assert_eq!(helm.source, RenderSource::Helm);
    assert!(matches!(
        helm.carry_over,
        Some(CarryOver::Regenerated { .. })
    ));
    let objects = by_name(&next);
    assert_eq!(
        objects["Secret/webhook-tls"].0,
        SincePrevious::OnlyRegeneratedMaterial
    );
    assert_eq!(objects["ConfigMap/greeting"].0, SincePrevious::Same);
}

#[tokio::test]
async fn control_plane_stand_in_is_stable_across_plans() {
    let plan = sample();
    let cp = Address::parse("helm.linkerd_control_plane").unwrap();
    let render = |reads, previous: BTreeMap<Address, PreviousRender>| {
        let plan = &plan;
        async move {
            let inputs = RenderInputs {
                reads,
                previous,
                targets: Some([Address::parse("helm.linkerd_control_plane").unwrap()].into()),
                ..Default::default()
            };
            renderer(Arc::new(helm()), Arc::new(MemoryCache::new()))
                .render(&plan.plan, &inputs)
                .await
                .unwrap()
                .nodes[&Address::parse("helm.linkerd_control_plane").unwrap()]
                .clone()
        }
    };
    let applied = render(trust_anchor(TRUST_ANCHOR), BTreeMap::new()).await;
    // Rendered once (no previous render), with a canary for the trust anchor: the generated
    // certificates differ in the canary render too, and are masked as derived fields.
    assert!(applied.objects.iter().all(|o| o.volatile_paths.is_empty()));
    assert!(applied.objects.iter().any(|o| {
        o.object_ref.kind != "Secret" && o.sensitive_paths.iter().any(|p| p.ends_with("/caBundle"))
    }));
    let previous = BTreeMap::from([(cp.clone(), applied.to_previous())]);
    // Same inputs: nothing changes.
    let same = render(trust_anchor(TRUST_ANCHOR), previous.clone()).await;
    assert!(
        same.objects
            .iter()
            .all(|o| o.since_previous == SincePrevious::Same)
    );
    // A new trust anchor: only what holds it changes; webhook material is carried over.
    let rotated = "-----BEGIN CERTIFICATE-----\nMIIBanotherAnchor\n-----END CERTIFICATE-----\n";
    let next = render(trust_anchor(rotated), previous).await;
    assert_eq!(
        next.helm.as_ref().unwrap().carry_over,
        Some(CarryOver::CarriedOver)
    );
    // Rendered twice over the previous render: the generated material is known, and not
    // taken for fields derived from the trust anchor.
    let volatile: usize = next.objects.iter().map(|o| o.volatile_paths.len()).sum();
    assert!(
        volatile >= 3,
        "the stand-in generates certificates and checksums"
    );
    assert!(next.objects.iter().any(|o| {
        o.volatile_paths.iter().any(|p| p.ends_with("/caBundle"))
            && !o.sensitive_paths.iter().any(|p| p.ends_with("/caBundle"))
    }));
    let changed: Vec<String> = next
        .objects
        .iter()
        .filter(|o| o.since_previous != SincePrevious::Same)
        .map(|o| o.object_ref.short().to_string())
        .collect();
    assert!(!changed.is_empty());
    for o in next
        .objects
        .iter()
        .filter(|o| o.since_previous != SincePrevious::Same)
    {
        assert_eq!(o.since_previous, SincePrevious::Changed);
        assert!(
            o.object.to_string().contains("anotherAnchor"),
            "{}",
            o.object_ref
        );
    }
    assert!(next.objects.iter().all(|o| !o.volatile_paths.is_empty()
        || o.since_previous == SincePrevious::Same
        || o.object.to_string().contains("anotherAnchor")));
}

/// A chart of `templates` (file name, text) in `dir`, and a plan of it as `helm.material`.
fn chart_plan(dir: &std::path::Path, templates: &[(&str, &str)]) -> LoadedPlan {
    let chart = dir.join("chart");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: plain\nversion: 0.1.0\n",
    )
    .unwrap();
    for (name, text) in templates {
        std::fs::write(chart.join("templates").join(name), text).unwrap();
    }
    let path = dir.join("plan.toml");
    std::fs::write(
        &path,
        format!(
            "[plan]\nname = \"material\"\n[helm.material]\nchart = \"{}\"\nnamespace = \"demo\"\n",
            chart.display()
        ),
    )
    .unwrap();
    load_plan(&path, &[])
}

#[tokio::test]
async fn a_chart_that_generates_nothing_is_rendered_once() {
    let plain = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n\
                 data:\n  release: {{ .Release.Name | quote }}\n  \
                 note: \"randAlphaNum now genCA\"\n";
    let dir = tempfile::tempdir().unwrap();
    let plan = chart_plan(dir.path(), &[("plain.yaml", plain)]);
    let (node, runs) = render_material(&plan, None, Arc::new(MemoryCache::new())).await;
    assert_eq!(runs, 1, "no template action generates material");
    assert!(by_name(&node)["ConfigMap/plain"].1.is_empty());

    // The same chart with a template that generates a token: rendered twice, at once, over a
    // previous render, and the token is volatile.
    let token = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\n\
                 stringData:\n  token: {{ randAlphaNum 16 | quote }}\n";
    let dir = tempfile::tempdir().unwrap();
    let plan = chart_plan(dir.path(), &[("plain.yaml", plain), ("token.yaml", token)]);
    let (first, runs) = render_material(&plan, None, Arc::new(MemoryCache::new())).await;
    assert_eq!(runs, 1, "no previous render to carry the token over from");
    // Over a previous render of other inputs (here: an older render of the chart).
    let mut previous = first.to_previous();
    previous.cache_key = Some("an older render".into());
    let (node, runs) = render_material(&plan, Some(previous), Arc::new(MemoryCache::new())).await;
    assert_eq!(runs, 2);
    let objects = by_name(&node);
    assert!(objects["ConfigMap/plain"].1.is_empty());
    assert_eq!(
        objects["Secret/token"].1.iter().collect::<Vec<_>>(),
        ["/stringData/token"]
    );
}

/// A stand-in for helm that logs its subcommand (one line per run) to `log` and runs the real
/// helm (the first on `PATH`).
pub(crate) fn logging_helm(dir: &std::path::Path, log: &std::path::Path) -> std::path::PathBuf {
    logging_helm_of(dir, log, "$1")
}

/// A helm that logs `fields` (shell words, e.g. `$1 $2 $3`) of each run to `log`, then runs
/// the helm on PATH.
pub(crate) fn logging_helm_of(
    dir: &std::path::Path,
    log: &std::path::Path,
    fields: &str,
) -> std::path::PathBuf {
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("helm"))
        .find(|p| p.is_file())
        .expect("helm on PATH");
    let script = dir.join("helm-logging");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"{fields}\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    script
}

/// The helm runs logged since the last call (`version`, `template`, ...), and empties the log.
pub(crate) fn helm_runs(log: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    let mut runs: Vec<String> = text.lines().map(str::to_owned).collect();
    runs.sort();
    runs
}

#[test]
fn a_first_install_applies_one_render_and_a_later_change_carries_material_over() {
    let chart = root().join("tests/fixtures/charts/random-material");
    let s = crate::apply_cmd::Setup::with_plan(&format!(
        "[plan]\nname = \"material\"\n[vars]\ngreeting = \"hello\"\n\
         [manifest.ns]\nyaml = '''\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n'''\n\
         [helm.material]\nchart = \"{}\"\nnamespace = \"demo\"\ndepends_on = [\"manifest.ns\"]\n\
         [helm.material.values]\nhooks = false\ngreeting = \"${{var.greeting}}\"\n",
        chart.display()
    ));
    let log = s.cluster.dir.path().join("helm.log");
    let helm = logging_helm(s.cluster.dir.path(), &log);
    let run = |sub: &str, extra: &[&str]| {
        let out = s
            .command(sub, &s.plan, extra)
            .env("MESHPLAN_HELM", &helm)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    // A first install, only shown: no previous render, and the keys are stand-ins, so the
    // chart's copy with cheap keys is rendered twice (to mask the generated fields), and
    // helm's version asked once.
    let (code, out, err) = run("plan", &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(helm_runs(&log), ["template", "template", "version"]);
    // The apply does not take the stand-in render: the chart renders once, with real keys
    // (no second render to find the material).
    let (code, out, err) = run("apply", &["--auto-approve"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(helm_runs(&log), ["template"]);
    let tls = || s.cluster.get_json(&["secret", "-n", "demo", "webhook-tls"])["data"].clone();
    let applied_tls = tls();
    // A plan after the apply: no change, and no process at all (the applied render and helm's
    // version come from the state).
    let (code, out, err) = run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(helm_runs(&log).is_empty());
    // Changed values over the applied render: rendered twice, and the generated material is
    // carried over, so only the greeting changes.
    let (code, out, err) = run("apply", &["--auto-approve", "--var", "greeting=bonjour"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(helm_runs(&log), ["template", "template"]);
    assert!(out.contains("greeting"), "{out}");
    assert!(!out.contains("webhook-tls"), "{out}");
    assert_eq!(tls(), applied_tls);
    let greeting = s.cluster.get_json(&["configmap", "-n", "demo", "greeting"]);
    assert_eq!(greeting["data"]["greeting"], "bonjour");
}

/// A shown plan without a canary render (no sensitive input) renders the copy with cheap keys
/// twice: the fields that differ are the generated ones, masked because their stand-in values
/// are not what an apply would write. A render to apply runs the chart itself once and masks
/// none of them.
#[tokio::test]
async fn stand_in_keys_without_a_canary_render_are_found_and_masked() {
    let dir = tempfile::tempdir().unwrap();
    let plan = material_plan(dir.path(), "hello");
    let chart = root().join("tests/fixtures/charts/random-material");
    let render = |stand_in_keys: bool| {
        let plan = &plan;
        async move {
            let helm = crate::masking::recorder();
            let options = meshplan::render::RenderOptions {
                stand_in_keys,
                ..crate::render::offline_options()
            };
            let node = meshplan::render::Renderer::new(
                helm.clone(),
                Arc::new(MemoryCache::new()),
                options,
            )
            .render(&plan.plan, &RenderInputs::default())
            .await
            .unwrap()
            .nodes[&material()]
                .clone();
            let charts: Vec<String> = helm
                .runs
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.0.clone())
                .collect();
            (node, charts)
        }
    };
    let sensitive = |node: &NodeRender, name: &str| named(node, name).sensitive_paths.clone();
    let original = chart.display().to_string();

    let (shown, charts) = render(true).await;
    assert_eq!(charts.len(), 2, "{charts:?}");
    assert!(charts.iter().all(|c| c != &original), "{charts:?}");
    assert!(
        sensitive(&shown, "random-material-webhook").contains("/webhooks/0/clientConfig/caBundle")
    );
    assert!(
        sensitive(&shown, "webhook")
            .contains("/spec/template/metadata/annotations/checksum~1config")
    );
    assert!(sensitive(&shown, "greeting").is_empty());

    let (applied, charts) = render(false).await;
    assert_eq!(charts, [original]);
    assert!(sensitive(&applied, "random-material-webhook").is_empty());
    assert!(sensitive(&applied, "webhook").is_empty());
}

/// `show` renders as `helm template` does, real keys included (viz), except a chart rendered
/// with placeholders (the control plane, whose values read the identity issuer from the
/// cluster): that output is never applied, so it renders from the copy with cheap keys.
#[test]
fn placeholder_renders_take_cheap_keys_and_show_takes_real_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("helm.log");
    let script = logging_helm_of(dir.path(), &log, "$1 $2 $3");
    let out = crate::support::meshplan()
        .args([
            "show",
            "plans/linkerd.toml",
            "--repo-dir",
            "linkerd=plans/charts",
            "--repo-dir",
            "jetstack=plans/charts",
        ])
        .env("MESHPLAN_HELM", &script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let runs = std::fs::read_to_string(&log).unwrap();
    let charts = |release: &str| -> Vec<String> {
        runs.lines()
            .filter(|l| l.starts_with(&format!("template {release} ")))
            .map(str::to_owned)
            .collect()
    };
    let control_plane = charts("linkerd-control-plane");
    assert!(!control_plane.is_empty(), "{runs}");
    assert!(
        control_plane.iter().all(|l| l.contains("meshplan-chart-")),
        "{runs}"
    );
    let viz = charts("linkerd-viz");
    assert!(!viz.is_empty(), "{runs}");
    assert!(viz.iter().all(|l| !l.contains("meshplan-chart-")), "{runs}");
}
