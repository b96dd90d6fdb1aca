//! One orchestrating async function per subcommand: glue only, no logic.

mod graph;
mod sandbox;
mod validate;

use crate::cli::{Cli, Command, ExitStatus, SandboxCommand};

/// Runs the parsed command line. Errors come back as a report that `main` prints on stderr
/// (exit code 1); everything a command prints itself is its result (stdout) or progress (stderr).
pub async fn run(cli: Cli) -> miette::Result<ExitStatus> {
    match cli.command {
        Command::Validate(args) => validate::run(args).await,
        Command::Graph(args) => graph::run(args).await,
        Command::Sandbox(SandboxCommand::Serve(args)) => sandbox::serve(args).await,
    }
}
