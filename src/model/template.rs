//! Interpolation: strings with `${...}` references, parsed with the position of every
//! reference, and evaluated against a [`Scope`].
//!
//! Forms: `${var.NAME}` (with an optional key path into a table var: `${var.NAME.key}`) and
//! `${TYPE.NAME.ATTR}` (e.g. `${read.trust_anchor.value}`). `$${` writes a literal `${`.
//! A string that is exactly one reference evaluates to the referenced value with its type
//! (a number stays a number); otherwise the parts are joined into a string.

use std::fmt;
use std::ops::Range;

use crate::planfile::{Diagnostic, DiagnosticKind, NodeKind, Span, did_you_mean};

use super::address::Address;

/// What a reference points at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    /// `${var.NAME}` or `${var.NAME.key.key}`.
    Var { name: String, path: Vec<String> },
    /// `${TYPE.NAME.ATTR}`.
    Node { address: Address, attribute: String },
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Var { name, path } => {
                write!(f, "var.{name}")?;
                for p in path {
                    write!(f, ".{p}")?;
                }
                Ok(())
            }
            Reference::Node { address, attribute } => write!(f, "{address}.{attribute}"),
        }
    }
}

/// A reference and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct RefUse {
    pub reference: Reference,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Literal(String),
    Ref(RefUse),
}

/// A string value, split into literal text and references.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub parts: Vec<Part>,
    /// The span of the whole string value.
    pub span: Span,
}

impl Template {
    /// A template without references.
    pub fn literal(text: impl Into<String>, span: Span) -> Self {
        let text = text.into();
        let parts = if text.is_empty() {
            Vec::new()
        } else {
            vec![Part::Literal(text)]
        };
        Self { parts, span }
    }

    /// The text, when the template has no references.
    pub fn as_literal(&self) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Ref(_) => return None,
            }
        }
        Some(out)
    }

    pub fn references(&self) -> impl Iterator<Item = &RefUse> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref(r) => Some(r),
            Part::Literal(_) => None,
        })
    }

    /// Evaluates the template: a lone reference keeps the referenced value's type, anything
    /// else is joined into a string (tables and arrays cannot be joined).
    pub fn evaluate(&self, scope: &dyn Scope) -> Result<serde_json::Value, EvalError> {
        if let [Part::Ref(r)] = self.parts.as_slice() {
            return lookup(scope, r);
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Ref(r) => match lookup(scope, r)? {
                    serde_json::Value::String(s) => out.push_str(&s),
                    serde_json::Value::Null => {}
                    v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_)) => {
                        out.push_str(&v.to_string())
                    }
                    other => {
                        return Err(EvalError::NotAScalar {
                            reference: r.reference.clone(),
                            span: r.span.clone(),
                            found: json_type_name(&other),
                        });
                    }
                },
            }
        }
        Ok(serde_json::Value::String(out))
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(s) => f.write_str(&s.replace("${", "$${"))?,
                Part::Ref(r) => write!(f, "${{{}}}", r.reference)?,
            }
        }
        Ok(())
    }
}

fn lookup(scope: &dyn Scope, r: &RefUse) -> Result<serde_json::Value, EvalError> {
    match scope.lookup(&r.reference) {
        Lookup::Known(v) => Ok(v),
        Lookup::Unknown => Err(EvalError::Unknown {
            reference: r.reference.clone(),
            span: r.span.clone(),
        }),
        Lookup::Missing => Err(EvalError::Missing {
            reference: r.reference.clone(),
            span: r.span.clone(),
        }),
    }
}

pub(crate) fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "a table",
    }
}

/// The answer of a [`Scope`] for one reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Known(serde_json::Value),
    /// Known only during apply (e.g. a `read` of an object created in the same run).
    Unknown,
    /// The scope has no such value.
    Missing,
}

/// Values references resolve to (vars at validate time; node outputs during apply).
pub trait Scope {
    fn lookup(&self, reference: &Reference) -> Lookup;
}

