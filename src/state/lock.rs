//! The local writer lock: one meshplan at a time writes a local state.
//!
//! 1. The lock is an exclusive lock of the operating system (`flock`) on the file `lock` in
//!    the state directory, held for as long as the writer runs. The system releases it when
//!    the process ends, however it ends (kill -9 included): a holder that died never blocks
//!    anyone, and nothing has to be unlocked by hand.
//! 2. Once locked, the file receives the holder's record (pid, host, user, command, start), so
//!    that a second process names who holds the lock. A record left by a holder that died
//!    stays in the file until the next holder overwrites it; it means nothing once the system
//!    lock is free.
//! 3. Release removes the file while it is still locked. A process that opened the file
//!    before it was removed and then gets the lock finds that the path no longer names the
//!    file it locked, and starts over: two holders never coexist.
//!
//! Caveat: locks of the operating system do not reach across machines (a state directory on
//! a network file system shared by several machines is not protected); the `kubernetes`
//! backend is the shared state.

use std::fmt;
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::StateError;

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "lock";

/// How often a waiting writer tries the lock again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Who holds a lock (the local lock file, or the Lease of the `kubernetes` backend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    /// The user the holder runs as (`USER`, else `LOGNAME`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub started_at: jiff::Timestamp,
    /// The command that took the lock (`apply`, `destroy`, ...).
    pub command: String,
    /// The holder process's start time in clock ticks since boot (Linux), to tell a reused
    /// pid from the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
}

impl fmt::Display for LockHolder {
    /// `meshplan apply by alice (pid 4242 on host build-1, since 2026-11-28T05:06:40Z)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "meshplan {}", self.command)?;
        if let Some(user) = &self.user {
            write!(f, " by {user}")?;
        }
        write!(
            f,
            " (pid {} on host {}, since {})",
            self.pid,
            self.host,
            self.started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

/// Whether a lock's holder still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// On this host and gone (or its pid was reused by a later process).
    Dead,
    /// On another host, or this platform cannot tell.
    Unknown,
}

impl LockHolder {
    /// The record for this process.
    pub fn current(command: &str) -> Self {
        let pid = std::process::id();
        Self {
            pid,
            host: host_name(),
            user: user_name(),
            started_at: jiff::Timestamp::now(),
            command: command.to_owned(),
            process_start: process_start(pid),
        }
    }

    pub fn liveness(&self) -> Liveness {
        if self.host != host_name() || !cfg!(target_os = "linux") {
            return Liveness::Unknown;
        }
        if !Path::new(&format!("/proc/{}", self.pid)).exists() {
            return Liveness::Dead;
        }
        match (self.process_start, process_start(self.pid)) {
            (Some(recorded), Some(now)) if recorded != now => Liveness::Dead,
            _ => Liveness::Alive,
        }
    }

    /// A holder whose record could not be read (it was being written, or was damaged).
    fn unknown() -> Self {
        Self {
            pid: 0,
            host: "unknown".to_owned(),
            user: None,
            started_at: jiff::Timestamp::UNIX_EPOCH,
            command: "(unreadable lock record)".to_owned(),
            process_start: None,
        }
    }
}

/// A held writer lock; dropping it removes the lock file and releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    path: PathBuf,
    holder: LockHolder,
    // Closed last: the file is removed while still locked.
    file: File,
}

impl WriterLock {
    /// Takes the lock of the state directory `dir` (created if missing) for `command`.
    ///
    /// Fails at once with [`StateError::Locked`] naming the holder when a running process
    /// holds the lock.
    pub fn acquire(dir: &Path, command: &str) -> Result<Self, StateError> {
        Self::acquire_within(dir, command, Duration::ZERO)
    }

