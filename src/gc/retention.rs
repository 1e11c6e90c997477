//! Retention policies that follow the graph: which tags each repository
//! keeps (by pattern, by the most recent pushes or pulls, by age), what
//! goes with the tags it drops, and exactly what that frees.
//!
//! A run plans on one read snapshot, then applies the plan in small writer
//! jobs, each re-checking its step against the store as it is then (a tag
//! moved, or a manifest tagged, by a writer since the plan is skipped and
//! counted), so writers never wait on it for long. Planning reads the
//! repositories a rule names, their tags and manifests, and the graph
//! around what goes: its cost follows what it examines, not the store.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use redb::{ReadTransaction, ReadableTable as _};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::history::TagChange;
use crate::index::leases::{lease_range, live_leases};
use crate::oci::manifest::EdgeKind;
use crate::schema::keys::{self, MEMBER_MANIFEST};
use crate::schema::record::{self, EventKind, TagCause};
use crate::schema::reverse;
use crate::schema::tables::{
    self, ARTIFACT_TYPES, EDGES_IN, EDGES_OUT, LEASE_ITEMS, MEMBERS, MEMBER_OF, PULLS, REFERRERS,
    REPOS, TAGS, TAG_HISTORY,
};
use crate::store::Store;

/// The artifact types that make an image "signed" for `signed_only`:
/// Notary v2, cosign, and Sigstore bundles.
pub const SIGNATURE_TYPES: &[&str] = &[
    "application/vnd.cncf.notary.signature",
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
];

/// Most steps per writer job when a plan is applied while writers are
/// idle (fewer when a writer is waiting).
const APPLY_BATCH: usize = 64;
/// Writers that sent a request this recently are busy (as for the GC).
const WRITERS_BUSY: Duration = Duration::from_millis(3);
/// The pause before each single step while writers are busy. A step
/// rides in a writer's group commit and adds a deletion's pages to its
/// fsync, so writers' p99 sees it once more than 1% of commits carry one:
/// at the ~1,500 commits a second of one busy writer here, one step per
/// 100 ms keeps it under that (with 4 ms, 1.26× GC's p99 in the 100k
/// bench). Under writes that never pause, a run then advances about ten
/// steps a second, as GC's default pace does; it goes at full speed
/// whenever they pause.
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// What to keep, per repository: the first rule whose `repositories`
/// names a repository applies to it; a repository no rule names is left
/// alone.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// The rules, in order.
    pub rules: Vec<RetentionRule>,
}

/// One rule. A tag is kept when any `keep_*` criterion keeps it (and, with
/// `signed_only`, its manifest is signed); a rule with no `keep_*`
/// criterion keeps every tag. What a dropped tag named goes from the
/// repository with what only it needed (child manifests, referrers),
/// unless something kept still needs it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// A repository, a namespace prefix ending in `/`, or `*` for all.
    pub repositories: String,
    /// Keep tags this regular expression matches (anchor it: `^v\d+`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_tags: Option<String>,
    /// Keep the N most recently pushed tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last_pushed: Option<usize>,
    /// Keep the N most recently pulled tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last_pulled: Option<usize>,
    /// Keep tags pushed within this long (`30d`, `12h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_pushed_within: Option<String>,
    /// Keep tags pulled within this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_pulled_within: Option<String>,
    /// Delete manifests no tag reaches once they are this old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_untagged_after: Option<String>,
    /// Keep only signed images: a tag the `keep_*` criteria keep goes too
    /// when no signature refers to its manifest ([`SIGNATURE_TYPES`]).
    #[serde(default)]
    pub signed_only: bool,
}

/// How a run goes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetentionOptions {
    /// Plan and report only.
    pub dry_run: bool,
    /// The GC grace period the freed-bytes figure assumes: a blob younger
    /// than this survives the next GC. Default 1 hour (GC's default).
    pub grace: Duration,
    /// The undelete window in force: manifests a tag named within it stay
    /// (GC keeps them too). Default none.
    pub undelete_window: Duration,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        RetentionOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
            undelete_window: Duration::ZERO,
        }
    }
}

