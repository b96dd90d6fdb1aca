//! The kubernetes state backend as a library, against a sandbox: records, caches and the
//! journal round-trip through Secrets; generations are whole and old chunks go; a state over
//! 1 MiB compressed is chunked and read back; a writer that lost its Lease cannot write; a
//! missing chunk is reported, not papered over.

use std::sync::Arc;
use std::time::Duration;

use meshplan::cluster::ObjectRef;
use meshplan::state::{
    DiscoveryCacheEntry, JournalEntry, JournalRecord, KubeLocation, KubeStore, LeaseGuard,
    LeaseLock, LiveSnapshot, Mutation, ObjectRecord, ProtectedBody, Remote, RenderCacheEntry,
    RunRecord, StateError, StateStore, WriteBatch,
};
use meshplan_sandbox::kubectl::Cluster;
use serde_json::{Value, json};

/// A sandbox, the state's client, and a runtime for the async lock calls.
pub(crate) struct Kube {
    pub cluster: Cluster,
    pub remote: Arc<Remote>,
    pub rt: tokio::runtime::Runtime,
}

impl Kube {
    pub fn start() -> Self {
        let cluster = Cluster::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = rt
            .block_on(kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(&cluster.kubeconfig).unwrap(),
                &kube::config::KubeConfigOptions::default(),
            ))
            .unwrap();
        let remote = Remote::connect(config).unwrap();
        Self {
            cluster,
            remote,
            rt,
        }
    }

    pub fn location(&self) -> KubeLocation {
        KubeLocation {
            namespace: "meshplan-system".into(),
            name: "demo".into(),
        }
    }

    pub fn lock(&self, command: &str) -> LeaseGuard {
        let lock = LeaseLock::new(
            self.remote.clone(),
            self.location().lease(Duration::from_secs(15)),
        );
        self.rt
            .block_on(lock.acquire(command, Duration::ZERO))
            .unwrap()
    }

    pub fn writer(&self, guard: &LeaseGuard) -> KubeStore {
        KubeStore::open_writer(self.remote.clone(), self.location(), guard).unwrap()
    }

    pub fn reader(&self) -> KubeStore {
        KubeStore::open(self.remote.clone(), self.location()).unwrap()
    }

    /// The names of the state's Secrets: (index, chunks sorted).
    pub fn secrets(&self) -> (Vec<String>, Vec<String>) {
        let list = self.cluster.get_json(&[
            "secrets",
            "-n",
            "meshplan-system",
            "-l",
            "meshplan.io/state=demo",
        ]);
        let mut index = Vec::new();
        let mut chunks = Vec::new();
        for item in list["items"].as_array().unwrap() {
            let name = item["metadata"]["name"].as_str().unwrap().to_owned();
            match item["metadata"]["labels"]["meshplan.io/part"].as_str() {
                Some("index") => index.push(name),
                _ => chunks.push(name),
            }
        }
        chunks.sort();
        (index, chunks)
    }
}

fn config_map(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "app"}, "data": {"value": value}})
}

fn record(node: &str, body: &Value) -> ObjectRecord {
    ObjectRecord {
        node: node.to_owned(),
        object: ObjectRef::from_object(body).unwrap(),
        uid: Some(format!(
            "uid-{}",
            body["metadata"]["name"].as_str().unwrap()
        )),
        resource_version: Some("7".to_owned()),
        applied_digest: meshplan::state::digest_json(body),
        last_applied: ProtectedBody::plain(body.clone()).unwrap(),
    }
}

fn journal(run: &str, step: u64, before: bool) -> JournalEntry {
    JournalEntry {
        run: run.into(),
        step,
        node: "manifest.app".into(),
        object: ObjectRef::new("v1", "ConfigMap", Some("app"), "a"),
        mutation: Mutation::Apply,
        record: if before {
            JournalRecord::Before {
                live: LiveSnapshot::Absent,
            }
        } else {
            JournalRecord::After {
                outcome: meshplan::state::Outcome::Succeeded {
                    resource_version: Some("9".into()),
                },
            }
        },
        previous_record: None,
    }
}

