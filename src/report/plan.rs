//! The plan report: a change set for people (Terraform-like) and for programs (JSON).
//!
//! Human form, in graph order, one section per node that changes something:
//!
//! ```text
//! manifest.settings
//!   ~ v1 ConfigMap default/settings will be updated in place
//!       - data.mode: blue
//!       + data.mode: green
//!
//! Plan: 0 to add, 1 to change, 0 to destroy.
//! ```
//!
//! - Symbols are fixed ([`Action::symbol`]): `+` create, `~` update (and taking fields back
//!   from another field manager), `-` delete, `-/+` replace, `<=` adopt, `?` known after
//!   apply, `.` forget, `>` hook.
//! - Only changed fields are shown, as a unified diff (similar) of `path: value` lines.
//!   Creates show only their unknown and sensitive fields. Sensitive values are never shown:
//!   `(sensitive, changed)`.
//! - The summary line is Terraform's: `Plan: A to add, C to change, D to destroy.` (a replace
//!   counts once in add and once in destroy), prefixed with `N to adopt, ` when objects are
//!   adopted (like Terraform's imports); `No changes. The cluster matches the plan.` when
//!   nothing changes.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use crate::diff::{
    Action, CHANGE_SET_FORMAT, ChangeSet, FieldChange, NodeChange, NodeStatus, ObjectChange,
    Summary,
};

/// How to render for people.
#[derive(Debug, Clone, Copy, Default)]
pub struct HumanOptions {
    /// ANSI colours on the symbols (only on a terminal without `NO_COLOR`).
    pub color: bool,
}

const SENSITIVE_CHANGED: &str = "(sensitive, changed)";
const SENSITIVE: &str = "(sensitive)";
const KNOWN_AFTER_APPLY: &str = "(known after apply)";

/// The human plan report.
pub fn render_human(change_set: &ChangeSet, options: HumanOptions) -> String {
    let mut out = String::new();
    let summary = change_set.summary();
    let used: Vec<Action> = legend_actions(change_set);
    if !used.is_empty() {
        let _ = writeln!(
            out,
            "meshplan will perform the following actions (plan {}). Symbols:",
            change_set.plan
        );
        for a in &used {
            let _ = writeln!(out, "  {} {}", paint(a.symbol(), *a, options), legend(*a));
        }
        out.push('\n');
    }
    for node in &change_set.nodes {
        render_node(&mut out, node, options);
    }
    out.push_str(&summary_lines(change_set, &summary));
    out
}

fn legend(a: Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Update => "update in place",
        Action::Replace => "replace (delete, then create)",
        Action::Delete => "delete",
        Action::Adopt => "adopt (exists as desired: recorded in the state, nothing sent)",
        Action::KnownAfterApply => "known after apply (decided during apply)",
        Action::Forget => "forget (already gone: the state record is removed)",
        Action::Hook => "helm hook that will run (its node is installed or upgraded)",
        Action::Conflict => {
            "take fields back from another field manager (apply needs --force-conflicts)"
        }
        Action::NoOp => "no change",
    }
}

fn legend_actions(cs: &ChangeSet) -> Vec<Action> {
    let mut used: Vec<Action> = cs
        .nodes
        .iter()
        .filter(|n| n.has_changes())
        .flat_map(|n| n.objects.iter().map(|o| o.action))
        .filter(|a| *a != Action::NoOp)
        .collect();
    if cs
        .nodes
        .iter()
        .any(|n| matches!(n.status, NodeStatus::RenderedDuringApply { .. }))
    {
        used.push(Action::KnownAfterApply);
    }
    used.sort();
    used.dedup();
    used
}

fn paint(text: &str, action: Action, options: HumanOptions) -> String {
    if !options.color {
        return text.to_owned();
    }
    let code = match action {
        Action::Create => "32",
        Action::Update | Action::KnownAfterApply | Action::Conflict => "33",
        Action::Delete | Action::Replace => "31",
        Action::Adopt | Action::Hook => "36",
        Action::Forget | Action::NoOp => "2",
    };
    format!("\u{1b}[{code}m{text}\u{1b}[0m")
}

fn render_node(out: &mut String, node: &NodeChange, options: HumanOptions) {
    let shown: Vec<&ObjectChange> = node
        .objects
        .iter()
        .filter(|o| o.action != Action::NoOp)
        .filter(|o| o.action != Action::Hook || node.has_changes())
        .collect();
    match &node.status {
        NodeStatus::ReadDuringApply => {
            let _ = writeln!(out, "{}\n  value {KNOWN_AFTER_APPLY}\n", node.address);
            return;
        }
        NodeStatus::RenderedDuringApply { reason } => {
            let _ = writeln!(
                out,
                "{}\n  {} rendered during apply: {reason}",
                node.address,
                paint("?", Action::KnownAfterApply, options)
            );
        }
        NodeStatus::Removed => {
            let _ = writeln!(out, "{} (no longer in the plan)", node.address);
        }
        _ if !node.has_changes() => return,
        _ if node.has_unknown_inputs() => {
            let (verb, what) = if node.unknown_inputs.len() == 1 {
                ("is", "a placeholder")
            } else {
                ("are", "placeholders")
            };
            let _ = writeln!(
                out,
                "{} ({} {verb} known after apply: rendered with {what})",
                node.address,
                node.unknown_inputs.join(", ")
            );
        }
        _ => {
            let _ = writeln!(out, "{}", node.address);
        }
    }
    for o in shown {
        render_object(out, o, options);
    }
    out.push('\n');
}

