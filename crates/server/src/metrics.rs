//! Prometheus metrics at `/metrics`: requests by route, method and status
//! with a latency histogram, bytes in and out, uploads in progress and GC
//! runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 8] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 1.0, 10.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum_s: f64,
    buckets: [u64; BUCKETS.len()],
}

/// What the server counts.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), Series>>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub gc_runs: AtomicU64,
    pub gc_deleted: AtomicU64,
}

impl Metrics {
    /// Counts a request. Every label is from a closed set (the route and
    /// method names are the server's, the status one it answered), so the
    /// series are bounded whatever clients send.
    pub fn observe(&self, route: &'static str, method: &'static str, status: u16, took: Duration) {
        let Ok(mut m) = self.requests.lock() else {
            return;
        };
        let s = m.entry((route, method, status)).or_default();
        let secs = took.as_secs_f64();
        s.count += 1;
        s.sum_s += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self, uploads_in_progress: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP ocidb_http_requests_total Requests by route, method and status.\n");
        out.push_str("# TYPE ocidb_http_request_duration_seconds histogram\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, method, status), s) in m.iter() {
                let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "ocidb_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                        s.buckets[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "ocidb_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    s.count
                );
                let _ = writeln!(
                    out,
                    "ocidb_http_request_duration_seconds_sum{{{labels}}} {}",
                    s.sum_s
                );
                let _ = writeln!(
                    out,
                    "ocidb_http_request_duration_seconds_count{{{labels}}} {}",
                    s.count
                );
            }
        }
        let counters = [
            (
                "ocidb_http_request_bytes_total",
                "Request body bytes (by Content-Length).",
                &self.bytes_in,
            ),
            (
                "ocidb_http_response_bytes_total",
                "Response body bytes (by Content-Length).",
                &self.bytes_out,
            ),
            (
                "ocidb_gc_runs_total",
                "GC runs by the schedule.",
                &self.gc_runs,
            ),
            (
                "ocidb_gc_deleted_total",
                "Records the scheduled GC runs deleted.",
                &self.gc_deleted,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ocidb_uploads_in_progress Requests carrying blob bytes now.\n# TYPE ocidb_uploads_in_progress gauge\nocidb_uploads_in_progress {uploads_in_progress}"
        );
        out
    }
}
