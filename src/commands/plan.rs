//! `meshplan plan PLAN`: load, connect, render, refresh, diff; print the change set (stdout),
//! optionally save it; exit 0 / 2 (with `--detailed-exitcode`) / 1.
//!
//! The state is opened for its records and caches only: plan writes the render cache and the
//! discovery cache, never object records.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use miette::{IntoDiagnostic as _, miette};

use crate::cli::{ExitStatus, OutputFormat, PlanArgs};
use crate::cluster::{Cluster, ConnectOptions, Discovery, KubeCluster};
use crate::diff::render_bridge::{RenderStage, StateRenderCache, desired_nodes};
use crate::diff::saved::{self, InputDigests, SavedChangeSet, StateRef};
use crate::diff::{ChangeSet, PlanError, PlanRequest, RenderFailure};
use crate::load::{LoadedPlan, load};
use crate::model::{Address, NodeSpec};
use crate::planfile::FileId;
use crate::render::{self, HelmProcess, PreviousRender, RenderOptions};
use crate::report::{HumanOptions, render_human, render_json};
use crate::state::{self, DiscoveryCacheEntry, SledStore, StateStore, WriteBatch, digest_json};

use super::{load_request, print_diagnostics};

/// How long a cached discovery is used before it is fetched again.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(300);

/// What plan, apply and destroy share: the loaded plan, its state, the cluster and the
/// render settings.
pub(super) struct Session {
    pub loaded: LoadedPlan,
    pub targets: Vec<Address>,
    pub store: Arc<dyn StateStore>,
    pub cluster: KubeCluster,
    pub parallelism: usize,
    repo_dirs: BTreeMap<String, PathBuf>,
    server_version: String,
}

/// How to open a [`Session`].
pub(super) struct SessionArgs<'a> {
    pub input: &'a crate::cli::PlanInput,
    pub cluster: &'a crate::cli::ClusterArgs,
    pub state: Option<&'a std::path::Path>,
    pub repo_dirs: &'a [String],
    pub targets: &'a [String],
    pub parallelism: u16,
    /// The command named in the writer lock.
    pub command: &'a str,
}

impl Session {
    /// Loads the plan (diagnostics printed; `Ok(None)` when it does not load), opens the
    /// state (taking the writer lock) and connects to the cluster.
    pub async fn open(args: SessionArgs<'_>) -> miette::Result<Option<Self>> {
        let loaded = match load(&load_request(args.input)) {
            Ok(loaded) => loaded,
            Err(diags) => {
                print_diagnostics(&diags);
                return Ok(None);
            }
        };
        let targets = parse_targets(&loaded, args.targets)?;
        let cwd = std::env::current_dir().into_diagnostic()?;
        let repo_dirs = parse_repo_dirs(args.repo_dirs, &cwd)?;
        let state_dir = state::resolve_dir(args.state, &cwd, &loaded.plan.name);
        let store: Arc<dyn StateStore> = Arc::new(SledStore::open(&state_dir, args.command)?);
        let cluster = KubeCluster::connect(&ConnectOptions {
            kubeconfig: args.cluster.kubeconfig.clone(),
            context: args.cluster.context.clone(),
        })
        .await?;
        let has_helm = loaded
            .plan
            .nodes
            .values()
            .any(|n| matches!(n.spec, NodeSpec::Helm(_)));
        let server_version = if has_helm {
            cluster.server_version().await?.git_version
        } else {
            String::new()
        };
        Ok(Some(Self {
            loaded,
            targets,
            store,
            cluster,
            parallelism: usize::from(args.parallelism),
            repo_dirs,
            server_version,
        }))
    }

