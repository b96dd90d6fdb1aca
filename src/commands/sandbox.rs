//! `meshplan sandbox serve`: run the API sandbox until Ctrl-C or SIGTERM.

use crate::cli::{ExitStatus, SandboxServeArgs};
use crate::sandbox::{self, SandboxConfig};

pub async fn serve(args: SandboxServeArgs) -> miette::Result<ExitStatus> {
    let sandbox = sandbox::start(SandboxConfig {
        port: args.port,
        data_dir: args.data.clone(),
    })
    .await?;
    sandbox.write_kubeconfig(&args.kubeconfig)?;
    println!(
        "meshplan sandbox listening on {} (kubeconfig: {})",
        sandbox.url(),
        args.kubeconfig.display()
    );
    wait_for_stop().await;
    eprintln!("stopping the sandbox");
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
