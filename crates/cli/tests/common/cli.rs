//! Running the real `ocidb` binary on a store, and reading its outcome.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// `ocidb --store STORE`, ready for its subcommand (`$OCIDB_STORE` unset,
/// so the flag is what names the store).
pub fn command(store: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocidb"));
    cmd.arg("--store").arg(store).env_remove("OCIDB_STORE");
    cmd
}

/// Runs `ocidb --store STORE ARGS…` to the end.
pub fn ocidb(store: &Path, args: &[&str]) -> Output {
    command(store).args(args).output().expect("run ocidb")
}

/// Its stdout, after asserting that it succeeded.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ocidb failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Its one-line error, after asserting that it failed with exactly one.
pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "a single error line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    err
}
