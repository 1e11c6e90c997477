//! What the maintenance commands read and run, from an open store or from
//! the server that holds it. Each command is written once against
//! [`View`], so its output is the same either way.

use std::path::Path;

use ocidb::names::Reference;
use ocidb::store::{HistoryPage, HistoryQuery, Usage};
use ocidb::{
    Digest, Error, FsckOptions, FsckReport, GcReport, LeaseInfo, Result, Stats, Store, WalkNode,
};
use ocidb_server::{GcRequest, RetentionRequest};

use super::remote::Remote;

/// A store to inspect and maintain, local or behind a server.
pub(super) trait View {
    /// Tags of `repo` (a page) with the digest each points at.
    fn tags_with_digests(
        &self,
        repo: &str,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<(String, Digest)>>;
    /// The digest a tag or digest names in `repo`.
    fn resolve(&self, repo: &str, r: &Reference) -> Result<Digest>;
    /// The stored digest a whole or abbreviated digest names.
    fn resolve_digest(&self, text: &str) -> Result<Digest>;
    /// The image walk from `d` in `repo`.
    fn walk(&self, repo: &str, d: &Digest) -> Result<WalkNode>;
    fn repositories(&self) -> Result<Vec<String>>;
    fn stats(&self) -> Result<Stats>;
    fn lease_details(&self) -> Result<Vec<LeaseInfo>>;
    fn release_lease(&self, id: u64) -> Result<()>;
    fn gc(&self, ask: &GcRequest) -> Result<GcReport>;
    /// A page of a tag's history (see [`Store::tag_history`]).
    fn tag_history(&self, repo: &str, tag: &str, q: &HistoryQuery) -> Result<HistoryPage>;
    /// What a repository or namespace holds (see [`Store::usage`]).
    fn usage(&self, scope: &str) -> Result<Usage>;
    /// Runs a retention policy (see [`Store::retention`]).
    fn retention(&self, ask: &RetentionRequest) -> Result<ocidb::RetentionReport>;
    /// Writes an index snapshot (see [`Store::snapshot_index`]).
    fn snapshot_index(&self) -> Result<ocidb::log::SnapshotInfo>;
    /// Re-hashes one slice of the blobs (see [`Store::scrub`]).
    fn scrub(&self, after: Option<&Digest>, max_bytes: u64) -> Result<ocidb::ScrubSlice>;
    /// A full fsck, reporting (verified, total) as it goes.
    fn fsck(
        &self,
        repair: bool,
        allow_sparse: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<FsckReport>;
}

impl View for Store {
    fn tags_with_digests(
        &self,
        repo: &str,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<(String, Digest)>> {
        self.tag_page(repo, last, n)
    }
    fn resolve(&self, repo: &str, r: &Reference) -> Result<Digest> {
        Store::resolve(self, repo, r)
    }
    fn resolve_digest(&self, text: &str) -> Result<Digest> {
        Store::resolve_digest(self, text)
    }
    fn walk(&self, repo: &str, d: &Digest) -> Result<WalkNode> {
        Store::walk(self, repo, &Reference::Digest(*d))
    }
    fn repositories(&self) -> Result<Vec<String>> {
        Store::repositories(self)
    }
    fn stats(&self) -> Result<Stats> {
        Store::stats(self)
    }
    fn snapshot_index(&self) -> Result<ocidb::log::SnapshotInfo> {
        Store::snapshot_index(self)
    }
    fn lease_details(&self) -> Result<Vec<LeaseInfo>> {
        Store::lease_details(self)
    }
    fn release_lease(&self, id: u64) -> Result<()> {
        Store::release_lease(self, id)
    }
    fn tag_history(&self, repo: &str, tag: &str, q: &HistoryQuery) -> Result<HistoryPage> {
        Store::tag_history(self, repo, tag, q)
    }
    fn usage(&self, scope: &str) -> Result<Usage> {
        Store::usage(self, scope)
    }
    fn retention(&self, ask: &RetentionRequest) -> Result<ocidb::RetentionReport> {
        Store::retention(self, &ask.policy, &ask.options()?)
    }
    fn gc(&self, ask: &GcRequest) -> Result<GcReport> {
        Store::gc(self, &ask.policy()?)
    }
    fn scrub(&self, after: Option<&Digest>, max_bytes: u64) -> Result<ocidb::ScrubSlice> {
        Store::scrub(self, after, max_bytes)
    }
    fn fsck(
        &self,
        repair: bool,
        allow_sparse: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<FsckReport> {
        Store::fsck(
            self,
            &FsckOptions::default()
                .repair(repair)
                .allow_sparse(allow_sparse)
                .progress(progress),
        )
    }
}

/// The store at `store_dir`, or, when a server holds it, that server
/// through the store's admin socket; with `--server`, that server.
pub(super) fn open_view(store_dir: &Path) -> Result<Box<dyn View>> {
    if let Some(url) = super::util::SERVER.get().cloned().flatten() {
        return Ok(Box::new(Remote::from_url(&url)?));
    }
    match super::util::open(store_dir) {
        Ok(s) => Ok(Box::new(s)),
        Err(e @ Error::Locked { .. }) => match Remote::socket(store_dir) {
            Some(r) => {
                tracing::info!("{e}: asking the server through its admin socket");
                Ok(Box::new(r))
            }
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}
