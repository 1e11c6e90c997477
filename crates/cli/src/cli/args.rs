//! Command-line grammar.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// ocidb: an embedded store for OCI content with a reference graph index.
#[derive(Parser, Debug)]
#[command(
    name = "ocidb",
    version,
    about,
    after_help = "Examples:\n  ocidb demo\n  ocidb --store ./s blob put layer.tar\n  ocidb --store ./s tree library/app:v1\n\nThe store directory comes from --store, else $OCIDB_STORE, else ./ocidb-store."
)]
pub struct Cli {
    /// Store directory.
    #[arg(
        long,
        global = true,
        env = "OCIDB_STORE",
        default_value = "./ocidb-store",
        value_name = "DIR"
    )]
    pub store: PathBuf,

    /// Where blob bytes live: `local` (files in the store directory) or
    /// `s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=NAME`, with
    /// credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. A new
    /// store records it; later opens may leave it out.
    #[arg(long, global = true, env = "OCIDB_BLOBS", value_name = "LOCATION")]
    pub blobs: Option<String>,

    /// Run stats, tags, tree, repos, lease, gc and fsck through a running
    /// server's admin API: `http://[USER:PASSWORD@]HOST:PORT` (its
    /// --admin-addr, or its API address for a user with an admin grant)
    /// or `unix:PATH`. Without it they find a server that holds --store
    /// through the store's socket by themselves.
    #[arg(long, global = true, env = "OCIDB_SERVER", value_name = "URL")]
    pub server: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load sample content (a multi-arch image, signature, SBOM, attestation
    /// and a Helm chart) into a temporary store and show what ocidb sees.
    #[command(
        after_help = "Example:\n  ocidb demo\n  ocidb --store ./demo-store demo   # keep the store afterwards"
    )]
    Demo,

    /// Raw blobs: put, get, stat, rm.
    #[command(subcommand)]
    Blob(BlobCommand),

    /// Manifests: put and get, with graph indexing.
    #[command(subcommand)]
    Manifest(ManifestCommand),

    /// Point a tag at a manifest of a repository (moves it if it exists),
    /// or put a deleted or moved tag back (--restore, --at).
    #[command(
        after_help = "Examples:\n  ocidb tag library/app@sha256:4f1c2a9b0d3e v2\n  ocidb tag library/app:v1 latest\n  ocidb tag library/app v2 sha256:4f1c…   # the older form: REPO TAG DIGEST\n  ocidb tag library/app:v1 --restore sha256:4f1c2a9b0d3e   # undelete (see `ocidb history`)\n  ocidb tag library/app:v1 --at 2026-12-01T09:00:00Z"
    )]
    Tag {
        /// The manifest: REPO@DIGEST or REPO:TAG (or, with DIGEST, the
        /// repository); with --restore or --at, the tag REPO:TAG.
        source: String,
        /// The tag to point at it.
        #[arg(required_unless_present_any = ["restore", "at"])]
        tag: Option<String>,
        /// The manifest's digest, in the older form `tag REPO TAG DIGEST`.
        digest: Option<String>,
        /// Put the tag back on a manifest it named before (whole digest or
        /// a prefix); the manifest must still be stored (GC keeps it
        /// within its undelete window).
        #[arg(long, value_name = "DIGEST", conflicts_with_all = ["tag", "digest", "at"])]
        restore: Option<String>,
        /// Put the tag back where it pointed at this time (RFC 3339).
        #[arg(long, value_name = "TIME", conflicts_with_all = ["tag", "digest"])]
        at: Option<String>,
    },

    /// Run a retention policy: drop the tags it does not keep, with the
    /// manifests only they needed (child manifests, referrers), never
    /// what a kept tag, another repository, a lease or the undelete window
    /// needs; report the bytes the store really gets back.
    #[command(
        after_help = "Example policy (TOML):\n  [[rules]]\n  repositories = \"team/\"          # a repository, a namespace, or \"*\"\n  keep_tags = '^v[0-9]+\\.[0-9]+\\.[0-9]+$'\n  keep_last_pushed = 10\n  keep_pulled_within = \"30d\"\n  delete_untagged_after = \"7d\"\n  signed_only = false\n\nExamples:\n  ocidb retention --policy retention.toml --dry-run\n  ocidb retention --policy retention.toml --json"
    )]
    Retention {
        /// The policy file (TOML, or JSON).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Report what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The GC grace period the freed bytes assume.
        #[arg(long, default_value = "1h")]
        grace: String,
        /// Keep what a tag named within this long (the GC's undelete window).
        #[arg(long, default_value = "0s")]
        undelete_window: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// What a repository or a namespace (a prefix ending in `/`) holds:
    /// logical bytes (as its repositories see them, what quotas limit),
    /// and of its distinct content, the bytes exclusive to it and those
    /// another repository shares. Without SCOPE, every repository.
    #[command(
        after_help = "Examples:\n  ocidb usage library/app\n  ocidb usage team/ --json\n  ocidb usage"
    )]
    Usage {
        /// A repository, or a namespace such as `team/`.
        scope: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// A tag's history: every time it was pointed, moved, deleted or
    /// restored, newest first, with who did it when known.
    #[command(
        after_help = "Examples:\n  ocidb history library/app:latest\n  ocidb history library/app:latest --json -n 100 --before 2026-12-01T00:00:00Z"
    )]
    History {
        /// REPO:TAG.
        reference: String,
        /// At most this many events.
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
        /// Only events before this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        before: Option<String>,
        /// Only events after this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only events about this manifest (whole digest).
        #[arg(long)]
        digest: Option<String>,
        /// Whole digests (default: 12 hex digits, a prefix commands accept).
        #[arg(long)]
        full: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Remove a tag (the manifest stays until gc).
    #[command(after_help = "Example:\n  ocidb untag library/app:v1")]
    Untag {
        /// REPO:TAG (or the repository, with TAG).
        reference: String,
        /// The tag, in the older form `untag REPO TAG`.
        tag: Option<String>,
    },

    /// List the tags of a repository, sorted, with the digest each names.
    #[command(
        after_help = "Example:\n  ocidb tags library/app --json\n  ocidb tags library/app -n 10 --last v1.2"
    )]
    Tags {
        /// Repository name.
        repo: String,
        /// Whole digests (default: 12 hex digits, a prefix commands accept).
        #[arg(long)]
        full: bool,
        /// Start after this tag.
        #[arg(long)]
        last: Option<String>,
        /// At most this many.
        #[arg(short = 'n', long)]
        n: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// List repositories.
    #[command(after_help = "Example:\n  ocidb repos --json")]
    Repos {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Print the OCI referrers response (an image index) for a subject.
    #[command(
        after_help = "Example:\n  ocidb referrers library/app:v1 --artifact-type application/spdx+json"
    )]
    Referrers(ReferrersArgs),

    /// Show an image as a tree: children and, transitively, referrers.
    #[command(
        after_help = "Example:\n  ocidb tree library/app:v1\n  ocidb tree library/app@sha256:4f1c2a9b0d3e --json"
    )]
    Tree {
        /// REPO:TAG or REPO@DIGEST (a digest may be abbreviated).
        reference: String,
        /// Whole digests (default: 12 hex digits, a prefix commands accept).
        #[arg(long)]
        full: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Delete a manifest from a repository.
    #[command(after_help = "Example:\n  ocidb rm library/app@sha256:4f1c2a9b0d3e")]
    Rm {
        /// REPO@DIGEST, or REPO:TAG for the manifest the tag names.
        reference: String,
        /// Remove it even if a tag reaches it (the tag's image breaks).
        #[arg(long)]
        force: bool,
    },

    /// Collect garbage online (writers keep going).
    #[command(
        after_help = "Examples:\n  ocidb gc --dry-run --verbose\n  ocidb gc --grace 0s --delete-untagged --json"
    )]
    Gc(GcArgs),

    /// Verify every blob's bytes and every index entry. Exits 1 if problems remain.
    #[command(after_help = "Examples:\n  ocidb fsck\n  ocidb fsck --repair --json")]
    Fsck(FsckArgs),

    /// Reclaim free space in the database file.
    #[command(after_help = "Example:\n  ocidb compact")]
    Compact,

    /// Move a store's blob files into an S3-compatible bucket, verifying
    /// each; the store switches over only at the end. Safe to interrupt and
    /// rerun.
    #[command(
        after_help = "Example:\n  AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… ocidb --store ./s migrate-blobs --to 's3://ocidb/prod?endpoint=http://127.0.0.1:3900&region=garage'"
    )]
    MigrateBlobs {
        /// The bucket: `s3://BUCKET/PREFIX?endpoint=URL&region=NAME`.
        #[arg(long, value_name = "LOCATION")]
        to: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Write a snapshot of the index to the store's index log in its
    /// bucket now (a store on S3 also writes one at its first open), then
    /// prune: two snapshots are kept, and the log after the older one.
    #[command(
        after_help = "Example:\n  ocidb --store ./s --blobs 's3://ocidb/prod?endpoint=http://127.0.0.1:3900&region=garage' snapshot"
    )]
    Snapshot {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Rebuild a lost store from its bucket alone: the newest index
    /// snapshot, then every log object after it, then a full fsck. The
    /// store directory must not exist (or be empty). With --to, the store
    /// as it was at a log position or a time.
    #[command(
        after_help = "Examples:\n  ocidb --store ./s --blobs 's3://ocidb/prod?endpoint=http://127.0.0.1:3900&region=garage' restore\n  ocidb --store ./s --blobs 's3://…' restore --to 2026-12-06T09:00:00Z\n  ocidb --store ./s --blobs 's3://…' restore --to 41873"
    )]
    Restore {
        /// A log position (digits), or an RFC 3339 time: the store after
        /// that commit, or after the last commit written by then.
        #[arg(long, value_name = "POSITION|TIME")]
        to: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Upgrade a store written by an older release to this release's
    /// on-disk format. Safe to interrupt: a store is always in one format.
    #[command(after_help = "Example:\n  ocidb --store /var/lib/ocidb migrate")]
    Migrate {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Import an OCI image layout (a directory, or a tar of one).
    #[command(
        after_help = "Examples:\n  ocidb import ./my-layout\n  ocidb import image.tar --repo library/app --json\n  skopeo copy docker://alpine oci:alpine:latest && ocidb import alpine"
    )]
    Import(ImportArgs),

    /// Export images as an OCI image layout directory, or a .tar of one.
    #[command(
        after_help = "Examples:\n  ocidb export library/app:v1 ./out\n  ocidb export library/app:v1 library/app:v2 app.tar --with-referrers"
    )]
    Export(ExportArgs),

    /// Leases: time-limited GC roots that imports and uploads take. A killed
    /// import leaves its lease until it expires; list and release them here.
    #[command(
        subcommand,
        after_help = "Examples:\n  ocidb lease ls\n  ocidb lease rm 7"
    )]
    Lease(LeaseCommand),

    /// Repositories, manifests, blobs, dedupe ratio, referrers by type, sizes.
    #[command(after_help = "Example:\n  ocidb stats --json")]
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Test support (hidden).
    #[command(subcommand, hide = true)]
    Debug(DebugCommand),

    /// The benchmarking harness: generate synthetic registries, run the
    /// scenarios against same-run baselines (and peers, with the `peers`
    /// feature).
    #[command(subcommand)]
    Bench(BenchCommand),

    /// Serve the store as an OCI registry (distribution API v1.1).
    #[command(
        after_help = "Examples:\n  ocidb serve --addr 127.0.0.1:5000 --gc-interval 1h\n  skopeo copy --dest-tls-verify=false oci:./layout:v1 docker://127.0.0.1:5000/library/app:v1\n  oras push --plain-http 127.0.0.1:5000/library/app:v1 ./file.txt\n  oras discover --plain-http 127.0.0.1:5000/library/app:v1\n  docker pull 127.0.0.1:5000/library/app:v1   # 127.0.0.1 is an insecure registry to docker by default\n\nLogs: one access-log event per request on stderr (info). OCIDB_LOG=warn quiets it; OCIDB_LOG_FORMAT=json writes JSON lines with peer, user, method, path, route, status, ms, bytes_in and bytes_out.\nMetrics: GET /metrics (Prometheus text); with --htpasswd it needs a user's credentials, or serve it on --admin-addr 127.0.0.1:5001 without.\nProbes: GET /livez and /readyz, without credentials.\nMaintenance: while serving, `ocidb --store DIR stats|tags|tree|repos|lease|gc|fsck` reach the server through DIR/ocidb.sock.\nConfig: --config FILE (TOML, keys = these flags with _ for -); every flag also reads OCIDB_<FLAG>; --print-config shows the result. SIGHUP reloads the password file, grants and certificate.\nGuide: docs/operations.md."
    )]
    Serve(Box<ServeArgs>),
    /// Print a password-file line `USER:$2b$…` (bcrypt) for `serve
    /// --htpasswd`, reading the password from the first line of stdin:
    /// `ocidb htpasswd alice >> /etc/ocidb/htpasswd`, then type it (no
    /// apache2-utils needed).
    Htpasswd {
        /// The user name (no `:`, no whitespace).
        user: String,
        /// bcrypt's cost: each step doubles the time a login check takes.
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: u32,
    },

    /// Everything the index knows about a digest, as JSON.
    #[command(
        after_help = "Examples:\n  ocidb inspect sha256:4f1c2a9b0d3e\n  ocidb inspect library/app:v1   # referrers in library/app only"
    )]
    Inspect {
        /// A DIGEST (or an unambiguous prefix), REPO@DIGEST or REPO:TAG.
        reference: String,
        /// Limit referrers to this repository.
        #[arg(long)]
        repo: Option<String>,
        /// Print JSON (what this command prints anyway).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Generate a synthetic registry (seeded, deterministic) into the store,
    /// or as an OCI image layout with --layout.
    #[command(
        after_help = "Examples:\n  ocidb --store ./big bench gen --preset large\n  ocidb bench gen --preset small --layout ./synthetic-layout"
    )]
    Gen {
        /// small (~10k manifests), medium (~100k) or large (~1M).
        #[arg(long, default_value = "small")]
        preset: String,
        /// Exact manifest count (overrides the preset).
        #[arg(long)]
        manifests: Option<u64>,
        /// Generator seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write an OCI image layout here instead of filling the store.
        #[arg(long, value_name = "DIR")]
        layout: Option<PathBuf>,
        /// Fill the fair SQLite peer (the harness's SQLite holding ocidb's
        /// index) at this path instead of the store, with the same content
        /// and batches, timing its inserts alone, with the page cache an
        /// ocidb store gets (OCIDB_CACHE_MIB, default 256) (a build with
        /// the `peers` feature).
        #[arg(long, value_name = "FILE", conflicts_with = "layout")]
        sqlite: Option<PathBuf>,
    },
    /// Run every scenario and print the table (scenario, rate, p50, p99,
    /// cost against a named baseline from the same run, peak RSS).
    /// `OCIDB_CACHE_MIB` sets the page cache of every ocidb store and of
    /// the SQLite peers alike (default 256).
    #[command(
        after_help = "Examples:\n  ocidb bench run --quick\n  ocidb bench run --json bench.json --svg scaling.svg\n  cargo run --release --features peers -- bench run --quick   # with the peers\n  OCIDB_CACHE_MIB=1024 ocidb bench run --manifests 100000   # both sides with a 1 GiB cache"
    )]
    Run {
        /// Small sizes and short loops (under 3 minutes on 2 cores).
        #[arg(long)]
        quick: bool,
        /// Also write the figures as JSON here.
        #[arg(long, value_name = "OUT")]
        json: Option<PathBuf>,
        /// Also write the scaling plot (SVG) here.
        #[arg(long, value_name = "OUT")]
        svg: Option<PathBuf>,
        /// Generator seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Manifests in the main store (default 30k with --quick, else 1M).
        #[arg(long)]
        manifests: Option<u64>,
        /// Store sizes of the scaling curve, comma-separated.
        #[arg(long, value_delimiter = ',')]
        sizes: Option<Vec<u64>>,
        /// Working directory (removed afterwards).
        #[arg(long, value_name = "DIR", default_value = "target/ocidb-bench")]
        dir: PathBuf,
    },
    /// `ocidb serve` beside docker-registry (distribution 2.8.2), both on
    /// fresh directories on 127.0.0.1, driven by the same client in one
    /// run: blob push and pull, manifest puts from 8 clients, GET by tag,
    /// tag list and catalog, referrers (API against the fallback tag).
    #[command(
        after_help = "Examples:\n  ocidb bench registry --quick\n  ocidb bench registry --oras ../shared/oci-tools/bin/oras --json registry.json\n\nThe peer is `docker-registry` on PATH (apt-get install docker-registry) unless --peer names it; without one, ocidb is measured alone."
    )]
    Registry {
        /// A 64 MiB blob and 1,000 tags and repositories (else 256 MiB, 10k).
        #[arg(long)]
        quick: bool,
        /// The docker-registry executable (default: found on PATH).
        #[arg(long, value_name = "EXE")]
        peer: Option<PathBuf>,
        /// The blob's size in MiB (overrides --quick's 64 and the default 256).
        #[arg(long, value_name = "MIB")]
        blob_mib: Option<u64>,
        /// Tags and repositories to list (overrides --quick's 1,000 and the
        /// default 10,000).
        #[arg(long, value_name = "N")]
        entries: Option<u64>,
        /// Measure ocidb alone, even with docker-registry installed.
        #[arg(long, conflicts_with = "peer")]
        no_peer: bool,
        /// The oras CLI, for an `oras discover` row (default: found on PATH).
        #[arg(long, value_name = "EXE")]
        oras: Option<PathBuf>,
        /// Also write the figures as JSON here.
        #[arg(long, value_name = "OUT")]
        json: Option<PathBuf>,
        /// Working directory (removed afterwards).
        #[arg(long, value_name = "DIR", default_value = "target/ocidb-bench")]
        dir: PathBuf,
    },
    /// Blob bytes on Garage (started here on 127.0.0.1) beside local files
    /// and beside raw object_store calls to the same Garage, in one run:
    /// put and get of a large blob, stat, GC of many objects.
    #[command(
        after_help = "Examples:\n  ocidb bench s3\n  ocidb bench s3 --blob-mib 64 --gc-objects 1000 --json s3.json\n\nGarage comes from --garage, $GARAGE, PATH or ~/.cargo/bin (cargo install garage --version 2.5.0 --locked)."
    )]
    S3 {
        /// The large blob's size in MiB.
        #[arg(long, default_value_t = 256)]
        blob_mib: u64,
        /// Repetitions of the put and get rows (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Unreferenced blobs the GC row collects.
        #[arg(long, default_value_t = 10_000)]
        gc_objects: usize,
        /// The garage executable.
        #[arg(long, value_name = "EXE")]
        garage: Option<PathBuf>,
        /// Also write the figures as JSON here.
        #[arg(long, value_name = "OUT")]
        json: Option<PathBuf>,
        /// Working directory (removed afterwards).
        #[arg(long, value_name = "DIR", default_value = "target/ocidb-bench-s3")]
        dir: PathBuf,
    },
    /// What replication costs and how it recovers, on one Garage node and
    /// one etcd member on 127.0.0.1, each figure beside a same-run
    /// baseline: durable pushes on a cluster primary against the same
    /// store without etcd and without a log; replica lag under a steady
    /// load; kill -9 of the primary to the first write a new primary
    /// acknowledges; restore time and bytes.
    #[command(
        after_help = "Example:\n  ocidb bench cluster --manifests 100000 --failovers 5\n\nGarage comes from --garage, $GARAGE, PATH or ~/.cargo/bin; etcd from --etcd or PATH (apt-get install etcd-server)."
    )]
    Cluster {
        /// Manifests of the restore rows.
        #[arg(long, default_value_t = 100_000)]
        manifests: usize,
        /// Kills of the primary the failover row times.
        #[arg(long, default_value_t = 5)]
        failovers: usize,
        /// The garage executable.
        #[arg(long, value_name = "EXE")]
        garage: Option<PathBuf>,
        /// The etcd executable.
        #[arg(long, value_name = "EXE")]
        etcd: Option<PathBuf>,
        /// Also write the figures as JSON here.
        #[arg(long, value_name = "OUT")]
        json: Option<PathBuf>,
        /// Working directory (removed afterwards).
        #[arg(long, value_name = "DIR", default_value = "target/ocidb-bench-cluster")]
        dir: PathBuf,
    },
    /// Draw the scaling plot (SVG) from the JSON of an earlier `bench run`.
    #[command(
        after_help = "Example:\n  ocidb bench plot --json bench.json --svg docs/scaling.svg"
    )]
    Plot {
        /// A `bench run --json` file.
        #[arg(long)]
        json: PathBuf,
        /// Where to write the SVG.
        #[arg(long)]
        svg: PathBuf,
    },
    /// Stat every digest listed in KEYS (one per line) in the store and
    /// print the p50 and this process's peak RSS as JSON (used by `bench
    /// run` to measure lookup memory in a fresh process).
    #[command(hide = true)]
    ProbeLookups {
        /// File of digests.
        #[arg(long)]
        keys: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Ingest forever, logging acknowledged operations (killed by the crash tests).
    CrashChild {
        /// Seed for the workload.
        #[arg(long)]
        seed: u64,
        /// Where to append acknowledged operations.
        #[arg(long)]
        log: PathBuf,
        /// Make the large blobs this many MiB (default: up to 470 KB), so
        /// that an object-store backend writes them in several parts.
        #[arg(long)]
        large_mib: Option<u64>,
        /// Record every change in the store's outbox.
        #[arg(long)]
        events: bool,
    },
    /// Migrate the store, aborting the process (as kill -9 would) at the
    /// given progress step (used by the migration crash tests).
    MigrateAbort {
        /// Abort at this step (counted from 1); 0 runs to the end.
        #[arg(long)]
        at: u64,
        /// Rows per transaction, small to get many steps.
        #[arg(long, default_value_t = 50_000)]
        batch: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum BlobCommand {
    /// Store a file (or `-` for stdin) and print its digest.
    #[command(
        after_help = "Example:\n  ocidb blob put layer.tar.gz --media-type application/vnd.oci.image.layer.v1.tar+gzip"
    )]
    Put {
        /// File to store, or `-` for standard input.
        file: PathBuf,
        /// Expected digest: the put fails, storing nothing, on a mismatch.
        #[arg(long)]
        digest: Option<String>,
        /// Media type to record.
        #[arg(long)]
        media_type: Option<String>,
        /// Also make the blob a member of this repository.
        #[arg(long)]
        repo: Option<String>,
        /// Print `{"digest":…,"size":…}`.
        #[arg(long)]
        json: bool,
    },
    /// Write a blob (or a byte range of it) to stdout or a file.
    #[command(
        after_help = "Example:\n  ocidb blob get sha256:4f1c… -o out.bin\n  ocidb blob get sha256:4f1c… --range 0-1023"
    )]
    Get {
        /// Digest (or an unambiguous prefix of it).
        digest: String,
        /// Output file (default: stdout).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// START-END, END inclusive as in HTTP Range.
        #[arg(long)]
        range: Option<String>,
        /// Only if the blob belongs to this repository.
        #[arg(long)]
        repo: Option<String>,
        /// Re-hash while reading and fail if the bytes are corrupt.
        #[arg(long)]
        verify: bool,
    },
    /// Print `{"digest":…,"size":…,"mediaType":…}`.
    #[command(after_help = "Example:\n  ocidb blob stat sha256:4f1c…")]
    Stat {
        /// Digest (or an unambiguous prefix of it).
        digest: String,
        /// Print JSON (what this command prints anyway).
        #[arg(long)]
        json: bool,
    },
    /// Delete a blob and everything that indexes it.
    #[command(after_help = "Example:\n  ocidb blob rm sha256:4f1c…")]
    Rm {
        /// Digest (or an unambiguous prefix of it).
        digest: String,
        /// Remove it even if a tag reaches it (the tag's image breaks).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ManifestCommand {
    /// Store a manifest in a repository and index its graph.
    #[command(after_help = "Example:\n  ocidb manifest put library/app manifest.json --tag v1")]
    Put(ManifestPutArgs),
    /// Write a manifest's bytes, by tag or digest.
    #[command(
        after_help = "Example:\n  ocidb manifest get library/app:v1\n  ocidb manifest get library/app@sha256:4f1c2a9b0d3e -o m.json"
    )]
    Get {
        /// REPO:TAG or REPO@DIGEST (or the repository, with REF).
        reference: String,
        /// A tag or digest, in the older form `manifest get REPO REF`.
        tag_or_digest: Option<String>,
        /// Output file (default: stdout).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct ManifestPutArgs {
    /// Repository name.
    pub repo: String,
    /// Manifest file, or `-` for standard input.
    pub file: PathBuf,
    /// Tags to point at it (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Declared media type (must agree with the body's mediaType).
    #[arg(long)]
    pub media_type: Option<String>,
    /// Accept the manifest though a child is not in the repository (a
    /// sparse graph); such children stay outside it.
    #[arg(long)]
    pub allow_missing_children: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ocidb lease …`
#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Lists the leases that have not expired.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Releases a lease: what it held is no longer protected by it.
    Rm {
        /// The lease id (from `ocidb lease ls`).
        id: u64,
    },
}

/// Arguments of `ocidb referrers`.
#[derive(clap::Args, Debug)]
pub struct ReferrersArgs {
    /// The subject: REPO@DIGEST or REPO:TAG (or the repository, with DIGEST).
    pub reference: String,
    /// The subject's digest, in the older form `referrers REPO DIGEST`.
    pub digest: Option<String>,
    /// Only referrers with exactly this artifactType.
    #[arg(long)]
    pub artifact_type: Option<String>,
    /// Page size.
    #[arg(short = 'n', long)]
    pub n: Option<usize>,
    /// Continue after this cursor (printed on stderr by a previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print JSON (the referrers index; what this command prints anyway).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ocidb gc`.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Report what would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also collect manifests that no tag reaches.
    #[arg(long)]
    pub delete_untagged: bool,
    /// Keep anything younger than this (0s, 30m, 1h…).
    #[arg(long, default_value = "1h")]
    pub grace: String,
    /// Keep manifests a tag named within this long (deleted, or moved
    /// away from), so `ocidb tag REPO:TAG --restore` can put it back.
    #[arg(long, default_value = "0s")]
    pub undelete_window: String,
    /// Remove tag history events older than this (default: keep them).
    #[arg(long)]
    pub history_retention: Option<String>,
    /// List the digests.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ocidb fsck`.
#[derive(clap::Args, Debug)]
pub struct FsckArgs {
    /// Remove orphan files; corrupt records are reported, never dropped.
    #[arg(long)]
    pub repair: bool,
    /// Accept tagged images whose children are not stored (sparse layout
    /// imports); without it each is a `missing-child` problem.
    #[arg(long)]
    pub allow_sparse: bool,
    /// Only re-hash one slice of the blobs, in digest order, up to
    /// --max-bytes; it prints where the next slice starts (`--after D`).
    /// The graph checks need the full fsck.
    #[arg(long, conflicts_with_all = ["repair", "allow_sparse"])]
    pub incremental: bool,
    /// With --incremental: start after this digest (the previous slice's
    /// `next`).
    #[arg(long, requires = "incremental", value_name = "DIGEST")]
    pub after: Option<String>,
    /// With --incremental: stop once this many bytes are re-hashed (1G,
    /// 500M, 4096…).
    #[arg(
        long,
        requires = "incremental",
        default_value = "1G",
        value_name = "SIZE"
    )]
    pub max_bytes: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ocidb import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Layout directory or oci-archive tar.
    pub path: std::path::PathBuf,
    /// Repository (default: the layout's directory name).
    #[arg(long)]
    pub repo: Option<String>,
    /// Refuse a sparse layout (blobs missing).
    #[arg(long)]
    pub strict: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ocidb export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// REPO:TAG or REPO@DIGEST (one or more), then the output path.
    #[arg(required = true, num_args = 2.., value_name = "REF… OUT")]
    pub args: Vec<String>,
    /// Also export referrers (signatures, SBOMs), transitively.
    #[arg(long)]
    pub with_referrers: bool,
    /// Label Docker manifests in index.json with the OCI media types
    /// (bytes unchanged), for tools such as skopeo 1.9 that skip them.
    #[arg(long)]
    pub oci_index_types: bool,
    /// Hard-link blob files instead of copying them (same filesystem
    /// only). Risk: the links share the store's bytes, so anything that
    /// rewrites an exported blob in place corrupts the store's copy too.
    #[arg(long)]
    pub hardlink: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ocidb serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Read options from this TOML file: each key is a long flag with `_`
    /// for `-` (`addr`, `htpasswd`, `gc_interval`, …; also `store` and
    /// `blobs`). A flag or environment variable overrides the file; paths
    /// in it are relative to its directory. SIGHUP re-reads it.
    #[arg(long, env = "OCIDB_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Print the options in force (flag > environment > file > default),
    /// as a config file, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address to listen on: IP:PORT, HOST:PORT (resolved once, first
    /// address), or :PORT for every interface.
    #[arg(long, env = "OCIDB_ADDR", default_value = "127.0.0.1:5000", value_parser = listen_addr)]
    pub addr: std::net::SocketAddr,
    /// Run a GC this often while serving (30m, 1h…); never by default.
    #[arg(long, env = "OCIDB_GC_INTERVAL")]
    pub gc_interval: Option<String>,
    /// The GC's grace period (0s, 30m, 1h…): a blob or manifest younger
    /// than this is kept even if nothing reaches it yet (a layer pushed
    /// before its manifest). With 0s a push racing a GC may be told to
    /// retry.
    #[arg(long, env = "OCIDB_GRACE", default_value = "1h")]
    pub grace: String,
    /// The GC also collects manifests that no tag reaches.
    #[arg(long, env = "OCIDB_DELETE_UNTAGGED")]
    pub delete_untagged: bool,
    /// The GC keeps manifests a tag named within this long (deleted, or
    /// moved away from): the undelete window of `ocidb tag REPO:TAG
    /// --restore`. 0s: none.
    #[arg(long, env = "OCIDB_UNDELETE_WINDOW", default_value = "0s")]
    pub undelete_window: String,
    /// The GC removes tag history events older than this (default: keep
    /// them; never those the undelete window needs).
    #[arg(long, env = "OCIDB_HISTORY_RETENTION")]
    pub history_retention: Option<String>,
    /// Cancel upload sessions idle this long.
    #[arg(long, env = "OCIDB_UPLOAD_MAX_IDLE", default_value = "7d")]
    pub upload_max_idle: String,
    /// Re-hash one slice of the blobs this often (10m, 1h…), going round
    /// the store, so that damaged bytes are found while serving (logged,
    /// and counted in ocidb_scrub_problems_total); never by default.
    #[arg(long, env = "OCIDB_SCRUB_INTERVAL")]
    pub scrub_interval: Option<String>,
    /// Bytes each scheduled scrub slice re-hashes (1G, 500M…).
    #[arg(long, env = "OCIDB_SCRUB_BYTES", default_value = "1G")]
    pub scrub_bytes: String,
    /// Write an index snapshot to the bucket this often (a store whose
    /// blobs are in a bucket ships an index log there); the log before the
    /// older of the two snapshots kept is pruned, so a restore reads at
    /// most that much log. 0: never.
    #[arg(long, env = "OCIDB_SNAPSHOT_INTERVAL", default_value = "1h")]
    pub snapshot_interval: String,
    /// Run as a member of a cluster on this etcd (etcd://HOST:PORT[,…]),
    /// over the bucket of `--blobs s3://…`: one member is the primary,
    /// the others are replicas that serve reads from their own index,
    /// follow the log, and pass writes to the primary. A member with an
    /// empty store directory starts from the bucket's newest snapshot.
    #[arg(
        long,
        value_name = "ETCD",
        env = "OCIDB_CLUSTER",
        requires = "advertise"
    )]
    pub cluster: Option<String>,
    /// This member's URL as the other members reach it (http://HOST:PORT):
    /// replicas forward writes there while it is the primary.
    #[arg(long, value_name = "URL", env = "OCIDB_ADVERTISE")]
    pub advertise: Option<String>,
    /// The primary's etcd lease: a primary that dies is replaced within
    /// about this long.
    #[arg(long, env = "OCIDB_CLUSTER_LEASE", default_value = "5s")]
    pub cluster_lease: String,
    /// A replica whose lag has not reached 0 for this long is not ready
    /// (`/readyz` answers 503).
    #[arg(long, env = "OCIDB_MAX_REPLICA_LAG", default_value = "10s")]
    pub max_replica_lag: String,
    /// Deliver every push, delete, tag move, GC deletion and quota refusal
    /// to this URL (http://HOST[:PORT]/PATH) as a CloudEvent (HTTP binary
    /// mode), at least once and in commit order, retrying with backoff
    /// while it fails; repeat for more receivers (comma-separated in the
    /// variable). The store then records events in the transaction of
    /// each change.
    #[arg(long, value_name = "URL", env = "OCIDB_WEBHOOK", value_delimiter = ',')]
    pub webhook: Vec<String>,
    /// Limit what a repository or namespace (a prefix ending in `/`)
    /// holds, in logical bytes: SCOPE=SIZE, e.g. `team/=50G` or
    /// `team/app=5G`; repeat for more. A push that would pass it gets 403
    /// DENIED and stores nothing.
    #[arg(
        long,
        value_name = "SCOPE=SIZE",
        env = "OCIDB_QUOTA",
        value_delimiter = ','
    )]
    pub quota: Vec<String>,
    /// Run this retention policy (a TOML or JSON file; see `ocidb
    /// retention --help`) every --retention-interval, with the GC's grace
    /// and undelete window.
    #[arg(long, value_name = "FILE", env = "OCIDB_RETENTION_POLICY")]
    pub retention_policy: Option<PathBuf>,
    /// How often the retention policy runs.
    #[arg(long, env = "OCIDB_RETENTION_INTERVAL", default_value = "1h")]
    pub retention_interval: String,
    /// The CloudEvents `source` attribute of the events sent.
    #[arg(long, env = "OCIDB_EVENT_SOURCE", default_value = "/ocidb")]
    pub event_source: String,
    /// How long an upload session's lease keeps its finished blob from GC
    /// until a manifest names it (default: the --grace period).
    #[arg(long, env = "OCIDB_UPLOAD_LEASE")]
    pub upload_lease: Option<String>,
    /// Serve `GET /metrics` without credentials on this second address
    /// (bind it to localhost or a private network). Without it, `/metrics`
    /// on --addr needs a user's credentials when --htpasswd is set.
    #[arg(long, env = "OCIDB_ADMIN_ADDR", value_parser = listen_addr)]
    pub admin_addr: Option<std::net::SocketAddr>,
    /// Do not serve `GET /livez` and `GET /readyz` (served by default,
    /// without credentials, for load balancers and orchestrators).
    #[arg(long, env = "OCIDB_NO_HEALTH_PROBES")]
    pub no_health_probes: bool,
    /// Accept manifests whose blobs the repository lacks (the conformance
    /// suite's sparse data set). Such blobs stay outside the repository;
    /// by default the push gets 400 MANIFEST_BLOB_UNKNOWN, as distribution
    /// answers.
    #[arg(long, env = "OCIDB_ALLOW_SPARSE_MANIFESTS")]
    pub allow_sparse_manifests: bool,
    /// Requests carrying blob bytes at once; more get 429.
    #[arg(long, env = "OCIDB_MAX_UPLOADS", default_value_t = 64)]
    pub max_uploads: usize,
    /// Blob bodies being sent at once; more get 429 with Retry-After.
    #[arg(long, env = "OCIDB_MAX_DOWNLOADS", default_value_t = 256)]
    pub max_downloads: usize,
    /// A request's headers must arrive within this long (10s, 1m…).
    #[arg(long, env = "OCIDB_HEADER_TIMEOUT", default_value = "30s")]
    pub header_timeout: String,
    /// A request body that sends nothing this long is cut off.
    #[arg(long, env = "OCIDB_BODY_IDLE_TIMEOUT", default_value = "60s")]
    pub body_idle_timeout: String,
    /// Open connections at once; more wait in the accept backlog.
    #[arg(long, env = "OCIDB_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Open connections from one client address at once; more are closed.
    #[arg(long, env = "OCIDB_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 64)]
    pub max_connections_per_client: usize,
    /// A blob body must average at least this many bytes a second over
    /// each --body-idle-timeout window (0: no minimum).
    #[arg(long, env = "OCIDB_MIN_BODY_RATE", default_value_t = 1024)]
    pub min_body_rate: u64,
    /// Require Basic authentication against this htpasswd file (bcrypt,
    /// `htpasswd -B`).
    #[arg(long, env = "OCIDB_HTPASSWD")]
    pub htpasswd: Option<std::path::PathBuf>,
    /// A file of grants, one per line: `USER PATTERN read|write` (`*`
    /// matches any run of characters; USER `*` is every authenticated
    /// user; `#` starts a comment). Without it, every authenticated user
    /// may read and write everything.
    #[arg(long, env = "OCIDB_ACCESS", requires = "htpasswd")]
    pub access: Option<std::path::PathBuf>,
    /// With --htpasswd, let anyone read (pull, list) without credentials.
    #[arg(long, env = "OCIDB_ANONYMOUS_READ", requires = "htpasswd")]
    pub anonymous_read: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "OCIDB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "OCIDB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

