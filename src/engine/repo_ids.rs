//! A cache of repository name → id for reads, so that a referrers listing
//! or a tag lookup does not open the `repos` table each time.
//!
//! Correctness rests on two facts of the schema: an id is never reused
//! (a counter hands them out), and a repository is removed only by
//! `index::repos::remove_repo_if_empty`, whose commit invalidates the
//! cache. A reader that missed the cache reads the id from its snapshot
//! and inserts it only if no invalidation happened since before that
//! snapshot opened ([`RepoIds::generation`] is read first): a snapshot
//! older than a removal can never put the removed id back.
//!
//! One benign anomaly remains: a reader whose snapshot predates a
//! repository's creation may find the id that another reader cached after
//! it, and then read an empty repository instead of "not found". Both
//! answers describe a moment of a request that ran alongside the creation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;

#[derive(Default)]
pub(crate) struct RepoIds {
    generation: AtomicU64,
    /// Set by a transaction that removes a repository; the writer
    /// invalidates once that transaction has committed.
    removal_pending: AtomicBool,
    map: RwLock<HashMap<String, u64>>,
}

impl RepoIds {
    /// Bound on cached names (registries with more repositories than this
    /// read the rest from the table, as before).
    const CAPACITY: usize = 1 << 16;

    pub fn get(&self, name: &str) -> Option<u64> {
        self.map.read().ok()?.get(name).copied()
    }

    /// Read before opening the snapshot a miss will read the id from.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches `name → id`, read from a snapshot opened after `generation`
    /// was read, unless an invalidation happened since.
    pub fn insert(&self, generation: u64, name: &str, id: u64) {
        let Ok(mut map) = self.map.write() else {
            return;
        };
        // Under the lock that `invalidate` takes: the check and the insert
        // cannot straddle an invalidation.
        if self.generation.load(Ordering::Acquire) == generation && map.len() < Self::CAPACITY {
            map.insert(name.to_string(), id);
        }
    }

    /// Called inside the transaction that removes a repository.
    pub fn note_removal(&self) {
        self.removal_pending.store(true, Ordering::Release);
    }

    /// Called by the writer after every commit.
    pub fn after_commit(&self) {
        if self.removal_pending.swap(false, Ordering::AcqRel) {
            self.invalidate();
        }
    }

    fn invalidate(&self) {
        // A poisoned lock still holds a usable map: clear it regardless.
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_older_than_a_removal_cannot_cache_the_removed_id() {
        let c = RepoIds::default();
        // A reader takes the generation, then opens its snapshot (which
        // still holds the repository with id 7) ...
        let g = c.generation();
        // ... a removal commits meanwhile ...
        c.note_removal();
        c.after_commit();
        // ... and the reader's insert is refused.
        c.insert(g, "app", 7);
        assert_eq!(c.get("app"), None);
        // A reader after the removal caches what its snapshot holds.
        let g = c.generation();
        c.insert(g, "app", 9);
        assert_eq!(c.get("app"), Some(9));
    }

    #[test]
    fn a_removal_clears_what_was_cached_before_it() {
        let c = RepoIds::default();
        c.insert(c.generation(), "app", 7);
        assert_eq!(c.get("app"), Some(7));
        // Commits without a removal keep the cache.
        c.after_commit();
        assert_eq!(c.get("app"), Some(7));
        c.note_removal();
        c.after_commit();
        assert_eq!(c.get("app"), None);
    }
}
