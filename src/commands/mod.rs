//! One orchestrating async function per subcommand, one file per command family: glue only.
//! Each loads the plan, opens a [`Session`](crate::session::Session) when it needs the cluster
//! and the state, calls the stages, and hands what they return to `report/` (data on stdout,
//! messages and progress on stderr).
//!
//! - [`validate`], [`graph`], [`show`]: the plan alone (show renders it, without a cluster);
//!   [`lint`]: the plan's checks (the cluster's facts unless `--offline`).
//! - [`check`]: the applied mesh's health.
//! - [`plan`]: the change set, optionally saved.
//! - [`apply`](mod@apply): a plan or a saved change set, in phases (`apply::phases`).
//! - [`destroy`](mod@destroy), [`rollback`]: delete what the plan owns; roll back an
//!   unfinished run.
//! - [`drift`]: the live cluster against the state, read-only.
//! - [`state`]: list, show, forget records; break a stale lock.
//! - [`version`]: meshplan's, helm's and the server's versions; [`generate`]: shell
//!   completions and the man page, from the clap definitions.
//! - [`terminal`]: writing to stdout and stderr, the confirmation prompt, diagnostics, colour
//!   and progress choices.
//! - [`error`]: what the commands themselves refuse.

// Commands are where the program writes: results on stdout, messages on stderr, always
// through `terminal::out` / `terminal::err` (never the print macros, which panic when the
// reader went away: `meshplan state list PLAN | head -1`).

mod apply;
mod check;
mod destroy;
mod drift;
mod error;
mod generate;
mod graph;
mod lint;
mod plan;
mod rollback;
#[cfg(feature = "sandbox")]
mod sandbox;
mod show;
mod state;
mod terminal;
mod validate;
mod version;

#[cfg(feature = "sandbox")]
use crate::cli::SandboxCommand;
use crate::cli::{Cli, ClusterArgs, Command, ExitStatus, PlanInput, StackArgs, StateLocationArgs};
use crate::cluster::{ConnectOptions, RequestSettings};
use crate::load::{LoadRequest, LoadedPlan, load};
use crate::session::{Access, Session, SessionArgs};
use crate::state::Overrides;

pub use error::CommandError;
pub use terminal::{err, out};

/// Runs the parsed command line. Errors come back as a report that `main` prints on stderr
/// (exit code 1); everything a command prints itself is its result (stdout) or progress (stderr).
pub async fn run(cli: Cli) -> miette::Result<ExitStatus> {
    terminal::set_terminal(cli.color, cli.verbose > 0);
    if let Some(value) = cli.dash_o {
        return Err(CommandError::DashO { value }.into());
    }
    match cli.command {
        Command::Validate(args) => validate::run(args).await,
        Command::Graph(args) => graph::run(args).await,
        Command::Show(args) => show::run(args).await,
        Command::Version(args) => version::run(args).await,
        Command::Completions(args) => generate::completions(args),
        Command::Man(args) => generate::man(args),
        Command::Schema => generate::schema(),
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

/// Runs `command` with Ctrl-C, SIGTERM and SIGHUP taken from its start (instead of ending the
/// process), for the commands that hold the state's writer lock: the first one stops
/// gracefully, a second one at once (see [`Interrupt`](crate::apply::Interrupt)).
async fn with_ctrl_c<F, Fut>(command: F) -> miette::Result<ExitStatus>
where
    F: FnOnce(crate::apply::Interrupt) -> Fut,
    Fut: Future<Output = miette::Result<ExitStatus>>,
{
    let interrupt = crate::apply::Interrupt::new();
    let listener = interrupt.listen_for_signals();
    let result = showing_retries(command(interrupt)).await;
    listener.abort();
    result
}

/// Runs `command` with every retried cluster request shown on stderr (`note: GET
/// namespaces app: HTTP 503 ...; retrying in 1.0s (attempt 2 of 6)`), except those of apply
/// steps, which the progress report shows with their node.
async fn showing_retries<T>(command: impl Future<Output = T>) -> T {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let scope = crate::cluster::RequestScope {
        deadline: None,
        notices: Some(tx),
    };
    let command = crate::cluster::with_request_scope(scope, command);
    tokio::pin!(command);
    let show = |notice: crate::cluster::RetryNotice| err(&format!("note: {notice}\n"));
    loop {
        tokio::select! {
            biased;
            Some(notice) = rx.recv() => show(notice),
            out = &mut command => {
                while let Ok(notice) = rx.try_recv() {
                    show(notice);
                }
                return out;
            }
        }
    }
}

/// Runs `step` unless Ctrl-C (or SIGTERM, SIGHUP) comes first: then the command ends with `message`. Dropping
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

/// What a failed command says in its JSON output when the plan does not load.
const PLAN_DOES_NOT_LOAD: &str = "the plan does not load (its diagnostics are on stderr)";

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
        requests: match cluster.request_timeout {
            Some(timeout) => RequestSettings::with_request_timeout(timeout),
            None => RequestSettings::default(),
        },
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
        terminal::err(&format!(
            "Warning: {e} (the lock expires by itself after {}s)\n",
            session.resolved.lease.duration.as_secs()
        ));
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
            terminal::err(&format!(
                "The lock ({lease}) was lost: stopping at once; the journal keeps what is left.\n"
            ));
            interrupt.stop_now();
        });
    }
    Ok(())
}
