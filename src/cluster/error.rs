//! What can go wrong talking to a cluster, each error naming the object or the URL.

use std::fmt;
use std::path::PathBuf;

use meshplan_k8s::text::clip_message;
use meshplan_k8s::{KindRef, ObjectRef};

/// What a failed request was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Object(ObjectRef),
    /// A list or watch of a kind, in a namespace or cluster-wide.
    Kind {
        kind: KindRef,
        namespace: Option<String>,
    },
    /// A request about the cluster itself (version, discovery).
    Cluster,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Object(o) => write!(f, "{o}"),
            Self::Kind {
                kind,
                namespace: Some(ns),
            } => write!(f, "{kind} in namespace {ns}"),
            Self::Kind {
                kind,
                namespace: None,
            } => write!(f, "{kind} in all namespaces"),
            Self::Cluster => write!(f, "the cluster"),
        }
    }
}

/// A field another field manager owns, from an apply conflict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct FieldConflict {
    /// The other field manager, e.g. `kubectl-client-side-apply`.
    pub manager: String,
    /// The field path, e.g. `.data.a`.
    pub field: String,
}

/// One reason the server gave for refusing an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCause {
    pub field: String,
    pub reason: String,
    pub message: String,
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ClusterError {
    #[error("the kubeconfig {path} cannot be used: {message}")]
    #[diagnostic(
        code(cluster::kubeconfig),
        help("check the file, or point --kubeconfig / KUBECONFIG at another one")
    )]
    Kubeconfig { path: PathBuf, message: String },

    #[error("no kubeconfig found: {message}")]
    #[diagnostic(
        code(cluster::no_kubeconfig),
        help("pass --kubeconfig FILE, set KUBECONFIG, or create ~/.kube/config")
    )]
    NoKubeconfig { message: String },

    #[error("the kubeconfig {path} has no context named {context}")]
    #[diagnostic(
        code(cluster::no_context),
        help("list the contexts with `kubectl config get-contexts`")
    )]
    NoContext { path: PathBuf, context: String },

    #[error("the cluster at {url} is unreachable")]
    #[diagnostic(
        code(cluster::unreachable),
        help("check that the cluster runs and that the kubeconfig's server URL is right")
    )]
    Unreachable {
        url: String,
        #[source]
        source: kube::Error,
    },

    #[error("TLS with the cluster at {url} failed: {message}")]
    #[diagnostic(
        code(cluster::tls),
        help(
            "the server's certificate must be valid for the host of the kubeconfig's `server` URL (or its `tls-server-name`) and signed by its `certificate-authority(-data)`: check those, or that the URL points at the right server"
        )
    )]
    Tls {
        url: String,
        /// What the TLS layer said (e.g. `invalid peer certificate: NotValidForName`).
        message: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("the cluster at {url} did not answer within {}", crate::model::format_duration(*after))]
    #[diagnostic(
        code(cluster::no_answer),
        help(
            "the server accepts connections but does not answer: check the API server (or the proxy in front of it); --request-timeout sets how long to wait"
        )
    )]
    NoAnswer {
        url: String,
        after: std::time::Duration,
    },

    #[error("the cluster at {url} refused the credentials: {message}")]
    #[diagnostic(
        code(cluster::unauthorized),
        help("the credentials are invalid or expired: log in again or refresh the kubeconfig")
    )]
    Unauthorized { url: String, message: String },

    #[error("access to {target} is forbidden: {message}")]
    #[diagnostic(
        code(cluster::forbidden),
        help("the kubeconfig's user lacks the RBAC permission; ask for it or use another context")
    )]
    Forbidden {
        target: Box<Target>,
        message: String,
    },

    #[error("{object} does not exist")]
    #[diagnostic(code(cluster::not_found))]
    NotFound { object: Box<ObjectRef> },

    #[error("{object} already exists")]
    #[diagnostic(code(cluster::already_exists))]
    AlreadyExists { object: Box<ObjectRef> },

    #[error("{object}: {message}")]
    #[diagnostic(
        code(cluster::conflict),
        help(
            "another field manager owns these fields (or the object changed meanwhile); meshplan never takes fields silently"
        )
    )]
    Conflict {
        object: Box<ObjectRef>,
        /// The fields and their managers; empty for a resourceVersion conflict.
        conflicts: Vec<FieldConflict>,
        message: String,
    },

    #[error("{object} is invalid: {message}")]
    #[diagnostic(code(cluster::invalid))]
    Invalid {
        object: Box<ObjectRef>,
        causes: Vec<InvalidCause>,
        message: String,
    },

    #[error("kind {kind} is not installed in the cluster")]
    #[diagnostic(
        code(cluster::kind_not_installed),
        help("install its CRD first, or add the node that creates it")
    )]
    KindNotInstalled { kind: KindRef },

    #[error("the object body is not a usable Kubernetes object: {message}")]
    #[diagnostic(code(cluster::bad_object))]
    BadObject { message: String },

    #[error("request about {target} failed: {} ({})", status.message, status.code)]
    #[diagnostic(code(cluster::api))]
    Other {
        target: Box<Target>,
        status: Box<kube::core::Status>,
    },

    #[error("request about {target} failed")]
    #[diagnostic(code(cluster::request))]
    Request {
        target: Box<Target>,
        #[source]
        source: kube::Error,
    },
}

