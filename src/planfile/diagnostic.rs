//! Plan diagnostics: every problem found while loading a plan, with the spans it is about,
//! collected (never one per run) and rendered with source snippets through miette.
//!
//! A [`Diagnostic`] is plain data (a kind, a message, labelled spans, a help text); the
//! collection [`Diagnostics`] carries the [`SourceMap`] so it can render itself. Labels in a
//! file other than the primary one are rendered as related notes with their own snippet.

use std::fmt;

use std::borrow::Cow;

use meshplan_k8s::text::{ECHO_LIMIT, clip};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents,
    SourceCode, SourceSpan, SpanContents,
};

use super::source::{SourceMap, Span};

/// What went wrong, as a closed set; `code()` is the stable identifier shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DiagnosticKind {
    Io,
    TomlSyntax,
    YamlSyntax,
    UnknownField,
    UnknownNodeType,
    MissingField,
    WrongType,
    InvalidValue,
    ConflictingFields,
    DuplicateName,
    UndefinedVar,
    UndefinedNode,
    UnknownAttribute,
    ReferenceSyntax,
    DisabledNode,
    UndefinedRepo,
    BadVarArgument,
    UndeclaredVar,
    BadManifest,
    Cycle,
    UnknownCheck,
}

impl DiagnosticKind {
    /// Stable identifier, shown in brackets after the message.
    pub fn code(self) -> &'static str {
        match self {
            Self::Io => "plan::io",
            Self::TomlSyntax => "plan::toml_syntax",
            Self::YamlSyntax => "plan::yaml_syntax",
            Self::UnknownField => "plan::unknown_field",
            Self::UnknownNodeType => "plan::unknown_node_type",
            Self::MissingField => "plan::missing_field",
            Self::WrongType => "plan::wrong_type",
            Self::InvalidValue => "plan::invalid_value",
            Self::ConflictingFields => "plan::conflicting_fields",
            Self::DuplicateName => "plan::duplicate_name",
            Self::UndefinedVar => "plan::undefined_var",
            Self::UndefinedNode => "plan::undefined_node",
            Self::UnknownAttribute => "plan::unknown_attribute",
            Self::ReferenceSyntax => "plan::reference_syntax",
            Self::DisabledNode => "plan::disabled_node",
            Self::UndefinedRepo => "plan::undefined_repo",
            Self::BadVarArgument => "plan::bad_var_argument",
            Self::UndeclaredVar => "plan::undeclared_var",
            Self::BadManifest => "plan::bad_manifest",
            Self::Cycle => "plan::cycle",
            Self::UnknownCheck => "plan::unknown_check",
        }
    }
}

/// A labelled span: the first label of a diagnostic is its primary location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

/// One problem of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub kind: DiagnosticKind,
    pub message: String,
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic; values quoted in `message` are clipped (see [`clip_echoes`]).
    pub fn new(kind: DiagnosticKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: clip_echoes(message.into()),
            labels: Vec::new(),
            help: None,
        }
    }

    /// Adds a label (the first one added is the primary location).
    pub fn label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            text: clip_echoes(text.into()),
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(clip_echoes(help.into()));
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help.map(clip_echoes);
        self
    }

    /// The primary span, if the diagnostic has one.
    pub fn primary(&self) -> Option<&Span> {
        self.labels.first().map(|l| &l.span)
    }
}

/// All problems of a plan, with the sources they point into. Sorted by file, then position.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
    pub sources: SourceMap,
}

/// How to render diagnostics.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    pub width: usize,
    pub color: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            width: 100,
            color: false,
        }
    }
}

