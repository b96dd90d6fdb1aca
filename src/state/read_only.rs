//! A read-only view of a state, for the commands that never write it (`meshplan drift`):
//! taken without the writer lock, and consistent while a writer works.
//!
//! 1. **Publishing.** Every process that opens the database (a writer, or a reader such as
//!    `plan`, which keeps it open while it plans) publishes `snapshot.json` beside it: the
//!    format, lineage, serial and key check, every object record, the run records and the
//!    discovery cache, written to a temporary file and renamed over the previous one. A
//!    reader sees all of one serial or a later one, never a mix. It is published when the
//!    state is opened (unless the published one is current, [`is_current`]), at once after
//!    a commit that begins or clears a run, within [`PUBLISH_INTERVAL`] after commits that
//!    change object records (a [`Publisher`] thread publishes at most once per interval, so
//!    a run's thousands of commits do not each rewrite every record), when the state is
//!    closed, and after an import.
//! 2. **Reading.** [`open_read_only`] opens the database itself when no process holds it
//!    (sled allows one process at a time), reads everything into memory and closes it at once;
//!    when a writer (the holder of the writer lock, [`WriterLock`]) or, after a moment, a
//!    reader holds it, it reads the published snapshot instead and says so
//!    ([`SnapshotSource::Published`], with the lock's holder). A directory holding only the
//!    snapshot (and the key), copied out of a state, is read the same way.
//!
//! The view is a [`StateSnapshot`], a [`StateStore`] whose commits are refused
//! ([`StateError::ReadOnly`]). It holds no render cache and no journal entries: unfinished
//! runs are listed by their records only. (The whole state in memory, journal and caches
//! included, is [`super::Snapshot`], which the kubernetes backend stores and migration
//! copies; this file is a different, smaller thing.)
//!
//! Caveat: the snapshot is not synced to disk on every write (the database is); after a
//! power loss it may be missing or damaged until the next writer opens the state.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::sled_store::{self, DB_DIR};
use super::snapshot::object_key;
use super::trees::{K_FORMAT, TreeId, Trees, db_err};
use super::{
    DiscoveryCacheEntry, FORMAT_VERSION, LockHolder, ObjectRecord, RunRecord, Snapshot,
    SnapshotMeta, StateCipher, StateError, StateMeta, StateStore, UnfinishedRun, WriteBatch,
    WriterLock,
};

/// The published snapshot's file name inside the state directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// What the snapshot file says it is.
const SNAPSHOT_KIND: &str = "meshplan-state-snapshot";

/// Where a read-only view came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSource {
    /// The database itself (no other process held it).
    Database,
    /// The snapshot the writer holding the database published last; `holder` is the writer
    /// lock's holder, when there is one.
    Published { holder: Option<LockHolder> },
}

/// A state read into memory: everything a read-only command needs, at one serial.
#[derive(Debug)]
pub struct StateSnapshot {
    dir: PathBuf,
    meta: StateMeta,
    objects: Vec<ObjectRecord>,
    runs: Vec<RunRecord>,
    discovery: Option<DiscoveryCacheEntry>,
    cipher: StateCipher,
    source: SnapshotSource,
}

impl StateSnapshot {
    pub fn source(&self) -> &SnapshotSource {
        &self.source
    }
}

