//! Helpers every command uses: opening the store, arguments, output.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ocidb::error::IoContext as _;
use ocidb::{Digest, Error, Result, Store, StoreOptions};

use super::render::{self};

/// Store options from the command line and the environment:
/// `OCIDB_CACHE_MIB` sets redb's page cache (default 256 MiB), for
/// measuring memory with a small cache; `OCIDB_INLINE_BYTES` the largest
/// blob kept inline (default 64 KiB), so that tests can send every blob to
/// the backend.
pub(super) fn store_options() -> StoreOptions {
    let mut o = StoreOptions::default().blobs(BLOBS.get().cloned().flatten());
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    if let Some(mib) = env("OCIDB_CACHE_MIB") {
        o.cache_size = mib << 20;
    }
    if let Some(n) = env("OCIDB_INLINE_BYTES") {
        o.inline_threshold = n;
    }
    o
}

/// The `--server` URL, set once from the command line.
pub(super) static SERVER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// The `--blobs` location, set once from the command line.
pub(super) static BLOBS: std::sync::OnceLock<Option<ocidb::blob::BlobLocation>> =
    std::sync::OnceLock::new();

/// Creates the store if it is missing (write commands only).
pub(super) fn create(store: &Path) -> Result<Store> {
    Store::open_with(store, store_options(), true)
}

pub(super) fn open(store: &Path) -> Result<Store> {
    Store::open_with(store, store_options(), false).map_err(|e| match e {
        Error::NotAStore { path, reason } => Error::NotAStore {
            path,
            reason: format!(
                "{reason} (pass --store DIR or set OCIDB_STORE, or create one with `ocidb blob put` or `ocidb manifest put`)"
            ),
        },
        other => other,
    })
}

pub(super) fn digest_arg(s: &str) -> Result<Digest> {
    Ok(Digest::parse(s)?)
}

/// How many entries of a long list (missing digests, notes) text output
/// shows; `--json` lists them all.
pub(super) const SHOWN: usize = 10;

pub(super) fn print_capped<T: std::fmt::Display>(what: &str, items: &[T]) {
    for i in items.iter().take(SHOWN) {
        println!("  {what}: {}", render::escape(&i.to_string()));
    }
    if items.len() > SHOWN {
        println!(
            "  … and {} more {what} ({} in all; --json lists every one)",
            items.len() - SHOWN,
            items.len()
        );
    }
}

pub(super) fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::io("formatting JSON", e.into()))?;
    println!("{s}");
    Ok(())
}

/// Reads a manifest from a file or stdin, never more than the manifest
/// limit plus one byte: a huge file or `/dev/zero` costs no more memory
/// than a manifest can.
pub(super) fn read_input(path: &Path) -> Result<Vec<u8>> {
    let limit = ocidb::manifest::MAX_MANIFEST_SIZE;
    let mut v = Vec::new();
    let shown = if path.as_os_str() == "-" {
        io::stdin()
            .take(limit + 1)
            .read_to_end(&mut v)
            .context(|| "reading standard input".into())?;
        "standard input".to_string()
    } else {
        fs::File::open(path)
            .and_then(|f| f.take(limit + 1).read_to_end(&mut v))
            .context(|| format!("reading {}", path.display()))?;
        path.display().to_string()
    };
    if v.len() as u64 > limit {
        return Err(Error::InvalidArgument {
            value: shown,
            expected: format!("a manifest of at most {limit} bytes (it is larger)"),
        });
    }
    Ok(v)
}

/// Writes to a file atomically (temp + rename) or to stdout.
pub(super) fn write_output(output: Option<&PathBuf>, mut r: impl Read) -> Result<()> {
    match output {
        None => {
            let stdout = io::stdout();
            let mut lock = stdout.lock();
            io::copy(&mut r, &mut lock).context(|| "writing to stdout".into())?;
            lock.flush().context(|| "writing to stdout".into())?;
        }
        Some(path) => {
            let tmp = path.with_extension("ocidb-partial");
            let res = (|| {
                let mut f =
                    fs::File::create(&tmp).context(|| format!("creating {}", tmp.display()))?;
                io::copy(&mut r, &mut f).context(|| format!("writing {}", tmp.display()))?;
                f.sync_all()
                    .context(|| format!("fsync of {}", tmp.display()))?;
                fs::rename(&tmp, path).context(|| format!("renaming to {}", path.display()))
            })();
            if res.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            res?;
        }
    }
    Ok(())
}

pub(super) fn parse_range(s: &str) -> Result<(u64, u64)> {
    let bad = || Error::InvalidArgument {
        value: s.to_string(),
        expected: "START-END with END inclusive, e.g. 0-1023".into(),
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

/// The operating-system user running the command, recorded as who changed
/// a tag (the tag history's `user`).
pub(super) fn os_user() -> Option<String> {
    std::env::var("USER").ok().filter(|u| !u.is_empty())
}
