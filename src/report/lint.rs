//! The lint report: for people (one block per finding, then a summary and what was not
//! checked), for programs (JSON, format version 1) and for code-scanning UIs (SARIF 2.1.0).
//!
//! Human form:
//!
//! ```text
//! error[meshed-job]: Job (helm hook, pre-install) apps/db-migrate never completes: ...
//!   --> plan.toml:14:1
//!   node: helm.migrate, object: batch/v1 Job apps/db-migrate (db-migrate/templates/job.yaml)
//!   field: spec.template.metadata.annotations
//!   why: the linkerd-proxy container keeps running after the Job's own containers exit, ...
//!   fix: set the chart value `migrate.podAnnotations` to { "linkerd.io/inject" = "disabled" } ...
//!
//! lint: 1 error, 0 warnings, 0 suppressed.
//! ```
//!
//! A suppressed finding shows its message, its position and the plan's reason instead of why
//! and fix. Colour only on the severity word, and only when asked.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::lint::{CheckId, Finding, LintReport, Severity};

/// The JSON format version of `meshplan lint --format json`.
pub const LINT_FORMAT: u32 = 1;

/// How to render for people.
#[derive(Debug, Clone, Copy, Default)]
pub struct LintHumanOptions {
    pub color: bool,
}

fn paint(text: &str, severity: Severity, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match severity {
        Severity::Error => "31",
        Severity::Warning => "33",
    };
    format!("\x1b[1;{code}m{text}\x1b[0m")
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The findings block (without the summary), empty when there are none.
pub fn render_findings(report: &LintReport, options: LintHumanOptions) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let label = match &f.suppressed {
            Some(_) => format!("{}[{}] (suppressed)", f.severity, f.check),
            None => format!("{}[{}]", f.severity, f.check),
        };
        let _ = writeln!(
            out,
            "{}: {}",
            paint(&label, f.severity, options.color && f.suppressed.is_none()),
            f.message
        );
        let _ = writeln!(out, "  --> {}", f.file);
        let mut at = format!("  node: {}", f.node);
        if let Some(object) = &f.object {
            let _ = write!(at, ", object: {object}");
            if let Some(t) = &f.template {
                let _ = write!(at, " ({t})");
            }
        }
        let _ = writeln!(out, "{at}");
        if let Some(field) = &f.field {
            let _ = writeln!(out, "  field: {field}");
        }
        match &f.suppressed {
            Some(reason) => {
                let _ = writeln!(out, "  suppressed: {reason}");
            }
            None => {
                let _ = writeln!(out, "  why: {}", f.why);
                let _ = writeln!(out, "  fix: {}", f.fix);
            }
        }
        out.push('\n');
    }
    out
}

/// The one-line summary: `lint: 1 error, 2 warnings, 1 suppressed.`
pub fn summary_line(report: &LintReport) -> String {
    if report.findings.is_empty() {
        return "lint: no findings.\n".to_string();
    }
    format!(
        "lint: {}, {}, {} suppressed.\n",
        plural(report.errors(), "error"),
        plural(report.warnings(), "warning"),
        report.suppressed()
    )
}

