//! The `ocidb` command line.

pub mod args;
mod bench;
mod bench_cluster;
mod commands;
pub mod config;
pub mod crash_child;
mod history;
mod logger;
pub mod progress;
mod refs;
mod remote;
pub mod render;
mod util;
mod view;

use std::path::Path;

use ocidb::{Error, Result, Store};
use serde_json::json;

use args::{Cli, Command, DebugCommand, LeaseCommand};
use render::Style;
use util::*;

/// Runs a command. The library names only what was asked for in its errors
/// (a registry must not leak other tenants' names); this offline tool,
/// whose user can list the store anyway, adds the existing names as a hint.
pub fn run(resolved: config::Resolved) -> Result<()> {
    let config::Resolved { cli, options } = resolved;
    if let Command::Serve(a) = &cli.command
        && a.print_config
    {
        print!("{}", config::print(&options));
        return Ok(());
    }
    SERVE_OPTIONS.set(options).ok();
    let default = if matches!(cli.command, Command::Serve(_)) {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    logger::install(default);
    let blobs = cli
        .blobs
        .as_deref()
        .map(str::parse::<ocidb::blob::BlobLocation>)
        .transpose()?;
    let _ = util::BLOBS.set(blobs);
    let _ = util::SERVER.set(cli.server.clone());
    let store_dir = cli.store.clone();
    let existed = store_dir.exists();
    run_command(cli).map_err(|e| {
        if !existed {
            remove_if_left_empty(&store_dir);
        }
        with_hint(&store_dir, e)
    })
}

/// `serve`'s resolved options at start, for a reload to compare with.
static SERVE_OPTIONS: std::sync::OnceLock<
    std::collections::BTreeMap<String, (Option<String>, config::Source)>,
> = std::sync::OnceLock::new();

/// A command that failed on a store it created (`import ./nope` into a
/// new directory) leaves no empty store behind. Only a store that holds
/// nothing at all is removed.
fn remove_if_left_empty(store_dir: &Path) {
    let empty = match util::open(store_dir) {
        Ok(s) => s.is_empty().unwrap_or(false),
        Err(_) => false,
    };
    if empty {
        let _ = std::fs::remove_dir_all(store_dir);
    }
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
        Error::TagUnknown {
            repository,
            tag,
            hint,
        } if hint.is_empty() => {
            let tags = Store::open(store_dir)
                .and_then(|s| s.tags(&repository, None, Some(20)))
                .unwrap_or_default();
            Error::TagUnknown {
                hint: list("tags", tags),
                repository,
                tag,
            }
        }
        Error::RepositoryUnknown { repository, hint } if hint.is_empty() => {
            let repos = Store::open(store_dir)
                .and_then(|s| s.repositories())
                .unwrap_or_default();
            Error::RepositoryUnknown {
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
        Command::Bench(cmd) => bench::bench(&store_dir, cmd),
        Command::Blob(cmd) => commands::blob(&store_dir, cmd),
        Command::Manifest(cmd) => commands::manifest(&store_dir, cmd),
        Command::Tag {
            source,
            restore,
            at,
            ..
        } if restore.is_some() || at.is_some() => {
            history::restore(&store_dir, &source, restore.as_deref(), at.as_deref())
        }
        Command::Retention {
            policy,
            dry_run,
            grace,
            undelete_window,
            json,
        } => {
            let ask = ocidb_server::RetentionRequest {
                policy: commands::read_policy(&policy)?,
                dry_run,
                grace,
                undelete_window,
            };
            commands::retention(&store_dir, &ask, json)
        }
        Command::Usage { scope, json } => commands::usage(&store_dir, scope.as_deref(), json),
        Command::History {
            reference,
            n,
            before,
            since,
            digest,
            full,
            json,
        } => history::show(
            &store_dir,
            &reference,
            history::Filters {
                n,
                before,
                since,
                digest,
            },
            full,
            json,
        ),
        Command::Tag {
            source,
            tag,
            digest,
            ..
        } => {
            let tag = tag.unwrap_or_default();
            // `tag REPO TAG DIGEST` (older) or `tag REPO@DIGEST|REPO:TAG TAG`.
            let text = match &digest {
                Some(d) => format!("{source}@{d}"),
                None => source,
            };
            let written = refs::Written::parse(&text)?;
            let store = open(&store_dir)?;
            let m = written.resolve(&store)?;
            let repo = m.require_repo(&text)?;
            store.set_tags_by(
                repo,
                vec![(tag.clone(), m.digest)],
                util::os_user().as_deref(),
            )?;
            eprintln!(
                "tagged {}:{} -> {}",
                render::escape(repo),
                render::escape(&tag),
                m.digest
            );
            Ok(())
        }
        Command::Untag { reference, tag } => {
            let text = refs::joined(&reference, tag.as_deref());
            let refs::Written::Tag { repo, tag } = refs::Written::parse(&text)? else {
                return Err(Error::InvalidArgument {
                    value: text,
                    expected: "REPO:TAG (to remove a manifest, use `ocidb rm REPO@DIGEST`)".into(),
                });
            };
            let old = open(&store_dir)?.untag_by(&repo, &tag, util::os_user().as_deref())?;
            eprintln!(
                "untagged {}:{} (was {old})",
                render::escape(&repo),
                render::escape(&tag)
            );
            Ok(())
        }
        Command::Tags {
            repo,
            full,
            last,
            n,
            json,
        } => {
            let named =
                view::open_view(&store_dir)?.tags_with_digests(&repo, last.as_deref(), n)?;
            let tags: Vec<&String> = named.iter().map(|(t, _)| t).collect();
            if json {
                // The distribution API's tag list, plus the digest of each.
                let digests: serde_json::Map<String, serde_json::Value> =
                    named.iter().map(|(t, d)| (t.clone(), json!(d))).collect();
                print_json(&json!({"name": repo, "tags": tags, "digests": digests}))
            } else {
                let st = Style::for_stdout().full_digests(full);
                let width = tags.iter().map(|t| t.chars().count()).max().unwrap_or(0);
                for (t, d) in &named {
                    println!("{:width$}  {}", render::escape(t), st.digest(d));
                }
                Ok(())
            }
        }
        Command::Repos { json } => {
            let repos = view::open_view(&store_dir)?.repositories()?;
            if json {
                print_json(&json!({"repositories": repos}))
            } else {
                for r in repos {
                    println!("{}", render::escape(&r));
                }
                Ok(())
            }
        }
        Command::Referrers(a) => commands::referrers(&store_dir, a),
        Command::Tree {
            reference,
            full,
            json,
        } => {
            let written = refs::Written::parse(&reference)?;
            let store = view::open_view(&store_dir)?;
            let m = written.resolve(&*store)?;
            let walk = store.walk(m.require_repo(&reference)?, &m.digest)?;
            if json {
                print_json(&walk)
            } else {
                let st = Style::for_stdout().full_digests(full);
                print!("{}", render::tree(&walk, &reference, st));
                Ok(())
            }
        }
        Command::Rm { reference, force } => {
            let written = refs::Written::parse(&reference)?;
            let store = open(&store_dir)?;
            let m = written.resolve(&store)?;
            let (repo, d) = (m.require_repo(&reference)?.to_string(), m.digest);
            if !force {
                commands::refuse_if_tagged(&store, &d)?;
            }
            store.delete_manifest(&repo, &d)?;
            eprintln!("deleted {repo}@{d}");
            Ok(())
        }
        Command::Gc(a) => commands::gc(&store_dir, a),
        Command::Fsck(a) => commands::fsck(&store_dir, a),
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
        Command::Migrate { json } => commands::migrate(&store_dir, json),
        Command::Snapshot { json } => {
            let info = view::open_view(&store_dir)?.snapshot_index()?;
            if json {
                return print_json(&info);
            }
            println!(
                "index snapshot at log position {}: {} rows, {}; pruned {} snapshots and {} log objects",
                info.position,
                info.rows,
                render::human_size(info.bytes),
                info.pruned_snapshots,
                info.pruned_log_objects
            );
            Ok(())
        }
        Command::Restore { to, json } => commands::restore(&store_dir, to.as_deref(), json),
        Command::MigrateBlobs { to, json } => commands::migrate_blobs(&store_dir, &to, json),
        Command::Import(a) => commands::import(&store_dir, a),
        Command::Export(a) => commands::export(&store_dir, a),
        Command::Lease(LeaseCommand::Ls { json }) => {
            let leases = view::open_view(&store_dir)?.lease_details()?;
            if json {
                print_json(&leases)
            } else {
                let now = ocidb::Clock::now_ms(&ocidb::SystemClock);
                print!("{}", render::leases(&leases, now));
                Ok(())
            }
        }
        Command::Lease(LeaseCommand::Rm { id }) => {
            view::open_view(&store_dir)?.release_lease(id)?;
            eprintln!("released lease {id}");
            Ok(())
        }
        Command::Stats { json } => {
            let stats = view::open_view(&store_dir)?.stats()?;
            if json {
                print_json(&stats)
            } else {
                print!("{}", render::stats(&stats));
                Ok(())
            }
        }
        Command::Debug(DebugCommand::CrashChild {
            seed,
            log,
            large_mib,
            events,
        }) => crash_child::run(&store_dir, seed, &log, large_mib, events),
        Command::Debug(DebugCommand::MigrateAbort { at, batch }) => {
            let mut step = 0;
            let opts = ocidb::MigrateOptions { batch_rows: batch };
            ocidb::maint::migrate::migrate(&store_dir, &opts, &mut |_| {
                step += 1;
                if step == at {
                    std::process::abort();
                }
            })?;
            Ok(())
        }
        Command::Serve(a) => serve(&store_dir, *a),
        Command::Htpasswd { user, cost } => htpasswd(&user, cost),
        Command::Inspect {
            reference,
            repo,
            json: _,
        } => {
            let written = refs::Written::parse(&reference)?;
            let store = open(&store_dir)?;
            let m = written.resolve(&store)?;
            let repo = repo.or(m.repo);
            print_json(&store.inspect(&m.digest, repo.as_deref())?)
        }
    }
}

fn serve(store_dir: &Path, a: args::ServeArgs) -> Result<()> {
    let policy = ocidb::GcPolicy::default()
        .grace(ocidb::gc::parse_duration(&a.grace)?)
        .delete_untagged(a.delete_untagged)
        .undelete_window(ocidb::gc::parse_duration(&a.undelete_window)?)
        .history_retention(
            a.history_retention
                .as_deref()
                .map(ocidb::gc::parse_duration)
                .transpose()?,
        );
    let interval = a
        .gc_interval
        .as_deref()
        .map(ocidb::gc::parse_duration)
        .transpose()?;
    let header_timeout = ocidb::gc::parse_duration(&a.header_timeout)?;
    if header_timeout.is_zero() {
        return Err(ocidb::Error::InvalidArgument {
            value: a.header_timeout.clone(),
            expected: "--header-timeout above zero (a client needs some time to send a request)"
                .into(),
        });
    }
    let opts = ocidb_server::ServeOptions::default()
        .addr(a.addr)
        .gc_interval(interval)
        .gc_policy(policy)
        .upload_max_idle(ocidb::gc::parse_duration(&a.upload_max_idle)?)
        .scrub(scrub_interval(&a)?, commands::parse_size(&a.scrub_bytes)?)
        .snapshot_interval(
            Some(ocidb::gc::parse_duration(&a.snapshot_interval)?).filter(|d| !d.is_zero()),
        )
        .upload_lease(
            a.upload_lease
                .as_deref()
                .map(ocidb::gc::parse_duration)
                .transpose()?,
        )
        .max_uploads(a.max_uploads)
        .max_downloads(a.max_downloads)
        .header_timeout(header_timeout)
        .body_idle_timeout(ocidb::gc::parse_duration(&a.body_idle_timeout)?)
        .max_connections(a.max_connections)
        .max_connections_per_client(a.max_connections_per_client)
        .min_body_rate(a.min_body_rate)
        .allow_sparse_manifests(a.allow_sparse_manifests)
        .health_probes(!a.no_health_probes)
        .admin_addr(a.admin_addr)
        .webhooks(
            a.webhook
                .iter()
                .map(|u| ocidb_server::Webhook::parse(u))
                .collect::<Result<Vec<_>>>()?,
        )
        .event_source(a.event_source.clone())
        .retention(
            a.retention_policy
                .as_deref()
                .map(commands::read_policy)
                .transpose()?,
            ocidb::gc::parse_duration(&a.retention_interval)?,
        );
    let (access, tls) = access_and_tls(&a)?;
    let opts = match access {
        Some(access) => opts.access(access),
        None => opts,
    };
    let (opts, scheme) = match tls {
        Some(t) => (opts.tls(t), "https"),
        None => (opts, "http"),
    };
    let member = cluster_member(&a)?;
    let store_opts = store_options().events(!a.webhook.is_empty());
    let store = std::sync::Arc::new(match &member {
        None => Store::open_with(store_dir, store_opts, true)?,
        Some(m) => open_member(store_dir, store_opts, m)?,
    });
    let opts = opts.cluster(member.clone());
    if let Some(m) = &member {
        let (m, s) = (std::sync::Arc::clone(m), std::sync::Arc::clone(&store));
        std::thread::Builder::new()
            .name("ocidb-cluster".into())
            .spawn(move || m.run(s))
            .map_err(|e| Error::io("starting the cluster thread", e))?;
    }
    store.set_quotas(
        a.quota
            .iter()
            .map(|q| commands::parse_quota(q))
            .collect::<Result<Vec<_>>>()?,
    )?;
    let shown = store_dir.display().to_string();
    // The address comes first after "serving": scripts read it there.
    let blobs = match store.blob_location() {
        Some(l @ ocidb::blob::BlobLocation::S3(_)) => format!(", blobs in {l}"),
        _ => String::new(),
    };
    let ready = |addr| {
        tracing::info!(
            target: logger::LISTENING,
            "serving {shown} on {scheme}://{addr} (Ctrl-C to stop{blobs})"
        );
    };
    let served = ocidb_server::serve_with_reload(store, &opts, ready, Some(Box::new(reload)));
    if let Some(m) = &member {
        // A primary that stops hands over now, not after its lease lapses.
        m.resign();
    }
    served
}

/// The cluster member `--cluster` asks for, over the bucket of `--blobs`.
fn cluster_member(
    a: &args::ServeArgs,
) -> Result<Option<std::sync::Arc<ocidb_server::cluster::Member>>> {
    let Some(url) = &a.cluster else {
        return Ok(None);
    };
    let etcd = ocidb_server::cluster::Etcd::parse(url).map_err(|why| Error::InvalidArgument {
        value: url.clone(),
        expected: why,
    })?;
    // The bucket and prefix name the cluster: members may reach the
    // bucket through different endpoints.
    let location = match store_options().blobs {
        Some(ocidb::blob::BlobLocation::S3(l)) => format!("{}/{}", l.bucket, l.prefix),
        other => {
            return Err(Error::InvalidArgument {
                value: other.map_or_else(|| "no --blobs".into(), |l| l.to_string()),
                expected: "--blobs s3://… with --cluster: the members share the bucket, which holds the index log".into(),
            })
        }
    };
    let advertise = a.advertise.clone().unwrap_or_default();
    if !advertise.starts_with("http://") {
        return Err(Error::InvalidArgument {
            value: advertise,
            expected: "--advertise http://HOST:PORT, the URL other members forward writes to"
                .into(),
        });
    }
    let mut o = ocidb_server::cluster::ClusterOptions::new(etcd, advertise, location);
    o.lease_ttl =
        ocidb::gc::parse_duration(&a.cluster_lease)?.max(std::time::Duration::from_secs(1));
    o.max_lag = ocidb::gc::parse_duration(&a.max_replica_lag)?;
    Ok(Some(ocidb_server::cluster::Member::new(o)))
}

/// A member's store: always opened as a replica (the member's loop
/// promotes it if it wins the election); an empty directory starts from
/// the bucket's newest snapshot and the log up to the cluster's head.
pub(super) fn open_member(
    dir: &Path,
    opts: ocidb::StoreOptions,
    m: &ocidb_server::cluster::Member,
) -> Result<Store> {
    let plain = opts.clone();
    let opts = opts.log_head(m.log_head()).replica(true);
    if dir.join(ocidb::store::DB_FILE).is_file() {
        return Store::open_with(dir, opts, false);
    }
    if !ocidb::maint::index_log::log_has_snapshot(&opts)? {
        if m.claim_bootstrap()? {
            // The cluster's first member on a bucket with no store: it
            // makes one (whose first open writes the first snapshot), then
            // joins as every member does.
            tracing::info!(
                "{}: creating the cluster's store in the bucket",
                dir.display()
            );
            drop(Store::open_with(dir, plain, true)?);
            return Store::open_with(dir, opts, false);
        }
        // Another member is creating it: wait for its snapshot.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !ocidb::maint::index_log::log_has_snapshot(&opts)? {
            if std::time::Instant::now() > deadline {
                return Err(Error::InvalidArgument {
                    value: dir.display().to_string(),
                    expected: "a bucket with a snapshot to start from: another member claimed the cluster's creation 2 minutes ago and wrote none (if it died, delete the etcd key /ocidb/<cluster>/init and start again)".into(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    let head = m.current_head()?;
    tracing::info!(
        "{}: starting a replica from the bucket's newest snapshot (log head {})",
        dir.display(),
        head.map_or_else(|| "not set yet".into(), |h| h.to_string())
    );
    let (store, report) = Store::restore_replica(dir, opts, head, &mut |_| {})?;
    tracing::info!(
        "{}: replica at log position {} (snapshot {}, {} log objects)",
        dir.display(),
        store.log_position()?,
        report.snapshot,
        report.log_objects
    );
    Ok(store)
}

/// Prints a bcrypt password-file line for `user`, the password read from
/// stdin's first line.
fn htpasswd(user: &str, cost: u32) -> Result<()> {
    if user.is_empty() || user.contains(':') || user.chars().any(char::is_whitespace) {
        return Err(Error::InvalidArgument {
            value: user.to_string(),
            expected: "a user name without `:` or whitespace".into(),
        });
    }
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .map_err(|e| Error::io("reading the password from stdin", e))?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(Error::InvalidArgument {
            value: "the password on stdin".into(),
            expected: "a non-empty first line".into(),
        });
    }
    let hash = ocidb_server::hash_password(password, cost)?;
    println!("{user}:{hash}");
    Ok(())
}

/// `--scrub-interval`, above zero (a zero interval would re-hash without
/// a pause).
fn scrub_interval(a: &args::ServeArgs) -> Result<Option<std::time::Duration>> {
    let Some(text) = a.scrub_interval.as_deref() else {
        return Ok(None);
    };
    let every = ocidb::gc::parse_duration(text)?;
    if every.is_zero() {
        return Err(Error::InvalidArgument {
            value: text.to_string(),
            expected: "--scrub-interval above zero (10m, 1h…)".into(),
        });
    }
    Ok(Some(every))
}

/// The access control and certificate `a` names, each loaded and checked
/// whole (grants against the password file's users).
fn access_and_tls(
    a: &args::ServeArgs,
) -> Result<(Option<ocidb_server::Access>, Option<ocidb_server::TlsFiles>)> {
    let access = a
        .htpasswd
        .as_ref()
        .map(|h| ocidb_server::Access::load(h, a.access.as_deref(), a.anonymous_read))
        .transpose()?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(ocidb_server::TlsFiles::load(c, k)?),
        _ => None,
    };
    Ok((access, tls))
}

/// SIGHUP: the command line and environment as at start, with the config
/// file read again; its password file, grants and certificate are loaded
/// whole, or the reload is refused. Other changed options are named: they
/// wait for a restart.
fn reload() -> Result<ocidb_server::Reloaded> {
    let resolved =
        config::parse(std::env::args_os().collect()).map_err(config::Failed::into_error)?;
    let Command::Serve(a) = &resolved.cli.command else {
        return Err(Error::Internal(
            "the command line is no longer `serve`".into(),
        ));
    };
    let (access, tls) = access_and_tls(a)?;
    if let Some(before) = SERVE_OPTIONS.get() {
        for key in config::changed_needing_restart(before, &resolved.options) {
            tracing::warn!("SIGHUP: `{key}` changed; it takes effect at the next restart");
        }
    }
    Ok(ocidb_server::Reloaded::new(access, tls))
}
