//! A strict parser of the Prometheus text exposition format (0.0.4), for
//! checking `/metrics`: what a scraper would reject, this rejects.

use std::collections::HashSet;

/// One sample line.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A metric family: its HELP, TYPE and samples.
#[derive(Debug)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub samples: Vec<Sample>,
}

/// The value of the first sample named `name`, if any.
pub fn value(families: &[Family], name: &str) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| &f.samples)
        .find(|s| s.name == name)
        .map(|s| s.value)
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The families of `text`, or the first rule it breaks (with its line).
pub fn parse(text: &str) -> Result<Vec<Family>, String> {
    let mut families: Vec<Family> = Vec::new();
    let mut seen = HashSet::new();
    let mut help: Option<String> = None;
    if !text.ends_with('\n') {
        return Err("the text does not end with a newline".into());
    }
    for (i, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !valid_name(name) || help.is_some() {
                return Err(at("a HELP not followed by its TYPE, or a bad name"));
            }
            help = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            if help.take().as_deref() != Some(name) {
                return Err(at(
                    "a TYPE whose HELP line just before names another metric",
                ));
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at("an unknown type"));
            }
            if !seen.insert(name.to_string()) {
                return Err(at("a family declared twice"));
            }
            families.push(Family {
                name: name.to_string(),
                kind: kind.to_string(),
                samples: Vec::new(),
            });
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at(
                "a comment that is neither HELP nor TYPE, or an empty line",
            ));
        } else {
            if help.is_some() {
                return Err(at("a sample between HELP and TYPE"));
            }
            let sample = parse_sample(line).map_err(|e| at(&e))?;
            let family = families
                .last_mut()
                .ok_or_else(|| at("a sample before any TYPE"))?;
            let base = match family.kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| sample.name.strip_suffix(s))
                    .unwrap_or(&sample.name),
                _ => &sample.name,
            };
            if base != family.name {
                return Err(at(&format!("a sample outside its family {}", family.name)));
            }
            family.samples.push(sample);
        }
    }
    for f in families.iter().filter(|f| f.kind == "histogram") {
        check_histogram(f)?;
    }
    Ok(families)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let (head, value) = line.rsplit_once(' ').ok_or("no value")?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| "a value that is not a number")?,
    };
    let (name, labels) = match head.split_once('{') {
        None => (head, Vec::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').ok_or("labels not closed")?;
            let mut labels = Vec::new();
            let mut rest = body;
            while !rest.is_empty() {
                let (k, after) = rest.split_once("=\"").ok_or("a label without =\"")?;
                if !valid_name(k) {
                    return Err(format!("a bad label name {k:?}"));
                }
                let mut val = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => val.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => val.push(c),
                            _ => return Err("a bad escape in a label value".into()),
                        },
                        Some((j, '"')) => break j,
                        Some((_, c)) => val.push(c),
                        None => return Err("a label value not closed".into()),
                    }
                };
                labels.push((k.to_string(), val));
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
            (name, labels)
        }
    };
    if !valid_name(name) {
        return Err(format!("a bad metric name {name:?}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Per label set: buckets that never decrease, end in `+Inf`, and a
/// `_count` equal to it.
fn check_histogram(f: &Family) -> Result<(), String> {
    use std::collections::BTreeMap;
    let key = |s: &Sample| {
        s.labels
            .iter()
            .filter(|(k, _)| k != "le")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for s in &f.samples {
        if s.name.ends_with("_bucket") {
            let le = s
                .labels
                .iter()
                .find(|(k, _)| k == "le")
                .ok_or(format!("{}: a bucket without le", f.name))?;
            let le: f64 = if le.1 == "+Inf" {
                f64::INFINITY
            } else {
                le.1.parse().map_err(|_| "a bad le")?
            };
            buckets.entry(key(s)).or_default().push((le, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert(key(s), s.value);
        }
    }
    for (k, b) in &buckets {
        if !b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
            return Err(format!(
                "{} {{{k}}}: buckets out of order or decreasing",
                f.name
            ));
        }
        match b.last() {
            Some((le, v)) if le.is_infinite() && counts.get(k) == Some(v) => {}
            _ => {
                return Err(format!(
                    "{} {{{k}}}: no +Inf bucket equal to _count",
                    f.name
                ))
            }
        }
    }
    Ok(())
}
