//! Format v2 candidates, measured on the same generated manifests in one
//! run: how big each index layout is, how fast it ingests, and how fast it
//! answers a referrers query (k = 1) and a stat. ocidb's current format
//! (v1) is measured through the real `Store` beside them.
//!
//! `cargo run --release -p ocidb-bench --example index_layouts -- [MANIFESTS] [LAYOUTS]`
//! (default 100,000; seed 1, the harness's generator). LAYOUTS is a
//! comma-separated subset of
//! `store,v1,compact,sorted,ids,folded,bodies,appended,staged,staged-edges`
//! (all by default). Every layout, the Store's included, gets the page
//! cache `OCIDB_CACHE_MIB` sets, else the Store's default (256 MiB).
//!
//! Every candidate stores what v1 stores (the body inline, a record, the
//! forward and reverse edges, referrers with their descriptor, repository
//! membership both ways, tags both ways) and commits each batch of 10k
//! durably. They differ in keys and values:
//!
//! - `v1 keys`: v1's 65-byte keys and JSON values, written by this same
//!   code: the candidates' baseline without the Store's machinery (writer
//!   thread, counters, GC bookkeeping), which the v1 row includes.
//! - `compact`: digest keys of 1 + 32 bytes (no padding to sha512's width);
//!   edge lists and referrer descriptors in a binary encoding with interned
//!   media and artifact types, not JSON.
//! - `compact+sorted`: the same, each batch's inserts sorted per table.
//! - `ids`: one `digest -> id` table; every other table keyed by u64 ids
//!   handed out in order, so a new manifest's own rows are appends. The
//!   referrer row carries the referrer's digest, so a listing needs no
//!   `id -> digest` lookups. Sorted per table too.
//! - `folded`: `compact+sorted` with two of its random-key tables folded
//!   into the node row (issue 31's proposal): the record, the edge list
//!   and the repositories holding it sit beside the body in one row, so
//!   `edges_out` and `member_of` are gone. Sorted per table.
//! - `bodies`: `compact+sorted`, with the body moved out of the record into
//!   a `bodies` table keyed by a u64 handed out in order (the record holds
//!   it): the smallest format change that makes bodies appends.
//! - `appended`: `folded`, with the body moved out of the node row into a
//!   `bodies` table keyed by a u64 handed out in order (the node row holds
//!   it), so bodies are appends and the random-key node tree holds only
//!   the small rows. A read of the bytes pays one more lookup. A digest
//!   ingested twice gets a second body (the loop looks nothing up), which
//!   counts against this candidate's size and time.
//! - `staged`: `bodies`, with the two key-only reverse sets (`edges_in`,
//!   `member_of`) inserted into small staging trees of the same keys, and
//!   the staged rows merged into the main trees, in key order, every
//!   `OCIDB_STAGE_BATCHES` batches (8 by default). A random insert into a
//!   small tree shares its leaf with many others; the merge then visits
//!   each main leaf once for several batches' rows. A read of either set
//!   looks in both trees.
//! - `staged-edges`: `staged`, with each manifest's edge list stored in
//!   its body row (under the body's appended id) instead of `edges_out`:
//!   one random-key tree fewer.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use ocidb::manifest::{classify, Descriptor, EdgeKind, ParserRegistry};
use ocidb::Digest;
use ocidb_bench::synth::{GenManifest, GenSpec, Generator};
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("nodes");
const EDGES_OUT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("edges_out");
const EDGES_IN: TableDefinition<&[u8], ()> = TableDefinition::new("edges_in");
const REFERRERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("referrers");
const MEMBERS: TableDefinition<&[u8], u8> = TableDefinition::new("members");
const MEMBER_OF: TableDefinition<&[u8], ()> = TableDefinition::new("member_of");
const TAGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tags");
const TAGGED: TableDefinition<&[u8], ()> = TableDefinition::new("tagged");
const IDS: TableDefinition<&[u8], u64> = TableDefinition::new("ids");
const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
const STRINGS: TableDefinition<&str, u32> = TableDefinition::new("strings");
const EDGES_IN_STAGED: TableDefinition<&[u8], ()> = TableDefinition::new("edges_in_staged");
const MEMBER_OF_STAGED: TableDefinition<&[u8], ()> = TableDefinition::new("member_of_staged");

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    V1Keys,
    Compact,
    CompactSorted,
    Ids,
    Folded,
    Bodies,
    Appended,
    Staged,
    StagedEdges,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::V1Keys => "v1's keys and JSON values, without Store (isolates the layout)",
            Layout::Compact => "compact keys, binary values",
            Layout::CompactSorted => "compact keys, binary values, sorted batches",
            Layout::Ids => "u64 ids, binary values, sorted batches",
            Layout::Folded => {
                "compact keys, record + edges out + repositories + body in one row, sorted batches"
            }
            Layout::Bodies => {
                "compact keys, sorted batches, bodies in a table keyed by an id handed out in order"
            }
            Layout::Appended => {
                "folded, bodies in a table keyed by an id handed out in order, sorted batches"
            }
            Layout::Staged => "bodies, edges_in and member_of staged and merged in key order",
            Layout::StagedEdges => "staged, the edge list in the body row (no edges_out)",
        }
    }

    /// The record, edge list and repositories share one node row.
    fn folds(self) -> bool {
        matches!(self, Layout::Folded | Layout::Appended)
    }

    fn appends_bodies(self) -> bool {
        matches!(
            self,
            Layout::Bodies | Layout::Appended | Layout::Staged | Layout::StagedEdges
        )
    }

    /// `edges_in` and `member_of` go through staging trees.
    fn stages(self) -> bool {
        matches!(self, Layout::Staged | Layout::StagedEdges)
    }

    fn key(self) -> &'static str {
        match self {
            Layout::V1Keys => "v1",
            Layout::Compact => "compact",
            Layout::CompactSorted => "sorted",
            Layout::Ids => "ids",
            Layout::Folded => "folded",
            Layout::Bodies => "bodies",
            Layout::Appended => "appended",
            Layout::Staged => "staged",
            Layout::StagedEdges => "staged-edges",
        }
    }
}