impl RetentionOptions {
    /// Sets [`RetentionOptions::dry_run`].
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets [`RetentionOptions::grace`].
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets [`RetentionOptions::undelete_window`].
    #[must_use]
    pub fn undelete_window(mut self, window: Duration) -> Self {
        self.undelete_window = window;
        self
    }
}

/// What a run does to one repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRetention {
    /// The repository.
    pub repository: String,
    /// Tags kept.
    pub kept_tags: u64,
    /// Tags dropped, each with the manifest it named.
    pub deleted_tags: Vec<(String, Digest)>,
    /// Manifests that leave the repository.
    pub deleted_manifests: Vec<Digest>,
}

/// What a run did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RetentionReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Per repository a rule named, with something to drop.
    pub repositories: Vec<RepoRetention>,
    /// Tags dropped.
    pub tags_deleted: u64,
    /// Manifest memberships dropped.
    pub manifests_deleted: u64,
    /// Bytes of manifests that leave the store at once (no repository
    /// holds them any more).
    pub manifest_bytes: u64,
    /// Bytes of blobs the next GC frees (nothing else reaches them, they
    /// are older than the grace period and in no lease).
    pub blob_bytes: u64,
    /// `manifest_bytes + blob_bytes`: what the store really gets back.
    pub freed_bytes: u64,
    /// Bytes of what goes from these repositories but stays in the store:
    /// another repository holds it, something kept reaches it, a lease
    /// holds it, or it is younger than the grace period.
    pub kept_elsewhere_bytes: u64,
    /// Steps a writer overtook since the plan (a tag moved, a manifest
    /// tagged again): left alone, for the next run.
    pub skipped: u64,
    /// Manifests examined while planning.
    pub examined: u64,
    /// Time spent planning.
    pub plan_ms: u64,
    /// Time spent applying.
    pub apply_ms: u64,
}

/// A rule, checked and compiled.
struct Compiled {
    scope: String,
    keep_tags: Option<regex::Regex>,
    keep_last_pushed: Option<usize>,
    keep_last_pulled: Option<usize>,
    pushed_within: Option<u64>,
    pulled_within: Option<u64>,
    untagged_after: Option<u64>,
    signed_only: bool,
}

impl Compiled {
    fn names(&self, repo: &str) -> bool {
        self.scope == "*"
            || repo == self.scope
            || (self.scope.ends_with('/') && repo.starts_with(&self.scope))
    }

    fn keeps_by_criteria(&self) -> bool {
        self.keep_tags.is_some()
            || self.keep_last_pushed.is_some()
            || self.keep_last_pulled.is_some()
            || self.pushed_within.is_some()
            || self.pulled_within.is_some()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn compile(policy: &RetentionPolicy) -> Result<Vec<Compiled>> {
    let duration = |field: &str, v: &Option<String>| -> Result<Option<u64>> {
        v.as_deref()
            .map(|t| {
                crate::gc::parse_duration(t)
                    .map(ms)
                    .map_err(|_| Error::InvalidArgument {
                        value: format!("{field} = {t}"),
                        expected: "a duration such as 30d, 12h or 90m".into(),
                    })
            })
            .transpose()
    };
    policy
        .rules
        .iter()
        .map(|r| {
            let scope = r.repositories.trim().to_string();
            if scope != "*" {
                let name = scope.strip_suffix('/').unwrap_or(&scope);
                crate::oci::names::validate_repository(name).map_err(|_| {
                    Error::InvalidArgument {
                        value: format!("repositories = {scope}"),
                        expected: "a repository, a namespace ending in `/`, or `*`".into(),
                    }
                })?;
            }
            let keep_tags = r
                .keep_tags
                .as_deref()
                .map(|p| {
                    regex::RegexBuilder::new(p)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| Error::InvalidArgument {
                            value: format!("keep_tags = {p}"),
                            expected: format!("a regular expression ({e})"),
                        })
                })
                .transpose()?;
            Ok(Compiled {
                scope,
                keep_tags,
                keep_last_pushed: r.keep_last_pushed,
                keep_last_pulled: r.keep_last_pulled,
                pushed_within: duration("keep_pushed_within", &r.keep_pushed_within)?,
                pulled_within: duration("keep_pulled_within", &r.keep_pulled_within)?,
                untagged_after: duration("delete_untagged_after", &r.delete_untagged_after)?,
                signed_only: r.signed_only,
            })
        })
        .collect()
}

/// One tag of a repository, with when it was last pushed and pulled.
struct TagFacts {
    tag: String,
    digest: Digest,
    pushed_ms: u64,
    pulled_ms: Option<u64>,
}

/// The tables a plan reads, opened once.
struct Tables {
    blobs: redb::ReadOnlyTable<&'static tables::DKey, &'static [u8]>,
    edges_out: redb::ReadOnlyTable<&'static tables::DKey, &'static [u8]>,
    members: redb::ReadOnlyTable<&'static [u8], u8>,
    referrers: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    tags: redb::ReadOnlyTable<&'static [u8], &'static tables::DKey>,
    history: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    pulls: redb::ReadOnlyTable<&'static [u8], u64>,
}

impl Tables {
    fn open(txn: &ReadTransaction) -> Result<Tables> {
        Ok(Tables {
            blobs: txn.open_table(tables::BLOBS)?,
            edges_out: txn.open_table(EDGES_OUT)?,
            members: txn.open_table(MEMBERS)?,
            referrers: txn.open_table(REFERRERS)?,
            tags: txn.open_table(TAGS)?,
            history: txn.open_table(TAG_HISTORY)?,
            pulls: txn.open_table(PULLS)?,
        })
    }
}

/// The read side of a plan: one snapshot's tables and what it knows.
struct Planner {
    t: Tables,
    now: u64,
    artifact_types: HashMap<u32, String>,
    /// Digests a live lease or the undelete window protects.
    protected: HashSet<Digest>,
    examined: u64,
}

impl Planner {
    fn record(&self, d: &Digest) -> Result<Option<record::BlobRecord>> {
        record::lookup(&self.t.blobs, d)
    }

