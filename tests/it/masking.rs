//! Masking by provenance: a secret read from the cluster and passed to a chart that
//! re-indents, quotes, base64-encodes, JSON-embeds and hashes it (`masked-secret`), and to a
//! manifest that interpolates it. Neither the secret nor anything the chart derived from it
//! appears in the plan (text, JSON, the saved change set), show, apply, the state or drift;
//! the render marks each of those fields, also from the render cache.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine as _;
use meshplan::model::Address;
use meshplan::render::{MemoryCache, ReadValue, RenderInputs, RenderOptions, Renderer};
use serde_json::Value;

use crate::apply_cmd::{Setup, decode};
use crate::render::{Counting, helm, load_plan, offline_options, renderer};
use crate::support::root;

/// The secret: multi-line (so that indenting changes it), with characters that quoting and
/// JSON escape (`"`, `<`, `&`, `>`).
fn secret(version: u32) -> String {
    format!(
        "-----BEGIN TEST KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbC0{version}MjM0NTY3ODkw\nhunter{version}<&>\"quoted\"\n-----END TEST KEY-----\n"
    )
}

/// `strict`: the chart fails with a message that quotes the secret.
fn plan(strict: bool) -> String {
    format!(
        r#"
[plan]
name = "masking"

[read.creds]
api_version = "v1"
kind = "Secret"
namespace = "app"
name = "creds"
key = "key.pem"

[helm.app]
chart = "{chart}"
namespace = "app"
[helm.app.values]
password = "${{read.creds.value}}"
user = "admin"
strict = {strict}

[manifest.extra]
namespace = "app"
yaml = '''
apiVersion: v1
kind: ConfigMap
metadata:
  name: manifest-config
data:
  conf: "key=${{read.creds.value}};"
  mode: plain
'''
"#,
        chart = root().join("tests/fixtures/charts/masked-secret").display(),
    )
}

/// Puts the `creds` Secret (and its namespace) in the cluster, as an operator would.
fn put_secret(s: &Setup, value: &str) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
    let run = s.cluster.apply(
        "creds.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: app\ndata:\n  key.pem: {encoded}\n"
        ),
    );
    run.ok();
}

/// What must never be printed for `value`: its lines (but the PEM armour), and every field
/// the chart and the manifest derived from it, as the cluster holds them.
fn forbidden(s: &Setup, value: &str) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = value
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_owned)
        .collect();
    let config = s
        .cluster
        .get_json(&["configmap", "-n", "app", "masked-config"]);
    for (key, v) in config["data"].as_object().unwrap() {
        if key != "user" {
            out.insert(v.as_str().unwrap().to_owned());
        }
    }
    let checksum = config["metadata"]["annotations"]["checksum/key"]
        .as_str()
        .unwrap();
    out.insert(checksum.to_owned());
    let secret = s
        .cluster
        .get_json(&["secret", "-n", "app", "masked-credentials"]);
    out.insert(secret["data"]["key.pem"].as_str().unwrap().to_owned());
    let manifest = s
        .cluster
        .get_json(&["configmap", "-n", "app", "manifest-config"]);
    out.insert(manifest["data"]["conf"].as_str().unwrap().to_owned());
    // The applied values hold the secret as the chart transformed it.
    assert!(
        out.iter().any(|f| f.contains("\\u003c\\u0026\\u003e")),
        "toJson's form is among them: {out:#?}"
    );
    out
}

/// Fails naming the output and the form when any form of `forbidden` is in `text`.
fn assert_masked(what: &str, text: &str, forbidden: &BTreeSet<String>) {
    for form in forbidden {
        // Each line of a multi-line form too: a re-indented copy keeps its lines.
        let lines = form
            .lines()
            .map(str::trim)
            .filter(|l| l.len() >= 12 && !l.starts_with("-----") && !l.contains("admin"));
        for needle in std::iter::once(form.trim()).chain(lines) {
            assert!(
                !text.contains(needle),
                "{what} shows a sensitive value ({needle:?}):\n{text}"
            );
        }
    }
}

