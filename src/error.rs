//! The one error type of the library. Every variant names the offending value
//! and what was expected, so that the CLI can print it as a single line.

use std::path::PathBuf;

use crate::digest::{Digest, DigestError};

/// Result alias used across ocidb.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in ocidb.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest string does not follow the grammar.
    #[error("invalid digest `{input}`: {reason}")]
    InvalidDigest {
        /// The text as given (truncated if huge).
        input: String,
        /// Which rule it broke.
        reason: String,
    },

    /// No blob with this digest is stored (or visible in the repository).
    #[error("blob {digest} not found{hint}")]
    BlobUnknown {
        /// The digest looked up.
        digest: Digest,
        /// Extra context such as ` in repository a/b`.
        hint: String,
    },

    /// No manifest with this digest is stored in the repository.
    #[error("manifest {digest} not found{hint}")]
    ManifestUnknown {
        /// The digest looked up.
        digest: Digest,
        /// Extra context such as ` in repository a/b`.
        hint: String,
    },

    /// A well-formed digest of an algorithm this build cannot verify.
    #[error(
        "unsupported digest algorithm `{algorithm}` in `{input}`; expected `sha256` or `sha512`"
    )]
    UnsupportedAlgorithm {
        /// The digest as given (truncated if huge).
        input: String,
        /// The algorithm named.
        algorithm: String,
    },

    /// A limit of the store is reached (not a property of one request).
    #[error("{what}: the store's limit is {limit}")]
    LimitExceeded {
        /// What ran out.
        what: String,
        /// The limit.
        limit: u64,
    },

    /// The content hashed to a different digest than the one expected.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest the caller promised.
        expected: Box<Digest>,
        /// What the bytes really hash to.
        actual: Box<Digest>,
    },

    /// The content has a different length than the one expected.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}{more}")]
    SizeMismatch {
        /// The digest or description of the content.
        what: String,
        /// The promised size.
        expected: u64,
        /// The size seen (so far, when `more` says so).
        actual: u64,
        /// " or more" when the stream was cut off early.
        more: &'static str,
    },

    /// A byte range is outside the blob.
    #[error("invalid range {start}-{end} for {digest} of {size} bytes: expected START <= END and START < size")]
    InvalidRange {
        /// First byte asked for.
        start: u64,
        /// Last byte asked for (inclusive).
        end: u64,
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },

    /// An upload chunk does not start where the session stands.
    #[error("upload {id} is at byte {expected}; a chunk starting at {given} is out of order (send from {expected})")]
    UploadOffset {
        /// The session.
        id: String,
        /// Bytes acknowledged so far: where the next chunk must start.
        expected: u64,
        /// Where the chunk started.
        given: u64,
    },

    /// No upload session with this id.
    #[error("upload `{id}` not found; it was finished, cancelled or purged, or never begun")]
    UploadUnknown {
        /// The id as given (truncated if huge).
        id: String,
    },

    /// Another request is appending to or finishing this session.
    #[error("upload {id} is busy with another request; retry when it is done")]
    UploadBusy {
        /// The session.
        id: String,
    },

    /// A repository name breaks the distribution-spec grammar.
    #[error("invalid repository name `{name}`: {reason}")]
    InvalidRepository {
        /// The name as given.
        name: String,
        /// Which rule it broke.
        reason: String,
    },

    /// A tag breaks the tag grammar.
    #[error("invalid tag `{tag}`: {reason}")]
    InvalidTag {
        /// The tag as given.
        tag: String,
        /// Which rule it broke.
        reason: String,
    },

    /// A tag does not exist in a repository.
    #[error("tag `{tag}` not found in repository `{repository}`{hint}")]
    TagUnknown {
        /// The repository.
        repository: String,
        /// The tag asked for.
        tag: String,
        /// Empty from the library (it never lists other names); a tool
        /// whose user may list them can add a suggestion.
        hint: String,
    },

    /// A repository does not exist.
    #[error("repository `{repository}` not found{hint}")]
    RepositoryUnknown {
        /// The name asked for.
        repository: String,
        /// Empty from the library (it never lists other repositories); a
        /// tool whose user may list them can add a suggestion.
        hint: String,
    },

    /// A media type or artifactType breaks RFC 6838.
    #[error("invalid media type `{value}`: {reason}")]
    InvalidMediaType {
        /// The value as given (truncated if huge, control characters escaped).
        value: String,
        /// Which rule it broke.
        reason: String,
    },

    /// The digest is already stored as a manifest of another type: one
    /// digest has one manifest type, forever (CVE-2021-41190).
    #[error("manifest {digest} is stored as `{stored}`; it cannot be put again as `{requested}` (one digest has one manifest type)")]
    ManifestTypeConflict {
        /// The manifest.
        digest: Box<Digest>,
        /// The type it is stored as.
        stored: String,
        /// The type this put asked for.
        requested: String,
    },

    /// A running garbage collection deleted the digest while the request
    /// was in flight: it was unreferenced when the sweep committed. Upload
    /// it again (or hold it under a lease) and retry.
    #[error("{digest} was deleted by a concurrent garbage collection while this request ran; upload it again and retry")]
    Swept {
        /// The digest the request needed.
        digest: Box<Digest>,
    },

    /// A manifest body could not be accepted.
    #[error("invalid manifest {what}: {reason}")]
    InvalidManifest {
        /// Digest or media type of the manifest.
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The declared media type and the body's `mediaType` disagree.
    #[error("media type conflict for {what}: declared `{declared}` but the body says `{body}`; expected them to match")]
    MediaTypeConflict {
        /// The manifest concerned.
        what: String,
        /// What the caller declared.
        declared: String,
        /// What the JSON body says.
        body: String,
    },

    /// A manifest is larger than the limit.
    #[error("manifest of {size} bytes is too large: the limit is {limit} bytes")]
    ManifestTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// A child of a manifest is not a member of the manifest's repository
    /// (see [`crate::store::Children`]).
    #[error("manifest {manifest} references {child} ({media_type}), which repository `{repository}` does not hold; push it there (or mount it) first (MANIFEST_BLOB_UNKNOWN)")]
    ChildUnknown {
        /// The manifest being ingested.
        manifest: Box<Digest>,
        /// The absent child.
        child: Box<Digest>,
        /// The child's declared media type.
        media_type: String,
        /// The repository the manifest was put in.
        repository: String,
    },

    /// Stored data does not match what it should be.
    #[error("corrupt store: {0}")]
    Corrupt(String),

    /// The directory does not hold an ocidb store.
    #[error("{path} is not an ocidb store: {reason}")]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// The store is in an older on-disk format that this build upgrades
    /// but does not read: run `ocidb migrate` (or [`crate::store::Store::migrate`]).
    #[error(
        "store {path} is in on-disk format {found}; this build reads format {expected}: \
         upgrade it with `ocidb --store {path} migrate` (it keeps everything, and a crash \
         leaves the old format intact)"
    )]
    FormatUpgradeRequired {
        /// The store directory.
        path: PathBuf,
        /// The format found.
        found: u8,
        /// The format this build reads.
        expected: u8,
    },

    /// Another process has the store open.
    #[error("store {path} is locked by another process{}; close it first", holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Locked {
        /// The store directory.
        path: PathBuf,
        /// The process holding it, as it recorded itself (`pid 1234:
        /// ocidb serve …`), when known.
        holder: Option<String>,
    },

    /// This process already has the store open: a `Store` is `Send + Sync`,
    /// so share that one (in an `Arc`) instead of opening it again.
    #[error(
        "store {path} is already open in this process; share that Store (it is Send + Sync: wrap it in an Arc) instead of opening it twice"
    )]
    AlreadyOpen {
        /// The store directory.
        path: PathBuf,
    },

    /// A previous write failed in a way that leaves the page cache untrusted.
    #[error("store is poisoned after an earlier failed write ({0}); reopen it to continue")]
    Poisoned(String),

    /// A bug in ocidb: a thread panicked, or an invariant of the code (not
    /// of the stored data) broke.
    #[error("internal error, please report it: {0}")]
    Internal(String),

    /// The store is shutting down.
    #[error("store is closed")]
    Closed,

    /// An argument is outside what is accepted.
    #[error("invalid argument `{value}`: {expected}")]
    InvalidArgument {
        /// The value as given.
        value: String,
        /// What was expected instead.
        expected: String,
    },

    /// A failure inside the embedded database.
    #[error("database error: {0}")]
    Storage(DatabaseError),

    /// The object store holding blob bytes failed a request, after the
    /// client's bounded retries.
    #[error("object store {endpoint}: {op} failed: {detail}")]
    Backend {
        /// The endpoint asked.
        endpoint: String,
        /// The operation and the object it was on.
        op: String,
        /// What the store (or the network) answered.
        detail: String,
    },

    /// The blob backend could not be reached when the store opened: the
    /// store serves metadata and inline blobs, and refuses the rest.
    #[error("blob bytes at {location} are unavailable: {reason}; metadata reads and inline blobs work, but {refused} do not until the store is reopened with the backend reachable")]
    Unavailable {
        /// Where the bytes live.
        location: String,
        /// Why the check at open failed.
        reason: String,
        /// The operations refused.
        refused: String,
    },

    /// The store is a replica of a cluster's log, or a primary that lost
    /// its place: it takes no writes; the primary does.
    #[error("{store} takes no writes: {why}; send writes to the primary")]
    NotPrimary {
        /// The store directory.
        store: String,
        /// Why (a replica following the log, or a primary deposed).
        why: String,
    },

    /// A write would take a repository or namespace past its quota;
    /// nothing of it was stored.
    #[error("quota of `{scope}` exceeded: it holds {held} bytes, the limit is {limit}, and {digest} ({size} bytes) in `{repository}` would take it to {would_be}")]
    OverQuota {
        /// The repository, or the namespace prefix (ending in `/`).
        scope: String,
        /// Its limit in bytes.
        limit: u64,
        /// What it holds now.
        held: u64,
        /// What the write would make it.
        would_be: u64,
        /// The repository written to.
        repository: String,
        /// The content refused.
        digest: Box<crate::digest::Digest>,
        /// Its size.
        size: u64,
    },

    /// An operating-system I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done and to which path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What kind of failure an [`Error`] is, for a caller that maps errors to
