//! `meshplan drift PLAN`: load the plan, read the state without any lock, connect, and
//! compare what the plan owns with the live cluster; print the report (stdout, or the
//! chosen format to `--output-file` and the human report on stdout); exit 0 no drift, 2
//! drift, 1 error.
//!
//! Read-only: no lock is taken and nothing is written, to the state or the cluster, so drift
//! runs while an apply holds the state. A local state is read from its database, or, while a
//! writer has it open, from the snapshot that writer published ([`state::open_read_only`]);
//! a state in the cluster is read from its Secrets (GET and LIST only), without its Lease.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::{DriftArgs, DriftFormat, ExitStatus};
use crate::cluster::KubeCluster;
use crate::diff::drift::{self, DriftRequest, StateInfo};
use crate::report::drift::{DriftFormat as Format, render_drift};
use crate::session::{DISCOVERY_MAX_AGE, parse_targets};
use crate::state::location::{self, Overrides};
use crate::state::{
    self, KubeLocation, KubeStore, LeaseLocation, LeaseLock, Remote, SnapshotSource, StateError,
    StateLocation, StateStore,
};

use super::{CommandError, connect_options, load_plan, terminal};

pub(super) async fn run(args: DriftArgs) -> miette::Result<ExitStatus> {
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(ExitStatus::Error);
    };
    let targets = parse_targets(&loaded, &args.targets)?;
    let cwd = std::env::current_dir().map_err(CommandError::WorkingDirectory)?;
    let resolved = location::resolve(
        &loaded.plan.name,
        &loaded.plan.base_dir,
        &loaded.plan.state,
        Overrides {
            dir: args.state.as_deref(),
            backend: args.state_backend.map(Into::into),
        },
        &cwd,
    )?;
    // A local state is read before connecting (a missing one is reported first); a state in
    // the cluster once connected.
    let local = match resolved.location {
        StateLocation::Local { dir } => Ok(state::open_read_only(&dir)?),
        StateLocation::Kubernetes(at) => Err(at),
    };
    let cluster = KubeCluster::connect(&connect_options(&args.cluster)).await?;
    let (store, source, held_by): (Box<dyn StateStore>, &str, Option<String>) = match local {
        Ok(local) => {
            let (source, held_by) = match local.source() {
                SnapshotSource::Database => ("database", None),
                SnapshotSource::Published { holder } => {
                    ("snapshot", holder.as_ref().map(ToString::to_string))
                }
            };
            (Box::new(local), source, held_by)
        }
        Err(at) => {
            let remote = Remote::connect(cluster.kube_config().clone())?;
            let (store, held_by) = read_from_cluster(remote, at, resolved.lease).await?;
            (Box::new(store), "cluster", held_by)
        }
    };
    let meta = store.meta()?;
    // The state's cached discovery while fresh; drift writes no cache.
    let discovery = store
        .discovery_cache()?
        .filter(|e| e.is_fresh(jiff::Timestamp::now(), DISCOVERY_MAX_AGE))
        .map(|e| e.discovery);
    let state_info = StateInfo {
        lineage: meta.lineage.clone(),
        serial: meta.serial,
        source: source.to_owned(),
        held_by,
        unfinished_runs: store
            .unfinished_runs()?
            .iter()
            .map(|r| {
                format!(
                    "{} {}, started {}",
                    r.run.command, r.run.run, r.run.started_at
                )
            })
            .collect(),
    };
    let report = drift::detect(
        &cluster,
        DriftRequest {
            plan: &loaded.plan,
            store: store.as_ref(),
            state: state_info,
            targets: &targets,
            discovery,
            parallelism: usize::from(args.parallelism),
        },
    )
    .await?;
    let format = match args.format {
        DriftFormat::Human => Format::Human,
        DriftFormat::Json => Format::Json,
        DriftFormat::Markdown => Format::Markdown,
        DriftFormat::Junit => Format::Junit,
    };
    let color = terminal::stdout_color();
    match &args.output_file {
        Some(path) => {
            std::fs::write(path, render_drift(&report, format, false)).map_err(|source| {
                CommandError::OutputFile {
                    path: path.clone(),
                    source,
                }
            })?;
            terminal::out(&render_drift(&report, Format::Human, color));
        }
        None => terminal::out(&render_drift(&report, format, color)),
    }
    Ok(if report.has_drift {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

/// Reads a state kept in the cluster from its Secrets, without its Lease; with the run
/// holding that Lease, when it can be read (a reader's role may not allow it).
async fn read_from_cluster(
    remote: Arc<Remote>,
    at: KubeLocation,
    lease: LeaseLocation,
) -> Result<(KubeStore, Option<String>), StateError> {
    let place = PathBuf::from(at.describe());
    let reader = remote.clone();
    let store = tokio::task::spawn_blocking(move || KubeStore::open(reader, at))
        .await
        .map_err(|e| StateError::Io {
            action: "read",
            path: place.clone(),
            source: std::io::Error::other(e),
        })??;
    if !store.exists() {
        return Err(StateError::NoState { path: place });
    }
    // Only for the report: a Lease that cannot be read names no holder.
    let held_by = LeaseLock::new(remote, lease)
        .inspect()
        .await
        .ok()
        .and_then(|view| match view {
            state::LeaseView::Held {
                holder,
                takeover: None,
                ..
            } => Some(holder.to_string()),
            _ => None,
        });
    Ok((store, held_by))
}
