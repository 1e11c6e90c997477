//! Putting and reading manifests: classify, parse, hash, then one writer
//! job per manifest (or batch of manifests).

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
pub use crate::index::ingest::Children;
use crate::index::ingest::ManifestPut;
use crate::index::ingest::PreparedManifest;
use crate::index::ingest::{ingest_manifest, ingest_manifests};
use crate::oci::hasher::Hasher;
use crate::oci::manifest::{self};
use crate::oci::names::{self, Reference};
use crate::schema::keys::{self};
use crate::schema::tables::{MEMBERS, TAGS};
use crate::store::BlobInfo;

/// How to put one manifest.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ManifestOptions {
    /// The media type the caller declares (a registry's Content-Type).
    pub media_type: Option<String>,
    /// The digest the body must hash to.
    pub digest: Option<Digest>,
    /// Tags to point at the manifest, in the same commit.
    pub tags: Vec<String>,
    /// What the children must be ([`Children::InRepository`] by default).
    pub children: Children,
    /// Commit without fsync (see [`crate::store::PutOptions::no_sync`]).
    pub no_sync: bool,
    /// Hold the manifest under this lease (see [`Store::create_lease`]).
    pub lease: Option<u64>,
    /// Who pushes: recorded with the tags' history (at most
    /// [`MAX_USER_LEN`](crate::store::MAX_USER_LEN) bytes).
    pub user: Option<String>,
}

impl ManifestOptions {
    /// Sets [`ManifestOptions::media_type`].
    #[must_use]
    pub fn media_type(mut self, media_type: impl crate::store::OptionalString) -> Self {
        self.media_type = media_type.into_option();
        self
    }

    /// Sets [`ManifestOptions::digest`].
    #[must_use]
    pub fn digest(mut self, digest: impl Into<Option<Digest>>) -> Self {
        self.digest = digest.into();
        self
    }

    /// Sets [`ManifestOptions::tags`].
    #[must_use]
    pub fn tags<T: Into<String>>(mut self, tags: impl IntoIterator<Item = T>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`ManifestOptions::children`].
    #[must_use]
    pub fn children(mut self, children: Children) -> Self {
        self.children = children;
        self
    }

    /// Sets [`ManifestOptions::no_sync`].
    #[must_use]
    pub fn no_sync(mut self, no_sync: bool) -> Self {
        self.no_sync = no_sync;
        self
    }

    /// Sets [`ManifestOptions::lease`].
    #[must_use]
    pub fn lease(mut self, lease: impl Into<Option<u64>>) -> Self {
        self.lease = lease.into();
        self
    }

    /// Sets [`ManifestOptions::user`].
    #[must_use]
    pub fn user(mut self, user: impl crate::store::OptionalString) -> Self {
        self.user = user.into_option();
        self
    }
}

impl Store {
    /// Registers a parser for a custom manifest media type.
    pub fn register_parser(
        &self,
        media_type: &str,
        parser: std::sync::Arc<dyn manifest::ManifestParser>,
    ) {
        self.parsers.register(media_type, parser);
    }

    /// Hashes, classifies and parses a manifest on the caller's thread.
    pub(crate) fn prepare_manifest(
        &self,
        repo: &str,
        body: &[u8],
        opts: &ManifestOptions,
    ) -> Result<PreparedManifest> {
        names::validate_repository(repo)?;
        for t in &opts.tags {
            names::validate_tag(t)?;
        }
        if body.len() as u64 > manifest::MAX_MANIFEST_SIZE {
            return Err(Error::ManifestTooLarge {
                size: body.len() as u64,
                limit: manifest::MAX_MANIFEST_SIZE,
            });
        }
        let alg = opts
            .digest
            .map_or(crate::digest::Algorithm::Sha256, |d| d.algorithm());
        let digest = Hasher::digest_of(alg, body);
        if let Some(expected) = opts.digest
            && expected != digest
        {
            return Err(Error::DigestMismatch {
                expected: Box::new(expected),
                actual: Box::new(digest),
            });
        }
        let (media_type, parsed) =
            manifest::classify(&self.parsers, opts.media_type.as_deref(), body).map_err(
                |e| match e {
                    Error::InvalidManifest { what, reason } => Error::InvalidManifest {
                        what: format!("{digest} ({what})"),
                        reason,
                    },
                    Error::MediaTypeConflict { declared, body, .. } => Error::MediaTypeConflict {
                        what: digest.to_string(),
                        declared,
                        body,
                    },
                    other => other,
                },
            )?;
        Ok(PreparedManifest {
            repo: repo.to_string(),
            digest,
            size: body.len() as u64,
            packed: crate::schema::body::pack(body),
            media_type,
            parsed,
            tags: opts.tags.clone(),
            children: opts.children,
            lease: opts.lease,
            user: crate::store::history::checked_user(opts.user.as_deref())?,
        })
    }

