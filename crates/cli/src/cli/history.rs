//! `ocidb history REPO:TAG` and `ocidb tag REPO:TAG --restore|--at`: a
//! tag's history, and undelete.

use std::path::Path;

use ocidb::clock::{parse_rfc3339, rfc3339};
use ocidb::store::{HistoryQuery, RestorePoint, TagAction, TagCause, TagEvent};
use ocidb::{Digest, Error, Result};

use super::refs::Written;
use super::render::{self, Style};
use super::util::{open, print_json};
use super::view;

/// What `ocidb history` shows of a tag's history.
pub(super) struct Filters {
    pub n: usize,
    pub before: Option<String>,
    pub since: Option<String>,
    pub digest: Option<String>,
}

/// `REPO:TAG`, or the rule it breaks.
fn tag_reference(text: &str) -> Result<(String, String)> {
    match Written::parse(text)? {
        Written::Tag { repo, tag } => Ok((repo, tag)),
        _ => Err(Error::InvalidArgument {
            value: text.to_string(),
            expected: "REPO:TAG, the tag whose history to use (e.g. library/app:latest)".into(),
        }),
    }
}

/// A time option as RFC 3339, or the rule it breaks.
fn time(flag: &str, text: &str) -> Result<u64> {
    parse_rfc3339(text).ok_or_else(|| Error::InvalidArgument {
        value: format!("{flag} {text}"),
        expected: "an RFC 3339 time after 1970, e.g. 2026-12-01T09:00:00Z".into(),
    })
}

pub(super) fn show(
    store_dir: &Path,
    reference: &str,
    f: Filters,
    full: bool,
    json: bool,
) -> Result<()> {
    let (repo, tag) = tag_reference(reference)?;
    let mut q = HistoryQuery::default().limit(f.n);
    if let Some(b) = &f.before {
        q = q.before_ms(time("--before", b)?);
    }
    if let Some(s) = &f.since {
        q = q.since_ms(time("--since", s)?);
    }
    if let Some(d) = &f.digest {
        q = q.digest(Digest::parse(d)?);
    }
    let page = view::open_view(store_dir)?.tag_history(&repo, &tag, &q)?;
    if json {
        return print_json(&page);
    }
    if page.events.is_empty() {
        eprintln!(
            "{}:{} has no history{}",
            render::escape(&repo),
            render::escape(&tag),
            if f.before.is_some() || f.since.is_some() || f.digest.is_some() {
                " that matches"
            } else {
                ""
            }
        );
        return Ok(());
    }
    let st = Style::for_stdout().full_digests(full);
    for e in &page.events {
        println!("{}", line(e, st));
    }
    if page.next.is_some() {
        eprintln!("(more: raise -n, or pass --before with the last time shown)");
    }
    Ok(())
}

/// `TIME  EVENT  DIGEST  [from PREVIOUS]  [by USER]`.
fn line(e: &TagEvent, st: Style) -> String {
    let what = match (e.action, e.cause) {
        (TagAction::Created, TagCause::Restored) => "restored",
        (TagAction::Created, _) if e.previous.is_some() => "moved",
        (TagAction::Created, _) => "created",
        (TagAction::Deleted, TagCause::ManifestDeleted) => "deleted (manifest deleted)",
        (TagAction::Deleted, _) => "deleted",
    };
    let mut out = format!(
        "{}  {what:<8}  {}",
        rfc3339(e.time_ms),
        st.digest(&e.digest)
    );
    if let Some(p) = &e.previous {
        out.push_str(&format!("  from {}", st.digest(p)));
    }
    if let Some(u) = &e.user {
        out.push_str(&format!("  by {}", render::escape(u)));
    }
    out
}

pub(super) fn restore(
    store_dir: &Path,
    reference: &str,
    digest: Option<&str>,
    at: Option<&str>,
) -> Result<()> {
    let (repo, tag) = tag_reference(reference)?;
    let store = open(store_dir)?;
    let to = match (digest, at) {
        (Some(d), _) => RestorePoint::Digest(store.resolve_digest(d)?),
        (None, Some(t)) => RestorePoint::At(time("--at", t)?),
        (None, None) => {
            return Err(Error::InvalidArgument {
                value: reference.to_string(),
                expected: "--restore DIGEST or --at TIME".into(),
            })
        }
    };
    let r = store.restore_tag(&repo, &tag, to, super::util::os_user().as_deref())?;
    match r.previous {
        Some(p) => eprintln!(
            "restored {}:{} -> {} (was {p})",
            render::escape(&repo),
            render::escape(&tag),
            r.digest
        ),
        None => eprintln!(
            "restored {}:{} -> {}",
            render::escape(&repo),
            render::escape(&tag),
            r.digest
        ),
    }
    Ok(())
}
