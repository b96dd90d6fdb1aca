use crate::cli::{ExitStatus, GraphArgs};

pub async fn run(_args: GraphArgs) -> miette::Result<ExitStatus> {
    Err(miette::miette!("`meshplan graph` is not built yet"))
}
