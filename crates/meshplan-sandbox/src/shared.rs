//! [`Shared`]: the state every request handler and background task holds (the store, the
//! wake-ups, the authentication, the controller switches and pauses, the observer, the
//! cluster's clock).

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{Notify, watch};

use super::admin::Observer;
use super::config::{AuthMode, ControllerConfig, Pauses};
use super::store::State;

/// State shared by every request and background task.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub addr: SocketAddr,
    /// Wakes the cleanup of terminating namespaces and deleted CRDs.
    pub wake_controller: Notify,
    /// Wakes the simulated controllers (after a pause or resume).
    pub wake_controllers: Notify,
    pub wake_persist: Notify,
    pub shutdown: watch::Receiver<bool>,
    /// The bearer token.
    pub token: String,
    pub auth: AuthMode,
    pub controllers: ControllerConfig,
    pub pauses: Pauses,
    pub observer: Mutex<Observer>,
    /// Bumped to end every open watch stream.
    pub close_watches: watch::Sender<u64>,
    /// The cluster's virtual clock (cert-manager, `Date` headers).
    pub clock: super::clock::SandboxClock,
}

impl Shared {
    /// The store lock (a poisoned lock is recovered: every write leaves the state consistent
    /// before it could panic).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault, counter and audit lock.
    pub(crate) fn observer(&self) -> MutexGuard<'_, Observer> {
        self.observer.lock().unwrap_or_else(|e| e.into_inner())
    }
}
