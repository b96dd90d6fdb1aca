//! TOML text → [`RawPlan`]: the shape of the plan (sections, node types, node names, field
//! names) is checked here; values are left for the model. Every problem becomes a
//! [`Diagnostic`]; TOML syntax errors stop the parse (what follows them is unreliable).

use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, DiagnosticKind, did_you_mean};
use super::shape;
use super::source::{FileId, Span};
use super::syntax::{
    NodeKind, RawEntry, RawKind, RawNode, RawPlan, RawSection, RawTable, RawValue, is_identifier,
};

const SECTIONS: [&str; 4] = ["plan", "vars", "repos", "state"];

/// The plan-wide ignore rules: `[[ignore]]`.
const IGNORE: &str = "ignore";

/// Parses a TOML document into a [`RawTable`]; syntax errors come back as diagnostics
/// (all of them, as far as the TOML parser can recover).
pub fn parse_toml(file: FileId, text: &str) -> Result<RawValue, Vec<Diagnostic>> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        let mut diags = Vec::new();
        // Body of a table defined twice: its keys are duplicates too, but only noise.
        let mut skip: Option<std::ops::Range<usize>> = None;
        for e in &errors {
            let range = e.span().unwrap_or(0..0);
            if skip.as_ref().is_some_and(|r| r.contains(&range.start)) {
                continue;
            }
            if e.message() == "duplicate key"
                && let Some((diag, body)) = duplicate_table(file, text, range.start)
            {
                diags.push(diag);
                skip = Some(body);
                continue;
            }
            diags.push(toml_error(file, text, e.message(), e.span()));
        }
        return Err(diags);
    }
    let span = Span::new(file, 0..text.len());
    let table = convert_table(file, root.get_ref());
    Ok(RawValue {
        span,
        kind: RawKind::Table(table),
    })
}

/// The header of the line holding `offset`, when that line is a table header: its text
/// (`helm.a`), its span, and the body up to the next header.
fn header_at(text: &str, offset: usize) -> Option<(String, std::ops::Range<usize>, usize)> {
    let offset = crate::planfile::source::floor_char_boundary(text, offset);
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    let trimmed = line.trim_start();
    if !trimmed.starts_with('[') {
        return None;
    }
    let close = trimmed.find(']')?;
    let lead = line.len() - trimmed.len();
    let header_end = if trimmed[close..].starts_with("]]") {
        close + 2
    } else {
        close + 1
    };
    let name = trimmed[..header_end]
        .trim_matches(|c| c == '[' || c == ']')
        .split('.')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(".");
    let start = line_start + lead;
    Some((name, start..start + header_end, line_end))
}

fn duplicate_table(
    file: FileId,
    text: &str,
    offset: usize,
) -> Option<(Diagnostic, std::ops::Range<usize>)> {
    let (name, header, line_end) = header_at(text, offset)?;
    let body_end = text[line_end..]
        .match_indices('\n')
        .map(|(i, _)| line_end + i + 1)
        .find(|&i| text[i..].trim_start_matches([' ', '\t']).starts_with('['))
        .unwrap_or(text.len());
    let mut first = None;
    let mut line_start = 0;
    while line_start < header.start {
        if let Some((other, span, _)) = header_at(text, line_start)
            && other == name
        {
            first = Some(span);
            break;
        }
        line_start = match text[line_start..].find('\n') {
            Some(i) => line_start + i + 1,
            None => break,
        };
    }
    let mut d = Diagnostic::new(
        DiagnosticKind::DuplicateName,
        format!("`{name}` is defined twice"),
    )
    .label(Span::new(file, header.clone()), "defined again here");
    if let Some(first) = first {
        d = d.label(Span::new(file, first), "first defined here");
    }
    let d = d.help(
        "node names must be unique within a node type (and a table appears once): rename one of \
         the two, or merge them",
    );
    Some((d, header.start..body_end))
}

fn toml_error(
    file: FileId,
    text: &str,
    message: &str,
    span: Option<std::ops::Range<usize>>,
) -> Diagnostic {
    let range = span.unwrap_or(0..0);
    let range = range.start.min(text.len())..range.end.min(text.len());
    let span = Span::new(file, range.clone());
    if message == "duplicate key" {
        let key = text.get(range).unwrap_or("").trim();
        return Diagnostic::new(
            DiagnosticKind::DuplicateName,
            format!("key `{key}` is set twice in the same table"),
        )
        .label(span, "set again here")
        .help("a key may appear once per table: remove one of the two");
    }
    Diagnostic::new(
        DiagnosticKind::TomlSyntax,
        format!("invalid TOML: {message}"),
    )
    .label(span, message.to_string())
    .help("fix the TOML syntax here (see https://toml.io); nothing else was checked")
}

