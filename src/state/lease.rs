//! The Lease lock (`coordination.k8s.io/v1`): the writer lock of the `kubernetes` backend,
//! and the lock every apply, destroy and rollback holds in its target cluster whatever the
//! backend (two operators with two local states cannot interleave either).
//!
//! 1. [`LeaseLock::inspect`] reads the Lease and judges it ([`LeaseView`]): absent, free
//!    (released), held, or held but takeable — expired (`renewTime` plus
//!    `leaseDurationSeconds` passed) or, when its holder ran on this machine, that process is
//!    gone (pid and start time checked).
//! 2. [`LeaseLock::acquire_from`] takes it from a view with optimistic concurrency: a create
//!    when it was absent (409 AlreadyExists: another run was faster), else a replace with the
//!    view's resourceVersion (409 Conflict: it changed since it was read). Either way the
//!    loser learns who won and says so ([`StateError::LeaseHeld`]). A caller that planned
//!    between the view and the acquisition therefore knows that nobody wrote meanwhile.
//!    [`LeaseLock::acquire`] waits for a held lock, up to a timeout, by polling.
//! 3. A [`LeaseGuard`] renews the Lease every third of its duration on the state's runtime.
//!    A renewal refused (the Lease was taken over or broken), or none possible until the
//!    lease ran out, marks the guard lost ([`LeaseGuard::lost`]): its holder must stop.
//! 4. [`LeaseGuard::release`] deletes the Lease, with its resourceVersion as precondition (a
//!    Lease that someone took over is left alone). A holder killed with SIGKILL leaves it to
//!    expire; on the same machine the next run takes it over at once.
//!
//! The holder's record ([`LockHolder`]: user, host, pid, command, start) is kept in the
//! annotation `meshplan.io/holder`; `spec.holderIdentity` says it in short.
//!
//! Caveat: expiry is judged with this machine's clock against the holder's `renewTime`;
//! machines whose clocks differ by more than a fraction of the lease duration take over early
//! or late. Keep clocks synchronised (NTP), or the duration generous.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::StateError;
use super::location::LeaseLocation;
use super::lock::{Liveness, LockHolder};
use super::remote::{Remote, ensure_namespace, message, status_code, with_retries};

/// The annotation that holds the holder's record (JSON).
pub const HOLDER_ANNOTATION: &str = "meshplan.io/holder";
/// The label every object of meshplan's state and locks carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "meshplan");

/// How often a waiting run looks at a held Lease again.
const POLL: Duration = Duration::from_millis(250);

/// Why a held Lease may be taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// Not renewed within its duration.
    Expired,
    /// Its holder ran on this machine and is gone.
    HolderGone,
}

/// A Lease as read, judged.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseView {
    Absent,
    /// Present without a holder.
    Free {
        lease: Box<Lease>,
    },
    Held {
        lease: Box<Lease>,
        holder: LockHolder,
        /// When it expires unless renewed.
        expires_at: jiff::Timestamp,
        /// Some: it may be taken over.
        takeover: Option<Takeover>,
    },
}

impl LeaseView {
    /// Whether the lock can be taken from this view.
    pub fn is_takeable(&self) -> bool {
        match self {
            Self::Absent | Self::Free { .. } => true,
            Self::Held { takeover, .. } => takeover.is_some(),
        }
    }

    pub fn holder(&self) -> Option<&LockHolder> {
        match self {
            Self::Held { holder, .. } => Some(holder),
            _ => None,
        }
    }
}

/// One Lease lock in a cluster.
#[derive(Clone)]
pub struct LeaseLock {
    remote: Arc<Remote>,
    at: LeaseLocation,
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLock").field("at", &self.at).finish()
    }
}

impl LeaseLock {
    pub fn new(remote: Arc<Remote>, at: LeaseLocation) -> Self {
        Self { remote, at }
    }

    pub fn location(&self) -> &LeaseLocation {
        &self.at
    }

    fn api(&self) -> Api<Lease> {
        Api::namespaced(self.remote.client(), &self.at.namespace)
    }

