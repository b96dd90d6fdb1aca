//! The state: what meshplan last applied, and what an apply in progress has done.
//!
//! Behind the [`StateStore`] trait, two backends ([`location`] says which one a plan uses):
//! the local sled database ([`SledStore`], default `state/<plan name>/` beside the plan file)
//! and the `kubernetes` backend ([`KubeStore`]: compressed, chunked Secrets in a namespace of
//! the cluster, switched atomically, with a Lease as the writer lock), so that CI and every
//! operator see one state. What a state holds:
//!
//! 1. **Meta**: the format version (a newer one is refused, an older one migrated), a lineage
//!    id (uuid, fixed at creation) and a serial, incremented by every committed batch that
//!    changes object records (the part a saved change set depends on).
//! 2. **Objects**: per node address and object reference, the uid, resourceVersion, applied
//!    digest and last-applied body ([`ObjectRecord`]).
//! 3. **Caches**: rendered objects by input digest, and the cluster's discovery with the time
//!    it was fetched; both disposable (an unreadable entry is a miss).
//! 4. **Journal**: per apply run, an entry before each mutation (the live object or its
//!    absence) and one after it (the outcome), so an interrupted run can be finished or
//!    rolled back by the next one.
//!
//! Every write goes through one [`WriteBatch`], committed atomically across all of these:
//! a crash leaves the previous step or the next one, never half. [`Snapshot`] is the whole
//! state in memory with the same write semantics (the kubernetes backend's model, and what
//! `meshplan state migrate` copies).
//!
//! Sensitive values (a Secret's data, values marked sensitive) exist in the state only as
//! [`ProtectedBody`]: redacted markers plus the values encrypted with the state key
//! ([`crypto`]).
//!
//! One process writes a state at a time: locally an exclusive lock of the operating system
//! ([`lock`]), released however the holder ends; in the cluster a Lease ([`lease`]), renewed
//! while the run lasts and taken over only once expired (or, on the same machine, once its
//! holder is known to be gone). Read-only commands take no lock.
//!
//! The sled database allows one open handle at a time, so a local reader waits for a writer
//! that has it open ([`Access::Read`]). A command that must not wait and never writes
//! (`meshplan drift`) uses [`open_read_only`] instead ([`read_only`]): the database read and
//! closed at once, or, while a writer holds it, the snapshot that writer publishes after
//! every commit that changes records or runs. A kubernetes state is read from its Secrets
//! without the Lease.

pub mod crypto;
mod dump;
mod error;
mod kube;
pub mod lease;
pub mod location;
pub mod lock;
mod migrate;
pub mod read_only;
mod remote;
mod sled_store;
mod snapshot;
mod trees;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crypto::{KeySource, ProtectedBody, StateCipher};
pub use error::StateError;
pub use kube::KubeStore;
pub(crate) use kube::STATE_LABEL;
pub use lease::{LeaseGuard, LeaseLock, LeaseView};
pub use location::{KubeLocation, LeaseLocation, Overrides, Resolved, StateLocation};
pub use lock::{Liveness, LockHolder, WriterLock};
pub use meshplan_k8s::{Discovery, ObjectRef};
pub use read_only::{SnapshotSource, StateSnapshot, open_read_only};
pub use remote::Remote;
pub use sled_store::{Access, SledStore};
pub use snapshot::{Snapshot, SnapshotMeta};

/// The state format this meshplan reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Format, lineage and serial of a state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMeta {
    pub format: u32,
    /// A uuid fixed when the state is created: two states with different lineages are
    /// unrelated, whatever their serials.
    pub lineage: String,
    pub serial: u64,
}

/// What meshplan last applied for one object of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// The node address, e.g. `helm.linkerd_crds`.
    pub node: String,
    pub object: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// blake3 hex digest of the desired body that was applied.
    pub applied_digest: String,
    /// The body that was applied, sensitive values protected.
    pub last_applied: ProtectedBody,
}

