//! Timing and memory probes shared by the scenarios.

use std::time::{Duration, Instant};

use ocidb::Result;

/// Latency distribution and throughput of one measured operation.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Lat {
    /// Operations per second (all threads together).
    pub ops_per_s: f64,
    /// Median latency in microseconds.
    pub p50_us: f64,
    /// 99th-percentile latency in microseconds.
    pub p99_us: f64,
    /// Operations timed.
    pub ops: u64,
}

/// The `p` quantile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Summarises per-operation samples taken over `wall`.
pub fn summarise(mut samples: Vec<Duration>, wall: Duration) -> Lat {
    samples.sort();
    Lat {
        ops_per_s: samples.len() as f64 / wall.as_secs_f64().max(1e-9),
        p50_us: percentile(&samples, 0.5).as_secs_f64() * 1e6,
        p99_us: percentile(&samples, 0.99).as_secs_f64() * 1e6,
        ops: samples.len() as u64,
    }
}

/// Runs `op(i)` for i in 0..n, split over `threads` threads, timing each.
pub fn time_ops(n: usize, threads: usize, op: impl Fn(usize) -> Result<()> + Sync) -> Result<Lat> {
    let threads = threads.max(1);
    let started = Instant::now();
    let per: Vec<Result<Vec<Duration>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || {
                    let mut v = Vec::with_capacity(n / threads + 1);
                    for i in (t..n).step_by(threads) {
                        let t0 = Instant::now();
                        op(i)?;
                        v.push(t0.elapsed());
                    }
                    Ok(v)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ocidb::Error::Internal("a bench thread panicked".into()))
                })
            })
            .collect()
    });
    let wall = started.elapsed();
    let mut all = Vec::with_capacity(n);
    for r in per {
        all.extend(r?);
    }
    Ok(summarise(all, wall))
}

/// One operation of [`time_interleaved`]: called with the operation's own
/// running count.
pub type Op<'a> = &'a dyn Fn(usize) -> Result<()>;

/// Rounds in which [`time_interleaved`] alternates its operations.
const ROUNDS: usize = 20;

/// Times `n` calls of each operation on this thread, alternating them in
/// rounds (a slice of each per round), so that every operation sees the
/// same moments of a shared, noisy machine: a slow window then slows all
/// of them, not only whichever ran in it, and their ratios hold.
pub fn time_interleaved(n: usize, ops: &[Op<'_>]) -> Result<Vec<Lat>> {
    let mut samples: Vec<Vec<Duration>> = ops.iter().map(|_| Vec::with_capacity(n)).collect();
    let mut walls = vec![Duration::ZERO; ops.len()];
    let per_round = n.div_ceil(ROUNDS).max(1);
    let mut done = 0;
    while done < n {
        let reps = per_round.min(n - done);
        for ((op, v), wall) in ops.iter().zip(&mut samples).zip(&mut walls) {
            let started = Instant::now();
            for i in done..done + reps {
                let t0 = Instant::now();
                op(i)?;
                v.push(t0.elapsed());
            }
            *wall += started.elapsed();
        }
        done += reps;
    }
    Ok(samples
        .into_iter()
        .zip(walls)
        .map(|(v, wall)| summarise(v, wall))
        .collect())
}

/// Resets the kernel's peak-RSS mark of this process to its current RSS
/// (Linux ≥ 4.0), so that the next [`peak_rss_mb`] covers one scenario.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", b"5");
}

/// Peak resident set size since the last reset, in MiB (0 where the
/// kernel does not say).
pub fn peak_rss_mb() -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0.0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates_come_from_the_samples() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let l = summarise(samples, Duration::from_millis(10));
        assert_eq!(l.ops, 100);
        assert!((l.p50_us - 51.0).abs() < 1.5, "{}", l.p50_us);
        assert!((l.p99_us - 99.0).abs() < 1.5, "{}", l.p99_us);
        assert!((l.ops_per_s - 10_000.0).abs() < 1.0, "{}", l.ops_per_s);
    }

    #[test]
    fn every_operation_runs_once_across_threads() {
        let hits = std::sync::atomic::AtomicUsize::new(0);
        let l = time_ops(1000, 3, |_| {
            hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .expect("runs");
        assert_eq!(hits.into_inner(), 1000);
        assert_eq!(l.ops, 1000);
    }

    #[test]
    fn interleaved_runs_each_op_n_times_in_alternating_rounds() {
        let order = std::cell::RefCell::new(Vec::new());
        let a_calls = std::cell::Cell::new(0);
        let a = |i: usize| {
            assert_eq!(i, a_calls.get(), "each op counts its own calls");
            a_calls.set(i + 1);
            order.borrow_mut().push('a');
            Ok(())
        };
        let b = |_| {
            order.borrow_mut().push('b');
            Ok(())
        };
        let lats = time_interleaved(45, &[&a, &b]).expect("ops succeed");
        assert_eq!(lats.len(), 2);
        assert!(lats.iter().all(|l| l.ops == 45));
        let order = order.into_inner();
        assert_eq!(order.len(), 90);
        // 45 calls in rounds of 3: the ops alternate every 3 calls.
        assert_eq!(&order[..7], &['a', 'a', 'a', 'b', 'b', 'b', 'a']);
        assert_eq!(order.iter().filter(|&&c| c == 'a').count(), 45);
    }

    #[test]
    fn interleaved_stops_at_the_first_error() {
        let fails = |i: usize| {
            if i == 4 {
                Err(ocidb::Error::Internal("op 4 failed".into()))
            } else {
                Ok(())
            }
        };
        let err = time_interleaved(100, &[&fails]).expect_err("the error comes back");
        assert!(err.to_string().contains("op 4 failed"), "{err}");
    }
}
