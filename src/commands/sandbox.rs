use crate::cli::{ExitStatus, SandboxServeArgs};

pub async fn serve(_args: SandboxServeArgs) -> miette::Result<ExitStatus> {
    Err(miette::miette!("`meshplan sandbox serve` is not built yet"))
}
