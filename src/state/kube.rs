//! [`KubeStore`]: the state in Secrets of one namespace of the cluster.
//!
//! Layout (names from [`KubeLocation`]; every Secret labelled
//! `app.kubernetes.io/managed-by: meshplan` and `meshplan.io/state: NAME`):
//!
//! - the **index** `meshplan-state-NAME`: key `meta` (JSON: format, lineage, serial, key
//!   check, a write counter, the base generation's token and its chunks' sizes and digests)
//!   and keys `delta-NNNNNN`, each one committed batch (gzip-compressed JSON);
//! - the **chunks** `meshplan-state-NAME-TOKEN-I` of the base generation TOKEN: the whole
//!   [`Snapshot`] as gzip-compressed JSON, cut into pieces of at most [`CHUNK_BYTES`] (well
//!   under the API server's 1 MiB limit), labelled with their generation.
//!
//! Reading: the index, then the chunks of its generation in one list request (by label). A
//! chunk missing, or not matching its digest, means a writer switched generations between
//! the two reads: read again. The state is the base with the deltas replayed in order.
//!
//! Writing happens only under the writer lock (the Lease), in a claimed index
//! ([`KubeStore::become_writer`] writes the index first, so a former holder that lost the
//! lock can no longer write it):
//! 1. a batch is applied to the snapshot in memory first (a refused batch writes nothing);
//! 2. a small batch is appended to the index as a delta: one replace of the index with its
//!    resourceVersion as precondition, atomic on the server;
//! 3. once the deltas would pass [`DELTA_BYTES`], and when a run ends (a checkpoint), the
//!    commit writes a new generation instead: every chunk under a fresh token, then the index
//!    switched to it (the commit point), then the old chunks deleted. A failure before the switch leaves the previous
//!    generation whole, and chunks that nothing references; writers remove such chunks when
//!    they claim the index and when they finish.
//!
//! A write that fails without a clear answer (a 5xx, a lost connection) is retried, and a
//! replace of the index that may have happened is checked by reading the index again (its
//! write counter and the writer's claim id say whether it did). So the state is always one generation and its
//! deltas: the old one or the new one, never a mix.
//!
//! Opened for reading (plan, state list), the store never writes: cache batches stay in
//! memory for the command's lifetime and are written only if the command takes the lock.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::lease::{LeaseGuard, MANAGED_BY};
use super::location::KubeLocation;
use super::remote::{Remote, message, status_code, with_retries};
use super::{
    DiscoveryCacheEntry, FORMAT_VERSION, ObjectRecord, ObjectRef, RenderCacheEntry, Snapshot,
    StateCipher, StateError, StateMeta, StateStore, UnfinishedRun, WriteBatch, WriteOp,
};

/// The largest chunk (decoded bytes).
pub(crate) const CHUNK_BYTES: usize = 512 * 1024;
/// The deltas the index holds at most (compressed bytes) before a new generation is written.
pub(crate) const DELTA_BYTES: usize = 192 * 1024;
/// The layout of the Secrets this build writes.
const LAYOUT: u32 = 1;
/// The label naming the state a Secret belongs to.
pub(crate) const STATE_LABEL: &str = "meshplan.io/state";
/// The label naming a chunk's generation.
pub(crate) const GENERATION_LABEL: &str = "meshplan.io/generation";
/// The Secret type of the index and of the chunks.
pub(crate) const SECRET_TYPE: &str = "meshplan.io/state";
/// The lineage of a state that does not exist yet, until its first writer creates it with a
/// lineage of its own: the same for every reader, so a change set saved against a state not
/// yet created (`plan --out`) is current for the apply that creates it.
pub(crate) const UNCREATED_LINEAGE: &str = "uncreated";

/// An empty state, not created yet.
fn uncreated() -> Snapshot {
    let mut snapshot = Snapshot::new(FORMAT_VERSION);
    snapshot.meta.lineage = UNCREATED_LINEAGE.to_owned();
    snapshot
}

/// How often a read starts over when a writer switched generations under it.
const READ_ATTEMPTS: usize = 5;

