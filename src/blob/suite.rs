//! One suite of checks that every [`BlobBackend`] must pass, as containerd's
//! content test suite does for its stores. A backend's tests call
//! [`run`] with a function that makes a fresh, empty backend.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::Arc;

use super::{BlobBackend, BlobRead, Listed, Staged};
use crate::digest::{Algorithm, Digest};
use crate::oci::hasher::Hasher;

/// A check's name and, when it failed, why.
pub type Outcome = (&'static str, Result<(), String>);

type Check = fn(&dyn BlobBackend) -> Result<(), String>;

const CHECKS: &[(&str, Check)] = &[
    (
        "staged bytes are not visible under the digest before commit",
        staged_invisible,
    ),
    (
        "commit makes the bytes readable, whole and by range",
        commit_then_read,
    ),
    (
        "an unfinished write leaves nothing staged",
        unfinished_write_discards,
    ),
    ("discard removes a staged blob, and twice is fine", discard),
    (
        "commit of an already committed staged blob is a no-op",
        commit_idempotent,
    ),
    ("commit replaces the bytes under a digest", commit_replaces),
    ("remove says whether there was a blob", remove),
    (
        "list shows committed blobs of both algorithms, not staged ones",
        list,
    ),
    ("remove_all removes many, absent ones included", remove_all),
    (
        "commit_all commits many and answers for each, in order",
        commit_all,
    ),
    ("an empty blob round-trips", empty_blob),
    (
        "sync and sync_staging succeed on committed and staged blobs",
        sync,
    ),
    (
        "stages from many threads get distinct names",
        concurrent_stage,
    ),
    ("hard_link is declined or links the same bytes", hard_link),
    (
        "upload bytes append, drop what was not acknowledged, and finish staged",
        upload_append_finish,
    ),
    (
        "an upload append past its bytes is refused",
        upload_append_past_end,
    ),
    (
        "upload_list and upload_remove see every session",
        upload_list_remove,
    ),
];

/// Runs every check, each on a fresh backend from `make`.
pub fn run(make: &dyn Fn() -> Arc<dyn BlobBackend>) -> Vec<Outcome> {
    CHECKS
        .iter()
        .map(|(name, check)| (*name, check(&*make())))
        .collect()
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn digest_of(alg: Algorithm, data: &[u8]) -> Digest {
    Hasher::digest_of(alg, data)
}

fn stage(b: &dyn BlobBackend, data: &[u8], durable: bool) -> Result<Staged, String> {
    let mut w = b.stage().map_err(err)?;
    w.write_all(data).map_err(err)?;
    w.finish(durable).map_err(err)
}

fn read_all(r: &dyn BlobRead) -> Result<Vec<u8>, String> {
    let len = r.len().map_err(err)?;
    let mut out = vec![0u8; usize::try_from(len).map_err(err)?];
    let mut pos = 0usize;
    while pos < out.len() {
        let n = r.read_at(&mut out[pos..], pos as u64).map_err(err)?;
        if n == 0 {
            return Err(format!("read_at returned 0 at {pos} of {len}"));
        }
        pos += n;
    }
    Ok(out)
}

fn expect(cond: bool, what: &str) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what.to_string())
    }
}

fn staged_invisible(b: &dyn BlobBackend) -> Result<(), String> {
    let data = bytes(1, 5000);
    let d = digest_of(Algorithm::Sha256, &data);
    let s = stage(b, &data, true)?;
    expect(
        b.open(&d).map_err(err)?.is_none(),
        "open found a staged blob",
    )?;
    expect(b.len(&d).map_err(err)?.is_none(), "len found a staged blob")?;
    let r = b
        .open_staged(&s)
        .map_err(err)?
        .ok_or("open_staged did not find the staged blob")?;
    expect(read_all(&*r)? == data, "staged bytes differ")?;
    expect(
        b.list_staged().map_err(err)?.contains(&s),
        "list_staged does not list the staged blob",
    )
}

fn commit_then_read(b: &dyn BlobBackend) -> Result<(), String> {
    let data = bytes(2, 300_000);
    let d = digest_of(Algorithm::Sha256, &data);
    let s = stage(b, &data, true)?;
    b.sync_staging(&[]).map_err(err)?;
    b.commit(&s, &d).map_err(err)?;
    let r = b.open(&d).map_err(err)?.ok_or("committed blob not found")?;
    expect(read_all(&*r)? == data, "committed bytes differ")?;
    expect(
        b.len(&d).map_err(err)? == Some(data.len() as u64),
        "len differs",
    )?;
    let mut buf = [0u8; 100];
    let n = r.read_at(&mut buf, 123_456).map_err(err)?;
    expect(
        n > 0 && buf[..n] == data[123_456..123_456 + n],
        "ranged read differs",
    )?;
    expect(
        r.read_at(&mut buf, data.len() as u64).map_err(err)? == 0,
        "a read at the end returned bytes",
    )?;
    expect(
        b.open_staged(&s).map_err(err)?.is_none(),
        "the staged name is still there after commit",
    )
}

