//! The one reference syntax of the command line, accepted by every command
//! that takes a reference:
//!
//! - `REPO:TAG`: the manifest a tag points at;
//! - `REPO@DIGEST`: a manifest of a repository;
//! - `DIGEST`: a blob or manifest anywhere in the store.
//!
//! A digest may be abbreviated to an unambiguous prefix of at least four
//! hex digits (`sha256:14f196c29fdc`, or `14f196c2`), as git accepts
//! abbreviated hashes; a trailing `…`, as listings print it, is ignored.

use ocidb::{Digest, DigestText, Error, Reference, Result, Store};

use super::view::View;

/// A reference as written, before the store resolves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// `REPO:TAG`.
    Tag { repo: String, tag: String },
    /// `REPO@DIGEST` (whole or abbreviated).
    InRepo { repo: String, digest: String },
    /// A digest (whole or abbreviated) alone.
    Digest(String),
}

/// What the accepted forms are, for error messages.
const FORMS: &str = "REPO:TAG, REPO@DIGEST or a DIGEST (a digest may be abbreviated to an unambiguous prefix of 4 or more hex digits), e.g. library/app:v1";

impl Written {
    /// Parses `text`. A word that reads as a digest or a digest prefix
    /// (`sha256:…`, or hex alone) is a digest; otherwise `REPO:TAG`.
    pub(super) fn parse(text: &str) -> Result<Written> {
        let bad = || Error::InvalidArgument {
            value: text.to_string(),
            expected: FORMS.into(),
        };
        if let Some((repo, digest)) = text.split_once('@') {
            if repo.is_empty() || digest.is_empty() {
                return Err(bad());
            }
            return Ok(Written::InRepo {
                repo: repo.to_string(),
                digest: digest.to_string(),
            });
        }
        if DigestText::parse(text).is_ok() {
            return Ok(Written::Digest(text.to_string()));
        }
        match text.rsplit_once(':') {
            Some((repo, tag)) if !repo.is_empty() && !tag.is_empty() => Ok(Written::Tag {
                repo: repo.to_string(),
                tag: tag.to_string(),
            }),
            _ => Err(bad()),
        }
    }
}

/// A reference resolved against a store.
#[derive(Clone, Debug)]
pub(super) struct Resolved {
    /// The repository, when the reference named one.
    pub repo: Option<String>,
    /// The digest it names.
    pub digest: Digest,
}

impl Resolved {
    /// The repository, or an error saying this command needs one.
    pub(super) fn require_repo(&self, text: &str) -> Result<&str> {
        self.repo.as_deref().ok_or_else(|| Error::InvalidArgument {
            value: text.to_string(),
            expected: "a reference with a repository: REPO:TAG or REPO@DIGEST".into(),
        })
    }

    /// As an engine reference (by digest).
    pub(super) fn reference(&self) -> Reference {
        Reference::Digest(self.digest)
    }
}

/// Checks that `text` is a digest or a digest prefix, before any store is
/// opened: a malformed argument is reported as such, whatever the store.
pub(super) fn digest_syntax(text: &str) -> Result<()> {
    DigestText::parse(text)?;
    Ok(())
}

impl Written {
    /// Resolves this reference against `store`: a tag to the digest it
    /// points at, an abbreviated digest to the one stored digest it starts.
    pub(super) fn resolve(self, store: &dyn View) -> Result<Resolved> {
        resolve_written(store, self)
    }
}

fn resolve_written(store: &dyn View, written: Written) -> Result<Resolved> {
    match written {
        Written::Tag { repo, tag } => {
            let digest = store.resolve(&repo, &Reference::parse(&tag)?)?;
            Ok(Resolved {
                repo: Some(repo),
                digest,
            })
        }
        Written::InRepo { repo, digest } => Ok(Resolved {
            digest: store.resolve_digest(&digest)?,
            repo: Some(repo),
        }),
        Written::Digest(d) => Ok(Resolved {
            repo: None,
            digest: store.resolve_digest(&d)?,
        }),
    }
}

/// An image of a repository as the engine names it, keeping a tag a tag
/// (an export writes it into the layout's `index.json`): `REPO:TAG`, or
/// `REPO@DIGEST` with an abbreviated digest expanded.
pub(super) fn image(store: &Store, text: &str) -> Result<(String, Reference)> {
    match Written::parse(text)? {
        Written::Tag { repo, tag } => Ok((repo, Reference::parse(&tag)?)),
        Written::InRepo { repo, digest } => {
            Ok((repo, Reference::Digest(store.resolve_digest(&digest)?)))
        }
        Written::Digest(_) => Err(Error::InvalidArgument {
            value: text.to_string(),
            expected: "a reference with a repository: REPO:TAG or REPO@DIGEST".into(),
        }),
    }
}

/// A repository and a reference in one argument (`REPO:TAG`,
/// `REPO@DIGEST`) or, as older command lines wrote it, in two (`REPO REF`).
/// In the two-argument form REF is a digest when it names its algorithm
/// (`sha256:…`, whole or abbreviated) and a tag otherwise: a tag never
/// holds a `:`.
pub(super) fn joined(first: &str, second: Option<&str>) -> String {
    match second {
        None => first.to_string(),
        Some(r) if r.contains(':') => format!("{first}@{r}"),
        Some(r) => format!("{first}:{r}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses() {
        assert_eq!(
            Written::parse("library/app:v1").expect("tag"),
            Written::Tag {
                repo: "library/app".into(),
                tag: "v1".into()
            }
        );
        assert_eq!(
            Written::parse("a/b@sha256:14f1").expect("in repo"),
            Written::InRepo {
                repo: "a/b".into(),
                digest: "sha256:14f1".into()
            }
        );
        assert_eq!(
            Written::parse("sha256:14f196c29fdc…").expect("prefix"),
            Written::Digest("sha256:14f196c29fdc…".into())
        );
        assert_eq!(
            Written::parse("14f196c2").expect("bare hex"),
            Written::Digest("14f196c2".into())
        );
        for bad in ["library/app", "@sha256:00", "app@", ":v1", "app:"] {
            let e = Written::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("REPO:TAG"), "{e}");
        }
    }

    #[test]
    fn two_arguments_join_into_one_reference() {
        assert_eq!(joined("app", None), "app");
        assert_eq!(joined("app", Some("v1")), "app:v1");
        assert_eq!(joined("app", Some("sha256:14f1")), "app@sha256:14f1");
        assert_eq!(joined("app", Some("beef")), "app:beef");
    }
}
