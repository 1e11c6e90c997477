//! The compact value encoding (since format 2): varints, strings as one-byte codes
//! for the media types everyone uses (a literal otherwise), and
//! descriptors in binary with a JSON tail for the rare free-form fields.
//! Every decoder checks bounds and returns `Error::Corrupt` naming what
//! was wrong; none panics on any input (see the property tests below and
//! fuzz/).

use std::collections::BTreeMap;

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::oci::manifest::Descriptor;

/// Media types and artifact types common enough to cost one byte. The
/// position in this list (from 1) is the on-disk code: **frozen in format
/// v2**; append only (docs/format.md lists them).
pub(crate) const WELL_KNOWN: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.oci.empty.v1+json",
    "application/vnd.oci.artifact.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.plugin.v1+json",
    "application/vnd.cncf.oras.artifact.manifest.v1+json",
    "application/vnd.dev.cosign.simplesigning.v1+json",
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    "application/vnd.dev.cosign.artifact.sbom.v1+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.in-toto+json",
    "application/vnd.cncf.notary.signature",
    "application/jose+json",
    "application/cose",
    "application/spdx+json",
    "text/spdx",
    "application/vnd.cyclonedx+json",
    "application/vnd.cyclonedx+xml",
    "application/vnd.cncf.helm.config.v1+json",
    "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
    "application/vnd.cncf.helm.chart.provenance.v1.prov",
    "application/vnd.wasm.config.v0+json",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
    "application/vnd.oci.image.layer.v1.tar+encrypted",
    "application/octet-stream",
    "application/json",
    "text/plain",
];

/// String code for a literal string that follows.
const LITERAL: u8 = 0xff;
/// Longest literal string a value holds: media types are capped at 255
/// bytes at every entry point; this is the backstop.
pub(crate) const MAX_LITERAL: usize = 4096;

pub(crate) fn corrupt(what: &str, why: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{what}: {why}"))
}

/// Appends `x` as a LEB128 varint.
pub(crate) fn put_varint(v: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        v.push((x as u8) | 0x80);
        x >>= 7;
    }
    v.push(x as u8);
}

/// A cursor over a value's bytes; every read checks the bounds.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, pos: 0, what }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn err(&self, why: impl std::fmt::Display) -> Error {
        corrupt(
            self.what,
            format!("{why} (at byte {} of {})", self.pos, self.buf.len()),
        )
    }

    pub fn byte(&mut self) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err("ends early"))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.err(format!("a field of {n} bytes runs past the end")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn varint(&mut self) -> Result<u64> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(self.err("a varint overflows 64 bits"));
            }
            x |= part << shift;
            if b < 0x80 {
                return Ok(x);
            }
        }
        Err(self.err("a varint is longer than 10 bytes"))
    }

    /// A string written by [`put_str`].
    pub fn str(&mut self) -> Result<String> {
        match self.byte()? {
            0 => Ok(String::new()),
            LITERAL => {
                let n = self.varint()?;
                if n > MAX_LITERAL as u64 {
                    return Err(self.err(format!(
                        "a string of {n} bytes is longer than the {MAX_LITERAL} allowed"
                    )));
                }
                let b = self.bytes(n as usize)?;
                std::str::from_utf8(b)
                    .map(str::to_string)
                    .map_err(|_| self.err("a string is not UTF-8"))
            }
            code => WELL_KNOWN
                .get(usize::from(code) - 1)
                .map(|s| (*s).to_string())
                .ok_or_else(|| self.err(format!("string code {code} is unknown"))),
        }
    }

    /// A digest written by [`put_digest`]: its key form.
    pub fn digest(&mut self) -> Result<Digest> {
        let tag = self.byte()?;
        let alg = Algorithm::from_tag(tag)
            .ok_or_else(|| self.err(format!("digest algorithm tag {tag} is unknown")))?;
        let hash = self.bytes(alg.len())?;
        Digest::from_bytes(alg, hash).map_err(|e| self.err(e))
    }
}

/// Appends a string: one byte for the empty string or a well-known one,
/// else `0xff`, a varint length and the bytes. Fails (never truncates)
/// past [`MAX_LITERAL`].
pub(crate) fn put_str(v: &mut Vec<u8>, s: &str) -> Result<()> {
    if s.is_empty() {
        v.push(0);
        return Ok(());
    }
    if let Some(i) = WELL_KNOWN.iter().position(|w| *w == s) {
        // WELL_KNOWN has fewer than 255 entries (a unit test checks).
        v.push((i + 1) as u8);
        return Ok(());
    }
    if s.len() > MAX_LITERAL {
        return Err(Error::InvalidMediaType {
            value: crate::text::quote_untrusted(s),
            reason: format!(
                "it is {} bytes; a stored string holds at most {MAX_LITERAL}",
                s.len()
            ),
        });
    }
    v.push(LITERAL);
    put_varint(v, s.len() as u64);
    v.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Appends a digest in its key form (algorithm tag, then the hash).
pub(crate) fn put_digest(v: &mut Vec<u8>, d: &Digest) {
    v.extend_from_slice(d.to_key().as_slice());
}

const HAS_DIGEST: u8 = 1;
const HAS_ARTIFACT_TYPE: u8 = 2;
const HAS_EXTRAS: u8 = 4;

/// The free-form fields, kept as JSON: rare, and written as the manifest
/// wrote them.
#[derive(serde::Serialize, serde::Deserialize)]
struct Extras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Box<crate::oci::manifest::Platform>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    urls: Option<Vec<String>>,
}

