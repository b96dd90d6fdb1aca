//! `meshplan destroy PLAN`: load, open a session, preview what the plan owns (refused as a
//! whole when a selected node has `prevent_destroy`), list it (stdout), confirm, destroy;
//! exit 0 / 1.
//!
//! As for apply: before the confirmation Ctrl-C ends the command, after it the engine stops.

use std::collections::BTreeSet;

use crate::apply::{self, Interrupt, RunOptions, adapter};
use crate::cli::{DestroyArgs, ExitStatus};
use crate::report;
use crate::session::Session;

use super::{
    PLAN_DOES_NOT_LOAD, load_plan, lock, release, session_args, terminal, unless_interrupted,
    with_ctrl_c,
};

pub(super) async fn run(args: DestroyArgs) -> miette::Result<ExitStatus> {
    let output = args.output;
    let result = with_ctrl_c(|interrupt| async move { destroy(args, &interrupt).await }).await;
    terminal::json_error_on_failure(output, &result);
    result
}

async fn destroy(args: DestroyArgs, interrupt: &Interrupt) -> miette::Result<ExitStatus> {
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(terminal::failed(args.output, PLAN_DOES_NOT_LOAD));
    };
    let mut session = unless_interrupted(
        interrupt,
        "interrupted before the destroy started: nothing was deleted",
        Session::open(
            loaded,
            session_args(
                &args.stack,
                &args.stack.targets,
                args.parallelism,
                "destroy",
            ),
        ),
    )
    .await?;
    super::terminal::err(&format!("{}\n", session.header()));
    let store = session.store.as_ref();
    let targets: Option<BTreeSet<String>> = (!args.stack.targets.is_empty())
        .then(|| session.targets.iter().map(ToString::to_string).collect());
    let request = adapter::destroy_request(
        &session.loaded.plan,
        &session.loaded.graph,
        targets,
        args.with_foreign_objects,
    );
    let doomed = {
        let records = store.recorded_objects()?;
        let doomed = request.preview(&records)?;
        terminal::out(&report::apply::destroy_listing(&doomed));
        doomed.len()
    };
    if doomed == 0 {
        terminal::err("Nothing to destroy.\n");
        return Ok(ExitStatus::Success);
    }
    if !terminal::confirm("destroy these objects", args.auto_approve, interrupt).await? {
        release(&mut session).await;
        terminal::err("Destroy cancelled.\n");
        return Ok(terminal::failed(args.output, "destroy cancelled"));
    }
    // The records listed above are what is destroyed: the state must not have changed
    // since (another run that took the Lease meanwhile fails this destroy).
    lock(&mut session, interrupt).await?;
    let reporter = terminal::progress(args.output);
    let options = RunOptions {
        parallelism: usize::from(args.parallelism),
        ..RunOptions::default()
    };
    let summary = apply::destroy(
        &session.cluster,
        session.store.as_ref(),
        &request,
        &options,
        reporter.as_ref(),
        interrupt,
    )
    .await;
    let lost = session.lease().and_then(|g| g.lost_error());
    release(&mut session).await;
    if let Some(e) = lost {
        return Err(e.into());
    }
    let summary = summary?;
    if summary.outcome.is_success() {
        terminal::err("Destroy complete.\n");
        Ok(ExitStatus::Success)
    } else {
        Ok(terminal::failed(
            args.output,
            &match &summary.root_cause {
                Some(cause) => format!("destroy failed: {cause}"),
                None => "destroy failed".to_owned(),
            },
        ))
    }
}
