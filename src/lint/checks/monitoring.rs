//! `monitor-interval`: Prometheus Operator PodMonitors and ServiceMonitors that scrape Linkerd
//! (named for it, selecting its namespaces, or relabeling its labels) with an interval longer
//! than the 30 s window Linkerd's dashboards compute rates over. An endpoint without an
//! interval uses Prometheus' global one and is not judged.

use std::time::Duration;

use serde_json::Value as Json;

use crate::lint::Finding;
use crate::lint::context::{Context, Obj};
use crate::lint::path;
use crate::model::lint_checks::CheckId;

use super::issuer::{go_text, parse_go_duration};

const ID: CheckId = CheckId::MonitorInterval;
/// The rate window of Linkerd's dashboards.
const WINDOW: Duration = Duration::from_secs(30);

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    for obj in &ctx.objects {
        if obj.group() != "monitoring.coreos.com" {
            continue;
        }
        let endpoints = match obj.kind() {
            "PodMonitor" => "podMetricsEndpoints",
            "ServiceMonitor" => "endpoints",
            _ => continue,
        };
        if !is_for_linkerd(ctx, obj) {
            continue;
        }
        let items = obj
            .body()
            .pointer(&format!("/spec/{endpoints}"))
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, e) in items.iter().enumerate() {
            let Some(text) = e.get("interval").and_then(Json::as_str) else {
                continue;
            };
            let Some(interval) = parse_prometheus_duration(text) else {
                continue;
            };
            if interval <= WINDOW {
                continue;
            }
            out.push(ctx.at_object(
                ID,
                obj,
                Some(&path::parse(&format!("spec.{endpoints}[{i}].interval"))),
                format!(
                    "{} {}/{} scrapes Linkerd every {} ({} window of the dashboards)",
                    obj.kind(),
                    obj.namespace().unwrap_or_default(),
                    obj.name(),
                    go_text(interval),
                    "longer than the 30s"
                ),
                "set `interval: 10s` (Linkerd's guide; at most 30s)".to_string(),
            ));
        }
    }
}

/// Whether a monitor is about Linkerd: named for it, selecting its namespaces, or relabeling
/// its labels.
fn is_for_linkerd(ctx: &Context<'_>, obj: &Obj<'_>) -> bool {
    if obj.name().contains("linkerd") {
        return true;
    }
    let mut namespaces: Vec<&str> = vec!["linkerd", "linkerd-viz"];
    if let Some(cp) = &ctx.control_plane {
        namespaces.push(&cp.namespace);
    }
    if let Some(viz) = &ctx.viz {
        namespaces.push(&viz.namespace);
    }
    let selected = obj
        .body()
        .pointer("/spec/namespaceSelector/matchNames")
        .and_then(Json::as_array)
        .is_some_and(|names| {
            names
                .iter()
                .filter_map(Json::as_str)
                .any(|n| namespaces.contains(&n))
        });
    selected
        || obj
            .body()
            .get("spec")
            .is_some_and(|s| s.to_string().contains("linkerd"))
}

/// A Prometheus duration: Go units plus `d`, `w` and `y` (`1m30s`, `1d`).
fn parse_prometheus_duration(text: &str) -> Option<Duration> {
    let days = |n: &str, per: u64| -> Option<Duration> {
        n.parse::<u64>()
            .ok()
            .map(|d| Duration::from_secs(d * per * 86400))
    };
    if let Some(n) = text.strip_suffix('d') {
        return days(n, 1);
    }
    if let Some(n) = text.strip_suffix('w') {
        return days(n, 7);
    }
    if let Some(n) = text.strip_suffix('y') {
        return days(n, 365);
    }
    parse_go_duration(text)
}
