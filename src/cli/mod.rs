//! The `ocidb` command line.

pub mod args;
pub mod crash_child;
pub mod progress;
pub mod render;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ocidb::{
    Digest, Error, ExportOptions, FsckOptions, GcPolicy, ImportOptions, ManifestOptions,
    PutOptions, Reference, ReferrersQuery, Result, Store, StoreOptions,
};
use serde_json::json;

use args::{BenchCommand, BlobCommand, Cli, Command, DebugCommand, LeaseCommand, ManifestCommand};
use render::Style;

trait IoCtx<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoCtx<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

/// Store options from the environment: `OCIDB_CACHE_MIB` sets redb's page
/// cache (default 256 MiB), for measuring memory with a small cache.
fn store_options() -> StoreOptions {
    let mut o = StoreOptions::default();
    if let Some(mib) = std::env::var("OCIDB_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        o.cache_size = mib << 20;
    }
    o
}

/// Creates the store if it is missing (write commands only).
fn create(store: &Path) -> Result<Store> {
    Store::open_with(store, store_options(), true)
}

fn open(store: &Path) -> Result<Store> {
    Store::open_with(store, store_options(), false).map_err(|e| match e {
        Error::NotAStore { path, reason } => Error::NotAStore {
            path,
            reason: format!(
                "{reason} (pass --store DIR or set OCIDB_STORE, or create one with `ocidb blob put` or `ocidb manifest put`)"
            ),
        },
        other => other,
    })
}

fn digest_arg(s: &str) -> Result<Digest> {
    Digest::parse(s)
}

/// How many entries of a long list (missing digests, notes) text output
/// shows; `--json` lists them all.
const SHOWN: usize = 10;

fn print_capped<T: std::fmt::Display>(what: &str, items: &[T]) {
    for i in items.iter().take(SHOWN) {
        println!("  {what}: {}", render::escape(&i.to_string()));
    }
    if items.len() > SHOWN {
        println!(
            "  … and {} more {what} ({} in all; --json lists every one)",
            items.len() - SHOWN,
            items.len()
        );
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::io("formatting JSON", e.into()))?;
    println!("{s}");
    Ok(())
}

/// Reads a manifest from a file or stdin, never more than the manifest
/// limit plus one byte: a huge file or `/dev/zero` costs no more memory
/// than a manifest can.
fn read_input(path: &Path) -> Result<Vec<u8>> {
    let limit = ocidb::manifest::MAX_MANIFEST_SIZE;
    let mut v = Vec::new();
    let shown = if path.as_os_str() == "-" {
        io::stdin()
            .take(limit + 1)
            .read_to_end(&mut v)
            .ctx(|| "reading standard input".into())?;
        "standard input".to_string()
    } else {
        fs::File::open(path)
            .and_then(|f| f.take(limit + 1).read_to_end(&mut v))
            .ctx(|| format!("reading {}", path.display()))?;
        path.display().to_string()
    };
    if v.len() as u64 > limit {
        return Err(Error::InvalidArgument {
            value: shown,
            expected: format!("a manifest of at most {limit} bytes (it is larger)"),
        });
    }
    Ok(v)
}

/// Writes to a file atomically (temp + rename) or to stdout.
fn write_output(output: Option<&PathBuf>, mut r: impl Read) -> Result<()> {
    match output {
        None => {
            let stdout = io::stdout();
            let mut lock = stdout.lock();
            io::copy(&mut r, &mut lock).ctx(|| "writing to stdout".into())?;
            lock.flush().ctx(|| "writing to stdout".into())?;
        }
        Some(path) => {
            let tmp = path.with_extension("ocidb-partial");
            let res = (|| {
                let mut f = fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
                io::copy(&mut r, &mut f).ctx(|| format!("writing {}", tmp.display()))?;
                f.sync_all().ctx(|| format!("fsync of {}", tmp.display()))?;
                fs::rename(&tmp, path).ctx(|| format!("renaming to {}", path.display()))
            })();
            if res.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            res?;
        }
    }
    Ok(())
}

