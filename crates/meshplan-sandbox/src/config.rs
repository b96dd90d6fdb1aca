//! How a sandbox runs: its configuration ([`SandboxConfig`], [`AuthMode`]), the switches of
//! the simulated controllers ([`Controller`], [`ControllerConfig`]) and their pauses at run
//! time ([`Pauses`]). Plain types: every other module may use them, they use none.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Name of the cluster, context and user in the written kubeconfig.
pub const CONTEXT_NAME: &str = "meshplan-sandbox";

/// How clients authenticate. Credentials are the bearer token, or over TLS a client
/// certificate signed by the sandbox CA; a request with a wrong token always gets 401.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Credentials are required over TLS. Over plain HTTP a request without any is served as
    /// anonymous: kubectl (client-go) never sends credentials to an `http://` server, so this
    /// is what lets it use a plain-HTTP sandbox.
    #[default]
    Token,
    /// Credentials are required on every API request, plain HTTP included (kube-rs sends
    /// the token over HTTP; kubectl then needs `tls`).
    Strict,
    /// No checks (no token in the kubeconfig).
    Anonymous,
}

/// How to run a sandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Port on 127.0.0.1; 0 lets the OS choose.
    pub port: u16,
    /// Directory that keeps the objects across restarts (and the audit log `audit.log`);
    /// None keeps them in memory only.
    pub data_dir: Option<PathBuf>,
    /// The simulated controllers: switches, delays, time scale, webhook delay.
    pub controllers: ControllerConfig,
    pub auth: AuthMode,
    /// The bearer token; None makes a random one.
    pub token: Option<String>,
    /// Serve HTTPS with a generated CA, and accept client certificates it signed.
    pub tls: bool,
    /// Also write the audit log (JSON lines) to this file.
    pub audit_file: Option<PathBuf>,
}

impl SandboxConfig {
    /// A plain API server: no simulated controllers (objects keep the status clients write).
    pub fn api_only() -> Self {
        Self {
            controllers: ControllerConfig::none(),
            ..Self::default()
        }
    }
}

/// One simulated controller, for switches and pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, Namespaces, APIServices.
    Workloads,
    /// Issuers, ClusterIssuers and Certificates (when cert-manager's CRDs are installed).
    CertManager,
    /// Admission webhooks that refuse writes until their backend serves.
    Webhooks,
    /// Jobs that a Linkerd proxy keeps alive.
    Linkerd,
}

impl Controller {
    pub const ALL: [Controller; 4] = [
        Self::Workloads,
        Self::CertManager,
        Self::Webhooks,
        Self::Linkerd,
    ];

    /// `workloads`, `cert-manager`, `webhooks`, `linkerd`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Workloads => "workloads",
            Self::CertManager => "cert-manager",
            Self::Webhooks => "webhooks",
            Self::Linkerd => "linkerd",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The controllers' switches, delays and clock.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub workloads: bool,
    pub cert_manager: bool,
    pub webhooks: bool,
    pub linkerd: bool,
    /// From a workload's new spec to its completed rollout (and a Job's completion).
    pub rollout_delay: Duration,
    /// How long a webhook's backing Deployment must have been Available before the webhook
    /// answers (measured in whole seconds from its Available condition).
    pub webhook_delay: Duration,
    /// cert-manager's virtual clock runs this many times faster than real time (1.0: real).
    pub time_scale: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            workloads: true,
            cert_manager: true,
            webhooks: true,
            linkerd: true,
            rollout_delay: Duration::from_millis(300),
            webhook_delay: Duration::from_secs(1),
            time_scale: 1.0,
        }
    }
}

impl ControllerConfig {
    /// Every controller off: a plain API server.
    pub fn none() -> Self {
        Self {
            workloads: false,
            cert_manager: false,
            webhooks: false,
            linkerd: false,
            ..Self::default()
        }
    }

    pub fn enabled(&self, c: Controller) -> bool {
        match c {
            Controller::Workloads => self.workloads,
            Controller::CertManager => self.cert_manager,
            Controller::Webhooks => self.webhooks,
            Controller::Linkerd => self.linkerd,
        }
    }

    pub fn any_enabled(&self) -> bool {
        Controller::ALL.iter().any(|c| self.enabled(*c))
    }
}

/// Pause switches, shared with the admin endpoint.
#[derive(Debug, Default)]
pub(crate) struct Pauses {
    flags: [AtomicBool; 4],
}

impl Pauses {
    pub(crate) fn set(&self, c: Controller, paused: bool) {
        self.flags[c.index()].store(paused, Ordering::SeqCst);
    }

    pub(crate) fn is_paused(&self, c: Controller) -> bool {
        self.flags[c.index()].load(Ordering::SeqCst)
    }

    #[cfg(test)]
    pub(crate) fn paused(&self) -> Vec<&'static str> {
        Controller::ALL
            .into_iter()
            .filter(|c| self.is_paused(*c))
            .map(Controller::name)
            .collect()
    }
}
