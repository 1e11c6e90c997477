//! A cluster member: one store among several on the same bucket, one of
//! them the primary, chosen on etcd.
//!
//! Keys, under `/ocidb/<cluster>/`:
//! - `leader`: the primary's advertised URL, bound to its etcd lease. Its
//!   create revision is the primary's **epoch**: larger than every epoch
//!   before it, and gone the moment the lease lapses.
//! - `head`: `{"position":N,"epoch":E}`, the last index log position that
//!   is part of the log. The primary moves it after writing each log
//!   object, in a transaction that succeeds only while `leader` still has
//!   its create revision and `head` is as the primary last left it (see
//!   [`EtcdHead`]'s `publish`).
//!
//! Every member opens its store as a replica, follows the head through an
//! etcd watch, and campaigns when `leader` is absent; the winner applies
//! the log up to the head and is promoted ([`ocidb::Store::promote`]). A
//! primary that cannot renew its lease within its TTL stops: the server
//! shuts down, to be restarted (as a replica) by its supervisor.

pub mod etcd;
pub(crate) mod forward;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ocidb::log::LogHead;
use ocidb::Store;
use serde_json::json;

pub use etcd::Etcd;
use etcd::{Guard, KeyValue, PutIf};

/// What a member needs to join its cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The etcd cluster that decides who writes.
    pub etcd: Etcd,
    /// This member's URL, as other members and clients reach it
    /// (`http://HOST:PORT`): replicas forward writes there when it is the
    /// primary.
    pub advertise: String,
    /// The cluster's name: its keys are under `/ocidb/<name>/`. Members of
    /// one store share it (`ocidb serve` uses the bucket's location).
    pub name: String,
    /// The primary's lease: a primary that dies is replaced within about
    /// this long.
    pub lease_ttl: Duration,
    /// A replica whose lag has not been 0 for this long is not ready.
    pub max_lag: Duration,
}

impl ClusterOptions {
    /// Options with a 5 s lease and a 10 s lag bound.
    pub fn new(etcd: Etcd, advertise: impl Into<String>, name: impl Into<String>) -> Self {
        ClusterOptions {
            etcd,
            advertise: advertise.into(),
            name: name.into(),
            lease_ttl: Duration::from_secs(5),
            max_lag: Duration::from_secs(10),
        }
    }
}

/// The keys of one cluster.
#[derive(Clone, Debug)]
struct Keys {
    prefix: Vec<u8>,
    leader: Vec<u8>,
    head: Vec<u8>,
}

impl Keys {
    fn new(name: &str) -> Keys {
        let prefix = format!("/ocidb/{name}/");
        Keys {
            leader: format!("{prefix}leader").into_bytes(),
            head: format!("{prefix}head").into_bytes(),
            prefix: prefix.into_bytes(),
        }
    }
}

/// The log head on etcd: what makes this member's log objects part of
/// the log, while it is the primary.
#[derive(Debug)]
pub struct EtcdHead {
    etcd: Etcd,
    keys: Keys,
    /// The create revision of the `leader` key this member put: its epoch
    /// (0 until it wins).
    epoch: AtomicU64,
    /// The `head` key's mod revision as this member last read or put it
    /// (0: no head). A publish puts only over that revision: a request
    /// that reaches etcd late (sent to a member that stalled, then sent
    /// again to another, which answered) finds the head moved on and
    /// changes nothing, so the head never goes back to a position a later
    /// epoch would then start from, dropping acknowledged writes.
    revision: AtomicI64,
    /// The last position this member published (0: none): the primary's
    /// position as it stands, for /readyz and metrics, between the lease
    /// renewals that otherwise refresh it.
    published: AtomicU64,
}

/// One publish, as sent to etcd.
#[derive(Clone, Debug)]
struct Publish {
    epoch: u64,
    /// The head's mod revision it replaces.
    over: i64,
    position: u64,
}