/// protocol codes (an HTTP front to OCI error codes) without matching on
/// messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such blob (`BLOB_UNKNOWN`).
    BlobUnknown,
    /// No such manifest (`MANIFEST_UNKNOWN`).
    ManifestUnknown,
    /// No such repository (`NAME_UNKNOWN`).
    RepositoryUnknown,
    /// No such tag (`MANIFEST_UNKNOWN`).
    TagUnknown,
    /// A digest algorithm or feature this build does not support
    /// (`UNSUPPORTED`).
    Unsupported,
    /// A manifest names a child that is not stored (`MANIFEST_BLOB_UNKNOWN`).
    ChildUnknown,
    /// A malformed digest, or content that hashes to another one
    /// (`DIGEST_INVALID`).
    InvalidDigest,
    /// Content of another length than promised (`SIZE_INVALID`).
    SizeMismatch,
    /// A manifest that cannot be accepted (`MANIFEST_INVALID`).
    InvalidManifest,
    /// A repository name breaks its grammar (`NAME_INVALID`).
    InvalidName,
    /// A tag breaks its grammar (`TAG_INVALID`).
    InvalidTag,
    /// A media type breaks its grammar (`MANIFEST_INVALID`).
    InvalidMediaType,
    /// Too large (`SIZE_INVALID` / 413).
    TooLarge,
    /// The request contradicts what is stored (409).
    Conflict,
    /// A byte range outside the blob (416).
    RangeNotSatisfiable,
    /// An upload chunk out of order (416, with the session's range).
    UploadOffset,
    /// No such upload session (`BLOB_UPLOAD_UNKNOWN`).
    UploadUnknown,
    /// A concurrent GC removed what the request needed: upload and retry.
    Retry,
    /// The store's on-disk format is older than this build reads; run
    /// `ocidb migrate`.
    UpgradeRequired,
    /// Some other argument is out of range.
    InvalidArgument,
    /// Another process holds the store.
    Locked,
    /// Stored data is not what it should be.
    Corrupt,
    /// The disk, a quota or a limit of the store is exhausted (507).
    QuotaExceeded,
    /// A repository's or namespace's quota refuses the write (403).
    OverQuota,
    /// A bug in ocidb (500).
    Internal,
    /// An operating-system or database I/O failure.
    Io,
    /// An earlier failed write stopped the store until it is reopened.
    Poisoned,
    /// The store is closed.
    Closed,
    /// What the request needs is unreachable (the blob backend) (503).
    Unavailable,
}