fn render_object(out: &mut String, o: &ObjectChange, options: HumanOptions) {
    let symbol = paint(o.action.symbol(), o.action, options);
    let mut notes: Vec<String> = Vec::new();
    if o.regenerated_only {
        notes.push("only because the chart regenerates material".to_owned());
    }
    if o.kind_created_by_plan {
        notes.push("its kind is created by this plan".to_owned());
    }
    if o.kind_pending {
        notes.push("its kind is not installed yet: checked during apply".to_owned());
    }
    if let Some(h) = &o.hook {
        notes.push(format!("{} hook", h.phases.join(",")));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    let _ = writeln!(out, "  {symbol} {} {}{notes}", o.object, o.action.verb());
    if let Some(reason) = &o.replace_reason {
        let _ = writeln!(out, "      # {reason}");
    }
    for c in &o.conflicts {
        let _ = writeln!(
            out,
            "      # {} is owned by field manager \"{}\"",
            c.field, c.manager
        );
    }
    if o.action == Action::Conflict {
        let _ = writeln!(
            out,
            "      # apply takes them back only with --force-conflicts (an ignore rule gives them up for good)"
        );
    }
    render_fields(out, &o.fields);
}

fn render_fields(out: &mut String, fields: &[FieldChange]) {
    let mut before = String::new();
    let mut after = String::new();
    for f in fields {
        if f.sensitive {
            let value = if f.unknown {
                KNOWN_AFTER_APPLY
            } else if f.before.is_none() && f.after.is_none() {
                SENSITIVE_CHANGED
            } else {
                SENSITIVE
            };
            let _ = writeln!(out, "      ~ {}: {value}", f.path);
            continue;
        }
        if f.unknown {
            let _ = writeln!(out, "      + {}: {KNOWN_AFTER_APPLY}", f.path);
            continue;
        }
        if let Some(v) = &f.before {
            field_text(&mut before, &f.path, v);
        }
        if let Some(v) = &f.after {
            field_text(&mut after, &f.path, v);
        }
    }
    if before.is_empty() && after.is_empty() {
        return;
    }
    let diff = TextDiff::from_lines(&before, &after);
    for (i, group) in diff.grouped_ops(1).iter().enumerate() {
        if i > 0 {
            let _ = writeln!(out, "        ...");
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let sign = match change.tag() {
                    ChangeTag::Delete => "-",
                    ChangeTag::Insert => "+",
                    ChangeTag::Equal => " ",
                };
                let line = change.value().trim_end_matches('\n');
                let _ = writeln!(out, "      {sign} {line}");
            }
        }
    }
}

