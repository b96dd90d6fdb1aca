//! `meshplan validate PLAN`: load the plan (parse, model, graph) and print a summary.

use crate::cli::{ExitStatus, ValidateArgs};
use crate::report;

use super::{load_plan, terminal};

pub(super) async fn run(args: ValidateArgs) -> miette::Result<ExitStatus> {
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(ExitStatus::Error);
    };
    terminal::out(&report::validate::summary(&loaded));
    Ok(ExitStatus::Success)
}