fn convert_table(file: FileId, table: &DeTable<'_>) -> RawTable {
    let mut entries: Vec<RawEntry> = table
        .iter()
        .map(|(k, v)| RawEntry {
            key: k.get_ref().to_string(),
            key_span: Span::new(file, k.span()),
            value: convert_value(file, v.get_ref(), v.span()),
        })
        .collect();
    entries.sort_by_key(|e| (e.key_span.range.start, e.key_span.range.end));
    RawTable { entries }
}

fn convert_value(file: FileId, value: &DeValue<'_>, range: std::ops::Range<usize>) -> RawValue {
    let span = Span::new(file, range);
    let kind = match value {
        DeValue::String(s) => RawKind::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => RawKind::Integer(n),
            // Out of range for i64: keep the digits as a float so nothing panics.
            Err(_) => RawKind::Float(i.as_str().parse().unwrap_or(f64::MAX)),
        },
        DeValue::Float(f) => {
            RawKind::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN))
        }
        DeValue::Boolean(b) => RawKind::Bool(*b),
        DeValue::Datetime(d) => RawKind::Datetime(d.to_string()),
        DeValue::Array(items) => RawKind::Array(
            items
                .iter()
                .map(|v| convert_value(file, v.get_ref(), v.span()))
                .collect(),
        ),
        DeValue::Table(t) => RawKind::Table(convert_table(file, t)),
    };
    RawValue { span, kind }
}

/// Parses a plan file. Returns the raw plan (possibly partial) and every problem found.
pub fn parse_plan(file: FileId, text: &str) -> (RawPlan, Vec<Diagnostic>) {
    let mut plan = RawPlan {
        file,
        plan: None,
        vars: None,
        repos: None,
        state: None,
        nodes: Vec::new(),
        ignore: None,
    };
    let root = match parse_toml(file, text) {
        Ok(root) => root,
        Err(diags) => return (plan, diags),
    };
    let mut diags = Vec::new();
    let RawKind::Table(table) = root.kind else {
        return (plan, diags);
    };
    for entry in table.entries {
        let key = entry.key.as_str();
        if SECTIONS.contains(&key) {
            let Some(t) = entry.value.as_table() else {
                diags.push(
                    Diagnostic::new(
                        DiagnosticKind::WrongType,
                        format!("`{key}` must be a table, not {}", entry.value.type_name()),
                    )
                    .label(entry.value.span.clone(), "expected a table")
                    .help(format!("write it as a section: [{key}]")),
                );
                continue;
            };
            let section = RawSection {
                span: entry.value.span.clone(),
                table: t.clone(),
            };
            match key {
                "plan" => {
                    check_fields(&section.table, "[plan]", &shape::PLAN.names(), &mut diags);
                    plan.plan = Some(section);
                }
                "vars" => plan.vars = Some(section),
                "state" => {
                    check_fields(&section.table, "[state]", &shape::STATE.names(), &mut diags);
                    plan.state = Some(section);
                }
                _ => plan.repos = Some(section),
            }
            continue;
        }
        if key == IGNORE {
            match &entry.value.kind {
                RawKind::Array(_) | RawKind::Table(_) => plan.ignore = Some(entry.value.clone()),
                _ => diags.push(
                    Diagnostic::new(
                        DiagnosticKind::WrongType,
                        format!(
                            "`ignore` must be an array of tables, not {}",
                            entry.value.type_name()
                        ),
                    )
                    .label(entry.value.span.clone(), "expected an array of tables")
                    .help(
                        "write each rule as a table: [[ignore]] kind = \"Deployment\" fields = [\"/spec/replicas\"]",
                    ),
                ),
            }
            continue;
        }
        let Some(kind) = NodeKind::parse(key) else {
            if entry.value.as_table().is_none() {
                let help = if key == "name" {
                    "the plan's name belongs in the [plan] table: [plan] name = \"...\"".to_string()
                } else {
                    "top-level keys belong in a table: variables in [vars], repositories in \
                     [repos], node fields in [TYPE.NAME]"
                        .to_string()
                };
                diags.push(
                    Diagnostic::new(
                        DiagnosticKind::UnknownField,
                        format!("unknown top-level key `{key}`"),
                    )
                    .label(entry.key_span.clone(), "outside of any table")
                    .help(help),
                );
                continue;
            }
            let mut candidates: Vec<&str> = NodeKind::ALL.iter().map(|k| k.as_str()).collect();
            candidates.extend(SECTIONS);
            candidates.push(IGNORE);
            let suggestion = did_you_mean(key, candidates);
            let help = match suggestion {
                Some(s) => format!("did you mean `{s}`?"),
                None => "node types are manifest, helm, read and check; top-level tables are \
                         plan, vars, repos and state"
                    .to_string(),
            };
            diags.push(
                Diagnostic::new(
                    DiagnosticKind::UnknownNodeType,
                    format!("unknown node type `{key}`"),
                )
                .label(entry.key_span.clone(), "not a node type")
                .help(help),
            );
            continue;
        };
        let Some(nodes) = entry.value.as_table() else {
            diags.push(
                Diagnostic::new(
                    DiagnosticKind::WrongType,
                    format!(
                        "`{key}` must be a table of nodes, not {}",
                        entry.value.type_name()
                    ),
                )
                .label(entry.value.span.clone(), "expected a table")
                .help(format!("declare nodes as tables: [{key}.NAME]")),
            );
            continue;
        };
        for node in &nodes.entries {
            if let Some(raw) = parse_node(kind, node, &mut diags) {
                plan.nodes.push(raw);
            }
        }
    }
    plan.nodes
        .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    (plan, diags)
}

