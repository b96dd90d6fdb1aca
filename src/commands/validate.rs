use crate::cli::{ExitStatus, ValidateArgs};

pub async fn run(_args: ValidateArgs) -> miette::Result<ExitStatus> {
    Err(miette::miette!("`meshplan validate` is not built yet"))
}
