//! `meshplan completions SHELL` and `meshplan man [--dir DIR]`: generated from the clap
//! definitions of this very binary (clap_complete, clap_mangen), so they always match its
//! commands and flags. `meshplan schema`: the JSON Schema of the plan file, generated from the
//! declarations the parser checks plans against (`planfile::shape`). A subcommand rather than a build step: `cargo install` users get them
//! without a checkout, and packagers run `meshplan man --dir` in their install step.

use std::io::Write as _;

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs, ExitStatus, ManArgs};

use super::CommandError;

/// The completion script for `args.shell`, on stdout.
pub(super) fn completions(args: CompletionsArgs) -> miette::Result<ExitStatus> {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, "meshplan", &mut out);
    out.flush().map_err(CommandError::Terminal)?;
    Ok(ExitStatus::Success)
}

/// The JSON Schema of the plan file on stdout (the same text as `docs/plan.schema.json`).
pub(super) fn schema() -> miette::Result<ExitStatus> {
    super::terminal::out(&plan_schema_text());
    Ok(ExitStatus::Success)
}

/// The plan file's JSON Schema, pretty-printed, with a final newline.
fn plan_schema_text() -> String {
    let ids: Vec<&str> = crate::model::lint_checks::CheckId::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    let schema = crate::planfile::shape::json_schema(&ids);
    // A `Value` always serializes; the fallback keeps the no-unwrap rule without a panic path.
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_else(|e| format!("{e}"));
    text.push('\n');
    text
}

/// The man page (roff) on stdout; with `--dir`, `meshplan.1` and one page per command
/// (`meshplan-plan.1`, `meshplan-state-list.1`, ...) written into the directory.
pub(super) fn man(args: ManArgs) -> miette::Result<ExitStatus> {
    let command = Cli::command();
    match &args.dir {
        None => {
            let mut page = Vec::new();
            render(&command, &mut page)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&page).map_err(CommandError::Terminal)?;
            out.flush().map_err(CommandError::Terminal)?;
        }
        Some(dir) => {
            let write_err = |path: &std::path::Path| {
                let path = path.to_path_buf();
                move |source| CommandError::Write { path, source }
            };
            std::fs::create_dir_all(dir).map_err(write_err(dir))?;
            let mut written = 0;
            for (name, cmd) in pages(&command) {
                let path = dir.join(format!("{name}.1"));
                let mut page = Vec::new();
                render(&cmd, &mut page)?;
                std::fs::write(&path, page).map_err(write_err(&path))?;
                written += 1;
            }
            super::terminal::err(&format!(
                "Wrote {written} man pages to {}.\n",
                dir.display()
            ));
        }
    }
    Ok(ExitStatus::Success)
}

fn render(command: &clap::Command, out: &mut Vec<u8>) -> Result<(), CommandError> {
    clap_mangen::Man::new(command.clone())
        .render(out)
        .map_err(CommandError::Terminal)
}

/// Every command with its page name (`meshplan`, `meshplan-plan`, `meshplan-state-list`),
/// each named for its page's NAME and SYNOPSIS.
fn pages(root: &clap::Command) -> Vec<(String, clap::Command)> {
    let mut out = Vec::new();
    let mut stack = vec![(root.get_name().to_owned(), root.clone())];
    while let Some((name, cmd)) = stack.pop() {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() == "help" {
                continue;
            }
            let sub_name = format!("{name}-{}", sub.get_name());
            stack.push((sub_name.clone(), sub.clone().name(sub_name)));
        }
        out.push((name, cmd));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_page() {
        let names: Vec<String> = pages(&Cli::command()).into_iter().map(|p| p.0).collect();
        for name in [
            "meshplan",
            "meshplan-plan",
            "meshplan-apply",
            "meshplan-show",
            "meshplan-state-list",
            "meshplan-completions",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        let mut page = Vec::new();
        render(&Cli::command(), &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with(".ie"), "{}", &page[..40]);
        assert!(page.contains("meshplan"), "{page}");
    }
}
