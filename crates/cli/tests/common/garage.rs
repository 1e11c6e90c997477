//! Garage for the object-storage tests: found (or the test skipped with a
//! one-line reason, except under `CI=true`, where `.ci/run` installs it).

use std::path::PathBuf;

/// The `garage` binary, or `None` (the caller returns: skipped).
pub fn exe() -> Option<PathBuf> {
    if let Some(p) = ocidb_bench::garage::binary() {
        return Some(p);
    }
    assert!(
        !super::in_ci(),
        "CI=true but garage is not installed (.ci/run installs it: cargo install garage --version 2.5.0 --locked)"
    );
    super::skip("garage is not installed (cargo install garage --version 2.5.0 --locked)");
    None
}
