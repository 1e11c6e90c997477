//! The harness's results: a table for people, JSON for tools, and an SVG
//! scaling plot.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One measured scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// What was measured (`group: detail`).
    pub scenario: String,
    /// Operations (or MB for throughput rows) per second.
    pub ops_per_s: f64,
    /// Median latency in microseconds (0 where only a rate was measured).
    pub p50_us: f64,
    /// 99th percentile in microseconds.
    pub p99_us: f64,
    /// Unit of `ops_per_s` ("ops" or "MB").
    pub unit: String,
    /// The baseline this row is compared with, measured in the same run.
    pub baseline: Option<String>,
    /// This row's cost divided by the baseline's (latency p50, or time per
    /// operation for rate-only rows): 1.0 = as fast, below 1 = faster.
    pub cost_ratio: Option<f64>,
    /// Peak resident set size during the scenario, in MiB.
    pub peak_rss_mb: f64,
    /// Anything a reader needs to read the row right.
    pub note: String,
}

/// The size on disk of one contender, after the same ingest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SizeRow {
    /// Which database.
    pub what: String,
    /// Bytes on disk.
    pub bytes: u64,
    /// Bytes per manifest ingested.
    pub bytes_per_manifest: f64,
    /// Against the fair SQLite peer (SQLite with the same index).
    pub vs_fair_sqlite: f64,
    /// Against the manifests' own bytes.
    pub vs_manifest_bytes: f64,
}

/// One store size of the scaling curve: series name → p50 in microseconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScalePoint {
    /// Manifests in the store.
    pub manifests: u64,
    /// Median latency per series.
    pub p50_us: BTreeMap<String, f64>,
    /// Peak RSS of the ocidb lookups at this size, in MiB.
    pub lookup_rss_mb: f64,
}

/// Everything one `bench run` measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// `--quick` or full.
    pub quick: bool,
    /// Generator seed.
    pub seed: u64,
    /// Manifests in the main store.
    pub manifests: u64,
    /// Whether the peers were compiled in.
    pub peers: bool,
    /// The page cache of the ocidb stores and the SQLite peers, MiB (256
    /// in JSON written before it was recorded, the only cache then).
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
    /// The machine, as /proc says.
    pub machine: String,
    /// Wall time of the run.
    pub seconds: f64,
    /// The table.
    pub rows: Vec<Row>,
    /// The scaling curve.
    pub scaling: Vec<ScalePoint>,
    /// Sizes on disk (with the peers built; empty otherwise, and in JSON
    /// written before the rows existed).
    #[serde(default)]
    pub sizes: Vec<SizeRow>,
}

fn default_cache_mib() -> u64 {
    256
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

/// A cost ratio with the digits that matter (0.0042×, 0.31×, 12.5×).
pub fn ratio(x: f64) -> String {
    if x < 0.01 {
        format!("{x:.4}×")
    } else if x < 0.1 {
        format!("{x:.3}×")
    } else if x < 100.0 {
        format!("{x:.2}×")
    } else {
        format!("{x:.0}×")
    }
}

/// Microseconds, shown in the unit that reads best.
pub fn dur(us: f64) -> String {
    if us <= 0.0 {
        "—".into()
    } else if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.2} µs")
    }
}

