//! Progress of apply, rollback and destroy: the engine's [`Event`]s rendered for people and
//! machines.
//!
//! - [`PlainProgress`]: one timestamped line per event, for logs and CI (not a terminal).
//! - [`JsonProgress`]: one JSON object per line (`--output json`): the event's fields, its
//!   `event` tag and a `time`; versioned by [`PROGRESS_FORMAT`].
//! - [`LiveProgress`]: on a terminal, an indicatif view with one line per running node saying
//!   what it does or waits for; finished nodes and the summary scroll above it.
//!
//! [`progress_reporter`] picks one. Nothing here uses colour, so `NO_COLOR` is honoured.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apply::{Event, Reporter, RunKind, RunOutcome, Summary};

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

/// The first line of the final report: what kind of run, how it ended, how much it did. A
/// rollback run (`meshplan rollback`, `apply --on-unfinished`) says whether the unfinished run
/// was rolled back or completed.
fn headline(summary: &Summary) -> String {
    let rolled_back = count(summary.rolled_back.len(), "action");
    match (summary.kind, summary.outcome) {
        (RunKind::Rollback, RunOutcome::RolledBack) => {
            return format!(
                "rollback succeeded: run {} was rolled back ({rolled_back} rolled back)",
                summary.run
            );
        }
        (RunKind::Rollback, RunOutcome::Succeeded) => {
            return format!(
                "unfinished run {} completed: what it did is kept",
                summary.run
            );
        }
        (RunKind::Rollback, RunOutcome::RollbackFailed) => {
            return format!(
                "rollback of run {} failed ({rolled_back} rolled back)",
                summary.run
            );
        }
        _ => {}
    }
    let outcome = match summary.outcome {
        RunOutcome::Succeeded => "succeeded",
        RunOutcome::RolledBack => "failed and was rolled back",
        RunOutcome::FailedNoRollback => "failed (nothing rolled back)",
        RunOutcome::RollbackFailed => "failed, and its rollback failed",
        RunOutcome::Aborted => "was stopped at once",
        RunOutcome::Failed => "failed",
    };
    format!(
        "{} {}: {}{}",
        format!("{:?}", summary.kind).to_lowercase(),
        outcome,
        count(summary.actions.len(), "action"),
        if summary.rolled_back.is_empty() {
            String::new()
        } else {
            format!(", {} rolled back", summary.rolled_back.len())
        }
    )
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
                let _ = writeln!(out, "{time} {line}");
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
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        }
    }
}

/// The live view: one spinner line per running node.
pub struct LiveProgress {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
    style: ProgressStyle,
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
        }
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
        let _ = self.multi.println(line);
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
                    bar.set_message(format!("{object}: {reason}"));
                }
            }
            Event::StepDone { node, .. } => {
                if let Some(bar) = self.bar(node) {
                    bar.set_message(event_line(event));
                }
            }
            Event::Retrying { node, object, .. } => {
                if let Some(bar) = self.bar(node) {
                    let line = event_line(event);
                    let shown = line
                        .strip_prefix(&format!("{node}: "))
                        .unwrap_or(&line)
                        .to_owned();
                    bar.set_message(shown);
                }
                let _ = object;
            }
            Event::NodeDone { node } | Event::NodeFailed { node, .. } => {
                self.finish(node, event_line(event));
            }
            Event::NodeSkipped { node, .. } => self.finish(node, event_line(event)),
            Event::StepFailed { .. }
            | Event::RunStarted { .. }
            | Event::RollbackStarted { .. }
            | Event::PhaseDone { .. }
            | Event::CheckPassed { .. }
            | Event::LeftInPlace { .. }
            | Event::Finished { .. } => {
                for line in event_line(event).lines() {
                    let _ = self.multi.println(line);
                }
            }
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressFormat {
    /// Live view on a terminal, plain lines otherwise.
    Human,
    /// JSON lines (`--output json`).
    Json,
}

/// The reporter for a command: JSON lines on stdout for `Json`; on stderr, the live view when
/// it is a terminal, else plain lines.
pub fn progress_reporter(format: ProgressFormat, stderr_is_terminal: bool) -> Box<dyn Reporter> {
    match format {
        ProgressFormat::Json => Box::new(JsonProgress::new(std::io::stdout())),
        ProgressFormat::Human if stderr_is_terminal => Box::new(LiveProgress::new()),
        ProgressFormat::Human => Box::new(PlainProgress::new(std::io::stderr())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{ActionTaken, RunKind, StepAction};
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
