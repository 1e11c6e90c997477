//! Key builders and value codecs for the graph tables (since format 2). Keys
//! are built from self-delimiting digest keys (`[tag][hash]`), so a key
//! that holds a digest and more fields splits unambiguously, and a prefix
//! of whole fields is a range. The layouts are documented in
//! docs/format.md.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::oci::manifest::{Descriptor, EdgeKind};
use crate::schema::codec::{self, Reader};
use crate::schema::record::VALUE_FORMAT_V2;

/// Bytes appended to a prefix for the inclusive top of its range: more than
/// any suffix a key of these tables carries (artifact type id and a sha512
/// digest: 69; tags are UTF-8, which never holds 0xff).
const RANGE_TOP: [u8; 80] = [0xff; 80];

/// The inclusive range of keys that start with `prefix`.
fn prefix_range(prefix: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let mut hi = Vec::with_capacity(prefix.len() + RANGE_TOP.len());
    hi.extend_from_slice(&prefix);
    hi.extend_from_slice(&RANGE_TOP);
    (prefix, hi)
}

fn kind_of(code: u8) -> Result<EdgeKind> {
    EdgeKind::from_code(code).ok_or_else(|| Error::Corrupt(format!("edge kind {code} is unknown")))
}

/// `edges_in` key: child parent kind(1).
pub(crate) fn edge_in(child: &Digest, parent: &Digest, kind: EdgeKind) -> Vec<u8> {
    let (c, p) = (child.to_key(), parent.to_key());
    let mut k = Vec::with_capacity(c.len() + p.len() + 1);
    k.extend_from_slice(&c);
    k.extend_from_slice(&p);
    k.push(kind.code());
    k
}

pub(crate) fn edge_in_range(child: &Digest) -> (Vec<u8>, Vec<u8>) {
    prefix_range(child.to_key().to_vec())
}

/// The length of the digest key that `k` starts with, from its tag.
fn digest_key_len(k: &[u8]) -> Result<usize> {
    let tag = *k
        .first()
        .ok_or_else(|| Error::Corrupt("an empty key where a digest belongs".into()))?;
    let alg = crate::digest::Algorithm::from_tag(tag)
        .ok_or_else(|| Error::Corrupt(format!("digest algorithm tag {tag} is unknown")))?;
    Ok(1 + alg.len())
}

/// An `edges_in` key's child and parent digest keys, undecoded (the GC
/// mark reads every edge and needs only the bytes), and its kind.
pub(crate) fn split_edge_in_raw(k: &[u8]) -> Result<(&[u8], &[u8], EdgeKind)> {
    let bad = || Error::Corrupt(format!("edges_in key of {} bytes is malformed", k.len()));
    let (child, rest) = k.split_at_checked(digest_key_len(k)?).ok_or_else(bad)?;
    let (parent, rest) = rest
        .split_at_checked(digest_key_len(rest)?)
        .ok_or_else(bad)?;
    match rest {
        [code] => Ok((child, parent, kind_of(*code)?)),
        _ => Err(bad()),
    }
}

pub(crate) fn split_edge_in(k: &[u8]) -> Result<(Digest, Digest, EdgeKind)> {
    let (child, parent, kind) = split_edge_in_raw(k)?;
    Ok((Digest::from_key(child)?, Digest::from_key(parent)?, kind))
}

/// A manifest's adjacency list (`edges_out` value): `[2]`, then per edge its
/// kind code and the descriptor as the manifest wrote it (binary, see
/// `codec`). The subject entry is followed by the manifest's own
/// descriptor without its digest (the key holds it): what a referrers
/// listing returns for it.
pub(crate) type StoredEdge = (EdgeKind, Digest, Descriptor);

const WHAT_EDGES: &str = "stored edges";

/// Calls `f` with each edge and, for the subject, the manifest's own
/// descriptor.
fn read_edges(
    own: &Digest,
    v: &[u8],
    mut f: impl FnMut(EdgeKind, Descriptor, Option<Descriptor>),
) -> Result<()> {
    let mut r = Reader::new(v, WHAT_EDGES);
    let version = r.byte()?;
    if version != VALUE_FORMAT_V2 {
        return Err(r.err(format!("format {version} is unknown")));
    }
    while !r.is_empty() {
        let kind = kind_of(r.byte()?)?;
        let d = r.descriptor(None)?;
        let referrer = if kind == EdgeKind::Subject {
            Some(r.descriptor(Some(own))?)
        } else {
            None
        };
        f(kind, d, referrer);
    }
    Ok(())
}