impl EtcdHead {
    fn new(etcd: Etcd, keys: Keys) -> EtcdHead {
        EtcdHead {
            etcd,
            keys,
            epoch: AtomicU64::new(0),
            revision: AtomicI64::new(0),
            published: AtomicU64::new(0),
        }
    }

    /// The publish of `position` now.
    fn request(&self, position: u64) -> Publish {
        Publish {
            epoch: self.epoch(),
            over: self.revision.load(Ordering::Acquire),
            position,
        }
    }

    /// Sends `p` once: the transaction's outcome, nothing interpreted.
    fn send(&self, p: &Publish) -> etcd::EtcdResult<PutIf> {
        let value = json!({ "position": p.position, "epoch": p.epoch }).to_string();
        self.etcd.put_if(
            &[
                Guard::Created(
                    &self.keys.leader,
                    i64::try_from(p.epoch).unwrap_or(i64::MAX),
                ),
                Guard::Modified(&self.keys.head, p.over),
            ],
            &self.keys.head,
            value.as_bytes(),
        )
    }

    /// A publish etcd refused: `now` holds `leader` and `head` as they
    /// are. The head already at `p` (by this epoch) is this primary's own
    /// earlier attempt, which etcd applied though its answer never came
    /// back; anything else means the primary must stop.
    fn refused(&self, p: &Publish, now: &[Option<KeyValue>]) -> ocidb::Result<()> {
        let leader = now.first().cloned().flatten();
        if leader.map(|l| l.create_revision) != i64::try_from(p.epoch).ok() {
            return Err(ocidb::Error::NotPrimary {
                store: format!("the primary of epoch {}", p.epoch),
                why: "its etcd lease lapsed: another member may be the primary".into(),
            });
        }
        let head = now.get(1).cloned().flatten();
        match head {
            Some(kv) if parse_head(&kv.value).ok() == Some((p.position, p.epoch)) => {
                self.revision.store(kv.mod_revision, Ordering::Release);
                self.published.fetch_max(p.position, Ordering::AcqRel);
                Ok(())
            }
            other => Err(ocidb::Error::NotPrimary {
                store: format!("the primary of epoch {}", p.epoch),
                why: format!(
                    "the log head on etcd moved under it: {} at revision {}, where it left revision {} and meant to publish position {}",
                    other.as_ref().map_or_else(
                        || "no head".to_string(),
                        |kv| String::from_utf8_lossy(&kv.value).into_owned()
                    ),
                    other.as_ref().map_or(0, |kv| kv.mod_revision),
                    p.over,
                    p.position
                ),
            }),
        }
    }

    fn unreachable(&self, why: String) -> ocidb::Error {
        ocidb::Error::Unavailable {
            location: format!("etcd {}", self.etcd.endpoints().join(",")),
            reason: why,
            refused: "writes (the log head cannot move)".into(),
        }
    }
}

/// Parses the head key's value.
fn parse_head(bytes: &[u8]) -> Result<(u64, u64), String> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the log head on etcd is not JSON: {e}"))?;
    let field = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("the log head on etcd lacks `{k}`: {v}"))
    };
    Ok((field("position")?, field("epoch")?))
}

impl LogHead for EtcdHead {
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Also notes the head's revision: a new primary reads the head once
    /// it won, before it writes (see `revision`).
    fn head(&self) -> ocidb::Result<Option<u64>> {
        let (kv, _) = self
            .etcd
            .get(&self.keys.head)
            .map_err(|e| self.unreachable(e))?;
        self.revision.store(
            kv.as_ref().map_or(0, |kv| kv.mod_revision),
            Ordering::Release,
        );
        kv.map(|kv| parse_head(&kv.value).map(|(p, _)| p))
            .transpose()
            .map_err(ocidb::Error::Corrupt)
    }