    /// Renders, refreshes and diffs the plan against the cluster and the state's records.
    /// `previous` is what was applied last per node (render stability when inputs change);
    /// every node rendered is kept in `rendered` for the caller to store once applied.
    pub async fn change_set(
        &self,
        previous: &BTreeMap<Address, PreviousRender>,
        rendered: Option<&RenderedLog>,
        fresh_discovery: bool,
    ) -> miette::Result<ChangeSet> {
        let records = self.store.objects()?;
        let (discovery, cached) =
            discovery(&self.cluster, self.store.as_ref(), fresh_discovery).await?;
        let attempt = |discovery: Discovery| {
            let records = &records;
            async move {
                let stage = RecordingStage {
                    inner: RenderStage {
                        renderer: render::Renderer::new(
                            Arc::new(HelmProcess::from_env()),
                            Arc::new(StateRenderCache {
                                store: self.store.clone(),
                            }),
                            RenderOptions {
                                repo_dirs: self.repo_dirs.clone(),
                                discovery: Some(discovery.clone()),
                                kube_version: Some(self.server_version.clone()),
                                parallelism: self.parallelism,
                            },
                        ),
                        plan: &self.loaded.plan,
                        previous: previous.clone(),
                    },
                    log: rendered,
                };
                crate::diff::plan(
                    &self.cluster,
                    &stage,
                    PlanRequest {
                        plan: &self.loaded.plan,
                        graph: &self.loaded.graph,
                        targets: &self.targets,
                        records,
                        discovery: &discovery,
                        parallelism: self.parallelism,
                    },
                )
                .await
            }
        };
        Ok(match attempt(discovery).await {
            // A cached discovery may be out of date: a kind missing from it may have been
            // installed since, a kind in it removed (a 404).
            Err(PlanError::Diff(e)) if cached && e.may_be_stale_discovery() => {
                let (fresh, _) = self::discovery(&self.cluster, self.store.as_ref(), true).await?;
                attempt(fresh).await?
            }
            other => other?,
        })
    }

    /// The lint report of the nodes this run is about (the targets and their dependencies,
    /// or all): rendered with the same cache as the change set (chart renders are reused),
    /// checked with the cluster's facts.
    pub async fn lint(
        &self,
        previous: &BTreeMap<Address, PreviousRender>,
    ) -> miette::Result<crate::lint::LintReport> {
        let (discovery, _) = discovery(&self.cluster, self.store.as_ref(), false).await?;
        let selected =
            (!self.targets.is_empty()).then(|| self.loaded.graph.with_dependencies(&self.targets));
        // The same inputs as the change set's render: what the lint render caches is what
        // the change set would have rendered (generated material carried over).
        let inputs = render::RenderInputs {
            previous: previous.clone(),
            targets: selected.clone(),
            ..render::RenderInputs::default()
        };
        let renderer = render::Renderer::new(
            Arc::new(HelmProcess::from_env()),
            Arc::new(StateRenderCache {
                store: self.store.clone(),
            }),
            RenderOptions {
                repo_dirs: self.repo_dirs.clone(),
                discovery: Some(discovery.clone()),
                kube_version: Some(self.server_version.clone()),
                parallelism: self.parallelism,
            },
        );
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
        Ok(report)
    }

    /// The digests of the plan's inputs (saved change sets).
    pub fn input_digests(&self, change_set: &ChangeSet) -> InputDigests {
        input_digests(&self.loaded, change_set)
    }
}

pub async fn run(args: PlanArgs) -> miette::Result<ExitStatus> {
    // Ctrl-C ends the plan with the writer lock released.
    super::with_ctrl_c(|interrupt| async move {
        super::unless_interrupted(&interrupt, "interrupted while planning", plan_command(args))
            .await
    })
    .await
}

async fn plan_command(args: PlanArgs) -> miette::Result<ExitStatus> {
    let Some(session) = Session::open(SessionArgs {
        input: &args.input,
        cluster: &args.cluster,
        state: args.state.as_deref(),
        repo_dirs: &args.repo_dirs,
        targets: &args.targets,
        parallelism: args.parallelism,
        command: "plan",
    })
    .await?
    else {
        return Ok(ExitStatus::Error);
    };
    let meta = session.store.meta()?;
    let previous = load_previous(session.store.as_ref())?;
    let lint = session.lint(&previous).await?;
    show_lint(&lint, args.output);
    let change_set = session.change_set(&previous, None, false).await?;
    let (loaded, targets, cluster) = (&session.loaded, &session.targets, &session.cluster);

    match args.output {
        OutputFormat::Human => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            print!("{}", render_human(&change_set, HumanOptions { color }));
        }
        OutputFormat::Json => print!("{}", render_json(&change_set)),
    }
    if lint.blocks(false) {
        return Err(lint_stops(&lint, "the plan"));
    }
    if let Some(path) = &args.out {
        let saved = SavedChangeSet::new(
            args.input.plan.display().to_string(),
            input_digests(loaded, &change_set),
            StateRef {
                lineage: meta.lineage.clone(),
                serial: meta.serial,
            },
            cluster.url().to_owned(),
            targets.iter().map(ToString::to_string).collect(),
            change_set.clone(),
        );
        saved::write(path, &saved)?;
        eprintln!("Saved the change set to {}.", path.display());
    }
    if change_set.has_conflicts() {
        return Err(miette!(
            help = "change the plan to agree with the other manager, or let that manager give the fields up; meshplan never forces",
            "objects conflict with another field manager (see the plan above): {}",
            conflict_summary(&change_set)
        ));
    }
    Ok(if args.detailed_exitcode && change_set.has_changes() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

/// Lint findings above the plan: on stdout with the human plan, on stderr when stdout is
/// JSON. Nothing when there are none.
pub(super) fn show_lint(report: &crate::lint::LintReport, output: OutputFormat) {
    use crate::report::lint::{LintHumanOptions, render_findings, summary_line};
    if report.findings.is_empty() {
        return;
    }
    let text = |color: bool| {
        format!(
            "{}{}\n",
            render_findings(report, LintHumanOptions { color }),
            summary_line(report)
        )
    };
    match output {
        OutputFormat::Human => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            print!("{}", text(color));
        }
        OutputFormat::Json => eprint!("{}", text(false)),
    }
}

