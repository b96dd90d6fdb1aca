//! LISTs asked ahead: requests started while the caller does other work (a plan renders and
//! lints while the API server answers the LISTs of its refresh), each answer handed once to
//! the first [`Cluster::list_unmanaged`] of the same kind and namespace.
//!
//! 1. [`ListsAhead::start`] sends one LIST per (kind, namespace) on tasks of their own
//!    ([`Cluster::list_unmanaged`]).
//! 2. [`WithListsAhead`] is a [`Cluster`] over another one: `list_unmanaged` takes the answer started
//!    ahead for its kind and namespace when there is one (waiting for it if it is still on
//!    its way), and asks the cluster underneath otherwise; every other method goes to the
//!    cluster underneath.
//! 3. [`WithListsAhead::forget`] drops the answers not taken, so nothing read before a
//!    point in time is served after it. Dropping a [`ListsAhead`] stops the requests still
//!    running.
//!
//! An answer is what the cluster underneath said when it was asked, errors included: a list
//! taken from here differs from one asked now only by when it was read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::{
    ApplyOptions, Cluster, ClusterError, Condition, DeleteOptions, DeleteOutcome, Discovery,
    KindRef, ObjectList, ObjectPage, ObjectRef, ServerVersion, WaitOutcome, WriteOptions,
};

/// A kind and a namespace (None: all namespaces, or a cluster-scoped kind).
pub type ListKey = (KindRef, Option<String>);

type Answer = JoinHandle<Result<ObjectList, ClusterError>>;

/// LISTs started ahead, each answer taken at most once.
#[derive(Default)]
pub struct ListsAhead {
    started: Mutex<BTreeMap<ListKey, Answer>>,
}

impl std::fmt::Debug for ListsAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<ListKey> = self
            .started
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("ListsAhead")
            .field("started", &keys)
            .finish()
    }
}

impl ListsAhead {
    /// Sends one LIST per key on a task of its own (a Tokio runtime must be running).
    pub fn start<C>(cluster: &C, keys: impl IntoIterator<Item = ListKey>) -> Self
    where
        C: Cluster + Clone + 'static,
    {
        let started = keys
            .into_iter()
            .map(|key| {
                let cluster = cluster.clone();
                let (kind, namespace) = key.clone();
                let answer = tokio::spawn(async move {
                    cluster.list_unmanaged(&kind, namespace.as_deref()).await
                });
                (key, answer)
            })
            .collect();
        Self {
            started: Mutex::new(started),
        }
    }

    /// The kinds and namespaces started.
    pub fn keys(&self) -> BTreeSet<ListKey> {
        self.started
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn take(&self, kind: &KindRef, namespace: Option<&str>) -> Option<Answer> {
        let key = (kind.clone(), namespace.map(str::to_owned));
        self.started.lock().ok()?.remove(&key)
    }

    fn forget(&self) {
        if let Ok(mut started) = self.started.lock() {
            for (_, answer) in std::mem::take(&mut *started) {
                answer.abort();
            }
        }
    }
}

impl Drop for ListsAhead {
    fn drop(&mut self) {
        self.forget();
    }
}

/// A cluster whose first [`Cluster::list_unmanaged`] of each kind and namespace started ahead
/// is answered by the request started ahead (see the module docs).
pub struct WithListsAhead<'a> {
    inner: &'a dyn Cluster,
    ahead: Option<ListsAhead>,
}

impl<'a> WithListsAhead<'a> {
    /// `inner` with the lists of `ahead` (None: `inner` as it is).
    pub fn new(inner: &'a dyn Cluster, ahead: Option<ListsAhead>) -> Self {
        Self { inner, ahead }
    }

    /// Drops the answers not taken yet: every LIST from now on asks the cluster.
    pub fn forget(&self) {
        if let Some(ahead) = &self.ahead {
            ahead.forget();
        }
    }
}