    /// One transaction: if `leader` still has this member's create
    /// revision (its lease has not lapsed, and nobody put it since) and
    /// the head is as this primary left it, the head becomes `position`.
    /// Otherwise nothing changes, and the write whose object this is is
    /// never acknowledged.
    fn publish(&self, position: u64) -> ocidb::Result<()> {
        let p = self.request(position);
        if p.epoch == 0 {
            return Err(ocidb::Error::NotPrimary {
                store: "this member".into(),
                why: "it has not won an election, so it has no epoch to publish in".into(),
            });
        }
        match self.send(&p) {
            Ok(PutIf::Put(revision)) => {
                self.revision.store(revision, Ordering::Release);
                self.published.fetch_max(position, Ordering::AcqRel);
                Ok(())
            }
            Ok(PutIf::Refused(now)) => self.refused(&p, &now),
            Err(e) => Err(self.unreachable(e)),
        }
    }
}

/// What a member is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Following the log; writes go to the primary at this URL (if one
    /// is known).
    Replica {
        /// The primary's advertised URL, if one is known.
        primary: Option<String>,
    },
    /// The primary of this epoch.
    Primary {
        /// Its epoch (the `leader` key's create revision).
        epoch: u64,
    },
    /// Was the primary and lost its lease: stopping.
    Deposed,
}

/// One member of a cluster.
#[derive(Debug)]
pub struct Member {
    opts: ClusterOptions,
    keys: Keys,
    head: Arc<EtcdHead>,
    role: Mutex<Role>,
    /// The cluster's head, as last seen.
    head_position: AtomicU64,
    /// The store's position, as last applied (also sent on `applied_tx`,
    /// for forwarded writes that wait to read their own write).
    applied: AtomicU64,
    applied_tx: tokio::sync::watch::Sender<u64>,
    /// Milliseconds since `started` when the replica last held the head
    /// (or the primary last renewed its lease).
    fresh_at_ms: AtomicU64,
    /// Milliseconds since `started` when etcd last answered.
    etcd_at_ms: AtomicU64,
    started: Instant,
    lease: AtomicI64,
    stop: AtomicBool,
    deposed: tokio::sync::watch::Sender<bool>,
}

impl Member {
    /// A member of the cluster `opts` names; nothing is asked of etcd yet.
    pub fn new(opts: ClusterOptions) -> Arc<Member> {
        let keys = Keys::new(&opts.name);
        Arc::new(Member {
            head: Arc::new(EtcdHead::new(opts.etcd.clone(), keys.clone())),
            keys,
            opts,
            role: Mutex::new(Role::Replica { primary: None }),
            head_position: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            applied_tx: tokio::sync::watch::channel(0).0,
            fresh_at_ms: AtomicU64::new(0),
            etcd_at_ms: AtomicU64::new(0),
            started: Instant::now(),
            lease: AtomicI64::new(0),
            stop: AtomicBool::new(false),
            deposed: tokio::sync::watch::channel(false).0,
        })
    }

    /// The log head to open the store with ([`ocidb::StoreOptions::log_head`]).
    pub fn log_head(&self) -> Arc<dyn LogHead> {
        Arc::clone(&self.head) as Arc<dyn LogHead>
    }

    /// The head's position now, read from etcd (`None`: no head yet), for
    /// a replica's first restore.
    pub fn current_head(&self) -> ocidb::Result<Option<u64>> {
        self.head.head()
    }

    /// Claims the cluster's creation: `true` for the one member that ever
    /// gets it (an etcd key created once, never bound to a lease), which
    /// then makes the store if the bucket holds none. The others wait for
    /// its snapshot. A key that already names this member's URL is its
    /// own claim (an attempt whose answer was lost, or an earlier run that
    /// died before it wrote the store): it goes on with it rather than
    /// wait for a snapshot nobody else will write.
    pub fn claim_bootstrap(&self) -> ocidb::Result<bool> {
        let key = [self.keys.prefix.as_slice(), b"init"].concat();
        let me = self.opts.advertise.as_bytes();
        match self.opts.etcd.put_if(&[Guard::Created(&key, 0)], &key, me) {
            Ok(PutIf::Put(_)) => Ok(true),
            Ok(PutIf::Refused(now)) => Ok(now
                .first()
                .and_then(Option::as_ref)
                .is_some_and(|kv| kv.value == me)),
            Err(e) => Err(self.head.unreachable(e)),
        }
    }