/// Reads the state in `dir` without taking the writer lock (see the module overview).
///
/// Fails with [`StateError::NoState`] when `dir` holds no state, and with the state's own
/// errors when it cannot be read (damaged, newer format, missing or wrong key). Never creates
/// or changes anything (the state key included).
pub fn open_read_only(dir: &Path) -> Result<StateSnapshot, StateError> {
    if !sled_store::SledStore::exists(dir) {
        // A snapshot alone (copied out of the state directory, e.g. a CI artifact) is a
        // state too.
        if dir.join(SNAPSHOT_FILE).is_file() {
            return read_published(dir);
        }
        return Err(StateError::NoState {
            path: dir.to_path_buf(),
        });
    }
    let db_path = dir.join(DB_DIR);
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new()
            .path(&db_path)
            .cache_capacity(sled_store::CACHE_CAPACITY)
            .open()
        {
            Ok(db) => return read_database(dir, &db),
            // A database just closed stays locked a moment (its last flush): without a
            // writer holding the state, it is tried again briefly.
            Err(e)
                if sled_store::is_lock_error(&e)
                    && started.elapsed() < CLOSING
                    && WriterLock::holder(dir).ok().flatten().is_none() =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) if sled_store::is_lock_error(&e) => return read_published(dir),
            Err(e) => return Err(db_err(&db_path, e)),
        }
    }
}

/// How long a reader tries again to open a database no writer holds.
const CLOSING: std::time::Duration = std::time::Duration::from_secs(2);

fn read_database(dir: &Path, db: &sled::Db) -> Result<StateSnapshot, StateError> {
    let trees = Trees::open(db, dir)?;
    let raw = RawSnapshot::from_trees(dir, &trees)?;
    raw.into_snapshot(dir, SnapshotSource::Database)
}

fn read_published(dir: &Path) -> Result<StateSnapshot, StateError> {
    let path = dir.join(SNAPSHOT_FILE);
    let holder = WriterLock::holder(dir).ok().flatten();
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::NoSnapshot {
                path: dir.to_path_buf(),
                holder: holder.map(|h| h.to_string()),
            });
        }
        Err(source) => {
            return Err(StateError::Io {
                action: "read the state snapshot",
                path,
                source,
            });
        }
    };
    let file: SnapshotFile = serde_json::from_slice(&text).map_err(|e| StateError::Corrupt {
        path: dir.to_path_buf(),
        what: "snapshot",
        key: SNAPSHOT_FILE.to_owned(),
        message: e.to_string(),
    })?;
    if file.kind != SNAPSHOT_KIND {
        return Err(StateError::Corrupt {
            path: dir.to_path_buf(),
            what: "snapshot",
            key: SNAPSHOT_FILE.to_owned(),
            message: format!("kind `{}`, expected `{SNAPSHOT_KIND}`", file.kind),
        });
    }
    let raw = RawSnapshot {
        format: file.format,
        lineage: file.lineage,
        serial: file.serial,
        key_check: file.key_check,
        objects: file.objects,
        runs: file.runs,
        discovery: file.discovery,
    };
    raw.into_snapshot(dir, SnapshotSource::Published { holder })
}

/// The snapshot file's layout.
#[derive(Deserialize)]
struct SnapshotFile {
    kind: String,
    format: u32,
    lineage: String,
    serial: u64,
    key_check: Option<String>,
    objects: Vec<ObjectRecord>,
    runs: Vec<RunRecord>,
    discovery: Option<DiscoveryCacheEntry>,
}

/// What a snapshot holds, before the key is checked.
struct RawSnapshot {
    format: u32,
    lineage: String,
    serial: u64,
    key_check: Option<String>,
    objects: Vec<ObjectRecord>,
    runs: Vec<RunRecord>,
    discovery: Option<DiscoveryCacheEntry>,
}

