//! Streaming hashing and verification of content against a promised digest
//! and size.

use sha2::Digest as _;

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};

/// An incremental hasher for one [`Algorithm`]. Opaque: which crate does
/// the hashing is not part of the API.
#[derive(Clone)]
pub struct Hasher(State);

/// Version byte of a saved hash state.
const STATE_V1: u8 = 1;

#[derive(Clone)]
enum State {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(alg: Algorithm) -> Hasher {
        Hasher(match alg {
            Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => State::Sha512(sha2::Sha512::new()),
        })
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let mut bytes = [0u8; 64];
        let alg = match self.0 {
            State::Sha256(h) => {
                bytes[..32].copy_from_slice(h.finalize().as_slice());
                Algorithm::Sha256
            }
            State::Sha512(h) => {
                bytes.copy_from_slice(h.finalize().as_slice());
                Algorithm::Sha512
            }
        };
        Digest::from_padded(alg, bytes)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            State::Sha256(_) => Algorithm::Sha256,
            State::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// The hash state after the bytes fed so far, to store and resume
    /// from (an upload continued after a restart need not re-hash what
    /// came before). The encoding is the hash crate's own, behind one
    /// version byte.
    pub fn save_state(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState as _;
        let mut out = vec![STATE_V1];
        match &self.0 {
            State::Sha256(h) => out.extend_from_slice(h.serialize().as_slice()),
            State::Sha512(h) => out.extend_from_slice(h.serialize().as_slice()),
        }
        out
    }

    /// A hasher resumed from [`Hasher::save_state`].
    pub fn restore(alg: Algorithm, state: &[u8]) -> Result<Hasher> {
        use sha2::digest::common::hazmat::SerializableState;
        fn load<H: SerializableState>(bytes: &[u8]) -> Option<H> {
            let arr = sha2::digest::array::Array::try_from(bytes).ok()?;
            H::deserialize(&arr).ok()
        }
        let bad = || Error::Corrupt(format!("a saved {} hash state does not load", alg.name()));
        let Some((&STATE_V1, rest)) = state.split_first() else {
            return Err(bad());
        };
        Ok(Hasher(match alg {
            Algorithm::Sha256 => State::Sha256(load(rest).ok_or_else(bad)?),
            Algorithm::Sha512 => State::Sha512(load(rest).ok_or_else(bad)?),
        }))
    }

    /// Hashes a whole slice.
    pub fn digest_of(alg: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(alg);
        h.update(data);
        h.finish()
    }
}

/// Verifies a stream against an optional expected digest and size.
///
/// The size is checked first and on every chunk, so an over-long stream is
/// refused as soon as it passes the promised size, before hashing the rest.
pub struct Verifier {
    hasher: Hasher,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    seen: u64,
}

impl Verifier {
    /// A verifier. With no expected digest, content is hashed with `alg`.
    pub fn new(expected: Option<Digest>, expected_size: Option<u64>, alg: Algorithm) -> Verifier {
        let alg = expected.map_or(alg, |d| d.algorithm());
        Verifier {
            hasher: Hasher::new(alg),
            expected,
            expected_size,
            seen: 0,
        }
    }

    fn what(&self) -> String {
        self.expected
            .map_or_else(|| "content".to_string(), |d| d.to_string())
    }

    /// Checks that `len` more bytes fit the expected size, without hashing.
    pub fn check_size(&self, len: usize) -> Result<()> {
        if let Some(want) = self.expected_size {
            let now = self.seen + len as u64;
            if now > want {
                return Err(Error::SizeMismatch {
                    what: self.what(),
                    expected: want,
                    actual: now,
                    more: " or more",
                });
            }
        }
        Ok(())
    }

    /// Feeds a chunk; fails at once if the stream grows past the expected size.
    pub fn update(&mut self, chunk: &[u8]) -> Result<()> {
        self.check_size(chunk.len())?;
        self.account(chunk.len());
        self.hasher.update(chunk);
        Ok(())
    }

    /// Records bytes hashed elsewhere (by a pipeline thread).
    pub(crate) fn account(&mut self, len: usize) {
        self.seen += len as u64;
    }

    /// Bytes seen so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Takes the hasher out, for hashing on another thread.
    pub(crate) fn take_hasher(&mut self) -> Hasher {
        let alg = match self.hasher.0 {
            State::Sha256(_) => Algorithm::Sha256,
            State::Sha512(_) => Algorithm::Sha512,
        };
        std::mem::replace(&mut self.hasher, Hasher::new(alg))
    }

    /// Puts back a hasher taken with [`Verifier::take_hasher`].
    pub(crate) fn restore_hasher(&mut self, h: Hasher) {
        self.hasher = h;
    }

    /// Ends the stream: checks the size first, then the digest.
    pub fn finish(self) -> Result<(Digest, u64)> {
        if let Some(want) = self.expected_size
            && self.seen != want
        {
            return Err(Error::SizeMismatch {
                what: self.what(),
                expected: want,
                actual: self.seen,
                more: "",
            });
        }
        let actual = self.hasher.finish();
        if let Some(expected) = self.expected
            && expected != actual
        {
            return Err(Error::DigestMismatch {
                expected: Box::new(expected),
                actual: Box::new(actual),
            });
        }
        Ok((actual, self.seen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn a_saved_state_resumes_where_it_stopped(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            cut in 0usize..600,
            sha512 in proptest::prelude::any::<bool>(),
        ) {
            let alg = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
            let cut = cut.min(data.len());
            let mut first = Hasher::new(alg);
            first.update(&data[..cut]);
            let mut resumed = Hasher::restore(alg, &first.save_state()).expect("restore");
            resumed.update(&data[cut..]);
            proptest::prop_assert_eq!(resumed.finish(), Hasher::digest_of(alg, &data));
        }
    }

    #[test]
    fn a_damaged_state_is_an_error() {
        let h = Hasher::new(Algorithm::Sha256);
        let mut st = h.save_state();
        st.pop();
        assert!(Hasher::restore(Algorithm::Sha256, &st).is_err());
        assert!(Hasher::restore(Algorithm::Sha512, &h.save_state()).is_err());
        assert!(Hasher::restore(Algorithm::Sha256, &[]).is_err());
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            Hasher::digest_of(Algorithm::Sha256, b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Hasher::digest_of(Algorithm::Sha256, b"{}").to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert!(Hasher::digest_of(Algorithm::Sha512, b"")
            .to_string()
            .starts_with("sha512:cf83e1357eefb8bd"));
    }

    #[test]
    fn size_is_checked_before_the_digest() {
        let good = Hasher::digest_of(Algorithm::Sha256, b"hello");
        let mut v = Verifier::new(Some(good), Some(4), Algorithm::Sha256);
        assert!(matches!(
            v.update(b"hello"),
            Err(Error::SizeMismatch { .. })
        ));
        let mut v = Verifier::new(Some(good), Some(6), Algorithm::Sha256);
        v.update(b"hello").expect("fits");
        assert!(matches!(
            v.finish(),
            Err(Error::SizeMismatch { actual: 5, .. })
        ));
    }

    #[test]
    fn digest_mismatch_names_both() {
        let other = Hasher::digest_of(Algorithm::Sha256, b"other");
        let mut v = Verifier::new(Some(other), None, Algorithm::Sha256);
        v.update(b"hello").expect("no size");
        match v.finish() {
            Err(Error::DigestMismatch { expected, actual }) => {
                assert_eq!(*expected, other);
                assert_eq!(*actual, Hasher::digest_of(Algorithm::Sha256, b"hello"));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }
}