impl Diagnostics {
    pub fn new(mut items: Vec<Diagnostic>, sources: SourceMap) -> Self {
        sort_diagnostics(&mut items);
        items.dedup();
        Self { items, sources }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Renders every diagnostic with snippets, then a one-line summary.
    pub fn render(&self, options: RenderOptions) -> String {
        let theme = if options.color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(options.width)
            .with_links(false)
            .with_show_related_as_nested(true);
        let mut out = String::new();
        for diag in &self.items {
            let report = to_miette(diag, &self.sources);
            if handler.render_report(&mut out, &report).is_err() {
                out.push_str(&format!("error: {}\n", diag.message));
            }
            out.push('\n');
        }
        let n = self.items.len();
        out.push_str(&format!(
            "error: {n} problem{} found; nothing was changed\n",
            if n == 1 { "" } else { "s" }
        ));
        out
    }

    /// The diagnostics as one miette report (for callers that return `miette::Result`): a
    /// summary with every diagnostic related to it.
    pub fn to_report(&self) -> miette::Report {
        let n = self.items.len();
        miette::Report::new(MietteDiagnostic {
            code: Some("plan::invalid"),
            message: format!("the plan has {n} problem{}", if n == 1 { "" } else { "s" }),
            source: None,
            labels: Vec::new(),
            help: None,
            related: self
                .items
                .iter()
                .map(|d| to_miette(d, &self.sources))
                .collect(),
        })
    }

    /// One line per diagnostic: `file:line:col: code: message` (for logs and tests).
    pub fn render_short(&self) -> String {
        let mut out = String::new();
        for diag in &self.items {
            match diag.primary() {
                Some(span) => {
                    let (line, col) = self.sources.line_col(span.file, span.range.start);
                    out.push_str(&format!(
                        "{}:{line}:{col}: {}: {}\n",
                        self.sources.name(span.file),
                        diag.kind.code(),
                        diag.message
                    ));
                }
                None => out.push_str(&format!("{}: {}\n", diag.kind.code(), diag.message)),
            }
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_short())
    }
}

impl std::error::Error for Diagnostics {}

/// Sorts by primary file and offset; diagnostics without a span come first.
pub fn sort_diagnostics(items: &mut [Diagnostic]) {
    items.sort_by(|a, b| {
        let ka = a.primary().map(Span::key);
        let kb = b.primary().map(Span::key);
        ka.cmp(&kb).then_with(|| a.message.cmp(&b.message))
    });
}

/// The closest candidate to `name` (Jaro-Winkler ≥ 0.8 or a small edit distance), if any.
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        if candidate == name {
            continue;
        }
        let score = strsim::jaro_winkler(name, candidate);
        let close = score >= 0.8 || strsim::levenshtein(name, candidate) <= 2;
        if close && best.is_none_or(|(s, c)| score > s || (score == s && candidate < c)) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// The longest message text kept whole: beyond it the text itself is clipped, whatever it
/// quotes.
const MESSAGE_LIMIT: usize = 4 * ECHO_LIMIT;

/// A message with every quoted value (between backticks) longer than [`ECHO_LIMIT`] clipped
/// by the shared [`clip`], so that a mistake about a 1 MB value does not print the value; a
/// message still longer than [`MESSAGE_LIMIT`] (a value quoted without backticks) is clipped
/// as a whole.
pub fn clip_echoes(message: String) -> String {
    if message.len() <= ECHO_LIMIT {
        return message;
    }
    let mut out = String::new();
    let mut rest = message.as_str();
    while let Some(open) = rest.find('`') {
        let Some(close) = rest[open + 1..].find('`') else {
            break;
        };
        let quoted = &rest[open + 1..open + 1 + close];
        out.push_str(&rest[..=open]);
        out.push_str(&clip(quoted, ECHO_LIMIT));
        out.push('`');
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    match clip(&out, MESSAGE_LIMIT) {
        Cow::Borrowed(_) => out,
        Cow::Owned(clipped) => clipped,
    }
}

/// A source file as snippets show it: a snippet longer than [`SNIPPET_LIMIT`] (a line of a
/// megabyte, a label over a whole large document) is cut to a window around its label, with
/// the line and column of the window's start, so the file:line:col stays right.
#[derive(Debug)]
struct ClippedSource {
    name: String,
    text: std::sync::Arc<str>,
}

/// The most bytes of source a snippet shows.
const SNIPPET_LIMIT: usize = 2048;

/// How much of a long line a snippet shows before its label, and after it.
const WINDOW_BEFORE: usize = 80;
const WINDOW_AFTER: usize = 40;

impl SourceCode for ClippedSource {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let text: &'a str = &self.text;
        let full = text
            .as_bytes()
            .read_span(span, context_lines_before, context_lines_after)?;
        let (start, len) = (full.span().offset(), full.data().len());
        if len <= SNIPPET_LIMIT {
            return Ok(Box::new(MietteSpanContents::new_named(
                self.name.clone(),
                full.data(),
                *full.span(),
                full.line(),
                full.column(),
                full.line_count(),
            )));
        }
        let end = start + len;
        let at = span.offset().clamp(start, end);
        // From the start of the label's line, or a little before the label on a long line.
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1).max(start);
        // (Without context lines, the contents start at the label: their line and column are
        // the label's, which the snippet's header shows.)
        let lo = if context_lines_before == 0 {
            at
        } else if at - line_start <= WINDOW_BEFORE {
            line_start
        } else {
            super::source::floor_char_boundary(text, at - WINDOW_BEFORE)
        };
        // To the last line end within the limit, else (the label's line goes on) a little
        // after the label.
        let limit = super::source::floor_char_boundary(text, (lo + SNIPPET_LIMIT).min(end));
        let hi = match text[lo..limit].rfind('\n') {
            Some(i) if lo + i >= at => lo + i,
            _ => super::source::floor_char_boundary(
                text,
                (at + span.len().min(ECHO_LIMIT) + WINDOW_AFTER).min(limit),
            ),
        };
        let line = text[..lo].bytes().filter(|&b| b == b'\n').count();
        let column = lo - text[..lo].rfind('\n').map_or(0, |i| i + 1);
        let line_count = text[lo..hi].bytes().filter(|&b| b == b'\n').count() + 1;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            &text.as_bytes()[lo..hi],
            (lo, hi - lo).into(),
            line,
            column,
            line_count,
        )))
    }
}

