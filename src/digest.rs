//! Content digests: `sha256:<64 hex>` and `sha512:<128 hex>`.
//!
//! A [`Digest`] is a fixed-size `Copy` value (no heap), so parsing allocates
//! nothing on success and a digest can be used directly as a fixed-width key.

use std::fmt;
use std::str::FromStr;

/// Why a digest was refused: text that breaks the grammar, an algorithm
/// this build cannot verify, or a stored key that does not decode. Turns
/// into the matching [`crate::error::Error`] variant with `?`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The text does not follow the grammar.
    #[error("invalid digest `{input}`: {reason}")]
    Invalid {
        /// The text as given (truncated if huge).
        input: String,
        /// Which rule it broke.
        reason: String,
    },
    /// A well-formed digest of an algorithm this build cannot verify.
    #[error(
        "unsupported digest algorithm `{algorithm}` in `{input}`; expected `sha256` or `sha512`"
    )]
    UnsupportedAlgorithm {
        /// The digest as given (truncated if huge).
        input: String,
        /// The algorithm named.
        algorithm: String,
    },
    /// A stored digest key does not decode.
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

/// A digest algorithm that ocidb can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// SHA-256, the default for OCI content.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name used in the digest string and in `blobs/<alg>/`.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the raw hash in bytes.
    #[allow(clippy::len_without_is_empty)] // a hash length, never empty
    pub const fn len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// The one-byte tag used in on-disk keys (see ARCHITECTURE.md).
    pub(crate) const fn tag(self) -> u8 {
        match self {
            Algorithm::Sha256 => 1,
            Algorithm::Sha512 => 2,
        }
    }

    pub(crate) const fn from_tag(tag: u8) -> Option<Algorithm> {
        match tag {
            1 => Some(Algorithm::Sha256),
            2 => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// Parses an algorithm name (`sha256`, `sha512`).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The start of a digest, as a person copies it from a listing
/// (`sha256:14f196c29fdc`, or the hex alone): at least
/// [`DigestPrefix::MIN_DIGITS`] lowercase hex digits, shorter than a whole
/// hash. A trailing `…` (how ocidb's listings cut digests) is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestPrefix {
    alg: Option<Algorithm>,
    hex: String,
}

impl DigestPrefix {
    /// The fewest hex digits a prefix must have (git's floor too).
    pub const MIN_DIGITS: usize = 4;

    /// Parses `alg:hex` or `hex`.
    pub fn parse(input: &str) -> Result<DigestPrefix, DigestError> {
        let text = input.trim_end_matches('…');
        let (alg, hex) = match text.split_once(':') {
            Some((name, hex)) => match Algorithm::from_name(name) {
                Some(a) => (Some(a), hex),
                None => {
                    return Err(invalid(
                        input,
                        "a digest prefix names `sha256:` or `sha512:`, or is hex alone",
                    ));
                }
            },
            None => (None, text),
        };
        if let Some(c) = hex.bytes().find(|&c| !is_lower_hex(c)) {
            return Err(invalid(
                input,
                format!(
                    "`{}` is not a lowercase hex digit [0-9a-f]",
                    char::from(c).escape_default()
                ),
            ));
        }
        let longest = alg.map_or(Algorithm::Sha512.len(), Algorithm::len) * 2;
        if hex.len() < Self::MIN_DIGITS || hex.len() > longest {
            return Err(invalid(
                input,
                format!(
                    "a digest prefix has {} to {longest} hex digits; this has {}",
                    Self::MIN_DIGITS,
                    hex.len()
                ),
            ));
        }
        Ok(DigestPrefix {
            alg,
            hex: hex.to_string(),
        })
    }

    /// The algorithms a digest with this prefix may have.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        match self.alg {
            Some(a) => vec![a],
            None => [Algorithm::Sha256, Algorithm::Sha512]
                .into_iter()
                .filter(|a| self.hex.len() <= a.len() * 2)
                .collect(),
        }
    }

    /// The first and last key (as [`Digest::to_key`] writes them) of the
    /// digests of `alg` that start with this prefix.
    pub(crate) fn key_range(&self, alg: Algorithm) -> (Vec<u8>, Vec<u8>) {
        let mut lo = vec![alg.tag()];
        let mut hi = vec![alg.tag()];
        let digits = self.hex.as_bytes();
        for pair in digits.chunks(2) {
            let hi_nibble = HEX_VALUE[pair[0] as usize] << 4;
            match pair.get(1) {
                Some(&c) => {
                    let b = hi_nibble | HEX_VALUE[c as usize];
                    lo.push(b);
                    hi.push(b);
                }
                None => {
                    lo.push(hi_nibble);
                    hi.push(hi_nibble | 0x0f);
                }
            }
        }
        lo.resize(1 + alg.len(), 0x00);
        hi.resize(1 + alg.len(), 0xff);
        (lo, hi)
    }
}

