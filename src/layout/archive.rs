//! Import from an oci-archive tar, streamed: no entry is extracted to disk.

use std::collections::HashSet;
use std::fs;
use std::io::{self};
use std::path::{Component, Path, PathBuf};

use super::*;
use crate::digest::Digest;
use crate::error::{Error, IoContext as _, Result};
use crate::store::{PutOptions, Store};

impl Store {
    /// Streams an oci-archive: blobs go straight into the store (verified
    /// against their file names) under the lease; index.json is returned.
    /// Nothing is ever written outside the store.
    pub(super) fn stream_tar(
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
        let mut small = SmallBlobs::default();
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
            let shown = raw_path.display().to_string();
            if !is_content(&entry, &rel, &shown)? {
                continue;
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
                    let opts = PutOptions {
                        digest: Some(d),
                        size: Some(size),
                        lease: Some(lease),
                        no_sync: true,
                        ..PutOptions::default()
                    };
                    if size <= self.opts.inline_threshold as u64 {
                        // Small blobs (manifests, configs) go in batches: one
                        // writer transaction per batch instead of one each,
                        // which made a tar import five times slower than the
                        // same layout's directory.
                        let bytes = read_limited(&mut entry, size, &shown)?;
                        small.add(self, bytes, opts, created, carried)?;
                    } else {
                        let put = self.put(&mut entry, &opts)?;
                        if put.created {
                            created.push(put.digest);
                        }
                        carried.insert(put.digest);
                    }
                }
                // Anything else in the archive is not part of the layout.
                _ => {}
            }
        }
        small.flush(self, created, carried)?;
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
}

/// Small blobs read from the tar and waiting for their batch: a batch is
/// [`MANIFEST_BATCH`] blobs or [`BATCH_BYTES`] of them, whichever comes
/// first, so memory stays bounded whatever the archive holds.
#[derive(Default)]
struct SmallBlobs {
    items: Vec<(Vec<u8>, PutOptions)>,
    bytes: u64,
}

impl SmallBlobs {
    fn add(
        &mut self,
        store: &Store,
        bytes: Vec<u8>,
        opts: PutOptions,
        created: &mut Vec<Digest>,
        carried: &mut HashSet<Digest>,
    ) -> Result<()> {
        self.bytes += bytes.len() as u64;
        self.items.push((bytes, opts));
        if self.items.len() >= MANIFEST_BATCH || self.bytes >= BATCH_BYTES {
            self.flush(store, created, carried)?;
        }
        Ok(())
    }

    /// Stores the waiting blobs in one transaction (each verified against
    /// the digest and size its entry names; a mismatch stores none).
    fn flush(
        &mut self,
        store: &Store,
        created: &mut Vec<Digest>,
        carried: &mut HashSet<Digest>,
    ) -> Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let refs: Vec<(&[u8], PutOptions)> = self
            .items
            .iter()
            .map(|(b, o)| (b.as_slice(), o.clone()))
            .collect();
        for put in store.put_blobs(&refs)? {
            if put.created {
                created.push(put.digest);
            }
            carried.insert(put.digest);
        }
        self.items.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// Whether a tar entry is content to read: a regular file. Links must stay
/// inside the tree and add nothing of their own; directories and PAX
/// headers add nothing; any other special entry is refused.
fn is_content<R: io::Read>(entry: &tar::Entry<'_, R>, rel: &Path, shown: &str) -> Result<bool> {
    let kind = entry.header().entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        let target = entry
            .link_name()
            .ok()
            .flatten()
            .map(std::borrow::Cow::into_owned)
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
        return Ok(false);
    }
    if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
        return Ok(false);
    }
    if !kind.is_file() {
        return Err(Error::InvalidArgument {
            value: shown.to_string(),
            expected: "regular files and directories only (device, fifo and other special entries are refused)".into(),
        });
    }
    Ok(true)
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
}
