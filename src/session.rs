//! A session: what `plan`, `apply`, `destroy` and `rollback` work with once the plan is
//! loaded — the plan's state, the cluster connection, the `--target` nodes and the render
//! settings (chart repository directories, the server's version for `helm template`,
//! parallelism).
//!
//! Locks ([`Access`]): a reader (`plan`) takes none. A writer (`apply`, `destroy`,
//! `rollback`) opens a local state with its writer lock, and looks at the Lease of the plan
//! in the cluster at once (a live holder fails the command naming it, or is waited for with
//! `--lock-timeout`); it takes that Lease only when it is about to write
//! ([`Session::lock`]), from the view it had before it planned — so a no-op apply writes
//! nothing, and a run that planned while another applied finds out instead of interleaving.
//! With the `kubernetes` backend that Lease is also the state's writer lock: the state is
//! read without it and becomes writable once it is held.
//!
//! [`Session::change_set`] runs the plan stage (render → refresh → diff) against the cluster
//! and the state's records. The cluster's discovery comes from the state's cache while it is
//! fresh ([`DISCOVERY_MAX_AGE`]); when a plan fails in a way a stale discovery explains (a
//! kind installed or removed since), it is fetched again and the plan retried once. The
//! session is also the [`Replan`] of a phased apply (planning with a fresh discovery between
//! phases). [`Session::lint`] runs the lint stage with the same render settings and cache.
//!
//! A lost state is detected before anything is planned on it ([`Session::guard_lost_state`]):
//! when the state has no records but the cluster holds objects with this plan's ownership
//! marks, plan and apply stop unless asked to adopt them, and an adoption takes the material a
//! chart generates (webhook certificates) from the cluster instead of generating it anew.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;

use crate::apply::Replan;
use crate::cluster::{
    Cluster, ClusterError, ConnectOptions, Discovery, KindRef, KubeCluster, ObjectRef,
};
use crate::diff::previous::{PreviousRenders, RenderedLog};
use crate::diff::render_bridge::{
    RecordingStage, RenderStage, RenderedWith, StateRenderCache, render_reads,
};
use crate::diff::saved::InputDigests;
use crate::diff::{ChangeSet, PlanError, PlanRequest};
use crate::load::LoadedPlan;
use crate::model::{Address, NodeSpec, StateBackend};
use crate::render::{
    self, ChartDocument, ChartOutput, HelmProcess, MANAGED_BY_LABEL, MANAGED_BY_VALUE, MemoryCache,
    PLAN_ANNOTATION, PreviousRender, RenderCache, RenderOptions,
};
use crate::state;
use crate::state::crypto::{KEY_ENV, KEY_FILE};
use crate::state::location::{self, Overrides, Resolved};
use crate::state::{
    DiscoveryCacheEntry, KubeStore, LeaseGuard, LeaseLock, LeaseView, Remote, SledStore,
    StateError, StateLocation, StateStore, WriteBatch,
};

/// How long a cached discovery is used before it is fetched again.
pub const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(300);

/// The loaded plan, its state, the cluster and the render settings.
pub struct Session {
    pub loaded: LoadedPlan,
    /// The `--target` nodes (empty: the whole plan).
    pub targets: Vec<Address>,
    pub store: Arc<dyn StateStore>,
    /// Where the state is, as this session resolved it.
    pub state_location: String,
    pub cluster: KubeCluster,
    pub parallelism: usize,
    /// Where the state lives and where the apply's Lease lives.
    pub resolved: Resolved,
    repo_dirs: BTreeMap<String, PathBuf>,
    /// The server's version (for `helm template`; empty when the plan has no helm node).
    server_version: String,
    /// The kubernetes backend's store (the same as `store`), to make it writable.
    kube: Option<Arc<KubeStore>>,
    /// A writer's Lease: how it looked before planning, and once taken, the guard.
    lease: Option<Lease>,
    command: String,
    /// When a writer stops waiting for a lock (`--lock-timeout`).
    deadline: Instant,
    /// The database was created by this session beside a key file of an earlier one.
    database_lost: bool,
    /// Renders do not use the state's render cache (an adoption: the cache may hold
    /// material generated before the live one was found).
    uncached_renders: std::sync::atomic::AtomicBool,
    /// The renders are shown, never applied: generated keys may be stand-ins
    /// ([`RenderOptions::stand_in_keys`]).
    stand_in_keys: bool,
    /// helm's version, shared by this session's renders; asked (or read from the state's
    /// cache) in the background from the session's opening on, when the plan has a helm node
    /// and the command renders (plan, apply).
    helm_version: Arc<tokio::sync::OnceCell<String>>,
    /// The last lint's render, for the change set that follows it with the same inputs.
    lint_render: std::sync::Mutex<Option<LintRender>>,
    /// The LISTs of the next change set's refresh, started ahead ([`Session::list_ahead`]).
    ahead: std::sync::Mutex<Option<Ahead>>,
}

