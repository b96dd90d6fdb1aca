//! [`Snapshot`]: the whole content of a state in memory — meta, object records, caches and
//! the journal — with the same write semantics as the sled store.
//!
//! 1. [`Snapshot::apply`] applies a [`WriteBatch`] exactly as [`super::SledStore`] commits
//!    one (same refusals: a journal entry of a run not begun or recorded twice, a run begun
//!    twice or cleared unknown, a stale `expect_serial`; the serial bumped when records
//!    change). It works on the snapshot in place and is all or nothing: on error the
//!    snapshot is as before.
//! 2. [`Snapshot::to_bytes`] / [`Snapshot::from_bytes`]: a JSON document (records, caches and
//!    journal in sorted order) — the base the `kubernetes` backend stores, and what
//!    `meshplan state migrate` copies from one backend to the other.
//! 3. [`Snapshot::digest`]: what the migration compares between source and copy (lineage,
//!    serial, records, caches, journal).
//!
//! Pure: no I/O.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    DiscoveryCacheEntry, JournalEntry, JournalRecord, ObjectRecord, ObjectRef, RenderCacheEntry,
    RunRecord, StateError, StateMeta, UnfinishedRun, WriteBatch, WriteOp,
};

/// A state's meta as a snapshot keeps it: format, lineage, serial and the key check (which
/// key the sealed values were encrypted with, when the state holds any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub format: u32,
    pub lineage: String,
    pub serial: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_check: Option<String>,
}

/// The journal key of an entry: run, step, phase (0 before, 1 after).
type JournalKey = (String, u64, u8);

/// The whole content of a state.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    /// By object key (node, group, kind, namespace, name: the sled store's order).
    objects: BTreeMap<Vec<u8>, ObjectRecord>,
    render: BTreeMap<String, RenderCacheEntry>,
    discovery: Option<DiscoveryCacheEntry>,
    runs: BTreeMap<String, RunRecord>,
    journal: BTreeMap<JournalKey, JournalEntry>,
}

/// The snapshot as JSON: lists in sorted order.
#[derive(Serialize, Deserialize)]
struct Wire {
    meta: SnapshotMeta,
    #[serde(default)]
    objects: Vec<ObjectRecord>,
    #[serde(default)]
    render: BTreeMap<String, RenderCacheEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discovery: Option<DiscoveryCacheEntry>,
    #[serde(default)]
    runs: Vec<RunRecord>,
    #[serde(default)]
    journal: Vec<JournalEntry>,
}

impl Snapshot {
    /// An empty state of `format` with a new lineage.
    pub fn new(format: u32) -> Self {
        Self {
            meta: SnapshotMeta {
                format,
                lineage: uuid::Uuid::new_v4().to_string(),
                serial: 0,
                key_check: None,
            },
            objects: BTreeMap::new(),
            render: BTreeMap::new(),
            discovery: None,
            runs: BTreeMap::new(),
            journal: BTreeMap::new(),
        }
    }

    /// A snapshot from its parts (the sled store's export).
    pub(crate) fn from_parts(
        meta: SnapshotMeta,
        objects: Vec<ObjectRecord>,
        render: BTreeMap<String, RenderCacheEntry>,
        discovery: Option<DiscoveryCacheEntry>,
        runs: Vec<UnfinishedRun>,
    ) -> Self {
        let mut s = Self {
            meta,
            objects: objects
                .into_iter()
                .map(|r| (object_key(&r.node, &r.object), r))
                .collect(),
            render,
            discovery,
            runs: BTreeMap::new(),
            journal: BTreeMap::new(),
        };
        for run in runs {
            for e in run.entries {
                s.journal.insert(journal_key(&e), e);
            }
            s.runs.insert(run.run.run.clone(), run.run);
        }
        s
    }

    pub fn state_meta(&self) -> StateMeta {
        StateMeta {
            format: self.meta.format,
            lineage: self.meta.lineage.clone(),
            serial: self.meta.serial,
        }
    }

