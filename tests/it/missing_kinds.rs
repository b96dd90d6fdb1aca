//! A kind that neither the cluster serves nor a CRD of the plan defines is a plan-time error
//! naming the kind, the node and what would provide it, even when nodes it depends on change
//! (it used to pass the plan as "checked during apply", and apply failed later without naming
//! it). With `--output json` a failed command's output always ends with an `error` event.

use serde_json::Value;

use crate::apply_cmd::{SMALL, Setup};

/// [`SMALL`] and a PodMonitor (the Prometheus Operator's kind; the sandbox does not serve it)
/// in a node that depends on `manifest.web`, which changes.
fn with_a_podmonitor() -> String {
    format!(
        "{SMALL}{}",
        r#"
[manifest.monitor]
namespace = "app"
depends_on = ["manifest.web"]
yaml = '''
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  podMetricsEndpoints:
  - port: http
'''
"#
    )
}

/// `text` without whitespace and the report's margin.
fn squashed(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '│')
        .collect()
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn plan_refuses_a_kind_nothing_provides_naming_it_the_node_and_the_provider() {
    let s = Setup::with_plan(&with_a_podmonitor());
    let (code, out, err) = s.run("plan", &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    // The report is wrapped to the terminal's width: compare without the line breaks.
    let text = squashed(&err);
    for needle in [
        "manifest.monitor: kind PodMonitor (monitoring.coreos.com/v1) of monitoring.coreos.com/v1 PodMonitor web is not installed in the cluster and no CRD of this plan defines it",
        "the Prometheus Operator's CRDs (chart prometheus-community/prometheus-operator-crds)",
        "depends_on of manifest.monitor",
    ] {
        assert!(text.contains(&squashed(needle)), "{needle}\n{err}");
    }
    assert!(!out.contains("checked during apply"), "{out}");
}

#[test]
fn apply_refuses_it_before_any_write_and_the_json_output_ends_with_an_error_event() {
    let s = Setup::with_plan(&with_a_podmonitor());
    let (code, out, err) = s.apply(&["--output", "json"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(s.writes(), 0, "nothing was written: {err}");
    let events = json_lines(&out);
    let last = events.last().expect("an error event");
    assert_eq!(last["event"], "error", "{out}");
    assert_eq!(last["format"], 1);
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("kind PodMonitor (monitoring.coreos.com/v1)"),
        "{last}"
    );
    assert!(
        last["help"]
            .as_str()
            .unwrap()
            .contains("prometheus-operator-crds"),
        "{last}"
    );
}

#[test]
fn plan_json_output_ends_with_an_error_event_on_failure() {
    let s = Setup::with_plan(&with_a_podmonitor());
    let (code, out, err) = s.run("plan", &["--output", "json"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let events = json_lines(&out);
    assert_eq!(events.len(), 1, "{out}");
    assert_eq!(events[0]["event"], "error", "{out}");

    // A plan that does not load: the diagnostics on stderr, the error event on stdout.
    std::fs::write(&s.plan, "[plan]\nname = 3\n").unwrap();
    let (code, out, err) = s.run("plan", &["--output", "json"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let events = json_lines(&out);
    assert_eq!(events.len(), 1, "{out}");
    assert_eq!(events[0]["event"], "error", "{out}");
    assert!(
        events[0]["message"]
            .as_str()
            .unwrap()
            .contains("the plan does not load"),
        "{out}"
    );
}

#[test]
fn a_kind_whose_crd_node_renders_during_apply_is_still_checked_during_apply() {
    // The CRD is in a node rendered during apply (its value comes from a read of an object
    // the plan creates): at plan time the kind may come from it.
    let plan = r#"
[plan]
name = "later"

[manifest.ns]
yaml = '''
apiVersion: v1
kind: Namespace
metadata:
  name: app
'''

[manifest.source]
namespace = "app"
depends_on = ["manifest.ns"]
yaml = '''
apiVersion: v1
kind: ConfigMap
metadata:
  name: source
data:
  group: example.com
'''

[read.group]
api_version = "v1"
kind = "ConfigMap"
namespace = "app"
name = "source"
key = "group"
depends_on = ["manifest.source"]

[manifest.crd]
depends_on = ["read.group"]
yaml = '''
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.${read.group.value}
spec:
  group: ${read.group.value}
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
'''

[manifest.widget]
namespace = "app"
depends_on = ["manifest.crd"]
yaml = '''
apiVersion: example.com/v1
kind: Widget
metadata:
  name: gadget
spec:
  size: 3
'''
"#;
    let s = Setup::with_plan(plan);
    let (code, out, err) = s.run("plan", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let widget = s.cluster.get_json(&["widgets", "-n", "app", "gadget"]);
    assert_eq!(widget["spec"]["size"], 3);
}
