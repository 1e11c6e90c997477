//! On-disk value encodings. Every value starts with a format-version byte so
//! that a later release can read old records; ARCHITECTURE.md documents each
//! layout byte by byte.

use crate::error::{Error, Result};
use crate::oci::digest::Digest;
use crate::schema::tables::DKey;

/// Version byte of every value written by this release.
pub(crate) const VALUE_FORMAT_V1: u8 = 1;

/// Where a blob's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the `inline` table, committed with the record.
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
    /// Set when the blob was parsed as a manifest and its edges are indexed.
    pub manifest: bool,
    pub media_type: Option<String>,
    /// A manifest's artifactType (with the image-manifest fallback).
    pub artifact_type: Option<String>,
}

/// Fixed part: version(1) flags(1) size(8) created_ms(8) media_type_len(2);
/// then the media type, artifact_type_len(2) and the artifact type.
const FIXED: usize = 20;

impl BlobRecord {
    /// Fails, never truncates, when a string does not fit its 16-bit
    /// length (entry points cap media types at 255 bytes, so this is a
    /// backstop).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let field = |s: &Option<String>, what: &str| -> Result<Vec<u8>> {
            let b = s.as_deref().unwrap_or("").as_bytes();
            if b.len() > u16::MAX as usize {
                return Err(Error::InvalidMediaType {
                    value: crate::oci::digest::truncate_for_message(s.as_deref().unwrap_or("")),
                    reason: format!(
                        "the {what} is {} bytes; a record holds at most {} (and RFC 6838 allows {})",
                        b.len(),
                        u16::MAX,
                        crate::oci::names::MAX_MEDIA_TYPE_LEN
                    ),
                });
            }
            Ok(b.to_vec())
        };
        let mt = field(&self.media_type, "media type")?;
        let at = field(&self.artifact_type, "artifact type")?;
        let mut v = Vec::with_capacity(FIXED + mt.len());
        v.push(VALUE_FORMAT_V1);
        let mut flags = match self.placement {
            Placement::Inline => FLAG_INLINE,
            Placement::File => FLAG_FILE,
        };
        if self.manifest {
            flags |= FLAG_MANIFEST;
        }
        v.push(flags);
        v.extend_from_slice(&self.size.to_le_bytes());
        v.extend_from_slice(&self.created_ms.to_le_bytes());
        v.extend_from_slice(&(mt.len() as u16).to_le_bytes());
        v.extend_from_slice(&mt);
        v.extend_from_slice(&(at.len() as u16).to_le_bytes());
        v.extend_from_slice(&at);
        Ok(v)
    }

    pub fn decode(b: &[u8]) -> Result<BlobRecord> {
        let corrupt = |why: &str| corrupt_record(b, why);
        let fixed = fixed_part(b)?;
        let flags = fixed[1];
        let placement = match flags & (FLAG_INLINE | FLAG_FILE) {
            FLAG_INLINE => Placement::Inline,
            FLAG_FILE => Placement::File,
            _ => {
                return Err(corrupt(
                    "placement flags are not exactly one of inline/file",
                ))
            }
        };
        let size = u64::from_le_bytes(le8(&fixed[2..10]));
        let created_ms = u64::from_le_bytes(le8(&fixed[10..18]));
        let mt_len = u16::from_le_bytes([fixed[18], fixed[19]]) as usize;
        let mt = b
            .get(FIXED..FIXED + mt_len)
            .ok_or_else(|| corrupt("media type runs past the end"))?;
        let text = |b: &[u8], what: &str| -> Result<Option<String>> {
            if b.is_empty() {
                return Ok(None);
            }
            Ok(Some(
                std::str::from_utf8(b)
                    .map_err(|_| corrupt(&format!("{what} is not UTF-8")))?
                    .to_string(),
            ))
        };
        let media_type = text(mt, "media type")?;
        let rest = &b[FIXED + mt_len..];
        let at_len = match rest {
            [lo, hi, ..] => u16::from_le_bytes([*lo, *hi]) as usize,
            _ => return Err(corrupt("artifact type length is missing")),
        };
        let at = rest
            .get(2..2 + at_len)
            .ok_or_else(|| corrupt("artifact type runs past the end"))?;
        let artifact_type = text(at, "artifact type")?;
        Ok(BlobRecord {
            size,
            created_ms,
            placement,
            manifest: flags & FLAG_MANIFEST != 0,
            media_type,
            artifact_type,
        })
    }
}

/// Looks a blob's record up in any view of the `blobs` table (a read
/// snapshot or the writer's transaction) and decodes it: the one place
/// that does both.
pub(crate) fn lookup(
    blobs: &impl redb::ReadableTable<&'static DKey, &'static [u8]>,
    d: &Digest,
) -> Result<Option<BlobRecord>> {
    blobs
        .get(&d.to_key())?
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
        let fixed = fixed_part(b)?;
        Ok(RecordHeader {
            size: u64::from_le_bytes(le8(&fixed[2..10])),
            created_ms: u64::from_le_bytes(le8(&fixed[10..18])),
            manifest: fixed[1] & FLAG_MANIFEST != 0,
        })
    }
}

fn corrupt_record(b: &[u8], why: &str) -> Error {
    Error::Corrupt(format!("blob record of {} bytes: {why}", b.len()))
}

/// The fixed part of a record, once its length and version are checked.
fn fixed_part(b: &[u8]) -> Result<&[u8; FIXED]> {
    let fixed: &[u8; FIXED] = b
        .get(..FIXED)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| corrupt_record(b, "shorter than the fixed header"))?;
    if fixed[0] != VALUE_FORMAT_V1 {
        return Err(corrupt_record(
            b,
            &format!(
                "unknown format version {}, expected {VALUE_FORMAT_V1}",
                fixed[0]
            ),
        ));
    }
    Ok(fixed)
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
    pub algorithm: crate::oci::digest::Algorithm,
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
            value: crate::oci::digest::truncate_for_message(&self.repo),
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
        let algorithm = crate::oci::digest::Algorithm::from_tag(b[1])
            .ok_or_else(|| bad("unknown algorithm"))?;
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

    #[test]
    fn an_oversized_media_type_is_refused_not_truncated() {
        let r = BlobRecord {
            size: 1,
            created_ms: 0,
            placement: Placement::Inline,
            manifest: false,
            media_type: Some(format!("application/x-{}", "é".repeat(40_000))),
            artifact_type: None,
        };
        let e = r.encode().expect_err("too long");
        assert!(e.to_string().contains("at most 65535"), "{e}");
    }

    proptest! {
        #[test]
        fn record_roundtrip(size in any::<u64>(), created in any::<u64>(), inline in any::<bool>(), manifest in any::<bool>(), mt in proptest::option::of("[a-z/.+0-9-]{1,80}"), at in proptest::option::of("[a-z/.+0-9-]{1,80}")) {
            let r = BlobRecord {
                size, created_ms: created,
                placement: if inline { Placement::Inline } else { Placement::File },
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
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RecordHeader::decode(&b);
            // Whatever the full decoder accepts, the header decoder reads alike.
            if let Ok(r) = BlobRecord::decode(&b) {
                let h = RecordHeader::decode(&b).expect("a decodable record has a header");
                prop_assert_eq!((h.size, h.created_ms, h.manifest), (r.size, r.created_ms, r.manifest));
            }
        }
    }
}