/// Which object a record is of, without the body that was applied
/// ([`StateStore::recorded_objects`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedObject {
    pub node: String,
    pub object: ObjectRef,
    /// For a CustomResourceDefinition: the group and kind it defines, as applied.
    pub defines: Option<(String, String)>,
}

impl From<ObjectRecord> for RecordedObject {
    fn from(record: ObjectRecord) -> Self {
        let defines = if record.object.defines_kinds() {
            crd_defines(record.last_applied.redacted())
        } else {
            None
        };
        Self {
            node: record.node,
            object: record.object,
            defines,
        }
    }
}

/// The group and kind a CustomResourceDefinition's `body` defines.
pub fn crd_defines(body: &serde_json::Value) -> Option<(String, String)> {
    let text = |pointer: &str| Some(body.pointer(pointer)?.as_str()?.to_owned());
    text("/spec/group").zip(text("/spec/names/kind"))
}

/// Rendered objects of one node for one input digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderCacheEntry {
    pub objects: Vec<ProtectedBody>,
    /// What produced them (chart, version, helm version...), sorted.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    pub created_at: jiff::Timestamp,
}

/// The cluster's discovery and when it was fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryCacheEntry {
    pub fetched_at: jiff::Timestamp,
    pub discovery: Discovery,
}

impl DiscoveryCacheEntry {
    /// Whether the entry is younger than `max_age` at `now` (an entry from the future, after
    /// a clock change, is not fresh).
    pub fn is_fresh(&self, now: jiff::Timestamp, max_age: Duration) -> bool {
        let age = now.as_millisecond() - self.fetched_at.as_millisecond();
        age >= 0 && u128::from(age.unsigned_abs()) <= max_age.as_millis()
    }
}

/// One apply (or destroy, or rollback) run, from its start until it is cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// A uuid.
    pub run: String,
    pub command: String,
    pub started_at: jiff::Timestamp,
}

impl RunRecord {
    /// A new run with a fresh id, started now.
    pub fn start(command: &str) -> Self {
        Self {
            run: uuid::Uuid::new_v4().to_string(),
            command: command.to_owned(),
            started_at: jiff::Timestamp::now(),
        }
    }
}

/// The kind of mutation a journal entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mutation {
    /// Server-side apply.
    Apply,
    /// POST of a whole object (recreating a deleted one).
    Create,
    /// PUT of a whole object (restoring a snapshot).
    Replace,
    Delete,
}

/// The live object before a mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveSnapshot {
    Absent,
    Present(ProtectedBody),
}

/// How a mutation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource_version: Option<String>,
    },
    Failed {
        message: String,
    },
}

/// The half of a journal entry: before the mutation, or after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalRecord {
    Before { live: LiveSnapshot },
    After { outcome: Outcome },
}

/// One journal entry. A step has a `Before` entry and, once it ended, an `After` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub run: String,
    /// The step number within the run (the caller's; unique per run).
    pub step: u64,
    pub node: String,
    pub object: ObjectRef,
    pub mutation: Mutation,
    pub record: JournalRecord,
    /// On a `Before` entry: the state's record of the object before the step (None: no
    /// record), so that a rollback restores the records exactly, even after a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_record: Option<Box<ObjectRecord>>,
}

impl JournalEntry {
    pub fn is_before(&self) -> bool {
        matches!(self.record, JournalRecord::Before { .. })
    }
}

/// A run that was not cleared, with its journal in step order (Before before After).
#[derive(Debug, Clone, PartialEq)]
pub struct UnfinishedRun {
    pub run: RunRecord,
    pub entries: Vec<JournalEntry>,
}

impl UnfinishedRun {
    /// Steps that have a Before entry but no After entry: their outcome is unknown.
    pub fn open_steps(&self) -> Vec<&JournalEntry> {
        self.entries
            .iter()
            .filter(|e| {
                e.is_before()
                    && !self
                        .entries
                        .iter()
                        .any(|a| a.step == e.step && !a.is_before())
            })
            .collect()
    }
}

