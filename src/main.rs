//! The `meshplan` binary: parse the command line, set up logging on stderr and the error
//! report (colour as `--color` and `NO_COLOR` say), run, exit with the fixed exit codes.

// Output goes through `commands::out` / `commands::err`, which never panic on a closed stream
// (the workspace denies the print macros).

use std::io::IsTerminal as _;

use clap::Parser;
use meshplan::cli::{Cli, ExitStatus};

/// mimalloc rather than the system's allocator: an apply or a destroy of 10,000 objects spent
/// about a third of its CPU in glibc's malloc and free (many small JSON values, freed on other
/// threads than the ones that made them). See [`tune_allocator`] for its settings.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (its number in `mi_option_t`, the same in mimalloc 2 and 3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets mimalloc to give freed memory back to the system at once instead of 10 ms later
/// (`purge_delay` 0). With the delay, freed memory stays resident while the next is taken:
/// the peak resident memory of a 10,000-object apply was 214-217 MB; without it, 185-187 MB
/// (192-200 MB with glibc's allocator), at the same speed (`docs/performance.md`). The build
/// leaves out mimalloc's requests for transparent huge pages (feature `no_thp`), which made
/// a 1,000-object apply resident at 117 MB instead of 46 MB. mimalloc reads its environment
/// (`MIMALLOC_PURGE_DELAY`) before `main`, so the option is set here, before the work
/// allocates much.
fn tune_allocator() {
    // SAFETY: `mi_option_set` stores an option's value (a valid option, a valid value); it is
    // called before any other thread starts.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
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
