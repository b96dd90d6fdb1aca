//! `meshplan state list|show|rm|unlock|migrate PLAN`: read the state's records, forget a
//! node's records, break a writer lock, move the state to the other backend. The plan's
//! `[state]` table says where the state is (`--state`, `--state-backend` override it).
//!
//! `list` and `show` take no lock; `rm` and `migrate` take the writer locks of the states
//! they write (waiting up to `--lock-timeout`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::{ExitStatus, OutputFormat, PlanInput, StateArgs, StateCommand, StateMigrateArgs};
use crate::cluster::KubeCluster;
use crate::model::StateBackend;
use crate::report;
use crate::state::location::{self, Overrides, Resolved};
use crate::state::{
    self, KubeLocation, KubeStore, LeaseGuard, LeaseLock, LeaseView, ObjectRecord, Remote,
    SledStore, StateError, StateLocation, StateStore, WriteBatch, WriterLock,
};

use super::{CommandError, connect_options, load_plan, state_overrides, terminal};

pub(super) async fn run(command: StateCommand) -> miette::Result<ExitStatus> {
    match command {
        StateCommand::List(l) => {
            let opened = open(&l.at, Mode::Read, "state list").await?;
            let store = opened.store.as_ref();
            let (meta, records, runs) = (store.meta()?, store.objects()?, store.unfinished_runs()?);
            let text = match l.output {
                OutputFormat::Human => report::state::list(&meta, &records, &runs),
                OutputFormat::Json => report::state::list_json(&meta, &records, &runs),
            };
            terminal::out(&text);
        }
        StateCommand::Show(a) => {
            let opened = open(&a.at, Mode::Read, "state show").await?;
            let records = records_of(opened.store.as_ref(), &a.address)?;
            let text = match a.output {
                OutputFormat::Human => report::state::show(&records).map_err(CommandError::Json)?,
                OutputFormat::Json => report::state::show_json(&records),
            };
            terminal::out(&text);
        }
        StateCommand::Rm(a) => {
            let mut opened = open(&a.at, Mode::Write, "state rm").await?;
            let records = records_of(opened.store.as_ref(), &a.address)?;
            let batch = records.iter().fold(WriteBatch::new(), |b, r| {
                b.remove_object(&r.node, &r.object)
            });
            let store = opened.store.clone();
            blocking(move || store.commit(batch)).await?;
            opened.close().await;
            terminal::err(&format!(
                "Removed {} record(s) of {} from the state; the objects stay in the cluster.\n",
                records.len(),
                a.address
            ));
        }
        StateCommand::Unlock(u) => return unlock(&u.at, u.force, u.auto_approve).await,
        StateCommand::Migrate(m) => return migrate(&m).await,
    }
    Ok(ExitStatus::Success)
}

/// Whether a state command writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
}

/// An opened state, with the Lease that makes a state in the cluster writable.
struct Opened {
    store: Arc<dyn StateStore>,
    kube: Option<Arc<KubeStore>>,
    guard: Option<LeaseGuard>,
}

impl Opened {
    /// Tidies up (chunks nothing references) and releases the Lease.
    async fn close(&mut self) {
        if let Some(kube) = self.kube.clone()
            && let Err(e) = blocking(move || kube.finish()).await
        {
            terminal::err(&format!("Warning: {e}\n"));
        }
        if let Some(guard) = self.guard.take()
            && let Err(e) = guard.release().await
        {
            terminal::err(&format!("Warning: {e} (the lock expires by itself)\n"));
        }
    }
}

/// Runs a blocking state call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StateError::Io {
            action: "run a state operation for",
            path: PathBuf::from("the state"),
            source: std::io::Error::other(e),
        })?
}

/// Where the state of `at` is: `--state` alone names a local directory (the plan is not
/// read); else the plan's `[state]` table with the command line's overrides.
fn resolve(at: &StateArgs, overrides: Overrides<'_>) -> miette::Result<Resolved> {
    let cwd = std::env::current_dir().map_err(CommandError::WorkingDirectory)?;
    if let Some(dir) = overrides.dir
        && overrides.backend != Some(StateBackend::Kubernetes)
    {
        let dir = location::normalize(&cwd.join(dir));
        return Ok(Resolved {
            location: StateLocation::Local { dir },
            lease: state::LeaseLocation {
                namespace: location::DEFAULT_LOCAL_LEASE_NAMESPACE.to_owned(),
                name: location::lease_name("state"),
                duration: location::DEFAULT_LEASE_DURATION,
            },
        });
    }
    let input = PlanInput {
        plan: at.plan.clone(),
        vars: Vec::new(),
        var_files: Vec::new(),
    };
    let loaded = load_plan(&input).ok_or(CommandError::PlanDoesNotLoad)?;
    Ok(location::resolve(
        &loaded.plan.name,
        &loaded.plan.base_dir,
        &loaded.plan.state,
        overrides,
        &cwd,
    )?)
}