/// One change in a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOp {
    PutObject(ObjectRecord),
    RemoveObject {
        node: String,
        object: ObjectRef,
    },
    PutRender {
        digest: String,
        entry: RenderCacheEntry,
    },
    RemoveRender {
        digest: String,
    },
    PutDiscovery(DiscoveryCacheEntry),
    /// Forgets the cached discovery (the cluster's kinds are about to change).
    ClearDiscovery,
    /// Registers a run; journal entries need it.
    BeginRun(RunRecord),
    /// Appends a journal entry (an entry is never overwritten).
    Journal(JournalEntry),
    /// Removes a finished run and its journal.
    ClearRun {
        run: String,
    },
}

/// Changes committed together or not at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
    /// Refuse the batch unless the serial is still this one (optimistic concurrency).
    pub expect_serial: Option<u64>,
    /// The commit may return before the batch is durable ([`WriteBatch::lazily_durable`]).
    pub lazy: bool,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put_object(mut self, record: ObjectRecord) -> Self {
        self.ops.push(WriteOp::PutObject(record));
        self
    }
    pub fn remove_object(mut self, node: &str, object: &ObjectRef) -> Self {
        self.ops.push(WriteOp::RemoveObject {
            node: node.to_owned(),
            object: object.clone(),
        });
        self
    }
    pub fn put_render(mut self, digest: &str, entry: RenderCacheEntry) -> Self {
        self.ops.push(WriteOp::PutRender {
            digest: digest.to_owned(),
            entry,
        });
        self
    }
    pub fn remove_render(mut self, digest: &str) -> Self {
        self.ops.push(WriteOp::RemoveRender {
            digest: digest.to_owned(),
        });
        self
    }
    pub fn put_discovery(mut self, entry: DiscoveryCacheEntry) -> Self {
        self.ops.push(WriteOp::PutDiscovery(entry));
        self
    }
    pub fn clear_discovery(mut self) -> Self {
        self.ops.push(WriteOp::ClearDiscovery);
        self
    }
    pub fn begin_run(mut self, run: RunRecord) -> Self {
        self.ops.push(WriteOp::BeginRun(run));
        self
    }
    pub fn journal(mut self, entry: JournalEntry) -> Self {
        self.ops.push(WriteOp::Journal(entry));
        self
    }
    pub fn clear_run(mut self, run: &str) -> Self {
        self.ops.push(WriteOp::ClearRun {
            run: run.to_owned(),
        });
        self
    }
    pub fn expect_serial(mut self, serial: u64) -> Self {
        self.expect_serial = Some(serial);
        self
    }
    /// Lets the commit return before the batch is durable: it becomes durable with the next
    /// commit that is not lazy (a store's writes become durable in the order they were
    /// committed), or when the store closes. It stays atomic: after a crash it is there
    /// whole or not at all. Only for writes whose loss a crash has to allow anyway (a
    /// journal's `After` entries: a `Before` without its `After` is a step whose outcome is
    /// unknown, which resume and rollback find out from the live object). A store that has
    /// no cheaper way may write it durably.
    pub fn lazily_durable(mut self) -> Self {
        self.lazy = true;
        self
    }
    /// Whether the batch changes object records (and so bumps the serial).
    pub fn changes_objects(&self) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op, WriteOp::PutObject(_) | WriteOp::RemoveObject { .. }))
    }

    /// Whether the batch begins or clears a run.
    pub fn changes_runs(&self) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op, WriteOp::BeginRun(_) | WriteOp::ClearRun { .. }))
    }
}

/// The state as the engine sees it. Reads return sorted data; [`StateStore::commit`] writes a
/// batch atomically.
pub trait StateStore: Send + Sync {
    /// Where the state is, for messages (a directory, or `kubernetes:NAMESPACE/NAME`).
    fn describe(&self) -> String;

