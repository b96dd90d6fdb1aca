//! [`KubeCluster`]: the [`Cluster`] on a kube client.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions,
    PropagationPolicy, ValidationDirective,
};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::core::discovery::v2::APIGroupDiscoveryList;
use kube::discovery::{ApiResource, Scope};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::Value;
use tokio::sync::Mutex;

use super::transport::TransportLayer;
use super::{
    ApiResourceInfo, ApplyOptions, Cluster, ClusterError, Condition, ConnectOptions, DeleteOptions,
    DeleteOutcome, Discovery, KindRef, ObjectList, ObjectPage, ObjectRef, Propagation,
    ServerVersion, Target, WaitOutcome, WriteOptions, split_api_version,
};

/// A cluster reached through a kubeconfig.
#[derive(Clone)]
pub struct KubeCluster {
    client: kube::Client,
    /// What the client was built from (the state's own client is built from it too).
    config: kube::Config,
    url: String,
    /// The kubeconfig context used (None: the kubeconfig names none and none was given).
    context: Option<String>,
    default_namespace: String,
    kinds: Arc<Mutex<Kinds>>,
}

/// What the cluster is known to serve, and kinds known not to be served.
#[derive(Default)]
struct Kinds {
    discovery: Option<Discovery>,
    /// Kinds missing from a fresh discovery. They are not looked up again (a plan with many
    /// objects of a kind that is not installed costs one discovery, not one per object)
    /// until the served kinds may have changed: an explicit [`Cluster::discover`], or a
    /// write through this cluster to a CRD or an APIService.
    missing: HashSet<KindRef>,
}