/// The state's own client, for a state in the cluster.
async fn remote(at: &StateArgs) -> miette::Result<Arc<Remote>> {
    let cluster = KubeCluster::connect(&connect_options(&at.cluster)).await?;
    Ok(Remote::connect(cluster.kube_config().clone())?)
}

async fn open(at: &StateArgs, mode: Mode, command: &str) -> miette::Result<Opened> {
    let resolved = resolve(at, state_overrides(&at.location))?;
    let wait = at.location.lock_timeout;
    match resolved.location {
        StateLocation::Local { dir } => {
            let access = match mode {
                Mode::Read => state::Access::Read(wait),
                Mode::Write => state::Access::Write(wait),
            };
            let command = command.to_owned();
            let store = blocking(move || SledStore::open_for(&dir, &command, access)).await?;
            Ok(Opened {
                store: Arc::new(store),
                kube: None,
                guard: None,
            })
        }
        StateLocation::Kubernetes(k) => {
            let remote = remote(at).await?;
            let guard = match mode {
                Mode::Read => None,
                Mode::Write => Some(
                    LeaseLock::new(remote.clone(), resolved.lease.clone())
                        .acquire(command, wait)
                        .await?,
                ),
            };
            let store = open_kube(remote, k, guard.as_ref()).await?;
            Ok(Opened {
                store: store.clone(),
                kube: Some(store),
                guard,
            })
        }
    }
}

/// Opens a state in the cluster, writable under `guard` when one is given.
async fn open_kube(
    remote: Arc<Remote>,
    at: KubeLocation,
    guard: Option<&LeaseGuard>,
) -> Result<Arc<KubeStore>, StateError> {
    let store = Arc::new(blocking(move || KubeStore::open(remote, at)).await?);
    if let Some(guard) = guard {
        // Two requests: quick enough to run here.
        store.become_writer(guard)?;
    }
    Ok(store)
}

