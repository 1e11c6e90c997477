//! `ocidb serve`'s options from four places, in this order of precedence:
//! a flag, its environment variable (`OCIDB_…`), the `--config` TOML file,
//! the default. The file's keys are the long flags with `_` for `-`.
//!
//! clap already ranks flags above environment variables above defaults;
//! the file slots in by appending, as flags, the keys whose value clap took
//! from a default, then parsing again. So a file value meets exactly the
//! checks a flag meets, and no option can be missing from the file.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory as _, FromArgMatches as _};

use ocidb::error::IoContext as _;
use ocidb::{Error, Result};

use super::args::Cli;

/// Keys whose values are paths: relative ones are taken from the config
/// file's directory, so a file moves with what it names.
const PATH_KEYS: [&str; 6] = [
    "store",
    "htpasswd",
    "access",
    "tls_cert",
    "tls_key",
    "retention_policy",
];

/// Keys a file may not hold: they say where the file is, or what to do
/// with the result.
const NOT_IN_FILE: [&str; 2] = ["config", "print_config"];

/// Keys a SIGHUP puts in force; a change to any other waits for a restart.
pub(super) const RELOADED: [&str; 5] = [
    "htpasswd",
    "access",
    "anonymous_read",
    "tls_cert",
    "tls_key",
];

/// Where an option's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment,
    File,
    Default,
    Unset,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Environment => "environment",
            Source::File => "config file",
            Source::Default => "default",
            Source::Unset => "unset",
        }
    }
}

/// The command line as parsed, with `serve`'s options completed from its
/// config file, and where each came from.
pub struct Resolved {
    pub cli: Cli,
    /// `serve`'s options (and `store`, `blobs`): key → (raw value, source).
    pub options: BTreeMap<String, (Option<String>, Source)>,
}

/// Why the command line did not parse: clap's own error (its `--help`
/// and `--version` among them), or the config file's.
#[derive(Debug)]
pub enum Failed {
    Clap(clap::Error),
    Config(Error),
}

impl From<clap::Error> for Failed {
    fn from(e: clap::Error) -> Failed {
        Failed::Clap(e)
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Failed {
        Failed::Config(e)
    }
}

impl Failed {
    /// As an engine error, for a reload's log line.
    pub fn into_error(self) -> Error {
        match self {
            Failed::Clap(e) => Error::InvalidArgument {
                value: "the command line and environment".into(),
                expected: e.to_string().lines().next().unwrap_or_default().to_string(),
            },
            Failed::Config(e) => e,
        }
    }
}

/// Parses `argv`; for `serve --config FILE`, fills in from the file every
/// option that neither a flag nor the environment set.
pub fn parse(argv: Vec<OsString>) -> std::result::Result<Resolved, Failed> {
    let cmd = Cli::command();
    let first = cmd.clone().try_get_matches_from(argv.clone())?;
    let Some(("serve", serve)) = first.subcommand() else {
        return Ok(Resolved {
            cli: Cli::from_arg_matches(&first)?,
            options: BTreeMap::new(),
        });
    };
    let mut file_keys = Vec::new();
    let mut argv = argv;
    if let Some(path) = serve.get_one::<PathBuf>("config") {
        let (extra, keys) = from_file(path, &first, serve)?;
        argv.extend(extra);
        file_keys = keys;
    }
    let matches = cmd.try_get_matches_from(argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let Some(("serve", serve)) = matches.subcommand() else {
        return Err(Error::Internal("`serve` vanished on the second parse".into()).into());
    };
    let mut options = BTreeMap::new();
    for (id, m) in keys(&matches, serve) {
        // A repeatable option's values, comma-joined as its variable takes them.
        let raw = m.get_raw(&id).map(|v| {
            v.map(|x| x.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",")
        });
        let source = if file_keys.contains(&id) {
            Source::File
        } else {
            match m.value_source(&id) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Environment,
                Some(ValueSource::DefaultValue) => Source::Default,
                _ => Source::Unset,
            }
        };
        options.insert(id, (raw, source));
    }
    Ok(Resolved { cli, options })
}

/// Every key a config file may hold, with the matches that carry it:
/// `serve`'s options and the global `store` and `blobs`.
fn keys<'m>(
    top: &'m clap::ArgMatches,
    serve: &'m clap::ArgMatches,
) -> Vec<(String, &'m clap::ArgMatches)> {
    let mut out = vec![("store".to_string(), top), ("blobs".to_string(), top)];
    if let Some(cmd) = Cli::command().find_subcommand("serve") {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if !NOT_IN_FILE.contains(&id) && !a.is_global_set() && id != "store" && id != "blobs" {
                out.push((id.to_string(), serve));
            }
        }
    }
    out.retain(|(id, _)| id != "help");
    out
}

