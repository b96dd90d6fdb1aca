//! SANDBOX.md's kubectl conformance checklist, one test per item, each against a fresh sandbox.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use meshplan_sandbox::kubectl::{CM1, Cluster, widget};

#[test]
fn c01_version_shows_server_v1_32() {
    let c = Cluster::start();
    let out = c.kubectl(&["version"]);
    assert!(
        out.ok().contains("Server Version: v1.32.0"),
        "{}",
        out.stdout
    );
}

#[test]
fn c02_api_resources_lists_core_crd_and_apps() {
    let c = Cluster::start();
    let out = c.kubectl(&["api-resources"]);
    let lines: Vec<Vec<&str>> = out
        .ok()
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let has = |want: &[&str]| lines.iter().any(|l| l.starts_with(want));
    assert!(
        has(&["configmaps", "cm", "v1", "true", "ConfigMap"]),
        "{}",
        out.stdout
    );
    assert!(has(&[
        "customresourcedefinitions",
        "crd,crds",
        "apiextensions.k8s.io/v1",
        "false"
    ]));
    assert!(has(&[
        "deployments",
        "deploy",
        "apps/v1",
        "true",
        "Deployment"
    ]));
}

#[test]
fn c03_get_namespaces_lists_the_four_seeded() {
    let c = Cluster::start();
    let out = c.kubectl(&["get", "ns", "-o", "name"]);
    assert_eq!(
        out.ok(),
        "namespace/default\nnamespace/kube-node-lease\nnamespace/kube-public\nnamespace/kube-system\n"
    );
}

#[test]
fn c04_server_side_apply_creates() {
    let c = Cluster::start();
    let f = c.file("cm.yaml", CM1);
    let out = c.kubectl(&["apply", "--server-side", "-f", &f]);
    assert_eq!(out.ok(), "configmap/cm1 serverside-applied\n");
    let cm = c.get_json(&["cm", "cm1"]);
    assert_eq!(cm["data"]["b"], "2");
}

#[test]
fn c05_reapply_keeps_resource_version() {
    let c = Cluster::start();
    c.apply_cm1();
    let before = c.rv(&["cm", "cm1"]);
    c.apply_cm1();
    assert_eq!(c.rv(&["cm", "cm1"]), before);
}

#[test]
fn c06_diff_server_side_of_applied_is_empty() {
    let c = Cluster::start();
    c.apply_cm1();
    let f = c.file("cm.yaml", CM1);
    let out = c.kubectl(&["diff", "--server-side", "-f", &f]);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "");
}

const CM1_CHANGED: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\n  namespace: default\ndata:\n  a: \"1\"\n  c: \"3\"\n";

#[test]
fn c07_diff_shows_dropped_and_added_keys() {
    let c = Cluster::start();
    c.apply_cm1();
    let f = c.file("cm2.yaml", CM1_CHANGED);
    let out = c.kubectl(&["diff", "--server-side", "-f", &f]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('-') && l.contains("b: \"2\"")),
        "{}",
        out.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('+') && l.contains("c: \"3\"")),
        "{}",
        out.stdout
    );
}

#[test]
fn c08_apply_leaves_exactly_the_new_data() {
    let c = Cluster::start();
    c.apply_cm1();
    let f = c.file("cm2.yaml", CM1_CHANGED);
    c.kubectl(&["apply", "--server-side", "-f", &f]).ok();
    let cm = c.get_json(&["cm", "cm1"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "c": "3"}));
}

