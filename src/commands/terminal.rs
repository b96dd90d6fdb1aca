//! The commands' side of the terminal: writing to stdout and stderr, the confirmation prompt,
//! plan diagnostics, lint findings above a plan, colour (as `--color` and `NO_COLOR` say), and
//! the progress reporter for `--output`.
//!
//! Everything the commands print goes through [`out`] and [`err`]: a stream whose reader went
//! away (`meshplan state list PLAN | head -1`) is not an error and never a panic, the rest of
//! the text is dropped and the command ends as it would have (what `cat` and `kubectl` do).

use std::io::{BufRead as _, IsTerminal as _};
use std::sync::OnceLock;

use crate::apply::{Interrupt, Reporter};
use crate::cli::{ColorChoice, ExitStatus, OutputFormat};
use crate::planfile::{Diagnostics, RenderOptions};
use crate::report::progress::{ProgressFormat, error_event, progress_reporter};

use super::CommandError;

/// The `--color` of this process (set once, when the command starts).
static COLOR: OnceLock<ColorChoice> = OnceLock::new();

/// Whether `-v` was given (progress shows every step, the final report every action).
static VERBOSE: OnceLock<bool> = OnceLock::new();

/// Records `--color` and `-v` for the rest of the process.
pub(super) fn set_terminal(choice: ColorChoice, verbose: bool) {
    let _ = COLOR.set(choice);
    let _ = VERBOSE.set(verbose);
}

fn color(is_terminal: bool) -> bool {
    COLOR
        .get()
        .copied()
        .unwrap_or_default()
        .enabled(is_terminal, std::env::var_os("NO_COLOR").as_deref())
}

/// Writes `text` on stdout (see the module's overview for a closed stdout), without the
/// sensitive values the process has seen ([`crate::render::masking::redact_output`]).
pub fn out(text: &str) {
    write_quietly(
        &mut std::io::stdout().lock(),
        &crate::render::masking::redact_output(text),
    );
}

/// Writes `text` on stdout as it is: sensitive values asked for in clear (`show
/// --show-sensitive`).
pub(super) fn out_in_clear(text: &str) {
    write_quietly(&mut std::io::stdout().lock(), text);
}

/// Writes `text` on stderr (a closed stderr drops it, as for [`out`]), without the sensitive
/// values the process has seen.
pub fn err(text: &str) {
    write_quietly(
        &mut std::io::stderr().lock(),
        &crate::render::masking::redact_output(text),
    );
}

/// Writes and flushes; a failed write (the reader went away) drops the text.
fn write_quietly(w: &mut impl std::io::Write, text: &str) {
    let _ = w.write_all(text.as_bytes()).and_then(|()| w.flush());
}

/// A command that failed after saying why on stderr: with `--output json`, its output on
/// stdout ends with an `error` event carrying `message`. Returns the exit status.
pub(super) fn failed(output: OutputFormat, message: &str) -> ExitStatus {
    if output == OutputFormat::Json {
        out(&error_event(message, &[], None));
    }
    ExitStatus::Error
}

/// With `--output json`, a command that ends with an error report ends its output on stdout
/// with an `error` event carrying the report (its message, causes and help); `main` prints the
/// report on stderr as for any output.
pub(super) fn json_error_on_failure(output: OutputFormat, result: &miette::Result<ExitStatus>) {
    if output != OutputFormat::Json {
        return;
    }
    if let Err(report) = result {
        let causes: Vec<String> = report.chain().skip(1).map(ToString::to_string).collect();
        let help = report.help().map(|h| h.to_string());
        out(&error_event(&report.to_string(), &causes, help.as_deref()));
    }
}

/// The note that a lost state's objects are being adopted (`--adopt-lost-state`).
pub(super) fn adopting(adoption: &crate::session::Adoption) {
    err(&format!(
        "note: the state has no records, but the cluster holds {} object{} of this plan (e.g. {}): adopting them (--adopt-lost-state), with the material the charts generate taken from the cluster\n",
        adoption.count,
        if adoption.count == 1 { "" } else { "s" },
        adoption.found.join(", ")
    ));
}

/// Whether stdout takes colour (`--color`; `auto`: a terminal, and no `NO_COLOR`).
pub(super) fn stdout_color() -> bool {
    color(std::io::stdout().is_terminal())
}

/// Whether stderr takes colour (`--color`; `auto`: a terminal, and no `NO_COLOR`).
pub(super) fn stderr_color() -> bool {
    color(std::io::stderr().is_terminal())
}

/// Lint findings above the plan: on stdout with the human plan, on stderr when stdout is
/// JSON; nothing when there are none.
pub(super) fn show_lint(report: &crate::lint::LintReport, output: OutputFormat) {
    use crate::report::lint::{LintHumanOptions, render_above_plan};
    match output {
        OutputFormat::Human => out(&render_above_plan(
            report,
            LintHumanOptions {
                color: stdout_color(),
            },
        )),
        OutputFormat::Json => err(&render_above_plan(
            report,
            LintHumanOptions { color: false },
        )),
    }
}

/// Prints plan diagnostics on stderr: colour as [`stderr_color`]; the width follows
/// `COLUMNS` when set (100 otherwise).
pub(super) fn print_diagnostics(diags: &Diagnostics) {
    let color = stderr_color();
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|w| *w >= 40)
        .unwrap_or(100);
    err(&diags.render(RenderOptions { width, color }));
}

/// The progress reporter of apply, destroy and rollback for `--output` (and `-v`).
pub(super) fn progress(output: OutputFormat) -> Box<dyn Reporter> {
    let format = match output {
        OutputFormat::Human if VERBOSE.get().copied().unwrap_or(false) => ProgressFormat::Verbose,
        OutputFormat::Human => ProgressFormat::Human,
        OutputFormat::Json => ProgressFormat::Json,
    };
    progress_reporter(format, std::io::stderr().is_terminal())
}

/// Asks "yes" on a terminal; refuses without one (unless `auto_approve`). Ctrl-C at the
/// prompt is a "no".
pub(super) async fn confirm(
    what: &'static str,
    auto_approve: bool,
    interrupt: &Interrupt,
) -> Result<bool, CommandError> {
    if auto_approve {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CommandError::NoTerminal { what });
    }
    err(&format!(
        "Do you want to {what}? Only 'yes' will be accepted: "
    ));
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
            err("\n");
            Ok(false)
        }
        line = rx => match line {
            Ok(read) => Ok(read.map_err(CommandError::Terminal)?.trim() == "yes"),
            Err(_) => Ok(false),
        },
    }
}
