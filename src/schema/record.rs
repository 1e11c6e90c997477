//! On-disk value encodings. Every value starts with a format-version byte so
//! that a later release can read old records; ARCHITECTURE.md documents each
//! layout byte by byte.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::schema::codec;
use crate::schema::tables::DKey;

/// Version byte of format v1's values (read by the migration, and still
/// written for upload records, whose layout did not change).
pub(crate) const VALUE_FORMAT_V1: u8 = 1;
/// Version byte of format v2's graph values, and of formats 2 and 3's blob
/// records (read by the migration).
pub(crate) const VALUE_FORMAT_V2: u8 = 2;
/// Version byte of format 4's blob records: format 3's, with the id of an
/// inline blob's body.
pub(crate) const RECORD_FORMAT_V3: u8 = 3;

/// Where a blob's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the `bodies` table, committed with the record.
    Inline,
    /// In `blobs/<alg>/<hex>` next to the database.
    File,
}

const FLAG_INLINE: u8 = 1;
const FLAG_FILE: u8 = 2;
const FLAG_MANIFEST: u8 = 4;

/// The record kept for every blob, keyed by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlobRecord {
    pub size: u64,
    pub created_ms: u64,
    pub placement: Placement,
    /// An inline blob's row in `bodies` (at least 1); 0 for a file.
    pub body: u64,
    /// Set when the blob was parsed as a manifest and its edges are indexed.
    pub manifest: bool,
    pub media_type: Option<String>,
    /// A manifest's artifactType (with the image-manifest fallback).
    pub artifact_type: Option<String>,
}

impl BlobRecord {
    /// `[3] flags(1) size(varint) created_ms(varint) [body(varint), inline
    /// only] media_type artifact_type`, the strings as `codec::put_str`
    /// writes them. Fails, never truncates, when a string is too long to
    /// store (entry points cap media types at 255 bytes, so this is a
    /// backstop), or when an inline record names no body.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(24);
        v.push(RECORD_FORMAT_V3);
        let mut flags = match self.placement {
            Placement::Inline => FLAG_INLINE,
            Placement::File => FLAG_FILE,
        };
        if self.manifest {
            flags |= FLAG_MANIFEST;
        }
        v.push(flags);
        codec::put_varint(&mut v, self.size);
        codec::put_varint(&mut v, self.created_ms);
        match (self.placement, self.body) {
            (Placement::Inline, 0) => {
                return Err(Error::Corrupt(format!(
                    "an inline record of {} bytes names no body (body ids start at 1)",
                    self.size
                )))
            }
            (Placement::Inline, id) => codec::put_varint(&mut v, id),
            (Placement::File, _) => {}
        }
        codec::put_str(&mut v, self.media_type.as_deref().unwrap_or(""))?;
        codec::put_str(&mut v, self.artifact_type.as_deref().unwrap_or(""))?;
        Ok(v)
    }

    pub fn decode(b: &[u8]) -> Result<BlobRecord> {
        Self::decode_version(b, RECORD_FORMAT_V3)
    }

    /// Decodes a record of formats 2 and 3 (read only by the migration),
    /// which name no body: the migration gives it one.
    pub fn decode_v2(b: &[u8]) -> Result<BlobRecord> {
        Self::decode_version(b, VALUE_FORMAT_V2)
    }

    fn decode_version(b: &[u8], version: u8) -> Result<BlobRecord> {
        let (h, placement, body, mut r) = header(b, version)?;
        let none_if_empty = |s: String| (!s.is_empty()).then_some(s);
        let media_type = none_if_empty(r.str()?);
        let artifact_type = none_if_empty(r.str()?);
        if !r.is_empty() {
            return Err(r.err("bytes follow the artifact type"));
        }
        Ok(BlobRecord {
            size: h.size,
            created_ms: h.created_ms,
            placement,
            body,
            manifest: h.manifest,
            media_type,
            artifact_type,
        })
    }

    /// Decodes a format v1 record (read only by the migration):
    /// `[1] flags(1) size(8) created_ms(8) media_type_len(2) media_type
    /// artifact_type_len(2) artifact_type`, integers little-endian.
    pub fn decode_v1(b: &[u8]) -> Result<BlobRecord> {
        let corrupt = |why: &str| corrupt_record(b, why);
        let mut r = codec::Reader::new(b, "v1 blob record");
        if r.byte()? != VALUE_FORMAT_V1 {
            return Err(corrupt("unknown format version, expected 1"));
        }
        let flags = r.byte()?;
        let placement = placement_of(flags)
            .ok_or_else(|| corrupt("placement flags are not exactly one of inline/file"))?;
        let size = u64::from_le_bytes(le8(r.bytes(8)?));
        let created_ms = u64::from_le_bytes(le8(r.bytes(8)?));
        let mut text = |what: &str| -> Result<Option<String>> {
            let n = r.bytes(2)?;
            let n = usize::from(u16::from_le_bytes([n[0], n[1]]));
            let s = r.bytes(n)?;
            if s.is_empty() {
                return Ok(None);
            }
            std::str::from_utf8(s)
                .map(|s| Some(s.to_string()))
                .map_err(|_| corrupt(&format!("{what} is not UTF-8")))
        };
        let media_type = text("media type")?;
        let artifact_type = text("artifact type")?;
        Ok(BlobRecord {
            size,
            created_ms,
            placement,
            body: 0,
            manifest: flags & FLAG_MANIFEST != 0,
            media_type,
            artifact_type,
        })
    }
}

