//! The `meshplan` binary: parse the command line, set up logging on stderr and the error
//! report (colour as `--color` and `NO_COLOR` say), run, exit with the fixed exit codes.

// Output goes through `commands::out` / `commands::err`, which never panic on a closed stream
// (the workspace denies the print macros).

use std::io::IsTerminal as _;

use clap::Parser;
use meshplan::cli::{Cli, ExitStatus};

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // Help and version go to stdout and succeed; a command line clap refuses is an
            // error like any other bad input: 1 (2 means "changes present").
            return if err.use_stderr() {
                ExitStatus::Error.into()
            } else {
                ExitStatus::Success.into()
            };
        }
    };
    let no_color = std::env::var_os("NO_COLOR");
    let stderr_color = cli
        .color
        .enabled(std::io::stderr().is_terminal(), no_color.as_deref());
    init_tracing(cli.verbose, stderr_color);
    init_error_report(stderr_color);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            meshplan::commands::err(&format!("error: cannot start the async runtime: {err}\n"));
            return ExitStatus::Error.into();
        }
    };
    let status = runtime.block_on(meshplan::commands::run(cli));
    match status {
        Ok(status) => status.into(),
        Err(report) => {
            meshplan::commands::err(&format!("{report:?}\n"));
            ExitStatus::Error.into()
        }
    }
}

/// Logs on stderr, with escape codes only when stderr takes colour (never in a file).
fn init_tracing(verbose: u8, color: bool) {
    let default = match verbose {
        // kube's client logs every failed request as an error; meshplan reports them itself.
        0 => "warn,kube_client=off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESHPLAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactedStderr)
        .with_ansi(color)
        .init();
}

/// stderr for logs: a log line that quotes an error may quote a sensitive value, redacted
/// like every other output.
struct RedactedStderr;

impl std::io::Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let redacted = meshplan::render::masking::redact_output(&text);
        std::io::stderr().write_all(redacted.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Error reports in colour only when stderr takes it (`--color always` forces it).
fn init_error_report(color: bool) {
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(miette::MietteHandlerOpts::new().color(color).build())
    }));
}
