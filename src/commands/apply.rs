//! `meshplan apply`, `destroy`, `rollback` and `state`: glue between the plan stage, the
//! adapter and the apply engine.
//!
//! Apply runs in phases (see `docs/apply.md`, "Reads and unknowns"): plan; apply every node
//! whose objects are known (deferring nodes rendered during apply, unresolved reads,
//! unevaluated checks, and everything downstream of them); evaluate the checks and wait for the
//! objects of the reads that became reachable; plan again; repeat until nothing is deferred.
//! All phases are one journaled run ([`PhasedRun`]): a failure in any phase, or between
//! phases, rolls back what every phase did; the journal is cleared after the last phase.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, IsTerminal as _, Write as _};

use miette::{IntoDiagnostic as _, miette};
use serde_json::Value;

use crate::apply::{
    self, Interrupt, PhasedRun, Reporter, ResumeChoice, RunOptions, adapter, strip_server_fields,
};
use crate::cli::{
    ApplyArgs, DestroyArgs, ExitStatus, OnUnfinished, OutputFormat, PlanInput, RollbackArgs,
    StateCommand,
};
use crate::cluster::{Cluster, ObjectRef};
use crate::diff::saved::{self, SavedChangeSet};
use crate::diff::{Action, ChangeSet, NodeStatus};
use crate::model::{Address, NodeSpec, parse_duration};
use crate::report::progress::{ProgressFormat, progress_reporter};
use crate::report::{HumanOptions, render_human};
use crate::state::{self, SledStore, StateStore, WriteBatch, WriterLock};

use super::plan::{RenderedLog, Session, SessionArgs, load_previous, store_previous};
use super::{unless_interrupted, with_ctrl_c};

/// How many planning rounds an apply may take before it gives up (reads that never resolve).
const MAX_PHASES: usize = 16;

fn reporter(output: OutputFormat) -> Box<dyn Reporter> {
    let format = match output {
        OutputFormat::Human => ProgressFormat::Human,
        OutputFormat::Json => ProgressFormat::Json,
    };
    progress_reporter(format, std::io::stderr().is_terminal())
}

/// Asks "yes" on a terminal; refuses without one (unless `auto_approve`). Ctrl-C at the
/// prompt is a "no".
async fn confirm(what: &str, auto_approve: bool, interrupt: &Interrupt) -> miette::Result<bool> {
    if auto_approve {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(miette!(
            help = "pass --auto-approve to run without confirmation",
            "refusing to {what} without confirmation: stdin is not a terminal"
        ));
    }
    eprint!("Do you want to {what}? Only 'yes' will be accepted: ");
    std::io::stderr().flush().into_diagnostic()?;
    // The answer is read on a thread of its own so that a Ctrl-C at the prompt is seen here
    // (the thread, blocked on the terminal, ends with the process).
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    tokio::select! {
        biased;
        () = interrupt.graceful().cancelled() => {
            eprintln!();
            Ok(false)
        }
        line = rx => match line {
            Ok(read) => Ok(read.into_diagnostic()?.trim() == "yes"),
            Err(_) => Ok(false),
        },
    }
}

fn show_plan(change_set: &ChangeSet, output: OutputFormat) {
    match output {
        OutputFormat::Human => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            print!("{}", render_human(change_set, HumanOptions { color }));
        }
        // One line, like the progress events that follow it.
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({"event": "plan", "format": 1, "change_set": change_set})
        ),
    }
}

/// Whether `path` holds a saved change set (JSON) rather than a plan (TOML).
fn is_saved(path: &std::path::Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|b| b.iter().copied().find(|c| !c.is_ascii_whitespace()))
        == Some(b'{')
}

pub async fn run(args: ApplyArgs) -> miette::Result<ExitStatus> {
    // Ctrl-C is taken from the start: before the change set is confirmed it ends the command
    // (nothing was written, the lock is released); after, the engine stops and rolls back.
    with_ctrl_c(|interrupt| async move { apply_command(args, &interrupt).await }).await
}