/// The state's records as [`Session::list_ahead`] read them, and the LISTs it started from
/// them: the change set that follows takes both when the state's serial is still the same.
struct Ahead {
    serial: u64,
    records: Vec<state::ObjectRecord>,
    lists: crate::cluster::ListsAhead,
}

/// A lint's render and what it was rendered with: a change set rendering the same nodes
/// with the same read values over the same state, discovery and previous renders takes its
/// nodes instead of rendering them again (every node of a plan is otherwise rendered twice).
struct LintRender {
    serial: u64,
    uncached: bool,
    discovery: Discovery,
    previous: PreviousRenders,
    rendered: RenderedWith,
}

/// The state's render cache for a task that may outlive the session: it does not keep the
/// state open (a closed state neither has nor keeps anything).
struct SessionCache(std::sync::Weak<dyn StateStore>);

impl RenderCache for SessionCache {
    fn get(&self, key: &str) -> Result<Option<serde_json::Value>, render::CacheError> {
        match self.0.upgrade() {
            Some(store) => StateRenderCache { store }.get(key),
            None => Ok(None),
        }
    }

    fn put(&self, key: &str, value: &serde_json::Value) -> Result<(), render::CacheError> {
        match self.0.upgrade() {
            Some(store) => StateRenderCache { store }.put(key, value),
            None => Ok(()),
        }
    }
}

/// A writer's Lease.
struct Lease {
    lock: LeaseLock,
    view: LeaseView,
    held: Option<LeaseGuard>,
}

/// Whether a command writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads the state and the cluster; takes no lock.
    Read,
    /// Writes (apply, destroy, rollback): takes the locks.
    Write,
}

/// How many objects with this plan's marks a lost state's message names as examples.
const LOST_STATE_EXAMPLES: usize = 3;

/// The values of reads whose object exists, by read node ([`Session::reads_now`]).
pub type ReadsNow = BTreeMap<Address, crate::diff::ReadValue>;

static NO_READS: ReadsNow = BTreeMap::new();

/// What an adoption of a lost state starts from.
#[derive(Debug)]
pub struct Adoption {
    /// How many objects in the cluster carry this plan's marks.
    pub count: usize,
    /// A few of them, as examples.
    pub found: Vec<String>,
    /// The previous render of each helm node, taken from the cluster (generated material is
    /// carried over from it).
    pub previous: PreviousRenders,
}

/// How to open a [`Session`] for a loaded plan.
pub struct SessionArgs<'a> {
    /// `--kubeconfig` and `--context`.
    pub connect: ConnectOptions,
    /// `--state` (None: the plan's location) and `--state-backend`.
    pub state: Overrides<'a>,
    /// `--repo-dir NAME=DIR`.
    pub repo_dirs: &'a [String],
    /// `--target` addresses.
    pub targets: &'a [String],
    pub parallelism: u16,
    /// The command named in the locks.
    pub command: &'a str,
    pub access: Access,
    /// `--lock-timeout`: how long to wait for a lock (or, reading a local state, for the
    /// writer that has it open).
    pub lock_timeout: Duration,
}

/// Why a session could not be opened or could not plan.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SessionError {
    #[error("--target {target}: the node is disabled (enabled = false) in the plan")]
    DisabledTarget { target: String },

    #[error("--target {target}: no node with this address in the plan")]
    #[diagnostic(help("the plan's nodes: {}", known.join(", ")))]
    UnknownTarget { target: String, known: Vec<String> },

    #[error("--repo-dir {spec}: expected NAME=DIR")]
    #[diagnostic(help("e.g. --repo-dir linkerd=plans/charts"))]
    RepoDir { spec: String },

    #[error("{0}")]
    WorkingDirectory(std::io::Error),

    #[error(
        "the state at {location} has no records of plan {plan}, but the cluster holds {count} object{} with its ownership marks (label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}, annotation {PLAN_ANNOTATION}={plan}), e.g. {}{}",
        if *count == 1 { "" } else { "s" },
        found.join(", "),
        if *database_lost { format!("; the state database is missing beside an existing {KEY_FILE}: it was lost or removed") } else { String::new() }
    )]
    #[diagnostic(code(session::lost_state), help("{help}"))]
    LostState {
        plan: String,
        location: String,
        /// How many objects carry the plan's marks.
        count: usize,
        /// A few of them, as examples.
        found: Vec<String>,
        database_lost: bool,
        /// The ways out, for this state's backend.
        help: String,
    },

    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] StateError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Cluster(#[from] ClusterError),

    /// The lint stage could not gather its input.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lint(#[from] crate::lint::PrepareError),

    /// The plan stage's error, boxed: it is large, and a session's results are passed around.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(Box<PlanError>),
}

