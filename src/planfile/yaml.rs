//! YAML text (manifest files, values files, inline manifests) → [`RawValue`] documents with
//! spans, so that references and mistakes inside a YAML file are reported at its own line and
//! column. Empty documents are skipped.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::diagnostic::{Diagnostic, DiagnosticKind};
use super::source::{FileId, Span, floor_char_boundary, offset_of};
use super::syntax::{RawEntry, RawKind, RawTable, RawValue};

/// A YAML node as deserialized, before spans are turned into byte ranges.
enum Node {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Integer(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Integer))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Integer))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Integer))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::String(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// Parses every document of a YAML text. `base` is added to all offsets (for YAML embedded in a
/// larger file, such as an inline manifest string whose raw text starts at `base`).
///
/// Each document is converted as soon as the parser has read it, so the parser's spanned
/// tree of one document is alive at a time, not those of all of them (a manifest file of
/// 100,000 documents held them all, then their conversion, at once).
pub fn parse_yaml(file: FileId, text: &str, base: usize) -> Result<Vec<RawValue>, Diagnostic> {
    let parsed = CONVERTING.with(|slot| {
        let previous = slot.replace(Some(Converting {
            file,
            text: text.into(),
            base,
        }));
        let parsed = serde_saphyr::from_str_multiple_with_options::<Spanned<Node>, Documents>(
            text,
            options(),
        );
        slot.replace(previous);
        parsed
    });
    match parsed {
        Ok(docs) => Ok(docs.0),
        Err(err) => {
            let plain = err.without_snippet().to_string();
            let message = match original(&err) {
                serde_saphyr::Error::Budget { breach, .. } => beyond_limits(breach),
                _ => match plain.rfind(" at line ") {
                    Some(i) => plain[..i].to_string(),
                    None => plain,
                },
            };
            let offset = err
                .location()
                .filter(|l| l.line() > 0)
                .map(|l| offset_of(text, l.line() as usize, l.column() as usize))
                .unwrap_or(0);
            let span = Span::new(file, base + offset..base + offset);
            Err(Diagnostic::new(
                DiagnosticKind::YamlSyntax,
                format!("invalid YAML: {message}"),
            )
            .label(span, message)
            .help("fix the YAML here; every document must be a valid YAML mapping"))
        }
    }
}

/// Texts up to this size may be cut into pieces ([`document_pieces`]): far below every limit
/// of the parser that counts over a whole text (comment bytes, events, nodes, scalar bytes).
const MAX_CUT_TEXT: usize = 32 << 20;

/// Pieces smaller than this are not worth a thread of their own.
const MIN_PIECE: usize = 64 << 10;

/// Where a YAML text can be cut into about `pieces` pieces that parse, each with
/// [`parse_yaml`] at its own offset, to exactly the documents of the whole text, in order and
/// with the same spans: the concatenation of the pieces' documents is the text's. None when
/// the text is small, or when a cut could change what it means or which of the parser's
/// limits it reaches:
///
/// - every cut is at the start of a line that is a document start marker (`---` at column
///   0, then a space, a tab, a line end or the end of the text): inside any scalar or
///   collection such a line is not content, so the document before it ends there;
/// - no cut in a text with directives (`%` at column 0, which belong to the document after
///   them), anchors, aliases or merge keys (`&`, `*`, `<<` anywhere: their limits count over
///   the whole text), more marker lines than the parser's document limit, or more bytes than
///   [`MAX_CUT_TEXT`].
///
/// A piece's parse error is not the text's error (the whole text may fail elsewhere, or
/// differently): when a piece fails, parse the whole text to report it.
pub fn document_pieces(text: &str, pieces: usize) -> Option<Vec<std::ops::Range<usize>>> {
    if pieces < 2 || text.len() < 2 * MIN_PIECE || text.len() > MAX_CUT_TEXT {
        return None;
    }
    if text.contains(['&', '*']) || text.contains("<<") {
        return None;
    }
    let step = (text.len() / pieces).max(MIN_PIECE);
    let mut cuts = vec![0];
    let mut markers = 0usize;
    let mut at = 0;
    while at < text.len() {
        let line = &text[at..];
        if line.starts_with('%') {
            return None;
        }
        if line.starts_with("---") || line.starts_with("...") {
            markers += 1;
            if markers >= MAX_DOCUMENTS {
                return None;
            }
        }
        let is_start_marker = line.starts_with("---")
            && matches!(
                line.as_bytes().get(3),
                None | Some(b' ' | b'\t' | b'\r' | b'\n')
            );
        if is_start_marker
            && at >= cuts.last().copied().unwrap_or(0) + step
            && text.len() - at >= MIN_PIECE
        {
            cuts.push(at);
        }
        at = match line.find('\n') {
            Some(end) => at + end + 1,
            None => text.len(),
        };
    }
    if cuts.len() < 2 {
        return None;
    }
    cuts.push(text.len());
    Some(cuts.windows(2).map(|w| w[0]..w[1]).collect())
}

/// The text being parsed on this thread, for [`Documents`] to convert each document with.
struct Converting {
    file: FileId,
    text: std::rc::Rc<str>,
    base: usize,
}

thread_local! {
    static CONVERTING: std::cell::RefCell<Option<Converting>> =
        const { std::cell::RefCell::new(None) };
}

/// The documents of a YAML text, each converted to a [`RawValue`] as the parser hands it over
/// (the parser collects documents with `Extend`, and its collection must be `Default`: the
/// text it converts against is the one [`parse_yaml`] set for this thread).
#[derive(Default)]
struct Documents(Vec<RawValue>);

impl Extend<Spanned<Node>> for Documents {
    fn extend<I: IntoIterator<Item = Spanned<Node>>>(&mut self, docs: I) {
        let Some((file, text, base)) = CONVERTING.with_borrow(|c| {
            c.as_ref()
                .map(|c| (c.file, std::rc::Rc::clone(&c.text), c.base))
        }) else {
            return;
        };
        for doc in docs {
            self.0.push(convert(file, &text, base, doc));
        }
    }
}

/// At most this many documents in one YAML text.
pub const MAX_DOCUMENTS: usize = 1_000_000;

/// The parser's limits: room for manifest files of a million documents (only the documents
/// are kept, the parser streams), while YAML that expands aliases without bound (an "alias
/// bomb") or nests without end is still refused.
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = MAX_DOCUMENTS;
    budget.max_events = 1_000_000_000;
    budget.max_nodes = 500_000_000;
    budget.max_total_scalar_bytes = 4 << 30;
    // Anchored content replayed by aliases: far more than manifests use, and an alias bomb
    // is refused after a fraction of a second.
    budget.max_recorded_anchor_events = 100_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// The error under the parser's wrappers (a snippet, the alias it came through).
fn original(mut err: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = err
    {
        err = error;
    }
    err
}

/// A plain message for a YAML text beyond the parser's limits.
fn beyond_limits(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Aliases { .. }
        | B::AliasAnchorRatio { .. }
        | B::RecordedAnchorEvents { .. }
        | B::RecordedAnchorBytes { .. }
        | B::MergeKeys { .. } => "its aliases (`*name`) repeat anchored content too many times (an alias bomb): meshplan refuses to expand it; write the content out or use fewer aliases".to_owned(),
        B::Depth { depth } => format!("it nests more than {} levels deep", depth.saturating_sub(1)),
        B::Documents { .. } => format!("it has more than {MAX_DOCUMENTS} documents; split it into several files"),
        _ => "it is larger than meshplan reads in one YAML text; split it into several files".to_owned(),
    }
}

