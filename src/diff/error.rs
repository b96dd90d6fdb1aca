//! What can stop a plan's diff, each error naming the node and the object.

use crate::cluster::{ClusterError, ObjectRef};

impl DiffError {
    /// Whether the error can come from a discovery that is out of date (a kind installed or
    /// removed since it was fetched): planning again with a fresh one may succeed.
    pub fn may_be_stale_discovery(&self) -> bool {
        match self {
            Self::KindNotInstalled { .. } => true,
            Self::Cluster { source, .. } | Self::Read { source, .. } => {
                source.is_not_found() || matches!(source, ClusterError::KindNotInstalled { .. })
            }
            _ => false,
        }
    }
}

/// Why the diff failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DiffError {
    #[error(
        "{node}: kind {kind} of {object} is not installed in the cluster and no CRD of this plan defines it"
    )]
    #[diagnostic(
        code(diff::kind_not_installed),
        help(
            "install the CRD first, add the node that creates it (e.g. a chart with its CRDs), or check the apiVersion"
        )
    )]
    KindNotInstalled {
        node: String,
        kind: String,
        object: Box<ObjectRef>,
    },

    #[error("{node}: {object} does not match the schema of its CRD (created by this plan): {}", errors.join("; "))]
    #[diagnostic(code(diff::crd_schema))]
    CrdSchema {
        node: String,
        object: Box<ObjectRef>,
        errors: Vec<String>,
    },

    #[error("{node}: the cluster refuses {object}: {message}")]
    #[diagnostic(
        code(diff::rejected),
        help(
            "the server-side apply dry run failed; fix the object in the plan (or its chart values)"
        )
    )]
    Rejected {
        node: String,
        object: Box<ObjectRef>,
        message: String,
    },

    #[error("{node}: cannot plan {object}")]
    #[diagnostic(code(diff::cluster))]
    Cluster {
        node: String,
        object: Box<ObjectRef>,
        #[source]
        #[diagnostic_source]
        source: ClusterError,
    },

    #[error("cannot read the value of {node} from {object}")]
    #[diagnostic(code(diff::read))]
    Read {
        node: String,
        object: Box<ObjectRef>,
        #[source]
        #[diagnostic_source]
        source: ClusterError,
    },
}