/// A miette-renderable copy of one diagnostic.
#[derive(Debug)]
struct MietteDiagnostic {
    /// None for related notes (rendered as advice, without a code).
    code: Option<&'static str>,
    message: String,
    source: Option<ClippedSource>,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
    related: Vec<MietteDiagnostic>,
}

impl fmt::Display for MietteDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MietteDiagnostic {}

impl miette::Diagnostic for MietteDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code.map(|c| Box::new(c) as Box<dyn fmt::Display + 'a>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(if self.code.is_some() {
            miette::Severity::Error
        } else {
            miette::Severity::Advice
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.as_str()) as Box<dyn fmt::Display + 'a>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(
                self.related.iter().map(|d| d as &dyn miette::Diagnostic),
            ))
        }
    }
}

fn to_miette(diag: &Diagnostic, sources: &SourceMap) -> MietteDiagnostic {
    let primary_file = diag.primary().map(|s| s.file);
    let mut labels = Vec::new();
    let mut related = Vec::new();
    for (i, label) in diag.labels.iter().enumerate() {
        let text = sources.text(label.span.file);
        let start = super::source::floor_char_boundary(text, label.span.range.start);
        let mut end = super::source::floor_char_boundary(text, label.span.range.end).max(start);
        // A label over more than a snippet shows (a 1 MB string) is cut to its first line,
        // at most an echo long.
        if end - start > SNIPPET_LIMIT {
            let first_line = text[start..end].find('\n').map_or(end, |i| start + i);
            end = super::source::floor_char_boundary(text, first_line.min(start + ECHO_LIMIT));
        }
        let span = (start, end - start);
        if Some(label.span.file) == primary_file {
            let text = (!label.text.is_empty()).then(|| label.text.clone());
            labels.push(if i == 0 {
                LabeledSpan::new_primary_with_span(text, span)
            } else {
                LabeledSpan::new_with_span(text, span)
            });
        } else {
            related.push(MietteDiagnostic {
                code: None,
                message: label.text.clone(),
                source: Some(named_source(sources, label.span.file)),
                labels: vec![LabeledSpan::new_primary_with_span(None, span)],
                help: None,
                related: Vec::new(),
            });
        }
    }
    MietteDiagnostic {
        code: Some(diag.kind.code()),
        message: diag.message.clone(),
        source: primary_file.map(|f| named_source(sources, f)),
        labels,
        help: diag.help.clone(),
        related,
    }
}

