//! The drift report in four forms: for people (grouped by node), JSON (the report's versioned
//! shape, `docs/drift-report.schema.json`), Markdown (a table for pull-request comments and
//! CI step summaries) and JUnit XML (one test case per owned object, a failure per drifted
//! one, for CI test views).
//!
//! Human form:
//!
//! ```text
//! helm.linkerd_viz
//!   ~ apps/v1 Deployment linkerd-viz/web has changed
//!       .spec.replicas: 1 → 3 (changed by kubectl, Update of scale, 2025-05-01T10:00:00Z)
//!
//! Drift: 1 changed, 0 missing, 0 unmanaged (of 152 objects the plan owns).
//! ```
//!
//! Symbols: `~` changed, `-` missing, `!` unmanaged. Sensitive values are never shown:
//! `(sensitive)`. Every form is a pure function of the report.

use std::fmt::Write as _;

use serde_json::Value;

use crate::diff::drift::{
    DriftReport, FieldChangeKind, FieldDrift, FieldOwner, ObjectDrift, ObjectStatus,
    UnmanagedObject,
};

/// The formats `meshplan drift` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftFormat {
    Human,
    Json,
    Markdown,
    Junit,
}

/// The report in `format` (`color`: ANSI colours in the human form).
pub fn render_drift(report: &DriftReport, format: DriftFormat, color: bool) -> String {
    match format {
        DriftFormat::Human => render_human(report, color),
        DriftFormat::Json => render_json(report),
        DriftFormat::Markdown => render_markdown(report),
        DriftFormat::Junit => render_junit(report),
    }
}

const SENSITIVE: &str = "(sensitive)";
/// Values longer than this are cut in the human and Markdown forms (JSON keeps them whole).
const MAX_VALUE: usize = 120;

fn symbol(status: ObjectStatus) -> &'static str {
    match status {
        ObjectStatus::InSync => " ",
        ObjectStatus::Changed => "~",
        ObjectStatus::Missing => "-",
    }
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\u{1b}[{code}m{text}\u{1b}[0m")
    } else {
        text.to_owned()
    }
}

/// A value on one line: strings as they are, the rest as compact JSON; cut when long.
fn value_text(value: Option<&Value>, sensitive: bool, absent: &str) -> String {
    if sensitive {
        return SENSITIVE.to_owned();
    }
    let text = match value {
        None => return absent.to_owned(),
        Some(Value::String(s)) if s.is_empty() => "\"\"".to_owned(),
        Some(Value::String(s)) => s.replace('\n', "\\n"),
        Some(other) => other.to_string(),
    };
    cut(&text)
}

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_VALUE {
        return text.to_owned();
    }
    let kept: String = text.chars().take(MAX_VALUE).collect();
    format!("{kept}… ({} characters)", text.chars().count())
}

/// `changed by kubectl, Update of scale, 2025-05-01T10:00:00Z`.
fn by(owner: Option<&FieldOwner>, change: FieldChangeKind) -> String {
    let verb = match change {
        FieldChangeKind::TakenOver => "taken over by",
        FieldChangeKind::Unrecorded => "applied by",
        FieldChangeKind::Modified | FieldChangeKind::Removed => "changed by",
    };
    match owner {
        Some(o) => {
            let mut text = format!("{verb} {}, {}", o.manager, o.operation);
            if let Some(sub) = &o.subresource {
                let _ = write!(text, " of {sub}");
            }
            if let Some(t) = &o.time {
                let _ = write!(text, ", {t}");
            }
            text
        }
        None if change == FieldChangeKind::Removed => {
            "removed by a writer that owns none of its fields".to_owned()
        }
        None => "no field manager holds it".to_owned(),
    }
}

/// One field in the human form: `.spec.replicas: 1 → 3 (changed by kubectl, ...)`.
fn field_line(f: &FieldDrift) -> String {
    let values = match f.change {
        FieldChangeKind::Modified | FieldChangeKind::Removed => format!(
            "{} → {}",
            value_text(f.applied.as_ref(), f.sensitive, "(absent)"),
            value_text(f.live.as_ref(), f.sensitive, "(removed)")
        ),
        FieldChangeKind::TakenOver => format!(
            "{} (unchanged)",
            value_text(f.live.as_ref(), f.sensitive, "(absent)")
        ),
        FieldChangeKind::Unrecorded => format!(
            "{} (not in what this state applied)",
            value_text(f.live.as_ref(), f.sensitive, "(absent)")
        ),
    };
    format!("{}: {values} ({})", f.path, by(f.owner.as_ref(), f.change))
}

