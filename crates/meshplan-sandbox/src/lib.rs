//! The Kubernetes API sandbox: an API server emulator that the real kubectl and kube-rs accept
//! (specification: SANDBOX.md of the project's shared design documents; summary in
//! `docs/sandbox.md`).
//!
//! # The facade
//!
//! Everything a user of the crate needs is at its root; the modules behind it are private.
//!
//! - Start and stop: [`start`] with a [`SandboxConfig`] ([`AuthMode`], [`ControllerConfig`]
//!   and its [`Controller`]s, TLS, data directory, audit file) returns a [`Sandbox`];
//!   [`BlockingSandbox`] runs one on its own runtime for synchronous code and stops it on drop.
//!   Errors are [`SandboxError`].
//! - Connect: [`Sandbox::url`], [`Sandbox::credentials`] ([`Credentials`], [`TlsMaterial`]),
//!   [`Sandbox::kubeconfig_yaml`] / [`kubeconfig_yaml`] (context [`CONTEXT_NAME`]).
//! - Steer and observe: fault rules ([`FaultRule`], [`FaultAction`], [`WRITE_VERB`]), paused
//!   controllers, closed watches, the cluster's clock ([`Sandbox::advance_clock`]), the audit
//!   log ([`AuditEntry`]), request counters, and direct reads of the store.
//! - Test support: [`kubectl`] (a sandbox with a kubeconfig and the real kubectl, and fixture
//!   manifests).
//!
//! # Inside
//!
//! 1. [`start`] binds 127.0.0.1 (port 0 lets the OS choose), restores the data directory if one
//!    is given (else seeds the four namespaces of a fresh cluster) and serves HTTP/1.1.
//! 2. Requests go through `server` (routing, content negotiation, watch streams) to `write`
//!    (the write path: `patch`, `fieldmanager`, `names`) over the `store` (one lock, one
//!    global resourceVersion); `registry`, `discovery` and `openapi` say what is served.
//! 3. Background tasks run beside the server: the cleanup of terminating namespaces and
//!    deleted CRDs, the persister (`persist`) that snapshots the store to the data directory
//!    shortly after writes, and the `reconciler` that runs the simulated `controllers`
//!    (workloads, cert-manager, Linkerd's Jobs; webhook admission runs in the write path).
//! 4. Every request passes the `transport` (plain HTTP or TLS with client certificates),
//!    the bearer token check, then `admin` (fault injection, counters, audit log; its
//!    `/_sandbox/` endpoint is `admin_api`).
//! 5. [`Sandbox::shutdown`] stops accepting requests, ends watch streams and flushes the data.
//!
//! Imports go one way: `config` (plain types) and `error` at the bottom, `shared` (the state of
//! every task) above `admin` and `store`, then `reconciler` and `admin_api`, then `server`,
//! then this root.

mod admin;
mod admin_api;
mod clock;
mod config;
mod controllers;
mod discovery;
mod error;
mod fieldmanager;
pub mod kubectl;
mod lease;
mod limits;
mod names;
mod openapi;
mod patch;
mod persist;
mod reconciler;
mod registry;
mod request;
mod selector;
mod server;
mod shared;
mod status;
mod store;
mod table;
mod transport;
mod write;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

pub use admin::{AuditEntry, AuditFileError, FaultAction, FaultRule, WRITE_VERB};
pub use config::{AuthMode, CONTEXT_NAME, Controller, ControllerConfig, SandboxConfig};
pub use error::SandboxError;
pub use transport::{Credentials, TlsMaterial, TransportError};

use shared::Shared;
use store::State;

/// Namespaces of a fresh cluster.
pub const SEEDED_NAMESPACES: &[&str] =
    &["default", "kube-node-lease", "kube-public", "kube-system"];

/// Where an object is stored: `(group, resource, namespace, name)`, `group` empty for the
/// core group and `namespace` empty for cluster-scoped objects.
pub type ObjectKey = store::Key;

/// How many events a live watch may fall behind before it gets `410 Expired`.
const BROADCAST_CAPACITY: usize = 1 << 16;

/// A running sandbox. Stop it with [`Sandbox::shutdown`] (flushes the data directory).
pub struct Sandbox {
    addr: SocketAddr,
    credentials: Credentials,
    anonymous: bool,
    shared: Arc<Shared>,
    data_dir: Option<PathBuf>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    flush_lock: Arc<tokio::sync::Mutex<()>>,
}

