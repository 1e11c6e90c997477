//! A store holding one of everything the index records, and a text
//! snapshot of everything the public API reads back from it. The format
//! migration test compares a migrated v1 store's snapshot with the one the
//! v1 build wrote beside it (tests/fixtures/v1-store).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::Duration;

use ocidb::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocidb::{
    Algorithm, ManifestOptions, PutOptions, Reference, ReferrersQuery, Store, UploadOptions,
};
use serde_json::{json, Value};

use super::{desc, digest_of, Rng};

const REPOS: [&str; 3] = ["app/web", "app/db", "lib/base"];

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next() as u8).collect()
}

fn put(s: &Store, data: &[u8], mt: &str, repo: &str, alg: Algorithm) -> Value {
    // Content goes in by its expected digest, so that sha512 is used
    // where asked.
    let d = ocidb::Hasher::digest_of(alg, data);
    let p = s
        .put_bytes(data, &PutOptions::expect(d).repository(repo).media_type(mt))
        .expect("put blob");
    desc(mt, &p.digest, p.size)
}

/// Fills `s` with images, indexes, referrers with artifact types and
/// annotations, a foreign layer, sha512 blobs, file and inline blobs, tags,
/// a referrers fallback tag, a blob in two repositories, a deleted
/// manifest, a lease and an unfinished upload. Returns the upload's id.
pub fn populate(s: &Store) -> String {
    let mut rng = Rng(0x5EED_0F01_D5E5_7A7E);
    let mut images: Vec<(String, Value)> = Vec::new();
    for i in 0..60 {
        let repo = REPOS[i % REPOS.len()];
        let cfg = put(
            s,
            format!("{{\"config\":{i}}}").as_bytes(),
            "application/vnd.oci.image.config.v1+json",
            repo,
            Algorithm::Sha256,
        );
        let mut layers = Vec::new();
        for l in 0..(1 + i % 3) {
            // Every seventh layer is a file blob (over the inline threshold).
            let n = if (i + l) % 7 == 0 {
                70_000
            } else {
                200 + l * 31
            };
            layers.push(put(
                s,
                &bytes(&mut rng, n),
                "application/vnd.oci.image.layer.v1.tar+gzip",
                repo,
                Algorithm::Sha256,
            ));
        }
        if i % 10 == 3 {
            let mut foreign = desc(
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                &ocidb::Hasher::digest_of(Algorithm::Sha256, format!("foreign {i}").as_bytes()),
                12345,
            );
            foreign["urls"] = json!(["https://example.com/layer"]);
            layers.push(foreign);
        }
        let mut m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": cfg, "layers": layers,
        });
        if i % 4 == 0 {
            m["annotations"] = json!({"org.opencontainers.image.title": format!("image {i}")});
        }
        let tags: Vec<String> = if i % 2 == 0 {
            vec![format!("v{i}")]
        } else {
            Vec::new()
        };
        let put = s
            .put_manifest(
                repo,
                m.to_string().as_bytes(),
                &ManifestOptions::default().tags(tags),
            )
            .expect("manifest");
        images.push((repo.to_string(), desc(OCI_MANIFEST, &put.digest, put.size)));
    }
    // sha512 blobs and an image over them.
    let repo = "lib/base";
    let l512 = put(
        s,
        &bytes(&mut rng, 300),
        "application/octet-stream",
        repo,
        Algorithm::Sha512,
    );
    let big512 = put(
        s,
        &bytes(&mut rng, 90_000),
        "application/octet-stream",
        repo,
        Algorithm::Sha512,
    );
    let cfg = put(
        s,
        b"{\"sha512\":true}",
        "application/vnd.oci.image.config.v1+json",
        repo,
        Algorithm::Sha256,
    );
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [l512, big512]});
    let p = s
        .put_manifest(
            repo,
            m.to_string().as_bytes(),
            &ManifestOptions::default().tags(["sha512"]),
        )
        .expect("sha512 image");
    images.push((repo.to_string(), desc(OCI_MANIFEST, &p.digest, p.size)));
    // Indexes with platforms, per repository.
    for repo in REPOS {
        let children: Vec<Value> = images
            .iter()
            .filter(|(r, _)| r == repo)
            .take(4)
            .enumerate()
            .map(|(j, (_, d))| {
                let mut d = d.clone();
                let arch = ["amd64", "arm64", "s390x", "ppc64le"][j];
                d["platform"] = json!({"architecture": arch, "os": "linux"});
                d
            })
            .collect();
        let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children});
        s.put_manifest(
            repo,
            body.to_string().as_bytes(),
            &ManifestOptions::default().tags(["latest"]),
        )
        .expect("index");
    }
    // Referrers: signatures and SBOMs, some with annotations, some
    // subjects with many.
    // The empty config, pushed to every repository that has referrers.
    let mut empty = Value::Null;
    for repo in REPOS {
        empty = put(
            s,
            b"{}",
            "application/vnd.oci.empty.v1+json",
            repo,
            Algorithm::Sha256,
        );
    }
    for (n, (repo, subject)) in images.iter().enumerate().take(24) {
        for k in 0..(1 + n % 4) {
            let at = [
                "application/vnd.dev.cosign.simplesigning.v1+json",
                "application/spdx+json",
                "application/vnd.example.scan+json",
            ][k % 3];
            let payload = put(
                s,
                format!("payload {n} {k}").as_bytes(),
                at,
                repo,
                Algorithm::Sha256,
            );
            let mut r = json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
                "config": empty, "layers": [payload], "subject": subject,
            });
            if k % 2 == 1 {
                r["annotations"] = json!({"org.opencontainers.image.created": "2026-11-29T00:00:00Z", "k": k.to_string()});
            }
            s.put_manifest(repo, r.to_string().as_bytes(), &ManifestOptions::default())
                .expect("referrer");
        }
    }
    // A referrers fallback tag index (the tag schema), as a client without
    // the referrers API writes it.
    let (repo, subject) = &images[30];
    let sig = put(
        s,
        b"fallback sig",
        "application/vnd.example.sig",
        repo,
        Algorithm::Sha256,
    );
    let r = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": empty, "layers": [sig],
    });
    let rp = s
        .put_manifest(repo, r.to_string().as_bytes(), &ManifestOptions::default())
        .expect("untethered referrer");
    let mut entry = desc(OCI_MANIFEST, &rp.digest, rp.size);
    entry["artifactType"] = json!("application/vnd.example.sig");
    let fallback = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]});
    let sd = digest_of(subject);
    let tag = format!("sha256-{}", &sd.to_string()[7..]);
    s.put_manifest(
        repo,
        fallback.to_string().as_bytes(),
        &ManifestOptions::default().tags([tag]),
    )
    .expect("fallback index");
    // A blob in a second repository, and a deleted manifest.
    let (from, shared) = (&images[0].0, digest_of(&images[0].1));
    s.mount_blob("lib/base", &shared, Some(from))
        .expect("mount")
        .expect("mounted");
    let (repo, gone) = &images[5];
    s.delete_manifest(repo, &digest_of(gone)).expect("delete");
    // A lease holding a blob no manifest names.
    let lease = s
        .create_lease(Duration::from_secs(10 * 365 * 24 * 3600))
        .expect("lease");
    s.put_bytes(b"leased only", &PutOptions::default().lease(lease.id))
        .expect("leased blob");
    // An upload in progress.
    let up = s
        .begin_upload("app/web", &UploadOptions::default())
        .expect("upload");
    s.append_upload(&up.id, 0, &b"first part of an upload"[..])
        .expect("append");
    s.sync().expect("sync");
    up.id
}