fn status_words(o: &ObjectDrift) -> &'static str {
    match o.status {
        ObjectStatus::InSync => "is in sync",
        ObjectStatus::Changed => "has changed",
        ObjectStatus::Missing => "is missing",
    }
}

fn unmanaged_line(u: &UnmanagedObject) -> String {
    let mut notes = Vec::new();
    if let Some(n) = &u.node {
        notes.push(format!("node {n}"));
    }
    if let Some(o) = &u.created_by {
        let mut who = format!("created by {}", o.manager);
        if let Some(t) = &o.time {
            let _ = write!(who, " at {t}");
        }
        notes.push(who);
    }
    if notes.is_empty() {
        u.object.to_string()
    } else {
        format!("{} ({})", u.object, notes.join(", "))
    }
}

/// The human form (see the module overview).
pub fn render_human(report: &DriftReport, color: bool) -> String {
    let mut out = String::new();
    for note in state_notes(report) {
        let _ = writeln!(out, "Note: {note}");
    }
    if !state_notes(report).is_empty() {
        out.push('\n');
    }
    for node in &report.nodes {
        let drifted: Vec<&ObjectDrift> = node
            .objects
            .iter()
            .filter(|o| o.status.is_drift())
            .collect();
        if drifted.is_empty() {
            continue;
        }
        let suffix = if node.in_plan {
            ""
        } else {
            " (no longer in the plan)"
        };
        let _ = writeln!(out, "{}{suffix}", node.address);
        for o in drifted {
            let code = if o.status == ObjectStatus::Missing {
                "31"
            } else {
                "33"
            };
            let _ = writeln!(
                out,
                "  {} {} {}",
                paint(symbol(o.status), code, color),
                o.object,
                status_words(o)
            );
            if let Some(note) = &o.note {
                let _ = writeln!(out, "      # {note}");
            }
            for f in &o.fields {
                let _ = writeln!(out, "      {}", field_line(f));
            }
        }
        out.push('\n');
    }
    if !report.unmanaged.is_empty() {
        let _ = writeln!(
            out,
            "Unmanaged: objects marked as plan {}'s that the state does not know",
            report.plan
        );
        for u in &report.unmanaged {
            let _ = writeln!(out, "  {} {}", paint("!", "31", color), unmanaged_line(u));
        }
        out.push('\n');
    }
    out.push_str(&summary_line(report));
    out.push('\n');
    out
}

/// The one-line verdict.
fn summary_line(report: &DriftReport) -> String {
    let s = &report.summary;
    if report.has_drift {
        format!(
            "Drift: {} changed, {} missing, {} unmanaged (of {} the plan owns).",
            s.changed,
            s.missing,
            s.unmanaged,
            objects(s.objects)
        )
    } else {
        format!(
            "No drift: every object plan {} owns ({}) matches what was last applied.",
            report.plan, s.objects
        )
    }
}

/// `1 object`, `3 objects`.
fn objects(n: usize) -> String {
    if n == 1 {
        "1 object".to_owned()
    } else {
        format!("{n} objects")
    }
}

/// What the reader should know about the state the report compares with.
fn state_notes(report: &DriftReport) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(holder) = &report.state.held_by {
        notes.push(if report.state.source == "cluster" {
            format!(
                "{holder} holds the state's Lease: compared with the state as last written (serial {})",
                report.state.serial
            )
        } else {
            format!(
                "{holder} holds the state: compared with the snapshot it published (serial {})",
                report.state.serial
            )
        });
    }
    for run in &report.state.unfinished_runs {
        notes.push(format!(
            "the state holds an unfinished run ({run}): finish it with `meshplan apply --on-unfinished` or `meshplan rollback`"
        ));
    }
    notes
}

