//! [`SandboxError`]: why the sandbox could not start, persist or write its kubeconfig.

use std::path::PathBuf;

use super::admin::AuditFileError;
use super::transport::TransportError;

/// Why the sandbox could not start, persist or write its kubeconfig.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SandboxError {
    #[error("cannot listen on 127.0.0.1:{port}")]
    #[diagnostic(
        code(sandbox::bind),
        help("choose another --port, or 0 to let the system pick one")
    )]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the sandbox runtime")]
    #[diagnostic(code(sandbox::runtime))]
    Runtime(#[source] std::io::Error),
    #[error("cannot read the sandbox data at {path}")]
    #[diagnostic(code(sandbox::data_read))]
    DataRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the sandbox data at {path} is unreadable: {message}")]
    #[diagnostic(
        code(sandbox::data_corrupt),
        help("move the file away to start with an empty cluster")
    )]
    DataCorrupt { path: PathBuf, message: String },
    #[error("cannot write the sandbox data at {path}")]
    #[diagnostic(code(sandbox::data_write))]
    DataWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Audit(#[from] AuditFileError),
    #[error("cannot write the kubeconfig {path}")]
    #[diagnostic(code(sandbox::kubeconfig))]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