/// `state unlock`: the local lock is the system's (only a record left behind is tidied up);
/// a Lease is broken after confirmation — at once when its holder is gone, with `--force`
/// while it may still run.
async fn unlock(at: &StateArgs, force: bool, auto_approve: bool) -> miette::Result<ExitStatus> {
    let resolved = resolve(at, state_overrides(&at.location))?;
    match &resolved.location {
        StateLocation::Local { dir } => {
            let broken = if force {
                WriterLock::force_break(dir)?
            } else {
                WriterLock::break_stale(dir)?
            };
            match broken {
                Some(holder) => terminal::err(&format!(
                    "The state is not locked; removed the record left by {holder}, which has ended.\n"
                )),
                None => terminal::err("The state is not locked.\n"),
            }
            Ok(ExitStatus::Success)
        }
        StateLocation::Kubernetes(_) => {
            let remote = remote(at).await?;
            let lock = LeaseLock::new(remote, resolved.lease.clone());
            let view = lock.inspect().await?;
            let Some(holder) = view.holder().cloned() else {
                terminal::err(&format!(
                    "The state is not locked ({} is free).\n",
                    resolved.lease
                ));
                return Ok(ExitStatus::Success);
            };
            let alive = !view.is_takeable();
            if alive && !force {
                return Err(StateError::LeaseHeld {
                    lease: resolved.lease.to_string(),
                    holder: Box::new(holder),
                    expires_at: match &view {
                        LeaseView::Held { expires_at, .. } => {
                            Some(expires_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                        }
                        _ => None,
                    },
                }
                .into());
            }
            terminal::err(&format!(
                "{} is held by {holder}{}.\n",
                resolved.lease,
                if alive {
                    " — which may still be running (breaking it lets another run write while it does)"
                } else {
                    ", which has ended or stopped renewing it"
                }
            ));
            let interrupt = crate::apply::Interrupt::new();
            if !terminal::confirm("break this lock", auto_approve, &interrupt).await? {
                terminal::err("The lock was left in place.\n");
                return Ok(ExitStatus::Error);
            }
            match lock.break_lock(&view).await? {
                Some(holder) => terminal::err(&format!("Broke the lock of {holder}.\n")),
                None => terminal::err("The state is not locked.\n"),
            }
            Ok(ExitStatus::Success)
        }
    }
}

/// `state migrate --to BACKEND`: copies the state from the other backend under both locks,
/// verifies the copy (lineage, serial, records, digest of everything), then removes the
/// source.
async fn migrate(args: &StateMigrateArgs) -> miette::Result<ExitStatus> {
    let at = &args.at;
    let to: StateBackend = args.to.into();
    let from = match to {
        StateBackend::Local => StateBackend::Kubernetes,
        StateBackend::Kubernetes => StateBackend::Local,
    };
    let dir = at.location.state.as_deref();
    let local = resolve(
        at,
        Overrides {
            dir,
            backend: Some(StateBackend::Local),
        },
    )?;
    let kube = resolve(
        at,
        Overrides {
            dir: None,
            backend: Some(StateBackend::Kubernetes),
        },
    )?;
    let (StateLocation::Local { dir }, StateLocation::Kubernetes(k)) =
        (&local.location, &kube.location)
    else {
        unreachable!("resolved with the backend given");
    };
    let wait = at.location.lock_timeout;

    // Both locks: the local one, then the state's Lease.
    let (dir2, wait2) = (dir.clone(), wait);
    let sled = Arc::new(
        blocking(move || SledStore::open_for(&dir2, "state migrate", state::Access::Write(wait2)))
            .await?,
    );
    let remote = remote(at).await?;
    let guard = LeaseLock::new(remote.clone(), kube.lease.clone())
        .acquire("state migrate", wait)
        .await?;
    let kstore = open_kube(remote.clone(), k.clone(), Some(&guard)).await?;

    let (source, target): (Arc<dyn StateStore>, Arc<dyn StateStore>) = match to {
        StateBackend::Kubernetes => (sled.clone(), kstore.clone()),
        StateBackend::Local => (kstore.clone(), sled.clone()),
    };
    let snapshot = {
        let source = source.clone();
        blocking(move || source.export()).await?
    };
    terminal::err(&format!(
        "Copying the {} state ({}: lineage {}, serial {}, {} record(s), {} unfinished run(s)) to {}.\n",
        from.as_str(),
        source.describe(),
        snapshot.meta.lineage,
        snapshot.meta.serial,
        snapshot.object_count(),
        snapshot.unfinished_runs().len(),
        target.describe()
    ));
    match to {
        StateBackend::Kubernetes => {
            let (kstore, snapshot) = (kstore.clone(), snapshot.clone());
            blocking(move || kstore.import(&snapshot)).await?;
        }
        StateBackend::Local => {
            let (sled, snapshot) = (sled.clone(), snapshot.clone());
            blocking(move || sled.import(&snapshot)).await?;
        }
    }

    // Verify: read the copy back as a new reader would.
    let copy = match to {
        StateBackend::Kubernetes => {
            let fresh = open_kube(remote.clone(), k.clone(), None).await?;
            blocking(move || fresh.export()).await?
        }
        StateBackend::Local => {
            let sled = sled.clone();
            blocking(move || sled.export()).await?
        }
    };
    let same = copy.meta.lineage == snapshot.meta.lineage
        && copy.meta.serial == snapshot.meta.serial
        && copy.objects() == snapshot.objects()
        && copy.digest() == snapshot.digest();
    if !same {
        return Err(CommandError::MigrationMismatch {
            from: source.describe(),
            to: target.describe(),
        }
        .into());
    }
    terminal::err(&format!(
        "Verified: lineage {}, serial {}, {} record(s), digest {}.\n",
        copy.meta.lineage,
        copy.meta.serial,
        copy.object_count(),
        &copy.digest()[..16]
    ));

    // The copy is good: remove the source.
    match from {
        StateBackend::Kubernetes => {
            let kstore = kstore.clone();
            let removed = blocking(move || kstore.remove_all()).await?;
            terminal::err(&format!(
                "Removed the source: {removed} Secret(s) in namespace {}.\n",
                k.namespace
            ));
        }
        StateBackend::Local => {
            drop(source);
            drop(target);
            let db = dir.join("db");
            drop(sled);
            std::fs::remove_dir_all(&db).map_err(|source| StateError::Io {
                action: "remove the migrated database",
                path: db.clone(),
                source,
            })?;
            terminal::err(&format!(
                "Removed the source database {} (the key file, if any, stays).\n",
                db.display()
            ));
        }
    }
    if let Err(e) = blocking(move || kstore.finish()).await {
        terminal::err(&format!("Warning: {e}\n"));
    }
    if let Err(e) = guard.release().await {
        terminal::err(&format!("Warning: {e} (the lock expires by itself)\n"));
    }
    terminal::err(&format!(
        "The state is now in the {} backend: set `backend = \"{}\"` in the plan's [state] table (or pass --state-backend {}).\n",
        to.as_str(),
        to.as_str(),
        to.as_str()
    ));
    Ok(ExitStatus::Success)
}

/// The records of the node `address`; refused when there is none.
fn records_of(store: &dyn StateStore, address: &str) -> Result<Vec<ObjectRecord>, miette::Report> {
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
