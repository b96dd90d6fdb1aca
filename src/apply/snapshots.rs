//! The live objects an apply journals before its writes, read with the fewest requests.
//!
//! Every write of a run is journaled with the object as it was just before (its snapshot).
//! Read one by one, that is one GET per object. Instead, where a node writes two or more
//! objects of one kind in one namespace, they are listed once (a paged LIST, at the first of
//! them to be written) and each takes its snapshot from the listing; an object the listing
//! does not hold is absent.
//!
//! A listed snapshot is exactly what a GET would have read, because it is only used for the
//! first read of an object in the run: the run itself has not written the object yet (every
//! write of a run is preceded by a read of the same object, which claims it), and the listing
//! is taken when the node's group that writes them starts, after the node's earlier groups
//! (CRDs, Namespaces, hooks) are done. Every later read of a claimed object (a Replace's
//! create after its delete, a hook, an object of another node) is a GET, as are the objects of
//! a kind and namespace the node writes once, hooks, and every object of a listing that
//! failed.
//!
//! Nodes that write objects of the same kind in the same namespace share a listing when their
//! groups start within [`SHARED_FOR`] of it (ten nodes of 1,000 ConfigMaps in one namespace,
//! started together, list the namespace once instead of ten times, each over the objects the
//! others have written meanwhile); a node whose group starts later lists again, so a snapshot
//! is never older than that when its object's node began writing. The listing that covers
//! the first node's objects covers every node's objects of its kind and namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::OnceCell;

use super::input::{ApplyInput, ObjectAction};
use super::journal::read_live;
use crate::cluster::{self, Cluster, ClusterError, KindRef, ObjectRef};

/// A node's listing: its objects of one kind in one namespace (None: cluster-scoped), and
/// whether they are the node's deletions (listed when its deletions start) or its writes.
type Key = (String, KindRef, Option<String>, bool);

/// A kind in a namespace: what a shared listing lists.
type Scope = (KindRef, Option<String>);

/// The listed objects the listing covers, by name (None: the listing failed).
type Listing = Option<Mutex<BTreeMap<String, Value>>>;

/// How long after it is begun a listing serves the nodes whose groups start (see the module
/// overview).
pub(crate) const SHARED_FOR: Duration = Duration::from_secs(5);

/// One listing of a kind in a namespace, begun at `begun`.
struct Shared {
    begun: Instant,
    listing: Arc<OnceCell<Listing>>,
}

/// Where the snapshots of one run come from (see the module overview).
#[derive(Default)]
pub(crate) struct Snapshots {
    /// Per node's listing: the names of the objects it covers.
    covered: BTreeMap<Key, BTreeSet<String>>,
    /// Per kind and namespace: the names every node's listing there covers.
    names: BTreeMap<Scope, BTreeSet<String>>,
    /// Per kind and namespace, the latest listing.
    lists: Mutex<BTreeMap<Scope, Shared>>,
    /// The objects the run has read (and so may have written) since it started.
    claimed: Mutex<BTreeSet<ObjectRef>>,
}

impl Snapshots {
    /// No listing: every object read one by one (rollbacks, destroy).
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// The listings of `input`: per node, each kind and namespace that the node writes (or
    /// deletes) two or more objects of.
    pub(crate) fn for_input(input: &ApplyInput) -> Self {
        let mut covered: BTreeMap<Key, BTreeSet<String>> = BTreeMap::new();
        for node in &input.nodes {
            for o in &node.objects {
                if o.action == ObjectAction::NoOp {
                    continue;
                }
                let key = (
                    node.address.clone(),
                    o.object.kind_ref(),
                    o.object.namespace.clone(),
                    o.action == ObjectAction::Delete,
                );
                covered
                    .entry(key)
                    .or_default()
                    .insert(o.object.name.clone());
            }
        }
        covered.retain(|_, names| names.len() >= 2);
        let mut names: BTreeMap<Scope, BTreeSet<String>> = BTreeMap::new();
        for ((_, kind, namespace, _), covered) in &covered {
            names
                .entry((kind.clone(), namespace.clone()))
                .or_default()
                .extend(covered.iter().cloned());
        }
        Self {
            covered,
            names,
            lists: Mutex::new(BTreeMap::new()),
            claimed: Mutex::new(BTreeSet::new()),
        }
    }

    /// The live object before a write of `node` (None: absent): from the node's listing when
    /// this is the run's first read of it and a listing covers it, else read now.
    pub(crate) async fn before_write(
        &self,
        cluster: &dyn Cluster,
        node: &str,
        object: &ObjectRef,
    ) -> Result<Option<Value>, ClusterError> {
        if self.covered.is_empty() {
            return read_live(cluster, object).await;
        }
        let first_read = self
            .claimed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(object.clone());
        if first_read && self.covering(node, object).is_some() {
            let scope = (object.kind_ref(), object.namespace.clone());
            let cell = {
                let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
                match lists.get(&scope) {
                    Some(shared) if shared.begun.elapsed() < SHARED_FOR => shared.listing.clone(),
                    _ => {
                        let listing = Arc::new(OnceCell::new());
                        lists.insert(
                            scope.clone(),
                            Shared {
                                begun: Instant::now(),
                                listing: listing.clone(),
                            },
                        );
                        listing
                    }
                }
            };
            let listing = cell.get_or_init(|| self.list(cluster, &scope)).await;
            if let Some(listed) = listing {
                return Ok(listed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&object.name));
            }
        }
        read_live(cluster, object).await
    }

    /// The listing of `node` that covers `object`, if any.
    /// Whether the snapshot of `object` (written by `node`) comes from a listing.
    pub(crate) fn covers(&self, node: &str, object: &ObjectRef) -> bool {
        self.covering(node, object).is_some()
    }

    fn covering(&self, node: &str, object: &ObjectRef) -> Option<Key> {
        let kind = object.kind_ref();
        [false, true].into_iter().find_map(|deleting| {
            let key = (
                node.to_owned(),
                kind.clone(),
                object.namespace.clone(),
                deleting,
            );
            self.covered
                .get(&key)
                .is_some_and(|names| names.contains(&object.name))
                .then_some(key)
        })
    }

    /// Lists the objects of `scope` any node's listing covers, keeping only those (None: the
    /// listing failed; its objects are read one by one). A kind not served yet has no
    /// objects.
    async fn list(&self, cluster: &dyn Cluster, scope: &Scope) -> Listing {
        let (kind, namespace) = scope;
        let names = self.names.get(scope)?;
        let listed = cluster::list_paged(
            cluster,
            kind,
            namespace.as_deref(),
            cluster::LIST_PAGE_SIZE,
            |item| {
                let name = item.pointer("/metadata/name")?.as_str()?.to_owned();
                names.contains(&name).then_some((name, item))
            },
        )
        .await;
        match listed {
            Ok(items) => Some(Mutex::new(items.into_iter().collect())),
            Err(ClusterError::KindNotInstalled { .. }) => Some(Mutex::new(BTreeMap::new())),
            Err(e) => {
                tracing::debug!(kind = %kind.kind, error = %e, "listing failed, reading one by one");
                None
            }
        }
    }
}