fn parse_range(s: &str) -> Result<(u64, u64)> {
    let bad = || Error::InvalidArgument {
        value: s.to_string(),
        expected: "START-END with END inclusive, e.g. 0-1023".into(),
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

/// `repo:tag` or `repo@digest`.
pub fn parse_image_ref(s: &str) -> Result<(String, Reference)> {
    if let Some((repo, d)) = s.split_once('@') {
        return Ok((repo.to_string(), Reference::Digest(Digest::parse(d)?)));
    }
    match s.rsplit_once(':') {
        Some((repo, tag)) => Ok((repo.to_string(), Reference::parse(tag)?)),
        None => Err(Error::InvalidArgument {
            value: s.to_string(),
            expected: "REPO:TAG or REPO@DIGEST, e.g. library/app:v1".into(),
        }),
    }
}

/// Runs a command. The library names only what was asked for in its errors
/// (a registry must not leak other tenants' names); this offline tool,
/// whose user can list the store anyway, adds the existing names as a hint.
pub fn run(cli: Cli) -> Result<()> {
    let store_dir = cli.store.clone();
    run_command(cli).map_err(|e| with_hint(&store_dir, e))
}

fn with_hint(store_dir: &Path, e: Error) -> Error {
    let list = |what: &str, names: Vec<String>| {
        let names: Vec<String> = names
            .into_iter()
            .take(20)
            .map(|n| render::escape(&n))
            .collect();
        if names.is_empty() {
            format!("; there are no {what}")
        } else {
            format!("; existing {what}: {}", names.join(", "))
        }
    };
    match e {
        Error::TagNotFound {
            repository,
            tag,
            hint,
        } if hint.is_empty() => {
            let tags = Store::open(store_dir)
                .and_then(|s| s.tags(&repository, None, Some(20)))
                .unwrap_or_default();
            Error::TagNotFound {
                hint: list("tags", tags),
                repository,
                tag,
            }
        }
        Error::RepositoryNotFound { repository, hint } if hint.is_empty() => {
            let repos = Store::open(store_dir)
                .and_then(|s| s.repositories())
                .unwrap_or_default();
            Error::RepositoryNotFound {
                hint: list("repositories", repos),
                repository,
            }
        }
        other => other,
    }
}

fn run_command(cli: Cli) -> Result<()> {
    let store_dir = cli.store;
    match cli.command {
        Command::Demo => crate::demo::run(&store_dir),
        Command::Bench(cmd) => bench(&store_dir, cmd),
        Command::Blob(cmd) => blob(&store_dir, cmd),
        Command::Manifest(cmd) => manifest(&store_dir, cmd),
        Command::Tag { repo, tag, digest } => {
            let d = digest_arg(&digest)?;
            open(&store_dir)?.tag(&repo, &tag, &d)
        }
        Command::Untag { repo, tag } => {
            let old = open(&store_dir)?.untag(&repo, &tag)?;
            eprintln!(
                "untagged {}:{} (was {old})",
                render::escape(&repo),
                render::escape(&tag)
            );
            Ok(())
        }
        Command::Tags {
            repo,
            last,
            n,
            json,
        } => {
            let tags = open(&store_dir)?.tags(&repo, last.as_deref(), n)?;
            if json {
                print_json(&json!({"name": repo, "tags": tags}))
            } else {
                for t in tags {
                    println!("{}", render::escape(&t));
                }
                Ok(())
            }
        }
        Command::Repos { json } => {
            let repos = open(&store_dir)?.repositories()?;
            if json {
                print_json(&json!({"repositories": repos}))
            } else {
                for r in repos {
                    println!("{}", render::escape(&r));
                }
                Ok(())
            }
        }
        Command::Referrers {
            repo,
            digest,
            artifact_type,
            n,
            cursor,
            json: _,
        } => {
            let d = digest_arg(&digest)?;
            let store = open(&store_dir)?;
            // The library answers an unknown repository with an empty list
            // (as the API must); here, as for tree and tags, it is an error.
            store.tags(&repo, None, Some(0))?;
            let page = store.referrers(
                &repo,
                &d,
                &ReferrersQuery {
                    artifact_type: artifact_type.as_deref(),
                    cursor: cursor.as_deref(),
                    limit: n,
                },
            )?;
            print_json(&page.index)?;
            if !page.filters_applied.is_empty() {
                eprintln!("OCI-Filters-Applied: {}", page.filters_applied.join(","));
            }
            if let Some(next) = page.next {
                eprintln!("next page: --cursor {next}");
            }
            Ok(())
        }
        Command::Tree { reference, json } => {
            let (repo, r) = parse_image_ref(&reference)?;
            let walk = open(&store_dir)?.walk(&repo, &r)?;
            if json {
                print_json(&walk)
            } else {
                print!("{}", render::tree(&walk, &reference, Style::for_stdout()));
                Ok(())
            }
        }
        Command::Rm { reference } => {
            let (repo, r) = parse_image_ref(&reference)?;
            let Reference::Digest(d) = r else {
                return Err(Error::InvalidArgument {
                    value: reference,
                    expected: "REPO@DIGEST (to remove a tag, use `ocidb untag REPO TAG`)".into(),
                });
            };
            open(&store_dir)?.delete_manifest(&repo, &d)?;
            eprintln!("deleted {repo}@{d}");
            Ok(())
        }
        Command::Gc {
            dry_run,
            delete_untagged,
            grace,
            verbose,
            json,
        } => {
            let policy = GcPolicy {
                dry_run,
                delete_untagged,
                grace: ocidb::gc::parse_duration(&grace)?,
                ..GcPolicy::default()
            };
            let spinner = progress::spinner("collecting garbage");
            let report = open(&store_dir)?.gc(&policy)?;
            progress::finish(spinner);
            if json {
                let mut v = json!({
                    "deleted_manifests": report.deleted_manifests,
                    "deleted_blobs": report.deleted_blobs,
                    "reclaimed_bytes": report.reclaimed_bytes,
                    "kept": report.kept,
                    "dry_run": report.dry_run,
                });
                if verbose {
                    v["digests"] = json!(report.digests);
                }
                println!("{v}");
            } else {
                println!("{}", render::gc_summary(&report));
                if verbose {
                    for d in &report.digests {
                        println!("  {d}");
                    }
                }
            }
            Ok(())
        }
        Command::Fsck { repair, json } => {
            let store = open(&store_dir)?;
            let bar = progress::bar("verifying blobs");
            let cb = |done: u64, total: u64| progress::set(&bar, done, total);
            let report = store.fsck(&FsckOptions {
                repair,
                progress: Some(&cb),
                ..FsckOptions::default()
            })?;
            progress::finish(bar);
            if json {
                print_json(&report)?;
            } else {
                for p in &report.problems {
                    let d = p.digest.map(|d| format!("{d}: ")).unwrap_or_default();
                    let fixed = if p.repaired { " (repaired)" } else { "" };
                    println!("{}: {d}{}{fixed}", p.kind, render::escape(&p.detail));
                }
                println!(
                    "{} records, {} files, {} verified, {} problem(s), {} remaining",
                    report.records,
                    report.files,
                    render::human_size(report.bytes_verified),
                    report.problems.len(),
                    report.remaining()
                );
            }
            if report.is_clean() {
                Ok(())
            } else {
                std::process::exit(1);
            }
        }
        Command::Compact => {
            let mut store = open(&store_dir)?;
            let (before, after) = store.compact()?;
            println!(
                "database file: {} -> {}",
                render::human_size(before),
                render::human_size(after)
            );
            Ok(())
        }
        Command::Import {
            path,
            repo,
            strict,
            json,
        } => {
            let store = create(&store_dir)?;
            let bar = progress::bar("importing");
            let cb = |done: u64, total: u64| progress::set(&bar, done, total);
            let report = store.import_layout(
                &path,
                &ImportOptions {
                    repository: repo,
                    strict,
                    progress: Some(&cb),
                },
            )?;
            progress::finish(bar);
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                println!(
                    "imported {} into {}: {} manifest(s), {} blob(s), {} tag(s), {} referrer(s)",
                    path.display(),
                    report.repository,
                    report.manifests,
                    report.blobs,
                    report.tags,
                    report.referrers
                );
                print_capped("missing (sparse layout)", &report.missing);
                for r in report.skipped_refs.iter().take(SHOWN) {
                    println!("  skipped ref.name {}", render::escape(r));
                }
                print_capped("note", &report.notes);
            }
            Ok(())
        }
        Command::Export {
            mut args,
            with_referrers,
            oci_index_types,
            hardlink,
            json,
        } => {
            let out = PathBuf::from(args.pop().unwrap_or_default());
            let refs = args
                .iter()
                .map(|a| parse_image_ref(a))
                .collect::<Result<Vec<_>>>()?;
            let spinner = progress::spinner("exporting");
            let report = open(&store_dir)?.export_layout(
                &refs,
                &out,
                &ExportOptions {
                    with_referrers,
                    oci_index_types,
                    hardlink,
                },
            )?;
            progress::finish(spinner);
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                println!(
                    "exported {} index entr{} and {} blob(s) to {} ({} hardlinked, {} referrer(s))",
                    report.manifests,
                    if report.manifests == 1 { "y" } else { "ies" },
                    report.blobs,
                    out.display(),
                    report.hardlinked,
                    report.referrers
                );
                print_capped("not in the store (left out)", &report.missing);
                print_capped("note", &report.notes);
            }
            Ok(())
        }
        Command::Lease(LeaseCommand::Ls { json }) => {
            let leases = open(&store_dir)?.leases()?;
            if json {
                print_json(&leases)
            } else {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                for l in &leases {
                    println!(
                        "{}  expires in {} s",
                        l.id,
                        l.expires_ms.saturating_sub(now) / 1000
                    );
                }
                Ok(())
            }
        }
        Command::Lease(LeaseCommand::Rm { id }) => {
            open(&store_dir)?.release_lease(id)?;
            eprintln!("released lease {id}");
            Ok(())
        }
        Command::Stats { json } => {
            let stats = open(&store_dir)?.stats()?;
            if json {
                print_json(&stats)
            } else {
                print!("{}", render::stats(&stats));
                Ok(())
            }
        }
        Command::Debug(DebugCommand::CrashChild { seed, log }) => {
            crash_child::run(&store_dir, seed, &log)
        }
        Command::Inspect {
            digest,
            repo,
            json: _,
        } => {
            let d = digest_arg(&digest)?;
            print_json(&open(&store_dir)?.inspect(&d, repo.as_deref())?)
        }
    }
}

