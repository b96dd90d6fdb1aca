//! What can go wrong while applying, each error naming the node and the object.

use std::time::Duration;

use crate::cluster::{ClusterError, FieldConflict, ObjectRef};
use crate::model::human_duration;
use crate::state::StateError;

fn conflict_list(conflicts: &[FieldConflict]) -> String {
    conflicts
        .iter()
        .map(|c| format!("{} (owned by {})", c.field, c.manager))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why one step failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StepError {
    #[error("{node}: writing {object} failed")]
    #[diagnostic(code(apply::write))]
    Write {
        node: String,
        object: Box<ObjectRef>,
        #[source]
        source: Box<ClusterError>,
    },

    #[error(
        "{node}: {object} conflicts with another field manager: {}",
        conflict_list(conflicts)
    )]
    #[diagnostic(
        code(apply::conflict),
        help(
            "meshplan never takes fields silently: remove those fields from the other manager, or apply with --force-conflicts to take them"
        )
    )]
    Conflict {
        node: String,
        object: Box<ObjectRef>,
        conflicts: Vec<FieldConflict>,
    },

    #[error("{node}: the admission webhook for {object} stayed unavailable for {}: {message}", human_duration(*waited))]
    #[diagnostic(
        code(apply::webhook),
        help("check that the webhook's Deployment runs and its Service has endpoints")
    )]
    WebhookUnavailable {
        node: String,
        object: Box<ObjectRef>,
        waited: Duration,
        message: String,
    },

    #[error("{node}: {object} was not ready after {}: waited for {waited_for}; last seen: {last_seen}", human_duration(*timeout))]
    #[diagnostic(code(apply::timeout))]
    TimedOut {
        node: String,
        object: Box<ObjectRef>,
        timeout: Duration,
        waited_for: String,
        last_seen: String,
        #[help]
        hint: Option<String>,
    },

    #[error("{node}: interrupted while waiting for {waited_for} of {object}")]
    #[diagnostic(code(apply::interrupted))]
    Interrupted {
        node: String,
        object: Box<ObjectRef>,
        waited_for: String,
    },

    #[error("{node}: {object} will not become ready: {reason}")]
    #[diagnostic(code(apply::not_ready))]
    NotReady {
        node: String,
        object: Box<ObjectRef>,
        reason: String,
    },

    #[error("{node}: waiting for {object} failed")]
    #[diagnostic(code(apply::wait))]
    Wait {
        node: String,
        object: Box<ObjectRef>,
        #[source]
        source: Box<ClusterError>,
    },

    #[error("{node}: the state could not record the step on {object}")]
    #[diagnostic(
        code(apply::state),
        help("the step was not done, or its outcome is in the journal; run again to resume")
    )]
    State {
        node: String,
        object: Box<ObjectRef>,
        #[source]
        source: Box<StateError>,
    },

    #[error("{node}: {object} has no desired body")]
    #[diagnostic(code(apply::no_body), help("this is a bug in the plan stage"))]
    NoBody {
        node: String,
        object: Box<ObjectRef>,
    },

    #[error("{node}: {object} is not owned by this plan (ownership marks missing): left in place")]
    #[diagnostic(code(apply::not_owned))]
    NotOwned {
        node: String,
        object: Box<ObjectRef>,
    },
}

impl StepError {
    /// The object the step was about.
    pub fn object(&self) -> &ObjectRef {
        match self {
            Self::Write { object, .. }
            | Self::Conflict { object, .. }
            | Self::WebhookUnavailable { object, .. }
            | Self::TimedOut { object, .. }
            | Self::NotReady { object, .. }
            | Self::Interrupted { object, .. }
            | Self::Wait { object, .. }
            | Self::State { object, .. }
            | Self::NoBody { object, .. }
            | Self::NotOwned { object, .. } => object,
        }
    }

    /// The message, with the source's and the hint's text (for reports and events).
    pub fn full_message(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        if let Self::TimedOut {
            hint: Some(hint), ..
        } = self
        {
            text.push_str(". Likely cause: ");
            text.push_str(hint);
        }
        text
    }
}

/// Why a run could not start (once started, a run never fails with an error: it reports).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ApplyError {
    #[error("the state holds an unfinished {command} run {run} (started {started_at})")]
    #[diagnostic(
        code(apply::unfinished_run),
        help(
            "a previous run stopped part-way; finish it first: complete it (keep what it did) or roll it back"
        )
    )]
    UnfinishedRun {
        run: String,
        command: String,
        started_at: String,
    },

    #[error("the state could not be read or written")]
    #[diagnostic(code(apply::state))]
    State(#[source] StateError),

    #[error("destroy refused: {} {} prevent_destroy = true", nodes.join(", "), if nodes.len() == 1 { "has" } else { "have" })]
    #[diagnostic(
        code(apply::prevent_destroy),
        help(
            "remove prevent_destroy from the node in the plan first, or leave it out with --target"
        )
    )]
    PreventDestroy { nodes: Vec<String> },

    /// What [`DestroyRequest::preview`](super::DestroyRequest::preview) refuses with, before
    /// the objects are listed.
    #[error("refusing to destroy: prevent_destroy is set on {}", nodes.join(", "))]
    #[diagnostic(help(
        "leave those nodes out with --target (destroy the nodes that do not depend on them), or set prevent_destroy = false"
    ))]
    Protected { nodes: Vec<String> },

    #[error("the node {node} depends on {dependency}, which is not in the input")]
    #[diagnostic(code(apply::input))]
    UnknownDependency { node: String, dependency: String },

    #[error("the dependencies of the nodes form a cycle through {}", nodes.join(", "))]
    #[diagnostic(code(apply::cycle))]
    Cycle { nodes: Vec<String> },

    #[error("the cluster could not be read")]
    #[diagnostic(code(apply::cluster))]
    Cluster(#[source] ClusterError),
}

impl From<StateError> for ApplyError {
    fn from(e: StateError) -> Self {
        Self::State(e)
    }
}
