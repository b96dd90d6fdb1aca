//! `meshplan apply PLAN|SAVED`: load (a saved change set names its plan and targets), open a
//! session, lint (error-level findings stop it before any write), finish an unfinished run
//! when asked, plan, check a saved change set is still
//! current, show the plan, confirm, then apply in phases (`apply::phases`); exit 0 / 1.
//!
//! Ctrl-C is taken from the start: before the change set is confirmed it ends the command
//! (nothing was written, the lock is released); after, the engine stops and rolls back.
//!
//! The plan's Lease is taken after the confirmation, before the first write (a no-op apply
//! writes nothing); another run that took it since this one planned is waited for within
//! `--lock-timeout`, and the plan made again.

use crate::apply::{self, Interrupt, Outcome, Phases, ResumeChoice, RunOptions, Summary};
use crate::cli::{ApplyArgs, ExitStatus, OnUnfinished, OutputFormat, PlanInput};
use crate::cluster::Cluster as _;
use crate::diff::previous::{RenderedLog, load_previous};
use crate::diff::saved::{self, Now, StateRef};
use crate::model::parse_duration;
use crate::report::{self, HumanOptions, render_human, render_json_event};
use crate::session::Session;

use super::{
    CommandError, PLAN_DOES_NOT_LOAD, load_plan, lock, release, session_args, terminal,
    unless_interrupted, with_ctrl_c,
};

const INTERRUPTED_BEFORE_APPLY: &str = "interrupted before the apply started: nothing was applied";

pub(super) async fn run(args: ApplyArgs) -> miette::Result<ExitStatus> {
    let output = args.output;
    let result = with_ctrl_c(|interrupt| async move { apply(args, &interrupt).await }).await;
    terminal::json_error_on_failure(output, &result);
    result
}