fn both((_, out, err): &(i32, String, String)) -> String {
    format!("{out}\n{err}")
}

#[test]
fn masking_holds_through_indent_quote_b64enc_and_tojson_in_every_output() {
    let s = Setup::with_plan(&plan(false));
    put_secret(&s, &secret(1));
    let mut outputs: Vec<(String, String)> = Vec::new();

    // The first plan: everything is created; only sensitive fields are listed.
    let first = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(first.0, 2, "{}", both(&first));
    assert!(
        first
            .1
            .contains("  + v1 ConfigMap app/masked-config will be created\n"),
        "{}",
        first.1
    );
    assert!(
        first
            .1
            .contains("~ data[\"settings.json\"]: (sensitive, changed)"),
        "{}",
        first.1
    );
    outputs.push(("the first plan".into(), both(&first)));
    let shown = decode(
        std::process::Command::new(crate::apply_cmd::BIN)
            .current_dir(root())
            .arg("show")
            .arg(&s.plan)
            .output()
            .expect("show runs"),
    );
    assert_eq!(shown.0, 0, "{}", both(&shown));
    outputs.push(("show".into(), both(&shown)));
    let applied = s.apply(&[]);
    assert_eq!(applied.0, 0, "{}", both(&applied));
    outputs.push(("the first apply".into(), both(&applied)));
    let forbidden_1 = forbidden(&s, &secret(1));

    // The secret is rotated: the plan updates every field derived from it.
    put_secret(&s, &secret(2));
    let changed = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(changed.0, 2, "{}", both(&changed));
    assert!(
        changed
            .1
            .contains("  ~ v1 ConfigMap app/masked-config will be updated in place\n"),
        "{}",
        changed.1
    );
    for field in [
        "metadata.annotations[\"checksum/key\"]",
        "data[\"indented.yaml\"]",
        "data[\"nindented.yaml\"]",
        "data.flags",
        "data.encoded",
        "data[\"docker.json.b64\"]",
        "data[\"settings.json\"]",
        "data[\"app.yaml\"]",
        "data.conf",
    ] {
        assert!(
            changed
                .1
                .contains(&format!("~ {field}: (sensitive, changed)")),
            "{field} is masked: {}",
            changed.1
        );
    }
    outputs.push(("the plan of the rotation".into(), both(&changed)));
    let json = s.run("plan", &["--output", "json"]);
    assert_eq!(json.0, 0, "{}", both(&json));
    let report: Value = serde_json::from_str(&json.1).expect("the plan is JSON");
    let fields: Vec<&Value> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["objects"].as_array().unwrap())
        .flat_map(|o| o["fields"].as_array().into_iter().flatten())
        .collect();
    assert!(
        fields
            .iter()
            .any(|f| f["path"] == "data.encoded" && f["sensitive"] == true),
        "{}",
        json.1
    );
    outputs.push(("plan --output json".into(), both(&json)));
    let saved = s.cluster.dir.path().join("changes.json");
    let out = s.run("plan", &["--out", saved.to_str().unwrap()]);
    assert_eq!(out.0, 0, "{}", both(&out));
    outputs.push((
        "the saved change set".into(),
        std::fs::read_to_string(&saved).expect("the change set is saved"),
    ));
    let applied = s.apply(&["-v"]);
    assert_eq!(applied.0, 0, "{}", both(&applied));
    outputs.push(("the apply of the rotation".into(), both(&applied)));
    let json_apply = s.apply(&["--output", "json"]);
    outputs.push(("apply --output json".into(), both(&json_apply)));
    let forbidden_2 = forbidden(&s, &secret(2));

    // The state keeps every derived field sealed.
    let plan_path = s.plan.to_str().unwrap().to_owned();
    for node in ["helm.app", "manifest.extra"] {
        for extra in [&[][..], &["--output", "json"][..]] {
            let mut args = vec!["show", plan_path.as_str(), node];
            args.extend_from_slice(extra);
            let shown = s.state_cmd(&args);
            assert_eq!(shown.0, 0, "{}", both(&shown));
            assert!(shown.1.contains("masked-config") || node == "manifest.extra");
            outputs.push((format!("state show {node} {extra:?}"), both(&shown)));
        }
    }

    // Drift: the live ConfigMap edited by hand, a derived field and a plain one.
    s.cluster
        .kubectl(&[
            "patch",
            "configmap",
            "-n",
            "app",
            "masked-config",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"encoded":"dGFtcGVyZWQ=","user":"root"}}"#,
        ])
        .ok();
    for format in ["human", "json"] {
        let out = decode(
            std::process::Command::new(crate::apply_cmd::BIN)
                .current_dir(root())
                .env("NO_COLOR", "1")
                .arg("drift")
                .arg(&s.plan)
                .arg("--kubeconfig")
                .arg(&s.cluster.kubeconfig)
                .arg("--state")
                .arg(&s.state)
                .args(["--format", format])
                .output()
                .expect("drift runs"),
        );
        assert!(
            out.1.contains("root"),
            "the plain field's drift is shown: {}",
            both(&out)
        );
        outputs.push((format!("drift --format {format}"), both(&out)));
    }

    for (what, text) in &outputs {
        assert_masked(what, text, &forbidden_1);
        assert_masked(what, text, &forbidden_2);
    }
}

