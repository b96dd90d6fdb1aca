//! Fault injection, request counters and the audit log, through the library API, the admin
//! endpoint and the clients that see them.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, PostParams};
use meshplan_sandbox::{
    AuditEntry, BlockingSandbox, FaultAction, FaultRule, Sandbox, SandboxConfig, start,
};
use serde_json::{Value, json};

use crate::raw::Conn;

const TOKEN: &str = "faults-test-token";
const CMS: &str = "/api/v1/namespaces/default/configmaps";
const JSON: &str = "application/json";

fn sandbox() -> BlockingSandbox {
    BlockingSandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        ..SandboxConfig::api_only()
    })
    .unwrap()
}

fn cm_body(name: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
        .to_string()
        .into_bytes()
}

#[test]
fn an_error_injected_at_request_n_hits_exactly_request_n() {
    for (code, reason) in [
        (500, "InternalError"),
        (409, "Conflict"),
        (429, "TooManyRequests"),
    ] {
        let sb = sandbox();
        sb.add_fault(FaultRule::new(
            "create",
            "configmaps",
            3,
            FaultAction::Error { code },
        ));
        let mut conn = Conn::open(sb.addr(), Some(TOKEN));
        let mut codes = Vec::new();
        for i in 1..=5 {
            // Reads in between do not count for a rule on creates.
            assert_eq!(conn.request("GET", CMS, JSON, b"").code, 200);
            let a = conn.request("POST", CMS, JSON, &cm_body(&format!("c{i}")));
            if a.code == code {
                assert_eq!(a.body["reason"], reason, "{}", a.body);
                assert_eq!(a.body["status"], "Failure");
                if code == 429 {
                    assert_eq!(a.headers["retry-after"], vec!["1".to_string()]);
                }
            }
            codes.push(a.code);
        }
        assert_eq!(codes, vec![201, 201, code, 201, 201]);
        // The failed request stored nothing.
        assert!(sb.object("", "configmaps", "default", "c3").is_none());
        assert!(sb.object("", "configmaps", "default", "c4").is_some());
    }
}

#[test]
fn a_dropped_connection_at_request_n_and_names_filter_rules() {
    let sb = sandbox();
    sb.add_fault(FaultRule::new("get", "configmaps", 2, FaultAction::Drop).named("target"));
    let mut conn = Conn::open(sb.addr(), Some(TOKEN));
    assert_eq!(
        conn.request("POST", CMS, JSON, &cm_body("target")).code,
        201
    );
    assert_eq!(conn.request("POST", CMS, JSON, &cm_body("other")).code, 201);
    let path = format!("{CMS}/target");
    let other = format!("{CMS}/other");
    assert_eq!(conn.request("GET", &path, JSON, b"").code, 200);
    // Gets of another name do not count.
    assert_eq!(conn.request("GET", &other, JSON, b"").code, 200);
    assert!(
        conn.request_or_eof("GET", &path, JSON, b"").is_none(),
        "the second get of target must be dropped"
    );
    let mut conn = Conn::open(sb.addr(), Some(TOKEN));
    assert_eq!(conn.request("GET", &path, JSON, b"").code, 200);
    let dropped: Vec<AuditEntry> = sb.audit().into_iter().filter(|e| e.status == 0).collect();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].fault.as_deref(), Some("drop"));
    assert_eq!(dropped[0].name, "target");
}