    /// What this member is now.
    pub fn role(&self) -> Role {
        self.role.lock().map(|r| r.clone()).unwrap_or(Role::Deposed)
    }

    fn set_role(&self, role: Role) {
        if let Ok(mut r) = self.role.lock() {
            *r = role;
        }
    }

    /// The primary's URL, for a replica to forward a write to (never its
    /// own: a restarted member can find its last process's key until that
    /// lease lapses).
    pub(crate) fn primary_url(&self) -> Option<String> {
        match self.role() {
            Role::Replica { primary } => primary.filter(|p| *p != self.opts.advertise),
            _ => None,
        }
    }

    /// Whether writes must be forwarded (this member is not the primary).
    pub(crate) fn forwards(&self) -> bool {
        !matches!(self.role(), Role::Primary { .. })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Positions the replica is behind the head (0 on the primary).
    pub fn lag(&self) -> u64 {
        self.head_position
            .load(Ordering::Acquire)
            .saturating_sub(self.applied.load(Ordering::Acquire))
    }

    /// Waits until this member's store holds log position `p`, for at
    /// most `limit`: whether it does.
    pub(crate) async fn wait_applied(&self, p: u64, limit: Duration) -> bool {
        let mut rx = self.applied_tx.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|a| *a >= p))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// (head, applied) positions as last seen. On the primary, both are
    /// the last position it published: what it holds once that write
    /// commits (the renewals' refresh alone would lag by up to a third of
    /// the lease, and a caller comparing members' positions would take a
    /// replica one write behind for one that caught up).
    pub fn positions(&self) -> (u64, u64) {
        let (mut head, mut applied) = (
            self.head_position.load(Ordering::Acquire),
            self.applied.load(Ordering::Acquire),
        );
        if matches!(self.role(), Role::Primary { .. }) {
            let published = self.head.published.load(Ordering::Acquire);
            head = head.max(published);
            applied = applied.max(published);
        }
        (head, applied)
    }

    /// Why this member should not take traffic now, if it should not.
    pub(crate) fn not_ready(&self) -> Option<String> {
        let now = self.now_ms();
        let since =
            |at: &AtomicU64| Duration::from_millis(now.saturating_sub(at.load(Ordering::Acquire)));
        match self.role() {
            Role::Deposed => Some("this member lost the primary's lease and is stopping".into()),
            Role::Primary { .. } => None,
            Role::Replica { primary } => {
                if since(&self.etcd_at_ms) > self.opts.lease_ttl * 2 {
                    return Some(format!(
                        "etcd ({}) has not answered for {:.1} s",
                        self.opts.etcd.endpoints().join(","),
                        since(&self.etcd_at_ms).as_secs_f64()
                    ));
                }
                // Its own URL: this member's previous process, whose lease
                // has not lapsed yet.
                if primary.is_none_or(|p| p == self.opts.advertise) {
                    return Some(
                        "the cluster has no primary now (an election is under way)".into(),
                    );
                }
                let (head, applied) = self.positions();
                if head > applied && since(&self.fresh_at_ms) > self.opts.max_lag {
                    return Some(format!(
                        "replica lag: at log position {applied} of {head}, behind for {:.1} s (bound {} s)",
                        since(&self.fresh_at_ms).as_secs_f64(),
                        self.opts.max_lag.as_secs()
                    ));
                }
                None
            }
        }
    }

