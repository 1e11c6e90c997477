//! Fixed-width key builders and value codecs for the graph tables. The
//! layouts are documented in ARCHITECTURE.md ("On-disk format").

use crate::error::{Error, Result};
use crate::oci::digest::{Digest, DIGEST_KEY_LEN};
use crate::oci::manifest::{Descriptor, EdgeKind};
use crate::schema::record::VALUE_FORMAT_V1;
use crate::schema::tables::{EDGE_IN_LEN, MEMBER_LEN, REFERRER_LEN};

const D: usize = DIGEST_KEY_LEN;

/// `edges_in` key: child(65) parent(65) kind(1).
pub(crate) fn edge_in(child: &Digest, parent: &Digest, kind: EdgeKind) -> [u8; EDGE_IN_LEN] {
    let mut k = [0u8; EDGE_IN_LEN];
    k[..D].copy_from_slice(&child.to_key());
    k[D..2 * D].copy_from_slice(&parent.to_key());
    k[2 * D] = kind.code();
    k
}

pub(crate) fn edge_in_range(child: &Digest) -> ([u8; EDGE_IN_LEN], [u8; EDGE_IN_LEN]) {
    let mut lo = [0u8; EDGE_IN_LEN];
    lo[..D].copy_from_slice(&child.to_key());
    let mut hi = [0xffu8; EDGE_IN_LEN];
    hi[..D].copy_from_slice(&child.to_key());
    (lo, hi)
}

pub(crate) fn split_edge_in(k: &[u8; EDGE_IN_LEN]) -> Result<(Digest, Digest, EdgeKind)> {
    let kind = EdgeKind::from_code(k[2 * D])
        .ok_or_else(|| Error::Corrupt(format!("edge kind {} is unknown", k[2 * D])))?;
    Ok((
        Digest::from_key(&k[..D])?,
        Digest::from_key(&k[D..2 * D])?,
        kind,
    ))
}

/// A manifest's adjacency list (`edges_out` value) is `[version]` then a
/// JSON array of `[kind code, descriptor]`, the descriptors as the manifest
/// wrote them. The subject entry also carries, under `_referrer`, the
/// manifest's own descriptor: what a referrers listing returns for it.
pub(crate) type StoredEdge = (EdgeKind, Digest, Descriptor);

#[derive(serde::Serialize, serde::Deserialize)]
struct EdgeValue {
    #[serde(flatten)]
    desc: Descriptor,
    #[serde(rename = "_referrer", default, skip_serializing_if = "Option::is_none")]
    referrer: Option<Descriptor>,
}

fn decode_edge_values(v: &[u8]) -> Result<Vec<(u8, EdgeValue)>> {
    let Some((&VALUE_FORMAT_V1, json)) = v.split_first() else {
        return Err(Error::Corrupt("stored edges have an unknown format".into()));
    };
    serde_json::from_slice(json)
        .map_err(|e| Error::Corrupt(format!("stored edges are unreadable: {e}")))
}

/// The edges, each with its target's digest and descriptor.
pub(crate) fn decode_edges(v: &[u8]) -> Result<Vec<StoredEdge>> {
    decode_edge_values(v)?
        .into_iter()
        .map(|(code, ev)| {
            let kind = EdgeKind::from_code(code)
                .ok_or_else(|| Error::Corrupt(format!("edge kind {code} is unknown")))?;
            Ok((kind, ev.desc.digest, ev.desc))
        })
        .collect()
}

/// For a referrer: its subject's digest and its own descriptor.
pub(crate) fn decode_subject(v: &[u8]) -> Result<Option<(Digest, Descriptor)>> {
    Ok(decode_edge_values(v)?
        .into_iter()
        .find(|(code, _)| *code == EdgeKind::Subject.code())
        .and_then(|(_, ev)| ev.referrer.map(|own| (ev.desc.digest, own))))
}