/// What was not checked, one line each (empty when everything was).
pub fn render_notes(report: &LintReport) -> String {
    let mut out = String::new();
    if !report.online {
        out.push_str(
            "The cluster was not read (--offline): checks used the plan only (see \
             docs/checks.md for what the cluster adds).\n",
        );
    }
    if !report.notes.is_empty() {
        out.push_str("Not checked:\n");
        for n in &report.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    out
}

/// The whole human report: findings, summary, notes.
pub fn render_lint_human(report: &LintReport, options: LintHumanOptions) -> String {
    let mut out = render_findings(report, options);
    out.push_str(&summary_line(report));
    let notes = render_notes(report);
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    out
}

fn finding_json(f: &Finding) -> Value {
    let mut v = json!({
        "check": f.check.as_str(),
        "severity": f.severity.as_str(),
        "node": f.node.to_string(),
        "file": f.file.file,
        "line": f.file.line,
        "column": f.file.column,
        "message": f.message,
        "why": f.why,
        "fix": f.fix,
    });
    if let Some(map) = v.as_object_mut() {
        if let Some(o) = &f.object {
            map.insert(
                "object".into(),
                json!({
                    "apiVersion": o.api_version,
                    "kind": o.kind,
                    "namespace": o.namespace,
                    "name": o.name,
                }),
            );
        }
        if let Some(field) = &f.field {
            map.insert("field".into(), json!(field));
        }
        if let Some(t) = &f.template {
            map.insert("template".into(), json!(t));
        }
        if let Some(reason) = &f.suppressed {
            map.insert("suppressed".into(), json!({ "reason": reason }));
        }
    }
    v
}

/// The JSON report (one document, a trailing newline).
pub fn render_lint_json(report: &LintReport) -> String {
    let v = json!({
        "format_version": LINT_FORMAT,
        "online": report.online,
        "summary": {
            "errors": report.errors(),
            "warnings": report.warnings(),
            "suppressed": report.suppressed(),
        },
        "findings": report.findings.iter().map(finding_json).collect::<Vec<_>>(),
        "not_checked": report.notes,
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

fn pascal(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// A SARIF artifact URI for a file name as shown: relative paths stay relative (to the
/// working directory), absolute ones become `file://` URIs; characters outside the URI
/// alphabet are percent-encoded.
fn artifact_uri(name: &str) -> String {
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            encoded.push(b as char);
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    if name.starts_with('/') {
        format!("file://{encoded}")
    } else {
        encoded
    }
}

/// The SARIF 2.1.0 log: one run of the `meshplan` tool, every check as a rule, every finding
/// as a result (suppressed ones with an in-source suppression and its justification).
pub fn render_lint_sarif(report: &LintReport) -> String {
    let rules: Vec<Value> = CheckId::ALL
        .iter()
        .map(|c| {
            let level = match c.severity() {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            json!({
                "id": c.as_str(),
                "name": pascal(c.as_str()),
                "shortDescription": { "text": c.title() },
                "fullDescription": { "text": c.why() },
                "help": { "text": format!("See docs/checks.md, section `{}`.", c.as_str()) },
                "defaultConfiguration": { "level": level },
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let rule_index = CheckId::ALL.iter().position(|c| *c == f.check).unwrap_or(0);
            let mut location = json!({
                "physicalLocation": {
                    "artifactLocation": { "uri": artifact_uri(&f.file.file) },
                    "region": { "startLine": f.file.line, "startColumn": f.file.column },
                },
            });
            let logical_name = match &f.object {
                Some(o) => format!("{} {o}", f.node),
                None => f.node.to_string(),
            };
            if let Some(map) = location.as_object_mut() {
                map.insert(
                    "logicalLocations".into(),
                    json!([{ "name": logical_name, "kind": "resource" }]),
                );
            }
            let mut properties = json!({ "node": f.node.to_string(), "why": f.why, "fix": f.fix });
            if let Some(map) = properties.as_object_mut() {
                if let Some(field) = &f.field {
                    map.insert("field".into(), json!(field));
                }
                if let Some(t) = &f.template {
                    map.insert("template".into(), json!(t));
                }
            }
            let mut result = json!({
                "ruleId": f.check.as_str(),
                "ruleIndex": rule_index,
                "level": f.severity.as_str(),
                "message": { "text": format!("{} Fix: {}", f.message, f.fix) },
                "locations": [location],
                "properties": properties,
            });
            if let (Some(reason), Some(map)) = (&f.suppressed, result.as_object_mut()) {
                map.insert(
                    "suppressions".into(),
                    json!([{ "kind": "inSource", "justification": reason }]),
                );
            }
            result
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "meshplan",
                    "version": env!("CARGO_PKG_VERSION"),
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&log).unwrap_or_default()
    )
}

/// The findings shown above a plan (by `plan` and `apply`): the findings and the summary, or
/// nothing when there are none.
pub fn render_above_plan(report: &LintReport, options: LintHumanOptions) -> String {
    if report.findings.is_empty() {
        return String::new();
    }
    format!(
        "{}{}\n",
        render_findings(report, options),
        summary_line(report)
    )
}