/// Format 1's digest key: the tag and the hash, zero-padded to 65 bytes.
fn v1key(d: &Digest) -> Vec<u8> {
    let mut k = d.to_key().to_vec();
    k.resize(65, 0);
    k
}

fn dkey(d: &Digest) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(d.to_key()[0]);
    k.extend_from_slice(d.hash_bytes());
    k
}

fn varint(v: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        v.push((x as u8) | 0x80);
        x >>= 7;
    }
    v.push(x as u8);
}

fn read_varint(b: &[u8], i: &mut usize) -> u64 {
    let (mut x, mut shift) = (0u64, 0);
    while *i < b.len() {
        let c = b[*i];
        *i += 1;
        x |= u64::from(c & 0x7f) << shift;
        if c < 0x80 {
            break;
        }
        shift += 7;
    }
    x
}

/// The folded node row's tail: the edge list, length-prefixed (empty for
/// a blob or an opaque manifest), then the body.
fn fold_into(rec: &mut Vec<u8>, adj: &[u8], body: &[u8]) {
    varint(rec, adj.len() as u64);
    rec.extend_from_slice(adj);
    rec.extend_from_slice(body);
}

fn kind_code(k: EdgeKind) -> u8 {
    match k {
        EdgeKind::Config => 0,
        EdgeKind::Layer => 1,
        EdgeKind::Manifest => 2,
        EdgeKind::Blob => 3,
        EdgeKind::Subject => 4,
    }
}

/// The rows one batch writes, per table, before they are inserted.
#[derive(Default)]
struct Rows {
    nodes: Vec<(Vec<u8>, Vec<u8>)>,
    edges_out: Vec<(Vec<u8>, Vec<u8>)>,
    edges_in: Vec<Vec<u8>>,
    referrers: Vec<(Vec<u8>, Vec<u8>)>,
    members: Vec<(Vec<u8>, u8)>,
    member_of: Vec<Vec<u8>>,
    tags: Vec<(Vec<u8>, Vec<u8>)>,
    tagged: Vec<Vec<u8>>,
    ids: Vec<(Vec<u8>, u64)>,
    bodies: Vec<(u64, Vec<u8>)>,
}