/// Groups whose objects change the set of served kinds.
const KIND_GROUPS: &[&str] = &["apiextensions.k8s.io", "apiregistration.k8s.io"];

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl KubeCluster {
    /// Reads the kubeconfig (`options.kubeconfig`, else `KUBECONFIG`, else
    /// `~/.kube/config`) and builds a client for the chosen context, its requests going
    /// through the [transport](super::transport) with `options.requests`. Sends no request.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, ClusterError> {
        let (kubeconfig, path) = read_kubeconfig(options)?;
        let context = options
            .context
            .clone()
            .or_else(|| kubeconfig.current_context.clone());
        let context_options = KubeConfigOptions {
            context: options.context.clone(),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &context_options)
            .await
            .map_err(|e| match (&e, &options.context) {
                (KubeconfigError::LoadContext(_), Some(context)) => ClusterError::NoContext {
                    path: path.clone(),
                    context: context.clone(),
                },
                _ => kubeconfig_error(&path, e, false),
            })?;
        let url = config.cluster_url.to_string();
        let url = url.trim_end_matches('/').to_owned();
        let default_namespace = config.default_namespace.clone();
        let mut config = config;
        config.connect_timeout = Some(options.requests.connect_timeout);
        // The state's own client is built from this (its retries are its own).
        let state_config = config.clone();
        // Retries are the transport layer's (visible, within deadlines), not kube's own.
        config.default_retry = false;
        let client = kube::client::ClientBuilder::try_from(config)
            .map_err(|e| ClusterError::Kubeconfig {
                path: path.clone(),
                message: e.to_string(),
            })?
            .with_layer(&TransportLayer::new(options.requests.clone()))
            .build();
        Ok(Self {
            client,
            config: state_config,
            url,
            context,
            default_namespace,
            kinds: Arc::new(Mutex::new(Kinds::default())),
        })
    }

    /// The kubeconfig context in use (None when the kubeconfig names none).
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }

    /// The kube client (for code that must go beyond the trait, such as tests).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The configuration the client was built from (the `kubernetes` state backend and the
    /// apply's Lease use a client of their own, built from it).
    pub fn kube_config(&self) -> &kube::Config {
        &self.config
    }

    fn err(&self, e: kube::Error, target: Target) -> ClusterError {
        ClusterError::from_kube(e, target, &self.url)
    }

    /// Fetches discovery (aggregated, else per group version).
    async fn fetch_discovery(&self) -> Result<Discovery, ClusterError> {
        let aggregated = async {
            let groups = self.client.list_api_groups_aggregated().await?;
            let core = self.client.list_core_api_versions_aggregated().await?;
            Ok::<_, kube::Error>((groups, core))
        }
        .await;
        match aggregated {
            Ok((groups, core)) if is_aggregated(&groups) && is_aggregated(&core) => {
                Ok(from_aggregated([core, groups]))
            }
            Ok(_) | Err(kube::Error::Api(_)) | Err(kube::Error::SerdeError(_)) => {
                // A server without aggregated discovery: one request per group version.
                let d = kube::Discovery::new(self.client.clone())
                    .run()
                    .await
                    .map_err(|e| self.err(e, Target::Cluster))?;
                Ok(from_legacy(&d))
            }
            Err(e) => Err(self.err(e, Target::Cluster)),
        }
    }

    /// The resource serving `kind`: from the kept discovery, else from a fresh one (one at
    /// a time: concurrent misses share it).
    async fn resolve(&self, kind: &KindRef) -> Result<ApiResourceInfo, ClusterError> {
        let mut kinds = self.kinds.lock().await;
        if let Some(r) = kinds.discovery.as_ref().and_then(|d| d.find(kind)) {
            return Ok(r.clone());
        }
        let not_installed = || ClusterError::KindNotInstalled { kind: kind.clone() };
        if kinds.missing.contains(kind) {
            return Err(not_installed());
        }
        let fresh = self.fetch_discovery().await?;
        let found = fresh.find(kind).cloned();
        kinds.discovery = Some(fresh);
        match found {
            Some(r) => Ok(r),
            None => {
                kinds.missing.insert(kind.clone());
                Err(not_installed())
            }
        }
    }

    /// After a change to `object` (not a dry run): a CRD or APIService may serve new kinds.
    async fn note_write(&self, object: &ObjectRef, dry_run: bool) {
        if !dry_run && KIND_GROUPS.contains(&object.group()) {
            self.kinds.lock().await.missing.clear();
        }
    }

    /// An API handle for objects of `kind`, scoped to `namespace` when the kind is
    /// namespaced (None: the context's default namespace, or all namespaces if `all`).
    async fn api(
        &self,
        kind: &KindRef,
        namespace: Option<&str>,
        all: bool,
    ) -> Result<Api<DynamicObject>, ClusterError> {
        let info = self.resolve(kind).await?;
        let resource = ApiResource {
            group: info.group.clone(),
            version: info.version.clone(),
            api_version: info.api_version(),
            kind: info.kind.clone(),
            plural: info.plural.clone(),
        };
        Ok(match (info.namespaced, namespace) {
            (false, _) => Api::all_with(self.client.clone(), &resource),
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &resource),
            (true, None) if all => Api::all_with(self.client.clone(), &resource),
            (true, None) => {
                Api::namespaced_with(self.client.clone(), &self.default_namespace, &resource)
            }
        })
    }

    /// One LIST of the objects of `kind` in `namespace` (None: all namespaces), with `params`.
    /// The items are parsed straight into JSON values (what every caller works on), not
    /// into typed objects converted afterwards: half the work on a list of thousands.
    async fn list_with<L: serde::de::DeserializeOwned>(
        &self,
        kind: &KindRef,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<L, ClusterError> {
        let api = self.api(kind, namespace, true).await?;
        let target = || Target::Kind {
            kind: kind.clone(),
            namespace: namespace.map(str::to_owned),
        };
        let mut request = kube::core::Request::new(api.resource_url())
            .list(params)
            .map_err(|e| self.err(kube::Error::BuildRequest(e), target()))?;
        request.extensions_mut().insert("list");
        self.client
            .request::<L>(request)
            .await
            .map_err(|e| self.err(e, target()))
    }

    async fn object_api(&self, object: &ObjectRef) -> Result<Api<DynamicObject>, ClusterError> {
        self.api(&object.kind_ref(), object.namespace.as_deref(), false)
            .await
    }
}

fn body_ref(body: &Value) -> Result<ObjectRef, ClusterError> {
    ObjectRef::from_object(body).ok_or_else(|| ClusterError::BadObject {
        message: "apiVersion, kind and metadata.name are required".to_owned(),
    })
}

fn to_dynamic(body: &Value) -> Result<DynamicObject, ClusterError> {
    serde_json::from_value(body.clone()).map_err(|e| ClusterError::BadObject {
        message: e.to_string(),
    })
}

/// The object as JSON, with apiVersion and kind.
fn to_value(object: DynamicObject, kind: &KindRef) -> Value {
    with_kind(serde_json::to_value(object).unwrap_or(Value::Null), kind)
}

