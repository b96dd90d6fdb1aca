//! RawPlan → [`Plan`]: typed fields, vars with overrides, manifest and values files parsed,
//! every `${...}` reference checked. All problems are collected; the plan is returned only
//! when there are none.
//!
//! 1. vars (declared defaults, then var files, then `--var`), repos;
//! 2. `enabled` of every node (vars only), so references to disabled nodes can be reported;
//! 3. node fields by type; strings become templates (references parsed with positions);
//! 4. references and `depends_on` targets checked (did-you-mean for near misses);
//! 5. objects declared twice across manifests.
//!
//! Pure: manifest, values and var files are read by the caller and handed in as sources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::planfile::{
    Diagnostic, DiagnosticKind, FileId, RawEntry, RawKind, RawNode, RawPlan, RawTable, RawValue,
    SourceMap, Span, did_you_mean, document_pieces, parse_toml, parse_yaml,
};

use super::address::{Address, NodeKind};
use super::duration::parse_duration;
use super::plan::{
    Chart, Check, Dependency, Helm, Manifest, ManifestObject, ManifestSource, Node, NodeSpec, Plan,
    RawObject, Read, ReadSelect, Repo, StateBackend, StateSettings, Suppression, Value, ValuesFile,
    Var, VarOrigin, Wait,
};
use super::template::{Part, Reference, Template, locate_in_raw, parse_template};
use crate::model::lint_checks::CheckId;

/// A file the plan refers to (`file`, `values_files`), as read by the caller.
#[derive(Debug, Clone)]
pub enum LoadedFile {
    Loaded(FileId),
    /// The read failed; the text says why.
    Failed(String),
}

/// Everything besides the plan file that the model needs.
#[derive(Debug, Clone, Default)]
pub struct BuildInput {
    /// Directory the plan's relative paths are resolved against.
    pub base_dir: PathBuf,
    /// Referenced files, keyed by the path as written in the plan.
    pub files: BTreeMap<String, LoadedFile>,
    /// Var files (already in the source map), in the order given.
    pub var_files: Vec<FileId>,
    /// `--var NAME=VALUE` arguments, in the order given.
    pub cli_vars: Vec<String>,
}

/// Builds the validated plan, or every problem found.
pub fn build(
    raw: &RawPlan,
    input: &BuildInput,
    sources: &mut SourceMap,
) -> Result<Plan, Vec<Diagnostic>> {
    let (plan, diags) = build_partial(raw, input, sources);
    if diags.is_empty() {
        Ok(plan)
    } else {
        Err(diags)
    }
}

/// Builds as much of the plan as is valid (nodes with problems are left out) and returns it
/// with every problem found. Used to look for cycles among the valid nodes even when other
/// parts of the plan are broken, so one run reports everything.
pub fn build_partial(
    raw: &RawPlan,
    input: &BuildInput,
    sources: &mut SourceMap,
) -> (Plan, Vec<Diagnostic>) {
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let unparsed = manifest_files(raw, input, sources).into();
    let mut b = Builder {
        raw,
        input,
        sources,
        diags: Vec::new(),
        vars: BTreeMap::new(),
        workers,
        unparsed,
        parsed: BTreeMap::new(),
    };
    let name = b.plan_name();
    let state = b.state_settings();
    b.declare_vars();
    b.apply_var_files();
    b.apply_cli_vars();
    let repos = b.repos();
    let all: BTreeSet<Address> = raw
        .nodes
        .iter()
        .map(|n| Address::new(n.kind, n.name.clone()))
        .collect();
    let mut nodes = BTreeMap::new();
    let mut disabled = BTreeMap::new();
    let mut disabled_spans = BTreeMap::new();
    for raw_node in &raw.nodes {
        let address = Address::new(raw_node.kind, raw_node.name.clone());
        // Disabled nodes are checked like the others, so switching one on reveals nothing new.
        let enabled = b.is_enabled(raw_node);
        if !enabled {
            disabled_spans.insert(address.clone(), raw_node.span.clone());
        }
        if let Some(node) = b.node(raw_node, &repos, &all) {
            if enabled {
                nodes.insert(address, node);
            } else {
                disabled.insert(address, node);
            }
        }
    }
    for node in nodes.values() {
        b.check_references(node, true, &all, &disabled_spans);
    }
    for node in disabled.values() {
        b.check_references(node, false, &all, &disabled_spans);
    }
    b.check_duplicate_objects(&nodes);
    let ignore = match &raw.ignore {
        Some(value) => b.ignore_rules(value, None),
        None => Vec::new(),
    };
    let Builder { diags, vars, .. } = b;
    let plan = Plan {
        name: name.unwrap_or_default(),
        file: raw.file,
        base_dir: input.base_dir.clone(),
        vars,
        repos,
        nodes,
        disabled,
        state,
        ignore,
    };
    (plan, diags)
}

#[path = "build_ignore.rs"]
mod build_ignore;

struct Builder<'a> {
    raw: &'a RawPlan,
    input: &'a BuildInput,
    sources: &'a mut SourceMap,
    diags: Vec<Diagnostic>,
    vars: BTreeMap<String, Var>,
    /// Threads for the manifest files' parse.
    workers: usize,
    /// The manifest files not parsed yet, in the order of the nodes that read them.
    unparsed: std::collections::VecDeque<(FileId, std::sync::Arc<str>)>,
    /// Manifest files parsed ahead of their nodes ([`Builder::take_parsed`]), each taken by
    /// the first manifest that reads it.
    parsed: BTreeMap<FileId, Result<Vec<RawValue>, Diagnostic>>,
}

impl Builder<'_> {
    /// The parse of manifest file `id` for the first node that reads it, parsed with the
    /// next files (in node order) side by side ([`parse_files`]): as many files as there are
    /// threads, so that the documents parsed ahead and not yet built into nodes stay a few
    /// files' worth (a plan of ten large files held all of them at once, 10–15 MB more at the
    /// peak of an apply of 10,000 objects). None when the file is left to its node.
    fn take_parsed(&mut self, id: FileId) -> Option<Result<Vec<RawValue>, Diagnostic>> {
        if let Some(at) = self.unparsed.iter().position(|(f, _)| *f == id) {
            let mut batch: Vec<_> = self.unparsed.remove(at).into_iter().collect();
            while batch.len() < self.workers {
                let Some(next) = self.unparsed.pop_front() else {
                    break;
                };
                batch.push(next);
            }
            self.parsed.extend(parse_files(batch, self.workers));
        }
        self.parsed.remove(&id)
    }
}

/// Parses every manifest file of the plan at once ([`manifest_files`], [`parse_files`]).
#[cfg(test)]
fn parse_manifest_files(
    raw: &RawPlan,
    input: &BuildInput,
    sources: &SourceMap,
    workers: usize,
) -> BTreeMap<FileId, Result<Vec<RawValue>, Diagnostic>> {
    parse_files(manifest_files(raw, input, sources), workers)
}

/// The manifest files of the plan (`file =` of a manifest node) that were read, each once, in
/// the order of the nodes that read them.
fn manifest_files(
    raw: &RawPlan,
    input: &BuildInput,
    sources: &SourceMap,
) -> Vec<(FileId, std::sync::Arc<str>)> {
    let mut files: Vec<(FileId, std::sync::Arc<str>)> = Vec::new();
    for node in raw.nodes.iter().filter(|n| n.kind == NodeKind::Manifest) {
        let Some(written) = node.field("file").and_then(|e| e.value.as_str()) else {
            continue;
        };
        if let Some(LoadedFile::Loaded(id)) = input.files.get(written)
            && !files.iter().any(|(f, _)| f == id)
            && let Some(file) = sources.get(*id)
        {
            files.push((*id, file.text.clone()));
        }
    }
    files
}

/// Parses manifest files on up to `workers` threads, so a plan whose objects fill large files
/// loads in a fraction of the time: files are parsed side by side, and a large file in pieces
/// cut at its document markers ([`document_pieces`]). Only the parse moves: every result is
/// handed to its node in the node order, so diagnostics come out exactly as when each file is
/// parsed by its node. A file that a piece of it fails to parse is left to its node (which
/// reports the whole file's error), as is everything when one thread would do it all.
fn parse_files(
    files: Vec<(FileId, std::sync::Arc<str>)>,
    workers: usize,
) -> BTreeMap<FileId, Result<Vec<RawValue>, Diagnostic>> {
    // (file, byte range): a whole file, or a piece of one.
    let mut units: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    for (i, (_, text)) in files.iter().enumerate() {
        match document_pieces(text, workers) {
            Some(pieces) => units.extend(pieces.into_iter().map(|p| (i, p))),
            None => units.push((i, 0..text.len())),
        }
    }
    let workers = workers.min(units.len());
    if workers < 2 {
        return BTreeMap::new();
    }
    // The largest first, so no thread is left with a large one at the end.
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&u| std::cmp::Reverse(units[u].1.len()));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parse = || {
        let mut done = Vec::new();
        while let Some(&u) = order.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
            let (file, range) = &units[u];
            let (id, text) = &files[*file];
            done.push((u, parse_yaml(*id, &text[range.clone()], range.start)));
        }
        done
    };
    let mut results: Vec<Option<Result<Vec<RawValue>, Diagnostic>>> =
        (0..units.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        // The same stack as the main thread's: the parser recurses into nested documents.
        let helpers: Vec<_> = (1..workers)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("manifest-parse".to_owned())
                    .stack_size(8 << 20)
                    .spawn_scoped(scope, parse)
                    .ok()
            })
            .collect();
        let mut done = parse();
        for helper in helpers {
            // A helper that panicked leaves its files to the nodes, which parse them again.
            if let Ok(more) = helper.join() {
                done.extend(more);
            }
        }
        for (u, result) in done {
            results[u] = Some(result);
        }
    });
    // The units of each file are in order: a file's documents are those of its pieces. A
    // piece's error is not its file's: such files (and pieces not parsed) are left out.
    let mut parsed = BTreeMap::new();
    let mut left_out = BTreeSet::new();
    for ((file, range), result) in units.into_iter().zip(results) {
        let (id, text) = &files[file];
        match result {
            Some(Ok(docs)) if !left_out.contains(&file) => {
                if let Ok(all) = parsed.entry(*id).or_insert_with(|| Ok(Vec::new())) {
                    all.extend(docs);
                }
            }
            Some(Err(d)) if range.len() == text.len() => {
                parsed.insert(*id, Err(d));
            }
            _ => {
                left_out.insert(file);
                parsed.remove(id);
            }
        }
    }
    parsed
}

