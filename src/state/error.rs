//! What can go wrong with the state, each error naming the path and the fix.

use std::path::PathBuf;

use super::lock::LockHolder;

/// Why the state could not be opened, read, written or locked.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error(
        "the state at {path} was written by a newer meshplan (format {found}, this one knows {known})"
    )]
    #[diagnostic(
        code(state::newer_format),
        help("upgrade meshplan; this version does not touch the state")
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        known: u32,
    },

    #[error(
        "the state at {path} has format {found}, and no migration from it to format {known} exists"
    )]
    #[diagnostic(
        code(state::no_migration),
        help("migrate the state with the meshplan release that wrote it, or start a new state")
    )]
    NoMigration {
        path: PathBuf,
        found: u32,
        known: u32,
    },

    #[error("migrating the state at {path} from format {from} failed: {message}")]
    #[diagnostic(
        code(state::migration),
        help("the state was left as it was; report this together with `meshplan state show`")
    )]
    Migration {
        path: PathBuf,
        from: u32,
        message: String,
    },

    #[error("the state at {path} is locked by {holder}")]
    #[diagnostic(
        code(state::locked),
        help(
            "wait for that run to finish, or pass --lock-timeout DURATION to wait for it; only one meshplan may write a state at a time"
        )
    )]
    Locked {
        path: PathBuf,
        holder: Box<LockHolder>,
    },

    #[error("the state at {path} is being written by {holder}")]
    #[diagnostic(
        code(state::busy),
        help(
            "a local state is read when no other meshplan has it open: wait for that run, or pass --lock-timeout DURATION to wait (the kubernetes backend has no such limit)"
        )
    )]
    Busy {
        path: PathBuf,
        holder: Box<LockHolder>,
    },

    #[error("{lease} is held by {holder}{}", expiry_note(.expires_at))]
    #[diagnostic(
        code(state::lease_held),
        help(
            "another meshplan applies this plan now: wait for it, or pass --lock-timeout DURATION to wait; a holder that died on another machine loses the lock when its lease expires (or break it with `meshplan state unlock`)"
        )
    )]
    LeaseHeld {
        lease: String,
        holder: Box<LockHolder>,
        /// When the lease expires unless renewed (RFC 3339).
        expires_at: Option<String>,
    },

    #[error("{lease} was taken by another run since it was read")]
    #[diagnostic(
        code(state::lease_changed),
        help("another meshplan ran meanwhile: run the command again (it plans anew)")
    )]
    LeaseChanged { lease: String },

    #[error("{lease} was taken over while this run held it ({reason})")]
    #[diagnostic(
        code(state::lease_lost),
        help(
            "the lock was not renewed in time (or was broken with `meshplan state unlock`): another run may now write; this run stopped writing"
        )
    )]
    LeaseLost { lease: String, reason: String },

    #[error("{what} in namespace {namespace} failed: {message}")]
    #[diagnostic(
        code(state::cluster),
        help(
            "check the connection to the cluster and the RBAC permissions of the kubeconfig's user on Secrets and Leases in that namespace (docs/state.md lists them)"
        )
    )]
    Cluster {
        what: String,
        namespace: String,
        message: String,
    },

    #[error("the state at {path} was changed by another writer while this run held the lock")]
    #[diagnostic(
        code(state::concurrent_write),
        help("nothing of this step was written; run the command again (it plans anew)")
    )]
    ConcurrentWrite { path: PathBuf },

    #[error(
        "refusing to store sensitive values in the clear in the state at {path}: no state key is set"
    )]
    #[diagnostic(
        code(state::no_key),
        help(
            "the kubernetes backend takes its key from MESHPLAN_STATE_KEY (32 random bytes in base64, e.g. `head -c 32 /dev/urandom | base64`); every machine that uses the state needs the same key"
        )
    )]
    NoKey { path: PathBuf },

    #[error("the state at {path} holds encrypted values and no state key is set")]
    #[diagnostic(
        code(state::key_required),
        help("set MESHPLAN_STATE_KEY to the key the state was written with")
    )]
    KeyRequired { path: PathBuf },

    #[error("the state at {path} was opened for reading only; {what} needs the writer lock")]
    #[diagnostic(
        code(state::read_only),
        help("this is a bug in the caller: a write must hold the lock")
    )]
    ReadOnly { path: PathBuf, what: &'static str },

    #[error("--state {} names a local directory, but the state backend is kubernetes", .dir.display())]
    #[diagnostic(
        code(state::dir_with_kubernetes),
        help("drop --state, or pass --state-backend local to use a local state directory")
    )]
    DirWithKubernetes { dir: PathBuf },

    #[error("the state at {path} is not empty: {what}")]
    #[diagnostic(
        code(state::not_empty),
        help(
            "a state is migrated into an empty place only; remove the target first if it is stale"
        )
    )]
    NotEmpty { path: PathBuf, what: String },

    #[error("the lock at {path} is held by {holder}, which is still running")]
    #[diagnostic(
        code(state::lock_alive),
        help(
            "a local lock is released by the operating system when its holder ends; wait for that run to finish"
        )
    )]
    LockHolderAlive {
        path: PathBuf,
        holder: Box<LockHolder>,
    },

    #[error("the lock file {path} is unreadable: {message}")]
    #[diagnostic(
        code(state::lock_corrupt),
        help("if no meshplan is running on this state, remove the file")
    )]
    LockCorrupt { path: PathBuf, message: String },

    #[error("cannot {action} {path}")]
    #[diagnostic(code(state::io))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the state database at {path} is in use by another process")]
    #[diagnostic(
        code(state::in_use),
        help("another meshplan has the state open; wait for it to finish")
    )]
    InUse {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    #[error("the state database at {path} failed")]
    #[diagnostic(
        code(state::database),
        help("check the disk; the last committed step is kept, a failed step is not")
    )]
    Database {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    #[error("the state at {path} holds an unreadable {what} ({key}): {message}")]
    #[diagnostic(
        code(state::corrupt),
        help("the state was damaged outside meshplan; restore it from a backup")
    )]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        key: String,
        message: String,
    },

    #[error("the state key from {source_name} is not valid: {message}")]
    #[diagnostic(
        code(state::bad_key),
        help("the key is 32 random bytes in base64, e.g. `head -c 32 /dev/urandom | base64`")
    )]
    BadKey {
        source_name: String,
        message: String,
    },

    #[error("the state key file {path} is readable by other users (mode {mode:o})")]
    #[diagnostic(code(state::key_mode), help("run `chmod 600 {}`", path.display()))]
    KeyFileMode { path: PathBuf, mode: u32 },

    #[error("the state at {path} was encrypted with another key than the one from {source_name}")]
    #[diagnostic(
        code(state::wrong_key),
        help(
            "use the key the state was written with (MESHPLAN_STATE_KEY or the state.key file beside it)"
        )
    )]
    WrongKey { path: PathBuf, source_name: String },

    #[error(
        "the key of the state is missing: neither {} nor {path} is there",
        super::crypto::KEY_ENV
    )]
    #[diagnostic(
        code(state::missing_key),
        help(
            "set MESHPLAN_STATE_KEY to the key the state was written with, or put it back in that file"
        )
    )]
    MissingKey { path: PathBuf },

    #[error("cannot decrypt a sensitive value in the state at {path}")]
    #[diagnostic(
        code(state::decrypt),
        help("the state was damaged or written with another key")
    )]
    Decrypt { path: PathBuf },

    #[error("cannot encrypt a sensitive value for the state at {path}")]
    #[diagnostic(code(state::encrypt))]
    Encrypt { path: PathBuf },

    #[error("the write to the state at {path} was refused: {message}")]
    #[diagnostic(
        code(state::batch),
        help("nothing of this step was written; this is a bug in the caller")
    )]
    Batch { path: PathBuf, message: String },

    #[error("there is no state at {path}")]
    #[diagnostic(
        code(state::none),
        help(
            "nothing was applied with this plan and state directory yet: run `meshplan apply` first, or point --state at the state that apply wrote"
        )
    )]
    NoState { path: PathBuf },

    #[error("the state at {path} is open in another process{} and has no published snapshot", holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    #[diagnostic(
        code(state::no_snapshot),
        help(
            "the snapshot is written by meshplan when it opens the state: wait for the other process to end and run this again"
        )
    )]
    NoSnapshot {
        path: PathBuf,
        holder: Option<String>,
    },

    #[error("the state at {path} has the older format {found} (this meshplan writes {known})")]
    #[diagnostic(
        code(state::older_format),
        help(
            "a read-only command does not migrate a state: run `meshplan state list` once to migrate it, then run this again"
        )
    )]
    OlderFormatReadOnly {
        path: PathBuf,
        found: u32,
        known: u32,
    },

    #[error("the state at {path} changed since it was read (serial {found}, expected {expected})")]
    #[diagnostic(
        code(state::serial),
        help("another run wrote the state meanwhile; plan again")
    )]
    SerialMismatch {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
}

fn expiry_note(expires_at: &Option<String>) -> String {
    match expires_at {
        Some(at) => format!(" (its lease runs until {at} unless renewed)"),
        None => String::new(),
    }
}