/// A LIST's answer read in one pass, its items without `metadata.managedFields` (kube's
/// `ObjectList` flattens its type fields, which makes the parser buffer the whole answer
/// before it builds the items).
#[derive(serde::Deserialize)]
struct UnmanagedList {
    #[serde(default)]
    metadata: ListResourceVersion,
    /// null or missing: no items.
    #[serde(default)]
    items: Option<Vec<Unmanaged>>,
}

/// The list's metadata, of which only the resourceVersion is used.
#[derive(serde::Deserialize, Default)]
struct ListResourceVersion {
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
}

/// A listed object parsed without its `metadata.managedFields`: they are skipped as the answer
/// is read, never built (often the largest part of an object). Anything else is read as a
/// [`Value`] would be, in the same order.
#[derive(Debug, Clone)]
struct Unmanaged(Value);

impl<'de> serde::Deserialize<'de> for Unmanaged {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ObjectVisitor { skip: None })
            .map(Unmanaged)
    }
}

/// Reads a JSON object (or null) into a [`Value`], skipping the field `skip` and reading
/// `metadata` without its `managedFields` when `skip` is None (the object itself).
struct ObjectVisitor {
    skip: Option<&'static str>,
}

/// An object's metadata, without `managedFields`.
struct Metadata(Value);

impl<'de> serde::Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ObjectVisitor {
                skip: Some("managedFields"),
            })
            .map(Metadata)
    }
}

impl<'de> serde::de::Visitor<'de> for ObjectVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        // Where the skipped field was: its removal from a whole object (`Map::remove`, a swap
        // remove) puts the last field there, and so does this reading.
        let mut skipped_at = None;
        while let Some(key) = map.next_key::<String>()? {
            if self.skip == Some(key.as_str()) {
                skipped_at.get_or_insert(object.len());
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            let value = if self.skip.is_none() && key == "metadata" {
                map.next_value::<Metadata>()?.0
            } else {
                map.next_value::<Value>()?
            };
            object.insert(key, value);
        }
        if let Some(at) = skipped_at.filter(|at| *at + 1 < object.len()) {
            let mut fields: Vec<(String, Value)> = object.into_iter().collect();
            if let Some(last) = fields.pop() {
                fields.insert(at, last);
            }
            object = fields.into_iter().collect();
        }
        Ok(Value::Object(object))
    }
}

/// A listed object, with apiVersion and kind (list items may lack them).
fn with_kind(mut value: Value, kind: &KindRef) -> Value {
    if let Value::Object(map) = &mut value {
        for (k, v) in [("apiVersion", &kind.api_version), ("kind", &kind.kind)] {
            if map.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                map.insert(k.to_owned(), Value::String(v.clone()));
            }
        }
    }
    value
}

impl Cluster for KubeCluster {
    fn url(&self) -> &str {
        &self.url
    }