async fn apply_command(args: ApplyArgs, interrupt: &Interrupt) -> miette::Result<ExitStatus> {
    let saved = if is_saved(&args.plan) {
        Some(saved::load(&args.plan)?)
    } else {
        None
    };
    let input = PlanInput {
        plan: match &saved {
            Some(s) => resolve_saved_plan(&args.plan, s),
            None => args.plan.clone(),
        },
        vars: args.vars.clone(),
        var_files: args.var_files.clone(),
    };
    let targets: Vec<String> = match &saved {
        Some(s) if args.stack.targets.is_empty() => s.targets.clone(),
        _ => args.stack.targets.clone(),
    };
    let Some(session) = unless_interrupted(
        interrupt,
        INTERRUPTED_BEFORE_APPLY,
        Session::open(SessionArgs {
            input: &input,
            cluster: &args.stack.cluster,
            state: args.stack.state.as_deref(),
            repo_dirs: &args.stack.repo_dirs,
            targets: &targets,
            parallelism: args.parallelism,
            command: "apply",
        }),
    )
    .await?
    else {
        return Ok(ExitStatus::Error);
    };
    let options = RunOptions {
        parallelism: usize::from(args.parallelism),
        overall_timeout: match &args.timeout {
            Some(t) => Some(parse_duration(t).ok_or_else(|| {
                miette!(help = "e.g. 10m, 1h30m", "--timeout {t}: not a duration")
            })?),
            None => None,
        },
        force_conflicts: args.force_conflicts,
        no_rollback: args.no_rollback,
        ..RunOptions::default()
    };
    let reporter = reporter(args.output);
    apply_phases(
        &session,
        &args,
        saved.as_ref(),
        &options,
        reporter.as_ref(),
        interrupt,
    )
    .await
}

const INTERRUPTED_BEFORE_APPLY: &str = "interrupted before the apply started: nothing was applied";

/// The plan file a saved change set names, relative to the saved file's directory when it
/// does not exist as given.
fn resolve_saved_plan(saved_path: &std::path::Path, saved: &SavedChangeSet) -> std::path::PathBuf {
    let named = std::path::PathBuf::from(&saved.plan_file);
    if named.exists() {
        return named;
    }
    saved_path
        .parent()
        .map(|d| d.join(&named))
        .filter(|p| p.exists())
        .unwrap_or(named)
}

async fn apply_phases(
    session: &Session,
    args: &ApplyArgs,
    saved: Option<&SavedChangeSet>,
    options: &RunOptions,
    reporter: &dyn Reporter,
    interrupt: &Interrupt,
) -> miette::Result<ExitStatus> {
    // Lint first: error-level findings stop the apply before anything is written (a saved
    // change set was linted by the plan that wrote it).
    if saved.is_none() {
        let previous = load_previous(session.store.as_ref())?;
        let lint = unless_interrupted(interrupt, INTERRUPTED_BEFORE_APPLY, session.lint(&previous))
            .await?;
        super::plan::show_lint(&lint, args.output);
        if lint.blocks(false) {
            return Err(super::plan::lint_stops(&lint, "apply"));
        }
    }
    let store = session.store.as_ref();
    if !store.unfinished_runs()?.is_empty() {
        let Some(choice) = args.on_unfinished else {
            return Err(miette!(
                help = "run `meshplan apply --on-unfinished complete` (keep what it did) or `--on-unfinished rollback`, or `meshplan rollback`",
                "the state holds an unfinished run (meshplan stopped before it ended)"
            ));
        };
        let choice = match choice {
            OnUnfinished::Complete => ResumeChoice::Complete,
            OnUnfinished::Rollback => ResumeChoice::RollBack,
        };
        let summaries = unless_interrupted(
            interrupt,
            "interrupted while finishing the unfinished run: its journal keeps what is left",
            async {
                Ok(
                    apply::resume_unfinished(store, &session.cluster, choice, options, reporter)
                        .await?,
                )
            },
        )
        .await?;
        if summaries
            .iter()
            .any(|s| !s.outcome.is_success() && s.next_step.is_some())
        {
            return Ok(ExitStatus::Error);
        }
    }
    let meta = store.meta()?;
    let previous = load_previous(store)?;
    let rendered = RenderedLog::default();
    let first = unless_interrupted(
        interrupt,
        INTERRUPTED_BEFORE_APPLY,
        session.change_set(&previous, Some(&rendered), false),
    )
    .await?;
    if let Some(saved) = saved {
        check_saved(session, saved, &meta, &first)?;
    }
    show_plan(&first, args.output);
    if first.has_conflicts() && !options.force_conflicts {
        return Err(miette!(
            help = "change the plan, or pass --force-conflicts to take the fields",
            "objects conflict with another field manager (see the plan above)"
        ));
    }
    if !first.has_changes() {
        eprintln!("No changes. The cluster matches the plan.");
        return Ok(ExitStatus::Success);
    }
    if saved.is_none() && !confirm("apply these changes", args.auto_approve, interrupt).await? {
        eprintln!("Apply cancelled.");
        return Ok(ExitStatus::Error);
    }
    // Ctrl-C reaches the engine from here on.
    let mut run = PhasedRun::new();
    let result = run_phases(
        session, first, previous, rendered, options, reporter, interrupt, &mut run,
    )
    .await;
    // A failure between phases (a read that never resolves, an interrupt, a plan error) ends
    // the whole run: everything the earlier phases did is rolled back (or, with
    // --no-rollback, kept with its journal).
    match result {
        Err(error) if run.id().is_some() => {
            // The report (every action, every rollback action) goes out as the run's
            // `finished` event.
            run.roll_back(
                &session.cluster,
                store,
                options,
                reporter,
                interrupt,
                error.to_string(),
            )
            .await;
            Err(error)
        }
        other => other,
    }
}

