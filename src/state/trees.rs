//! The database's trees and raw writes: the layout that both the store ([`super::sled_store`])
//! and its format migrations ([`super::migrate`]) work on.
//!
//! 1. [`TreeId`] names the trees, in transaction order; [`Trees`] holds them open.
//! 2. [`RawWrite`] is one put or remove of bytes in a tree; [`commit_raw`] commits a list of
//!    them together with a format number in one transaction (state creation, migrations).
//!
//! Nothing here knows what the values mean; the store encodes and decodes them.

use std::path::Path;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

use super::StateError;

/// The key of the format number in the `meta` tree.
pub(crate) const K_FORMAT: &[u8] = b"format";

/// The trees of the database, in transaction order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeId {
    Meta = 0,
    Objects = 1,
    Render = 2,
    Discovery = 3,
    Runs = 4,
    Journal = 5,
}

const TREE_NAMES: [&str; 6] = ["meta", "objects", "render", "discovery", "runs", "journal"];

/// The open trees (handles: a clone shares them).
#[derive(Clone)]
pub(crate) struct Trees {
    trees: Vec<sled::Tree>,
}

impl Trees {
    /// Opens (creating if needed) every tree of `db`; `path` names the state in errors.
    pub(crate) fn open(db: &sled::Db, path: &Path) -> Result<Self, StateError> {
        let trees = TREE_NAMES
            .iter()
            .map(|name| db.open_tree(name).map_err(|e| db_err(path, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { trees })
    }

    pub(crate) fn get(&self, id: TreeId) -> &sled::Tree {
        &self.trees[id as usize]
    }

    /// Whether every tree is empty (a database created but never written).
    pub(crate) fn are_empty(&self) -> bool {
        self.trees.iter().all(sled::Tree::is_empty)
    }

    /// The trees in transaction order (index = [`TreeId`]).
    pub(crate) fn refs(&self) -> Vec<&sled::Tree> {
        self.trees.iter().collect()
    }
}

/// One raw write: put (`Some`) or remove (`None`) `key` in a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawWrite {
    pub tree: TreeId,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

impl RawWrite {
    /// A put of `value` at `key` in `tree`.
    pub(crate) fn put(tree: TreeId, key: &[u8], value: impl AsRef<[u8]>) -> Self {
        Self {
            tree,
            key: key.to_vec(),
            value: Some(value.as_ref().to_vec()),
        }
    }
}

/// Commits raw writes plus a format number in one transaction (creation and migrations).
pub(crate) fn commit_raw(
    path: &Path,
    trees: &Trees,
    writes: &[RawWrite],
    format: u32,
) -> Result<(), StateError> {
    let refs = trees.refs();
    let result = refs.as_slice().transaction(
        |tx: &Vec<TransactionalTree>| -> Result<(), ConflictableTransactionError<StateError>> {
            for w in writes {
                let tree = &tx[w.tree as usize];
                match &w.value {
                    Some(v) => {
                        tree.insert(w.key.as_slice(), v.as_slice())?;
                    }
                    None => {
                        tree.remove(w.key.as_slice())?;
                    }
                }
            }
            tx[TreeId::Meta as usize].insert(K_FORMAT, &format.to_be_bytes())?;
            Ok(())
        },
    );
    match result {
        Ok(()) => Ok(()),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(db_err(path, e)),
    }
}

/// A database error of the state at `path`.
pub(crate) fn db_err(path: &Path, source: sled::Error) -> StateError {
    StateError::Database {
        path: path.to_path_buf(),
        source,
    }
}
