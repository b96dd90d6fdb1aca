//! The writer lock: one meshplan at a time on a state.
//!
//! The lock is a file `lock` beside the database, created atomically (the holder's record is
//! written to a temporary file that is then hard-linked to `lock`, which fails if `lock`
//! exists), so a second process never sees a half-written holder. It is taken before the
//! database is opened, so a second meshplan process gets the holder's pid, host and start
//! time instead of the database's own "cannot lock" error.
//!
//! A lock left by a crashed run (kill -9) stays on disk. When its holder ran on this host and
//! that process is gone (or the pid now belongs to a process started later), the lock is
//! *stale*: acquiring reports it as such, and [`WriterLock::break_stale`] removes it. Locks of
//! other hosts cannot be judged from here and are only removed by [`WriterLock::force_break`].

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StateError;

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "lock";

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    pub started_at: jiff::Timestamp,
    /// The command that took the lock (`apply`, `destroy`, ...).
    pub command: String,
    /// The holder process's start time in clock ticks since boot (Linux), to tell a reused
    /// pid from the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
}

impl fmt::Display for LockHolder {
    /// `meshplan apply (pid 4242 on host build-1, since 2026-11-28T05:06:40Z)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "meshplan {} (pid {} on host {}, since {})",
            self.command,
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
}

/// A held writer lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct WriterLock {
    path: PathBuf,
    holder: LockHolder,
}

impl WriterLock {
    /// Takes the lock of the state directory `dir` (created if missing) for `command`.
    ///
    /// Fails at once with [`StateError::Locked`] naming the holder when the lock is held, or
    /// [`StateError::StaleLock`] when its holder is gone.
    pub fn acquire(dir: &Path, command: &str) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            action: "create the state directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(LOCK_FILE);
        let holder = LockHolder::current(command);
        let text = serde_json::to_string_pretty(&holder).map_err(|e| StateError::Io {
            action: "write the lock",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        let tmp = dir.join(format!(".lock.{}.{}", holder.pid, uuid::Uuid::new_v4()));
        let io = |action, source| StateError::Io {
            action,
            path: path.clone(),
            source,
        };
        {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| io("write the lock", e))?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| io("write the lock", e))?;
        }
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Self { path, holder }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let current = read_holder(&path)?;
                match current {
                    // Removed between our attempt and the read: the holder just finished.
                    None => Err(io("take the lock", e)),
                    Some(h) if h.liveness() == Liveness::Dead => {
                        Err(StateError::StaleLock { path, holder: h })
                    }
                    Some(h) => Err(StateError::Locked { path, holder: h }),
                }
            }
            Err(e) => Err(io("take the lock", e)),
        }
    }

    /// The holder of the lock of `dir`, if any.
    pub fn holder(dir: &Path) -> Result<Option<LockHolder>, StateError> {
        read_holder(&dir.join(LOCK_FILE))
    }

    /// Removes the lock of `dir` when its holder is gone; returns the removed holder (None
    /// when there was no lock). Refuses with [`StateError::LockHolderAlive`] when the holder
    /// runs, or may run on another host.
    pub fn break_stale(dir: &Path) -> Result<Option<LockHolder>, StateError> {
        let path = dir.join(LOCK_FILE);
        let Some(holder) = read_holder(&path)? else {
            return Ok(None);
        };
        if holder.liveness() != Liveness::Dead {
            return Err(StateError::LockHolderAlive { path, holder });
        }
        remove(&path)?;
        Ok(Some(holder))
    }

    /// Removes the lock of `dir` whoever holds it (for a lock of another host that the user
    /// knows to be gone). Returns the removed holder.
    pub fn force_break(dir: &Path) -> Result<Option<LockHolder>, StateError> {
        let path = dir.join(LOCK_FILE);
        let holder = match read_holder(&path) {
            Ok(h) => h,
            Err(StateError::LockCorrupt { .. }) => None,
            Err(e) => return Err(e),
        };
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
        // Remove only our own lock (it may have been broken and retaken meanwhile).
        if let Ok(Some(h)) = read_holder(&self.path)
            && h == self.holder
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn remove(path: &Path) -> Result<(), StateError> {
    std::fs::remove_file(path).map_err(|source| StateError::Io {
        action: "remove the lock",
        path: path.to_path_buf(),
        source,
    })
}

fn read_holder(path: &Path) -> Result<Option<LockHolder>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                action: "read the lock",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| StateError::LockCorrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
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
}