impl From<PlanError> for SessionError {
    fn from(e: PlanError) -> Self {
        Self::Plan(Box::new(e))
    }
}

/// A boxed plan error is shown as the plan error.
impl miette::Diagnostic for Box<PlanError> {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        (**self).code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        (**self).severity()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        (**self).help()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        (**self).url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        (**self).source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        (**self).labels()
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        (**self).related()
    }
    fn diagnostic_source(&self) -> Option<&dyn miette::Diagnostic> {
        (**self).diagnostic_source()
    }
}

impl Session {
    /// Opens the state of `loaded` and connects to the cluster; a writer also looks at the
    /// plan's Lease (see the module docs).
    pub async fn open(loaded: LoadedPlan, args: SessionArgs<'_>) -> Result<Self, SessionError> {
        let targets = parse_targets(&loaded, args.targets)?;
        let cwd = std::env::current_dir().map_err(SessionError::WorkingDirectory)?;
        let repo_dirs = parse_repo_dirs(args.repo_dirs, &cwd)?;
        let resolved = location::resolve(
            &loaded.plan.name,
            &loaded.plan.base_dir,
            &loaded.plan.state,
            args.state,
            &cwd,
        )?;
        let state_location = match &resolved.location {
            StateLocation::Local { dir } => dir.display().to_string(),
            StateLocation::Kubernetes(at) => at.describe(),
        };
        let deadline = Instant::now() + args.lock_timeout;
        // A database missing beside the key file of an earlier one (looked at before opening
        // creates it).
        let database_lost = match &resolved.location {
            StateLocation::Local { dir } => {
                !SledStore::exists(dir)
                    && std::env::var_os(KEY_ENV).is_none()
                    && dir.join(KEY_FILE).is_file()
            }
            StateLocation::Kubernetes(_) => false,
        };
        // A local state is opened while the client is made (a kubeconfig's exec plugin may take
        // a while); its refusal (the lock) comes first when both fail.
        let open_local = async {
            let StateLocation::Local { dir } = &resolved.location else {
                return Ok(None);
            };
            let access = match args.access {
                Access::Read => state::Access::Read(args.lock_timeout),
                Access::Write => state::Access::Write(args.lock_timeout),
            };
            let (dir, command) = (dir.clone(), args.command.to_owned());
            let store =
                tokio::task::spawn_blocking(move || SledStore::open_for(&dir, &command, access))
                    .await
                    .map_err(|e| SessionError::WorkingDirectory(std::io::Error::other(e)))??;
            Ok::<_, SessionError>(Some(Arc::new(store)))
        };
        let (local, cluster) = tokio::join!(open_local, KubeCluster::connect(&args.connect));
        let local: Option<Arc<SledStore>> = local?;
        let cluster = cluster?;
        let needs_remote = local.is_none() || args.access == Access::Write;
        let remote = if needs_remote {
            Some(Remote::connect(cluster.kube_config().clone())?)
        } else {
            None
        };
        let lease = match (&remote, args.access) {
            (Some(remote), Access::Write) => {
                let lock = LeaseLock::new(remote.clone(), resolved.lease.clone());
                let view = lock
                    .wait_takeable(deadline.saturating_duration_since(Instant::now()))
                    .await?;
                Some(Lease {
                    lock,
                    view,
                    held: None,
                })
            }
            _ => None,
        };
        let (store, kube): (Arc<dyn StateStore>, Option<Arc<KubeStore>>) =
            match (&resolved.location, local, remote) {
                (_, Some(local), _) => (local, None),
                (StateLocation::Kubernetes(at), None, Some(remote)) => {
                    let at = at.clone();
                    let kube = tokio::task::spawn_blocking(move || KubeStore::open(remote, at))
                        .await
                        .map_err(|e| SessionError::WorkingDirectory(std::io::Error::other(e)))??;
                    let kube = Arc::new(kube);
                    (kube.clone(), Some(kube))
                }
                _ => unreachable!("a kubernetes state always has its client"),
            };
        let has_helm = loaded
            .plan
            .nodes
            .values()
            .any(|n| matches!(n.spec, NodeSpec::Helm(_)));
        let helm_version = Arc::new(tokio::sync::OnceCell::new());
        // Only the commands that render (destroy and rollback work from the records).
        let renders = matches!(args.command, "plan" | "apply");
        if has_helm && renders {
            // The key of every chart render holds helm's version: asked while the session
            // connects and discovers, not before the first `helm template`.
            tokio::spawn(render::prime_helm_version(
                Arc::new(HelmProcess::from_env()),
                Arc::new(SessionCache(Arc::downgrade(&store))),
                helm_version.clone(),
            ));
        }
        let server_version = if has_helm {
            cluster.server_version().await?.git_version
        } else {
            String::new()
        };
        Ok(Self {
            loaded,
            targets,
            store,
            state_location,
            cluster,
            parallelism: usize::from(args.parallelism),
            resolved,
            repo_dirs,
            server_version,
            kube,
            lease,
            command: args.command.to_owned(),
            deadline,
            database_lost,
            uncached_renders: std::sync::atomic::AtomicBool::new(false),
            stand_in_keys: false,
            helm_version,
            lint_render: std::sync::Mutex::new(None),
            ahead: std::sync::Mutex::new(None),
        })
    }