    /// Every record, sorted by node, then group, kind, namespace and name.
    pub fn objects(&self) -> Vec<ObjectRecord> {
        self.objects.values().cloned().collect()
    }

    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// The records of one node, in the same order.
    pub fn node_objects(&self, node: &str) -> Vec<ObjectRecord> {
        let mut prefix = node.as_bytes().to_vec();
        prefix.push(0);
        self.objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub fn object(&self, node: &str, object: &ObjectRef) -> Option<ObjectRecord> {
        self.objects.get(&object_key(node, object)).cloned()
    }

    pub fn render(&self) -> &BTreeMap<String, RenderCacheEntry> {
        &self.render
    }

    pub fn discovery(&self) -> Option<&DiscoveryCacheEntry> {
        self.discovery.as_ref()
    }

    /// Runs begun and not cleared, oldest first, each with its journal in step order.
    pub fn unfinished_runs(&self) -> Vec<UnfinishedRun> {
        let mut runs: Vec<UnfinishedRun> = self
            .runs
            .values()
            .map(|run| UnfinishedRun {
                run: run.clone(),
                entries: self
                    .journal
                    .range((run.run.clone(), 0, 0)..)
                    .take_while(|((r, _, _), _)| r == &run.run)
                    .map(|(_, e)| e.clone())
                    .collect(),
            })
            .collect();
        runs.sort_by(|a, b| (a.run.started_at, &a.run.run).cmp(&(b.run.started_at, &b.run.run)));
        runs
    }

    /// Applies `batch` (see the module docs); on error nothing changed. `path` names the
    /// state in errors.
    pub fn apply(&mut self, batch: &WriteBatch, path: &Path) -> Result<(), StateError> {
        if let Some(expected) = batch.expect_serial
            && expected != self.meta.serial
        {
            return Err(StateError::SerialMismatch {
                path: path.to_path_buf(),
                expected,
                found: self.meta.serial,
            });
        }
        let mut next = self.clone_for(batch);
        for op in &batch.ops {
            next.apply_op(op, path)?;
        }
        if batch.changes_objects() {
            next.meta.serial += 1;
        }
        self.merge_from(next, batch);
        Ok(())
    }

    /// A copy of the parts of the snapshot that `batch` touches (the render cache, the
    /// largest part, is copied only when the batch writes it).
    fn clone_for(&self, batch: &WriteBatch) -> Self {
        let touches = |f: fn(&WriteOp) -> bool| batch.ops.iter().any(f);
        Self {
            meta: self.meta.clone(),
            objects: if batch.changes_objects() {
                self.objects.clone()
            } else {
                BTreeMap::new()
            },
            render: if touches(|op| {
                matches!(op, WriteOp::PutRender { .. } | WriteOp::RemoveRender { .. })
            }) {
                self.render.clone()
            } else {
                BTreeMap::new()
            },
            discovery: self.discovery.clone(),
            runs: self.runs.clone(),
            journal: if touches(|op| matches!(op, WriteOp::Journal(_) | WriteOp::ClearRun { .. })) {
                self.journal.clone()
            } else {
                BTreeMap::new()
            },
        }
    }

    /// Takes back the parts `clone_for` copied.
    fn merge_from(&mut self, next: Self, batch: &WriteBatch) {
        let touches = |f: fn(&WriteOp) -> bool| batch.ops.iter().any(f);
        self.meta = next.meta;
        if batch.changes_objects() {
            self.objects = next.objects;
        }
        if touches(|op| matches!(op, WriteOp::PutRender { .. } | WriteOp::RemoveRender { .. })) {
            self.render = next.render;
        }
        self.discovery = next.discovery;
        self.runs = next.runs;
        if touches(|op| matches!(op, WriteOp::Journal(_) | WriteOp::ClearRun { .. })) {
            self.journal = next.journal;
        }
    }

    fn apply_op(&mut self, op: &WriteOp, path: &Path) -> Result<(), StateError> {
        let refuse = |message: String| StateError::Batch {
            path: path.to_path_buf(),
            message,
        };
        match op {
            WriteOp::PutObject(r) => {
                self.objects
                    .insert(object_key(&r.node, &r.object), r.clone());
            }
            WriteOp::RemoveObject { node, object } => {
                self.objects.remove(&object_key(node, object));
            }
            WriteOp::PutRender { digest, entry } => {
                self.render.insert(digest.clone(), entry.clone());
            }
            WriteOp::RemoveRender { digest } => {
                self.render.remove(digest);
            }
            WriteOp::PutDiscovery(entry) => self.discovery = Some(entry.clone()),
            WriteOp::ClearDiscovery => self.discovery = None,
            WriteOp::BeginRun(run) => {
                if self.runs.contains_key(&run.run) {
                    return Err(refuse(format!("run {} was already begun", run.run)));
                }
                self.runs.insert(run.run.clone(), run.clone());
            }
            WriteOp::Journal(entry) => {
                if !self.runs.contains_key(&entry.run) {
                    return Err(refuse(format!(
                        "journal entry for run {}, which was not begun",
                        entry.run
                    )));
                }
                let key = journal_key(entry);
                if self.journal.contains_key(&key) {
                    let phase = if key.2 == 0 { "before" } else { "after" };
                    return Err(refuse(format!(
                        "journal entry step {} ({phase}) of run {} is already recorded",
                        entry.step, entry.run
                    )));
                }
                self.journal.insert(key, entry.clone());
            }
            WriteOp::ClearRun { run } => {
                if self.runs.remove(run).is_none() {
                    return Err(refuse(format!("run {run} is not in the journal")));
                }
                self.journal.retain(|(r, _, _), _| r != run);
            }
        }
        Ok(())
    }

    /// The snapshot as a JSON document.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Wire {
            meta: self.meta.clone(),
            objects: self.objects.values().cloned().collect(),
            render: self.render.clone(),
            discovery: self.discovery.clone(),
            runs: self.runs.values().cloned().collect(),
            journal: self.journal.values().cloned().collect(),
        })
    }

    /// A snapshot from [`Snapshot::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let wire: Wire = serde_json::from_slice(bytes)?;
        let mut s = Self {
            meta: wire.meta,
            objects: wire
                .objects
                .into_iter()
                .map(|r| (object_key(&r.node, &r.object), r))
                .collect(),
            render: wire.render,
            discovery: wire.discovery,
            runs: wire.runs.into_iter().map(|r| (r.run.clone(), r)).collect(),
            journal: BTreeMap::new(),
        };
        for e in wire.journal {
            s.journal.insert(journal_key(&e), e);
        }
        Ok(s)
    }

    /// blake3 hex digest of everything but the format and the key check: equal digests,
    /// equal states (lineage, serial, records, caches, journal).
    pub fn digest(&self) -> String {
        let mut copy = self.clone();
        copy.meta.format = 0;
        copy.meta.key_check = None;
        let bytes = copy.to_bytes().unwrap_or_default();
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// Whether the state holds nothing yet (no records, caches or runs, serial 0).
    pub fn is_empty(&self) -> bool {
        self.meta.serial == 0
            && self.objects.is_empty()
            && self.render.is_empty()
            && self.discovery.is_none()
            && self.runs.is_empty()
    }

    /// The journal entries, by run, step and phase.
    pub fn journal_entries(&self) -> impl Iterator<Item = &JournalEntry> {
        self.journal.values()
    }

    pub fn runs(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs.values()
    }
}