/// The table as Markdown (it reads as plain text on a terminal too).
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ocidb bench run{}: {} manifests (seed {}), {} MiB page cache for ocidb and the SQLite peers each, {}, {:.0} s{}",
        if r.quick { " --quick" } else { "" },
        r.manifests,
        r.seed,
        r.cache_mib,
        r.machine,
        r.seconds,
        if r.peers {
            ""
        } else {
            " (peers not built: add --features peers)"
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| scenario | rate | p50 | p99 | cost vs baseline (same run; below 1 = faster) | peak RSS of the harness |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in &r.rows {
        let rate = if row.ops_per_s > 0.0 {
            format!("{} {}/s", si(row.ops_per_s), row.unit)
        } else {
            "—".into()
        };
        let vs = match (&row.baseline, row.cost_ratio) {
            (Some(b), Some(x)) => format!("{} {b}", ratio(x)),
            (Some(b), None) => b.clone(),
            _ => "—".into(),
        };
        let note = if row.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", row.note)
        };
        let rss = if row.peak_rss_mb > 0.0 {
            format!("{:.0} MiB", row.peak_rss_mb)
        } else {
            "—".into()
        };
        let _ = writeln!(
            out,
            "| {}{} | {} | {} | {} | {} | {} |",
            row.scenario,
            note,
            rate,
            dur(row.p50_us),
            dur(row.p99_us),
            vs,
            rss
        );
    }
    if !r.sizes.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Size on disk after the same ingest:");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| database | MiB | bytes per manifest | vs SQLite, same index | vs the manifests' bytes |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for z in &r.sizes {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.0} | {} | {} |",
                z.what,
                z.bytes as f64 / f64::from(1 << 20),
                z.bytes_per_manifest,
                ratio(z.vs_fair_sqlite),
                ratio(z.vs_manifest_bytes)
            );
        }
    }
    if !r.scaling.is_empty() {
        let names: Vec<&String> = r.scaling[0].p50_us.keys().collect();
        let _ = writeln!(out);
        let _ = writeln!(out, "Scaling (p50 by store size):");
        let _ = writeln!(out);
        let mut head = "| manifests |".to_string();
        for n in &names {
            head.push_str(&format!(" {n} |"));
        }
        head.push_str(" lookup RSS |");
        let _ = writeln!(out, "{head}");
        let _ = writeln!(out, "|{}", "---|".repeat(names.len() + 2));
        for p in &r.scaling {
            let mut line = format!("| {} |", p.manifests);
            for n in &names {
                line.push_str(&format!(
                    " {} |",
                    dur(p.p50_us.get(*n).copied().unwrap_or(0.0))
                ));
            }
            line.push_str(&format!(" {:.0} MiB |", p.lookup_rss_mb));
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// A log-log line chart of p50 latency against store size, one line per
/// series, as a standalone SVG document.
pub fn scaling_svg(points: &[ScalePoint], title: &str) -> String {
    let (w, h) = (760.0, 440.0);
    let (left, right, top, bottom) = (80.0, 230.0, 40.0, 60.0);
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for p in points {
        for (name, v) in &p.p50_us {
            if *v > 0.0 {
                series
                    .entry(name.as_str())
                    .or_default()
                    .push((p.manifests as f64, *v));
            }
        }
    }
    let xs: Vec<f64> = points.iter().map(|p| p.manifests as f64).collect();
    let ys: Vec<f64> = series.values().flatten().map(|p| p.1).collect();
    let lg = |v: f64| v.max(1e-3).log10();
    // A hair of slack so that 1,000,005 manifests do not open a decade.
    let (x0, x1) = (
        (lg(xs.iter().copied().fold(f64::MAX, f64::min)) + 0.01).floor(),
        (lg(xs.iter().copied().fold(1.0, f64::max)) - 0.01).ceil(),
    );
    let (y0, y1) = (
        (lg(ys.iter().copied().fold(f64::MAX, f64::min)) + 0.01).floor(),
        (lg(ys.iter().copied().fold(1e-3, f64::max)) - 0.01).ceil(),
    );
    let (x1, y1) = (x1.max(x0 + 1.0), y1.max(y0 + 1.0));
    let px = |x: f64| left + (lg(x) - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| h - bottom - (lg(y) - y0) / (y1 - y0) * (h - top - bottom);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{title}</text>"#,
        (w - right + left) / 2.0
    );
    // Decade grid lines and labels.
    let mut e = x0 as i32;
    while e as f64 <= x1 {
        let x = px(10f64.powi(e));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            h - bottom,
            h - bottom + 18.0,
            count_label(e)
        );
        e += 1;
    }
    let mut e = y0 as i32;
    while e as f64 <= y1 {
        let y = py(10f64.powi(e));
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - right,
            left - 6.0,
            y + 4.0,
            time_label(e)
        );
        e += 1;
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">manifests in the store (log scale)</text>"#,
        (w - right + left) / 2.0,
        h - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">p50 latency (log scale)</text>"#,
        (h - bottom + top) / 2.0
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (x, y) in pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                px(*x),
                py(*y)
            );
        }
        let ly = top + 10.0 + i as f64 * 20.0;
        let lx = w - right + 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            xml_escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// 10^e as a count: 10k, 100k, 1M.
fn count_label(e: i32) -> String {
    match e {
        ..=2 => format!("{}", 10f64.powi(e)),
        3..=5 => format!("{}k", 10f64.powi(e - 3)),
        6..=8 => format!("{}M", 10f64.powi(e - 6)),
        _ => format!("1e{e}"),
    }
}

/// 10^e microseconds: 0.1 µs, 1 µs, … 1 ms, … 1 s.
fn time_label(e: i32) -> String {
    match e {
        ..=2 => format!("{} µs", 10f64.powi(e)),
        3..=5 => format!("{} ms", 10f64.powi(e - 3)),
        _ => format!("{} s", 10f64.powi(e - 6)),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(n: u64, a: f64, b: f64) -> ScalePoint {
        ScalePoint {
            manifests: n,
            p50_us: BTreeMap::from([("a".to_string(), a), ("b & c".to_string(), b)]),
            lookup_rss_mb: 10.0,
        }
    }

    #[test]
    fn the_plot_has_a_line_per_series_and_a_point_per_size() {
        let svg = scaling_svg(
            &[
                point(10_000, 5.0, 1_000.0),
                point(1_000_000, 6.0, 100_000.0),
            ],
            "t",
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("b &amp; c"), "names are escaped");
    }

    #[test]
    fn the_table_names_every_baseline() {
        let r = Report {
            quick: true,
            seed: 1,
            manifests: 10,
            peers: false,
            cache_mib: 64,
            machine: "m".into(),
            seconds: 1.0,
            rows: vec![Row {
                scenario: "lookup: stat".into(),
                ops_per_s: 1000.0,
                p50_us: 4.0,
                p99_us: 9.0,
                unit: "ops".into(),
                baseline: Some("raw redb get (3.00 µs)".into()),
                cost_ratio: Some(1.33),
                peak_rss_mb: 12.0,
                note: String::new(),
            }],
            scaling: vec![point(10, 1.0, 2.0)],
            sizes: vec![SizeRow {
                what: "ocidb, fresh".into(),
                bytes: 3 << 20,
                bytes_per_manifest: 314_572.8,
                vs_fair_sqlite: 1.5,
                vs_manifest_bytes: 2.25,
            }],
        };
        let t = table(&r);
        assert!(t.contains("1.33× raw redb get (3.00 µs)"), "{t}");
        assert!(t.contains("| 10 |"), "{t}");
        assert!(
            t.contains("64 MiB page cache for ocidb and the SQLite peers each"),
            "{t}"
        );
        assert!(
            t.contains("| ocidb, fresh | 3.0 | 314573 | 1.50× | 2.25× |"),
            "{t}"
        );
    }
}
