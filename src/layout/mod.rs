//! OCI image layouts: import from a directory or an oci-archive tar, and
//! export to either.
//!
//! Import verifies every blob's digest and size while streaming, runs under
//! a lease (so gc never trips over a half-done import), ingests manifests
//! children-first in batches, and applies tags last, so an interrupted
//! import never shows a tag that points at an incomplete image.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod archive;
mod export;
mod import;

pub use export::{ExportOptions, ExportReport};

use import::IndexSource;

use crate::digest::Digest;
use crate::error::{Error, IoContext as _, Result};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::names::{self};
use crate::store::Store;

/// Largest `index.json` accepted: room for several million entries, so
/// that whatever `export` and `bench gen` write imports again.
pub const MAX_INDEX_SIZE: u64 = 256 * 1024 * 1024;
/// Largest `oci-layout` marker accepted (it holds one short field).
const MAX_MARKER_SIZE: u64 = 64 * 1024;
/// Manifests ingested per transaction during import: large batches make
/// few commits, as `bench gen`'s do (10k: 1.17-1.26x faster than 4,096
/// in docs/benchmarks.md)...
const MANIFEST_BATCH: usize = 10_000;
/// ...and a batch also ends at this many body bytes, so that one holds a
/// bounded amount of memory whatever its manifests weigh.
const BATCH_BYTES: u64 = 32 << 20;

/// What an import did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    /// The repository imported into.
    pub repository: String,
    /// Non-manifest blobs imported.
    pub blobs: u64,
    /// Manifests imported.
    pub manifests: u64,
    /// Tags set.
    pub tags: u64,
    /// Manifests that are referrers (by `subject` or a `sha256-…` index).
    pub referrers: u64,
    /// Referenced digests whose blobs the layout does not hold.
    pub missing: Vec<Digest>,
    /// `ref.name` annotations that are not usable tags, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_refs: Vec<String>,
    /// Oddities of the layout that were worked around.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Options for [`Store::import_layout`].
#[derive(Default)]
#[non_exhaustive]
pub struct ImportOptions<'a> {
    /// Repository to import into (default: the layout's directory name).
    pub repository: Option<String>,
    /// Refuse a sparse layout instead of importing what is there.
    pub strict: bool,
    /// Called with (items done, items known so far).
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
}

impl<'a> ImportOptions<'a> {
    /// Sets [`ImportOptions::repository`].
    #[must_use]
    pub fn repository(mut self, repository: impl crate::store::OptionalString) -> Self {
        self.repository = repository.into_option();
        self
    }

    /// Sets [`ImportOptions::strict`].
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Sets [`ImportOptions::progress`].
    #[must_use]
    pub fn progress(mut self, progress: &'a (dyn Fn(u64, u64) + Sync)) -> Self {
        self.progress = Some(progress);
        self
    }
}

#[derive(Deserialize)]
struct LayoutMarker {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

/// Where the layout's files come from.
enum Source {
    Dir(PathBuf),
    /// An oci-archive whose blobs were already streamed into the store:
    /// only what it carried, or what the target repository already holds,
    /// counts as present. Anything else stored under another repository is
    /// not the archive's to adopt.
    Stored {
        carried: HashSet<Digest>,
        repo: String,
    },
}

impl Source {
    fn open_blob(&self, store: &Store, d: &Digest) -> Result<Option<(Box<dyn Read>, u64)>> {
        match self {
            Source::Dir(root) => {
                use std::os::unix::fs::OpenOptionsExt as _;
                let p = d.blob_path(root);
                let refused = || Error::InvalidArgument {
                    value: p.display().to_string(),
                    expected: "a regular file (links and special files are refused)".into(),
                };
                // One lookup, and no window between a check and the open:
                // a link is refused by the open itself (O_NOFOLLOW), a FIFO
                // cannot block it (O_NONBLOCK), and what was opened is
                // checked through its descriptor.
                let opened = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&p);
                let f = match opened {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(refused()),
                    Err(e) => return Err(Error::io(format!("opening {}", p.display()), e)),
                };
                let m = f
                    .metadata()
                    .context(|| format!("stat of {}", p.display()))?;
                if !m.is_file() {
                    return Err(refused());
                }
                Ok(Some((Box::new(f), m.len())))
            }
            Source::Stored { carried, repo } => {
                let ours = carried.contains(d) || store.is_member(repo, d).unwrap_or(false);
                if !ours || !store.exists(d)? {
                    return Ok(None);
                }
                let r = store.get(d)?;
                let len = r.len();
                Ok(Some((Box::new(r), len)))
            }
        }
    }
}