/// The index's `meta` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IndexMeta {
    layout: u32,
    format: u32,
    lineage: String,
    serial: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_check: Option<String>,
    /// Incremented by every write of the index (tells whether an uncertain write happened).
    writes: u64,
    base: Base,
    /// The holder of the lock that last wrote the index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writer: Option<String>,
    /// A random id of the writer's claim (tells two writers of one process apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claim: Option<String>,
}

/// A base generation: its token and chunks (none: the empty state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Base {
    token: String,
    chunks: Vec<ChunkInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ChunkInfo {
    name: String,
    bytes: usize,
    /// blake3 hex of the chunk's bytes.
    digest: String,
}

/// The index as last read or written.
#[derive(Debug, Clone)]
struct Index {
    resource_version: String,
    meta: IndexMeta,
    /// `delta-NNNNNN` → compressed batch.
    deltas: BTreeMap<String, Vec<u8>>,
}

impl Index {
    fn delta_bytes(&self) -> usize {
        self.deltas.values().map(Vec::len).sum()
    }
}

/// What a writer needs.
struct Writer {
    /// The lock's holder, in short (recorded in the index).
    holder: String,
    /// This claim's random id.
    claim: String,
    /// Cancelled when the lock is lost or released: no write after it.
    lock: CancellationToken,
    lock_error: Arc<dyn Fn() -> Option<StateError> + Send + Sync>,
}

struct Inner {
    data: Snapshot,
    /// None: the state does not exist in the cluster yet.
    index: Option<Index>,
    writer: Option<Writer>,
    /// Cache changes made while read-only (written if the store becomes a writer).
    pending: Vec<WriteOp>,
}

