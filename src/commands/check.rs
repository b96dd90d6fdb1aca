//! `meshplan check PLAN`: read the applied mesh (read-only, plus dry-run probes of the
//! admission webhooks) and print its health report (stdout); exit 0 healthy, 1 otherwise.

use std::time::Duration;

use miette::miette;

use crate::cli::{CheckArgs, DenyLevel, ExitStatus, OutputFormat};
use crate::cluster::{Cluster as _, KubeCluster};
use crate::health::{self, Thresholds};
use crate::report::health::{render_health_human, render_health_json};

use super::{connect_options, load_plan, terminal};

pub(super) async fn run(args: CheckArgs) -> miette::Result<ExitStatus> {
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(ExitStatus::Error);
    };
    let thresholds = Thresholds {
        warn: threshold("--warn-expiry", &args.warn_expiry)?,
        fail: threshold("--fail-expiry", &args.fail_expiry)?,
    };
    let cluster = KubeCluster::connect(&connect_options(&args.cluster)).await?;
    let request = health::plan_namespaces(&loaded.plan);
    let facts = health::gather(&cluster, &request).await?;
    let report = health::evaluate(&facts, &thresholds);
    let deny_warnings = args.deny.contains(&DenyLevel::Warnings);
    match args.format {
        OutputFormat::Human => {
            let header = format!(
                "meshplan check: plan {} on {}",
                loaded.plan.name,
                cluster.url()
            );
            terminal::out(&render_health_human(&report, &header, deny_warnings));
        }
        OutputFormat::Json => terminal::out(&render_health_json(&report, deny_warnings)),
    }
    Ok(if report.is_healthy(deny_warnings) {
        ExitStatus::Success
    } else {
        ExitStatus::Error
    })
}

/// A duration threshold: the plan language's durations (`90m`, `24h`), or whole days (`30d`).
fn threshold(flag: &str, text: &str) -> miette::Result<Duration> {
    let days = text
        .strip_suffix('d')
        .and_then(|n| n.parse::<u64>().ok())
        .map(|d| Duration::from_secs(d * 86400));
    days.or_else(|| crate::model::parse_duration(text))
        .ok_or_else(|| {
            miette!(
                help = "write a duration such as 24h, 90m or 30d",
                "{flag} {text}: not a duration"
            )
        })
}
