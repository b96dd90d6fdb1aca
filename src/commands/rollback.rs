//! `meshplan rollback PLAN`: roll back the unfinished runs the state's journal holds (after a
//! crash, a kill, or a failed rollback); exit 0 when nothing is left to roll back.
//!
//! Ctrl-C stops the rollback where it is (its journal keeps what is left, as after a crash)
//! and releases the writer lock.

use crate::apply::{self, ResumeChoice, RunOptions, Summary};
use crate::cli::{ExitStatus, RollbackArgs};
use crate::session::Session;

use super::{
    PLAN_DOES_NOT_LOAD, load_plan, release, session_args, terminal, unless_interrupted, with_ctrl_c,
};

pub(super) async fn run(args: RollbackArgs) -> miette::Result<ExitStatus> {
    let output = args.output;
    let result = with_ctrl_c(|interrupt| async move {
        unless_interrupted(
            &interrupt,
            "interrupted: the rollback stopped; its journal keeps what is left (run `meshplan rollback` again)",
            rollback(args),
        )
        .await
    })
    .await;
    terminal::json_error_on_failure(output, &result);
    result
}

async fn rollback(args: RollbackArgs) -> miette::Result<ExitStatus> {
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(terminal::failed(args.output, PLAN_DOES_NOT_LOAD));
    };
    let mut session = Session::open(loaded, session_args(&args.stack, &[], 10, "rollback")).await?;
    super::terminal::err(&format!("{}\n", session.header()));
    if session.store.unfinished_runs()?.is_empty() {
        terminal::err("No unfinished run: nothing to roll back.\n");
        return Ok(ExitStatus::Success);
    }
    loop {
        match session.lock().await {
            Err(e) if session.may_retry(&e) => session.refresh().await?,
            other => break other?,
        }
    }
    let reporter = terminal::progress(args.output);
    let summaries = apply::resume_unfinished(
        session.store.as_ref(),
        &session.cluster,
        ResumeChoice::RollBack,
        &RunOptions::default(),
        reporter.as_ref(),
    )
    .await;
    let lost = session.lease().and_then(|g| g.lost_error());
    release(&mut session).await;
    if let Some(e) = lost {
        return Err(e.into());
    }
    let summaries = summaries?;
    Ok(if summaries.iter().any(Summary::left_journal) {
        terminal::failed(
            args.output,
            "the rollback failed: the journal keeps what is left (run `meshplan rollback` again)",
        )
    } else {
        ExitStatus::Success
    })
}
