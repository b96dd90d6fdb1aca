//! The kube 5 checks: error reasons, apply conflicts, the no-op apply, the watcher's event
//! sequence, both discovery modes and waiting for a CRD to be established.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;
use kube::{Client, Discovery};
use meshplan_sandbox::{Sandbox, SandboxConfig, start};
use serde_json::json;

async fn client() -> (Sandbox, Client, tempfile::TempDir) {
    let sandbox = start(SandboxConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    sandbox.write_kubeconfig(&path).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    (sandbox, Client::try_from(config).unwrap(), dir)
}

fn cm(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": data,
    }))
    .unwrap()
}

fn api_status(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_errors_carry_reasons() {
    let (sandbox, client, _dir) = client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let missing = api_status(api.get("nope").await.unwrap_err());
    assert!(missing.is_not_found(), "{missing:?}");
    assert_eq!(missing.code, 404);

    let created = api
        .create(&PostParams::default(), &cm("k1", json!({"a": "1"})))
        .await
        .unwrap();
    let dup = api_status(
        api.create(&PostParams::default(), &cm("k1", json!({"a": "1"})))
            .await
            .unwrap_err(),
    );
    assert!(dup.is_already_exists(), "{dup:?}");
    assert_eq!(dup.code, 409);

    let mut fresh = created.clone();
    fresh.data = Some([("a".to_string(), "2".to_string())].into());
    api.replace("k1", &PostParams::default(), &fresh)
        .await
        .unwrap();
    // `created` still carries the old resourceVersion.
    let stale = api_status(
        api.replace("k1", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert!(stale.is_conflict(), "{stale:?}");
    assert!(stale.message.contains("the object has been modified"));
    sandbox.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_apply_conflict_names_the_field_and_noop_keeps_rv() {
    let (sandbox, client, _dir) = client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .patch(
            "k1",
            &PatchParams::apply("first"),
            &Patch::Apply(cm("k1", json!({"a": "1"}))),
        )
        .await
        .unwrap();
    let again = api
        .patch(
            "k1",
            &PatchParams::apply("first"),
            &Patch::Apply(cm("k1", json!({"a": "1"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        first.metadata.resource_version,
        again.metadata.resource_version
    );

    let conflict = api_status(
        api.patch(
            "k1",
            &PatchParams::apply("second"),
            &Patch::Apply(cm("k1", json!({"a": "2"}))),
        )
        .await
        .unwrap_err(),
    );
    assert!(conflict.is_conflict());
    let causes = conflict.details.unwrap().causes;
    assert_eq!(causes[0].field, ".data.a");
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    sandbox.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_watcher_yields_init_then_changes() {
    let (sandbox, client, _dir) = client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut next = async || stream.next().await.unwrap().unwrap();
    assert!(matches!(next().await, watcher::Event::Init));
    match next().await {
        watcher::Event::InitApply(o) => assert_eq!(o.metadata.name.as_deref(), Some("before")),
        other => panic!("expected InitApply, got {other:?}"),
    }
    assert!(matches!(next().await, watcher::Event::InitDone));
    api.create(&PostParams::default(), &cm("after", json!({})))
        .await
        .unwrap();
    match next().await {
        watcher::Event::Apply(o) => assert_eq!(o.metadata.name.as_deref(), Some("after")),
        other => panic!("expected Apply, got {other:?}"),
    }
    api.delete("after", &DeleteParams::default()).await.unwrap();
    match next().await {
        watcher::Event::Delete(o) => assert_eq!(o.metadata.name.as_deref(), Some("after")),
        other => panic!("expected Delete, got {other:?}"),
    }
    sandbox.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_discovery_legacy_and_aggregated_agree() {
    let (sandbox, client, _dir) = client().await;
    let legacy = Discovery::new(client.clone()).run().await.unwrap();
    let aggregated = Discovery::new(client).run_aggregated().await.unwrap();
    let names = |d: &Discovery| {
        let mut v: Vec<String> = d.groups().map(|g| g.name().to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&legacy), names(&aggregated));
    assert!(names(&aggregated).contains(&"apps".to_string()));
    assert!(names(&aggregated).contains(&String::new()), "core group");
    let resources = |d: &Discovery| {
        let mut v: Vec<String> = d
            .groups()
            .flat_map(|g| g.recommended_resources())
            .map(|(ar, _)| format!("{}/{}", ar.api_version, ar.plural))
            .collect();
        v.sort();
        v
    };
    assert_eq!(resources(&legacy), resources(&aggregated));
    assert!(resources(&legacy).contains(&"apps/v1/deployments".to_string()));
    sandbox.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_await_crd_established() {
    let (sandbox, client, _dir) = client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: serde_json::Value =
        serde_saphyr::from_str(meshplan_sandbox::kubectl::WIDGET_CRD).unwrap();
    let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
    crds.patch(
        "widgets.example.com",
        &PatchParams::apply("test"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let established = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        await_condition(
            crds,
            "widgets.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(established.is_some());
    let discovery = Discovery::new(client).run_aggregated().await.unwrap();
    assert!(discovery.groups().any(|g| g.name() == "example.com"));
    sandbox.shutdown().await.unwrap();
}