    /// The manifest's children that are manifests of repository `id`
    /// (an index's entries).
    fn child_manifests(&self, id: u64, d: &Digest) -> Result<Vec<Digest>> {
        let Some(v) = self
            .t
            .edges_out
            .get(d.to_key().as_slice())?
            .map(|g| g.value().to_vec())
        else {
            return Ok(Vec::new());
        };
        let members = &self.t.members;
        let mut out = Vec::new();
        for (kind, child, _) in keys::decode_edges(d, &v)? {
            if kind != EdgeKind::Subject
                && members
                    .get(keys::member(id, &child).as_slice())?
                    .map(|g| g.value())
                    == Some(MEMBER_MANIFEST)
            {
                out.push(child);
            }
        }
        Ok(out)
    }

    /// Referrers of `d` in repository `id`, with their artifact types.
    fn referrers(&self, id: u64, d: &Digest) -> Result<Vec<(Digest, String)>> {
        let (lo, hi) = keys::referrer_range(id, d, None);
        let mut out = Vec::new();
        for e in self
            .t
            .referrers
            .range::<&[u8]>(lo.as_slice()..hi.as_slice())?
        {
            let (k, _) = e?;
            let (_, _, at, r) = keys::split_referrer(k.value())?;
            out.push((r, self.artifact_types.get(&at).cloned().unwrap_or_default()));
        }
        Ok(out)
    }

    /// Everything a kept manifest needs in its repository: itself, its
    /// child manifests and its referrers, transitively.
    fn closure(
        &mut self,
        id: u64,
        roots: impl IntoIterator<Item = Digest>,
    ) -> Result<HashSet<Digest>> {
        let mut seen = HashSet::new();
        let mut stack: Vec<Digest> = roots.into_iter().collect();
        while let Some(d) = stack.pop() {
            if !seen.insert(d) {
                continue;
            }
            self.examined += 1;
            stack.extend(self.child_manifests(id, &d)?);
            stack.extend(self.referrers(id, &d)?.into_iter().map(|(r, _)| r));
        }
        Ok(seen)
    }

    fn signed(&self, id: u64, d: &Digest) -> Result<bool> {
        Ok(self
            .referrers(id, d)?
            .iter()
            .any(|(_, at)| SIGNATURE_TYPES.contains(&at.as_str())))
    }

