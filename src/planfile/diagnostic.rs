//! Plan diagnostics: every problem found while loading a plan, with the spans it is about,
//! collected (never one per run) and rendered with source snippets through miette.
//!
//! A [`Diagnostic`] is plain data (a kind, a message, labelled spans, a help text); the
//! collection [`Diagnostics`] carries the [`SourceMap`] so it can render itself. Labels in a
//! file other than the primary one are rendered as related notes with their own snippet.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};

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
    pub fn new(kind: DiagnosticKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    /// Adds a label (the first one added is the primary location).
    pub fn label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            text: text.into(),
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
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

/// A miette-renderable copy of one diagnostic.
#[derive(Debug)]
struct MietteDiagnostic {
    /// None for related notes (rendered as advice, without a code).
    code: Option<&'static str>,
    message: String,
    source: Option<NamedSource<std::sync::Arc<str>>>,
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
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
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
        let end = super::source::floor_char_boundary(text, label.span.range.end).max(start);
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

fn named_source(
    sources: &SourceMap,
    file: super::source::FileId,
) -> NamedSource<std::sync::Arc<str>> {
    let text = sources
        .get(file)
        .map(|f| f.text.clone())
        .unwrap_or_else(|| std::sync::Arc::from(""));
    NamedSource::new(sources.name(file), text)
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
