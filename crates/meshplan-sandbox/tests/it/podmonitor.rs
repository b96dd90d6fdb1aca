//! A realistic large CRD (Prometheus-Operator PodMonitor): a misspelled relabeling field is
//! refused by server-side apply with its path; the corrected manifest applies, and applying it
//! again changes nothing.

use meshplan_sandbox::kubectl::Cluster;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/crds/podmonitor.yaml"
);

fn podmonitor(relabel_field: &str) -> String {
    format!(
        r#"apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: web
  namespace: default
spec:
  selector:
    matchLabels:
      app: web
  podMetricsEndpoints:
  - port: metrics
    interval: 30s
    relabelings:
    - {relabel_field}: [__meta_kubernetes_pod_label_app]
      targetLabel: app
      action: replace
"#
    )
}

#[test]
fn podmonitor_misspelled_relabeling_is_refused_then_corrected_apply_is_stable() {
    let c = Cluster::start();
    let crd = std::fs::read_to_string(FIXTURE).expect("PodMonitor CRD fixture");
    let crd_file = c.file("podmonitor-crd.yaml", &crd);
    c.kubectl(&["apply", "--server-side", "-f", &crd_file]).ok();
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/podmonitors.monitoring.coreos.com",
    ])
    .ok();

    let bad = c.file("bad.yaml", &podmonitor("sourceLabel"));
    let out = c.kubectl(&["apply", "--server-side", "-f", &bad]);
    let err = out.failed();
    assert!(
        err.contains(".spec.podMetricsEndpoints[0].relabelings[0].sourceLabel"),
        "{err}"
    );
    assert!(err.contains("field not declared in schema"), "{err}");
    assert!(
        c.kubectl(&["get", "podmonitor", "web"])
            .failed()
            .contains("NotFound")
    );

    let good = c.file("good.yaml", &podmonitor("sourceLabels"));
    let out = c.kubectl(&["apply", "--server-side", "-f", &good]);
    assert_eq!(
        out.ok(),
        "podmonitor.monitoring.coreos.com/web serverside-applied\n"
    );
    let first = c.get_json(&["podmonitor", "web"]);
    assert_eq!(
        first["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["sourceLabels"][0],
        "__meta_kubernetes_pod_label_app"
    );
    c.kubectl(&["apply", "--server-side", "-f", &good]).ok();
    let second = c.get_json(&["podmonitor", "web"]);
    assert_eq!(
        first["metadata"]["resourceVersion"],
        second["metadata"]["resourceVersion"]
    );
    assert_eq!(first, second);
}
