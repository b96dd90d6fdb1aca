//! [`SledStore`]: the [`StateStore`] on a sled database in `<state dir>/db`.
//!
//! Trees: `meta` (format, lineage, serial, key check), `objects` (key: node, group, kind,
//! namespace, name joined by NUL), `render` (key: input digest), `discovery` (one entry),
//! `runs` (key: run id) and `journal` (key: run id, NUL, step as 8 big-endian bytes, phase).
//! Values are JSON. Every batch is one transaction over all trees.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

use super::migrate::{self, Formats};
use super::snapshot::object_key;
use super::trees::{K_FORMAT, RawWrite, TreeId, Trees, commit_raw, db_err};
use super::{
    DiscoveryCacheEntry, JournalEntry, JournalRecord, ObjectRecord, ObjectRef, RecordedObject,
    RenderCacheEntry, RunRecord, Snapshot, SnapshotMeta, StateCipher, StateError, StateMeta,
    StateStore, UnfinishedRun, WriteBatch, WriteOp, WriterLock,
};

/// The database folder inside the state directory.
pub(super) const DB_DIR: &str = "db";

/// The database's page cache. sled's default (1 GiB) lets it keep everything a large
/// apply writes (every record and journal entry) in memory until the state closes; what it
/// reads back is read once per run, from the operating system's file cache when not from
/// this one.
pub(crate) const CACHE_CAPACITY: u64 = 16 * 1024 * 1024;

pub(crate) const K_LINEAGE: &[u8] = b"lineage";
pub(crate) const K_SERIAL: &[u8] = b"serial";
pub(crate) const K_KEY_CHECK: &[u8] = b"key_check";
pub(crate) const K_DISCOVERY: &[u8] = b"discovery";

/// The sled-backed state. A writer holds the writer lock while the store is open; dropping
/// it closes the database, then releases the lock.
pub struct SledStore {
    // Field order is drop order: the snapshot is published (last), then the database closes,
    // then the lock is released.
    publisher: super::read_only::Publisher,
    trees: Trees,
    db: sled::Db,
    cipher: StateCipher,
    dir: PathBuf,
    /// None for a reader.
    _lock: Option<WriterLock>,
}

/// How a local state is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// With the writer lock, waiting up to this long for a running holder to finish.
    Write(Duration),
    /// Without the lock (a read-only command), waiting up to this long for a writer that
    /// has the database open. A reader still writes caches: the database itself is never
    /// open twice.
    Read(Duration),
}

