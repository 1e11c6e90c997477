//! Fixed-width key builders and value codecs for the graph tables. The
//! layouts are documented in ARCHITECTURE.md ("On-disk format").

use crate::digest::{Digest, DIGEST_KEY_LEN};
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, EdgeKind};
use crate::record::VALUE_FORMAT_V1;
use crate::tables::{EDGE_IN_LEN, EDGE_OUT_LEN, MEMBER_LEN, REFERRER_LEN};

const D: usize = DIGEST_KEY_LEN;

pub(crate) fn edge_out(parent: &Digest, kind: EdgeKind, child: &Digest) -> [u8; EDGE_OUT_LEN] {
    let mut k = [0u8; EDGE_OUT_LEN];
    k[..D].copy_from_slice(&parent.to_key());
    k[D] = kind.code();
    k[D + 1..].copy_from_slice(&child.to_key());
    k
}

/// The inclusive key range of every out-edge of `parent`.
pub(crate) fn edge_out_range(parent: &Digest) -> ([u8; EDGE_OUT_LEN], [u8; EDGE_OUT_LEN]) {
    let mut lo = [0u8; EDGE_OUT_LEN];
    lo[..D].copy_from_slice(&parent.to_key());
    let mut hi = [0xffu8; EDGE_OUT_LEN];
    hi[..D].copy_from_slice(&parent.to_key());
    (lo, hi)
}

pub(crate) fn split_edge_out(k: &[u8; EDGE_OUT_LEN]) -> Result<(Digest, EdgeKind, Digest)> {
    let kind = EdgeKind::from_code(k[D])
        .ok_or_else(|| Error::Corrupt(format!("edge kind {} is unknown", k[D])))?;
    Ok((
        Digest::from_key(&k[..D])?,
        kind,
        Digest::from_key(&k[D + 1..])?,
    ))
}

pub(crate) fn edge_in(child: &Digest, parent: &Digest) -> [u8; EDGE_IN_LEN] {
    let mut k = [0u8; EDGE_IN_LEN];
    k[..D].copy_from_slice(&child.to_key());
    k[D..].copy_from_slice(&parent.to_key());
    k
}

pub(crate) fn edge_in_range(child: &Digest) -> ([u8; EDGE_IN_LEN], [u8; EDGE_IN_LEN]) {
    let mut lo = [0u8; EDGE_IN_LEN];
    lo[..D].copy_from_slice(&child.to_key());
    let mut hi = [0xffu8; EDGE_IN_LEN];
    hi[..D].copy_from_slice(&child.to_key());
    (lo, hi)
}

pub(crate) fn split_edge_in(k: &[u8; EDGE_IN_LEN]) -> Result<(Digest, Digest)> {
    Ok((Digest::from_key(&k[..D])?, Digest::from_key(&k[D..])?))
}

pub(crate) fn referrer(
    repo: u64,
    subject: &Digest,
    artifact_type: u32,
    referrer: &Digest,
) -> [u8; REFERRER_LEN] {
    let mut k = [0u8; REFERRER_LEN];
    k[..8].copy_from_slice(&repo.to_be_bytes());
    k[8..8 + D].copy_from_slice(&subject.to_key());
    k[8 + D..12 + D].copy_from_slice(&artifact_type.to_be_bytes());
    k[12 + D..].copy_from_slice(&referrer.to_key());
    k
}

/// The range of referrers of `subject` in `repo`, optionally of one
/// artifact type id.
pub(crate) fn referrer_range(
    repo: u64,
    subject: &Digest,
    artifact_type: Option<u32>,
) -> ([u8; REFERRER_LEN], [u8; REFERRER_LEN]) {
    let mut lo = [0u8; REFERRER_LEN];
    lo[..8].copy_from_slice(&repo.to_be_bytes());
    lo[8..8 + D].copy_from_slice(&subject.to_key());
    let mut hi = lo;
    hi[8 + D..].fill(0xff);
    if let Some(at) = artifact_type {
        lo[8 + D..12 + D].copy_from_slice(&at.to_be_bytes());
        hi[8 + D..12 + D].copy_from_slice(&at.to_be_bytes());
    }
    (lo, hi)
}

pub(crate) fn referrer_parts(k: &[u8; REFERRER_LEN]) -> Result<(u32, Digest)> {
    let mut at = [0u8; 4];
    at.copy_from_slice(&k[8 + D..12 + D]);
    Ok((u32::from_be_bytes(at), Digest::from_key(&k[12 + D..])?))
}

pub(crate) fn member(repo: u64, d: &Digest) -> [u8; MEMBER_LEN] {
    let mut k = [0u8; MEMBER_LEN];
    k[..8].copy_from_slice(&repo.to_be_bytes());
    k[8..].copy_from_slice(&d.to_key());
    k
}

pub(crate) fn member_range(repo: u64) -> ([u8; MEMBER_LEN], [u8; MEMBER_LEN]) {
    let mut lo = [0u8; MEMBER_LEN];
    lo[..8].copy_from_slice(&repo.to_be_bytes());
    let mut hi = [0xffu8; MEMBER_LEN];
    hi[..8].copy_from_slice(&repo.to_be_bytes());
    (lo, hi)
}

pub(crate) fn member_of(d: &Digest, repo: u64) -> [u8; MEMBER_LEN] {
    let mut k = [0u8; MEMBER_LEN];
    k[..D].copy_from_slice(&d.to_key());
    k[D..].copy_from_slice(&repo.to_be_bytes());
    k
}