    /// The whole state (records, caches, journal) in memory.
    fn export(&self) -> Result<Snapshot, StateError>;

    fn meta(&self) -> Result<StateMeta, StateError>;

    /// Every object record, sorted by node, then group, kind, namespace and name.
    fn objects(&self) -> Result<Vec<ObjectRecord>, StateError>;

    /// Whether the state holds any object record (without reading them all, where the
    /// store can tell).
    fn has_objects(&self) -> Result<bool, StateError> {
        Ok(!self.objects()?.is_empty())
    }

    /// The nodes that hold object records (without decoding the records, where the store
    /// can tell).
    fn object_nodes(&self) -> Result<std::collections::BTreeSet<String>, StateError> {
        Ok(self.objects()?.into_iter().map(|r| r.node).collect())
    }

    /// Which objects the records are of, in the order of [`StateStore::objects`], without
    /// decoding the bodies that were applied where the store can tell (a destroy of 10,000
    /// objects needs their names, not 60 MB of bodies).
    fn recorded_objects(&self) -> Result<Vec<RecordedObject>, StateError> {
        Ok(self
            .objects()?
            .into_iter()
            .map(RecordedObject::from)
            .collect())
    }

    /// The records of one node, in the same order.
    fn node_objects(&self, node: &str) -> Result<Vec<ObjectRecord>, StateError>;

    fn object(&self, node: &str, object: &ObjectRef) -> Result<Option<ObjectRecord>, StateError>;

    /// The cached render for an input digest; None when absent or unreadable.
    fn render_cache(&self, digest: &str) -> Result<Option<RenderCacheEntry>, StateError>;

    /// The cached discovery (check [`DiscoveryCacheEntry::is_fresh`]); None when absent or
    /// unreadable.
    fn discovery_cache(&self) -> Result<Option<DiscoveryCacheEntry>, StateError>;

    /// Runs that were begun and not cleared, oldest first.
    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>, StateError>;

    /// Writes the batch atomically; returns the meta after it. On error nothing was written.
    fn commit(&self, batch: WriteBatch) -> Result<StateMeta, StateError>;

    /// [`StateStore::commit`] of a batch the caller keeps (to commit its parts on their own
    /// when the whole is refused). By default a copy is committed; a store that only reads
    /// the batch commits it as it is.
    fn commit_borrowed(&self, batch: &WriteBatch) -> Result<StateMeta, StateError> {
        self.commit(batch.clone())
    }

    /// The cipher for sensitive values of this state.
    fn cipher(&self) -> &StateCipher;

    /// A deterministic text dump of the whole state (sorted; sealed values never shown).
    fn dump(&self) -> Result<String, StateError>;

    /// Redacts and seals the sensitive values of `body` (see [`StateCipher::protect`]).
    fn protect(
        &self,
        body: &serde_json::Value,
        extra: &[&str],
    ) -> Result<ProtectedBody, StateError> {
        self.cipher().protect(body, extra)
    }

    /// The original body of a protected one.
    fn reveal(&self, body: &ProtectedBody) -> Result<serde_json::Value, StateError> {
        self.cipher().reveal(body)
    }
}

/// blake3 hex digest of a JSON value in canonical form (object keys sorted), so the same
/// object gives the same digest whatever the key order of its source.
pub fn digest_json(value: &serde_json::Value) -> String {
    let canonical = dump::canonical(value);
    blake3::hash(canonical.to_string().as_bytes())
        .to_hex()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_ignore_key_order() {
        let a = serde_json::json!({"a": 1, "b": {"y": 2, "x": [1, {"k": 1, "j": 2}]}});
        let b = serde_json::json!({"b": {"x": [1, {"j": 2, "k": 1}], "y": 2}, "a": 1});
        assert_eq!(digest_json(&a), digest_json(&b));
        assert_ne!(digest_json(&a), digest_json(&serde_json::json!({"a": 2})));
        assert_eq!(digest_json(&a).len(), 64);
    }
}