/// The edges, each with its target's digest and descriptor.
pub(crate) fn decode_edges(own: &Digest, v: &[u8]) -> Result<Vec<StoredEdge>> {
    let mut out = Vec::new();
    read_edges(own, v, |kind, d, _| out.push((kind, d.digest, d)))?;
    Ok(out)
}

/// For a referrer: its subject's digest and its own descriptor.
pub(crate) fn decode_subject(own: &Digest, v: &[u8]) -> Result<Option<(Digest, Descriptor)>> {
    let mut found = None;
    read_edges(own, v, |_, d, referrer| {
        if let Some(r) = referrer {
            found = Some((d.digest, r));
        }
    })?;
    Ok(found)
}

/// Encodes a manifest's edges: its children, and its subject together with
/// its own descriptor.
pub(crate) fn encode_adjacency(
    children: &[(EdgeKind, Descriptor)],
    subject: Option<(&Descriptor, &Descriptor)>,
) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(1 + children.len() * 48);
    v.push(VALUE_FORMAT_V2);
    for (k, d) in children {
        v.push(k.code());
        codec::put_descriptor(&mut v, d, true)?;
    }
    if let Some((subject, own)) = subject {
        v.push(EdgeKind::Subject.code());
        codec::put_descriptor(&mut v, subject, true)?;
        codec::put_descriptor(&mut v, own, false)?;
    }
    Ok(v)
}

/// The key of `referrer` in the referrers of `subject` in `repo`.
pub fn referrer(repo: u64, subject: &Digest, artifact_type: u32, referrer: &Digest) -> Vec<u8> {
    let (s, r) = (subject.to_key(), referrer.to_key());
    let mut k = Vec::with_capacity(12 + s.len() + r.len());
    k.extend_from_slice(&repo.to_be_bytes());
    k.extend_from_slice(&s);
    k.extend_from_slice(&artifact_type.to_be_bytes());
    k.extend_from_slice(&r);
    k
}

/// The range of referrers of `subject` in `repo`, optionally of one
/// artifact type id.
pub fn referrer_range(
    repo: u64,
    subject: &Digest,
    artifact_type: Option<u32>,
) -> (Vec<u8>, Vec<u8>) {
    let s = subject.to_key();
    let mut p = Vec::with_capacity(12 + s.len());
    p.extend_from_slice(&repo.to_be_bytes());
    p.extend_from_slice(&s);
    if let Some(at) = artifact_type {
        p.extend_from_slice(&at.to_be_bytes());
    }
    prefix_range(p)
}

/// A referrer key's fields: repository, subject, artifact type id, referrer.
pub(crate) fn split_referrer(k: &[u8]) -> Result<(u64, Digest, u32, Digest)> {
    let bad = || Error::Corrupt(format!("referrer key of {} bytes is malformed", k.len()));
    let (repo, rest) = k.split_first_chunk::<8>().ok_or_else(bad)?;
    let (subject, rest) = Digest::split_key(rest)?;
    let (at, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let referrer = Digest::from_key(rest)?;
    Ok((
        u64::from_be_bytes(*repo),
        subject,
        u32::from_be_bytes(*at),
        referrer,
    ))
}

/// The repository id that keys of `members`, `tags`, `tagged` and
/// `referrers` start with (big-endian, 8 bytes; callers pass whole keys;
/// a short key reads as repository 0, which no repository has).
pub(crate) fn repo_prefix(k: &[u8]) -> u64 {
    k.first_chunk::<8>().map_or(0, |r| u64::from_be_bytes(*r))
}

pub(crate) fn referrer_parts(k: &[u8]) -> Result<(u32, Digest)> {
    split_referrer(k).map(|(_, _, at, r)| (at, r))
}

pub(crate) fn member(repo: u64, d: &Digest) -> Vec<u8> {
    let dk = d.to_key();
    let mut k = Vec::with_capacity(8 + dk.len());
    k.extend_from_slice(&repo.to_be_bytes());
    k.extend_from_slice(&dk);
    k
}

pub(crate) fn member_range(repo: u64) -> (Vec<u8>, Vec<u8>) {
    prefix_range(repo.to_be_bytes().to_vec())
}

pub(crate) fn member_of(d: &Digest, repo: u64) -> Vec<u8> {
    let dk = d.to_key();
    let mut k = Vec::with_capacity(8 + dk.len());
    k.extend_from_slice(&dk);
    k.extend_from_slice(&repo.to_be_bytes());
    k
}

pub(crate) fn member_of_range(d: &Digest) -> (Vec<u8>, Vec<u8>) {
    prefix_range(d.to_key().to_vec())
}

/// The repository of a `member_of` key.
pub(crate) fn member_of_repo(k: &[u8]) -> Result<u64> {
    let (_, rest) = Digest::split_key(k)?;
    let r: [u8; 8] = rest
        .try_into()
        .map_err(|_| Error::Corrupt(format!("member_of key of {} bytes is malformed", k.len())))?;
    Ok(u64::from_be_bytes(r))
}

/// The digest of a `members` (or `lease_items`) key: id(8) digest.
pub(crate) fn member_digest(k: &[u8]) -> Result<Digest> {
    Ok(Digest::from_key(k.get(8..).unwrap_or_default())?)
}

pub(crate) fn tag(repo: u64, tag: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + tag.len());
    k.extend_from_slice(&repo.to_be_bytes());
    k.extend_from_slice(tag.as_bytes());
    k
}