/// A digest as a person writes it: whole, or an abbreviated
/// [`DigestPrefix`]. What the command line accepts wherever it takes a
/// digest, and [`crate::store::Store::resolve_digest`] resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestText {
    /// A whole digest.
    Whole(Digest),
    /// The start of one.
    Prefix(DigestPrefix),
}

impl DigestText {
    /// A whole digest if `text` is one, else a prefix; neither: the whole
    /// digest's error, which names the grammar.
    pub fn parse(text: &str) -> Result<DigestText, DigestError> {
        match Digest::parse(text) {
            Ok(d) => Ok(DigestText::Whole(d)),
            Err(e) => DigestPrefix::parse(text)
                .map(DigestText::Prefix)
                .map_err(|_| e),
        }
    }
}

impl fmt::Display for DigestPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.alg {
            Some(a) => write!(f, "{a}:{}", self.hex),
            None => f.write_str(&self.hex),
        }
    }
}

/// Widest digest as an on-disk key (format v2): one algorithm tag byte,
/// then the hash, unpadded (33 bytes for sha256, 65 for sha512).
pub const MAX_DIGEST_KEY_LEN: usize = 65;

/// A digest's key bytes: `[algorithm tag][hash]`, self-delimiting (the tag
/// gives the length), so keys that hold a digest followed by more fields
/// still split unambiguously and sort by digest.
#[derive(Clone, Copy)]
pub struct DigestKey {
    buf: [u8; MAX_DIGEST_KEY_LEN],
    len: u8,
}

impl DigestKey {
    /// The key bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl std::ops::Deref for DigestKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// The longest formatted digest: `sha512:` plus 128 hex characters.
pub const MAX_DIGEST_STR_LEN: usize = 7 + 128;

/// A verified-format content digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    alg: Algorithm,
    // Only the first `alg.len()` bytes are meaningful; the rest stay zero so
    // that derived Eq/Ord/Hash are correct.
    bytes: [u8; 64],
}

const HEX: &[u8; 16] = b"0123456789abcdef";

// 0..=15 for a lowercase hex digit; UPPER for A-F; BAD otherwise.
const UPPER: u8 = 0xFE;
const BAD: u8 = 0xFF;
const HEX_VALUE: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = UPPER;
        i += 1;
    }
    t
};

/// Decodes lowercase hex into `out`, two digits a byte (the pairs past
/// `out`'s length are not read); false if a digit read is not lowercase hex.
pub(crate) fn decode_lower_hex(hex: &[u8], out: &mut [u8]) -> bool {
    // Branch-free: any invalid character sets a high bit in `bad`, checked
    // once at the end.
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let hi = HEX_VALUE[pair[0] as usize];
        let lo = HEX_VALUE[pair[1] as usize];
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 15);
    }
    bad <= 15
}

/// Whether `c` is a lowercase hex digit.
pub(crate) fn is_lower_hex(c: u8) -> bool {
    HEX_VALUE[c as usize] <= 15
}