#[test]
fn c09_managed_fields_show_one_apply_entry() {
    let c = Cluster::start();
    c.apply_cm1();
    let out = c.kubectl(&["get", "cm", "cm1", "-o", "yaml", "--show-managed-fields"]);
    assert!(out.ok().contains("managedFields:"));
    let cm = c.get_json(&["cm", "cm1", "--show-managed-fields"]);
    let entries = cm["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["manager"], "kubectl");
    assert_eq!(entries[0]["operation"], "Apply");
    assert_eq!(entries[0]["fieldsType"], "FieldsV1");
    assert_eq!(
        entries[0]["fieldsV1"],
        serde_json::json!({"f:data": {"f:a": {}, "f:b": {}}})
    );
}

const CM1_OTHER: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\n  namespace: default\ndata:\n  a: \"changed\"\n";

#[test]
fn c10_other_manager_conflicts() {
    let c = Cluster::start();
    c.apply_cm1();
    let f = c.file("other.yaml", CM1_OTHER);
    let out = c.kubectl(&["apply", "--server-side", "--field-manager=other", "-f", &f]);
    let err = out.failed();
    assert!(err.contains("Apply failed with 1 conflict"), "{err}");
    assert!(err.contains(".data.a"), "{err}");
    assert_eq!(c.get_json(&["cm", "cm1"])["data"]["a"], "1");
}

#[test]
fn c11_force_conflicts_moves_ownership() {
    let c = Cluster::start();
    c.apply_cm1();
    let f = c.file("other.yaml", CM1_OTHER);
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        &f,
    ])
    .ok();
    let cm = c.get_json(&["cm", "cm1", "--show-managed-fields"]);
    assert_eq!(cm["data"]["a"], "changed");
    let entries = cm["metadata"]["managedFields"].as_array().unwrap();
    let of = |m: &str| {
        entries
            .iter()
            .find(|e| e["manager"] == m)
            .map(|e| e["fieldsV1"].clone())
            .unwrap()
    };
    assert_eq!(of("other"), serde_json::json!({"f:data": {"f:a": {}}}));
    assert_eq!(of("kubectl"), serde_json::json!({"f:data": {"f:b": {}}}));
}

#[test]
fn c12_dry_run_server_changes_nothing() {
    let c = Cluster::start();
    c.apply_cm1();
    let before = c.get_json(&["cm", "cm1"]);
    let f = c.file("cm2.yaml", CM1_CHANGED);
    let out = c.kubectl(&["apply", "--server-side", "--dry-run=server", "-f", &f]);
    assert!(
        out.ok().contains("serverside-applied (server dry run)"),
        "{}",
        out.stdout
    );
    let after = c.get_json(&["cm", "cm1"]);
    assert_eq!(before, after);
    let g = c.file("cm3.yaml", &CM1.replace("cm1", "cm9"));
    c.kubectl(&["create", "--dry-run=server", "-f", &g]).ok();
    assert!(
        c.kubectl(&["get", "cm", "cm9"])
            .failed()
            .contains("NotFound")
    );
}

#[test]
fn c13_get_missing_is_not_found() {
    let c = Cluster::start();
    let out = c.kubectl(&["get", "cm", "nope"]);
    assert!(
        out.failed()
            .contains("Error from server (NotFound): configmaps \"nope\" not found"),
        "{}",
        out.stderr
    );
}

#[test]
fn c14_delete_ignore_not_found_succeeds() {
    let c = Cluster::start();
    let out = c.kubectl(&["delete", "cm", "nope", "--ignore-not-found"]);
    assert_eq!(out.ok(), "");
    assert!(
        c.kubectl(&["delete", "cm", "nope"])
            .failed()
            .contains("NotFound")
    );
}

#[test]
fn c15_delete_reports_deleted() {
    let c = Cluster::start();
    c.apply_cm1();
    let out = c.kubectl(&["delete", "cm", "cm1"]);
    assert_eq!(out.ok(), "configmap \"cm1\" deleted\n");
    assert!(
        c.kubectl(&["get", "cm", "cm1"])
            .failed()
            .contains("NotFound")
    );
}

