//! oci-archive (tar) import of arbitrary bytes: never panics, never writes
//! outside the store, and a rejected archive changes nothing the store shows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocidb::{ImportOptions, Store};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("in.tar");
    std::fs::write(&tar, data).expect("tar");
    let store = Store::create(dir.path().join("store")).expect("store");
    let opts = ImportOptions::default().repository("fuzz/tar");
    if let Err(e) = store.import_layout(&tar, &opts) {
        assert!(!e.to_string().is_empty());
        let st = store.stats().expect("stats");
        assert!(store.repositories().expect("repos").is_empty(), "{e}");
        assert_eq!((st.manifests, st.blobs, st.tags), (0, 0, 0), "{e}");
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 2, "nothing beside the store and the input: {names:?}");
});
