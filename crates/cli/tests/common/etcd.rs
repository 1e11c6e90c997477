//! etcd for the cluster tests (`ocidb_bench::etcd`): found on PATH, or
//! the test is skipped with a one-line reason, except under `CI=true`,
//! where `.ci/run` installs it.

use std::path::PathBuf;

pub use ocidb_bench::etcd::Etcd;

/// The `etcd` binary, or `None` (the caller returns: skipped).
pub fn exe() -> Option<PathBuf> {
    if let Some(p) = ocidb_bench::etcd::binary() {
        return Some(p);
    }
    assert!(
        !super::in_ci(),
        "CI=true but etcd is not installed (.ci/run installs it: apt-get install etcd-server)"
    );
    super::skip("etcd is not installed (apt-get install etcd-server)");
    None
}

/// A free port of 127.0.0.1.
pub fn free_port() -> u16 {
    ocidb_bench::ports::free_port().expect("a free port")
}
