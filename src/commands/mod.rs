//! One orchestrating async function per subcommand: glue only, no logic.

mod apply;
mod check;
mod graph;
mod lint;
mod plan;
#[cfg(feature = "sandbox")]
mod sandbox;
mod validate;

use std::io::IsTerminal as _;

#[cfg(feature = "sandbox")]
use crate::cli::SandboxCommand;
use crate::cli::{Cli, Command, ExitStatus, PlanInput};
use crate::load::LoadRequest;
use crate::planfile::{Diagnostics, RenderOptions};

/// Runs the parsed command line. Errors come back as a report that `main` prints on stderr
/// (exit code 1); everything a command prints itself is its result (stdout) or progress (stderr).
pub async fn run(cli: Cli) -> miette::Result<ExitStatus> {
    match cli.command {
        Command::Validate(args) => validate::run(args).await,
        Command::Graph(args) => graph::run(args).await,
        Command::Lint(args) => lint::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Plan(args) => plan::run(args).await,
        Command::Apply(args) => apply::run(args).await,
        Command::Destroy(args) => apply::destroy(args).await,
        Command::Rollback(args) => apply::rollback(args).await,
        Command::State(command) => apply::state(command).await,
        #[cfg(feature = "sandbox")]
        Command::Sandbox(SandboxCommand::Serve(args)) => sandbox::serve(args).await,
    }
}

/// Runs `command` with Ctrl-C taken from its start (instead of ending the process), for the
/// commands that hold the state's writer lock.
async fn with_ctrl_c<F, Fut>(command: F) -> miette::Result<ExitStatus>
where
    F: FnOnce(crate::apply::Interrupt) -> Fut,
    Fut: Future<Output = miette::Result<ExitStatus>>,
{
    let interrupt = crate::apply::Interrupt::new();
    let listener = interrupt.listen_for_ctrl_c();
    let result = command(interrupt).await;
    listener.abort();
    result
}

/// Runs `step` unless Ctrl-C comes first: then the command ends with `message`. Dropping
/// `step` drops what it holds, the state's writer lock first (a Ctrl-C that ended the
/// process would leave the lock behind, stale). Only for steps that write nothing to the
/// cluster, or whose writes are journaled (stopping them is then like a crash).
async fn unless_interrupted<T>(
    interrupt: &crate::apply::Interrupt,
    message: &str,
    step: impl Future<Output = miette::Result<T>>,
) -> miette::Result<T> {
    tokio::select! {
        biased;
        () = interrupt.graceful().cancelled() => Err(miette::miette!("{message}")),
        result = step => result,
    }
}

/// The load request of a plan given on the command line.
fn load_request(input: &PlanInput) -> LoadRequest {
    LoadRequest {
        plan: input.plan.clone(),
        vars: input.vars.clone(),
        var_files: input.var_files.clone(),
    }
}

/// Prints plan diagnostics on stderr: colour only on a terminal without `NO_COLOR`; the width
/// follows `COLUMNS` when set (100 otherwise).
fn print_diagnostics(diags: &Diagnostics) {
    let stderr = std::io::stderr();
    let color = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|w| *w >= 40)
        .unwrap_or(100);
    eprint!("{}", diags.render(RenderOptions { width, color }));
}