fn parse_node(kind: NodeKind, entry: &RawEntry, diags: &mut Vec<Diagnostic>) -> Option<RawNode> {
    let name = &entry.key;
    if !is_identifier(name) {
        diags.push(
            Diagnostic::new(
                DiagnosticKind::InvalidValue,
                format!("invalid node name `{name}` in `{kind}`"),
            )
            .label(entry.key_span.clone(), "not a valid name")
            .help(
                "a node name starts with a letter or `_` and contains only letters, digits, `_` \
                 and `-`",
            ),
        );
        return None;
    }
    let Some(body) = entry.value.as_table() else {
        let help = if kind.fields().contains(&name.as_str()) {
            format!("nodes are named tables: write [{kind}.NAME] and put `{name}` inside it")
        } else {
            format!("declare the node as a table: [{kind}.{name}]")
        };
        diags.push(
            Diagnostic::new(
                DiagnosticKind::WrongType,
                format!(
                    "`{kind}.{name}` must be a node table, not {}",
                    entry.value.type_name()
                ),
            )
            .label(entry.key_span.clone(), "not a node")
            .help(help),
        );
        return None;
    };
    let fields = kind.fields();
    let context = format!("{kind} node `{kind}.{name}`");
    check_fields(body, &context, &fields, diags);
    let body = RawTable {
        entries: body
            .entries
            .iter()
            .filter(|e| fields.contains(&e.key.as_str()))
            .cloned()
            .collect(),
    };
    Some(RawNode {
        kind,
        name: name.clone(),
        name_span: entry.key_span.clone(),
        span: entry.value.span.clone(),
        body,
    })
}

/// Reports every key of `table` that is not in `known`, with a "did you mean".
pub fn check_fields(table: &RawTable, context: &str, known: &[&str], diags: &mut Vec<Diagnostic>) {
    for entry in &table.entries {
        if known.contains(&entry.key.as_str()) {
            continue;
        }
        let help = match did_you_mean(&entry.key, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("valid fields: {}", known.join(", ")),
        };
        diags.push(
            Diagnostic::new(
                DiagnosticKind::UnknownField,
                format!("unknown field `{}` in {context}", entry.key),
            )
            .label(entry.key_span.clone(), "unknown field")
            .help(help),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (RawPlan, Vec<Diagnostic>) {
        parse_plan(FileId(0), text)
    }

    #[test]
    fn nodes_are_sorted_with_spans() {
        let text = "[plan]\nname = \"p\"\n[manifest.b]\nfile = \"x\"\n[helm.a]\nchart = \"r/c\"\n";
        let (plan, diags) = parse(text);
        assert!(diags.is_empty(), "{diags:?}");
        let names: Vec<_> = plan
            .nodes
            .iter()
            .map(|n| format!("{}.{}", n.kind, n.name))
            .collect();
        assert_eq!(names, ["helm.a", "manifest.b"]);
        let helm = &plan.nodes[0];
        assert_eq!(&text[helm.name_span.range.clone()], "a");
        let chart = helm.field("chart").map(|e| e.value.clone());
        assert_eq!(
            chart.and_then(|v| v.as_str().map(String::from)),
            Some("r/c".into())
        );
    }

    #[test]
    fn unknown_fields_and_types_are_all_reported() {
        let text = "[plan]\nnmae = 1\n[helms.x]\n[helm.y]\nchrat = \"a/b\"\n";
        let (_, diags) = parse(text);
        let kinds: Vec<_> = diags.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [
                DiagnosticKind::UnknownField,
                DiagnosticKind::UnknownNodeType,
                DiagnosticKind::UnknownField
            ]
        );
        assert_eq!(diags[1].help.as_deref(), Some("did you mean `helm`?"));
        assert_eq!(diags[2].help.as_deref(), Some("did you mean `chart`?"));
    }

    #[test]
    fn toml_errors_have_spans() {
        let (_, diags) = parse("[plan]\nname = \"x\n");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].kind, DiagnosticKind::TomlSyntax);
        assert!(diags[0].primary().is_some());
    }

    #[test]
    fn duplicate_tables_are_duplicate_names() {
        let (_, diags) = parse("[helm.a]\nchart = \"x/y\"\n[helm.a]\nchart = \"x/z\"\n");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].kind, DiagnosticKind::DuplicateName);
    }
}
