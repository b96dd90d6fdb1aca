//! The `state` subcommands' output: the records of a state (`state list`) and the bodies of
//! one node's records (`state show`, sensitive values redacted, server fields stripped).

use std::fmt::Write as _;

use crate::apply::strip_server_fields;
use crate::state::{ObjectRecord, StateMeta, UnfinishedRun};

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