fn location_range(text: &str, location: &serde_saphyr::Location) -> std::ops::Range<usize> {
    let span = location.span();
    match (span.byte_offset(), span.byte_len()) {
        (Some(start), Some(len)) if (start as usize) <= text.len() => {
            let start = floor_char_boundary(text, start as usize);
            let end = floor_char_boundary(text, (start + len as usize).min(text.len()));
            start..end.max(start)
        }
        _ if location.line() > 0 => {
            let start = offset_of(text, location.line() as usize, location.column() as usize);
            start..start
        }
        _ => 0..0,
    }
}

fn convert(file: FileId, text: &str, base: usize, node: Spanned<Node>) -> RawValue {
    let range = location_range(text, &node.referenced);
    let span = Span::new(file, base + range.start..base + range.end);
    let kind = match node.value {
        Node::Null => RawKind::Null,
        Node::Bool(b) => RawKind::Bool(b),
        Node::Integer(i) => RawKind::Integer(i),
        Node::Float(f) => RawKind::Float(f),
        Node::String(s) => RawKind::String(s),
        Node::Seq(items) => RawKind::Array(
            items
                .into_iter()
                .map(|i| convert(file, text, base, i))
                .collect(),
        ),
        Node::Map(entries) => RawKind::Table(RawTable {
            entries: entries
                .into_iter()
                .map(|(k, v)| {
                    let kr = location_range(text, &k.referenced);
                    RawEntry {
                        key: k.value,
                        key_span: Span::new(file, base + kr.start..base + kr.end),
                        value: convert(file, text, base, v),
                    }
                })
                .collect(),
        }),
    };
    RawValue { span, kind }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planfile::source::line_col;

    #[test]
    fn a_hundred_thousand_documents_are_read() {
        let text: String = (0..100_000)
            .map(|i| format!("---\nname: cm-{i}\n"))
            .collect();
        let docs = parse_yaml(FileId(0), &text, 0).unwrap();
        assert_eq!(docs.len(), 100_000);
    }

    #[test]
    fn an_alias_bomb_is_refused_with_a_plain_message() {
        let mut text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
        for (name, previous) in "bcdefghij".chars().zip("abcdefghi".chars()) {
            let items = vec![format!("*{previous}"); 10].join(", ");
            text.push_str(&format!("{name}: &{name} [{items}]\n"));
        }
        let d = parse_yaml(FileId(0), &text, 0).unwrap_err();
        assert!(d.message.contains("an alias bomb"), "{}", d.message);
        assert!(!d.message.contains("budget"), "{}", d.message);
    }

    #[test]
    fn documents_keep_their_spans() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"${var.ns}\"\n---\n---\nkind: B\n";
        let docs = parse_yaml(FileId(3), text, 0).unwrap();
        assert_eq!(docs.len(), 2);
        let meta = docs[0].as_table().unwrap().get("metadata").unwrap();
        let name = meta.value.as_table().unwrap().get("name").unwrap();
        assert_eq!(name.value.as_str(), Some("${var.ns}"));
        assert_eq!(&text[name.value.span.range.clone()], "\"${var.ns}\"");
        assert_eq!(line_col(text, name.key_span.range.start), (4, 3));
    }

    /// A text cut at its document markers parses, piece by piece, to the documents of the
    /// whole text with the same spans.
    #[test]
    fn pieces_parse_to_the_documents_of_the_whole_text() {
        let mut text = "# a comment before the first document\n".to_owned();
        for i in 0..4_000 {
            text.push_str(&match i % 5 {
                0 => format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  key: \"${{var.x}}\"\n"),
                1 => format!("--- \r\nkind: B\nscript: |\n  line one {i}\n  ---not a marker\n\n  last\n"),
                2 => format!("---\t# comment\nlist: [a, 'b c', {{d: {i}}}]\nfolded: >-\n  x\n  y\n...\n"),
                3 => "---\n---\n# an empty document, then one\n".to_owned(),
                _ => format!("--- {{inline: {i}, q: \"two\\\n  lines\"}}\n"),
            });
        }
        let pieces = document_pieces(&text, 3).expect("a text to cut");
        assert!(pieces.len() >= 2, "{pieces:?}");
        assert_eq!(pieces.first().map(|p| p.start), Some(0));
        assert_eq!(pieces.last().map(|p| p.end), Some(text.len()));
        let whole = parse_yaml(FileId(1), &text, 7).unwrap();
        let cut: Vec<RawValue> = pieces
            .iter()
            .flat_map(|p| parse_yaml(FileId(1), &text[p.clone()], 7 + p.start).unwrap())
            .collect();
        assert_eq!(cut.len(), whole.len());
        assert!(cut == whole);
    }

    #[test]
    fn texts_whose_meaning_or_limits_span_documents_are_not_cut() {
        let docs: String = (0..20_000)
            .map(|i| format!("---\nname: cm-{i}\n"))
            .collect();
        assert!(document_pieces(&docs, 2).is_some());
        assert!(document_pieces(&docs, 1).is_none());
        assert!(document_pieces("---\na: 1\n---\nb: 2\n", 2).is_none());
        for spoiler in ["a: &x 1\n", "b: *x\n", "<<: {c: 1}\n", "%YAML 1.2\n"] {
            let text = format!("{docs}{spoiler}{docs}");
            assert!(document_pieces(&text, 2).is_none(), "{spoiler}");
        }
        // Markers indented or followed by text are not cuts.
        let text: String = (0..20_000).map(|i| format!(" ---\n---x: {i}\n")).collect();
        assert!(document_pieces(&text, 2).is_none());
    }

    #[test]
    fn errors_have_their_own_line_and_column() {
        let text = "a: 1\nb: [1, 2\nc: 3\n";
        let err = parse_yaml(FileId(0), text, 0).unwrap_err();
        let span = err.primary().unwrap();
        assert_eq!(line_col(text, span.range.start), (3, 2));
        assert!(!err.message.contains("at line"), "{}", err.message);
    }
}
