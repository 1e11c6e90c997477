//! `ocidb bench`: generate, run and plot.

use std::fs;
use std::path::Path;

use ocidb::{Error, Result};

use super::args::BenchCommand;
use super::util::*;

pub(super) fn bench(store_dir: &Path, cmd: BenchCommand) -> Result<()> {
    use ocidb_bench::{report, run, synth};
    match cmd {
        BenchCommand::Gen {
            preset,
            manifests,
            seed,
            layout,
            sqlite,
        } => {
            let spec = match manifests {
                Some(n) => synth::GenSpec::sized(n, seed),
                None => synth::GenSpec::preset(synth::Preset::parse(&preset)?, seed),
            };
            if let Some(path) = sqlite {
                return gen_into_fair_sqlite(&path, &spec);
            }
            if let Some(dir) = layout {
                let marks = synth::generate_layout(&dir, &spec)?;
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
            let g = synth::generate_into_store(&store, &spec, 10_000, |n| {
                eprint!("\r{n} of ~{total} manifests");
            })?;
            eprintln!();
            println!(
                "generated {} manifests ({} images) into {} in {:.1} s, {:.1} s of them in the store's batches ({:.0} manifests/s)",
                g.manifests,
                g.landmarks.images.len(),
                store_dir.display(),
                g.wall_seconds,
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
                cache_bytes: super::util::store_options().cache_size,
            };
            let r = run_harness(json.as_deref(), |log| run::run(&opts, log), report::table)?;
            if let Some(p) = svg {
                fs::write(&p, report::scaling_svg(&r.scaling, &plot_title(&r)))
                    .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
                eprintln!("wrote {}", p.display());
            }
            Ok(())
        }
        BenchCommand::Registry {
            quick,
            blob_mib,
            entries,
            peer,
            no_peer,
            oras,
            json,
            dir,
        } => {
            let exe = std::env::current_exe()
                .map_err(|e| Error::io("finding the ocidb executable", e))?;
            let peer = if no_peer {
                None
            } else {
                peer.or_else(|| on_path("docker-registry"))
            };
            if peer.is_none() && !no_peer {
                eprintln!("docker-registry is not on PATH (apt-get install docker-registry): measuring ocidb alone");
            }
            let oras = oras.or_else(|| on_path("oras"));
            let opts = ocidb_bench::registry::RegistryBenchOptions::new(exe, dir)
                .peer_exe(peer)
                .oras(oras)
                .quick(quick)
                .blob_mib(blob_mib)
                .entries(entries);
            run_harness(
                json.as_deref(),
                |log| ocidb_bench::registry::run(&opts, log),
                ocidb_bench::registry::RegistryReport::table,
            )
            .map(drop)
        }
        BenchCommand::S3 {
            blob_mib,
            reps,
            gc_objects,
            garage,
            json,
            dir,
        } => {
            let garage = garage_exe(garage)?;
            let mut opts = ocidb_bench::s3::S3BenchOptions::new(garage, dir);
            opts.blob_mib = blob_mib.max(1);
            opts.reps = reps.max(1);
            opts.gc_objects = gc_objects;
            run_harness(
                json.as_deref(),
                |log| ocidb_bench::s3::run(&opts, log),
                ocidb_bench::s3::S3Report::table,
            )
            .map(drop)
        }
        BenchCommand::Cluster {
            manifests,
            failovers,
            garage,
            etcd,
            json,
            dir,
        } => {
            let garage = garage_exe(garage)?;
            let etcd =
                etcd.or_else(ocidb_bench::etcd::binary)
                    .ok_or_else(|| Error::InvalidArgument {
                        value: "etcd".into(),
                        expected:
                            "an etcd executable: --etcd or on PATH (apt-get install etcd-server)"
                                .into(),
                    })?;
            let opts = super::bench_cluster::ClusterBenchOptions {
                garage,
                etcd,
                dir,
                manifests: manifests.max(1),
                failovers: failovers.max(1),
            };
            run_harness(
                json.as_deref(),
                |log| super::bench_cluster::run(&opts, log),
                super::bench_cluster::ClusterReport::table,
            )
            .map(drop)
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

pub(super) fn plot_title(r: &ocidb_bench::report::Report) -> String {
    format!(
        "Referrers (k = 1) and stat p50 against store size (seed {}, {})",
        r.seed,
        if r.quick { "--quick" } else { "full run" }
    )
}

/// Runs a harness with its progress on stderr, timed from the start, then
/// prints its table and writes its JSON when asked.
fn run_harness<R: serde::Serialize>(
    json: Option<&Path>,
    run: impl FnOnce(&mut dyn FnMut(&str)) -> Result<R>,
    table: impl FnOnce(&R) -> String,
) -> Result<R> {
    let started = std::time::Instant::now();
    let r = run(&mut |m| {
        eprintln!("[{:>5.1} s] {m}", started.elapsed().as_secs_f64());
    })?;
    println!("{}", table(&r));
    if let Some(p) = json {
        write_json(p, &r)?;
    }
    Ok(r)
}

/// Writes a report as pretty JSON and says where.
fn write_json(path: &Path, report: &impl serde::Serialize) -> Result<()> {
    let text =
        serde_json::to_string_pretty(report).map_err(|e| Error::io("formatting JSON", e.into()))?;
    fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// `--garage`, else `$GARAGE`, PATH or ~/.cargo/bin.
fn garage_exe(given: Option<std::path::PathBuf>) -> Result<std::path::PathBuf> {
    given
        .or_else(ocidb_bench::garage::binary)
        .ok_or_else(|| Error::InvalidArgument {
            value: "garage".into(),
            expected: "a garage executable: --garage, $GARAGE, on PATH or in ~/.cargo/bin (cargo install garage --version 2.5.0 --locked)".into(),
        })
}

/// An executable of this name on PATH.
fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// `bench gen --sqlite`: the same content into the fair SQLite peer.
#[cfg(feature = "peers")]
fn gen_into_fair_sqlite(path: &Path, spec: &ocidb_bench::synth::GenSpec) -> Result<()> {
    let total = spec.manifests;
    // The cache `bench gen` gives an ocidb store (OCIDB_CACHE_MIB, else
    // the default), so that the two rates compare equal memory.
    let cache = super::util::store_options().cache_size;
    let (n, seconds) =
        ocidb_bench::peers::SqliteIndex::generate_into(path, spec, 10_000, cache, |n| {
            eprint!("\r{n} of ~{total} manifests");
        })?;
    eprintln!();
    println!(
        "generated {n} manifests into the fair SQLite peer at {} in {seconds:.1} s of inserts ({:.0} manifests/s)",
        path.display(),
        n as f64 / seconds
    );
    Ok(())
}

#[cfg(not(feature = "peers"))]
fn gen_into_fair_sqlite(path: &Path, _: &ocidb_bench::synth::GenSpec) -> Result<()> {
    Err(Error::InvalidArgument {
        value: format!("--sqlite {}", path.display()),
        expected: "a build with the SQLite peer: `cargo build --release --features peers`".into(),
    })
}