fn named_source(sources: &SourceMap, file: super::source::FileId) -> ClippedSource {
    let text = sources
        .get(file)
        .map(|f| f.text.clone())
        .unwrap_or_else(|| std::sync::Arc::from(""));
    ClippedSource {
        name: sources.name(file).to_owned(),
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_near_misses_only() {
        let fields = ["depends_on", "namespace", "timeout"];
        assert_eq!(did_you_mean("depend_on", fields), Some("depends_on".into()));
        assert_eq!(did_you_mean("namespcae", fields), Some("namespace".into()));
        assert_eq!(did_you_mean("zzz", fields), None);
    }

    #[test]
    fn quoted_values_are_clipped_and_the_rest_kept() {
        assert_eq!(
            clip_echoes("unknown field `nmae`".into()),
            "unknown field `nmae`"
        );
        let long = "x".repeat(10_000);
        let clipped = clip_echoes(format!("invalid name `{long}`: use lower case"));
        assert_eq!(
            clipped,
            format!(
                "invalid name `{}... (9800 more bytes)`: use lower case",
                &long[..200]
            )
        );
        // Unquoted, the message itself is clipped.
        let clipped = clip_echoes(format!("--var a={long}"));
        assert!(clipped.len() < 1000, "{clipped}");
        assert!(clipped.ends_with("more bytes)"), "{clipped}");
    }

    #[test]
    fn a_label_deep_in_a_megabyte_line_shows_a_window_with_its_own_column() {
        let mut sources = SourceMap::new();
        let line = format!(
            "[plan]\nname = \"{}!{}\"\n",
            "a".repeat(500_000),
            "b".repeat(500_000)
        );
        let at = line.find('!').unwrap();
        let f = sources.add("plan.toml", line.as_str());
        let d = Diagnostic::new(DiagnosticKind::InvalidValue, "invalid plan name")
            .label(Span::new(f, at..at + 1), "not allowed here");
        let text = Diagnostics::new(vec![d], sources).render(RenderOptions::default());
        assert!(text.len() < 2000, "{} bytes", text.len());
        assert!(
            text.contains(&format!("plan.toml:2:{}", at - 7 + 1)),
            "{text}"
        );
        assert!(text.contains("aaaa!bbbb"), "{text}");
        assert!(text.contains("not allowed here"), "{text}");
    }

    #[test]
    fn render_names_file_line_and_column() {
        let mut sources = SourceMap::new();
        let f = sources.add("plan.toml", "[plan]\nnmae = \"x\"\n");
        let d = Diagnostic::new(
            DiagnosticKind::UnknownField,
            "unknown field `nmae` in [plan]",
        )
        .label(Span::new(f, 7..11), "not a field of [plan]")
        .help("did you mean `name`?");
        let all = Diagnostics::new(vec![d], sources);
        let text = all.render(RenderOptions::default());
        assert!(text.contains("plan.toml:2:1"), "{text}");
        assert!(text.contains("did you mean `name`?"), "{text}");
        assert_eq!(
            all.render_short(),
            "plan.toml:2:1: plan::unknown_field: unknown field `nmae` in [plan]\n"
        );
        let report = all.to_report();
        assert_eq!(report.to_string(), "the plan has 1 problem");
        let related: Vec<String> = report
            .related()
            .into_iter()
            .flatten()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(related, ["unknown field `nmae` in [plan]"]);
    }
}
