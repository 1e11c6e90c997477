//! The command line's logger: the library logs through the `log` facade,
//! and this prints what passes the level to stderr. `OCIDB_LOG` sets the
//! level (error, warn, info, debug, trace); the default is warn, and info
//! for `ocidb serve` (its access log).

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) {
            let level = match r.level() {
                Level::Error => "error",
                Level::Warn => "warning",
                Level::Info => "info",
                Level::Debug => "debug",
                Level::Trace => "trace",
            };
            eprintln!("{level}: {}", r.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Installs the logger with `default` unless `OCIDB_LOG` says otherwise.
pub fn install(default: LevelFilter) {
    let level = std::env::var("OCIDB_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
