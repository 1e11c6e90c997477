//! The import walk, streamed: `index.json` is parsed entry by entry, each
//! entry's graph is walked depth-first and ingested children-first as it
//! goes, and manifests are committed in batches by a thread of their own
//! while the walk reads, hashes and parses the next (one batch waits, one
//! commits). Nothing the walk keeps grows with the layout's bytes: a body
//! read for its parse is kept for its batch (so it is read once) within
//! [`HELD_BYTES`], a batch ends at [`BATCH_BYTES`], no body is held past
//! its batch,
//! and instead of a set of every digest seen, the store itself says what
//! is done (a member of the repository was ingested with its whole graph,
//! children first). What does grow with the layout is the list of tags
//! (set in one commit at the end), of what the import created (to take it
//! back if it is rejected) and of missing digests (the report lists them).

use std::collections::HashSet;
use std::io::Read;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{
    read_limited, tag_of_ref_name, ImportOptions, ImportReport, Source, BATCH_BYTES, MANIFEST_BATCH,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::oci::manifest::{
    self, Descriptor, EdgeKind, ParsedManifest, MAX_MANIFEST_SIZE, REF_NAME,
};
use crate::oci::names;
use crate::store::{Children, ManifestOptions};
use crate::store::{PutOptions, Store};

/// Where `index.json` comes from.
pub(super) enum IndexSource {
    /// A layout directory's file, read as a stream.
    File(std::path::PathBuf),
    /// An oci-archive's copy, read into memory while the tar streamed by.
    Bytes(Vec<u8>),
}

impl IndexSource {
    /// Calls `f` with each entry of `manifests`, parsing as a stream.
    fn for_each(&self, f: &mut dyn FnMut(Descriptor) -> Result<()>) -> Result<()> {
        let mut stopped = None;
        let parsed = match self {
            IndexSource::File(p) => {
                let file = std::fs::File::open(p)
                    .map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
                let reader = std::io::BufReader::new(file.take(super::MAX_INDEX_SIZE));
                entries(
                    &mut serde_json::Deserializer::from_reader(reader),
                    f,
                    &mut stopped,
                )
            }
            IndexSource::Bytes(b) => entries(
                &mut serde_json::Deserializer::from_slice(b),
                f,
                &mut stopped,
            ),
        };
        if let Some(e) = stopped {
            return Err(e);
        }
        parsed.map_err(|e| Error::InvalidManifest {
            what: "index.json".into(),
            reason: format!("not a valid image index: {e}"),
        })
    }
}

/// Runs `f` on each entry while `de` parses; an error from `f` stops the
/// parse and is left in `stopped`.
fn entries<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    f: &mut dyn FnMut(Descriptor) -> Result<()>,
    stopped: &mut Option<Error>,
) -> serde_json::Result<()> {
    Top { f, stopped }.deserialize(&mut *de)?;
    de.end()
}

/// The top-level object of `index.json`: only `manifests` is read.
struct Top<'a> {
    f: &'a mut dyn FnMut(Descriptor) -> Result<()>,
    stopped: &'a mut Option<Error>,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an image index object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key::<String>()? {
            if k == "manifests" {
                map.next_value_seed(Entries {
                    f: &mut *self.f,
                    stopped: &mut *self.stopped,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct Entries<'a> {
    f: &'a mut dyn FnMut(Descriptor) -> Result<()>,
    stopped: &'a mut Option<Error>,
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of descriptors")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(desc) = seq.next_element::<Descriptor>()? {
            if let Err(e) = (self.f)(desc) {
                *self.stopped = Some(e);
                return Err(A::Error::custom("the import stopped"));
            }
        }
        Ok(())
    }
}

/// A manifest walked and waiting for its batch.
struct Pending {
    digest: Digest,
    declared: Option<String>,
    /// The body's size.
    size: u64,
    /// The verified body, kept while the bodies held stay under
    /// [`HELD_BYTES`]; otherwise read (and verified) again at its batch.
    body: Option<Vec<u8>>,
}

/// Manifest bodies the walk holds at once, between reading one and its
/// batch's commit: past it a body is read again at its batch, so that a
/// deep graph of large manifests cannot grow memory without bound.
const HELD_BYTES: usize = 64 << 20;

/// A batch on its way to the committer thread: bodies and their options.
type Batch = Vec<(Vec<u8>, ManifestOptions)>;

enum Step {
    /// Look at a descriptor (from index.json when the flag is set).
    Enter(Descriptor, bool),
    /// Every child of this manifest is done: it can be ingested.
    Exit(Pending),
}

