//! `coordination.k8s.io/v1` Leases, as meshplan's locks use them, proved with the real
//! kubectl (discovery, CRUD, the HOLDER column, optimistic concurrency, validation) and with
//! kube 5 (create races, replace with a stale resourceVersion, delete preconditions).

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use meshplan_sandbox::kubectl::Cluster;
use meshplan_sandbox::{Sandbox, SandboxConfig, start};
use serde_json::json;

fn lease_yaml(name: &str, holder: &str, extra: &str) -> String {
    format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {name}\n  namespace: kube-system\n\
         spec:\n  holderIdentity: {holder}\n  leaseDurationSeconds: 30\n  \
         renewTime: \"2026-01-02T03:04:05.123456Z\"\n{extra}"
    )
}

#[test]
fn leases_are_discovered_created_listed_with_their_holder_and_deleted() {
    let c = Cluster::start();
    let out = c.kubectl(&["api-resources", "--api-group=coordination.k8s.io"]);
    let lines: Vec<Vec<&str>> = out
        .ok()
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        lines.contains(&vec!["leases", "coordination.k8s.io/v1", "true", "Lease"]),
        "{}",
        out.stdout
    );

    let f = c.file("lease.yaml", &lease_yaml("meshplan-lock-demo", "alice", ""));
    assert_eq!(
        c.kubectl(&["create", "-f", &f]).ok(),
        "lease.coordination.k8s.io/meshplan-lock-demo created\n"
    );
    let table = c.kubectl(&["get", "leases", "-n", "kube-system"]);
    let rows: Vec<Vec<&str>> = table
        .ok()
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "HOLDER", "AGE"], "{}", table.stdout);
    assert_eq!(rows[1][..2], ["meshplan-lock-demo", "alice"]);

    let lease = c.get_json(&["lease", "-n", "kube-system", "meshplan-lock-demo"]);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 30);
    assert_eq!(lease["spec"]["renewTime"], "2026-01-02T03:04:05.123456Z");

    assert_eq!(
        c.kubectl(&["delete", "lease", "-n", "kube-system", "meshplan-lock-demo"])
            .ok(),
        "lease.coordination.k8s.io \"meshplan-lock-demo\" deleted\n"
    );
    c.kubectl(&["get", "lease", "-n", "kube-system", "meshplan-lock-demo"])
        .failed();
}

#[test]
fn a_replace_with_a_stale_resource_version_is_a_conflict() {
    let c = Cluster::start();
    let f = c.file("lease.yaml", &lease_yaml("l1", "alice", ""));
    c.kubectl(&["create", "-f", &f]).ok();
    let mut seen = c.get_json(&["lease", "-n", "kube-system", "l1"]);
    // Someone else renews it meanwhile.
    let mut other = seen.clone();
    other["spec"]["renewTime"] = json!("2026-01-02T03:04:06.000000Z");
    let g = c.file("other.json", &other.to_string());
    c.kubectl(&["replace", "-f", &g]).ok();
    // The write from the old resourceVersion is refused, with the API server's words.
    seen["spec"]["holderIdentity"] = json!("bob");
    let h = c.file("stale.json", &seen.to_string());
    let err = c.kubectl(&["replace", "-f", &h]);
    assert_eq!(
        err.failed().trim(),
        format!(
            "Error from server (Conflict): error when replacing \"{h}\": Operation cannot be \
             fulfilled on leases.coordination.k8s.io \"l1\": the object has been modified; \
             please apply your changes to the latest version and try again"
        )
    );
    let now = c.get_json(&["lease", "-n", "kube-system", "l1"]);
    assert_eq!(now["spec"]["holderIdentity"], "alice");
}

#[test]
fn invalid_leases_are_refused_as_the_api_server_refuses_them() {
    let c = Cluster::start();
    let f = c.file(
        "zero.yaml",
        &lease_yaml("l2", "alice", "")
            .replace("leaseDurationSeconds: 30", "leaseDurationSeconds: 0"),
    );
    let out = c.kubectl(&["create", "-f", &f]);
    assert!(
        out.failed().contains(
            "The Lease \"l2\" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
        ),
        "{}",
        out.stderr
    );
    let f = c.file(
        "time.yaml",
        &lease_yaml("l3", "alice", "").replace(".123456Z", "Z"),
    );
    let out = c.kubectl(&["create", "-f", &f]);
    assert!(
        out.failed().contains(
            "Lease in version \"v1\" cannot be handled as a Lease: parsing time \"2026-01-02T03:04:05Z\" \
             as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"Z\" as \".000000\""
        ),
        "{}",
        out.stderr
    );
    let f = c.file(
        "transitions.yaml",
        &lease_yaml("l4", "alice", "  leaseTransitions: -1\n"),
    );
    let out = c.kubectl(&["create", "-f", &f]);
    assert!(
        out.failed().contains(
            "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"
        ),
        "{}",
        out.stderr
    );
    c.kubectl(&["get", "leases", "-n", "kube-system", "-o", "name"])
        .ok()
        .is_empty()
        .then_some(())
        .expect("no invalid Lease was stored");
}

async fn client() -> (Sandbox, kube::Client, tempfile::TempDir) {
    let sandbox = start(SandboxConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    sandbox.write_kubeconfig(&path).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    (sandbox, kube::Client::try_from(config).unwrap(), dir)
}

fn lease(name: &str, holder: &str) -> Lease {
    serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": "2026-01-02T03:04:05.000001Z",
                 "renewTime": "2026-01-02T03:04:05.000001Z", "leaseTransitions": 0},
    }))
    .unwrap()
}

fn status(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_take_optimistic_concurrency_from_kube() {
    let (_sandbox, client, _dir) = client().await;
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    let pp = PostParams::default();
    // Two creates race: one wins, the other is told the Lease exists.
    let first = api.create(&pp, &lease("lock", "a")).await.unwrap();
    let second = status(api.create(&pp, &lease("lock", "b")).await.unwrap_err());
    assert!(second.is_already_exists(), "{second:?}");
    assert_eq!(
        second.message,
        "leases.coordination.k8s.io \"lock\" already exists"
    );

    // A replace from the resourceVersion read succeeds once; from the old one it conflicts.
    let rv = first.metadata.resource_version.clone().unwrap();
    let mut renewed = first.clone();
    renewed.spec.as_mut().unwrap().renew_time = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now()),
    );
    let after = api.replace("lock", &pp, &renewed).await.unwrap();
    assert_ne!(
        after.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    let stale = status(api.replace("lock", &pp, &renewed).await.unwrap_err());
    assert!(stale.is_conflict(), "{stale:?}");
    assert_eq!(stale.code, 409);

    // A delete with a stale resourceVersion precondition is refused, the current one works.
    let params = |rv: &str| DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(rv.to_owned()),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let refused = status(api.delete("lock", &params(&rv)).await.unwrap_err());
    assert_eq!(refused.code, 409);
    assert_eq!(
        refused.message,
        format!(
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"lock\": Precondition \
             failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            after.metadata.resource_version.clone().unwrap()
        )
    );
    let current = after.metadata.resource_version.unwrap();
    api.delete("lock", &params(&current)).await.unwrap();
    assert!(api.get_opt("lock").await.unwrap().is_none());
}