#[test]
fn masking_redacts_a_helm_message_that_quotes_the_secret() {
    let s = Setup::with_plan(&plan(true));
    put_secret(&s, &secret(1));
    for extra in [&[][..], &["--output", "json"][..]] {
        let (code, out, err) = s.run("plan", extra);
        assert_eq!(code, 1, "{out}\n{err}");
        let text = format!("{out}\n{err}");
        assert!(text.contains("refusing the key"), "{text}");
        assert!(text.contains("(sensitive)"), "{text}");
        for line in secret(1).lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "{line:?} is shown:\n{text}");
        }
    }
}

/// The render itself: every field derived from the secret is marked, the digest (which no
/// derived form shows) by provenance; a second render takes the marks from the cache without
/// running helm.
#[tokio::test]
async fn masking_marks_every_derived_field_and_keeps_the_marks_in_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, plan(false)).unwrap();
    let loaded = load_plan(&path, &[]);
    let reads = BTreeMap::from([(
        Address::parse("read.creds").unwrap(),
        ReadValue {
            value: secret(1).into(),
            sensitive: true,
        },
    )]);
    let inputs = RenderInputs {
        reads,
        ..RenderInputs::default()
    };
    let helm = Counting::new(helm());
    let cache = Arc::new(MemoryCache::new());
    let r = renderer(helm.clone(), cache.clone());
    let marks = |render: &meshplan::render::PlanRender| -> BTreeMap<String, BTreeSet<String>> {
        render
            .objects()
            .map(|(_, o)| (o.object_ref.name.clone(), o.sensitive_paths.clone()))
            .collect()
    };
    let render = r.render(&loaded.plan, &inputs).await.unwrap();
    let first = marks(&render);
    let expected: BTreeSet<String> = [
        "/metadata/annotations/checksum~1key",
        "/data/indented.yaml",
        "/data/nindented.yaml",
        "/data/flags",
        "/data/encoded",
        "/data/docker.json.b64",
        "/data/settings.json",
        "/data/app.yaml",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(first["masked-config"], expected, "{first:#?}");
    assert!(first["masked-credentials"].contains("/data"), "{first:#?}");
    assert!(
        first["manifest-config"].contains("/data/conf"),
        "{first:#?}"
    );
    assert!(
        !first["manifest-config"].contains("/data/mode"),
        "{first:#?}"
    );
    // The real render and the canary render.
    assert_eq!(helm.count(), 2);

    // Warm: from the cache, with the same marks.
    let again = renderer(helm.clone(), cache.clone())
        .render(&loaded.plan, &inputs)
        .await
        .unwrap();
    assert_eq!(helm.count(), 2, "no helm run when the render is cached");
    assert_eq!(marks(&again), first);
}

