//! Plans without blind spots: a helm node whose values use a value read during apply is
//! planned with placeholders (its objects listed, the fields that depend on the value
//! `(known after apply)`), applied when the real render is what the plan showed, refused
//! with the differences otherwise; a chart that refuses the placeholder is rendered during
//! apply, with the reason shown.

use serde_json::Value;

use crate::apply_cmd::Setup;
use crate::support::root;

/// A Secret holding `anchor` as `ca.crt`, a read of it, and the `uses-value` chart taking
/// it as its `anchor` value (`strict`: the chart refuses anything but an https URL).
fn plan(anchor: &str, strict: bool) -> String {
    format!(
        r#"
[plan]
name = "placeholders"

[manifest.anchor]
namespace = "app"
yaml = '''
apiVersion: v1
kind: Namespace
metadata:
  name: app
---
apiVersion: v1
kind: Secret
metadata:
  name: anchor
stringData:
  ca.crt: |
    {anchor}
'''

[read.anchor]
api_version = "v1"
kind = "Secret"
namespace = "app"
name = "anchor"
key = "ca.crt"
depends_on = ["manifest.anchor"]

[helm.app]
chart = "{chart}"
namespace = "app"
depends_on = ["manifest.anchor"]
[helm.app.values]
anchor = "${{read.anchor.value}}"
strict = {strict}
"#,
        chart = root().join("tests/fixtures/charts/uses-value").display(),
    )
}

const PEM: &str = "-----BEGIN CERTIFICATE-----";

fn node<'a>(report: &'a Value, address: &str) -> &'a Value {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["address"] == address)
        .unwrap_or_else(|| panic!("no node {address} in {report:#}"))
}

#[test]
fn the_first_plan_lists_the_objects_and_marks_the_fields_that_depend_on_the_value() {
    let s = Setup::with_plan(&plan(PEM, false));
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        out.contains(
            "helm.app (read.anchor.value is known after apply: rendered with a placeholder)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  + v1 ConfigMap app/uses-value will be created\n      + data.anchor: (known after apply)\n      + data.sum: (known after apply)\n"
        ),
        "the value and its checksum are unknown: {out}"
    );
    assert!(
        !out.contains("data.pem") && !out.contains("data.fixed"),
        "fields that do not depend on the value are known: {out}"
    );
    assert!(out.contains("  + v1 ServiceAccount app/uses-value will be created\n"));
    // The two objects of the chart, the namespace and the Secret.
    assert!(
        out.contains("Plan: 4 to add, 0 to change, 0 to destroy.\n"),
        "{out}"
    );
    assert!(!out.contains("rendered during apply"), "{out}");

    let (code, out, err) = s.run("plan", &["--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let app = node(&report, "helm.app");
    assert_eq!(app["status"], "planned");
    assert_eq!(
        app["unknown_inputs"],
        serde_json::json!(["read.anchor.value"])
    );
    let config = app["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"]["kind"] == "ConfigMap")
        .unwrap();
    let unknown: Vec<&str> = config["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["unknown"] == true)
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(unknown, ["data.anchor", "data.sum"]);
    assert_eq!(report["summary"]["add"], 4);
}

#[test]
fn apply_renders_with_the_value_and_goes_on_when_it_is_as_planned() {
    let s = Setup::with_plan(&plan(PEM, false));
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("helm.app: rendered with the values read, as planned"),
        "{err}"
    );
    let config = s
        .cluster
        .get_json(&["configmap", "-n", "app", "uses-value"]);
    assert_eq!(config["data"]["anchor"].as_str().unwrap().trim(), PEM);
    assert_eq!(config["data"]["pem"], "yes");
    // Planned again, nothing changes.
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn apply_stops_and_rolls_back_when_a_known_field_is_not_what_the_plan_showed() {
    // The placeholder is PEM-shaped (the read takes a `.crt`), the real value is not: the
    // chart's `pem` field, known at plan time, is other than planned.
    let s = Setup::with_plan(&plan("not-a-certificate", false));
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("helm.app: rendered with the values read, it is not what the plan showed:"),
        "{err}"
    );
    assert!(
        err.contains("v1 ConfigMap app/uses-value: data.pem is other than in the plan"),
        "{err}"
    );
    assert!(err.contains("rolled back"), "{err}");
    // Nothing of the chart was applied, and the first phase was rolled back.
    let configmaps = s.cluster.get_json(&["configmaps", "-n", "app"]);
    assert!(
        !configmaps["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["metadata"]["name"] == "uses-value"),
        "{configmaps:#}"
    );
    let secrets = s.cluster.get_json(&["secrets", "-A"]);
    assert!(
        !secrets["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["metadata"]["name"] == "anchor"),
        "the first phase is rolled back: {secrets:#}"
    );
}

#[test]
fn a_chart_that_refuses_the_placeholder_is_rendered_during_apply_with_the_reason() {
    let s = Setup::with_plan(&plan("https://anchor.example", true));
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        out.contains(
            "helm.app\n  ? rendered during apply: its values use read.anchor.value, known only during apply, and the chart refuses a placeholder: "
        ),
        "{out}"
    );
    assert!(out.contains("anchor must be an https URL"), "{out}");
    // Apply renders it with the real value, which the chart accepts.
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("helm.app: rendered during apply with the values read"),
        "{err}"
    );
}