fn placement_of(flags: u8) -> Option<Placement> {
    match flags & (FLAG_INLINE | FLAG_FILE) {
        FLAG_INLINE => Some(Placement::Inline),
        FLAG_FILE => Some(Placement::File),
        _ => None,
    }
}

/// The version, flags, size, creation time and (from version 3) body id
/// that every record starts with, and a reader positioned after them.
/// `expected`: the record version of the store's format.
fn header(b: &[u8], expected: u8) -> Result<(RecordHeader, Placement, u64, codec::Reader<'_>)> {
    let mut r = codec::Reader::new(b, "blob record");
    let version = r.byte()?;
    if version != expected {
        return Err(corrupt_record(
            b,
            &format!("unknown format version {version}, expected {expected}"),
        ));
    }
    let flags = r.byte()?;
    if flags & !(FLAG_INLINE | FLAG_FILE | FLAG_MANIFEST) != 0 {
        return Err(corrupt_record(b, &format!("flags {flags:#x} are unknown")));
    }
    let placement = placement_of(flags)
        .ok_or_else(|| corrupt_record(b, "placement flags are not exactly one of inline/file"))?;
    let size = r.varint()?;
    let created_ms = r.varint()?;
    let body = match placement {
        Placement::Inline if version >= RECORD_FORMAT_V3 => match r.varint()? {
            0 => {
                return Err(corrupt_record(
                    b,
                    "an inline record names body 0 (ids start at 1)",
                ))
            }
            id => id,
        },
        _ => 0,
    };
    Ok((
        RecordHeader {
            size,
            created_ms,
            manifest: flags & FLAG_MANIFEST != 0,
        },
        placement,
        body,
        r,
    ))
}

/// Looks a blob's record up in any view of the `blobs` table (a read
/// snapshot or the writer's transaction) and decodes it: the one place
/// that does both.
pub(crate) fn lookup(
    blobs: &impl redb::ReadableTable<&'static DKey, &'static [u8]>,
    d: &Digest,
) -> Result<Option<BlobRecord>> {
    blobs
        .get(d.to_key().as_slice())?
        .map(|g| BlobRecord::decode(g.value()))
        .transpose()
}

/// The fixed fields of a [`BlobRecord`], read without decoding its strings:
/// the GC mark reads every record and needs only these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub size: u64,
    pub created_ms: u64,
    pub manifest: bool,
}

impl RecordHeader {
    pub fn decode(b: &[u8]) -> Result<RecordHeader> {
        header(b, RECORD_FORMAT_V3).map(|(h, _, _, _)| h)
    }
}

fn corrupt_record(b: &[u8], why: &str) -> Error {
    Error::Corrupt(format!("blob record of {} bytes: {why}", b.len()))
}

pub(crate) fn le8(s: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&s[..8]);
    a
}

