//! The bytes of log objects and snapshots (docs/format.md, "Index log"):
//! a header, entries `(table, key, new value or removal)`, an end mark and
//! a SHA-256 of everything before it. The same entries serve both: a log
//! object holds a commit's net changes, a snapshot every row.
//!
//! Everything read here came from a bucket, so it is hostile until its
//! hash checks, and bounded after: lengths are checked against limits and
//! against what is left, and every key and value against its table's type
//! before redb sees it (redb's fixed-width and `str` decoders would panic).

use std::io::{Read, Write};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::schema::logged::Logged;
use crate::schema::tables::{EachTable, WriteTables, TABLE_NAMES};

/// What an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One commit's changes.
    Log,
    /// Every row as of a position.
    Snapshot,
}

impl Kind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            Kind::Log => b"ocidbIL1",
            Kind::Snapshot => b"ocidbIS1",
        }
    }
}

/// The fixed start of every object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    /// The store that wrote it (32 hex digits).
    pub store_id: String,
    /// A log object: the commit's position; a snapshot: the last position
    /// it includes.
    pub position: u64,
    /// When it was written (milliseconds since the Unix epoch).
    pub time_ms: u64,
}

/// Bytes of the header: magic, store id, position, time.
pub(crate) const HEADER_LEN: usize = 8 + 32 + 8 + 8;
const END: u8 = 0xff;
const TRAILER_LEN: usize = 32;
/// Longest key any table holds (repository and tag names are far shorter).
const MAX_KEY: usize = 64 << 10;
/// Longest value (inline bodies and adjacency lists are far shorter).
const MAX_VALUE: usize = 64 << 20;
/// Largest log object a reader takes in (one group commit's changes).
pub(crate) const MAX_LOG_OBJECT: u64 = 1 << 30;

/// Writes an object, hashing as it goes.
pub(crate) struct Encoder<W: Write> {
    w: W,
    hash: Sha256,
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(w: W, h: &Header) -> Result<Encoder<W>> {
        let mut e = Encoder {
            w,
            hash: Sha256::new(),
        };
        let id = h.store_id.as_bytes();
        if id.len() != 32 {
            return Err(Error::Internal(format!(
                "store id {:?} is not 32 bytes",
                h.store_id
            )));
        }
        e.put(h.kind.magic())?;
        e.put(id)?;
        e.put(&h.position.to_be_bytes())?;
        e.put(&h.time_ms.to_be_bytes())?;
        Ok(e)
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.hash.update(b);
        self.w
            .write_all(b)
            .map_err(|e| Error::io("writing an index log object", e))
    }

    /// One entry: `value` `None` is a removal.
    pub(crate) fn entry(&mut self, table: u8, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let len = |n: usize| u32::try_from(n).map(u32::to_be_bytes);
        let klen = len(key.len()).map_err(|_| Error::Internal("an index key over 4 GiB".into()))?;
        self.put(&[table, u8::from(value.is_some())])?;
        self.put(&klen)?;
        self.put(key)?;
        if let Some(v) = value {
            let vlen =
                len(v.len()).map_err(|_| Error::Internal("an index value over 4 GiB".into()))?;
            self.put(&vlen)?;
            self.put(v)?;
        }
        Ok(())
    }

    /// Writes the end mark and the hash.
    pub(crate) fn finish(mut self) -> Result<W> {
        self.put(&[END])?;
        let sum = self.hash.finalize();
        self.w
            .write_all(&sum)
            .map_err(|e| Error::io("writing an index log object", e))?;
        Ok(self.w)
    }
}

/// Parses and checks a header against what the reader expects.
fn parse_header(b: &[u8], what: &str) -> Result<Header> {
    let bad = |why: String| Error::Corrupt(format!("index log object {what}: {why}"));
    if b.len() < HEADER_LEN {
        return Err(bad(format!("{} bytes, shorter than a header", b.len())));
    }
    let kind = match &b[..8] {
        m if m == Kind::Log.magic() => Kind::Log,
        m if m == Kind::Snapshot.magic() => Kind::Snapshot,
        m => {
            return Err(bad(format!(
                "starts with {m:02x?}, not an ocidb log or snapshot mark"
            )))
        }
    };
    let id = &b[8..40];
    if !id.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad("its store id is not 32 hex digits".into()));
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_be_bytes(w)
    };
    Ok(Header {
        kind,
        store_id: String::from_utf8_lossy(id).into_owned(),
        position: word(40),
        time_ms: word(48),
    })
}