async fn kube_client(sandbox: &Sandbox, dir: &std::path::Path) -> Client {
    let path = dir.join("kubeconfig");
    sandbox.write_kubeconfig(&path).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_sees_the_fault_at_request_n_and_audit_counts_match() {
    let sb = start(SandboxConfig::api_only()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = kube_client(&sb, dir.path()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    sb.add_fault(FaultRule::new(
        "create",
        "configmaps",
        4,
        FaultAction::Error { code: 409 },
    ));
    sb.add_fault(FaultRule::new("get", "configmaps", 2, FaultAction::Drop));
    let mut outcomes = Vec::new();
    for i in 1..=6 {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("k{i}")}, "data": {"i": i.to_string()}
        }))
        .unwrap();
        outcomes.push(match api.create(&PostParams::default(), &cm).await {
            Ok(_) => "ok".to_string(),
            Err(kube::Error::Api(s)) if s.is_conflict() => "conflict".to_string(),
            Err(e) => format!("{e}"),
        });
    }
    assert_eq!(outcomes, ["ok", "ok", "ok", "conflict", "ok", "ok"]);
    let mut gets = Vec::new();
    for name in ["k1", "k2", "k3"] {
        gets.push(api.get(name).await.is_ok());
    }
    assert_eq!(gets, [true, false, true], "the second get fails");
    let lists = 2;
    for _ in 0..lists {
        api.list(&Default::default()).await.unwrap();
    }

    let counters = sb.counters();
    let count = |verb: &str| {
        counters
            .get(&(verb.to_string(), "configmaps".to_string()))
            .copied()
    };
    assert_eq!(count("create"), Some(6));
    assert_eq!(count("get"), Some(3));
    assert_eq!(count("list"), Some(lists));
    let audit: Vec<AuditEntry> = sb
        .audit()
        .into_iter()
        .filter(|e| e.resource == "configmaps")
        .collect();
    assert_eq!(audit.len(), 6 + 3 + 2);
    let statuses: Vec<u16> = audit.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [201, 201, 201, 409, 201, 201, 200, 0, 200, 200, 200]
    );
    assert!(audit.iter().all(|e| e.namespace == "default"));
    assert_eq!(audit[0].method, "POST");
    assert_eq!(audit[0].path, CMS);
    assert_eq!(audit[0].verb, "create");
    assert!(audit[0].field_manager.is_some());
    assert!(audit.windows(2).all(|w| w[0].seq < w[1].seq));
    sb.shutdown().await.unwrap();
}