/// A layout directory's own files must be regular files and its blob
/// folders real folders: a FIFO named `index.json` would hang the import,
/// and a symlinked `blobs/sha256` would lead it outside the layout (blob
/// files that are links are refused the same way).
fn check_layout_tree(root: &Path) -> Result<()> {
    let kind = |p: &Path| fs::symlink_metadata(p).map(|m| m.file_type());
    for name in ["oci-layout", "index.json"] {
        let p = root.join(name);
        match kind(&p) {
            Ok(t) if t.is_file() => {}
            Ok(_) => {
                return Err(Error::InvalidArgument {
                    value: p.display().to_string(),
                    expected: "a regular file (links, FIFOs and other special files are refused)"
                        .into(),
                })
            }
            // Reported with context where the file is opened.
            Err(_) => {}
        }
    }
    let blobs = root.join("blobs");
    let mut dirs = vec![blobs.clone()];
    if let Ok(entries) = fs::read_dir(&blobs) {
        dirs.extend(entries.flatten().map(|e| e.path()));
    }
    for d in dirs {
        match kind(&d) {
            Ok(t) if t.is_dir() => {}
            Ok(t) if t.is_file() && d != blobs => {}
            Ok(_) => {
                return Err(Error::InvalidArgument {
                    value: d.display().to_string(),
                    expected: "a real directory (a symlinked blob folder is refused, as symlinked blob files are)".into(),
                })
            }
            Err(_) => {}
        }
    }
    Ok(())
}

fn read_limited(mut r: impl Read, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.by_ref()
        .take(limit + 1)
        .read_to_end(&mut buf)
        .context(|| format!("reading {what}"))?;
    if buf.len() as u64 > limit {
        return Err(Error::InvalidArgument {
            value: what.to_string(),
            expected: format!("at most {limit} bytes"),
        });
    }
    Ok(buf)
}

fn check_marker(bytes: &[u8], where_: &str) -> Result<()> {
    let m: LayoutMarker = serde_json::from_slice(bytes).map_err(|e| Error::InvalidArgument {
        value: format!("{where_}/oci-layout"),
        expected: format!("{{\"imageLayoutVersion\":\"1.0.0\"}} ({e})"),
    })?;
    if !m.image_layout_version.starts_with("1.") {
        return Err(Error::InvalidArgument {
            value: format!("imageLayoutVersion {}", m.image_layout_version),
            expected: "an OCI image layout version 1.x".into(),
        });
    }
    Ok(())
}

/// A compressed archive gets a plain answer, not the tar reader's view of
/// compressed bytes.
fn check_not_compressed(path: &Path) -> Result<()> {
    let mut magic = [0u8; 6];
    let n = fs::File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .context(|| format!("reading {}", path.display()))?;
    let kind = match &magic[..n] {
        [0x1f, 0x8b, ..] => Some(("gzip", "gunzip -k")),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(("zstd", "zstd -d")),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => Some(("xz", "xz -dk")),
        [b'B', b'Z', b'h', ..] => Some(("bzip2", "bunzip2 -k")),
        _ => None,
    };
    match kind {
        Some((name, tool)) => Err(Error::InvalidArgument {
            value: path.display().to_string(),
            expected: format!(
                "an uncompressed .tar or a layout directory: this file is {name}-compressed; decompress it first (`{tool} FILE`)"
            ),
        }),
        None => Ok(()),
    }
}

fn check_index_size(size: u64, what: &str) -> Result<()> {
    if size > MAX_INDEX_SIZE {
        return Err(Error::InvalidArgument {
            value: format!("{what} of {size} bytes"),
            expected: format!("an index.json of at most {MAX_INDEX_SIZE} bytes"),
        });
    }
    Ok(())
}

/// The repository name a layout path implies.
fn default_repo(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name
        .strip_suffix(".tar")
        .map(str::to_string)
        .unwrap_or(name);
    names::validate_repository(&name).map_err(|e| Error::InvalidRepository {
        name: name.clone(),
        reason: format!("{e}; pass --repo NAME to choose one"),
    })?;
    Ok(name)
}

/// A `ref.name` annotation to a tag: `v1`, or the tag part of a full
/// reference such as `example.com/app:v1`.
fn tag_of_ref_name(r: &str) -> Option<String> {
    if names::validate_tag(r).is_ok() {
        return Some(r.to_string());
    }
    // `name@sha256:…` pins a digest: there is no tag in it.
    if r.contains('@') {
        return None;
    }
    let (_, tag) = r.rsplit_once(':')?;
    names::validate_tag(tag).ok().map(|_| tag.to_string())
}

