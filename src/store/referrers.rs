//! The referrers API: pages of descriptors per subject, with signed cursors.

use serde::Serialize;

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::referrers::artifact_type_id;
use crate::oci::hasher::Hasher;
use crate::oci::manifest::{Descriptor, OCI_INDEX};
use crate::oci::names::{self};
use crate::schema::keys::{self};
use crate::schema::tables::REFERRERS;

/// An OCI image index: the referrers API response body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImageIndex {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Always the OCI index media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The entries.
    pub manifests: Vec<Descriptor>,
}

/// One page of a referrers listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrersPage {
    /// The response body.
    pub index: ImageIndex,
    /// Filters applied (`["artifactType"]` when filtered): the value of the
    /// `OCI-Filters-Applied` header.
    pub filters_applied: Vec<String>,
    /// Cursor for the next page (the `Link` header), if there is more.
    pub next: Option<String>,
}

/// A referrers query.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ReferrersQuery<'a> {
    /// Exact-match artifactType filter.
    pub artifact_type: Option<&'a str>,
    /// Resume after this cursor (from [`ReferrersPage::next`]).
    pub cursor: Option<&'a str>,
    /// Page size; None for all.
    pub limit: Option<usize>,
}

impl<'a> ReferrersQuery<'a> {
    /// Sets [`ReferrersQuery::artifact_type`].
    #[must_use]
    pub fn artifact_type(mut self, artifact_type: impl Into<Option<&'a str>>) -> Self {
        self.artifact_type = artifact_type.into();
        self
    }

    /// Sets [`ReferrersQuery::cursor`].
    #[must_use]
    pub fn cursor(mut self, cursor: impl Into<Option<&'a str>>) -> Self {
        self.cursor = cursor.into();
        self
    }

    /// Sets [`ReferrersQuery::limit`].
    #[must_use]
    pub fn limit(mut self, limit: impl Into<Option<usize>>) -> Self {
        self.limit = limit.into();
        self
    }
}

fn increment(k: &mut [u8]) {
    for b in k.iter_mut().rev() {
        if *b == 0xff {
            *b = 0;
        } else {
            *b += 1;
            return;
        }
    }
}

fn bad_cursor(c: &str, why: &str) -> Error {
    Error::InvalidArgument {
        value: crate::text::quote_untrusted(c),
        expected: format!(
            "a cursor that a previous page of this same referrers query returned ({why})"
        ),
    }
}

impl ImageIndex {
    /// An index of the given entries.
    pub fn new(manifests: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: OCI_INDEX.to_string(),
            manifests,
        }
    }
}

impl Store {
    /// The OCI referrers API: manifests in `repo` whose subject is `subject`.
    ///
    /// Cost is O(results): the filter is part of the key, so a filtered
    /// query reads only matching entries.
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        q: &ReferrersQuery<'_>,
    ) -> Result<ReferrersPage> {
        names::validate_repository(repo)?;
        let filters_applied = if q.artifact_type.is_some() {
            vec!["artifactType".to_string()]
        } else {
            Vec::new()
        };
        let empty = |filters_applied| ReferrersPage {
            index: ImageIndex::new(Vec::new()),
            filters_applied,
            next: None,
        };
        let txn = self.snapshot()?;
        // An unknown repository has no referrers: an empty list, never "not found".
        let Some(repo_id) = self.repo_id(&txn, repo)? else {
            return Ok(empty(filters_applied));
        };
        let at_id = match q.artifact_type {
            None => None,
            Some(at) => match artifact_type_id(&txn, at)? {
                Some(id) => Some(id),
                None => return Ok(empty(filters_applied)),
            },
        };
        let (mut lo, hi) = keys::referrer_range(repo_id, subject, at_id);
        if let Some(c) = q.cursor {
            let (cat, cd) = self.parse_cursor(c, repo_id, subject)?;
            // A filtered page continues only within its artifact type:
            // a cursor from elsewhere in the key space would widen the
            // range past the filter.
            if at_id.is_some_and(|id| id != cat) {
                return Err(bad_cursor(c, "it belongs to another artifactType filter"));
            }
            lo = keys::referrer(repo_id, subject, cat, &cd);
            // Step past the cursor entry itself.
            increment(&mut lo);
        }
        let limit = q.limit.unwrap_or(usize::MAX);
        let t = txn.open_table(REFERRERS)?;
        let mut manifests = Vec::new();
        let mut next = None;
        let mut last_key = None;
        for e in t.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
            let (k, v) = e?;
            if manifests.len() == limit {
                // The cursor names the last entry returned.
                if let Some((at, d)) = &last_key {
                    next = Some(self.cursor_of(*at, d, repo_id, subject));
                }
                break;
            }
            let (at, d) = keys::referrer_parts(k.value())?;
            manifests.push(keys::decode_referrer_of(&d, v.value())?.1);
            last_key = Some((at, d));
        }
        Ok(ReferrersPage {
            index: ImageIndex::new(manifests),
            filters_applied,
            next,
        })
    }

    /// The referrers tag schema fallback: the index that a registry without
    /// the referrers API would hold under the tag `<alg>-<hex>`.
    pub fn referrers_tag_index(&self, repo: &str, subject: &Digest) -> Result<Vec<u8>> {
        let page = self.referrers(repo, subject, &ReferrersQuery::default())?;
        serde_json::to_vec(&page.index)
            .map_err(|e| Error::Corrupt(format!("referrers index does not serialise: {e}")))
    }

    /// `<type id>.<digest>.<mac>`: the mac binds the position to the
    /// repository and subject under the store's secret key.
    fn cursor_mac(&self, repo_id: u64, subject: &Digest, at: u32, d: &Digest) -> String {
        let mut m = Vec::with_capacity(32 + 8 + 2 * crate::digest::MAX_DIGEST_KEY_LEN + 4);
        m.extend_from_slice(&self.cursor_key);
        m.extend_from_slice(&repo_id.to_le_bytes());
        m.extend_from_slice(subject.to_key().as_slice());
        m.extend_from_slice(&at.to_le_bytes());
        m.extend_from_slice(d.to_key().as_slice());
        let h = Hasher::digest_of(crate::digest::Algorithm::Sha256, &m).hex();
        h[..24].to_string()
    }

    fn cursor_of(&self, at: u32, d: &Digest, repo_id: u64, subject: &Digest) -> String {
        format!("{at}.{d}.{}", self.cursor_mac(repo_id, subject, at, d))
    }

    fn parse_cursor(&self, c: &str, repo_id: u64, subject: &Digest) -> Result<(u32, Digest)> {
        let mut parts = c.splitn(3, '.');
        let (Some(at), Some(d), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad_cursor(c, "it is not of the form <n>.<digest>.<mac>"));
        };
        let at: u32 = at
            .parse()
            .map_err(|_| bad_cursor(c, "its type id is not a number"))?;
        let d = Digest::parse(d).map_err(|_| bad_cursor(c, "its digest is malformed"))?;
        if mac != self.cursor_mac(repo_id, subject, at, &d) {
            return Err(bad_cursor(
                c,
                "it was not issued by this store for this repository and subject",
            ));
        }
        Ok((at, d))
    }
}
