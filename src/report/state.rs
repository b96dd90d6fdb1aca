//! The `state` subcommands' output: the records of a state (`state list`) and the bodies of
//! one node's records (`state show`, sensitive values redacted, server fields stripped), as
//! text or JSON (`--output json`, format [`STATE_FORMAT`]).

use std::fmt::Write as _;

use crate::apply::strip_server_fields;
use crate::state::{ObjectRecord, StateMeta, UnfinishedRun};

/// Version of the JSON shape of `state list` and `state show`.
pub const STATE_FORMAT: u32 = 1;

/// `state list --output json`: the meta, every record (node, object, uid, resourceVersion,
/// applied digest; no bodies) and the unfinished runs.
pub fn list_json(
    meta: &StateMeta,
    records: &[ObjectRecord],
    unfinished: &[UnfinishedRun],
) -> String {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "node": r.node,
                "object": r.object,
                "uid": r.uid,
                "resource_version": r.resource_version,
                "applied_digest": r.applied_digest,
            })
        })
        .collect();
    let runs: Vec<serde_json::Value> = unfinished
        .iter()
        .map(|u| {
            serde_json::json!({
                "run": u.run.run,
                "command": u.run.command,
                "started_at": u.run.started_at.to_string(),
            })
        })
        .collect();
    pretty(&serde_json::json!({
        "format_version": STATE_FORMAT,
        "lineage": meta.lineage,
        "serial": meta.serial,
        "records": records,
        "unfinished_runs": runs,
    }))
}

/// `state show --output json`: per record its identity and the last applied body (sensitive
/// values redacted, server fields stripped).
pub fn show_json(records: &[ObjectRecord]) -> String {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "node": r.node,
                "object": r.object,
                "uid": r.uid,
                "resource_version": r.resource_version,
                "applied_digest": r.applied_digest,
                "last_applied": strip_server_fields(r.last_applied.redacted()),
            })
        })
        .collect();
    pretty(&serde_json::json!({
        "format_version": STATE_FORMAT,
        "records": records,
    }))
}

fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

/// `lineage L serial N`, one `node  object` line per record, one line per unfinished run.
pub fn list(meta: &StateMeta, records: &[ObjectRecord], unfinished: &[UnfinishedRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "lineage {} serial {}", meta.lineage, meta.serial);
    for r in records {
        let _ = writeln!(out, "{}  {}", r.node, r.object);
    }
    for run in unfinished {
        let _ = writeln!(
            out,
            "unfinished run {} ({}, started {})",
            run.run.run, run.run.command, run.run.started_at
        );
    }
    out
}

/// Per record: a `#` header (node, object, uid, resourceVersion, applied digest) and the
/// last applied body as JSON.
pub fn show(records: &[ObjectRecord]) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    for r in records {
        let body = strip_server_fields(r.last_applied.redacted());
        let _ = writeln!(out, "# {}  {}", r.node, r.object);
        let _ = writeln!(out, "#   uid {}", r.uid.as_deref().unwrap_or("-"));
        let _ = writeln!(
            out,
            "#   resourceVersion {}",
            r.resource_version.as_deref().unwrap_or("-")
        );
        let _ = writeln!(out, "#   applied digest {}", r.applied_digest);
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&body)?);
    }
    Ok(out)
}
