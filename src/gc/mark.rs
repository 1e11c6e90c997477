//! The GC mark: which records no root reaches, as of a read snapshot, and
//! the order to delete them in.
//!
//! The mark reads whole tables front to back and does no B-tree lookups:
//! the records, the roots, and the reverse-edge table, whose fixed-width
//! keys hold every edge (children and subjects) with no value to decode
//! (fsck checks that it mirrors the forward edges). It builds the liveness
//! graph in memory, a dense id per digest and the edges in compressed rows,
//! and walks it there, instead of walking the B-trees from the roots with
//! two lookups and a JSON decode per node (docs/benchmarks.md has the
//! before and after). Sequential reads also touch far fewer pages, which a
//! concurrent writer shares.

use std::collections::{HashMap, HashSet};

use redb::{ReadTransaction, ReadableTable as _, ReadableTableMetadata as _};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::oci::manifest::EdgeKind;
use crate::schema::keys::MEMBER_MANIFEST;
use crate::schema::record::RecordHeader;
use crate::schema::tables::{BLOBS, EDGES_IN, EDGES_IN_STAGED, LEASE_ITEMS, MEMBERS, TAGS};

/// A record the mark found unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub size: u64,
    pub manifest: bool,
}

/// What a mark found.
pub(crate) struct Marked {
    /// The unreachable records.
    pub dead: HashMap<Digest, Candidate>,
    /// `dead`'s digests, parents before children and subjects before
    /// referrers: once a node is deleted, nothing that could have rescued a
    /// later candidate is left to rescue it. Cycles (possible only with
    /// hand-made content) go last, in digest order.
    pub order: Vec<Digest>,
    /// How many records the snapshot holds.
    pub total: u64,
    /// How many live records only the undelete window's roots reach.
    pub kept_for_undelete: u64,
}

/// What decides liveness.
pub(crate) struct MarkRules {
    pub now_ms: u64,
    /// Records younger than this are roots.
    pub grace_ms: u64,
    /// When false, every manifest is a root.
    pub delete_untagged: bool,
    /// Live leases' ids.
    pub leases: Vec<u64>,
    /// The start of the undelete window: former tag targets named since
    /// then are roots.
    pub undelete_since_ms: Option<u64>,
}

/// A node's key in the mark: the algorithm tag and the first 15 bytes of
/// its digest, a quarter of a full digest key, so the mark's map holds 20
/// bytes per node and stays in cache longer. Two digests that share a key
/// are one node, which can only keep more alive, never less: a stored
/// record always owns its key (records are read first, and two records
/// sharing one, which would take a 120-bit SHA-256 prefix collision, are
/// both kept), so a dangling digest that shares it only passes liveness to
/// that record.
#[derive(Clone, Copy, PartialEq, Eq)]
struct NodeKey([u8; 16]);

impl NodeKey {
    fn of(digest_key: &[u8]) -> NodeKey {
        let mut k = [0u8; 16];
        let n = digest_key.len().min(16);
        k[..n].copy_from_slice(&digest_key[..n]);
        NodeKey(k)
    }
}

impl std::hash::Hash for NodeKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_le_bytes(self.0));
    }
}

/// Hashes node keys: one 64x64->128-bit multiply instead of SipHash
/// (hashing was a third of the mark's time). Dangling digests are whatever
/// a pusher wrote in a manifest, so the multiply is keyed with a per-map
/// random seed: a pusher cannot aim keys at one bucket without knowing it.
#[derive(Clone, Copy)]
struct NodeHashState {
    seed: [u64; 2],
}

impl NodeHashState {
    fn new() -> NodeHashState {
        use std::hash::BuildHasher as _;
        let s = std::collections::hash_map::RandomState::new();
        NodeHashState {
            seed: [s.hash_one(1u8), s.hash_one(2u8)],
        }
    }
}

impl std::hash::BuildHasher for NodeHashState {
    type Hasher = NodeHasher;
    fn build_hasher(&self) -> NodeHasher {
        NodeHasher {
            seed: self.seed,
            state: 0,
        }
    }
}

struct NodeHasher {
    seed: [u64; 2],
    state: u64,
}

fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl std::hash::Hasher for NodeHasher {
    fn write_u128(&mut self, v: u128) {
        self.state = folded_multiply(
            (v as u64) ^ self.seed[0] ^ self.state,
            ((v >> 64) as u64) ^ self.seed[1],
        );
    }

    fn write(&mut self, bytes: &[u8]) {
        for block in bytes.chunks(16) {
            let mut b = [0u8; 16];
            b[..block.len()].copy_from_slice(block);
            self.write_u128(u128::from_le_bytes(b));
        }
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

/// The liveness graph: `from -> to` means that if `from` is live, so is
/// `to` (parent to child, and subject to referrer). Ids `0..records.len()`
/// are the stored records in key order; higher ids are digests that are
/// referenced but not stored (a sparse child, an absent subject, a tag or
/// lease on a missing digest). Those still pass liveness on: a live
/// index's missing child keeps that child's referrers.
struct LivenessGraph {
    ids: HashMap<NodeKey, u32, NodeHashState>,
    nodes: usize,
    records: Vec<Candidate>,
    edges: Vec<(u32, u32)>,
}

impl LivenessGraph {
    fn new_id(&mut self) -> Result<u32> {
        let id = u32::try_from(self.nodes).map_err(|_| Error::InvalidArgument {
            value: format!("{} digests", self.nodes),
            expected: format!("at most {} digests in one store for gc", u32::MAX),
        })?;
        self.nodes += 1;
        Ok(id)
    }

    /// The node of a referenced digest (given as its key), added if new.
    fn id(&mut self, digest_key: &[u8]) -> Result<u32> {
        match self.ids.get(&NodeKey::of(digest_key)) {
            Some(&id) => Ok(id),
            None => {
                let id = self.new_id()?;
                self.ids.insert(NodeKey::of(digest_key), id);
                Ok(id)
            }
        }
    }
}

/// Reads the snapshot and marks from its roots.
pub(crate) fn mark(txn: &ReadTransaction, rules: &MarkRules) -> Result<Marked> {
    let blobs = txn.open_table(BLOBS)?;
    let total = blobs.len()?;
    let capacity = usize::try_from(total).unwrap_or(0);
    let mut g = LivenessGraph {
        ids: HashMap::with_capacity_and_hasher(capacity, NodeHashState::new()),
        nodes: 0,
        records: Vec::with_capacity(capacity),
        edges: Vec::new(),
    };
    let mut roots = Vec::new();
    for e in blobs.iter()? {
        let (k, v) = e?;
        let rec = RecordHeader::decode(v.value()).map_err(|e| {
            let d = Digest::from_key(k.value()).map_or_else(|e| e.to_string(), |d| d.to_string());
            Error::Corrupt(format!("record of {d}: {e}"))
        })?;
        let id = g.new_id()?;
        g.records.push(Candidate {
            size: rec.size,
            manifest: rec.manifest,
        });
        if let Some(&other) = g.ids.get(&NodeKey::of(k.value())) {
            roots.extend([other, id]);
        } else {
            g.ids.insert(NodeKey::of(k.value()), id);
        }
        let young = rules.now_ms.saturating_sub(rec.created_ms) < rules.grace_ms;
        if young || (!rules.delete_untagged && rec.manifest) {
            roots.push(id);
        }
    }
    for e in txn.open_table(TAGS)?.iter()? {
        let (_, v) = e?;
        roots.push(g.id(v.value())?);
    }
    let items = txn.open_table(LEASE_ITEMS)?;
    for &lease in &rules.leases {
        let (lo, hi) = crate::index::leases::lease_range(lease);
        for e in items.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
            let (k, _) = e?;
            roots.push(g.id(&k.value()[8..])?);
        }
    }
    if !rules.delete_untagged {
        // Every stored manifest is already a root; a member without a
        // record (which fsck reports) is one too, as it always was.
        for e in txn.open_table(MEMBERS)?.iter()? {
            let (k, v) = e?;
            if v.value() == MEMBER_MANIFEST {
                roots.push(g.id(&k.value()[8..])?);
            }
        }
    }
    // Both trees of the set, one after the other: a key in both only
    // repeats an edge, which marks nothing twice.
    let edges_in = txn.open_table(EDGES_IN)?;
    let staged = txn.open_table(EDGES_IN_STAGED)?;
    g.edges
        .reserve(usize::try_from(edges_in.len()? + staged.len()?).unwrap_or(0));
    for e in edges_in.iter()?.chain(staged.iter()?) {
        let (k, _) = e?;
        let k = k.value();
        let (child, parent, kind) = crate::schema::keys::split_edge_in_raw(k)?;
        // A referrer does not keep its subject alive; a live subject keeps
        // its referrers.
        let (from, to) = if kind == EdgeKind::Subject {
            (child, parent)
        } else {
            (parent, child)
        };
        let edge = (g.id(from)?, g.id(to)?);
        g.edges.push(edge);
    }
    let LivenessGraph {
        ids,
        nodes,
        records,
        edges,
    } = g;
    let rows = Rows::new(nodes, edges);
    let mut window_roots = Vec::new();
    if let Some(since) = rules.undelete_since_ms {
        for d in crate::index::history::window_targets(txn, since)? {
            // A target no record backs any more (collected) has no node.
            if let Some(&id) = ids.get(&NodeKey::of(d.to_key().as_slice())) {
                window_roots.push(id);
            }
        }
    }
    drop(ids);
    // What the window alone keeps: reached with its roots, not without
    // (a second walk, only when the window names something).
    let (live, kept_for_undelete) = if window_roots.is_empty() {
        (rows.reach(roots), 0)
    } else {
        let without = rows.reach(roots.clone());
        roots.extend(window_roots);
        let live = rows.reach(roots);
        let only = live
            .iter()
            .zip(&without)
            .take(records.len())
            .filter(|(with, without)| **with && !**without)
            .count();
        (live, only as u64)
    };
    // The dead records' digests, from a second read of the records: the
    // map kept only a prefix of each.
    let mut dead_ids: HashMap<u32, Digest> = HashMap::new();
    let mut dead = HashMap::new();
    for (id, e) in blobs.iter()?.enumerate().take(records.len()) {
        if live[id] {
            continue;
        }
        let (k, _) = e?;
        let d = Digest::from_key(k.value())?;
        dead_ids.insert(id as u32, d);
        dead.insert(d, records[id]);
    }
    let order = rows.sweep_order(&dead_ids);
    Ok(Marked {
        dead,
        order,
        total,
        kept_for_undelete,
    })
}

/// Edges in compressed rows: node `x`'s targets are
/// `targets[start[x]..start[x + 1]]`.
struct Rows {
    start: Vec<usize>,
    targets: Vec<u32>,
}

impl Rows {
    fn new(nodes: usize, edges: Vec<(u32, u32)>) -> Rows {
        let mut start = vec![0usize; nodes + 1];
        for &(from, _) in &edges {
            start[from as usize + 1] += 1;
        }
        for i in 0..nodes {
            start[i + 1] += start[i];
        }
        let mut next = start.clone();
        let mut targets = vec![0u32; edges.len()];
        for (from, to) in edges {
            let slot = &mut next[from as usize];
            targets[*slot] = to;
            *slot += 1;
        }
        Rows { start, targets }
    }

    fn of(&self, x: u32) -> &[u32] {
        &self.targets[self.start[x as usize]..self.start[x as usize + 1]]
    }

    /// Which nodes the roots reach.
    fn reach(&self, roots: Vec<u32>) -> Vec<bool> {
        let mut live = vec![false; self.start.len() - 1];
        let mut stack = Vec::with_capacity(roots.len());
        for r in roots {
            if !std::mem::replace(&mut live[r as usize], true) {
                stack.push(r);
            }
        }
        while let Some(x) = stack.pop() {
            for &y in self.of(x) {
                if !std::mem::replace(&mut live[y as usize], true) {
                    stack.push(y);
                }
            }
        }
        live
    }

    /// Orders the dead nodes along the edges among them (see
    /// [`Marked::order`]).
    fn sweep_order(&self, dead: &HashMap<u32, Digest>) -> Vec<Digest> {
        let mut indegree: HashMap<u32, usize> = dead.keys().map(|&id| (id, 0)).collect();
        for &x in dead.keys() {
            for &y in self.of(x) {
                if y != x
                    && let Some(n) = indegree.get_mut(&y)
                {
                    *n += 1;
                }
            }
        }
        let mut ready: Vec<u32> = indegree
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| *id)
            .collect();
        ready.sort_unstable();
        let mut order = Vec::with_capacity(dead.len());
        let mut done: HashSet<u32> = HashSet::with_capacity(dead.len());
        while let Some(x) = ready.pop() {
            if !done.insert(x) {
                continue;
            }
            if let Some(d) = dead.get(&x) {
                order.push(*d);
            }
            for &y in self.of(x) {
                if y == x {
                    continue;
                }
                if let Some(n) = indegree.get_mut(&y) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        ready.push(y);
                    }
                }
            }
        }
        let mut cycles: Vec<Digest> = dead
            .iter()
            .filter(|(id, _)| !done.contains(id))
            .map(|(_, d)| *d)
            .collect();
        cycles.sort();
        order.extend(cycles);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(nodes: usize, edges: &[(u32, u32)]) -> Rows {
        Rows::new(nodes, edges.to_vec())
    }

    #[test]
    fn reach_follows_edges_only_forward() {
        // 0 -> 1 -> 2, 3 -> 0, 4 alone.
        let r = rows(5, &[(0, 1), (1, 2), (3, 0)]);
        assert_eq!(r.reach(vec![0]), vec![true, true, true, false, false]);
        assert_eq!(r.reach(vec![3, 4]), vec![true; 5]);
        assert_eq!(r.reach(vec![]), vec![false; 5]);
    }

    fn digest(i: u8) -> Digest {
        crate::oci::hasher::Hasher::digest_of(crate::digest::Algorithm::Sha256, &[i])
    }

    #[test]
    fn sweep_order_puts_sources_first_and_cycles_last() {
        // 0 -> 1 -> 2, 0 -> 2, 3 <-> 4 (a cycle), 5 -> 5, 6 live and not
        // in `dead`, 6 -> 1.
        let r = rows(7, &[(0, 1), (1, 2), (0, 2), (3, 4), (4, 3), (5, 5), (6, 1)]);
        let dead: HashMap<u32, Digest> = [0u32, 1, 2, 3, 4, 5]
            .into_iter()
            .map(|i| (i, digest(i as u8)))
            .collect();
        let order = r.sweep_order(&dead);
        assert_eq!(order.len(), 6);
        let pos = |i: u8| {
            order
                .iter()
                .position(|d| *d == digest(i))
                .expect("every dead node is ordered")
        };
        assert!(pos(0) < pos(1) && pos(1) < pos(2));
        let mut tail = [digest(3), digest(4)];
        tail.sort();
        assert_eq!(order[4..], tail[..]);
    }
}
