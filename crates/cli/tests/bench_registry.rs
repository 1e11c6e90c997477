//! `ocidb bench registry` end to end at small sizes: it starts `ocidb
//! serve` and, where installed, Debian's docker-registry, drives both, and
//! prints every row with a figure for each. Figures are not asserted (the
//! machine is shared); what is asserted is that every row was measured and
//! that the referrers rows went the way the report says: the API on ocidb
//! (no fallback tag), the fallback tag on docker-registry.

mod common;

use std::process::Command;

fn docker_registry() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("docker-registry"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !common::in_ci(),
            "docker-registry is not installed, and CI=true requires it (.ci/run installs it)"
        );
        common::skip("the peer column only: docker-registry is not installed (apt-get install docker-registry)");
    }
    found
}

#[test]
fn the_registry_rows_are_measured_side_by_side() {
    let peer = docker_registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("registry.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocidb"));
    cmd.args([
        "bench",
        "registry",
        "--quick",
        "--blob-mib",
        "2",
        "--entries",
        "50",
    ])
    .arg("--dir")
    .arg(dir.path())
    .arg("--json")
    .arg(&json);
    match &peer {
        Some(p) => cmd.arg("--peer").arg(p),
        None => cmd.arg("--no-peer"),
    };
    let out = cmd.output().expect("run ocidb bench registry");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
    let columns = r["columns"].as_array().expect("columns").len();
    assert_eq!(columns, if peer.is_some() { 2 } else { 1 }, "{r}");
    let rows = r["rows"].as_array().expect("rows");
    for want in [
        "blob push",
        "blob pull, ",
        "manifest put, 8 clients",
        "manifest GET by tag, p99",
        "tag list, 50 tags",
        "catalog, 50 repositories",
        "attach a referrer",
        "list 20 referrers",
    ] {
        let row = rows
            .iter()
            .find(|row| row["name"].as_str().is_some_and(|n| n.starts_with(want)))
            .unwrap_or_else(|| panic!("no row {want:?}: {r}"));
        let values = row["values"].as_array().expect("values");
        assert_eq!(values.len(), columns);
        assert!(
            values.iter().all(|v| v.as_f64().is_some_and(|f| f > 0.0)),
            "row {want:?} has a figure for every registry: {row}"
        );
    }
    let checks: Vec<&str> = r["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(
        checks.contains(&"ocidb serve: the fallback tag does not exist (status 404)"),
        "{checks:?}"
    );
    if peer.is_some() {
        assert!(
            checks.contains(&"docker-registry 2.8.2: the fallback tag exists (status 200)"),
            "{checks:?}"
        );
    }
    assert!(stdout.contains("| row | ocidb serve |"), "{stdout}");
}
