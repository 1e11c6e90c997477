//! The `ocidb` command line: an offline inspection tool for ocidb stores.

mod cli;
mod demo;

use clap::Parser as _;

fn main() {
    let cli = cli::args::Cli::parse();
    if let Err(e) = cli::run(cli) {
        // One line, naming the offending value (every Error variant does).
        let msg = e.to_string().replace('\n', " ");
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