impl ClusterError {
    /// Whether the server did not know the resource asked about: a 404 for a kind, or for an
    /// object (which is also what a kind that is no longer served answers).
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::NotFound { .. } => true,
            Self::Other { status, .. } => status.code == 404,
            _ => false,
        }
    }

    /// Whether this is an apply conflict with another field manager.
    pub fn is_field_conflict(&self) -> bool {
        matches!(self, Self::Conflict { conflicts, .. } if !conflicts.is_empty())
    }

    /// Whether an admission webhook could not be called (`failed calling webhook`): the
    /// webhook's service is not ready yet, and the write is worth retrying.
    pub fn is_webhook_unavailable(&self) -> bool {
        let message = match self {
            Self::Other { status, .. } => status.message.as_str(),
            Self::Invalid { message, .. } | Self::Forbidden { message, .. } => message.as_str(),
            _ => return false,
        };
        message.contains("failed calling webhook")
    }

    /// The error for a Status the server answered (its messages already clipped).
    fn from_status(
        status: Box<kube::core::Status>,
        conflicts: Vec<FieldConflict>,
        target: Target,
        url: &str,
    ) -> Self {
        let object = || match &target {
            Target::Object(o) => Box::new(o.clone()),
            Target::Kind { kind, namespace } => Box::new(ObjectRef {
                api_version: kind.api_version.clone(),
                kind: kind.kind.clone(),
                namespace: namespace.clone(),
                name: String::new(),
            }),
            Target::Cluster => Box::new(ObjectRef::new("", "", None, "")),
        };
        match (status.code, status.reason.as_str()) {
            (401, _) => Self::Unauthorized {
                url: url.to_owned(),
                message: status.message,
            },
            (403, _) => Self::Forbidden {
                target: Box::new(target),
                message: status.message,
            },
            (404, _) if matches!(target, Target::Object(_)) => Self::NotFound { object: object() },
            (409, "AlreadyExists") => Self::AlreadyExists { object: object() },
            (409, _) => Self::Conflict {
                object: object(),
                conflicts,
                message: status.message,
            },
            // Server-side apply of a field the schema does not declare is answered with a
            // 500 "failed to create typed patch object" by real API servers.
            (400 | 422, _) | (500, _)
                if matches!(target, Target::Object(_))
                    && (status.code != 500
                        || status
                            .message
                            .contains("failed to create typed patch object")) =>
            {
                Self::Invalid {
                    object: object(),
                    causes: status
                        .details
                        .as_ref()
                        .map(|d| {
                            d.causes
                                .iter()
                                .map(|c| InvalidCause {
                                    field: c.field.clone(),
                                    reason: c.reason.clone(),
                                    message: c.message.clone(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    message: status.message,
                }
            }
            _ => Self::Other {
                target: Box::new(target),
                status,
            },
        }
    }

    /// Maps a kube error for a request about `target` to the cluster at `url`.
    pub(crate) fn from_kube(err: kube::Error, target: Target, url: &str) -> Self {
        if let Some(no_answer) = super::transport::find_no_answer(&err) {
            return Self::NoAnswer {
                url: url.to_owned(),
                after: no_answer.after,
            };
        }
        match err {
            kube::Error::Api(mut status) => {
                // The server's words may quote a value of any size (an invalid 1 MB field):
                // kept to a bounded length, after the conflicts are read from them.
                let conflicts = if status.code == 409 {
                    field_conflicts(&status)
                } else {
                    Vec::new()
                };
                status.message = clip_message(&status.message);
                if let Some(details) = status.details.as_mut() {
                    for cause in &mut details.causes {
                        cause.message = clip_message(&cause.message);
                    }
                }
                Self::from_status(status, conflicts, target, url)
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) => match tls_problem(&err) {
                Some(message) => Self::Tls {
                    url: url.to_owned(),
                    message,
                    source: Box::new(err),
                },
                None => Self::Unreachable {
                    url: url.to_owned(),
                    source: err,
                },
            },
            kube::Error::Auth(e) => Self::Unauthorized {
                url: url.to_owned(),
                message: e.to_string(),
            },
            other => Self::Request {
                target: Box::new(target),
                source: other,
            },
        }
    }
}

/// What the TLS layer said, when a connection failed in the TLS handshake (a certificate
/// not valid for the name, signed by an unknown authority, expired): the first error of the
/// chain that speaks of certificates or TLS.
fn tls_problem(err: &kube::Error) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        let lower = text.to_ascii_lowercase();
        if ["certificate", "tls", "handshake", "x509"]
            .iter()
            .any(|w| lower.contains(w))
        {
            return Some(text);
        }
        current = e.source();
    }
    None
}

/// The conflicts of an apply: from `details.causes` (`FieldManagerConflict`, message
/// `conflict with "MANAGER"...`, field `.data.a`), else from the message's lines
/// (`conflict with "MANAGER" using v1: .data.a`). Sorted.
pub fn field_conflicts(status: &kube::core::Status) -> Vec<FieldConflict> {
    let mut out: Vec<FieldConflict> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .filter(|c| c.reason == "FieldManagerConflict")
        .filter_map(|c| {
            Some(FieldConflict {
                manager: quoted(&c.message)?.to_owned(),
                field: c.field.clone(),
            })
        })
        .collect();
    if out.is_empty() {
        for part in status.message.split('\n') {
            let Some(manager) = quoted(part) else {
                continue;
            };
            if let Some((_, field)) = part.rsplit_once(": ") {
                out.push(FieldConflict {
                    manager: manager.to_owned(),
                    field: field.trim().to_owned(),
                });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn quoted(text: &str) -> Option<&str> {
    let start = text.find("conflict with \"")? + "conflict with \"".len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::StatusDetails;

    #[test]
    fn webhook_failures_are_recognised() {
        let mut status = kube::core::Status::failure(
            "Internal error occurred: failed calling webhook \"webhook.cert-manager.io\": connection refused",
            "InternalError",
        );
        status.code = 500;
        let target = Target::Object(ObjectRef::new(
            "cert-manager.io/v1",
            "Issuer",
            Some("a"),
            "b",
        ));
        let err = ClusterError::from_kube(kube::Error::Api(Box::new(status)), target.clone(), "u");
        assert!(err.is_webhook_unavailable(), "{err}");
        let mut status = kube::core::Status::failure("boom", "InternalError");
        status.code = 500;
        let err = ClusterError::from_kube(kube::Error::Api(Box::new(status)), target, "u");
        assert!(!err.is_webhook_unavailable());
        assert!(matches!(err, ClusterError::Other { .. }));
    }

    #[test]
    fn conflicts_come_from_causes_or_the_message() {
        let mut status = kube::core::Status::failure(
            "Apply failed with 2 conflicts: conflict with \"kubectl\" using v1: .data.a\nconflict with \"helm\" using v1: .data.b",
            "Conflict",
        );
        status.code = 409;
        let from_message = field_conflicts(&status);
        assert_eq!(
            from_message,
            vec![
                FieldConflict {
                    manager: "helm".into(),
                    field: ".data.b".into()
                },
                FieldConflict {
                    manager: "kubectl".into(),
                    field: ".data.a".into()
                },
            ]
        );
        status.details = Some(
            serde_json::from_value::<StatusDetails>(serde_json::json!({
                "name": "cm", "kind": "configmaps",
                "causes": [{"reason": "FieldManagerConflict",
                            "message": "conflict with \"other\" using v1", "field": ".data.a"}]
            }))
            .unwrap(),
        );
        assert_eq!(
            field_conflicts(&status),
            vec![FieldConflict {
                manager: "other".into(),
                field: ".data.a".into()
            }]
        );
    }
}
