//! The deterministic text dump of a state (`meshplan state show`, snapshot tests).
//!
//! Sections in a fixed order, entries sorted, JSON bodies on one line with sorted keys.
//! Sealed values are never shown: only that an entry has some.

use std::fmt::Write as _;

use serde_json::Value;

use super::{
    DiscoveryCacheEntry, JournalRecord, LiveSnapshot, ObjectRecord, Outcome, RenderCacheEntry,
    StateMeta, UnfinishedRun,
};

/// `value` with the keys of every object sorted.
pub(crate) fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

pub(crate) fn dump(
    meta: &StateMeta,
    objects: &[ObjectRecord],
    render: &[(String, Option<RenderCacheEntry>)],
    discovery: Option<&DiscoveryCacheEntry>,
    runs: &[UnfinishedRun],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "format {}", meta.format);
    let _ = writeln!(out, "lineage {}", meta.lineage);
    let _ = writeln!(out, "serial {}", meta.serial);

    let _ = writeln!(out, "\nobjects ({})", objects.len());
    for r in objects {
        let _ = writeln!(out, "  {} {}", r.node, r.object);
        let _ = writeln!(out, "    uid {}", r.uid.as_deref().unwrap_or("-"));
        let _ = writeln!(
            out,
            "    resourceVersion {}",
            r.resource_version.as_deref().unwrap_or("-")
        );
        let _ = writeln!(out, "    digest {}", r.applied_digest);
        let _ = writeln!(
            out,
            "    last-applied {}{}",
            canonical(r.last_applied.redacted()),
            sealed_note(r.last_applied.has_sealed())
        );
    }

    let _ = writeln!(out, "\nrender cache ({})", render.len());
    for (digest, entry) in render {
        match entry {
            None => {
                let _ = writeln!(out, "  {digest} (unreadable, ignored)");
            }
            Some(e) => {
                let _ = writeln!(out, "  {digest} created {}", e.created_at);
                for (k, v) in &e.meta {
                    let _ = writeln!(out, "    {k} = {v}");
                }
                for o in &e.objects {
                    let _ = writeln!(
                        out,
                        "    object {}{}",
                        canonical(o.redacted()),
                        sealed_note(o.has_sealed())
                    );
                }
            }
        }
    }

    match discovery {
        None => {
            let _ = writeln!(out, "\ndiscovery cache: none");
        }
        Some(d) => {
            let _ = writeln!(
                out,
                "\ndiscovery cache: fetched {}, {} resources",
                d.fetched_at,
                d.discovery.resources.len()
            );
        }
    }

    let _ = writeln!(out, "\nunfinished runs ({})", runs.len());
    for run in runs {
        let _ = writeln!(
            out,
            "  {} {} started {}",
            run.run.run, run.run.command, run.run.started_at
        );
        for e in &run.entries {
            let what = match &e.record {
                JournalRecord::Before {
                    live: LiveSnapshot::Absent,
                } => "before: absent".to_owned(),
                JournalRecord::Before {
                    live: LiveSnapshot::Present(body),
                } => format!(
                    "before: {}{}",
                    canonical(body.redacted()),
                    sealed_note(body.has_sealed())
                ),
                JournalRecord::After {
                    outcome: Outcome::Succeeded { resource_version },
                } => format!(
                    "after: succeeded (resourceVersion {})",
                    resource_version.as_deref().unwrap_or("-")
                ),
                JournalRecord::After {
                    outcome: Outcome::Failed { message },
                } => format!("after: failed: {message}"),
            };
            let _ = writeln!(
                out,
                "    step {} {:?} {} {}: {what}",
                e.step, e.mutation, e.node, e.object
            );
        }
    }
    out
}

fn sealed_note(sealed: bool) -> &'static str {
    if sealed { " (+ sealed values)" } else { "" }
}