    fn tags(&self, id: u64) -> Result<Vec<TagFacts>> {
        let (tags, history, pulls) = (&self.t.tags, &self.t.history, &self.t.pulls);
        let lo = id.to_be_bytes();
        let hi = id.wrapping_add(1).to_be_bytes();
        let mut out = Vec::new();
        for e in tags.range(lo.as_slice()..hi.as_slice())? {
            let (k, v) = e?;
            let tag = String::from_utf8_lossy(&k.value()[8..]).into_owned();
            let digest = Digest::from_key(v.value())?;
            let (hlo, hhi) = (
                keys::history(id, &tag, 0),
                keys::history(id, &tag, u64::MAX),
            );
            let last = history
                .range(hlo.as_slice()..hhi.as_slice())?
                .next_back()
                .transpose()?;
            let pushed_ms = match last {
                Some((_, v)) => record::TagEventRecord::decode(v.value())?.time_ms,
                None => self.record(&digest)?.map_or(0, |r| r.created_ms),
            };
            let pulled_ms = pulls
                .get(keys::member(id, &digest).as_slice())?
                .map(|g| g.value());
            out.push(TagFacts {
                tag,
                digest,
                pushed_ms,
                pulled_ms,
            });
        }
        Ok(out)
    }

    /// The plan for one repository under `rule`.
    fn plan_repo(&mut self, repo: &str, id: u64, rule: &Compiled) -> Result<RepoRetention> {
        let tags = self.tags(id)?;
        let mut keep: HashSet<usize> = HashSet::new();
        if rule.keeps_by_criteria() {
            for (i, t) in tags.iter().enumerate() {
                let matched = rule
                    .keep_tags
                    .as_ref()
                    .is_some_and(|re| re.is_match(&t.tag));
                let pushed = rule
                    .pushed_within
                    .is_some_and(|w| self.now.saturating_sub(t.pushed_ms) < w);
                let pulled = rule
                    .pulled_within
                    .is_some_and(|w| t.pulled_ms.is_some_and(|p| self.now.saturating_sub(p) < w));
                if matched || pushed || pulled {
                    keep.insert(i);
                }
            }
            if let Some(n) = rule.keep_last_pushed {
                let mut order: Vec<usize> = (0..tags.len()).collect();
                order.sort_by(|&a, &b| {
                    tags[b]
                        .pushed_ms
                        .cmp(&tags[a].pushed_ms)
                        .then(tags[a].tag.cmp(&tags[b].tag))
                });
                keep.extend(order.into_iter().take(n));
            }
            if let Some(n) = rule.keep_last_pulled {
                let mut order: Vec<usize> = (0..tags.len())
                    .filter(|&i| tags[i].pulled_ms.is_some())
                    .collect();
                order.sort_by(|&a, &b| {
                    tags[b]
                        .pulled_ms
                        .cmp(&tags[a].pulled_ms)
                        .then(tags[a].tag.cmp(&tags[b].tag))
                });
                keep.extend(order.into_iter().take(n));
            }
        } else {
            keep.extend(0..tags.len());
        }
        if rule.signed_only {
            let mut unsigned = Vec::new();
            for &i in &keep {
                if !self.signed(id, &tags[i].digest)? {
                    unsigned.push(i);
                }
            }
            for i in unsigned {
                keep.remove(&i);
            }
        }
        // What the kept tags need, and what nothing may take.
        let mut roots: Vec<Digest> = keep.iter().map(|&i| tags[i].digest).collect();
        for d in &self.protected {
            if self
                .t
                .members
                .get(keys::member(id, d).as_slice())?
                .is_some()
            {
                roots.push(*d);
            }
        }
        let needed = self.closure(id, roots)?;
        let mut deleted_tags = Vec::new();
        let mut candidates = Vec::new();
        for (i, t) in tags.iter().enumerate() {
            if !keep.contains(&i) {
                deleted_tags.push((t.tag.clone(), t.digest));
                candidates.push(t.digest);
            }
        }
        // Untagged manifests old enough, when the rule says so.
        if let Some(after) = rule.untagged_after {
            let tagged: HashSet<Digest> = tags.iter().map(|t| t.digest).collect();
            let (lo, hi) = keys::member_range(id);
            let members = &self.t.members;
            let mut untagged = Vec::new();
            for e in members.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
                let (k, v) = e?;
                if v.value() != MEMBER_MANIFEST {
                    continue;
                }
                self.examined += 1;
                let d = keys::member_digest(k.value())?;
                if !tagged.contains(&d) && !needed.contains(&d) {
                    untagged.push(d);
                }
            }
            for d in untagged {
                let old = self
                    .record(&d)?
                    .is_some_and(|r| self.now.saturating_sub(r.created_ms) >= after);
                if old {
                    candidates.push(d);
                }
            }
        }
        // What goes: the candidates and what only they needed.
        let going = self.closure(id, candidates)?;
        let mut deleted_manifests: Vec<Digest> =
            going.into_iter().filter(|d| !needed.contains(d)).collect();
        deleted_manifests.sort();
        Ok(RepoRetention {
            repository: repo.to_string(),
            kept_tags: keep.len() as u64,
            deleted_tags,
            deleted_manifests,
        })
    }
}