/// Where the last span of a value (its keys and values, nested) ends.
fn extent(value: &RawValue) -> usize {
    let inner = match &value.kind {
        RawKind::Array(items) => items.iter().map(extent).max().unwrap_or(0),
        RawKind::Table(table) => table
            .entries
            .iter()
            .map(|e| e.key_span.range.end.max(extent(&e.value)))
            .max()
            .unwrap_or(0),
        _ => 0,
    };
    inner.max(value.span.range.end)
}

fn file_start(raw: &RawPlan) -> Span {
    Span::file_start(raw.file)
}

impl Builder<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn wrong_type(&mut self, what: &str, expected: &str, value: &RawValue, help: &str) {
        self.push(
            Diagnostic::new(
                DiagnosticKind::WrongType,
                format!("{what} must be {expected}, not {}", value.type_name()),
            )
            .label(value.span.clone(), format!("expected {expected}"))
            .help(help.to_string()),
        );
    }

    fn missing(&mut self, what: &str, field: &str, span: Span, example: &str) {
        self.push(
            Diagnostic::new(
                DiagnosticKind::MissingField,
                format!("{what} is missing the required field `{field}`"),
            )
            .label(span, format!("`{field}` is required here"))
            .help(format!("add `{field} = {example}`")),
        );
    }

    // ----- [plan] -----------------------------------------------------------------------

    fn plan_name(&mut self) -> Option<String> {
        let Some(section) = &self.raw.plan else {
            self.push(
                Diagnostic::new(DiagnosticKind::MissingField, "the plan has no [plan] table")
                    .label(file_start(self.raw), "expected [plan] with a name")
                    .help("start the file with:\n[plan]\nname = \"my-stack\""),
            );
            return None;
        };
        let Some(entry) = section.table.get("name") else {
            let span = section.span.clone();
            self.missing("[plan]", "name", span, "\"my-stack\"");
            return None;
        };
        match entry.value.as_str() {
            Some(name) if is_dns_label(name) => Some(name.to_string()),
            Some(name) => {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::InvalidValue,
                        format!("invalid plan name `{name}`"),
                    )
                    .label(entry.value.span.clone(), "not a valid plan name")
                    .help(
                        "the plan name names the state directory: use lower-case letters, digits \
                         and `-` (at most 63)",
                    ),
                );
                None
            }
            None => {
                let value = entry.value.clone();
                self.wrong_type(
                    "`name` in [plan]",
                    "a string",
                    &value,
                    "write name = \"my-stack\"",
                );
                None
            }
        }
    }

    // ----- [state] ----------------------------------------------------------------------

    /// The `[state]` table: each key checked on its own (every problem reported).
    fn state_settings(&mut self) -> StateSettings {
        let mut out = StateSettings::default();
        let Some(section) = &self.raw.state else {
            return out;
        };
        let table = section.table.clone();
        let string = |b: &mut Self, key: &str, example: &str| -> Option<(String, RawValue)> {
            let entry = table.get(key)?;
            match entry.value.as_str() {
                Some(s) => Some((s.to_string(), entry.value.clone())),
                None => {
                    let value = entry.value.clone();
                    b.wrong_type(
                        &format!("`{key}` in [state]"),
                        "a string",
                        &value,
                        &format!("write {key} = {example}"),
                    );
                    None
                }
            }
        };
        if let Some((text, value)) = string(self, "backend", "\"kubernetes\"") {
            out.backend = StateBackend::parse(&text);
            if out.backend.is_none() {
                let help = match did_you_mean(&text, StateBackend::NAMES) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "the backends are `local` (a directory beside the plan) and \
                             `kubernetes` (Secrets and a Lease in the cluster)"
                        .to_string(),
                };
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::InvalidValue,
                        format!("unknown state backend `{text}`"),
                    )
                    .label(value.span.clone(), "not a state backend")
                    .help(help),
                );
            }
        }
        for (key, example) in [
            ("namespace", "\"meshplan-system\""),
            ("name", "\"my-stack\""),
        ] {
            let Some((text, value)) = string(self, key, example) else {
                continue;
            };
            if is_dns_label(&text) {
                if key == "namespace" {
                    out.namespace = Some(text);
                } else {
                    out.name = Some(text);
                }
                continue;
            }
            self.push(
                Diagnostic::new(
                    DiagnosticKind::InvalidValue,
                    format!("invalid {key} `{text}` in [state]"),
                )
                .label(value.span.clone(), "not a DNS label")
                .help(format!(
                    "the {key} names objects in the cluster: use lower-case letters, digits and \
                     `-` (at most 63, not starting or ending with `-`)"
                )),
            );
        }
        if let Some((text, value)) = string(self, "dir", "\"../state/my-stack\"") {
            if text.trim().is_empty() {
                self.push(
                    Diagnostic::new(DiagnosticKind::InvalidValue, "`dir` in [state] is empty")
                        .label(value.span.clone(), "an empty path")
                        .help(
                            "name the state directory relative to this plan file, e.g. \
                             dir = \"../state/my-stack\"",
                        ),
                );
            } else {
                out.dir = Some(self.input.base_dir.join(&text));
            }
        }
        if let Some((text, value)) = string(self, "lease_duration", "\"30s\"") {
            match parse_duration(&text) {
                Some(d) if d.subsec_nanos() == 0 => out.lease_duration = Some(d),
                _ => self.push(
                    Diagnostic::new(
                        DiagnosticKind::InvalidValue,
                        format!(
                            "`lease_duration` in [state]: `{text}` is not a whole number of seconds"
                        ),
                    )
                    .label(value.span.clone(), "not a duration in whole seconds")
                    .help("a Lease lasts whole seconds, such as \"30s\" or \"2m\""),
                ),
            }
        }
        out
    }

    // ----- vars -------------------------------------------------------------------------

    fn declare_vars(&mut self) {
        let Some(section) = &self.raw.vars else {
            return;
        };
        for entry in &section.table.entries {
            if !crate::planfile::syntax::is_identifier(&entry.key) {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::InvalidValue,
                        format!("invalid variable name `{}`", entry.key),
                    )
                    .label(entry.key_span.clone(), "not a valid name")
                    .help("a variable name starts with a letter or `_` and contains letters, digits, `_` and `-`"),
                );
                continue;
            }
            self.vars.insert(
                entry.key.clone(),
                Var {
                    name: entry.key.clone(),
                    value: raw_to_json(&entry.value),
                    span: entry.key_span.clone(),
                    origin: VarOrigin::Default,
                },
            );
        }
    }

    fn var_names(&self) -> Vec<&str> {
        self.vars.keys().map(String::as_str).collect()
    }

    fn undeclared_help(&self, name: &str) -> String {
        match did_you_mean(name, self.var_names()) {
            Some(s) => format!("did you mean `{s}`? Variables must be declared in [vars] first"),
            None if self.vars.is_empty() => {
                format!("declare it in [vars] first: {name} = <default value>")
            }
            None => format!(
                "declare it in [vars] first; declared variables: {}",
                self.var_names().join(", ")
            ),
        }
    }

    fn apply_var_files(&mut self) {
        for &file in &self.input.var_files {
            let name = self.sources.name(file).to_string();
            let text = self.sources.text(file).to_string();
            let root = match parse_toml(file, &text) {
                Ok(root) => root,
                Err(diags) => {
                    self.diags.extend(diags);
                    continue;
                }
            };
            let Some(table) = root.as_table() else {
                continue;
            };
            for entry in &table.entries {
                let Some(declared) = self.vars.get(&entry.key).map(|v| v.value.clone()) else {
                    let help = self.undeclared_help(&entry.key);
                    self.push(
                        Diagnostic::new(
                            DiagnosticKind::UndeclaredVar,
                            format!(
                                "var file sets `{}`, which the plan does not declare",
                                entry.key
                            ),
                        )
                        .label(entry.key_span.clone(), "not declared in [vars]")
                        .help(help),
                    );
                    continue;
                };
                let value = raw_to_json(&entry.value);
                if !same_type(&declared, &value) {
                    self.push(
                        Diagnostic::new(
                            DiagnosticKind::WrongType,
                            format!(
                                "`{}` is declared as {} but the var file sets {}",
                                entry.key,
                                super::template::json_type_name(&declared),
                                super::template::json_type_name(&value)
                            ),
                        )
                        .label(entry.value.span.clone(), "wrong type")
                        .help(format!("give `{}` a value of the declared type", entry.key)),
                    );
                    continue;
                }
                if let Some(var) = self.vars.get_mut(&entry.key) {
                    var.value = coerce(&declared, value);
                    var.origin = VarOrigin::VarFile(name.clone());
                }
            }
        }
    }

    fn apply_cli_vars(&mut self) {
        let vars_span = self.raw.vars.as_ref().map(|s| s.span.clone());
        for arg in &self.input.cli_vars {
            let Some((name, text)) = arg.split_once('=') else {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::BadVarArgument,
                        format!("invalid --var `{arg}`: expected NAME=VALUE"),
                    )
                    .help("write --var NAME=VALUE, e.g. --var linkerd_version=2.18.0"),
                );
                continue;
            };
            let name = name.trim();
            if !crate::planfile::syntax::is_identifier(name) {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::BadVarArgument,
                        format!("invalid --var `{arg}`: `{name}` is not a variable name"),
                    )
                    .help("write --var NAME=VALUE, e.g. --var linkerd_version=2.18.0"),
                );
                continue;
            }
            let Some(declared) = self.vars.get(name).map(|v| v.value.clone()) else {
                let mut d = Diagnostic::new(
                    DiagnosticKind::UndeclaredVar,
                    format!("--var sets `{name}`, which the plan does not declare"),
                )
                .help(self.undeclared_help(name));
                if let Some(span) = &vars_span {
                    d = d.label(span.clone(), "declared variables are here");
                }
                self.push(d);
                continue;
            };
            match cli_value(&declared, text) {
                Ok(value) => {
                    if let Some(var) = self.vars.get_mut(name) {
                        var.value = value;
                        var.origin = VarOrigin::CommandLine;
                    }
                }
                Err(found) => {
                    let span = self.vars.get(name).map(|v| v.span.clone());
                    let expected = super::template::json_type_name(&declared);
                    let example = match &declared {
                        serde_json::Value::Bool(_) => "true or false",
                        serde_json::Value::Number(_) => "a number such as 3",
                        serde_json::Value::Array(_) => "a TOML array such as [\"a\", \"b\"]",
                        serde_json::Value::Object(_) => {
                            "an inline TOML table such as { key = \"value\" }"
                        }
                        _ => "a value of the declared type",
                    };
                    let mut d = Diagnostic::new(
                        DiagnosticKind::BadVarArgument,
                        format!(
                            "--var {name}={text}: `{name}` is declared as {expected}, but `{text}` is {found}"
                        ),
                    )
                    .help(format!("give `{name}` {example}"));
                    if let Some(span) = span {
                        d = d.label(span, format!("declared here as {expected}"));
                    }
                    self.push(d);
                }
            }
        }
    }

    // ----- repos ------------------------------------------------------------------------

    fn repos(&mut self) -> BTreeMap<String, Repo> {
        let mut repos = BTreeMap::new();
        let Some(section) = &self.raw.repos else {
            return repos;
        };
        for entry in &section.table.entries {
            let Some(url) = entry.value.as_str() else {
                let value = entry.value.clone();
                self.wrong_type(
                    &format!("repo `{}`", entry.key),
                    "a URL string",
                    &value,
                    "write ALIAS = \"https://charts.example.com\"",
                );
                continue;
            };
            if !["https://", "http://", "oci://", "file://"]
                .iter()
                .any(|p| url.starts_with(p) && url.len() > p.len())
            {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::InvalidValue,
                        format!("repo `{}` has an invalid URL `{url}`", entry.key),
                    )
                    .label(entry.value.span.clone(), "not a chart repository URL")
                    .help("use an https://, http://, oci:// or file:// URL"),
                );
                continue;
            }
            repos.insert(
                entry.key.clone(),
                Repo {
                    name: entry.key.clone(),
                    url: url.to_string(),
                    span: entry.value.span.clone(),
                },
            );
        }
        repos
    }

    // ----- nodes ------------------------------------------------------------------------

    /// Evaluates `enabled` (vars only); problems are reported and count as enabled.
    fn is_enabled(&mut self, node: &RawNode) -> bool {
        let Some(entry) = node.field("enabled") else {
            return true;
        };
        let what = format!("`enabled` of {}.{}", node.kind, node.name);
        match &entry.value.kind {
            RawKind::Bool(b) => *b,
            RawKind::String(_) => match self.static_string_value(&entry.value) {
                Some(serde_json::Value::Bool(b)) => b,
                Some(other) => {
                    self.push(
                        Diagnostic::new(
                            DiagnosticKind::WrongType,
                            format!(
                                "{what} must be a boolean, but it evaluates to {}",
                                super::template::json_type_name(&other)
                            ),
                        )
                        .label(entry.value.span.clone(), "not a boolean")
                        .help("use true, false or a boolean variable: enabled = \"${var.NAME}\""),
                    );
                    true
                }
                None => true,
            },
            _ => {
                let value = entry.value.clone();
                self.wrong_type(
                    &what,
                    "a boolean",
                    &value,
                    "write enabled = true, false or \"${var.NAME}\"",
                );
                true
            }
        }
    }

    /// Evaluates a string that may only refer to vars (known before apply).
    fn static_string_value(&mut self, value: &RawValue) -> Option<serde_json::Value> {
        let template = self.template(value)?;
        for r in template.references() {
            match &r.reference {
                Reference::Var { name, .. } if !self.vars.contains_key(name) => {
                    self.undefined_var(name, &r.span);
                    return None;
                }
                Reference::Var { .. } => {}
                Reference::Node { .. } => {
                    self.push(
                        Diagnostic::new(
                            DiagnosticKind::InvalidValue,
                            format!("`{}` is not known before apply", r.reference),
                        )
                        .label(r.span.clone(), "only vars can be used here")
                        .help("this field is decided before anything is applied: use a literal or ${var.NAME}"),
                    );
                    return None;
                }
            }
        }
        let scope = VarScope(&self.vars);
        match template.evaluate(&scope) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = match &e {
                    super::template::EvalError::Unknown { span, .. }
                    | super::template::EvalError::Missing { span, .. }
                    | super::template::EvalError::NotAScalar { span, .. } => span.clone(),
                };
                self.push(
                    Diagnostic::new(DiagnosticKind::InvalidValue, e.to_string())
                        .label(span, "cannot be evaluated")
                        .help("check the variable and the key path"),
                );
                None
            }
        }
    }

    fn undefined_var(&mut self, name: &str, span: &Span) {
        let help = match did_you_mean(name, self.var_names()) {
            Some(s) => format!("did you mean `var.{s}`?"),
            None => format!("declare it in [vars]: {name} = <default value>"),
        };
        self.push(
            Diagnostic::new(
                DiagnosticKind::UndefinedVar,
                format!("undefined variable `var.{name}`"),
            )
            .label(span.clone(), "not declared in [vars]")
            .help(help),
        );
    }

    fn node(
        &mut self,
        raw: &RawNode,
        repos: &BTreeMap<String, Repo>,
        all: &BTreeSet<Address>,
    ) -> Option<Node> {
        let address = Address::new(raw.kind, raw.name.clone());
        let errors_before = self.diags.len();
        let depends_on = self.depends_on(raw, &address, all);
        let wait = self.wait(raw, &address);
        let timeout = raw
            .field("timeout")
            .and_then(|e| self.duration(&e.value, &format!("`timeout` of {address}")));
        let prevent_destroy = self
            .opt_bool(raw, "prevent_destroy", &address)
            .unwrap_or(false);
        let namespace = raw
            .field("namespace")
            .and_then(|e| self.string_template(&e.value, &format!("`namespace` of {address}")));
        let spec = match raw.kind {
            NodeKind::Manifest => self.manifest(raw, &address).map(NodeSpec::Manifest),
            NodeKind::Helm => self.helm(raw, &address, repos).map(NodeSpec::Helm),
            NodeKind::Read => self.read(raw, &address).map(NodeSpec::Read),
            NodeKind::Check => self.check(raw, &address).map(NodeSpec::Check),
        };
        let ignore = match raw.field("ignore") {
            Some(e) => {
                let value = e.value.clone();
                self.ignore_rules(&value, Some(&address))
            }
            None => Vec::new(),
        };
        let suppress = self.suppressions(raw, &address);
        let spec = spec?;
        if self.diags.len() != errors_before {
            return None;
        }
        Some(Node {
            address,
            span: raw.span.clone(),
            depends_on,
            wait,
            timeout,
            prevent_destroy,
            namespace,
            ignore,
            suppress,
            spec,
        })
    }

    fn depends_on(
        &mut self,
        raw: &RawNode,
        address: &Address,
        all: &BTreeSet<Address>,
    ) -> Vec<Dependency> {
        let Some(entry) = raw.field("depends_on") else {
            return Vec::new();
        };
        let RawKind::Array(items) = &entry.value.kind else {
            let value = entry.value.clone();
            self.wrong_type(
                &format!("`depends_on` of {address}"),
                "an array of node addresses",
                &value,
                "write depends_on = [\"helm.cert_manager\"]",
            );
            return Vec::new();
        };
        let mut out: Vec<Dependency> = Vec::new();
        for item in items {
            let Some(text) = item.as_str() else {
                self.wrong_type(
                    &format!("an entry of `depends_on` of {address}"),
                    "a node address string",
                    item,
                    "write depends_on = [\"TYPE.NAME\"]",
                );
                continue;
            };
            let Some(target) = super::address::Address::parse(text) else {
                let help = match text.split_once('.') {
                    Some((kind, _)) if NodeKind::parse(kind).is_none() => {
                        match did_you_mean(kind, NodeKind::ALL.iter().map(|k| k.as_str())) {
                            Some(s) => format!("`{kind}` is not a node type; did you mean `{s}`?"),
                            None => "node types are manifest, helm, read and check".to_string(),
                        }
                    }
                    _ => "a node address is TYPE.NAME, e.g. \"helm.cert_manager\"".to_string(),
                };
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::InvalidValue,
                        format!("`{text}` is not a node address"),
                    )
                    .label(item.span.clone(), "expected TYPE.NAME")
                    .help(help),
                );
                continue;
            };
            if !all.contains(&target) {
                let names: Vec<String> = all.iter().map(|a| a.to_string()).collect();
                let help = match did_you_mean(text, names.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "depend on a node declared in this plan".to_string(),
                };
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::UndefinedNode,
                        format!("{address} depends on `{text}`, which is not declared"),
                    )
                    .label(item.span.clone(), "no such node")
                    .help(help),
                );
                continue;
            }
            if let Some(first) = out.iter().find(|d| d.target == target) {
                let first = first.span.clone();
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::DuplicateName,
                        format!("`{text}` is listed twice in `depends_on` of {address}"),
                    )
                    .label(item.span.clone(), "listed again here")
                    .label(first, "first listed here")
                    .help("remove the second entry"),
                );
                continue;
            }
            out.push(Dependency {
                target,
                span: item.span.clone(),
            });
        }
        out
    }

    /// `suppress`: an array of `{ check = "ID", reason = "..." }` tables (or one table).
    fn suppressions(&mut self, raw: &RawNode, address: &Address) -> Vec<Suppression> {
        let Some(entry) = raw.field("suppress") else {
            return Vec::new();
        };
        let example =
            "write suppress = [{ check = \"meshed-job\", reason = \"why it is fine here\" }]";
        let items: Vec<RawValue> = match &entry.value.kind {
            RawKind::Array(items) => items.clone(),
            RawKind::Table(_) => vec![entry.value.clone()],
            _ => {
                let value = entry.value.clone();
                self.wrong_type(
                    &format!("`suppress` of {address}"),
                    "an array of tables",
                    &value,
                    example,
                );
                return Vec::new();
            }
        };
        let ids: Vec<&str> = CheckId::ALL.iter().map(|c| c.as_str()).collect();
        let mut out: Vec<Suppression> = Vec::new();
        for item in &items {
            let Some(table) = item.as_table() else {
                self.wrong_type(
                    &format!("an entry of `suppress` of {address}"),
                    "a table",
                    item,
                    example,
                );
                continue;
            };
            let mut diags = Vec::new();
            crate::planfile::parse::check_fields(
                table,
                &format!("a `suppress` entry of {address}"),
                &crate::planfile::shape::SUPPRESSION.names(),
                &mut diags,
            );
            self.diags.extend(diags);
            let check = match table.get("check") {
                None => {
                    self.push(
                        Diagnostic::new(
                            DiagnosticKind::MissingField,
                            format!("a `suppress` entry of {address} does not name the check"),
                        )
                        .label(item.span.clone(), "`check` is required here")
                        .help(format!(
                            "add check = \"ID\"; the checks: {}",
                            ids.join(", ")
                        )),
                    );
                    None
                }
                Some(e) => match self.literal_string(
                    &e.value,
                    &format!("`check` of a `suppress` entry of {address}"),
                ) {
                    Some(text) => match CheckId::parse(&text) {
                        Some(id) => Some((id, e.value.span.clone())),
                        None => {
                            let help = match did_you_mean(&text, ids.iter().copied()) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => format!("the checks: {}", ids.join(", ")),
                            };
                            self.push(
                                Diagnostic::new(
                                    DiagnosticKind::UnknownCheck,
                                    format!(
                                        "unknown lint check `{text}` in `suppress` of {address}"
                                    ),
                                )
                                .label(e.value.span.clone(), "not a lint check")
                                .help(help),
                            );
                            None
                        }
                    },
                    None => None,
                },
            };
            let reason = match table.get("reason") {
                None => {
                    self.push(
                        Diagnostic::new(
                            DiagnosticKind::MissingField,
                            format!("a `suppress` entry of {address} gives no reason"),
                        )
                        .label(item.span.clone(), "`reason` is required here")
                        .help(
                            "add reason = \"...\": say why the finding does not apply here; \
                             reports repeat it next to the suppressed finding",
                        ),
                    );
                    None
                }
                Some(e) => match self.literal_string(
                    &e.value,
                    &format!("`reason` of a `suppress` entry of {address}"),
                ) {
                    Some(text) if text.trim().is_empty() => {
                        self.push(
                            Diagnostic::new(
                                DiagnosticKind::InvalidValue,
                                format!("the reason of a `suppress` entry of {address} is empty"),
                            )
                            .label(e.value.span.clone(), "empty reason")
                            .help("say why the finding does not apply here; reports repeat it"),
                        );
                        None
                    }
                    other => other,
                },
            };
            let (Some((check, check_span)), Some(reason)) = (check, reason) else {
                continue;
            };
            if let Some(first) = out.iter().find(|s| s.check == check) {
                let first = first.span.clone();
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::DuplicateName,
                        format!("`{check}` is suppressed twice on {address}"),
                    )
                    .label(check_span, "suppressed again here")
                    .label(first, "first suppressed here")
                    .help("keep one entry per check"),
                );
                continue;
            }
            out.push(Suppression {
                check,
                reason: reason.trim().to_string(),
                span: item.span.clone(),
            });
        }
        out
    }

    fn wait(&mut self, raw: &RawNode, address: &Address) -> Wait {
        let Some(entry) = raw.field("wait") else {
            return Wait::default();
        };
        match &entry.value.kind {
            RawKind::Bool(enabled) => Wait {
                enabled: *enabled,
                ..Wait::default()
            },
            RawKind::Table(table) => {
                let mut diags = Vec::new();
                crate::planfile::parse::check_fields(
                    table,
                    &format!("`wait` of {address}"),
                    &crate::planfile::shape::WAIT.names(),
                    &mut diags,
                );
                self.diags.extend(diags);
                let condition = table.get("condition").and_then(|e| {
                    self.literal_string(&e.value, &format!("`wait.condition` of {address}"))
                });
                let timeout = table
                    .get("timeout")
                    .and_then(|e| self.duration(&e.value, &format!("`wait.timeout` of {address}")));
                Wait {
                    enabled: true,
                    condition,
                    timeout,
                }
            }
            _ => {
                let value = entry.value.clone();
                self.wrong_type(
                    &format!("`wait` of {address}"),
                    "a boolean or a table",
                    &value,
                    "write wait = false, or wait = { condition = \"Ready\", timeout = \"5m\" }",
                );
                Wait::default()
            }
        }
    }

    fn duration(&mut self, value: &RawValue, what: &str) -> Option<Duration> {
        let Some(text) = value.as_str() else {
            self.wrong_type(
                what,
                "a duration string",
                value,
                "write a duration such as \"90s\", \"5m\" or \"1h30m\"",
            );
            return None;
        };
        let parsed = parse_duration(text);
        if parsed.is_none() {
            self.push(
                Diagnostic::new(
                    DiagnosticKind::InvalidValue,
                    format!("{what}: `{text}` is not a duration"),
                )
                .label(value.span.clone(), "not a duration")
                .help("write a positive duration with units ms, s, m or h, such as \"90s\", \"5m\" or \"1h30m\""),
            );
        }
        parsed
    }

    fn opt_bool(&mut self, raw: &RawNode, field: &str, address: &Address) -> Option<bool> {
        let entry = raw.field(field)?;
        match entry.value.kind {
            RawKind::Bool(b) => Some(b),
            _ => {
                let value = entry.value.clone();
                self.wrong_type(
                    &format!("`{field}` of {address}"),
                    "a boolean",
                    &value,
                    &format!("write {field} = true or {field} = false"),
                );
                None
            }
        }
    }

    fn literal_string(&mut self, value: &RawValue, what: &str) -> Option<String> {
        match value.as_str() {
            Some(s) if s.contains("${") => {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::InvalidValue,
                        format!("{what} cannot contain references"),
                    )
                    .label(value.span.clone(), "a reference is not allowed here")
                    .help("write the value literally"),
                );
                None
            }
            Some(s) => Some(s.to_string()),
            None => {
                self.wrong_type(
                    what,
                    "a string",
                    value,
                    "write the value as a quoted string",
                );
                None
            }
        }
    }

    fn string_template(&mut self, value: &RawValue, what: &str) -> Option<Template> {
        if value.as_str().is_none() {
            self.wrong_type(
                what,
                "a string",
                value,
                "write the value as a quoted string",
            );
            return None;
        }
        self.template(value)
    }

    fn required_template(
        &mut self,
        raw: &RawNode,
        field: &str,
        address: &Address,
        example: &str,
    ) -> Option<Template> {
        match raw.field(field) {
            Some(e) => self.string_template(&e.value, &format!("`{field}` of {address}")),
            None => {
                self.missing(&address.to_string(), field, raw.name_span.clone(), example);
                None
            }
        }
    }

    /// Parses the references of a string value (whose span is in some source file).
    fn template(&mut self, value: &RawValue) -> Option<Template> {
        let text = value.as_str()?;
        if !text.contains('$') {
            return Some(Template::literal(text, value.span.clone()));
        }
        let raw = self.sources.slice(&value.span).to_string();
        let start = value.span.range.start;
        let whole = value.span.clone();
        let locate = |r: std::ops::Range<usize>| locate_in_raw(&raw, start, text, r, &whole);
        match parse_template(text, &whole, &locate) {
            Ok(t) => Some(t),
            Err(diags) => {
                self.diags.extend(diags);
                None
            }
        }
    }

    /// A structured value: strings become templates, date-times strings.
    fn value(&mut self, raw: &RawValue) -> Option<Value> {
        Some(match &raw.kind {
            RawKind::Null => Value::Null,
            RawKind::Bool(b) => Value::Bool(*b),
            RawKind::Integer(i) => Value::Integer(*i),
            RawKind::Float(f) => Value::Float(*f),
            RawKind::String(_) => Value::String(self.template(raw)?),
            RawKind::Datetime(d) => Value::String(Template::literal(d.clone(), raw.span.clone())),
            RawKind::Array(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for item in items {
                    match self.value(item) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                Value::Array(out)
            }
            RawKind::Table(table) => self.table_value(table)?,
        })
    }

    fn table_value(&mut self, table: &RawTable) -> Option<Value> {
        let mut out: Vec<(String, Value)> = Vec::new();
        let mut ok = true;
        for entry in &table.entries {
            if entry.key.contains("${") {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::ReferenceSyntax,
                        format!("references are not allowed in keys (`{}`)", entry.key),
                    )
                    .label(entry.key_span.clone(), "key with a reference")
                    .help("use a literal key; references work in string values"),
                );
                ok = false;
                continue;
            }
            if let Some((_, _)) = out.iter().find(|(k, _)| k == &entry.key) {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::DuplicateName,
                        format!("key `{}` appears twice", entry.key),
                    )
                    .label(entry.key_span.clone(), "appears again here")
                    .help("remove or rename one of them"),
                );
                ok = false;
                continue;
            }
            match self.value(&entry.value) {
                Some(v) => out.push((entry.key.clone(), v)),
                None => ok = false,
            }
        }
        ok.then_some(Value::Table(out))
    }

    fn loaded_file(
        &mut self,
        entry: &RawEntry,
        written: &str,
        what: &str,
    ) -> Option<(PathBuf, FileId)> {
        let path = join_clean(&self.input.base_dir, written);
        match self.input.files.get(written) {
            Some(LoadedFile::Loaded(id)) => Some((path, *id)),
            Some(LoadedFile::Failed(reason)) => {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::Io,
                        format!("cannot read {what} `{written}`: {reason}"),
                    )
                    .label(entry.value.span.clone(), reason.clone())
                    .help(format!(
                        "paths are relative to the plan file's directory ({}); check the name",
                        display_dir(&self.input.base_dir)
                    )),
                );
                None
            }
            None => {
                self.push(
                    Diagnostic::new(
                        DiagnosticKind::Io,
                        format!("{what} `{written}` was not loaded"),
                    )
                    .label(entry.value.span.clone(), "not loaded"),
                );
                None
            }
        }
    }

    fn manifest(&mut self, raw: &RawNode, address: &Address) -> Option<Manifest> {
        let sources: Vec<&RawEntry> = ["file", "yaml", "objects"]
            .iter()
            .filter_map(|f| raw.field(f))
            .collect();
        if sources.len() > 1 {
            let mut d = Diagnostic::new(
                DiagnosticKind::ConflictingFields,
                format!(
                    "{address} sets {}; a manifest has exactly one source",
                    sources
                        .iter()
                        .map(|e| format!("`{}`", e.key))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            );
            for e in &sources {
                d = d.label(e.key_span.clone(), "");
            }
            self.push(d.help("keep one of file, yaml or objects"));
            return None;
        }
        let Some(entry) = sources.first() else {
            self.push(
                Diagnostic::new(
                    DiagnosticKind::MissingField,
                    format!("{address} has no objects: set `file`, `yaml` or `objects`"),
                )
                .label(raw.name_span.clone(), "manifest without a source")
                .help("add file = \"manifests/NAME.yaml\" (or yaml = \"\"\"...\"\"\", or [[manifest.NAME.objects]] tables)"),
            );
            return None;
        };
        let entry = (*entry).clone();
        let (source, docs) = match entry.key.as_str() {
            "file" => {
                let Some(written) = entry.value.as_str() else {
                    let value = entry.value.clone();
                    self.wrong_type(
                        &format!("`file` of {address}"),
                        "a path string",
                        &value,
                        "write file = \"manifests/NAME.yaml\"",
                    );
                    return None;
                };
                let (path, id) = self.loaded_file(&entry, written, "manifest file")?;
                // The file's text is shared, not copied (a manifest file may be large).
                let text = self
                    .sources
                    .get(id)
                    .map_or_else(|| std::sync::Arc::from(""), |f| f.text.clone());
                let parsed = match self.take_parsed(id) {
                    Some(parsed) => parsed,
                    None => parse_yaml(id, &text, 0),
                };
                let docs = match parsed {
                    Ok(docs) => docs,
                    Err(d) => {
                        self.push(d.label(
                            entry.value.span.clone(),
                            format!("in the manifest file of {address}"),
                        ));
                        return None;
                    }
                };
                (
                    ManifestSource::File {
                        path,
                        written: written.to_string(),
                        span: entry.value.span.clone(),
                    },
                    docs,
                )
            }
            "yaml" => {
                let Some(text) = entry.value.as_str() else {
                    let value = entry.value.clone();
                    self.wrong_type(
                        &format!("`yaml` of {address}"),
                        "a YAML string",
                        &value,
                        "write yaml = '''\\n...\\n'''",
                    );
                    return None;
                };
                let text = text.to_string();
                let raw_text = self.sources.slice(&entry.value.span).to_string();
                let (file, base) = match raw_text.find(&text) {
                    Some(i) if !text.is_empty() => {
                        (entry.value.span.file, entry.value.span.range.start + i)
                    }
                    _ => {
                        let name = format!(
                            "{} (yaml of {address})",
                            self.sources.name(entry.value.span.file)
                        );
                        (self.sources.add(name, text.clone()), 0)
                    }
                };
                let docs = match parse_yaml(file, &text, base) {
                    Ok(docs) => docs,
                    Err(d) => {
                        self.push(d);
                        return None;
                    }
                };
                (
                    ManifestSource::Yaml {
                        span: entry.value.span.clone(),
                    },
                    docs,
                )
            }
            _ => {
                let docs = match &entry.value.kind {
                    RawKind::Array(items) if items.iter().all(|i| i.as_table().is_some()) => {
                        items.clone()
                    }
                    RawKind::Table(_) => vec![entry.value.clone()],
                    _ => {
                        let value = entry.value.clone();
                        self.wrong_type(
                            &format!("`objects` of {address}"),
                            "an array of tables",
                            &value,
                            "write each object as a [[manifest.NAME.objects]] table",
                        );
                        return None;
                    }
                };
                (
                    ManifestSource::Objects {
                        span: entry.value.span.clone(),
                    },
                    docs,
                )
            }
        };
        if docs.is_empty() {
            self.push(
                Diagnostic::new(
                    DiagnosticKind::BadManifest,
                    format!("{address} has no objects"),
                )
                .label(entry.value.span.clone(), "no Kubernetes object here")
                .help("a manifest must declare at least one object"),
            );
            return None;
        }
        // Each document becomes its object's value; one of YAML is not kept as written (it is
        // parsed again from its text when a message needs it), one of TOML is moved.
        let yaml = !matches!(source, ManifestSource::Objects { .. });
        let mut objects = Vec::with_capacity(docs.len());
        for (i, doc) in docs.into_iter().enumerate() {
            if let Some(o) = self.object(doc, address, i + 1, yaml) {
                objects.push(o);
            }
        }
        Some(Manifest { source, objects })
    }

    fn object(
        &mut self,
        doc: RawValue,
        address: &Address,
        index: usize,
        yaml: bool,
    ) -> Option<ManifestObject> {
        let Some(table) = doc.as_table() else {
            self.push(
                Diagnostic::new(
                    DiagnosticKind::BadManifest,
                    format!(
                        "object #{index} of {address} must be a mapping, not {}",
                        doc.type_name()
                    ),
                )
                .label(doc.span.clone(), "not a Kubernetes object")
                .help("each document must be a mapping with apiVersion, kind and metadata.name"),
            );
            return None;
        };
        let value = self.table_value(table)?;
        let mut missing = Vec::new();
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_template)
            .and_then(Template::as_literal);
        let kind = value
            .get("kind")
            .and_then(Value::as_template)
            .and_then(Template::as_literal);
        let metadata = value.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Value::as_template)
            .cloned();
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_template)
            .cloned();
        if api_version.as_deref().is_none_or(str::is_empty) {
            missing.push("apiVersion");
        }
        if kind.as_deref().is_none_or(str::is_empty) {
            missing.push("kind");
        }
        if name.is_none() {
            missing.push("metadata.name");
        }
        if !missing.is_empty() {
            self.push(
                Diagnostic::new(
                    DiagnosticKind::BadManifest,
                    format!(
                        "object #{index} of {address} has no {}",
                        missing
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .label(doc.span.clone(), "incomplete Kubernetes object")
                .help("every object needs apiVersion and kind (literal strings) and metadata.name"),
            );
            return None;
        }
        Some(ManifestObject {
            api_version: api_version.unwrap_or_default(),
            kind: kind.unwrap_or_default(),
            name: name?,
            namespace,
            value,
            span: doc.span.clone(),
            raw: if yaml {
                // From the start of the line, so the first key keeps its indentation, to the
                // end of the line of the last value (the parser's span of a mapping is its
                // start only).
                let text = self.sources.text(doc.span.file).as_bytes();
                let last = extent(&doc).min(text.len());
                let end = text[last..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(text.len(), |i| last + i);
                let mut start = doc.span.range.start;
                while start > 0 && text.get(start - 1) == Some(&b' ') {
                    start -= 1;
                }
                RawObject::Yaml {
                    file: doc.span.file,
                    range: start..end,
                }
            } else {
                RawObject::Kept(doc)
            },
        })
    }

    fn helm(
        &mut self,
        raw: &RawNode,
        address: &Address,
        repos: &BTreeMap<String, Repo>,
    ) -> Option<Helm> {
        let chart = match raw.field("chart") {
            None => {
                self.missing(
                    &address.to_string(),
                    "chart",
                    raw.name_span.clone(),
                    "\"REPO/CHART\"",
                );
                None
            }
            Some(e) => self.chart(e, address, repos),
        };
        let version = raw
            .field("version")
            .and_then(|e| self.string_template(&e.value, &format!("`version` of {address}")));
        let release = match raw.field("release") {
            Some(e) => match self.literal_string(&e.value, &format!("`release` of {address}")) {
                Some(r) if is_dns_label(&r) && r.len() <= 53 => Some(r),
                Some(r) => {
                    self.push(
                        Diagnostic::new(
                            DiagnosticKind::InvalidValue,
                            format!("invalid release name `{r}`"),
                        )
                        .label(e.value.span.clone(), "not a valid Helm release name")
                        .help("use lower-case letters, digits and `-`, at most 53 characters"),
                    );
                    None
                }
                None => None,
            },
            None => Some(raw.name.replace('_', "-").to_ascii_lowercase()),
        };
        let values = match raw.field("values") {
            Some(e) if e.value.as_table().is_some() => self.value(&e.value),
            Some(e) => {
                let value = e.value.clone();
                self.wrong_type(
                    &format!("`values` of {address}"),
                    "a table",
                    &value,
                    "write values as [helm.NAME.values] or values = { key = \"value\" }",
                );
                None
            }
            None => Some(Value::Table(Vec::new())),
        };
        let mut values_files = Vec::new();
        if let Some(e) = raw.field("values_files") {
            match &e.value.kind {
                RawKind::Array(items) => {
                    for item in items {
                        let Some(written) = item.as_str() else {
                            self.wrong_type(
                                &format!("an entry of `values_files` of {address}"),
                                "a path string",
                                item,
                                "write values_files = [\"values/NAME.yaml\"]",
                            );
                            continue;
                        };
                        let entry = RawEntry {
                            key: e.key.clone(),
                            key_span: e.key_span.clone(),
                            value: item.clone(),
                        };
                        let Some((path, id)) = self.loaded_file(&entry, written, "values file")
                        else {
                            continue;
                        };
                        let text = self.sources.text(id).to_string();
                        match parse_yaml(id, &text, 0) {
                            Ok(docs) => {
                                let doc = docs.into_iter().next();
                                let values = match &doc {
                                    None => Some(Value::Table(Vec::new())),
                                    Some(d) if d.as_table().is_some() => self.value(d),
                                    Some(d) => {
                                        self.wrong_type(
                                            &format!("values file `{written}`"),
                                            "a mapping",
                                            d,
                                            "a values file is a YAML mapping of chart values",
                                        );
                                        None
                                    }
                                };
                                if let Some(values) = values {
                                    let raw = doc.unwrap_or_else(|| RawValue {
                                        span: crate::planfile::Span::file_start(id),
                                        kind: RawKind::Table(RawTable::default()),
                                    });
                                    values_files.push(ValuesFile {
                                        path,
                                        written: written.to_string(),
                                        span: item.span.clone(),
                                        values,
                                        raw,
                                    });
                                }
                            }
                            Err(d) => self.push(d.label(
                                item.span.clone(),
                                format!("in a values file of {address}"),
                            )),
                        }
                    }
                }
                _ => {
                    let value = e.value.clone();
                    self.wrong_type(
                        &format!("`values_files` of {address}"),
                        "an array of paths",
                        &value,
                        "write values_files = [\"values/NAME.yaml\"]",
                    );
                }
            }
        }
        let include_crds = self.opt_bool(raw, "include_crds", address).unwrap_or(true);
        let create_namespace = self
            .opt_bool(raw, "create_namespace", address)
            .unwrap_or(false);
        Some(Helm {
            chart: chart?,
            version,
            release: release?,
            values_files,
            values: values?,
            values_raw: raw.field("values").map(|e| e.value.clone()),
            include_crds,
            create_namespace,
        })
    }

    fn chart(
        &mut self,
        e: &RawEntry,
        address: &Address,
        repos: &BTreeMap<String, Repo>,
    ) -> Option<Chart> {
        let text = self.literal_string(&e.value, &format!("`chart` of {address}"))?;
        if let Some(rest) = text.strip_prefix("oci://") {
            if rest.is_empty() {
                self.push(
                    Diagnostic::new(DiagnosticKind::InvalidValue, "empty OCI chart reference")
                        .label(e.value.span.clone(), "no registry path")
                        .help("write chart = \"oci://registry.example.com/charts/NAME\""),
                );
                return None;
            }
            return Some(Chart::Oci(text));
        }
        if text.starts_with("./") || text.starts_with("../") || text.starts_with('/') {
            return Some(Chart::Local(join_clean(&self.input.base_dir, &text)));
        }
        match text.split_once('/') {
            Some((alias, name)) if !alias.is_empty() && !name.is_empty() && !name.contains('/') => {
                match repos.get(alias) {
                    Some(repo) => Some(Chart::Repo {
                        repo: alias.to_string(),
                        url: repo.url.clone(),
                        name: name.to_string(),
                    }),
                    None => {
                        let help = match did_you_mean(alias, repos.keys().map(String::as_str)) {
                            Some(s) => format!("did you mean `{s}/{name}`?"),
                            None => format!(
                                "declare the repository in [repos]: {alias} = \"https://...\""
                            ),
                        };
                        self.push(
                            Diagnostic::new(
                                DiagnosticKind::UndefinedRepo,
                                format!(
                                    "chart `{text}` of {address} uses the undeclared repo `{alias}`"
                                ),
                            )
                            .label(e.value.span.clone(), "repo not in [repos]")
                            .help(help),
                        );
                        None
                    }
                }
            }
            _ => {
                self.push(
                    Diagnostic::new(DiagnosticKind::InvalidValue, format!("invalid chart `{text}` in {address}"))
                        .label(e.value.span.clone(), "not a chart reference")
                        .help("write REPO/CHART (REPO from [repos]), oci://..., or a path starting with ./"),
                );
                None
            }
        }
    }

    fn read(&mut self, raw: &RawNode, address: &Address) -> Option<Read> {
        let api_version = self.required_template(raw, "api_version", address, "\"v1\"");
        let kind = self.required_template(raw, "kind", address, "\"Secret\"");
        let name = self.required_template(raw, "name", address, "\"NAME\"");
        let key = raw.field("key");
        let field = raw.field("field");
        let select = match (key, field) {
            (Some(k), Some(f)) => {
                self.push(
                    Diagnostic::new(DiagnosticKind::ConflictingFields, format!("{address} sets both `key` and `field`"))
                        .label(f.key_span.clone(), "")
                        .label(k.key_span.clone(), "")
                        .help("a read selects one value: keep `key` (a data key) or `field` (a field path)"),
                );
                None
            }
            (None, None) => {
                self.push(
                    Diagnostic::new(DiagnosticKind::MissingField, format!("{address} does not say what to read"))
                        .label(raw.name_span.clone(), "needs `key` or `field`")
                        .help("add key = \"ca.crt\" (a data key of a Secret or ConfigMap) or field = \"status.phase\""),
                );
                None
            }
            (Some(k), None) => self
                .literal_string(&k.value, &format!("`key` of {address}"))
                .map(ReadSelect::Key),
            (None, Some(f)) => {
                let text = self.literal_string(&f.value, &format!("`field` of {address}"))?;
                let path: Vec<String> = text
                    .trim_start_matches('.')
                    .split('.')
                    .map(String::from)
                    .collect();
                if path.iter().any(String::is_empty) {
                    self.push(
                        Diagnostic::new(
                            DiagnosticKind::InvalidValue,
                            format!("invalid field path `{text}`"),
                        )
                        .label(f.value.span.clone(), "empty path segment")
                        .help("write a dotted path such as \"status.loadBalancer.ingress\""),
                    );
                    None
                } else {
                    Some(ReadSelect::Field(path))
                }
            }
        };
        let kind = kind?;
        let is_secret = kind.as_literal().as_deref() == Some("Secret");
        let sensitive = self
            .opt_bool(raw, "sensitive", address)
            .unwrap_or(is_secret);
        Some(Read {
            api_version: api_version?,
            kind,
            name: name?,
            select: select?,
            sensitive,
        })
    }

    fn check(&mut self, raw: &RawNode, address: &Address) -> Option<Check> {
        let api_version =
            self.required_template(raw, "api_version", address, "\"cert-manager.io/v1\"");
        let kind = self.required_template(raw, "kind", address, "\"ClusterIssuer\"");
        let name = self.required_template(raw, "name", address, "\"NAME\"");
        let condition = match raw.field("condition") {
            Some(e) => self.literal_string(&e.value, &format!("`condition` of {address}")),
            None => {
                self.missing(
                    &address.to_string(),
                    "condition",
                    raw.name_span.clone(),
                    "\"Ready\"",
                );
                None
            }
        };
        let status = match raw.field("status") {
            Some(e) => self.literal_string(&e.value, &format!("`status` of {address}")),
            None => Some("True".to_string()),
        };
        Some(Check {
            api_version: api_version?,
            kind: kind?,
            name: name?,
            condition: condition?,
            status: status?,
        })
    }

    // ----- cross-node checks ------------------------------------------------------------

    /// Checks every reference of `node`; `enabled` nodes may not refer to disabled ones.
    fn check_references(
        &mut self,
        node: &Node,
        enabled: bool,
        all: &BTreeSet<Address>,
        disabled: &BTreeMap<Address, Span>,
    ) {
        let names: Vec<String> = all.iter().map(|a| a.to_string()).collect();
        let vars = self.vars.clone();
        let scope = VarScope(&vars);
        for r in node.references() {
            match &r.reference {
                Reference::Var { name, path } => {
                    let Some(var) = self.vars.get(name) else {
                        self.undefined_var(name, &r.span);
                        continue;
                    };
                    let mut value = &var.value;
                    let mut walked = format!("var.{name}");
                    for key in path {
                        match value.get(key) {
                            Some(v) => {
                                value = v;
                                walked.push('.');
                                walked.push_str(key);
                            }
                            None => {
                                let keys: Vec<&str> = value
                                    .as_object()
                                    .map(|m| m.keys().map(String::as_str).collect())
                                    .unwrap_or_default();
                                let help = match did_you_mean(key, keys.iter().copied()) {
                                    Some(s) => format!("did you mean `{walked}.{s}`?"),
                                    None if keys.is_empty() => format!(
                                        "`{walked}` is {}, not a table",
                                        super::template::json_type_name(value)
                                    ),
                                    None => format!("keys of `{walked}`: {}", keys.join(", ")),
                                };
                                self.push(
                                    Diagnostic::new(
                                        DiagnosticKind::UnknownAttribute,
                                        format!("`{walked}` has no key `{key}`"),
                                    )
                                    .label(r.span.clone(), "no such key")
                                    .help(help),
                                );
                                break;
                            }
                        }
                    }
                }
                Reference::Node { address, attribute } => {
                    if let Some(span) = disabled.get(address).filter(|_| enabled) {
                        self.push(
                            Diagnostic::new(
                                DiagnosticKind::DisabledNode,
                                format!("{} refers to {address}, which is disabled", node.address),
                            )
                            .label(r.span.clone(), "refers to a disabled node")
                            .label(span.clone(), "disabled by `enabled`")
                            .help("enable the node, or disable this one with the same condition"),
                        );
                        continue;
                    }
                    if !all.contains(address) {
                        let help = match did_you_mean(
                            &address.to_string(),
                            names.iter().map(String::as_str),
                        ) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!(
                                "declare it as [{}.{}], or fix the reference",
                                address.kind, address.name
                            ),
                        };
                        self.push(
                            Diagnostic::new(
                                DiagnosticKind::UndefinedNode,
                                format!("reference to undeclared node `{address}`"),
                            )
                            .label(r.span.clone(), "no such node")
                            .help(help),
                        );
                        continue;
                    }
                    let attributes = address.kind.attributes();
                    if !attributes.contains(&attribute.as_str()) {
                        let help = match did_you_mean(attribute, attributes.iter().copied()) {
                            Some(s) => format!("did you mean `{address}.{s}`?"),
                            None => format!(
                                "attributes of {} nodes: {}",
                                address.kind,
                                attributes.join(", ")
                            ),
                        };
                        self.push(
                            Diagnostic::new(
                                DiagnosticKind::UnknownAttribute,
                                format!("{} nodes have no attribute `{attribute}`", address.kind),
                            )
                            .label(r.span.clone(), "unknown attribute")
                            .help(help),
                        );
                    }
                }
            }
        }
        // Vars that are tables or arrays cannot be joined into a longer string.
        check_joins(node, &scope, &mut self.diags);
    }

    fn check_duplicate_objects(&mut self, nodes: &BTreeMap<Address, Node>) {
        let vars = self.vars.clone();
        let scope = VarScope(&vars);
        // A name or namespace that depends on something known only during apply is skipped.
        let known = |t: &Template| match t.evaluate(&scope) {
            Ok(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        // Looked up once per object (10,000s in a large manifest): hashed, not ordered.
        let mut seen: std::collections::HashMap<(String, String, String, String), (Address, Span)> =
            std::collections::HashMap::new();
        for node in nodes.values() {
            let NodeSpec::Manifest(m) = &node.spec else {
                continue;
            };
            for o in &m.objects {
                let Some(name) = known(&o.name) else {
                    continue;
                };
                let ns = match o.namespace.as_ref().or(node.namespace.as_ref()) {
                    Some(t) => match known(t) {
                        Some(ns) => ns,
                        None => continue,
                    },
                    None => String::new(),
                };
                let group = o
                    .api_version
                    .split('/')
                    .rev()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let key = (group, o.kind.clone(), ns.clone(), name.clone());
                if let Some((first, first_span)) = seen.get(&key) {
                    let shown = if ns.is_empty() {
                        format!("{} {name}", o.kind)
                    } else {
                        format!("{} {ns}/{name}", o.kind)
                    };
                    self.diags.push(
                        Diagnostic::new(
                            DiagnosticKind::DuplicateName,
                            format!("{shown} is declared twice ({first} and {})", node.address),
                        )
                        .label(o.span.clone(), "declared again here")
                        .label(first_span.clone(), "first declared here")
                        .help("an object belongs to one node: remove one of the declarations"),
                    );
                } else {
                    seen.insert(key, (node.address.clone(), o.span.clone()));
                }
            }
        }
    }
}

fn check_joins(node: &Node, scope: &VarScope<'_>, diags: &mut Vec<Diagnostic>) {
    use super::template::Scope as _;
    // Fields that are strings by nature: a lone reference must not bring a table or array.
    let mut fields: Vec<&Template> = node.namespace.iter().collect();
    match &node.spec {
        NodeSpec::Helm(h) => fields.extend(h.version.as_ref()),
        NodeSpec::Read(r) => fields.extend([&r.api_version, &r.kind, &r.name]),
        NodeSpec::Check(c) => fields.extend([&c.api_version, &c.kind, &c.name]),
        NodeSpec::Manifest(_) => {}
    }
    for t in fields {
        if let [Part::Ref(r)] = t.parts.as_slice()
            && let super::template::Lookup::Known(v) = scope.lookup(&r.reference)
            && (v.is_object() || v.is_array())
        {
            diags.push(
                Diagnostic::new(
                    DiagnosticKind::WrongType,
                    format!(
                        "`{}` is {}, but this field must be a string",
                        r.reference,
                        super::template::json_type_name(&v)
                    ),
                )
                .label(r.span.clone(), "not a string")
                .help("refer to a string variable, or to one key of the table"),
            );
        }
    }
    for t in node.templates() {
        if t.parts.len() < 2 {
            continue;
        }
        for part in &t.parts {
            let Part::Ref(r) = part else { continue };
            if let super::template::Lookup::Known(v) = scope.lookup(&r.reference)
                && (v.is_object() || v.is_array())
            {
                diags.push(
                    Diagnostic::new(
                        DiagnosticKind::WrongType,
                        format!(
                            "`{}` is {} and cannot be joined into a string",
                            r.reference,
                            super::template::json_type_name(&v)
                        ),
                    )
                    .label(r.span.clone(), "not a string, number or boolean")
                    .help(
                        "use the reference alone as the whole value, or refer to one of its keys",
                    ),
                );
            }
        }
    }
}

/// Vars only; node attributes are unknown.
struct VarScope<'a>(&'a BTreeMap<String, Var>);

impl super::template::Scope for VarScope<'_> {
    fn lookup(&self, reference: &Reference) -> super::template::Lookup {
        use super::template::Lookup;
        match reference {
            Reference::Var { name, path } => {
                let Some(var) = self.0.get(name) else {
                    return Lookup::Missing;
                };
                let mut value = &var.value;
                for key in path {
                    match value.get(key) {
                        Some(v) => value = v,
                        None => return Lookup::Missing,
                    }
                }
                Lookup::Known(value.clone())
            }
            Reference::Node { .. } => Lookup::Unknown,
        }
    }
}