impl RawSnapshot {
    fn from_trees(dir: &Path, trees: &Trees) -> Result<Self, StateError> {
        let meta = trees.get(TreeId::Meta);
        let get = |key: &[u8]| meta.get(key).map_err(|e| db_err(dir, e));
        let corrupt = |what: &'static str, key: &str, message: String| StateError::Corrupt {
            path: dir.to_path_buf(),
            what,
            key: key.to_owned(),
            message,
        };
        let format = get(K_FORMAT)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| corrupt("format version", "meta/format", "missing".into()))?;
        let lineage = get(sled_store::K_LINEAGE)?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .ok_or_else(|| corrupt("lineage", "meta/lineage", "missing".into()))?;
        let serial = get(sled_store::K_SERIAL)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| corrupt("serial", "meta/serial", "missing".into()))?;
        let key_check =
            get(sled_store::K_KEY_CHECK)?.map(|v| String::from_utf8_lossy(&v).into_owned());
        let values = |tree: TreeId| -> Result<Vec<sled::IVec>, StateError> {
            trees
                .get(tree)
                .iter()
                .map(|item| item.map(|(_, v)| v).map_err(|e| db_err(dir, e)))
                .collect()
        };
        let objects = values(TreeId::Objects)?
            .iter()
            .map(|v| {
                serde_json::from_slice(v)
                    .map_err(|e| corrupt("object record", "objects", e.to_string()))
            })
            .collect::<Result<Vec<ObjectRecord>, _>>()?;
        let runs = values(TreeId::Runs)?
            .iter()
            .map(|v| {
                serde_json::from_slice(v).map_err(|e| corrupt("run record", "runs", e.to_string()))
            })
            .collect::<Result<Vec<RunRecord>, _>>()?;
        let discovery = trees
            .get(TreeId::Discovery)
            .get(sled_store::K_DISCOVERY)
            .map_err(|e| db_err(dir, e))?
            .and_then(|v| serde_json::from_slice(&v).ok());
        Ok(Self {
            format,
            lineage,
            serial,
            key_check,
            objects,
            runs,
            discovery,
        })
    }

    fn into_snapshot(
        self,
        dir: &Path,
        source: SnapshotSource,
    ) -> Result<StateSnapshot, StateError> {
        if self.format > FORMAT_VERSION {
            return Err(StateError::NewerFormat {
                path: dir.to_path_buf(),
                found: self.format,
                known: FORMAT_VERSION,
            });
        }
        if self.format < FORMAT_VERSION {
            return Err(StateError::OlderFormatReadOnly {
                path: dir.to_path_buf(),
                found: self.format,
                known: FORMAT_VERSION,
            });
        }
        let cipher = StateCipher::load(dir, false)?;
        if let Some(check) = &self.key_check
            && Some(check.as_str()) != cipher.key_check()
        {
            return Err(StateError::WrongKey {
                path: dir.to_path_buf(),
                source_name: cipher.source().map(|s| s.describe()).unwrap_or_default(),
            });
        }
        let mut objects = self.objects;
        objects.sort_by_key(|r| object_key(&r.node, &r.object));
        let mut runs = self.runs;
        runs.sort_by(|a, b| (a.started_at, &a.run).cmp(&(b.started_at, &b.run)));
        Ok(StateSnapshot {
            dir: dir.to_path_buf(),
            meta: StateMeta {
                format: self.format,
                lineage: self.lineage,
                serial: self.serial,
            },
            objects,
            runs,
            discovery: self.discovery,
            cipher,
            source,
        })
    }
}

/// How often, at most, a commit that changes only object records republishes the snapshot.
/// Publishing writes every record, so publishing after each of the many commits of a large
/// apply would cost time quadratic in its size; a reader sees the records of at most this
/// long ago (and, always, whether a run is in progress).
pub(crate) const PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Publishes the snapshot of one open database in the background (see the module overview):
/// a commit that begins or clears a run publishes at once ([`Publisher::now`]); one that
/// changes object records only marks the snapshot out of date ([`Publisher::soon`]), and a
/// thread publishes it at most once per interval. Dropping the publisher publishes what is
/// still out of date before it returns, so the snapshot a closed state leaves is its last
/// serial.
pub(crate) struct Publisher {
    shared: std::sync::Arc<Shared>,
    dir: PathBuf,
    trees: Trees,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    pending: std::sync::Mutex<Pending>,
    wake: std::sync::Condvar,
    /// Snapshots written, for tests.
    published: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Pending {
    /// A commit changed what the snapshot holds since the last publishing began.
    dirty: bool,
    /// The publisher is being dropped.
    closing: bool,
    /// A background publishing failed: handed to the next commit.
    failed: Option<StateError>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, dir: &Path, trees: &Trees) -> Result<(), StateError> {
        let result = publish(dir, trees);
        self.published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        result
    }
}