/// Checks a whole object held in memory (its hash first) and returns its
/// header and its entries' bytes.
pub(crate) fn verify<'a>(bytes: &'a [u8], what: &str) -> Result<(Header, &'a [u8])> {
    if bytes.len() < HEADER_LEN + 1 + TRAILER_LEN {
        return Err(Error::Corrupt(format!(
            "index log object {what}: {} bytes, too short to be one",
            bytes.len()
        )));
    }
    let (body, sum) = bytes.split_at(bytes.len() - TRAILER_LEN);
    if Sha256::digest(body).as_slice() != sum {
        return Err(Error::Corrupt(format!(
            "index log object {what}: its SHA-256 does not match its bytes (truncated or altered)"
        )));
    }
    let header = parse_header(body, what)?;
    Ok((header, &body[HEADER_LEN..]))
}

/// Checks an object in a file by its hash, reading it once, and returns
/// its header. The file's entries are read afterwards with [`Entries`].
pub(crate) fn verify_file(path: &std::path::Path, what: &str) -> Result<Header> {
    let io = |e| Error::io(format!("reading {}", path.display()), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let too_short = (HEADER_LEN + 1 + TRAILER_LEN) as u64;
    if len < too_short {
        return Err(Error::Corrupt(format!(
            "{what}: {len} bytes, too short to be a snapshot"
        )));
    }
    let mut head = [0u8; HEADER_LEN];
    f.read_exact(&mut head).map_err(io)?;
    let mut hash = Sha256::new();
    hash.update(head);
    let mut left = len - HEADER_LEN as u64 - TRAILER_LEN as u64;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        f.read_exact(&mut buf[..n]).map_err(io)?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    let mut sum = [0u8; TRAILER_LEN];
    f.read_exact(&mut sum).map_err(io)?;
    if hash.finalize().as_slice() != sum {
        return Err(Error::Corrupt(format!(
            "{what}: its SHA-256 does not match its bytes (truncated or altered)"
        )));
    }
    parse_header(&head, what)
}

/// One decoded entry, borrowing the reader's buffers.
pub(crate) struct Entry<'a> {
    pub table: u8,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// Reads the entries of a checked object, after its header.
pub(crate) struct Entries<R: Read> {
    r: R,
    key: Vec<u8>,
    value: Vec<u8>,
    done: bool,
    what: String,
}

impl<R: Read> Entries<R> {
    /// `r` is positioned just after the header.
    pub(crate) fn new(r: R, what: &str) -> Entries<R> {
        Entries {
            r,
            key: Vec::new(),
            value: Vec::new(),
            done: false,
            what: what.to_string(),
        }
    }

    fn bad(&self, why: impl std::fmt::Display) -> Error {
        Error::Corrupt(format!("index log object {}: {why}", self.what))
    }

    fn fill(&mut self, n: usize, into_key: bool) -> Result<()> {
        let buf = if into_key {
            &mut self.key
        } else {
            &mut self.value
        };
        buf.clear();
        let got = (&mut self.r).take(n as u64).read_to_end(buf);
        match got {
            Ok(m) if m == n => Ok(()),
            Ok(_) => Err(self.bad("it ends inside an entry")),
            Err(e) => Err(self.bad(e)),
        }
    }

    fn len_field(&mut self, max: usize, what: &str) -> Result<usize> {
        let mut w = [0u8; 4];
        self.r
            .read_exact(&mut w)
            .map_err(|_| self.bad("it ends inside an entry"))?;
        let n = u32::from_be_bytes(w) as usize;
        if n > max {
            return Err(self.bad(format!("a {what} of {n} bytes, over the limit of {max}")));
        }
        Ok(n)
    }

    /// The next entry; `None` at the end mark.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry<'_>>> {
        if self.done {
            return Ok(None);
        }
        let mut head = [0u8; 1];
        self.r
            .read_exact(&mut head)
            .map_err(|_| self.bad("it has no end mark"))?;
        if head[0] == END {
            self.done = true;
            return Ok(None);
        }
        let table = head[0];
        if usize::from(table) >= TABLE_NAMES.len() {
            return Err(self.bad(format!("table id {table}, which this build does not know")));
        }
        self.r
            .read_exact(&mut head)
            .map_err(|_| self.bad("it ends inside an entry"))?;
        let put = match head[0] {
            0 => false,
            1 => true,
            op => return Err(self.bad(format!("operation {op}, not 0 (remove) or 1 (put)"))),
        };
        let klen = self.len_field(MAX_KEY, "key")?;
        self.fill(klen, true)?;
        if put {
            let vlen = self.len_field(MAX_VALUE, "value")?;
            self.fill(vlen, false)?;
        }
        Ok(Some(Entry {
            table,
            key: &self.key,
            value: put.then_some(self.value.as_slice()),
        }))
    }
}

