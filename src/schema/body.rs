//! Format 3's packing of inline bodies (manifests, configs and other small
//! blobs held in the `inline` table).
//!
//! Most of a manifest's bytes are hex digests and the same few quoted
//! strings (media types and field names). Packing writes a digest as its 32
//! (or 64) raw bytes and a well-known quoted string as a two-byte code,
//! which takes a typical manifest to about 40% of its size: a smaller
//! table, so fewer pages written per commit and read per lookup.
//!
//! Packing is lossless by construction. The codes are the control bytes a
//! JSON text never contains unescaped (everything below 0x20 except tab,
//! LF and CR); a body that contains one anyway (it is not JSON, or not
//! valid JSON) is stored verbatim. Unpacking rebuilds exactly the bytes
//! that were packed: a digest only packs when its hex is lowercase, and a
//! string only when its quoted bytes equal a table entry.
//!
//! Stored value: one header byte, then
//! - `VERBATIM`: the body as it is;
//! - `PACKED`: literal bytes and codes: `SHA256` + 32 bytes is
//!   `sha256:<64 lowercase hex>`, `SHA512` + 64 bytes is
//!   `sha512:<128 lowercase hex>`, `WORD` + index is `"WORDS[index]"`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::digest::{decode_lower_hex, is_lower_hex, write_lower_hex};
use crate::error::Result;
use crate::schema::codec::{corrupt, WELL_KNOWN};

const VERBATIM: u8 = 0;
const PACKED: u8 = 1;

const SHA256: u8 = 0x01;
const SHA512: u8 = 0x02;
const WORD: u8 = 0x03;

/// The digest codes: (code, the text's prefix, raw bytes of the hash).
const DIGESTS: [(u8, &[u8], usize); 2] = [(SHA256, b"sha256:", 32), (SHA512, b"sha512:", 64)];

/// Quoted strings that pack to two bytes: field names of the OCI and
/// Docker manifest, index and config formats and common annotation keys.
/// Index = position here, after `WELL_KNOWN`'s media types (which come
/// first, at 0..WELL_KNOWN.len()). **Frozen in format 3; append only**
/// (both lists; at most 256 entries in all). Not shared with
/// `oci::json_keys::SPEC_FIELDS`: that list follows the specs' validation
/// rules and may change; this one is part of the on-disk format.
const FIELDS: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "artifactType",
    "config",
    "layers",
    "manifests",
    "subject",
    "annotations",
    "digest",
    "size",
    "urls",
    "data",
    "platform",
    "architecture",
    "os",
    "os.version",
    "os.features",
    "variant",
    "features",
    "amd64",
    "arm64",
    "arm",
    "386",
    "ppc64le",
    "s390x",
    "riscv64",
    "linux",
    "windows",
    "v7",
    "v8",
    "unknown",
    "org.opencontainers.image.created",
    "org.opencontainers.image.ref.name",
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.source",
    "org.opencontainers.image.url",
    "org.opencontainers.image.documentation",
    "org.opencontainers.image.authors",
    "org.opencontainers.image.vendor",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.base.digest",
    "org.opencontainers.image.base.name",
    "vnd.docker.reference.digest",
    "vnd.docker.reference.type",
    "attestation-manifest",
    "dev.cosignproject.cosign/signature",
    "dev.sigstore.cosign/bundle",
    "dev.sigstore.cosign/certificate",
    "dev.sigstore.cosign/chain",
    "io.cncf.notary.x509chain.thumbprint#S256",
    "io.cncf.notary.signingAgent",
    "created",
    "author",
    "rootfs",
    "type",
    "diff_ids",
    "history",
    "created_by",
    "empty_layer",
    "comment",
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "Labels",
    "User",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "OnBuild",
];

/// Longer than any table entry: a quoted string this long is not looked up.
const MAX_WORD: usize = 64;

fn word(i: u8) -> Option<&'static str> {
    let i = i as usize;
    WELL_KNOWN
        .get(i)
        .or_else(|| FIELDS.get(i.checked_sub(WELL_KNOWN.len())?))
        .copied()
}