    fn cluster_err(&self, what: &str, e: &kube::Error) -> StateError {
        StateError::Cluster {
            what: format!("{what} {}", self.at),
            namespace: self.at.namespace.clone(),
            message: message(e),
        }
    }

    /// Reads and judges the Lease.
    pub async fn inspect(&self) -> Result<LeaseView, StateError> {
        let this = self.clone();
        self.remote
            .run(async move {
                let api = this.api();
                let found = with_retries(|| api.get_opt(&this.at.name))
                    .await
                    .map_err(|e| this.cluster_err("reading", &e))?;
                Ok(judge(found, jiff::Timestamp::now()))
            })
            .await
    }

    /// The error for a lock held as `view` says.
    fn held_error(&self, view: &LeaseView) -> StateError {
        match view {
            LeaseView::Held {
                holder, expires_at, ..
            } => StateError::LeaseHeld {
                lease: self.at.to_string(),
                holder: Box::new(holder.clone()),
                expires_at: Some(expires_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            },
            _ => StateError::LeaseChanged {
                lease: self.at.to_string(),
            },
        }
    }

    /// Waits until the lock can be taken (absent, free or takeable) and returns that view;
    /// after `timeout`, fails naming the holder.
    pub async fn wait_takeable(&self, timeout: Duration) -> Result<LeaseView, StateError> {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self.inspect().await?;
            if view.is_takeable() {
                return Ok(view);
            }
            if Instant::now() >= deadline {
                return Err(self.held_error(&view));
            }
            tokio::time::sleep(POLL.min(deadline - Instant::now())).await;
        }
    }