#[test]
fn records_caches_and_the_journal_round_trip_through_secrets() {
    let k = Kube::start();
    // Nothing in the cluster yet: an empty state, and reading it creates nothing.
    let empty = k.reader();
    assert!(!empty.exists());
    assert_eq!(empty.meta().unwrap().serial, 0);
    assert_eq!(k.secrets(), (vec![], vec![]));

    let guard = k.lock("apply");
    let store = k.writer(&guard);
    // The claim created the namespace and the index.
    assert_eq!(k.secrets().0, ["meshplan-state-demo"]);
    let lineage = store.meta().unwrap().lineage;

    store
        .commit(
            WriteBatch::new()
                .put_object(record("manifest.app", &config_map("a", "1")))
                .put_object(record("manifest.app", &config_map("b", "2"))),
        )
        .unwrap();
    store
        .commit(WriteBatch::new().put_render(
            "digest-1",
            RenderCacheEntry {
                objects: vec![ProtectedBody::plain(config_map("r", "x")).unwrap()],
                meta: [("chart".to_owned(), "demo-1.0.0".to_owned())].into(),
                created_at: jiff::Timestamp::UNIX_EPOCH,
            },
        ))
        .unwrap();
    store
        .commit(WriteBatch::new().put_discovery(DiscoveryCacheEntry {
            fetched_at: jiff::Timestamp::UNIX_EPOCH,
            discovery: meshplan::cluster::Discovery::default(),
        }))
        .unwrap();
    let run = RunRecord::start("apply");
    store
        .commit(
            WriteBatch::new()
                .begin_run(run.clone())
                .journal(journal(&run.run, 1, true)),
        )
        .unwrap();
    // A refused batch writes nothing.
    let err = store
        .commit(WriteBatch::new().journal(journal("nope", 1, true)))
        .unwrap_err();
    assert!(matches!(err, StateError::Batch { .. }), "{err}");
    // So far only deltas in the index: no chunk.
    assert!(k.secrets().1.is_empty(), "{:?}", k.secrets());

    // Another reader sees exactly what the writer has, unfinished run included.
    let reader = k.reader();
    assert_eq!(reader.export().unwrap(), store.export().unwrap());
    assert_eq!(reader.dump().unwrap(), store.dump().unwrap());
    assert_eq!(reader.unfinished_runs().unwrap().len(), 1);
    assert_eq!(reader.meta().unwrap().serial, 1);
    assert_eq!(reader.meta().unwrap().lineage, lineage);
    assert!(reader.render_cache("digest-1").unwrap().is_some());

    // The run ends: a checkpoint writes a generation in chunks and empties the deltas.
    store
        .commit(
            WriteBatch::new()
                .journal(journal(&run.run, 1, false))
                .put_object(record("manifest.app", &config_map("a", "3")))
                .clear_run(&run.run),
        )
        .unwrap();
    let (index, first_chunks) = k.secrets();
    assert_eq!(index, ["meshplan-state-demo"]);
    assert_eq!(first_chunks.len(), 1, "{first_chunks:?}");
    let reader = k.reader();
    assert_eq!(reader.export().unwrap(), store.export().unwrap());
    assert!(reader.unfinished_runs().unwrap().is_empty());
    assert_eq!(reader.meta().unwrap().serial, 2);
    let a = reader
        .object(
            "manifest.app",
            &ObjectRef::new("v1", "ConfigMap", Some("app"), "a"),
        )
        .unwrap()
        .unwrap();
    assert_eq!(a.last_applied.redacted()["data"]["value"], "3");

    // The next generation replaces the chunks of the previous one.
    let run = RunRecord::start("apply");
    store
        .commit(WriteBatch::new().begin_run(run.clone()))
        .unwrap();
    store.commit(WriteBatch::new().clear_run(&run.run)).unwrap();
    let (_, second_chunks) = k.secrets();
    assert_eq!(second_chunks.len(), 1);
    assert_ne!(second_chunks, first_chunks);

    // Without MESHPLAN_STATE_KEY a sensitive body is refused, never stored in clear.
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "s", "namespace": "app"},
                        "data": {"token": "c2VjcmV0LXRva2VuLXZhbHVl"}});
    let err = store.protect(&secret, &[]).unwrap_err();
    assert!(matches!(err, StateError::NoKey { .. }), "{err}");
    assert!(
        miette::Diagnostic::help(&err)
            .unwrap()
            .to_string()
            .contains("MESHPLAN_STATE_KEY")
    );

    // Once the Lease is released, the store writes no more.
    k.rt.block_on(guard.release()).unwrap();
    let err = store
        .commit(WriteBatch::new().put_object(record("manifest.app", &config_map("c", "1"))))
        .unwrap_err();
    assert!(matches!(err, StateError::LeaseLost { .. }), "{err}");
    assert_eq!(k.reader().meta().unwrap().serial, 2);
}