    /// Renders for a plan that is only shown (not saved for an apply): charts that generate
    /// keys may render with cheap stand-ins ([`RenderOptions::stand_in_keys`]).
    pub fn shown_only(mut self) -> Self {
        self.stand_in_keys = true;
        self
    }

    /// Which backend the state is in.
    pub fn backend(&self) -> StateBackend {
        self.resolved.location.backend()
    }

    /// Takes the plan's Lease (a writer, before its first write), from the view it had when
    /// it was opened (or last refreshed); with the kubernetes backend the state becomes
    /// writable. Fails naming the holder when another run took it meanwhile
    /// ([`StateError::LeaseHeld`]) or wrote the state ([`StateError::ConcurrentWrite`]):
    /// see [`Session::may_retry`].
    pub async fn lock(&mut self) -> Result<(), SessionError> {
        let Some(lease) = self.lease.as_mut() else {
            return Err(StateError::ReadOnly {
                path: PathBuf::from(self.store.describe()),
                what: "taking the lock",
            }
            .into());
        };
        if lease.held.is_some() {
            return Ok(());
        }
        let guard = lease.lock.acquire_from(&lease.view, &self.command).await?;
        if let Some(kube) = &self.kube {
            let kube = kube.clone();
            let (result, guard) = tokio::task::spawn_blocking(move || {
                let r = kube.become_writer(&guard);
                (r, guard)
            })
            .await
            .map_err(|e| SessionError::WorkingDirectory(std::io::Error::other(e)))?;
            if let Err(e) = result {
                let _ = guard.release().await;
                return Err(e.into());
            }
            lease.held = Some(guard);
        } else {
            lease.held = Some(guard);
        }
        Ok(())
    }

    /// The Lease this session holds, if any.
    pub fn lease(&self) -> Option<&LeaseGuard> {
        self.lease.as_ref().and_then(|l| l.held.as_ref())
    }

    /// Whether a failed [`Session::lock`] may be tried again (after [`Session::refresh`]): the
    /// error is a lock taken or a state written by another run, and `--lock-timeout` has
    /// time left.
    pub fn may_retry(&self, error: &SessionError) -> bool {
        matches!(
            error,
            SessionError::State(
                StateError::LeaseHeld { .. }
                    | StateError::LeaseChanged { .. }
                    | StateError::ConcurrentWrite { .. }
            )
        ) && Instant::now() < self.deadline
    }

    /// Waits (within `--lock-timeout`) until the Lease can be taken again, and reads the
    /// state anew (kubernetes backend): what to do before planning again.
    pub async fn refresh(&mut self) -> Result<(), SessionError> {
        let Some(lease) = self.lease.as_mut() else {
            return Ok(());
        };
        lease.view = lease
            .lock
            .wait_takeable(self.deadline.saturating_duration_since(Instant::now()))
            .await?;
        if let (Some(kube), StateLocation::Kubernetes(at)) = (&self.kube, &self.resolved.location) {
            let remote = kube.remote();
            let at = at.clone();
            let fresh = tokio::task::spawn_blocking(move || KubeStore::open(remote, at))
                .await
                .map_err(|e| SessionError::WorkingDirectory(std::io::Error::other(e)))??;
            let fresh = Arc::new(fresh);
            self.store = fresh.clone();
            self.kube = Some(fresh);
        }
        Ok(())
    }

