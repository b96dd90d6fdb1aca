//! The catalogue of lint checks: a closed set of ids, each with one severity, a title, why it
//! matters and whether it reads the cluster. The plan language refers to checks by id
//! (`suppress = [{ check = "meshed-job", reason = "..." }]`, validated by the model), so ids
//! are stable: never rename one, only add. The checks themselves are `crate::lint`'s.

use std::fmt;

use serde::{Serialize, Serializer};

/// How bad a finding is: errors stop `apply` (and make `lint` exit 1); warnings are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a check needs from the cluster (none: fully offline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterUse {
    /// Works from the plan alone.
    None,
    /// Works offline from the plan; with the cluster it also knows what is installed.
    Optional(&'static str),
}

/// One lint check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckId {
    MeshedJob,
    UnknownChartValue,
    CrdSchema,
    IssuerCertificate,
    IssuerKeyAlgorithm,
    ControlPlaneNamespace,
    VizDashboardHost,
    IngressDstOverride,
    IngressInjectMode,
    MonitorInterval,
}

impl CheckId {
    /// Every check, in the order reports list them.
    pub const ALL: [CheckId; 10] = [
        Self::MeshedJob,
        Self::UnknownChartValue,
        Self::CrdSchema,
        Self::IssuerCertificate,
        Self::IssuerKeyAlgorithm,
        Self::ControlPlaneNamespace,
        Self::VizDashboardHost,
        Self::IngressDstOverride,
        Self::IngressInjectMode,
        Self::MonitorInterval,
    ];

    /// The stable id users write in suppressions and read in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MeshedJob => "meshed-job",
            Self::UnknownChartValue => "unknown-chart-value",
            Self::CrdSchema => "crd-schema",
            Self::IssuerCertificate => "issuer-certificate",
            Self::IssuerKeyAlgorithm => "issuer-key-algorithm",
            Self::ControlPlaneNamespace => "control-plane-namespace",
            Self::VizDashboardHost => "viz-dashboard-host",
            Self::IngressDstOverride => "ingress-dst-override",
            Self::IngressInjectMode => "ingress-inject-mode",
            Self::MonitorInterval => "monitor-interval",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    pub fn severity(self) -> Severity {
        match self {
            Self::MeshedJob
            | Self::CrdSchema
            | Self::IssuerCertificate
            | Self::ControlPlaneNamespace
            | Self::VizDashboardHost => Severity::Error,
            Self::UnknownChartValue
            | Self::IssuerKeyAlgorithm
            | Self::IngressDstOverride
            | Self::IngressInjectMode
            | Self::MonitorInterval => Severity::Warning,
        }
    }

    /// One line: what the check looks for.
    pub fn title(self) -> &'static str {
        match self {
            Self::MeshedJob => "Jobs whose pod gets a classic Linkerd proxy never complete",
            Self::UnknownChartValue => "chart values the chart does not declare",
            Self::CrdSchema => "custom resources that their CRD's schema refuses",
            Self::IssuerCertificate => {
                "the identity issuer certificate Linkerd uses is not what Linkerd needs"
            }
            Self::IssuerKeyAlgorithm => "the identity issuer key is not ECDSA P-256",
            Self::ControlPlaneNamespace => {
                "a control plane namespace created by the plan lacks the labels Linkerd needs"
            }
            Self::VizDashboardHost => "the viz dashboard behind an Ingress whose host it refuses",
            Self::IngressDstOverride => {
                "a Traefik Ingress to a meshed Service without l5d-dst-override"
            }
            Self::IngressInjectMode => "Traefik meshed without linkerd.io/inject: ingress",
            Self::MonitorInterval => {
                "Linkerd monitors scraping less often than Linkerd's dashboards need"
            }
        }
    }

    /// Why a finding of this check matters.
    pub fn why(self) -> &'static str {
        match self {
            Self::MeshedJob => {
                "the linkerd-proxy container keeps running after the Job's own containers exit, \
                 so the pod never ends and the Job never completes: apply waits until its \
                 timeout and rolls back"
            }
            Self::UnknownChartValue => {
                "helm silently ignores values a chart does not declare: a misspelled key (or one \
                 a newer chart version removed) leaves the feature it meant at its default"
            }
            Self::CrdSchema => {
                "the API server refuses a custom resource that does not match its CRD's schema: \
                 apply stops at the first such object"
            }
            Self::IssuerCertificate => {
                "Linkerd's identity controller signs every proxy's certificate with the issuer \
                 certificate: a wrong one leaves proxies without identity (no mTLS, no traffic)"
            }
            Self::IssuerKeyAlgorithm => {
                "Linkerd's documentation and tooling use ECDSA P-256 issuer keys; other \
                 algorithms are slower or unsupported by some Linkerd versions"
            }
            Self::ControlPlaneNamespace => {
                "the control plane's own pods must not be injected or validated by its \
                 webhooks, and Linkerd's CLI and extensions find the control plane by these \
                 labels"
            }
            Self::VizDashboardHost => {
                "the viz dashboard answers only Host headers its enforcedHostRegexp accepts: \
                 through this Ingress every request gets a 403 (DNS rebinding protection)"
            }
            Self::IngressDstOverride => {
                "a meshed ingress must tell Linkerd which Service a request is for \
                 (l5d-dst-override); without it the proxy balances to the pod address and \
                 service-level features (retries, timeouts, traffic splits) are skipped"
            }
            Self::IngressInjectMode => {
                "with linkerd.io/inject: enabled the ingress' proxy routes by the destination \
                 address and ignores l5d-dst-override; ingress mode makes it honour the header"
            }
            Self::MonitorInterval => {
                "Linkerd's dashboards and `linkerd viz` compute rates over 30 s windows: a longer \
                 scrape interval leaves them empty or wrong"
            }
        }
    }

    /// Whether and why the check reads the cluster.
    pub fn cluster_use(self) -> ClusterUse {
        match self {
            Self::MeshedJob => ClusterUse::Optional(
                "the installed control plane's proxy mode (linkerd-config) and the namespaces' \
                 inject annotations, when the plan does not set them",
            ),
            Self::CrdSchema => ClusterUse::Optional(
                "the cluster's CRDs, for custom resources whose CRD the plan does not create",
            ),
            Self::IssuerCertificate => ClusterUse::Optional(
                "the cluster's Issuers and ClusterIssuers (issuerRef) and the installed control \
                 plane's trust domain",
            ),
            Self::IngressDstOverride | Self::IngressInjectMode => ClusterUse::Optional(
                "the namespaces' inject annotations and the cluster's Traefik workloads",
            ),
            Self::UnknownChartValue
            | Self::IssuerKeyAlgorithm
            | Self::ControlPlaneNamespace
            | Self::VizDashboardHost
            | Self::MonitorInterval => ClusterUse::None,
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CheckId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for c in CheckId::ALL {
            assert_eq!(CheckId::parse(c.as_str()), Some(c));
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(!c.title().is_empty() && !c.why().is_empty());
        }
    }
}