impl Cluster for WithListsAhead<'_> {
    fn url(&self) -> &str {
        self.inner.url()
    }

    fn server_version(&self) -> BoxFuture<'_, Result<ServerVersion, ClusterError>> {
        self.inner.server_version()
    }

    fn server_time(&self) -> BoxFuture<'_, Result<Option<jiff::Timestamp>, ClusterError>> {
        self.inner.server_time()
    }

    fn discover(&self) -> BoxFuture<'_, Result<Discovery, ClusterError>> {
        self.inner.discover()
    }

    fn prime_discovery(&self, discovery: Discovery) -> BoxFuture<'_, ()> {
        self.inner.prime_discovery(discovery)
    }

    fn get<'b>(
        &'b self,
        object: &'b ObjectRef,
    ) -> BoxFuture<'b, Result<Option<Value>, ClusterError>> {
        self.inner.get(object)
    }

    fn list<'b>(
        &'b self,
        kind: &'b KindRef,
        namespace: Option<&'b str>,
        label_selector: Option<&'b str>,
    ) -> BoxFuture<'b, Result<ObjectList, ClusterError>> {
        self.inner.list(kind, namespace, label_selector)
    }

    fn list_unmanaged<'b>(
        &'b self,
        kind: &'b KindRef,
        namespace: Option<&'b str>,
    ) -> BoxFuture<'b, Result<ObjectList, ClusterError>> {
        match self.ahead.as_ref().and_then(|a| a.take(kind, namespace)) {
            Some(answer) => Box::pin(async move {
                match answer.await {
                    Ok(listed) => listed,
                    // The task did not finish (stopped or failed): ask now.
                    Err(_) => self.inner.list_unmanaged(kind, namespace).await,
                }
            }),
            None => self.inner.list_unmanaged(kind, namespace),
        }
    }

    fn list_page<'b>(
        &'b self,
        kind: &'b KindRef,
        namespace: Option<&'b str>,
        limit: u32,
        continue_token: Option<&'b str>,
    ) -> BoxFuture<'b, Result<ObjectPage, ClusterError>> {
        self.inner.list_page(kind, namespace, limit, continue_token)
    }

    fn apply<'b>(
        &'b self,
        body: &'b Value,
        options: &'b ApplyOptions,
    ) -> BoxFuture<'b, Result<Value, ClusterError>> {
        self.inner.apply(body, options)
    }

    fn create<'b>(
        &'b self,
        body: &'b Value,
        options: &'b WriteOptions,
    ) -> BoxFuture<'b, Result<Value, ClusterError>> {
        self.inner.create(body, options)
    }

    fn replace<'b>(
        &'b self,
        body: &'b Value,
        options: &'b WriteOptions,
    ) -> BoxFuture<'b, Result<Value, ClusterError>> {
        self.inner.replace(body, options)
    }

    fn delete<'b>(
        &'b self,
        object: &'b ObjectRef,
        options: &'b DeleteOptions,
    ) -> BoxFuture<'b, Result<DeleteOutcome, ClusterError>> {
        self.inner.delete(object, options)
    }

    fn wait_for<'b>(
        &'b self,
        object: &'b ObjectRef,
        condition: &'b Condition,
        timeout: Duration,
    ) -> BoxFuture<'b, Result<WaitOutcome, ClusterError>> {
        self.inner.wait_for(object, condition, timeout)
    }

    fn wait_gone<'b>(
        &'b self,
        kind: &'b KindRef,
        namespace: Option<&'b str>,
        names: &'b BTreeSet<String>,
        timeout: Duration,
    ) -> BoxFuture<'b, Result<BTreeMap<String, Value>, ClusterError>> {
        self.inner.wait_gone(kind, namespace, names, timeout)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A cluster that answers every LIST with the number of LISTs asked so far as the list's
    /// resourceVersion (and the selector as its one item); it serves nothing else. Its
    /// `list_unmanaged` is the default one, over `list`.
    #[derive(Clone, Default)]
    struct Counting {
        lists: Arc<AtomicUsize>,
    }

    fn refused<T: Send + 'static>() -> BoxFuture<'static, Result<T, ClusterError>> {
        Box::pin(async {
            Err(ClusterError::BadObject {
                message: "not served by this test cluster".to_owned(),
            })
        })
    }

    impl Cluster for Counting {
        fn url(&self) -> &str {
            "https://counting"
        }
        fn server_version(&self) -> BoxFuture<'_, Result<ServerVersion, ClusterError>> {
            refused()
        }
        fn discover(&self) -> BoxFuture<'_, Result<Discovery, ClusterError>> {
            refused()
        }
        fn prime_discovery(&self, _: Discovery) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
        fn get<'b>(
            &'b self,
            _: &'b ObjectRef,
        ) -> BoxFuture<'b, Result<Option<Value>, ClusterError>> {
            refused()
        }
        fn list<'b>(
            &'b self,
            _: &'b KindRef,
            _: Option<&'b str>,
            label_selector: Option<&'b str>,
        ) -> BoxFuture<'b, Result<ObjectList, ClusterError>> {
            let n = self.lists.fetch_add(1, Ordering::SeqCst) + 1;
            let items = label_selector.map(Value::from).into_iter().collect();
            Box::pin(async move {
                Ok(ObjectList {
                    items,
                    resource_version: n.to_string(),
                })
            })
        }
        fn apply<'b>(
            &'b self,
            _: &'b Value,
            _: &'b ApplyOptions,
        ) -> BoxFuture<'b, Result<Value, ClusterError>> {
            refused()
        }
        fn create<'b>(
            &'b self,
            _: &'b Value,
            _: &'b WriteOptions,
        ) -> BoxFuture<'b, Result<Value, ClusterError>> {
            refused()
        }
        fn replace<'b>(
            &'b self,
            _: &'b Value,
            _: &'b WriteOptions,
        ) -> BoxFuture<'b, Result<Value, ClusterError>> {
            refused()
        }
        fn delete<'b>(
            &'b self,
            _: &'b ObjectRef,
            _: &'b DeleteOptions,
        ) -> BoxFuture<'b, Result<DeleteOutcome, ClusterError>> {
            refused()
        }
        fn wait_for<'b>(
            &'b self,
            _: &'b ObjectRef,
            _: &'b Condition,
            _: Duration,
        ) -> BoxFuture<'b, Result<WaitOutcome, ClusterError>> {
            refused()
        }
    }

    fn config_maps() -> KindRef {
        KindRef::new("v1", "ConfigMap")
    }

    /// Lets the tasks started ahead run until `n` LISTs were asked.
    async fn until_listed(cluster: &Counting, n: usize) {
        for _ in 0..10_000 {
            if cluster.lists.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the LISTs started ahead never ran");
    }

    #[tokio::test]
    async fn a_list_started_ahead_answers_the_first_list_of_its_kind_and_namespace_only() {
        let cluster = Counting::default();
        let ahead = ListsAhead::start(&cluster, [(config_maps(), Some("a".to_owned()))]);
        assert_eq!(
            ahead.keys(),
            BTreeSet::from([(config_maps(), Some("a".to_owned()))])
        );
        until_listed(&cluster, 1).await;
        let with = WithListsAhead::new(&cluster, Some(ahead));
        let kind = config_maps();
        // Another namespace, and plain lists, go to the cluster.
        let other = with.list_unmanaged(&kind, Some("b")).await.unwrap();
        assert_eq!(other.resource_version, "2");
        let plain = with.list(&kind, Some("a"), None).await.unwrap();
        assert_eq!(plain.resource_version, "3");
        let selected = with.list(&kind, Some("a"), Some("app=x")).await.unwrap();
        assert_eq!(selected.resource_version, "4");
        assert_eq!(selected.items, vec![Value::from("app=x")]);
        // The first list of the namespace is the answer started ahead.
        let first = with.list_unmanaged(&kind, Some("a")).await.unwrap();
        assert_eq!(first.resource_version, "1");
        // Taken once: the next one asks the cluster.
        let second = with.list_unmanaged(&kind, Some("a")).await.unwrap();
        assert_eq!(second.resource_version, "5");
    }

    #[tokio::test]
    async fn forgotten_answers_are_not_served() {
        let cluster = Counting::default();
        let ahead = ListsAhead::start(&cluster, [(config_maps(), None)]);
        until_listed(&cluster, 1).await;
        let with = WithListsAhead::new(&cluster, Some(ahead));
        with.forget();
        let listed = with.list_unmanaged(&config_maps(), None).await.unwrap();
        assert_eq!(listed.resource_version, "2");
    }

    #[tokio::test]
    async fn without_lists_ahead_every_list_asks_the_cluster() {
        let cluster = Counting::default();
        let with = WithListsAhead::new(&cluster, None);
        for n in 1..=2 {
            let listed = with.list_unmanaged(&config_maps(), None).await.unwrap();
            assert_eq!(listed.resource_version, n.to_string());
        }
    }
}