/// The flags the file adds (for keys no flag or variable set), and those
/// keys.
fn from_file(
    path: &Path,
    top: &clap::ArgMatches,
    serve: &clap::ArgMatches,
) -> Result<(Vec<OsString>, Vec<String>)> {
    let text = std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| Error::InvalidArgument {
        value: path.display().to_string(),
        expected: format!(
            "a TOML file of `key = value` lines ({})",
            e.to_string().replace('\n', " ")
        ),
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let serve_cmd = Cli::command()
        .find_subcommand("serve")
        .cloned()
        .ok_or_else(|| Error::Internal("no `serve` command".into()))?;
    let known = keys(top, serve);
    let (mut argv, mut used) = (Vec::new(), Vec::new());
    for (key, value) in &table {
        let bad = |expected: String| Error::InvalidArgument {
            value: format!("{}: `{key}`", path.display()),
            expected,
        };
        let Some((_, m)) = known.iter().find(|(id, _)| id == key) else {
            let names: Vec<&str> = known.iter().map(|(id, _)| id.as_str()).collect();
            return Err(bad(format!("one of the keys {}", names.join(", "))));
        };
        // A flag or its variable outranks the file.
        if matches!(
            m.value_source(key),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = format!("--{}", key.replace('_', "-"));
        let action = serve_cmd
            .get_arguments()
            .find(|a| a.get_id() == key.as_str())
            .map(|a| a.get_action().clone());
        let is_switch = matches!(action, Some(ArgAction::SetTrue));
        // A repeatable option (`webhook`) takes an array, one flag each.
        if let (toml::Value::Array(items), Some(ArgAction::Append)) = (value, &action) {
            for item in items {
                let toml::Value::String(s) = item else {
                    return Err(bad("an array of strings".into()));
                };
                let mut pair = OsString::from(&flag);
                pair.push("=");
                pair.push(s);
                argv.push(pair);
            }
            used.push(key.clone());
            continue;
        }
        let text = match (value, is_switch) {
            (toml::Value::Boolean(on), true) => {
                if *on {
                    argv.push(OsString::from(flag));
                    used.push(key.clone());
                }
                continue;
            }
            (_, true) => return Err(bad("`true` or `false`".into())),
            (toml::Value::String(s), false) => s.clone(),
            (toml::Value::Integer(n), false) => n.to_string(),
            (toml::Value::Float(f), false) => f.to_string(),
            (_, false) => return Err(bad("a string or a number".into())),
        };
        let text = if PATH_KEYS.contains(&key.as_str()) && Path::new(&text).is_relative() {
            dir.join(&text).display().to_string()
        } else {
            text
        };
        let mut pair = OsString::from(flag);
        pair.push("=");
        pair.push(text);
        argv.push(pair);
        used.push(key.clone());
    }
    Ok((argv, used))
}

/// The options in force as a config file, each with where it came from.
pub(super) fn print(options: &BTreeMap<String, (Option<String>, Source)>) -> String {
    let mut out = String::from(
        "# ocidb serve: the options in force (flag > environment > config file > default)\n",
    );
    for (key, (value, source)) in options {
        let shown = match value {
            None => {
                out.push_str(&format!("# {key} is unset\n"));
                continue;
            }
            Some(v)
                if v == "true"
                    || v == "false"
                    || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) =>
            {
                v.clone()
            }
            // JSON string escapes are TOML basic-string escapes.
            Some(v) => serde_json::to_string(v).unwrap_or_default(),
        };
        out.push_str(&format!("{key} = {shown}  # {}\n", source.name()));
    }
    out
}

/// The keys whose values differ between two resolutions and that a reload
/// does not put in force.
pub(super) fn changed_needing_restart(
    before: &BTreeMap<String, (Option<String>, Source)>,
    after: &BTreeMap<String, (Option<String>, Source)>,
) -> Vec<String> {
    after
        .iter()
        .filter(|(k, (v, _))| {
            !RELOADED.contains(&k.as_str()) && before.get(*k).map(|(b, _)| b) != Some(v)
        })
        .map(|(k, _)| k.clone())
        .collect()
}