#[test]
fn c16_delete_waits_for_finalizer() {
    let c = Cluster::start();
    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: default\n  finalizers: [example.com/hold]\ndata:\n  a: \"1\"\n";
    let f = c.file("held.yaml", held);
    c.kubectl(&["apply", "--server-side", "-f", &f]).ok();
    let mut child = c.spawn(&["delete", "cm", "held", "--timeout=60s"]);
    // The object is marked, not removed, while the finalizer is there.
    let marked = loop {
        let cm = c.get_json(&["cm", "held"]);
        if cm["metadata"]["deletionTimestamp"].is_string() {
            break cm;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(marked["metadata"]["finalizers"][0], "example.com/hold");
    assert!(
        child.try_wait().unwrap().is_none(),
        "kubectl delete returned before the finalizer was removed"
    );
    c.kubectl(&[
        "patch",
        "cm",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .ok();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "configmap \"held\" deleted\n"
    );
    assert!(
        c.kubectl(&["get", "cm", "held"])
            .failed()
            .contains("NotFound")
    );
}

#[test]
fn c17_crd_apply_and_wait_established() {
    let c = Cluster::start();
    let crd = c.file("crd.yaml", meshplan_sandbox::kubectl::WIDGET_CRD);
    let out = c.kubectl(&["apply", "--server-side", "-f", &crd]);
    assert_eq!(
        out.ok(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com serverside-applied\n"
    );
    let out = c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/widgets.example.com",
    ]);
    assert!(out.ok().contains("condition met"), "{}", out.stdout);
    let crd = c.get_json(&["crd", "widgets.example.com"]);
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));
}

#[test]
fn c18_api_resources_shows_the_new_kind() {
    let c = Cluster::start();
    c.install_widgets();
    let out = c.kubectl(&["api-resources", "--api-group=example.com"]);
    let row: Vec<&str> = out
        .ok()
        .lines()
        .find(|l| l.starts_with("widgets"))
        .unwrap_or_else(|| panic!("{}", out.stdout))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        vec!["widgets", "wd", "example.com/v1", "true", "Widget"]
    );
}

#[test]
fn c19_custom_resource_applies_and_reads_back() {
    let c = Cluster::start();
    c.install_widgets();
    let f = c.file("w1.yaml", &widget("w1", "  size: 3\n"));
    let out = c.kubectl(&["apply", "--server-side", "-f", &f]);
    assert_eq!(out.ok(), "widget.example.com/w1 serverside-applied\n");
    let w = c.get_json(&["widget", "w1"]);
    assert_eq!(w["spec"]["size"], 3);
    assert_eq!(w["spec"]["color"], "blue", "schema default applied");
    assert_eq!(w["metadata"]["generation"], 1);
}

#[test]
fn c20_get_shows_printer_columns() {
    let c = Cluster::start();
    c.install_widgets();
    let f = c.file("w1.yaml", &widget("w1", "  size: 3\n  color: red\n"));
    c.kubectl(&["apply", "--server-side", "-f", &f]).ok();
    let out = c.kubectl(&["get", "widgets"]);
    let lines: Vec<Vec<&str>> = out
        .ok()
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], vec!["NAME", "SIZE", "COLOR", "AGE"]);
    assert_eq!(&lines[1][..3], &["w1", "3", "red"]);
}

#[test]
fn c21_describe_works() {
    let c = Cluster::start();
    c.install_widgets();
    let f = c.file("w1.yaml", &widget("w1", "  size: 3\n"));
    c.kubectl(&["apply", "--server-side", "-f", &f]).ok();
    let out = c.kubectl(&["describe", "widget", "w1"]);
    let text = out.ok();
    assert!(
        text.lines()
            .any(|l| l.starts_with("Name:") && l.ends_with("w1")),
        "{text}"
    );
    assert!(text.contains("Kind:         Widget"), "{text}");
    assert!(text.contains("Size:"), "{text}");
}

#[test]
fn c22_apply_with_unknown_field_is_refused() {
    let c = Cluster::start();
    c.install_widgets();
    let f = c.file("w1.yaml", &widget("w1", "  size: 3\n  foo: bar\n"));
    let out = c.kubectl(&["apply", "--server-side", "-f", &f]);
    let err = out.failed();
    assert!(
        err.contains(".spec.foo: field not declared in schema"),
        "{err}"
    );
    assert!(
        c.kubectl(&["get", "widget", "w1"])
            .failed()
            .contains("NotFound")
    );
}