impl Store {
    /// Runs a retention policy (see [`RetentionPolicy`]): plans on one
    /// snapshot, then, unless `opts.dry_run`, applies the plan in small
    /// writer jobs. The report says what went, and what the store gets
    /// back: the bytes of manifests no repository holds any more, and of
    /// the blobs the next GC frees; what goes from a repository but stays
    /// in the store is counted apart, never as freed.
    pub fn retention(
        &self,
        policy: &RetentionPolicy,
        opts: &RetentionOptions,
    ) -> Result<RetentionReport> {
        // On a thread of its own at GC's priority: the plan's point
        // lookups hold a core for seconds (25 s at 1M), and at the
        // caller's priority they took writers' p99 past GC's. The apply
        // runs on the writer thread either way.
        std::thread::scope(|s| {
            s.spawn(|| {
                super::lower_thread_priority();
                self.retention_now(policy, opts)
            })
            .join()
            .map_err(|_| Error::Internal("the retention thread panicked".into()))?
        })
    }

    fn retention_now(
        &self,
        policy: &RetentionPolicy,
        opts: &RetentionOptions,
    ) -> Result<RetentionReport> {
        let rules = compile(policy)?;
        let started = Instant::now();
        let txn = tables::begin_read(&self.db)?;
        let now = self.shared.now_ms();
        let mut protected: HashSet<Digest> = HashSet::new();
        let items = txn.open_table(LEASE_ITEMS)?;
        for l in live_leases(&txn, now)? {
            let (lo, hi) = lease_range(l.id);
            for e in items.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
                protected.insert(keys::member_digest(e?.0.value())?);
            }
        }
        if !opts.undelete_window.is_zero() {
            let since = now.saturating_sub(ms(opts.undelete_window));
            protected.extend(crate::index::history::window_targets(&txn, since)?);
        }
        let mut artifact_types = HashMap::new();
        for e in txn.open_table(ARTIFACT_TYPES)?.iter()? {
            let (k, v) = e?;
            artifact_types.insert(v.value(), k.value().to_string());
        }
        let mut planner = Planner {
            t: Tables::open(&txn)?,
            now,
            artifact_types,
            protected,
            examined: 0,
        };
        let mut report = RetentionReport {
            dry_run: opts.dry_run,
            ..RetentionReport::default()
        };
        let mut plans: Vec<(u64, RepoRetention)> = Vec::new();
        let mut named = Vec::new();
        for e in txn.open_table(REPOS)?.iter()? {
            let (k, v) = e?;
            let repo = k.value().to_string();
            if let Some(rule) = rules.iter().find(|r| r.names(&repo)) {
                named.push((repo, v.value(), rule));
            }
        }
        for (repo, id, rule) in named {
            let plan = planner.plan_repo(&repo, id, rule)?;
            if !plan.deleted_tags.is_empty() || !plan.deleted_manifests.is_empty() {
                plans.push((id, plan));
            }
        }
        report.examined = planner.examined;
        // The tables go before the transaction they were opened in.
        drop(planner);
        self.freed(&txn, &plans, opts, now, &mut report)?;
        drop(txn);
        report.plan_ms = started.elapsed().as_millis() as u64;
        report.tags_deleted = plans.iter().map(|(_, p)| p.deleted_tags.len() as u64).sum();
        report.manifests_deleted = plans
            .iter()
            .map(|(_, p)| p.deleted_manifests.len() as u64)
            .sum();
        if !opts.dry_run {
            let applying = Instant::now();
            for (id, plan) in &plans {
                report.skipped += self.apply_plan(*id, plan)?;
            }
            report.apply_ms = applying.elapsed().as_millis() as u64;
        }
        report.repositories = plans.into_iter().map(|(_, p)| p).collect();
        Ok(report)
    }

    /// The bytes the plan frees, on the plan's snapshot.
    fn freed(
        &self,
        txn: &ReadTransaction,
        plans: &[(u64, RepoRetention)],
        opts: &RetentionOptions,
        now: u64,
        report: &mut RetentionReport,
    ) -> Result<()> {
        let member_of = txn.open_table(MEMBER_OF)?;
        let member_of_staged = txn.open_table(tables::MEMBER_OF_STAGED)?;
        let blobs = txn.open_table(tables::BLOBS)?;
        let edges_in = txn.open_table(EDGES_IN)?;
        let edges_in_staged = txn.open_table(tables::EDGES_IN_STAGED)?;
        let edges_out = txn.open_table(EDGES_OUT)?;
        let leased: HashSet<Digest> = {
            let items = txn.open_table(LEASE_ITEMS)?;
            let mut s = HashSet::new();
            for l in live_leases(txn, now)? {
                let (lo, hi) = lease_range(l.id);
                for e in items.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
                    s.insert(keys::member_digest(e?.0.value())?);
                }
            }
            s
        };
        let going: HashSet<(u64, Digest)> = plans
            .iter()
            .flat_map(|(id, p)| p.deleted_manifests.iter().map(|d| (*id, *d)))
            .collect();
        let size =
            |d: &Digest| -> Result<u64> { Ok(record::lookup(&blobs, d)?.map_or(0, |r| r.size)) };
        // Manifests whose every holder lets them go leave the store.
        let mut removed: HashSet<Digest> = HashSet::new();
        for &(_, d) in &going {
            let (lo, hi) = keys::member_of_range(&d);
            let all = reverse::all_in(&member_of, &member_of_staged, &lo, &hi, |k| {
                Ok(going.contains(&(keys::member_of_repo(k)?, d)))
            })?;
            if all {
                removed.insert(d);
            } else {
                report.kept_elsewhere_bytes += size(&d)?;
            }
        }
        for d in &removed {
            report.manifest_bytes += size(d)?;
        }
        // Their blobs: freed when every parent leaves, nothing leases
        // them, and they are past the grace period.
        let mut children: HashSet<Digest> = HashSet::new();
        for d in &removed {
            if let Some(v) = edges_out.get(d.to_key().as_slice())? {
                for (kind, child, _) in keys::decode_edges(d, v.value())? {
                    if kind != EdgeKind::Subject {
                        children.insert(child);
                    }
                }
            }
        }
        for c in children {
            let Some(rec) = record::lookup(&blobs, &c)? else {
                continue;
            };
            if rec.manifest {
                // A manifest child stays unless the plan removed it (every
                // manifest is a GC root).
                continue;
            }
            let (lo, hi) = keys::edge_in_range(&c);
            let orphaned = reverse::all_in(&edges_in, &edges_in_staged, &lo, &hi, |k| {
                let (_, parent, kind) = keys::split_edge_in(k)?;
                Ok(kind == EdgeKind::Subject || removed.contains(&parent))
            })?;
            let young = now.saturating_sub(rec.created_ms) < ms(opts.grace);
            if orphaned && !young && !leased.contains(&c) {
                report.blob_bytes += rec.size;
            } else {
                report.kept_elsewhere_bytes += rec.size;
            }
        }
        report.freed_bytes = report.manifest_bytes + report.blob_bytes;
        Ok(())
    }

    /// Applies one repository's plan in background writer jobs that yield
    /// to writers as the GC sweep does: each takes at most
    /// [`APPLY_BATCH`] steps and stops after the first as soon as a writer
    /// is waiting, and pauses between single steps while writers are
    /// busy. Returns the steps a writer overtook (skipped).
    fn apply_plan(&self, id: u64, plan: &RepoRetention) -> Result<u64> {
        use std::sync::atomic::Ordering;
        let steps: Vec<Step> = plan
            .deleted_tags
            .iter()
            .map(|(t, d)| Step::Untag(t.clone(), *d))
            .chain(plan.deleted_manifests.iter().map(|d| Step::Delete(*d)))
            .collect();
        let steps = std::sync::Arc::new(steps);
        let (mut at, mut skipped) = (0usize, 0u64);
        while at < steps.len() {
            // Writers first: while they are busy, one step at a time with a
            // pause between, so that few of their commits carry one.
            let busy = self.shared.foreground_within(WRITERS_BUSY);
            if busy {
                std::thread::sleep(BUSY_PAUSE);
            }
            let most = if busy { 1 } else { APPLY_BATCH };
            let (all, repo) = (std::sync::Arc::clone(&steps), plan.repository.clone());
            let from = at;
            let (done, skips) = self.submit_background(true, move |b| {
                let (mut i, mut skips) = (from, 0u64);
                while i < all.len() && i - from < most {
                    if i > from && b.shared.waiting.load(Ordering::Acquire) > 0 {
                        break;
                    }
                    if !apply_step(b, id, &repo, &all[i])? {
                        skips += 1;
                    }
                    i += 1;
                }
                Ok((i, skips))
            })?;
            at = done;
            skipped += skips;
        }
        Ok(skipped)
    }
}