    fn server_version(&self) -> BoxFuture<'_, Result<ServerVersion, ClusterError>> {
        Box::pin(async move {
            let info = self
                .client
                .apiserver_version()
                .await
                .map_err(|e| self.err(e, Target::Cluster))?;
            Ok(ServerVersion {
                major: info.major,
                minor: info.minor,
                git_version: info.git_version,
            })
        })
    }

    fn server_time(&self) -> BoxFuture<'_, Result<Option<jiff::Timestamp>, ClusterError>> {
        Box::pin(async move {
            let request = http::Request::get("/version")
                .body(kube::client::Body::from(Vec::new()))
                .map_err(|e| ClusterError::BadObject {
                    message: e.to_string(),
                })?;
            let response = self
                .client
                .send(request)
                .await
                .map_err(|e| self.err(e, Target::Cluster))?;
            Ok(response
                .headers()
                .get(http::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|text| jiff::fmt::rfc2822::parse(text).ok())
                .map(|zoned| zoned.timestamp()))
        })
    }

    fn discover(&self) -> BoxFuture<'_, Result<Discovery, ClusterError>> {
        Box::pin(async move {
            let mut kinds = self.kinds.lock().await;
            let fresh = self.fetch_discovery().await?;
            kinds.discovery = Some(fresh.clone());
            kinds.missing.clear();
            Ok(fresh)
        })
    }

    fn prime_discovery(&self, discovery: Discovery) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut kinds = self.kinds.lock().await;
            kinds.discovery = Some(discovery);
            kinds.missing.clear();
        })
    }

    fn get<'a>(
        &'a self,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Option<Value>, ClusterError>> {
        Box::pin(async move {
            let api = self.object_api(object).await?;
            match api.get(&object.name).await {
                Ok(o) => Ok(Some(to_value(o, &object.kind_ref()))),
                // A missing object is a 404 naming it; a 404 naming nothing is a kind the
                // server does not serve (any more: the discovery kept may be out of date).
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    if status.details.as_ref().is_some_and(|d| !d.name.is_empty()) {
                        Ok(None)
                    } else {
                        Err(ClusterError::KindNotInstalled {
                            kind: object.kind_ref(),
                        })
                    }
                }
                Err(e) => Err(self.err(e, Target::Object(object.clone()))),
            }
        })
    }

    fn list<'a>(
        &'a self,
        kind: &'a KindRef,
        namespace: Option<&'a str>,
        label_selector: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ObjectList, ClusterError>> {
        Box::pin(async move {
            let mut params = ListParams::default();
            if let Some(selector) = label_selector {
                params = params.labels(selector);
            }
            let list: kube::core::ObjectList<Value> =
                self.list_with(kind, namespace, &params).await?;
            Ok(ObjectList {
                resource_version: list.metadata.resource_version.unwrap_or_default(),
                items: list.items.into_iter().map(|o| with_kind(o, kind)).collect(),
            })
        })
    }

    fn list_unmanaged<'a>(
        &'a self,
        kind: &'a KindRef,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ObjectList, ClusterError>> {
        Box::pin(async move {
            let list: UnmanagedList = self
                .list_with(kind, namespace, &ListParams::default())
                .await?;
            Ok(ObjectList {
                resource_version: list.metadata.resource_version.unwrap_or_default(),
                items: list
                    .items
                    .unwrap_or_default()
                    .into_iter()
                    .map(|o| with_kind(o.0, kind))
                    .collect(),
            })
        })
    }

    fn list_page<'a>(
        &'a self,
        kind: &'a KindRef,
        namespace: Option<&'a str>,
        limit: u32,
        continue_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ObjectPage, ClusterError>> {
        Box::pin(async move {
            let mut params = ListParams::default().limit(limit);
            if let Some(token) = continue_token {
                params = params.continue_token(token);
            }
            let list: kube::core::ObjectList<Value> =
                self.list_with(kind, namespace, &params).await?;
            Ok(ObjectPage {
                continue_token: list.metadata.continue_.filter(|t| !t.is_empty()),
                items: list.items.into_iter().map(|o| with_kind(o, kind)).collect(),
            })
        })
    }

    fn apply<'a>(
        &'a self,
        body: &'a Value,
        options: &'a ApplyOptions,
    ) -> BoxFuture<'a, Result<Value, ClusterError>> {
        Box::pin(async move {
            let object = body_ref(body)?;
            let api = self.object_api(&object).await?;
            // A Secret's stringData is applied as data, so that meshplan owns its keys.
            let folded = super::secret_data::secret_as_data(body);
            let body = folded.as_ref().unwrap_or(body);
            let mut params = PatchParams::apply(&options.field_manager);
            params.force = options.force;
            params.dry_run = options.dry_run;
            params.field_validation = Some(ValidationDirective::Strict);
            let result = api
                .patch(&object.name, &params, &Patch::Apply(body))
                .await
                .map_err(|e| self.err(e, Target::Object(object.clone())))?;
            self.note_write(&object, options.dry_run).await;
            Ok(to_value(result, &object.kind_ref()))
        })
    }

    fn create<'a>(
        &'a self,
        body: &'a Value,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ClusterError>> {
        Box::pin(async move {
            let object = body_ref(body)?;
            let api = self.object_api(&object).await?;
            let params = PostParams {
                dry_run: options.dry_run,
                field_manager: Some(options.field_manager.clone()),
            };
            let result = api
                .create(&params, &to_dynamic(body)?)
                .await
                .map_err(|e| self.err(e, Target::Object(object.clone())))?;
            self.note_write(&object, options.dry_run).await;
            Ok(to_value(result, &object.kind_ref()))
        })
    }

    fn replace<'a>(
        &'a self,
        body: &'a Value,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ClusterError>> {
        Box::pin(async move {
            let object = body_ref(body)?;
            let api = self.object_api(&object).await?;
            let params = PostParams {
                dry_run: options.dry_run,
                field_manager: Some(options.field_manager.clone()),
            };
            let result = api
                .replace(&object.name, &params, &to_dynamic(body)?)
                .await
                .map_err(|e| self.err(e, Target::Object(object.clone())))?;
            self.note_write(&object, options.dry_run).await;
            Ok(to_value(result, &object.kind_ref()))
        })
    }

    fn delete<'a>(
        &'a self,
        object: &'a ObjectRef,
        options: &'a DeleteOptions,
    ) -> BoxFuture<'a, Result<DeleteOutcome, ClusterError>> {
        Box::pin(async move {
            let api = self.object_api(object).await?;
            let params = DeleteParams {
                dry_run: options.dry_run,
                propagation_policy: options.propagation.map(|p| match p {
                    Propagation::Foreground => PropagationPolicy::Foreground,
                    Propagation::Background => PropagationPolicy::Background,
                    Propagation::Orphan => PropagationPolicy::Orphan,
                }),
                preconditions: options.resource_version.as_ref().map(|rv| Preconditions {
                    resource_version: Some(rv.clone()),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&object.name, &params).await {
                Ok(answer) => {
                    self.note_write(object, options.dry_run).await;
                    Ok(delete_outcome(answer.left().as_ref()))
                }
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(DeleteOutcome::NotFound),
                Err(e) => Err(self.err(e, Target::Object(object.clone()))),
            }
        })
    }

    fn wait_for<'a>(
        &'a self,
        object: &'a ObjectRef,
        condition: &'a Condition,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<WaitOutcome, ClusterError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let api = self.object_api(object).await?;
            let kind = object.kind_ref();
            let config =
                watcher::Config::default().fields(&format!("metadata.name={}", object.name));
            let stream = watcher(api, config).default_backoff();
            let mut stream = std::pin::pin!(stream);
            let mut last: Option<Value> = None;
            let mut listing: Option<Value> = None;
            // Until the first complete listing, a failure is what the caller should see on
            // timeout (the cluster went away), not an empty "timed out".
            let mut listed = false;
            let mut failure: Option<kube::Error> = None;
            loop {
                let next = match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) | Ok(None) => {
                        return match failure {
                            Some(e) if !listed => Err(self.err(e, Target::Object(object.clone()))),
                            _ => Ok(WaitOutcome::TimedOut(last)),
                        };
                    }
                    Ok(Some(next)) => next,
                };
                let event = match next {
                    Ok(event) => event,
                    Err(e) => {
                        let e = match e {
                            watcher::Error::InitialListFailed(e)
                            | watcher::Error::WatchStartFailed(e)
                            | watcher::Error::WatchFailed(e) => e,
                            watcher::Error::WatchError(status) => kube::Error::Api(status),
                            watcher::Error::NoResourceVersion => continue,
                        };
                        // The backoff retries transient failures; a refusal is final.
                        if let kube::Error::Api(status) = &e
                            && matches!(status.code, 401 | 403 | 404)
                        {
                            return Err(self.err(e, Target::Object(object.clone())));
                        }
                        failure = Some(e);
                        continue;
                    }
                };
                match event {
                    watcher::Event::Init => listing = None,
                    watcher::Event::InitApply(o) => listing = Some(to_value(o, &kind)),
                    watcher::Event::InitDone => {
                        listed = true;
                        last = listing.take();
                    }
                    watcher::Event::Apply(o) => last = Some(to_value(o, &kind)),
                    watcher::Event::Delete(_) => last = None,
                }
                // Before the first complete listing, `last` says nothing about the object.
                if listed && condition(last.as_ref()) {
                    // A CRD that became established may serve a kind looked up before.
                    self.note_write(object, false).await;
                    return Ok(WaitOutcome::Met(last));
                }
            }
        })
    }
    fn wait_gone<'a>(
        &'a self,
        kind: &'a KindRef,
        namespace: Option<&'a str>,
        names: &'a BTreeSet<String>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Value>, ClusterError>> {
        Box::pin(async move {
            if names.is_empty() {
                return Ok(BTreeMap::new());
            }
            let deadline = tokio::time::Instant::now() + timeout;
            let target = || Target::Kind {
                kind: kind.clone(),
                namespace: namespace.map(str::to_owned),
            };
            let api = match self.api(kind, namespace, false).await {
                Ok(api) => api,
                // The kind is gone (its CRD deleted): so are its objects.
                Err(ClusterError::KindNotInstalled { .. }) => return Ok(BTreeMap::new()),
                Err(e) => return Err(e),
            };
            // One list and watch of the kind in the namespace (of the one object by name when
            // there is one: no listing of the others, none of their events); `left` holds the
            // names still seen (known once the first listing is complete).
            let config = match names.first() {
                Some(name) if names.len() == 1 => {
                    watcher::Config::default().fields(&format!("metadata.name={name}"))
                }
                _ => watcher::Config::default(),
            };
            let stream = watcher(api, config).default_backoff();
            let mut stream = std::pin::pin!(stream);
            let mut left: BTreeMap<String, Value> = BTreeMap::new();
            let mut listing: BTreeMap<String, Value> = BTreeMap::new();
            let mut listed = false;
            let mut failure: Option<kube::Error> = None;
            let name_of = |o: &DynamicObject| o.metadata.name.clone().unwrap_or_default();
            loop {
                let next = match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) | Ok(None) => {
                        return match failure {
                            Some(e) if !listed => Err(self.err(e, target())),
                            _ if !listed => {
                                Ok(names.iter().map(|n| (n.clone(), Value::Null)).collect())
                            }
                            _ => Ok(left),
                        };
                    }
                    Ok(Some(next)) => next,
                };
                let event = match next {
                    Ok(event) => event,
                    Err(e) => {
                        let e = match e {
                            watcher::Error::InitialListFailed(e)
                            | watcher::Error::WatchStartFailed(e)
                            | watcher::Error::WatchFailed(e) => e,
                            watcher::Error::WatchError(status) => kube::Error::Api(status),
                            watcher::Error::NoResourceVersion => continue,
                        };
                        if let kube::Error::Api(status) = &e
                            && matches!(status.code, 401 | 403 | 404)
                        {
                            return Err(self.err(e, target()));
                        }
                        failure = Some(e);
                        continue;
                    }
                };
                match event {
                    watcher::Event::Init => listing.clear(),
                    watcher::Event::InitApply(o) => {
                        let name = name_of(&o);
                        if names.contains(&name) {
                            listing.insert(name, to_value(o, kind));
                        }
                    }
                    watcher::Event::InitDone => {
                        listed = true;
                        left = std::mem::take(&mut listing);
                    }
                    watcher::Event::Apply(o) => {
                        let name = name_of(&o);
                        if listed && names.contains(&name) {
                            left.insert(name, to_value(o, kind));
                        }
                    }
                    watcher::Event::Delete(o) => {
                        left.remove(&name_of(&o));
                    }
                }
                if listed && left.is_empty() {
                    return Ok(left);
                }
            }
        })
    }
}