/// Why a template could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
pub enum EvalError {
    #[error("`{reference}` is not known yet (known after apply)")]
    #[diagnostic(code(model::eval::unknown))]
    Unknown { reference: Reference, span: Span },
    #[error("`{reference}` has no value")]
    #[diagnostic(code(model::eval::missing))]
    Missing { reference: Reference, span: Span },
    #[error("`{reference}` is {found} and cannot be joined into a string")]
    #[diagnostic(code(model::eval::not_a_scalar))]
    NotAScalar {
        reference: Reference,
        span: Span,
        found: &'static str,
    },
}

/// Parses the `${...}` references of a decoded string. `locate` maps a byte range of the
/// decoded string to a span in its source file. All syntax errors are returned.
pub fn parse_template(
    text: &str,
    whole: &Span,
    locate: &dyn Fn(Range<usize>) -> Span,
) -> Result<Template, Vec<Diagnostic>> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut diags = Vec::new();
    let mut rest = 0;
    while let Some(found) = text[rest..].find('$') {
        let at = rest + found;
        let after = &text[at..];
        if after.starts_with("$${") {
            literal.push_str(&text[rest..at]);
            literal.push_str("${");
            rest = at + 3;
            continue;
        }
        if !after.starts_with("${") {
            literal.push_str(&text[rest..=at]);
            rest = at + 1;
            continue;
        }
        literal.push_str(&text[rest..at]);
        let Some(close) = after.find('}') else {
            diags.push(
                Diagnostic::new(
                    DiagnosticKind::ReferenceSyntax,
                    format!("unterminated reference `{}`", truncate(after, 40)),
                )
                .label(locate(at..text.len()), "this `${` is never closed")
                .help("close the reference with `}`, or write `$${` for a literal `${`"),
            );
            rest = text.len();
            break;
        };
        let end = at + close + 1;
        let inner = &text[at + 2..at + close];
        match parse_reference(inner) {
            Ok(reference) => {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Ref(RefUse {
                    reference,
                    span: locate(at..end),
                }));
            }
            Err((message, help)) => diags.push(
                Diagnostic::new(
                    DiagnosticKind::ReferenceSyntax,
                    format!("invalid reference `{}`: {message}", &text[at..end]),
                )
                .label(locate(at..end), message)
                .help(help),
            ),
        }
        rest = end;
    }
    literal.push_str(&text[rest..]);
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    if diags.is_empty() {
        Ok(Template {
            parts,
            span: whole.clone(),
        })
    } else {
        Err(diags)
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

const FORMS: &str = "references look like ${var.NAME} or ${TYPE.NAME.ATTRIBUTE}, \
                     e.g. ${read.trust_anchor.value}";

fn parse_reference(inner: &str) -> Result<Reference, (String, String)> {
    let inner = inner.trim();
    if inner.is_empty() {
        return Err(("empty reference".into(), FORMS.into()));
    }
    let segments: Vec<&str> = inner.split('.').collect();
    if let Some(bad) = segments
        .iter()
        .find(|s| !crate::planfile::syntax::is_identifier(s))
    {
        let what = if bad.is_empty() {
            "an empty name".to_string()
        } else {
            format!("`{bad}` is not a valid name")
        };
        return Err((
            format!("{what} in the reference"),
            format!("names are letters, digits, `_` and `-`; {FORMS}"),
        ));
    }
    let root = segments[0];
    if root == "var" {
        return match segments.as_slice() {
            [_] => Err((
                "missing the variable name".into(),
                "write ${var.NAME}".into(),
            )),
            [_, name, path @ ..] => Ok(Reference::Var {
                name: name.to_string(),
                path: path.iter().map(|s| s.to_string()).collect(),
            }),
            [] => Err(("empty reference".into(), FORMS.into())),
        };
    }
    if let Some(kind) = NodeKind::parse(root) {
        return match segments.as_slice() {
            [_, name, attribute] => Ok(Reference::Node {
                address: Address::new(kind, *name),
                attribute: attribute.to_string(),
            }),
            [_] | [_, _] => Err((
                "missing the node name or attribute".into(),
                format!(
                    "write ${{{root}.NAME.ATTRIBUTE}}; attributes of {root} nodes: {}",
                    kind.attributes().join(", ")
                ),
            )),
            _ => Err((
                "too many parts".into(),
                format!(
                    "a node reference has three parts: ${{{root}.NAME.ATTRIBUTE}}; attributes of \
                     {root} nodes: {}",
                    kind.attributes().join(", ")
                ),
            )),
        };
    }
    let mut roots = vec!["var"];
    roots.extend(NodeKind::ALL.iter().map(|k| k.as_str()));
    let help = match did_you_mean(root, roots) {
        Some(s) => format!("did you mean `{s}`? {FORMS}"),
        None => FORMS.to_string(),
    };
    Err((format!("unknown reference root `{root}`"), help))
}

/// Maps a range of a decoded string value to its source: the same text is looked up in the raw
/// source slice (same occurrence); if it cannot be found (escapes), the whole value is used.
pub fn locate_in_raw(
    raw: &str,
    raw_start: usize,
    decoded: &str,
    range: Range<usize>,
    whole: &Span,
) -> Span {
    let Some(needle) = decoded.get(range.clone()) else {
        return whole.clone();
    };
    if needle.is_empty() {
        return whole.clone();
    }
    let nth = decoded[..range.start].match_indices(needle).count();
    match raw.match_indices(needle).nth(nth) {
        Some((i, _)) => Span::new(whole.file, raw_start + i..raw_start + i + needle.len()),
        None => whole.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planfile::FileId;

    fn parse(text: &str) -> Result<Template, Vec<Diagnostic>> {
        let whole = Span::new(FileId(0), 0..text.len());
        parse_template(text, &whole, &|r| Span::new(FileId(0), r))
    }

    struct Vars;
    impl Scope for Vars {
        fn lookup(&self, reference: &Reference) -> Lookup {
            match reference.to_string().as_str() {
                "var.version" => Lookup::Known("1.2.3".into()),
                "var.replicas" => Lookup::Known(3.into()),
                "var.table" => Lookup::Known(serde_json::json!({"a": 1})),
                "read.ca.value" => Lookup::Unknown,
                _ => Lookup::Missing,
            }
        }
    }

    #[test]
    fn literal_and_references_with_positions() {
        let t = parse("v${var.version}-${ read.ca.value }").unwrap();
        let refs: Vec<_> = t
            .references()
            .map(|r| (r.reference.to_string(), r.span.range.clone()))
            .collect();
        assert_eq!(
            refs,
            [
                ("var.version".to_string(), 1..15),
                ("read.ca.value".to_string(), 16..34)
            ]
        );
        assert_eq!(t.to_string(), "v${var.version}-${read.ca.value}");
    }

    #[test]
    fn escapes_are_literal() {
        let t = parse("a $${x} $5 $").unwrap();
        assert_eq!(t.as_literal().as_deref(), Some("a ${x} $5 $"));
    }

    #[test]
    fn evaluation_keeps_type_of_a_lone_reference() {
        assert_eq!(
            parse("${var.replicas}").unwrap().evaluate(&Vars),
            Ok(3.into())
        );
        assert_eq!(
            parse("n=${var.replicas}").unwrap().evaluate(&Vars),
            Ok("n=3".into())
        );
        assert!(matches!(
            parse("${read.ca.value}").unwrap().evaluate(&Vars),
            Err(EvalError::Unknown { .. })
        ));
        assert!(matches!(
            parse("x${var.table}").unwrap().evaluate(&Vars),
            Err(EvalError::NotAScalar { .. })
        ));
    }

    #[test]
    fn syntax_errors() {
        for (text, expect) in [
            ("${var.x", "unterminated"),
            ("${}", "empty reference"),
            ("${vra.x}", "did you mean `var`?"),
            ("${helm.x}", "missing the node name or attribute"),
            ("${read.a.value.b}", "too many parts"),
            ("${var}", "missing the variable name"),
            ("${var..x}", "empty name"),
        ] {
            let diags = parse(text).unwrap_err();
            let all = format!("{} {:?}", diags[0].message, diags[0].help);
            assert!(all.contains(expect), "{text}: {all}");
        }
    }

    #[test]
    fn locate_maps_through_quotes() {
        let whole = Span::new(FileId(0), 10..25);
        let raw = "\"a ${var.x} b\"";
        let s = locate_in_raw(raw, 10, "a ${var.x} b", 2..10, &whole);
        assert_eq!(s.range, 13..21);
    }
}
