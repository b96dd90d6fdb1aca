//! The ignore rules of the plan file → [`IgnoreRule`]s: `[[ignore]]` tables for the whole plan
//! and `ignore = [...]` in manifest and helm nodes. Part of the builder (a child module of
//! `build`, for its diagnostics helpers).
//!
//! A rule is a table: `kind` (required plan-wide; in a node, omitted means every object of the
//! node), `name` and `namespace` (optional; `${var.*}` allowed), `fields` (required: a
//! non-empty array of JSON pointers, `*` for any key or index) and `reason` (optional).

use crate::planfile::{Diagnostic, DiagnosticKind, RawKind, RawTable, RawValue};

use super::super::address::Address;
use super::super::ignore::{FieldPointer, IgnoreRule};
use super::Builder;

const EXAMPLE: &str = "e.g. { kind = \"Deployment\", name = \"web\", fields = [\"/spec/replicas\"], reason = \"scaled by an HPA\" }";

impl Builder<'_> {
    /// The rules of `value` (an array of tables, or one table); `node` is the node they
    /// belong to (None: `[[ignore]]`).
    pub(super) fn ignore_rules(
        &mut self,
        value: &RawValue,
        node: Option<&Address>,
    ) -> Vec<IgnoreRule> {
        let place = match node {
            Some(a) => format!("`ignore` of {a}"),
            None => "`[[ignore]]`".to_owned(),
        };
        let items: Vec<&RawValue> = match &value.kind {
            RawKind::Array(items) => items.iter().collect(),
            RawKind::Table(_) => vec![value],
            _ => {
                self.wrong_type(&place, "an array of tables", value, EXAMPLE);
                return Vec::new();
            }
        };
        let mut rules = Vec::new();
        for item in items {
            let Some(table) = item.as_table() else {
                self.wrong_type(&format!("a rule of {place}"), "a table", item, EXAMPLE);
                continue;
            };
            if let Some(rule) = self.ignore_rule(table, item, node, &place) {
                rules.push(rule);
            }
        }
        rules
    }

    fn ignore_rule(
        &mut self,
        table: &RawTable,
        item: &RawValue,
        node: Option<&Address>,
        place: &str,
    ) -> Option<IgnoreRule> {
        let errors_before = self.diags.len();
        let mut diags = Vec::new();
        crate::planfile::parse::check_fields(
            table,
            &format!("a rule of {place}"),
            &crate::planfile::shape::IGNORE_RULE.names(),
            &mut diags,
        );
        self.diags.extend(diags);
        let kind = match table.get("kind") {
            Some(e) => self
                .literal_string(&e.value, &format!("`kind` of a rule of {place}"))
                .and_then(|k| self.kind_name(k, &e.value)),
            None if node.is_none() => {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::MissingField,
                        "an `[[ignore]]` rule does not name the kind of its objects",
                    )
                    .label(item.span.clone(), "`kind` is required here")
                    .help(
                        "add kind = \"Deployment\" (or the kind meant); a rule for every object \
                         belongs in a node: ignore = [{ fields = [...] }]",
                    ),
                );
                None
            }
            None => None,
        };
        let name = self.rule_text(table, "name", place);
        let namespace = self.rule_text(table, "namespace", place);
        let reason = match table.get("reason") {
            Some(e) => self.literal_string(&e.value, &format!("`reason` of a rule of {place}")),
            None => None,
        };
        let fields = match table.get("fields") {
            None => {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::MissingField,
                        format!("a rule of {place} names no fields"),
                    )
                    .label(item.span.clone(), "`fields` is required here")
                    .help(
                        "add fields = [\"/spec/replicas\"]: JSON pointers of the fields to give up",
                    ),
                );
                Vec::new()
            }
            Some(e) => self.rule_fields(&e.value, place),
        };
        if self.diags.len() != errors_before {
            return None;
        }
        Some(IgnoreRule {
            node: node.cloned(),
            kind,
            name: name.flatten(),
            namespace: namespace.flatten(),
            fields,
            reason: reason
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty()),
            span: item.span.clone(),
        })
    }

    /// A Kubernetes kind name: a letter, then letters and digits (`Deployment`, `PodMonitor`).
    fn kind_name(&mut self, kind: String, value: &RawValue) -> Option<String> {
        let mut chars = kind.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric());
        if valid {
            return Some(kind);
        }
        self.push(
            Diagnostic::new(
                DiagnosticKind::InvalidValue,
                format!("`{kind}` is not a Kubernetes kind"),
            )
            .label(value.span.clone(), "not a kind")
            .help("write the kind as in the object's `kind` field, e.g. \"Deployment\""),
        );
        None
    }

    /// `name` or `namespace`: Some(None) when absent, None on an error.
    fn rule_text(&mut self, table: &RawTable, field: &str, place: &str) -> Option<Option<String>> {
        let Some(e) = table.get(field) else {
            return Some(None);
        };
        if e.value.as_str().is_none() {
            self.wrong_type(
                &format!("`{field}` of a rule of {place}"),
                "a string",
                &e.value,
                "write the value as a quoted string",
            );
            return None;
        }
        match self.static_string_value(&e.value)? {
            serde_json::Value::String(s) => Some(Some(s)),
            other => Some(Some(other.to_string())),
        }
    }

    fn rule_fields(&mut self, value: &RawValue, place: &str) -> Vec<FieldPointer> {
        let RawKind::Array(items) = &value.kind else {
            self.wrong_type(
                &format!("`fields` of a rule of {place}"),
                "an array of JSON pointers",
                value,
                "write fields = [\"/spec/replicas\"]",
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.push(
                Diagnostic::new(
                    DiagnosticKind::InvalidValue,
                    format!("`fields` of a rule of {place} is empty"),
                )
                .label(value.span.clone(), "no fields")
                .help("list the fields to give up, e.g. fields = [\"/spec/replicas\"]"),
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        for item in items {
            let Some(text) = self.literal_string(item, &format!("a field of a rule of {place}"))
            else {
                continue;
            };
            match FieldPointer::parse(&text) {
                Ok(p) => out.push(p),
                Err(e) => self.push(
                    Diagnostic::new(
                        DiagnosticKind::InvalidValue,
                        format!("`{text}` is not a field meshplan can ignore"),
                    )
                    .label(item.span.clone(), e.to_string())
                    .help(
                        "write a JSON pointer to the field, e.g. \"/spec/replicas\" or \
                         \"/webhooks/*/clientConfig/caBundle\" (`~1` for a `/` in a key)",
                    ),
                ),
            }
        }
        out
    }
}