/// `base/rel` without `.` components (`..` is kept: symlinks make it unsafe to fold).
fn join_clean(base: &Path, rel: &str) -> PathBuf {
    base.join(rel)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

fn display_dir(dir: &Path) -> String {
    let shown = dir.display().to_string();
    if shown.is_empty() {
        ".".to_string()
    } else {
        shown
    }
}

/// Lower-case DNS label: letters, digits, `-`; starts and ends alphanumeric; at most 63.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A raw (TOML) value as JSON; date-times become strings.
pub fn raw_to_json(value: &RawValue) -> serde_json::Value {
    match &value.kind {
        RawKind::Null => serde_json::Value::Null,
        RawKind::Bool(b) => serde_json::Value::Bool(*b),
        RawKind::Integer(i) => serde_json::Value::from(*i),
        RawKind::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        RawKind::String(s) | RawKind::Datetime(s) => serde_json::Value::String(s.clone()),
        RawKind::Array(items) => serde_json::Value::Array(items.iter().map(raw_to_json).collect()),
        RawKind::Table(t) => serde_json::Value::Object(
            t.entries
                .iter()
                .map(|e| (e.key.clone(), raw_to_json(&e.value)))
                .collect(),
        ),
    }
}

fn same_type(declared: &serde_json::Value, value: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (declared, value) {
        (J::Number(d), J::Number(v)) => d.is_f64() || !v.is_f64(),
        (J::String(_), J::String(_))
        | (J::Bool(_), J::Bool(_))
        | (J::Array(_), J::Array(_))
        | (J::Object(_), J::Object(_))
        | (J::Null, _) => true,
        _ => false,
    }
}

fn coerce(declared: &serde_json::Value, value: serde_json::Value) -> serde_json::Value {
    match (declared, &value) {
        (serde_json::Value::Number(d), serde_json::Value::Number(v))
            if d.is_f64() && !v.is_f64() =>
        {
            v.as_f64()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .unwrap_or(value)
        }
        _ => value,
    }
}

/// The value of `--var NAME=TEXT` for a declared var: strings take the text as is (a quoted
/// TOML string is unquoted); other types parse the text as a TOML value of that type.
fn cli_value(declared: &serde_json::Value, text: &str) -> Result<serde_json::Value, &'static str> {
    let parsed = parse_toml_literal(text);
    if declared.is_string() {
        return Ok(match parsed {
            Some(serde_json::Value::String(s)) if text.trim_start().starts_with(['"', '\'']) => {
                s.into()
            }
            _ => text.to_string().into(),
        });
    }
    match parsed {
        Some(v) if same_type(declared, &v) => Ok(coerce(declared, v)),
        Some(v) => Err(super::template::json_type_name(&v)),
        None => Err("not a TOML value"),
    }
}

