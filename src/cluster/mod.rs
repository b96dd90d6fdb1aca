//! The only door to Kubernetes: the [`Cluster`] trait and its kube implementation.
//!
//! The engine never names a kube client: it talks to `dyn Cluster` (object-safe, `Send +
//! Sync`, async methods returning boxed futures). Objects travel as `serde_json::Value`
//! bodies; references as [`ObjectRef`] / [`KindRef`].
//!
//! 1. [`KubeCluster::connect`] reads a kubeconfig as kubectl does (a given file, else the
//!    files `KUBECONFIG` lists, merged, skipping those that do not exist, else
//!    `~/.kube/config`) and a context.
//! 2. [`Cluster::discover`] lists every served resource with aggregated discovery (two
//!    requests), falling back to per-group discovery on servers without it. The result is
//!    kept to resolve kinds to URLs; a kind missing from it triggers one fresh discovery
//!    (a CRD may have just been created) before [`ClusterError::KindNotInstalled`].
//! 3. Reads ([`Cluster::get`], [`Cluster::list`], [`Cluster::list_page`] and
//!    [`list_paged`] over it, `limit` and `continue`), writes ([`Cluster::apply`] by server-side
//!    apply with strict field validation, [`Cluster::create`], [`Cluster::replace`],
//!    [`Cluster::delete`], which says whether the object is gone at once or its deletion is
//!    pending, [`DeleteOutcome`]) and [`Cluster::wait_for`], a watch (never a poll) with a
//!    timeout that returns the last object seen; [`Cluster::wait_gone`] waits for many objects
//!    of one kind and namespace to disappear through one watch (by name for a single one).
//!
//! [`Cluster::list_unmanaged`] lists objects without their managedFields (the kube cluster
//! skips them as it reads the answer). [`ListsAhead`] starts such LISTs before they are
//! needed; [`WithListsAhead`] hands each answer to the first `list_unmanaged` that asks for it
//! (a plan's refresh, after its render and lint).
//!
//! Every request goes through [`transport`]: a connect timeout and a request timeout, and
//! transient failures (429, 500, 503, 504, broken connections) retried with backoff before
//! anything else sees them. Errors are typed and carry the object ([`ClusterError`]).

mod ahead;
mod error;
mod kube_cluster;
mod secret_data;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

pub use ahead::{ListKey, ListsAhead, WithListsAhead};
pub use error::{ClusterError, FieldConflict, InvalidCause, Target, field_conflicts};
pub use kube_cluster::KubeCluster;
pub use meshplan_k8s::discovery::{ApiResourceInfo, Discovery};
pub use meshplan_k8s::object::{KindRef, ObjectRef, split_api_version};
pub use transport::{RequestScope, RequestSettings, RetryNotice, RetryPolicy, with_request_scope};

/// The field manager meshplan applies with.
pub const FIELD_MANAGER: &str = "meshplan";

/// Where to find the cluster, and how long to wait for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// A kubeconfig file (`--kubeconfig`); None reads `KUBECONFIG` (a list of files), else
    /// `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// A context name (`--context`); None uses the current context.
    pub context: Option<String>,
    /// Timeouts and retries of every request (`--request-timeout`).
    pub requests: RequestSettings,
}

/// The server's version (`/version`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerVersion {
    pub major: String,
    pub minor: String,
    /// e.g. `v1.31.0`.
    pub git_version: String,
}

/// The items of one list request and the list's resourceVersion.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectList {
    /// Each with `apiVersion` and `kind` set.
    pub items: Vec<Value>,
    pub resource_version: String,
}

/// One page of a list ([`Cluster::list_page`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectPage {
    /// Each with `apiVersion` and `kind` set.
    pub items: Vec<Value>,
    /// Where the next page starts (None: this was the last page).
    pub continue_token: Option<String>,
}

/// How many objects a paged listing asks for at a time (what kubectl asks for).
pub const LIST_PAGE_SIZE: u32 = 500;

