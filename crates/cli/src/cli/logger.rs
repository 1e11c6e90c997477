//! The command line's subscriber: the library emits `tracing` events, and
//! this writes those that pass the level to stderr. `OCIDB_LOG` sets the
//! level (error, warn, info, debug, trace); the default is warn, and info
//! for `ocidb serve`, whose access log is at info. `OCIDB_LOG_FORMAT=json`
//! writes one JSON object per line, for log shippers.

use tracing::Level;

/// The target of `ocidb serve`'s listening line, logged at any level.
pub const LISTENING: &str = "ocidb::listening";

/// Installs the subscriber with `default` unless `OCIDB_LOG` says
/// otherwise. A level or format that does not parse is reported once and
/// the default is used: logging must not stop the command.
pub fn install(default: Level) {
    let (level, bad_level) = match std::env::var("OCIDB_LOG") {
        Ok(v) => match v.parse::<Level>() {
            Ok(l) => (l, None),
            Err(_) => (default, Some(v)),
        },
        Err(_) => (default, None),
    };
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let format = std::env::var("OCIDB_LOG_FORMAT").unwrap_or_default();
    // The level, except that the server's listening line always passes:
    // scripts read the address from it, whatever OCIDB_LOG says.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target(LISTENING, Level::INFO);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(Level::TRACE)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match format.as_str() {
        "json" => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .try_init(),
        _ => builder.finish().with(filter).try_init(),
    };
    if installed.is_ok() {
        if let Some(v) = bad_level {
            tracing::warn!(
                "OCIDB_LOG={v:?} is not a level (error, warn, info, debug, trace); using {default}"
            );
        }
        if !matches!(format.as_str(), "" | "text" | "json") {
            tracing::warn!("OCIDB_LOG_FORMAT={format:?} is not text or json; using text");
        }
    }
}