pub(crate) fn member_of_range(d: &Digest) -> ([u8; MEMBER_LEN], [u8; MEMBER_LEN]) {
    let mut lo = [0u8; MEMBER_LEN];
    lo[..D].copy_from_slice(&d.to_key());
    let mut hi = [0xffu8; MEMBER_LEN];
    hi[..D].copy_from_slice(&d.to_key());
    (lo, hi)
}

pub(crate) fn member_of_repo(k: &[u8; MEMBER_LEN]) -> u64 {
    let mut r = [0u8; 8];
    r.copy_from_slice(&k[D..]);
    u64::from_be_bytes(r)
}

pub(crate) fn member_digest(k: &[u8; MEMBER_LEN]) -> Result<Digest> {
    Digest::from_key(&k[8..])
}

pub(crate) fn tag(repo: u64, tag: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + tag.len());
    k.extend_from_slice(&repo.to_be_bytes());
    k.extend_from_slice(tag.as_bytes());
    k
}

/// `[version] json(descriptor)`.
pub(crate) fn encode_descriptor(d: &Descriptor) -> Vec<u8> {
    let mut v = vec![VALUE_FORMAT_V1];
    // Serialising a Descriptor (strings, numbers, maps of strings) cannot fail.
    let _ = serde_json::to_writer(&mut v, d);
    v
}

pub(crate) fn decode_descriptor(v: &[u8]) -> Result<Descriptor> {
    match v.split_first() {
        Some((&VALUE_FORMAT_V1, json)) => serde_json::from_slice(json)
            .map_err(|e| Error::Corrupt(format!("stored descriptor is unreadable: {e}"))),
        Some((ver, _)) => Err(Error::Corrupt(format!(
            "stored descriptor has unknown format version {ver}"
        ))),
        None => Err(Error::Corrupt("stored descriptor is empty".into())),
    }
}

/// Referrer entries remember why they exist, so that removing one source
/// (an untag of a `sha256-…` index) keeps an entry the other still justifies.
pub(crate) const SOURCE_SUBJECT: u8 = 1;
pub(crate) const SOURCE_TAG_SCHEMA: u8 = 2;

/// `[version] [sources] json(descriptor)`.
pub(crate) fn encode_referrer(sources: u8, d: &Descriptor) -> Vec<u8> {
    let mut v = vec![VALUE_FORMAT_V1, sources];
    let _ = serde_json::to_writer(&mut v, d);
    v
}

pub(crate) fn decode_referrer(v: &[u8]) -> Result<(u8, Descriptor)> {
    match v {
        [VALUE_FORMAT_V1, sources, json @ ..] => Ok((
            *sources,
            serde_json::from_slice(json)
                .map_err(|e| Error::Corrupt(format!("stored referrer is unreadable: {e}")))?,
        )),
        _ => Err(Error::Corrupt(
            "stored referrer has an unknown format".into(),
        )),
    }
}

/// `[version] [kind bits]`.
pub(crate) fn encode_kinds(mask: u8) -> [u8; 2] {
    [VALUE_FORMAT_V1, mask]
}

pub(crate) fn decode_kinds(v: &[u8]) -> Result<u8> {
    match v {
        [VALUE_FORMAT_V1, mask] => Ok(*mask),
        _ => Err(Error::Corrupt(
            "stored edge kinds have an unknown format".into(),
        )),
    }
}

pub(crate) fn kinds_of(mask: u8) -> impl Iterator<Item = EdgeKind> {
    (1..=5u8)
        .filter_map(EdgeKind::from_code)
        .filter(move |k| mask & k.bit() != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hasher::Hasher;
    use proptest::prelude::*;

    fn d(s: &str) -> Digest {
        Hasher::digest_of(crate::Algorithm::Sha256, s.as_bytes())
    }

    #[test]
    fn keys_roundtrip_and_sort_inside_their_ranges() {
        let (p, c) = (d("p"), d("c"));
        let k = edge_out(&p, EdgeKind::Layer, &c);
        assert_eq!(split_edge_out(&k).expect("split"), (p, EdgeKind::Layer, c));
        let (lo, hi) = edge_out_range(&p);
        assert!(lo <= k && k <= hi);
        let r = referrer(7, &p, 3, &c);
        let (lo, hi) = referrer_range(7, &p, Some(3));
        assert!(lo <= r && r <= hi);
        let (lo, hi) = referrer_range(7, &p, Some(4));
        assert!(!(lo <= r && r <= hi));
        assert_eq!(referrer_parts(&r).expect("parts"), (3, c));
        let m = member_of(&c, 9);
        assert_eq!(member_of_repo(&m), 9);
        assert_eq!(member_digest(&member(9, &c)).expect("digest"), c);
    }

    proptest! {
        #[test]
        fn value_codecs_roundtrip(mt in "[a-z/.+]{0,40}", size in any::<u64>(), at in proptest::option::of("[a-z/.+]{1,40}"), sources in 0u8..4, mask in any::<u8>()) {
            let desc = Descriptor { artifact_type: at, ..Descriptor::new(mt, d("x"), size) };
            prop_assert_eq!(decode_descriptor(&encode_descriptor(&desc)).expect("desc"), desc.clone());
            prop_assert_eq!(decode_referrer(&encode_referrer(sources, &desc)).expect("ref"), (sources, desc));
            prop_assert_eq!(decode_kinds(&encode_kinds(mask)).expect("kinds"), mask);
        }

        #[test]
        fn garbage_values_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_descriptor(&b);
            let _ = decode_referrer(&b);
            let _ = decode_kinds(&b);
        }
    }
}
