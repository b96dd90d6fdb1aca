//! `meshplan version`: meshplan's version, helm's (`helm version`), and the server's when the
//! cluster is reachable (within a few seconds); always exits 0.

use std::time::Duration;

use crate::cli::{ExitStatus, OutputFormat, VersionArgs};
use crate::cluster::{Cluster as _, KubeCluster};
use crate::render::{HelmProcess, HelmRunError, HelmRunner as _};
use crate::report::version::{Component, Versions, render_human, render_json};

use super::connect_options;

/// How long `version` waits for the server.
const SERVER_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn run(args: VersionArgs) -> miette::Result<ExitStatus> {
    let (helm, server) = tokio::join!(helm_version(), server_version(&args));
    let versions = Versions {
        meshplan: env!("CARGO_PKG_VERSION").to_owned(),
        helm,
        server,
    };
    match args.output {
        OutputFormat::Human => super::terminal::out(&render_human(&versions)),
        OutputFormat::Json => super::terminal::out(&render_json(&versions)),
    }
    Ok(ExitStatus::Success)
}

async fn helm_version() -> Component {
    let helm = HelmProcess::from_env();
    let program = helm.program.display().to_string();
    let args = ["version", "--template", "{{.Version}}"].map(String::from);
    match helm.run(args.to_vec()).await {
        Ok(out) if out.success => Component::Known {
            version: out.stdout.trim().to_owned(),
            from: program,
        },
        Ok(out) => Component::Unknown {
            reason: format!("`{program} version` failed: {}", out.stderr.trim()),
        },
        Err(HelmRunError::NotFound { .. }) => Component::Unknown {
            reason: format!(
                "`{program}` not found (install helm: https://helm.sh/docs/intro/install/, or set MESHPLAN_HELM)"
            ),
        },
        Err(e) => Component::Unknown {
            reason: e.to_string(),
        },
    }
}

async fn server_version(args: &VersionArgs) -> Component {
    let cluster = match KubeCluster::connect(&connect_options(&args.cluster)).await {
        Ok(cluster) => cluster,
        Err(e) => {
            return Component::Unknown {
                reason: e.to_string(),
            };
        }
    };
    let from = crate::report::session_header_cluster(cluster.url(), cluster.context());
    match tokio::time::timeout(SERVER_TIMEOUT, cluster.server_version()).await {
        Ok(Ok(v)) => Component::Known {
            version: v.git_version,
            from,
        },
        Ok(Err(e)) => Component::Unknown {
            reason: e.to_string(),
        },
        Err(_) => Component::Unknown {
            reason: format!("{from} did not answer within {}s", SERVER_TIMEOUT.as_secs()),
        },
    }
}