impl Access {
    fn wait(self) -> Duration {
        match self {
            Self::Write(d) | Self::Read(d) => d,
        }
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (creating if needed) the state in `dir` for `command` (`plan`, `apply`, ...):
    /// takes the writer lock, opens the database, creates or checks the format (migrating an
    /// older one), and loads the key.
    pub fn open(dir: &Path, command: &str) -> Result<Self, StateError> {
        Self::open_with(
            dir,
            command,
            Access::Write(Duration::ZERO),
            &migrate::FORMATS,
        )
    }

    /// Opens the state in `dir` as [`SledStore::open`] does, with or without the writer lock.
    pub fn open_for(dir: &Path, command: &str, access: Access) -> Result<Self, StateError> {
        Self::open_with(dir, command, access, &migrate::FORMATS)
    }

    /// Whether `dir` holds a state (a database), without opening or creating anything.
    pub fn exists(dir: &Path) -> bool {
        dir.join(DB_DIR).join("conf").is_file()
    }

    pub(crate) fn open_with(
        dir: &Path,
        command: &str,
        access: Access,
        formats: &Formats<'_>,
    ) -> Result<Self, StateError> {
        let lock = match access {
            Access::Write(wait) => Some(WriterLock::acquire_within(dir, command, wait)?),
            Access::Read(_) => {
                std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
                    action: "create the state directory",
                    path: dir.to_path_buf(),
                    source,
                })?;
                None
            }
        };
        let db_path = dir.join(DB_DIR);
        let db = match open_db(&db_path, access.wait()) {
            Err(StateError::InUse { .. }) if lock.is_none() => match WriterLock::holder(dir)? {
                Some(holder) => Err(StateError::Busy {
                    path: dir.to_path_buf(),
                    holder: Box::new(holder),
                }),
                None => open_db(&db_path, Duration::ZERO),
            },
            other => other,
        }?;
        let trees = Trees::open(&db, dir)?;
        let meta = trees.get(TreeId::Meta);
        let fresh = match read_u32(dir, meta, K_FORMAT)? {
            None => {
                let empty = trees.are_empty();
                if !empty {
                    return Err(StateError::Corrupt {
                        path: dir.to_path_buf(),
                        what: "format version",
                        key: "meta/format".to_owned(),
                        message: "missing, but the state holds data".to_owned(),
                    });
                }
                true
            }
            Some(found) if found > formats.current => {
                return Err(StateError::NewerFormat {
                    path: dir.to_path_buf(),
                    found,
                    known: formats.current,
                });
            }
            Some(found) => {
                if found < formats.current {
                    migrate::migrate(dir, &trees, found, formats)?;
                }
                false
            }
        };
        let key_check = meta.get(K_KEY_CHECK).map_err(|e| db_err(dir, e))?;
        let cipher = StateCipher::load(dir, fresh || key_check.is_none())?;
        // A local cipher always has a key (from the variable or the key file).
        let ours = cipher.key_check().unwrap_or_default().to_owned();
        if fresh {
            let writes = [
                RawWrite::put(TreeId::Meta, K_LINEAGE, uuid::Uuid::new_v4().to_string()),
                RawWrite::put(TreeId::Meta, K_SERIAL, 0u64.to_be_bytes()),
                RawWrite::put(TreeId::Meta, K_KEY_CHECK, &ours),
            ];
            commit_raw(dir, &trees, &writes, formats.current)?;
        } else if let Some(check) = key_check {
            if check.as_ref() != ours.as_bytes() {
                return Err(StateError::WrongKey {
                    path: dir.to_path_buf(),
                    source_name: cipher.source().map(|s| s.describe()).unwrap_or_default(),
                });
            }
        } else {
            meta.insert(K_KEY_CHECK, ours.as_bytes())
                .map_err(|e| db_err(dir, e))?;
        }
        if lock.is_some() {
            remove_orphan_journal_entries(dir, &trees)?;
        }
        db.flush().map_err(|e| db_err(dir, e))?;
        // Readers that cannot open the database while this process holds it read this.
        let publisher =
            super::read_only::Publisher::start(dir, &trees, super::read_only::PUBLISH_INTERVAL)?;
        Ok(Self {
            publisher,
            trees,
            db,
            cipher,
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Whether this handle holds the writer lock.
    pub fn is_writer(&self) -> bool {
        self._lock.is_some()
    }

    /// Fills this state, which must be empty (as created), with `snapshot`: its lineage,
    /// serial, records, caches and journal, in one transaction. The snapshot's sealed
    /// values must have been encrypted with this state's key.
    pub fn import(&self, snapshot: &Snapshot) -> Result<StateMeta, StateError> {
        let current = self.export()?;
        if !current.is_empty() {
            return Err(StateError::NotEmpty {
                path: self.dir.clone(),
                what: format!(
                    "serial {}, {} record(s)",
                    current.meta.serial,
                    current.object_count()
                ),
            });
        }
        let ours = self.cipher.key_check().unwrap_or_default();
        if let Some(theirs) = &snapshot.meta.key_check
            && theirs != ours
        {
            return Err(StateError::WrongKey {
                path: self.dir.clone(),
                source_name: self
                    .cipher
                    .source()
                    .map(|s| s.describe())
                    .unwrap_or_default(),
            });
        }
        let json = |v: &dyn erased::Json| {
            v.to_json().map_err(|message| StateError::Batch {
                path: self.dir.clone(),
                message,
            })
        };
        let mut writes = vec![
            RawWrite::put(TreeId::Meta, K_LINEAGE, &snapshot.meta.lineage),
            RawWrite::put(TreeId::Meta, K_SERIAL, snapshot.meta.serial.to_be_bytes()),
        ];
        for r in snapshot.objects() {
            writes.push(RawWrite::put(
                TreeId::Objects,
                &object_key(&r.node, &r.object),
                json(&r)?,
            ));
        }
        for (digest, entry) in snapshot.render() {
            writes.push(RawWrite::put(
                TreeId::Render,
                digest.as_bytes(),
                json(entry)?,
            ));
        }
        if let Some(d) = snapshot.discovery() {
            writes.push(RawWrite::put(TreeId::Discovery, K_DISCOVERY, json(d)?));
        }
        for run in snapshot.runs() {
            writes.push(RawWrite::put(TreeId::Runs, run.run.as_bytes(), json(run)?));
        }
        for e in snapshot.journal_entries() {
            writes.push(RawWrite::put(TreeId::Journal, &journal_key(e), json(e)?));
        }
        commit_raw(&self.dir, &self.trees, &writes, self.meta()?.format)?;
        self.db.flush().map_err(|e| db_err(&self.dir, e))?;
        self.publisher.now()?;
        self.meta()
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<T, StateError> {
        serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
            path: self.dir.clone(),
            what,
            key: String::from_utf8_lossy(key).replace('\0', "/"),
            message: e.to_string(),
        })
    }

    fn scan_objects(&self, prefix: &[u8]) -> Result<Vec<ObjectRecord>, StateError> {
        self.trees
            .get(TreeId::Objects)
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item.map_err(|e| db_err(&self.dir, e))?;
                self.decode("object record", &k, &v)
            })
            .collect()
    }

    fn run_journal(&self, run: &str) -> Result<Vec<JournalEntry>, StateError> {
        self.trees
            .get(TreeId::Journal)
            .scan_prefix(run_prefix(run))
            .map(|item| {
                let (k, v) = item.map_err(|e| db_err(&self.dir, e))?;
                self.decode("journal entry", &k, &v)
            })
            .collect()
    }
}