fn blob(store_dir: &Path, cmd: BlobCommand) -> Result<()> {
    match cmd {
        BlobCommand::Put {
            file,
            digest,
            media_type,
            repo,
            json,
        } => {
            let expected = digest.as_deref().map(digest_arg).transpose()?;
            let opts = PutOptions {
                digest: expected,
                media_type,
                repository: repo,
                ..PutOptions::default()
            };
            let store = create(store_dir)?;
            let put = if file.as_os_str() == "-" {
                store.put(io::stdin().lock(), &opts)?
            } else {
                let f = fs::File::open(&file).ctx(|| format!("opening {}", file.display()))?;
                let len = f
                    .metadata()
                    .ctx(|| format!("stat of {}", file.display()))?
                    .len();
                store.put(
                    f,
                    &PutOptions {
                        size: Some(len),
                        ..opts
                    },
                )?
            };
            if json {
                println!("{}", json!({"digest": put.digest, "size": put.size}));
            } else {
                println!("{}", put.digest);
            }
            Ok(())
        }
        BlobCommand::Get {
            digest,
            output,
            range,
            repo,
            verify,
        } => {
            let d = digest_arg(&digest)?;
            let store = open(store_dir)?;
            if let Some(r) = &repo {
                if !store.is_member(r, &d)? {
                    return Err(Error::NotFound {
                        what: "blob",
                        digest: d,
                        hint: format!(" in repository `{r}`"),
                    });
                }
            }
            match (range, verify) {
                (Some(_), true) => Err(Error::InvalidArgument {
                    value: "--verify with --range".into(),
                    expected: "one or the other: only a whole blob can be verified".into(),
                }),
                (Some(r), false) => {
                    let (start, end) = parse_range(&r)?;
                    write_output(output.as_ref(), store.get_range(&d, start, end)?)
                }
                (None, true) => write_output(output.as_ref(), store.get_verified(&d)?),
                (None, false) => write_output(output.as_ref(), store.get(&d)?),
            }
        }
        BlobCommand::Stat { digest, json: _ } => {
            let d = digest_arg(&digest)?;
            let info = open(store_dir)?.stat(&d)?;
            println!("{}", serde_json::to_string(&info).unwrap_or_default());
            Ok(())
        }
        BlobCommand::Rm { digest } => {
            let d = digest_arg(&digest)?;
            open(store_dir)?.delete(&d)?;
            eprintln!("deleted {d}");
            Ok(())
        }
    }
}

