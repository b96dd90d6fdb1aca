//! Format versions and migrations.
//!
//! A state written by an older meshplan is migrated on open, one format at a time: each
//! [`Migration`] reads the database and returns the writes that turn format `from` into
//! `from + 1`; those writes and the new format number are committed in one transaction, so a
//! failed or interrupted migration leaves the state at a format it fully has. A state of a
//! newer format is refused untouched.

use std::path::Path;

use super::StateError;
use super::trees::{RawWrite, Trees, commit_raw};

/// Turns format `from` into `from + 1`.
pub(crate) struct Migration {
    pub from: u32,
    pub run: fn(&Trees) -> Result<Vec<RawWrite>, String>,
}

/// The format this build writes and the migrations that lead to it.
pub(crate) struct Formats<'a> {
    pub current: u32,
    pub migrations: &'a [Migration],
}

/// What this meshplan knows: format 1, the first one; no older formats exist yet.
pub(crate) const FORMATS: Formats<'static> = Formats {
    current: super::FORMAT_VERSION,
    migrations: &[],
};

/// Migrates the state at `found` up to `formats.current`.
pub(crate) fn migrate(
    path: &Path,
    trees: &Trees,
    found: u32,
    formats: &Formats<'_>,
) -> Result<(), StateError> {
    let mut format = found;
    while format < formats.current {
        let Some(step) = formats.migrations.iter().find(|m| m.from == format) else {
            return Err(StateError::NoMigration {
                path: path.to_path_buf(),
                found: format,
                known: formats.current,
            });
        };
        let writes = (step.run)(trees).map_err(|message| StateError::Migration {
            path: path.to_path_buf(),
            from: format,
            message,
        })?;
        commit_raw(path, trees, &writes, format + 1)?;
        format += 1;
    }
    Ok(())
}
