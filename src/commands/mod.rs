//! One orchestrating async function per subcommand, one file per command family: glue only.
//! Each loads the plan, opens a [`Session`](crate::session::Session) when it needs the cluster
//! and the state, calls the stages, and hands what they return to `report/` (data on stdout,
//! messages and progress on stderr).
//!
//! - [`validate`], [`graph`]: the plan alone; [`lint`]: the plan's checks (the cluster's facts
//!   unless `--offline`).
//! - [`check`]: the applied mesh's health.
//! - [`plan`]: the change set, optionally saved.
//! - [`apply`](mod@apply): a plan or a saved change set, in phases (`apply::phases`).
//! - [`destroy`](mod@destroy), [`rollback`]: delete what the plan owns; roll back an
//!   unfinished run.
//! - [`drift`]: the live cluster against the state, read-only.
//! - [`state`]: list, show, forget records; break a stale lock.
//! - [`terminal`]: the confirmation prompt, diagnostics, colour and progress choices.
//! - [`error`]: what the commands themselves refuse.

// Commands are where the program writes: results on stdout, messages on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod apply;
mod check;
mod destroy;
mod drift;
mod error;
mod graph;
mod lint;
mod plan;
mod rollback;
#[cfg(feature = "sandbox")]
mod sandbox;
mod state;
mod terminal;
mod validate;

#[cfg(feature = "sandbox")]
use crate::cli::SandboxCommand;
use crate::cli::{Cli, ClusterArgs, Command, ExitStatus, PlanInput, StackArgs, StateLocationArgs};
use crate::cluster::ConnectOptions;
use crate::load::{LoadRequest, LoadedPlan, load};
use crate::session::{Access, Session, SessionArgs};
use crate::state::Overrides;

pub use error::CommandError;

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
        Command::Destroy(args) => destroy::run(args).await,
        Command::Rollback(args) => rollback::run(args).await,
        Command::Drift(args) => drift::run(args).await,
        Command::State(command) => state::run(command).await,
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
async fn unless_interrupted<T, E: Into<miette::Report>>(
    interrupt: &crate::apply::Interrupt,
    message: &'static str,
    step: impl Future<Output = Result<T, E>>,
) -> miette::Result<T> {
    tokio::select! {
        biased;
        () = interrupt.graceful().cancelled() => Err(CommandError::Interrupted { message }.into()),
        result = step => result.map_err(Into::into),
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

/// Loads the plan; when it does not load, prints its diagnostics (stderr) and returns None
/// (the command exits 1).
fn load_plan(input: &PlanInput) -> Option<LoadedPlan> {
    match load(&load_request(input)) {
        Ok(loaded) => Some(loaded),
        Err(diags) => {
            terminal::print_diagnostics(&diags);
            None
        }
    }
}

/// Where the cluster is, as the session connects to it.
fn connect_options(cluster: &ClusterArgs) -> ConnectOptions {
    ConnectOptions {
        kubeconfig: cluster.kubeconfig.clone(),
        context: cluster.context.clone(),
    }
}

/// What the command line says about the state's location.
fn state_overrides(at: &StateLocationArgs) -> Overrides<'_> {
    Overrides {
        dir: at.state.as_deref(),
        backend: at.state_backend.map(Into::into),
    }
}

/// The session settings of a command that takes [`StackArgs`] (`targets` may differ from
/// the command line's: a saved change set names its own). These commands write.
fn session_args<'a>(
    stack: &'a StackArgs,
    targets: &'a [String],
    parallelism: u16,
    command: &'a str,
) -> SessionArgs<'a> {
    SessionArgs {
        connect: connect_options(&stack.cluster),
        state: state_overrides(&stack.at),
        repo_dirs: &stack.repo_dirs,
        targets,
        parallelism,
        command,
        access: Access::Write,
        lock_timeout: stack.at.lock_timeout,
    }
}

/// Releases the session's Lease at the end of a command; a failure is only a warning (the
/// Lease expires by itself).
async fn release(session: &mut Session) {
    if let Err(e) = session.release().await {
        eprintln!(
            "Warning: {e} (the lock expires by itself after {}s)",
            session.resolved.lease.duration.as_secs()
        );
    }
}

/// Takes the session's Lease before the first write. When the lease is lost during the
/// run, `interrupt` stops the run at once (its journal keeps what is left: another run may
/// now write).
async fn lock(
    session: &mut Session,
    interrupt: &crate::apply::Interrupt,
) -> Result<(), crate::session::SessionError> {
    session.lock().await?;
    if let Some(guard) = session.lease() {
        let lost = guard.lost();
        let interrupt = interrupt.clone();
        let lease = guard.location().to_string();
        tokio::spawn(async move {
            lost.cancelled().await;
            eprintln!(
                "The lock ({lease}) was lost: stopping at once; the journal keeps what is left."
            );
            interrupt.stop_now();
        });
    }
    Ok(())
}