impl StateStore for SledStore {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn export(&self) -> Result<Snapshot, StateError> {
        let meta = self.meta()?;
        let key_check = self
            .trees
            .get(TreeId::Meta)
            .get(K_KEY_CHECK)
            .map_err(|e| db_err(&self.dir, e))?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .filter(|k| !k.is_empty());
        let mut render = std::collections::BTreeMap::new();
        for item in self.trees.get(TreeId::Render).iter() {
            let (k, v) = item.map_err(|e| db_err(&self.dir, e))?;
            // An unreadable cache entry is a miss: it is not carried over.
            if let Ok(entry) = serde_json::from_slice::<RenderCacheEntry>(&v) {
                render.insert(String::from_utf8_lossy(&k).into_owned(), entry);
            }
        }
        Ok(Snapshot::from_parts(
            SnapshotMeta {
                format: meta.format,
                lineage: meta.lineage,
                serial: meta.serial,
                key_check,
            },
            self.objects()?,
            render,
            self.discovery_cache()?,
            self.unfinished_runs()?,
        ))
    }

    fn meta(&self) -> Result<StateMeta, StateError> {
        let meta = self.trees.get(TreeId::Meta);
        let missing = |what: &'static str, key: &str| StateError::Corrupt {
            path: self.dir.clone(),
            what,
            key: key.to_owned(),
            message: "missing".to_owned(),
        };
        let format =
            read_u32(&self.dir, meta, K_FORMAT)?.ok_or_else(|| missing("format", "meta/format"))?;
        let lineage = meta
            .get(K_LINEAGE)
            .map_err(|e| db_err(&self.dir, e))?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .ok_or_else(|| missing("lineage", "meta/lineage"))?;
        let serial =
            read_u64(&self.dir, meta, K_SERIAL)?.ok_or_else(|| missing("serial", "meta/serial"))?;
        Ok(StateMeta {
            format,
            lineage,
            serial,
        })
    }

    fn objects(&self) -> Result<Vec<ObjectRecord>, StateError> {
        self.scan_objects(b"")
    }

    fn recorded_objects(&self) -> Result<Vec<RecordedObject>, StateError> {
        /// A record's identity; serde skips the rest of it without building it.
        #[derive(serde::Deserialize)]
        struct Identity {
            node: String,
            object: ObjectRef,
        }
        self.trees
            .get(TreeId::Objects)
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(|e| db_err(&self.dir, e))?;
                let identity: Identity = self.decode("object record", &k, &v)?;
                if identity.object.defines_kinds() {
                    let record: ObjectRecord = self.decode("object record", &k, &v)?;
                    return Ok(RecordedObject::from(record));
                }
                Ok(RecordedObject {
                    node: identity.node,
                    object: identity.object,
                    defines: None,
                })
            })
            .collect()
    }

    fn node_objects(&self, node: &str) -> Result<Vec<ObjectRecord>, StateError> {
        let mut prefix = node.as_bytes().to_vec();
        prefix.push(0);
        self.scan_objects(&prefix)
    }

    fn object(&self, node: &str, object: &ObjectRef) -> Result<Option<ObjectRecord>, StateError> {
        let key = object_key(node, object);
        match self
            .trees
            .get(TreeId::Objects)
            .get(&key)
            .map_err(|e| db_err(&self.dir, e))?
        {
            Some(v) => self.decode("object record", &key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn render_cache(&self, digest: &str) -> Result<Option<RenderCacheEntry>, StateError> {
        let found = self
            .trees
            .get(TreeId::Render)
            .get(digest.as_bytes())
            .map_err(|e| db_err(&self.dir, e))?;
        // A cache entry that does not decode (older layout) is a miss, not an error.
        Ok(found.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    fn discovery_cache(&self) -> Result<Option<DiscoveryCacheEntry>, StateError> {
        let found = self
            .trees
            .get(TreeId::Discovery)
            .get(K_DISCOVERY)
            .map_err(|e| db_err(&self.dir, e))?;
        Ok(found.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>, StateError> {
        let mut runs = Vec::new();
        for item in self.trees.get(TreeId::Runs).iter() {
            let (k, v) = item.map_err(|e| db_err(&self.dir, e))?;
            let run: RunRecord = self.decode("run record", &k, &v)?;
            let entries = self.run_journal(&run.run)?;
            runs.push(UnfinishedRun { run, entries });
        }
        runs.sort_by(|a, b| (a.run.started_at, &a.run.run).cmp(&(b.run.started_at, &b.run.run)));
        Ok(runs)
    }

    fn has_objects(&self) -> Result<bool, StateError> {
        Ok(!self.trees.get(TreeId::Objects).is_empty())
    }

    /// From the keys (`NODE\0...`): one seek per node, no record decoded.
    fn object_nodes(&self) -> Result<std::collections::BTreeSet<String>, StateError> {
        let tree = self.trees.get(TreeId::Objects);
        let mut nodes = std::collections::BTreeSet::new();
        let mut from: Vec<u8> = Vec::new();
        while let Some(item) = tree.range(from.as_slice()..).next() {
            let (key, _) = item.map_err(|e| db_err(&self.dir, e))?;
            let node = match key.iter().position(|b| *b == 0) {
                Some(end) => &key[..end],
                None => &key[..],
            };
            nodes.insert(String::from_utf8_lossy(node).into_owned());
            // Past every key of this node: `NODE\0...` < `NODE\1`.
            from = node.to_vec();
            from.push(1);
        }
        Ok(nodes)
    }

    fn commit(&self, batch: WriteBatch) -> Result<StateMeta, StateError> {
        self.commit_borrowed(&batch)
    }

    fn commit_borrowed(&self, batch: &WriteBatch) -> Result<StateMeta, StateError> {
        let bump = batch.changes_objects();
        let encoded = encode_ops(&self.dir, &self.trees, batch)?;
        let refs = self.trees.refs();
        let result = refs.as_slice().transaction(|tx: &Vec<TransactionalTree>| {
            let meta = &tx[TreeId::Meta as usize];
            let serial = meta
                .get(K_SERIAL)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if let Some(expected) = batch.expect_serial
                && expected != serial
            {
                return Err(ConflictableTransactionError::Abort(
                    StateError::SerialMismatch {
                        path: self.dir.clone(),
                        expected,
                        found: serial,
                    },
                ));
            }
            for op in &encoded {
                apply_op(&self.dir, tx, op)?;
            }
            let serial = if bump { serial + 1 } else { serial };
            meta.insert(K_SERIAL, &serial.to_be_bytes())?;
            Ok(serial)
        });
        match result {
            Ok(_) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(db_err(&self.dir, e)),
        }
        for op in &encoded {
            if let EncodedOp::ClearRun { keys, .. } = op {
                remove_journal_entries(&self.dir, &self.trees, keys)?;
            }
        }
        // A lazy batch is made durable by the next flush (sled's log is written in order),
        // by sled's own periodic flush, or when the database closes.
        if !batch.lazy {
            self.db.flush().map_err(|e| db_err(&self.dir, e))?;
        }
        if batch.changes_runs() {
            self.publisher.now()?;
        } else if bump {
            self.publisher.soon()?;
        }
        self.meta()
    }

    fn cipher(&self) -> &StateCipher {
        &self.cipher
    }

    fn dump(&self) -> Result<String, StateError> {
        let meta = self.meta()?;
        let objects = self.objects()?;
        let mut render = Vec::new();
        for item in self.trees.get(TreeId::Render).iter() {
            let (k, v) = item.map_err(|e| db_err(&self.dir, e))?;
            render.push((
                String::from_utf8_lossy(&k).into_owned(),
                serde_json::from_slice::<RenderCacheEntry>(&v).ok(),
            ));
        }
        let discovery = self.discovery_cache()?;
        let runs = self.unfinished_runs()?;
        Ok(super::dump::dump(
            &meta,
            &objects,
            &render,
            discovery.as_ref(),
            &runs,
        ))
    }
}

/// An op with its key and value bytes, ready for the transaction.
enum EncodedOp {
    Put {
        tree: TreeId,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Remove {
        tree: TreeId,
        key: Vec<u8>,
    },
    BeginRun {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Journal {
        run: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// `keys`: the run's journal entries (transactional trees cannot scan, so they are
    /// listed before the transaction; the lock keeps other writers out meanwhile).
    ClearRun {
        run: String,
        keys: Vec<Vec<u8>>,
    },
}

fn encode_ops(
    path: &Path,
    trees: &Trees,
    batch: &WriteBatch,
) -> Result<Vec<EncodedOp>, StateError> {
    let json = |v: &dyn erased::Json| {
        v.to_json().map_err(|message| StateError::Batch {
            path: path.to_path_buf(),
            message,
        })
    };
    batch
        .ops
        .iter()
        .map(|op| {
            Ok(match op {
                WriteOp::PutObject(r) => EncodedOp::Put {
                    tree: TreeId::Objects,
                    key: object_key(&r.node, &r.object),
                    value: json(r)?,
                },
                WriteOp::RemoveObject { node, object } => EncodedOp::Remove {
                    tree: TreeId::Objects,
                    key: object_key(node, object),
                },
                WriteOp::PutRender { digest, entry } => EncodedOp::Put {
                    tree: TreeId::Render,
                    key: digest.as_bytes().to_vec(),
                    value: json(entry)?,
                },
                WriteOp::RemoveRender { digest } => EncodedOp::Remove {
                    tree: TreeId::Render,
                    key: digest.as_bytes().to_vec(),
                },
                WriteOp::PutDiscovery(entry) => EncodedOp::Put {
                    tree: TreeId::Discovery,
                    key: K_DISCOVERY.to_vec(),
                    value: json(entry)?,
                },
                WriteOp::ClearDiscovery => EncodedOp::Remove {
                    tree: TreeId::Discovery,
                    key: K_DISCOVERY.to_vec(),
                },
                WriteOp::BeginRun(run) => EncodedOp::BeginRun {
                    key: run.run.as_bytes().to_vec(),
                    value: json(run)?,
                },
                WriteOp::Journal(entry) => EncodedOp::Journal {
                    run: entry.run.clone(),
                    key: journal_key(entry),
                    value: json(entry)?,
                },
                WriteOp::ClearRun { run } => {
                    let mut keys = Vec::new();
                    for k in trees
                        .get(TreeId::Journal)
                        .scan_prefix(run_prefix(run))
                        .keys()
                    {
                        keys.push(k.map_err(|e| db_err(path, e))?.to_vec());
                    }
                    keys.extend(batch.ops.iter().filter_map(|op| match op {
                        WriteOp::Journal(e) if &e.run == run => Some(journal_key(e)),
                        _ => None,
                    }));
                    EncodedOp::ClearRun {
                        run: run.clone(),
                        keys,
                    }
                }
            })
        })
        .collect()
}

type TxResult<T> = Result<T, ConflictableTransactionError<StateError>>;

fn apply_op(path: &Path, tx: &[TransactionalTree], op: &EncodedOp) -> TxResult<()> {
    let refuse = |message: String| {
        ConflictableTransactionError::Abort(StateError::Batch {
            path: path.to_path_buf(),
            message,
        })
    };
    match op {
        EncodedOp::Put { tree, key, value } => {
            tx[*tree as usize].insert(key.as_slice(), value.as_slice())?;
        }
        EncodedOp::Remove { tree, key } => {
            tx[*tree as usize].remove(key.as_slice())?;
        }
        EncodedOp::BeginRun { key, value } => {
            let runs = &tx[TreeId::Runs as usize];
            if runs.get(key.as_slice())?.is_some() {
                return Err(refuse(format!(
                    "run {} was already begun",
                    String::from_utf8_lossy(key)
                )));
            }
            runs.insert(key.as_slice(), value.as_slice())?;
        }
        EncodedOp::Journal { run, key, value } => {
            if tx[TreeId::Runs as usize].get(run.as_bytes())?.is_none() {
                return Err(refuse(format!(
                    "journal entry for run {run}, which was not begun"
                )));
            }
            let journal = &tx[TreeId::Journal as usize];
            if journal.get(key.as_slice())?.is_some() {
                return Err(refuse(format!(
                    "journal entry {} of run {run} is already recorded",
                    describe_journal_key(key)
                )));
            }
            journal.insert(key.as_slice(), value.as_slice())?;
        }
        EncodedOp::ClearRun { run, keys } => {
            let runs = &tx[TreeId::Runs as usize];
            if runs.remove(run.as_bytes())?.is_none() {
                return Err(refuse(format!("run {run} is not in the journal")));
            }
            // The run's journal entries are removed after the transaction, in bounded
            // batches ([`remove_journal_entries`]): removing tens of thousands in it would
            // hold each one, read back, in memory until the commit.
            let _ = keys;
        }
    }
    Ok(())
}

/// How many journal entries one batch removes (see [`remove_journal_entries`]).
const JOURNAL_REMOVAL_BATCH: usize = 1024;

/// Removes journal entries `keys` in batches of [`JOURNAL_REMOVAL_BATCH`]. Entries whose run
/// record is gone are inert (a journal is only ever read by its run's record), so a crash
/// between two batches loses nothing; the ones left are removed the next time a writer opens
/// the state ([`remove_orphan_journal_entries`]).
fn remove_journal_entries(path: &Path, trees: &Trees, keys: &[Vec<u8>]) -> Result<(), StateError> {
    let journal = trees.get(TreeId::Journal);
    for chunk in keys.chunks(JOURNAL_REMOVAL_BATCH) {
        let mut batch = sled::Batch::default();
        for key in chunk {
            batch.remove(key.as_slice());
        }
        journal.apply_batch(batch).map_err(|e| db_err(path, e))?;
    }
    Ok(())
}

/// Removes the journal entries of runs that have no record any more (left by a crash while
/// a cleared run's entries were being removed); how many.
fn remove_orphan_journal_entries(path: &Path, trees: &Trees) -> Result<usize, StateError> {
    let runs = trees.get(TreeId::Runs);
    let mut orphans = Vec::new();
    for key in trees.get(TreeId::Journal).iter().keys() {
        let key = key.map_err(|e| db_err(path, e))?;
        let run = key.split(|b| *b == 0).next().unwrap_or_default();
        if !runs.contains_key(run).map_err(|e| db_err(path, e))? {
            orphans.push(key.to_vec());
        }
    }
    remove_journal_entries(path, trees, &orphans)?;
    Ok(orphans.len())
}

fn read_u32(path: &Path, tree: &sled::Tree, key: &[u8]) -> Result<Option<u32>, StateError> {
    let Some(v) = tree.get(key).map_err(|e| db_err(path, e))? else {
        return Ok(None);
    };
    <[u8; 4]>::try_from(v.as_ref())
        .map(|b| Some(u32::from_be_bytes(b)))
        .map_err(|_| corrupt_number(path, key))
}

fn read_u64(path: &Path, tree: &sled::Tree, key: &[u8]) -> Result<Option<u64>, StateError> {
    let Some(v) = tree.get(key).map_err(|e| db_err(path, e))? else {
        return Ok(None);
    };
    <[u8; 8]>::try_from(v.as_ref())
        .map(|b| Some(u64::from_be_bytes(b)))
        .map_err(|_| corrupt_number(path, key))
}

fn corrupt_number(path: &Path, key: &[u8]) -> StateError {
    StateError::Corrupt {
        path: path.to_path_buf(),
        what: "number",
        key: format!("meta/{}", String::from_utf8_lossy(key)),
        message: "wrong length".to_owned(),
    }
}

fn run_prefix(run: &str) -> Vec<u8> {
    let mut key = run.as_bytes().to_vec();
    key.push(0);
    key
}

fn step_key(run: &str, step: u64, phase: u8) -> Vec<u8> {
    let mut key = run_prefix(run);
    key.extend(step.to_be_bytes());
    key.push(phase);
    key
}

fn journal_key(entry: &JournalEntry) -> Vec<u8> {
    let phase = match entry.record {
        JournalRecord::Before { .. } => 0,
        JournalRecord::After { .. } => 1,
    };
    step_key(&entry.run, entry.step, phase)
}

fn describe_journal_key(key: &[u8]) -> String {
    let n = key.len();
    if n < 9 {
        return "?".to_owned();
    }
    let step = <[u8; 8]>::try_from(&key[n - 9..n - 1])
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    let phase = if key[n - 1] == 0 { "before" } else { "after" };
    format!("step {step} ({phase})")
}

mod erased {
    /// Serialisation to JSON bytes behind a trait object (keeps `encode_ops` short).
    pub(super) trait Json {
        fn to_json(&self) -> Result<Vec<u8>, String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, String> {
            serde_json::to_vec(self).map_err(|e| e.to_string())
        }
    }
}

/// Opens the sled database at `db_path`.
///
/// sled releases its file lock from a background thread shortly after the last handle of a
/// database is dropped, so a store reopened at once in the same process can briefly find the
/// file still locked; a reader (plan) may also have it open for a moment. A lock error is
/// retried for `wait` (at least two seconds) before it is reported as
/// [`StateError::InUse`].
fn open_db(db_path: &Path, wait: Duration) -> Result<sled::Db, StateError> {
    const LOCK_RETRY: Duration = Duration::from_secs(2);
    const LOCK_PAUSE: Duration = Duration::from_millis(20);
    let started = std::time::Instant::now();
    let limit = wait.max(LOCK_RETRY);
    loop {
        match sled::Config::new()
            .path(db_path)
            .cache_capacity(CACHE_CAPACITY)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_error(&e) && started.elapsed() < limit => {
                std::thread::sleep(LOCK_PAUSE);
            }
            Err(e) if is_lock_error(&e) => {
                return Err(StateError::InUse {
                    path: db_path.to_path_buf(),
                    source: e,
                });
            }
            Err(e) => return Err(db_err(db_path, e)),
        }
    }
}

pub(crate) fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io)
        if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock"))
}

#[cfg(test)]
mod tests {
    // Opening a state of an older format migrates it (see `migrate`).

    use super::*;
    use crate::state::migrate::Migration;
    use crate::state::{ProtectedBody, StateStore};

    const W: Access = Access::Write(Duration::ZERO);

    const V1: Formats<'static> = Formats {
        current: 1,
        migrations: &[],
    };

    /// A fake format 2: every object record gains a `-v2` suffix on its digest.
    fn to_v2(trees: &Trees) -> Result<Vec<RawWrite>, String> {
        let mut out = Vec::new();
        for item in trees.get(TreeId::Objects).iter() {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let mut record: serde_json::Value =
                serde_json::from_slice(&v).map_err(|e| e.to_string())?;
            let digest = record["applied_digest"].as_str().unwrap_or("").to_owned();
            record["applied_digest"] = format!("{digest}-v2").into();
            out.push(RawWrite {
                tree: TreeId::Objects,
                key: k.to_vec(),
                value: Some(serde_json::to_vec(&record).map_err(|e| e.to_string())?),
            });
        }
        Ok(out)
    }

    fn broken(_: &Trees) -> Result<Vec<RawWrite>, String> {
        Err("the old layout is damaged".to_owned())
    }

    const V2: Formats<'static> = Formats {
        current: 2,
        migrations: &[Migration {
            from: 1,
            run: to_v2,
        }],
    };
    const V2_BROKEN: Formats<'static> = Formats {
        current: 2,
        migrations: &[Migration {
            from: 1,
            run: broken,
        }],
    };
    const V3_GAP: Formats<'static> = Formats {
        current: 3,
        migrations: &[Migration {
            from: 1,
            run: to_v2,
        }],
    };

    fn record(name: &str) -> ObjectRecord {
        ObjectRecord {
            node: "manifest.a".into(),
            object: ObjectRef::new("v1", "ConfigMap", Some("default"), name),
            uid: None,
            resource_version: Some("5".into()),
            applied_digest: "d".into(),
            last_applied: ProtectedBody::plain(serde_json::json!({"kind": "ConfigMap"})).unwrap(),
        }
    }

    #[test]
    fn object_nodes_are_the_nodes_of_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), "apply").unwrap();
        assert!(store.object_nodes().unwrap().is_empty());
        // Node names that are prefixes of one another, several records each.
        let mut batch = WriteBatch::new();
        for node in ["manifest.a", "manifest.a_b", "manifest.a2", "helm.z"] {
            for name in ["x", "y", "z"] {
                batch = batch.put_object(ObjectRecord {
                    node: node.into(),
                    ..record(name)
                });
            }
        }
        store.commit(batch).unwrap();
        let from_records: std::collections::BTreeSet<String> = store
            .objects()
            .unwrap()
            .into_iter()
            .map(|r| r.node)
            .collect();
        assert_eq!(from_records.len(), 4);
        assert_eq!(store.object_nodes().unwrap(), from_records);
    }

    #[test]
    fn recorded_objects_are_the_records_without_their_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), "apply").unwrap();
        let crd = |name: &str, body| ObjectRecord {
            node: "manifest.crds".into(),
            object: ObjectRef::new(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                name,
            ),
            last_applied: ProtectedBody::plain(body).unwrap(),
            ..record(name)
        };
        let batch = WriteBatch::new()
            .put_object(record("b"))
            .put_object(ObjectRecord {
                node: "helm.z".into(),
                ..record("a")
            })
            .put_object(crd(
                "widgets.example.com",
                serde_json::json!({"spec": {"group": "example.com", "names": {"kind": "Widget"}}}),
            ))
            .put_object(crd("broken.example.com", serde_json::json!({"spec": {}})));
        store.commit(batch).unwrap();
        let light = store.recorded_objects().unwrap();
        let full: Vec<RecordedObject> = store
            .objects()
            .unwrap()
            .into_iter()
            .map(RecordedObject::from)
            .collect();
        assert_eq!(light, full);
        let defines: Vec<(&str, Option<(String, String)>)> = light
            .iter()
            .map(|r| (r.object.name.as_str(), r.defines.clone()))
            .collect();
        assert_eq!(
            defines,
            [
                ("a", None),
                ("b", None),
                ("broken.example.com", None),
                (
                    "widgets.example.com",
                    Some(("example.com".to_owned(), "Widget".to_owned()))
                ),
            ]
        );
    }

    #[test]
    fn an_older_format_is_migrated_keeping_lineage_and_serial() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let s = SledStore::open_with(dir.path(), "apply", W, &V1).unwrap();
            s.commit(WriteBatch::new().put_object(record("x"))).unwrap()
        };
        assert_eq!(before.format, 1);
        let s = SledStore::open_with(dir.path(), "plan", W, &V2).unwrap();
        let after = s.meta().unwrap();
        assert_eq!(after.format, 2);
        assert_eq!(after.lineage, before.lineage);
        assert_eq!(after.serial, before.serial);
        let objects = s.objects().unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].applied_digest, "d-v2");
        drop(s);
        // Format 2 is now newer than what a format-1 build knows.
        let err = SledStore::open_with(dir.path(), "plan", W, &V1).unwrap_err();
        assert!(
            matches!(
                err,
                StateError::NewerFormat {
                    found: 2,
                    known: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_failed_migration_leaves_the_state_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        drop(SledStore::open_with(dir.path(), "apply", W, &V1).unwrap());
        let err = SledStore::open_with(dir.path(), "plan", W, &V2_BROKEN).unwrap_err();
        assert!(
            matches!(&err, StateError::Migration { from: 1, message, .. } if message.contains("damaged")),
            "{err}"
        );
        let s = SledStore::open_with(dir.path(), "plan", W, &V1).unwrap();
        assert_eq!(s.meta().unwrap().format, 1);
    }

    #[test]
    fn a_missing_migration_step_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        drop(SledStore::open_with(dir.path(), "apply", W, &V1).unwrap());
        let err = SledStore::open_with(dir.path(), "plan", W, &V3_GAP).unwrap_err();
        assert!(
            matches!(
                err,
                StateError::NoMigration {
                    found: 2,
                    known: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    fn journal_entry(run: &str, step: u64) -> JournalEntry {
        JournalEntry {
            run: run.into(),
            step,
            node: "manifest.a".into(),
            object: ObjectRef::new("v1", "ConfigMap", Some("default"), format!("cm-{step}")),
            mutation: crate::state::Mutation::Apply,
            record: JournalRecord::Before {
                live: crate::state::LiveSnapshot::Absent,
            },
            previous_record: None,
        }
    }

    #[test]
    fn a_cleared_run_leaves_no_journal_entries_however_many_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), "apply").unwrap();
        let run = RunRecord::start("apply");
        store
            .commit(WriteBatch::new().begin_run(run.clone()))
            .unwrap();
        // More entries than one removal batch holds, and one in the clearing batch itself.
        let total = 2 * JOURNAL_REMOVAL_BATCH as u64 + 3;
        for step in 1..total {
            store
                .commit(WriteBatch::new().journal(journal_entry(&run.run, step)))
                .unwrap();
        }
        assert_eq!(
            store.unfinished_runs().unwrap()[0].entries.len() as u64,
            total - 1
        );
        store
            .commit(
                WriteBatch::new()
                    .journal(journal_entry(&run.run, total))
                    .clear_run(&run.run),
            )
            .unwrap();
        assert!(store.unfinished_runs().unwrap().is_empty());
        assert_eq!(store.trees.get(TreeId::Journal).len(), 0);
    }

    #[test]
    fn journal_entries_of_a_run_without_a_record_are_removed_when_a_writer_opens() {
        let dir = tempfile::tempdir().unwrap();
        let kept = RunRecord::start("apply");
        {
            let store = SledStore::open(dir.path(), "apply").unwrap();
            store
                .commit(
                    WriteBatch::new()
                        .begin_run(kept.clone())
                        .journal(journal_entry(&kept.run, 1)),
                )
                .unwrap();
            // What a crash leaves between clearing a run and removing its entries.
            for step in 1..=5 {
                let e = journal_entry("cleared-run", step);
                store
                    .trees
                    .get(TreeId::Journal)
                    .insert(journal_key(&e), serde_json::to_vec(&e).unwrap())
                    .unwrap();
            }
            assert_eq!(store.trees.get(TreeId::Journal).len(), 6);
        }
        let store = SledStore::open(dir.path(), "apply").unwrap();
        assert_eq!(store.trees.get(TreeId::Journal).len(), 1);
        let runs = store.unfinished_runs().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].entries, vec![journal_entry(&kept.run, 1)]);
    }
}