/// Appends a descriptor: flags(1) media type, [digest], size varint,
/// [artifact type], [varint length + JSON of annotations/platform/urls].
/// The digest is left out when the key already holds it
/// (`with_digest == false`); the reader then supplies it.
pub(crate) fn put_descriptor(v: &mut Vec<u8>, d: &Descriptor, with_digest: bool) -> Result<()> {
    let has_extras = d.annotations.is_some() || d.platform.is_some() || d.urls.is_some();
    let mut flags = 0;
    if with_digest {
        flags |= HAS_DIGEST;
    }
    if d.artifact_type.is_some() {
        flags |= HAS_ARTIFACT_TYPE;
    }
    if has_extras {
        flags |= HAS_EXTRAS;
    }
    v.push(flags);
    put_str(v, &d.media_type)?;
    if with_digest {
        put_digest(v, &d.digest);
    }
    put_varint(v, d.size);
    if let Some(at) = &d.artifact_type {
        put_str(v, at)?;
    }
    if has_extras {
        let extras = Extras {
            annotations: d.annotations.clone(),
            platform: d.platform.clone(),
            urls: d.urls.clone(),
        };
        let json = serde_json::to_vec(&extras)
            .map_err(|e| Error::Corrupt(format!("descriptor fields do not serialise: {e}")))?;
        put_varint(v, json.len() as u64);
        v.extend_from_slice(&json);
    }
    Ok(())
}

impl Reader<'_> {
    /// A descriptor written by [`put_descriptor`]; `digest` supplies the
    /// digest when the value left it out.
    pub fn descriptor(&mut self, digest: Option<&Digest>) -> Result<Descriptor> {
        let flags = self.byte()?;
        if flags & !(HAS_DIGEST | HAS_ARTIFACT_TYPE | HAS_EXTRAS) != 0 {
            return Err(self.err(format!("descriptor flags {flags:#x} are unknown")));
        }
        let media_type = self.str()?;
        let digest = if flags & HAS_DIGEST != 0 {
            self.digest()?
        } else {
            *digest.ok_or_else(|| self.err("a descriptor has no digest and none is implied"))?
        };
        let size = self.varint()?;
        if size > i64::MAX as u64 {
            return Err(self.err(format!("size {size} is over 2^63-1")));
        }
        let artifact_type = if flags & HAS_ARTIFACT_TYPE != 0 {
            Some(self.str()?)
        } else {
            None
        };
        let mut d = Descriptor::new(media_type, digest, size);
        d.artifact_type = artifact_type;
        if flags & HAS_EXTRAS != 0 {
            let n = self.varint()?;
            let n = usize::try_from(n).map_err(|_| self.err("extras length overflows"))?;
            let json = self.bytes(n)?;
            let extras: Extras = serde_json::from_slice(json)
                .map_err(|e| self.err(format!("descriptor fields are unreadable: {e}")))?;
            d.annotations = extras.annotations;
            d.platform = extras.platform;
            d.urls = extras.urls;
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::hasher::Hasher;
    use proptest::prelude::*;

    #[test]
    fn well_known_codes_fit_a_byte_and_are_unique() {
        assert!(WELL_KNOWN.len() < LITERAL as usize);
        let set: std::collections::HashSet<_> = WELL_KNOWN.iter().collect();
        assert_eq!(set.len(), WELL_KNOWN.len());
        let mut v = Vec::new();
        put_str(&mut v, crate::oci::manifest::OCI_MANIFEST).expect("put");
        assert_eq!(v, vec![1]);
    }

    #[test]
    fn varints_reject_overflow_and_truncation() {
        let mut v = Vec::new();
        put_varint(&mut v, u64::MAX);
        assert_eq!(Reader::new(&v, "t").varint().expect("max"), u64::MAX);
        let e = Reader::new(&[0xff; 10], "t")
            .varint()
            .expect_err("overflow");
        assert!(e.to_string().contains("overflows"), "{e}");
        let e = Reader::new(&[0x80], "t").varint().expect_err("truncated");
        assert!(e.to_string().contains("ends early"), "{e}");
    }

    proptest! {
        #[test]
        fn descriptors_roundtrip(
            mt in prop_oneof![Just(String::new()), Just(crate::oci::manifest::OCI_INDEX.to_string()), "[a-z/.+]{1,60}"],
            size in 0..=i64::MAX as u64,
            at in proptest::option::of("[a-z/.+]{1,40}"),
            ann in proptest::option::of(proptest::collection::btree_map("[a-z.]{1,10}", ".{0,20}", 0..4)),
            urls in proptest::option::of(proptest::collection::vec("[a-z:/.]{1,30}", 0..3)),
            with_digest in any::<bool>(),
            wide in any::<bool>(),
        ) {
            let alg = if wide { Algorithm::Sha512 } else { Algorithm::Sha256 };
            let digest = Hasher::digest_of(alg, mt.as_bytes());
            let mut d = Descriptor::new(mt, digest, size);
            d.artifact_type = at;
            d.annotations = ann;
            d.urls = urls;
            if size % 2 == 0 {
                d.platform = Some(Box::new(crate::oci::manifest::Platform::new("linux", "arm64")));
            }
            let mut v = Vec::new();
            put_descriptor(&mut v, &d, with_digest).expect("encode");
            let mut r = Reader::new(&v, "t");
            let back = r.descriptor((!with_digest).then_some(&digest)).expect("decode");
            prop_assert!(r.is_empty());
            prop_assert_eq!(back, d);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..96)) {
            let d = Hasher::digest_of(Algorithm::Sha256, b"x");
            let _ = Reader::new(&b, "t").descriptor(Some(&d));
            let _ = Reader::new(&b, "t").str();
            let _ = Reader::new(&b, "t").digest();
        }
    }
}