/// How to server-side apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    pub field_manager: String,
    /// Take fields owned by other managers (`--force-conflicts`).
    pub force: bool,
    /// Validate and compute the result, store nothing.
    pub dry_run: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            field_manager: FIELD_MANAGER.to_owned(),
            force: false,
            dry_run: false,
        }
    }
}

/// Lists every object of a kind in `namespace` page by page (`page_size` at a time; see
/// [`LIST_PAGE_SIZE`]), handing each to `keep`, which returns what to hold on to (None: drop
/// it): only what the caller needs stays in memory, never the whole list.
pub async fn list_paged<T>(
    cluster: &dyn Cluster,
    kind: &KindRef,
    namespace: Option<&str>,
    page_size: u32,
    mut keep: impl FnMut(Value) -> Option<T>,
) -> Result<Vec<T>, ClusterError> {
    let mut kept = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = cluster
            .list_page(kind, namespace, page_size.max(1), token.as_deref())
            .await?;
        kept.extend(page.items.into_iter().filter_map(&mut keep));
        match page.continue_token.filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next),
            None => return Ok(kept),
        }
    }
}

/// How to create or replace a whole object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    pub field_manager: String,
    pub dry_run: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            field_manager: FIELD_MANAGER.to_owned(),
            dry_run: false,
        }
    }
}

/// What happens to the dependents of a deleted object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Foreground,
    Background,
    Orphan,
}

/// How to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// None: the kind's default.
    pub propagation: Option<Propagation>,
    pub dry_run: bool,
    /// Delete only if the object still has this resourceVersion (else
    /// [`ClusterError::Conflict`]).
    pub resource_version: Option<String>,
}

/// What a delete found ([`Cluster::delete`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// There was no such object.
    NotFound,
    /// The object was removed at once: the API server answered with a `Status` of success, or
    /// with the deleted object without `metadata.deletionTimestamp`. Nothing to wait for.
    Gone,
    /// The object is being deleted and still exists: the API server answered with it carrying
    /// `metadata.deletionTimestamp` (finalizers, foreground propagation, a Pod's grace
    /// period, a Namespace's content). It is gone once a watch sees it deleted.
    Pending,
}

impl DeleteOutcome {
    /// Whether the object existed.
    pub fn existed(self) -> bool {
        self != Self::NotFound
    }
}

/// A predicate on the watched object (None: it does not exist).
pub type Condition = dyn Fn(Option<&Value>) -> bool + Send + Sync;

/// The end of a wait.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitOutcome {
    /// The condition held; the object as it was then (None: absent).
    Met(Option<Value>),
    /// The timeout passed; the last object seen (None: absent or never seen).
    TimedOut(Option<Value>),
}

impl WaitOutcome {
    pub fn is_met(&self) -> bool {
        matches!(self, Self::Met(_))
    }

    /// The object at the end of the wait.
    pub fn object(&self) -> Option<&Value> {
        match self {
            Self::Met(o) | Self::TimedOut(o) => o.as_ref(),
        }
    }
}

/// A Kubernetes cluster, as the engine uses it.
pub trait Cluster: Send + Sync {
    /// The API server URL (for messages).
    fn url(&self) -> &str;

    /// The server's version.
    fn server_version(&self) -> BoxFuture<'_, Result<ServerVersion, ClusterError>>;