/// Runs real helm and records, for each `helm template`, the chart it was given, whether the
/// chart's templates ask for cheap (ECDSA) keys, and whether helm succeeded.
pub(crate) struct ChartRecorder {
    inner: meshplan::render::HelmProcess,
    pub(crate) runs: std::sync::Mutex<Vec<(String, bool, bool)>>,
}

impl meshplan::render::HelmRunner for ChartRecorder {
    fn binary(&self) -> Option<String> {
        self.inner.binary()
    }

    fn run(
        &self,
        args: Vec<String>,
    ) -> futures::future::BoxFuture<
        '_,
        Result<meshplan::render::HelmOutput, meshplan::render::HelmRunError>,
    > {
        Box::pin(async move {
            let chart = (args.first().map(String::as_str) == Some("template"))
                .then(|| args.get(2).cloned())
                .flatten();
            let cheap = chart.as_ref().is_some_and(|c| {
                std::fs::read_to_string(std::path::Path::new(c).join("templates/tls.yaml"))
                    .is_ok_and(|t| t.contains("(genPrivateKey \"ecdsa\")"))
            });
            let out = self.inner.run(args).await;
            if let Some(chart) = chart {
                let ok = out.as_ref().is_ok_and(|o| o.success);
                self.runs.lock().unwrap().push((chart, cheap, ok));
            }
            out
        })
    }
}

fn keyed_chart() -> std::path::PathBuf {
    root().join("tests/fixtures/charts/keyed-secret")
}

/// A plan of the `keyed-secret` chart, whose password is read from the cluster; `rsa_only`:
/// the chart fails on any key but RSA.
fn keyed_plan(dir: &std::path::Path, rsa_only: bool) -> meshplan::load::LoadedPlan {
    let path = dir.join("plan.toml");
    std::fs::write(&path, keyed_plan_text(rsa_only)).unwrap();
    load_plan(&path, &[])
}

fn keyed_plan_text(rsa_only: bool) -> String {
    plan_text_of(&keyed_chart(), rsa_only)
}

/// A plan of `chart` as [`keyed_plan`] writes it.
fn plan_text_of(chart: &std::path::Path, rsa_only: bool) -> String {
    format!(
        r#"
[plan]
name = "keyed"

[read.creds]
api_version = "v1"
kind = "Secret"
namespace = "app"
name = "creds"
key = "password"

[helm.app]
chart = "{}"
namespace = "app"
[helm.app.values]
password = "${{read.creds.value}}"
rsaOnly = {rsa_only}
"#,
        chart.display()
    )
}

/// The read password of [`keyed_plan`].
fn keyed_inputs() -> RenderInputs {
    RenderInputs {
        reads: BTreeMap::from([(
            Address::parse("read.creds").unwrap(),
            ReadValue {
                value: "hunter2".into(),
                sensitive: true,
            },
        )]),
        ..RenderInputs::default()
    }
}

pub(crate) fn recorder() -> Arc<ChartRecorder> {
    Arc::new(ChartRecorder {
        inner: helm(),
        runs: std::sync::Mutex::default(),
    })
}

/// The fields of [`keyed_plan`]'s objects that are masked: the digest of the password, which
/// only provenance finds, and the generated material.
fn assert_keyed_marks(render: &meshplan::render::PlanRender, context: &str) {
    let marks: BTreeMap<String, BTreeSet<String>> = render
        .objects()
        .map(|(_, o)| (o.object_ref.name.clone(), o.sensitive_paths.clone()))
        .collect();
    assert_eq!(
        marks["keyed-tls"],
        BTreeSet::from(
            [
                "/metadata/annotations/checksum~1password",
                "/data",
                "/data/ca.crt",
                "/data/tls.crt",
                "/data/tls.key",
            ]
            .map(String::from)
        ),
        "{context}"
    );
    assert_eq!(
        marks["keyed-config"],
        BTreeSet::from(["/data/ca-bundle.crt".to_owned()]),
        "{context}"
    );
}

