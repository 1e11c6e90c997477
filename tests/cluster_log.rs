//! Cluster members over one index log (`ocidb::log::LogHead`): replicas
//! apply the log up to the head, a primary that lost its place can write
//! log objects but never make one part of the log (so never acknowledges
//! a write), and a promoted replica starts a new epoch that no deposed
//! primary's object can enter. Here over a log and blobs in memory and a
//! head in memory; `crates/cli/tests/cluster.rs` runs the same on etcd
//! and Garage with real processes.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::rich;
use ocidb::log::{IndexLog, LogHead, MemoryLog};
use ocidb::{BlobBackend, Error, ManualClock, MemoryBlobs, Reference, Store, StoreOptions};

/// What etcd holds in the real thing: the epoch of the member that may
/// write, and the head it last published.
#[derive(Debug, Default)]
struct Cluster {
    leader: u64,
    head: Option<u64>,
    published: Vec<(u64, u64)>,
}

/// One member's view: publishing is a compare-and-set on the leader's
/// epoch, as the etcd transaction is.
#[derive(Debug)]
struct Head {
    epoch: u64,
    cluster: Arc<Mutex<Cluster>>,
}

impl LogHead for Head {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn head(&self) -> ocidb::Result<Option<u64>> {
        Ok(self.cluster.lock().expect("cluster").head)
    }

    fn publish(&self, position: u64) -> ocidb::Result<()> {
        let mut c = self.cluster.lock().expect("cluster");
        if c.leader != self.epoch {
            return Err(Error::NotPrimary {
                store: format!("epoch {}", self.epoch),
                why: format!("epoch {} holds the log now", c.leader),
            });
        }
        c.head = Some(position);
        c.published.push((position, self.epoch));
        Ok(())
    }
}

struct Shared {
    blobs: MemoryBlobs,
    log: MemoryLog,
    cluster: Arc<Mutex<Cluster>>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            blobs: MemoryBlobs::new(),
            log: MemoryLog::new(),
            cluster: Arc::default(),
        }
    }

    fn opts(&self, epoch: u64) -> StoreOptions {
        StoreOptions::default()
            .backend(Arc::new(self.blobs.clone()) as Arc<dyn BlobBackend>)
            .index_log(Arc::new(self.log.clone()) as Arc<dyn IndexLog>)
            .log_head(Arc::new(Head {
                epoch,
                cluster: Arc::clone(&self.cluster),
            }) as Arc<dyn LogHead>)
            .clock(Arc::new(ManualClock::new(1_750_000_000_000)))
    }

    /// Makes `epoch` the one that may publish.
    fn elect(&self, epoch: u64) {
        self.cluster.lock().expect("cluster").leader = epoch;
    }

    fn head(&self) -> u64 {
        self.cluster.lock().expect("cluster").head.unwrap_or(0)
    }

    /// The epoch that published the head.
    fn head_epoch(&self) -> u64 {
        let c = self.cluster.lock().expect("cluster");
        c.published.last().map_or(0, |&(_, e)| e)
    }

    fn primary(&self, dir: &Path, epoch: u64) -> Store {
        self.elect(epoch);
        Store::open_with(dir, self.opts(epoch), true).expect("open the primary")
    }

    fn replica(&self, dir: &Path, epoch: u64) -> Store {
        let (s, _) = Store::restore_replica(dir, self.opts(epoch), Some(self.head()), &mut |_| {})
            .expect("start a replica");
        s
    }
}

fn image(s: &Store) -> Vec<u8> {
    s.index_image().expect("image")
}

#[test]
fn a_replica_applies_the_log_up_to_the_head_and_refuses_writes() {
    let c = Shared::new();
    let root = tempfile::tempdir().expect("tempdir");
    let a = c.primary(&root.path().join("a"), 1);
    let b = c.replica(&root.path().join("b"), 2);
    assert!(b.is_replica() && !a.is_replica());
    let upload = rich::populate(&a);
    assert!(c.head() > 10, "every commit published: head {}", c.head());
    assert!(b.log_position().expect("position") < c.head());
    assert_eq!(
        b.follow_log(c.head(), c.head_epoch()).expect("follow"),
        c.head()
    );
    assert_eq!(image(&b), image(&a), "every table, byte for byte");
    assert_eq!(
        rich::snapshot(&b, &upload),
        rich::snapshot(&a, &upload),
        "reads answer the same"
    );
    // Writes, GC and snapshots are the primary's.
    let e = b.put_bytes(b"x", &Default::default()).expect_err("write");
    assert!(
        matches!(&e, Error::NotPrimary { why, .. } if why.contains("replica")),
        "{e}"
    );
    assert!(b.snapshot_index().is_err());
    assert!(b.gc(&Default::default()).is_err());
    // The primary cannot be told to follow.
    let e = a.follow_log(1, 1).expect_err("a primary follows nothing");
    assert!(e.to_string().contains("primary"), "{e}");
}

