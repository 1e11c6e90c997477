//! Progress bars on stderr, only when stderr is a terminal.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};

fn enabled() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar with a known total, or a hidden one when stderr is not a terminal.
pub fn bar(message: &str) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{msg:20} [{bar:40}] {pos}/{len} ({eta})") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(message.to_string());
    pb
}

/// A spinner for work of unknown length.
pub fn spinner(message: &str) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_message(message.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

pub fn set(pb: &ProgressBar, done: u64, total: u64) {
    if pb.length() != Some(total) {
        pb.set_length(total);
    }
    pb.set_position(done);
}

pub fn finish(pb: ProgressBar) {
    pb.finish_and_clear();
}