/// What the API server's answer to a DELETE says: a `Status` (None here: the object was
/// removed; most kinds answer so), or the object itself (`Some`: kinds whose storage returns
/// the deleted object, and every object whose deletion is pending), pending when it carries
/// `deletionTimestamp`.
fn delete_outcome(answer: Option<&DynamicObject>) -> DeleteOutcome {
    match answer {
        Some(o) if o.metadata.deletion_timestamp.is_some() => DeleteOutcome::Pending,
        Some(_) | None => DeleteOutcome::Gone,
    }
}

fn is_aggregated(list: &APIGroupDiscoveryList) -> bool {
    !list.items.is_empty()
}

fn from_aggregated(lists: [APIGroupDiscoveryList; 2]) -> Discovery {
    let mut out = Vec::new();
    for list in lists {
        for group in list.items {
            let name = group
                .metadata
                .as_ref()
                .and_then(|m| m.name.clone())
                .unwrap_or_default();
            for version in group.versions {
                let Some(v) = version.version else { continue };
                for r in version.resources {
                    let (Some(plural), Some(kind)) =
                        (r.resource, r.response_kind.and_then(|k| k.kind))
                    else {
                        continue;
                    };
                    let mut verbs = r.verbs;
                    verbs.sort();
                    let mut subresources: Vec<String> = r
                        .subresources
                        .into_iter()
                        .filter_map(|s| s.subresource)
                        .collect();
                    subresources.sort();
                    out.push(ApiResourceInfo {
                        group: name.clone(),
                        version: v.clone(),
                        kind,
                        plural,
                        namespaced: r.scope.as_deref() == Some("Namespaced"),
                        verbs,
                        subresources,
                    });
                }
            }
        }
    }
    Discovery::new(out)
}