struct Walk<'s, 'o> {
    store: &'s Store,
    src: &'s Source,
    repo: &'s str,
    lease: u64,
    opts: &'s ImportOptions<'o>,
    /// Only look (a `--strict` pre-pass): store nothing.
    dry: bool,
    report: ImportReport,
    tags: Vec<(String, Digest)>,
    missing: HashSet<Digest>,
    referrers: HashSet<Digest>,
    pending: Vec<Pending>,
    pending_set: HashSet<Digest>,
    /// Bytes of the bodies `pending` and the stack hold.
    held: usize,
    /// Bytes of the manifests in `pending`, held or not.
    pending_bytes: u64,
    /// The committer thread's inbox (`None` in a dry pass).
    to_commit: Option<std::sync::mpsc::SyncSender<Batch>>,
    /// The digests of the batches sent and perhaps not yet committed
    /// (the committer takes one while the next waits, so two at most):
    /// the store cannot say yet that they are done.
    sent: std::collections::VecDeque<HashSet<Digest>>,
    /// This root's visits: a graph can reach one node by two paths.
    root_seen: HashSet<Digest>,
    created: &'s mut Vec<Digest>,
    done: u64,
}

impl Store {
    pub(super) fn import_from(
        &self,
        src: &Source,
        index: &IndexSource,
        repo: &str,
        lease: u64,
        opts: &ImportOptions<'_>,
        created: &mut Vec<Digest>,
    ) -> Result<ImportReport> {
        let mut w = Walk {
            store: self,
            src,
            repo,
            lease,
            opts,
            dry: opts.strict,
            report: ImportReport {
                repository: repo.to_string(),
                ..ImportReport::default()
            },
            tags: Vec::new(),
            missing: HashSet::new(),
            referrers: HashSet::new(),
            pending: Vec::new(),
            pending_set: HashSet::new(),
            held: 0,
            pending_bytes: 0,
            to_commit: None,
            sent: std::collections::VecDeque::new(),
            root_seen: HashSet::new(),
            created,
            done: 0,
        };
        if opts.strict {
            // Everything must be there before anything is stored.
            index.for_each(&mut |d| w.root(d))?;
            if !w.missing.is_empty() {
                let mut list: Vec<Digest> = w.missing.iter().copied().collect();
                list.sort();
                let shown: Vec<String> = list
                    .iter()
                    .take(20)
                    .map(std::string::ToString::to_string)
                    .collect();
                let more = list.len().saturating_sub(shown.len());
                return Err(Error::InvalidArgument {
                    value: format!(
                        "sparse layout (missing {}{})",
                        shown.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    ),
                    expected: "every referenced blob present (--strict); drop --strict to import what is there".into(),
                });
            }
            w.dry = false;
            // The real pass walks everything again: nothing the look
            // collected is carried into it.
            w.pending.clear();
            w.pending_set.clear();
            w.pending_bytes = 0;
            w.held = 0;
            w.tags.clear();
            w.report.skipped_refs.clear();
            w.report.notes.clear();
            w.referrers.clear();
            w.done = 0;
        }
        // Batches commit on a thread of their own while the walk reads,
        // hashes and parses the next: the two overlap instead of taking
        // turns.
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(1);
            let committer = scope.spawn(move || self.commit_batches(repo, &rx));
            w.to_commit = Some(tx);
            let walked = index.for_each(&mut |d| w.root(d)).and_then(|()| w.flush());
            // Closing the inbox lets the committer finish what it holds.
            w.to_commit = None;
            let (created, committed) = committer.join().unwrap_or_else(|_| {
                (
                    Vec::new(),
                    Err(Error::Internal(
                        "the import's committer thread panicked".into(),
                    )),
                )
            });
            w.created.extend(created);
            // The committer's error is the cause when both failed: the
            // walk then only saw its inbox close.
            committed?;
            walked?;
            w.finish()
        })
    }
}

impl Store {
    /// The import's committer: ingests each batch the walk sends, in
    /// order, until the walk closes the channel or a batch fails. Returns
    /// what it created (for a rejected import to take back) either way.
    fn commit_batches(
        &self,
        repo: &str,
        rx: &std::sync::mpsc::Receiver<Batch>,
    ) -> (Vec<Digest>, Result<()>) {
        let mut created = Vec::new();
        for batch in rx {
            let refs: Vec<(&[u8], ManifestOptions)> = batch
                .iter()
                .map(|(b, o)| (b.as_slice(), o.clone()))
                .collect();
            match self.put_manifests(repo, &refs) {
                Ok(puts) => {
                    created.extend(puts.iter().filter(|p| p.created).map(|p| p.digest));
                }
                Err(e) => return (created, Err(e)),
            }
        }
        (created, Ok(()))
    }
}

