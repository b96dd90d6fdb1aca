//! The cluster door (`KubeCluster`) against a sandbox: discovery, reads, server-side apply,
//! conflicts, deletes, replace, watch-based waits and connection errors.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meshplan::cluster::{
    ApplyOptions, Cluster, ClusterError, ConnectOptions, DeleteOptions, DeleteOutcome, KindRef,
    KubeCluster, ObjectRef, WaitOutcome, WriteOptions,
};
use meshplan_sandbox::{self as sandbox, Sandbox, SandboxConfig};
use serde_json::{Value, json};

struct Fixture {
    sandbox: Sandbox,
    cluster: Arc<dyn Cluster>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let sandbox = sandbox::start(SandboxConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sandbox.write_kubeconfig(&kubeconfig).unwrap();
    let cluster = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(kubeconfig),
        context: None,
        ..ConnectOptions::default()
    })
    .await
    .unwrap();
    Fixture {
        sandbox,
        cluster: Arc::new(cluster),
        _dir: dir,
    }
}

impl Fixture {
    async fn stop(self) {
        self.sandbox.shutdown().await.unwrap();
    }
}

fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default"}, "data": data})
}

fn cm_ref(name: &str) -> ObjectRef {
    ObjectRef::new("v1", "ConfigMap", Some("default"), name)
}

fn rv(o: &Value) -> String {
    o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]
        }
    })
}