impl Publisher {
    /// Publishes the database's snapshot now, then keeps it up to date at most once per
    /// `interval`.
    pub(crate) fn start(
        dir: &Path,
        trees: &Trees,
        interval: std::time::Duration,
    ) -> Result<Self, StateError> {
        let shared = std::sync::Arc::new(Shared::default());
        if !is_current(dir, trees)? {
            shared.publish(dir, trees)?;
        }
        let thread = {
            let (shared, owned_dir, trees) = (shared.clone(), dir.to_path_buf(), trees.clone());
            std::thread::Builder::new()
                .name("state-publisher".into())
                .spawn(move || background(&shared, &owned_dir, &trees, interval))
                .map_err(|source| StateError::Io {
                    action: "start the state snapshot's publisher",
                    path: dir.join(SNAPSHOT_FILE),
                    source,
                })?
        };
        Ok(Self {
            shared,
            dir: dir.to_path_buf(),
            trees: trees.clone(),
            thread: Some(thread),
        })
    }

    /// Publishes now (a run began or was cleared: readers must see it at once). An earlier
    /// failure of the background publishing is superseded by this one's outcome.
    pub(crate) fn now(&self) -> Result<(), StateError> {
        {
            let mut pending = self.shared.lock();
            pending.dirty = false;
            pending.failed = None;
        }
        self.shared.publish(&self.dir, &self.trees)
    }

    /// Marks the snapshot out of date (it is published within the interval), or returns why
    /// the last background publishing failed.
    pub(crate) fn soon(&self) -> Result<(), StateError> {
        let mut pending = self.shared.lock();
        if let Some(failed) = pending.failed.take() {
            return Err(failed);
        }
        pending.dirty = true;
        self.shared.wake.notify_one();
        Ok(())
    }

    #[cfg(test)]
    fn published(&self) -> u64 {
        self.shared
            .published
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(failed) = self.shared.lock().failed.take() {
            tracing::warn!(error = %failed, "the state's snapshot for readers is out of date");
        }
    }
}

