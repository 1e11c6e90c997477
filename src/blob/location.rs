//! Where a store keeps blob bytes, as an operator writes it: `local`, or
//! `s3://BUCKET/PREFIX?endpoint=URL&region=NAME`. The store records the
//! canonical form (never credentials) so that a later open finds the same
//! bytes without being told again.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The most bytes a location string may have.
const MAX_LEN: usize = 1024;

/// Where blob bytes above the inline threshold live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobLocation {
    /// Files below the store directory.
    Local,
    /// Objects in an S3-compatible bucket.
    S3(S3Location),
}

/// A bucket, a key prefix within it, and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket name.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// The endpoint URL (`http://host:port`); `None`: AWS, from the region.
    pub endpoint: Option<String>,
    /// The region; `None`: `AWS_REGION` from the environment, else
    /// `us-east-1`.
    pub region: Option<String>,
}

fn invalid(value: &str, expected: &str) -> Error {
    Error::InvalidArgument {
        value: crate::text::quote_untrusted(value),
        expected: expected.to_string(),
    }
}

const SHAPE: &str =
    "a blob location: `local`, or `s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=NAME`";

impl FromStr for BlobLocation {
    type Err = Error;

    fn from_str(s: &str) -> Result<BlobLocation> {
        if s.len() > MAX_LEN {
            return Err(invalid(s, &format!("{SHAPE}, of at most {MAX_LEN} bytes")));
        }
        if s == "local" {
            return Ok(BlobLocation::Local);
        }
        let rest = s.strip_prefix("s3://").ok_or_else(|| invalid(s, SHAPE))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        let prefix = prefix.trim_end_matches('/');
        check_bucket(bucket).map_err(|why| invalid(bucket, &why))?;
        check_prefix(prefix).map_err(|why| invalid(prefix, &why))?;
        let mut loc = S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint: None,
            region: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "endpoint" if loc.endpoint.is_none() => {
                    check_endpoint(v).map_err(|why| invalid(v, &why))?;
                    loc.endpoint = Some(v.trim_end_matches('/').to_string());
                }
                "region" if loc.region.is_none() => {
                    let ok = !v.is_empty()
                        && v.len() <= 64
                        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if !ok {
                        return Err(invalid(
                            v,
                            "a region: 1 to 64 ASCII letters, digits, `-` or `_`",
                        ));
                    }
                    loc.region = Some(v.to_string());
                }
                _ => {
                    return Err(invalid(
                        pair,
                        "a query parameter of an s3:// location: `endpoint=URL` or `region=NAME`, each at most once (credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                    ))
                }
            }
        }
        Ok(BlobLocation::S3(loc))
    }
}

/// S3's bucket naming rules (3 to 63 lowercase letters, digits, `.` and
/// `-`, starting and ending with a letter or digit).
fn check_bucket(b: &str) -> std::result::Result<(), String> {
    let ok = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("a bucket name: 3 to 63 lowercase letters, digits, `.` or `-`, starting and ending with a letter or digit".into())
    }
}

/// A key prefix: `/`-separated segments of safe characters, none empty,
/// `.` or `..`, so that the keys built below it are what they look like.
fn check_prefix(p: &str) -> std::result::Result<(), String> {
    if p.is_empty() {
        return Ok(());
    }
    let ok = p.len() <= 512
        && p.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err("a key prefix: at most 512 bytes of `/`-separated segments of ASCII letters, digits, `-`, `_` or `.`, none empty, `.` or `..`".into())
    }
}

/// An endpoint: `http://` or `https://`, a host and an optional port,
/// nothing else (no user info, path, query or fragment).
fn check_endpoint(e: &str) -> std::result::Result<(), String> {
    let why = || {
        "an endpoint URL: `http://HOST[:PORT]` or `https://HOST[:PORT]`, with no user, path or query".to_string()
    };
    let rest = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .ok_or_else(why)?;
    let rest = rest.trim_end_matches('/');
    let ok = !rest.is_empty()
        && rest.len() <= 255
        && rest
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

impl fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobLocation::Local => f.write_str("local"),
            BlobLocation::S3(s) => s.fmt(f),
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        let mut sep = '?';
        if let Some(e) = &self.endpoint {
            write!(f, "{sep}endpoint={e}")?;
            sep = '&';
        }
        if let Some(r) = &self.region {
            write!(f, "{sep}region={r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_canonical_form() {
        let l: BlobLocation = "s3://ocidb/a/b/?endpoint=http://127.0.0.1:3900/&region=garage"
            .parse()
            .expect("valid");
        let BlobLocation::S3(s) = &l else {
            panic!("not s3: {l:?}")
        };
        assert_eq!(s.bucket, "ocidb");
        assert_eq!(s.prefix, "a/b");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(s.region.as_deref(), Some("garage"));
        assert_eq!(
            l.to_string(),
            "s3://ocidb/a/b?endpoint=http://127.0.0.1:3900&region=garage"
        );
        assert_eq!(l.to_string().parse::<BlobLocation>().expect("again"), l);
        assert_eq!(
            "local".parse::<BlobLocation>().expect("local"),
            BlobLocation::Local
        );
        assert_eq!(
            "s3://bkt"
                .parse::<BlobLocation>()
                .expect("bare")
                .to_string(),
            "s3://bkt"
        );
    }

    #[test]
    fn refuses_what_is_not_a_location_and_names_it() {
        for (bad, named) in [
            ("file:///x", "file:///x"),
            ("s3://AB", "AB"),
            ("s3://b", "b"),
            ("s3://bucket/../x", "../x"),
            ("s3://bucket/a//b", "a//b"),
            ("s3://bucket?endpoint=ftp://x", "ftp://x"),
            ("s3://bucket?endpoint=http://u:p@h", "http://u:p@h"),
            ("s3://bucket?endpoint=http://h/path", "http://h/path"),
            ("s3://bucket?secret=x", "secret=x"),
            ("s3://bucket?region=a&region=b", "region=b"),
            ("s3://bucket?region=", ""),
        ] {
            let e = bad.parse::<BlobLocation>().expect_err(bad).to_string();
            assert!(e.contains(&format!("`{named}`")), "{bad}: {e}");
        }
        let long = format!("s3://bucket/{}", "a".repeat(2000));
        assert!(long.parse::<BlobLocation>().is_err());
    }
}