impl Store {
    /// Imports an OCI image layout directory or a tar of one.
    pub fn import_layout(&self, path: &Path, opts: &ImportOptions<'_>) -> Result<ImportReport> {
        let repo = match &opts.repository {
            Some(r) => {
                names::validate_repository(r)?;
                r.clone()
            }
            None => default_repo(path)?,
        };
        let meta = fs::metadata(path).context(|| format!("opening {}", path.display()))?;
        if meta.is_file() {
            check_not_compressed(path)?;
        }
        let repo_was_new = !self.repositories()?.contains(&repo);
        let lease = self.create_lease(Duration::from_secs(6 * 3600))?;
        // What this import adds, so that a rejected one can take it back.
        let mut created: Vec<Digest> = Vec::new();
        let result = if meta.is_dir() {
            check_layout_tree(path)?;
            let marker = path.join("oci-layout");
            let bytes = read_limited(
                fs::File::open(&marker).context(|| {
                    format!(
                        "{} is not an OCI image layout: no oci-layout file",
                        path.display()
                    )
                })?,
                MAX_MARKER_SIZE,
                "oci-layout",
            )?;
            check_marker(&bytes, &path.display().to_string())?;
            let index_path = path.join("index.json");
            let f = fs::File::open(&index_path)
                .context(|| format!("opening {}", index_path.display()))?;
            let size = f
                .metadata()
                .context(|| format!("stat of {}", index_path.display()))?
                .len();
            check_index_size(size, &index_path.display().to_string())?;
            drop(f);
            self.import_from(
                &Source::Dir(path.to_path_buf()),
                &IndexSource::File(index_path),
                &repo,
                lease.id,
                opts,
                &mut created,
            )
        } else {
            let mut carried = HashSet::new();
            self.stream_tar(path, lease.id, &mut created, &mut carried)
                .and_then(|index| {
                    let src = Source::Stored {
                        carried,
                        repo: repo.clone(),
                    };
                    let index = IndexSource::Bytes(index);
                    self.import_from(&src, &index, &repo, lease.id, opts, &mut created)
                })
        };
        let result = match result {
            Ok(r) => Ok(r),
            Err(e) => match self.undo_import(created, &repo, repo_was_new) {
                Ok(()) => Err(e),
                // Not bad input: the store could not take back what the
                // import added (a full disk, say). The lease expires and
                // gc collects what nothing reaches.
                Err(undo) => Err(Error::io(
                    format!(
                        "the import failed ({e}), and taking back what it had added failed too"
                    ),
                    std::io::Error::other(undo.to_string()),
                )),
            },
        };
        // The lease protected the work in progress; what is tagged or
        // otherwise rooted now stands on its own.
        let released = self.release_lease(lease.id);
        let report = result?;
        released?;
        Ok(report)
    }

    /// Takes back what a rejected import added (newest first), and the
    /// repository when the import created it and it is empty again.
    fn undo_import(&self, created: Vec<Digest>, repo: &str, repo_was_new: bool) -> Result<()> {
        if created.is_empty() && !repo_was_new {
            return Ok(());
        }
        let repo = repo.to_string();
        self.submit(true, move |b| {
            for d in created.iter().rev() {
                if let Some(rec) = crate::index::blobs::record_in(b, d)? {
                    crate::index::remove::remove_blob_in(b, d, &rec)?;
                }
            }
            if repo_was_new {
                crate::index::repos::remove_repo_if_empty(b, &repo)?;
            }
            Ok(())
        })
    }

    /// A manifest's bytes, read again from the layout and verified again:
    /// the file may have changed since the walk read it.
    fn reread_manifest(&self, src: &Source, d: &Digest) -> Result<Vec<u8>> {
        let Some((reader, _)) = src.open_blob(self, d)? else {
            return Err(Error::InvalidArgument {
                value: d.to_string(),
                expected: "a manifest that stays in the layout while it is imported".into(),
            });
        };
        let body = read_limited(reader, MAX_MANIFEST_SIZE, &d.to_string())?;
        let actual = crate::oci::hasher::Hasher::digest_of(d.algorithm(), &body);
        if actual != *d {
            return Err(Error::DigestMismatch {
                expected: Box::new(*d),
                actual: Box::new(actual),
            });
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names() {
        assert_eq!(tag_of_ref_name("v1").as_deref(), Some("v1"));
        assert_eq!(tag_of_ref_name("example.com/app:v1").as_deref(), Some("v1"));
        assert_eq!(tag_of_ref_name("a/b"), None);
    }
}
