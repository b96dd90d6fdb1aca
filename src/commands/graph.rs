//! `meshplan graph PLAN --format text|dot|mermaid`: the dependency graph on stdout.

use crate::cli::{ExitStatus, GraphArgs, GraphFormat};
use crate::graph::{render_dot, render_mermaid, render_text};

use super::{load_plan, terminal};

pub(super) async fn run(args: GraphArgs) -> miette::Result<ExitStatus> {
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(ExitStatus::Error);
    };
    let text = match args.format {
        GraphFormat::Text => render_text(&loaded.graph),
        GraphFormat::Dot => render_dot(&loaded.graph),
        GraphFormat::Mermaid => render_mermaid(&loaded.graph),
    };
    terminal::out(&text);
    Ok(ExitStatus::Success)
}