fn has_condition(o: Option<&Value>, kind: &str) -> bool {
    o.and_then(|o| o.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

#[tokio::test]
async fn discovery_sees_configmaps_and_a_crd_once_applied() {
    let f = fixture().await;
    let version = f.cluster.server_version().await.unwrap();
    assert!(
        !version.major.is_empty() && version.git_version.starts_with('v'),
        "{version:?}"
    );

    let d = f.cluster.discover().await.unwrap();
    let cms = d.find(&KindRef::new("v1", "ConfigMap")).unwrap();
    assert_eq!(cms.plural, "configmaps");
    assert!(cms.namespaced);
    for verb in [
        "create", "delete", "get", "list", "patch", "update", "watch",
    ] {
        assert!(cms.supports(verb), "{verb} in {:?}", cms.verbs);
    }
    let deployments = d.find(&KindRef::new("apps/v1", "Deployment")).unwrap();
    assert!(
        deployments.subresources.contains(&"status".to_owned()),
        "{deployments:?}"
    );
    let ns = d.find(&KindRef::new("v1", "Namespace")).unwrap();
    assert!(!ns.namespaced);
    assert!(d.api_versions().contains(&"apps/v1/Deployment".to_owned()));

    // Before the CRD: the kind is not installed, and the message says what to do.
    let widget = ObjectRef::new("example.com/v1", "Widget", Some("default"), "w1");
    let err = f.cluster.get(&widget).await.unwrap_err();
    assert!(
        matches!(&err, ClusterError::KindNotInstalled { kind } if kind.kind == "Widget"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "kind Widget (example.com/v1) is not installed in the cluster"
    );
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert_eq!(
        help,
        "install its CRD first, or add the node that creates it"
    );

    let crd = widget_crd();
    f.cluster
        .apply(&crd, &ApplyOptions::default())
        .await
        .unwrap();
    let crd_ref = ObjectRef::from_object(&crd).unwrap();
    let established = f
        .cluster
        .wait_for(
            &crd_ref,
            &|o| has_condition(o, "Established"),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(established.is_met(), "{established:?}");

    // The kept discovery lacks Widget: the cluster rediscovers by itself.
    assert_eq!(f.cluster.get(&widget).await.unwrap(), None);
    let d = f.cluster.discover().await.unwrap();
    let w = d.find(&KindRef::new("example.com/v1", "Widget")).unwrap();
    assert_eq!((w.plural.as_str(), w.namespaced), ("widgets", true));
    let body = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                      "metadata": {"name": "w1", "namespace": "default"}, "spec": {"size": 3}});
    f.cluster
        .apply(&body, &ApplyOptions::default())
        .await
        .unwrap();
    let got = f.cluster.get(&widget).await.unwrap().unwrap();
    assert_eq!(got["spec"]["size"], 3);
    f.stop().await;
}

#[tokio::test]
async fn apply_creates_then_a_repeat_keeps_the_resource_version() {
    let f = fixture().await;
    let body = cm("settings", json!({"a": "1"}));
    let created = f
        .cluster
        .apply(&body, &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(created["data"]["a"], "1");
    assert_eq!(created["kind"], "ConfigMap");
    let managers: Vec<&str> = created["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, vec!["meshplan"]);

    let again = f
        .cluster
        .apply(&body, &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(rv(&again), rv(&created));
    let live = f.cluster.get(&cm_ref("settings")).await.unwrap().unwrap();
    assert_eq!(rv(&live), rv(&created));

    let changed = f
        .cluster
        .apply(&cm("settings", json!({"a": "2"})), &ApplyOptions::default())
        .await
        .unwrap();
    assert_ne!(rv(&changed), rv(&created));
    assert_eq!(changed["data"]["a"], "2");
    f.stop().await;
}

#[tokio::test]
async fn dry_runs_store_nothing() {
    let f = fixture().await;
    let dry = ApplyOptions {
        dry_run: true,
        ..ApplyOptions::default()
    };
    let result = f
        .cluster
        .apply(&cm("ghost", json!({"a": "1"})), &dry)
        .await
        .unwrap();
    assert_eq!(result["data"]["a"], "1");
    assert_eq!(f.cluster.get(&cm_ref("ghost")).await.unwrap(), None);

    let created = f
        .cluster
        .apply(&cm("real", json!({"a": "1"})), &ApplyOptions::default())
        .await
        .unwrap();
    let preview = f
        .cluster
        .apply(&cm("real", json!({"a": "9"})), &dry)
        .await
        .unwrap();
    assert_eq!(preview["data"]["a"], "9");
    let live = f.cluster.get(&cm_ref("real")).await.unwrap().unwrap();
    assert_eq!(
        (live["data"]["a"].as_str(), rv(&live)),
        (Some("1"), rv(&created))
    );

    let existed = f
        .cluster
        .delete(
            &cm_ref("real"),
            &DeleteOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(existed.existed());
    assert!(f.cluster.get(&cm_ref("real")).await.unwrap().is_some());
    f.stop().await;
}

#[tokio::test]
async fn a_conflict_with_another_manager_names_it_and_the_field() {
    let f = fixture().await;
    let other = ApplyOptions {
        field_manager: "other-tool".to_owned(),
        ..ApplyOptions::default()
    };
    f.cluster
        .apply(&cm("shared", json!({"a": "1"})), &other)
        .await
        .unwrap();
    let err = f
        .cluster
        .apply(&cm("shared", json!({"a": "2"})), &ApplyOptions::default())
        .await
        .unwrap_err();
    match &err {
        ClusterError::Conflict {
            object, conflicts, ..
        } => {
            assert_eq!(**object, cm_ref("shared"));
            assert_eq!(conflicts.len(), 1, "{conflicts:?}");
            assert_eq!(conflicts[0].manager, "other-tool");
            assert_eq!(conflicts[0].field, ".data.a");
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert!(err.is_field_conflict());
    assert!(
        err.to_string().contains("v1 ConfigMap default/shared"),
        "{err}"
    );
    // Not forced: the value is still the other manager's.
    let live = f.cluster.get(&cm_ref("shared")).await.unwrap().unwrap();
    assert_eq!(live["data"]["a"], "1");

    let forced = ApplyOptions {
        force: true,
        ..ApplyOptions::default()
    };
    let taken = f
        .cluster
        .apply(&cm("shared", json!({"a": "2"})), &forced)
        .await
        .unwrap();
    assert_eq!(taken["data"]["a"], "2");
    f.stop().await;
}

#[tokio::test]
async fn unknown_fields_and_invalid_values_are_refused_with_causes() {
    let f = fixture().await;
    let crd = widget_crd();
    f.cluster
        .apply(&crd, &ApplyOptions::default())
        .await
        .unwrap();
    let crd_ref = ObjectRef::from_object(&crd).unwrap();
    let established = f
        .cluster
        .wait_for(
            &crd_ref,
            &|o| has_condition(o, "Established"),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(established.is_met(), "{established:?}");
    let widget = ObjectRef::new("example.com/v1", "Widget", Some("default"), "w");

    // fieldValidation=Strict: an unknown field is an error, not silently dropped.
    let typo = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                      "metadata": {"name": "w", "namespace": "default"}, "spec": {"sise": 3}});
    let err = f
        .cluster
        .apply(&typo, &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::Invalid { object, message, .. } if **object == widget && message.contains("sise")),
        "{err}"
    );
    assert_eq!(f.cluster.get(&widget).await.unwrap(), None);

    // A value of the wrong type: 422 with the field in the causes.
    let wrong = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                       "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": "big"}});
    let err = f
        .cluster
        .apply(&wrong, &ApplyOptions::default())
        .await
        .unwrap_err();
    match &err {
        ClusterError::Invalid { causes, .. } => {
            assert!(
                causes.iter().any(|c| c.field.contains("spec.size")),
                "{causes:?}"
            );
        }
        other => panic!("expected Invalid, got {other}"),
    }
    f.stop().await;
}

#[tokio::test]
async fn delete_reports_whether_the_object_existed_and_honours_preconditions() {
    let f = fixture().await;
    let created = f
        .cluster
        .apply(&cm("gone", json!({"a": "1"})), &ApplyOptions::default())
        .await
        .unwrap();
    let stale = DeleteOptions {
        resource_version: Some("1".to_owned()),
        ..Default::default()
    };
    assert_ne!(rv(&created), "1");
    let err = f.cluster.delete(&cm_ref("gone"), &stale).await.unwrap_err();
    assert!(
        matches!(err, ClusterError::Conflict { ref conflicts, .. } if conflicts.is_empty()),
        "{err}"
    );
    let exact = DeleteOptions {
        resource_version: Some(rv(&created)),
        propagation: Some(meshplan::cluster::Propagation::Background),
        ..Default::default()
    };
    assert_eq!(
        f.cluster.delete(&cm_ref("gone"), &exact).await.unwrap(),
        DeleteOutcome::Gone
    );
    assert_eq!(f.cluster.get(&cm_ref("gone")).await.unwrap(), None);
    assert_eq!(
        f.cluster
            .delete(&cm_ref("gone"), &DeleteOptions::default())
            .await
            .unwrap(),
        DeleteOutcome::NotFound
    );
    // A finalizer holds it: the deletion is pending until the finalizer goes.
    let held = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "held", "namespace": "default",
                                   "finalizers": ["example.com/hold"]}});
    f.cluster
        .apply(&held, &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(
        f.cluster
            .delete(&cm_ref("held"), &DeleteOptions::default())
            .await
            .unwrap(),
        DeleteOutcome::Pending
    );
    let live = f.cluster.get(&cm_ref("held")).await.unwrap().unwrap();
    assert!(
        live.pointer("/metadata/deletionTimestamp").is_some(),
        "{live}"
    );
    let mut released = held.clone();
    released["metadata"]["finalizers"] = json!([]);
    f.cluster
        .apply(&released, &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(f.cluster.get(&cm_ref("held")).await.unwrap(), None);
    f.stop().await;
}

#[tokio::test]
async fn list_filters_by_namespace_and_labels_in_one_request() {
    let f = fixture().await;
    for (name, ns, tier) in [
        ("a", "default", "web"),
        ("b", "default", "db"),
        ("c", "kube-system", "web"),
    ] {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": {"tier": tier}}});
        f.cluster
            .apply(&body, &ApplyOptions::default())
            .await
            .unwrap();
    }
    let kind = KindRef::new("v1", "ConfigMap");
    let names = |l: &meshplan::cluster::ObjectList| -> Vec<String> {
        let mut v: Vec<String> = l
            .items
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let web_everywhere = f.cluster.list(&kind, None, Some("tier=web")).await.unwrap();
    assert_eq!(names(&web_everywhere), vec!["a", "c"]);
    assert!(!web_everywhere.resource_version.is_empty());
    assert!(
        web_everywhere
            .items
            .iter()
            .all(|o| o["kind"] == "ConfigMap" && o["apiVersion"] == "v1")
    );
    let in_default = f
        .cluster
        .list(&kind, Some("default"), Some("tier"))
        .await
        .unwrap();
    assert_eq!(names(&in_default), vec!["a", "b"]);
    let namespaces = f
        .cluster
        .list(&KindRef::new("v1", "Namespace"), None, None)
        .await
        .unwrap();
    assert!(names(&namespaces).contains(&"kube-system".to_owned()));
    f.stop().await;
}

#[tokio::test]
async fn a_paged_listing_follows_the_continue_tokens_and_keeps_what_is_asked() {
    let f = fixture().await;
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    for name in &names {
        f.cluster
            .apply(&cm(name, json!({"n": name})), &ApplyOptions::default())
            .await
            .unwrap();
    }
    let since = f.sandbox.audit().last().map_or(0, |e| e.seq);
    let kind = KindRef::new("v1", "ConfigMap");
    let mut kept =
        meshplan::cluster::list_paged(f.cluster.as_ref(), &kind, Some("default"), 3, |o| {
            let name = o["metadata"]["name"].as_str()?.to_owned();
            (name != "p4").then_some(name)
        })
        .await
        .unwrap();
    kept.sort();
    let mut expected = names.clone();
    expected.retain(|n| n != "p4");
    assert_eq!(kept, expected);
    let lists: Vec<_> = f
        .sandbox
        .audit()
        .into_iter()
        .filter(|e| e.seq > since && e.resource == "configmaps")
        .collect();
    assert_eq!(lists.len(), 3, "8 objects in pages of 3: {lists:#?}");
    assert!(
        lists
            .iter()
            .all(|e| e.verb == "list" && e.query.contains("limit=3"))
    );
    assert!(!lists[0].query.contains("continue="), "{lists:#?}");
    assert!(
        lists[1..].iter().all(|e| e.query.contains("continue=")),
        "{lists:#?}"
    );

    let page = f
        .cluster
        .list_page(&kind, Some("default"), 5, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    assert!(page.items.iter().all(|o| o["kind"] == "ConfigMap"));
    let token = page.continue_token.expect("more than one page");
    let last = f
        .cluster
        .list_page(&kind, Some("default"), 5, Some(&token))
        .await
        .unwrap();
    assert_eq!(last.items.len(), 3);
    assert_eq!(last.continue_token, None);
    f.stop().await;
}

#[tokio::test]
async fn replace_restores_a_snapshot_and_create_refuses_an_existing_object() {
    let f = fixture().await;
    let snapshot = f
        .cluster
        .apply(&cm("restored", json!({"a": "1"})), &ApplyOptions::default())
        .await
        .unwrap();
    let err = f
        .cluster
        .create(&cm("restored", json!({"a": "x"})), &WriteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::AlreadyExists { .. }), "{err}");
    f.cluster
        .apply(
            &cm("restored", json!({"a": "2", "b": "new"})),
            &ApplyOptions::default(),
        )
        .await
        .unwrap();
    // PUT the snapshot back (resourceVersion dropped: an unconditional restore).
    let mut body = snapshot.clone();
    body["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    body["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let restored = f
        .cluster
        .replace(&body, &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(restored["data"], json!({"a": "1"}));
    // A stale resourceVersion is a conflict.
    let err = f
        .cluster
        .replace(&snapshot, &WriteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Conflict { .. }), "{err}");
    // Recreate after delete.
    f.cluster
        .delete(&cm_ref("restored"), &DeleteOptions::default())
        .await
        .unwrap();
    let recreated = f
        .cluster
        .create(&body, &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(recreated["data"], json!({"a": "1"}));
    f.stop().await;
}

#[tokio::test]
async fn wait_for_returns_when_the_condition_holds_or_the_last_object_on_timeout() {
    let f = fixture().await;
    f.cluster
        .apply(
            &cm("gate", json!({"ready": "no"})),
            &ApplyOptions::default(),
        )
        .await
        .unwrap();
    let ready = |o: Option<&Value>| o.is_some_and(|o| o["data"]["ready"] == "yes");

    let outcome = f
        .cluster
        .wait_for(&cm_ref("gate"), &ready, Duration::from_millis(300))
        .await
        .unwrap();
    match &outcome {
        WaitOutcome::TimedOut(Some(last)) => assert_eq!(last["data"]["ready"], "no"),
        other => panic!("expected a timeout with the last object, got {other:?}"),
    }

    // A change made while waiting is seen through the watch.
    let cluster = f.cluster.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster
            .apply(
                &cm("gate", json!({"ready": "yes"})),
                &ApplyOptions::default(),
            )
            .await
            .unwrap();
    });
    let outcome = f
        .cluster
        .wait_for(&cm_ref("gate"), &ready, Duration::from_secs(20))
        .await
        .unwrap();
    writer.await.unwrap();
    assert!(outcome.is_met(), "{outcome:?}");
    assert_eq!(outcome.object().unwrap()["data"]["ready"], "yes");

    // Waiting for absence.
    let cluster = f.cluster.clone();
    let deleter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster
            .delete(&cm_ref("gate"), &DeleteOptions::default())
            .await
            .unwrap();
    });
    let gone = f
        .cluster
        .wait_for(&cm_ref("gate"), &|o| o.is_none(), Duration::from_secs(20))
        .await
        .unwrap();
    deleter.await.unwrap();
    assert_eq!(gone, WaitOutcome::Met(None));

    // An object that never appears times out with nothing seen.
    let never = f
        .cluster
        .wait_for(
            &cm_ref("never"),
            &|o| o.is_some(),
            Duration::from_millis(200),
        )
        .await
        .unwrap();
    assert_eq!(never, WaitOutcome::TimedOut(None));
    f.stop().await;
}

fn write_kubeconfig(dir: &Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(&path, sandbox::kubeconfig_yaml(url, None, None)).unwrap();
    path
}

#[tokio::test]
async fn an_unreachable_cluster_is_named() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let cluster = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(write_kubeconfig(dir.path(), &url)),
        context: None,
        ..ConnectOptions::default()
    })
    .await
    .unwrap();
    let err = cluster.server_version().await.unwrap_err();
    assert!(
        matches!(&err, ClusterError::Unreachable { url: u, .. } if *u == url),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("the cluster at {url} is unreachable")
    );
    let err = cluster.get(&cm_ref("x")).await.unwrap_err();
    assert!(matches!(err, ClusterError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn kubeconfig_problems_name_the_file_or_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.yaml");
    std::fs::write(&bad, "clusters: [this is: not: valid").unwrap();
    let err = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(bad.clone()),
        context: None,
        ..ConnectOptions::default()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClusterError::Kubeconfig { path, .. } if *path == bad),
        "{err}"
    );
    assert!(err.to_string().contains("broken.yaml"), "{err}");

    let missing = dir.path().join("missing.yaml");
    let err = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(missing.clone()),
        context: None,
        ..ConnectOptions::default()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClusterError::Kubeconfig { path, .. } if *path == missing),
        "{err}"
    );

    let good = write_kubeconfig(dir.path(), "http://127.0.0.1:1");
    let err = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(good),
        context: Some("nope".to_owned()),
        ..ConnectOptions::default()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClusterError::NoContext { context, .. } if context == "nope"),
        "{err}"
    );
}