/// A chart that generates RSA keys and takes a sensitive value: its canary render runs with a
/// copy of the chart that generates cheap keys, and marks the same fields (the digest of the
/// value, which only provenance finds, and the generated material: a render without a
/// previous one cannot tell it from derived fields). A chart that refuses the
/// cheap keys gets its canary render with the chart itself.
#[tokio::test]
async fn masking_canary_renders_generate_cheap_keys_and_fall_back_to_the_chart() {
    let chart = keyed_chart();
    for rsa_only in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let loaded = keyed_plan(dir.path(), rsa_only);
        let helm = recorder();
        let r = renderer(helm.clone(), Arc::new(MemoryCache::new()));
        let render = r.render(&loaded.plan, &keyed_inputs()).await.unwrap();
        assert_keyed_marks(&render, &format!("rsaOnly = {rsa_only}"));

        let runs = helm.runs.lock().unwrap().clone();
        let original = chart.display().to_string();
        let mut kinds: Vec<(bool, bool, bool)> = runs
            .iter()
            .map(|(c, cheap, ok)| (c == &original, *cheap, *ok))
            .collect();
        kinds.sort();
        let expected = if rsa_only {
            // The copy refused; the canary render ran again with the chart.
            vec![
                (false, true, false),
                (true, false, true),
                (true, false, true),
            ]
        } else {
            vec![(false, true, true), (true, false, true)]
        };
        assert_eq!(kinds, expected, "rsaOnly = {rsa_only}: {runs:?}");

        // The copy goes with the renderer.
        let copy = runs
            .iter()
            .find(|(c, ..)| c != &original)
            .unwrap()
            .0
            .clone();
        assert!(std::path::Path::new(&copy).exists());
        drop(r);
        assert!(!std::path::Path::new(&copy).exists());
    }
}