/// Starts a sandbox. Fails when the port cannot be bound or the data directory holds an
/// unreadable snapshot.
pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
    let credentials = match &config.data_dir {
        Some(dir) => Credentials::load_or_generate(dir, config.token.clone(), config.tls)?,
        None => Credentials::generate(config.token.clone(), config.tls)?,
    };
    let mut observer = admin::Observer::default();
    let mut audit_paths: Vec<PathBuf> = config
        .data_dir
        .iter()
        .map(|d| admin::data_dir_audit_path(d))
        .collect();
    audit_paths.extend(config.audit_file.iter().cloned());
    observer.open_files(&audit_paths)?;
    let tls_config = match &credentials.tls {
        Some(material) => Some(transport::server_config(material)?),
        None => None,
    };
    let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
    let mut state = State::new(tx);
    let restored = match &config.data_dir {
        Some(dir) => persist::restore(dir, &mut state)?,
        None => false,
    };
    if !restored {
        for ns in SEEDED_NAMESPACES {
            write::seed_namespace(&mut state, ns);
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
        .await
        .map_err(|source| SandboxError::Bind {
            port: config.port,
            source,
        })?;
    let listener =
        transport::Listener::new(listener, tls_config).map_err(|source| SandboxError::Bind {
            port: config.port,
            source,
        })?;
    let addr =
        axum::serve::Listener::local_addr(&listener).map_err(|source| SandboxError::Bind {
            port: config.port,
            source,
        })?;
    let (stop, stop_rx) = watch::channel(false);
    let anonymous = config.auth == AuthMode::Anonymous;
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        addr,
        wake_controller: Notify::new(),
        wake_controllers: Notify::new(),
        wake_persist: Notify::new(),
        shutdown: stop_rx.clone(),
        token: credentials.token.clone(),
        auth: config.auth,
        controllers: config.controllers.clone(),
        pauses: config::Pauses::default(),
        observer: Mutex::new(observer),
        close_watches: watch::channel(0).0,
        clock: clock::SandboxClock::new(config.controllers.time_scale),
    });
    let app =
        server::router(shared.clone()).into_make_service_with_connect_info::<transport::ConnInfo>();
    let mut graceful = stop_rx.clone();
    let server = tokio::spawn(async move {
        let signal = async move {
            let _ = graceful.wait_for(|s| *s).await;
        };
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
        {
            tracing::error!("sandbox server stopped: {err}");
        }
    });
    let flush_lock = Arc::new(tokio::sync::Mutex::new(()));
    let mut background = vec![tokio::spawn(cleanup_loop(shared.clone()))];
    if config.controllers.any_enabled() {
        background.push(tokio::spawn(reconciler::run(
            shared.clone(),
            config.controllers.clone(),
        )));
    }
    if let Some(dir) = &config.data_dir {
        background.push(tokio::spawn(persist_loop(
            shared.clone(),
            dir.clone(),
            flush_lock.clone(),
        )));
        // A fresh directory gets its first snapshot at once.
        shared.lock().dirty = true;
        shared.wake_persist.notify_one();
    }
    let scheme = if credentials.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!("sandbox listening on {scheme}://{addr}");
    Ok(Sandbox {
        addr,
        credentials,
        anonymous,
        shared,
        data_dir: config.data_dir,
        stop,
        server,
        background,
        flush_lock,
    })
}

async fn cleanup_loop(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = shared.wake_controller.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // Let the request that woke us finish first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let dirty = {
            let mut st = shared.lock();
            write::reconcile(&mut st);
            st.dirty
        };
        if dirty {
            shared.wake_persist.notify_one();
        }
    }
}

async fn flush(
    shared: &Shared,
    dir: &Path,
    flush_lock: &tokio::sync::Mutex<()>,
) -> Result<(), SandboxError> {
    let _guard = flush_lock.lock().await;
    let doc = {
        let mut st = shared.lock();
        if !st.dirty {
            return Ok(());
        }
        st.dirty = false;
        persist::snapshot(&st)
    };
    let dir_owned = dir.to_path_buf();
    let result = tokio::task::spawn_blocking(move || persist::write(&dir_owned, &doc))
        .await
        .unwrap_or_else(|e| {
            Err(SandboxError::DataWrite {
                path: dir.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })
        });
    if result.is_err() {
        shared.lock().dirty = true;
    }
    result
}