#[test]
fn a_deposed_primary_acknowledges_nothing_and_its_objects_never_enter_the_log() {
    let c = Shared::new();
    let root = tempfile::tempdir().expect("tempdir");
    let a = c.primary(&root.path().join("a"), 1);
    let b = c.replica(&root.path().join("b"), 2);
    let before = common::blob(&a, b"acknowledged by epoch 1", "text/plain");
    let body = common::image_body(&a, &[before], None);
    common::put_manifest(&a, "app/web", &body, &["v1"]);
    let acknowledged = c.head();

    // Epoch 2 takes over before the replica has applied anything.
    c.elect(2);
    let e = a
        .put_bytes(b"after the lease lapsed", &Default::default())
        .expect_err("a deposed primary must not acknowledge");
    assert!(matches!(e, Error::NotPrimary { .. }), "{e}");
    assert_eq!(c.head(), acknowledged, "the head did not move");
    // Its object was written (the bucket cannot refuse it) ...
    let stray = format!("log/{:020}-{:020}", acknowledged + 1, 1);
    assert!(c.log.names().expect("names").contains(&stray));
    // ... and the primary stops for good: whether a publish landed is
    // unknown after one fails, so it never writes that position again.
    let e = a
        .put_bytes(b"again", &Default::default())
        .expect_err("poisoned");
    assert!(
        matches!(e, Error::Poisoned(_) | Error::NotPrimary { .. }),
        "{e}"
    );

    b.promote().expect("promote");
    assert!(!b.is_replica());
    assert_eq!(b.log_position().expect("position"), acknowledged);
    assert!(
        !c.log.names().expect("names").contains(&stray),
        "the deposed primary's object is removed at promotion"
    );
    assert!(
        b.get_manifest("app/web", &Reference::Tag("v1".into()))
            .is_ok(),
        "acknowledged write lost"
    );
    let after = common::blob(&b, b"acknowledged by epoch 2", "text/plain");
    let body2 = common::image_body(&b, &[after], None);
    common::put_manifest(&b, "app/web", &body2, &["v2"]);
    assert!(c.head() > acknowledged);

    // A deposed primary's late write, landing after the promotion, at a
    // position the new epoch owns: a restore from the bucket alone and a
    // new replica both ignore it (applied, it would fail the restore: its
    // bytes are another position's).
    let late = c
        .log
        .get(&format!("log/{:020}-{:020}", acknowledged + 1, 2), 1 << 20)
        .expect("read")
        .expect("epoch 2's first object");
    // Past the head, where no object of epoch 2 stands in for it: only
    // the epoch marker (epoch 2 started at `acknowledged`) tells it apart.
    c.log
        .put(&format!("log/{:020}-{:020}", c.head() + 1, 1), late)
        .expect("a late stray");
    let want = image(&b);
    let r = c.replica(&root.path().join("r"), 3);
    assert_eq!(r.log_position().expect("position"), c.head());
    assert_eq!(image(&r), want, "a new replica holds what was acknowledged");
    drop(r);
    drop(a);
    drop(b);
    let (restored, report) = Store::restore(root.path().join("restored"), c.opts(4), &mut |_| {})
        .expect("restore from the bucket alone");
    assert!(report.fsck.is_clean(), "{:?}", report.fsck.problems);
    assert!(restored
        .get_manifest("app/web", &Reference::Tag("v2".into()))
        .is_ok());
    assert!(restored
        .get_manifest("app/web", &Reference::Tag("v1".into()))
        .is_ok());
}

#[test]
fn a_replica_restarted_from_its_directory_follows_on() {
    let c = Shared::new();
    let root = tempfile::tempdir().expect("tempdir");
    let a = c.primary(&root.path().join("a"), 1);
    let dir_b = root.path().join("b");
    drop(c.replica(&dir_b, 2));
    rich::populate(&a);
    // The replica's process stopped; it opens its directory again. (An
    // epoch that wrote none of the objects sends it to the listing.)
    let b = Store::open_with(&dir_b, c.opts(2).replica(true), false).expect("reopen");
    assert!(b.is_replica());
    assert_eq!(b.follow_log(c.head(), 99).expect("follow"), c.head());
    assert_eq!(image(&b), image(&a));
}