/// The error that stops `what` on error-level lint findings.
pub(super) fn lint_stops(report: &crate::lint::LintReport, what: &str) -> miette::Report {
    let n = report.errors();
    miette!(
        help = "fix the findings above, or suppress one that does not apply on its node with \
                suppress = [{ check = \"ID\", reason = \"...\" }]",
        "{what} stopped before any write: lint found {n} error-level finding{} (see above)",
        if n == 1 { "" } else { "s" }
    )
}

/// The discovery: the state's cache when fresh (and `fresh` is not asked), else fetched and
/// cached. Returns whether it came from the cache.
async fn discovery(
    cluster: &KubeCluster,
    store: &dyn StateStore,
    fresh: bool,
) -> miette::Result<(Discovery, bool)> {
    if !fresh
        && let Some(entry) = store.discovery_cache()?
        && entry.is_fresh(jiff::Timestamp::now(), DISCOVERY_MAX_AGE)
    {
        cluster.prime_discovery(entry.discovery.clone()).await;
        return Ok((entry.discovery, true));
    }
    let discovery = cluster.discover().await?;
    store.commit(WriteBatch::new().put_discovery(DiscoveryCacheEntry {
        fetched_at: jiff::Timestamp::now(),
        discovery: discovery.clone(),
    }))?;
    Ok((discovery, false))
}

fn parse_targets(loaded: &LoadedPlan, targets: &[String]) -> miette::Result<Vec<Address>> {
    targets
        .iter()
        .map(|t| match Address::parse(t) {
            Some(a) if loaded.plan.nodes.contains_key(&a) => Ok(a),
            Some(a) if loaded.plan.disabled.contains_key(&a) => Err(miette!(
                "--target {t}: the node is disabled (enabled = false) in the plan"
            )),
            _ => {
                let known: Vec<String> = loaded.plan.nodes.keys().map(|a| a.to_string()).collect();
                Err(miette!(
                    help = format!("the plan's nodes: {}", known.join(", ")),
                    "--target {t}: no node with this address in the plan"
                ))
            }
        })
        .collect()
}

pub(super) fn parse_repo_dirs(
    specs: &[String],
    cwd: &std::path::Path,
) -> miette::Result<BTreeMap<String, PathBuf>> {
    specs
        .iter()
        .map(|spec| match spec.split_once('=') {
            Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
                Ok((name.to_owned(), cwd.join(dir)))
            }
            _ => Err(miette!(
                help = "e.g. --repo-dir linkerd=plans/charts",
                "--repo-dir {spec}: expected NAME=DIR"
            )),
        })
        .collect()
}

/// Digests of the plan's files, its variable values and its charts (render keys).
fn input_digests(loaded: &LoadedPlan, change_set: &ChangeSet) -> InputDigests {
    let mut hasher = blake3::Hasher::new();
    let mut id = 0;
    while let Some(file) = loaded.sources.get(FileId(id)) {
        hasher.update(file.name.as_bytes());
        hasher.update(&[0]);
        hasher.update(&(file.text.len() as u64).to_le_bytes());
        hasher.update(file.text.as_bytes());
        id += 1;
    }
    let values: serde_json::Map<String, serde_json::Value> = loaded
        .plan
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect();
    InputDigests {
        plan: hasher.finalize().to_hex().to_string(),
        values: digest_json(&serde_json::Value::Object(values)),
        charts: change_set
            .nodes
            .iter()
            .filter_map(|n| n.render_key.clone().map(|k| (n.address.clone(), k)))
            .collect(),
    }
}

