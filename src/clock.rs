//! The store's wall clock: record ages, lease and upload expiry, the GC
//! grace period. Injected through [`crate::store::StoreOptions::clock`] so that
//! a test (or a host replaying a fixture) decides what "now" is instead
//! of the machine's date: a fixture whose lease was written to last a day
//! must not start failing a day later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The machine's clock ([`SystemTime::now`]); the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock set before 1970 reads as the epoch: every age is then
        // "young", which errs on the side of keeping content.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that only moves when told to: for tests and for replaying
/// fixtures at the time they were written.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock {
            now_ms: AtomicU64::new(now_ms),
        }
    }

    /// A clock reading the machine's time now, frozen there.
    pub fn frozen_now() -> ManualClock {
        ManualClock::new(SystemClock.now_ms())
    }

    /// Sets the time.
    pub fn set_ms(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now_ms(), 3_000);
        c.set_ms(5);
        assert_eq!(c.now_ms(), 5);
        c.set_ms(u64::MAX - 1);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now_ms(), u64::MAX, "advance saturates");
    }

    #[test]
    fn system_clock_is_after_2020() {
        // 2020-01-01T00:00:00Z: a floor, not a date the test expires on.
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