async fn apply(args: ApplyArgs, interrupt: &Interrupt) -> miette::Result<ExitStatus> {
    let saved = if saved::looks_saved(&args.plan) {
        Some(saved::load(&args.plan)?)
    } else {
        None
    };
    let input = PlanInput {
        plan: match &saved {
            Some(s) => s.plan_path(&args.plan),
            None => args.plan.clone(),
        },
        vars: args.vars.clone(),
        var_files: args.var_files.clone(),
    };
    let targets: Vec<String> = match &saved {
        Some(s) if args.stack.targets.is_empty() => s.targets.clone(),
        _ => args.stack.targets.clone(),
    };
    let Some(loaded) = load_plan(&input) else {
        return Ok(terminal::failed(args.output, PLAN_DOES_NOT_LOAD));
    };
    let mut session = unless_interrupted(
        interrupt,
        INTERRUPTED_BEFORE_APPLY,
        Session::open(
            loaded,
            session_args(&args.stack, &targets, args.parallelism, "apply"),
        ),
    )
    .await?;
    super::terminal::err(&format!("{}\n", session.header()));
    let options = RunOptions {
        parallelism: usize::from(args.parallelism),
        overall_timeout: match &args.timeout {
            Some(t) => {
                Some(parse_duration(t).ok_or_else(|| CommandError::Timeout { value: t.clone() })?)
            }
            None => None,
        },
        force_conflicts: args.force_conflicts,
        no_rollback: args.no_rollback,
        ..RunOptions::default()
    };
    let reporter = terminal::progress(args.output);
    // A saved change set that adopted a lost state carries the adoption.
    let adopt_lost_state =
        args.adopt_lost_state || saved.as_ref().is_some_and(|s| s.adopt_lost_state);

    // Lint first: error-level findings stop the apply before anything is written (a saved
    // change set was linted by the plan that wrote it).
    if saved.is_none() {
        let previous = load_previous(session.store.as_ref())?;
        let reads =
            unless_interrupted(interrupt, INTERRUPTED_BEFORE_APPLY, session.reads_now()).await?;
        let lint = unless_interrupted(
            interrupt,
            INTERRUPTED_BEFORE_APPLY,
            session.lint(&previous, &reads),
        )
        .await?;
        terminal::show_lint(&lint, args.output);
        if lint.blocks(false) {
            return Err(CommandError::LintFindings {
                what: "apply",
                errors: lint.errors(),
            }
            .into());
        }
    }

    // Plan, confirm, then take the plan's Lease; when another run took it meanwhile (or
    // wrote the state), wait within --lock-timeout and plan again.
    let (first, previous, rendered) = loop {
        if !session.store.unfinished_runs()?.is_empty() {
            // The run may be another apply's, in progress: the lock says (and names it).
            match lock(&mut session, interrupt).await {
                Err(e) if session.may_retry(&e) => {
                    session.refresh().await?;
                    continue;
                }
                other => other?,
            }
            let choice = match args.on_unfinished {
                None => {
                    release(&mut session).await;
                    return Err(CommandError::UnfinishedRun.into());
                }
                Some(OnUnfinished::Complete) => ResumeChoice::Complete,
                Some(OnUnfinished::Rollback) => ResumeChoice::RollBack,
            };
            let summaries = unless_interrupted(
                interrupt,
                "interrupted while finishing the unfinished run: its journal keeps what is left",
                apply::resume_unfinished(
                    session.store.as_ref(),
                    &session.cluster,
                    choice,
                    &options,
                    reporter.as_ref(),
                ),
            )
            .await?;
            if summaries.iter().any(Summary::left_journal) {
                release(&mut session).await;
                return Ok(terminal::failed(
                    args.output,
                    "the unfinished run could not be finished: its journal is kept",
                ));
            }
        }

        let store = session.store.as_ref();
        let meta = store.meta()?;
        let mut previous = load_previous(store)?;
        let mut rendered = RenderedLog::default();
        let mut first = unless_interrupted(
            interrupt,
            INTERRUPTED_BEFORE_APPLY,
            session.change_set(&previous, Some(&rendered), false, None),
        )
        .await?;
        if let Some(adoption) = unless_interrupted(
            interrupt,
            INTERRUPTED_BEFORE_APPLY,
            session.guard_lost_state(&first, adopt_lost_state),
        )
        .await?
        {
            terminal::adopting(&adoption);
            previous = adoption.previous;
            rendered = RenderedLog::default();
            first = unless_interrupted(
                interrupt,
                INTERRUPTED_BEFORE_APPLY,
                session.change_set(&previous, Some(&rendered), false, None),
            )
            .await?;
        }
        if let Some(saved) = &saved {
            saved::check_current(
                saved,
                &Now {
                    state: StateRef {
                        lineage: meta.lineage.clone(),
                        serial: meta.serial,
                    },
                    cluster: session.cluster.url(),
                    inputs: &session.input_digests(&first),
                    change_set: &first,
                },
            )?;
        }
        match args.output {
            OutputFormat::Human => {
                let color = terminal::stdout_color();
                terminal::out(&render_human(&first, HumanOptions { color }));
            }
            OutputFormat::Json => terminal::out(&render_json_event(&first)),
        }
        if first.has_conflicts() && !options.force_conflicts {
            release(&mut session).await;
            return Err(CommandError::ApplyConflicts {
                objects: first
                    .objects()
                    .filter(|(_, o)| o.action == crate::diff::Action::Conflict)
                    .map(|(node, o)| format!("{node}: {}", o.object))
                    .collect(),
            }
            .into());
        }
        if !first.has_changes() {
            release(&mut session).await;
            terminal::err("No changes. The cluster matches the plan.\n");
            return Ok(ExitStatus::Success);
        }
        if saved.is_none()
            && !terminal::confirm("apply these changes", args.auto_approve, interrupt).await?
        {
            release(&mut session).await;
            terminal::err("Apply cancelled.\n");
            return Ok(terminal::failed(args.output, "apply cancelled"));
        }
        match lock(&mut session, interrupt).await {
            Ok(()) => break (first, previous, rendered),
            Err(e) if saved.is_none() && session.may_retry(&e) => {
                terminal::err(&format!("{e}; waiting for it, then planning again.\n"));
                session.refresh().await?;
            }
            Err(e) => return Err(e.into()),
        }
    };

    // Ctrl-C reaches the engine from here on.
    let outcome = {
        let phases = Phases {
            cluster: &session.cluster,
            store: session.store.as_ref(),
            plan: &session.loaded.plan,
            graph: &session.loaded.graph,
            replan: &session,
            options: &options,
            reporter: reporter.as_ref(),
            interrupt,
        };
        apply::apply_in_phases(&phases, first, previous, rendered).await
    };
    let lost = session.lease().and_then(|g| g.lost_error());
    release(&mut session).await;
    if let Some(e) = lost {
        return Err(e.into());
    }
    match outcome? {
        Outcome::Failed { cause } => Ok(terminal::failed(
            args.output,
            &match cause {
                Some(cause) => format!("apply failed: {cause}"),
                None => "apply failed".to_owned(),
            },
        )),
        Outcome::Completed {
            applied,
            known_after_apply,
        } => {
            terminal::err(&report::apply::known_after_apply(&known_after_apply));
            if !applied {
                terminal::err("Nothing was sent to the cluster.\n");
            }
            terminal::err("Apply complete.\n");
            Ok(ExitStatus::Success)
        }
    }
}