fn from_legacy(d: &kube::Discovery) -> Discovery {
    let mut out = Vec::new();
    for group in d.groups() {
        for version in group.versions() {
            for (ar, caps) in group.versioned_resources(version) {
                let mut verbs = caps.operations.clone();
                verbs.sort();
                let mut subresources: Vec<String> = caps
                    .subresources
                    .iter()
                    .map(|(s, _)| s.plural.clone())
                    .collect();
                subresources.sort();
                let (group, version) = split_api_version(&ar.api_version);
                out.push(ApiResourceInfo {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    kind: ar.kind,
                    plural: ar.plural,
                    namespaced: caps.scope == Scope::Namespaced,
                    verbs,
                    subresources,
                });
            }
        }
    }
    Discovery::new(out)
}

/// The kubeconfig as kubectl reads it: `--kubeconfig`; else the files of `KUBECONFIG` (a
/// list, merged in order, the first file's values winning; files that do not exist are
/// skipped, as kubectl skips them); else `~/.kube/config`. Returns it with the path (or
/// list) that messages name.
fn read_kubeconfig(options: &ConnectOptions) -> Result<(Kubeconfig, PathBuf), ClusterError> {
    if let Some(path) = &options.kubeconfig {
        let config = Kubeconfig::read_from(path).map_err(|e| kubeconfig_error(path, e, false))?;
        return Ok((config, path.clone()));
    }
    let listed: Vec<PathBuf> = std::env::var_os("KUBECONFIG")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        let path = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".kube")
            .join("config");
        let config = Kubeconfig::read_from(&path).map_err(|e| kubeconfig_error(&path, e, true))?;
        return Ok((config, path));
    }
    let existing: Vec<&PathBuf> = listed.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        return Err(ClusterError::NoKubeconfig {
            message: format!(
                "none of the files KUBECONFIG lists exists ({})",
                listed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let mut merged = Kubeconfig::default();
    for path in &existing {
        let config = Kubeconfig::read_from(path).map_err(|e| kubeconfig_error(path, e, false))?;
        merged = merged
            .merge(config)
            .map_err(|e| kubeconfig_error(path, e, false))?;
    }
    let shown = if existing.len() == 1 {
        existing[0].clone()
    } else {
        std::env::join_paths(existing.iter().copied())
            .map(PathBuf::from)
            .unwrap_or_else(|_| existing[0].clone())
    };
    Ok((merged, shown))
}

fn kubeconfig_error(path: &std::path::Path, e: KubeconfigError, implicit: bool) -> ClusterError {
    match e {
        KubeconfigError::FindPath => ClusterError::NoKubeconfig {
            message: e.to_string(),
        },
        KubeconfigError::ReadConfig(ref io, _)
            if implicit && io.kind() == std::io::ErrorKind::NotFound =>
        {
            ClusterError::NoKubeconfig {
                message: format!("{} does not exist", path.display()),
            }
        }
        e => ClusterError::Kubeconfig {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A LIST's answer read without managedFields is the answer read whole, with them removed:
    /// every other field, in the same order.
    #[test]
    fn a_list_is_read_without_managed_fields() {
        let answer = serde_json::json!({
            "kind": "ConfigMapList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": "42"},
            "items": [
                {
                    "metadata": {
                        "name": "a",
                        "managedFields": [{"manager": "meshplan", "fieldsV1": {"f:data": {}}}],
                        "resourceVersion": "7",
                        "labels": {"z": "1", "a": "2"}
                    },
                    "data": {"k": "v", "n": 1.5, "list": [1, null, true]}
                },
                {"metadata": null, "managedFields": "kept: not in metadata"},
                {"metadata": {"name": "b"}}
            ]
        });
        let text = answer.to_string();
        let read: UnmanagedList = serde_json::from_str(&text).unwrap();
        assert_eq!(read.metadata.resource_version.as_deref(), Some("42"));
        let whole: kube::core::ObjectList<Value> = serde_json::from_str(&text).unwrap();
        let expected: Vec<Value> = whole
            .items
            .into_iter()
            .map(|mut item| {
                if let Some(Value::Object(meta)) = item.get_mut("metadata") {
                    meta.remove("managedFields");
                }
                item
            })
            .collect();
        let items: Vec<Value> = read
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.0)
            .collect();
        assert_eq!(items, expected);
        // The same order of keys, not only the same content.
        assert_eq!(
            serde_json::to_string(&items).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );

        let empty: UnmanagedList =
            serde_json::from_str(r#"{"metadata": {}, "items": null}"#).unwrap();
        assert!(empty.items.unwrap_or_default().is_empty());
        assert_eq!(empty.metadata.resource_version, None);
    }
}
