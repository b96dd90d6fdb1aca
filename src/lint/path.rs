//! Field paths inside objects and values: `spec.endpoints[0].interval`, as the API server
//! words them, and the span of such a path in what the plan's files wrote.

use std::fmt::Write as _;

use crate::planfile::{RawKind, RawValue, Span};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// `a.b[0].c` → keys and indexes. Keys may contain any character but `.` and `[`.
pub fn parse(text: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in text.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Seg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else {
                    break;
                };
                match stripped[..end].parse::<usize>() {
                    Ok(n) => out.push(Seg::Index(n)),
                    Err(_) => out.push(Seg::Key(stripped[..end].to_string())),
                }
                rest = &stripped[end + 1..];
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

/// The dotted form: `spec.endpoints[0].interval`.
pub fn text(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

/// Keys only (`["spec", "endpoints", "interval"]`), for schema lookups.
pub fn keys(path: &[Seg]) -> Vec<&str> {
    path.iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect()
}

/// The span of the deepest part of `path` that `raw` writes: the key of a table entry, the
/// item of an array; the whole value when even the first step is missing.
pub fn raw_span(raw: &RawValue, path: &[Seg]) -> Span {
    let mut span = raw.span.clone();
    let mut cur = raw;
    for seg in path {
        match (seg, &cur.kind) {
            (Seg::Key(k), RawKind::Table(t)) => match t.get(k) {
                Some(e) => {
                    span = e.key_span.clone();
                    cur = &e.value;
                }
                None => break,
            },
            (Seg::Index(i), RawKind::Array(items)) => match items.get(*i) {
                Some(item) => {
                    span = item.span.clone();
                    cur = item;
                }
                None => break,
            },
            _ => break,
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        let p = parse("spec.podMetricsEndpoints[0].relabelings[12].source_labels");
        assert_eq!(
            p,
            [
                Seg::Key("spec".into()),
                Seg::Key("podMetricsEndpoints".into()),
                Seg::Index(0),
                Seg::Key("relabelings".into()),
                Seg::Index(12),
                Seg::Key("source_labels".into()),
            ]
        );
        assert_eq!(
            text(&p),
            "spec.podMetricsEndpoints[0].relabelings[12].source_labels"
        );
        assert_eq!(
            keys(&p),
            [
                "spec",
                "podMetricsEndpoints",
                "relabelings",
                "source_labels"
            ]
        );
    }

    #[test]
    fn raw_span_finds_the_deepest_written_key() {
        let text = "spec:\n  items:\n    - name: a\n      port: 1\n";
        let docs = crate::planfile::parse_yaml(crate::planfile::FileId(0), text, 0).unwrap();
        let span = raw_span(&docs[0], &parse("spec.items[0].port"));
        assert_eq!(&text[span.range.clone()], "port");
        // A missing key: the deepest part that is written (the list item).
        let missing = raw_span(&docs[0], &parse("spec.items[0].nope"));
        assert!(text[missing.range.start..].starts_with("name: a"));
    }
}