/// Encodes a manifest's edges: its children, and its subject together with
/// its own descriptor.
pub(crate) fn encode_adjacency(
    children: &[(EdgeKind, Descriptor)],
    subject: Option<(&Descriptor, &Descriptor)>,
) -> Vec<u8> {
    let mut list: Vec<(u8, EdgeValue)> = children
        .iter()
        .map(|(k, d)| {
            (
                k.code(),
                EdgeValue {
                    desc: d.clone(),
                    referrer: None,
                },
            )
        })
        .collect();
    if let Some((subject, own)) = subject {
        list.push((
            EdgeKind::Subject.code(),
            EdgeValue {
                desc: subject.clone(),
                referrer: Some(own.clone()),
            },
        ));
    }
    let mut v = vec![VALUE_FORMAT_V1];
    // Serialising descriptors (strings, numbers, maps of strings) cannot fail.
    let _ = serde_json::to_writer(&mut v, &list);
    v
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

/// The repository and subject of a referrer key.
pub(crate) fn referrer_scope(k: &[u8; REFERRER_LEN]) -> Result<(u64, Digest)> {
    let subject = Digest::from_key(&k[8..8 + DIGEST_KEY_LEN])?;
    Ok((repo_prefix(k), subject))
}

/// The repository id that keys of `members`, `tags`, `tagged` and
/// `referrers` start with (big-endian, 8 bytes; callers pass whole keys).
pub(crate) fn repo_prefix(k: &[u8]) -> u64 {
    let mut repo = [0u8; 8];
    repo.copy_from_slice(&k[..8]);
    u64::from_be_bytes(repo)
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

/// `tagged` key: repo(8) digest(65) tag bytes.
pub(crate) fn tagged(repo: u64, d: &Digest, tag: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + D + tag.len());
    k.extend_from_slice(&member(repo, d));
    k.extend_from_slice(tag.as_bytes());
    k
}

/// Referrer entries remember why they exist, so that removing one source
/// (an untag of a `sha256-…` index) keeps an entry the other still justifies.
/// Membership kinds in the `members` table.
pub(crate) const MEMBER_MANIFEST: u8 = 1;
pub(crate) const MEMBER_BLOB: u8 = 2;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::hasher::Hasher;
    use proptest::prelude::*;

    fn d(s: &str) -> Digest {
        Hasher::digest_of(crate::Algorithm::Sha256, s.as_bytes())
    }

    #[test]
    fn keys_roundtrip_and_sort_inside_their_ranges() {
        let (p, c) = (d("p"), d("c"));
        let k = edge_in(&c, &p, EdgeKind::Layer);
        assert_eq!(split_edge_in(&k).expect("split"), (c, p, EdgeKind::Layer));
        let (lo, hi) = edge_in_range(&c);
        assert!(lo <= k && k <= hi);
        let child = Descriptor::new("application/x", c, 3);
        let own = Descriptor::new("application/y", p, 4);
        let subject = Descriptor::new("application/z", d("s"), 5);
        let v = encode_adjacency(&[(EdgeKind::Layer, child.clone())], Some((&subject, &own)));
        let edges = decode_edges(&v).expect("edges");
        assert_eq!(
            edges,
            vec![
                (EdgeKind::Layer, c, child),
                (EdgeKind::Subject, subject.digest, subject.clone())
            ]
        );
        assert_eq!(
            decode_subject(&v).expect("subject"),
            Some((subject.digest, own))
        );
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
        fn value_codecs_roundtrip(mt in "[a-z/.+]{0,40}", size in 0..=i64::MAX as u64, at in proptest::option::of("[a-z/.+]{1,40}"), sources in 0u8..4) {
            let desc = Descriptor { artifact_type: at, ..Descriptor::new(mt, d("x"), size) };
            prop_assert_eq!(decode_referrer(&encode_referrer(sources, &desc)).expect("ref"), (sources, desc.clone()));
            let edges = decode_edges(&encode_adjacency(&[(EdgeKind::Config, desc.clone())], None)).expect("edges");
            prop_assert_eq!(edges, vec![(EdgeKind::Config, desc.digest, desc)]);
        }

        #[test]
        fn garbage_values_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_referrer(&b);
            let _ = decode_edges(&b);
        }
    }
}