fn manifest(store_dir: &Path, cmd: ManifestCommand) -> Result<()> {
    match cmd {
        ManifestCommand::Put(a) => {
            let body = read_input(&a.file)?;
            let store = create(store_dir)?;
            let put = store.put_manifest(
                &a.repo,
                &body,
                &ManifestOptions {
                    media_type: a.media_type,
                    tags: a.tags,
                    require_children: a.require_children,
                    ..ManifestOptions::default()
                },
            )?;
            if a.json {
                println!("{}", serde_json::to_string(&put).unwrap_or_default());
            } else {
                println!("{}", put.digest);
            }
            Ok(())
        }
        ManifestCommand::Get {
            repo,
            reference,
            output,
        } => {
            let r = Reference::parse(&reference)?;
            let (_, bytes) = open(store_dir)?.get_manifest(&repo, &r)?;
            write_output(output.as_ref(), bytes.as_slice())
        }
    }
}

fn bench(store_dir: &Path, cmd: BenchCommand) -> Result<()> {
    use ocidb::bench::{gen, report, run};
    match cmd {
        BenchCommand::Gen {
            preset,
            manifests,
            seed,
            layout,
        } => {
            let spec = match manifests {
                Some(n) => gen::GenSpec::sized(n, seed),
                None => gen::GenSpec::preset(gen::Preset::parse(&preset)?, seed),
            };
            if let Some(dir) = layout {
                let marks = gen::generate_layout(&dir, &spec)?;
                println!(
                    "wrote an OCI image layout of {} manifests ({} images) to {}",
                    marks.manifests.len(),
                    marks.images.len(),
                    dir.display()
                );
                return Ok(());
            }
            let store = create(store_dir)?;
            let total = spec.manifests;
            let g = gen::generate_into_store(&store, &spec, 10_000, |n| {
                eprint!("\r{n} of ~{total} manifests");
            })?;
            eprintln!();
            println!(
                "generated {} manifests ({} images) into {} in {:.1} s ({:.0} manifests/s)",
                g.manifests,
                g.landmarks.images.len(),
                store_dir.display(),
                g.seconds,
                g.manifests as f64 / g.seconds
            );
            Ok(())
        }
        BenchCommand::Run {
            quick,
            json,
            svg,
            seed,
            manifests,
            sizes,
            dir,
        } => {
            let opts = run::RunOptions {
                quick,
                dir,
                seed,
                manifests,
                sizes,
                probe_exe: std::env::current_exe().ok(),
            };
            let started = std::time::Instant::now();
            let r = run::run(&opts, &mut |m| {
                eprintln!("[{:>5.1} s] {m}", started.elapsed().as_secs_f64())
            })?;
            println!("{}", report::table(&r));
            if let Some(p) = json {
                let text = serde_json::to_string_pretty(&r)
                    .map_err(|e| Error::io("formatting JSON", e.into()))?;
                fs::write(&p, text)
                    .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
                eprintln!("wrote {}", p.display());
            }
            if let Some(p) = svg {
                fs::write(&p, report::scaling_svg(&r.scaling, &plot_title(&r)))
                    .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
                eprintln!("wrote {}", p.display());
            }
            Ok(())
        }
        BenchCommand::Plot { json, svg } => {
            let text =
                fs::read(&json).map_err(|e| Error::io(format!("reading {}", json.display()), e))?;
            let r: report::Report =
                serde_json::from_slice(&text).map_err(|e| Error::InvalidArgument {
                    value: json.display().to_string(),
                    expected: format!("the JSON of `ocidb bench run --json` ({e})"),
                })?;
            fs::write(&svg, report::scaling_svg(&r.scaling, &plot_title(&r)))
                .map_err(|e| Error::io(format!("writing {}", svg.display()), e))?;
            eprintln!("wrote {}", svg.display());
            Ok(())
        }
        BenchCommand::ProbeLookups { keys } => {
            let v = run::probe_lookups(store_dir, &keys)?;
            println!("{v}");
            Ok(())
        }
    }
}

fn plot_title(r: &ocidb::bench::report::Report) -> String {
    format!(
        "Referrers (k = 1) and stat p50 against store size (seed {}, {})",
        r.seed,
        if r.quick { "--quick" } else { "full run" }
    )
}