fn word_code(s: &[u8]) -> Option<u8> {
    static CODES: OnceLock<(usize, HashMap<&'static [u8], u8>)> = OnceLock::new();
    let (longest, codes) = CODES.get_or_init(|| {
        let mut codes = HashMap::new();
        for (i, w) in WELL_KNOWN.iter().chain(FIELDS).enumerate() {
            if let Ok(code) = u8::try_from(i) {
                // The first of two equal entries wins (none are equal).
                codes.entry(w.as_bytes()).or_insert(code);
            }
        }
        let longest = codes.keys().map(|w| w.len()).max().unwrap_or(0);
        (longest, codes)
    });
    if s.len() > *longest {
        return None;
    }
    codes.get(s).copied()
}

/// Whether `b` is one of the bytes packing uses as a code.
fn is_code_byte(b: u8) -> bool {
    b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')
}

/// Packs the digest `rest` starts with, if it does, into `out`; returns
/// how many bytes of `rest` it stood for.
fn pack_digest(rest: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let &(code, prefix, raw) = DIGESTS.iter().find(|(_, p, _)| rest.starts_with(p))?;
    let end = prefix.len() + 2 * raw;
    let hex = rest.get(prefix.len()..end)?;
    // Uppercase hex, or a longer run of hex, is not a digest: it stays
    // literal.
    let mut bytes = [0u8; 64];
    if !decode_lower_hex(hex, &mut bytes[..raw]) || rest.get(end).is_some_and(|&c| is_lower_hex(c))
    {
        return None;
    }
    out.push(code);
    out.extend_from_slice(&bytes[..raw]);
    Some(end)
}

/// The stored form of `body`.
pub(crate) fn pack(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() / 2 + 16);
    if body.iter().any(|&b| is_code_byte(b)) {
        out.push(VERBATIM);
        out.extend_from_slice(body);
        return out;
    }
    out.push(PACKED);
    let mut i = 0;
    while i < body.len() {
        let rest = &body[i..];
        match rest[0] {
            b's' => {
                if let Some(n) = pack_digest(rest, &mut out) {
                    i += n;
                    continue;
                }
            }
            b'"' => {
                if let Some(end) = rest[1..].iter().take(MAX_WORD + 1).position(|&c| c == b'"')
                    && let Some(code) = word_code(&rest[1..1 + end])
                {
                    out.push(WORD);
                    out.push(code);
                    i += end + 2;
                    continue;
                }
            }
            _ => {}
        }
        out.push(rest[0]);
        i += 1;
    }
    // Every code is shorter than what it stands for: at most the header
    // byte longer than the body.
    out
}