/// The anchor's namespace and Secret as another tool applied them (kubectl, no ownership
/// marks), holding `anchor`.
fn installed_by_kubectl(s: &Setup, anchor: &str) {
    s.cluster
        .apply(
            "anchor.yaml",
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n---\n\
                 apiVersion: v1\nkind: Secret\nmetadata:\n  name: anchor\n  namespace: app\n\
                 stringData:\n  ca.crt: |\n    {anchor}\n"
            ),
        )
        .ok();
}

/// The plan's JSON report and the helm runs it took (`MESHPLAN_HELM` logs them).
fn plan_with_helm_runs(s: &Setup) -> (Value, Vec<String>) {
    let log = s.cluster.dir.path().join("helm.log");
    let helm = crate::render_stability::logging_helm(s.cluster.dir.path(), &log);
    let out = s
        .command("plan", &s.plan, &["--output", "json"])
        .env("MESHPLAN_HELM", &helm)
        .output()
        .unwrap();
    let (code, out, err) = crate::apply_cmd::decode(out);
    assert_eq!(code, 0, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    (report, crate::render_stability::helm_runs(&log))
}

fn actions(node: &Value) -> Vec<String> {
    node["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| format!("{} {}", o["action"].as_str().unwrap(), o["object"]["kind"]))
        .collect()
}

/// Applies, and checks that the chart's ConfigMap holds the anchor read during apply.
fn applies_with_the_anchor(s: &Setup) {
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let config = s
        .cluster
        .get_json(&["configmap", "-n", "app", "uses-value"]);
    assert_eq!(config["data"]["anchor"].as_str().unwrap().trim(), PEM);
}

#[test]
fn over_what_another_tool_installed_a_read_is_resolved_now_and_its_user_rendered_once() {
    let s = Setup::with_plan(&plan(PEM, false));
    installed_by_kubectl(&s, PEM);
    let (report, runs) = plan_with_helm_runs(&s);
    // Adopting the Secret puts only the ownership marks on it: nothing the read reads changes,
    // so the read is resolved now and the chart rendered once, with the value.
    assert_eq!(
        actions(node(&report, "manifest.anchor")),
        ["update \"Namespace\"", "update \"Secret\""]
    );
    assert_eq!(
        node(&report, "read.anchor")["status"],
        "read_now",
        "{:#}",
        node(&report, "manifest.anchor")
    );
    let app = node(&report, "helm.app");
    assert!(app.get("unknown_inputs").is_none(), "{app:#}");
    assert_eq!(
        actions(app),
        ["create \"ServiceAccount\"", "create \"ConfigMap\""]
    );
    assert_eq!(runs, ["template", "version"]);
    // Applied as planned: the read's value during apply is the one the plan read.
    applies_with_the_anchor(&s);
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn a_read_whose_object_the_apply_changes_is_known_after_apply_even_when_it_exists() {
    let s = Setup::with_plan(&plan(PEM, false));
    // The Secret exists with another anchor: the apply changes what the read reads.
    installed_by_kubectl(&s, "-----BEGIN CERTIFICATE----- old");
    let (report, runs) = plan_with_helm_runs(&s);
    assert_eq!(node(&report, "read.anchor")["status"], "read_during_apply");
    let app = node(&report, "helm.app");
    assert_eq!(
        app["unknown_inputs"],
        serde_json::json!(["read.anchor.value"])
    );
    // Rendered with the value read first, then with the two placeholders.
    assert_eq!(runs, ["template", "template", "template", "version"]);
    applies_with_the_anchor(&s);
}
