//! OCI layout import with an arbitrary index.json (the blobs directory
//! holds one valid image): never panics, and a rejected import changes
//! nothing the store shows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocidb::{ImportOptions, Store};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let lay = dir.path().join("layout");
    std::fs::create_dir_all(lay.join("blobs/sha256")).expect("dirs");
    std::fs::write(lay.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("marker");
    // `{}` as a config, so that indexes naming it find a real blob.
    std::fs::write(
        lay.join("blobs/sha256/44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"),
        b"{}",
    )
    .expect("config");
    std::fs::write(lay.join("index.json"), data).expect("index");
    let store = Store::create(dir.path().join("store")).expect("store");
    let before = (store.repositories().expect("repos"), store.stats().expect("stats"));
    if let Err(e) = store.import_layout(&lay, &ImportOptions::default()) {
        assert!(!e.to_string().is_empty());
        let after = (store.repositories().expect("repos"), store.stats().expect("stats"));
        assert_eq!(before.0, after.0, "{e}");
        assert_eq!(
            (before.1.manifests, before.1.blobs, before.1.tags),
            (after.1.manifests, after.1.blobs, after.1.tags),
            "{e}"
        );
    }
});