#[test]
fn c23_create_with_unknown_field_is_a_strict_decoding_error() {
    let c = Cluster::start();
    c.install_widgets();
    let f = c.file("w1.yaml", &widget("w1", "  size: 3\n  foo: bar\n"));
    let out = c.kubectl(&["create", "-f", &f]);
    let err = out.failed();
    assert!(
        err.contains("strict decoding error: unknown field \"spec.foo\""),
        "{err}"
    );
}

#[test]
fn c24_validate_false_prunes_the_unknown_field() {
    let c = Cluster::start();
    c.install_widgets();
    let f = c.file("w1.yaml", &widget("w1", "  size: 3\n  foo: bar\n"));
    let out = c.kubectl(&["create", "--validate=false", "-f", &f]);
    assert_eq!(out.ok(), "widget.example.com/w1 created\n");
    let w = c.get_json(&["widget", "w1"]);
    assert_eq!(w["spec"]["size"], 3);
    assert!(w["spec"].get("foo").is_none(), "{w}");
}

#[test]
fn c25_wrong_type_is_invalid() {
    let c = Cluster::start();
    c.install_widgets();
    let f = c.file("w1.yaml", &widget("w1", "  size: big\n"));
    let out = c.kubectl(&["create", "-f", &f]);
    let err = out.failed();
    assert!(err.contains("is invalid"), "{err}");
    assert!(err.contains("spec.size"), "{err}");
    assert!(err.contains("Invalid value"), "{err}");
}

#[test]
fn c26_uninstalled_kind_has_no_matches() {
    let c = Cluster::start();
    let f = c.file(
        "gadget.yaml",
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g1\n",
    );
    let out = c.kubectl(&["apply", "-f", &f]);
    let err = out.failed();
    assert!(
        err.contains("no matches for kind \"Gadget\" in version \"example.com/v1\""),
        "{err}"
    );
}

#[test]
fn c27_unknown_resource_type() {
    let c = Cluster::start();
    let out = c.kubectl(&["get", "foos"]);
    assert!(
        out.failed()
            .contains("the server doesn't have a resource type \"foos\""),
        "{}",
        out.stderr
    );
}

#[test]
fn c28_get_watch_shows_rows_for_events() {
    let c = Cluster::start();
    c.apply_cm1();
    let mut child = c.spawn(&["get", "configmaps", "-w"]);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |name: &str, seen: &mut Vec<String>| {
        while !seen
            .iter()
            .any(|l| l.split_whitespace().next() == Some(name))
        {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no row for {name}; saw {seen:?}"));
            seen.push(line);
        }
    };
    wait_for("cm1", &mut seen);
    let f = c.file("cm2.yaml", &CM1.replace("cm1", "cm2"));
    c.kubectl(&["apply", "--server-side", "-f", &f]).ok();
    wait_for("cm2", &mut seen);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen[0].starts_with("NAME"), "{seen:?}");
    let row: Vec<&str> = seen
        .iter()
        .find(|l| l.starts_with("cm2"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..2], &["cm2", "2"]);
}

#[test]
fn c29_namespace_delete_removes_content() {
    let c = Cluster::start();
    let f = c.file(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n",
    );
    c.kubectl(&["apply", "-f", &f]).ok();
    let g = c.file(
        "cm.yaml",
        &CM1.replace("namespace: default", "namespace: team"),
    );
    c.kubectl(&["apply", "--server-side", "-f", &g]).ok();
    assert_eq!(c.get_json(&["cm", "cm1", "-n", "team"])["data"]["a"], "1");
    let out = c.kubectl(&["delete", "ns", "team", "--timeout=60s"]);
    assert_eq!(out.ok(), "namespace \"team\" deleted\n");
    assert!(
        c.kubectl(&["get", "ns", "team"])
            .failed()
            .contains("NotFound")
    );
    let list = c.get_json(&["cm", "--all-namespaces"]);
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["metadata"]["namespace"] != "team")
    );
    let out = c.kubectl(&["delete", "ns", "kube-system"]);
    assert!(out.failed().contains("Forbidden"), "{}", out.stderr);
}