/// A listening address as operators write it: `IP:PORT`, `HOST:PORT`
/// (resolved once; the first address), or `:PORT` for every interface.
pub fn listen_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    let bad = |why: &str| {
        format!("`{text}` is not a listening address ({why}): expected IP:PORT, HOST:PORT or :PORT, e.g. 127.0.0.1:5000")
    };
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
        return Ok(std::net::SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(a) = text.parse() {
        return Ok(a);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad("the port is not a number from 0 to 65535"));
    }
    text.to_socket_addrs()
        .map_err(|e| bad(&format!("the host does not resolve: {e}")))?
        .next()
        .ok_or_else(|| bad("the host has no address"))
}

#[cfg(test)]
mod tests {
    use super::listen_addr;

    #[test]
    fn listening_addresses_as_operators_write_them() {
        assert_eq!(
            listen_addr("127.0.0.1:5000").map(|a| a.to_string()),
            Ok("127.0.0.1:5000".into())
        );
        assert_eq!(
            listen_addr(":5000").map(|a| a.to_string()),
            Ok("0.0.0.0:5000".into())
        );
        assert_eq!(
            listen_addr("[::1]:5000").map(|a| a.to_string()),
            Ok("[::1]:5000".into())
        );
        let local = listen_addr("localhost:5000").expect("localhost resolves");
        assert!(local.ip().is_loopback() && local.port() == 5000, "{local}");
        for bad in [
            "5000",
            ":",
            ":x",
            ":70000",
            "localhost",
            "localhost:x",
            ":5000:1",
        ] {
            let e = listen_addr(bad).expect_err(bad);
            assert!(e.contains(bad) && e.contains(":PORT"), "{e}");
        }
    }
}
