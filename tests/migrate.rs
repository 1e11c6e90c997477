//! Format migration: a v1 store written by the v1 build (checked in under
//! tests/fixtures/v1-store) is upgraded by `ocidb migrate`, and reads back
//! exactly what the v1 build read from it.

mod common;

use std::path::Path;

use ocidb::Store;

/// Writes the v1 fixture. Run on the v1 build only (commit b0070e4):
/// `OCIDB_WRITE_V1_FIXTURE=tests/fixtures/v1-store cargo test --test migrate write_v1_fixture -- --ignored`.
#[test]
#[ignore = "writes the checked-in fixture; run by hand on the v1 build"]
fn write_v1_fixture() {
    let Ok(dir) = std::env::var("OCIDB_WRITE_V1_FIXTURE") else {
        return;
    };
    let dir = Path::new(&dir);
    let _ = std::fs::remove_dir_all(dir);
    let s = Store::create(dir.join("store")).expect("create");
    let upload = common::rich::populate(&s);
    let snap = common::rich::snapshot(&s, &upload);
    drop(s);
    std::fs::write(dir.join("upload-id"), &upload).expect("upload id");
    std::fs::write(dir.join("snapshot.txt"), snap).expect("snapshot");
}