/// Applies `first` and the phases after it (see the module overview).
#[allow(clippy::too_many_arguments)]
async fn run_phases(
    session: &Session,
    first: ChangeSet,
    mut previous: BTreeMap<Address, crate::render::PreviousRender>,
    rendered: RenderedLog,
    options: &RunOptions,
    reporter: &dyn Reporter,
    interrupt: &Interrupt,
    run: &mut PhasedRun,
) -> miette::Result<ExitStatus> {
    let store = session.store.as_ref();
    let unknown_at_plan: Vec<String> = first
        .nodes
        .iter()
        .filter(|n| {
            matches!(
                n.status,
                NodeStatus::ReadDuringApply | NodeStatus::RenderedDuringApply { .. }
            )
        })
        .map(|n| n.address.clone())
        .collect();

    let mut change_set = first;
    let mut evaluated: BTreeSet<String> = BTreeSet::new();
    let mut applied_any = false;
    let mut renders: BTreeMap<Address, crate::render::PreviousRender> = BTreeMap::new();
    for phase in 0..MAX_PHASES {
        let deferred = adapter::deferred_nodes(&change_set, &session.loaded.graph, &evaluated);
        let input = adapter::apply_input(
            &change_set,
            &session.loaded.plan,
            &session.loaded.graph,
            &deferred,
        )?;
        let mut applied_this_phase = false;
        let has_work = input.nodes.iter().any(|n| {
            n.objects
                .iter()
                .any(|o| o.action != apply::ObjectAction::NoOp)
        });
        if has_work {
            applied_this_phase = true;
            let summary = apply::apply_phase(
                &session.cluster,
                store,
                &input,
                options,
                reporter,
                interrupt,
                run,
            )
            .await?;
            applied_any = true;
            if !summary.outcome.is_success() {
                // The phase's rollback restored what every phase of this apply did; the
                // report went out as the run's `finished` event.
                return Ok(ExitStatus::Error);
            }
        }
        // What each applied node rendered to (render stability of later plans); kept in
        // the state once the whole apply succeeded.
        if let Ok(log) = rendered.lock() {
            for n in &input.nodes {
                if let Some(address) = Address::parse(&n.address)
                    && let Some(p) = log.get(&address)
                    && previous.get(&address) != Some(p)
                {
                    previous.insert(address.clone(), p.clone());
                    renders.insert(address, p.clone());
                }
            }
        }
        if deferred.is_empty() {
            break;
        }
        if applied_this_phase {
            run.phase_done(reporter);
        }
        if interrupt_requested(interrupt) {
            return Err(miette!(
                "interrupted between phases; nothing more was started"
            ));
        }
        let progressed = tokio::select! {
            biased;
            () = interrupt.graceful().cancelled() => {
                return Err(miette!("interrupted between phases; nothing more was started"));
            }
            progressed = resolve_reachable(session, &change_set, &deferred, &mut evaluated, options) => progressed?,
        };
        change_set = session.change_set(&previous, Some(&rendered), true).await?;
        let still = adapter::deferred_nodes(&change_set, &session.loaded.graph, &evaluated);
        if !progressed && still == deferred {
            return Err(miette!(
                "these nodes stay unknown: {} (a read whose object never appears, or a check that never passes)",
                still.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if phase + 1 == MAX_PHASES {
            return Err(miette!("apply did not converge in {MAX_PHASES} phases"));
        }
    }
    for (address, p) in &renders {
        store_previous(store, address, p)?;
    }
    if let Some(summary) = run.close(store, reporter)?
        && !summary.outcome.is_success()
    {
        return Ok(ExitStatus::Error);
    }
    if !unknown_at_plan.is_empty() {
        show_known_after_apply(session, &unknown_at_plan).await;
    }
    if !applied_any {
        eprintln!("Nothing was sent to the cluster.");
    }
    eprintln!("Apply complete.");
    Ok(ExitStatus::Success)
}

fn interrupt_requested(interrupt: &Interrupt) -> bool {
    interrupt.graceful().is_cancelled()
}

/// Evaluates the checks and waits for the objects of the reads whose dependencies are all
/// applied. Returns whether something was resolved.
async fn resolve_reachable(
    session: &Session,
    change_set: &ChangeSet,
    deferred: &BTreeSet<String>,
    evaluated: &mut BTreeSet<String>,
    options: &RunOptions,
) -> miette::Result<bool> {
    let plan = &session.loaded.plan;
    let graph = &session.loaded.graph;
    let scope = plan.static_scope();
    let mut progressed = false;
    for node in &change_set.nodes {
        if !deferred.contains(&node.address) {
            continue;
        }
        let Some(address) = Address::parse(&node.address) else {
            continue;
        };
        let ready = graph
            .dependencies(&address)
            .iter()
            .all(|d| !deferred.contains(&d.to_string()));
        if !ready {
            continue;
        }
        let Some(model) = plan.node(&address) else {
            continue;
        };
        let timeout = model
            .timeout
            .or(model.wait.timeout)
            .unwrap_or(options.object_timeout);
        match (&node.status, &model.spec) {
            (NodeStatus::CheckDuringApply, NodeSpec::Check(check)) => {
                let target = check.object_ref(model, &scope).into_diagnostic()?;
                let (condition, status) = (check.condition.clone(), check.status.clone());
                let met = move |o: Option<&Value>| {
                    o.and_then(|o| o.pointer("/status/conditions"))
                        .and_then(Value::as_array)
                        .is_some_and(|cs| {
                            cs.iter().any(|c| {
                                c.get("type").and_then(Value::as_str) == Some(condition.as_str())
                                    && c.get("status").and_then(Value::as_str)
                                        == Some(status.as_str())
                            })
                        })
                };
                let outcome = session.cluster.wait_for(&target, &met, timeout).await?;
                if !outcome.is_met() {
                    return Err(miette!(
                        "{}: {} did not reach {}={} within {:?}",
                        node.address,
                        target,
                        check.condition,
                        check.status,
                        timeout
                    ));
                }
                eprintln!("{}: {} is {}.", node.address, target, check.condition);
                evaluated.insert(node.address.clone());
                progressed = true;
            }
            (NodeStatus::ReadDuringApply, NodeSpec::Read(read)) => {
                let target = read.object_ref(model, &scope).into_diagnostic()?;
                let select = read.select.clone();
                let exists = move |o: Option<&Value>| {
                    o.is_some_and(|o| crate::diff::planner::select(o, &select).is_some())
                };
                let outcome = session.cluster.wait_for(&target, &exists, timeout).await?;
                if !outcome.is_met() {
                    return Err(miette!(
                        "{}: {} did not appear (with the value read) within {:?}",
                        node.address,
                        target,
                        timeout
                    ));
                }
                progressed = true;
            }
            _ => {}
        }
    }
    Ok(progressed)
}

/// The report of values that were unknown at plan time (sensitive ones masked).
async fn show_known_after_apply(session: &Session, nodes: &[String]) {
    let plan = &session.loaded.plan;
    let scope = plan.static_scope();
    eprintln!("Known after apply:");
    for a in nodes {
        let Some(address) = Address::parse(a) else {
            continue;
        };
        let Some(model) = plan.node(&address) else {
            continue;
        };
        match &model.spec {
            NodeSpec::Read(read) => {
                let Ok(target) = read.object_ref(model, &scope) else {
                    continue;
                };
                let live = session.cluster.get(&target).await.ok().flatten();
                let value = live
                    .as_ref()
                    .and_then(|o| crate::diff::planner::select(o, &read.select));
                let shown = match value {
                    Some(_) if read.sensitive => "(sensitive)".to_owned(),
                    Some(v) => v.to_string(),
                    None => "(not found)".to_owned(),
                };
                eprintln!("  {a}.value = {shown}");
            }
            _ => eprintln!("  {a}: rendered during apply with the values read"),
        }
    }
}

/// Refuses a saved change set whose state or live objects moved since it was planned, or
/// whose fresh plan differs from it.
fn check_saved(
    session: &Session,
    saved: &SavedChangeSet,
    meta: &state::StateMeta,
    fresh: &ChangeSet,
) -> miette::Result<()> {
    let help = "plan again (`meshplan plan -o FILE`) and apply the new change set";
    if saved.state.lineage != meta.lineage || saved.state.serial != meta.serial {
        return Err(miette!(
            help = help,
            "the saved change set is stale: it was planned against state lineage {} serial {}, the state is now lineage {} serial {}",
            saved.state.lineage,
            saved.state.serial,
            meta.lineage,
            meta.serial
        ));
    }
    if saved.cluster != session.cluster.url() {
        return Err(miette!(
            help = help,
            "the saved change set was planned against {}, not {}",
            saved.cluster,
            session.cluster.url()
        ));
    }
    let digests = session.input_digests(fresh);
    if digests.plan != saved.inputs.plan || digests.values != saved.inputs.values {
        return Err(miette!(
            help = help,
            "the saved change set is stale: the plan file or its variable values changed since it was planned"
        ));
    }
    let fresh_objects: BTreeMap<(String, ObjectRef), &crate::diff::ObjectChange> = fresh
        .objects()
        .map(|(n, o)| ((n.to_owned(), o.object.clone()), o))
        .collect();
    for (node, o) in saved.change_set.objects() {
        let now = fresh_objects.get(&(node.to_owned(), o.object.clone()));
        let live_rv = now.and_then(|c| c.live_resource_version.clone());
        if o.action != Action::Create
            && o.action != Action::Hook
            && o.live_resource_version.is_some()
            && live_rv != o.live_resource_version
        {
            return Err(miette!(
                help = help,
                "the saved change set is stale: {node}: {} changed in the cluster since it was planned (resourceVersion {} then, {} now)",
                o.object,
                o.live_resource_version.clone().unwrap_or_default(),
                live_rv.unwrap_or_else(|| "absent".to_owned())
            ));
        }
        let same =
            now.is_some_and(|c| c.action == o.action && c.desired_digest == o.desired_digest);
        if !same && o.action != Action::KnownAfterApply {
            return Err(miette!(
                help = help,
                "the saved change set is stale: {node}: {} would now be {}",
                o.object,
                now.map_or("left alone", |c| c.action.verb())
            ));
        }
    }
    let saved_objects: BTreeSet<(String, ObjectRef)> = saved
        .change_set
        .objects()
        .map(|(n, o)| (n.to_owned(), o.object.clone()))
        .collect();
    for (node, o) in fresh.objects() {
        if o.action.is_change() && !saved_objects.contains(&(node.to_owned(), o.object.clone())) {
            return Err(miette!(
                help = help,
                "the saved change set is stale: {node}: {} {}, which the saved change set does not say",
                o.object,
                o.action.verb()
            ));
        }
    }
    Ok(())
}

pub async fn destroy(args: DestroyArgs) -> miette::Result<ExitStatus> {
    // As for apply: before the confirmation Ctrl-C ends the command, after it the engine stops.
    with_ctrl_c(|interrupt| async move { destroy_command(args, &interrupt).await }).await
}

async fn destroy_command(args: DestroyArgs, interrupt: &Interrupt) -> miette::Result<ExitStatus> {
    let Some(session) = unless_interrupted(
        interrupt,
        "interrupted before the destroy started: nothing was deleted",
        Session::open(SessionArgs {
            input: &args.input,
            cluster: &args.stack.cluster,
            state: args.stack.state.as_deref(),
            repo_dirs: &args.stack.repo_dirs,
            targets: &args.stack.targets,
            parallelism: args.parallelism,
            command: "destroy",
        }),
    )
    .await?
    else {
        return Ok(ExitStatus::Error);
    };
    let store = session.store.as_ref();
    let targets = if args.stack.targets.is_empty() {
        None
    } else {
        Some(
            session
                .targets
                .iter()
                .map(ToString::to_string)
                .collect::<BTreeSet<_>>(),
        )
    };
    let request = adapter::destroy_request(
        &session.loaded.plan,
        &session.loaded.graph,
        targets.clone(),
        args.with_foreign_objects,
    );
    // The selected nodes (the targets and the nodes depending on them); protected ones refuse.
    let records = store.objects()?;
    let recorded: BTreeSet<String> = records.iter().map(|r| r.node.clone()).collect();
    let selected = request.selected_nodes(&recorded);
    let prevented: Vec<&str> = request
        .nodes
        .iter()
        .filter(|n| n.prevent_destroy && selected.contains(&n.address))
        .map(|n| n.address.as_str())
        .collect();
    if !prevented.is_empty() {
        return Err(miette!(
            help = "leave those nodes out with --target (destroy the nodes that do not depend on them), or set prevent_destroy = false",
            "refusing to destroy: prevent_destroy is set on {}",
            prevented.join(", ")
        ));
    }
    // What will be deleted: the records of the selected nodes.
    println!("meshplan will delete these objects the plan owns:");
    let mut count = 0;
    for r in &records {
        if selected.contains(&r.node) {
            println!("  - {}  {}", r.node, r.object);
            count += 1;
        }
    }
    println!("Destroy: {count} to destroy.");
    if count == 0 {
        eprintln!("Nothing to destroy.");
        return Ok(ExitStatus::Success);
    }
    if !confirm("destroy these objects", args.auto_approve, interrupt).await? {
        eprintln!("Destroy cancelled.");
        return Ok(ExitStatus::Error);
    }
    let reporter = reporter(args.output);
    let options = RunOptions {
        parallelism: usize::from(args.parallelism),
        ..RunOptions::default()
    };
    let summary = apply::destroy(
        &session.cluster,
        store,
        &request,
        &options,
        reporter.as_ref(),
        interrupt,
    )
    .await;
    let summary = summary?;
    for left in &summary.left_in_place {
        eprintln!("kept: {} ({})", left.object, left.reason);
    }
    if summary.outcome.is_success() {
        eprintln!("Destroy complete.");
        Ok(ExitStatus::Success)
    } else {
        Ok(ExitStatus::Error)
    }
}

pub async fn rollback(args: RollbackArgs) -> miette::Result<ExitStatus> {
    // Ctrl-C stops the rollback where it is (its journal keeps what is left, as after a
    // crash) and releases the writer lock.
    with_ctrl_c(|interrupt| async move {
        unless_interrupted(
            &interrupt,
            "interrupted: the rollback stopped; its journal keeps what is left (run `meshplan rollback` again)",
            rollback_command(args),
        )
        .await
    })
    .await
}

async fn rollback_command(args: RollbackArgs) -> miette::Result<ExitStatus> {
    let Some(session) = Session::open(SessionArgs {
        input: &args.input,
        cluster: &args.stack.cluster,
        state: args.stack.state.as_deref(),
        repo_dirs: &args.stack.repo_dirs,
        targets: &[],
        parallelism: 10,
        command: "rollback",
    })
    .await?
    else {
        return Ok(ExitStatus::Error);
    };
    let store = session.store.as_ref();
    if store.unfinished_runs()?.is_empty() {
        eprintln!("No unfinished run: nothing to roll back.");
        return Ok(ExitStatus::Success);
    }
    let reporter = reporter(args.output);
    let summaries = apply::resume_unfinished(
        store,
        &session.cluster,
        ResumeChoice::RollBack,
        &RunOptions::default(),
        reporter.as_ref(),
    )
    .await?;
    Ok(
        if summaries
            .iter()
            .all(|s| s.outcome.is_success() || s.next_step.is_none())
        {
            ExitStatus::Success
        } else {
            ExitStatus::Error
        },
    )
}

/// The state directory of a `state` subcommand (the plan names the default).
fn state_dir(at: &crate::cli::StateArgs) -> miette::Result<std::path::PathBuf> {
    let cwd = std::env::current_dir().into_diagnostic()?;
    let name = match &at.state {
        Some(_) => String::new(),
        None => {
            let loaded = crate::load::load(&super::load_request(&PlanInput {
                plan: at.plan.clone(),
                vars: Vec::new(),
                var_files: Vec::new(),
            }))
            .map_err(|d| {
                super::print_diagnostics(&d);
                miette!("the plan does not load")
            })?;
            loaded.plan.name
        }
    };
    Ok(state::resolve_dir(at.state.as_deref(), &cwd, &name))
}

pub async fn state(command: StateCommand) -> miette::Result<ExitStatus> {
    match command {
        StateCommand::List(at) => {
            let store = SledStore::open(&state_dir(&at)?, "state list")?;
            let meta = store.meta()?;
            println!("lineage {} serial {}", meta.lineage, meta.serial);
            for r in store.objects()? {
                println!("{}  {}", r.node, r.object);
            }
            for run in store.unfinished_runs()? {
                println!(
                    "unfinished run {} ({}, started {})",
                    run.run.run, run.run.command, run.run.started_at
                );
            }
            Ok(ExitStatus::Success)
        }
        StateCommand::Show(a) => {
            let store = SledStore::open(&state_dir(&a.at)?, "state show")?;
            let records: Vec<_> = store
                .objects()?
                .into_iter()
                .filter(|r| r.node == a.address)
                .collect();
            if records.is_empty() {
                return Err(miette!("no records of {} in the state", a.address));
            }
            for r in records {
                let body = strip_server_fields(r.last_applied.redacted());
                println!("# {}  {}", r.node, r.object);
                println!("#   uid {}", r.uid.as_deref().unwrap_or("-"));
                println!(
                    "#   resourceVersion {}",
                    r.resource_version.as_deref().unwrap_or("-")
                );
                println!("#   applied digest {}", r.applied_digest);
                println!("{}", serde_json::to_string_pretty(&body).into_diagnostic()?);
            }
            Ok(ExitStatus::Success)
        }
        StateCommand::Rm(a) => {
            let store = SledStore::open(&state_dir(&a.at)?, "state rm")?;
            let records: Vec<_> = store
                .objects()?
                .into_iter()
                .filter(|r| r.node == a.address)
                .collect();
            if records.is_empty() {
                return Err(miette!("no records of {} in the state", a.address));
            }
            let mut batch = WriteBatch::new();
            for r in &records {
                batch = batch.remove_object(&r.node, &r.object);
            }
            store.commit(batch)?;
            eprintln!(
                "Removed {} record(s) of {} from the state; the objects stay in the cluster.",
                records.len(),
                a.address
            );
            Ok(ExitStatus::Success)
        }
        StateCommand::Unlock(u) => {
            let dir = state_dir(&u.at)?;
            let broken = if u.force {
                WriterLock::force_break(&dir)?
            } else {
                WriterLock::break_stale(&dir)?
            };
            match broken {
                Some(holder) => eprintln!("Removed the lock of {holder}."),
                None => eprintln!("The state is not locked."),
            }
            Ok(ExitStatus::Success)
        }
    }
}