async fn persist_loop(shared: Arc<Shared>, dir: PathBuf, flush_lock: Arc<tokio::sync::Mutex<()>>) {
    let mut stop = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = shared.wake_persist.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Err(err) = flush(&shared, &dir, &flush_lock).await {
            tracing::error!("{err}");
        }
    }
}

impl Sandbox {
    /// The address it listens on (127.0.0.1 and the chosen port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.credentials.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The token and, with TLS, the CA and client certificate.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The bearer token API requests must carry (None with anonymous access).
    pub fn token(&self) -> Option<&str> {
        (!self.anonymous).then_some(self.credentials.token.as_str())
    }

    /// A kubeconfig whose cluster, context and user are all named `meshplan-sandbox`.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url(), self.token(), self.credentials.tls.as_ref())
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SandboxError> {
        write_kubeconfig(path, &self.kubeconfig_yaml())
    }

    /// Adds a fault rule; returns its id.
    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        self.shared.observer().add_fault(rule)
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.observer().clear_faults();
    }

    /// Ends every open watch stream (clients see the stream close and watch again).
    pub fn close_watches(&self) {
        self.shared.close_watches.send_modify(|n| *n += 1);
    }

    /// Pauses or resumes one simulated controller.
    pub fn set_paused(&self, controller: Controller, paused: bool) {
        self.shared.pauses.set(controller, paused);
        self.shared.wake_controllers.notify_one();
    }

    /// Moves the cluster's virtual clock forward (cert-manager's time and the `Date` of every
    /// answer); returns the new virtual now.
    pub fn advance_clock(&self, by: jiff::SignedDuration) -> jiff::Timestamp {
        let now = self.shared.clock.advance(by);
        self.shared.wake_controllers.notify_one();
        now
    }

    /// The cluster's virtual now.
    pub fn clock_now(&self) -> jiff::Timestamp {
        self.shared.clock.now()
    }

    /// The audit log (its most recent 100 000 entries; the audit files keep all of them).
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.shared.observer().audit_since(0)
    }

    /// Requests answered per (verb, resource).
    pub fn counters(&self) -> std::collections::BTreeMap<(String, String), u64> {
        self.shared.observer().counters()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// A stored object, read directly from the store (no HTTP). `group` is empty for the core
    /// group, `resource` the plural, `namespace` empty for cluster-scoped objects.
    pub fn object(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<serde_json::Value> {
        self.shared
            .lock()
            .get(&store::key(group, resource, namespace, name))
            .cloned()
    }

    /// How many objects the store holds.
    pub fn object_count(&self) -> usize {
        self.shared.lock().objects.len()
    }

    /// Every stored object with its `(group, resource, namespace, name)`, in that order: a
    /// snapshot of the whole cluster, read under the store's lock (one consistent point).
    pub fn objects(&self) -> Vec<(ObjectKey, serde_json::Value)> {
        let st = self.shared.lock();
        st.objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Stops serving, ends watch streams and writes the data directory a last time.
    pub async fn shutdown(self) -> Result<(), SandboxError> {
        let _ = self.stop.send(true);
        let server = self.server;
        if tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .is_err()
        {
            tracing::warn!("sandbox connections did not close in time");
        }
        for task in self.background {
            let _ = task.await;
        }
        if let Some(dir) = &self.data_dir {
            flush(&self.shared, dir, &self.flush_lock).await?;
        }
        Ok(())
    }
}

/// The kubeconfig text for a sandbox at `url`: the token (if any) and, with TLS, the CA and
/// the client certificate and key (base64 data fields).
pub fn kubeconfig_yaml(url: &str, token: Option<&str>, tls: Option<&TlsMaterial>) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let ca = tls
        .map(|t| format!("    certificate-authority-data: {}\n", b64(&t.ca_crt)))
        .unwrap_or_default();
    let mut user = String::new();
    if let Some(t) = tls {
        user.push_str(&format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&t.client_crt),
            b64(&t.client_key)
        ));
    }
    if let Some(token) = token {
        user.push_str(&format!("    token: {token}\n"));
    }
    let user = if user.is_empty() {
        "  user: {}\n".to_string()
    } else {
        format!("  user:\n{user}")
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {CONTEXT_NAME}\n  cluster:\n{ca}    server: {url}\n\
         contexts:\n- name: {CONTEXT_NAME}\n  context:\n    cluster: {CONTEXT_NAME}\n    user: {CONTEXT_NAME}\n    namespace: default\n\
         current-context: {CONTEXT_NAME}\nusers:\n- name: {CONTEXT_NAME}\n{user}preferences: {{}}\n"
    )
}

