//! The `meshplan` binary: parse the command line, set up logging on stderr, run, exit.

// Output goes through `commands::out` / `commands::err`, which never panic on a closed stream
// (the workspace denies the print macros).

use clap::Parser;
use meshplan::cli::{Cli, ExitStatus};

fn main() -> std::process::ExitCode {
    // A usage error exits 1 like every other error: exit 2 means changes or drift, and a CI
    // job must never read a typo as drift (clap's own default is 2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.exit_code() == 0 {
                ExitStatus::Success.into()
            } else {
                ExitStatus::Error.into()
            };
        }
    };
    init_tracing(cli.verbose);
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

fn init_tracing(verbose: u8) {
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
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();
}
