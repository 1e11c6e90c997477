//! The key-only reverse sets, `edges_in` (child parent kind) and
//! `member_of` (digest repository), each kept in two trees (format 5): the
//! main tree and a small staging tree of the same keys.
//!
//! Why two: these sets are keyed by another blob's digest, so a batch's
//! rows land at random leaves, and a commit writes every leaf it touches
//! whole. At a million manifests a 10k-manifest commit dirtied a third of
//! `edges_in`'s leaves, and the two sets were more than half of the bytes
//! every commit wrote (docs/benchmarks.md, "Where a million-manifest
//! ingest's time goes"). New rows go to the staging tree, whose leaves are
//! few; the writer moves them to the main tree one key slice at a time
//! ([`WriteTables::merge_slice`]), so each main leaf is written once per
//! round of slices instead of once per commit.
//!
//! The rules: an insert goes to the staging tree; a removal removes from
//! both; a read is the union of both, in key order, each key once (a key
//! may be in both, harmlessly: a blob membership upgraded to a manifest
//! one stages its row again while the old one sits in the main tree).

use std::cmp::Ordering;
use std::ops::Bound;

use redb::{ReadableTable, ReadableTableMetadata as _};

use super::logged::Logged;
use super::tables::WriteTables;
use crate::error::{Error, Result};

/// Key slices a round of merges covers: each slice is 1/8 of the hash
/// space (the top three bits of a key's first hash byte). Fewer slices
/// merge more often into the same leaves; more leave more rows staged.
pub(crate) const SLICES: u8 = 8;

/// Rows a commit's merge may move per tree at least (see
/// [`WriteTables::merge_slice`]): what a small commit pays when a bulk
/// ingest has left many rows staged.
pub(crate) const MIN_MERGE_ROWS: u64 = 4_096;

/// Staged rows (per set) below which nothing merges: small commits then
/// touch only the staging tree, and a merge moves enough rows to share
/// each main leaf it writes among many of them.
pub(crate) const DEFAULT_STAGED_ROWS: u64 = 65_536;

/// Calls `f` with every key of `range` in either tree, in key order, each
/// key once, while `f` answers `true`: the two trees' ranges are read side
/// by side, nothing copied (a popular layer's range holds thousands of
/// keys). Returns whether it went through the whole range.
fn walk<'a, M, S>(
    main: &M,
    staged: &S,
    range: (Bound<&'a [u8]>, Bound<&'a [u8]>),
    mut f: impl FnMut(&[u8]) -> Result<bool>,
) -> Result<bool>
where
    M: ReadableTable<&'static [u8], ()>,
    S: ReadableTable<&'static [u8], ()>,
{
    let mut a = main.range::<&[u8]>(range)?;
    let mut b = staged.range::<&[u8]>(range)?;
    let mut x = a.next().transpose()?;
    let mut y = b.next().transpose()?;
    loop {
        // Which tree's next key comes first (both when they are equal).
        let (from_a, from_b) = match (&x, &y) {
            (None, None) => return Ok(true),
            (Some(_), None) => (true, false),
            (None, Some(_)) => (false, true),
            (Some((ka, _)), Some((kb, _))) => match ka.value().cmp(kb.value()) {
                Ordering::Less => (true, false),
                Ordering::Greater => (false, true),
                Ordering::Equal => (true, true),
            },
        };
        let next = if from_a { &x } else { &y };
        if let Some((k, _)) = next
            && !f(k.value())?
        {
            return Ok(false);
        }
        if from_a {
            x = a.next().transpose()?;
        }
        if from_b {
            y = b.next().transpose()?;
        }
    }
}

/// Calls `f` with every key of `range` in either tree, in key order, each
/// key once (see [`walk`]).
pub(crate) fn for_each_key<'a, M, S>(
    main: &M,
    staged: &S,
    range: (Bound<&'a [u8]>, Bound<&'a [u8]>),
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()>
where
    M: ReadableTable<&'static [u8], ()>,
    S: ReadableTable<&'static [u8], ()>,
{
    walk(main, staged, range, |k| f(k).map(|()| true)).map(drop)
}

