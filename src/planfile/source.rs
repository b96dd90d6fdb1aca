//! Source files and spans: every position meshplan reports is a byte range in one of the
//! files of a [`SourceMap`] (the plan, its manifest files, its values files, its var files).

use std::ops::Range;
use std::sync::Arc;

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub usize);

/// A byte range in one source file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: FileId,
    pub range: Range<usize>,
}

impl Span {
    pub fn new(file: FileId, range: Range<usize>) -> Self {
        Self { file, range }
    }

    /// Sort key: file, then start, then end.
    pub fn key(&self) -> (FileId, usize, usize) {
        (self.file, self.range.start, self.range.end)
    }

    /// A zero-width span at the start of a file (used when nothing better is known).
    pub fn file_start(file: FileId) -> Self {
        Self { file, range: 0..0 }
    }
}

/// One loaded text file: the name it is shown under (as the user wrote the path) and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<str>,
}

/// Every file read while loading a plan, in the order it was read.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<Arc<str>>) -> FileId {
        self.files.push(SourceFile {
            name: name.into(),
            text: text.into(),
        });
        FileId(self.files.len() - 1)
    }

    pub fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0)
    }

    pub fn text(&self, id: FileId) -> &str {
        self.files.get(id.0).map(|f| &*f.text).unwrap_or("")
    }

    pub fn name(&self, id: FileId) -> &str {
        self.files
            .get(id.0)
            .map(|f| f.name.as_str())
            .unwrap_or("<unknown>")
    }

    /// The source text under a span, or "" when the span does not fit the file.
    pub fn slice(&self, span: &Span) -> &str {
        self.text(span.file).get(span.range.clone()).unwrap_or("")
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, file: FileId, offset: usize) -> (usize, usize) {
        line_col(self.text(file), offset)
    }
}

/// 1-based line and column (in characters) of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Byte offset of a 1-based line and column (in characters), clamped to the text.
pub fn offset_of(text: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for _ in 1..line.max(1) {
        match text[offset..].find('\n') {
            Some(i) => offset += i + 1,
            None => return text.len(),
        }
    }
    let rest = &text[offset..];
    let line_end = rest.find('\n').unwrap_or(rest.len());
    let within = rest[..line_end]
        .char_indices()
        .nth(col.saturating_sub(1))
        .map(|(i, _)| i)
        .unwrap_or(line_end);
    offset + within
}

/// The largest char boundary at or before `index`.
pub fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut i = index.min(text.len());
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_chars() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
        assert_eq!(line_col(text, 100), (3, 2));
    }

    #[test]
    fn offset_of_inverts_line_col() {
        let text = "ab\ncdé\nf";
        for offset in [0, 1, 3, 4, 5, 7, 8] {
            let (l, c) = line_col(text, offset);
            assert_eq!(offset_of(text, l, c), offset);
        }
        assert_eq!(offset_of(text, 9, 1), text.len());
    }
}