fn unfinished_write_discards(b: &dyn BlobBackend) -> Result<(), String> {
    {
        let mut w = b.stage().map_err(err)?;
        w.write_all(&bytes(3, 1000)).map_err(err)?;
    }
    expect(
        b.list_staged().map_err(err)?.is_empty(),
        "a dropped write left a staged blob",
    )
}

fn discard(b: &dyn BlobBackend) -> Result<(), String> {
    let s = stage(b, &bytes(4, 10), false)?;
    b.discard(&s).map_err(err)?;
    expect(
        b.open_staged(&s).map_err(err)?.is_none(),
        "discarded blob still readable",
    )?;
    b.discard(&s).map_err(err)
}

fn commit_idempotent(b: &dyn BlobBackend) -> Result<(), String> {
    let data = bytes(5, 2000);
    let d = digest_of(Algorithm::Sha256, &data);
    let s = stage(b, &data, true)?;
    b.commit(&s, &d).map_err(err)?;
    b.commit(&s, &d)
        .map_err(|e| format!("second commit failed: {e}"))?;
    let r = b
        .open(&d)
        .map_err(err)?
        .ok_or("blob gone after a second commit")?;
    expect(read_all(&*r)? == data, "bytes differ after a second commit")
}

fn commit_replaces(b: &dyn BlobBackend) -> Result<(), String> {
    let d = digest_of(Algorithm::Sha256, b"whatever");
    let first = stage(b, b"first", true)?;
    b.commit(&first, &d).map_err(err)?;
    let second = stage(b, b"second!", true)?;
    b.commit(&second, &d).map_err(err)?;
    let r = b.open(&d).map_err(err)?.ok_or("blob not found")?;
    expect(
        read_all(&*r)? == b"second!",
        "commit did not replace the bytes",
    )
}

fn remove(b: &dyn BlobBackend) -> Result<(), String> {
    let data = bytes(6, 100);
    let d = digest_of(Algorithm::Sha256, &data);
    let s = stage(b, &data, false)?;
    b.commit(&s, &d).map_err(err)?;
    expect(
        b.remove(&d).map_err(err)?,
        "remove of a blob said there was none",
    )?;
    expect(
        b.open(&d).map_err(err)?.is_none(),
        "removed blob still readable",
    )?;
    expect(
        !b.remove(&d).map_err(err)?,
        "second remove said there was a blob",
    )
}

fn remove_all(b: &dyn BlobBackend) -> Result<(), String> {
    let mut all = Vec::new();
    for i in 0..5u8 {
        let data = bytes(40 + i, 64);
        let d = digest_of(Algorithm::Sha256, &data);
        let s = stage(b, &data, false)?;
        b.commit(&s, &d).map_err(err)?;
        all.push(d);
    }
    let kept = all.pop().ok_or("no blobs")?;
    // One that was never there.
    all.push(digest_of(Algorithm::Sha256, b"never stored"));
    b.remove_all(&all).map_err(err)?;
    for d in &all {
        expect(
            b.open(d).map_err(err)?.is_none(),
            "a removed blob is still readable",
        )?;
    }
    expect(
        b.open(&kept).map_err(err)?.is_some(),
        "remove_all removed a blob it was not given",
    )
}

fn commit_all(b: &dyn BlobBackend) -> Result<(), String> {
    let mut items = Vec::new();
    let mut datas = Vec::new();
    for i in 0..6u8 {
        let data = bytes(60 + i, 100 + usize::from(i));
        items.push((stage(b, &data, false)?, digest_of(Algorithm::Sha256, &data)));
        datas.push(data);
    }
    let results = b.commit_all(&items);
    expect(results.len() == items.len(), "one result per item")?;
    for (((_, d), data), r) in items.iter().zip(&datas).zip(results) {
        r.map_err(err)?;
        let got = b
            .open(d)
            .map_err(err)?
            .ok_or("a committed blob is missing")?;
        expect(
            read_all(&*got)? == *data,
            "a committed blob has other bytes",
        )?;
    }
    // Again, as after a crash: idempotent.
    for r in b.commit_all(&items) {
        r.map_err(err)?;
    }
    expect(
        b.list_staged().map_err(err)?.is_empty(),
        "staged blobs are left",
    )
}

fn list(b: &dyn BlobBackend) -> Result<(), String> {
    let mut want = HashSet::new();
    for (i, alg) in [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Sha256]
        .into_iter()
        .enumerate()
    {
        let data = bytes(10 + i as u8, 64);
        let d = digest_of(alg, &data);
        b.commit(&stage(b, &data, false)?, &d).map_err(err)?;
        want.insert(d);
    }
    let _staged = stage(b, &bytes(99, 64), false)?;
    let mut seen = HashSet::new();
    b.list(&mut |l| {
        if let Listed::Blob(d) = l {
            seen.insert(d);
        }
        Ok(())
    })
    .map_err(err)?;
    expect(seen == want, &format!("listed {seen:?}, expected {want:?}"))
}