#[test]
fn admin_endpoint_needs_the_token_and_manages_faults_audit_and_watches() {
    let dir = tempfile::tempdir().unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let data = dir.path().join("data");
    let sb = BlockingSandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        audit_file: Some(audit_file.clone()),
        data_dir: Some(data.clone()),
        ..SandboxConfig::api_only()
    })
    .unwrap();
    let mut anon = Conn::open(sb.addr(), None);
    let a = anon.request("GET", "/_sandbox/audit", JSON, b"");
    assert_eq!(a.code, 401);
    let a = anon.request("POST", "/_sandbox/faults", JSON, b"{}");
    assert_eq!(a.code, 401);

    let mut admin = Conn::open(sb.addr(), Some(TOKEN));
    let rule = json!({"verb": "update", "resource": "configmaps", "nth": 1,
                      "action": {"type": "error", "code": 500}});
    let a = admin.request(
        "POST",
        "/_sandbox/faults",
        JSON,
        rule.to_string().as_bytes(),
    );
    assert_eq!(a.code, 201, "{}", a.body);
    let a = admin.request(
        "POST",
        "/_sandbox/faults",
        JSON,
        b"{\"action\":{\"type\":\"nope\"}}",
    );
    assert_eq!(a.code, 400);
    let listed = admin.request("GET", "/_sandbox/faults", JSON, b"");
    assert_eq!(listed.body["faults"][0]["verb"], "update");
    assert_eq!(listed.body["faults"][0]["matched"], 0);

    let mut api = Conn::open(sb.addr(), Some(TOKEN));
    assert_eq!(api.request("POST", CMS, JSON, &cm_body("a")).code, 201);
    let put = api.request("PUT", &format!("{CMS}/a"), JSON, &cm_body("a"));
    assert_eq!(put.code, 500);
    assert_eq!(
        put.body["message"],
        "Internal error occurred: injected fault"
    );
    let put = api.request("PUT", &format!("{CMS}/a"), JSON, &cm_body("a"));
    assert_eq!(put.code, 200);
    let listed = admin.request("GET", "/_sandbox/faults", JSON, b"");
    assert_eq!(listed.body["faults"][0]["matched"], 2);
    assert_eq!(
        admin.request("DELETE", "/_sandbox/faults", JSON, b"").code,
        200
    );

    // Watches end on request.
    let mut watch = Conn::open(sb.addr(), Some(TOKEN));
    watch.send("GET", &format!("{CMS}?watch=true"), JSON, b"");
    let (code, _) = watch.head();
    assert_eq!(code, 200);
    let first = watch.events(1);
    assert_eq!(first[0]["type"], "ADDED");
    assert_eq!(
        admin
            .request("POST", "/_sandbox/watches/close", JSON, b"")
            .code,
        200
    );
    assert!(watch.events(1).is_empty(), "the stream ended");

    // Pausing through the endpoint.
    let a = admin.request("POST", "/_sandbox/controllers/workloads/pause", JSON, b"");
    assert_eq!(a.body["paused"], true);
    let a = admin.request("POST", "/_sandbox/controllers/nope/pause", JSON, b"");
    assert_eq!(a.code, 404);

    let audit = admin.request("GET", "/_sandbox/audit", JSON, b"");
    let entries = audit.body["entries"].as_array().unwrap();
    // POST, PUT (500), PUT (200), the watch; admin requests are not audited.
    let cm_entries: Vec<&Value> = entries
        .iter()
        .filter(|e| e["resource"] == "configmaps")
        .collect();
    let verbs: Vec<(&str, u64)> = cm_entries
        .iter()
        .map(|e| (e["verb"].as_str().unwrap(), e["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        verbs,
        [
            ("create", 201),
            ("update", 500),
            ("update", 200),
            ("watch", 200)
        ]
    );
    let since = entries[1]["seq"].as_u64().unwrap();
    let later = admin.request("GET", &format!("/_sandbox/audit?since={since}"), JSON, b"");
    assert_eq!(
        later.body["entries"].as_array().unwrap().len(),
        entries.len() - 2
    );
    let counters = admin.request("GET", "/_sandbox/counters", JSON, b"");
    assert!(
        counters.body["counters"]
            .as_array()
            .unwrap()
            .contains(&json!({"verb": "update", "resource": "configmaps", "count": 2}))
    );
    drop(sb);
    // The audit log is written as JSON lines to --audit FILE and to the data directory.
    for path in [audit_file, data.join("audit.log")] {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<AuditEntry> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let updates = lines
            .iter()
            .filter(|e| e.verb == "update" && e.resource == "configmaps")
            .count();
        assert_eq!(updates, 2, "{}", path.display());
    }
}

#[test]
fn latency_rules_delay_without_failing() {
    let sb = sandbox();
    sb.add_fault(FaultRule {
        times: 2,
        ..FaultRule::new("list", "configmaps", 1, FaultAction::Latency { ms: 50 })
    });
    let mut conn = Conn::open(sb.addr(), Some(TOKEN));
    for _ in 0..3 {
        assert_eq!(conn.request("GET", CMS, JSON, b"").code, 200);
    }
    let faults: Vec<Option<String>> = sb.audit().into_iter().map(|e| e.fault).collect();
    assert_eq!(
        faults,
        [
            Some("latency 50ms".to_string()),
            Some("latency 50ms".to_string()),
            None
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_watch_streams_are_resumed_by_the_kube_watcher() {
    use futures::StreamExt;
    use kube::runtime::watcher;
    use std::time::Duration;

    let sb = start(SandboxConfig::api_only()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = kube_client(&sb, dir.path()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    // The watcher runs in its own task and reports the names it sees applied.
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let watcher_task = tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event
                && tx.send(o.metadata.name.unwrap_or_default()).is_err()
            {
                return;
            }
        }
    });
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
    };
    let watches = |sb: &Sandbox| {
        sb.counters()
            .get(&("watch".to_string(), "configmaps".to_string()))
            .copied()
            .unwrap_or(0)
    };
    let wait_for = async |seen: &mut tokio::sync::mpsc::UnboundedReceiver<String>, name: &str| {
        loop {
            let got = tokio::time::timeout(Duration::from_secs(30), seen.recv())
                .await
                .expect("the watcher did not report it")
                .unwrap();
            if got == name {
                return;
            }
        }
    };
    api.create(&PostParams::default(), &cm("one"))
        .await
        .unwrap();
    wait_for(&mut seen, "one").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while watches(&sb) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no watch opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = watches(&sb);
    sb.close_watches();
    api.create(&PostParams::default(), &cm("two"))
        .await
        .unwrap();
    wait_for(&mut seen, "two").await;
    // The watcher opened a new watch after the close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while watches(&sb) <= before {
        assert!(tokio::time::Instant::now() < deadline, "no new watch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher_task.abort();
    sb.shutdown().await.unwrap();
}
