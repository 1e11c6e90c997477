//! Repository names and tags, checked against the distribution-spec grammar.

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The repository name rule, quoted in errors.
pub const REPOSITORY_RULE: &str =
    "components of [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)* joined by `/`, at most 255 characters";
/// The tag rule, quoted in errors.
pub const TAG_RULE: &str = "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}";

/// The media type rule (RFC 6838 section 4.2), quoted in errors.
pub const MEDIA_TYPE_RULE: &str = "RFC 6838 `type/subtype` with optional `; name=value` parameters: type and subtype of 1 to 127 characters from [A-Za-z0-9!#$&^_.+-], each starting with a letter or digit, at most 255 characters in all";

/// Longest media type accepted, parameters included. RFC 6838 allows 127
/// characters for each of type and subtype; parameters are rare in OCI.
pub const MAX_MEDIA_TYPE_LEN: usize = 255;

/// Checks a media type or an artifactType against RFC 6838, so that no
/// encoder ever meets one it cannot hold and no terminal gets control bytes.
pub fn validate_media_type(mt: &str) -> Result<()> {
    let bad = |why: String| Error::InvalidMediaType {
        value: crate::text::quote_untrusted(mt),
        reason: format!("{why}; expected {MEDIA_TYPE_RULE}"),
    };
    if mt.len() > MAX_MEDIA_TYPE_LEN {
        return Err(bad(format!("it is {} bytes long", mt.len())));
    }
    let mut parts = mt.split(';');
    let essence = parts.next().unwrap_or_default();
    let Some((ty, sub)) = essence.split_once('/') else {
        return Err(bad("it has no `/`".into()));
    };
    check_restricted_name(ty).map_err(|why| bad(format!("its type {why}")))?;
    check_restricted_name(sub).map_err(|why| bad(format!("its subtype {why}")))?;
    for param in parts {
        let param = param.trim_matches(' ');
        let Some((name, value)) = param.split_once('=') else {
            return Err(bad(format!(
                "parameter `{}` has no `=`",
                param.escape_debug()
            )));
        };
        check_restricted_name(name).map_err(|why| bad(format!("a parameter name {why}")))?;
        let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
        let inner = if quoted {
            &value[1..value.len() - 1]
        } else {
            value
        };
        let ok = !inner.is_empty()
            && inner.bytes().all(|c| {
                if quoted {
                    (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\'
                } else {
                    restricted_char(c)
                }
            });
        if !ok {
            return Err(bad(format!(
                "parameter value `{}` is empty or has a character outside the token set",
                value.escape_debug()
            )));
        }
    }
    Ok(())
}

fn restricted_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&c)
}

fn check_restricted_name(s: &str) -> std::result::Result<(), String> {
    let b = s.as_bytes();
    match b.first() {
        None => return Err("is empty".into()),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err(format!(
                "`{}` does not start with a letter or digit",
                s.escape_debug()
            ))
        }
        Some(_) => {}
    }
    if b.len() > 127 {
        return Err(format!("is {} characters long, the limit is 127", b.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii() && restricted_char(c as u8)))
    {
        return Err(format!("contains `{}`", c.escape_debug()));
    }
    Ok(())
}

/// Checks a repository name.
pub fn validate_repository(name: &str) -> Result<()> {
    let bad = |why: String| Error::InvalidRepository {
        name: crate::text::quote_untrusted(name),
        reason: format!("{why}; expected {REPOSITORY_RULE}"),
    };
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name.len() > 255 {
        return Err(bad(format!("it is {} characters long", name.len())));
    }
    for (i, comp) in name.split('/').enumerate() {
        if comp.is_empty() {
            return Err(bad(format!("path component {} is empty", i + 1)));
        }
        check_component(comp).map_err(|why| bad(format!("component `{comp}` {why}")))?;
    }
    Ok(())
}

fn check_component(c: &str) -> std::result::Result<(), String> {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err("must start and end with [a-z0-9]".into());
    }
    let mut i = 0;
    while i < b.len() {
        let x = b[i];
        if alnum(x) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|s| s == b'-');
        if !ok {
            let shown = sep.chars().next().unwrap_or('?');
            return Err(if sep.bytes().all(|s| matches!(s, b'.' | b'_' | b'-')) {
                format!("has the separator `{sep}`; only `.`, `_`, `__` or dashes are allowed")
            } else {
                format!("contains `{}`", shown.escape_debug())
            });
        }
    }
    Ok(())
}

/// Checks a tag.
pub fn validate_tag(tag: &str) -> Result<()> {
    let bad = |why: String| Error::InvalidTag {
        tag: crate::text::quote_untrusted(tag),
        reason: format!("{why}; expected {TAG_RULE}"),
    };
    let b = tag.as_bytes();
    if b.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if b.len() > 128 {
        return Err(bad(format!(
            "it is {} characters long, the limit is 128",
            b.len()
        )));
    }
    if !(b[0].is_ascii_alphanumeric() || b[0] == b'_') {
        return Err(bad(format!(
            "it starts with `{}`",
            tag.chars().next().unwrap_or('?').escape_debug()
        )));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(format!("it contains `{}`", c.escape_debug())));
    }
    Ok(())
}

/// A reference inside a repository: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A tag.
    Tag(String),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a tag or a digest (anything with a `:` is taken as a digest).
    pub fn parse(s: &str) -> Result<Reference> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            validate_tag(s)?;
            Ok(Reference::Tag(s.to_string()))
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// The referrers tag schema: the tag `<alg>-<hex>` names an index of the
/// referrers of `<alg>:<hex>`.
pub fn referrers_tag_subject(tag: &str) -> Option<Digest> {
    let (alg, hex) = tag.split_once('-')?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// The referrers-schema tag for a subject.
pub fn referrers_tag_for(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm(), subject.hex())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn repository_names() {
        for ok in ["a", "library/ubuntu", "a.b_c__d---e/f0", "ocidb/x-y"] {
            validate_repository(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "", "a/../b", "/a", "a/", "A", "a//b", "a..b", "a___b", "-a", "a-", "a b", "é",
        ] {
            let e = validate_repository(bad).expect_err(bad);
            assert!(e.to_string().contains("expected components"), "{e}");
        }
        assert!(validate_repository(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.0", "_x", "A-b_c.d", &"a".repeat(128)] {
            validate_tag(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            let e = validate_tag(bad).expect_err(bad);
            assert!(e.to_string().contains(TAG_RULE), "{e}");
        }
    }

    #[test]
    fn referrers_tags() {
        let d = crate::oci::hasher::Hasher::digest_of(crate::digest::Algorithm::Sha256, b"x");
        assert_eq!(referrers_tag_subject(&referrers_tag_for(&d)), Some(d));
        assert_eq!(referrers_tag_subject("v1"), None);
    }

    proptest! {
        #[test]
        fn names_never_panic(s in ".{0,64}") {
            let _ = validate_repository(&s);
            let _ = validate_tag(&s);
            let _ = Reference::parse(&s);
        }
    }
}
