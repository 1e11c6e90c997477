//! `/livez` and `/readyz`. Readiness asks the blob backend itself, at most
//! once per [`PROBE_EVERY`] however often probes arrive: a bucket that
//! answered at open may have gone since, and a registry that cannot reach
//! its blobs should leave the load balancer's rotation until it can.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ocidb::store::Store;

/// A probe answer younger than this is reused.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The last answer of the blob backend: when it came, and what it said.
#[derive(Default)]
pub(crate) struct BackendHealth {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl BackendHealth {
    /// Whether the backend answered within [`PROBE_EVERY`], asking it now
    /// when the last answer is older. Concurrent probes wait for one
    /// request rather than each sending their own.
    pub async fn check(&self, store: &Arc<Store>) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = &*last
            && at.elapsed() < PROBE_EVERY
        {
            return answer.clone();
        }
        let s = Arc::clone(store);
        let answer = match tokio::task::spawn_blocking(move || s.check_backend()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the backend check failed: {e}")),
        };
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

/// Why the store cannot serve now, if it cannot: poisoned by a failed
/// write or closed (only a restart recovers), its backend unreachable at
/// open, or not answering now.
pub(crate) async fn not_ready(
    store: &Arc<Store>,
    health: &BackendHealth,
    member: Option<&crate::cluster::Member>,
) -> Option<String> {
    // The backend first: asking it is also what reconnects a store whose
    // bucket was down at open, which then takes writes again.
    let answered = health.check(store).await;
    if let Some(why) = member.and_then(crate::cluster::Member::not_ready) {
        return Some(why);
    }
    match store.check_writable() {
        // A replica takes no writes of its own: it forwards them.
        Err(ocidb::Error::NotPrimary { .. }) if member.is_some() => {}
        Err(e) => return Some(e.to_string()),
        Ok(()) => {}
    }
    answered
        .err()
        .map(|why| format!("the blob backend did not answer: {why}"))
}

/// Why the process should be restarted, if it should: a poisoned or
/// closed store never takes writes again in this process.
pub(crate) fn not_live(store: &Store) -> Option<String> {
    match store.check_writable() {
        Err(e @ (ocidb::Error::Poisoned(_) | ocidb::Error::Closed)) => Some(e.to_string()),
        _ => None,
    }
}
