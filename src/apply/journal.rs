//! Journaled mutations: every change to the cluster is recorded in the state's journal
//! before it is sent (the live object, or its absence, and the state's record of it) and
//! after it (the outcome, together with the new state record, in one atomic batch).
//!
//! A crash at any point leaves either no trace of the step, a `Before` entry without an
//! `After` (the outcome is unknown: rollback reads the live object to find out), or both.
//!
//! Steps run concurrently, and their journal writes are committed together ([`GroupCommit`]):
//! a step waits until its own entry is committed before it goes on, exactly as with one commit
//! per entry, but the entries of every step that is ready to write go into one commit. N steps
//! in flight cost about one commit (one flush) per round instead of N.
//!
//! Only a `Before` entry has to be durable before the step goes on (the cluster must not
//! change before the entry that lets rollback restore it can survive a crash). An `After`
//! entry is committed lazily ([`WriteBatch::lazily_durable`]): it becomes durable with the
//! next `Before` commit, or at the latest when the run is cleared or the state closes. A crash
//! that loses it leaves a `Before` without its `After`, which a crash right after the write
//! leaves anyway. Its step does not even wait for it: the entry is queued and goes into the
//! next `Before` commit (or a commit of its own once many wait), and whatever is still queued
//! when the steps are done is committed by [`Journal::drain`] before the journal is read or
//! the run ends. So the state is committed (and flushed) about once per round of `Before`
//! entries, instead of once for them and once for the `After` entries.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::cluster::{Cluster, ObjectRef};
use crate::state::{
    JournalEntry, JournalRecord, LiveSnapshot, Mutation, ObjectRecord, Outcome, StateError,
    StateStore, WriteBatch, WriteOp,
};

/// What the step does to the state's record of the object once the mutation succeeded.
pub(crate) enum RecordChange {
    /// Nothing (hooks: they are not recorded).
    Keep,
    /// Record the object as applied from `desired` with `digest`; the values at the JSON
    /// pointers `sensitive` (and a Secret's data) are kept sealed.
    Put {
        desired: Value,
        digest: String,
        sensitive: Vec<String>,
    },
    /// Drop the record.
    Remove,
}

/// One batch waiting for a group commit, and where its result goes (None: a lazy batch, whose
/// caller did not wait; a failure is kept for the next caller).
type Waiting = (WriteBatch, Option<oneshot::Sender<Result<(), StateError>>>);

/// How many operations of lazy batches may wait for a commit before the caller that queues
/// one more commits them (without a flush).
const LAZY_LIMIT: usize = 512;

/// Commits the batches of concurrent callers together (see the module overview).
///
/// A caller queues its batch, then takes the commit turn (one caller at a time, in arrival
/// order). If an earlier turn already committed its batch, it returns that result; otherwise
/// it commits everything queued so far as one batch and hands every caller its result. When a
/// merged commit fails, each batch is committed on its own, so that each caller gets the
/// outcome of its own batch.
///
/// A lazy batch ([`WriteBatch::lazily_durable`]) is queued and its caller goes on at once: it
/// is committed with the next batch that is not lazy, when [`LAZY_LIMIT`] operations wait, or
/// by [`GroupCommit::drain`]. When its commit fails, the next caller (or the drain) gets the
/// error.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Waiting>>,
    turn: tokio::sync::Mutex<()>,
    /// The first failure of a lazy batch, not reported yet.
    failed: Mutex<Option<String>>,
}

impl GroupCommit {
    /// Commits `batch` (together with the batches of concurrent callers); returns once it is
    /// committed, or, for a lazy batch, once it is queued.
    pub(crate) async fn commit(
        &self,
        store: &dyn StateStore,
        batch: WriteBatch,
    ) -> Result<(), StateError> {
        if batch.lazy {
            let waiting_ops = {
                let mut queue = self.lock_queue();
                queue.push((batch, None));
                queue.iter().map(|(b, _)| b.ops.len()).sum::<usize>()
            };
            if waiting_ops >= LAZY_LIMIT {
                let _turn = self.turn.lock().await;
                let waiting = std::mem::take(&mut *self.lock_queue());
                self.commit_all(store, waiting);
            }
            return self.take_failure(store);
        }
        let (tx, mut rx) = oneshot::channel();
        self.lock_queue().push((batch, Some(tx)));
        let _turn = self.turn.lock().await;
        if let Ok(result) = rx.try_recv() {
            return result;
        }
        // The steps of a run are futures of one task, and a commit blocks it: before
        // committing, let the other steps that are ready run up to their own journal write.
        tokio::task::yield_now().await;
        let waiting = std::mem::take(&mut *self.lock_queue());
        self.commit_all(store, waiting);
        // Queued before the turn was taken, so committed in this turn or an earlier one.
        rx.try_recv().unwrap_or_else(|_| {
            Err(StateError::Batch {
                path: std::path::PathBuf::from(store.describe()),
                message: "a journal write was lost".to_owned(),
            })
        })
    }

