//! Stage 1, the plan file: TOML text → [`RawPlan`] (raw syntax with a span on every key and
//! value), YAML text → [`RawValue`] documents, and the diagnostics machinery every later
//! stage uses to report problems at a file, line and column.
//!
//! 1. [`source`]: the files that were read ([`SourceMap`]) and byte spans into them.
//! 2. [`parse`]: the TOML document → sections `[plan]`, `[vars]`, `[repos]` and nodes
//!    `[TYPE.NAME]`; unknown node types and unknown fields are reported here.
//! 3. [`yaml`]: multi-document YAML with spans (manifest files, values files, inline YAML).
//! 4. [`diagnostic`]: [`Diagnostic`] / [`Diagnostics`], rendered with miette snippets.
//! 5. [`shape`]: the plan file's tables and fields declared once; the parser checks names
//!    against it and the JSON Schema of the plan file is generated from it.
//!
//! Nothing here reads files: callers hand in the text (see `crate::load`).

pub mod diagnostic;
pub mod parse;
pub mod shape;
pub mod source;
pub mod syntax;
pub mod yaml;

pub use diagnostic::{Diagnostic, DiagnosticKind, Diagnostics, RenderOptions, did_you_mean};
pub use parse::{parse_plan, parse_toml};
pub use source::{FileId, SourceFile, SourceMap, Span};
pub use syntax::{NodeKind, RawEntry, RawKind, RawNode, RawPlan, RawSection, RawTable, RawValue};
pub use yaml::{document_pieces, parse_yaml};
