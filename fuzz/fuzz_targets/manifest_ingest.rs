//! Manifest ingest of arbitrary bytes under each known media type (and
//! none): never panics, a rejected manifest changes nothing, and an
//! accepted one's index entries decode back.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ocidb::{Algorithm, Hasher, ManifestOptions, Store};

const TYPES: [Option<&str>; 8] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/vnd.oci.artifact.manifest.v1+json"),
    Some("application/vnd.cncf.oras.artifact.manifest.v1+json"),
    Some("application/octet-stream"),
];

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(dir.path()).expect("store");
        Fixture { _dir: dir, store }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let s = &fixture().store;
    let declared = TYPES[sel as usize % TYPES.len()];
    let require_children = sel & 0x80 != 0;
    let digest = Hasher::digest_of(Algorithm::Sha256, body);
    let existed = s.exists(&digest).expect("exists");
    let repos_before = s.repositories().expect("repos");
    let opts = ManifestOptions::default().media_type(declared.map(str::to_string)).children(if require_children { ocidb::Children::InRepository } else { ocidb::Children::AllowMissing }).no_sync(true);
    match s.put_manifest("fuzz/repo", body, &opts) {
        Ok(put) => {
            assert_eq!(put.digest, digest);
            // Its body unpacks to exactly the bytes put (format 3 packs
            // inline bodies), and the index entries it wrote decode back
            // (the binary values): its edges, and the referrers of its
            // subject.
            let got = s.read(&digest).expect("stored manifest reads back");
            assert_eq!(got, body);
            let edges = s.successors(&digest).expect("stored edges decode");
            for e in &edges {
                if e.kind == ocidb::EdgeKind::Subject {
                    s.referrers("fuzz/repo", &e.descriptor.digest, &ocidb::ReferrersQuery::default())
                        .expect("stored referrers decode");
                }
                s.predecessors(&e.descriptor.digest).expect("reverse edges decode");
            }
            s.stat(&digest).expect("stored record decodes");
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert_eq!(s.exists(&digest).expect("exists"), existed, "{e}");
            assert_eq!(s.repositories().expect("repos"), repos_before, "{e}");
        }
    }
});