/// One step of a retention plan.
enum Step {
    Untag(String, Digest),
    Delete(Digest),
}

/// Applies `step` if the store is still as the plan saw it; false when a
/// writer overtook it (the tag moved, the manifest was tagged or left).
fn apply_step(b: &mut crate::engine::Batch<'_>, id: u64, repo: &str, step: &Step) -> Result<bool> {
    match step {
        Step::Untag(tag, d) => {
            let now_at =
                b.t.tags
                    .get(keys::tag(id, tag).as_slice())?
                    .map(|g| Digest::from_key(g.value()))
                    .transpose()?;
            if now_at != Some(*d) {
                return Ok(false);
            }
            let change = TagChange::new(TagCause::Untagged, Some("retention"));
            crate::index::tags::remove_tag(b, id, repo, tag, change)?;
        }
        Step::Delete(d) => {
            let still =
                b.t.members
                    .get(keys::member(id, d).as_slice())?
                    .map(|g| g.value())
                    == Some(MEMBER_MANIFEST);
            if !still || !crate::index::tags::tags_of(b, id, d)?.is_empty() {
                return Ok(false);
            }
            crate::index::remove::remove_manifest_from(b, id, d)?;
            let mut ev = crate::index::events::event(EventKind::ManifestDeleted, id, Some(d));
            ev.detail = "retention".into();
            crate::index::events::emit(b, ev)?;
        }
    }
    Ok(true)
}

