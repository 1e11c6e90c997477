//! OCI image layouts: import from a directory or an oci-archive tar, and
//! export to either.
//!
//! Import verifies every blob's digest and size while streaming, runs under
//! a lease (so gc never trips over a half-done import), ingests manifests
//! children-first in batches, and applies tags last, so an interrupted
//! import never shows a tag that points at an incomplete image.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read, Write as _};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod import;

use import::IndexSource;

use crate::error::{Error, IoContext as _, Result};
use crate::oci::digest::Digest;
use crate::oci::manifest::{self, Descriptor, EdgeKind, MAX_MANIFEST_SIZE, REF_NAME};
use crate::oci::names::{self, Reference};
use crate::store::{PutOptions, Store};

/// Largest `index.json` accepted: room for several million entries, so
/// that whatever `export` and `bench gen` write imports again.
pub const MAX_INDEX_SIZE: u64 = 256 * 1024 * 1024;
/// Largest `oci-layout` marker accepted (it holds one short field).
const MAX_MARKER_SIZE: u64 = 64 * 1024;
/// Manifests ingested per transaction during import.
const MANIFEST_BATCH: usize = 512;

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
pub struct ImportOptions<'a> {
    /// Repository to import into (default: the layout's directory name).
    pub repository: Option<String>,
    /// Refuse a sparse layout instead of importing what is there.
    pub strict: bool,
    /// Called with (items done, items known so far).
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
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
                let p = d.blob_path(root);
                match fs::symlink_metadata(&p) {
                    Ok(m) if m.is_file() => {
                        let f =
                            fs::File::open(&p).context(|| format!("opening {}", p.display()))?;
                        Ok(Some((Box::new(f), m.len())))
                    }
                    Ok(_) => Err(Error::InvalidArgument {
                        value: p.display().to_string(),
                        expected: "a regular file (links and special files are refused)".into(),
                    }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io(format!("stat of {}", p.display()), e)),
                }
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
        let actual = crate::Hasher::digest_of(d.algorithm(), &body);
        if actual != *d {
            return Err(Error::DigestMismatch {
                expected: Box::new(*d),
                actual: Box::new(actual),
            });
        }
        Ok(body)
    }

    /// Streams an oci-archive: blobs go straight into the store (verified
    /// against their file names) under the lease; index.json is returned.
    /// Nothing is ever written outside the store.
    fn stream_tar(
        &self,
        path: &Path,
        lease: u64,
        created: &mut Vec<Digest>,
        carried: &mut HashSet<Digest>,
    ) -> Result<Vec<u8>> {
        let f = fs::File::open(path).context(|| format!("opening {}", path.display()))?;
        let mut archive = tar::Archive::new(io::BufReader::with_capacity(1 << 20, f));
        let mut index = None;
        let mut marker = None;
        let entries = archive
            .entries()
            .context(|| format!("reading tar {}", path.display()))?;
        for entry in entries {
            let mut entry = entry.context(|| format!("reading tar {}", path.display()))?;
            let raw_path = entry
                .path()
                .context(|| "reading a tar entry path".to_string())?
                .into_owned();
            let rel = safe_tar_path(&raw_path)?;
            let kind = entry.header().entry_type();
            let shown = raw_path.display().to_string();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let dir = rel.parent().map(Path::to_path_buf).unwrap_or_default();
                let resolved = if kind.is_hard_link() {
                    target.clone()
                } else {
                    dir.join(&target)
                };
                if target.is_absolute() || escapes(&resolved) {
                    return Err(Error::InvalidArgument {
                        value: format!("{shown} -> {}", target.display()),
                        expected: "links that stay inside the layout (this one escapes it)".into(),
                    });
                }
                // A link inside the tree adds no content of its own.
                continue;
            }
            if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
                continue;
            }
            if !kind.is_file() {
                return Err(Error::InvalidArgument {
                    value: shown,
                    expected: "regular files and directories only (device, fifo and other special entries are refused)".into(),
                });
            }
            // Entry::size honours PAX size headers (blobs over 8 GiB).
            let size = entry.size();
            let comps: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            match comps
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
            {
                ["index.json"] | ["oci-layout"] => {
                    let limit = if comps[0] == "index.json" {
                        MAX_INDEX_SIZE
                    } else {
                        MAX_MARKER_SIZE
                    };
                    if size > limit {
                        return Err(Error::InvalidArgument {
                            value: format!("{shown} of {size} bytes"),
                            expected: format!("at most {limit} bytes"),
                        });
                    }
                    let bytes = read_limited(&mut entry, limit, &shown)?;
                    if comps[0] == "index.json" {
                        index = Some(bytes);
                    } else {
                        marker = Some(bytes);
                    }
                }
                ["blobs", alg, hex] => {
                    let d = Digest::parse(&format!("{alg}:{hex}")).map_err(|e| {
                        Error::InvalidArgument {
                            value: shown.clone(),
                            expected: format!("blobs/<alg>/<hex> named by a valid digest ({e})"),
                        }
                    })?;
                    let put = self.put(
                        &mut entry,
                        &PutOptions {
                            digest: Some(d),
                            size: Some(size),
                            lease: Some(lease),
                            no_sync: true,
                            ..PutOptions::default()
                        },
                    )?;
                    if put.created {
                        created.push(put.digest);
                    }
                    carried.insert(put.digest);
                }
                // Anything else in the archive is not part of the layout.
                _ => {}
            }
        }
        check_marker(
            &marker.ok_or_else(|| Error::InvalidArgument {
                value: path.display().to_string(),
                expected: "an oci-archive with an oci-layout file".into(),
            })?,
            &path.display().to_string(),
        )?;
        index.ok_or_else(|| Error::InvalidArgument {
            value: path.display().to_string(),
            expected: "an oci-archive with an index.json".into(),
        })
    }

    /// Exports images (and optionally their referrers) as an OCI image
    /// layout directory, or a `.tar` of one when `out` ends in `.tar`.
    pub fn export_layout(
        &self,
        refs: &[(String, Reference)],
        out: &Path,
        opts: &ExportOptions,
    ) -> Result<ExportReport> {
        let with_referrers = opts.with_referrers;
        self.refuse_inside_store(out)?;
        if out.exists() {
            let empty_dir = out.is_dir()
                && fs::read_dir(out)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
            if !empty_dir {
                return Err(Error::InvalidArgument {
                    value: out.display().to_string(),
                    expected: "a path that does not exist yet (or an empty directory)".into(),
                });
            }
        }
        let mut entries: Vec<Descriptor> = Vec::new();
        let mut blobs: BTreeMap<Digest, ()> = BTreeMap::new();
        let mut report = ExportReport::default();
        for (repo, r) in refs {
            let root = self.resolve(repo, r)?;
            let info = self.stat(&root)?;
            let mut mt = info.media_type.clone().unwrap_or_default();
            if opts.oci_index_types {
                mt = match mt.as_str() {
                    manifest::DOCKER_MANIFEST => manifest::OCI_MANIFEST.to_string(),
                    manifest::DOCKER_LIST => manifest::OCI_INDEX.to_string(),
                    _ => mt,
                };
            } else if mt == manifest::DOCKER_MANIFEST || mt == manifest::DOCKER_LIST {
                report.notes.push(format!(
                    "{root} is a Docker manifest: skopeo 1.9 skips index.json entries with Docker media types; --oci-index-types labels them with the OCI types, as go-containerregistry does"
                ));
            }
            let mut desc = Descriptor::new(mt, root, info.size);
            if let Reference::Tag(t) = r {
                if t.starts_with('_') {
                    report.notes.push(format!(
                        "tag `{t}` starts with `_`: the OCI layout's ref.name grammar does not allow that, and skopeo refuses such names"
                    ));
                }
                desc.annotations = Some(BTreeMap::from([(REF_NAME.to_string(), t.clone())]));
            }
            // The same reference twice makes one entry.
            if entries
                .iter()
                .any(|e| e.digest == desc.digest && e.annotations == desc.annotations)
            {
                continue;
            }
            entries.push(desc);
            let mut stack = vec![root];
            let mut seen = HashSet::new();
            while let Some(d) = stack.pop() {
                if !seen.insert(d) {
                    continue;
                }
                if !self.exists(&d)? {
                    report.missing.push(d);
                    continue;
                }
                blobs.insert(d, ());
                for e in self.successors(&d)? {
                    if e.kind != EdgeKind::Subject {
                        stack.push(e.descriptor.digest);
                    }
                }
                if with_referrers {
                    let page = self.referrers(repo, &d, &Default::default())?;
                    for m in page.index.manifests {
                        if !entries.iter().any(|e| e.digest == m.digest) {
                            entries.push(m.clone());
                            report.referrers += 1;
                        }
                        stack.push(m.digest);
                    }
                }
            }
        }
        report.blobs = blobs.len() as u64;
        report.manifests = entries.len() as u64;
        let index = serde_json::to_vec(&LayoutOut {
            schema_version: 2,
            media_type: manifest::OCI_INDEX,
            manifests: &entries,
        })
        .map_err(|e| Error::io("formatting index.json", e.into()))?;
        let is_tar = out.extension().is_some_and(|e| e == "tar");
        let tmp = tmp_sibling(out)?;
        let written = if is_tar {
            self.write_tar(&tmp, &index, blobs.keys())
        } else {
            self.write_dir(&tmp, &index, blobs.keys(), opts.hardlink, &mut report)
        };
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&tmp);
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if out.is_dir() {
            let _ = fs::remove_dir(out);
        }
        fs::rename(&tmp, out).context(|| format!("renaming into {}", out.display()))?;
        if let Some(parent) = out.parent() {
            let _ = sync_dir(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            });
        }
        report.missing.sort();
        report.missing.dedup();
        Ok(report)
    }

    /// An export inside the store's own directory would be taken for the
    /// store's files (`tmp/` is emptied at open, `blobs/` is checked by
    /// fsck).
    fn refuse_inside_store(&self, out: &Path) -> Result<()> {
        let abs = |p: &Path| -> Option<PathBuf> {
            // The output does not exist yet: resolve its nearest ancestor.
            let mut probe = p.to_path_buf();
            let mut rest = Vec::new();
            loop {
                if let Ok(c) = probe.canonicalize() {
                    let mut c = c;
                    for part in rest.iter().rev() {
                        c.push(part);
                    }
                    return Some(c);
                }
                rest.push(probe.file_name()?.to_os_string());
                if !probe.pop() || probe.as_os_str().is_empty() {
                    probe = std::env::current_dir().ok()?;
                }
            }
        };
        let (Some(out_abs), Some(root)) = (abs(out), self.root.canonicalize().ok()) else {
            return Ok(());
        };
        if out_abs.starts_with(&root) {
            return Err(Error::InvalidArgument {
                value: out.display().to_string(),
                expected: format!(
                    "a destination outside the store directory {}",
                    root.display()
                ),
            });
        }
        Ok(())
    }

    fn write_dir<'a>(
        &self,
        dir: &Path,
        index: &[u8],
        blobs: impl Iterator<Item = &'a Digest>,
        hardlink: bool,
        report: &mut ExportReport,
    ) -> Result<()> {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let mut dirs = HashSet::new();
        for d in blobs {
            let dst = d.blob_path(dir);
            if let Some(parent) = dst.parent() {
                if dirs.insert(parent.to_path_buf()) {
                    fs::create_dir_all(parent)
                        .context(|| format!("creating {}", parent.display()))?;
                }
            }
            let linked = hardlink
                && self.stat(d)?.placement == crate::Placement::File
                && self.backend.hard_link(d, &dst)?;
            if linked {
                report.hardlinked += 1;
            } else {
                let mut r = self.get(d)?;
                let mut f =
                    fs::File::create(&dst).context(|| format!("creating {}", dst.display()))?;
                io::copy(&mut r, &mut f).context(|| format!("writing {}", dst.display()))?;
                f.sync_all()
                    .context(|| format!("fsync of {}", dst.display()))?;
            }
        }
        write_synced(
            &dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        write_synced(&dir.join("index.json"), index)?;
        for d in dirs {
            sync_dir(&d)?;
        }
        sync_dir(dir)
    }

    fn write_tar<'a>(
        &self,
        path: &Path,
        index: &[u8],
        blobs: impl Iterator<Item = &'a Digest>,
    ) -> Result<()> {
        let f = fs::File::create(path).context(|| format!("creating {}", path.display()))?;
        let mut b = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, f));
        let mut add = |name: &str, len: u64, r: &mut dyn Read| -> Result<()> {
            let mut h = tar::Header::new_ustar();
            h.set_size(len);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mtime(0);
            b.append_data(&mut h, name, r)
                .context(|| format!("writing {name} into {}", path.display()))
        };
        let marker = br#"{"imageLayoutVersion":"1.0.0"}"#;
        add("oci-layout", marker.len() as u64, &mut &marker[..])?;
        add("index.json", index.len() as u64, &mut &index[..])?;
        for d in blobs {
            let mut r = self.get(d)?;
            let name = format!("blobs/{}/{}", d.algorithm(), d.hex());
            add(&name, r.len(), &mut r)?;
        }
        let w = b
            .into_inner()
            .context(|| format!("finishing {}", path.display()))?;
        let f = w
            .into_inner()
            .map_err(|e| Error::io(format!("flushing {}", path.display()), e.into_error()))?;
        f.sync_all()
            .context(|| format!("fsync of {}", path.display()))
    }
}

