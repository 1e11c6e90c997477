//! A window of a stored blob file mapped read-only into memory, for a pull
//! that hands the bytes to the kernel (a socket write) without copying them
//! through a buffer first.
//!
//! Why a mapping and not `sendfile(2)`: on the loopback and virtual NICs
//! measured (docs/benchmarks.md, "Blob pulls"), `sendfile` and `splice`
//! move a file at about half the rate of a `write` from mapped pages, and a
//! `read` into a buffer adds a copy that costs as much again.
//!
//! The hazard of a file mapping is a file that shrinks under it: a *user
//! space* read of a page past the new end raises SIGBUS. The engine never
//! shrinks or rewrites a committed blob file (they are 0444 and replaced
//! only by rename), and a mapping is refused when the file is already
//! shorter than the bytes asked for. What is left is an outside actor
//! truncating a file during a pull; a kernel copy (`write`/`writev` from the
//! mapping) then fails with EFAULT instead, which is why the server uses
//! these only where the bytes go straight to a plain TCP socket.
//!
//! The mapping is one of the engine's two places of `unsafe` code (with
//! `gc::lower_thread_priority`): `mmap` and `munmap` have no safe wrapper in
//! the standard library.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd as _;
use std::ptr::NonNull;

/// Bytes of a blob file mapped read-only (`MAP_SHARED`, populated),
/// unmapped on drop. A committed blob file never changes, so the bytes are
/// stable; but a file truncated by another process makes a user-space read
/// of the lost pages raise SIGBUS. Hand these to the kernel (a socket
/// write), as `ocidb serve` does, and read blobs through
/// [`BlobReader`](super::BlobReader)'s `Read` otherwise.
pub struct MappedBytes {
    /// Start of the mapping (page-aligned); `None` for an empty window,
    /// which maps nothing.
    base: Option<NonNull<libc::c_void>>,
    /// Length of the mapping.
    map_len: usize,
    /// Where the asked-for bytes start within the mapping.
    skip: usize,
    /// How many bytes were asked for.
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; the
// pointer is never written through, so sharing or moving it across threads
// is as safe as sharing a `&[u8]`.
unsafe impl Send for MappedBytes {}
// SAFETY: as above.
unsafe impl Sync for MappedBytes {}

impl MappedBytes {
    /// Maps `len` bytes of `file` from `offset`. Refused (an error naming
    /// both lengths) when the file holds fewer than `offset + len` bytes.
    pub(crate) fn map(file: &File, offset: u64, len: usize) -> io::Result<MappedBytes> {
        let have = file.metadata()?.len();
        let want = offset.checked_add(len as u64).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a window of {len} bytes at {offset} passes the largest offset"),
            )
        })?;
        if want > have {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the blob file holds {have} bytes, fewer than the {want} it must serve"),
            ));
        }
        if len == 0 {
            return Ok(MappedBytes {
                base: None,
                map_len: 0,
                skip: 0,
                len: 0,
            });
        }
        let page = page_size();
        let skip = usize::try_from(offset % page as u64).unwrap_or(0);
        let aligned = offset - skip as u64;
        let map_len = skip + len;
        let aligned = libc::off_t::try_from(aligned).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("offset {offset} does not fit the platform's file offsets"),
            )
        })?;
        // SAFETY: a fresh read-only mapping at an address the kernel picks;
        // nothing else in the process refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ,
                libc::MAP_SHARED | POPULATE,
                file.as_raw_fd(),
                aligned,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedBytes {
            base: NonNull::new(p),
            map_len,
            skip,
            len,
        })
    }

    /// The bytes asked for.
    pub fn as_slice(&self) -> &[u8] {
        match self.base {
            // SAFETY: the mapping covers `skip + len` readable bytes and
            // lives as long as `self`.
            Some(p) => unsafe {
                std::slice::from_raw_parts(p.as_ptr().cast::<u8>().add(self.skip), self.len)
            },
            None => &[],
        }
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for MappedBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for MappedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedBytes")
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for MappedBytes {
    fn drop(&mut self) {
        if let Some(p) = self.base {
            // SAFETY: `p` and `map_len` are the mapping made in `map`, unmapped
            // once, here.
            unsafe {
                libc::munmap(p.as_ptr(), self.map_len);
            }
        }
    }
}

/// Fault the pages in at map time: one call instead of a page fault per
/// 4 KiB as the socket write walks the window.
#[cfg(any(target_os = "linux", target_os = "android"))]
const POPULATE: libc::c_int = libc::MAP_POPULATE;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const POPULATE: libc::c_int = 0;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn file_of(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("b");
        let mut f = File::create(&path).expect("create");
        f.write_all(bytes).expect("write");
        (dir, File::open(&path).expect("open"))
    }

    #[test]
    fn windows_at_unaligned_offsets_hold_the_files_bytes() {
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let (_d, f) = file_of(&bytes);
        for (off, len) in [(0, 20_000), (1, 5000), (4095, 2), (4096, 4096), (19_999, 1)] {
            let m = MappedBytes::map(&f, off as u64, len).expect("map");
            assert_eq!(m.as_slice(), &bytes[off..off + len], "window {off}+{len}");
            assert_eq!(m.len(), len);
        }
        let empty = MappedBytes::map(&f, 20_000, 0).expect("an empty window at the end");
        assert!(empty.is_empty());
    }

    #[test]
    fn a_file_shorter_than_the_window_is_refused_with_both_lengths() {
        let (_d, f) = file_of(&[7u8; 100]);
        let e = MappedBytes::map(&f, 50, 51).expect_err("past the end");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            e.to_string().contains("100") && e.to_string().contains("101"),
            "{e}"
        );
        let e = MappedBytes::map(&f, u64::MAX, 2).expect_err("overflow");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
