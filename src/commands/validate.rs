//! `meshplan validate PLAN`: load the plan (parse, model, graph) and print a summary, or
//! (`--output json`) the summary or every problem as data on stdout.

use crate::cli::{ExitStatus, OutputFormat, ValidateArgs};
use crate::load::load;
use crate::report;

use super::{load_plan, load_request, terminal};

pub(super) async fn run(args: ValidateArgs) -> miette::Result<ExitStatus> {
    if args.output == OutputFormat::Json {
        return Ok(match load(&load_request(&args.input)) {
            Ok(loaded) => {
                terminal::out(&report::validate::summary_json(&loaded));
                ExitStatus::Success
            }
            Err(diags) => {
                terminal::out(&report::validate::diagnostics_json(&diags));
                ExitStatus::Error
            }
        });
    }
    let Some(loaded) = load_plan(&args.input) else {
        return Ok(ExitStatus::Error);
    };
    terminal::out(&report::validate::summary(&loaded));
    Ok(ExitStatus::Success)
}
