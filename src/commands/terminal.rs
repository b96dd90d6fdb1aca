//! The commands' side of the terminal: the confirmation prompt, plan diagnostics, colour (as
//! `--color` and `NO_COLOR` say), and the progress reporter for `--output`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::OnceLock;

use crate::apply::{Interrupt, Reporter};
use crate::cli::{ColorChoice, OutputFormat};
use crate::planfile::{Diagnostics, RenderOptions};
use crate::report::progress::{ProgressFormat, progress_reporter};

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
        OutputFormat::Human => print!(
            "{}",
            render_above_plan(
                report,
                LintHumanOptions {
                    color: stdout_color()
                }
            )
        ),
        OutputFormat::Json => eprint!(
            "{}",
            render_above_plan(report, LintHumanOptions { color: false })
        ),
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
    eprint!("{}", diags.render(RenderOptions { width, color }));
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
    eprint!("Do you want to {what}? Only 'yes' will be accepted: ");
    std::io::stderr().flush().map_err(CommandError::Terminal)?;
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
            Ok(read) => Ok(read.map_err(CommandError::Terminal)?.trim() == "yes"),
            Err(_) => Ok(false),
        },
    }
}
