//! Field ownership after the writes operators make by hand: `kubectl scale`, `kubectl patch`
//! and `kubectl edit` of objects another manager applied take exactly the fields they change,
//! in managedFields entries as the API server writes them (manager, operation, subresource,
//! FieldsV1); the applier keeps the rest, conflicts on the taken fields, and takes them back
//! with `--force-conflicts`.

use meshplan_sandbox::kubectl::Cluster;
use serde_json::{Value, json};

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {tier: front}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
"#;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/crds/podmonitor.yaml"
);

const PODMONITOR: &str = r#"apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: linkerd-proxy
  namespace: default
spec:
  namespaceSelector:
    matchNames: [linkerd, linkerd-viz]
  selector:
    matchLabels: {}
  podMetricsEndpoints:
  - interval: 10s
"#;

/// The managedFields entries of an object as (manager, operation, subresource, fieldsV1).
fn entries(object: &Value) -> Vec<(String, String, Option<String>, Value)> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or_default().to_owned(),
                e["operation"].as_str().unwrap_or_default().to_owned(),
                e["subresource"].as_str().map(str::to_owned),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

fn fields_of(object: &Value, manager: &str) -> Value {
    entries(object)
        .into_iter()
        .find(|(m, ..)| m == manager)
        .map(|(.., f)| f)
        .unwrap_or(Value::Null)
}

fn get(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--show-managed-fields");
    c.get_json(&all)
}

/// A `KUBE_EDITOR` that replaces `from` by `to` in the file kubectl opens.
fn sed_editor(c: &Cluster, from: &str, to: &str) -> String {
    let script = c.file(
        "editor.sh",
        &format!("#!/bin/sh\nsed -i 's|{from}|{to}|' \"$1\"\n"),
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    script
}

#[test]
fn scale_patch_and_edit_take_the_fields_they_change_from_the_applier() {
    let c = Cluster::start();
    let f = c.file("dep.yaml", DEPLOYMENT);
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=meshplan",
        "-f",
        &f,
    ])
    .ok();
    let before = fields_of(&get(&c, &["deploy", "web"]), "meshplan");
    assert_eq!(before["f:spec"]["f:replicas"], json!({}), "{before:#}");

    // kubectl scale writes the scale subresource: an Update of subresource `scale`.
    c.kubectl(&["scale", "deployment/web", "--replicas=3"]).ok();
    let d = get(&c, &["deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    let scaled: Vec<_> = entries(&d)
        .into_iter()
        .filter(|(m, ..)| m == "kubectl")
        .collect();
    assert_eq!(
        scaled,
        [(
            "kubectl".to_owned(),
            "Update".to_owned(),
            Some("scale".to_owned()),
            json!({"f:spec": {"f:replicas": {}}})
        )],
        "{:#}",
        d["metadata"]["managedFields"]
    );
    let applier = fields_of(&d, "meshplan");
    assert!(applier["f:spec"].get("f:replicas").is_none(), "{applier:#}");
    assert_eq!(applier["f:spec"]["f:selector"], json!({}), "the rest stays");

    // kubectl patch of an owned label: manager kubectl-patch takes that label only.
    c.kubectl(&[
        "patch",
        "deployment/web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"back"}}}"#,
    ])
    .ok();
    let d = get(&c, &["deploy", "web"]);
    assert_eq!(
        fields_of(&d, "kubectl-patch"),
        json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
    );
    assert!(
        fields_of(&d, "meshplan")["f:metadata"]
            .get("f:labels")
            .is_none(),
        "{:#}",
        fields_of(&d, "meshplan")
    );

    // kubectl edit of the image (a strategic merge patch by manager kubectl-edit): the
    // container item stays the applier's, its image goes to kubectl-edit.
    let editor = sed_editor(&c, "image: nginx:1.25", "image: nginx:1.27");
    let out = c
        .command(&["edit", "deployment/web"])
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = get(&c, &["deploy", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    let container = "k:{\"name\":\"web\"}";
    assert_eq!(
        fields_of(&d, "kubectl-edit")["f:spec"]["f:template"]["f:spec"]["f:containers"][container],
        json!({"f:image": {}})
    );
    let kept =
        &fields_of(&d, "meshplan")["f:spec"]["f:template"]["f:spec"]["f:containers"][container];
    assert!(kept.get("f:image").is_none(), "{kept:#}");
    assert_eq!(kept["f:name"], json!({}));

    // Applying the manifest again conflicts on exactly the taken fields, naming their
    // managers; forced, the applier owns them again and the other entries are gone.
    let out = c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=meshplan",
        "-f",
        &f,
    ]);
    let err = out.failed();
    assert!(err.contains("Apply failed with 3 conflicts"), "{err}");
    for (manager, path) in [
        ("kubectl", ".spec.replicas"),
        ("kubectl-patch", ".metadata.labels.tier"),
        (
            "kubectl-edit",
            ".spec.template.spec.containers[name=\"web\"].image",
        ),
    ] {
        assert!(
            err.contains(&format!("conflicts with \"{manager}\":\n- {path}")),
            "{err}"
        );
    }
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=meshplan",
        "--force-conflicts",
        "-f",
        &f,
    ])
    .ok();
    let d = get(&c, &["deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 1);
    let managers: Vec<String> = entries(&d).into_iter().map(|(m, ..)| m).collect();
    assert!(
        !managers.iter().any(|m| m.starts_with("kubectl")),
        "{managers:?}"
    );
}

#[test]
fn a_podmonitor_patched_or_edited_by_hand_changes_hands_as_a_whole_list() {
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
    let f = c.file("pm.yaml", PODMONITOR);
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=meshplan",
        "-f",
        &f,
    ])
    .ok();

    // matchNames is an atomic list: the patch takes the whole list.
    c.kubectl(&[
        "patch",
        "podmonitor/linkerd-proxy",
        "--type=merge",
        "-p",
        r#"{"spec":{"namespaceSelector":{"matchNames":["linkerd"]}}}"#,
    ])
    .ok();
    let pm = get(&c, &["podmonitor", "linkerd-proxy"]);
    assert_eq!(
        pm["spec"]["namespaceSelector"]["matchNames"],
        json!(["linkerd"])
    );
    assert_eq!(
        fields_of(&pm, "kubectl-patch"),
        json!({"f:spec": {"f:namespaceSelector": {"f:matchNames": {}}}})
    );
    assert!(
        fields_of(&pm, "meshplan")["f:spec"]["f:namespaceSelector"]
            .get("f:matchNames")
            .is_none()
    );

    // kubectl edit of a custom resource sends a merge patch: podMetricsEndpoints (atomic in
    // the CRD) goes to kubectl-edit as a whole.
    let editor = sed_editor(&c, "interval: 10s", "interval: 30s");
    let out = c
        .command(&["edit", "podmonitor/linkerd-proxy"])
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pm = get(&c, &["podmonitor", "linkerd-proxy"]);
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["interval"], "30s");
    assert_eq!(
        fields_of(&pm, "kubectl-edit"),
        json!({"f:spec": {"f:podMetricsEndpoints": {}}})
    );
    let applier = fields_of(&pm, "meshplan");
    assert!(applier["f:spec"].get("f:selector").is_some(), "{applier:#}");
    assert!(
        applier["f:spec"].get("f:podMetricsEndpoints").is_none(),
        "{applier:#}"
    );
}