fn empty_blob(b: &dyn BlobBackend) -> Result<(), String> {
    let d = digest_of(Algorithm::Sha256, b"");
    b.commit(&stage(b, b"", true)?, &d).map_err(err)?;
    let r = b.open(&d).map_err(err)?.ok_or("empty blob not found")?;
    expect(r.len().map_err(err)? == 0, "empty blob has a length")?;
    expect(b.len(&d).map_err(err)? == Some(0), "len of the empty blob")
}

fn sync(b: &dyn BlobBackend) -> Result<(), String> {
    let data = bytes(7, 4096);
    let d = digest_of(Algorithm::Sha256, &data);
    let s = stage(b, &data, false)?;
    b.sync_staging(std::slice::from_ref(&s)).map_err(err)?;
    b.commit(&s, &d).map_err(err)?;
    b.sync(&[d]).map_err(err)?;
    // Names removed or committed since are no error.
    b.sync_staging(&[s]).map_err(err)?;
    b.remove(&d).map_err(err)?;
    b.sync(&[d]).map_err(err)
}

fn concurrent_stage(b: &dyn BlobBackend) -> Result<(), String> {
    let names = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                s.spawn(move || {
                    (0..16u8)
                        .map(|i| stage(b, &[t, i], false))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "a staging thread panicked".to_string())?
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let all: Vec<Staged> = names.into_iter().flatten().collect();
    let distinct: HashSet<&Staged> = all.iter().collect();
    expect(distinct.len() == all.len(), "two stages got the same name")
}

fn hard_link(b: &dyn BlobBackend) -> Result<(), String> {
    let data = bytes(8, 1000);
    let d = digest_of(Algorithm::Sha256, &data);
    b.commit(&stage(b, &data, true)?, &d).map_err(err)?;
    let dir = std::env::temp_dir().join(format!(
        "ocidb-suite-link-{}-{}",
        std::process::id(),
        d.hex()
    ));
    std::fs::create_dir_all(&dir).map_err(err)?;
    let dst = dir.join("blob");
    let linked = b.hard_link(&d, &dst).map_err(err);
    let got = std::fs::read(&dst);
    let _ = std::fs::remove_dir_all(&dir);
    if linked? {
        expect(got.map_err(err)? == data, "the link holds other bytes")
    } else {
        Ok(())
    }
}

fn append(b: &dyn BlobBackend, id: &str, at: u64, data: &[u8]) -> Result<(), String> {
    let mut w = b.upload_append(id, at).map_err(err)?;
    w.write_all(data).map_err(err)?;
    w.commit().map_err(err)
}

fn upload_append_finish(b: &dyn BlobBackend) -> Result<(), String> {
    let id = "0123abcd";
    b.upload_create(id).map_err(err)?;
    append(b, id, 0, b"hello ")?;
    // Written but never acknowledged (the session still says 6 bytes).
    append(b, id, 6, b"XXXXXXXXXX")?;
    append(b, id, 6, b"world")?;
    let r = b.upload_open(id).map_err(err)?.ok_or("upload not found")?;
    expect(
        read_all(&*r)? == b"hello world",
        "the upload holds other bytes",
    )?;
    let s = b.upload_finish(id).map_err(err)?;
    expect(
        b.upload_open(id).map_err(err)?.is_none(),
        "the upload is still there",
    )?;
    let r = b
        .open_staged(&s)
        .map_err(err)?
        .ok_or("finished upload not staged")?;
    expect(
        read_all(&*r)? == b"hello world",
        "the staged blob holds other bytes",
    )?;
    let d = digest_of(Algorithm::Sha256, b"hello world");
    b.commit(&s, &d).map_err(err)?;
    let r = b
        .open(&d)
        .map_err(err)?
        .ok_or("committed upload not found")?;
    expect(
        read_all(&*r)? == b"hello world",
        "the committed upload holds other bytes",
    )
}

fn upload_append_past_end(b: &dyn BlobBackend) -> Result<(), String> {
    let id = "feed";
    b.upload_create(id).map_err(err)?;
    append(b, id, 0, b"abc")?;
    expect(
        b.upload_append(id, 10).is_err(),
        "an append past the end was taken",
    )
}

fn upload_list_remove(b: &dyn BlobBackend) -> Result<(), String> {
    for id in ["aa", "bb"] {
        b.upload_create(id).map_err(err)?;
    }
    let mut ids = b.upload_list().map_err(err)?;
    ids.sort();
    expect(ids == ["aa", "bb"], &format!("listed {ids:?}"))?;
    b.upload_remove("aa").map_err(err)?;
    b.upload_remove("aa").map_err(err)?;
    expect(
        b.upload_list().map_err(err)? == ["bb"],
        "remove left the session",
    )
}
