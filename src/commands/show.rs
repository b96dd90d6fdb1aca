//! `meshplan show PLAN`: render every node (or the `--target`s) without a cluster, as
//! `helm template` does for one chart, and print the objects (stdout). Values read from the
//! cluster are unknown here: nodes that use them are shown with `(known after apply)`.

use std::sync::Arc;

use crate::cli::{ExitStatus, ShowArgs, ShowFormat};
use crate::render::{HelmProcess, MemoryCache, RenderInputs, RenderOptions, Renderer};
use crate::report::show::{ShowOptions, render_json, render_yaml};
use crate::session::{parse_repo_dirs, parse_targets};

use super::{CommandError, load_plan};

pub(super) async fn run(args: ShowArgs) -> miette::Result<ExitStatus> {
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(ExitStatus::Error);
    };
    let cwd = std::env::current_dir().map_err(CommandError::WorkingDirectory)?;
    let targets = parse_targets(&loaded, &args.targets)?;
    let renderer = Renderer::new(
        Arc::new(HelmProcess::from_env()),
        Arc::new(MemoryCache::new()),
        RenderOptions {
            repo_dirs: parse_repo_dirs(&args.repo_dirs, &cwd)?,
            ..RenderOptions::default()
        },
    );
    let render = renderer
        .render(
            &loaded.plan,
            &RenderInputs {
                targets: (!targets.is_empty()).then(|| targets.iter().cloned().collect()),
                ..RenderInputs::default()
            },
        )
        .await?;
    let order = loaded.graph.apply_order();
    let options = ShowOptions {
        show_sensitive: args.show_sensitive,
    };
    // Asked for in clear: printed as they are; else also without any derived form.
    let print = if args.show_sensitive {
        super::terminal::out_in_clear
    } else {
        super::terminal::out
    };
    match args.format {
        ShowFormat::Yaml => print(&render_yaml(&render, &order, options)),
        ShowFormat::Json => print(&render_json(&render, &order, options)),
    }
    Ok(ExitStatus::Success)
}