    /// As [`WriterLock::acquire`], waiting up to `timeout` for a running holder to finish.
    pub fn acquire_within(
        dir: &Path,
        command: &str,
        timeout: Duration,
    ) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            action: "create the state directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(LOCK_FILE);
        let deadline = Instant::now() + timeout;
        loop {
            match try_lock(&path)? {
                Some(file) => return Self::hold(path, file, command),
                None if Instant::now() < deadline => std::thread::sleep(RETRY_PAUSE),
                None => {
                    let holder = read_holder(&path)?.unwrap_or_else(LockHolder::unknown);
                    return Err(StateError::Locked {
                        path,
                        holder: Box::new(holder),
                    });
                }
            }
        }
    }

    fn hold(path: PathBuf, mut file: File, command: &str) -> Result<Self, StateError> {
        let holder = LockHolder::current(command);
        let text = serde_json::to_string_pretty(&holder).map_err(|e| StateError::Io {
            action: "write the lock",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(|source| StateError::Io {
                action: "write the lock",
                path: path.clone(),
                source,
            })?;
        Ok(Self { path, holder, file })
    }

    /// The holder of the lock of `dir`, if a running process holds it.
    pub fn holder(dir: &Path) -> Result<Option<LockHolder>, StateError> {
        let path = dir.join(LOCK_FILE);
        if is_free(&path)? {
            return Ok(None);
        }
        Ok(Some(
            read_holder(&path)?.unwrap_or_else(LockHolder::unknown),
        ))
    }

    /// Removes the record a holder that ended left in the lock file of `dir` (it blocks
    /// nobody: this only tidies up); returns it (None when there was none). Refuses with
    /// [`StateError::LockHolderAlive`] when a running process holds the lock.
    pub fn break_stale(dir: &Path) -> Result<Option<LockHolder>, StateError> {
        let path = dir.join(LOCK_FILE);
        if !is_free(&path)? {
            let holder = read_holder(&path)?.unwrap_or_else(LockHolder::unknown);
            return Err(StateError::LockHolderAlive {
                path,
                holder: Box::new(holder),
            });
        }
        let holder = read_holder(&path).unwrap_or(None);
        if path.exists() {
            remove(&path)?;
        }
        Ok(holder)
    }

    /// Removes the lock file of `dir` whoever holds it; returns the holder it named. The
    /// holder keeps its (now nameless) lock: the database's own lock still keeps a second
    /// writer out, so this only helps when the lock file itself is damaged.
    pub fn force_break(dir: &Path) -> Result<Option<LockHolder>, StateError> {
        let path = dir.join(LOCK_FILE);
        let holder = read_holder(&path).unwrap_or(None);
        if path.exists() {
            remove(&path)?;
        }
        Ok(holder)
    }

    pub fn holder_record(&self) -> &LockHolder {
        &self.holder
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Remove only our own file (it may have been removed, and another taken, meanwhile).
        if let (Ok(on_disk), Ok(ours)) = (std::fs::metadata(&self.path), self.file.metadata())
            && same_file(&on_disk, &ours)
        {
            let _ = std::fs::remove_file(&self.path);
        }
        // Closing the file (after this) releases the lock.
    }
}

/// Opens and locks `path`; None when another process holds it.
fn try_lock(path: &Path) -> Result<Option<File>, StateError> {
    let io = |source| StateError::Io {
        action: "take the lock",
        path: path.to_path_buf(),
        source,
    };
    loop {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // The holder before us may have removed the file after we opened it: our lock is
        // then on a file nobody else will open. Start over on the path's current file.
        match std::fs::metadata(path) {
            Ok(on_disk) if same_file(&on_disk, &file.metadata().map_err(io)?) => {
                return Ok(Some(file));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        }
    }
}

/// Whether nobody holds the lock at `path` (a missing file is free).
fn is_free(path: &Path) -> Result<bool, StateError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(source) => {
            return Err(StateError::Io {
                action: "read the lock",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    // A shared lock is granted unless a writer holds the exclusive one; it is dropped at
    // once (a writer trying in this instant tries again).
    match file.try_lock_shared() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(source)) => Err(StateError::Io {
            action: "read the lock",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

fn remove(path: &Path) -> Result<(), StateError> {
    std::fs::remove_file(path).map_err(|source| StateError::Io {
        action: "remove the lock",
        path: path.to_path_buf(),
        source,
    })
}

/// The record in the lock file (None: no file, or an empty one). A record being written at
/// this moment is read again for a short while.
fn read_holder(path: &Path) -> Result<Option<LockHolder>, StateError> {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let mut text = String::new();
        match std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    action: "read the lock",
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        match serde_json::from_str(&text) {
            Ok(holder) => return Ok(Some(holder)),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(_) if text.trim().is_empty() => return Ok(None),
            Err(e) => {
                return Err(StateError::LockCorrupt {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
        }
    }
}

/// This machine's host name (Linux: the kernel's; else `HOSTNAME`, else `localhost`).
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The user this process runs as, from `USER` or `LOGNAME`.
fn user_name() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// Field 22 of `/proc/PID/stat`: the process start time in ticks since boot.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_reused_pid_is_dead() {
        let me = LockHolder::current("apply");
        assert_eq!(me.liveness(), Liveness::Alive);
        assert!(me.process_start.is_some());
        let reused = LockHolder {
            process_start: me.process_start.map(|s| s + 1),
            ..me.clone()
        };
        assert_eq!(reused.liveness(), Liveness::Dead);
        let elsewhere = LockHolder {
            host: format!("{}-other", me.host),
            ..me
        };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown);
    }

    #[test]
    fn a_held_lock_names_its_holder_and_release_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let lock = WriterLock::acquire(dir.path(), "apply").unwrap();
        assert!(dir.path().join(LOCK_FILE).exists());
        // A second open file description of the same file is a second holder.
        match WriterLock::acquire(dir.path(), "destroy") {
            Err(StateError::Locked { holder, .. }) => {
                assert_eq!(holder.pid, std::process::id());
                assert_eq!(holder.command, "apply");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            WriterLock::holder(dir.path()).unwrap().map(|h| h.command),
            Some("apply".to_owned())
        );
        assert!(matches!(
            WriterLock::break_stale(dir.path()),
            Err(StateError::LockHolderAlive { .. })
        ));
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());
        assert_eq!(WriterLock::holder(dir.path()).unwrap(), None);
        drop(WriterLock::acquire(dir.path(), "destroy").unwrap());
    }

    #[test]
    fn a_record_left_behind_blocks_nobody() {
        let dir = tempfile::tempdir().unwrap();
        // What a holder killed with SIGKILL leaves: the file with its record, no lock.
        let dead = LockHolder {
            pid: 999_999,
            ..LockHolder::current("apply")
        };
        std::fs::write(
            dir.path().join(LOCK_FILE),
            serde_json::to_string(&dead).unwrap(),
        )
        .unwrap();
        assert_eq!(WriterLock::holder(dir.path()).unwrap(), None);
        let lock = WriterLock::acquire(dir.path(), "apply").unwrap();
        assert_eq!(lock.holder_record().pid, std::process::id());
        drop(lock);
        // break_stale tidies a left record up, and says there was none the second time.
        std::fs::write(
            dir.path().join(LOCK_FILE),
            serde_json::to_string(&dead).unwrap(),
        )
        .unwrap();
        assert_eq!(WriterLock::break_stale(dir.path()).unwrap(), Some(dead));
        assert_eq!(WriterLock::break_stale(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_waiting_writer_gets_the_lock_when_the_holder_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let lock = WriterLock::acquire(dir.path(), "apply").unwrap();
        let path = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            WriterLock::acquire_within(&path, "destroy", Duration::from_secs(60))
                .map(|l| l.holder_record().command.clone())
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(lock);
        assert_eq!(waiter.join().unwrap().unwrap(), "destroy");
    }
}