    /// Ends the session's writes: removes chunks nothing references (kubernetes backend) and
    /// releases the Lease. Errors are reported by the caller as warnings: the Lease expires
    /// anyway.
    pub async fn release(&mut self) -> Result<(), SessionError> {
        let held = self.lease.as_mut().and_then(|l| l.held.take());
        let Some(guard) = held else {
            return Ok(());
        };
        let mut first: Option<SessionError> = None;
        if let Some(kube) = &self.kube
            && !guard.lost().is_cancelled()
        {
            let kube = kube.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || kube.finish()).await {
                first = Some(e.into());
            }
        }
        if let Err(e) = guard.release().await {
            first.get_or_insert(e.into());
        }
        match first {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Stops a plan on a lost state: the state has no records (and no unfinished run), yet
    /// the cluster holds objects with this plan's ownership marks, looked for in the kinds and
    /// namespaces of the objects of `change_set` that exist ([`SessionError::LostState`],
    /// counting them and naming a few). With `adopt`, returns what the adoption starts from
    /// instead (and renders skip the render cache from then on); `None` when the state is not
    /// lost.
    pub async fn guard_lost_state(
        &self,
        change_set: &ChangeSet,
        adopt: bool,
    ) -> Result<Option<Adoption>, SessionError> {
        // An unfinished run's journal knows the objects it wrote: apply finishes or rolls
        // it back first, and a plan meanwhile is not about a lost state.
        if self.store.has_objects()? || !self.store.unfinished_runs()?.is_empty() {
            return Ok(None);
        }
        let plan = self.loaded.plan.name.as_str();
        let existing: Vec<(&str, &crate::diff::ObjectChange)> = change_set
            .objects()
            .filter(|(_, o)| o.live_resource_version.is_some())
            .collect();
        let marked = self.marked_objects(&existing).await?;
        if marked.is_empty() {
            return Ok(None);
        }
        // Examples: the plan's own objects first, in the change set's order.
        let mut found: Vec<String> = Vec::new();
        for r in existing
            .iter()
            .map(|(_, o)| &o.object)
            .filter(|r| marked.contains_key(*r))
            .chain(marked.keys())
        {
            let text = r.to_string();
            if !found.contains(&text) {
                found.push(text);
            }
            if found.len() == LOST_STATE_EXAMPLES {
                break;
            }
        }
        if !adopt {
            return Err(SessionError::LostState {
                plan: plan.to_owned(),
                location: self.state_location.clone(),
                count: marked.len(),
                found,
                database_lost: self.database_lost,
                help: self.lost_state_help(),
            });
        }
        let mut previous = PreviousRenders::new();
        for (node, o) in &existing {
            let Some(address) = Address::parse(node) else {
                continue;
            };
            if !matches!(
                self.loaded.plan.node(&address).map(|n| &n.spec),
                Some(NodeSpec::Helm(_))
            ) {
                continue;
            }
            let live = match marked.get(&o.object) {
                Some(body) => body.clone(),
                None => match self.cluster.get(&o.object).await? {
                    Some(body) => body,
                    None => continue,
                },
            };
            let entry = previous.entry(address).or_insert_with(|| PreviousRender {
                chart_output: Some(ChartOutput::default()),
                ..PreviousRender::default()
            });
            if let Some(output) = entry.chart_output.as_mut() {
                // A chart's document names its namespace or leaves it to the release: the
                // live object stands for both.
                let mut without_namespace = live.clone();
                if let Some(meta) = without_namespace
                    .get_mut("metadata")
                    .and_then(serde_json::Value::as_object_mut)
                {
                    meta.remove("namespace");
                }
                for mut object in [live, without_namespace] {
                    with_string_data(&mut object);
                    output.documents.push(ChartDocument {
                        source: None,
                        object,
                        volatile_paths: Default::default(),
                        sensitive_paths: Default::default(),
                    });
                }
            }
        }
        self.uncached_renders
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(Adoption {
            count: marked.len(),
            found,
            previous,
        }))
    }

    /// The live objects with this plan's ownership marks, of the kinds and in the namespaces
    /// of `existing`: one list by the managed-by label per kind and namespace (when a list is
    /// refused, e.g. by RBAC, each object of `existing` there is read instead).
    async fn marked_objects(
        &self,
        existing: &[(&str, &crate::diff::ObjectChange)],
    ) -> Result<BTreeMap<ObjectRef, serde_json::Value>, SessionError> {
        use futures::StreamExt as _;
        let plan = self.loaded.plan.name.as_str();
        let mut scopes: BTreeMap<(KindRef, Option<String>), Vec<&ObjectRef>> = BTreeMap::new();
        for (_, o) in existing {
            scopes
                .entry((o.object.kind_ref(), o.object.namespace.clone()))
                .or_default()
                .push(&o.object);
        }
        let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
        let selector = selector.as_str();
        let lists = futures::stream::iter(scopes.iter())
            .map(|((kind, namespace), objects)| async move {
                match self
                    .cluster
                    .list(kind, namespace.as_deref(), Some(selector))
                    .await
                {
                    Ok(list) => Ok(list.items),
                    Err(_) => {
                        let mut items = Vec::new();
                        for object in objects {
                            if let Some(body) = self.cluster.get(object).await? {
                                items.push(body);
                            }
                        }
                        Ok::<_, ClusterError>(items)
                    }
                }
            })
            .buffer_unordered(self.parallelism.max(1))
            .collect::<Vec<_>>()
            .await;
        let mut marked = BTreeMap::new();
        for items in lists {
            for body in items? {
                if crate::apply::is_owned(&body, plan)
                    && let Some(r) = ObjectRef::from_object(&body)
                {
                    marked.insert(r, body);
                }
            }
        }
        Ok(marked)
    }

