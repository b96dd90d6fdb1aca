//! `meshplan plan PLAN`: load, open a session, lint, plan; print the lint findings and the
//! change set (stdout), optionally save it; exit 0 / 2 (with `--detailed-exitcode`) / 1 (an
//! error-level lint finding included). Fields another field manager took are drift: changes
//! that take them back (exit 2), never errors.
//!
//! The state is opened for its records and caches only, without a lock: plan writes the
//! render cache and the discovery cache of a local state, never object records (a state in
//! the cluster keeps them in memory for this run).

use crate::cli::{ExitStatus, OutputFormat, PlanArgs};
use crate::cluster::Cluster as _;
use crate::diff::previous::load_previous;
use crate::diff::saved::{self, SavedChangeSet, StateRef};
use crate::report::{HumanOptions, render_human, render_json};
use crate::session::{Access, Session, SessionArgs};

use super::{
    CommandError, PLAN_DOES_NOT_LOAD, connect_options, load_plan, state_overrides, terminal,
    unless_interrupted, with_ctrl_c,
};

pub(super) async fn run(args: PlanArgs) -> miette::Result<ExitStatus> {
    let output = args.output;
    // Ctrl-C ends the plan with the writer lock released.
    let result = with_ctrl_c(|interrupt| async move {
        unless_interrupted(&interrupt, "interrupted while planning", plan(args)).await
    })
    .await;
    terminal::json_error_on_failure(output, &result);
    result
}

async fn plan(args: PlanArgs) -> miette::Result<ExitStatus> {
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(terminal::failed(args.output, PLAN_DOES_NOT_LOAD));
    };
    let session = Session::open(
        loaded,
        SessionArgs {
            connect: connect_options(&args.cluster),
            state: state_overrides(&args.at),
            repo_dirs: &args.repo_dirs,
            targets: &args.targets,
            parallelism: args.parallelism,
            command: "plan",
            access: Access::Read,
            lock_timeout: args.at.lock_timeout,
        },
    )
    .await?;
    // A plan saved for `apply FILE` is applied as rendered: its keys must be real.
    let session = if args.out.is_none() {
        session.shown_only()
    } else {
        session
    };
    super::terminal::err(&format!("{}\n", session.header()));
    let meta = session.store.meta()?;
    let previous = load_previous(session.store.as_ref())?;
    // The API server answers the refresh's LISTs while the plan renders and lints.
    session.list_ahead().await;
    // The lint and the plan render with the same values of reads.
    let reads = session.reads_now().await?;
    let lint = session.lint(&previous, &reads).await?;
    terminal::show_lint(&lint, args.output);
    let mut change_set = session
        .change_set(&previous, None, false, Some(&reads))
        .await?;
    let adoption = session
        .guard_lost_state(&change_set, args.adopt_lost_state)
        .await?;
    if let Some(adoption) = &adoption {
        terminal::adopting(adoption);
        change_set = session
            .change_set(&adoption.previous, None, false, Some(&reads))
            .await?;
    }

    match args.output {
        OutputFormat::Human => {
            let color = terminal::stdout_color();
            terminal::out(&render_human(&change_set, HumanOptions { color }));
        }
        OutputFormat::Json => terminal::out(&render_json(&change_set)),
    }
    if lint.blocks(false) {
        return Err(CommandError::LintFindings {
            what: "the plan",
            errors: lint.errors(),
        }
        .into());
    }
    if let Some(path) = &args.out {
        let mut saved = SavedChangeSet::new(
            args.input.plan.display().to_string(),
            session.input_digests(&change_set),
            StateRef {
                lineage: meta.lineage.clone(),
                serial: meta.serial,
            },
            session.cluster.url().to_owned(),
            session.targets.iter().map(ToString::to_string).collect(),
            change_set.clone(),
        );
        // apply FILE adopts the lost state's objects as this plan did.
        saved.adopt_lost_state = adoption.is_some();
        saved::write(path, &saved)?;
        terminal::err(&format!("Saved the change set to {}.\n", path.display()));
    }
    let status = if args.detailed_exitcode && change_set.has_changes() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    };
    // The process ends with this command: the loaded plan and the change set (every object
    // of a large plan, with its YAML spans) are left to the exit instead of being freed value
    // by value; the rest of the session (the state) closes as usual.
    let Session { loaded, .. } = session;
    std::mem::forget(loaded);
    std::mem::forget(change_set);
    Ok(status)
}