/// A resumable upload session (`uploads` value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UploadRecord {
    /// The repository the blob is uploaded to.
    pub repo: String,
    /// The algorithm the bytes are hashed with as they arrive.
    pub algorithm: crate::digest::Algorithm,
    /// Bytes acknowledged so far.
    pub offset: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The lease that holds what the session mounts or finishes.
    pub lease: u64,
    /// The hash state after `offset` bytes.
    pub state: Vec<u8>,
}

impl UploadRecord {
    /// `[1] alg(1) offset(8) created(8) updated(8) lease(8) repo_len(2)
    /// repo state`.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let repo_len = u16::try_from(self.repo.len()).map_err(|_| Error::InvalidArgument {
            value: crate::text::quote_untrusted(&self.repo),
            expected: "a repository name under 64 KiB".into(),
        })?;
        let mut v = Vec::with_capacity(36 + self.repo.len() + self.state.len());
        v.push(VALUE_FORMAT_V1);
        v.push(self.algorithm.tag());
        v.extend_from_slice(&self.offset.to_le_bytes());
        v.extend_from_slice(&self.created_ms.to_le_bytes());
        v.extend_from_slice(&self.updated_ms.to_le_bytes());
        v.extend_from_slice(&self.lease.to_le_bytes());
        v.extend_from_slice(&repo_len.to_le_bytes());
        v.extend_from_slice(self.repo.as_bytes());
        v.extend_from_slice(&self.state);
        Ok(v)
    }

    pub fn decode(b: &[u8]) -> Result<UploadRecord> {
        let bad = |why: &str| Error::Corrupt(format!("upload record of {} bytes: {why}", b.len()));
        if b.len() < 36 || b[0] != VALUE_FORMAT_V1 {
            return Err(bad("unknown format"));
        }
        let algorithm =
            crate::digest::Algorithm::from_tag(b[1]).ok_or_else(|| bad("unknown algorithm"))?;
        let u = |at: usize| u64::from_le_bytes(le8(&b[at..at + 8]));
        let repo_len = usize::from(u16::from_le_bytes([b[34], b[35]]));
        let repo = b
            .get(36..36 + repo_len)
            .ok_or_else(|| bad("repository cut short"))?;
        Ok(UploadRecord {
            algorithm,
            offset: u(2),
            created_ms: u(10),
            updated_ms: u(18),
            lease: u(26),
            repo: String::from_utf8(repo.to_vec()).map_err(|_| bad("repository is not UTF-8"))?,
            state: b[36 + repo_len..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inline_record(body: u64) -> BlobRecord {
        BlobRecord {
            size: 3,
            created_ms: 7,
            placement: Placement::Inline,
            body,
            manifest: true,
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            artifact_type: None,
        }
    }

    /// An inline record without a body id cannot be written, and one that
    /// names body 0 on disk is corrupt: the id is what finds the bytes.
    #[test]
    fn an_inline_record_names_a_body() {
        let e = inline_record(0).encode().expect_err("no body");
        assert!(e.to_string().contains("names no body"), "{e}");
        let mut v = inline_record(5).encode().expect("encode");
        assert_eq!(v[0], RECORD_FORMAT_V3);
        // flags, size 3, created 7, then the body id.
        assert_eq!(v[4], 5);
        v[4] = 0;
        let e = BlobRecord::decode(&v).expect_err("body 0");
        assert!(e.to_string().contains("body 0"), "{e}");
    }

    /// Format 3's records (version 2, no body id) are read by the
    /// migration alone; a format-4 store refuses them as corrupt.
    #[test]
    fn format_3_records_are_read_only_by_the_migration() {
        let mut v = vec![VALUE_FORMAT_V2, FLAG_INLINE, 3, 7];
        codec::put_str(&mut v, "text/plain").expect("str");
        codec::put_str(&mut v, "").expect("str");
        let r = BlobRecord::decode_v2(&v).expect("v2");
        assert_eq!((r.size, r.created_ms, r.body), (3, 7, 0));
        assert_eq!(r.media_type.as_deref(), Some("text/plain"));
        let e = BlobRecord::decode(&v).expect_err("not format 4");
        assert!(e.to_string().contains("expected 3"), "{e}");
    }

    #[test]
    fn an_oversized_media_type_is_refused_not_truncated() {
        let r = BlobRecord {
            size: 1,
            created_ms: 0,
            placement: Placement::Inline,
            body: 1,
            manifest: false,
            media_type: Some(format!("application/x-{}", "é".repeat(40_000))),
            artifact_type: None,
        };
        let e = r.encode().expect_err("too long");
        assert!(e.to_string().contains("at most 4096"), "{e}");
    }

    proptest! {
        #[test]
        fn record_roundtrip(size in any::<u64>(), created in any::<u64>(), inline in any::<bool>(), body in 1..=u64::MAX, manifest in any::<bool>(), mt in proptest::option::of("[a-z/.+0-9-]{1,80}"), at in proptest::option::of("[a-z/.+0-9-]{1,80}")) {
            let r = BlobRecord {
                size, created_ms: created,
                placement: if inline { Placement::Inline } else { Placement::File },
                body: if inline { body } else { 0 },
                manifest, media_type: mt, artifact_type: at,
            };
            let encoded = r.encode().expect("fits");
            prop_assert_eq!(
                RecordHeader::decode(&encoded).expect("header"),
                RecordHeader { size, created_ms: created, manifest }
            );
            prop_assert_eq!(BlobRecord::decode(&encoded).expect("decode"), r);
        }

        #[test]
        fn v1_records_decode(size in any::<u64>(), created in any::<u64>(), mt in "[a-z/.+0-9-]{0,80}") {
            let mut v = vec![VALUE_FORMAT_V1, FLAG_FILE | FLAG_MANIFEST];
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&created.to_le_bytes());
            v.extend_from_slice(&(mt.len() as u16).to_le_bytes());
            v.extend_from_slice(mt.as_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
            let r = BlobRecord::decode_v1(&v).expect("v1");
            prop_assert_eq!((r.size, r.created_ms, r.manifest, r.placement), (size, created, true, Placement::File));
            prop_assert_eq!(r.media_type, (!mt.is_empty()).then_some(mt));
            prop_assert!(BlobRecord::decode(&v).is_err());
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RecordHeader::decode(&b);
            let _ = BlobRecord::decode_v1(&b);
            // Whatever the full decoder accepts, the header decoder reads alike.
            if let Ok(r) = BlobRecord::decode(&b) {
                let h = RecordHeader::decode(&b).expect("a decodable record has a header");
                prop_assert_eq!((h.size, h.created_ms, h.manifest), (r.size, r.created_ms, r.manifest));
            }
        }
    }

    proptest! {
        /// Tag history events decode to what was encoded, and any cut of
        /// one is refused, never misread.
        #[test]
        fn tag_events_round_trip_and_refuse_truncation(
            time_ms in any::<u64>(),
            size in any::<u64>(),
            deleted in any::<bool>(),
            cause in 0u8..4,
            hash in any::<[u8; 32]>(),
            prev in proptest::option::of(any::<[u8; 32]>()),
            user in proptest::option::of("[a-z]{1,12}"),
        ) {
            let d = |h: [u8; 32]| Digest::from_bytes(crate::digest::Algorithm::Sha256, &h).expect("digest");
            let e = TagEventRecord {
                time_ms,
                action: if deleted { TagAction::Deleted } else { TagAction::Created },
                cause: [TagCause::Tagged, TagCause::Untagged, TagCause::ManifestDeleted, TagCause::Restored][usize::from(cause)],
                digest: d(hash),
                previous: prev.map(d),
                size,
                media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
                user,
            };
            let b = e.encode().expect("encode");
            prop_assert_eq!(TagEventRecord::decode(&b).expect("decode"), e);
            for cut in 0..b.len() {
                prop_assert!(TagEventRecord::decode(&b[..cut]).is_err());
            }
        }
    }
}

/// What a tag history event did to the tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagAction {
    /// The tag was pointed at the record's `digest` (created, moved or
    /// restored).
    Created,
    /// The tag was removed; the record's `digest` is what it pointed at.
    Deleted,
}

/// Why a tag changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagCause {
    /// A push or a tag command pointed it.
    Tagged,
    /// A tag delete removed it.
    Untagged,
    /// The manifest it pointed at was deleted from the repository.
    ManifestDeleted,
    /// An undelete put it back.
    Restored,
}

/// One event of a tag's history, as stored in `tag_history`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TagEventRecord {
    pub time_ms: u64,
    pub action: TagAction,
    pub cause: TagCause,
    /// Created: the new target; deleted: the old one.
    pub digest: Digest,
    /// Created over another target (a move): that target.
    pub previous: Option<Digest>,
    pub size: u64,
    pub media_type: Option<String>,
    /// Who made the change, when the caller said.
    pub user: Option<String>,
}

