//! What can stop a plan's diff, each error naming the node and the object.

use crate::cluster::{ClusterError, ObjectRef};

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