    /// Takes the lock from `view` for `command` (see the module docs); fails with
    /// [`StateError::LeaseHeld`] (or [`StateError::LeaseChanged`]) when it changed since.
    pub async fn acquire_from(
        &self,
        view: &LeaseView,
        command: &str,
    ) -> Result<LeaseGuard, StateError> {
        if !view.is_takeable() {
            return Err(self.held_error(view));
        }
        let holder = LockHolder::current(command);
        let now = jiff::Timestamp::now();
        let (previous, transitions) = match view {
            LeaseView::Absent => (None, 0),
            LeaseView::Free { lease } | LeaseView::Held { lease, .. } => (
                Some(lease.as_ref().clone()),
                lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.lease_transitions)
                    .unwrap_or(0)
                    + 1,
            ),
        };
        let body = self.body(&holder, previous.as_ref(), now, now, transitions);
        let this = self.clone();
        let written = self
            .remote
            .run(async move {
                let api = this.api();
                let pp = PostParams::default();
                let result = match &body.metadata.resource_version {
                    None => match with_retries(|| api.create(&pp, &body)).await {
                        // The namespace is missing (a Lease of its own): create it, once.
                        Err(e) if status_code(&e) == Some(404) => {
                            ensure_namespace(this.remote.client(), &this.at.namespace)
                                .await
                                .map_err(|e| this.cluster_err("creating the namespace of", &e))?;
                            with_retries(|| api.create(&pp, &body)).await
                        }
                        other => other,
                    },
                    Some(_) => with_retries(|| api.replace(&this.at.name, &pp, &body)).await,
                };
                match result {
                    Ok(lease) => Ok(Ok(lease)),
                    // Someone else created, changed or removed it since the view was taken.
                    Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(Err(())),
                    Err(e) => Err(this.cluster_err("taking", &e)),
                }
            })
            .await?;
        match written {
            Ok(lease) => Ok(LeaseGuard::start(self.clone(), lease, holder)),
            Err(()) => {
                let now = self.inspect().await?;
                Err(self.held_error(&now))
            }
        }
    }

    /// Takes the lock for `command`, waiting up to `timeout` for a holder to finish.
    pub async fn acquire(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<LeaseGuard, StateError> {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self
                .wait_takeable(deadline.saturating_duration_since(Instant::now()))
                .await?;
            match self.acquire_from(&view, command).await {
                Err(StateError::LeaseHeld { .. } | StateError::LeaseChanged { .. })
                    if Instant::now() < deadline =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    /// Deletes the Lease whoever holds it (`meshplan state unlock`); returns the holder it
    /// had. `expected` is the view the user confirmed: a Lease that changed since is left
    /// alone ([`StateError::LeaseChanged`]).
    pub async fn break_lock(&self, expected: &LeaseView) -> Result<Option<LockHolder>, StateError> {
        let rv = match expected {
            LeaseView::Absent => return Ok(None),
            LeaseView::Free { lease } | LeaseView::Held { lease, .. } => {
                lease.metadata.resource_version.clone()
            }
        };
        let this = self.clone();
        let deleted = self
            .remote
            .run(async move {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: rv,
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                let api = this.api();
                match with_retries(|| api.delete(&this.at.name, &params)).await {
                    Ok(_) => Ok(true),
                    Err(e) if status_code(&e) == Some(404) => Ok(true),
                    Err(e) if status_code(&e) == Some(409) => Ok(false),
                    Err(e) => Err(this.cluster_err("removing", &e)),
                }
            })
            .await?;
        if deleted {
            Ok(expected.holder().cloned())
        } else {
            Err(StateError::LeaseChanged {
                lease: self.at.to_string(),
            })
        }
    }

    /// The Lease for `holder`, replacing `previous` (keeps its resourceVersion).
    fn body(
        &self,
        holder: &LockHolder,
        previous: Option<&Lease>,
        acquired: jiff::Timestamp,
        renewed: jiff::Timestamp,
        transitions: i32,
    ) -> Lease {
        let labels = BTreeMap::from([
            (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
            ("meshplan.io/lock".to_owned(), "apply".to_owned()),
        ]);
        let annotations = BTreeMap::from([(
            HOLDER_ANNOTATION.to_owned(),
            serde_json::to_string(holder).unwrap_or_default(),
        )]);
        Lease {
            metadata: ObjectMeta {
                name: Some(self.at.name.clone()),
                namespace: Some(self.at.namespace.clone()),
                resource_version: previous.and_then(|p| p.metadata.resource_version.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity(holder)),
                lease_duration_seconds: Some(
                    i32::try_from(self.at.duration.as_secs().max(1)).unwrap_or(i32::MAX),
                ),
                acquire_time: Some(micro_time(acquired)),
                renew_time: Some(micro_time(renewed)),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }
}

/// `alice@build-1 pid 4242 (meshplan apply)`.
pub(crate) fn identity(holder: &LockHolder) -> String {
    let user = holder.user.as_deref().unwrap_or("unknown");
    format!(
        "{user}@{} pid {} (meshplan {})",
        holder.host, holder.pid, holder.command
    )
}

fn micro_time(t: jiff::Timestamp) -> MicroTime {
    MicroTime(t)
}

fn timestamp(t: &MicroTime) -> jiff::Timestamp {
    t.0
}

/// Judges a Lease as read at `now`.
pub fn judge(found: Option<Lease>, now: jiff::Timestamp) -> LeaseView {
    let Some(lease) = found else {
        return LeaseView::Absent;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let identity = spec.holder_identity.clone().unwrap_or_default();
    if identity.is_empty() {
        return LeaseView::Free {
            lease: Box::new(lease),
        };
    }
    let holder = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOLDER_ANNOTATION))
        .and_then(|text| serde_json::from_str::<LockHolder>(text).ok())
        .unwrap_or_else(|| LockHolder {
            pid: 0,
            host: "unknown".to_owned(),
            user: None,
            started_at: spec
                .acquire_time
                .as_ref()
                .map(timestamp)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            command: format!("(held by {identity})"),
            process_start: None,
        });
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(timestamp)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let duration =
        jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0)));
    let expires_at = renewed.checked_add(duration).unwrap_or(renewed);
    let takeover = if expires_at <= now {
        Some(Takeover::Expired)
    } else if holder.pid != 0 && holder.liveness() == Liveness::Dead {
        Some(Takeover::HolderGone)
    } else {
        None
    };
    LeaseView::Held {
        lease: Box::new(lease),
        holder,
        expires_at,
        takeover,
    }
}

/// What a guard shares with its renewal task.
struct Held {
    lease: Lease,
    renewed: Instant,
    released: bool,
}

/// A held Lease: renewed in the background until released.
pub struct LeaseGuard {
    lock: LeaseLock,
    holder: LockHolder,
    held: Arc<Mutex<Held>>,
    /// Cancelled when the lease is lost (taken over, broken, not renewed in time).
    lost: CancellationToken,
    /// Cancelled when the lease is lost or released: nothing may be written after it.
    ended: CancellationToken,
    lost_reason: Arc<std::sync::Mutex<Option<String>>>,
    stop: CancellationToken,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("at", &self.lock.at)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl LeaseGuard {
    fn start(lock: LeaseLock, lease: Lease, holder: LockHolder) -> Self {
        let held = Arc::new(Mutex::new(Held {
            lease,
            renewed: Instant::now(),
            released: false,
        }));
        let lost = CancellationToken::new();
        let ended = CancellationToken::new();
        let stop = CancellationToken::new();
        let lost_reason = Arc::new(std::sync::Mutex::new(None));
        let renewer = lock.remote.spawn(renew(
            lock.clone(),
            held.clone(),
            lost.clone(),
            ended.clone(),
            lost_reason.clone(),
            stop.clone(),
        ));
        Self {
            lock,
            holder,
            held,
            lost,
            ended,
            lost_reason,
            stop,
            renewer: Some(renewer),
        }
    }

    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    pub fn location(&self) -> &LeaseLocation {
        &self.lock.at
    }

    /// Cancelled once the lease is lost (not when it is released): the holder must stop.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Cancelled once the lease is lost or released: nothing may be written after it.
    pub fn ended(&self) -> CancellationToken {
        self.ended.clone()
    }

    /// Why the lease was lost (None while held).
    pub fn lost_error(&self) -> Option<StateError> {
        let reason = self.lost_reason.lock().ok()?.clone()?;
        Some(StateError::LeaseLost {
            lease: self.lock.at.to_string(),
            reason,
        })
    }

    /// Stops renewing and deletes the Lease (unless someone took it over).
    pub async fn release(mut self) -> Result<(), StateError> {
        self.release_inner().await
    }

    async fn release_inner(&mut self) -> Result<(), StateError> {
        self.stop.cancel();
        let renewer = self.renewer.take();
        let held = self.held.clone();
        let lock = self.lock.clone();
        let lost = self.lost.clone();
        let ended = self.ended.clone();
        self.lock
            .remote
            .run(async move {
                if let Some(r) = renewer {
                    let _ = r.await;
                }
                let mut held = held.lock().await;
                if held.released {
                    return Ok(());
                }
                held.released = true;
                ended.cancel();
                if lost.is_cancelled() {
                    return Ok(());
                }
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: held.lease.metadata.resource_version.clone(),
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                let api = lock.api();
                match with_retries(|| api.delete(&lock.at.name, &params)).await {
                    Ok(_) => Ok(()),
                    Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(()),
                    Err(e) => Err(lock.cluster_err("releasing", &e)),
                }
            })
            .await
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if self.renewer.is_none() {
            return;
        }
        // Not released explicitly (an error or an interrupt ended the command): release it
        // now, waiting a little (the runtime stops with the last handle on it).
        self.stop.cancel();
        let renewer = self.renewer.take();
        let held = self.held.clone();
        let lock = self.lock.clone();
        let lost = self.lost.clone();
        let ended = self.ended.clone();
        let _ = self.lock.remote.block_on(async move {
            if let Some(r) = renewer {
                let _ = r.await;
            }
            let mut held = held.lock().await;
            ended.cancel();
            if held.released || lost.is_cancelled() {
                return Ok(());
            }
            held.released = true;
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: held.lease.metadata.resource_version.clone(),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                lock.api().delete(&lock.at.name, &params),
            )
            .await;
            Ok(())
        });
    }
}

/// Renews every third of the duration until stopped; marks the guard lost when a renewal is
/// refused or none succeeded for a whole duration.
async fn renew(
    lock: LeaseLock,
    held: Arc<Mutex<Held>>,
    lost: CancellationToken,
    ended: CancellationToken,
    reason: Arc<std::sync::Mutex<Option<String>>>,
    stop: CancellationToken,
) {
    let every = (lock.at.duration / 3).max(Duration::from_millis(200));
    let mark = |why: String| {
        if let Ok(mut r) = reason.lock() {
            *r = Some(why);
        }
        lost.cancel();
        ended.cancel();
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let mut h = held.lock().await;
        if h.released {
            return;
        }
        let mut body = h.lease.clone();
        if let Some(spec) = body.spec.as_mut() {
            spec.renew_time = Some(micro_time(jiff::Timestamp::now()));
        }
        let api = lock.api();
        match api
            .replace(&lock.at.name, &PostParams::default(), &body)
            .await
        {
            Ok(lease) => {
                h.lease = lease;
                h.renewed = Instant::now();
            }
            Err(e) if matches!(status_code(&e), Some(404 | 409)) => {
                mark(format!("the renewal was refused: {}", message(&e)));
                return;
            }
            Err(e) if h.renewed.elapsed() >= lock.at.duration => {
                mark(format!(
                    "no renewal succeeded within the lease: {}",
                    message(&e)
                ));
                return;
            }
            Err(e) => tracing::warn!("renewing {} failed, trying again: {}", lock.at, message(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&LockHolder>, renewed: jiff::Timestamp, secs: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("meshplan-lock-x".into()),
                resource_version: Some("7".into()),
                annotations: holder.map(|h| {
                    BTreeMap::from([(
                        HOLDER_ANNOTATION.to_owned(),
                        serde_json::to_string(h).unwrap(),
                    )])
                }),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(identity),
                lease_duration_seconds: Some(secs),
                renew_time: Some(micro_time(renewed)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_judged_by_its_expiry_and_its_holder() {
        let now = jiff::Timestamp::now();
        let me = LockHolder::current("apply");
        assert_eq!(judge(None, now), LeaseView::Absent);
        assert!(matches!(
            judge(Some(lease(None, now, 30)), now),
            LeaseView::Free { .. }
        ));
        // Held by a live holder, renewed just now: not takeable.
        let view = judge(Some(lease(Some(&me), now, 30)), now);
        assert!(!view.is_takeable(), "{view:?}");
        assert_eq!(view.holder(), Some(&me));
        // Not renewed for longer than its duration: expired.
        let old = now
            .checked_sub(jiff::SignedDuration::from_secs(31))
            .unwrap();
        let view = judge(Some(lease(Some(&me), old, 30)), now);
        assert!(matches!(
            view,
            LeaseView::Held {
                takeover: Some(Takeover::Expired),
                ..
            }
        ));
        // A holder on this machine that is gone: takeable before expiry.
        let gone = LockHolder {
            process_start: me.process_start.map(|s| s + 1),
            ..me.clone()
        };
        let view = judge(Some(lease(Some(&gone), now, 30)), now);
        assert!(matches!(
            view,
            LeaseView::Held {
                takeover: Some(Takeover::HolderGone),
                ..
            }
        ));
        // A holder on another machine is judged by expiry only.
        let elsewhere = LockHolder {
            host: format!("{}-other", me.host),
            pid: 1,
            ..me
        };
        assert!(!judge(Some(lease(Some(&elsewhere), now, 30)), now).is_takeable());
    }

    #[test]
    fn the_identity_names_user_host_pid_and_command() {
        let h = LockHolder {
            pid: 4242,
            host: "build-1".into(),
            user: Some("alice".into()),
            started_at: jiff::Timestamp::UNIX_EPOCH,
            command: "apply".into(),
            process_start: None,
        };
        assert_eq!(identity(&h), "alice@build-1 pid 4242 (meshplan apply)");
    }
}