impl TagEventRecord {
    /// `[2] action(1) cause(1) time_ms(varint) size(varint) digest
    /// has_previous(1) [previous] media_type user`, digests in key form,
    /// strings as `codec::put_str` writes them.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(96);
        v.push(VALUE_FORMAT_V2);
        v.push(match self.action {
            TagAction::Created => 1,
            TagAction::Deleted => 2,
        });
        v.push(match self.cause {
            TagCause::Tagged => 1,
            TagCause::Untagged => 2,
            TagCause::ManifestDeleted => 3,
            TagCause::Restored => 4,
        });
        codec::put_varint(&mut v, self.time_ms);
        codec::put_varint(&mut v, self.size);
        codec::put_digest(&mut v, &self.digest);
        match &self.previous {
            Some(p) => {
                v.push(1);
                codec::put_digest(&mut v, p);
            }
            None => v.push(0),
        }
        codec::put_str(&mut v, self.media_type.as_deref().unwrap_or(""))?;
        codec::put_str(&mut v, self.user.as_deref().unwrap_or(""))?;
        Ok(v)
    }

    pub fn decode(b: &[u8]) -> Result<TagEventRecord> {
        let mut r = codec::Reader::new(b, "tag history event");
        let version = r.byte()?;
        if version != VALUE_FORMAT_V2 {
            return Err(r.err(format!("version {version} is unknown")));
        }
        let action = match r.byte()? {
            1 => TagAction::Created,
            2 => TagAction::Deleted,
            other => return Err(r.err(format!("action {other} is unknown"))),
        };
        let cause = match r.byte()? {
            1 => TagCause::Tagged,
            2 => TagCause::Untagged,
            3 => TagCause::ManifestDeleted,
            4 => TagCause::Restored,
            other => return Err(r.err(format!("cause {other} is unknown"))),
        };
        let time_ms = r.varint()?;
        let size = r.varint()?;
        let digest = r.digest()?;
        let previous = match r.byte()? {
            0 => None,
            1 => Some(r.digest()?),
            other => return Err(r.err(format!("previous flag {other} is not 0 or 1"))),
        };
        let none_if_empty = |s: String| (!s.is_empty()).then_some(s);
        let media_type = none_if_empty(r.str()?);
        let user = none_if_empty(r.str()?);
        if !r.is_empty() {
            return Err(r.err("bytes follow the user"));
        }
        Ok(TagEventRecord {
            time_ms,
            action,
            cause,
            digest,
            previous,
            size,
            media_type,
            user,
        })
    }
}