/// The key of `keyed-tls` in a render of [`keyed_plan`], decoded.
fn keyed_tls_key(render: &meshplan::render::PlanRender) -> String {
    let (_, tls) = render
        .objects()
        .find(|(_, o)| o.object_ref.name == "keyed-tls")
        .unwrap();
    let encoded = tls.object["data"]["tls.key"].as_str().unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

/// A plan that is only shown renders a chart that generates keys from its copy with cheap
/// keys (its first render as well as its canary render) and masks the same fields. Its output
/// is cached apart: a render to apply runs the chart itself and gets its RSA keys, and a shown
/// plan after it takes that real output from the cache. A chart that refuses cheap keys is
/// rendered with its own.
#[tokio::test]
async fn a_shown_plan_renders_stand_in_keys_that_no_apply_takes() {
    let original = keyed_chart().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(MemoryCache::new());
    let shown = RenderOptions {
        stand_in_keys: true,
        ..offline_options()
    };
    // A render of `loaded`, and what helm ran for it: (the chart itself, cheap keys, success),
    // sorted.
    let render = |loaded: meshplan::load::LoadedPlan, cache: Arc<MemoryCache>, options| {
        let original = original.clone();
        async move {
            let helm = recorder();
            let render = Renderer::new(helm.clone(), cache, options)
                .render(&loaded.plan, &keyed_inputs())
                .await
                .unwrap();
            let mut runs: Vec<(bool, bool, bool)> = helm
                .runs
                .lock()
                .unwrap()
                .iter()
                .map(|(c, cheap, ok)| (c == &original, *cheap, *ok))
                .collect();
            runs.sort();
            (render, runs)
        }
    };
    let keyed = || keyed_plan(dir.path(), false);

    let (stand_in, runs) = render(keyed(), cache.clone(), shown.clone()).await;
    assert_eq!(runs, [(false, true, true), (false, true, true)]);
    assert!(keyed_tls_key(&stand_in).starts_with("-----BEGIN EC PRIVATE KEY-----"));
    assert_keyed_marks(&stand_in, "stand-in keys");

    // A render to apply, with the same inputs and cache: the chart itself, real keys.
    let (real, runs) = render(keyed(), cache.clone(), offline_options()).await;
    assert_eq!(runs, [(false, true, true), (true, false, true)]);
    assert!(keyed_tls_key(&real).contains("RSA PRIVATE KEY"));
    assert_keyed_marks(&real, "real keys");

    // A shown plan takes the real output from the cache.
    let (again, runs) = render(keyed(), cache.clone(), shown.clone()).await;
    assert!(runs.is_empty());
    assert_eq!(keyed_tls_key(&again), keyed_tls_key(&real));

    // The copy refused: the first render and the canary render ran with the chart.
    let (refused, runs) = render(
        keyed_plan(dir.path(), true),
        Arc::new(MemoryCache::new()),
        shown,
    )
    .await;
    assert_eq!(
        runs,
        [
            (false, true, false),
            (false, true, false),
            (true, false, true),
            (true, false, true),
        ]
    );
    assert!(keyed_tls_key(&refused).contains("RSA PRIVATE KEY"));
    assert_keyed_marks(&refused, "refused stand-in keys");
}

/// `plan` without `--out` renders stand-in keys; `plan --out` after it renders the chart's own
/// keys (the stand-in output is not taken from the cache), and `apply FILE` writes them.
#[test]
fn a_saved_plan_applies_real_keys_after_a_shown_plan() {
    let s = Setup::with_plan(&keyed_plan_text(false));
    s.cluster
        .apply(
            "creds.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: app\n\
             stringData:\n  password: hunter2\n",
        )
        .ok();
    let (code, _, err) = s.run("plan", &[]);
    assert_eq!(code, 0, "{err}");
    let saved = s.cluster.dir.path().join("changes.json");
    let (code, _, err) = s.run("plan", &["--out", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = decode(s.command("apply", &saved, &[]).output().unwrap());
    assert_eq!(code, 0, "{err}");
    let tls = s.cluster.get_json(&["secret", "-n", "app", "keyed-tls"]);
    let key = base64::engine::general_purpose::STANDARD
        .decode(tls["data"]["tls.key"].as_str().unwrap())
        .unwrap();
    let key = String::from_utf8(key).unwrap();
    assert!(key.contains("RSA PRIVATE KEY"), "{key}");
}

/// A shown plan of a chart that generates keys and refuses the canary values (it checks the
/// password): without a canary render, a second render of the copy finds the generated
/// fields, which are masked.
#[tokio::test]
async fn stand_in_keys_are_masked_when_the_chart_refuses_the_canaries() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("picky");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: picky\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/ca.yaml"),
        "{{- if ne .Values.password \"hunter2\" }}{{ fail \"wrong password\" }}{{ end -}}\n\
         {{- $ca := genCA \"picky-ca\" 365 -}}\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: picky-ca\n\
         data:\n  ca.crt: {{ $ca.Cert | quote }}\n  mode: plain\n",
    )
    .unwrap();
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, plan_text_of(&chart, false)).unwrap();
    let loaded = load_plan(&path, &[]);
    let helm = recorder();
    let options = RenderOptions {
        stand_in_keys: true,
        ..offline_options()
    };
    let render = Renderer::new(helm.clone(), Arc::new(MemoryCache::new()), options)
        .render(&loaded.plan, &keyed_inputs())
        .await
        .unwrap();
    let (_, ca) = render.objects().next().unwrap();
    assert_eq!(
        ca.sensitive_paths,
        BTreeSet::from(["/data/ca.crt".to_owned()])
    );
    // The first render and the second of the copy, and the refused canary render of the copy
    // and of the chart.
    let runs = helm.runs.lock().unwrap().clone();
    let original = chart.display().to_string();
    let mut kinds: Vec<(bool, bool)> = runs
        .iter()
        .map(|(c, _, ok)| (c == &original, *ok))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [(false, false), (false, true), (false, true), (true, false)],
        "{runs:?}"
    );
}
