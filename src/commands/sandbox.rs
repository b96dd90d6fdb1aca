//! `meshplan sandbox serve`: run the API sandbox until Ctrl-C or SIGTERM.

use std::time::Duration;

use meshplan_sandbox::{self as sandbox, AuthMode, Controller, ControllerConfig, SandboxConfig};

use crate::cli::{ExitStatus, SandboxServeArgs};

pub(super) async fn serve(args: SandboxServeArgs) -> miette::Result<ExitStatus> {
    let mut controllers = if args.no_controllers {
        ControllerConfig::none()
    } else {
        ControllerConfig::default()
    };
    for name in &args.disable_controller {
        match Controller::parse(name) {
            Some(Controller::Workloads) => controllers.workloads = false,
            Some(Controller::CertManager) => controllers.cert_manager = false,
            Some(Controller::Webhooks) => controllers.webhooks = false,
            Some(Controller::Linkerd) => controllers.linkerd = false,
            None => {}
        }
    }
    controllers.rollout_delay = Duration::from_millis(args.rollout_delay_ms);
    controllers.webhook_delay = Duration::from_millis(args.webhook_delay_ms);
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        return Err(miette::miette!(
            "--time-scale must be a positive number, not {}",
            args.time_scale
        ));
    }
    controllers.time_scale = args.time_scale;
    let sandbox = sandbox::start(SandboxConfig {
        port: args.port,
        data_dir: args.data.clone(),
        controllers,
        auth: match args.auth.as_str() {
            "strict" => AuthMode::Strict,
            "anonymous" => AuthMode::Anonymous,
            _ => AuthMode::Token,
        },
        token: None,
        tls: args.tls,
        audit_file: args.audit.clone(),
    })
    .await?;
    sandbox.write_kubeconfig(&args.kubeconfig)?;
    super::terminal::out(&format!(
        "meshplan sandbox listening on {} (kubeconfig: {})\n",
        sandbox.url(),
        args.kubeconfig.display()
    ));
    wait_for_stop().await;
    super::terminal::err("stopping the sandbox\n");
    sandbox.shutdown().await?;
    Ok(ExitStatus::Success)
}

#[cfg(unix)]
async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_stop() {
    let _ = tokio::signal::ctrl_c().await;
}