    /// Commits the lazy batches still queued; the first failure of a lazy batch not reported
    /// yet. For when no caller is committing (the steps are done).
    pub(crate) fn drain(&self, store: &dyn StateStore) -> Result<(), StateError> {
        let waiting = std::mem::take(&mut *self.lock_queue());
        if !waiting.is_empty() {
            self.commit_all(store, waiting);
        }
        self.take_failure(store)
    }

    /// Whether a queued batch changes the record of `object` in `node`.
    fn changes_record(&self, node: &str, object: &ObjectRef) -> bool {
        self.lock_queue().iter().any(|(batch, _)| {
            batch.ops.iter().any(|op| match op {
                WriteOp::PutObject(r) => r.node == node && r.object == *object,
                WriteOp::RemoveObject { node: n, object: o } => n == node && o == object,
                _ => false,
            })
        })
    }

    fn take_failure(&self, store: &dyn StateStore) -> Result<(), StateError> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner()).take();
        match failed {
            None => Ok(()),
            Some(message) => Err(StateError::Batch {
                path: std::path::PathBuf::from(store.describe()),
                message: format!("a journal write of an earlier step failed: {message}"),
            }),
        }
    }

    /// Hands `result` to its caller, or keeps the failure of a lazy batch.
    fn answer(
        &self,
        tx: Option<oneshot::Sender<Result<(), StateError>>>,
        result: Result<(), StateError>,
    ) {
        match (tx, result) {
            (Some(tx), result) => {
                let _ = tx.send(result);
            }
            (None, Ok(())) => {}
            (None, Err(e)) => {
                self.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }

    /// Commits `waiting` as one batch, else (when that fails) each on its own.
    fn commit_all(&self, store: &dyn StateStore, waiting: Vec<Waiting>) {
        if waiting.len() == 1 {
            for (batch, tx) in waiting {
                self.answer(tx, store.commit(batch).map(|_| ()));
            }
            return;
        }
        // The batches' operations move into one batch; each batch is remembered by its length,
        // to be taken apart again when the whole is refused. The whole is lazy only when every
        // part is.
        let mut merged = WriteBatch::new().lazily_durable();
        let mut parts = Vec::with_capacity(waiting.len());
        for (batch, tx) in waiting {
            parts.push((batch.ops.len(), batch.expect_serial, batch.lazy, tx));
            merged.lazy &= batch.lazy;
            merged.ops.extend(batch.ops);
        }
        if store.commit_borrowed(&merged).is_ok() {
            for (_, _, _, tx) in parts {
                self.answer(tx, Ok(()));
            }
            return;
        }
        let mut ops = merged.ops.into_iter();
        for (len, expect_serial, lazy, tx) in parts {
            let batch = WriteBatch {
                ops: ops.by_ref().take(len).collect(),
                expect_serial,
                lazy,
            };
            self.answer(tx, store.commit(batch).map(|_| ()));
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The journal of one run.
pub(crate) struct Journal<'a> {
    pub store: &'a dyn StateStore,
    pub run: String,
    next_step: AtomicU64,
    group: GroupCommit,
}

impl<'a> Journal<'a> {
    pub(crate) fn new(store: &'a dyn StateStore, run: String, first_step: u64) -> Self {
        Self {
            store,
            run,
            next_step: AtomicU64::new(first_step),
            group: GroupCommit::default(),
        }
    }

    /// Commits `batch` together with the concurrent steps' journal writes.
    pub(crate) async fn commit(&self, batch: WriteBatch) -> Result<(), StateError> {
        self.group.commit(self.store, batch).await
    }

    /// Commits the `After` entries still queued (see the module overview): once the steps
    /// are done, before anything reads the journal or ends the run.
    pub(crate) fn drain(&self) -> Result<(), StateError> {
        self.group.drain(self.store)
    }

    /// The number the next step will get.
    pub(crate) fn next_step(&self) -> u64 {
        self.next_step.load(Ordering::SeqCst)
    }

    fn step(&self) -> u64 {
        self.next_step.fetch_add(1, Ordering::SeqCst)
    }

    /// Records the live objects before mutations of `objects` of `node`, in one commit;
    /// returns their step numbers, in the same order.
    pub(crate) async fn before_all(
        &self,
        node: &str,
        mutation: Mutation,
        objects: &[(&ObjectRef, Option<&Value>)],
    ) -> Result<Vec<u64>, StateError> {
        if objects
            .iter()
            .any(|(object, _)| self.group.changes_record(node, object))
        {
            // The records are read from the state: earlier steps' queued changes first.
            self.commit(WriteBatch::new()).await?;
        }
        let mut batch = WriteBatch::new();
        let mut steps = Vec::with_capacity(objects.len());
        for (object, live) in objects {
            let step = self.step();
            let live = match live {
                Some(body) => LiveSnapshot::Present(self.store.protect(body, &[])?),
                None => LiveSnapshot::Absent,
            };
            let previous_record = self.store.object(node, object)?.map(Box::new);
            if object.defines_kinds() && !batch.ops.contains(&WriteOp::ClearDiscovery) {
                batch = batch.clear_discovery();
            }
            batch = batch.journal(JournalEntry {
                run: self.run.clone(),
                step,
                node: node.to_owned(),
                object: (*object).clone(),
                mutation,
                record: JournalRecord::Before { live },
                previous_record,
            });
            steps.push(step);
        }
        self.commit(batch).await?;
        Ok(steps)
    }

    /// Records the live object before a mutation; returns the step number.
    pub(crate) async fn before(
        &self,
        node: &str,
        object: &ObjectRef,
        mutation: Mutation,
        live: Option<&Value>,
    ) -> Result<u64, StateError> {
        let step = self.step();
        let live = match live {
            Some(body) => LiveSnapshot::Present(self.store.protect(body, &[])?),
            None => LiveSnapshot::Absent,
        };
        if self.group.changes_record(node, object) {
            // The record is read from the state: an earlier step's queued change first.
            self.commit(WriteBatch::new()).await?;
        }
        let previous_record = self.store.object(node, object)?.map(Box::new);
        let mut batch = WriteBatch::new();
        if object.defines_kinds() {
            // The cluster's kinds are about to change: the next plan discovers them again.
            batch = batch.clear_discovery();
        }
        self.commit(batch.journal(JournalEntry {
            run: self.run.clone(),
            step,
            node: node.to_owned(),
            object: object.clone(),
            mutation,
            record: JournalRecord::Before { live },
            previous_record,
        }))
        .await?;
        Ok(step)
    }

    /// Records the outcome of step `step`, and on success the record change, atomically.
    /// `result` is the object after the mutation (None: deleted or absent). Lazily durable
    /// (see the module overview).
    pub(crate) async fn after(
        &self,
        step: u64,
        node: &str,
        object: &ObjectRef,
        mutation: Mutation,
        outcome: Result<Option<&Value>, String>,
        change: RecordChange,
    ) -> Result<(), StateError> {
        let mut batch = WriteBatch::new().lazily_durable();
        let outcome = match outcome {
            Ok(result) => {
                match change {
                    RecordChange::Keep => {}
                    RecordChange::Remove => batch = batch.remove_object(node, object),
                    RecordChange::Put {
                        desired,
                        digest,
                        sensitive,
                    } => {
                        let sensitive = sealed_leaves(&desired, &sensitive);
                        let sensitive: Vec<&str> = sensitive.iter().map(String::as_str).collect();
                        let meta = |key: &str| {
                            result
                                .and_then(|r| r.pointer(&format!("/metadata/{key}")))
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        };
                        batch = batch.put_object(ObjectRecord {
                            node: node.to_owned(),
                            object: object.clone(),
                            uid: meta("uid"),
                            resource_version: meta("resourceVersion"),
                            applied_digest: digest,
                            last_applied: self.store.protect(&desired, &sensitive)?,
                        });
                    }
                }
                Outcome::Succeeded {
                    resource_version: result
                        .and_then(|r| r.pointer("/metadata/resourceVersion"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                }
            }
            Err(message) => Outcome::Failed { message },
        };
        self.commit(batch.journal(JournalEntry {
            run: self.run.clone(),
            step,
            node: node.to_owned(),
            object: object.clone(),
            mutation,
            record: JournalRecord::After { outcome },
            previous_record: None,
        }))
        .await
    }
}

/// The JSON pointers to seal for the sensitive `paths` of `body`: a map is sealed value by
/// value (as a Secret's data is), so that a change is reported for the key that changed and
/// the keys stay comparable with the live object's field by field; anything else whole.
fn sealed_leaves(body: &Value, paths: &[String]) -> Vec<String> {
    fn walk(value: &Value, pointer: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, v) in map {
                    let key = key.replace('~', "~0").replace('/', "~1");
                    walk(v, format!("{pointer}/{key}"), out);
                }
            }
            _ => out.push(pointer),
        }
    }
    let mut out = Vec::new();
    for p in paths {
        match body.pointer(p) {
            // "" (the whole body) stays as it is: the state keeps the identity in clear.
            Some(v) if !p.is_empty() => walk(v, p.clone(), &mut out),
            _ => out.push(p.clone()),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Reads the live object for a snapshot (None: absent).
pub(crate) async fn read_live(
    cluster: &dyn Cluster,
    object: &ObjectRef,
) -> Result<Option<Value>, crate::cluster::ClusterError> {
    match cluster.get(object).await {
        Ok(v) => Ok(v),
        // A kind not served yet has no objects.
        Err(crate::cluster::ClusterError::KindNotInstalled { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ProtectedBody, SledStore};
    use serde_json::json;

    #[test]
    fn a_sensitive_map_is_sealed_value_by_value() {
        let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"tls.key": "a2V5", "a/b": "Yg=="},
            "spec": {"token": "t", "list": [1, 2], "empty": {}}});
        let paths: Vec<String> = ["/data", "/spec/token", "/spec/list", "/spec/empty", ""]
            .map(str::to_owned)
            .into();
        assert_eq!(
            sealed_leaves(&body, &paths),
            [
                "",
                "/data/a~1b",
                "/data/tls.key",
                "/spec/empty",
                "/spec/list",
                "/spec/token"
            ]
        );
    }

    fn record(name: &str) -> ObjectRecord {
        ObjectRecord {
            node: "manifest.app".into(),
            object: ObjectRef::new("v1", "ConfigMap", Some("app"), name),
            uid: None,
            resource_version: None,
            applied_digest: String::new(),
            last_applied: ProtectedBody::plain(serde_json::json!({"kind": "ConfigMap"}))
                .expect("no sensitive values"),
        }
    }

    /// The names of the objects `store` has records of.
    fn stored_names(store: &SledStore) -> Vec<String> {
        store
            .objects()
            .unwrap()
            .into_iter()
            .map(|r| r.object.name)
            .collect()
    }

    #[tokio::test]
    async fn concurrent_writes_share_commits_and_each_caller_sees_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), "apply").unwrap();
        let before = store.meta().unwrap().serial;
        let group = GroupCommit::default();
        let names: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
        let results = futures::future::join_all(
            names
                .iter()
                .map(|n| group.commit(&store, WriteBatch::new().put_object(record(n)))),
        )
        .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let stored = stored_names(&store);
        assert_eq!(stored, names);
        let commits = store.meta().unwrap().serial - before;
        assert!(
            (1..names.len() as u64).contains(&commits),
            "{} writes in {commits} commits",
            names.len()
        );
    }

    #[tokio::test]
    async fn lazy_batches_wait_for_the_next_commit_and_a_failure_reaches_the_next_caller() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), "apply").unwrap();
        let before = store.meta().unwrap().serial;
        let group = GroupCommit::default();
        let names: Vec<String> = (0..5).map(|i| format!("c{i:02}")).collect();
        for n in &names {
            let batch = WriteBatch::new().put_object(record(n)).lazily_durable();
            group.commit(&store, batch).await.unwrap();
        }
        // Queued, not written.
        assert!(stored_names(&store).is_empty());
        // A batch that is not lazy takes the queued ones with it, in one commit.
        group
            .commit(&store, WriteBatch::new().put_object(record("c05")))
            .await
            .unwrap();
        assert_eq!(stored_names(&store).len(), 6);
        assert_eq!(store.meta().unwrap().serial - before, 1);
        // A lazy batch the store refuses: its caller has gone on; the drain reports it.
        let refused = WriteBatch::new()
            .journal(crate::state::JournalEntry {
                run: "never-begun".into(),
                step: 1,
                node: "manifest.app".into(),
                object: ObjectRef::new("v1", "ConfigMap", Some("app"), "x"),
                mutation: crate::state::Mutation::Apply,
                record: crate::state::JournalRecord::After {
                    outcome: Outcome::Succeeded {
                        resource_version: None,
                    },
                },
                previous_record: None,
            })
            .lazily_durable();
        group.commit(&store, refused).await.unwrap();
        group
            .commit(
                &store,
                WriteBatch::new().put_object(record("c06")).lazily_durable(),
            )
            .await
            .unwrap();
        let err = group.drain(&store).unwrap_err().to_string();
        assert!(err.contains("an earlier step failed"), "{err}");
        // The refused batch failed alone.
        assert_eq!(stored_names(&store).len(), 7);
        group.drain(&store).unwrap();
    }

    #[tokio::test]
    async fn the_before_entries_of_a_group_are_journaled_together_with_their_own_steps() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), "apply").unwrap();
        let run = crate::state::RunRecord::start("apply");
        store
            .commit(WriteBatch::new().begin_run(run.clone()))
            .unwrap();
        store
            .commit(WriteBatch::new().put_object(record("b")))
            .unwrap();
        let journal = Journal::new(&store, run.run.clone(), 7);
        let a = ObjectRef::new("v1", "ConfigMap", Some("app"), "a");
        let b = ObjectRef::new("v1", "ConfigMap", Some("app"), "b");
        let live = serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "b"}});
        let steps = journal
            .before_all(
                "manifest.app",
                Mutation::Apply,
                &[(&a, None), (&b, Some(&live))],
            )
            .await
            .unwrap();
        assert_eq!(steps, [7, 8]);
        assert_eq!(journal.next_step(), 9);
        let runs = store.unfinished_runs().unwrap();
        let entries = &runs[0].entries;
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].step, &entries[0].object), (7, &a));
        assert!(matches!(
            entries[0].record,
            JournalRecord::Before {
                live: LiveSnapshot::Absent
            }
        ));
        assert!(entries[0].previous_record.is_none());
        assert_eq!((entries[1].step, &entries[1].object), (8, &b));
        assert!(matches!(
            entries[1].record,
            JournalRecord::Before {
                live: LiveSnapshot::Present(_)
            }
        ));
        assert_eq!(
            entries[1]
                .previous_record
                .as_ref()
                .map(|r| r.object.name.as_str()),
            Some("b")
        );
    }

    #[tokio::test]
    async fn a_refused_batch_fails_alone_and_the_others_of_its_commit_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), "apply").unwrap();
        let group = GroupCommit::default();
        let names: Vec<String> = (0..10).map(|i| format!("c{i:02}")).collect();
        // A journal entry of a run never begun: the store refuses it, and so the merged
        // commit of every batch waiting with it.
        let refused = WriteBatch::new().journal(crate::state::JournalEntry {
            run: "never-begun".into(),
            step: 1,
            node: "manifest.app".into(),
            object: ObjectRef::new("v1", "ConfigMap", Some("app"), "x"),
            mutation: crate::state::Mutation::Apply,
            record: crate::state::JournalRecord::Before {
                live: crate::state::LiveSnapshot::Absent,
            },
            previous_record: None,
        });
        let mut batches: Vec<WriteBatch> = names
            .iter()
            .map(|n| WriteBatch::new().put_object(record(n)))
            .collect();
        batches.insert(5, refused);
        let results =
            futures::future::join_all(batches.into_iter().map(|b| group.commit(&store, b))).await;
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result.is_ok(), i != 5, "batch {i}: {result:?}");
        }
        let stored = stored_names(&store);
        assert_eq!(stored, names);
    }
}