#[test]
fn a_reader_keeps_its_caches_to_itself() {
    let k = Kube::start();
    let guard = k.lock("apply");
    let writer = k.writer(&guard);
    writer
        .commit(WriteBatch::new().put_object(record("manifest.app", &config_map("a", "1"))))
        .unwrap();
    let reader = k.reader();
    // A reader may cache (plan does): kept in memory, nothing written.
    reader.commit(WriteBatch::new().clear_discovery()).unwrap();
    let err = reader
        .commit(WriteBatch::new().put_object(record("manifest.app", &config_map("b", "1"))))
        .unwrap_err();
    assert!(matches!(err, StateError::ReadOnly { .. }), "{err}");
    assert_eq!(k.reader().export().unwrap(), writer.export().unwrap());
}

#[test]
fn a_state_over_one_mebibyte_compressed_is_chunked_and_read_back() {
    let k = Kube::start();
    let guard = k.lock("apply");
    let store = k.writer(&guard);
    // 10,000 ConfigMaps, each with a value that does not compress (random hex).
    let mut batch = WriteBatch::new();
    for i in 0..10_000 {
        let noise: String = (0..4)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        batch = batch.put_object(record(
            "manifest.many",
            &config_map(&format!("cm-{i:05}"), &noise),
        ));
    }
    store.commit(batch).unwrap();
    let (_, chunks) = k.secrets();
    assert!(chunks.len() >= 3, "{chunks:?}");
    let (secrets, bytes) = store.footprint().unwrap();
    assert_eq!(secrets, chunks.len() + 1);
    assert!(bytes > 1024 * 1024, "{bytes} bytes");
    // Every chunk is well under the API server's 1 MiB object limit.
    for name in &chunks {
        let s = k
            .cluster
            .get_json(&["secret", "-n", "meshplan-system", name]);
        let data = s["data"]["chunk"].as_str().unwrap();
        let decoded = data.len() * 3 / 4 - data.bytes().rev().take_while(|b| *b == b'=').count();
        assert!(decoded <= 512 * 1024, "{name}: {decoded} bytes");
    }
    let reader = k.reader();
    assert_eq!(reader.objects().unwrap().len(), 10_000);
    assert_eq!(reader.export().unwrap(), store.export().unwrap());
}

#[test]
fn a_writer_that_lost_its_lease_cannot_write_the_state() {
    let k = Kube::start();
    let first = k.lock("apply");
    let stale = k.writer(&first);
    stale
        .commit(WriteBatch::new().put_object(record("manifest.app", &config_map("a", "1"))))
        .unwrap();
    // The lock is broken and taken by another run, which claims the index.
    let lock = LeaseLock::new(
        k.remote.clone(),
        k.location().lease(Duration::from_secs(15)),
    );
    let view = k.rt.block_on(lock.inspect()).unwrap();
    k.rt.block_on(lock.break_lock(&view)).unwrap();
    let second = k.lock("apply");
    let fresh = k.writer(&second);
    // The former holder's write is refused by the index's precondition: nothing interleaves.
    let err = stale
        .commit(WriteBatch::new().put_object(record("manifest.app", &config_map("a", "2"))))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StateError::ConcurrentWrite { .. } | StateError::LeaseLost { .. }
        ),
        "{err}"
    );
    fresh
        .commit(WriteBatch::new().put_object(record("manifest.app", &config_map("a", "3"))))
        .unwrap();
    let now = k.reader();
    assert_eq!(now.meta().unwrap().serial, 2);
    let a = &now.objects().unwrap()[0];
    assert_eq!(a.last_applied.redacted()["data"]["value"], "3");
    drop(first);
}

#[test]
fn a_missing_chunk_is_reported_not_papered_over() {
    let k = Kube::start();
    let guard = k.lock("apply");
    let store = k.writer(&guard);
    let run = RunRecord::start("apply");
    store
        .commit(
            WriteBatch::new()
                .put_object(record("manifest.app", &config_map("a", "1")))
                .begin_run(run.clone()),
        )
        .unwrap();
    store.commit(WriteBatch::new().clear_run(&run.run)).unwrap();
    let (_, chunks) = k.secrets();
    k.cluster
        .kubectl(&["delete", "secret", "-n", "meshplan-system", &chunks[0]])
        .ok();
    let err = KubeStore::open(k.remote.clone(), k.location()).unwrap_err();
    assert!(
        matches!(&err, StateError::Corrupt { message, .. } if message.contains("is missing")),
        "{err}"
    );
}