/// The body `stored` holds: borrowed when it was stored verbatim.
pub(crate) fn unpack(stored: &[u8]) -> Result<Cow<'_, [u8]>> {
    const WHAT: &str = "inline body";
    let (&header, rest) = stored
        .split_first()
        .ok_or_else(|| corrupt(WHAT, "is empty (no header byte)"))?;
    match header {
        VERBATIM => return Ok(Cow::Borrowed(rest)),
        PACKED => {}
        other => return Err(corrupt(WHAT, format!("header byte {other} is unknown"))),
    }
    let mut out = Vec::with_capacity(rest.len() * 2);
    let mut i = 0;
    while i < rest.len() {
        // Copy the literal run up to the next code in one go.
        let run = rest[i..]
            .iter()
            .position(|&b| is_code_byte(b))
            .unwrap_or(rest.len() - i);
        out.extend_from_slice(&rest[i..i + run]);
        i += run;
        let Some(&code) = rest.get(i) else { break };
        let at = i;
        i += 1;
        if let Some(&(_, prefix, n)) = DIGESTS.iter().find(|(c, _, _)| *c == code) {
            let raw = rest.get(i..i + n).ok_or_else(|| {
                corrupt(
                    WHAT,
                    format!("a digest code at byte {at} runs past the end"),
                )
            })?;
            out.extend_from_slice(prefix);
            let start = out.len();
            out.resize(start + 2 * n, 0);
            write_lower_hex(raw, &mut out[start..]);
            i += n;
        } else if code == WORD {
            let idx = *rest.get(i).ok_or_else(|| {
                corrupt(
                    WHAT,
                    format!("a string code at byte {at} runs past the end"),
                )
            })?;
            let w = word(idx).ok_or_else(|| {
                corrupt(WHAT, format!("string code {idx} at byte {at} is unknown"))
            })?;
            out.push(b'"');
            out.extend_from_slice(w.as_bytes());
            out.push(b'"');
            i += 1;
        } else {
            return Err(corrupt(
                WHAT,
                format!("byte {code:#04x} at {at} is neither literal nor a code"),
            ));
        }
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:b89b8a69e55fb23653ee9c943a52439d00dbafc4faae304ce9ee96a71996e203","size":3382}],"annotations":{"org.opencontainers.image.created":"2026-11-28T00:00:00Z"}}"#;

    #[test]
    fn a_manifest_packs_to_under_half_and_back() {
        let p = pack(MANIFEST.as_bytes());
        assert_eq!(p[0], PACKED);
        assert!(
            p.len() * 2 < MANIFEST.len(),
            "{} of {}",
            p.len(),
            MANIFEST.len()
        );
        assert_eq!(unpack(&p).expect("unpack").as_ref(), MANIFEST.as_bytes());
    }

    #[test]
    fn near_misses_stay_literal() {
        for body in [
            // Uppercase hex, a short digest, a long run of hex, a string
            // that only starts like a table entry, an escaped quote.
            "\"sha256:44136FA355B3678A1146AD16F7E8649E94FB4FC21FE77E8310C060F61CAAFF8A\"",
            "sha256:abc",
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a0",
            "\"mediaTypes\" \"size\\\"\" \"",
            "sha512:",
            "",
        ] {
            let p = pack(body.as_bytes());
            assert_eq!(
                unpack(&p).expect("unpack").as_ref(),
                body.as_bytes(),
                "{body}"
            );
        }
    }

    #[test]
    fn a_body_with_code_bytes_is_stored_verbatim() {
        let body = b"\x01sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        let p = pack(body);
        assert_eq!(p[0], VERBATIM);
        assert!(matches!(unpack(&p).expect("unpack"), Cow::Borrowed(_)));
        assert_eq!(unpack(&p).expect("unpack").as_ref(), body);
    }

    #[test]
    fn the_string_table_fits_one_byte_codes() {
        assert!(WELL_KNOWN.len() + FIELDS.len() <= 256);
        for (i, w) in WELL_KNOWN.iter().chain(FIELDS).enumerate() {
            // A repeated entry packs to its first index; both decode the same.
            let code = word_code(w.as_bytes()).expect("listed");
            assert_eq!(word(code), Some(*w));
            assert_eq!(word(i as u8), Some(*w));
            assert!(!w.bytes().any(|b| b == b'"' || is_code_byte(b)), "{w}");
            assert!(w.len() <= MAX_WORD, "{w}");
        }
    }

    #[test]
    fn damaged_values_are_errors_naming_the_rule() {
        for (v, says) in [
            (&b""[..], "no header"),
            (&b"\x07{}"[..], "header byte 7"),
            (&b"\x01\x01abc"[..], "runs past the end"),
            (&b"\x01\x03"[..], "runs past the end"),
            (&b"\x01\x03\xff"[..], "string code 255"),
            (&b"\x01ab\x05"[..], "neither literal nor a code"),
        ] {
            let e = unpack(v).expect_err("damaged").to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            any::<[u8; 32]>().prop_map(|b| {
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                format!("\"sha256:{hex}\"").into_bytes()
            }),
            (0..(WELL_KNOWN.len() + FIELDS.len())).prop_map(|i| format!(
                "\"{}\"",
                word(i as u8).unwrap_or("")
            )
            .into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..12),
            "[ -~]{0,20}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn pack_then_unpack_is_the_identity(body in jsonish()) {
            let p = pack(&body);
            prop_assert!(p.len() <= body.len() + 1);
            let back = unpack(&p).expect("unpack");
            prop_assert_eq!(back.as_ref(), body.as_slice());
        }

        #[test]
        fn garbage_never_panics(v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = unpack(&v);
        }
    }
}