/// Everything the public API reads back, as text: repositories, tags,
/// members with stat and content hash, edges both ways, referrers (whole
/// and filtered), leases and the upload.
pub fn snapshot(s: &Store, upload: &str) -> String {
    let mut out = String::new();
    let mut all = std::collections::BTreeSet::new();
    for repo in s.repositories().expect("repositories") {
        writeln!(out, "repo {repo}").ok();
        for (tag, d) in s.tag_map(&repo).expect("tags") {
            writeln!(out, "  tag {tag} {d}").ok();
        }
        for (d, manifest) in s.members(&repo).expect("members") {
            writeln!(out, "  member {d} manifest={manifest}").ok();
            all.insert(d);
            if !manifest {
                continue;
            }
            let page = s
                .referrers(&repo, &d, &ReferrersQuery::default())
                .expect("referrers");
            for r in &page.index.manifests {
                writeln!(
                    out,
                    "    referrer {}",
                    serde_json::to_string(r).expect("json")
                )
                .ok();
                let at = r.artifact_type.as_deref();
                let filtered = s
                    .referrers(&repo, &d, &ReferrersQuery::default().artifact_type(at))
                    .expect("filtered");
                writeln!(
                    out,
                    "      filtered by its type: {}",
                    filtered.index.manifests.len()
                )
                .ok();
            }
            let (_, body) = s
                .get_manifest(&repo, &Reference::Digest(d))
                .expect("manifest by digest");
            writeln!(out, "    body {} bytes", body.len()).ok();
        }
    }
    for d in &all {
        let info = s.stat(d).expect("stat");
        let data = s.read(d).expect("read");
        let again = ocidb::Hasher::digest_of(d.algorithm(), &data);
        writeln!(
            out,
            "blob {d} size={} mt={:?} manifest={} placement={:?} created={} rehash={}",
            info.size,
            info.media_type,
            info.manifest,
            info.placement,
            info.created_ms,
            again == *d
        )
        .ok();
        for e in s.successors(d).expect("successors") {
            writeln!(
                out,
                "  child {:?} {}",
                e.kind,
                serde_json::to_string(&e.descriptor).expect("json")
            )
            .ok();
        }
        for p in s.predecessors(d).expect("predecessors") {
            writeln!(out, "  parent {} {:?}", p.digest, p.kinds).ok();
        }
        let mut of = s.repositories_of(d).expect("repositories_of");
        of.sort();
        writeln!(out, "  in {of:?}").ok();
    }
    for l in s.leases().expect("leases") {
        writeln!(out, "lease {} expires {}", l.id, l.expires_ms).ok();
    }
    let st = s.upload_status(upload).expect("upload status");
    writeln!(out, "upload {} offset {}", st.id, st.offset).ok();
    out
}

/// What format 3 added to a store and the public API reads back: every
/// tag's history and each repository's and namespace's usage. Compared
/// for stores written in format 3 or later.
pub fn snapshot_since_v3(s: &Store) -> String {
    let mut out = String::new();
    let mut scopes = std::collections::BTreeSet::new();
    for repo in s.repositories().expect("repositories") {
        if let Some((ns, _)) = repo.rsplit_once('/') {
            scopes.insert(format!("{ns}/"));
        }
        for (tag, _) in s.tag_map(&repo).expect("tags") {
            let page = s
                .tag_history(&repo, &tag, &ocidb::store::HistoryQuery::default())
                .expect("history");
            for e in page.events {
                writeln!(
                    out,
                    "history {repo}:{tag} {}",
                    serde_json::to_string(&e).expect("json")
                )
                .ok();
            }
        }
        scopes.insert(repo);
    }
    for scope in scopes {
        let u = s.usage(&scope).expect("usage");
        writeln!(
            out,
            "usage {scope} repositories={} members={} logical={} unique={}",
            u.repositories, u.members, u.logical_bytes, u.unique_bytes
        )
        .ok();
    }
    out
}