impl ErrorKind {
    /// The distribution spec's error code for this kind of failure, as a
    /// registry answers it in `{"errors":[{"code":…}]}`. Kinds the spec has
    /// no code for (a bug, a closed store, an I/O failure) answer `UNKNOWN`.
    pub fn oci_code(self) -> &'static str {
        match self {
            ErrorKind::BlobUnknown | ErrorKind::RangeNotSatisfiable => "BLOB_UNKNOWN",
            ErrorKind::ManifestUnknown | ErrorKind::TagUnknown => "MANIFEST_UNKNOWN",
            ErrorKind::RepositoryUnknown => "NAME_UNKNOWN",
            ErrorKind::ChildUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorKind::InvalidDigest => "DIGEST_INVALID",
            ErrorKind::SizeMismatch | ErrorKind::TooLarge => "SIZE_INVALID",
            ErrorKind::InvalidManifest | ErrorKind::InvalidMediaType => "MANIFEST_INVALID",
            ErrorKind::InvalidName => "NAME_INVALID",
            ErrorKind::InvalidTag => "TAG_INVALID",
            ErrorKind::Unsupported | ErrorKind::InvalidArgument => "UNSUPPORTED",
            ErrorKind::Conflict | ErrorKind::QuotaExceeded | ErrorKind::OverQuota => "DENIED",
            ErrorKind::UploadOffset => "BLOB_UPLOAD_INVALID",
            ErrorKind::UploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorKind::Retry | ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::UpgradeRequired
            | ErrorKind::Locked
            | ErrorKind::Corrupt
            | ErrorKind::Internal
            | ErrorKind::Io
            | ErrorKind::Poisoned
            | ErrorKind::Closed => "UNKNOWN",
        }
    }

    /// The HTTP status a registry answers for this kind of failure.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BlobUnknown
            | ErrorKind::ManifestUnknown
            | ErrorKind::TagUnknown
            | ErrorKind::RepositoryUnknown
            | ErrorKind::UploadUnknown => 404,
            ErrorKind::ChildUnknown
            | ErrorKind::InvalidDigest
            | ErrorKind::SizeMismatch
            | ErrorKind::InvalidManifest
            | ErrorKind::InvalidMediaType
            | ErrorKind::InvalidName
            | ErrorKind::InvalidTag
            | ErrorKind::Unsupported
            | ErrorKind::InvalidArgument => 400,
            ErrorKind::TooLarge => 413,
            ErrorKind::Conflict => 409,
            ErrorKind::RangeNotSatisfiable | ErrorKind::UploadOffset => 416,
            // A GC swept what the push needed: the client uploads again.
            ErrorKind::Retry | ErrorKind::Unavailable => 503,
            ErrorKind::QuotaExceeded => 507,
            ErrorKind::OverQuota => 403,
            ErrorKind::UpgradeRequired
            | ErrorKind::Locked
            | ErrorKind::Corrupt
            | ErrorKind::Internal
            | ErrorKind::Io
            | ErrorKind::Poisoned
            | ErrorKind::Closed => 500,
        }
    }
}