/// What an outbox event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A manifest was pushed to a repository.
    ManifestPushed,
    /// A manifest left a repository (deleted, or collected by GC).
    ManifestDeleted,
    /// A repository gained a blob (pushed or mounted).
    BlobPushed,
    /// A blob left a repository, or the store (GC).
    BlobDeleted,
    /// A tag was pointed at a manifest (created, moved, restored).
    TagChanged,
    /// A tag was removed.
    TagDeleted,
    /// A push was refused for a quota.
    QuotaRefused,
}

impl EventKind {
    fn code(self) -> u8 {
        match self {
            EventKind::ManifestPushed => 1,
            EventKind::ManifestDeleted => 2,
            EventKind::BlobPushed => 3,
            EventKind::BlobDeleted => 4,
            EventKind::TagChanged => 5,
            EventKind::TagDeleted => 6,
            EventKind::QuotaRefused => 7,
        }
    }

    fn from_code(c: u8) -> Option<EventKind> {
        Some(match c {
            1 => EventKind::ManifestPushed,
            2 => EventKind::ManifestDeleted,
            3 => EventKind::BlobPushed,
            4 => EventKind::BlobDeleted,
            5 => EventKind::TagChanged,
            6 => EventKind::TagDeleted,
            7 => EventKind::QuotaRefused,
            _ => return None,
        })
    }

