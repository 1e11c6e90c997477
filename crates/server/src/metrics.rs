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
    /// From the last full statistics pass (the maintenance job's, hourly):
    /// bytes stored once, and when (Unix seconds; 0: none yet).
    pub unique_bytes: AtomicU64,
    pub stats_at_s: AtomicU64,
    /// The scheduled scrub: bytes re-hashed, problems found, passes over
    /// the whole store completed.
    pub scrub_bytes: AtomicU64,
    pub scrub_problems: AtomicU64,
    pub scrub_passes: AtomicU64,
    /// Scheduled index snapshots written, and those that failed.
    pub snapshots: AtomicU64,
    pub snapshot_failures: AtomicU64,
    pub events_delivered: AtomicU64,
    pub event_failures: AtomicU64,
}

impl Metrics {
    /// Counts a GC run that was not a dry run.
    pub fn gc_ran(&self, r: &ocidb::GcReport) {
        self.gc_runs.fetch_add(1, Ordering::Relaxed);
        self.gc_deleted
            .fetch_add(r.deleted_manifests + r.deleted_blobs, Ordering::Relaxed);
    }

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

    /// The text exposition format (version 0.0.4): each family's `# HELP`
    /// and `# TYPE` lines, then its samples, families in a fixed order.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        self.render_requests(&mut out);
        self.render_counters(&mut out);
        render_gauges(&mut out, g);
        out
    }

    /// The request histogram.
    fn render_requests(&self, out: &mut String) {
        family(
            out,
            "ocidb_http_request_duration_seconds",
            "histogram",
            "Requests by route, method and status, with their latency.",
        );
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
    }

    /// Bytes in and out, and GC runs.
    fn render_counters(&self, out: &mut String) {
        let counters = [
            (
                "ocidb_http_request_bytes_total",
                "Request body bytes (by Content-Length).",
                self.bytes_in.load(Ordering::Relaxed),
            ),
            (
                "ocidb_http_response_bytes_total",
                "Response body bytes (by Content-Length).",
                self.bytes_out.load(Ordering::Relaxed),
            ),
            (
                "ocidb_gc_runs_total",
                "GC runs that changed the store (scheduled or through the admin API).",
                self.gc_runs.load(Ordering::Relaxed),
            ),
            (
                "ocidb_gc_deleted_total",
                "Records those GC runs deleted.",
                self.gc_deleted.load(Ordering::Relaxed),
            ),
            (
                "ocidb_scrub_verified_bytes_total",
                "Blob bytes the scheduled scrub re-hashed.",
                self.scrub_bytes.load(Ordering::Relaxed),
            ),
            (
                "ocidb_scrub_problems_total",
                "Problems the scheduled scrub found (damaged or missing bytes).",
                self.scrub_problems.load(Ordering::Relaxed),
            ),
            (
                "ocidb_scrub_passes_total",
                "Passes of the scheduled scrub over the whole store.",
                self.scrub_passes.load(Ordering::Relaxed),
            ),
            (
                "ocidb_index_snapshots_total",
                "Scheduled index snapshots written to the index log.",
                self.snapshots.load(Ordering::Relaxed),
            ),
            (
                "ocidb_index_snapshot_failures_total",
                "Scheduled index snapshots that failed (the log grows until one succeeds).",
                self.snapshot_failures.load(Ordering::Relaxed),
            ),
            (
                "ocidb_webhook_events_delivered_total",
                "Outbox events a webhook took (2xx), all webhooks together.",
                self.events_delivered.load(Ordering::Relaxed),
            ),
            (
                "ocidb_webhook_attempts_failed_total",
                "Webhook deliveries that failed and will be retried.",
                self.event_failures.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            sample(out, name, "counter", help, v);
        }
    }
}

