//! `meshplan state list|show|rm|unlock PLAN`: read the state's records, forget a node's
//! records, break a writer lock whose holder is gone. The plan names the default state
//! directory.

use crate::cli::{ExitStatus, OutputFormat, PlanInput, StateArgs, StateCommand};
use crate::report;
use crate::state::{self, ObjectRecord, SledStore, StateStore as _, WriteBatch, WriterLock};

use super::{CommandError, load_plan, terminal};

pub(super) async fn run(command: StateCommand) -> miette::Result<ExitStatus> {
    match command {
        StateCommand::List(l) => {
            let store = SledStore::open(&state_dir(&l.at)?, "state list")?;
            let (meta, records, runs) = (store.meta()?, store.objects()?, store.unfinished_runs()?);
            let text = match l.output {
                OutputFormat::Human => report::state::list(&meta, &records, &runs),
                OutputFormat::Json => report::state::list_json(&meta, &records, &runs),
            };
            terminal::out(&text);
        }
        StateCommand::Show(a) => {
            let store = SledStore::open(&state_dir(&a.at)?, "state show")?;
            let records = records_of(&store, &a.address)?;
            let text = match a.output {
                OutputFormat::Human => report::state::show(&records).map_err(CommandError::Json)?,
                OutputFormat::Json => report::state::show_json(&records),
            };
            terminal::out(&text);
        }
        StateCommand::Rm(a) => {
            let store = SledStore::open(&state_dir(&a.at)?, "state rm")?;
            let records = records_of(&store, &a.address)?;
            let batch = records.iter().fold(WriteBatch::new(), |b, r| {
                b.remove_object(&r.node, &r.object)
            });
            store.commit(batch)?;
            terminal::err(&format!(
                "Removed {} record(s) of {} from the state; the objects stay in the cluster.\n",
                records.len(),
                a.address
            ));
        }
        StateCommand::Unlock(u) => {
            let dir = state_dir(&u.at)?;
            let broken = if u.force {
                WriterLock::force_break(&dir)?
            } else {
                WriterLock::break_stale(&dir)?
            };
            match broken {
                Some(holder) => terminal::err(&format!("Removed the lock of {holder}.\n")),
                None => terminal::err("The state is not locked.\n"),
            }
        }
    }
    Ok(ExitStatus::Success)
}

/// The state directory of a `state` subcommand (the plan names the default).
fn state_dir(at: &StateArgs) -> miette::Result<std::path::PathBuf> {
    let cwd = std::env::current_dir().map_err(CommandError::WorkingDirectory)?;
    let name = match &at.state {
        Some(_) => String::new(),
        None => {
            let input = PlanInput {
                plan: at.plan.clone(),
                vars: Vec::new(),
                var_files: Vec::new(),
            };
            load_plan(&input)
                .ok_or(CommandError::PlanDoesNotLoad)?
                .plan
                .name
        }
    };
    Ok(state::resolve_dir(at.state.as_deref(), &cwd, &name))
}

/// The records of the node `address`; refused when there is none.
fn records_of(store: &SledStore, address: &str) -> Result<Vec<ObjectRecord>, miette::Report> {
    let records: Vec<ObjectRecord> = store
        .objects()?
        .into_iter()
        .filter(|r| r.node == address)
        .collect();
    if records.is_empty() {
        return Err(CommandError::NoRecords {
            address: address.to_owned(),
        }
        .into());
    }
    Ok(records)
}