/// Whether `b` is a valid encoding of `T` (fixed width; `str` UTF-8).
fn fits<T: redb::Value>(b: &[u8], text: bool) -> bool {
    T::fixed_width().is_none_or(|w| w == b.len()) && (!text || std::str::from_utf8(b).is_ok())
}

/// Replays one entry on the table it names.
struct Apply<'e, 'a>(&'e Entry<'a>);

impl EachTable for Apply<'_, '_> {
    fn write<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        t: &mut Logged<'_, K, V>,
        name: &'static str,
        text_key: bool,
    ) -> Result<()> {
        let e = self.0;
        if !fits::<K>(e.key, text_key) {
            return Err(Error::Corrupt(format!(
                "index log: a key of {} bytes that is not a key of table {name}",
                e.key.len()
            )));
        }
        match e.value {
            None => {
                t.remove(K::from_bytes(e.key))?;
            }
            Some(v) if fits::<V>(v, false) => {
                t.insert(K::from_bytes(e.key), V::from_bytes(v))?;
            }
            Some(v) => {
                return Err(Error::Corrupt(format!(
                    "index log: a value of {} bytes that is not a value of table {name}",
                    v.len()
                )))
            }
        }
        Ok(())
    }
}

/// Applies one entry to the tables of a write transaction.
pub(crate) fn apply(t: &mut WriteTables<'_>, e: &Entry<'_>) -> Result<()> {
    t.with_table(e.table, &mut Apply(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let h = Header {
            kind: Kind::Log,
            store_id: "0123456789abcdef0123456789abcdef".into(),
            position: 7,
            time_ms: 1_700_000_000_000,
        };
        let mut e = Encoder::new(Vec::new(), &h).expect("encoder");
        e.entry(7, b"library/app", Some(&5u64.to_le_bytes()))
            .expect("entry");
        e.entry(8, b"\0\0\0\0\0\0\0\x05v1", None).expect("entry");
        e.finish().expect("finish")
    }

    #[test]
    fn an_object_round_trips() {
        let bytes = sample();
        let (h, body) = verify(&bytes, "t").expect("verify");
        assert_eq!(
            (h.kind, h.position, h.time_ms),
            (Kind::Log, 7, 1_700_000_000_000)
        );
        let mut it = Entries::new(body, "t");
        let a = it.next_entry().expect("entry").expect("some");
        assert_eq!(
            (a.table, a.key, a.value),
            (
                7,
                b"library/app".as_slice(),
                Some(5u64.to_le_bytes().as_slice())
            )
        );
        let b = it.next_entry().expect("entry").expect("some");
        assert_eq!((b.table, b.value), (8, None));
        assert!(it.next_entry().expect("end").is_none());
    }

    #[test]
    fn any_altered_or_cut_object_is_refused_without_panicking() {
        let bytes = sample();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let err = verify(&b, "t").expect_err("altered");
            assert!(err.to_string().contains("index log object t"), "{err}");
            assert!(verify(&bytes[..i], "t").is_err());
        }
    }

    proptest::proptest! {
        /// Bytes that pass the hash check (an attacker can recompute it)
        /// still decode to entries or a clear error, never a panic or an
        /// allocation beyond the limits.
        #[test]
        fn hostile_entries_decode_or_fail_cleanly(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut it = Entries::new(body.as_slice(), "p");
            for _ in 0..64 {
                match it.next_entry() {
                    Ok(Some(e)) => {
                        proptest::prop_assert!(usize::from(e.table) < TABLE_NAMES.len());
                        proptest::prop_assert!(e.key.len() <= MAX_KEY);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn a_mistyped_entry_is_refused_before_redb_sees_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("db")).expect("db");
        let txn = db.begin_write().expect("txn");
        {
            let mut t = WriteTables::open(&txn, false).expect("tables");
            // repos: a str key, a u64 value.
            for (key, value) in [
                (b"\xff\xfe".as_slice(), 1u64.to_le_bytes().to_vec()),
                (b"ok".as_slice(), vec![1, 2, 3]),
            ] {
                let e = Entry {
                    table: 7,
                    key,
                    value: Some(&value),
                };
                let err = apply(&mut t, &e).expect_err("mistyped");
                assert!(err.to_string().contains("table repos"), "{err}");
            }
            let e = Entry {
                table: 12,
                key: b"abc",
                value: None,
            };
            assert!(apply(&mut t, &e).is_err(), "leases keys are 8 bytes");
        }
    }
}
