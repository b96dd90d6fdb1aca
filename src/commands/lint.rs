//! `meshplan lint PLAN`: load, render (and read the cluster unless `--offline`), run the lint
//! checks, print the report (stdout); exit 1 when an error-level finding remains (or a
//! warning with `--deny warnings`).

use std::sync::Arc;

use crate::cli::{DenyLevel, ExitStatus, LintArgs, LintFormat};
use crate::cluster::{Cluster, KubeCluster};
use crate::lint::{self, LintInput};
use crate::render::{HelmProcess, MemoryCache, RenderOptions, Renderer};
use crate::report::lint::{
    LintHumanOptions, render_lint_human, render_lint_json, render_lint_sarif,
};

use super::{CommandError, connect_options, load_plan, terminal};

pub(super) async fn run(args: LintArgs) -> miette::Result<ExitStatus> {
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(ExitStatus::Error);
    };
    let cwd = std::env::current_dir().map_err(CommandError::WorkingDirectory)?;
    let repo_dirs = crate::session::parse_repo_dirs(&args.repo_dirs, &cwd)?;
    let cluster = if args.offline {
        None
    } else {
        Some(KubeCluster::connect(&connect_options(&args.cluster)).await?)
    };
    let (discovery, kube_version) = match &cluster {
        Some(c) => (
            Some(c.discover().await?),
            Some(c.server_version().await?.git_version),
        ),
        None => (None, None),
    };
    let renderer = Renderer::new(
        Arc::new(HelmProcess::from_env()),
        Arc::new(MemoryCache::new()),
        RenderOptions {
            repo_dirs,
            discovery: discovery.clone(),
            kube_version,
            parallelism: usize::from(args.parallelism),
            // The lint's render is only checked, never applied.
            stand_in_keys: true,
        },
    );
    let online = match (&cluster, &discovery) {
        (Some(c), Some(d)) => Some((c as &dyn Cluster, d)),
        _ => None,
    };
    let prepared = lint::prepare(
        &loaded.plan,
        &renderer,
        &crate::render::RenderInputs::default(),
        online,
    )
    .await?;
    let report = lint::run(&LintInput {
        plan: &loaded.plan,
        sources: &loaded.sources,
        render: &prepared.render,
        charts: &prepared.charts,
        cluster: prepared.facts.as_ref(),
    });
    match args.format {
        LintFormat::Human => {
            let color = terminal::stdout_color();
            terminal::out(&render_lint_human(&report, LintHumanOptions { color }));
        }
        LintFormat::Json => terminal::out(&render_lint_json(&report)),
        LintFormat::Sarif => terminal::out(&render_lint_sarif(&report)),
    }
    let deny_warnings = args.deny.contains(&DenyLevel::Warnings);
    Ok(if report.blocks(deny_warnings) {
        ExitStatus::Error
    } else {
        ExitStatus::Success
    })
}
