//! `ocidb debug crash-child`: the workload that the crash tests SIGKILL at
//! random moments (tests/crash.rs, tools/crash_cycles.sh).
//!
//! It ingests continuously: blobs (inline and file, durable and synced
//! later), manifests with tags, referrers, deletes and gc. After an
//! operation is acknowledged it appends a line to the log; before a delete
//! it logs the intent, so the checker knows which single operation may be
//! half-done. Log lines are plain `write(2)`s: a SIGKILL cannot lose them.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use ocidb::manifest::OCI_MANIFEST;
use ocidb::{Error, GcPolicy, ManifestOptions, PutOptions, Result};
use ocidb_bench::synth::Rng;
use serde_json::json;

pub fn run(
    store_dir: &Path,
    seed: u64,
    log: &Path,
    large_mib: Option<u64>,
    events: bool,
) -> Result<()> {
    let store =
        ocidb::Store::open_with(store_dir, super::util::store_options().events(events), true)?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
    let mut say = |line: String| -> Result<()> {
        log.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| Error::io("writing the crash log", e))
    };
    let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let lease = store.create_lease(Duration::from_secs(365 * 24 * 3600))?;
    let repo = format!("crash/r{}", seed % 3);
    // Blobs are leased so that the child's own gc never takes them.
    let leased = |data: &[u8], no_sync: bool| {
        store.put_bytes(
            data,
            &PutOptions::default()
                .lease(lease.id)
                .no_sync(no_sync)
                .repository(repo.as_str()),
        )
    };
    let tagged = |body: serde_json::Value, tag: &str| {
        store.put_manifest(
            &repo,
            body.to_string().as_bytes(),
            &ManifestOptions::default().tags(vec![tag.to_string()]),
        )
    };
    // The referrers' empty config, pushed to the repository once.
    leased(b"{}", false)?;
    let mut mine: Vec<(String, serde_json::Value)> = Vec::new();
    for i in 0u64.. {
        let tag = format!("s{seed}-{i}");
        match rng.below(10) {
            // A small (inline) or large (file) blob, durable or synced later.
            0..=2 => {
                let len = if let (Some(mib), 0) = (large_mib, rng.below(3)) {
                    (mib << 20) as usize + rng.below(1 << 20) as usize
                } else if rng.below(3) == 0 {
                    70_000 + rng.below(400_000) as usize
                } else {
                    10 + rng.below(3000) as usize
                };
                let data = ocidb_testkit::deterministic_bytes(
                    format!("{seed}-{i}-{}", rng.next_u64()).as_bytes(),
                    len,
                );
                let no_sync = rng.below(4) == 0;
                let p = leased(&data, no_sync)?;
                if no_sync {
                    store.sync()?;
                }
                say(format!("blob {}", p.digest))?;
            }
            // An image with a config and a layer, tagged.
            3..=5 => {
                let cfg = leased(format!("{{\"seed\":{seed},\"i\":{i}}}").as_bytes(), false)?;
                let layer = leased(
                    &ocidb_testkit::deterministic_bytes(format!("l{seed}-{i}").as_bytes(), 100_000),
                    false,
                )?;
                let body = json!({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.digest, "size": cfg.size},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.digest, "size": layer.size}]
                });
                let p = tagged(body, &tag)?;
                say(format!("blob {}", cfg.digest))?;
                say(format!("blob {}", layer.digest))?;
                say(format!("manifest {repo} {} {tag}", p.digest))?;
                mine.push((
                    tag,
                    json!({"mediaType": OCI_MANIFEST, "digest": p.digest, "size": p.size}),
                ));
            }
            // A referrer of one of this run's images.
            6 if !mine.is_empty() => {
                let (_, subject) = &mine[rng.below(mine.len() as u64) as usize];
                let sig = leased(format!("sig {seed} {i}").as_bytes(), false)?;
                let body = json!({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "artifactType": "application/vnd.cncf.notary.signature",
                    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
                    "layers": [{"mediaType": "application/jose+json", "digest": sig.digest, "size": sig.size}],
                    "subject": subject
                });
                let p = tagged(body, &tag)?;
                say(format!("blob {}", sig.digest))?;
                say(format!("manifest {repo} {} {tag}", p.digest))?;
            }
            // Delete one of this run's images.
            7 if mine.len() > 2 => {
                let (t, desc) = mine.remove(rng.below(mine.len() as u64) as usize);
                let d = ocidb::Digest::parse(desc["digest"].as_str().unwrap_or_default())?;
                say(format!("deleting {repo} {d} {t}"))?;
                store.delete_manifest(&repo, &d)?;
                say(format!("deleted {repo} {d} {t}"))?;
            }
            // Garbage that gc may take at any time: not logged as required.
            // (With large blobs, some garbage is large too: the gc sweeps
            // then remove objects from the backend.)
            8 => {
                let mut garbage = format!("garbage {seed} {i} {}", rng.next_u64()).into_bytes();
                if large_mib.is_some() && rng.below(2) == 0 {
                    garbage = ocidb_testkit::deterministic_bytes(&garbage, 200_000);
                }
                store.put_bytes(&garbage, &PutOptions::default())?;
            }
            _ => {
                store.gc(&GcPolicy::default().grace(Duration::ZERO))?;
                say("gc".into())?;
            }
        }
    }
    Ok(())
}