    /// A future that completes when this member lost the primary's lease
    /// (the server then shuts down).
    pub fn deposed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.deposed.subscribe();
        async move {
            let _ = rx.wait_for(|d| *d).await;
        }
    }

    /// Asks the member's loop to end (at its next etcd answer) and, on
    /// the primary, gives the lease back now: the next primary need not
    /// wait for it to lapse.
    pub fn resign(&self) {
        self.stop.store(true, Ordering::Release);
        if let Role::Primary { epoch } = self.role() {
            let _ = self.opts.etcd.revoke(self.lease.load(Ordering::Acquire));
            self.set_role(Role::Deposed);
            tracing::info!("cluster: the primary of epoch {epoch} resigned");
        }
    }

    /// The member's loop, on a thread of its own: follow, campaign,
    /// promote, renew. Returns when stopped or deposed.
    pub fn run(self: Arc<Self>, store: Arc<Store>) {
        while !self.stop.load(Ordering::Acquire) {
            let step = match self.role() {
                Role::Deposed => return,
                Role::Primary { .. } => self.renew(&store),
                Role::Replica { .. } => self.follow(&store),
            };
            if let Err(e) = step {
                tracing::warn!("cluster: {e}");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    fn etcd_answered(&self) {
        self.etcd_at_ms.store(self.now_ms(), Ordering::Release);
    }

    fn apply(&self, store: &Store, (head, epoch): (u64, u64)) -> Result<(), String> {
        self.head_position.fetch_max(head, Ordering::AcqRel);
        let at = store
            .follow_log(head, epoch)
            .map_err(|e| format!("applying the index log up to {head}: {e}"))?;
        self.applied.store(at, Ordering::Release);
        self.applied_tx.send_replace(at);
        if at >= self.head_position.load(Ordering::Acquire) {
            self.fresh_at_ms.store(self.now_ms(), Ordering::Release);
        }
        Ok(())
    }

    /// A replica's step: campaign if there is no primary; else apply the
    /// log to the head and watch for the next head, or the primary's end.
    fn follow(&self, store: &Store) -> Result<(), String> {
        let etcd = &self.opts.etcd;
        let (leader, rev) = etcd.get(&self.keys.leader)?;
        self.etcd_answered();
        let Some(leader) = leader else {
            return self.campaign(store);
        };
        let url = String::from_utf8_lossy(&leader.value).into_owned();
        self.set_role(Role::Replica { primary: Some(url) });
        let (head, _) = etcd.get(&self.keys.head)?;
        if let Some(h) = head {
            self.apply(store, parse_head(&h.value)?)?;
        } else {
            self.fresh_at_ms.store(self.now_ms(), Ordering::Release);
        }
        let mut failed = None;
        let mut from = rev + 1;
        // Each watch ends when the leader goes (then campaign) or after a
        // quiet while (then a fresh watch, which also notices a dead etcd).
        loop {
            let mut leader_gone = false;
            let next = etcd.watch(&self.keys.prefix, from, Duration::from_secs(5), &mut |ev| {
                self.etcd_answered();
                match ev {
                    etcd::WatchEvent::Put { key, kv } if key == self.keys.head => {
                        match parse_head(&kv.value).and_then(|h| self.apply(store, h)) {
                            Ok(()) => true,
                            Err(e) => {
                                failed = Some(e);
                                false
                            }
                        }
                    }
                    etcd::WatchEvent::Put { key, kv } if key == self.keys.leader => {
                        self.set_role(Role::Replica {
                            primary: Some(String::from_utf8_lossy(&kv.value).into_owned()),
                        });
                        true
                    }
                    etcd::WatchEvent::Delete { key, .. } if key == self.keys.leader => {
                        leader_gone = true;
                        false
                    }
                    _ => true,
                }
            })?;
            self.etcd_answered();
            if let Some(e) = failed.take() {
                return Err(e);
            }
            if leader_gone || self.stop.load(Ordering::Acquire) {
                self.set_role(Role::Replica { primary: None });
                return Ok(());
            }
            from = next.max(from);
        }
    }

    /// Tries to become the primary: a lease, then `leader` created under
    /// it if absent. The winner is promoted; a member that cannot be
    /// (its store failed) gives the lease back.
    fn campaign(&self, store: &Store) -> Result<(), String> {
        let etcd = &self.opts.etcd;
        let ttl = self.opts.lease_ttl.as_secs().max(1);
        let lease = etcd.grant(ttl)?;
        let Some(epoch) = etcd.create(&self.keys.leader, self.opts.advertise.as_bytes(), lease)?
        else {
            let _ = etcd.revoke(lease);
            return Ok(());
        };
        self.etcd_answered();
        self.lease.store(lease, Ordering::Release);
        self.head.epoch.store(epoch as u64, Ordering::Release);
        tracing::info!(
            "cluster: won the election (epoch {epoch}); applying the log and taking over"
        );
        // Renew while the promotion runs: a long catch-up must not lose
        // the lease it is for.
        let renewing = AtomicBool::new(true);
        let promoted = std::thread::scope(|s| {
            s.spawn(|| {
                while renewing.load(Ordering::Acquire) {
                    std::thread::sleep(self.opts.lease_ttl / 3);
                    if renewing.load(Ordering::Acquire) {
                        let _ = etcd.keep_alive(lease);
                    }
                }
            });
            let r = store.promote();
            renewing.store(false, Ordering::Release);
            r
        });
        if let Err(e) = promoted {
            let _ = etcd.revoke(lease);
            self.head.epoch.store(0, Ordering::Release);
            return Err(format!("promotion failed, the lease is given back: {e}"));
        }
        self.holds_the_head(store);
        self.set_role(Role::Primary {
            epoch: epoch as u64,
        });
        tracing::info!(
            "cluster: primary of epoch {epoch} at {}",
            self.opts.advertise
        );
        Ok(())
    }

    /// On the primary, the store's position is the head: positions and
    /// freshness say so.
    fn holds_the_head(&self, store: &Store) {
        if let Ok(p) = store.log_position() {
            self.head_position.store(p, Ordering::Release);
            self.applied.store(p, Ordering::Release);
        }
        self.fresh_at_ms.store(self.now_ms(), Ordering::Release);
    }

    /// A primary's step: renew the lease; once it cannot have been renewed
    /// for a whole TTL, or etcd says it is gone, the member is deposed.
    fn renew(&self, store: &Store) -> Result<(), String> {
        std::thread::sleep(self.opts.lease_ttl / 3);
        let lease = self.lease.load(Ordering::Acquire);
        let lost = match self.opts.etcd.keep_alive(lease) {
            Ok(ttl) if ttl > 0 => {
                self.etcd_answered();
                self.holds_the_head(store);
                None
            }
            Ok(_) => Some("etcd says the lease is gone".to_string()),
            Err(e) => {
                let since = self
                    .now_ms()
                    .saturating_sub(self.fresh_at_ms.load(Ordering::Acquire));
                (Duration::from_millis(since) >= self.opts.lease_ttl)
                    .then(|| format!("the lease could not be renewed for {since} ms: {e}"))
            }
        };
        // A store that stopped taking writes (a publish that failed, a
        // failed fsync) cannot go on as the primary either.
        let lost = lost.or_else(|| match store.check_writable() {
            Err(e @ (ocidb::Error::Poisoned(_) | ocidb::Error::NotPrimary { .. })) => {
                Some(format!("the store takes no more writes: {e}"))
            }
            _ => None,
        });
        if let Some(why) = lost {
            tracing::error!("cluster: no longer the primary ({why}); stopping, to rejoin as a replica on restart");
            let _ = self.opts.etcd.revoke(lease);
            self.set_role(Role::Deposed);
            let _ = self.deposed.send(true);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-member etcd, or `None` (skipped, with a line saying why)
    /// where none is installed; under `CI=true` its absence fails.
    fn etcd(dir: &std::path::Path) -> Option<(ocidb_bench::etcd::Etcd, Etcd)> {
        let Some(exe) = ocidb_bench::etcd::binary() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but etcd is not installed (.ci/run installs it: apt-get install etcd-server)"
            );
            eprintln!("skipped: etcd is not installed (apt-get install etcd-server)");
            return None;
        };
        let running = ocidb_bench::etcd::Etcd::start(&exe, dir, 1).expect("etcd starts");
        let client = Etcd::parse(&running.url()).expect("its address");
        Some((running, client))
    }

    fn not_primary(r: ocidb::Result<()>, why: &str) {
        match r {
            Err(ocidb::Error::NotPrimary { why: w, .. }) => {
                assert!(w.contains(why), "{w:?} does not say {why:?}");
            }
            other => panic!("expected NotPrimary ({why}), got {other:?}"),
        }
    }

    /// The head moves only forward, by the epoch that holds `leader`: a
    /// publish that reaches etcd after a later one (its first attempt
    /// stalled on one etcd member, the retry on another answered) changes
    /// nothing; an attempt etcd applied whose answer was lost is taken
    /// for done; a head moved by anyone else, or a lapsed lease, stops the
    /// primary.
    #[test]
    fn the_log_head_never_moves_back_and_only_its_epoch_moves_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some((_running, etcd)) = etcd(dir.path()) else {
            return;
        };
        let keys = Keys::new("t");
        let head = EtcdHead::new(etcd.clone(), keys.clone());
        not_primary(head.publish(1), "has not won an election");

        let lease = etcd.grant(60).expect("lease");
        let epoch = etcd
            .create(&keys.leader, b"http://me", lease)
            .expect("create")
            .expect("the key was free");
        head.epoch.store(epoch as u64, Ordering::Release);
        assert_eq!(head.head().expect("head"), None);

        let late = head.request(1);
        head.publish(1).expect("publish 1");
        head.publish(2).expect("publish 2");
        assert!(
            matches!(head.send(&late), Ok(PutIf::Refused(_))),
            "a late copy of publish 1 must not apply"
        );
        assert_eq!(head.head().expect("head"), Some(2));

        let lost = head.request(3);
        assert!(matches!(head.send(&lost), Ok(PutIf::Put(_))));
        head.publish(3)
            .expect("its own applied attempt is taken for done");
        head.publish(4).expect("publish 4");
        assert_eq!(head.head().expect("head"), Some(4));
        assert_eq!(head.published.load(Ordering::Acquire), 4);

        etcd.put(&keys.head, br#"{"position":9,"epoch":1}"#, 0)
            .expect("another writer");
        not_primary(head.publish(5), "moved under it");
        let (kv, _) = etcd.get(&keys.head).expect("get");
        assert_eq!(
            parse_head(&kv.expect("head").value).expect("parse"),
            (9, 1),
            "a refused publish changes nothing"
        );

        etcd.revoke(lease).expect("revoke");
        not_primary(head.publish(10), "lease lapsed");
    }

    /// One member ever claims the cluster's creation; asking again (its
    /// answer lost, or a restart before it made the store) keeps it.
    #[test]
    fn the_bootstrap_claim_is_one_members_and_stays_its() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some((_running, etcd)) = etcd(dir.path()) else {
            return;
        };
        let a = Member::new(ClusterOptions::new(etcd.clone(), "http://a:5000", "c"));
        let b = Member::new(ClusterOptions::new(etcd, "http://b:5000", "c"));
        assert!(a.claim_bootstrap().expect("claim"), "the first claim wins");
        assert!(
            !b.claim_bootstrap().expect("claim"),
            "another member's loses"
        );
        assert!(
            a.claim_bootstrap().expect("claim"),
            "the winner's again keeps it"
        );
    }
}