impl From<DigestError> for Error {
    fn from(e: DigestError) -> Error {
        match e {
            DigestError::Invalid { input, reason } => Error::InvalidDigest { input, reason },
            DigestError::UnsupportedAlgorithm { input, algorithm } => {
                Error::UnsupportedAlgorithm { input, algorithm }
            }
            DigestError::Corrupt(why) => Error::Corrupt(why),
        }
    }
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidDigest { .. } | Error::DigestMismatch { .. } => ErrorKind::InvalidDigest,
            Error::BlobUnknown { .. } => ErrorKind::BlobUnknown,
            Error::ManifestUnknown { .. } => ErrorKind::ManifestUnknown,
            Error::UnsupportedAlgorithm { .. } => ErrorKind::Unsupported,
            Error::LimitExceeded { .. } => ErrorKind::QuotaExceeded,
            Error::OverQuota { .. } => ErrorKind::OverQuota,
            Error::Internal(_) => ErrorKind::Internal,
            Error::SizeMismatch { .. } => ErrorKind::SizeMismatch,
            Error::InvalidRange { .. } => ErrorKind::RangeNotSatisfiable,
            Error::UploadOffset { .. } => ErrorKind::UploadOffset,
            Error::UploadUnknown { .. } => ErrorKind::UploadUnknown,
            Error::UploadBusy { .. } => ErrorKind::Conflict,
            Error::InvalidRepository { .. } => ErrorKind::InvalidName,
            Error::InvalidTag { .. } => ErrorKind::InvalidTag,
            Error::InvalidMediaType { .. } => ErrorKind::InvalidMediaType,
            Error::TagUnknown { .. } => ErrorKind::TagUnknown,
            Error::RepositoryUnknown { .. } => ErrorKind::RepositoryUnknown,
            Error::InvalidManifest { .. } | Error::MediaTypeConflict { .. } => {
                ErrorKind::InvalidManifest
            }
            Error::ManifestTypeConflict { .. } => ErrorKind::Conflict,
            Error::Swept { .. } => ErrorKind::Retry,
            Error::ManifestTooLarge { .. } => ErrorKind::TooLarge,
            Error::ChildUnknown { .. } => ErrorKind::ChildUnknown,
            Error::Corrupt(_) | Error::NotAStore { .. } => ErrorKind::Corrupt,
            Error::Locked { .. } | Error::AlreadyOpen { .. } => ErrorKind::Locked,
            Error::FormatUpgradeRequired { .. } => ErrorKind::UpgradeRequired,
            Error::Poisoned(_) => ErrorKind::Poisoned,
            Error::Closed => ErrorKind::Closed,
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::Io { source, .. } if is_out_of_space(source) => ErrorKind::QuotaExceeded,
            Error::Storage(e) if e.is_out_of_space() => ErrorKind::QuotaExceeded,
            Error::Storage(_) | Error::Io { .. } => ErrorKind::Io,
            Error::Backend { .. } | Error::Unavailable { .. } | Error::NotPrimary { .. } => {
                ErrorKind::Unavailable
            }
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this is a failure of the storage itself (as opposed to bad
    /// input). Such failures abort a whole group commit.
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            Error::Storage(_)
                | Error::Io { .. }
                | Error::Backend { .. }
                | Error::Poisoned(_)
                | Error::Internal(_)
                | Error::Closed
        )
    }

    /// An internal error for a poisoned lock: another thread panicked while
    /// holding it.
    pub(crate) fn lock(what: &str) -> Error {
        Error::Internal(format!("a thread panicked while holding the {what}"))
    }
}