/// `path: value`, multi-line strings as a block.
fn field_text(out: &mut String, path: &str, value: &Value) {
    match value {
        Value::String(s) if s.contains('\n') => {
            let _ = writeln!(out, "{path}: |");
            for line in s.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        Value::String(s) => {
            let _ = writeln!(out, "{path}: {s}");
        }
        other => {
            let _ = writeln!(out, "{path}: {other}");
        }
    }
}

fn summary_lines(cs: &ChangeSet, s: &Summary) -> String {
    let mut out = String::new();
    if !cs.has_changes() {
        out.push_str("No changes. The cluster matches the plan.\n");
        return out;
    }
    let adopt = if s.adopt > 0 {
        format!("{} to adopt, ", s.adopt)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "Plan: {adopt}{} to add, {} to change, {} to destroy.",
        s.add, s.change, s.destroy
    );
    let mut extra = Vec::new();
    if s.replace > 0 {
        extra.push(format!(
            "{} {} replaced (counted in add and destroy)",
            s.replace,
            if s.replace == 1 {
                "object is"
            } else {
                "objects are"
            }
        ));
    }
    if s.known_after_apply > 0 {
        extra.push(format!(
            "{} {} decided during apply",
            s.known_after_apply,
            if s.known_after_apply == 1 {
                "change is"
            } else {
                "changes are"
            }
        ));
    }
    if s.rendered_during_apply > 0 {
        extra.push(format!(
            "{} {} rendered during apply (not counted)",
            s.rendered_during_apply,
            if s.rendered_during_apply == 1 {
                "node is"
            } else {
                "nodes are"
            }
        ));
    }
    if s.forget > 0 {
        extra.push(format!(
            "{} state records of objects already gone are removed",
            s.forget
        ));
    }
    if s.conflicts > 0 {
        extra.push(format!(
            "{} {} fields back from another field manager (apply needs --force-conflicts)",
            s.conflicts,
            if s.conflicts == 1 {
                "change takes"
            } else {
                "changes take"
            }
        ));
    }
    if !extra.is_empty() {
        let _ = writeln!(out, "{}.", capitalise(&extra.join("; ")));
    }
    out
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The JSON plan report (`--output json`), documented in `docs/plan-output.md`.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub format_version: u32,
    pub plan: &'a str,
    pub has_changes: bool,
    pub summary: Summary,
    pub nodes: &'a [NodeChange],
}

/// The JSON plan report, pretty-printed, with a final newline.
pub fn render_json(change_set: &ChangeSet) -> String {
    let report = JsonReport {
        format_version: CHANGE_SET_FORMAT,
        plan: &change_set.plan,
        has_changes: change_set.has_changes(),
        summary: change_set.summary(),
        nodes: &change_set.nodes,
    };
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

/// The change set as the first line of `apply --output json`: one JSON object, like the
/// progress events that follow it (`{"event": "plan", "format": 1, "change_set": ...}`).
pub fn render_json_event(change_set: &ChangeSet) -> String {
    format!(
        "{}\n",
        serde_json::json!({"event": "plan", "format": 1, "change_set": change_set})
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ObjectRef;
    use serde_json::json;

    fn field(path: &str, before: Option<Value>, after: Option<Value>) -> FieldChange {
        FieldChange {
            path: path.into(),
            pointer: format!("/{}", path.replace('.', "/")),
            before,
            after,
            sensitive: false,
            unknown: false,
            forces_replacement: false,
        }
    }

    fn sample() -> ChangeSet {
        let mut update = ObjectChange::new(
            ObjectRef::new("v1", "ConfigMap", Some("d"), "c"),
            Action::Update,
        );
        update.fields = vec![field(
            "data.mode",
            Some(json!("blue")),
            Some(json!("green")),
        )];
        let mut secret = ObjectChange::new(
            ObjectRef::new("v1", "Secret", Some("d"), "s"),
            Action::Update,
        );
        secret.fields = vec![FieldChange {
            sensitive: true,
            ..field("data.password", None, None)
        }];
        let create =
            ObjectChange::new(ObjectRef::new("v1", "Namespace", None, "n"), Action::Create);
        let noop = ObjectChange::new(
            ObjectRef::new("v1", "ConfigMap", Some("d"), "same"),
            Action::NoOp,
        );
        ChangeSet {
            plan: "p".into(),
            nodes: vec![
                NodeChange {
                    address: "manifest.a".into(),
                    status: NodeStatus::Planned,
                    objects: vec![create, update, secret, noop],
                    render_key: None,
                    unknown_inputs: Vec::new(),
                },
                NodeChange {
                    address: "read.r".into(),
                    status: NodeStatus::ReadDuringApply,
                    objects: vec![],
                    render_key: None,
                    unknown_inputs: Vec::new(),
                },
                NodeChange {
                    address: "manifest.gone".into(),
                    status: NodeStatus::Removed,
                    objects: vec![ObjectChange::new(
                        ObjectRef::new("v1", "ConfigMap", Some("d"), "old"),
                        Action::Delete,
                    )],
                    render_key: None,
                    unknown_inputs: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn human_report_shows_only_changes_and_masks_secrets() {
        let text = render_human(&sample(), HumanOptions::default());
        assert!(text.contains("  ~ v1 ConfigMap d/c will be updated in place\n      - data.mode: blue\n      + data.mode: green\n"), "{text}");
        assert!(
            text.contains("      ~ data.password: (sensitive, changed)"),
            "{text}"
        );
        assert!(!text.contains("same"), "{text}");
        assert!(
            text.contains("read.r\n  value (known after apply)"),
            "{text}"
        );
        assert!(
            text.contains(
                "manifest.gone (no longer in the plan)\n  - v1 ConfigMap d/old will be deleted"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("Plan: 1 to add, 2 to change, 1 to destroy.\n"),
            "{text}"
        );
    }

    #[test]
    fn empty_plans_say_so() {
        let cs = ChangeSet {
            plan: "p".into(),
            nodes: vec![NodeChange {
                address: "manifest.a".into(),
                status: NodeStatus::Planned,
                objects: vec![ObjectChange::new(
                    ObjectRef::new("v1", "ConfigMap", Some("d"), "c"),
                    Action::NoOp,
                )],
                render_key: None,
                unknown_inputs: Vec::new(),
            }],
        };
        assert_eq!(
            render_human(&cs, HumanOptions::default()),
            "No changes. The cluster matches the plan.\n"
        );
        let json: Value = serde_json::from_str(&render_json(&cs)).unwrap();
        assert_eq!(json["has_changes"], false);
        assert_eq!(json["format_version"], 1);
    }

    #[test]
    fn json_report_has_the_summary_and_no_values_of_secrets() {
        let mut cs = sample();
        cs.nodes[0].objects[2].desired = Some(json!({"data": {"password": "aHVudGVyMg=="}}));
        let text = render_json(&cs);
        assert!(!text.contains("aHVudGVyMg=="));
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["summary"]["add"], 1);
        assert_eq!(json["summary"]["change"], 2);
        assert_eq!(json["summary"]["destroy"], 1);
        assert_eq!(json["nodes"][0]["status"], "planned");
        assert_eq!(json["nodes"][0]["objects"][1]["action"], "update");
    }
}
