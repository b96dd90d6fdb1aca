//! The health report of `meshplan check`: one line per check (status, id, what was found),
//! a hint under warnings and failures, then a verdict; or JSON (format version 1).
//!
//! ```text
//! [pass] control-plane            control plane in namespace linkerd (linkerd-config found)
//! [FAIL] trust-anchor             the trust anchor in linkerd/linkerd-config (SHA-256 …) is not …
//!        hint: proxies will not trust the certificates the issuer signs: …
//!
//! unhealthy: 1 failed, 0 warnings, 8 passed.
//! ```

use std::fmt::Write as _;

use serde_json::json;

use crate::health::{HealthReport, Status};

/// The JSON format version of `meshplan check --format json`.
pub const HEALTH_FORMAT: u32 = 1;

fn label(status: Status) -> &'static str {
    match status {
        Status::Pass => "[pass]",
        Status::Warn => "[warn]",
        Status::Fail => "[FAIL]",
    }
}

/// The verdict line.
pub fn verdict(report: &HealthReport, deny_warnings: bool) -> String {
    let (failed, warned, passed) = (
        report.count(Status::Fail),
        report.count(Status::Warn),
        report.count(Status::Pass),
    );
    let state = if report.is_healthy(deny_warnings) {
        "healthy"
    } else {
        "unhealthy"
    };
    format!(
        "{state}: {failed} failed, {warned} warning{}, {passed} passed.\n",
        if warned == 1 { "" } else { "s" }
    )
}

/// The human report; `header` is the first line (what was checked, where).
pub fn render_health_human(report: &HealthReport, header: &str, deny_warnings: bool) -> String {
    let mut out = String::new();
    let clock = if report.clock_from_cluster {
        "the cluster's clock"
    } else {
        "the local clock (the cluster sent none)"
    };
    let _ = writeln!(
        out,
        "{header}; certificates judged at {} by {clock}\n",
        report.now
    );
    for o in &report.outcomes {
        let _ = writeln!(out, "{} {:<24} {}", label(o.status), o.id, o.message);
        if let Some(hint) = &o.hint {
            let _ = writeln!(out, "       hint: {hint}");
        }
    }
    out.push('\n');
    out.push_str(&verdict(report, deny_warnings));
    out
}

/// The JSON report.
pub fn render_health_json(report: &HealthReport, deny_warnings: bool) -> String {
    let checks: Vec<serde_json::Value> = report
        .outcomes
        .iter()
        .map(|o| {
            json!({
                "id": o.id,
                "status": o.status.as_str(),
                "message": o.message,
                "hint": o.hint,
            })
        })
        .collect();
    let v = json!({
        "format_version": HEALTH_FORMAT,
        "healthy": report.is_healthy(deny_warnings),
        "now": report.now.to_string(),
        "clock": if report.clock_from_cluster { "cluster" } else { "local" },
        "summary": {
            "failed": report.count(Status::Fail),
            "warnings": report.count(Status::Warn),
            "passed": report.count(Status::Pass),
        },
        "checks": checks,
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}