    /// How to go on from a lost state, for this session's backend.
    fn lost_state_help(&self) -> String {
        let restore = match &self.resolved.location {
            StateLocation::Local { dir } => format!(
                "restore the state directory {} from a backup (its db/ beside {KEY_FILE}), or pass --state with the directory that holds the state these objects were applied with",
                dir.display()
            ),
            StateLocation::Kubernetes(at) => format!(
                "restore the state's Secrets in namespace {} ({} and its chunks, label {}={}) from a backup of the cluster, or point --state or the plan's [state] table at the state these objects were applied with",
                at.namespace,
                at.index_name(),
                state::STATE_LABEL,
                at.name
            ),
        };
        format!(
            "{restore}; or, to take the objects over as they are, run again with --adopt-lost-state (plan --out FILE --adopt-lost-state saves the adoption for apply FILE): their records are written on apply, and material the charts generate (webhook certificates, tokens) is taken from the cluster instead of being generated anew"
        )
    }

    /// Renders, refreshes and diffs the plan against the cluster and the state's records.
    /// `previous` is what was applied last per node (render stability when inputs change);
    /// every node rendered is kept in `rendered` for the caller to store once applied.
    /// `reads_now`: the values of reads read already ([`Self::reads_now`]) while nothing was
    /// applied since; None reads them now.
    pub async fn change_set(
        &self,
        previous: &PreviousRenders,
        rendered: Option<&RenderedLog>,
        fresh_discovery: bool,
        reads_now: Option<&ReadsNow>,
    ) -> Result<ChangeSet, SessionError> {
        let (records, lists) = match self.ahead.lock().ok().and_then(|mut a| a.take()) {
            Some(ahead) if ahead.serial == self.store.meta()?.serial => {
                (ahead.records, Some(ahead.lists))
            }
            _ => (self.store.objects()?, None),
        };
        let cluster = crate::cluster::WithListsAhead::new(&self.cluster, lists);
        let (discovery, cached) = self.discovery(fresh_discovery).await?;
        let lint_rendered = std::sync::Mutex::new(self.lint_render_for(previous, &discovery)?);
        let attempt = |discovery: Discovery| {
            let records = &records;
            let lint_rendered = &lint_rendered;
            let cluster = &cluster;
            async move {
                let read = match reads_now {
                    Some(_) => None,
                    None => Some(self.read_now(&discovery).await?),
                };
                let reads_now = reads_now.or(read.as_ref()).unwrap_or(&NO_READS);
                let stage = RecordingStage {
                    inner: RenderStage {
                        renderer: render::Renderer::new(
                            Arc::new(HelmProcess::from_env()),
                            self.render_cache(),
                            RenderOptions {
                                repo_dirs: self.repo_dirs.clone(),
                                discovery: Some(discovery.clone()),
                                kube_version: Some(self.server_version.clone()),
                                parallelism: self.parallelism,
                                stand_in_keys: self.stand_in_keys,
                            },
                        )
                        .with_helm_version(self.helm_version.clone()),
                        plan: &self.loaded.plan,
                        previous: previous.clone(),
                        rendered: std::sync::Mutex::new(
                            lint_rendered
                                .lock()
                                .map(|mut r| std::mem::take(&mut *r))
                                .unwrap_or_default(),
                        ),
                    },
                    log: rendered,
                };
                crate::diff::plan(
                    cluster,
                    &stage,
                    PlanRequest {
                        plan: &self.loaded.plan,
                        graph: &self.loaded.graph,
                        targets: &self.targets,
                        records,
                        discovery: &discovery,
                        parallelism: self.parallelism,
                        reads_now,
                    },
                )
                .await
            }
        };
        let first = attempt(discovery).await;
        // Lists started ahead serve the first attempt only.
        cluster.forget();
        Ok(match first {
            // A cached discovery may be out of date: a kind missing from it may have been
            // installed since, a kind in it removed (a 404).
            Err(PlanError::Diff(e)) if cached && e.may_be_stale_discovery() => {
                let (fresh, _) = self.discovery(true).await?;
                attempt(fresh).await?
            }
            other => other?,
        })
    }

