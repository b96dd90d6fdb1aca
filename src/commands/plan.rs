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
use crate::diff::render_bridge::{RenderStage, StateRenderCache, render_discovery};
use crate::diff::saved::{self, InputDigests, SavedChangeSet, StateRef};
use crate::diff::{ChangeSet, DiffError, PlanError, PlanRequest};
use crate::load::{LoadedPlan, load};
use crate::model::{Address, NodeSpec};
use crate::planfile::FileId;
use crate::render::{self, HelmProcess, RenderOptions};
use crate::report::{HumanOptions, render_human, render_json};
use crate::state::{self, DiscoveryCacheEntry, SledStore, StateStore, WriteBatch, digest_json};

use super::{load_request, print_diagnostics};

/// How long a cached discovery is used before it is fetched again.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(300);

pub async fn run(args: PlanArgs) -> miette::Result<ExitStatus> {
    let loaded = match load(&load_request(&args.input)) {
        Ok(loaded) => loaded,
        Err(diags) => {
            print_diagnostics(&diags);
            return Ok(ExitStatus::Error);
        }
    };
    let targets = parse_targets(&loaded, &args.targets)?;
    let cwd = std::env::current_dir().into_diagnostic()?;
    let repo_dirs = parse_repo_dirs(&args.repo_dirs, &cwd)?;
    let state_dir = state::resolve_dir(args.state.as_deref(), &cwd, &loaded.plan.name);
    let store: Arc<dyn StateStore> = Arc::new(SledStore::open(&state_dir, "plan")?);
    let cluster = KubeCluster::connect(&ConnectOptions {
        kubeconfig: args.cluster.kubeconfig.clone(),
        context: args.cluster.context.clone(),
    })
    .await?;
    let records = store.objects()?;
    let meta = store.meta()?;
    let parallelism = usize::from(args.parallelism);

    let (discovery, cached) = discovery(&cluster, store.as_ref(), false).await?;
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
    let attempt = |discovery: Discovery| {
        let store = store.clone();
        let repo_dirs = repo_dirs.clone();
        let loaded = &loaded;
        let records = &records;
        let targets = &targets;
        let cluster = &cluster;
        let server_version = &server_version;
        async move {
            let stage = RenderStage {
                renderer: render::Renderer::new(
                    Arc::new(HelmProcess::from_env()),
                    Arc::new(StateRenderCache { store }),
                    RenderOptions {
                        repo_dirs,
                        discovery: Some(render_discovery(&discovery, server_version)),
                        parallelism,
                    },
                ),
                plan: &loaded.plan,
                previous: BTreeMap::new(),
            };
            crate::diff::plan(
                cluster,
                &stage,
                PlanRequest {
                    plan: &loaded.plan,
                    graph: &loaded.graph,
                    targets,
                    records,
                    discovery: &discovery,
                    parallelism,
                },
            )
            .await
        }
    };
    let change_set = match attempt(discovery).await {
        // A kind missing from a cached discovery may have been installed since.
        Err(PlanError::Diff(DiffError::KindNotInstalled { .. })) if cached => {
            let (fresh, _) = self::discovery(&cluster, store.as_ref(), true).await?;
            attempt(fresh).await?
        }
        other => other?,
    };

    match args.output {
        OutputFormat::Human => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            print!("{}", render_human(&change_set, HumanOptions { color }));
        }
        OutputFormat::Json => print!("{}", render_json(&change_set)),
    }
    if let Some(path) = &args.out {
        let saved = SavedChangeSet::new(
            args.input.plan.display().to_string(),
            input_digests(&loaded, &change_set),
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

fn parse_repo_dirs(
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