/// Writes the lowercase hex of `bytes` into `out`, two digits a byte.
pub(crate) fn write_lower_hex(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[(b >> 4) as usize];
        pair[1] = HEX[(b & 15) as usize];
    }
}

fn invalid(input: &str, reason: impl Into<String>) -> DigestError {
    DigestError::Invalid {
        input: crate::text::quote_untrusted(input),
        reason: reason.into(),
    }
}

/// The image-spec algorithm grammar: `[a-z0-9]+([+._-][a-z0-9]+)*`.
fn is_valid_algorithm_grammar(alg: &str) -> bool {
    let b = alg.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut prev_sep = true;
    for &c in b {
        let sep = matches!(c, b'+' | b'.' | b'_' | b'-');
        if sep {
            if prev_sep {
                return false;
            }
        } else if !(c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return false;
        }
        prev_sep = sep;
    }
    !prev_sep
}

impl Digest {
    /// Builds a digest from raw hash bytes.
    pub fn from_bytes(alg: Algorithm, hash: &[u8]) -> Result<Digest, DigestError> {
        if hash.len() != alg.len() {
            return Err(DigestError::Invalid {
                input: format!("{} raw bytes", hash.len()),
                reason: format!("{alg} hashes are {} bytes", alg.len()),
            });
        }
        let mut bytes = [0u8; 64];
        bytes[..hash.len()].copy_from_slice(hash);
        Ok(Digest { alg, bytes })
    }

    /// Builds a digest from a hash already padded to 64 bytes (hasher output).
    pub(crate) const fn from_padded(alg: Algorithm, bytes: [u8; 64]) -> Digest {
        Digest { alg, bytes }
    }

