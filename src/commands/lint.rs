//! `meshplan lint PLAN`: load, render (and read the cluster unless `--offline`), run the lint
//! checks, print the report (stdout); exit 1 when an error-level finding remains (or a
//! warning with `--deny warnings`).

use std::io::IsTerminal as _;
use std::sync::Arc;

use miette::IntoDiagnostic as _;

use crate::cli::{DenyLevel, ExitStatus, LintArgs, LintFormat};
use crate::cluster::{Cluster, ConnectOptions, KubeCluster};
use crate::lint::{self, LintInput};
use crate::load::load;
use crate::render::{HelmProcess, MemoryCache, RenderOptions, Renderer};
use crate::report::lint::{
    LintHumanOptions, render_lint_human, render_lint_json, render_lint_sarif,
};

use super::{load_request, print_diagnostics};

pub async fn run(args: LintArgs) -> miette::Result<ExitStatus> {
    let loaded = match load(&load_request(&args.input)) {
        Ok(loaded) => loaded,
        Err(diags) => {
            print_diagnostics(&diags);
            return Ok(ExitStatus::Error);
        }
    };
    let cwd = std::env::current_dir().into_diagnostic()?;
    let repo_dirs = super::plan::parse_repo_dirs(&args.repo_dirs, &cwd)?;
    let cluster = if args.offline {
        None
    } else {
        Some(
            KubeCluster::connect(&ConnectOptions {
                kubeconfig: args.cluster.kubeconfig.clone(),
                context: args.cluster.context.clone(),
            })
            .await?,
        )
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
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            print!("{}", render_lint_human(&report, LintHumanOptions { color }));
        }
        LintFormat::Json => print!("{}", render_lint_json(&report)),
        LintFormat::Sarif => print!("{}", render_lint_sarif(&report)),
    }
    let deny_warnings = args.deny.contains(&DenyLevel::Warnings);
    Ok(if report.blocks(deny_warnings) {
        ExitStatus::Error
    } else {
        ExitStatus::Success
    })
}
