//! The commands that take arguments of their own: referrers, gc, fsck,
//! import, export, blob and manifest.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ocidb::error::IoContext as _;
use ocidb::{
    Error, ExportOptions, ImportOptions, ManifestOptions, PutOptions, ReferrersQuery, Result,
};
use serde_json::json;

use super::args::{
    BlobCommand, ExportArgs, FsckArgs, GcArgs, ImportArgs, ManifestCommand, ReferrersArgs,
};
use super::progress;
use super::refs;
use super::render::{self};
use super::util::*;

pub(super) fn referrers(store_dir: &Path, a: ReferrersArgs) -> Result<()> {
    let ReferrersArgs {
        reference,
        digest,
        artifact_type,
        n,
        cursor,
        // The referrers index is what this command prints anyway.
        json: _,
    } = a;
    let text = refs::joined(&reference, digest.as_deref());
    let written = refs::Written::parse(&text)?;
    let store = open(store_dir)?;
    let subject = written.resolve(&store)?;
    let (repo, d) = (subject.require_repo(&text)?.to_string(), subject.digest);
    // The library answers an unknown repository with an empty list
    // (as the API must); here, as for tree and tags, it is an error.
    store.tags(&repo, None, Some(0))?;
    let page = store.referrers(
        &repo,
        &d,
        &ReferrersQuery::default()
            .artifact_type(artifact_type.as_deref())
            .cursor(cursor.as_deref())
            .limit(n),
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

pub(super) fn gc(store_dir: &Path, a: GcArgs) -> Result<()> {
    let GcArgs {
        dry_run,
        delete_untagged,
        grace,
        undelete_window,
        history_retention,
        verbose,
        json,
    } = a;
    let ask = ocidb_server::GcRequest {
        dry_run,
        delete_untagged,
        grace,
        undelete_window,
        history_retention,
    };
    // A bad value is reported before the store is opened.
    ask.policy()?;
    let store = super::view::open_view(store_dir)?;
    let spinner = progress::spinner("collecting garbage");
    let report = store.gc(&ask)?;
    progress::finish(spinner);
    if json {
        let mut v = json!({
            "deleted_manifests": report.deleted_manifests,
            "deleted_blobs": report.deleted_blobs,
            "reclaimed_bytes": report.reclaimed_bytes,
            "kept": report.kept,
            "kept_for_undelete": report.kept_for_undelete,
            "history_pruned": report.history_pruned,
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

pub(super) fn fsck(store_dir: &Path, a: FsckArgs) -> Result<()> {
    let FsckArgs {
        repair,
        json,
        allow_sparse,
        incremental,
        after,
        max_bytes,
    } = a;
    if incremental {
        return scrub(store_dir, after.as_deref(), &max_bytes, json);
    }
    let store = super::view::open_view(store_dir)?;
    let bar = progress::bar("verifying blobs");
    let cb = |done: u64, total: u64| progress::set(&bar, done, total);
    let report = store.fsck(repair, allow_sparse, &cb)?;
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

/// `fsck --incremental`: one slice, and where the next starts.
fn scrub(store_dir: &Path, after: Option<&str>, max_bytes: &str, json: bool) -> Result<()> {
    let after = after.map(digest_arg).transpose()?;
    let max = parse_size(max_bytes)?;
    let slice = super::view::open_view(store_dir)?.scrub(after.as_ref(), max)?;
    if json {
        print_json(&slice)?;
    } else {
        for p in &slice.problems {
            let d = p.digest.map(|d| format!("{d}: ")).unwrap_or_default();
            println!("{}: {d}{}", p.kind, render::escape(&p.detail));
        }
        let next = match &slice.next {
            Some(d) => format!("next slice: --after {d}"),
            None => "the end of the store: the next slice starts from the first blob".into(),
        };
        println!(
            "{} records, {} verified, {} problem(s); {next}",
            slice.records,
            render::human_size(slice.bytes_verified),
            slice.problems.len()
        );
    }
    if slice.problems.is_empty() {
        Ok(())
    } else {
        std::process::exit(1);
    }
}

/// A byte count: digits, optionally with K, M, G or T (powers of 1024).
pub(super) fn parse_size(text: &str) -> Result<u64> {
    let bad = || Error::InvalidArgument {
        value: text.to_string(),
        expected:
            "a size above zero: digits, optionally followed by K, M, G or T (1024-based), e.g. 1G"
                .into(),
    };
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        Some((i, 'T' | 't')) => (&t[..i], 40),
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_shl(shift)
        .filter(|v| *v >> shift == n && *v > 0)
        .ok_or_else(bad)
}

pub(super) fn migrate(store_dir: &Path, json: bool) -> Result<()> {
    let bar = progress::spinner("migrating");
    let report = ocidb::maint::migrate::migrate(
        store_dir,
        &ocidb::MigrateOptions::default(),
        &mut |step| {
            if let ocidb::MigrateStep::Copied { table, rows } = step {
                bar.set_message(format!("migrating {table}: {rows} rows"));
            }
        },
    )?;
    progress::finish(bar);
    if json {
        return print_json(&report);
    }
    if report.from == report.to {
        println!("already in format {}; nothing to do", report.to);
        return Ok(());
    }
    let rows: u64 = report.rows.values().sum();
    println!(
        "migrated format {} -> {}: {rows} rows in {:.1} s; database file {} -> {}",
        report.from,
        report.to,
        report.elapsed.as_secs_f64(),
        render::human_size(report.bytes_before),
        render::human_size(report.bytes_after)
    );
    Ok(())
}

pub(super) fn migrate_blobs(store_dir: &Path, to: &str, json: bool) -> Result<()> {
    let ocidb::blob::BlobLocation::S3(loc) = to.parse()? else {
        return Err(Error::InvalidArgument {
            value: to.to_string(),
            expected: "an s3:// location: migrate-blobs moves local blob files into a bucket"
                .into(),
        });
    };
    let bar = progress::spinner("moving blobs");
    let (mut n, mut bytes) = (0u64, 0u64);
    let report = ocidb::maint::migrate_blobs::migrate_blobs(
        store_dir,
        &loc,
        &ocidb::blob::S3Options::default(),
        &mut |step| match step {
            ocidb::maint::migrate_blobs::MigrateBlobsStep::Blob { size, .. } => {
                n += 1;
                bytes += size;
                bar.set_message(format!(
                    "moving blobs: {n} ({}) in the bucket",
                    render::human_size(bytes)
                ));
            }
            _ => bar.set_message("switching the store over"),
        },
    )?;
    progress::finish(bar);
    if json {
        return print_json(&report);
    }
    if report.already_switched {
        println!(
            "the store already keeps its blobs in {loc}; removed {} leftover local files",
            report.removed_local
        );
        return Ok(());
    }
    println!(
        "moved blobs to {loc}: {} sent ({}), {} already there and verified, {} upload sessions; removed {} local files",
        report.copied,
        render::human_size(report.bytes),
        report.verified_present,
        report.uploads,
        report.removed_local
    );
    for s in report.strays.iter().take(SHOWN) {
        println!("  left in place (not a blob): {}", render::escape(s));
    }
    Ok(())
}

pub(super) fn restore(store_dir: &Path, to: Option<&str>, json: bool) -> Result<()> {
    use ocidb::maint::index_log::RestoreTarget;
    let target = match to {
        None => RestoreTarget::Newest,
        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            RestoreTarget::Position(t.parse().map_err(|_| Error::InvalidArgument {
                value: format!("--to {t}"),
                expected: "a log position that fits in 64 bits".into(),
            })?)
        }
        Some(t) => RestoreTarget::Time(ocidb::clock::parse_rfc3339(t).ok_or_else(|| {
            Error::InvalidArgument {
                value: format!("--to {t}"),
                expected: "a log position (digits) or an RFC 3339 time, e.g. 2026-12-06T09:00:00Z"
                    .into(),
            }
        })?),
    };
    let bar = progress::spinner("restoring");
    let (store, report) =
        ocidb::Store::restore_to(store_dir, super::util::store_options(), target, &mut |p| {
            bar.set_message(match p.phase {
                "snapshot" => format!("restoring: {} rows of the snapshot", p.done),
                _ => format!("restoring: log object {} of {}", p.done, p.total),
            });
        })?;
    progress::finish(bar);
    drop(store);
    if json {
        print_json(&report)?;
    } else {
        println!(
            "restored {} from the snapshot at log position {} ({} rows) and {} log objects after it: now at position {}, {} read",
            store_dir.display(),
            report.snapshot,
            report.rows,
            report.log_objects,
            report.position,
            render::human_size(report.bytes)
        );
        println!(
            "fsck: {} records, {} verified, {} problems",
            report.fsck.records,
            render::human_size(report.fsck.bytes_verified),
            report.fsck.remaining()
        );
        for p in report.fsck.problems.iter().take(SHOWN) {
            println!("  {}: {}", p.kind, render::escape(&p.detail));
        }
    }
    if !report.fsck.is_clean() {
        return Err(Error::Corrupt(format!(
            "the restored store has {} fsck problems",
            report.fsck.remaining()
        )));
    }
    Ok(())
}

pub(super) fn import(store_dir: &Path, a: ImportArgs) -> Result<()> {
    let ImportArgs {
        path,
        repo,
        strict,
        json,
    } = a;
    let store = create(store_dir)?;
    let bar = progress::bar("importing");
    let cb = |done: u64, total: u64| progress::set(&bar, done, total);
    let report = store.import_layout(
        &path,
        &ImportOptions::default()
            .repository(repo)
            .strict(strict)
            .progress(&cb),
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

pub(super) fn export(store_dir: &Path, a: ExportArgs) -> Result<()> {
    let ExportArgs {
        mut args,
        with_referrers,
        oci_index_types,
        hardlink,
        json,
    } = a;
    let out = PathBuf::from(args.pop().unwrap_or_default());
    for a in &args {
        refs::Written::parse(a)?;
    }
    let store = open(store_dir)?;
    let images = args
        .iter()
        .map(|a| refs::image(&store, a))
        .collect::<Result<Vec<_>>>()?;
    let spinner = progress::spinner("exporting");
    let report = store.export_layout(
        &images,
        &out,
        &ExportOptions::default()
            .with_referrers(with_referrers)
            .oci_index_types(oci_index_types)
            .hardlink(hardlink),
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

pub(super) fn blob(store_dir: &Path, cmd: BlobCommand) -> Result<()> {
    match cmd {
        BlobCommand::Put {
            file,
            digest,
            media_type,
            repo,
            json,
        } => {
            let expected = digest.as_deref().map(digest_arg).transpose()?;
            let opts = PutOptions::default()
                .digest(expected)
                .media_type(media_type)
                .repository(repo);
            let store = create(store_dir)?;
            let put = if file.as_os_str() == "-" {
                store.put(io::stdin().lock(), &opts)?
            } else {
                let f = fs::File::open(&file).context(|| format!("opening {}", file.display()))?;
                let len = f
                    .metadata()
                    .context(|| format!("stat of {}", file.display()))?
                    .len();
                store.put(f, &opts.size(len))?
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
            refs::digest_syntax(&digest)?;
            let store = open(store_dir)?;
            let d = store.resolve_digest(&digest)?;
            if let Some(r) = &repo
                && !store.is_member(r, &d)?
            {
                return Err(Error::BlobUnknown {
                    digest: d,
                    hint: format!(" in repository `{r}`"),
                });
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
            refs::digest_syntax(&digest)?;
            let store = open(store_dir)?;
            let info = store.stat(&store.resolve_digest(&digest)?)?;
            println!("{}", serde_json::to_string(&info).unwrap_or_default());
            Ok(())
        }
        BlobCommand::Rm { digest, force } => {
            refs::digest_syntax(&digest)?;
            let store = open(store_dir)?;
            let d = store.resolve_digest(&digest)?;
            if !force {
                refuse_if_tagged(&store, &d)?;
            }
            store.delete(&d)?;
            eprintln!("deleted {d}");
            Ok(())
        }
    }
}

/// Refuses to remove content a tag reaches, naming the tag: removing it
/// would leave a tagged image that cannot be pulled.
pub(super) fn refuse_if_tagged(store: &ocidb::Store, d: &ocidb::Digest) -> Result<()> {
    let tags = store.tags_reaching(d, 3)?;
    let Some((repo, tag)) = tags.first() else {
        return Ok(());
    };
    let more = if tags.len() > 1 { " (and others)" } else { "" };
    Err(Error::InvalidArgument {
        value: d.to_string(),
        expected: format!(
            "content no tag reaches; tag `{repo}:{tag}`{more} reaches it, and removing it would leave that image unpullable (--force removes it anyway)"
        ),
    })
}

pub(super) fn manifest(store_dir: &Path, cmd: ManifestCommand) -> Result<()> {
    match cmd {
        ManifestCommand::Put(a) => {
            let body = read_input(&a.file)?;
            let store = create(store_dir)?;
            let put = store.put_manifest(
                &a.repo,
                &body,
                &ManifestOptions::default()
                    .media_type(a.media_type)
                    .tags(a.tags)
                    .children(if a.allow_missing_children {
                        ocidb::Children::AllowMissing
                    } else {
                        ocidb::Children::InRepository
                    }),
            )?;
            if a.json {
                println!("{}", serde_json::to_string(&put).unwrap_or_default());
            } else {
                println!("{}", put.digest);
            }
            Ok(())
        }
        ManifestCommand::Get {
            reference,
            tag_or_digest,
            output,
        } => {
            let text = refs::joined(&reference, tag_or_digest.as_deref());
            let written = refs::Written::parse(&text)?;
            let store = open(store_dir)?;
            let m = written.resolve(&store)?;
            let (_, bytes) = store.get_manifest(m.require_repo(&text)?, &m.reference())?;
            write_output(output.as_ref(), bytes.as_slice())
        }
    }
}

/// `SCOPE=SIZE` of `serve --quota`.
pub(super) fn parse_quota(text: &str) -> Result<ocidb::store::Quota> {
    let Some((scope, size)) = text.split_once('=') else {
        return Err(Error::InvalidArgument {
            value: text.to_string(),
            expected:
                "SCOPE=SIZE: a repository or a namespace ending in `/`, then a size, e.g. team/=50G"
                    .into(),
        });
    };
    Ok(ocidb::store::Quota {
        scope: scope.trim().to_string(),
        max_bytes: parse_size(size)?,
    })
}

/// `ocidb usage [SCOPE]`.
pub(super) fn usage(store_dir: &Path, scope: Option<&str>, json: bool) -> Result<()> {
    let view = super::view::open_view(store_dir)?;
    let scopes: Vec<String> = match scope {
        Some(s) => vec![s.to_string()],
        None => view.repositories()?,
    };
    let rows = scopes
        .iter()
        .map(|s| view.usage(s))
        .collect::<Result<Vec<_>>>()?;
    if json {
        return match scope {
            Some(_) => print_json(&rows[0]),
            None => print_json(&rows),
        };
    }
    let width = rows
        .iter()
        .map(|u| u.scope.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:width$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}",
        "SCOPE", "LOGICAL", "UNIQUE", "EXCLUSIVE", "SHARED", "QUOTA"
    );
    for u in &rows {
        println!(
            "{:width$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}",
            render::escape(&u.scope),
            render::human_size(u.logical_bytes),
            render::human_size(u.unique_bytes),
            render::human_size(u.exclusive_bytes),
            render::human_size(u.shared_bytes),
            u.quota.map_or("-".to_string(), render::human_size),
        );
    }
    Ok(())
}

/// A retention policy file: TOML, or JSON when it starts with `{`.
pub(super) fn read_policy(path: &Path) -> Result<ocidb::RetentionPolicy> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let bad = |why: String| Error::InvalidArgument {
        value: path.display().to_string(),
        expected: format!("a retention policy: [[rules]] tables ({why})"),
    };
    if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
    } else {
        toml::from_str(&text).map_err(|e| bad(e.to_string().replace('\n', " ")))
    }
}

/// `ocidb retention`.
pub(super) fn retention(
    store_dir: &Path,
    ask: &ocidb_server::RetentionRequest,
    json: bool,
) -> Result<()> {
    // Bad values are reported before the store is opened.
    ask.options()?;
    let view = super::view::open_view(store_dir)?;
    let r = view.retention(ask)?;
    if json {
        return print_json(&r);
    }
    // One repository's tags, or one line per repository: --json lists all.
    let one = r.repositories.len() == 1;
    for repo in r.repositories.iter().take(SHOWN) {
        println!(
            "{}: keep {} tag(s), drop {} tag(s) and {} manifest(s)",
            render::escape(&repo.repository),
            repo.kept_tags,
            repo.deleted_tags.len(),
            repo.deleted_manifests.len()
        );
        if one {
            for (t, d) in repo.deleted_tags.iter().take(SHOWN) {
                println!("  tag {}  {}", render::escape(t), render::short(d));
            }
            if repo.deleted_tags.len() > SHOWN {
                println!(
                    "  … and {} more tags (--json lists them all)",
                    repo.deleted_tags.len() - SHOWN
                );
            }
        }
    }
    if r.repositories.len() > SHOWN {
        println!(
            "… and {} more repositories (--json lists them all)",
            r.repositories.len() - SHOWN
        );
    }
    println!(
        "{} {} tag(s) and {} manifest(s): {} freed ({} at once, {} at the next gc); {} stays (held or reached elsewhere, leased, or within the grace period){}",
        if r.dry_run { "would drop" } else { "dropped" },
        r.tags_deleted,
        r.manifests_deleted,
        render::human_size(r.freed_bytes),
        render::human_size(r.manifest_bytes),
        render::human_size(r.blob_bytes),
        render::human_size(r.kept_elsewhere_bytes),
        if r.skipped > 0 {
            format!(
                "; {} step(s) a writer overtook were left for the next run",
                r.skipped
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