    /// Starts the LISTs that the refresh of the next [`Self::change_set`] will send for the
    /// objects the state records (at most `parallelism` of them; see
    /// [`crate::diff::list_keys`]), so the API server answers them while the plan renders
    /// and lints. The records read are kept for that change set too. Without targets only
    /// (the refresh of a targeted plan reads fewer objects); when the state or the
    /// discovery cannot be read, nothing is started and the change set reads as usual.
    pub async fn list_ahead(&self) {
        if !self.targets.is_empty() {
            return;
        }
        let Ok((discovery, _)) = self.discovery(false).await else {
            return;
        };
        let (Ok(meta), Ok(records)) = (self.store.meta(), self.store.objects()) else {
            return;
        };
        let keys = crate::diff::list_keys(records.iter().map(|r| &r.object))
            .into_iter()
            .filter(|(kind, _)| discovery.find(kind).is_some())
            .take(self.parallelism.max(1));
        let lists = crate::cluster::ListsAhead::start(&self.cluster, keys);
        if let Ok(mut ahead) = self.ahead.lock() {
            *ahead = Some(Ahead {
                serial: meta.serial,
                records,
                lists,
            });
        }
    }

    /// The values of the reads in scope whose object exists now: the lint and the plan of one
    /// command render with the same values (pass them to both while nothing is applied in
    /// between).
    pub async fn reads_now(&self) -> Result<ReadsNow, SessionError> {
        let (discovery, _) = self.discovery(false).await?;
        Ok(self.read_now(&discovery).await?)
    }

    async fn read_now(&self, discovery: &Discovery) -> Result<ReadsNow, PlanError> {
        let selected =
            (!self.targets.is_empty()).then(|| self.loaded.graph.with_dependencies(&self.targets));
        Ok(crate::diff::reads_now(
            &self.cluster,
            &self.loaded.plan,
            discovery,
            selected.as_ref(),
        )
        .await?)
    }

    /// The line every plan and apply starts with: which cluster (server, context) and which
    /// state this session works on.
    pub fn header(&self) -> String {
        crate::report::session_header(
            self.cluster.url(),
            self.cluster.context(),
            &self.state_location,
        )
    }