    /// The CloudEvents `type` ocidb sends it as.
    pub fn cloud_event_type(self) -> &'static str {
        match self {
            EventKind::ManifestPushed => "io.ocidb.manifest.pushed",
            EventKind::ManifestDeleted => "io.ocidb.manifest.deleted",
            EventKind::BlobPushed => "io.ocidb.blob.pushed",
            EventKind::BlobDeleted => "io.ocidb.blob.deleted",
            EventKind::TagChanged => "io.ocidb.tag.changed",
            EventKind::TagDeleted => "io.ocidb.tag.deleted",
            EventKind::QuotaRefused => "io.ocidb.quota.refused",
        }
    }
}

/// One outbox event as stored in `events`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EventRecord {
    pub kind: Option<EventKind>,
    pub time_ms: u64,
    /// The repository's id (0: the store as a whole, e.g. a GC deletion).
    pub repo_id: u64,
    pub digest: Option<Digest>,
    pub previous: Option<Digest>,
    pub tag: String,
    pub media_type: String,
    pub size: u64,
    pub user: String,
    /// Why, in words (`gc`, `delete`, a quota's message).
    pub detail: String,
}

impl EventRecord {
    /// `[2] kind(1) time_ms repo_id size (varints) has_digest(1) [digest]
    /// has_previous(1) [previous] tag media_type user detail`.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(96);
        v.push(VALUE_FORMAT_V2);
        v.push(self.kind.map_or(0, EventKind::code));
        codec::put_varint(&mut v, self.time_ms);
        codec::put_varint(&mut v, self.repo_id);
        codec::put_varint(&mut v, self.size);
        for d in [&self.digest, &self.previous] {
            match d {
                Some(d) => {
                    v.push(1);
                    codec::put_digest(&mut v, d);
                }
                None => v.push(0),
            }
        }
        for s in [&self.tag, &self.media_type, &self.user, &self.detail] {
            codec::put_str(&mut v, s)?;
        }
        Ok(v)
    }

    pub fn decode(b: &[u8]) -> Result<EventRecord> {
        let mut r = codec::Reader::new(b, "outbox event");
        let version = r.byte()?;
        if version != VALUE_FORMAT_V2 {
            return Err(r.err(format!("version {version} is unknown")));
        }
        let code = r.byte()?;
        let kind = Some(
            EventKind::from_code(code).ok_or_else(|| r.err(format!("kind {code} is unknown")))?,
        );
        let time_ms = r.varint()?;
        let repo_id = r.varint()?;
        let size = r.varint()?;
        let mut ds = [None, None];
        for d in &mut ds {
            *d = match r.byte()? {
                0 => None,
                1 => Some(r.digest()?),
                other => return Err(r.err(format!("digest flag {other} is not 0 or 1"))),
            };
        }
        let [digest, previous] = ds;
        let (tag, media_type, user, detail) = (r.str()?, r.str()?, r.str()?, r.str()?);
        if !r.is_empty() {
            return Err(r.err("bytes follow the detail"));
        }
        Ok(EventRecord {
            kind,
            time_ms,
            repo_id,
            digest,
            previous,
            tag,
            media_type,
            user,
            size,
            detail,
        })
    }
}

/// A `usage` value: bytes and member count of one scope (zeros if short).
pub(crate) fn decode_usage(v: &[u8]) -> (u64, u64) {
    if v.len() < 16 {
        return (0, 0);
    }
    (
        u64::from_le_bytes(le8(&v[..8])),
        u64::from_le_bytes(le8(&v[8..16])),
    )
}

/// A `usage` value: bytes(8 LE) members(8 LE).
pub(crate) fn encode_usage(bytes: u64, members: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&bytes.to_le_bytes());
    v[8..].copy_from_slice(&members.to_le_bytes());
    v
}
