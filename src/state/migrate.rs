//! Format versions and migrations.
//!
//! A state written by an older meshplan is migrated on open, one format at a time: each
//! [`Migration`] reads the database and returns the writes that turn format `from` into
//! `from + 1`; those writes and the new format number are committed in one transaction, so a
//! failed or interrupted migration leaves the state at a format it fully has. A state of a
//! newer format is refused untouched.

use std::path::Path;

use super::StateError;
use super::sled_store::{TreeId, Trees, commit_raw};

/// One write of a migration: put (`Some`) or remove (`None`) `key` in a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawWrite {
    pub tree: TreeId,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sled_store::SledStore;
    use crate::state::{ObjectRecord, ObjectRef, ProtectedBody, StateStore, WriteBatch};

    const V1: Formats<'static> = Formats {
        current: 1,
        migrations: &[],
    };

    /// A fake format 2: every object record gains a `-v2` suffix on its digest.
    fn to_v2(trees: &Trees) -> Result<Vec<RawWrite>, String> {
        let mut out = Vec::new();
        for item in trees.get(TreeId::Objects).iter() {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let mut record: serde_json::Value =
                serde_json::from_slice(&v).map_err(|e| e.to_string())?;
            let digest = record["applied_digest"].as_str().unwrap_or("").to_owned();
            record["applied_digest"] = format!("{digest}-v2").into();
            out.push(RawWrite {
                tree: TreeId::Objects,
                key: k.to_vec(),
                value: Some(serde_json::to_vec(&record).map_err(|e| e.to_string())?),
            });
        }
        Ok(out)
    }

    fn broken(_: &Trees) -> Result<Vec<RawWrite>, String> {
        Err("the old layout is damaged".to_owned())
    }

    const V2: Formats<'static> = Formats {
        current: 2,
        migrations: &[Migration {
            from: 1,
            run: to_v2,
        }],
    };
    const V2_BROKEN: Formats<'static> = Formats {
        current: 2,
        migrations: &[Migration {
            from: 1,
            run: broken,
        }],
    };
    const V3_GAP: Formats<'static> = Formats {
        current: 3,
        migrations: &[Migration {
            from: 1,
            run: to_v2,
        }],
    };

    fn record(name: &str) -> ObjectRecord {
        ObjectRecord {
            node: "manifest.a".into(),
            object: ObjectRef::new("v1", "ConfigMap", Some("default"), name),
            uid: None,
            resource_version: Some("5".into()),
            applied_digest: "d".into(),
            last_applied: ProtectedBody::plain(serde_json::json!({"kind": "ConfigMap"})).unwrap(),
        }
    }

    #[test]
    fn an_older_format_is_migrated_keeping_lineage_and_serial() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let s = SledStore::open_with(dir.path(), "apply", &V1).unwrap();
            s.commit(WriteBatch::new().put_object(record("x"))).unwrap()
        };
        assert_eq!(before.format, 1);
        let s = SledStore::open_with(dir.path(), "plan", &V2).unwrap();
        let after = s.meta().unwrap();
        assert_eq!(after.format, 2);
        assert_eq!(after.lineage, before.lineage);
        assert_eq!(after.serial, before.serial);
        let objects = s.objects().unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].applied_digest, "d-v2");
        drop(s);
        // Format 2 is now newer than what a format-1 build knows.
        let err = SledStore::open_with(dir.path(), "plan", &V1).unwrap_err();
        assert!(
            matches!(
                err,
                StateError::NewerFormat {
                    found: 2,
                    known: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_failed_migration_leaves_the_state_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        drop(SledStore::open_with(dir.path(), "apply", &V1).unwrap());
        let err = SledStore::open_with(dir.path(), "plan", &V2_BROKEN).unwrap_err();
        assert!(
            matches!(&err, StateError::Migration { from: 1, message, .. } if message.contains("damaged")),
            "{err}"
        );
        let s = SledStore::open_with(dir.path(), "plan", &V1).unwrap();
        assert_eq!(s.meta().unwrap().format, 1);
    }

    #[test]
    fn a_missing_migration_step_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        drop(SledStore::open_with(dir.path(), "apply", &V1).unwrap());
        let err = SledStore::open_with(dir.path(), "plan", &V3_GAP).unwrap_err();
        assert!(
            matches!(
                err,
                StateError::NoMigration {
                    found: 2,
                    known: 3,
                    ..
                }
            ),
            "{err}"
        );
    }
}
