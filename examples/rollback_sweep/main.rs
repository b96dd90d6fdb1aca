//! The rollback sweep over a whole plan, for the longer run (see `sweep.rs` for what each
//! sweep does and checks). Prints one line per failure point and a summary per sweep; exits 1
//! when any point failed.
//!
//! ```text
//! cargo build --release --bin meshplan --example rollback_sweep
//! PATH=$PWD/.tools/bin:$PATH target/release/examples/rollback_sweep            # the sample plan
//! target/release/examples/rollback_sweep --sweep writes --start previous --limit 40
//! target/release/examples/rollback_sweep --sweep retries --start empty --first 31 --step 5
//! ```
//!
//! Defaults are for `plans/linkerd.toml` on the sandbox: the stand-in charts, the cluster's
//! own Prometheus pieces (`plans/sandbox/prometheus-operator.yaml`); "previous" starts from an
//! apply with the plan's defaults and sweeps an apply that changes the viz extension's
//! Prometheus URL and dashboard host (updates to restore, not only creations to delete).

// A benchmark program: it prints its results.
#![allow(unreachable_pub, clippy::print_stdout, clippy::print_stderr)]

#[path = "sweep.rs"]
mod sweep;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use meshplan_sandbox::{FaultAction, SandboxConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    Writes,
    Waits,
    Kills,
    /// SIGTERM once at drawn writes of the swept apply (not part of `all`).
    Signals,
    /// A 500, a 503 with Retry-After and a dropped connection at every write: each retried,
    /// the apply succeeding (not part of `all`).
    Retries,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum KillFrom {
    Empty,
    Alternating,
}

impl From<KillFrom> for sweep::KillFrom {
    fn from(k: KillFrom) -> Self {
        match k {
            KillFrom::Empty => Self::Empty,
            KillFrom::Alternating => Self::Alternating,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Start {
    Empty,
    Previous,
    Both,
}

#[derive(Parser)]
struct Args {
    /// The plan to sweep.
    #[arg(long, default_value = "plans/linkerd.toml")]
    plan: PathBuf,
    #[arg(long, value_enum, default_value = "all")]
    sweep: Which,
    /// Where the write and wait sweeps start.
    #[arg(long, value_enum, default_value = "both")]
    start: Start,
    /// Arguments of the previous apply (for --start previous), space separated.
    #[arg(long, default_value = "")]
    previous: String,
    /// Arguments of the swept applies, space separated.
    #[arg(long)]
    args: Option<String>,
    /// At most this many failure points per sweep.
    #[arg(long)]
    limit: Option<u64>,
    /// The write and retry sweeps start at this write...
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    first: u64,
    /// ...and fail every this many writes from there (a subset across a whole apply).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    step: u64,
    /// kill -9 points.
    #[arg(long, default_value_t = 40)]
    points: u64,
    /// Kill points are drawn from 1 to this many writes into an apply (a whole install of
    /// the sample plan makes 72).
    #[arg(long, default_value_t = 75)]
    spread: u64,
    /// Each kill point in a whole install on a fresh cluster (empty), or in applies that
    /// alternate between --previous and --args on one cluster (alternating).
    #[arg(long, value_enum, default_value = "empty")]
    kill_from: KillFrom,
    /// Manifests the cluster has before the plan (default for the sample plan:
    /// plans/sandbox/prometheus-operator.yaml).
    #[arg(long)]
    cluster: Vec<PathBuf>,
    /// The meshplan binary (default: beside this example's directory).
    #[arg(long)]
    bin: Option<PathBuf>,
}

fn split(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn main() {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = args.bin.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        // target/<profile>/examples/rollback_sweep → target/<profile>/meshplan
        exe.parent()
            .and_then(|p| p.parent())
            .map_or_else(|| PathBuf::from("meshplan"), |p| p.join("meshplan"))
    });
    let sample = args.plan.ends_with("plans/linkerd.toml");
    let mut config = SandboxConfig::default();
    config.controllers.rollout_delay = Duration::from_millis(30);
    config.controllers.webhook_delay = Duration::from_millis(50);
    let target = sweep::Target {
        bin,
        kubectl: meshplan_sandbox::kubectl::kubectl_binary(),
        workdir: root.clone(),
        plan: root.join(&args.plan),
        common: split("--repo-dir linkerd=plans/charts --repo-dir jetstack=plans/charts"),
        cluster: if !args.cluster.is_empty() {
            args.cluster.iter().map(|c| root.join(c)).collect()
        } else if sample {
            vec![root.join("plans/sandbox/prometheus-operator.yaml")]
        } else {
            Vec::new()
        },
        sandbox: config,
        run_limit: Duration::from_secs(600),
    };
    let swept = split(&args.args.clone().unwrap_or_else(|| {
        if sample {
            "--var prometheus_url=http://prometheus.monitoring.svc:9090 --var viz_dashboard_host=mesh.k3s.local".to_owned()
        } else {
            String::new()
        }
    }));
    let starts = match args.start {
        Start::Empty => vec![sweep::Start::Empty],
        Start::Previous => vec![sweep::Start::Previous(split(&args.previous))],
        Start::Both => vec![
            sweep::Start::Empty,
            sweep::Start::Previous(split(&args.previous)),
        ],
    };
    let mut failed = 0;
    let mut report = Vec::new();
    let mut progress = |line: &str| println!("  {line}");
    for start in &starts {
        let settings = sweep::Sweep {
            start: start.clone(),
            args: swept.clone(),
            limit: args.limit,
            first: args.first,
            step: args.step,
        };
        let label = match start {
            sweep::Start::Empty => "from empty",
            sweep::Start::Previous(_) => "over a previous apply",
        };
        if matches!(args.sweep, Which::Writes | Which::All) {
            println!("writes failed one at a time, {label}:");
            let began = Instant::now();
            let outcome = sweep::writes(&target, &settings, &mut progress);
            report.push(format!(
                "writes, {label}: {} ({:.0} s)",
                outcome.summary(),
                began.elapsed().as_secs_f64()
            ));
            failed += outcome.failures.len();
            for f in &outcome.failures {
                println!("FAILED {f}");
            }
        }
        if matches!(args.sweep, Which::Waits | Which::All) {
            println!("a wait timing out in one node at a time, {label}:");
            let began = Instant::now();
            let outcome = sweep::waits(&target, &settings, &mut progress);
            report.push(format!(
                "waits, {label}: {} ({:.0} s)",
                outcome.summary(),
                began.elapsed().as_secs_f64()
            ));
            failed += outcome.failures.len();
            for f in &outcome.failures {
                println!("FAILED {f}");
            }
        }
    }
    if args.sweep == Which::Retries {
        for start in &starts {
            let settings = sweep::Sweep {
                start: start.clone(),
                args: swept.clone(),
                limit: args.limit,
                first: args.first,
                step: args.step,
            };
            let label = match start {
                sweep::Start::Empty => "from empty",
                sweep::Start::Previous(_) => "over a previous apply",
            };
            for (name, action) in [
                ("a 500", FaultAction::Error { code: 500 }),
                ("a 503 with Retry-After", FaultAction::Error { code: 503 }),
                ("a dropped connection", FaultAction::Drop),
            ] {
                println!("{name} at write N, {label}:");
                let began = Instant::now();
                let outcome = sweep::retries(&target, &settings, &action, &mut progress);
                report.push(format!(
                    "{name} at write N, {label}: {} ({:.0} s)",
                    outcome.summary(),
                    began.elapsed().as_secs_f64()
                ));
                failed += outcome.failures.len();
                for f in &outcome.failures {
                    println!("FAILED {f}");
                }
            }
        }
    }
    if args.sweep == Which::Signals {
        for start in &starts {
            let settings = sweep::Sweep {
                start: start.clone(),
                args: swept.clone(),
                limit: args.limit,
                first: args.first,
                step: args.step,
            };
            println!("SIGTERM at {} points:", args.points);
            let began = Instant::now();
            let outcome = sweep::signals(
                &target,
                &settings,
                "TERM",
                args.points,
                args.spread,
                0x7e57,
                &mut progress,
            );
            report.push(format!(
                "SIGTERM: {} points, {} rolled back exactly, {} had finished ({:.0} s)",
                outcome.points,
                outcome.rolled_back,
                outcome.finished,
                began.elapsed().as_secs_f64()
            ));
            failed += outcome.failures.len();
            for f in &outcome.failures {
                println!("FAILED {f}");
            }
        }
    }
    if matches!(args.sweep, Which::Kills | Which::All) {
        println!("kill -9 at {} points:", args.points);
        let began = Instant::now();
        let outcome = sweep::kills(
            &target,
            args.kill_from.into(),
            &split(&args.previous),
            &swept,
            args.points,
            args.spread,
            0x5eed,
            &mut progress,
        );
        report.push(format!(
            "kills: {} points, {} hit an unfinished run, {} converged ({:.0} s)",
            outcome.points,
            outcome.mid_run,
            outcome.converged,
            began.elapsed().as_secs_f64()
        ));
        failed += outcome.failures.len();
        for f in &outcome.failures {
            println!("FAILED {f}");
        }
    }
    println!();
    for line in &report {
        println!("{line}");
    }
    if failed > 0 {
        println!("{failed} points failed");
        std::process::exit(1);
    }
}