impl Walk<'_, '_> {
    fn root(&mut self, desc: Descriptor) -> Result<()> {
        if let Some(r) = desc.annotations.as_ref().and_then(|a| a.get(REF_NAME)) {
            match tag_of_ref_name(r) {
                Some(t) => self.tags.push((t, desc.digest)),
                None => self.report.skipped_refs.push(format!(
                    "{}: not a valid tag ({})",
                    crate::text::quote_untrusted(r),
                    names::TAG_RULE
                )),
            }
        }
        self.root_seen.clear();
        let mut stack = vec![Step::Enter(desc, true)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Enter(desc, from_index) => self.enter(desc, from_index, &mut stack)?,
                Step::Exit(p) => {
                    self.pending_set.insert(p.digest);
                    self.pending_bytes += p.size;
                    self.pending.push(p);
                    if self.pending.len() >= MANIFEST_BATCH || self.pending_bytes >= BATCH_BYTES {
                        self.flush()?;
                    }
                }
            }
            if let Some(cb) = self.opts.progress {
                cb(self.done, self.done + stack.len() as u64);
            }
        }
        Ok(())
    }

    /// Whether `d` needs no more work: walked in this import already (or
    /// on this root's walk), or a blob the repository holds. A manifest the
    /// repository holds needs no ingest, but its children are walked from
    /// its stored edges: a complete layout fills in a sparse earlier one.
    fn done_already(&mut self, d: &Digest, stack: &mut Vec<Step>) -> Result<bool> {
        if self.pending_set.contains(d)
            || self.missing.contains(d)
            || self.sent.iter().any(|s| s.contains(d))
        {
            return Ok(true);
        }
        if !self.root_seen.insert(*d) {
            return Ok(true);
        }
        if self.dry || !self.store.is_member(self.repo, d)? {
            return Ok(false);
        }
        let Ok(info) = self.store.stat(d) else {
            return Ok(false);
        };
        if info.manifest {
            for e in self.store.successors(d)? {
                if e.kind != EdgeKind::Subject {
                    stack.push(Step::Enter(e.descriptor, false));
                }
            }
        }
        Ok(true)
    }

    fn enter(&mut self, desc: Descriptor, from_index: bool, stack: &mut Vec<Step>) -> Result<()> {
        let d = desc.digest;
        if self.done_already(&d, stack)? {
            return Ok(());
        }
        self.done += 1;
        let Some((mut reader, len)) = self.src.open_blob(self.store, &d)? else {
            self.missing.insert(d);
            return Ok(());
        };
        if len != desc.size {
            return Err(Error::SizeMismatch {
                what: d.to_string(),
                expected: desc.size,
                actual: len,
                more: "",
            });
        }
        let store = self.store;
        let declared_manifest = store.parsers.is_manifest_type(&desc.media_type);
        // index.json entries are manifests by definition, whatever media
        // type their descriptor claims.
        let try_manifest = declared_manifest || (from_index && len <= MAX_MANIFEST_SIZE);
        if !try_manifest {
            return self.copy_blob(reader, &desc);
        }
        if len > MAX_MANIFEST_SIZE {
            return Err(Error::ManifestTooLarge {
                size: len,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let body = read_limited(&mut reader, MAX_MANIFEST_SIZE, &d.to_string())?;
        let actual = crate::oci::hasher::Hasher::digest_of(d.algorithm(), &body);
        if actual != d {
            return Err(Error::DigestMismatch {
                expected: Box::new(d),
                actual: Box::new(actual),
            });
        }
        let (declared, parsed) = self.classify(&desc, declared_manifest, &body)?;
        // Kept for its batch while the bodies held stay bounded.
        let body = (self.held + body.len() <= HELD_BYTES).then(|| {
            self.held += body.len();
            body
        });
        stack.push(Step::Exit(Pending {
            digest: d,
            declared,
            size: len,
            body,
        }));
        if let Some(p) = parsed {
            if p.subject.is_some() {
                self.referrers.insert(d);
            }
            for (_, child) in p.children.into_iter().rev() {
                stack.push(Step::Enter(child, false));
            }
        }
        Ok(())
    }

    /// A blob that is not a manifest: copied as it is read (verified by the
    /// store against its digest), into the repository, under the lease.
    fn copy_blob(&mut self, reader: impl std::io::Read, desc: &Descriptor) -> Result<()> {
        if self.dry {
            return Ok(());
        }
        let put = self.store.put(
            reader,
            &PutOptions {
                digest: Some(desc.digest),
                size: Some(desc.size),
                media_type: Some(desc.media_type.clone()).filter(|m| !m.is_empty()),
                repository: Some(self.repo.to_string()),
                lease: Some(self.lease),
                no_sync: true,
            },
        )?;
        if put.created {
            self.created.push(put.digest);
        }
        self.report.blobs += 1;
        Ok(())
    }

    /// The media type to ingest a manifest under, and its parse. A
    /// descriptor's type decides when it names a manifest type; otherwise a
    /// JSON body speaks for itself, and anything else is stored opaque
    /// under the descriptor's type.
    fn classify(
        &mut self,
        desc: &Descriptor,
        declared_manifest: bool,
        body: &[u8],
    ) -> Result<(Option<String>, Option<ParsedManifest>)> {
        let d = desc.digest;
        let store = self.store;
        let mut declared = if declared_manifest || !manifest::looks_like_json_object(body) {
            Some(desc.media_type.clone()).filter(|m| !m.is_empty())
        } else {
            None
        };
        let mut classified = manifest::classify(&store.parsers, declared.as_deref(), body);
        if let Err(Error::MediaTypeConflict {
            declared: dt,
            body: bt,
            ..
        }) = &classified
        {
            // Layout writers disagree with themselves at times (ggcr names a
            // Docker manifest with the OCI type): the bytes are what was
            // signed and pulled, so their type wins.
            self.report.notes.push(format!(
                "{d}: the descriptor says `{dt}` but the manifest says `{bt}`; used `{bt}`"
            ));
            declared = None;
            classified = manifest::classify(&store.parsers, None, body);
        }
        let (_, parsed) = classified.map_err(|e| match e {
            Error::InvalidManifest { reason, .. } => Error::InvalidManifest {
                what: d.to_string(),
                reason,
            },
            other => other,
        })?;
        Ok((declared, parsed))
    }

    /// Hands the pending manifests to the committer as one batch (one
    /// transaction), bodies not held read (and verified) again; waits only
    /// while the committer still has the batch before.
    fn flush(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let digests = std::mem::take(&mut self.pending_set);
        self.pending_bytes = 0;
        if self.dry || pending.is_empty() {
            let dropped: usize = pending
                .iter()
                .filter_map(|m| m.body.as_ref())
                .map(Vec::len)
                .sum();
            self.held -= dropped;
            return Ok(());
        }
        let mut batch: Batch = Vec::with_capacity(pending.len());
        for m in pending {
            let body = match m.body {
                Some(b) => {
                    self.held -= b.len();
                    b
                }
                None => self.store.reread_manifest(self.src, &m.digest)?,
            };
            let opts = ManifestOptions {
                media_type: m.declared,
                digest: Some(m.digest),
                lease: Some(self.lease),
                no_sync: true,
                // A layout may be sparse; what it lacks stays out of the
                // repository.
                children: Children::AllowMissing,
                ..ManifestOptions::default()
            };
            batch.push((body, opts));
        }
        let n = batch.len() as u64;
        let Some(tx) = &self.to_commit else {
            return Err(Error::Internal("an import batch with no committer".into()));
        };
        tx.send(batch)
            .map_err(|_| Error::Internal("the import's committer stopped".into()))?;
        self.sent.push_back(digests);
        if self.sent.len() > 2 {
            self.sent.pop_front();
        }
        self.report.manifests += n;
        Ok(())
    }

    /// The tags in one durable commit, once every batch committed: an
    /// interrupted import shows no tag on an incomplete image.
    fn finish(mut self) -> Result<ImportReport> {
        let store = self.store;
        let mut tags = Vec::with_capacity(self.tags.len());
        for (t, d) in std::mem::take(&mut self.tags) {
            // A tag whose image is missing from the layout is left out.
            if store.member_as(self.repo, &d)? != Some(true) {
                continue;
            }
            if names::referrers_tag_subject(&t).is_some() {
                let stored_type = store.stat(&d)?.media_type;
                let (mt, parsed) =
                    manifest::classify(&store.parsers, stored_type.as_deref(), &store.read(&d)?)?;
                if mt.as_deref().is_some_and(manifest::is_index_type)
                    && let Some(p) = parsed
                {
                    self.referrers.extend(
                        p.children
                            .iter()
                            .filter(|(k, _)| *k == EdgeKind::Manifest)
                            .map(|(_, c)| c.digest),
                    );
                }
            }
            tags.push((t, d));
        }
        self.report.tags = tags.len() as u64;
        store.set_tags(self.repo, tags)?;
        store.sync()?;
        self.report.referrers = self.referrers.len() as u64;
        let mut missing: Vec<Digest> = self.missing.into_iter().collect();
        missing.sort();
        self.report.missing = missing;
        Ok(self.report)
    }
}