/// Options for [`Store::export_layout`].
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Also export referrers (signatures, SBOMs), transitively.
    pub with_referrers: bool,
    /// Label Docker manifests in index.json with the equivalent OCI media
    /// types (the bytes are unchanged), for tools that skip Docker entries.
    pub oci_index_types: bool,
    /// Hard-link blob files instead of copying them (same filesystem
    /// only). Off by default: the links share the store's bytes, so a tool
    /// that rewrites an exported blob in place (as root, or after a chmod)
    /// corrupts the store's copy too.
    pub hardlink: bool,
}

/// What an export wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportReport {
    /// Entries in index.json (images and referrers).
    #[serde(rename = "index_entries")]
    pub manifests: u64,
    /// Blobs written (manifests included).
    pub blobs: u64,
    /// Referrers added by `--with-referrers`.
    pub referrers: u64,
    /// Blob files hardlinked instead of copied.
    pub hardlinked: u64,
    /// Reachable digests the store does not hold (sparse content).
    pub missing: Vec<Digest>,
    /// Things worth knowing about the result.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Serialize)]
struct LayoutOut<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: &'a [Descriptor],
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .context(|| format!("fsync of {}", path.display()))
}

fn tmp_sibling(out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .ok_or_else(|| Error::InvalidArgument {
            value: out.display().to_string(),
            expected: "an output path with a file name".into(),
        })?
        .to_string_lossy()
        .into_owned();
    Ok(out.with_file_name(format!(".{name}.ocidb-partial-{}", std::process::id())))
}