/// The publisher's thread: waits until a commit marks the snapshot out of date, publishes,
/// then lets at least `interval` pass before the next (unless the publisher is closing).
fn background(shared: &Shared, dir: &Path, trees: &Trees, interval: std::time::Duration) {
    loop {
        let closing = {
            let mut pending = shared.lock();
            while !pending.dirty && !pending.closing {
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if !pending.dirty {
                return;
            }
            pending.dirty = false;
            pending.closing
        };
        if let Err(e) = shared.publish(dir, trees) {
            shared.lock().failed = Some(e);
        }
        if closing {
            return;
        }
        let pending = shared.lock();
        let _throttled = shared
            .wake
            .wait_timeout_while(pending, interval, |p| !p.closing)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// Publishing is one at a time within a process: commits from several threads each publish,
/// and the last to read the database is the last to replace the file.
static PUBLISHING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The snapshot of the open database `trees` without its object records: what comes before
/// them (the header, `{"kind":...,"key_check":...`) and after them (`],"runs":[...]` and
/// `,"discovery":...}`).
struct Edges {
    head: Vec<u8>,
    tail: Vec<u8>,
}

/// What opens the list of object records, between the two [`Edges`].
const OBJECTS_OPEN: &[u8] = b",\"objects\":[";

fn edges(dir: &Path, trees: &Trees) -> Result<Edges, StateError> {
    let meta = trees.get(TreeId::Meta);
    let get = |key: &[u8]| meta.get(key).map_err(|e| db_err(dir, e));
    let format = get(K_FORMAT)?
        .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
        .map_or(0, u32::from_be_bytes);
    let lineage = get(sled_store::K_LINEAGE)?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    let serial = get(sled_store::K_SERIAL)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes);
    let key_check = get(sled_store::K_KEY_CHECK)?.map(|v| String::from_utf8_lossy(&v).into_owned());
    let mut head = serde_json::json!({
        "kind": SNAPSHOT_KIND,
        "format": format,
        "lineage": lineage,
        "serial": serial,
        "key_check": key_check,
    })
    .to_string()
    .into_bytes();
    head.pop();
    // The stored values are JSON already: they are copied as they are.
    let mut tail = b"],\"runs\":[".to_vec();
    for (i, item) in trees.get(TreeId::Runs).iter().enumerate() {
        let (_, value) = item.map_err(|e| db_err(dir, e))?;
        if i > 0 {
            tail.push(b',');
        }
        tail.extend_from_slice(&value);
    }
    tail.extend_from_slice(b"],\"discovery\":");
    match trees
        .get(TreeId::Discovery)
        .get(sled_store::K_DISCOVERY)
        .map_err(|e| db_err(dir, e))?
    {
        Some(value) if serde_json::from_slice::<serde::de::IgnoredAny>(&value).is_ok() => {
            tail.extend_from_slice(&value);
        }
        _ => tail.extend_from_slice(b"null"),
    }
    tail.push(b'}');
    Ok(Edges { head, tail })
}

/// Whether the published snapshot is the database's: its header (format, lineage, serial and
/// key check), runs and discovery are, and its end is there (a file cut short by a power loss
/// is not current). The object records are not read: every commit that changes them moves
/// the serial. Opening a state publishes only when the snapshot is not current.
fn is_current(dir: &Path, trees: &Trees) -> Result<bool, StateError> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Edges { head, tail } = edges(dir, trees)?;
    let Ok(mut file) = std::fs::File::open(dir.join(SNAPSHOT_FILE)) else {
        return Ok(false);
    };
    let mut read_at = |at: SeekFrom, len: usize| -> Option<Vec<u8>> {
        let mut bytes = vec![0; len];
        file.seek(at).ok()?;
        file.read_exact(&mut bytes).ok()?;
        Some(bytes)
    };
    let first = read_at(SeekFrom::Start(0), head.len() + OBJECTS_OPEN.len());
    let last = i64::try_from(tail.len())
        .ok()
        .and_then(|len| read_at(SeekFrom::End(-len), tail.len()));
    Ok(matches!((first, last), (Some(first), Some(last))
        if first[..head.len()] == head[..] && &first[head.len()..] == OBJECTS_OPEN && last == tail))
}

/// Publishes the snapshot of the open database `trees` (see the module overview).
pub(crate) fn publish(dir: &Path, trees: &Trees) -> Result<(), StateError> {
    let _one_at_a_time = PUBLISHING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let io = |action, source| StateError::Io {
        action,
        path: dir.join(SNAPSHOT_FILE),
        source,
    };
    let Edges { head, tail } = edges(dir, trees)?;
    let tmp = dir.join(format!(".{SNAPSHOT_FILE}.{}", std::process::id()));
    // Streamed to the file: a snapshot of a large state is tens of megabytes.
    let written = (|| -> Result<(), StateError> {
        let file = std::fs::File::create(&tmp).map_err(|e| io("write the state snapshot", e))?;
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
        let mut put = |bytes: &[u8]| {
            out.write_all(bytes)
                .map_err(|e| io("write the state snapshot", e))
        };
        put(&head)?;
        put(OBJECTS_OPEN)?;
        for (i, item) in trees.get(TreeId::Objects).iter().enumerate() {
            let (_, value) = item.map_err(|e| db_err(dir, e))?;
            if i > 0 {
                put(b",")?;
            }
            put(&value)?;
        }
        put(&tail)?;
        out.flush().map_err(|e| io("write the state snapshot", e))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("write the state snapshot", e)
    })
}

impl StateStore for StateSnapshot {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    /// The records, runs (without their journal entries) and discovery this view holds; no
    /// render cache.
    fn export(&self) -> Result<Snapshot, StateError> {
        Ok(Snapshot::from_parts(
            SnapshotMeta {
                format: self.meta.format,
                lineage: self.meta.lineage.clone(),
                serial: self.meta.serial,
                key_check: self.cipher.key_check().map(str::to_owned),
            },
            self.objects.clone(),
            std::collections::BTreeMap::new(),
            self.discovery.clone(),
            self.unfinished_runs()?,
        ))
    }

    fn meta(&self) -> Result<StateMeta, StateError> {
        Ok(self.meta.clone())
    }

    fn objects(&self) -> Result<Vec<ObjectRecord>, StateError> {
        Ok(self.objects.clone())
    }

    fn object_nodes(&self) -> Result<std::collections::BTreeSet<String>, StateError> {
        Ok(self.objects.iter().map(|r| r.node.clone()).collect())
    }

    fn node_objects(&self, node: &str) -> Result<Vec<ObjectRecord>, StateError> {
        Ok(self
            .objects
            .iter()
            .filter(|r| r.node == node)
            .cloned()
            .collect())
    }

    fn object(
        &self,
        node: &str,
        object: &super::ObjectRef,
    ) -> Result<Option<ObjectRecord>, StateError> {
        Ok(self
            .objects
            .iter()
            .find(|r| r.node == node && &r.object == object)
            .cloned())
    }

    fn render_cache(&self, _digest: &str) -> Result<Option<super::RenderCacheEntry>, StateError> {
        Ok(None)
    }

    fn discovery_cache(&self) -> Result<Option<DiscoveryCacheEntry>, StateError> {
        Ok(self.discovery.clone())
    }

    /// The runs begun and not cleared, by their records only (the journal is not read).
    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>, StateError> {
        Ok(self
            .runs
            .iter()
            .map(|run| UnfinishedRun {
                run: run.clone(),
                entries: Vec::new(),
            })
            .collect())
    }

    fn commit(&self, _batch: WriteBatch) -> Result<StateMeta, StateError> {
        Err(StateError::ReadOnly {
            path: self.dir.clone(),
            what: "a commit",
        })
    }

    fn cipher(&self) -> &StateCipher {
        &self.cipher
    }

    fn dump(&self) -> Result<String, StateError> {
        let runs = self.unfinished_runs()?;
        Ok(super::dump::dump(
            &self.meta,
            &self.objects,
            &[],
            self.discovery.as_ref(),
            &runs,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ObjectRef, ProtectedBody, SledStore};

    fn record(name: &str) -> ObjectRecord {
        ObjectRecord {
            node: "manifest.a".into(),
            object: ObjectRef::new("v1", "ConfigMap", Some("default"), name),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("5".into()),
            applied_digest: "d".into(),
            last_applied: ProtectedBody::plain(serde_json::json!({"kind": "ConfigMap"})).unwrap(),
        }
    }

    #[test]
    fn a_free_state_is_read_from_the_database_without_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let written = {
            let store = SledStore::open(dir.path(), "apply").unwrap();
            store
                .commit(WriteBatch::new().put_object(record("a")))
                .unwrap()
        };
        // A stale lock left by a crash does not stop a reader.
        std::fs::write(dir.path().join("lock"), "{not json").unwrap();
        let snapshot = open_read_only(dir.path()).unwrap();
        assert_eq!(snapshot.source(), &SnapshotSource::Database);
        assert_eq!(snapshot.meta().unwrap(), written);
        assert_eq!(snapshot.objects().unwrap(), vec![record("a")]);
        let err = snapshot.commit(WriteBatch::new()).unwrap_err();
        assert!(matches!(err, StateError::ReadOnly { .. }), "{err}");
    }

    #[test]
    fn while_a_writer_holds_the_state_the_published_snapshot_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), "apply").unwrap();
        store
            .commit(WriteBatch::new().put_object(record("a")))
            .unwrap();
        let meta = store
            .commit(
                WriteBatch::new()
                    .put_object(record("b"))
                    .begin_run(crate::state::RunRecord::start("apply")),
            )
            .unwrap();
        let snapshot = open_read_only(dir.path()).unwrap();
        match snapshot.source() {
            SnapshotSource::Published { holder: Some(h) } => assert_eq!(h.command, "apply"),
            other => panic!("{other:?}"),
        }
        assert_eq!(snapshot.meta().unwrap(), meta);
        assert_eq!(snapshot.objects().unwrap(), vec![record("a"), record("b")]);
        let runs = snapshot.unfinished_runs().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].run.command, "apply");
        // The same data as the database holds, in the same order.
        assert_eq!(snapshot.objects().unwrap(), store.objects().unwrap());
        drop(store);
    }

    /// The snapshot file's object names, as a reader would see them.
    fn published_names(dir: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(dir.join(SNAPSHOT_FILE)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// A database in a new directory, and its trees.
    fn open_trees() -> (tempfile::TempDir, sled::Db, Trees) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join(DB_DIR))
            .open()
            .unwrap();
        let trees = Trees::open(&db, dir.path()).unwrap();
        (dir, db, trees)
    }

    #[test]
    fn commits_of_records_are_published_together_and_when_the_state_closes() {
        let (dir, _db, trees) = open_trees();
        // An interval no test outlives: only the first commit and the close publish.
        let publisher =
            Publisher::start(dir.path(), &trees, std::time::Duration::from_secs(3600)).unwrap();
        assert_eq!(publisher.published(), 1, "published when opened");
        for i in 0..100 {
            let name = format!("cm-{i:03}");
            trees
                .get(TreeId::Objects)
                .insert(
                    name.as_bytes(),
                    format!("{{\"name\":\"{name}\"}}").as_bytes(),
                )
                .unwrap();
            publisher.soon().unwrap();
        }
        let shared = publisher.shared.clone();
        drop(publisher);
        let published = shared.published.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            (2..=3).contains(&published),
            "100 commits published {published} times"
        );
        let names = published_names(dir.path());
        assert_eq!(names.len(), 100, "the last commit is published at close");
        assert_eq!(names.last().map(String::as_str), Some("cm-099"));
    }

    #[test]
    fn commits_of_records_are_published_while_the_state_stays_open() {
        let (dir, _db, trees) = open_trees();
        let publisher = Publisher::start(dir.path(), &trees, PUBLISH_INTERVAL).unwrap();
        trees
            .get(TreeId::Objects)
            .insert(b"a", br#"{"name":"a"}"#.as_slice())
            .unwrap();
        publisher.soon().unwrap();
        // Published by the thread, with the state still open (waits for it, however slow the
        // machine; the test fails only if it never comes).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while published_names(dir.path()).is_empty() {
            assert!(std::time::Instant::now() < deadline, "never published");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(published_names(dir.path()), vec!["a".to_owned()]);
        drop(publisher);
    }

    fn published_json(dir: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(SNAPSHOT_FILE)).unwrap()).unwrap()
    }

    /// The names of the object records in the published snapshot.
    fn record_names(dir: &Path) -> Vec<String> {
        published_json(dir)["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["object"]["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The inode of the published snapshot: publishing replaces the file (a new inode).
    fn snapshot_inode(dir: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(dir.join(SNAPSHOT_FILE)).unwrap().ino()
    }

    #[test]
    fn an_opened_state_publishes_only_a_snapshot_that_is_not_current() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            SledStore::open_for(
                dir.path(),
                "plan",
                crate::state::Access::Read(std::time::Duration::ZERO),
            )
            .unwrap()
        };
        // Opens the state, commits `batch` and closes it.
        let commit = |batch: WriteBatch| {
            open().commit(batch).unwrap();
        };
        commit(WriteBatch::new().put_object(record("a")));
        let published = snapshot_inode(dir.path());
        // Opened again with nothing changed: the snapshot stays.
        drop(open());
        assert_eq!(snapshot_inode(dir.path()), published);

        // Cut short (a power loss): published again, whole.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(SNAPSHOT_FILE))
            .unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len - 1).unwrap();
        drop(open());
        let republished = snapshot_inode(dir.path());
        assert_ne!(republished, published);
        assert_eq!(record_names(dir.path()), ["a"]);

        // A discovery cached without moving the serial: published again with it.
        let entry = crate::state::DiscoveryCacheEntry {
            fetched_at: jiff::Timestamp::UNIX_EPOCH,
            discovery: meshplan_k8s::Discovery::default(),
        };
        commit(WriteBatch::new().put_discovery(entry.clone()));
        drop(open());
        assert_ne!(snapshot_inode(dir.path()), republished);
        assert_eq!(
            published_json(dir.path())["discovery"],
            serde_json::to_value(&entry).unwrap()
        );

        // A commit of records whose publishing never came (the process was killed): the
        // serial moved, published when opened.
        std::fs::copy(
            dir.path().join(SNAPSHOT_FILE),
            dir.path().join("stale.json"),
        )
        .unwrap();
        commit(WriteBatch::new().put_object(record("b")));
        std::fs::rename(
            dir.path().join("stale.json"),
            dir.path().join(SNAPSHOT_FILE),
        )
        .unwrap();
        let stale = snapshot_inode(dir.path());
        assert_eq!(record_names(dir.path()), ["a"]);
        drop(open());
        assert_ne!(snapshot_inode(dir.path()), stale);
        assert_eq!(record_names(dir.path()), ["a", "b"]);
    }

    #[test]
    fn a_copied_snapshot_alone_is_a_state() {
        let dir = tempfile::tempdir().unwrap();
        let meta = {
            let store = SledStore::open(dir.path(), "apply").unwrap();
            store
                .commit(WriteBatch::new().put_object(record("a")))
                .unwrap()
        };
        let copy = tempfile::tempdir().unwrap();
        for file in [SNAPSHOT_FILE, "state.key"] {
            std::fs::copy(dir.path().join(file), copy.path().join(file)).unwrap();
        }
        let snapshot = open_read_only(copy.path()).unwrap();
        assert_eq!(
            snapshot.source(),
            &SnapshotSource::Published { holder: None }
        );
        assert_eq!(snapshot.meta().unwrap(), meta);
        assert_eq!(snapshot.objects().unwrap(), vec![record("a")]);
    }

    #[test]
    fn no_state_a_damaged_snapshot_and_a_wrong_key_are_errors() {
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            open_read_only(empty.path()),
            Err(StateError::NoState { .. })
        ));
        assert!(
            !empty.path().join("state.key").exists(),
            "a reader creates nothing"
        );

        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), "apply").unwrap();
        std::fs::write(dir.path().join(SNAPSHOT_FILE), "{\"kind\": 1").unwrap();
        let err = open_read_only(dir.path()).unwrap_err();
        assert!(
            matches!(
                &err,
                StateError::Corrupt {
                    what: "snapshot",
                    ..
                }
            ),
            "{err}"
        );
        std::fs::remove_file(dir.path().join(SNAPSHOT_FILE)).unwrap();
        let err = open_read_only(dir.path()).unwrap_err();
        assert!(matches!(&err, StateError::NoSnapshot { .. }), "{err}");
        drop(store);

        let other = tempfile::tempdir().unwrap();
        drop(SledStore::open(other.path(), "apply").unwrap());
        std::fs::copy(other.path().join("state.key"), dir.path().join("state.key")).unwrap();
        let err = open_read_only(dir.path()).unwrap_err();
        assert!(matches!(&err, StateError::WrongKey { .. }), "{err}");
    }
}