/// Uploads in progress, the store's gauges and the last GC's outcome.
fn render_gauges(out: &mut String, g: &Gauges) {
    if let Some((primary, epoch, head, applied)) = g.cluster {
        for (name, help, v) in [
            (
                "ocidb_cluster_primary",
                "1 on the cluster's primary, 0 on a replica.",
                u64::from(primary),
            ),
            (
                "ocidb_cluster_epoch",
                "The primary's epoch (0 on a replica).",
                epoch,
            ),
            (
                "ocidb_cluster_head_position",
                "The index log's head, as this member last saw it.",
                head,
            ),
            (
                "ocidb_cluster_applied_position",
                "The index log position this member's store holds.",
                applied,
            ),
            (
                "ocidb_replica_lag_positions",
                "Log positions this member is behind the head.",
                head.saturating_sub(applied),
            ),
        ] {
            sample(out, name, "gauge", help, v);
        }
    }
    sample(
        out,
        "ocidb_uploads_in_progress",
        "gauge",
        "Requests carrying blob bytes now.",
        g.uploads_in_progress,
    );
    if let Some(c) = &g.counts {
        let gauges = [
            (
                "ocidb_store_records",
                "Blob records, manifests included.",
                c.records,
            ),
            ("ocidb_store_manifests", "Indexed manifests.", c.manifests),
            ("ocidb_store_repositories", "Repositories.", c.repositories),
            ("ocidb_store_tags", "Tags across repositories.", c.tags),
            (
                "ocidb_store_leases",
                "Leases, expired ones not yet dropped included.",
                c.leases,
            ),
            (
                "ocidb_store_upload_sessions",
                "Open upload sessions.",
                c.uploads,
            ),
            (
                "ocidb_store_database_bytes",
                "Size of the redb file.",
                c.database_file_bytes,
            ),
            (
                "ocidb_writer_queue_depth",
                "Jobs waiting for the writer thread.",
                c.writer_queue,
            ),
            (
                "ocidb_store_staged_reverse_rows",
                "Reverse-set rows in the staging trees, not yet merged.",
                c.staged_reverse_rows,
            ),
        ];
        for (name, help, v) in gauges {
            sample(out, name, "gauge", help, v);
        }
    }
    if let Some(b) = g.unique_bytes {
        sample(
                out,
                "ocidb_store_unique_bytes",
                "gauge",
                "Bytes stored once (every digest counted once), from the last full statistics pass (see ocidb_store_stats_timestamp_seconds).",
                b,
            );
    }
    if let Some(at) = g.stats_at_s {
        sample(
            out,
            "ocidb_store_stats_timestamp_seconds",
            "gauge",
            "When the last full statistics pass ran (Unix time).",
            at,
        );
    }
    if let Some(gc) = &g.last_gc {
        render_last_gc(out, gc);
    }
}

/// How the last GC that was not a dry run ended.
fn render_last_gc(out: &mut String, gc: &super::admin::GcOutcome) {
    sample(
        out,
        "ocidb_gc_last_run_timestamp_seconds",
        "gauge",
        "When the last GC that was not a dry run ended (Unix time).",
        gc.at_ms / 1000,
    );
    sample(
        out,
        "ocidb_gc_last_run_success",
        "gauge",
        "1 if the last GC succeeded, 0 if it failed.",
        u64::from(gc.result.is_ok()),
    );
    if let Ok(r) = &gc.result {
        sample(
            out,
            "ocidb_gc_last_run_reclaimed_bytes",
            "gauge",
            "Bytes the last GC reclaimed.",
            r.reclaimed_bytes,
        );
    }
}

/// What `/metrics` reads besides the counters: the store's gauges (none
/// when the store could not answer), and how the last GC ended.
#[derive(Default)]
pub(crate) struct Gauges {
    pub uploads_in_progress: u64,
    pub counts: Option<ocidb::Counts>,
    pub unique_bytes: Option<u64>,
    pub stats_at_s: Option<u64>,
    pub last_gc: Option<super::admin::GcOutcome>,
    /// (primary?, epoch, head, applied) of a cluster member.
    pub cluster: Option<(bool, u64, u64, u64)>,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, kind: &str, help: &str, v: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {v}");
}