/// The JSON form: the report itself (see `docs/drift-report.schema.json`).
pub fn render_json(report: &DriftReport) -> String {
    let mut text = serde_json::to_string_pretty(report).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

/// A Markdown table cell: no line breaks, `|` escaped, code in backticks that cannot break.
fn cell_code(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let clean = text.replace('\n', " ").replace('|', "\\|");
    let ticks = if clean.contains('`') { "``" } else { "`" };
    format!("{ticks}{clean}{ticks}")
}

fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

/// The Markdown form: a heading, the verdict and one table row per drifted field, missing
/// object and unmanaged object.
pub fn render_markdown(report: &DriftReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### meshplan drift: plan `{}`\n", report.plan);
    let s = &report.summary;
    if report.has_drift {
        let _ = writeln!(
            out,
            "**Drift found**: {} changed, {} missing, {} unmanaged (of {} the plan owns; state serial {}).\n",
            s.changed,
            s.missing,
            s.unmanaged,
            objects(s.objects),
            report.state.serial
        );
    } else {
        let _ = writeln!(
            out,
            "**No drift**: every object the plan owns ({}) matches what was last applied (state serial {}).",
            s.objects, report.state.serial
        );
    }
    for note in state_notes(report) {
        let _ = writeln!(out, "> {}\n", cell(&note));
    }
    if !report.has_drift {
        return out;
    }
    out.push_str("| Node | Object | Status | Field | Applied | Live | Changed by |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for (node, o) in report.objects().filter(|(_, o)| o.status.is_drift()) {
        let object = cell_code(&o.object.to_string());
        match o.status {
            ObjectStatus::Missing => {
                let _ = writeln!(
                    out,
                    "| {node} | {object} | missing | | | | {} |",
                    cell(o.note.as_deref().unwrap_or(""))
                );
            }
            _ => {
                for f in &o.fields {
                    let applied = match f.change {
                        FieldChangeKind::Unrecorded => "(not applied)".to_owned(),
                        _ => value_text(f.applied.as_ref(), f.sensitive, "(absent)"),
                    };
                    let live = value_text(f.live.as_ref(), f.sensitive, "(removed)");
                    let _ = writeln!(
                        out,
                        "| {node} | {object} | {} | {} | {} | {} | {} |",
                        f.change.describe(),
                        cell_code(&f.path),
                        cell_code(&applied),
                        cell_code(&live),
                        cell(&by(f.owner.as_ref(), f.change))
                    );
                }
            }
        }
    }
    for u in &report.unmanaged {
        let created = u
            .created_by
            .as_ref()
            .map(|o| format!("created by {}", o.manager))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | unmanaged | | | | {} |",
            cell(u.node.as_deref().unwrap_or("")),
            cell_code(&u.object.to_string()),
            cell(&created)
        );
    }
    out
}