/// Whether `pred` holds for every key of `lo..=hi` in either tree; stops
/// at the first key it does not hold for.
pub(crate) fn all_in<M, S>(
    main: &M,
    staged: &S,
    lo: &[u8],
    hi: &[u8],
    pred: impl FnMut(&[u8]) -> Result<bool>,
) -> Result<bool>
where
    M: ReadableTable<&'static [u8], ()>,
    S: ReadableTable<&'static [u8], ()>,
{
    walk(
        main,
        staged,
        (Bound::Included(lo), Bound::Included(hi)),
        pred,
    )
}

/// [`for_each_key`] over `lo..=hi`, the form of every prefix range.
pub(crate) fn for_each_in<M, S>(
    main: &M,
    staged: &S,
    lo: &[u8],
    hi: &[u8],
    f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()>
where
    M: ReadableTable<&'static [u8], ()>,
    S: ReadableTable<&'static [u8], ()>,
{
    for_each_key(main, staged, (Bound::Included(lo), Bound::Included(hi)), f)
}

/// Whether either tree holds a key of `lo..=hi`.
pub(crate) fn any_in<M, S>(main: &M, staged: &S, lo: &[u8], hi: &[u8]) -> Result<bool>
where
    M: ReadableTable<&'static [u8], ()>,
    S: ReadableTable<&'static [u8], ()>,
{
    Ok(staged.range::<&[u8]>(lo..=hi)?.next().is_some()
        || main.range::<&[u8]>(lo..=hi)?.next().is_some())
}

/// Whether `k` is in either tree.
pub(crate) fn contains<M, S>(main: &M, staged: &S, k: &[u8]) -> Result<bool>
where
    M: ReadableTable<&'static [u8], ()>,
    S: ReadableTable<&'static [u8], ()>,
{
    Ok(staged.get(k)?.is_some() || main.get(k)?.is_some())
}

/// One of the two reverse sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Set {
    /// `edges_in`: child parent kind.
    EdgesIn,
    /// `member_of`: digest repository.
    MemberOf,
}

impl Set {
    const ALL: [Set; 2] = [Set::EdgesIn, Set::MemberOf];
}

/// A tree of a reverse set in a write transaction.
type Tree<'t> = Logged<'t, &'static [u8], ()>;

impl<'t> WriteTables<'t> {
    /// The set's main and staging trees.
    fn trees(&self, set: Set) -> (&Tree<'t>, &Tree<'t>) {
        match set {
            Set::EdgesIn => (&self.edges_in, &self.edges_in_staged),
            Set::MemberOf => (&self.member_of, &self.member_of_staged),
        }
    }

    /// [`Self::trees`], to write.
    fn trees_mut(&mut self, set: Set) -> (&mut Tree<'t>, &mut Tree<'t>) {
        match set {
            Set::EdgesIn => (&mut self.edges_in, &mut self.edges_in_staged),
            Set::MemberOf => (&mut self.member_of, &mut self.member_of_staged),
        }
    }

    /// Adds a key to the set (to its staging tree).
    pub(crate) fn add_key(&mut self, set: Set, k: &[u8]) -> Result<()> {
        self.trees_mut(set).1.insert(k, ())?;
        Ok(())
    }

    /// Removes a key from the set (from both trees).
    pub(crate) fn remove_key(&mut self, set: Set, k: &[u8]) -> Result<()> {
        let (main, staged) = self.trees_mut(set);
        staged.remove(k)?;
        main.remove(k)?;
        Ok(())
    }

    /// The set's keys of `lo..=hi` (both trees; see [`for_each_key`]).
    pub(crate) fn keys_in(
        &self,
        set: Set,
        lo: &[u8],
        hi: &[u8],
        f: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let (main, staged) = self.trees(set);
        for_each_in(&**main, &**staged, lo, hi, f)
    }