/// Parses `text` as a TOML value (`true`, `3`, `1.5`, `"s"`, `[1, 2]`, `{ a = 1 }`).
fn parse_toml_literal(text: &str) -> Option<serde_json::Value> {
    let doc = format!("v = {text}");
    let root = parse_toml(FileId(usize::MAX), &doc).ok()?;
    let table = root.as_table()?;
    if table.entries.len() != 1 {
        return None;
    }
    table.get("v").map(|e| raw_to_json(&e.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_values_follow_the_declared_type() {
        let s = serde_json::json!("x");
        assert_eq!(cli_value(&s, "2.18.0"), Ok("2.18.0".into()));
        assert_eq!(cli_value(&s, "1.5"), Ok("1.5".into()));
        assert_eq!(cli_value(&s, "\"quoted\""), Ok("quoted".into()));
        assert_eq!(
            cli_value(&serde_json::json!(true), "false"),
            Ok(false.into())
        );
        assert_eq!(
            cli_value(&serde_json::json!(true), "yes"),
            Err("not a TOML value")
        );
        assert_eq!(cli_value(&serde_json::json!(1), "3"), Ok(3.into()));
        assert_eq!(cli_value(&serde_json::json!(1), "\"3\""), Err("a string"));
        assert_eq!(
            cli_value(&serde_json::json!(1.5), "3"),
            Ok(serde_json::json!(3.0))
        );
        assert_eq!(
            cli_value(&serde_json::json!({"a": 1}), "{ a = 2, b = \"c\" }"),
            Ok(serde_json::json!({"a": 2, "b": "c"}))
        );
    }

    /// A plan of one manifest node per file (`NAME.yaml` read by `manifest.NAME`): the raw
    /// plan, the build input, the sources and the files' ids, in order.
    fn manifest_plan(files: &[(&str, &str)]) -> (RawPlan, BuildInput, SourceMap, Vec<FileId>) {
        let mut text = "[plan]\nname = \"t\"\n".to_owned();
        for (name, _) in files {
            let node = name.trim_end_matches(".yaml");
            text.push_str(&format!("[manifest.{node}]\nfile = \"{name}\"\n"));
        }
        let mut sources = SourceMap::new();
        let plan_file = sources.add("plan.toml", text.as_str());
        let (raw, diags) = crate::planfile::parse_plan(plan_file, &text);
        assert!(diags.is_empty(), "{diags:?}");
        let mut input = BuildInput::default();
        let mut ids = Vec::new();
        for (name, content) in files {
            let id = sources.add(*name, *content);
            input
                .files
                .insert((*name).to_owned(), LoadedFile::Loaded(id));
            ids.push(id);
        }
        (raw, input, sources, ids)
    }

    /// Each node takes its file's parse with the next files, as many as there are threads.
    #[test]
    fn manifest_files_are_parsed_ahead_a_batch_at_a_time() {
        let yaml: Vec<(String, String)> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| {
                let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {n}\n");
                (format!("{n}.yaml"), text)
            })
            .collect();
        let files: Vec<(&str, &str)> = yaml.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        let (raw, input, mut sources, ids) = manifest_plan(&files);
        let unparsed = manifest_files(&raw, &input, &sources).into();
        let mut b = Builder {
            raw: &raw,
            input: &input,
            sources: &mut sources,
            diags: Vec::new(),
            vars: BTreeMap::new(),
            workers: 2,
            unparsed,
            parsed: BTreeMap::new(),
        };
        // The first node's file is parsed with the next one only: two threads, two files.
        let first = b.take_parsed(ids[0]).expect("parsed ahead");
        assert_eq!(first.map(|d| d.len()), Ok(1));
        assert_eq!(b.parsed.keys().collect::<Vec<_>>(), [&ids[1]]);
        assert_eq!(b.unparsed.len(), 3);
        // The next node takes it without parsing; the one after parses the next two.
        assert!(b.take_parsed(ids[1]).is_some());
        assert_eq!((b.parsed.len(), b.unparsed.len()), (0, 3));
        assert!(b.take_parsed(ids[2]).is_some());
        assert_eq!(b.parsed.keys().collect::<Vec<_>>(), [&ids[3]]);
        assert_eq!(b.unparsed.len(), 1);
        // A file taken already is left to its node (a second node reading it parses it).
        assert!(b.take_parsed(ids[0]).is_none());
    }

    /// Manifest files parsed ahead on several threads give each node what parsing its file
    /// itself gives: the same objects at the same places, the same diagnostics in node order.
    #[test]
    fn manifest_files_parsed_ahead_match_their_own_parse() {
        let files = [
            (
                "a.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
            ),
            ("b.yaml", "apiVersion: v1\nkind: [ConfigMap\n"),
            (
                "c.yaml",
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  x: 'y\n",
            ),
            (
                "d.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n",
            ),
        ];
        let (raw, input, mut sources, ids) = manifest_plan(&files);
        let ahead = parse_manifest_files(&raw, &input, &sources, 3);
        assert_eq!(ahead.len(), files.len());
        for (id, (_, content)) in ids.iter().zip(&files) {
            assert_eq!(ahead.get(id), Some(&parse_yaml(*id, content, 0)));
        }

        let (plan, diags) = build_partial(&raw, &input, &mut sources);
        // Each broken file's own parse error, in node order, pointing at the node's `file`.
        let expected: Vec<String> = [1, 2]
            .iter()
            .map(|&i| {
                parse_yaml(ids[i], files[i].1, 0)
                    .expect_err("a broken file")
                    .message
            })
            .collect();
        let messages: Vec<String> = diags.iter().map(|d| d.message.clone()).collect();
        assert_eq!(messages, expected);
        assert!(
            diags[0]
                .labels
                .iter()
                .any(|l| l.text.contains("manifest.b"))
        );
        assert!(
            diags[1]
                .labels
                .iter()
                .any(|l| l.text.contains("manifest.c"))
        );
        // The valid files' objects, at the spans of their own parse.
        for (i, names) in [(0, vec!["a"]), (3, vec!["d", "e"])] {
            let node = files[i].0.trim_end_matches(".yaml");
            let address = Address::new(NodeKind::Manifest, node.to_owned());
            let Some(NodeSpec::Manifest(manifest)) = plan.nodes.get(&address).map(|n| &n.spec)
            else {
                panic!("{address} was not built");
            };
            let own = parse_yaml(ids[i], files[i].1, 0).expect("a valid file");
            let spans: Vec<Span> = own.iter().map(|d| d.span.clone()).collect();
            assert_eq!(
                manifest
                    .objects
                    .iter()
                    .map(|o| o.span.clone())
                    .collect::<Vec<_>>(),
                spans
            );
            assert_eq!(
                manifest
                    .objects
                    .iter()
                    .map(|o| o.name.as_literal().unwrap_or_default())
                    .collect::<Vec<_>>(),
                names
            );
        }
    }

    /// Large files parsed in pieces give what their own parse gives; a file that a piece of it
    /// fails to parse is left to its node, which reports the whole file's error.
    #[test]
    fn large_manifest_files_parsed_in_pieces_match_their_own_parse() {
        let docs: String = (0..5_000)
            .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n"))
            .collect();
        let broken = format!("{docs}---\nkind: [ConfigMap\n{docs}");
        assert!(document_pieces(&docs, 2).is_some());
        let text = "[plan]\nname = \"t\"\n[manifest.a]\nfile = \"a.yaml\"\n[manifest.b]\nfile = \"b.yaml\"\n";
        let mut sources = SourceMap::new();
        let plan_file = sources.add("plan.toml", text);
        let (raw, diags) = crate::planfile::parse_plan(plan_file, text);
        assert!(diags.is_empty(), "{diags:?}");
        let mut input = BuildInput::default();
        let a = sources.add("a.yaml", docs.as_str());
        let b = sources.add("b.yaml", broken.as_str());
        input
            .files
            .insert("a.yaml".to_owned(), LoadedFile::Loaded(a));
        input
            .files
            .insert("b.yaml".to_owned(), LoadedFile::Loaded(b));

        let ahead = parse_manifest_files(&raw, &input, &sources, 2);
        assert_eq!(ahead.get(&a), Some(&parse_yaml(a, &docs, 0)));
        assert_eq!(ahead.get(&b), None);

        let (plan, diags) = build_partial(&raw, &input, &mut sources);
        let own_error = parse_yaml(b, &broken, 0).expect_err("a broken file");
        assert_eq!(
            diags.iter().map(|d| &d.message).collect::<Vec<_>>(),
            vec![&own_error.message]
        );
        assert_eq!(diags[0].labels.first(), own_error.labels.first());
        let address = Address::new(NodeKind::Manifest, "a".to_owned());
        let Some(NodeSpec::Manifest(manifest)) = plan.nodes.get(&address).map(|n| &n.spec) else {
            panic!("{address} was not built");
        };
        assert_eq!(manifest.objects.len(), 5_000);
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("linkerd-viz"));
        assert!(!is_dns_label("Linkerd"));
        assert!(!is_dns_label("a_b"));
        assert!(!is_dns_label("-a"));
    }
}