#[test]
fn c30_crd_delete_removes_its_kind() {
    let c = Cluster::start();
    c.install_widgets();
    let f = c.file("w1.yaml", &widget("w1", "  size: 3\n"));
    c.kubectl(&["apply", "--server-side", "-f", &f]).ok();
    let out = c.kubectl(&["delete", "crd", "widgets.example.com", "--timeout=60s"]);
    assert_eq!(
        out.ok(),
        "customresourcedefinition.apiextensions.k8s.io \"widgets.example.com\" deleted\n"
    );
    let out = c.kubectl(&["api-resources", "--api-group=example.com"]);
    assert!(!out.ok().contains("widgets"), "{}", out.stdout);
    let out = c.kubectl(&["get", "crd", "widgets.example.com"]);
    assert!(out.failed().contains("NotFound"));
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 2
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
        env:
        - name: A
          value: "1"
"#;

#[test]
fn client_side_apply_changes_one_container_field_in_place() {
    let c = Cluster::start();
    let f = c.file("dep.yaml", DEPLOYMENT);
    assert_eq!(
        c.kubectl(&["apply", "-f", &f]).ok(),
        "deployment.apps/web created\n"
    );
    let g = c.file("dep2.yaml", &DEPLOYMENT.replace("nginx:1.25", "nginx:1.26"));
    assert_eq!(
        c.kubectl(&["apply", "-f", &g]).ok(),
        "deployment.apps/web configured\n"
    );
    let d = c.get_json(&["deploy", "web"]);
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.26");
    assert_eq!(
        container["env"],
        serde_json::json!([{"name": "A", "value": "1"}])
    );
    assert_eq!(
        container["ports"],
        serde_json::json!([{"containerPort": 80}])
    );
    assert_eq!(d["metadata"]["generation"], 2);
    let out = c.kubectl(&["diff", "-f", &g]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    c.kubectl(&["label", "deploy", "web", "tier=front"]).ok();
    c.kubectl(&["annotate", "deploy", "web", "note=x"]).ok();
    let d = c.get_json(&["deploy", "web"]);
    assert_eq!(d["metadata"]["labels"]["tier"], "front");
    assert_eq!(d["metadata"]["annotations"]["note"], "x");
    assert_eq!(
        d["metadata"]["generation"], 2,
        "metadata changes keep the generation"
    );
}

#[test]
fn every_builtin_kind_applies_and_reapplies_as_a_no_op() {
    // The API server alone: the fixture's webhook configuration would refuse writes, and
    // controllers would write statuses between the two applies.
    let c = Cluster::start_with(meshplan_sandbox::SandboxConfig::api_only());
    let f = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/all-kinds.yaml");
    let out = c.kubectl(&["apply", "--server-side", "-f", f]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 25, "{}", out.stdout);
    assert!(
        lines.iter().all(|l| l.ends_with(" serverside-applied")),
        "{}",
        out.stdout
    );
    let snapshot = |c: &Cluster| {
        let list = c.get_json(&[
            "-n",
            "mesh",
            "all,cm,secret,sa,role,rolebinding,pdb,ingress,netpol,lease,events",
        ]);
        let cluster = c.get_json(&[
            "clusterrole,clusterrolebinding,validatingwebhookconfiguration,mutatingwebhookconfiguration,apiservice,ns",
        ]);
        let mut versions: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .chain(cluster["items"].as_array().unwrap())
            .map(|i| {
                format!(
                    "{}/{} {}",
                    i["kind"].as_str().unwrap(),
                    i["metadata"]["name"].as_str().unwrap(),
                    i["metadata"]["resourceVersion"].as_str().unwrap()
                )
            })
            .collect();
        versions.sort();
        versions
    };
    let before = snapshot(&c);
    assert!(before.len() >= 25, "{before:?}");
    c.kubectl(&["apply", "--server-side", "-f", f]).ok();
    assert_eq!(snapshot(&c), before, "re-applying changed something");
    let diff = c.kubectl(&["diff", "--server-side", "-f", f]);
    assert_eq!(diff.code, 0, "{}{}", diff.stdout, diff.stderr);
    assert_eq!(diff.stdout, "");
}

#[test]
fn scale_subresource_changes_replicas() {
    let c = Cluster::start();
    let f = c.file("dep.yaml", DEPLOYMENT);
    c.kubectl(&["apply", "--server-side", "-f", &f]).ok();
    let out = c.kubectl(&["scale", "deployment/web", "--replicas=5"]);
    assert_eq!(out.ok(), "deployment.apps/web scaled\n");
    let d = c.get_json(&["deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["generation"], 2);
    let scale = c.kubectl(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(scale.ok()).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "app=web");
    let resources = c.kubectl(&["get", "--raw", "/apis/apps/v1"]);
    assert!(resources.ok().contains("\"name\":\"deployments/scale\""));
}

#[test]
fn get_with_small_chunks_lists_everything() {
    let c = Cluster::start();
    for name in ["a1", "a2", "a3"] {
        let f = c.file(&format!("{name}.yaml"), &CM1.replace("cm1", name));
        c.kubectl(&["apply", "--server-side", "-f", &f]).ok();
    }
    let out = c.kubectl(&["get", "cm", "--chunk-size=1", "-o", "name"]);
    assert_eq!(out.ok(), "configmap/a1\nconfigmap/a2\nconfigmap/a3\n");
}

// Secrets: the API server folds `stringData` into base64 `data` on every write, never stores
// or returns `stringData`, and defaults `type` to Opaque.

const SECRET_S1: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s1\n  namespace: default\nstringData:\n  user: admin\n  password: s3cret\n";

/// The managedFields entries of a Secret as (manager, operation, fieldsV1).
fn managed_entries(c: &Cluster, name: &str) -> Vec<(String, String, serde_json::Value)> {
    let s = c.get_json(&["secret", name, "--show-managed-fields"]);
    s["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["operation"].as_str().unwrap().to_string(),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

/// `kubectl get secret NAME` as (type, data count).
fn secret_row(c: &Cluster, name: &str) -> (String, String) {
    let out = c.kubectl(&["get", "secret", name]);
    let lines: Vec<Vec<String>> = out
        .ok()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(lines[0][..3], ["NAME", "TYPE", "DATA"], "{}", out.stdout);
    assert_eq!(lines[1][0], name, "{}", out.stdout);
    (lines[1][1].clone(), lines[1][2].clone())
}

#[test]
fn secret_string_data_server_side_apply_is_stored_as_data() {
    let c = Cluster::start();
    let out = c.apply("s1.yaml", SECRET_S1);
    assert_eq!(out.ok(), "secret/s1 serverside-applied\n");
    let s = c.get_json(&["secret", "s1"]);
    assert_eq!(
        s["data"],
        serde_json::json!({"password": "czNjcmV0", "user": "YWRtaW4="})
    );
    assert!(s.get("stringData").is_none(), "{s}");
    assert_eq!(s["type"], "Opaque");
    assert_eq!(secret_row(&c, "s1"), ("Opaque".into(), "2".into()));
    // The applier owns what it applied (stringData), not the folded data, and not the type
    // the server defaulted after the merge.
    assert_eq!(
        managed_entries(&c, "s1"),
        vec![(
            "kubectl".to_string(),
            "Apply".to_string(),
            serde_json::json!({"f:stringData": {"f:password": {}, "f:user": {}}})
        )]
    );
    // Nothing to change: kubectl diff compares the dry-run result, folded the same way.
    let f = c.file("s1.yaml", SECRET_S1);
    let diff = c.kubectl(&["diff", "--server-side", "-f", &f]);
    assert_eq!(diff.code, 0, "{}{}", diff.stdout, diff.stderr);
    assert_eq!(diff.stdout, "");
    // A server dry run answers the folded object too.
    let dry = c.kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        &f,
    ]);
    let dry: serde_json::Value = serde_json::from_str(dry.ok()).unwrap();
    assert_eq!(dry["data"], s["data"]);
    assert!(dry.get("stringData").is_none(), "{dry}");
}

#[test]
fn secret_string_data_reapply_keeps_data_and_ownership() {
    let c = Cluster::start();
    c.apply("s1.yaml", SECRET_S1).ok();
    let first = c.get_json(&["secret", "s1"]);
    let owned = managed_entries(&c, "s1");
    c.apply("s1.yaml", SECRET_S1).ok();
    let second = c.get_json(&["secret", "s1"]);
    assert_eq!(second["data"], first["data"]);
    assert!(second.get("stringData").is_none(), "{second}");
    assert_eq!(managed_entries(&c, "s1"), owned);
    // Another manager applying the very same stringData conflicts: against the stored object
    // (no stringData) its keys are additions, and kubectl owns them.
    let f = c.file("s1.yaml", SECRET_S1);
    let out = c.kubectl(&["apply", "--server-side", "--field-manager=other", "-f", &f]);
    let err = out.failed();
    assert!(err.contains("Apply failed with 2 conflicts"), "{err}");
    assert!(err.contains(".stringData.password"), "{err}");
    assert!(err.contains(".stringData.user"), "{err}");
}

#[test]
fn secret_string_data_reapply_in_a_later_second_writes_like_a_real_server() {
    // On a real API server the field manager sees the applied stringData as a change against
    // the stored object (which has none), so it renews the Apply entry's time, and the object
    // is written again once that time, in whole seconds, differs (kubernetes#96841). The same
    // Secret applied as data is a true no-op.
    let c = Cluster::start();
    let as_data = SECRET_S1
        .replace("name: s1", "name: s2")
        .replace("stringData:", "data:")
        .replace("admin", "YWRtaW4=")
        .replace("s3cret", "czNjcmV0");
    c.apply("s1.yaml", SECRET_S1).ok();
    c.apply("s2.yaml", &as_data).ok();
    let s1 = c.get_json(&["secret", "s1", "--show-managed-fields"]);
    let s2_rv = c.rv(&["secret", "s2"]);
    std::thread::sleep(Duration::from_millis(1100));
    c.apply("s1.yaml", SECRET_S1).ok();
    c.apply("s2.yaml", &as_data).ok();
    let again = c.get_json(&["secret", "s1", "--show-managed-fields"]);
    assert_ne!(
        again["metadata"]["resourceVersion"],
        s1["metadata"]["resourceVersion"]
    );
    assert_ne!(
        again["metadata"]["managedFields"][0]["time"],
        s1["metadata"]["managedFields"][0]["time"]
    );
    assert_eq!(
        again["metadata"]["managedFields"][0]["fieldsV1"],
        s1["metadata"]["managedFields"][0]["fieldsV1"]
    );
    assert_eq!(again["data"], s1["data"]);
    assert_eq!(c.rv(&["secret", "s2"]), s2_rv);
    assert_eq!(
        c.get_json(&["secret", "s2"])["data"],
        s1["data"],
        "data and stringData store the same bytes"
    );
}

#[test]
fn secret_string_data_changes_reach_data() {
    let c = Cluster::start();
    c.apply("s1.yaml", SECRET_S1).ok();
    let before = c.rv(&["secret", "s1"]);
    c.apply("s1.yaml", &SECRET_S1.replace("s3cret", "n3w")).ok();
    let s = c.get_json(&["secret", "s1"]);
    assert_ne!(s["metadata"]["resourceVersion"], before.as_str());
    assert_eq!(s["data"]["password"], "bjN3");
    assert_eq!(s["data"]["user"], "YWRtaW4=");
    // A key no longer applied under stringData leaves the applier's fields but stays in
    // data: the applier never owned data.user (the known snag of stringData with
    // server-side apply).
    let only_password = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s1\n  namespace: default\nstringData:\n  password: n3w\n";
    c.apply("s1.yaml", only_password).ok();
    let s = c.get_json(&["secret", "s1"]);
    assert_eq!(s["data"]["user"], "YWRtaW4=");
    assert_eq!(
        managed_entries(&c, "s1"),
        vec![(
            "kubectl".to_string(),
            "Apply".to_string(),
            serde_json::json!({"f:stringData": {"f:password": {}}})
        )]
    );
    // stringData wins over a data key of the same name in the same write.
    let both = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s1\n  namespace: default\ndata:\n  password: b2xk\n  extra: eA==\nstringData:\n  user: admin\n  password: n3wer\n";
    c.apply("s1.yaml", both).ok();
    let s = c.get_json(&["secret", "s1"]);
    assert_eq!(s["data"]["password"], "bjN3ZXI=");
    assert_eq!(s["data"]["extra"], "eA==");
}

#[test]
fn secret_string_data_client_side_apply_and_create_store_data() {
    let c = Cluster::start();
    let f = c.file("s1.yaml", SECRET_S1);
    assert_eq!(c.kubectl(&["apply", "-f", &f]).ok(), "secret/s1 created\n");
    let s = c.get_json(&["secret", "s1"]);
    assert_eq!(
        s["data"],
        serde_json::json!({"password": "czNjcmV0", "user": "YWRtaW4="})
    );
    assert!(s.get("stringData").is_none(), "{s}");
    assert_eq!(s["type"], "Opaque");
    // A create converts the body before its field manager runs: the writer owns data keys
    // and the defaulted type.
    let entries = managed_entries(&c, "s1");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (manager, operation, fields) = &entries[0];
    assert_eq!(manager, "kubectl-client-side-apply");
    assert_eq!(operation, "Update");
    assert!(fields["f:data"]["f:password"].is_object(), "{fields}");
    assert!(fields["f:data"]["f:user"].is_object(), "{fields}");
    assert!(fields["f:type"].is_object(), "{fields}");
    assert!(fields.get("f:stringData").is_none(), "{fields}");
    // Re-applying: kubectl sends stringData again (the live object has none), the server
    // folds it to the same data and writes nothing.
    let rv = c.rv(&["secret", "s1"]);
    c.kubectl(&["apply", "-f", &f]).ok();
    assert_eq!(c.rv(&["secret", "s1"]), rv);
    let g = c.file("s1b.yaml", &SECRET_S1.replace("s3cret", "n3w"));
    c.kubectl(&["apply", "-f", &g]).ok();
    assert_eq!(c.get_json(&["secret", "s1"])["data"]["password"], "bjN3");

    let h = c.file(
        "s3.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s3\n  namespace: default\ntype: example.com/token\nstringData:\n  token: abc\n",
    );
    assert_eq!(c.kubectl(&["create", "-f", &h]).ok(), "secret/s3 created\n");
    let s3 = c.get_json(&["secret", "s3"]);
    assert_eq!(s3["data"], serde_json::json!({"token": "YWJj"}));
    assert!(s3.get("stringData").is_none(), "{s3}");
    assert_eq!(s3["type"], "example.com/token");
    assert_eq!(secret_row(&c, "s1"), ("Opaque".into(), "2".into()));
    assert_eq!(
        secret_row(&c, "s3"),
        ("example.com/token".into(), "1".into())
    );
}

#[test]
fn secret_string_data_that_is_not_a_string_map_is_a_decoding_error() {
    let c = Cluster::start();
    let f = c.file(
        "bad.json",
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"bad"},"stringData":{"n":1}}"#,
    );
    let out = c.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/secrets",
        "-f",
        &f,
    ]);
    let err = out.failed();
    assert!(
        err.contains("Error from server (BadRequest): Secret in version \"v1\" cannot be handled as a Secret: json: cannot unmarshal number into Go struct field Secret.stringData of type string"),
        "{err}"
    );
    assert!(
        c.kubectl(&["get", "secret", "bad"])
            .failed()
            .contains("NotFound")
    );
}