fn conflict_summary(change_set: &ChangeSet) -> String {
    let names: Vec<String> = change_set
        .objects()
        .filter(|(_, o)| o.action == crate::diff::Action::Conflict)
        .map(|(node, o)| format!("{node}: {}", o.object))
        .collect();
    format!("{} ({})", names.len(), names.join(", "))
}

/// The renders of one plan run, by node (what is stored as "previous render" once applied).
pub(super) type RenderedLog = std::sync::Mutex<BTreeMap<Address, PreviousRender>>;

/// The render stage, keeping what each node rendered to.
struct RecordingStage<'p, 'l> {
    inner: RenderStage<'p>,
    log: Option<&'l RenderedLog>,
}

impl crate::diff::Renderer for RecordingStage<'_, '_> {
    fn render<'a>(
        &'a self,
        nodes: &'a [Address],
        reads: &'a BTreeMap<Address, crate::diff::ReadValue>,
    ) -> futures::future::BoxFuture<'a, Result<Vec<crate::diff::DesiredNode>, RenderFailure>> {
        Box::pin(async move {
            let rendered = self.inner.render_nodes(nodes, reads).await?;
            if let Some(log) = self.log
                && let Ok(mut log) = log.lock()
            {
                for (address, node) in &rendered {
                    if matches!(node.status, render::NodeStatus::Rendered) {
                        log.insert(address.clone(), node.to_previous());
                    }
                }
            }
            Ok(desired_nodes(nodes, rendered))
        })
    }
}

/// The render-cache key under which a node's previous render is kept.
fn previous_key(address: &Address) -> String {
    format!("previous:{address}")
}

/// What was applied last per node of the plan (stored by apply).
pub(super) fn load_previous(
    store: &dyn StateStore,
) -> miette::Result<BTreeMap<Address, PreviousRender>> {
    let mut out = BTreeMap::new();
    let nodes: std::collections::BTreeSet<String> =
        store.objects()?.into_iter().map(|r| r.node).collect();
    for node in nodes {
        let Some(address) = Address::parse(&node) else {
            continue;
        };
        let Some(entry) = store.render_cache(&previous_key(&address))? else {
            continue;
        };
        let Some(body) = entry.objects.first() else {
            continue;
        };
        let value = store.reveal(body)?;
        if let Ok(previous) = serde_json::from_value::<PreviousRender>(value) {
            out.insert(address, previous);
        }
    }
    Ok(out)
}

/// Keeps `previous` as the last applied render of its node (Secret data encrypted).
pub(super) fn store_previous(
    store: &dyn StateStore,
    address: &Address,
    previous: &PreviousRender,
) -> miette::Result<()> {
    let value = serde_json::to_value(previous).into_diagnostic()?;
    let mut sensitive = Vec::new();
    let secret =
        |v: &serde_json::Value| v.get("kind").and_then(serde_json::Value::as_str) == Some("Secret");
    if let Some(objects) = value.get("objects").and_then(serde_json::Value::as_array) {
        for (i, o) in objects.iter().enumerate() {
            if secret(o) {
                for k in ["data", "stringData"] {
                    if o.get(k).is_some() {
                        sensitive.push(format!("/objects/{i}/{k}"));
                    }
                }
            }
        }
    }
    if let Some(docs) = value
        .pointer("/chart_output/documents")
        .and_then(serde_json::Value::as_array)
    {
        for (i, d) in docs.iter().enumerate() {
            if let Some(o) = d.get("object")
                && secret(o)
            {
                for k in ["data", "stringData"] {
                    if o.get(k).is_some() {
                        sensitive.push(format!("/chart_output/documents/{i}/object/{k}"));
                    }
                }
            }
        }
    }
    let extra: Vec<&str> = sensitive.iter().map(String::as_str).collect();
    let body = store.protect(&value, &extra)?;
    store.commit(WriteBatch::new().put_render(
        &previous_key(address),
        state::RenderCacheEntry {
            objects: vec![body],
            meta: BTreeMap::from([("kind".to_owned(), "previous-render".to_owned())]),
            created_at: jiff::Timestamp::now(),
        },
    ))?;
    Ok(())
}