    /// The cluster's clock: the `Date` of the API server's answer to a version request, or
    /// None when it sends none. Certificates are judged by the clock the cluster runs on.
    fn server_time(&self) -> BoxFuture<'_, Result<Option<jiff::Timestamp>, ClusterError>> {
        Box::pin(async { Ok(None) })
    }

    /// Every resource the server serves, fetched now (and kept to resolve kinds).
    fn discover(&self) -> BoxFuture<'_, Result<Discovery, ClusterError>>;

    /// Uses `discovery` (e.g. from the state's cache) to resolve kinds until a kind is
    /// missing from it.
    fn prime_discovery(&self, discovery: Discovery) -> BoxFuture<'_, ()>;

    /// The object, or None when it does not exist. Fails with
    /// [`ClusterError::KindNotInstalled`] when its kind is not served.
    fn get<'a>(
        &'a self,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Option<Value>, ClusterError>>;

    /// The objects of a kind in `namespace` (None: all namespaces, or a cluster-scoped kind)
    /// matching `label_selector`, in one request.
    fn list<'a>(
        &'a self,
        kind: &'a KindRef,
        namespace: Option<&'a str>,
        label_selector: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ObjectList, ClusterError>>;

    /// As [`Cluster::list`] without a label selector, each object without its
    /// `metadata.managedFields`. By default the objects listed, with the field removed; the
    /// kube cluster skips it while it reads the answer.
    fn list_unmanaged<'a>(
        &'a self,
        kind: &'a KindRef,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ObjectList, ClusterError>> {
        Box::pin(async move {
            let mut list = self.list(kind, namespace, None).await?;
            for item in &mut list.items {
                if let Some(Value::Object(meta)) = item.get_mut("metadata") {
                    meta.remove("managedFields");
                }
            }
            Ok(list)
        })
    }

    /// One page of the objects of a kind in `namespace` (None: all namespaces, or a
    /// cluster-scoped kind): at most `limit` of them, from where `continue_token` (the token
    /// of the previous page) left off. By default the whole list as one page.
    fn list_page<'a>(
        &'a self,
        kind: &'a KindRef,
        namespace: Option<&'a str>,
        limit: u32,
        continue_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ObjectPage, ClusterError>> {
        let _ = (limit, continue_token);
        Box::pin(async move {
            let list = self.list(kind, namespace, None).await?;
            Ok(ObjectPage {
                items: list.items,
                continue_token: None,
            })
        })
    }

    /// Server-side apply of `body` (with `fieldValidation=Strict`); the resulting object.
    fn apply<'a>(
        &'a self,
        body: &'a Value,
        options: &'a ApplyOptions,
    ) -> BoxFuture<'a, Result<Value, ClusterError>>;

    /// Creates `body` (POST); the created object.
    fn create<'a>(
        &'a self,
        body: &'a Value,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ClusterError>>;

    /// Replaces the object with `body` (PUT), e.g. to restore a snapshot; the result.
    fn replace<'a>(
        &'a self,
        body: &'a Value,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ClusterError>>;

    /// Deletes the object; whether it was there, and whether it is gone already or still
    /// being deleted (as the API server's answer says).
    fn delete<'a>(
        &'a self,
        object: &'a ObjectRef,
        options: &'a DeleteOptions,
    ) -> BoxFuture<'a, Result<DeleteOutcome, ClusterError>>;

    /// Watches the object until `condition` holds or `timeout` passes.
    fn wait_for<'a>(
        &'a self,
        object: &'a ObjectRef,
        condition: &'a Condition,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<WaitOutcome, ClusterError>>;

    /// Waits until none of the objects of `kind` named `names` in `namespace` (None: a
    /// cluster-scoped kind) exists, or `timeout` passes; the ones still there then, by name,
    /// as last seen. By default one [`Cluster::wait_for`] per name, concurrently; the kube
    /// cluster watches the kind in the namespace once (the one object by name, when there is
    /// one).
    fn wait_gone<'a>(
        &'a self,
        kind: &'a KindRef,
        namespace: Option<&'a str>,
        names: &'a BTreeSet<String>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Value>, ClusterError>> {
        Box::pin(async move {
            let gone = |o: Option<&Value>| o.is_none();
            let waits = names.iter().map(|name| {
                let object = ObjectRef::new(&kind.api_version, &kind.kind, namespace, name);
                async move {
                    let outcome = self.wait_for(&object, &gone, timeout).await?;
                    Ok::<_, ClusterError>(match outcome {
                        WaitOutcome::Met(_) | WaitOutcome::TimedOut(None) => None,
                        WaitOutcome::TimedOut(Some(last)) => Some((object.name, last)),
                    })
                }
            });
            let mut left = BTreeMap::new();
            for outcome in futures::future::join_all(waits).await {
                if let Some((name, last)) = outcome? {
                    left.insert(name, last);
                }
            }
            Ok(left)
        })
    }
}