/// `node NUL group NUL kind NUL namespace NUL name` (the sled store's key).
pub(crate) fn object_key(node: &str, object: &ObjectRef) -> Vec<u8> {
    [
        node,
        object.group(),
        &object.kind,
        object.namespace.as_deref().unwrap_or(""),
        &object.name,
    ]
    .join("\0")
    .into_bytes()
}

fn journal_key(entry: &JournalEntry) -> JournalKey {
    let phase = match entry.record {
        JournalRecord::Before { .. } => 0,
        JournalRecord::After { .. } => 1,
    };
    (entry.run.clone(), entry.step, phase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{LiveSnapshot, Mutation, Outcome, ProtectedBody};

    fn record(node: &str, name: &str) -> ObjectRecord {
        ObjectRecord {
            node: node.into(),
            object: ObjectRef::new("v1", "ConfigMap", Some("default"), name),
            uid: None,
            resource_version: Some("5".into()),
            applied_digest: format!("d-{name}"),
            last_applied: ProtectedBody::plain(serde_json::json!({"kind": "ConfigMap"})).unwrap(),
        }
    }

    fn entry(run: &str, step: u64, before: bool) -> JournalEntry {
        JournalEntry {
            run: run.into(),
            step,
            node: "manifest.a".into(),
            object: ObjectRef::new("v1", "ConfigMap", Some("default"), "x"),
            mutation: Mutation::Apply,
            record: if before {
                JournalRecord::Before {
                    live: LiveSnapshot::Absent,
                }
            } else {
                JournalRecord::After {
                    outcome: Outcome::Succeeded {
                        resource_version: None,
                    },
                }
            },
            previous_record: None,
        }
    }

    fn run(id: &str) -> RunRecord {
        RunRecord {
            run: id.into(),
            command: "apply".into(),
            started_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn batches_apply_like_the_sled_store() {
        let p = Path::new("/s");
        let mut s = Snapshot::new(1);
        s.apply(
            &WriteBatch::new()
                .put_object(record("manifest.b", "x"))
                .put_object(record("manifest.a", "y"))
                .put_object(record("manifest.a", "x")),
            p,
        )
        .unwrap();
        assert_eq!(s.meta.serial, 1);
        let names: Vec<String> = s
            .objects()
            .iter()
            .map(|r| format!("{} {}", r.node, r.object.name))
            .collect();
        assert_eq!(names, ["manifest.a x", "manifest.a y", "manifest.b x"]);
        assert_eq!(s.node_objects("manifest.a").len(), 2);
        // Caches do not bump the serial.
        s.apply(&WriteBatch::new().clear_discovery(), p).unwrap();
        assert_eq!(s.meta.serial, 1);

        // A refused batch changes nothing.
        let before = s.clone();
        let err = s
            .apply(
                &WriteBatch::new()
                    .remove_object("manifest.a", &record("manifest.a", "x").object)
                    .journal(entry("r1", 1, true)),
                p,
            )
            .unwrap_err();
        assert!(err.to_string().contains("not begun"), "{err}");
        assert_eq!(s, before);
        let err = s
            .apply(&WriteBatch::new().clear_discovery().expect_serial(0), p)
            .unwrap_err();
        assert!(matches!(err, StateError::SerialMismatch { found: 1, .. }));

        // A run: begun, journaled, listed, cleared.
        s.apply(
            &WriteBatch::new()
                .begin_run(run("r1"))
                .journal(entry("r1", 1, true)),
            p,
        )
        .unwrap();
        s.apply(&WriteBatch::new().journal(entry("r1", 1, false)), p)
            .unwrap();
        let err = s
            .apply(&WriteBatch::new().journal(entry("r1", 1, false)), p)
            .unwrap_err();
        assert!(err.to_string().contains("already recorded"), "{err}");
        let runs = s.unfinished_runs();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].entries.len(), 2);
        assert!(runs[0].open_steps().is_empty());
        s.apply(&WriteBatch::new().clear_run("r1"), p).unwrap();
        assert!(s.unfinished_runs().is_empty());
        assert_eq!(s.journal_entries().count(), 0);
        assert!(
            s.apply(&WriteBatch::new().clear_run("r1"), p)
                .unwrap_err()
                .to_string()
                .contains("not in the journal")
        );
    }

    #[test]
    fn the_json_form_round_trips_and_the_digest_follows_the_content() {
        let p = Path::new("/s");
        let mut s = Snapshot::new(1);
        s.apply(
            &WriteBatch::new()
                .put_object(record("manifest.a", "x"))
                .begin_run(run("r"))
                .journal(entry("r", 3, true)),
            p,
        )
        .unwrap();
        let back = Snapshot::from_bytes(&s.to_bytes().unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.digest(), s.digest());
        let mut other = s.clone();
        other.meta.key_check = Some("k".into());
        assert_eq!(other.digest(), s.digest(), "the key check is not content");
        other
            .apply(&WriteBatch::new().put_object(record("manifest.a", "z")), p)
            .unwrap();
        assert_ne!(other.digest(), s.digest());
    }
}