#[tokio::test]
async fn a_named_context_is_used() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    // Current context: a dead port; context "sandbox": the sandbox.
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: http://127.0.0.1:1\n\
         - name: sandbox\n  cluster:\n    server: {}\ncontexts:\n- name: dead\n  context:\n    cluster: dead\n    user: u\n\
         - name: sandbox\n  context:\n    cluster: sandbox\n    user: u\n    namespace: kube-system\n\
         current-context: dead\nusers:\n- name: u\n  user: {{}}\n",
        f.sandbox.url()
    );
    let path = dir.path().join("config");
    std::fs::write(&path, text).unwrap();
    let cluster = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(path.clone()),
        context: Some("sandbox".to_owned()),
        ..ConnectOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(cluster.url(), f.sandbox.url());
    cluster.server_version().await.unwrap();
    // The context's namespace is the default for objects without one.
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "here"}});
    let applied = cluster
        .apply(&body, &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(applied["metadata"]["namespace"], "kube-system");

    let current = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(path),
        context: None,
        ..ConnectOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(current.url(), "http://127.0.0.1:1");
    f.stop().await;
}

/// Set in a child process: the expected server URL.
const CHILD_URL: &str = "MESHPLAN_TEST_CLUSTER_CHILD_URL";

#[test]
fn kubeconfig_comes_from_the_environment_when_not_given() {
    if let Some(url) = std::env::var_os(CHILD_URL) {
        // Child: KUBECONFIG is set by the parent.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let cluster = KubeCluster::connect(&ConnectOptions::default())
                .await
                .unwrap();
            assert_eq!(cluster.url(), url.to_str().unwrap());
            let version = cluster.server_version().await.unwrap();
            println!("VERSION {}", version.git_version);
        });
        return;
    }
    let sandbox = sandbox::BlockingSandbox::start(SandboxConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-env");
    sandbox.write_kubeconfig(&path).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cluster::kubeconfig_comes_from_the_environment_when_not_given",
            "--nocapture",
        ])
        .env("KUBECONFIG", &path)
        .env(CHILD_URL, sandbox.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("VERSION v"), "{stdout}");

    // A KUBECONFIG naming a missing file is reported with that file.
    let missing = dir.path().join("nowhere");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cluster::kubeconfig_comes_from_the_environment_when_not_given",
            "--nocapture",
        ])
        .env("KUBECONFIG", &missing)
        .env(CHILD_URL, sandbox.url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("nowhere"), "{text}");
}