    /// Stores a manifest in a repository and indexes its graph, atomically
    /// with its bytes and tags.
    pub fn put_manifest(
        &self,
        repo: &str,
        body: &[u8],
        opts: &ManifestOptions,
    ) -> Result<ManifestPut> {
        let prepared = self.prepare_manifest(repo, body, opts)?;
        self.submit(!opts.no_sync, move |b| ingest_manifest(b, &prepared))
    }

    /// Stores many manifests of one repository in one transaction. Hashing
    /// and parsing happen here, before the writer is involved; on the first
    /// invalid manifest nothing is stored.
    pub fn put_manifests(
        &self,
        repo: &str,
        bodies: &[(&[u8], ManifestOptions)],
    ) -> Result<Vec<ManifestPut>> {
        let prepared = bodies
            .iter()
            .map(|(body, o)| self.prepare_manifest(repo, body, o))
            .collect::<Result<Vec<_>>>()?;
        self.ingest_batch(prepared, bodies.iter().any(|(_, o)| !o.no_sync))
    }

    /// Stores manifests of any repositories (`(repository, body,
    /// options)`) in one transaction: a bulk import's unit. One commit for
    /// the whole batch costs far less than one per repository (and leaves
    /// a smaller file: each commit copies the pages it touches). On the
    /// first invalid manifest nothing is stored.
    pub fn put_manifest_batch(
        &self,
        items: &[(&str, &[u8], ManifestOptions)],
    ) -> Result<Vec<ManifestPut>> {
        let prepared = items
            .iter()
            .map(|(repo, body, o)| self.prepare_manifest(repo, body, o))
            .collect::<Result<Vec<_>>>()?;
        self.ingest_batch(prepared, items.iter().any(|(_, _, o)| !o.no_sync))
    }

    fn ingest_batch(
        &self,
        prepared: Vec<PreparedManifest>,
        durable: bool,
    ) -> Result<Vec<ManifestPut>> {
        self.submit(durable, move |b| ingest_manifests(b, &prepared))
    }

    /// Resolves a tag or digest inside a repository to a manifest digest.
    pub fn resolve(&self, repo: &str, reference: &Reference) -> Result<Digest> {
        let txn = self.snapshot()?;
        let repo_id = self.require_repo(&txn, repo)?;
        match reference {
            Reference::Tag(tag) => {
                let t = txn.open_table(TAGS)?;
                let got = t.get(keys::tag(repo_id, tag).as_slice())?;
                match got {
                    Some(g) => Ok(Digest::from_key(g.value())?),
                    None => Err(Error::TagUnknown {
                        repository: repo.to_string(),
                        tag: tag.clone(),
                        hint: String::new(),
                    }),
                }
            }
            Reference::Digest(d) => {
                let t = txn.open_table(MEMBERS)?;
                if t.get(keys::member(repo_id, d).as_slice())?.is_some() {
                    Ok(*d)
                } else {
                    Err(Error::ManifestUnknown {
                        digest: *d,
                        hint: format!(" in repository `{repo}`"),
                    })
                }
            }
        }
    }

    /// A manifest's record and bytes, by tag or digest, from one repository.
    pub fn get_manifest(&self, repo: &str, reference: &Reference) -> Result<(BlobInfo, Vec<u8>)> {
        let d = self.resolve(repo, reference)?;
        let info = self.stat(&d)?;
        Ok((info, self.read(&d)?))
    }
}
