//! Errors of the render stage: each names the node (and the chart or object) it is about.

use std::path::PathBuf;

use crate::model::{Address, EvalError};

use super::cache::CacheError;

/// Why a node could not be rendered.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RenderError {
    #[error(
        "helm is not installed (`{program}` not found); the plan renders {} with it",
        nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    #[diagnostic(
        code(render::helm_not_found),
        help(
            "install helm 3.8 or newer (https://helm.sh/docs/intro/install/; from a meshplan checkout: `bash scripts/install-helm.sh`), or set MESHPLAN_HELM to the helm binary"
        )
    )]
    HelmNotFound {
        /// The first node that needed helm.
        node: Address,
        program: String,
        /// Every node that needed it (helm missing is reported once, for all of them).
        nodes: Vec<Address>,
    },

    #[error("{node}: cannot run helm `{program}`")]
    #[diagnostic(code(render::helm_io))]
    HelmIo {
        node: Address,
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{node}: `helm {command}` failed for chart {chart}:\n{stderr}")]
    #[diagnostic(code(render::helm_failed))]
    HelmFailed {
        node: Address,
        chart: String,
        command: String,
        stderr: String,
        /// The way out when helm could not reach the chart's repository (`--repo-dir`).
        #[help]
        help: Option<Box<String>>,
    },

    #[error("{node}: chart {chart} does not exist (no `{}`)", path.display())]
    #[diagnostic(code(render::chart_not_found))]
    ChartNotFound {
        node: Address,
        chart: String,
        path: PathBuf,
        /// The nearest chart name in the same directory, or where to look.
        #[help]
        help: String,
    },

    #[error("{node}: chart in `{}` has version {found}, the plan pins {wanted}", path.display())]
    #[diagnostic(
        code(render::chart_version),
        help(
            "point the repository directory at charts of the pinned version, or change the version"
        )
    )]
    ChartVersionMismatch {
        node: Address,
        path: PathBuf,
        wanted: String,
        found: String,
    },

    #[error("{node}: cannot read chart `{}`: {message}", path.display())]
    #[diagnostic(code(render::chart_unreadable))]
    ChartUnreadable {
        node: Address,
        path: PathBuf,
        message: String,
    },

    #[error("{node}: helm printed a document that is not a Kubernetes object{}: {message}",
        source_file.as_deref().map(|s| format!(" ({s})")).unwrap_or_default())]
    #[diagnostic(code(render::bad_output))]
    BadOutput {
        node: Address,
        source_file: Option<String>,
        message: String,
    },

    #[error("{node}: {object} has an invalid hook annotation `{annotation}: {value}`")]
    #[diagnostic(
        code(render::bad_hook),
        help(
            "hook phases: pre-install, post-install, pre-upgrade, post-upgrade, pre-delete, post-delete, pre-rollback, post-rollback, test; delete policies: before-hook-creation, hook-succeeded, hook-failed"
        )
    )]
    BadHook {
        node: Address,
        object: String,
        annotation: &'static str,
        value: String,
    },

    #[error("{node}: cannot evaluate a value")]
    #[diagnostic(code(render::eval))]
    Eval {
        node: Address,
        #[source]
        source: Box<EvalError>,
    },

    #[error("{node}: cannot write the values file")]
    #[diagnostic(code(render::values_file))]
    ValuesFile {
        node: Address,
        #[source]
        source: std::io::Error,
    },

    #[error("{node}: render cache")]
    #[diagnostic(code(render::cache))]
    Cache {
        node: Address,
        #[source]
        source: CacheError,
    },
}

impl RenderError {
    /// The node the error is about.
    pub fn node(&self) -> &Address {
        match self {
            RenderError::HelmNotFound { node, .. }
            | RenderError::HelmIo { node, .. }
            | RenderError::HelmFailed { node, .. }
            | RenderError::ChartNotFound { node, .. }
            | RenderError::ChartVersionMismatch { node, .. }
            | RenderError::ChartUnreadable { node, .. }
            | RenderError::BadOutput { node, .. }
            | RenderError::BadHook { node, .. }
            | RenderError::Eval { node, .. }
            | RenderError::ValuesFile { node, .. }
            | RenderError::Cache { node, .. } => node,
        }
    }
}

/// Every node that failed to render, in address order.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{} node(s) could not be rendered", errors.len())]
#[diagnostic(code(render::failed))]
pub struct RenderErrors {
    #[related]
    pub errors: Vec<RenderError>,
}
