//! Human output: sizes, colours and trees.

use std::io::IsTerminal as _;

use ocidb::{Relation, WalkNode};

/// ANSI styling, on only when stdout is a terminal and NO_COLOR is unset;
/// and whether digests print whole (`--full`) or cut to 12 hex digits, a
/// prefix every command accepts back.
#[derive(Clone, Copy)]
pub struct Style {
    on: bool,
    full: bool,
}

impl Style {
    pub fn for_stdout() -> Style {
        Style {
            on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            full: false,
        }
    }

    /// The same, with whole digests.
    #[must_use]
    pub fn full_digests(mut self, full: bool) -> Style {
        self.full = full;
        self
    }

    /// A digest as this style prints it.
    pub fn digest(&self, d: &ocidb::Digest) -> String {
        if self.full {
            d.to_string()
        } else {
            short(d)
        }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn cyan(&self, s: &str) -> String {
        self.paint("36", s)
    }
    pub fn magenta(&self, s: &str) -> String {
        self.paint("35", s)
    }
}

/// Untrusted text (media types, annotations, tags, names from a layout)
/// made safe for a terminal: control characters and the bidirectional
/// overrides that reorder what is shown are printed as escapes.
pub fn escape(s: &str) -> String {
    let risky =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(risky) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if risky(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// 1536 -> "1.5 KiB".
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `sha256:4f1c2a9b0d3e…` (the first 12 hex characters): a prefix every
/// command that takes a digest accepts back, `…` and all.
pub fn short(d: &ocidb::Digest) -> String {
    let s = d.to_string();
    let cut = s.find(':').map_or(0, |i| i + 13).min(s.len());
    format!("{}…", &s[..cut])
}

fn label(node: &WalkNode, st: Style) -> String {
    let d = &node.descriptor;
    let mut parts = Vec::new();
    let rel = match node.relation {
        Relation::Referrer => st.magenta("referrer"),
        Relation::Root => String::new(),
        Relation::Child(kind) => st.cyan(kind.name()),
    };
    if !rel.is_empty() {
        parts.push(rel);
    }
    parts.push(st.bold(&st.digest(&d.digest)));
    if !d.media_type.is_empty() {
        parts.push(st.dim(&escape(&d.media_type)));
    }
    if let Some(at) = &d.artifact_type
        && matches!(node.relation, Relation::Referrer | Relation::Root)
    {
        parts.push(st.yellow(&format!("[{}]", escape(at))));
    }
    if let Some(p) = &d.platform {
        parts.push(escape(&p.to_string()));
    }
    parts.push(human_size(d.size));
    if !node.tags.is_empty() {
        parts.push(st.green(&format!("tags: {}", escape(&node.tags.join(", ")))));
    }
    if !node.present {
        parts.push(st.red("(missing)"));
    }
    if node.repeated {
        parts.push(st.dim("(shown above)"));
    }
    if node.truncated {
        parts.push(st.dim(&format!(
            "(deeper than {} levels: not expanded)",
            ocidb::MAX_WALK_DEPTH
        )));
    }
    parts.join("  ")
}

/// Renders a walk as an indented tree with box-drawing characters.
pub fn tree(root: &WalkNode, heading: &str, st: Style) -> String {
    let mut out = String::new();
    out.push_str(&format!("{}  {}\n", st.bold(heading), label(root, st)));
    render_children(&root.children, "", st, &mut out);
    out
}

fn render_children(children: &[WalkNode], prefix: &str, st: Style, out: &mut String) {
    for (i, c) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, cont) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        out.push_str(&format!("{prefix}{branch}{}\n", label(c, st)));
        render_children(&c.children, &format!("{prefix}{cont}"), st, out);
    }
}

/// The `ocidb stats` text.
pub fn stats(s: &ocidb::Stats) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "repositories  {}\nmanifests     {}\nblobs         {}\ntags          {}\n",
        s.repositories, s.manifests, s.blobs, s.tags
    ));
    out.push_str(&format!(
        "bytes         {} unique, {} as seen by repositories (dedupe ratio {:.2})\n",
        human_size(s.unique_bytes),
        human_size(s.total_bytes),
        s.dedupe_ratio
    ));
    out.push_str(&format!(
        "storage       {} database file; {} inline, {} in blob files\n",
        human_size(s.database_file_bytes),
        human_size(s.inline_bytes),
        human_size(s.file_bytes)
    ));
    if !s.referrers_by_artifact_type.is_empty() {
        out.push_str("referrers by artifactType\n");
        for (at, n) in &s.referrers_by_artifact_type {
            out.push_str(&format!("  {n:>6}  {}\n", escape(at)));
        }
    }
    if !s.largest_repositories.is_empty() {
        out.push_str("largest repositories\n");
        for r in &s.largest_repositories {
            out.push_str(&format!(
                "  {:>10}  {}  ({} manifests, {} blobs, {} tags)\n",
                human_size(r.bytes),
                escape(&r.name),
                r.manifests,
                r.blobs,
                r.tags
            ));
        }
    }
    out
}

/// The leases, one line each with what holds them, then the digests each
/// holds (at most [`ocidb::LeaseInfo::SHOWN`]).
pub fn leases(leases: &[ocidb::LeaseInfo], now_ms: u64) -> String {
    let mut out = String::new();
    for l in leases {
        let owner = l.owner.as_deref().unwrap_or("taken through the library");
        out.push_str(&format!(
            "{}  expires in {} s  holds {}  ({})\n",
            l.id,
            l.expires_ms.saturating_sub(now_ms) / 1000,
            l.held,
            escape(owner)
        ));
        for d in &l.digests {
            out.push_str(&format!("  {d}\n"));
        }
        if l.held > l.digests.len() as u64 {
            out.push_str(&format!(
                "  … and {} more (--json lists the first {})\n",
                l.held - l.digests.len() as u64,
                ocidb::LeaseInfo::SHOWN
            ));
        }
    }
    out
}

/// One line about a GC run.
pub fn gc_summary(r: &ocidb::GcReport) -> String {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    let mut kept = r.kept.to_string();
    if r.kept_for_undelete > 0 {
        kept.push_str(&format!(
            " ({} only for the undelete window)",
            r.kept_for_undelete
        ));
    }
    if r.history_pruned > 0 {
        kept.push_str(&format!(
            "; {} tag history event(s) pruned",
            r.history_pruned
        ));
    }
    format!(
        "{verb} {} manifest(s) and {} blob(s), {} reclaimed; kept {kept}{}",
        r.deleted_manifests,
        r.deleted_blobs,
        human_size(r.reclaimed_bytes),
        if r.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain/type"), "plain/type");
        let e = escape("a\x1b]0;title\x07b\u{202e}c");
        assert!(!e.chars().any(|c| c.is_control() || c == '\u{202e}'), "{e}");
        assert!(e.contains("\\u{1b}"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }
}