/// Whether an I/O error means "no space": the disk, or a quota, is full.
fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG)
    ) || e.kind() == std::io::ErrorKind::StorageFull
}

/// A failure of the embedded database, opaque so that the database crate
/// is not part of the API; its message and source chain are kept.
#[derive(Debug)]
pub struct DatabaseError(Box<redb::Error>);

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl DatabaseError {
    fn is_out_of_space(&self) -> bool {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&*self.0);
        while let Some(e) = src {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return is_out_of_space(io);
            }
            src = e.source();
        }
        false
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::Storage(DatabaseError(Box::new(e.into())))
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError,
    redb::SetDurabilityError
);

/// Attaches what was being done to an `std::io::Result`, making an
/// [`Error::Io`].
pub trait IoContext<T> {
    /// Maps an I/O error to [`Error::Io`] with `what` as its context.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_without_reading_messages() {
        let unsupported = Error::from(
            crate::digest::Digest::parse(&format!("md5:{}", "0".repeat(32)))
                .expect_err("md5 is not supported"),
        );
        assert_eq!(unsupported.kind(), ErrorKind::Unsupported, "{unsupported}");
        assert_eq!(unsupported.kind().oci_code(), "UNSUPPORTED");
        assert_eq!(ErrorKind::ChildUnknown.oci_code(), "MANIFEST_BLOB_UNKNOWN");
        assert_eq!(ErrorKind::ChildUnknown.http_status(), 400);
        assert_eq!(ErrorKind::BlobUnknown.http_status(), 404);
        assert_eq!(ErrorKind::InvalidTag.oci_code(), "TAG_INVALID");
        assert_eq!(ErrorKind::Retry.http_status(), 503);
        let full = Error::io("writing", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(full.kind(), ErrorKind::QuotaExceeded);
        let other = Error::io("writing", std::io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(other.kind(), ErrorKind::Io);
        assert_eq!(Error::lock("x").kind(), ErrorKind::Internal);
        assert!(Error::lock("x").is_storage_failure());
    }
}
