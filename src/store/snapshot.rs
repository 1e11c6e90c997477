//! Read snapshots that resolve repository names through the shared cache.

use std::ops::Deref;

use redb::ReadTransaction;

use super::Store;
use crate::error::Result;
use crate::schema::tables;

/// A read transaction, with the repository-id cache's generation read
/// before it opened (what makes a miss safe to cache: `engine::repo_ids`).
pub(crate) struct Snapshot {
    txn: ReadTransaction,
    repo_generation: u64,
}

impl Deref for Snapshot {
    type Target = ReadTransaction;

    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

impl Store {
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        let repo_generation = self.shared.repo_ids.generation();
        Ok(Snapshot {
            txn: tables::begin_read(&self.db)?,
            repo_generation,
        })
    }

    /// The id of `repo`, from the cache or else from the snapshot.
    pub(crate) fn repo_id(&self, s: &Snapshot, repo: &str) -> Result<Option<u64>> {
        if let Some(id) = self.shared.repo_ids.get(repo) {
            return Ok(Some(id));
        }
        let id = crate::index::repos::repo_id(&s.txn, repo)?;
        if let Some(id) = id {
            self.shared.repo_ids.insert(s.repo_generation, repo, id);
        }
        Ok(id)
    }
}
