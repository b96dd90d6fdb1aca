//! `meshplan drift PLAN`: load the plan, read the state without the writer lock, connect, and
//! compare what the plan owns with the live cluster; print the report (stdout, or the
//! chosen format to `--output-file` and the human report on stdout); exit 0 no drift, 2
//! drift, 1 error.
//!
//! Read-only: no lock is taken and nothing is written, to the state or the cluster, so drift
//! runs while an apply holds the state (it reads the snapshot that apply published).

use crate::cli::{DriftArgs, DriftFormat, ExitStatus};
use crate::cluster::KubeCluster;
use crate::diff::drift::{self, DriftRequest, StateInfo};
use crate::report::drift::{DriftFormat as Format, render_drift};
use crate::session::{DISCOVERY_MAX_AGE, parse_targets};
use crate::state::{self, SnapshotSource, StateStore as _};

use super::{CommandError, connect_options, load_plan, terminal};

pub(super) async fn run(args: DriftArgs) -> miette::Result<ExitStatus> {
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(ExitStatus::Error);
    };
    let targets = parse_targets(&loaded, &args.targets)?;
    let cwd = std::env::current_dir().map_err(CommandError::WorkingDirectory)?;
    let dir = state::resolve_dir(args.state.as_deref(), &cwd, &loaded.plan.name);
    let store = state::open_read_only(&dir)?;
    let meta = store.meta()?;
    let cluster = KubeCluster::connect(&connect_options(&args.cluster)).await?;
    // The state's cached discovery while fresh; drift writes no cache.
    let discovery = store
        .discovery_cache()?
        .filter(|e| e.is_fresh(jiff::Timestamp::now(), DISCOVERY_MAX_AGE))
        .map(|e| e.discovery);
    let (source, held_by) = match store.source() {
        SnapshotSource::Database => ("database", None),
        SnapshotSource::Published { holder } => {
            ("snapshot", holder.as_ref().map(ToString::to_string))
        }
    };
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
            store: &store,
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
