//! `meshplan graph PLAN --format text|dot|mermaid` (or `--output json`): the dependency graph
//! on stdout.

use crate::cli::{ExitStatus, GraphArgs, GraphFormat, OutputFormat};
use crate::graph::{render_dot, render_json, render_mermaid, render_text};

use super::{load_plan, terminal};

pub(super) async fn run(args: GraphArgs) -> miette::Result<ExitStatus> {
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(ExitStatus::Error);
    };
    let text = match (args.output, args.format) {
        (OutputFormat::Json, _) => render_json(&loaded.graph),
        (OutputFormat::Human, GraphFormat::Text) => render_text(&loaded.graph),
        (OutputFormat::Human, GraphFormat::Dot) => render_dot(&loaded.graph),
        (OutputFormat::Human, GraphFormat::Mermaid) => render_mermaid(&loaded.graph),
    };
    terminal::out(&text);
    Ok(ExitStatus::Success)
}