fn write_kubeconfig(path: &Path, text: &str) -> Result<(), SandboxError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| SandboxError::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| SandboxError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })
}

/// A sandbox on its own runtime, for synchronous code (tests that run kubectl). Dropping it
/// shuts the sandbox down and flushes its data.
pub struct BlockingSandbox {
    runtime: Option<tokio::runtime::Runtime>,
    sandbox: Option<Sandbox>,
    addr: SocketAddr,
    url: String,
    kubeconfig: String,
    credentials: Credentials,
    token: Option<String>,
}

impl BlockingSandbox {
    /// Starts a sandbox on a new two-thread runtime.
    pub fn start(config: SandboxConfig) -> Result<Self, SandboxError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(SandboxError::Runtime)?;
        let sandbox = runtime.block_on(start(config))?;
        Ok(Self {
            addr: sandbox.addr(),
            url: sandbox.url(),
            kubeconfig: sandbox.kubeconfig_yaml(),
            credentials: sandbox.credentials().clone(),
            token: sandbox.token().map(str::to_string),
            runtime: Some(runtime),
            sandbox: Some(sandbox),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig.clone()
    }

    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SandboxError> {
        write_kubeconfig(path, &self.kubeconfig)
    }

    /// See [`Sandbox::credentials`].
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// See [`Sandbox::token`].
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// See [`Sandbox::add_fault`].
    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        self.sandbox.as_ref().map_or(0, |s| s.add_fault(rule))
    }

    /// See [`Sandbox::clear_faults`].
    pub fn clear_faults(&self) {
        if let Some(s) = &self.sandbox {
            s.clear_faults();
        }
    }

    /// See [`Sandbox::close_watches`].
    pub fn close_watches(&self) {
        if let Some(s) = &self.sandbox {
            s.close_watches();
        }
    }

    /// See [`Sandbox::set_paused`].
    pub fn set_paused(&self, controller: Controller, paused: bool) {
        if let Some(s) = &self.sandbox {
            s.set_paused(controller, paused);
        }
    }

    /// See [`Sandbox::advance_clock`].
    pub fn advance_clock(&self, by: jiff::SignedDuration) -> jiff::Timestamp {
        match &self.sandbox {
            Some(s) => s.advance_clock(by),
            None => jiff::Timestamp::now(),
        }
    }

    /// See [`Sandbox::clock_now`].
    pub fn clock_now(&self) -> jiff::Timestamp {
        match &self.sandbox {
            Some(s) => s.clock_now(),
            None => jiff::Timestamp::now(),
        }
    }

    /// See [`Sandbox::audit`].
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.sandbox
            .as_ref()
            .map(Sandbox::audit)
            .unwrap_or_default()
    }

    /// See [`Sandbox::counters`].
    pub fn counters(&self) -> std::collections::BTreeMap<(String, String), u64> {
        self.sandbox
            .as_ref()
            .map(Sandbox::counters)
            .unwrap_or_default()
    }

    pub fn resource_version(&self) -> u64 {
        self.sandbox.as_ref().map_or(0, Sandbox::resource_version)
    }

    /// See [`Sandbox::object`].
    pub fn object(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<serde_json::Value> {
        self.sandbox
            .as_ref()
            .and_then(|s| s.object(group, resource, namespace, name))
    }

    /// See [`Sandbox::object_count`].
    pub fn object_count(&self) -> usize {
        self.sandbox.as_ref().map_or(0, Sandbox::object_count)
    }

    /// See [`Sandbox::objects`].
    pub fn objects(&self) -> Vec<(ObjectKey, serde_json::Value)> {
        self.sandbox
            .as_ref()
            .map(Sandbox::objects)
            .unwrap_or_default()
    }

    /// Stops the sandbox now (what drop does), reporting a failed final flush.
    pub fn shutdown(mut self) -> Result<(), SandboxError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), SandboxError> {
        let result = match (self.runtime.as_ref(), self.sandbox.take()) {
            (Some(rt), Some(sb)) => rt.block_on(sb.shutdown()),
            _ => Ok(()),
        };
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        result
    }
}

impl Drop for BlockingSandbox {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            tracing::error!("{err}");
        }
    }
}