/// Text for an XML attribute or element.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot hold.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The JUnit form: one suite per node, one test case per owned object (a failure when it
/// drifted), and a suite `unmanaged` with a failing case per unmanaged object.
pub fn render_junit(report: &DriftReport) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let s = &report.summary;
    let _ = writeln!(
        out,
        "<testsuites name=\"meshplan drift {}\" tests=\"{}\" failures=\"{}\" errors=\"0\">",
        xml(&report.plan),
        s.objects + s.unmanaged,
        s.drifted()
    );
    for node in &report.nodes {
        let failures = node.objects.iter().filter(|o| o.status.is_drift()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">",
            xml(&node.address),
            node.objects.len()
        );
        for o in &node.objects {
            let name = xml(&o.object.to_string());
            let class = xml(&node.address);
            if !o.status.is_drift() {
                let _ = writeln!(out, "    <testcase classname=\"{class}\" name=\"{name}\"/>");
                continue;
            }
            let (kind, message) = match o.status {
                ObjectStatus::Missing => ("missing", format!("{} is missing", o.object)),
                _ => (
                    "changed",
                    format!(
                        "{} has changed: {}",
                        o.object,
                        o.fields
                            .iter()
                            .map(|f| f.path.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            };
            let mut body = String::new();
            if let Some(note) = &o.note {
                let _ = writeln!(body, "{note}");
            }
            for f in &o.fields {
                let _ = writeln!(body, "{}", field_line(f));
            }
            let _ = writeln!(out, "    <testcase classname=\"{class}\" name=\"{name}\">");
            let _ = writeln!(
                out,
                "      <failure type=\"{kind}\" message=\"{}\">{}</failure>",
                xml(&message),
                xml(&body)
            );
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    if !report.unmanaged.is_empty() {
        let _ = writeln!(
            out,
            "  <testsuite name=\"unmanaged\" tests=\"{n}\" failures=\"{n}\" errors=\"0\" skipped=\"0\">",
            n = report.unmanaged.len()
        );
        for u in &report.unmanaged {
            let _ = writeln!(
                out,
                "    <testcase classname=\"unmanaged\" name=\"{}\">",
                xml(&u.object.to_string())
            );
            let _ = writeln!(
                out,
                "      <failure type=\"unmanaged\" message=\"{}\">{}</failure>",
                xml(&format!(
                    "{} carries the marks of plan {} but the state does not know it",
                    u.object, report.plan
                )),
                xml(&unmanaged_line(u))
            );
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::ObjectRef;
    use crate::diff::drift::{NodeDrift, StateInfo};

    fn report(drift: bool) -> DriftReport {
        let web = ObjectRef::new("apps/v1", "Deployment", Some("linkerd-viz"), "web");
        let mut objects = vec![ObjectDrift {
            object: ObjectRef::new("v1", "Service", Some("linkerd-viz"), "web"),
            status: ObjectStatus::InSync,
            fields: vec![],
            note: None,
        }];
        if drift {
            objects.push(ObjectDrift {
                object: web,
                status: ObjectStatus::Changed,
                fields: vec![FieldDrift {
                    path: ".spec.replicas".into(),
                    pointer: "/spec/replicas".into(),
                    change: FieldChangeKind::Modified,
                    applied: Some(json!(1)),
                    live: Some(json!(3)),
                    sensitive: false,
                    owner: Some(FieldOwner {
                        manager: "kubectl".into(),
                        operation: "Update".into(),
                        subresource: Some("scale".into()),
                        time: Some("2025-05-01T10:00:00Z".into()),
                    }),
                }],
                note: None,
            });
        }
        let mut nodes = vec![NodeDrift {
            address: "helm.linkerd_viz".into(),
            in_plan: true,
            objects,
        }];
        let mut unmanaged = vec![];
        if drift {
            nodes.push(NodeDrift {
                address: "manifest.podmonitors".into(),
                in_plan: true,
                objects: vec![ObjectDrift {
                    object: ObjectRef::new(
                        "monitoring.coreos.com/v1",
                        "PodMonitor",
                        Some("monitoring"),
                        "linkerd-proxy",
                    ),
                    status: ObjectStatus::Missing,
                    fields: vec![],
                    note: None,
                }],
            });
            unmanaged.push(UnmanagedObject {
                object: ObjectRef::new("v1", "ConfigMap", Some("default"), "a<b"),
                node: Some("manifest.extra".into()),
                created_by: None,
            });
        }
        DriftReport::new(
            "linkerd".into(),
            "http://127.0.0.1:1".into(),
            StateInfo {
                lineage: "l".into(),
                serial: 4,
                source: "database".into(),
                held_by: None,
                unfinished_runs: vec![],
            },
            nodes,
            unmanaged,
        )
    }

    #[test]
    fn the_human_form_names_field_values_and_manager() {
        let text = render_human(&report(true), false);
        assert_eq!(
            text,
            "helm.linkerd_viz\n  ~ apps/v1 Deployment linkerd-viz/web has changed\n      .spec.replicas: 1 → 3 (changed by kubectl, Update of scale, 2025-05-01T10:00:00Z)\n\nmanifest.podmonitors\n  - monitoring.coreos.com/v1 PodMonitor monitoring/linkerd-proxy is missing\n\nUnmanaged: objects marked as plan linkerd's that the state does not know\n  ! v1 ConfigMap default/a<b (node manifest.extra)\n\nDrift: 1 changed, 1 missing, 1 unmanaged (of 3 objects the plan owns).\n"
        );
        assert_eq!(
            render_human(&report(false), false),
            "No drift: every object plan linkerd owns (1) matches what was last applied.\n"
        );
    }

    #[test]
    fn the_json_form_matches_the_documented_schema() {
        let schema: Value =
            serde_json::from_str(include_str!("../../docs/drift-report.schema.json")).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        for drift in [true, false] {
            let json: Value = serde_json::from_str(&render_json(&report(drift))).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&json)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{errors:?}\n{json:#}");
        }
        // The schema is strict: an unknown field or status is refused.
        let mut json: Value = serde_json::from_str(&render_json(&report(true))).unwrap();
        json["nodes"][0]["objects"][1]["status"] = json!("drifting");
        assert!(!validator.is_valid(&json));
        let mut json: Value = serde_json::from_str(&render_json(&report(true))).unwrap();
        json["summary"]["extra"] = json!(1);
        assert!(!validator.is_valid(&json));
    }

    #[test]
    fn the_markdown_form_is_a_table_and_the_junit_form_escapes() {
        let md = render_markdown(&report(true));
        assert!(md.contains("| Node | Object | Status | Field | Applied | Live | Changed by |\n|---|---|---|---|---|---|---|\n"), "{md}");
        assert!(md.contains("| helm.linkerd_viz | `apps/v1 Deployment linkerd-viz/web` | changed | `.spec.replicas` | `1` | `3` | changed by kubectl, Update of scale, 2025-05-01T10:00:00Z |"), "{md}");
        let junit = render_junit(&report(true));
        assert!(junit.contains("tests=\"4\" failures=\"3\""), "{junit}");
        assert!(
            junit.contains("name=\"v1 ConfigMap default/a&lt;b\""),
            "{junit}"
        );
        assert_eq!(render_junit(&report(false)).matches("<failure").count(), 0);
    }
}