struct Candidate {
    layout: Layout,
    db: Database,
    strings: HashMap<String, u32>,
    new_strings: Vec<(String, u32)>,
    repos: HashMap<String, u64>,
    ids: HashMap<Vec<u8>, u64>,
    next_id: u64,
    next_body: u64,
    /// Batches since the staged rows were last merged.
    staged_batches: u32,
    /// Batches between merges (`OCIDB_STAGE_BATCHES`, 8).
    stage_every: u32,
}

impl Candidate {
    fn create(layout: Layout, path: &Path) -> Res<Candidate> {
        let _ = std::fs::remove_file(path);
        Ok(Candidate {
            layout,
            // The Store's page cache, not redb's larger default: at 1M
            // manifests the file is ten times the cache, and a candidate
            // with four times the Store's cache is measured against its
            // cache. `OCIDB_CACHE_MIB` moves every layout's at once.
            db: Database::builder()
                .set_cache_size(cache_bytes()?)
                .create(path)?,
            strings: HashMap::new(),
            new_strings: Vec::new(),
            repos: HashMap::new(),
            ids: HashMap::new(),
            next_id: 1,
            next_body: 1,
            staged_batches: 0,
            stage_every: std::env::var("OCIDB_STAGE_BATCHES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(8),
        })
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.strings.get(s) {
            return *id;
        }
        let id = self.strings.len() as u32 + 1;
        self.strings.insert(s.to_string(), id);
        self.new_strings.push((s.to_string(), id));
        id
    }

    /// The key of a digest in this layout: its bytes, or its id (handed out
    /// on first sight, recorded in `ids`).
    fn node(&mut self, d: &Digest, rows: &mut Rows) -> Vec<u8> {
        if self.layout == Layout::V1Keys {
            return v1key(d);
        }
        let k = dkey(d);
        if self.layout != Layout::Ids {
            return k;
        }
        if let Some(id) = self.ids.get(&k) {
            return id.to_be_bytes().to_vec();
        }
        let id = self.next_id;
        self.next_id += 1;
        self.ids.insert(k.clone(), id);
        rows.ids.push((k, id));
        id.to_be_bytes().to_vec()
    }

    fn ingest(&mut self, batch: &[GenManifest], parsers: &ParserRegistry) -> Res<()> {
        let mut rows = Rows::default();
        for m in batch {
            let (mt, parsed) = classify(parsers, Some(m.media_type), &m.body)?;
            let own = self.node(&m.digest, &mut rows);
            let repo = match self.repos.get(&m.repo) {
                Some(r) => *r,
                None => {
                    let r = self.repos.len() as u64 + 1;
                    self.repos.insert(m.repo.clone(), r);
                    r
                }
            };
            let mt_id = self.intern(mt.as_deref().unwrap_or(""));
            let at = parsed.as_ref().and_then(|p| p.artifact_type.clone());
            let at_id = self.intern(at.as_deref().unwrap_or(""));
            // Record: size, created, media type id, artifact type id, then
            // the body (inline), and in the id layout the digest.
            let mut rec = Vec::with_capacity(m.body.len() + 64);
            varint(&mut rec, m.body.len() as u64);
            rec.extend_from_slice(&1_700_000_000_000u64.to_le_bytes());
            varint(&mut rec, u64::from(mt_id));
            varint(&mut rec, u64::from(at_id));
            if self.layout == Layout::Ids {
                rec.extend_from_slice(&dkey(&m.digest));
            }
            let folded = self.layout.folds();
            // In the layouts with appended bodies the record carries the
            // body's id and the body goes to its own table; the row then
            // holds none.
            let body: &[u8] = if self.layout.appends_bodies() {
                let id = self.next_body;
                self.next_body += 1;
                rows.bodies.push((id, m.body.clone()));
                varint(&mut rec, id);
                &[]
            } else {
                &m.body
            };
            if !folded {
                rec.extend_from_slice(body);
            }
            let mut member = repo.to_be_bytes().to_vec();
            member.extend_from_slice(&own);
            rows.members.push((member, 0));
            if folded {
                // The repositories holding it: a count and their ids.
                varint(&mut rec, 1);
                varint(&mut rec, repo);
            } else {
                let mut of = own.clone();
                of.extend_from_slice(&repo.to_be_bytes());
                rows.member_of.push(of);
            }
            for t in &m.tags {
                let mut k = repo.to_be_bytes().to_vec();
                k.extend_from_slice(t.as_bytes());
                rows.tags.push((k, own.clone()));
                let mut k = repo.to_be_bytes().to_vec();
                k.extend_from_slice(&own);
                k.extend_from_slice(t.as_bytes());
                rows.tagged.push(k);
            }
            let Some(parsed) = parsed else {
                if folded {
                    fold_into(&mut rec, &[], body);
                }
                rows.nodes.push((own.clone(), rec));
                continue;
            };
            let mut adj = Vec::new();
            let subject = parsed
                .subject
                .as_ref()
                .map(|s| (EdgeKind::Subject, s.clone()));
            if self.layout == Layout::V1Keys {
                let list: Vec<(u8, &Descriptor)> = parsed
                    .children
                    .iter()
                    .map(|(k, d)| (kind_code(*k), d))
                    .chain(parsed.subject.iter().map(|d| (4, d)))
                    .collect();
                adj = serde_json::to_vec(&list)?;
            }
            for (kind, child) in parsed.children.iter().cloned().chain(subject) {
                let ck = self.node(&child.digest, &mut rows);
                if self.layout != Layout::V1Keys {
                    adj.push(kind_code(kind));
                    adj.extend_from_slice(&ck);
                    varint(&mut adj, child.size);
                    let cmt = self.intern(&child.media_type);
                    varint(&mut adj, u64::from(cmt));
                }
                let mut e = ck.clone();
                e.extend_from_slice(&own);
                e.push(kind_code(kind));
                rows.edges_in.push(e);
            }
            if folded {
                fold_into(&mut rec, &adj, body);
            } else if self.layout == Layout::StagedEdges {
                // The body row of this manifest (pushed above): the edge
                // list, length-prefixed, before the body.
                if let Some((_, row)) = rows.bodies.last_mut() {
                    let mut v = Vec::with_capacity(adj.len() + row.len() + 4);
                    varint(&mut v, adj.len() as u64);
                    v.extend_from_slice(&adj);
                    v.extend_from_slice(row);
                    *row = v;
                }
            } else {
                rows.edges_out.push((own.clone(), adj));
            }
            rows.nodes.push((own.clone(), rec));
            if let Some(s) = &parsed.subject {
                let sk = self.node(&s.digest, &mut rows);
                let mut k = repo.to_be_bytes().to_vec();
                k.extend_from_slice(&sk);
                k.extend_from_slice(&at_id.to_be_bytes());
                k.extend_from_slice(&own);
                // The descriptor: media type id, size, annotations as JSON
                // (rare and free-form), and in the id layout the digest.
                let mut v = Vec::new();
                if self.layout == Layout::V1Keys {
                    let mut d = Descriptor::new(
                        mt.clone().unwrap_or_default(),
                        m.digest,
                        m.body.len() as u64,
                    );
                    d.artifact_type = at.clone();
                    d.annotations = parsed.annotations.clone();
                    v = serde_json::to_vec(&d)?;
                } else {
                    varint(&mut v, u64::from(mt_id));
                    varint(&mut v, m.body.len() as u64);
                }
                if self.layout == Layout::Ids {
                    v.extend_from_slice(&dkey(&m.digest));
                }
                if self.layout != Layout::V1Keys
                    && let Some(a) = &parsed.annotations
                {
                    v.extend_from_slice(&serde_json::to_vec(a)?);
                }
                rows.referrers.push((k, v));
            }
        }
        if matches!(
            self.layout,
            Layout::CompactSorted
                | Layout::Ids
                | Layout::Folded
                | Layout::Bodies
                | Layout::Appended
                | Layout::Staged
                | Layout::StagedEdges
        ) {
            rows.nodes.sort();
            rows.edges_out.sort();
            rows.edges_in.sort();
            rows.referrers.sort();
            rows.members.sort();
            rows.member_of.sort();
            rows.tags.sort();
            rows.tagged.sort();
            rows.ids.sort();
        }
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(IDS)?;
            for (k, v) in &rows.ids {
                t.insert(k.as_slice(), *v)?;
            }
            let mut t = txn.open_table(STRINGS)?;
            for (s, id) in self.new_strings.drain(..) {
                t.insert(s.as_str(), id)?;
            }
            let mut t = txn.open_table(BODIES)?;
            for (k, v) in &rows.bodies {
                t.insert(*k, v.as_slice())?;
            }
            let mut t = txn.open_table(NODES)?;
            for (k, v) in &rows.nodes {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            let mut t = txn.open_table(EDGES_OUT)?;
            for (k, v) in &rows.edges_out {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            let staged = self.layout.stages();
            let mut t = txn.open_table(if staged { EDGES_IN_STAGED } else { EDGES_IN })?;
            for k in &rows.edges_in {
                t.insert(k.as_slice(), ())?;
            }
            let mut t = txn.open_table(REFERRERS)?;
            for (k, v) in &rows.referrers {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            let mut t = txn.open_table(MEMBERS)?;
            for (k, v) in &rows.members {
                t.insert(k.as_slice(), *v)?;
            }
            let mut t = txn.open_table(if staged { MEMBER_OF_STAGED } else { MEMBER_OF })?;
            for k in &rows.member_of {
                t.insert(k.as_slice(), ())?;
            }
            let mut t = txn.open_table(TAGS)?;
            for (k, v) in &rows.tags {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            let mut t = txn.open_table(TAGGED)?;
            for k in &rows.tagged {
                t.insert(k.as_slice(), ())?;
            }
        }
        if self.layout.stages() {
            self.staged_batches += 1;
            if self.staged_batches >= self.stage_every {
                self.staged_batches = 0;
                merge_staged(&txn, EDGES_IN_STAGED, EDGES_IN)?;
                merge_staged(&txn, MEMBER_OF_STAGED, MEMBER_OF)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Referrers of `subject` in `repo` as descriptors (decoded, as a
    /// listing must).
    fn referrers(&self, names: &[String], repo: &str, subject: &Digest) -> Res<Vec<Descriptor>> {
        let txn = self.db.begin_read()?;
        let sk = match self.layout {
            Layout::Ids => {
                let ids = txn.open_table(IDS)?;
                match ids.get(dkey(subject).as_slice())? {
                    Some(id) => id.value().to_be_bytes().to_vec(),
                    None => return Ok(Vec::new()),
                }
            }
            Layout::V1Keys => v1key(subject),
            _ => dkey(subject),
        };
        let Some(repo) = self.repos.get(repo) else {
            return Ok(Vec::new());
        };
        let mut lo = repo.to_be_bytes().to_vec();
        lo.extend_from_slice(&sk);
        let mut hi = lo.clone();
        hi.extend_from_slice(&[0xff; 48]);
        let t = txn.open_table(REFERRERS)?;
        let mut out = Vec::new();
        for entry in t.range(lo.as_slice()..hi.as_slice())? {
            let (k, v) = entry?;
            let (k, v) = (k.value(), v.value());
            if self.layout == Layout::V1Keys {
                out.push(serde_json::from_slice(v)?);
                continue;
            }
            let at = u32::from_be_bytes(k[8 + sk.len()..12 + sk.len()].try_into()?);
            let mut i = 0;
            let mt = read_varint(v, &mut i) as usize;
            let size = read_varint(v, &mut i);
            let digest_key = match self.layout {
                Layout::Ids => {
                    let d = &v[i..i + 33];
                    i += 33;
                    d
                }
                _ => &k[12 + sk.len()..],
            };
            let annotations: Option<BTreeMap<String, String>> = (i < v.len())
                .then(|| serde_json::from_slice(&v[i..]))
                .transpose()?;
            let mut d = Descriptor::new(names[mt].clone(), Digest::from_key(digest_key)?, size);
            d.artifact_type = (at != 0).then(|| names[at as usize].clone());
            d.annotations = annotations;
            out.push(d);
        }
        Ok(out)
    }

    fn stat(&self, d: &Digest) -> Res<u64> {
        let txn = self.db.begin_read()?;
        let key = match self.layout {
            Layout::Ids => {
                let ids = txn.open_table(IDS)?;
                let Some(id) = ids.get(dkey(d).as_slice())? else {
                    return Err("missing".into());
                };
                id.value().to_be_bytes().to_vec()
            }
            Layout::V1Keys => v1key(d),
            _ => dkey(d),
        };
        let t = txn.open_table(NODES)?;
        let v = t.get(key.as_slice())?.ok_or("missing")?;
        let mut i = 0;
        Ok(read_varint(v.value(), &mut i))
    }

    /// The body's bytes of a digest, copied out (a blob GET of a manifest).
    /// Only the layouts that fold or append bodies (`folds` or `appends_bodies`).
    fn get(&self, d: &Digest) -> Res<usize> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(NODES)?;
        let v = t.get(dkey(d).as_slice())?.ok_or("missing")?;
        let v = v.value();
        let mut i = 0;
        read_varint(v, &mut i);
        i += 8;
        read_varint(v, &mut i);
        read_varint(v, &mut i);
        let body_id = self.layout.appends_bodies().then(|| read_varint(v, &mut i));
        if self.layout.folds() {
            let repos = read_varint(v, &mut i);
            for _ in 0..repos {
                read_varint(v, &mut i);
            }
            let adj = read_varint(v, &mut i) as usize;
            i += adj;
        }
        let Some(id) = body_id else {
            return Ok(v[i..].to_vec().len());
        };
        let b = txn.open_table(BODIES)?;
        let body = b.get(id)?.ok_or("missing body")?;
        let v = body.value();
        let mut i = 0;
        if self.layout == Layout::StagedEdges {
            let adj = read_varint(v, &mut i) as usize;
            i += adj;
        }
        Ok(v[i..].to_vec().len())
    }

    /// How many rows name `d` as the child in the reverse set (both trees
    /// in a staged layout).
    fn predecessors(&self, d: &Digest) -> Res<usize> {
        let txn = self.db.begin_read()?;
        let lo = dkey(d);
        let mut hi = lo.clone();
        hi.extend_from_slice(&[0xff; 40]);
        let mut n = 0;
        let mut tables = vec![EDGES_IN];
        if self.layout.stages() {
            tables.push(EDGES_IN_STAGED);
        }
        for def in tables {
            let t = match txn.open_table(def) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            for e in t.range(lo.as_slice()..hi.as_slice())? {
                e?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn names(&self) -> Vec<String> {
        let mut v = vec![String::new(); self.strings.len() + 1];
        for (s, id) in &self.strings {
            v[*id as usize] = s.clone();
        }
        v
    }
}

/// The page cache every layout gets: `OCIDB_CACHE_MIB`, as the CLI reads
/// it, else the Store's default.
fn cache_bytes() -> Res<usize> {
    match std::env::var("OCIDB_CACHE_MIB") {
        Ok(mib) => Ok(mib.parse::<usize>()? << 20),
        Err(_) => Ok(ocidb::StoreOptions::default().cache_size),
    }
}

/// The Store's stat of each of `stats` and read of each of `gets`, timed
/// one by one.
fn store_stat_get(
    store: &ocidb::Store,
    stats: &[Digest],
    gets: &[Digest],
) -> Res<(Vec<Duration>, Vec<Duration>)> {
    let mut st = Vec::new();
    for d in stats {
        let t = Instant::now();
        store.stat(d)?;
        st.push(t.elapsed());
    }
    let mut get = Vec::new();
    for d in gets {
        let t = Instant::now();
        let len = store.read(d)?.len();
        get.push(t.elapsed());
        assert!(len > 0, "the Store's body of {d}");
    }
    Ok((st, get))
}

fn p50(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn main() -> Res<()> {
    let n: u64 = std::env::args().nth(1).map_or(Ok(100_000), |a| a.parse())?;
    let only: Option<Vec<String>> = std::env::args()
        .nth(2)
        .map(|a| a.split(',').map(str::to_string).collect());
    let wanted = |k: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == k));
    let work = std::env::temp_dir().join(format!("index-layouts-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let spec = GenSpec::sized(n, 1);
    let parsers = ParserRegistry::default();
    // The queries: subjects with exactly one referrer, and manifests to stat.
    let mut subjects: HashMap<Digest, (String, usize)> = HashMap::new();
    let mut all: Vec<Digest> = Vec::new();
    let mut manifest_bytes = 0u64;
    let mut g = Generator::new(spec.clone());
    while let Some(batch) = g.next_batch(10_000) {
        for m in &batch {
            all.push(m.digest);
            manifest_bytes += m.body.len() as u64;
            if let (_, Some(p)) = classify(&parsers, Some(m.media_type), &m.body)?
                && let Some(s) = p.subject
            {
                subjects.entry(s.digest).or_insert((m.repo.clone(), 0)).1 += 1;
            }
        }
    }
    let popular = g.landmarks.popular_layer;
    let mut one: Vec<(Digest, String)> = subjects
        .into_iter()
        .filter(|(_, (_, k))| *k == 1)
        .map(|(d, (r, _))| (d, r))
        .collect();
    one.sort_by_key(|(d, _)| *d);
    one.truncate(2_000);
    let step = (all.len() / 5_000).max(1);
    let stats: Vec<Digest> = all.iter().step_by(step).copied().collect();
    // Gets read other digests than the stats: a stat of the same digest
    // first would have brought the node row's pages into the cache.
    let gets: Vec<Digest> = all.iter().skip(step / 2).step_by(step).copied().collect();
    println!(
        "{} manifests, {:.1} MiB of manifest bytes; referrers k = 1 over {} subjects, stat over {} digests",
        all.len(),
        manifest_bytes as f64 / f64::from(1 << 20),
        one.len(),
        stats.len()
    );
    println!();
    println!("| layout | ingest (manifests/s) | size (MiB) | bytes per manifest | × manifest bytes | referrers k = 1, p50 (µs) | stat p50 (µs) |");
    println!("|---|---|---|---|---|---|---|");

    // The real store, through the same batches.
    if wanted("store") {
        let dir = work.join("v1");
        let opts = ocidb::StoreOptions::default().cache_size(cache_bytes()?);
        let store = ocidb::Store::open_with(&dir, opts.clone(), true)?;
        // The store's batch calls alone, as the loops below time their
        // inserts alone (generating the content is left out of both).
        let g = ocidb_bench::synth::generate_into_store(&store, &spec, 10_000, |_| {})?;
        let rate = n as f64 / g.seconds;
        let q = ocidb::ReferrersQuery::default();
        let mut lat = Vec::new();
        for (d, r) in &one {
            let t = Instant::now();
            let page = store.referrers(r, d, &q)?;
            lat.push(t.elapsed());
            assert_eq!(page.index.manifests.len(), 1, "v1 referrers of {d}");
        }
        let (st, lat_get) = store_stat_get(&store, &stats, &gets)?;
        println!("  (store: get p50 {:.2} µs)", p50(lat_get));
        drop(store);
        // Again from a store just opened: its page cache holds nothing, so
        // neither layout profits from what the ingest happened to leave
        // cached (random inserts touch most leaves of a tree; appends only
        // its last). The operating system's cache is warm for both.
        let store = ocidb::Store::open_with(&dir, opts, false)?;
        let (st_cold, lat_get) = store_stat_get(&store, &stats, &gets)?;
        println!(
            "  (store reopened: stat p50 {:.2} µs, get p50 {:.2} µs)",
            p50(st_cold),
            p50(lat_get)
        );
        drop(store);
        let size = std::fs::metadata(dir.join("ocidb.redb"))?.len();
        row(
            "the Store as built (this build's format: docs/format.md)",
            rate,
            size,
            all.len(),
            manifest_bytes,
            p50(lat),
            p50(st),
        );
    }
    for layout in [
        Layout::V1Keys,
        Layout::Compact,
        Layout::CompactSorted,
        Layout::Ids,
        Layout::Folded,
        Layout::Bodies,
        Layout::Appended,
        Layout::Staged,
        Layout::StagedEdges,
    ] {
        if !wanted(layout.key()) {
            continue;
        }
        let path = work.join("candidate.redb");
        let mut c = Candidate::create(layout, &path)?;
        let mut g = Generator::new(spec.clone());
        let mut spent = Duration::ZERO;
        while let Some(batch) = g.next_batch(10_000) {
            let t = Instant::now();
            c.ingest(&batch, &parsers)?;
            spent += t.elapsed();
        }
        let rate = n as f64 / spent.as_secs_f64();
        let names = c.names();
        let mut lat = Vec::new();
        for (d, r) in &one {
            let t = Instant::now();
            let got = c.referrers(&names, r, d)?;
            lat.push(t.elapsed());
            assert_eq!(got.len(), 1, "{} referrers of {d}", layout.name());
        }
        let mut st = Vec::new();
        for d in &stats {
            let t = Instant::now();
            c.stat(d)?;
            st.push(t.elapsed());
        }
        if matches!(
            layout,
            Layout::Bodies | Layout::Staged | Layout::StagedEdges
        ) {
            // Predecessors: of each subject above (one referrer: a probe
            // that finds one row), and of the most shared base layer (a
            // long scan). A staged layout reads both trees.
            let mut small = Vec::new();
            for (d, _) in &one {
                let t = Instant::now();
                let got = c.predecessors(d)?;
                small.push(t.elapsed());
                assert_eq!(got, 1, "{} predecessors of {d}", layout.name());
            }
            let popular = popular.ok_or("the generator made no base layer")?;
            let mut large = Vec::new();
            let mut parents = 0;
            for _ in 0..20 {
                let t = Instant::now();
                parents = c.predecessors(&popular)?;
                large.push(t.elapsed());
            }
            println!(
                "  ({}: predecessors p50 {:.2} µs with one parent, {:.0} µs with {parents})",
                layout.key(),
                p50(small),
                p50(large)
            );
        }
        if layout.folds() || layout.appends_bodies() {
            let mut lat = Vec::new();
            for d in &gets {
                let t = Instant::now();
                let len = c.get(d)?;
                lat.push(t.elapsed());
                assert!(len > 0, "{} body of {d}", layout.name());
            }
            println!("  ({}: get p50 {:.2} µs)", layout.key(), p50(lat));
        }
        drop(c);
        let size = std::fs::metadata(&path)?.len();
        row(
            layout.name(),
            rate,
            size,
            all.len(),
            manifest_bytes,
            p50(lat),
            p50(st),
        );
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Moves every staged row into the main tree, in key order, and empties
/// the staging tree.
fn merge_staged(
    txn: &redb::WriteTransaction,
    staging: TableDefinition<&[u8], ()>,
    main: TableDefinition<&[u8], ()>,
) -> Res<()> {
    let mut from = txn.open_table(staging)?;
    let mut to = txn.open_table(main)?;
    for e in from.iter()? {
        let (k, _) = e?;
        to.insert(k.value(), ())?;
    }
    from.retain(|_, _| false)?;
    Ok(())
}

fn row(name: &str, rate: f64, size: u64, n: usize, manifest_bytes: u64, refs: f64, stat: f64) {
    println!(
        "| {name} | {rate:.0} | {:.1} | {:.0} | {:.2}× | {refs:.2} | {stat:.2} |",
        size as f64 / f64::from(1 << 20),
        size as f64 / n as f64,
        size as f64 / manifest_bytes as f64,
    );
}
