//! Bounded soak: 10,000 mixed requests from 16 concurrent clients over raw HTTP/1.1
//! keep-alive connections, with a watch started at the beginning.
//!
//! Checks: every request gets exactly one well-formed answer that belongs to it, every write
//! gets its own resourceVersion, each client sees its resourceVersions strictly increase, and
//! the watch sees every write exactly once, in resourceVersion order, with the right type.

use std::net::SocketAddr;

use crate::raw::Conn;

use meshplan_sandbox::{BlockingSandbox, SandboxConfig};
use serde_json::{Value, json};

const CLIENTS: usize = 16;
const REQUESTS_PER_CLIENT: usize = 625;

/// One write as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Write1 {
    rv: u64,
    kind: &'static str,
    name: String,
}

fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

const TOKEN: &str = "soak-token";

const BASE: &str = "/api/v1/namespaces/default/configmaps";

fn client(addr: SocketAddr, id: usize) -> (Vec<Write1>, usize) {
    let mut conn = Conn::open(addr, Some(TOKEN));
    let mut writes = Vec::new();
    let mut answered = 0;
    let mut last_rv = 0;
    for i in 0..REQUESTS_PER_CLIENT {
        let round = i / 5;
        let name = format!("s{id}-{round}");
        let token = format!("{id}-{i}");
        let (kind, answer) = match i % 5 {
            0 => {
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"token": token}});
                let a = conn.request(
                    "POST",
                    BASE,
                    "application/json",
                    body.to_string().as_bytes(),
                );
                assert_eq!(a.code, 201, "{}", a.body);
                ("ADDED", a)
            }
            1 => {
                let a = conn.request("GET", &format!("{BASE}/{name}"), "application/json", b"");
                assert_eq!(a.code, 200, "{}", a.body);
                assert_eq!(a.body["data"]["token"], format!("{id}-{}", i - 1));
                ("", a)
            }
            2 => {
                let body = json!({"data": {"token": token}});
                let a = conn.request(
                    "PATCH",
                    &format!("{BASE}/{name}"),
                    "application/merge-patch+json",
                    body.to_string().as_bytes(),
                );
                assert_eq!(a.code, 200, "{}", a.body);
                ("MODIFIED", a)
            }
            3 => {
                let body = format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  token: \"{token}\"\n"
                );
                let a = conn.request(
                    "PATCH",
                    &format!("{BASE}/{name}?fieldManager=soak{id}&force=true"),
                    "application/apply-patch+yaml",
                    body.as_bytes(),
                );
                assert_eq!(a.code, 200, "{}", a.body);
                ("MODIFIED", a)
            }
            _ => {
                let a = conn.request("DELETE", &format!("{BASE}/{name}"), "application/json", b"");
                assert_eq!(a.code, 200, "{}", a.body);
                ("DELETED", a)
            }
        };
        answered += 1;
        // A delete removed at once is answered with a Status naming the object (as the API
        // server does), every other request with the object.
        let answered_name = if kind == "DELETED" {
            &answer.body["details"]["name"]
        } else {
            &answer.body["metadata"]["name"]
        };
        assert_eq!(answered_name, name.as_str(), "answer for another request");
        if kind.is_empty() {
            continue;
        }
        if kind != "DELETED" {
            assert_eq!(
                answer.body["data"]["token"],
                token.as_str(),
                "answer for another request"
            );
        }
        if kind == "DELETED" {
            // A Status carries no resourceVersion: the watch tells it (0 until then).
            writes.push(Write1 { rv: 0, kind, name });
            continue;
        }
        let rv = rv_of(&answer.body);
        assert!(
            rv > last_rv,
            "client {id}: resourceVersion {rv} after {last_rv}"
        );
        last_rv = rv;
        writes.push(Write1 { rv, kind, name });
    }
    (writes, answered)
}

#[test]
fn soak_ten_thousand_requests_sixteen_clients() {
    let sandbox = BlockingSandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        ..SandboxConfig::default()
    })
    .unwrap();
    let addr = sandbox.addr();
    let start_rv = sandbox.resource_version();

    let mut watch = Conn::open(addr, Some(TOKEN));
    watch.send(
        "GET",
        &format!("{BASE}?watch=true&resourceVersion={start_rv}"),
        "application/json",
        b"",
    );
    let (code, headers) = watch.head();
    assert_eq!(code, 200);
    assert_eq!(
        headers.get("transfer-encoding").map(|v| v[0].as_str()),
        Some("chunked")
    );

    let handles: Vec<_> = (0..CLIENTS)
        .map(|id| std::thread::spawn(move || client(addr, id)))
        .collect();
    let mut writes = Vec::new();
    let mut answered = 0;
    for h in handles {
        let (w, n) = h.join().unwrap();
        writes.extend(w);
        answered += n;
    }
    assert_eq!(answered, CLIENTS * REQUESTS_PER_CLIENT);
    writes.sort_by_key(|w| w.rv);
    let rvs: Vec<u64> = writes.iter().map(|w| w.rv).filter(|rv| *rv > 0).collect();
    let mut unique = rvs.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        rvs.len(),
        "two writes shared a resourceVersion"
    );
    assert_eq!(writes.len(), CLIENTS * REQUESTS_PER_CLIENT * 4 / 5);
    assert_eq!(sandbox.resource_version(), start_rv + writes.len() as u64);
    // Every client deleted what it created: only the four namespaces are left.
    assert_eq!(sandbox.object_count(), 4);
    assert!(sandbox.object("", "namespaces", "", "default").is_some());
    assert!(
        sandbox
            .object("", "configmaps", "default", "s0-0")
            .is_none()
    );

    let mut seen = Vec::new();
    let mut pending = Vec::new();
    while seen.len() < writes.len() {
        pending.extend(watch.chunk().expect("the watch ended early"));
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let ev: Value = serde_json::from_slice(&line).unwrap();
            let kind = match ev["type"].as_str().unwrap() {
                "ADDED" => "ADDED",
                "MODIFIED" => "MODIFIED",
                "DELETED" => "DELETED",
                other => panic!("unexpected watch event {other}: {ev}"),
            };
            seen.push(Write1 {
                rv: rv_of(&ev["object"]),
                kind,
                name: ev["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            });
        }
    }
    // Each name is deleted once: its delete's resourceVersion is the one its DELETED event has.
    let deleted: std::collections::BTreeMap<&str, u64> = seen
        .iter()
        .filter(|w| w.kind == "DELETED")
        .map(|w| (w.name.as_str(), w.rv))
        .collect();
    let mut writes: Vec<Write1> = writes
        .into_iter()
        .map(|mut w| {
            if w.kind == "DELETED" {
                w.rv = *deleted
                    .get(w.name.as_str())
                    .expect("a delete the watch did not see");
            }
            w
        })
        .collect();
    writes.sort_by_key(|w| w.rv);
    assert_eq!(seen, writes, "the watch saw a different sequence of writes");
}
