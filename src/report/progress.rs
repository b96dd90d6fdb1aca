//! Progress of apply, rollback and destroy: the engine's [`Event`]s rendered for people and
//! machines.
//!
//! - [`NodeLines`]: what a person reads in a log or CI (not a terminal): one line per node
//!   when it is done, with what it did and how long it took in human units (`helm.x: 42
//!   created, 4 hooks run (3.2s)`), failures and skipped nodes, a "still waiting" line for a
//!   node that waits long, and a final summary of counts per action ([`summary_counts`]).
//! - [`PlainProgress`]: one timestamped line per event, every step and wait (`-v`).
//! - [`JsonProgress`]: one JSON object per line (`--output json`): the event's fields, its
//!   `event` tag and a `time`; versioned by [`PROGRESS_FORMAT`].
//! - [`LiveProgress`]: on a terminal, an indicatif view with one line per running node saying
//!   what it does or waits for; finished nodes and the summary scroll above it.
//!
//! [`progress_reporter`] picks one. Nothing here uses colour, so `NO_COLOR` is honoured.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apply::{ActionTaken, Event, Reporter, RunKind, RunOutcome, StepAction, Summary};
use crate::cluster::ObjectRef;
use crate::model::human_duration;
use crate::render::masking::redact_output;

/// Version of the JSON lines' shape.
pub const PROGRESS_FORMAT: u32 = 1;

/// The one-line text of an event (no timestamp).
pub fn event_line(event: &Event) -> String {
    match event {
        Event::RunStarted { run, kind, nodes } => {
            format!("{kind:?} run {run} started ({nodes} nodes)").to_lowercase()
        }
        Event::NodeStarted { node } => format!("{node}: started"),
        Event::StepStarted {
            node,
            object,
            action,
        } => format!("{node}: {} {object}", action.verb()),
        Event::Waiting {
            node,
            object,
            reason,
        } => format!("{node}: {object}: {reason}"),
        Event::StepDone {
            node,
            object,
            action,
        } => format!("{node}: {object}: {} done", action.verb()),
        Event::StepFailed {
            node,
            object,
            action,
            message,
        } => format!("{node}: {object}: {} FAILED: {message}", action.verb()),
        Event::Retrying {
            node,
            object,
            request,
            reason,
            attempt,
            attempts,
            delay_ms,
        } => format!(
            "{node}: {object}: {request}: {reason}; retrying in {:.1}s (attempt {attempt} of {attempts})",
            Duration::from_millis(*delay_ms).as_secs_f64()
        ),
        Event::NodeDone { node } => format!("{node}: done"),
        Event::NodeFailed { node, .. } => format!("{node}: failed"),
        Event::NodeSkipped { node, reason } => format!("{node}: skipped ({reason})"),
        Event::RollbackStarted { reason } => format!("rolling back: {reason}"),
        Event::PhaseDone { phase, actions } => format!(
            "phase {phase} done ({}); next: the nodes that use the values read",
            count(*actions, "action")
        ),
        Event::CheckPassed {
            node,
            object,
            condition,
        } => format!("{node}: {object} is {condition}."),
        Event::LeftInPlace { object, reason } => format!("left in place: {object}: {reason}"),
        Event::Finished { summary } => summary_lines(summary).join("\n"),
    }
}

/// `1 action`, `3 actions`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The final report: outcome, root cause, every action, rollback actions, skipped nodes,
/// objects left in place, next step.
pub fn summary_lines(summary: &Summary) -> Vec<String> {
    let mut out = vec![headline(summary)];
    if let Some(cause) = &summary.root_cause {
        out.push(format!("  cause: {cause}"));
    }
    for a in &summary.actions {
        out.push(format!("  {} {}: {}", a.node, a.action.verb(), a.object));
    }
    for a in &summary.rolled_back {
        out.push(format!(
            "  rollback {} {}: {}",
            a.node,
            a.action.verb(),
            a.object
        ));
    }
    for s in &summary.skipped {
        out.push(format!("  skipped {}: {}", s.node, s.reason));
    }
    for l in &summary.left_in_place {
        let (object, reason) = (&l.object, &l.reason);
        out.push(format!("  left in place {object}: {reason}"));
    }
    if let Some(next) = &summary.next_step {
        out.push(format!("  next: {next}"));
    }
    out
}