/// The `usage` rows a repository counts in: each namespace prefix (`a/`,
/// `a/b/`), then the repository itself.
pub(crate) fn usage_scopes(repo: &str) -> Vec<&str> {
    let mut out: Vec<&str> = repo.match_indices('/').map(|(i, _)| &repo[..=i]).collect();
    out.push(repo);
    out
}

/// The prefix of one tag's `tag_history` keys: repo(8) tag bytes 0x00.
pub(crate) fn history_prefix(repo: u64, tag: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + tag.len());
    k.extend_from_slice(&repo.to_be_bytes());
    k.extend_from_slice(tag.as_bytes());
    k.push(0);
    k
}

/// A `tag_history` key: [`history_prefix`] then seq(8).
pub(crate) fn history(repo: u64, tag: &str, seq: u64) -> Vec<u8> {
    let mut k = history_prefix(repo, tag);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A `tag_history_time` key: time_ms(8) seq(8).
pub(crate) fn history_time(time_ms: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&time_ms.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The seq(8) that ends a `tag_history` or `tag_history_time` key.
pub(crate) fn history_seq(k: &[u8]) -> Result<u64> {
    k.len()
        .checked_sub(8)
        .filter(|&at| at >= 8)
        .map(|at| be_u64(&k[at..]))
        .ok_or_else(|| Error::Corrupt(format!("tag history key of {} bytes is malformed", k.len())))
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

/// `tagged` key: repo(8) digest tag bytes.
pub(crate) fn tagged(repo: u64, d: &Digest, tag: &str) -> Vec<u8> {
    let mut k = member(repo, d);
    k.extend_from_slice(tag.as_bytes());
    k
}

/// A `tagged` key's repository, digest and tag bytes.
pub(crate) fn split_tagged(k: &[u8]) -> Result<(u64, Digest, &[u8])> {
    let (repo, rest) = k
        .split_first_chunk::<8>()
        .ok_or_else(|| Error::Corrupt(format!("tagged key of {} bytes is malformed", k.len())))?;
    let (d, tag) = Digest::split_key(rest)?;
    Ok((u64::from_be_bytes(*repo), d, tag))
}

/// Membership kinds in the `members` table.
pub(crate) const MEMBER_MANIFEST: u8 = 1;
pub(crate) const MEMBER_BLOB: u8 = 2;

/// Referrer entries remember why they exist, so that removing one source
/// (an untag of a `sha256-…` index) keeps an entry the other still justifies.
/// This one: the referrer's own `subject` field.
pub const SOURCE_SUBJECT: u8 = 1;
pub(crate) const SOURCE_FALLBACK_TAG: u8 = 2;

/// `[2] [sources]` then the descriptor without its digest (the key's last
/// field holds it).
pub fn encode_referrer(sources: u8, d: &Descriptor) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(48);
    v.push(VALUE_FORMAT_V2);
    v.push(sources);
    codec::put_descriptor(&mut v, d, false)?;
    Ok(v)
}

/// Decodes a referrer entry; `referrer` is the digest its key ends with.
pub(crate) fn decode_referrer_of(referrer: &Digest, v: &[u8]) -> Result<(u8, Descriptor)> {
    let mut r = Reader::new(v, "stored referrer");
    let version = r.byte()?;
    if version != VALUE_FORMAT_V2 {
        return Err(r.err(format!("format {version} is unknown")));
    }
    let sources = r.byte()?;
    let d = r.descriptor(Some(referrer))?;
    if !r.is_empty() {
        return Err(r.err("bytes follow the descriptor"));
    }
    Ok((sources, d))
}

/// Decodes a referrer entry from its whole key and value.
pub fn decode_referrer(k: &[u8], v: &[u8]) -> Result<(u8, Descriptor)> {
    let (_, referrer) = referrer_parts(k)?;
    decode_referrer_of(&referrer, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::hasher::Hasher;
    use proptest::prelude::*;

    #[test]
    fn a_repository_counts_in_each_namespace_above_it() {
        assert_eq!(usage_scopes("a/b/c"), ["a/", "a/b/", "a/b/c"]);
        assert_eq!(usage_scopes("app"), ["app"]);
    }

    fn d(s: &str) -> Digest {
        Hasher::digest_of(crate::digest::Algorithm::Sha256, s.as_bytes())
    }

    #[test]
    fn keys_roundtrip_and_sort_inside_their_ranges() {
        let (p, c) = (d("p"), d("c"));
        let k = edge_in(&c, &p, EdgeKind::Layer);
        assert_eq!(k.len(), 67);
        assert_eq!(split_edge_in(&k).expect("split"), (c, p, EdgeKind::Layer));
        let (lo, hi) = edge_in_range(&c);
        assert!(lo <= k && k <= hi);
        let (lo, hi) = edge_in_range(&p);
        assert!(!(lo <= k && k <= hi));
        let child = Descriptor::new("application/x", c, 3);
        let own = Descriptor::new("application/y", p, 4);
        let subject = Descriptor::new("application/z", d("s"), 5);
        let v = encode_adjacency(&[(EdgeKind::Layer, child.clone())], Some((&subject, &own)))
            .expect("encode");
        let edges = decode_edges(&p, &v).expect("edges");
        assert_eq!(
            edges,
            vec![
                (EdgeKind::Layer, c, child),
                (EdgeKind::Subject, subject.digest, subject.clone())
            ]
        );
        assert_eq!(
            decode_subject(&p, &v).expect("subject"),
            Some((subject.digest, own))
        );
        let r = referrer(7, &p, 3, &c);
        let (lo, hi) = referrer_range(7, &p, Some(3));
        assert!(lo <= r && r <= hi);
        let (lo, hi) = referrer_range(7, &p, Some(4));
        assert!(!(lo <= r && r <= hi));
        assert_eq!(referrer_parts(&r).expect("parts"), (3, c));
        assert_eq!(split_referrer(&r).expect("split"), (7, p, 3, c));
        let m = member_of(&c, 9);
        assert_eq!(member_of_repo(&m).expect("repo"), 9);
        assert_eq!(member_digest(&member(9, &c)).expect("digest"), c);
        let t = tagged(9, &c, "v1");
        assert_eq!(split_tagged(&t).expect("tagged"), (9, c, b"v1".as_slice()));
        assert!(split_referrer(&r[..r.len() - 1]).is_err());
        assert!(split_edge_in(&k[..k.len() - 1]).is_err());
    }

    proptest! {
        #[test]
        fn value_codecs_roundtrip(mt in "[a-z/.+]{0,40}", size in 0..=i64::MAX as u64, at in proptest::option::of("[a-z/.+]{1,40}"), sources in 0u8..4) {
            let desc = Descriptor { artifact_type: at, ..Descriptor::new(mt, d("x"), size) };
            let key = referrer(1, &d("s"), 2, &desc.digest);
            prop_assert_eq!(decode_referrer(&key, &encode_referrer(sources, &desc).expect("enc")).expect("ref"), (sources, desc.clone()));
            let edges = decode_edges(&d("o"), &encode_adjacency(&[(EdgeKind::Config, desc.clone())], None).expect("enc")).expect("edges");
            prop_assert_eq!(edges, vec![(EdgeKind::Config, desc.digest, desc)]);
        }

        #[test]
        fn garbage_values_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let own = d("o");
            let _ = decode_referrer_of(&own, &b);
            let _ = decode_edges(&own, &b);
            let _ = decode_subject(&own, &b);
            let _ = split_referrer(&b);
            let _ = split_edge_in(&b);
            let _ = split_tagged(&b);
        }
    }
}