#[tokio::test]
async fn a_missing_kind_is_looked_up_again_only_when_kinds_may_have_changed() {
    let f = fixture().await;
    let widget = ObjectRef::new("example.com/v1", "Widget", Some("default"), "w1");
    assert!(matches!(
        f.cluster.get(&widget).await,
        Err(ClusterError::KindNotInstalled { .. })
    ));
    // The CRD is created by someone else: this cluster keeps its answer...
    let other = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        f.sandbox.write_kubeconfig(&path).unwrap();
        KubeCluster::connect(&ConnectOptions {
            kubeconfig: Some(path),
            context: None,
            ..ConnectOptions::default()
        })
        .await
        .unwrap()
    };
    let crd = widget_crd();
    other.apply(&crd, &ApplyOptions::default()).await.unwrap();
    let established = other
        .wait_for(
            &ObjectRef::from_object(&crd).unwrap(),
            &|o| has_condition(o, "Established"),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(established.is_met());
    assert!(matches!(
        f.cluster.get(&widget).await,
        Err(ClusterError::KindNotInstalled { .. })
    ));
    // ...until it discovers again.
    f.cluster.discover().await.unwrap();
    assert_eq!(f.cluster.get(&widget).await.unwrap(), None);
    f.stop().await;
}

/// A server that answers every request with `code` and a Status body; returns its URL.
async fn refusing_server(code: u16, reason: &'static str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": format!("{reason} by the test server"), "reason": reason, "code": code})
                .to_string();
                let response = format!(
                    "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn refused_credentials_and_permissions_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let url = refusing_server(401, "Unauthorized").await;
    let cluster = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(write_kubeconfig(dir.path(), &url)),
        context: None,
        ..ConnectOptions::default()
    })
    .await
    .unwrap();
    let err = cluster.server_version().await.unwrap_err();
    assert!(
        matches!(&err, ClusterError::Unauthorized { url: u, .. } if *u == url),
        "{err}"
    );
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert!(help.contains("expired"), "{help}");

    let url = refusing_server(403, "Forbidden").await;
    let cluster = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(write_kubeconfig(dir.path(), &url)),
        context: None,
        ..ConnectOptions::default()
    })
    .await
    .unwrap();
    let err = cluster.server_version().await.unwrap_err();
    assert!(matches!(err, ClusterError::Forbidden { .. }), "{err}");
    assert!(
        err.to_string().contains("Forbidden by the test server"),
        "{err}"
    );
}