/// The final report in counts: the outcome with the number of objects per action (a hook's
/// own clean-up is part of running it) and of objects left in place (each one was reported
/// as an event before), the cause, the rollback's counts, skipped nodes and the next step.
/// `elapsed`: how long the run took, when known.
pub fn summary_counts(summary: &Summary, elapsed: Option<Duration>) -> Vec<String> {
    let mut out = Vec::new();
    let took = elapsed
        .map(|d| format!(" in {}", human_duration(d)))
        .unwrap_or_default();
    // Each object left in place was reported as an event just before this summary: here it
    // is a count only.
    let counts = match summary.left_in_place.len() {
        0 => action_counts(&summary.actions),
        left => [
            action_counts(&summary.actions),
            format!("{left} left in place"),
        ]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(", "),
    };
    out.push(match rollback_headline(summary) {
        Some(line) => format!("{line}{took}"),
        None => format!(
            "{} {}{took}: {}",
            format!("{:?}", summary.kind).to_lowercase(),
            outcome_words(summary.outcome),
            if counts.is_empty() {
                "nothing to do".to_owned()
            } else {
                counts
            }
        ),
    });
    if let Some(cause) = &summary.root_cause {
        out.push(format!("  cause: {cause}"));
    }
    if !summary.rolled_back.is_empty() {
        out.push(format!(
            "  rolled back: {}",
            action_counts(&summary.rolled_back)
        ));
    }
    for s in &summary.skipped {
        out.push(format!("  skipped {}: {}", s.node, s.reason));
    }
    if let Some(next) = &summary.next_step {
        out.push(format!("  next: {next}"));
    }
    out
}

/// The first line of the final report: what kind of run, how it ended, how much it did. A
/// rollback run (`meshplan rollback`, `apply --on-unfinished`) says whether the unfinished run
/// was rolled back or completed.
fn headline(summary: &Summary) -> String {
    if let Some(line) = rollback_headline(summary) {
        return line;
    }
    format!(
        "{} {}: {}{}",
        format!("{:?}", summary.kind).to_lowercase(),
        outcome_words(summary.outcome),
        count(summary.actions.len(), "action"),
        if summary.rolled_back.is_empty() {
            String::new()
        } else {
            format!(", {} rolled back", summary.rolled_back.len())
        }
    )
}

/// The first line of a rollback run's report (`meshplan rollback`, `apply --on-unfinished`):
/// whether the unfinished run was rolled back or completed. None for other runs.
fn rollback_headline(summary: &Summary) -> Option<String> {
    let rolled_back = count(summary.rolled_back.len(), "action");
    match (summary.kind, summary.outcome) {
        (RunKind::Rollback, RunOutcome::RolledBack) => {
            return Some(format!(
                "rollback succeeded: run {} was rolled back ({rolled_back} rolled back)",
                summary.run
            ));
        }
        (RunKind::Rollback, RunOutcome::Succeeded) => {
            return Some(format!(
                "unfinished run {} completed: what it did is kept",
                summary.run
            ));
        }
        (RunKind::Rollback, RunOutcome::RollbackFailed) => {
            return Some(format!(
                "rollback of run {} failed ({rolled_back} rolled back)",
                summary.run
            ));
        }
        _ => {}
    }
    None
}

fn outcome_words(outcome: RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Succeeded => "succeeded",
        RunOutcome::RolledBack => "failed and was rolled back",
        RunOutcome::FailedNoRollback => "failed (nothing rolled back)",
        RunOutcome::RollbackFailed => "failed, and its rollback failed",
        RunOutcome::Aborted => "was stopped at once",
        RunOutcome::Failed => "failed",
    }
}

