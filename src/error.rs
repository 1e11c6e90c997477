//! The one error type of the library. Every variant names the offending value
//! and what was expected, so that the CLI can print it as a single line.

use std::path::PathBuf;

use crate::digest::Digest;

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

    /// No blob or manifest with this digest is stored (or visible in the repository).
    #[error("{what} {digest} not found{hint}")]
    NotFound {
        /// "blob", "manifest", …
        what: &'static str,
        /// The digest looked up.
        digest: Digest,
        /// Extra context such as ` in repository a/b`.
        hint: String,
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
    TagNotFound {
        /// The repository.
        repository: String,
        /// The tag asked for.
        tag: String,
        /// The tags that do exist, to suggest a fix.
        hint: String,
    },

    /// A repository does not exist.
    #[error("repository `{repository}` not found{hint}")]
    RepositoryNotFound {
        /// The name asked for.
        repository: String,
        /// The repositories that do exist.
        hint: String,
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

    /// `require_children` is set and a child is absent.
    #[error("manifest {manifest} references {child} ({media_type}), which is not stored; push it first (MANIFEST_BLOB_UNKNOWN)")]
    MissingChild {
        /// The manifest being ingested.
        manifest: Box<Digest>,
        /// The absent child.
        child: Box<Digest>,
        /// The child's declared media type.
        media_type: String,
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

    /// Another process (or another handle in this one) has the store open.
    #[error("store {path} is locked by another process; close it first")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },

    /// A previous write failed in a way that leaves the page cache untrusted.
    #[error("store is poisoned after an earlier failed write ({0}); reopen it to continue")]
    Poisoned(String),

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

    /// An error from the redb key-value store.
    #[error("database error: {0}")]
    Storage(#[from] redb::Error),

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

impl Error {
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
            Error::Storage(_) | Error::Io { .. } | Error::Poisoned(_) | Error::Closed
        )
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::Storage(e.into())
            }
        }
    )*};
}

from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError,
    redb::SetDurabilityError
);

/// Extension to attach a context to `std::io::Result`.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}