/// The state in Secrets (see the module docs).
pub struct KubeStore {
    remote: Arc<Remote>,
    location: KubeLocation,
    /// How errors name the state (`kubernetes:NAMESPACE/NAME`).
    path: PathBuf,
    cipher: StateCipher,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl KubeStore {
    /// Reads the state at `location` (an empty one when it does not exist yet), for reading
    /// only. The key comes from `MESHPLAN_STATE_KEY` (see [`StateCipher::from_env`]).
    pub fn open(remote: Arc<Remote>, location: KubeLocation) -> Result<Self, StateError> {
        let path = PathBuf::from(location.describe());
        let cipher = StateCipher::from_env(&path)?;
        let (data, index) =
            remote.block_on(read(remote.client(), location.clone(), path.clone()))?;
        check_key(&path, &cipher, index.as_ref())?;
        Ok(Self {
            remote,
            location,
            path,
            cipher,
            inner: Mutex::new(Inner {
                data,
                index,
                writer: None,
                pending: Vec::new(),
            }),
        })
    }

    /// Opens the state at `location` for writing under `guard` (the state's Lease, held).
    pub fn open_writer(
        remote: Arc<Remote>,
        location: KubeLocation,
        guard: &LeaseGuard,
    ) -> Result<Self, StateError> {
        let store = Self::open(remote, location)?;
        store.become_writer(guard)?;
        Ok(store)
    }

    pub fn location(&self) -> &KubeLocation {
        &self.location
    }

    /// The client this store reads and writes with.
    pub fn remote(&self) -> Arc<Remote> {
        self.remote.clone()
    }

    /// Whether the state exists in the cluster.
    pub fn exists(&self) -> bool {
        self.lock_inner()
            .map(|i| i.index.is_some())
            .unwrap_or(false)
    }

    /// Makes this store a writer under `guard`, which must hold the state's Lease: checks
    /// that nobody wrote the state since it was read (else [`StateError::ConcurrentWrite`]:
    /// read and plan again), claims the index (writing the cache changes made meanwhile),
    /// and removes chunks that no generation references.
    pub fn become_writer(&self, guard: &LeaseGuard) -> Result<(), StateError> {
        let mut inner = self.lock_inner()?;
        if inner.writer.is_some() {
            return Ok(());
        }
        let api = self.api();
        let name = self.location.index_name();
        let current = self.remote.block_on(async move {
            Ok(with_retries(|| api.get_opt(&name))
                .await
                .map(|s| s.and_then(|s| s.metadata.resource_version)))
        })?;
        let current = current.map_err(|e| self.cluster_err("reading the index of", &e))?;
        if current != inner.index.as_ref().map(|i| i.resource_version.clone()) {
            return Err(StateError::ConcurrentWrite {
                path: self.path.clone(),
            });
        }
        let lost = guard.ended();
        let lease = guard.location().clone();
        let reason = {
            let token = guard.ended();
            let at = lease.to_string();
            Arc::new(move || {
                token.is_cancelled().then(|| StateError::LeaseLost {
                    lease: at.clone(),
                    reason: "the lock was released or taken over".to_owned(),
                })
            })
        };
        inner.writer = Some(Writer {
            holder: identity(guard),
            claim: uuid::Uuid::new_v4().to_string(),
            lock: lost,
            lock_error: reason,
        });
        if inner.index.is_none() {
            self.ensure_namespace()?;
            // The state is created now, with a lineage of its own.
            inner.data.meta.lineage = uuid::Uuid::new_v4().to_string();
        }
        // The claim: a write of the index (with the cache changes made while reading).
        let pending = std::mem::take(&mut inner.pending);
        let ops_written = self.write_index(&mut inner, &pending, false);
        if let Err(e) = ops_written {
            inner.writer = None;
            inner.pending = pending;
            return Err(e);
        }
        self.collect_garbage(&inner)?;
        Ok(())
    }

    /// Removes chunks no generation references (a writer, when it is done).
    pub fn finish(&self) -> Result<(), StateError> {
        let inner = self.lock_inner()?;
        if inner.writer.is_some() && inner.index.is_some() {
            self.collect_garbage(&inner)?;
        }
        Ok(())
    }

    /// The number of Secrets and their data bytes (decoded) of this state in the cluster.
    pub fn footprint(&self) -> Result<(usize, usize), StateError> {
        let api = self.api();
        let params = ListParams::default().labels(&format!("{STATE_LABEL}={}", self.location.name));
        let list = self
            .remote
            .block_on(async move { Ok(with_retries(|| api.list(&params)).await) })?
            .map_err(|e| self.cluster_err("listing the Secrets of", &e))?;
        let bytes = list
            .items
            .iter()
            .flat_map(|s| s.data.iter().flat_map(|d| d.values()))
            .map(|v| v.0.len())
            .sum();
        Ok((list.items.len(), bytes))
    }

    /// Removes every Secret of this state (after `meshplan state migrate` copied it away).
    pub fn remove_all(&self) -> Result<usize, StateError> {
        let mut inner = self.lock_inner()?;
        self.check_writer(&inner, "removing the state")?;
        let api = self.api();
        let params = ListParams::default().labels(&format!("{STATE_LABEL}={}", self.location.name));
        let index = self.location.index_name();
        let removed: Result<usize, kube::Error> = self.remote.block_on(async move {
            Ok(async {
                let list = with_retries(|| api.list(&params)).await?;
                // Chunks first, the index last: a reader never sees an index without its base.
                let mut names: Vec<String> = list
                    .items
                    .into_iter()
                    .filter_map(|s| s.metadata.name)
                    .filter(|n| n != &index)
                    .collect();
                names.push(index.clone());
                let mut removed = 0;
                let dp = DeleteParams::default();
                for name in &names {
                    match with_retries(|| api.delete(name, &dp)).await {
                        Ok(_) => removed += 1,
                        Err(e) if status_code(&e) == Some(404) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(removed)
            }
            .await)
        })?;
        let removed = removed.map_err(|e| self.cluster_err("removing", &e))?;
        inner.index = None;
        inner.data = uncreated();
        Ok(removed)
    }

    /// Fills this state, which must be empty, with `snapshot` (its lineage, serial and all):
    /// one new generation and its index.
    pub fn import(&self, snapshot: &Snapshot) -> Result<StateMeta, StateError> {
        let mut inner = self.lock_inner()?;
        self.check_writer(&inner, "importing a state")?;
        if !inner.data.is_empty() {
            return Err(StateError::NotEmpty {
                path: self.path.clone(),
                what: format!(
                    "serial {}, {} record(s)",
                    inner.data.meta.serial,
                    inner.data.object_count()
                ),
            });
        }
        if let (Some(theirs), Some(ours)) = (&snapshot.meta.key_check, self.cipher.key_check())
            && theirs != ours
        {
            return Err(StateError::WrongKey {
                path: self.path.clone(),
                source_name: super::crypto::KEY_ENV.to_owned(),
            });
        }
        let previous = inner.data.clone();
        inner.data = snapshot.clone();
        inner.data.meta.format = FORMAT_VERSION;
        match self.write_index(&mut inner, &[], true) {
            Ok(()) => Ok(inner.data.state_meta()),
            Err(e) => {
                inner.data = previous;
                Err(e)
            }
        }
    }

    fn lock_inner(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StateError> {
        self.inner.lock().map_err(|_| StateError::Batch {
            path: self.path.clone(),
            message: "an earlier write of this state panicked".to_owned(),
        })
    }

    fn api(&self) -> Api<Secret> {
        Api::namespaced(self.remote.client(), &self.location.namespace)
    }

    fn cluster_err(&self, what: &str, e: &kube::Error) -> StateError {
        StateError::Cluster {
            what: format!("{what} {}", self.location.describe()),
            namespace: self.location.namespace.clone(),
            message: message(e),
        }
    }

    fn check_writer(&self, inner: &Inner, what: &'static str) -> Result<(), StateError> {
        match &inner.writer {
            None => Err(StateError::ReadOnly {
                path: self.path.clone(),
                what,
            }),
            Some(w) if w.lock.is_cancelled() => {
                Err((w.lock_error)().unwrap_or_else(|| StateError::ReadOnly {
                    path: self.path.clone(),
                    what,
                }))
            }
            Some(_) => Ok(()),
        }
    }

    /// Creates the namespace when it is missing.
    fn ensure_namespace(&self) -> Result<(), StateError> {
        let client = self.remote.client();
        let name = self.location.namespace.clone();
        let outcome = self
            .remote
            .block_on(async move { Ok(super::remote::ensure_namespace(client, &name).await) })?;
        outcome.map_err(|e| self.cluster_err("creating the namespace of", &e))
    }

    /// Writes the index: `ops` as one more delta, or a new generation when `rebase` or when
    /// the deltas would grow too large. The snapshot already includes `ops`.
    fn write_index(
        &self,
        inner: &mut Inner,
        ops: &[WriteOp],
        rebase: bool,
    ) -> Result<(), StateError> {
        let writer = inner.writer.as_ref().map(|w| w.holder.clone());
        let claim = inner.writer.as_ref().map(|w| w.claim.clone());
        let delta = if ops.is_empty() {
            None
        } else {
            Some(compress(&serde_json::to_vec(ops).map_err(|e| {
                StateError::Batch {
                    path: self.path.clone(),
                    message: e.to_string(),
                }
            })?))
        };
        let old = inner.index.clone();
        let fits = delta
            .as_ref()
            .is_none_or(|d| old.as_ref().map_or(0, Index::delta_bytes) + d.len() <= DELTA_BYTES);
        let mut meta = IndexMeta {
            layout: LAYOUT,
            format: inner.data.meta.format,
            lineage: inner.data.meta.lineage.clone(),
            serial: inner.data.meta.serial,
            key_check: self
                .cipher
                .key_check()
                .map(str::to_owned)
                .or_else(|| old.as_ref().and_then(|i| i.meta.key_check.clone()))
                .or_else(|| inner.data.meta.key_check.clone()),
            writes: old.as_ref().map_or(0, |i| i.meta.writes) + 1,
            base: old
                .as_ref()
                .map(|i| i.meta.base.clone())
                .unwrap_or_default(),
            writer,
            claim,
        };
        let mut deltas = old.as_ref().map(|i| i.deltas.clone()).unwrap_or_default();
        let mut created: Vec<String> = Vec::new();
        if rebase || !fits {
            // A new generation: the whole snapshot in chunks under a fresh token.
            let mut base = inner.data.clone();
            base.meta.key_check = meta.key_check.clone();
            let bytes = compress(&base.to_bytes().map_err(|e| StateError::Batch {
                path: self.path.clone(),
                message: e.to_string(),
            })?);
            let token = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
            let chunks: Vec<(ChunkInfo, Vec<u8>)> = bytes
                .chunks(CHUNK_BYTES)
                .enumerate()
                .map(|(i, c)| {
                    (
                        ChunkInfo {
                            name: self.location.chunk_name(&token, i),
                            bytes: c.len(),
                            digest: blake3::hash(c).to_hex().to_string(),
                        },
                        c.to_vec(),
                    )
                })
                .collect();
            meta.base = Base {
                token: token.clone(),
                chunks: chunks.iter().map(|(info, _)| info.clone()).collect(),
            };
            deltas.clear();
            let secrets: Vec<Secret> = chunks
                .into_iter()
                .map(|(info, data)| self.chunk_secret(&info.name, &token, data))
                .collect();
            let api = self.api();
            let written = self.remote.block_on(async move {
                let mut created = Vec::new();
                let pp = PostParams::default();
                for s in &secrets {
                    let name = s.metadata.name.clone().unwrap_or_default();
                    match with_retries(|| api.create(&pp, s)).await {
                        Ok(_) => created.push(name),
                        // The name is this generation's own: an earlier try went through.
                        Err(e) if status_code(&e) == Some(409) => created.push(name),
                        Err(e) => return Ok((created, Some(e))),
                    }
                }
                Ok((created, None))
            })?;
            created = written.0;
            if let Some(e) = written.1 {
                self.delete_chunks(created);
                return Err(self.cluster_err("writing a chunk of", &e));
            }
        } else if let Some(d) = delta {
            let next = deltas
                .keys()
                .next_back()
                .and_then(|k| k.strip_prefix("delta-"))
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(1, |n| n + 1);
            deltas.insert(format!("delta-{next:06}"), d);
        }
        let index = self.index_secret(&meta, &deltas, old.as_ref());
        match self.put_index(index, old.as_ref(), &meta) {
            Ok(resource_version) => {
                let switched = old
                    .as_ref()
                    .filter(|o| o.meta.base.token != meta.base.token)
                    .map(|o| o.meta.base.chunks.iter().map(|c| c.name.clone()).collect());
                inner.index = Some(Index {
                    resource_version,
                    meta,
                    deltas,
                });
                if let Some(old_chunks) = switched {
                    self.delete_chunks(old_chunks);
                }
                Ok(())
            }
            Err(e) => {
                self.delete_chunks(created);
                Err(e)
            }
        }
    }

    /// Creates or replaces the index (with `old`'s resourceVersion as precondition); checks an
    /// uncertain outcome by reading it back. Returns the new resourceVersion.
    fn put_index(
        &self,
        index: Secret,
        old: Option<&Index>,
        meta: &IndexMeta,
    ) -> Result<String, StateError> {
        let api = self.api();
        let name = self.location.index_name();
        let create = old.is_none();
        let expected = old.map(|o| o.resource_version.clone());
        let ours = (meta.writes, meta.claim.clone());
        let outcome = self.remote.block_on(async move {
            let pp = PostParams::default();
            let sent = if create {
                with_retries(|| api.create(&pp, &index)).await
            } else {
                with_retries(|| api.replace(&name, &pp, &index)).await
            };
            let failure = match sent {
                Ok(s) => return Ok(Ok(s.metadata.resource_version.unwrap_or_default())),
                Err(e) => e,
            };
            // Did it happen after all? The index says, by its write counter.
            let now = match with_retries(|| api.get_opt(&name)).await {
                Ok(now) => now,
                Err(_) => return Ok(Err((failure, false))),
            };
            let now_rv = now
                .as_ref()
                .and_then(|s| s.metadata.resource_version.clone());
            if now_rv == expected {
                return Ok(Err((failure, false)));
            }
            let now_meta = now
                .as_ref()
                .and_then(|s| s.data.as_ref())
                .and_then(|d| d.get("meta"))
                .and_then(|m| serde_json::from_slice::<IndexMeta>(&m.0).ok())
                .map(|m| (m.writes, m.claim));
            if now_meta.as_ref() == Some(&ours) {
                return Ok(Ok(now_rv.unwrap_or_default()));
            }
            Ok(Err((failure, true)))
        })?;
        match outcome {
            Ok(rv) => Ok(rv),
            Err((_, true)) => Err(StateError::ConcurrentWrite {
                path: self.path.clone(),
            }),
            Err((e, false)) if status_code(&e) == Some(409) => Err(StateError::ConcurrentWrite {
                path: self.path.clone(),
            }),
            Err((e, false)) => Err(self.cluster_err("writing the index of", &e)),
        }
    }

    fn labels(&self, part: &str, token: Option<&str>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
            (STATE_LABEL.to_owned(), self.location.name.clone()),
            ("meshplan.io/part".to_owned(), part.to_owned()),
        ]);
        if let Some(t) = token {
            labels.insert(GENERATION_LABEL.to_owned(), t.to_owned());
        }
        labels
    }

    fn chunk_secret(&self, name: &str, token: &str, data: Vec<u8>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(self.location.namespace.clone()),
                labels: Some(self.labels("chunk", Some(token))),
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.to_owned()),
            data: Some(BTreeMap::from([("chunk".to_owned(), ByteString(data))])),
            ..Secret::default()
        }
    }