/// A TCP proxy in front of `upstream` that records the request line of every HTTP request
/// passing through; returns its URL and the recorded lines.
async fn recording_proxy(
    upstream: std::net::SocketAddr,
) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = requests.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut pending = Vec::new();
                loop {
                    let n = match client_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(at) = pending.windows(2).position(|w| w == b"\r\n") {
                        let line = String::from_utf8_lossy(&pending[..at]).into_owned();
                        pending.drain(..at + 2);
                        // A body has no line end: the next request line follows it directly.
                        let start = ["GET ", "PATCH ", "POST ", "PUT ", "DELETE "]
                            .iter()
                            .filter_map(|m| line.rfind(m))
                            .max();
                        if let (Some(start), true) = (start, line.ends_with(" HTTP/1.1")) {
                            let request = line[start..].trim_end_matches(" HTTP/1.1").to_owned();
                            log.lock().unwrap().push(request);
                        }
                    }
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
        }
    });
    (url, requests)
}

#[tokio::test]
async fn discovery_is_two_requests_and_known_kinds_cost_none() {
    let f = fixture().await;
    let (url, requests) = recording_proxy(f.sandbox.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(write_kubeconfig(dir.path(), &url)),
        context: None,
        ..ConnectOptions::default()
    })
    .await
    .unwrap();
    let take = || std::mem::take(&mut *requests.lock().unwrap());

    // Aggregated discovery: /api and /apis, nothing per group.
    let d = cluster.discover().await.unwrap();
    assert!(d.resources.len() > 20);
    let mut sent = take();
    sent.sort();
    assert_eq!(sent, vec!["GET /api", "GET /apis"]);

    // Kinds in the kept discovery resolve without requests: one GET per object.
    cluster.get(&cm_ref("a")).await.unwrap();
    cluster.get(&cm_ref("b")).await.unwrap();
    let sent = take();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent.iter()
            .all(|r| r.starts_with("GET /api/v1/namespaces/default/configmaps/")),
        "{sent:?}"
    );

    // A primed discovery (from the state's cache) is used as is.
    let primed = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(write_kubeconfig(dir.path(), &url)),
        context: None,
        ..ConnectOptions::default()
    })
    .await
    .unwrap();
    primed.prime_discovery(d).await;
    primed.get(&cm_ref("a")).await.unwrap();
    assert_eq!(take().len(), 1);

    // Fifty objects of a kind that is not installed cost one fresh discovery, not fifty.
    for i in 0..50 {
        let pm = ObjectRef::new(
            "monitoring.coreos.com/v1",
            "PodMonitor",
            Some("linkerd"),
            format!("pm{i}"),
        );
        assert!(matches!(
            primed.get(&pm).await,
            Err(ClusterError::KindNotInstalled { .. })
        ));
    }
    let mut sent = take();
    sent.sort();
    assert_eq!(sent, vec!["GET /api", "GET /apis"]);

    // One LIST for a kind in a namespace.
    cluster
        .list(
            &KindRef::new("v1", "ConfigMap"),
            Some("default"),
            Some("app=x"),
        )
        .await
        .unwrap();
    let sent = take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].starts_with("GET /api/v1/namespaces/default/configmaps?"),
        "{sent:?}"
    );
    assert!(sent[0].contains("labelSelector=app%3Dx"), "{sent:?}");

    // Apply sends the manager, strict validation, and force / dry run only when asked.
    cluster
        .apply(&cm("p", json!({"a": "1"})), &ApplyOptions::default())
        .await
        .unwrap();
    let options = ApplyOptions {
        force: true,
        dry_run: true,
        ..ApplyOptions::default()
    };
    cluster
        .apply(&cm("p", json!({"a": "2"})), &options)
        .await
        .unwrap();
    let sent = take();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for line in &sent {
        assert!(
            line.starts_with("PATCH /api/v1/namespaces/default/configmaps/p?"),
            "{line}"
        );
        assert!(line.contains("fieldManager=meshplan"), "{line}");
        assert!(line.contains("fieldValidation=Strict"), "{line}");
    }
    assert!(
        !sent[0].contains("force") && !sent[0].contains("dryRun"),
        "{}",
        sent[0]
    );
    assert!(
        sent[1].contains("force=true") && sent[1].contains("dryRun=All"),
        "{}",
        sent[1]
    );
    f.stop().await;
}