    /// Parses `algorithm:encoded`, following the OCI image-spec grammar.
    /// Only `sha256` and `sha512` are accepted, with lowercase hex of the
    /// exact length.
    pub fn parse(input: &str) -> Result<Digest, DigestError> {
        if input.is_empty() {
            return Err(invalid(
                input,
                "empty string; expected `sha256:<64 lowercase hex>`",
            ));
        }
        let Some(colon) = input.find(':') else {
            return Err(invalid(
                input,
                "missing `:` between algorithm and hex; expected `sha256:<64 lowercase hex>`",
            ));
        };
        let (name, rest) = (&input[..colon], &input[colon + 1..]);
        let alg = match Algorithm::from_name(name) {
            Some(alg) => alg,
            None if name.is_empty() => {
                return Err(invalid(
                    input,
                    "empty algorithm; expected `sha256` or `sha512`",
                ))
            }
            None if is_valid_algorithm_grammar(name) => {
                return Err(DigestError::UnsupportedAlgorithm {
                    input: crate::text::quote_untrusted(input),
                    algorithm: name.to_string(),
                })
            }
            None => {
                return Err(invalid(
                    input,
                    format!(
                        "malformed algorithm `{name}`; the grammar is [a-z0-9]+([+._-][a-z0-9]+)*"
                    ),
                ))
            }
        };
        let hex = rest.as_bytes();
        let want = alg.len() * 2;
        if let Some((i, c)) = rest.char_indices().find(|(_, c)| !c.is_ascii()) {
            return Err(invalid(
                input,
                format!(
                    "the encoded part has the non-ASCII character `{}` at byte {}; {alg} needs exactly {want} characters from [0-9a-f]",
                    c.escape_debug(),
                    colon + 1 + i
                ),
            ));
        }
        if hex.len() != want {
            return Err(invalid(
                input,
                format!(
                    "{alg} needs exactly {want} hex characters, found {}",
                    rest.chars().count()
                ),
            ));
        }
        let mut bytes = [0u8; 64];
        // The error path then finds which character was wrong.
        if !decode_lower_hex(hex, &mut bytes[..alg.len()]) {
            return Err(bad_hex_reason(input, colon + 1));
        }
        Ok(Digest { alg, bytes })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The raw hash bytes.
    pub fn hash_bytes(&self) -> &[u8] {
        &self.bytes[..self.alg.len()]
    }

    /// Writes the lowercase hex of the hash into `buf` and returns it as a
    /// string slice, without allocating.
    pub fn encode_hex<'b>(&self, buf: &'b mut [u8; 128]) -> &'b str {
        let n = self.alg.len();
        write_lower_hex(&self.bytes[..n], &mut buf[..2 * n]);
        // Only ASCII hex digits were written.
        std::str::from_utf8(&buf[..2 * n]).unwrap_or_default()
    }

    /// The lowercase hex of the hash, as an owned string.
    pub fn hex(&self) -> String {
        let mut buf = [0u8; 128];
        self.encode_hex(&mut buf).to_string()
    }

    /// Writes `alg:hex` into `buf` without allocating.
    pub fn encode<'b>(&self, buf: &'b mut [u8; MAX_DIGEST_STR_LEN]) -> &'b str {
        let name = self.alg.name().as_bytes();
        buf[..name.len()].copy_from_slice(name);
        buf[name.len()] = b':';
        let start = name.len() + 1;
        let n = self.alg.len();
        write_lower_hex(&self.bytes[..n], &mut buf[start..start + 2 * n]);
        std::str::from_utf8(&buf[..start + 2 * n]).unwrap_or_default()
    }

    /// The key used in every table (docs/format.md): the algorithm tag,
    /// then the hash.
    pub fn to_key(&self) -> DigestKey {
        let n = self.alg.len();
        let mut buf = [0u8; MAX_DIGEST_KEY_LEN];
        buf[0] = self.alg.tag();
        buf[1..=n].copy_from_slice(&self.bytes[..n]);
        DigestKey {
            buf,
            len: (n + 1) as u8,
        }
    }

    /// Decodes a key written by [`Digest::to_key`]: exactly one digest.
    pub fn from_key(key: &[u8]) -> Result<Digest, DigestError> {
        match Digest::split_key(key)? {
            (d, []) => Ok(d),
            (_, rest) => Err(DigestError::Corrupt(format!(
                "digest key of {} bytes has {} bytes too many",
                key.len(),
                rest.len()
            ))),
        }
    }

    /// Decodes the digest that a key starts with, and returns the rest.
    pub fn split_key(key: &[u8]) -> Result<(Digest, &[u8]), DigestError> {
        let corrupt = |why: &str| {
            DigestError::Corrupt(format!(
                "digest key of {} bytes is malformed: {why}",
                key.len()
            ))
        };
        let (&tag, rest) = key.split_first().ok_or_else(|| corrupt("empty"))?;
        let alg = Algorithm::from_tag(tag).ok_or_else(|| corrupt("unknown algorithm tag"))?;
        if rest.len() < alg.len() {
            return Err(corrupt("shorter than its algorithm's hash"));
        }
        let (hash, rest) = rest.split_at(alg.len());
        let mut bytes = [0u8; 64];
        bytes[..hash.len()].copy_from_slice(hash);
        Ok((Digest { alg, bytes }, rest))
    }

    /// Decodes a format v1 key: the tag, then the hash padded with zeros
    /// to 64 bytes (read only by the migration).
    pub(crate) fn from_v1_key(key: &[u8]) -> Result<Digest, DigestError> {
        let corrupt =
            || DigestError::Corrupt(format!("v1 digest key of {} bytes is malformed", key.len()));
        if key.len() != MAX_DIGEST_KEY_LEN {
            return Err(corrupt());
        }
        let alg = Algorithm::from_tag(key[0]).ok_or_else(corrupt)?;
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(&key[1..]);
        if bytes[alg.len()..].iter().any(|&b| b != 0) {
            return Err(corrupt());
        }
        Ok(Digest { alg, bytes })
    }

    /// The path of this blob in an OCI image layout rooted at `root`:
    /// `blobs/<alg>/<hex>` (the layout specification's path; a store's own
    /// blob bytes are found through its [`crate::blob::BlobBackend`]). Built only
    /// from a parsed digest, never from raw user text.
    pub fn blob_path(&self, root: &std::path::Path) -> std::path::PathBuf {
        let mut buf = [0u8; 128];
        root.join("blobs")
            .join(self.alg.name())
            .join(self.encode_hex(&mut buf))
    }
}