    fn index_secret(
        &self,
        meta: &IndexMeta,
        deltas: &BTreeMap<String, Vec<u8>>,
        old: Option<&Index>,
    ) -> Secret {
        let mut data: BTreeMap<String, ByteString> = deltas
            .iter()
            .map(|(k, v)| (k.clone(), ByteString(v.clone())))
            .collect();
        data.insert(
            "meta".to_owned(),
            ByteString(serde_json::to_vec(meta).unwrap_or_default()),
        );
        Secret {
            metadata: ObjectMeta {
                name: Some(self.location.index_name()),
                namespace: Some(self.location.namespace.clone()),
                labels: Some(self.labels("index", None)),
                resource_version: old.map(|o| o.resource_version.clone()),
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.to_owned()),
            data: Some(data),
            ..Secret::default()
        }
    }

    /// Deletes chunks (best effort: what stays is removed by a later writer).
    fn delete_chunks(&self, names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        let api = self.api();
        let result = self.remote.block_on(async move {
            let dp = DeleteParams::default();
            for name in &names {
                match with_retries(|| api.delete(name, &dp)).await {
                    Ok(_) => {}
                    Err(e) if status_code(&e) == Some(404) => {}
                    Err(e) => tracing::warn!("removing the state chunk {name} failed: {e}"),
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!("removing state chunks failed: {e}");
        }
    }

    /// Deletes the chunks of this state that the index does not reference.
    fn collect_garbage(&self, inner: &Inner) -> Result<(), StateError> {
        let keep: Vec<String> = inner
            .index
            .as_ref()
            .map(|i| i.meta.base.chunks.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        let api = self.api();
        let params = ListParams::default().labels(&format!(
            "{STATE_LABEL}={},meshplan.io/part=chunk",
            self.location.name
        ));
        let listed = self
            .remote
            .block_on(async move { Ok(with_retries(|| api.list(&params)).await) })?
            .map_err(|e| self.cluster_err("listing the chunks of", &e))?;
        let orphans: Vec<String> = listed
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .filter(|n| !keep.contains(n))
            .collect();
        if !orphans.is_empty() {
            tracing::info!(
                "removing {} state chunk(s) no generation references",
                orphans.len()
            );
        }
        self.delete_chunks(orphans);
        Ok(())
    }
}

fn identity(guard: &LeaseGuard) -> String {
    super::lease::identity(guard.holder())
}

/// A state key that does not match the state's is refused at once.
fn check_key(path: &Path, cipher: &StateCipher, index: Option<&Index>) -> Result<(), StateError> {
    if let (Some(ours), Some(theirs)) = (
        cipher.key_check(),
        index.and_then(|i| i.meta.key_check.as_deref()),
    ) && ours != theirs
    {
        return Err(StateError::WrongKey {
            path: path.to_path_buf(),
            source_name: super::crypto::KEY_ENV.to_owned(),
        });
    }
    Ok(())
}

/// Reads the state: the index, its generation's chunks, the deltas replayed. Starts over
/// when a writer switched generations between the reads.
async fn read(
    client: kube::Client,
    location: KubeLocation,
    path: PathBuf,
) -> Result<(Snapshot, Option<Index>), StateError> {
    let api: Api<Secret> = Api::namespaced(client, &location.namespace);
    let cluster_err = |what: &str, e: &kube::Error| StateError::Cluster {
        what: format!("{what} {}", location.describe()),
        namespace: location.namespace.clone(),
        message: message(e),
    };
    let corrupt = |what: &'static str, key: &str, message: String| StateError::Corrupt {
        path: path.clone(),
        what,
        key: key.to_owned(),
        message,
    };
    let mut last_problem = String::new();
    for _ in 0..READ_ATTEMPTS {
        let index_name = location.index_name();
        let Some(secret) = with_retries(|| api.get_opt(&index_name))
            .await
            .map_err(|e| cluster_err("reading the index of", &e))?
        else {
            return Ok((uncreated(), None));
        };
        let resource_version = secret.metadata.resource_version.clone().unwrap_or_default();
        let mut data = secret.data.unwrap_or_default();
        let meta_bytes = data
            .remove("meta")
            .ok_or_else(|| corrupt("index", &index_name, "no meta entry".to_owned()))?;
        let meta: IndexMeta = serde_json::from_slice(&meta_bytes.0)
            .map_err(|e| corrupt("index", &index_name, e.to_string()))?;
        if meta.format > FORMAT_VERSION || meta.layout > LAYOUT {
            return Err(StateError::NewerFormat {
                path: path.clone(),
                found: meta.format.max(meta.layout),
                known: FORMAT_VERSION,
            });
        }
        let deltas: BTreeMap<String, Vec<u8>> = data
            .into_iter()
            .filter(|(k, _)| k.starts_with("delta-"))
            .map(|(k, v)| (k, v.0))
            .collect();
        // The base generation.
        let mut snapshot = if meta.base.chunks.is_empty() {
            let mut s = Snapshot::new(meta.format);
            s.meta.lineage = meta.lineage.clone();
            s
        } else {
            let params = ListParams::default().labels(&format!(
                "{STATE_LABEL}={},{GENERATION_LABEL}={}",
                location.name, meta.base.token
            ));
            let listed = with_retries(|| api.list(&params))
                .await
                .map_err(|e| cluster_err("reading the chunks of", &e))?;
            let mut by_name: BTreeMap<String, Vec<u8>> = listed
                .items
                .into_iter()
                .filter_map(|s| {
                    let name = s.metadata.name?;
                    let bytes = s.data?.remove("chunk")?.0;
                    Some((name, bytes))
                })
                .collect();
            let mut bytes = Vec::new();
            let mut whole = true;
            for c in &meta.base.chunks {
                match by_name.remove(&c.name) {
                    Some(b) if blake3::hash(&b).to_hex().as_str() == c.digest => {
                        bytes.extend_from_slice(&b)
                    }
                    Some(_) => {
                        whole = false;
                        last_problem = format!("chunk {} does not match its digest", c.name);
                    }
                    None => {
                        whole = false;
                        last_problem = format!("chunk {} is missing", c.name);
                    }
                }
            }
            if !whole {
                // A writer switched generations meanwhile (or the state was damaged).
                continue;
            }
            let plain =
                decompress(&bytes).map_err(|e| corrupt("base generation", &meta.base.token, e))?;
            Snapshot::from_bytes(&plain)
                .map_err(|e| corrupt("base generation", &meta.base.token, e.to_string()))?
        };
        for (key, bytes) in &deltas {
            let plain = decompress(bytes).map_err(|e| corrupt("delta", key, e))?;
            let ops: Vec<WriteOp> =
                serde_json::from_slice(&plain).map_err(|e| corrupt("delta", key, e.to_string()))?;
            snapshot
                .apply(
                    &WriteBatch {
                        ops,
                        expect_serial: None,
                        lazy: false,
                    },
                    &path,
                )
                .map_err(|e| corrupt("delta", key, e.to_string()))?;
        }
        if snapshot.meta.serial != meta.serial || snapshot.meta.lineage != meta.lineage {
            return Err(corrupt(
                "index",
                &index_name,
                format!(
                    "the index says serial {} of lineage {}, its generation and deltas give serial {} of lineage {}",
                    meta.serial, meta.lineage, snapshot.meta.serial, snapshot.meta.lineage
                ),
            ));
        }
        snapshot.meta.format = meta.format;
        snapshot.meta.key_check = meta.key_check.clone();
        return Ok((
            snapshot,
            Some(Index {
                resource_version,
                meta,
                deltas,
            }),
        ));
    }
    Err(corrupt(
        "base generation",
        &location.index_name(),
        format!("{last_problem} (read {READ_ATTEMPTS} times)"),
    ))
}

fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

fn decompress(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| format!("not gzip data: {e}"))?;
    Ok(out)
}

/// Whether a batch only touches caches (what a reader may keep in memory).
fn only_caches(batch: &WriteBatch) -> bool {
    batch.ops.iter().all(|op| {
        matches!(
            op,
            WriteOp::PutRender { .. }
                | WriteOp::RemoveRender { .. }
                | WriteOp::PutDiscovery(_)
                | WriteOp::ClearDiscovery
        )
    })
}

impl StateStore for KubeStore {
    fn describe(&self) -> String {
        self.location.describe()
    }

    fn export(&self) -> Result<Snapshot, StateError> {
        Ok(self.lock_inner()?.data.clone())
    }

    fn meta(&self) -> Result<StateMeta, StateError> {
        Ok(self.lock_inner()?.data.state_meta())
    }

    fn objects(&self) -> Result<Vec<ObjectRecord>, StateError> {
        Ok(self.lock_inner()?.data.objects())
    }

    fn node_objects(&self, node: &str) -> Result<Vec<ObjectRecord>, StateError> {
        Ok(self.lock_inner()?.data.node_objects(node))
    }

    fn object(&self, node: &str, object: &ObjectRef) -> Result<Option<ObjectRecord>, StateError> {
        Ok(self.lock_inner()?.data.object(node, object))
    }

    fn render_cache(&self, digest: &str) -> Result<Option<RenderCacheEntry>, StateError> {
        Ok(self.lock_inner()?.data.render().get(digest).cloned())
    }

    fn discovery_cache(&self) -> Result<Option<DiscoveryCacheEntry>, StateError> {
        Ok(self.lock_inner()?.data.discovery().cloned())
    }

    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>, StateError> {
        Ok(self.lock_inner()?.data.unfinished_runs())
    }

    fn commit(&self, batch: WriteBatch) -> Result<StateMeta, StateError> {
        let mut inner = self.lock_inner()?;
        if inner.writer.is_none() && only_caches(&batch) {
            // A reader keeps its caches for this command only.
            inner.data.apply(&batch, &self.path)?;
            inner.pending.extend(batch.ops);
            return Ok(inner.data.state_meta());
        }
        self.check_writer(&inner, "a write")?;
        let before = inner.data.clone();
        inner.data.apply(&batch, &self.path)?;
        // A run that ends is a checkpoint: its deltas fold into a new generation, so readers
        // find the state whole in its chunks.
        let ends_run = batch
            .ops
            .iter()
            .any(|op| matches!(op, WriteOp::ClearRun { .. }));
        match self.write_index(&mut inner, &batch.ops, ends_run) {
            Ok(()) => Ok(inner.data.state_meta()),
            Err(e) => {
                inner.data = before;
                Err(e)
            }
        }
    }

    fn cipher(&self) -> &StateCipher {
        &self.cipher
    }

    fn dump(&self) -> Result<String, StateError> {
        let inner = self.lock_inner()?;
        let data = &inner.data;
        let render: Vec<(String, Option<RenderCacheEntry>)> = data
            .render()
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        Ok(super::dump::dump(
            &data.state_meta(),
            &data.objects(),
            &render,
            data.discovery(),
            &data.unfinished_runs(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_round_trips() {
        let text = b"{\"objects\": []}".repeat(1000);
        let packed = compress(&text);
        assert!(packed.len() < text.len() / 10);
        assert_eq!(decompress(&packed).unwrap(), text);
        assert!(decompress(b"not gzip").is_err());
    }

    #[test]
    fn only_cache_batches_may_stay_in_memory() {
        assert!(only_caches(&WriteBatch::new().clear_discovery()));
        assert!(!only_caches(&WriteBatch::new().clear_run("r")));
    }
}
