//! Blob bytes as local files: `blobs/<alg>/<hex>`, staged in `tmp/`.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::{BlobBackend, BlobRead, BlobWrite, Listed, MappedBytes, Staged, UploadWrite};
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext as _, Result};
use crate::sync_points::{self as faults, Injector, SyncTarget};

/// The directory staged blobs are written to, below the root.
const STAGING: &str = "tmp";
/// The directory of resumable upload sessions: not emptied at open.
const UPLOADS: &str = "uploads";
/// Staged names start with this; anything else in `tmp/` is not ours.
const STAGED_PREFIX: &str = "put-";
/// The crash-intent file of builds before the intent table (format 1
/// stores written by ocidb 0.1 before it moved into redb).
const LEGACY_INTENT: &str = "intent";

/// Blob files below a directory, made read-only once written: nothing, an
/// export's hard link included, may change the store's bytes in place.
#[derive(Debug)]
pub struct LocalFiles {
    root: PathBuf,
    seq: AtomicU64,
    faults: Option<Arc<dyn Injector>>,
    /// Set when a staged file was finished with `durable` and its directory
    /// entry is not yet synced: `sync_staging` has nothing to do otherwise.
    staged_unsynced: Arc<AtomicBool>,
}

impl LocalFiles {
    /// Blob files below `root` (made if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalFiles> {
        LocalFiles::with_faults(root, None)
    }

    /// Like [`LocalFiles::new`], with injected fsync failures (tests).
    pub(crate) fn with_faults(
        root: impl Into<PathBuf>,
        faults: Option<Arc<dyn Injector>>,
    ) -> Result<LocalFiles> {
        let root = root.into();
        for sub in ["blobs/sha256", "blobs/sha512", STAGING, UPLOADS] {
            let p = root.join(sub);
            fs::create_dir_all(&p).context(|| format!("creating directory {}", p.display()))?;
        }
        Ok(LocalFiles {
            root,
            seq: AtomicU64::new(0),
            faults,
            staged_unsynced: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The path of a committed blob. Built only from a parsed digest.
    fn path(&self, d: &Digest) -> PathBuf {
        let mut buf = [0u8; 128];
        self.root
            .join("blobs")
            .join(d.algorithm().name())
            .join(d.encode_hex(&mut buf))
    }

    /// The path of a staged blob, or an error when the name is not one this
    /// backend gives (a corrupt intent must not name a path outside `tmp/`).
    fn staged_path(&self, s: &Staged) -> Result<PathBuf> {
        let name = s.name();
        let ok = name.strip_prefix(STAGED_PREFIX).is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        });
        if !ok {
            return Err(Error::Corrupt(format!(
                "staged blob name `{}` is not one this backend gives (expected `{STAGED_PREFIX}<digits and dashes>`)",
                crate::text::quote_untrusted(name)
            )));
        }
        Ok(self.root.join(STAGING).join(name))
    }

    /// The path of an upload session's bytes; the id must be one the
    /// engine gives (hex digits and dashes, at most 64).
    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        {
            return Err(Error::InvalidArgument {
                value: crate::text::quote_untrusted(id),
                expected: "an upload id: hex digits and dashes, at most 64".into(),
            });
        }
        Ok(self.root.join(UPLOADS).join(id))
    }

    fn next_staged(&self) -> (String, PathBuf) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{STAGED_PREFIX}{}-{n}", std::process::id());
        let path = self.root.join(STAGING).join(&name);
        (name, path)
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        faults::sync_path(self.faults.as_deref(), SyncTarget::Directory, dir)
            .context(|| format!("fsync of directory {}", dir.display()))
    }

    /// Digests listed by the crash-intent file of an older build, which
    /// the engine settles like intents from its table. The file is removed
    /// by [`LocalFiles::clear_legacy_intent`] once they are settled.
    pub(crate) fn legacy_intent(&self) -> Vec<Digest> {
        let path = self.root.join(STAGING).join(LEGACY_INTENT);
        let Ok(text) = fs::read_to_string(path) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|l| Digest::parse(l.trim()).ok())
            .collect()
    }

    pub(crate) fn clear_legacy_intent(&self) {
        let _ = fs::remove_file(self.root.join(STAGING).join(LEGACY_INTENT));
    }
}

