//! Export of a repository (or part of one) as an OCI image layout, to a
//! directory or an oci-archive tar.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, IoContext as _, Result};
use crate::oci::manifest::{self, Descriptor, EdgeKind, REF_NAME};
use crate::oci::names::Reference;
use crate::store::Store;

/// Options for [`Store::export_layout`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
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

/// fsync a directory so that the files created in it are durable.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .context(|| format!("fsync of directory {}", dir.display()))
}

impl ExportOptions {
    /// Sets [`ExportOptions::with_referrers`].
    #[must_use]
    pub fn with_referrers(mut self, with_referrers: bool) -> Self {
        self.with_referrers = with_referrers;
        self
    }

    /// Sets [`ExportOptions::oci_index_types`].
    #[must_use]
    pub fn oci_index_types(mut self, oci_index_types: bool) -> Self {
        self.oci_index_types = oci_index_types;
        self
    }

    /// Sets [`ExportOptions::hardlink`].
    #[must_use]
    pub fn hardlink(mut self, hardlink: bool) -> Self {
        self.hardlink = hardlink;
        self
    }
}

impl Store {
    /// Exports images (and optionally their referrers) as an OCI image
    /// layout directory, or a `.tar` of one when `out` ends in `.tar`.
    pub fn export_layout(
        &self,
        refs: &[(String, Reference)],
        out: &Path,
        opts: &ExportOptions,
    ) -> Result<ExportReport> {
        self.refuse_inside_store(out)?;
        refuse_nonempty(out)?;
        let mut entries: Vec<Descriptor> = Vec::new();
        let mut blobs: BTreeMap<Digest, ()> = BTreeMap::new();
        let mut report = ExportReport::default();
        for (repo, r) in refs {
            let root = self.resolve(repo, r)?;
            let desc = self.index_entry(root, r, opts, &mut report)?;
            // The same reference twice makes one entry.
            if entries
                .iter()
                .any(|e| e.digest == desc.digest && e.annotations == desc.annotations)
            {
                continue;
            }
            entries.push(desc);
            self.collect_closure(
                repo,
                root,
                opts.with_referrers,
                &mut entries,
                &mut blobs,
                &mut report,
            )?;
        }
        report.blobs = blobs.len() as u64;
        report.manifests = entries.len() as u64;
        let index = serde_json::to_vec(&LayoutOut {
            schema_version: 2,
            media_type: manifest::OCI_INDEX,
            manifests: &entries,
        })
        .map_err(|e| Error::io("formatting index.json", e.into()))?;
        self.write_layout(out, &index, &blobs, opts, &mut report)?;
        report.missing.sort();
        report.missing.dedup();
        Ok(report)
    }

    /// The `index.json` entry of one exported reference: the manifest's
    /// media type (Docker types relabelled with `--oci-index-types`), and
    /// the tag as `ref.name`.
    fn index_entry(
        &self,
        root: Digest,
        r: &Reference,
        opts: &ExportOptions,
        report: &mut ExportReport,
    ) -> Result<Descriptor> {
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
        Ok(desc)
    }

    /// Everything `root` reaches (and, with referrers, the referrers of
    /// each node, which become index entries too): the blobs to copy, and
    /// what is missing from the store.
    fn collect_closure(
        &self,
        repo: &str,
        root: Digest,
        with_referrers: bool,
        entries: &mut Vec<Descriptor>,
        blobs: &mut BTreeMap<Digest, ()>,
        report: &mut ExportReport,
    ) -> Result<()> {
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
        Ok(())
    }

    /// Writes the layout (a directory, or a tar when `out` ends in `.tar`)
    /// into a temporary sibling and renames it into place, so that a failed
    /// export leaves nothing behind.
    fn write_layout(
        &self,
        out: &Path,
        index: &[u8],
        blobs: &BTreeMap<Digest, ()>,
        opts: &ExportOptions,
        report: &mut ExportReport,
    ) -> Result<()> {
        let is_tar = out.extension().is_some_and(|e| e == "tar");
        let tmp = tmp_sibling(out)?;
        let written = if is_tar {
            self.write_tar(&tmp, index, blobs.keys())
        } else {
            self.write_dir(&tmp, index, blobs.keys(), opts.hardlink, report)
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
        Ok(())
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
            if let Some(parent) = dst.parent()
                && dirs.insert(parent.to_path_buf())
            {
                fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
            }
            let linked = hardlink
                && self.stat(d)?.placement == crate::schema::record::Placement::File
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

/// An export writes only where nothing is yet: a missing path, or an empty
/// directory.
fn refuse_nonempty(out: &Path) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    let empty_dir = out.is_dir()
        && fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
    if empty_dir {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        value: out.display().to_string(),
        expected: "a path that does not exist yet (or an empty directory)".into(),
    })
}