#[cold]
fn bad_hex_reason(input: &str, hex_start: usize) -> DigestError {
    let hex = &input[hex_start..];
    match hex
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || ('a'..='f').contains(c)))
    {
        Some((pos, c)) if c.is_ascii_uppercase() && c.is_ascii_hexdigit() => invalid(
            input,
            format!(
                "uppercase hex `{c}` at position {}; digests must be lowercase",
                hex_start + pos
            ),
        ),
        Some((pos, c)) => invalid(
            input,
            format!(
                "`{}` at position {} is not a lowercase hex digit [0-9a-f]",
                c.escape_debug(),
                hex_start + pos
            ),
        ),
        None => invalid(input, "hex is malformed"),
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; MAX_DIGEST_STR_LEN];
        f.write_str(self.encode(&mut buf))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; MAX_DIGEST_STR_LEN];
        s.serialize_str(self.encode(&mut buf))
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a digest string like sha256:<64 lowercase hex>")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Digest, E> {
                Digest::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn digest_text_is_whole_or_a_prefix_else_the_digest_error() {
        let whole = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(
            DigestText::parse(&whole),
            Ok(DigestText::Whole(_))
        ));
        assert!(matches!(
            DigestText::parse("sha256:abcd"),
            Ok(DigestText::Prefix(_))
        ));
        assert_eq!(
            DigestText::parse("sha256:ab").map(|_| ()),
            Digest::parse("sha256:ab").map(|_| ())
        );
    }

    #[test]
    fn prefixes_parse_and_cover_their_keys() {
        let p = DigestPrefix::parse("sha256:14f196c29fdc…").expect("prefix");
        assert_eq!(p.to_string(), "sha256:14f196c29fdc");
        assert_eq!(p.algorithms(), vec![Algorithm::Sha256]);
        let (lo, hi) = p.key_range(Algorithm::Sha256);
        assert_eq!(lo.len(), 33);
        assert_eq!(&lo[..7], &[1, 0x14, 0xf1, 0x96, 0xc2, 0x9f, 0xdc]);
        assert_eq!(&hi[7..], &[0xff; 26]);
        // An odd digit count covers the whole last nibble.
        assert!(
            DigestPrefix::parse("abc").is_err(),
            "3 digits is under the floor"
        );
        let (lo, hi) = DigestPrefix::parse("abcde")
            .expect("5 digits")
            .key_range(Algorithm::Sha256);
        assert_eq!(
            (&lo[..4], &hi[..4]),
            (&[1, 0xab, 0xcd, 0xe0][..], &[1, 0xab, 0xcd, 0xef][..])
        );
        for bad in [
            "ABCD",
            "md5:abcd",
            "sha256:ab",
            "sha256:xyz1",
            &"a".repeat(129),
        ] {
            assert!(DigestPrefix::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            DigestPrefix::parse("abcd").expect("hex").algorithms(),
            vec![Algorithm::Sha256, Algorithm::Sha512]
        );
        assert_eq!(
            DigestPrefix::parse(&"a".repeat(100))
                .expect("long")
                .algorithms(),
            vec![Algorithm::Sha512]
        );
    }

    use super::*;
    use proptest::prelude::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn reason(input: &str) -> String {
        match Digest::parse(input) {
            Err(DigestError::Invalid { input: i, reason }) => {
                assert_eq!(i, input, "the error must quote the input");
                reason
            }
            other => panic!("expected InvalidDigest for {input:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_and_formats_sha256() {
        let d = Digest::parse(EMPTY_SHA256).expect("valid");
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert_eq!(d.hash_bytes()[0], 0xe3);
        assert_eq!(Digest::from_key(d.to_key().as_slice()).expect("key"), d);
    }

    #[test]
    fn parses_sha512() {
        let s = format!("sha512:{}", "ab".repeat(64));
        let d = Digest::parse(&s).expect("valid");
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert_eq!(d.to_string(), s);
    }

    #[test]
    fn rejects_each_malformation_with_a_reason() {
        assert!(reason("").contains("empty"));
        assert!(reason(&EMPTY_SHA256.to_uppercase()).contains("malformed algorithm `SHA256`"));
        let upper = EMPTY_SHA256.replace('e', "E");
        assert!(reason(&upper).contains("uppercase"));
        assert!(reason(&EMPTY_SHA256[..70]).contains("64 hex"));
        assert!(reason(&format!("{EMPTY_SHA256}0")).contains("found 65"));
        let with_g = EMPTY_SHA256.replace('c', "g");
        assert!(reason(&with_g).contains("`g`"));
        assert!(reason(&EMPTY_SHA256.replace("sha256:", "sha256")).contains("missing `:`"));
        assert!(reason(&EMPTY_SHA256.replace("sha256", "")).contains("empty algorithm"));
        assert!(Digest::parse(&EMPTY_SHA256.replace("sha256", "md5"))
            .expect_err("md5")
            .to_string()
            .contains("unsupported digest algorithm `md5`"));
        assert!(reason(&EMPTY_SHA256.replace("sha256", "sha256+")).contains("malformed algorithm"));
    }

    #[test]
    fn the_issue_example_is_rejected() {
        let r = reason("sha256:3785693bd43e8246a8c166233392b33143f7f5e396c480f74538e5738fb6g27");
        assert!(r.contains("found 63"), "{r}");
        let e = Digest::parse(&format!("sha256:{}é", &EMPTY_SHA256[7..70])).expect_err("non-ASCII");
        assert!(e.to_string().contains("non-ASCII character `é`"), "{e}");
    }

    #[test]
    fn long_inputs_are_truncated_in_messages() {
        let long = "x".repeat(10_000);
        let err = Digest::parse(&long).expect_err("invalid");
        assert!(err.to_string().len() < 600);
    }

    #[test]
    fn key_ordering_keeps_algorithms_apart() {
        let a = Digest::from_bytes(Algorithm::Sha256, &[0xff; 32]).expect("a");
        let b = Digest::from_bytes(Algorithm::Sha512, &[0x00; 64]).expect("b");
        assert!(*a.to_key() < *b.to_key());
        assert_eq!(a.to_key().len(), 33);
        assert!(Digest::from_key(&[9u8; 33]).is_err());
        assert!(Digest::from_key(&[1u8; 32]).is_err());
        assert!(Digest::from_key(&[1u8; 34]).is_err());
        let mut v1 = [0u8; 65];
        v1[..33].copy_from_slice(a.to_key().as_slice());
        assert_eq!(Digest::from_v1_key(&v1).expect("v1"), a);
    }

    proptest! {
        #[test]
        fn parse_format_roundtrip(bytes in proptest::collection::vec(any::<u8>(), 32), wide in proptest::collection::vec(any::<u8>(), 64)) {
            let d = Digest::from_bytes(Algorithm::Sha256, &bytes).expect("32 bytes");
            prop_assert_eq!(Digest::parse(&d.to_string()).expect("roundtrip"), d);
            let d = Digest::from_bytes(Algorithm::Sha512, &wide).expect("64 bytes");
            prop_assert_eq!(Digest::parse(&d.to_string()).expect("roundtrip"), d);
            prop_assert_eq!(Digest::from_key(d.to_key().as_slice()).expect("key"), d);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,200}") {
            let _ = Digest::parse(&s);
        }

        #[test]
        fn near_miss_strings_never_panic(s in "(sha256|sha512|SHA256|)[:]?[0-9a-fA-Fg]{0,130}") {
            if let Ok(d) = Digest::parse(&s) {
                prop_assert_eq!(d.to_string(), s);
            }
        }
    }
}
