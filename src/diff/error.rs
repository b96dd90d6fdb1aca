//! What can stop a plan's diff, each error naming the node and the object.

use crate::cluster::{ClusterError, ObjectRef};

/// What provides the kind of `object` (its CRD, from the project that publishes it when the
/// group is a well-known one) and how to get it, for the node `node` that uses it.
pub fn provider_hint(node: &str, object: &ObjectRef) -> String {
    let group = object.group();
    let known = match group {
        "cert-manager.io" | "acme.cert-manager.io" => {
            Some("cert-manager's CRDs (chart jetstack/cert-manager with crds.enabled=true)")
        }
        "trust.cert-manager.io" => Some("trust-manager's CRDs (chart jetstack/trust-manager)"),
        "monitoring.coreos.com" => Some(
            "the Prometheus Operator's CRDs (chart prometheus-community/prometheus-operator-crds)",
        ),
        "linkerd.io"
        | "policy.linkerd.io"
        | "workload.linkerd.io"
        | "externalworkloads.linkerd.io" => Some("Linkerd's CRDs (chart linkerd/linkerd-crds)"),
        "gateway.networking.k8s.io" => {
            Some("the Gateway API CRDs (gateway-api's standard-install.yaml)")
        }
        _ => None,
    };
    let crd = if group.is_empty() {
        format!(
            "kind {} of the core group is not a custom resource: check the apiVersion",
            object.kind
        )
    } else {
        format!(
            "a CustomResourceDefinition of group {group} that serves kind {} at {}",
            object.kind, object.api_version
        )
    };
    let what = match known {
        Some(project) => format!("{crd}; it comes with {project}"),
        None => crd,
    };
    format!(
        "it needs {what}. Install it in the cluster first, or add a node that applies it and list that node in depends_on of {node}; or check the apiVersion"
    )
}

impl DiffError {
    /// The error for an object of a kind neither served nor defined by the plan.
    pub fn kind_not_installed(node: String, object: ObjectRef) -> Self {
        Self::KindNotInstalled {
            provider: provider_hint(&node, &object),
            kind: object.kind_ref().to_string(),
            node,
            object: Box::new(object),
        }
    }

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
    #[diagnostic(code(diff::kind_not_installed), help("{provider}"))]
    KindNotInstalled {
        node: String,
        kind: String,
        object: Box<ObjectRef>,
        /// What would provide the kind, and how to get it ([`provider_hint`]).
        provider: String,
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