    /// The state's render cache, or (adopting a lost state) one of this render only.
    fn render_cache(&self) -> Arc<dyn RenderCache> {
        if self
            .uncached_renders
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            Arc::new(MemoryCache::new())
        } else {
            Arc::new(StateRenderCache {
                store: self.store.clone(),
            })
        }
    }

    /// The lint report of the nodes this session is about (the targets and their
    /// dependencies, or all): rendered with the change set's inputs and cache (`previous`:
    /// generated material is carried over the same way, so the change set's render reuses
    /// this one), checked with the cluster's facts.
    pub async fn lint(
        &self,
        previous: &PreviousRenders,
        reads_now: &ReadsNow,
    ) -> Result<crate::lint::LintReport, SessionError> {
        let (discovery, _) = self.discovery(false).await?;
        let selected =
            (!self.targets.is_empty()).then(|| self.loaded.graph.with_dependencies(&self.targets));
        let inputs = render::RenderInputs {
            reads: render_reads(reads_now),
            previous: previous.clone(),
            targets: selected.clone(),
            ..render::RenderInputs::default()
        };
        let renderer = render::Renderer::new(
            Arc::new(HelmProcess::from_env()),
            self.render_cache(),
            RenderOptions {
                repo_dirs: self.repo_dirs.clone(),
                discovery: Some(discovery.clone()),
                kube_version: Some(self.server_version.clone()),
                parallelism: self.parallelism,
                stand_in_keys: self.stand_in_keys,
            },
        )
        .with_helm_version(self.helm_version.clone());
        let prepared = crate::lint::prepare(
            &self.loaded.plan,
            &renderer,
            &inputs,
            Some((&self.cluster, &discovery)),
        )
        .await?;
        let mut report = crate::lint::run(&crate::lint::LintInput {
            plan: &self.loaded.plan,
            sources: &self.loaded.sources,
            render: &prepared.render,
            charts: &prepared.charts,
            cluster: prepared.facts.as_ref(),
        });
        if let Some(selected) = selected {
            report.findings.retain(|f| selected.contains(&f.node));
        }
        let kept = LintRender {
            serial: self.store.meta()?.serial,
            uncached: self
                .uncached_renders
                .load(std::sync::atomic::Ordering::Relaxed),
            discovery,
            previous: previous.clone(),
            rendered: RenderedWith {
                reads: reads_now.clone(),
                nodes: prepared.render.nodes,
            },
        };
        if let Ok(mut slot) = self.lint_render.lock() {
            *slot = Some(kept);
        }
        Ok(report)
    }

    /// The nodes of the last lint's render when it was rendered with the same state (serial,
    /// render cache use), `discovery` and `previous` renders; taken, so that only the change
    /// set that follows the lint uses them.
    fn lint_render_for(
        &self,
        previous: &PreviousRenders,
        discovery: &Discovery,
    ) -> Result<RenderedWith, SessionError> {
        let Some(kept) = self.lint_render.lock().ok().and_then(|mut r| r.take()) else {
            return Ok(RenderedWith::default());
        };
        let same = kept.serial == self.store.meta()?.serial
            && kept.uncached
                == self
                    .uncached_renders
                    .load(std::sync::atomic::Ordering::Relaxed)
            && kept.discovery == *discovery
            && kept.previous == *previous;
        Ok(if same {
            kept.rendered
        } else {
            RenderedWith::default()
        })
    }

    /// The digests of the plan's inputs (saved change sets).
    pub fn input_digests(&self, change_set: &ChangeSet) -> InputDigests {
        InputDigests::of(&self.loaded, change_set)
    }

    /// The discovery: the state's cache when fresh (and `fresh` is not asked), else fetched
    /// and cached. Returns whether it came from the cache.
    async fn discovery(&self, fresh: bool) -> Result<(Discovery, bool), SessionError> {
        let store = self.store.as_ref();
        if !fresh
            && let Some(entry) = store.discovery_cache()?
            && entry.is_fresh(jiff::Timestamp::now(), DISCOVERY_MAX_AGE)
        {
            self.cluster.prime_discovery(entry.discovery.clone()).await;
            return Ok((entry.discovery, true));
        }
        let discovery = self.cluster.discover().await?;
        store.commit(WriteBatch::new().put_discovery(DiscoveryCacheEntry {
            fetched_at: jiff::Timestamp::now(),
            discovery: discovery.clone(),
        }))?;
        Ok((discovery, false))
    }
}

impl Replan for Session {
    type Error = SessionError;

    /// Plans again with a fresh discovery.
    fn replan<'a>(
        &'a self,
        previous: &'a PreviousRenders,
        rendered: &'a RenderedLog,
    ) -> LocalBoxFuture<'a, Result<ChangeSet, SessionError>> {
        Box::pin(self.change_set(previous, Some(rendered), true, None))
    }
}

/// A live Secret as a chart may have written it: its `data` also as `stringData` (the values
/// that are text), so that a chart's `stringData` finds its generated values.
fn with_string_data(object: &mut serde_json::Value) {
    use base64::Engine as _;
    if object.get("kind").and_then(serde_json::Value::as_str) != Some("Secret") {
        return;
    }
    let Some(data) = object.get("data").and_then(serde_json::Value::as_object) else {
        return;
    };
    let text: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .filter_map(|(k, v)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str()?)
                .ok()?;
            Some((k.clone(), String::from_utf8(bytes).ok()?.into()))
        })
        .collect();
    if let Some(map) = object.as_object_mut() {
        map.insert("stringData".to_owned(), text.into());
    }
}

/// The `--target` addresses, each a node of the plan.
pub(crate) fn parse_targets(
    loaded: &LoadedPlan,
    targets: &[String],
) -> Result<Vec<Address>, SessionError> {
    targets
        .iter()
        .map(|t| match Address::parse(t) {
            Some(a) if loaded.plan.nodes.contains_key(&a) => Ok(a),
            Some(a) if loaded.plan.disabled.contains_key(&a) => {
                Err(SessionError::DisabledTarget { target: t.clone() })
            }
            _ => Err(SessionError::UnknownTarget {
                target: t.clone(),
                known: loaded.plan.nodes.keys().map(|a| a.to_string()).collect(),
            }),
        })
        .collect()
}

/// The `--repo-dir NAME=DIR` settings, directories relative to `cwd`.
pub fn parse_repo_dirs(
    specs: &[String],
    cwd: &Path,
) -> Result<BTreeMap<String, PathBuf>, SessionError> {
    specs
        .iter()
        .map(|spec| match spec.split_once('=') {
            Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
                Ok((name.to_owned(), cwd.join(dir)))
            }
            _ => Err(SessionError::RepoDir { spec: spec.clone() }),
        })
        .collect()
}
