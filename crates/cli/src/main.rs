//! The `ocidb` command line: an offline inspection tool for ocidb stores.

mod cli;
mod demo;

#[allow(unsafe_code)]
fn main() {
    // Like other Unix tools, end quietly when the reader of stdout goes
    // away (`ocidb tree X | head -2`): Rust ignores SIGPIPE, which makes
    // every print after it a panic or an error. SAFETY: restoring a
    // signal's default disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let parsed = match cli::config::parse(std::env::args_os().collect()) {
        Ok(p) => p,
        Err(cli::config::Failed::Clap(e)) => e.exit(),
        Err(cli::config::Failed::Config(e)) => fail(&e),
    };
    let result = cli::run(parsed);
    // For memory tests: this process's own peak RSS since exec. (A parent's
    // wait4 cannot tell it: the kernel carries the spawning process's peak
    // over exec into the child's ru_maxrss.)
    if std::env::var_os("OCIDB_REPORT_PEAK_RSS").is_some() {
        eprintln!(
            "ocidb: peak RSS {:.0} KiB",
            ocidb_bench::measure::peak_rss_mb() * 1024.0
        );
    }
    if let Err(e) = result {
        fail(&e);
    }
}

/// One line, naming the offending value (every Error variant does).
fn fail(e: &ocidb::Error) -> ! {
    let msg = cli::render::escape(&e.to_string().replace('\n', " "));
    eprintln!("error: {msg}");
    std::process::exit(1);
}