    /// Whether the set holds a key of `lo..=hi`.
    pub(crate) fn any_in(&self, set: Set, lo: &[u8], hi: &[u8]) -> Result<bool> {
        let (main, staged) = self.trees(set);
        any_in(&**main, &**staged, lo, hi)
    }

    /// Rows in each staging tree now.
    pub(crate) fn staged_lens(&self) -> Result<StagedLens> {
        Ok(StagedLens(
            self.trees(Set::EdgesIn).1.len()?,
            self.trees(Set::MemberOf).1.len()?,
        ))
    }

    /// Moves slice `slice` (of [`SLICES`]) of each staging tree holding at
    /// least `threshold` rows into its main tree, in key order: at most
    /// [`MIN_MERGE_ROWS`] rows, or twice what this transaction staged in
    /// the tree since `before` when that is more, so that a bulk commit
    /// moves at least as much as it adds and a small one pays little. What
    /// is left of the slice moves in the next commits. Each move is an
    /// ordinary logged insert and removal, so a replica replays it.
    pub(crate) fn merge_slice(
        &mut self,
        slice: u8,
        threshold: u64,
        before: &StagedLens,
    ) -> Result<Merge> {
        let mut merge = Merge::Idle;
        let now = self.staged_lens()?;
        for set in Set::ALL {
            if now.of(set) < threshold {
                continue;
            }
            let budget = budget(now.of(set), before.of(set));
            let (main, staged) = self.trees_mut(set);
            let keys = slice_keys(&**staged, slice, budget)?;
            for k in &keys {
                main.insert(k.as_slice(), ())?;
                staged.remove(k.as_slice())?;
            }
            merge = merge.and(keys.len(), budget);
        }
        Ok(merge)
    }
}

/// Rows in the two staging trees at one moment (edges_in, member_of).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StagedLens(u64, u64);

impl StagedLens {
    fn of(&self, set: Set) -> u64 {
        match set {
            Set::EdgesIn => self.0,
            Set::MemberOf => self.1,
        }
    }
}

/// What a commit's merge did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Merge {
    /// Neither staging tree held enough rows: the round stays where it is.
    Idle,
    /// Rows moved, and the slice has more (the budget ran out).
    Partial,
    /// The slice is empty in every tree that merged: the next one is due.
    SliceDone,
}

impl Merge {
    /// Folds in one tree's merge, which moved `moved` of `budget` rows.
    fn and(self, moved: usize, budget: usize) -> Merge {
        let done = moved < budget;
        match self {
            Merge::Partial => Merge::Partial,
            _ if done => Merge::SliceDone,
            _ => Merge::Partial,
        }
    }
}

/// Rows one merge may move from a tree that held `before` rows when the
/// transaction began and holds `now`.
fn budget(now: u64, before: u64) -> usize {
    let added = now.saturating_sub(before);
    usize::try_from(MIN_MERGE_ROWS.max(added.saturating_mul(2))).unwrap_or(usize::MAX)
}