/// `42 created, 3 updated, 4 hooks run`: per action in a fixed order; the deletion of a hook
/// object after it ran (its delete policy) is part of running it.
fn action_counts(actions: &[ActionTaken]) -> String {
    let hooks: BTreeSet<(&str, &ObjectRef)> = actions
        .iter()
        .filter(|a| a.action == StepAction::Hook)
        .map(|a| (a.node.as_str(), &a.object))
        .collect();
    let mut counts: BTreeMap<StepAction, usize> = BTreeMap::new();
    for a in actions {
        if a.action == StepAction::Delete && hooks.contains(&(a.node.as_str(), &a.object)) {
            continue;
        }
        *counts.entry(a.action).or_default() += 1;
    }
    counts_text(&counts)
}

fn counts_text(counts: &BTreeMap<StepAction, usize>) -> String {
    counts
        .iter()
        .map(|(action, n)| match action {
            StepAction::Create => format!("{n} created"),
            StepAction::Update => format!("{n} updated"),
            StepAction::Delete => format!("{n} deleted"),
            StepAction::Adopt => format!("{n} adopted"),
            StepAction::Forget => format!("{n} forgotten"),
            StepAction::Hook => format!("{n} {} run", if *n == 1 { "hook" } else { "hooks" }),
            StepAction::UndoCreate => format!("{n} deleted (undo create)"),
            StepAction::Restore => format!("{n} restored"),
            StepAction::Recreate => format!("{n} recreated"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `error` event that ends the JSON output of a failed command (`--output json`): one
/// line, with the error's message, the causes under it (outermost first) and the help.
pub fn error_event(message: &str, causes: &[String], help: Option<&str>) -> String {
    let mut value = serde_json::json!({
        "event": "error",
        "format": PROGRESS_FORMAT,
        "time": now(),
        "message": message,
        "causes": causes,
    });
    if let (Some(help), Some(map)) = (help, value.as_object_mut()) {
        map.insert("help".to_owned(), help.into());
    }
    format!("{value}\n")
}

/// A clock for the lines' timestamps.
pub type Clock = fn() -> String;

/// A monotonic clock for durations (tests give a fake one).
pub type Ticker = Arc<dyn Fn() -> Instant + Send + Sync>;

/// How often a node that keeps waiting gets a "still waiting" line.
pub const STILL_WAITING_EVERY: Duration = Duration::from_secs(30);

/// One line per node, for people reading a log (see the module overview).
pub struct NodeLines<W: Write + Send> {
    out: Mutex<W>,
    state: Mutex<LinesState>,
    ticker: Ticker,
    still_waiting_every: Duration,
}

#[derive(Default)]
struct LinesState {
    started: Option<Instant>,
    nodes: BTreeMap<String, NodeState>,
}

struct NodeState {
    started: Instant,
    last_line: Instant,
    counts: BTreeMap<StepAction, usize>,
    hooks: BTreeSet<ObjectRef>,
    failed_step: bool,
    reported: bool,
}

impl<W: Write + Send> NodeLines<W> {
    pub fn new(out: W) -> Self {
        Self::with_ticker(out, Arc::new(Instant::now), STILL_WAITING_EVERY)
    }

    /// With a given clock and "still waiting" interval (tests).
    pub fn with_ticker(out: W, ticker: Ticker, still_waiting_every: Duration) -> Self {
        Self {
            out: Mutex::new(out),
            state: Mutex::new(LinesState::default()),
            ticker,
            still_waiting_every,
        }
    }

    /// The writer back (tests).
    pub fn into_inner(self) -> Option<W> {
        self.out.into_inner().ok()
    }

    /// The lines an event gives, updating what is known of its node.
    fn lines(&self, event: &Event) -> Vec<String> {
        let now = (self.ticker)();
        let Ok(mut state) = self.state.lock() else {
            return Vec::new();
        };
        let run_started = *state.started.get_or_insert(now);
        let nodes = &mut state.nodes;
        match event {
            Event::RunStarted { kind, run, .. } => match kind {
                RunKind::Rollback => vec![format!("rollback run {run} started")],
                RunKind::Apply | RunKind::Destroy => Vec::new(),
            },
            Event::NodeStarted { node } => {
                let n = node_state(nodes, node, now);
                if !n.reported {
                    n.started = now;
                    n.last_line = now;
                }
                Vec::new()
            }
            Event::StepStarted { .. } => Vec::new(),
            Event::StepDone {
                node,
                object,
                action,
            } => {
                let n = node_state(nodes, node, now);
                let hook_clean_up = *action == StepAction::Delete && n.hooks.contains(object);
                if *action == StepAction::Hook {
                    n.hooks.insert(object.clone());
                }
                if !hook_clean_up {
                    *n.counts.entry(*action).or_default() += 1;
                }
                Vec::new()
            }
            Event::Waiting {
                node,
                object,
                reason,
            } => {
                let n = node_state(nodes, node, now);
                if now.duration_since(n.last_line) < self.still_waiting_every {
                    return Vec::new();
                }
                n.last_line = now;
                vec![format!(
                    "{node}: still waiting after {}: {object}: {reason}",
                    human_duration(now.duration_since(n.started))
                )]
            }
            // A retried request is worth a line: the run is slower for a reason.
            Event::Retrying { .. } => vec![event_line(event)],
            Event::StepFailed { node, .. } => {
                node_state(nodes, node, now).failed_step = true;
                vec![event_line(event)]
            }
            Event::NodeDone { node } => {
                let n = node_state(nodes, node, now);
                if n.reported || n.counts.is_empty() {
                    return Vec::new();
                }
                n.reported = true;
                vec![format!(
                    "{node}: {} ({})",
                    counts_text(&n.counts),
                    human_duration(now.duration_since(n.started))
                )]
            }
            Event::NodeFailed { node, message } => {
                let n = node_state(nodes, node, now);
                n.reported = true;
                let took = human_duration(now.duration_since(n.started));
                if n.failed_step {
                    vec![format!("{node}: failed after {took}")]
                } else {
                    vec![format!("{node}: failed after {took}: {message}")]
                }
            }
            Event::RollbackStarted { .. } => {
                // The rollback reports each node it undoes once more.
                nodes.clear();
                vec![event_line(event)]
            }
            Event::Finished { summary } => {
                summary_counts(summary, Some(now.duration_since(run_started)))
            }
            Event::NodeSkipped { .. }
            | Event::PhaseDone { .. }
            | Event::CheckPassed { .. }
            | Event::LeftInPlace { .. } => vec![event_line(event)],
        }
    }
}

/// What is known of `node`, created when first seen.
fn node_state<'a>(
    nodes: &'a mut BTreeMap<String, NodeState>,
    node: &str,
    now: Instant,
) -> &'a mut NodeState {
    nodes.entry(node.to_owned()).or_insert_with(|| NodeState {
        started: now,
        last_line: now,
        counts: BTreeMap::new(),
        hooks: BTreeSet::new(),
        failed_step: false,
        reported: false,
    })
}

impl<W: Write + Send> Reporter for NodeLines<W> {
    fn event(&self, event: &Event) {
        let lines = self.lines(event);
        if lines.is_empty() {
            return;
        }
        if let Ok(mut out) = self.out.lock() {
            for line in lines {
                let _ = writeln!(out, "{}", redact_output(&line));
            }
            let _ = out.flush();
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Plain timestamped lines.
pub struct PlainProgress<W: Write + Send> {
    out: Mutex<W>,
    clock: Clock,
}

impl<W: Write + Send> PlainProgress<W> {
    pub fn new(out: W) -> Self {
        Self::with_clock(out, now)
    }

    /// With a given clock (tests use a fixed one).
    pub fn with_clock(out: W, clock: Clock) -> Self {
        Self {
            out: Mutex::new(out),
            clock,
        }
    }

    /// The writer back (tests).
    pub fn into_inner(self) -> Option<W> {
        self.out.into_inner().ok()
    }
}

impl<W: Write + Send> Reporter for PlainProgress<W> {
    fn event(&self, event: &Event) {
        let time = (self.clock)();
        if let Ok(mut out) = self.out.lock() {
            for line in event_line(event).lines() {
                let _ = writeln!(out, "{time} {}", redact_output(line));
            }
            let _ = out.flush();
        }
    }
}

/// JSON lines.
pub struct JsonProgress<W: Write + Send> {
    out: Mutex<W>,
    clock: Clock,
}

impl<W: Write + Send> JsonProgress<W> {
    pub fn new(out: W) -> Self {
        Self::with_clock(out, now)
    }

    pub fn with_clock(out: W, clock: Clock) -> Self {
        Self {
            out: Mutex::new(out),
            clock,
        }
    }

    pub fn into_inner(self) -> Option<W> {
        self.out.into_inner().ok()
    }
}

impl<W: Write + Send> Reporter for JsonProgress<W> {
    fn event(&self, event: &Event) {
        let mut value = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.insert("format".to_owned(), PROGRESS_FORMAT.into());
            map.insert("time".to_owned(), (self.clock)().into());
        }
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{}", redact_output(&value.to_string()));
            let _ = out.flush();
        }
    }
}

/// The live view: one spinner line per running node.
pub struct LiveProgress {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
    style: ProgressStyle,
    /// The final report lists every action (`-v`), else counts per action.
    verbose: bool,
    started: Instant,
}

impl LiveProgress {
    /// Draws on stderr.
    pub fn new() -> Self {
        Self::with_target(ProgressDrawTarget::stderr())
    }

    pub fn with_target(target: ProgressDrawTarget) -> Self {
        let style = ProgressStyle::with_template("{spinner} {prefix}: {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(BTreeMap::new()),
            style,
            verbose: false,
            started: Instant::now(),
        }
    }

    /// The final report with every action (`-v`).
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    fn bar(&self, node: &str) -> Option<ProgressBar> {
        let mut bars = self.bars.lock().ok()?;
        Some(
            bars.entry(node.to_owned())
                .or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(self.style.clone());
                    bar.set_prefix(node.to_owned());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                })
                .clone(),
        )
    }

    fn finish(&self, node: &str, line: String) {
        let bar = self.bars.lock().ok().and_then(|mut b| b.remove(node));
        if let Some(bar) = bar {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.println(redact_output(&line));
    }
}

impl Default for LiveProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for LiveProgress {
    fn event(&self, event: &Event) {
        match event {
            Event::NodeStarted { node } => {
                if let Some(bar) = self.bar(node) {
                    bar.set_message("starting");
                }
            }
            Event::StepStarted {
                node,
                object,
                action,
            } => {
                if let Some(bar) = self.bar(node) {
                    bar.set_message(format!("{} {object}", action.verb()));
                }
            }
            Event::Waiting {
                node,
                object,
                reason,
            } => {
                if let Some(bar) = self.bar(node) {
                    bar.set_message(redact_output(&format!("{object}: {reason}")).into_owned());
                }
            }
            Event::StepDone { node, .. } => {
                if let Some(bar) = self.bar(node) {
                    bar.set_message(redact_output(&event_line(event)).into_owned());
                }
            }
            Event::Retrying { node, object, .. } => {
                if let Some(bar) = self.bar(node) {
                    let line = event_line(event);
                    let shown = line
                        .strip_prefix(&format!("{node}: "))
                        .unwrap_or(&line)
                        .to_owned();
                    bar.set_message(redact_output(&shown).into_owned());
                }
                let _ = object;
            }
            Event::NodeDone { node } | Event::NodeFailed { node, .. } => {
                self.finish(node, event_line(event));
            }
            Event::NodeSkipped { node, .. } => self.finish(node, event_line(event)),
            Event::Finished { summary } if !self.verbose => {
                for line in summary_counts(summary, Some(self.started.elapsed())) {
                    let _ = self.multi.println(redact_output(&line));
                }
            }
            Event::StepFailed { .. }
            | Event::RunStarted { .. }
            | Event::RollbackStarted { .. }
            | Event::PhaseDone { .. }
            | Event::CheckPassed { .. }
            | Event::LeftInPlace { .. }
            | Event::Finished { .. } => {
                for line in event_line(event).lines() {
                    let _ = self.multi.println(redact_output(line));
                }
            }
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressFormat {
    /// Live view on a terminal, one line per node otherwise.
    Human,
    /// Every step and wait, timestamped, and every action in the final report (`-v`); the
    /// live view on a terminal (with every action in its final report).
    Verbose,
    /// JSON lines (`--output json`).
    Json,
}

/// The reporter for a command: JSON lines on stdout for `Json`; on stderr, the live view when
/// it is a terminal, else one line per node ([`NodeLines`]), or every event with `Verbose`
/// ([`PlainProgress`]).
pub fn progress_reporter(format: ProgressFormat, stderr_is_terminal: bool) -> Box<dyn Reporter> {
    match format {
        ProgressFormat::Json => Box::new(JsonProgress::new(std::io::stdout())),
        ProgressFormat::Human if stderr_is_terminal => Box::new(LiveProgress::new()),
        ProgressFormat::Verbose if stderr_is_terminal => {
            Box::new(LiveProgress::new().verbose(true))
        }
        ProgressFormat::Human => Box::new(NodeLines::new(std::io::stderr())),
        ProgressFormat::Verbose => Box::new(PlainProgress::new(std::io::stderr())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{ActionTaken, LeftInPlace, RunKind, StepAction};
    use crate::cluster::ObjectRef;

    fn fixed() -> String {
        "T".to_owned()
    }

    fn events() -> Vec<Event> {
        let object = ObjectRef::new("v1", "ConfigMap", Some("default"), "a");
        vec![
            Event::StepStarted {
                node: "manifest.a".into(),
                object: object.clone(),
                action: StepAction::Create,
            },
            Event::Waiting {
                node: "manifest.a".into(),
                object: object.clone(),
                reason: "waiting for phase Active".into(),
            },
            Event::Finished {
                summary: Summary {
                    run: "r1".into(),
                    kind: RunKind::Apply,
                    outcome: RunOutcome::RolledBack,
                    root_cause: Some("boom".into()),
                    actions: vec![ActionTaken {
                        node: "manifest.a".into(),
                        object: object.clone(),
                        action: StepAction::Create,
                    }],
                    rolled_back: vec![ActionTaken {
                        node: "manifest.a".into(),
                        object,
                        action: StepAction::UndoCreate,
                    }],
                    skipped: vec![crate::apply::Skipped {
                        node: "manifest.b".into(),
                        reason: "dependency manifest.a failed".into(),
                    }],
                    left_in_place: Vec::new(),
                    next_step: None,
                },
            },
        ]
    }

    #[test]
    fn masking_redacts_a_server_message_that_echoes_a_sensitive_value() {
        // A value of this test only: the registry is the process's.
        let secret = "masking-progress-secret-4f1c";
        crate::render::masking::register_for_output(&[secret.to_owned()]);
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret);
        let failed = Event::StepFailed {
            node: "manifest.a".into(),
            object: ObjectRef::new("v1", "ConfigMap", Some("default"), "a"),
            action: StepAction::Update,
            message: format!(
                "ConfigMap \"a\" is invalid: data.token: Invalid value: \"{secret}\" ({encoded})"
            ),
        };
        let plain = PlainProgress::with_clock(Vec::new(), fixed);
        plain.event(&failed);
        let lines = NodeLines::new(Vec::new());
        lines.event(&failed);
        let json = JsonProgress::with_clock(Vec::new(), fixed);
        json.event(&failed);
        for text in [
            plain.into_inner().unwrap(),
            lines.out.into_inner().unwrap(),
            json.into_inner().unwrap(),
        ] {
            let text = String::from_utf8(text).unwrap();
            assert!(text.contains("Invalid value: "), "{text}");
            assert!(text.contains("(sensitive)"), "{text}");
            assert!(!text.contains(secret), "{text}");
            assert!(!text.contains(encoded.trim_end_matches('=')), "{text}");
        }
    }

    #[test]
    fn plain_lines_are_timestamped() {
        let plain = PlainProgress::with_clock(Vec::new(), fixed);
        for e in events() {
            plain.event(&e);
        }
        let text = String::from_utf8(plain.into_inner().unwrap()).unwrap();
        assert_eq!(
            text,
            "T manifest.a: create v1 ConfigMap default/a\n\
             T manifest.a: v1 ConfigMap default/a: waiting for phase Active\n\
             T apply failed and was rolled back: 1 action, 1 rolled back\n\
             T   cause: boom\n\
             T   manifest.a create: v1 ConfigMap default/a\n\
             T   rollback manifest.a delete (undo create): v1 ConfigMap default/a\n\
             T   skipped manifest.b: dependency manifest.a failed\n"
        );
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let json = JsonProgress::with_clock(Vec::new(), fixed);
        for e in events() {
            json.event(&e);
        }
        let text = String::from_utf8(json.into_inner().unwrap()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["event"], "step_started");
        assert_eq!(lines[0]["object"]["kind"], "ConfigMap");
        assert_eq!(lines[0]["time"], "T");
        assert_eq!(lines[0]["format"], 1);
        assert_eq!(lines[1]["reason"], "waiting for phase Active");
        assert_eq!(lines[2]["summary"]["outcome"], "rolled_back");
        assert_eq!(
            lines[2]["summary"]["rolled_back"][0]["action"],
            "undo_create"
        );
    }

    #[test]
    fn node_lines_say_each_node_once_with_counts_and_duration() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let base = Instant::now();
        let millis = Arc::new(AtomicU64::new(0));
        let clock = Arc::clone(&millis);
        let ticker: Ticker =
            Arc::new(move || base + Duration::from_millis(clock.load(Ordering::SeqCst)));
        let lines = NodeLines::with_ticker(Vec::new(), ticker, Duration::from_secs(30));
        let at = |ms: u64, e: Event| {
            millis.store(ms, Ordering::SeqCst);
            lines.event(&e);
        };
        let cm = |name: &str| ObjectRef::new("v1", "ConfigMap", Some("d"), name);
        let job = ObjectRef::new("batch/v1", "Job", Some("d"), "hook");
        let step = |node: &str, object: &ObjectRef, action| Event::StepDone {
            node: node.into(),
            object: object.clone(),
            action,
        };
        let node = |n: &str| n.to_owned();
        at(
            0,
            Event::RunStarted {
                run: "r1".into(),
                kind: RunKind::Apply,
                nodes: 2,
            },
        );
        at(
            0,
            Event::NodeStarted {
                node: node("helm.a"),
            },
        );
        at(100, step("helm.a", &cm("x"), StepAction::Create));
        at(200, step("helm.a", &cm("y"), StepAction::Create));
        at(300, step("helm.a", &cm("z"), StepAction::Update));
        at(400, step("helm.a", &job, StepAction::Hook));
        // The hook's clean-up (its delete policy) is part of running it.
        at(500, step("helm.a", &job, StepAction::Delete));
        at(
            10_000,
            Event::Waiting {
                node: node("helm.a"),
                object: cm("x"),
                reason: "waiting for Ready".into(),
            },
        );
        at(
            31_000,
            Event::Waiting {
                node: node("helm.a"),
                object: cm("x"),
                reason: "waiting for Ready".into(),
            },
        );
        at(
            42_400,
            Event::NodeDone {
                node: node("helm.a"),
            },
        );
        // A later phase says the node is done again: nothing more is said.
        at(
            43_000,
            Event::NodeDone {
                node: node("helm.a"),
            },
        );
        at(
            43_000,
            Event::NodeStarted {
                node: node("manifest.b"),
            },
        );
        at(
            43_500,
            Event::NodeFailed {
                node: node("manifest.b"),
                message: "boom".into(),
            },
        );
        let summary = Summary {
            run: "r1".into(),
            kind: RunKind::Apply,
            outcome: RunOutcome::Succeeded,
            root_cause: None,
            actions: vec![
                ActionTaken {
                    node: "helm.a".into(),
                    object: cm("x"),
                    action: StepAction::Create,
                },
                ActionTaken {
                    node: "helm.a".into(),
                    object: cm("y"),
                    action: StepAction::Create,
                },
                ActionTaken {
                    node: "helm.a".into(),
                    object: job.clone(),
                    action: StepAction::Hook,
                },
                ActionTaken {
                    node: "helm.a".into(),
                    object: job.clone(),
                    action: StepAction::Delete,
                },
            ],
            rolled_back: Vec::new(),
            skipped: Vec::new(),
            left_in_place: Vec::new(),
            next_step: None,
        };
        at(65_000, Event::Finished { summary });
        let text = String::from_utf8(lines.into_inner().unwrap()).unwrap();
        assert_eq!(
            text,
            "helm.a: still waiting after 31s: v1 ConfigMap d/x: waiting for Ready\n\
             helm.a: 2 created, 1 updated, 1 hook run (42s)\n\
             manifest.b: failed after 500ms: boom\n\
             apply succeeded in 1m05s: 2 created, 1 hook run\n"
        );
    }

    #[test]
    fn an_object_left_in_place_is_reported_once_and_counted_in_the_summary() {
        let lines = NodeLines::new(Vec::new());
        let ns = ObjectRef::new("v1", "Namespace", None, "linkerd");
        let cm = ObjectRef::new("v1", "ConfigMap", Some("linkerd"), "a");
        let reason = "it holds objects this plan does not own".to_owned();
        lines.event(&Event::LeftInPlace {
            object: ns.clone(),
            reason: reason.clone(),
        });
        lines.event(&Event::Finished {
            summary: Summary {
                run: "r1".into(),
                kind: RunKind::Destroy,
                outcome: RunOutcome::Succeeded,
                root_cause: None,
                actions: vec![ActionTaken {
                    node: "manifest.a".into(),
                    object: cm,
                    action: StepAction::Delete,
                }],
                rolled_back: Vec::new(),
                skipped: Vec::new(),
                left_in_place: vec![LeftInPlace { object: ns, reason }],
                next_step: Some("some objects were left in place (listed above)".into()),
            },
        });
        let text = String::from_utf8(lines.into_inner().unwrap()).unwrap();
        assert_eq!(text.matches("v1 Namespace linkerd").count(), 1, "{text}");
        let last = text.lines().rev().nth(1).unwrap_or_default();
        assert!(last.ends_with(": 1 deleted, 1 left in place"), "{text}");
    }

    #[test]
    fn the_live_view_accepts_every_event_without_a_terminal() {
        let live = LiveProgress::with_target(ProgressDrawTarget::hidden());
        live.event(&Event::NodeStarted {
            node: "manifest.a".into(),
        });
        for e in events() {
            live.event(&e);
        }
        assert_eq!(live.bars.lock().unwrap().len(), 1);
        live.event(&Event::NodeDone {
            node: "manifest.a".into(),
        });
        assert!(live.bars.lock().unwrap().is_empty());
    }
}