/// Refuses absolute paths and `..`; strips a leading `./`.
fn safe_tar_path(p: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::InvalidArgument {
                    value: p.display().to_string(),
                    expected: "relative paths inside the archive (absolute paths are refused)"
                        .into(),
                })
            }
            Component::ParentDir => {
                return Err(Error::InvalidArgument {
                    value: p.display().to_string(),
                    expected: "paths without `..` (path traversal is refused)".into(),
                })
            }
        }
    }
    Ok(out)
}

/// Whether a relative path climbs out of its root.
fn escapes(p: &Path) -> bool {
    let mut depth: i64 = 0;
    for c in p.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::RootDir | Component::Prefix(_) => return true,
            Component::CurDir => {}
        }
    }
    false
}

/// fsync a directory so that the files created in it are durable.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .context(|| format!("fsync of directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_paths() {
        assert_eq!(
            safe_tar_path(Path::new("./blobs/sha256/ab")).expect("ok"),
            PathBuf::from("blobs/sha256/ab")
        );
        assert!(safe_tar_path(Path::new("/etc/passwd")).is_err());
        assert!(safe_tar_path(Path::new("blobs/../../x")).is_err());
        assert!(escapes(Path::new("blobs/../../x")));
        assert!(!escapes(Path::new("blobs/sha256/../sha256/x")));
    }

    #[test]
    fn ref_names() {
        assert_eq!(tag_of_ref_name("v1").as_deref(), Some("v1"));
        assert_eq!(tag_of_ref_name("example.com/app:v1").as_deref(), Some("v1"));
        assert_eq!(tag_of_ref_name("a/b"), None);
    }
}