/// The first `limit` keys of `t` in slice `slice`: for each digest
/// algorithm tag present (a key starts with its digest's key form,
/// `[tag][hash]`), those whose first hash byte's top bits are `slice`. One
/// range per tag: the slice's keys are read, never the whole tree.
fn slice_keys(
    t: &impl ReadableTable<&'static [u8], ()>,
    slice: u8,
    limit: usize,
) -> Result<Vec<Vec<u8>>> {
    if slice >= SLICES {
        return Err(Error::Corrupt(format!(
            "merge slice {slice} is out of range: there are {SLICES}"
        )));
    }
    let width = 256 / u16::from(SLICES);
    let lo_byte = u16::from(slice) * width;
    let hi_byte = lo_byte + width;
    let mut out = Vec::new();
    let mut tag: u16 = 0;
    while tag <= 255 {
        // The next tag present at or after `tag`.
        let start = [tag as u8];
        let Some(first) = t.range::<&[u8]>(start.as_slice()..)?.next() else {
            break;
        };
        let t0 =
            first?.0.value().first().copied().ok_or_else(|| {
                Error::Corrupt("an empty key in a reverse set's staging tree".into())
            })?;
        let lo = [t0, lo_byte as u8];
        // The last slice runs to the next tag (or the end of the tree).
        let hi = if hi_byte <= 255 {
            Bound::Excluded(vec![t0, hi_byte as u8])
        } else {
            t0.checked_add(1)
                .map_or(Bound::Unbounded, |n| Bound::Excluded(vec![n]))
        };
        let range = t.range::<&[u8]>((
            Bound::Included(lo.as_slice()),
            hi.as_ref().map(Vec::as_slice),
        ))?;
        for e in range {
            if out.len() >= limit {
                return Ok(out);
            }
            out.push(e?.0.value().to_vec());
        }
        tag = u16::from(t0) + 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase as _, TableDefinition};

    const MAIN: TableDefinition<&[u8], ()> = TableDefinition::new("main");
    const STAGED: TableDefinition<&[u8], ()> = TableDefinition::new("staged");

    fn keys_of(db: &redb::Database, lo: &[u8], hi: &[u8]) -> Vec<Vec<u8>> {
        let txn = db.begin_read().expect("read");
        let m = txn.open_table(MAIN).expect("main");
        let s = txn.open_table(STAGED).expect("staged");
        let mut out = Vec::new();
        for_each_in(&m, &s, lo, hi, |k| {
            out.push(k.to_vec());
            Ok(())
        })
        .expect("union");
        out
    }

    #[test]
    fn the_union_is_in_key_order_with_each_key_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("db")).expect("db");
        let txn = db.begin_write().expect("write");
        {
            let mut m = txn.open_table(MAIN).expect("main");
            let mut s = txn.open_table(STAGED).expect("staged");
            for k in [[1u8, 1], [1, 3], [1, 5], [2, 0]] {
                m.insert(k.as_slice(), ()).expect("insert");
            }
            for k in [[1u8, 0], [1, 3], [1, 4], [1, 9], [3, 0]] {
                s.insert(k.as_slice(), ()).expect("insert");
            }
        }
        txn.commit().expect("commit");
        let got = keys_of(&db, &[1], &[1, 0xff]);
        let want: Vec<Vec<u8>> = [[1u8, 0], [1, 1], [1, 3], [1, 4], [1, 5], [1, 9]]
            .iter()
            .map(|k| k.to_vec())
            .collect();
        assert_eq!(got, want);
        assert_eq!(keys_of(&db, &[0], &[9]).len(), 8, "every key once");
        assert!(keys_of(&db, &[4], &[9]).is_empty());
        // all_in stops at the first key its predicate refuses.
        let txn = db.begin_read().expect("read");
        let m = txn.open_table(MAIN).expect("main");
        let s = txn.open_table(STAGED).expect("staged");
        let mut asked = Vec::new();
        let all = all_in(&m, &s, &[1], &[1, 0xff], |k| {
            asked.push(k.to_vec());
            Ok(k != [1, 3])
        })
        .expect("all_in");
        assert!(!all);
        assert_eq!(asked, vec![vec![1u8, 0], vec![1, 1], vec![1, 3]]);
        assert!(all_in(&m, &s, &[0], &[9], |_| Ok(true)).expect("all_in"));
    }

    #[test]
    fn slices_cover_every_key_once_across_tags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("db")).expect("db");
        let txn = db.begin_write().expect("write");
        let mut all = Vec::new();
        {
            let mut s = txn.open_table(STAGED).expect("staged");
            for tag in [0u8, 1, 7, 255] {
                for b in (0u16..256).step_by(5) {
                    let k = vec![tag, b as u8, 42];
                    s.insert(k.as_slice(), ()).expect("insert");
                    all.push(k);
                }
            }
        }
        txn.commit().expect("commit");
        let txn = db.begin_read().expect("read");
        let s = txn.open_table(STAGED).expect("staged");
        let mut seen = Vec::new();
        for slice in 0..SLICES {
            let keys = slice_keys(&s, slice, usize::MAX).expect("slice");
            for k in &keys {
                assert_eq!(k[1] / 32, slice, "{k:?} in slice {slice}");
            }
            seen.extend(keys);
        }
        seen.sort();
        all.sort();
        assert_eq!(seen, all);
        assert!(slice_keys(&s, SLICES, 1).is_err());
        // A limit takes the slice's first keys, across tags in order.
        let first = slice_keys(&s, 0, 10).expect("limited");
        assert_eq!(first.len(), 10);
        assert_eq!(
            first,
            slice_keys(&s, 0, usize::MAX).expect("slice")[..10].to_vec()
        );
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;
    use crate::schema::tables::{self, EDGES_IN, EDGES_IN_STAGED};
    use redb::ReadableDatabase as _;

    /// Keys spread over the hash space: `[1][i * 7 mod 256][i]`.
    fn key(i: u32) -> Vec<u8> {
        let mut k = vec![1u8, (i.wrapping_mul(7) % 256) as u8];
        k.extend_from_slice(&i.to_be_bytes());
        k
    }

    fn lens(db: &redb::Database) -> (u64, u64) {
        let txn = db.begin_read().expect("read");
        (
            txn.open_table(EDGES_IN).expect("main").len().expect("len"),
            txn.open_table(EDGES_IN_STAGED)
                .expect("staged")
                .len()
                .expect("len"),
        )
    }

    fn merge(db: &redb::Database, slice: u8, threshold: u64) -> Merge {
        let txn = db.begin_write().expect("write");
        let m = {
            let mut t = WriteTables::open(&txn, false).expect("tables");
            let before = t.staged_lens().expect("lens");
            t.merge_slice(slice, threshold, &before).expect("merge")
        };
        txn.commit().expect("commit");
        m
    }

    #[test]
    fn a_merge_moves_one_slice_within_its_budget_then_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("db")).expect("db");
        let n = 40_000u32;
        let txn = db.begin_write().expect("write");
        {
            tables::create_all(&txn).expect("create");
            let mut t = WriteTables::open(&txn, false).expect("tables");
            for i in 0..n {
                t.add_key(Set::EdgesIn, &key(i)).expect("add");
            }
        }
        txn.commit().expect("commit");
        assert_eq!(lens(&db), (0, u64::from(n)));
        // Below the threshold nothing moves.
        assert_eq!(merge(&db, 0, u64::from(n) + 1), Merge::Idle);
        assert_eq!(lens(&db), (0, u64::from(n)));
        // Slice 0 holds about 5,000 keys: the first merge moves the
        // budget's 4,096 (this transaction staged nothing), the second the
        // rest.
        let in_slice = (0..n).filter(|&i| key(i)[1] < 32).count() as u64;
        assert!(in_slice > MIN_MERGE_ROWS, "{in_slice}");
        assert_eq!(merge(&db, 0, 1), Merge::Partial);
        assert_eq!(lens(&db), (MIN_MERGE_ROWS, u64::from(n) - MIN_MERGE_ROWS));
        assert_eq!(merge(&db, 0, 1), Merge::SliceDone);
        assert_eq!(lens(&db), (in_slice, u64::from(n) - in_slice));
        // The union still reads every key once.
        let txn = db.begin_read().expect("read");
        let main = txn.open_table(EDGES_IN).expect("main");
        let staged = txn.open_table(EDGES_IN_STAGED).expect("staged");
        let mut count = 0u64;
        let mut last: Option<Vec<u8>> = None;
        for_each_key(&main, &staged, (Bound::Unbounded, Bound::Unbounded), |k| {
            assert!(last.as_deref() < Some(k), "in order, once");
            last = Some(k.to_vec());
            count += 1;
            Ok(())
        })
        .expect("union");
        assert_eq!(count, u64::from(n));
    }
}