/// Blob bytes are read-only (0444) once written: nothing, an export's hard
/// link included, may change them in place.
fn make_read_only(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(0o444))
        .context(|| format!("making {} read-only", path.display()))
}

fn open_file(path: &Path) -> Result<Option<Box<dyn BlobRead>>> {
    match fs::File::open(path) {
        Ok(f) => Ok(Some(Box::new(FileRead(f)))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("opening {}", path.display()), e)),
    }
}

struct FileRead(fs::File);

impl BlobRead for FileRead {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn map(&self, offset: u64, len: usize) -> Option<io::Result<MappedBytes>> {
        Some(MappedBytes::map(&self.0, offset, len))
    }
}

/// A staged file being written; removed on drop unless finished. It owns
/// what it needs (`BlobWrite` is `'static`).
struct OwnedStagedFile {
    faults: Option<Arc<dyn Injector>>,
    path: PathBuf,
    name: String,
    file: Option<fs::File>,
    /// The backend's "a durable staged name is not yet synced" flag.
    unsynced_name: Arc<AtomicBool>,
}

impl io::Write for OwnedStagedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("staged file already finished")),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(buf),
            None => Err(io::Error::other("staged file already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for OwnedStagedFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl BlobWrite for OwnedStagedFile {
    fn finish(mut self: Box<Self>, durable: bool) -> Result<Staged> {
        let Some(file) = self.file.as_ref() else {
            return Err(Error::io(
                "finishing a staged blob",
                io::Error::other("already finished"),
            ));
        };
        make_read_only(&self.path)?;
        if durable {
            faults::sync_file(self.faults.as_deref(), SyncTarget::BlobFile, file)
                .context(|| format!("fsync of staged file {}", self.path.display()))?;
            self.unsynced_name.store(true, Ordering::Release);
        }
        self.file = None;
        Ok(Staged::new(std::mem::take(&mut self.name)))
    }
}

impl BlobBackend for LocalFiles {
    fn check(&self) -> Result<()> {
        // A store whose disk was unmounted under it, or whose directory
        // was removed, is not ready.
        fs::metadata(self.root.join("blobs"))
            .map(|_| ())
            .context(|| format!("reading {}", self.root.join("blobs").display()))
    }

    fn stage(&self) -> Result<Box<dyn BlobWrite>> {
        let (name, path) = self.next_staged();
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .context(|| format!("creating staged file {}", path.display()))?;
        Ok(Box::new(OwnedStagedFile {
            faults: self.faults.clone(),
            path,
            name,
            file: Some(file),
            unsynced_name: Arc::clone(&self.staged_unsynced),
        }))
    }

    fn sync_staging(&self, unsynced: &[Staged]) -> Result<()> {
        for s in unsynced {
            let path = self.staged_path(s)?;
            match fs::File::open(&path) {
                Ok(file) => faults::sync_file(self.faults.as_deref(), SyncTarget::BlobFile, &file)
                    .context(|| format!("fsync of staged file {}", path.display()))?,
                // Discarded since: nothing to make durable.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
            }
        }
        if (self.staged_unsynced.swap(false, Ordering::AcqRel) || !unsynced.is_empty())
            && let Err(e) = self.sync_dir(&self.root.join(STAGING))
        {
            self.staged_unsynced.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(())
    }

    fn commit(&self, staged: &Staged, digest: &Digest) -> Result<()> {
        let from = self.staged_path(staged)?;
        let to = self.path(digest);
        match fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            // Committed before (a crash after the rename): nothing to do.
            Err(e) if e.kind() == io::ErrorKind::NotFound && to.exists() => Ok(()),
            Err(e) => Err(Error::io(
                format!(
                    "installing blob file {} from {}",
                    to.display(),
                    from.display()
                ),
                e,
            )),
        }
    }

    fn sync(&self, names: &[Digest]) -> Result<()> {
        let mut algs: Vec<Algorithm> = names.iter().map(crate::digest::Digest::algorithm).collect();
        algs.sort_by_key(|a| a.name());
        algs.dedup();
        for alg in algs {
            self.sync_dir(&self.root.join("blobs").join(alg.name()))?;
        }
        Ok(())
    }

    fn discard(&self, staged: &Staged) -> Result<()> {
        let path = self.staged_path(staged)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }

    fn open(&self, digest: &Digest) -> Result<Option<Box<dyn BlobRead>>> {
        open_file(&self.path(digest))
    }

    fn open_staged(&self, staged: &Staged) -> Result<Option<Box<dyn BlobRead>>> {
        open_file(&self.staged_path(staged)?)
    }

    fn len(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("stat of {}", path.display()), e)),
        }
    }

    fn remove(&self, digest: &Digest) -> Result<bool> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }

    fn list(&self, each: &mut dyn FnMut(Listed) -> Result<()>) -> Result<()> {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(alg.name());
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
            };
            for e in entries {
                let e = e.context(|| format!("listing {}", dir.display()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                match Digest::parse(&format!("{}:{name}", alg.name())) {
                    Ok(d) => each(Listed::Blob(d))?,
                    Err(_) => each(Listed::Stray(e.path().display().to_string()))?,
                }
            }
        }
        Ok(())
    }

    fn list_staged(&self) -> Result<Vec<Staged>> {
        let dir = self.root.join(STAGING);
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).context(|| format!("listing {}", dir.display()))? {
            let e = e.context(|| format!("listing {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGED_PREFIX) {
                out.push(Staged::new(name));
            } else if name != LEGACY_INTENT {
                // Not ours to keep: an older build's temp directory or a
                // stray file; `tmp/` holds nothing else that must survive.
                let p = e.path();
                let _ = if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
            }
        }
        Ok(out)
    }

    fn upload_create(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .context(|| format!("creating upload {}", path.display()))?;
        faults::sync_file(self.faults.as_deref(), SyncTarget::BlobFile, &f)
            .context(|| format!("fsync of {}", path.display()))?;
        self.sync_dir(&self.root.join(UPLOADS))
    }

    fn upload_append(&self, id: &str, offset: u64) -> Result<Box<dyn UploadWrite>> {
        let path = self.upload_path(id)?;
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .context(|| format!("opening upload {}", path.display()))?;
        let len = file
            .metadata()
            .context(|| format!("stat of {}", path.display()))?
            .len();
        if len < offset {
            return Err(Error::Corrupt(format!(
                "upload {id} holds {len} bytes, fewer than the {offset} acknowledged"
            )));
        }
        if len > offset {
            file.set_len(offset)
                .context(|| format!("truncating {}", path.display()))?;
        }
        let mut file = file;
        io::Seek::seek(&mut file, io::SeekFrom::Start(offset))
            .context(|| format!("seeking in {}", path.display()))?;
        Ok(Box::new(UploadFile {
            file: io::BufWriter::with_capacity(1 << 20, file),
            path,
            faults: self.faults.clone(),
        }))
    }

    fn upload_open(&self, id: &str) -> Result<Option<Box<dyn BlobRead>>> {
        open_file(&self.upload_path(id)?)
    }

    fn upload_finish(&self, id: &str) -> Result<Staged> {
        let from = self.upload_path(id)?;
        let (name, to) = self.next_staged();
        fs::rename(&from, &to)
            .context(|| format!("moving upload {} to {}", from.display(), to.display()))?;
        make_read_only(&to)?;
        // The new name is made durable before the commit that records it.
        self.staged_unsynced.store(true, Ordering::Release);
        Ok(Staged::new(name))
    }

    fn upload_remove(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }

    fn upload_list(&self) -> Result<Vec<String>> {
        let dir = self.root.join(UPLOADS);
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).context(|| format!("listing {}", dir.display()))? {
            let e = e.context(|| format!("listing {}", dir.display()))?;
            out.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn hard_link(&self, digest: &Digest, dst: &Path) -> Result<bool> {
        Ok(fs::hard_link(self.path(digest), dst).is_ok())
    }
}

/// Appends to an upload session's file.
struct UploadFile {
    file: io::BufWriter<fs::File>,
    path: PathBuf,
    faults: Option<Arc<dyn Injector>>,
}

impl io::Write for UploadFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl UploadWrite for UploadFile {
    fn commit(self: Box<Self>) -> Result<()> {
        let path = self.path.clone();
        let faults = self.faults.clone();
        let file = self
            .file
            .into_inner()
            .map_err(|e| Error::io(format!("writing {}", path.display()), e.into_error()))?;
        faults::sync_file(faults.as_deref(), SyncTarget::BlobFile, &file)
            .context(|| format!("fsync of {}", path.display()))
    }
}
