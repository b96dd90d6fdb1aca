//! Stage 5, lint: Linkerd-aware checks of what would be applied, before anything is written.
//!
//! Pure over the rendered objects and facts: [`run`] takes a [`LintInput`] — the plan model
//! (with the spans of what was written), the render of every node, what each helm node's chart
//! declares ([`crate::render::ChartInfo`]), and, when online, [`ClusterFacts`] gathered
//! before in one place ([`facts::gather`]) — and returns a [`LintReport`]: findings with an
//! id, a severity, where (file:line:col and/or object and node), why and the fix.
//!
//! 1. [`context::Context`] indexes the input: every rendered object with its node (and the
//!    plan's own object, for file positions), the namespaces (the plan's, else the cluster's),
//!    the Linkerd control plane (the plan's helm node, else the installed one), each helm node's
//!    values.
//! 2. Each check of [`CheckId`] (the catalogue lives in the model, which validates the plan's
//!    suppressions against it) runs over the context and adds findings.
//! 3. Suppressions of the plan (`suppress` on a node) mark findings of their check on their
//!    node as suppressed, with the reason; suppressions that match nothing become notes.
//! 4. Findings are sorted (node, check, position), so output never depends on timing.
//!
//! What could not be checked (a chart that cannot be read, a custom resource whose CRD is
//! unknown offline, a node rendered only during apply) is listed in [`LintReport::notes`].

mod checks;
pub mod context;
pub mod facts;
pub mod linkerd;
pub mod path;
pub mod prepare;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Address, ObjectRef, Plan};
use crate::planfile::{SourceMap, Span};
use crate::render::{ChartInfo, PlanRender};

pub use crate::model::lint_checks::{CheckId, ClusterUse, Severity};
pub use facts::{ClusterFacts, InstalledControlPlane, gather};
pub use prepare::{PrepareError, Prepared, prepare};

/// Everything the checks read.
#[derive(Debug, Clone, Copy)]
pub struct LintInput<'a> {
    pub plan: &'a Plan,
    /// The files the plan was read from (positions of findings).
    pub sources: &'a SourceMap,
    pub render: &'a PlanRender,
    /// What each helm node's chart declares, or why it could not be read.
    pub charts: &'a BTreeMap<Address, Result<ChartInfo, String>>,
    /// Facts read from the cluster; None offline.
    pub cluster: Option<&'a ClusterFacts>,
}

/// A position in a file of the plan (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FilePosition {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl FilePosition {
    pub fn of(sources: &SourceMap, span: &Span) -> Self {
        let (line, column) = sources.line_col(span.file, span.range.start);
        Self {
            file: sources.name(span.file).to_string(),
            line,
            column,
        }
    }
}

impl std::fmt::Display for FilePosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: CheckId,
    pub severity: Severity,
    /// The node the finding is about.
    pub node: Address,
    /// The object, when the finding is about one.
    pub object: Option<ObjectRef>,
    /// The field inside the object or the values (`spec.podMetricsEndpoints[0].interval`).
    pub field: Option<String>,
    /// Where in the plan's files: the value, the manifest object, or the node's header.
    pub file: FilePosition,
    /// The chart template that rendered the object (helm's `# Source:`).
    pub template: Option<String>,
    /// What is wrong, naming the object or value.
    pub message: String,
    /// Why it matters.
    pub why: String,
    /// What to change.
    pub fix: String,
    /// The reason of the plan's `suppress` entry, when suppressed.
    pub suppressed: Option<String>,
}

impl Finding {
    fn sort_key(&self) -> impl Ord + '_ {
        (
            &self.node,
            self.check,
            &self.file,
            &self.object,
            &self.field,
            &self.message,
        )
    }
}

/// The result of a lint run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LintReport {
    /// Sorted by node, check and position.
    pub findings: Vec<Finding>,
    /// What could not be checked, and why (sorted).
    pub notes: Vec<String>,
    /// Whether the cluster was consulted.
    pub online: bool,
}

impl LintReport {
    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity && f.suppressed.is_none())
            .count()
    }

    /// Error-level findings that are not suppressed.
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    /// Warnings that are not suppressed.
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    pub fn suppressed(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.suppressed.is_some())
            .count()
    }

    /// Whether the findings stop apply (and make `lint` exit 1): an error, or a warning when
    /// warnings are denied.
    pub fn blocks(&self, deny_warnings: bool) -> bool {
        self.errors() > 0 || (deny_warnings && self.warnings() > 0)
    }
}

/// Runs every check. Pure: everything comes in through `input`.
pub fn run(input: &LintInput<'_>) -> LintReport {
    let ctx = context::Context::new(input);
    let mut findings = Vec::new();
    checks::run_all(&ctx, &mut findings);
    let mut notes = ctx.into_notes();

    // Suppressions: per node and check, with the reason.
    let mut used: BTreeMap<(Address, CheckId), bool> = BTreeMap::new();
    for node in input.plan.nodes.values() {
        for s in &node.suppress {
            used.insert((node.address.clone(), s.check), false);
        }
    }
    for f in &mut findings {
        let Some(node) = input.plan.nodes.get(&f.node) else {
            continue;
        };
        if let Some(s) = node.suppress.iter().find(|s| s.check == f.check) {
            f.suppressed = Some(s.reason.clone());
            used.insert((f.node.clone(), f.check), true);
        }
    }
    for ((node, check), was_used) in used {
        if !was_used {
            notes.push(format!(
                "{node}: the suppression of `{check}` matched no finding (remove it when it is \
                 no longer needed)"
            ));
        }
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    findings.dedup();
    notes.sort();
    notes.dedup();
    LintReport {
        findings,
        notes,
        online: input.cluster.is_some(),
    }
}
