//! Raw syntax of a plan file: what the TOML says, with a span on every key and value, before
//! any meaning is given to it. YAML manifest files are read into the same [`RawValue`] tree.

use std::fmt;

use super::source::{FileId, Span};

/// A value with its span (TOML or YAML).
#[derive(Debug, Clone, PartialEq)]
pub struct RawValue {
    pub span: Span,
    pub kind: RawKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RawKind {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(String),
    /// A TOML date/time, kept as written.
    Datetime(String),
    Array(Vec<RawValue>),
    Table(RawTable),
}

/// A table (TOML table or YAML mapping) in source order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawTable {
    pub entries: Vec<RawEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawEntry {
    pub key: String,
    pub key_span: Span,
    pub value: RawValue,
}

impl RawTable {
    pub fn get(&self, key: &str) -> Option<&RawEntry> {
        self.entries.iter().find(|e| e.key == key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }
}

impl RawValue {
    /// The name of the value's type, as used in messages ("a string", "a table", ...).
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            RawKind::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_table(&self) -> Option<&RawTable> {
        match &self.kind {
            RawKind::Table(t) => Some(t),
            _ => None,
        }
    }
}

impl RawKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            RawKind::Null => "null",
            RawKind::Bool(_) => "a boolean",
            RawKind::Integer(_) => "an integer",
            RawKind::Float(_) => "a float",
            RawKind::String(_) => "a string",
            RawKind::Datetime(_) => "a date-time",
            RawKind::Array(_) => "an array",
            RawKind::Table(_) => "a table",
        }
    }
}

/// The four node types. Ordered alphabetically so that address order is string order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    Check,
    Helm,
    Manifest,
    Read,
}

impl NodeKind {
    pub const ALL: [NodeKind; 4] = [Self::Check, Self::Helm, Self::Manifest, Self::Read];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Helm => "helm",
            Self::Manifest => "manifest",
            Self::Read => "read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The node type's own fields and rules (the fields every type accepts are
    /// [`shape::COMMON`](super::shape::COMMON)).
    pub fn shape(self) -> &'static super::shape::Table {
        use super::shape;
        match self {
            Self::Manifest => &shape::MANIFEST,
            Self::Helm => &shape::HELM,
            Self::Read => &shape::READ,
            Self::Check => &shape::CHECK,
        }
    }

    /// Every field this node type accepts: the common ones, then its own.
    pub fn fields(self) -> Vec<&'static str> {
        super::shape::COMMON
            .iter()
            .chain(self.shape().fields)
            .map(|f| f.name)
            .collect()
    }

    /// Attributes other nodes can reference as `${TYPE.NAME.attr}`.
    pub fn attributes(self) -> &'static [&'static str] {
        match self {
            Self::Manifest => &["namespace"],
            Self::Helm => &["chart", "namespace", "release", "version"],
            Self::Read => &["api_version", "kind", "name", "namespace", "value"],
            Self::Check => &["api_version", "condition", "kind", "name", "namespace"],
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parsed plan file, checked for shape only (tables, known fields, node types, names).
#[derive(Debug, Clone, PartialEq)]
pub struct RawPlan {
    pub file: FileId,
    /// The `[plan]` table, if present.
    pub plan: Option<RawSection>,
    /// The `[vars]` table, if present.
    pub vars: Option<RawSection>,
    /// The `[repos]` table, if present.
    pub repos: Option<RawSection>,
    /// The `[state]` table (where the plan's state lives), if present.
    pub state: Option<RawSection>,
    /// Every `[TYPE.NAME]` table, sorted by address.
    pub nodes: Vec<RawNode>,
    /// The plan-wide ignore rules (`[[ignore]]`): an array of tables (or one table), checked
    /// by the model.
    pub ignore: Option<RawValue>,
}

/// A top-level table such as `[plan]` or `[vars]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSection {
    /// The span of the table's header (or key).
    pub span: Span,
    pub table: RawTable,
}

/// One `[TYPE.NAME]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct RawNode {
    pub kind: NodeKind,
    pub name: String,
    /// The span of the node's name in its header.
    pub name_span: Span,
    /// The span of the header (or inline table).
    pub span: Span,
    /// The node's fields; only names valid for the node type are kept.
    pub body: RawTable,
}

impl RawNode {
    pub fn field(&self, name: &str) -> Option<&RawEntry> {
        self.body.get(name)
    }
}

/// Whether `name` is a valid node, var or repo name: a letter or `_`, then letters, digits,
/// `_` or `-`.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_identifier("cert_manager"));
        assert!(is_identifier("linkerd-viz"));
        assert!(!is_identifier("9lives"));
        assert!(!is_identifier("a.b"));
        assert!(!is_identifier(""));
    }

    #[test]
    fn kinds_round_trip_and_sort_like_strings() {
        for kind in NodeKind::ALL {
            assert_eq!(NodeKind::parse(kind.as_str()), Some(kind));
        }
        let mut names: Vec<_> = NodeKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["check", "helm", "manifest", "read"]);
    }
}