/// The most pulls one [`Store::record_pulls`] call takes.
pub const MAX_PULLS_PER_CALL: usize = 65_536;

impl Store {
    /// Records when manifests were pulled, `(repository, digest, ms)`, for
    /// the pull-based retention rules: one non-durable writer job for the
    /// batch (a crash may forget the last batch; a pull is a hint, not a
    /// write anyone was promised). A repository or manifest that does not
    /// exist is skipped, and a time never goes back.
    pub fn record_pulls(&self, pulls: Vec<(String, Digest, u64)>) -> Result<()> {
        if pulls.len() > MAX_PULLS_PER_CALL {
            return Err(Error::InvalidArgument {
                value: pulls.len().to_string(),
                expected: format!("at most {MAX_PULLS_PER_CALL} pulls a call"),
            });
        }
        if pulls.is_empty() {
            return Ok(());
        }
        self.submit(false, move |b| {
            for (repo, d, at) in &pulls {
                let Some((id, MEMBER_MANIFEST)) = crate::index::repos::member_kind(b, repo, d)?
                else {
                    continue;
                };
                let key = keys::member(id, d);
                let old = b.t.pulls.get(key.as_slice())?.map(|g| g.value());
                if old.is_none_or(|o| *at > o) {
                    b.t.pulls.insert(key.as_slice(), *at)?;
                }
            }
            Ok(())
        })
    }
}
