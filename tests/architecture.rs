//! The layering is checked, not described: no module of the library imports
//! one that imports it back, directly or through others, and the folders
//! depend on each other in one direction only.
//!
//! A dependency is a `use` of `crate::…`, `super::…` or `self::…`, or a
//! `crate::…` path written in code. A `pub use` in a `mod.rs` (or
//! `lib.rs`) only re-exports: it names what the folder offers and is not a
//! dependency of the folder's own code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's modules outside the command line and the harness.
const SKIP: &[&str] = &["cli", "bench", "main", "demo"];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The one pair that is one unit by design: the error type names digests
/// (`Error::BlobNotFound { digest }`), and a digest that does not parse is an
/// error. Both are values of the bottom layer; the checker sees them as
/// one node, `oci::digest`.
fn unit(m: String) -> String {
    if m == "error" {
        "oci::digest".to_string()
    } else {
        m
    }
}

fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).expect("under src").with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            if parts.first().is_some_and(|f| SKIP.contains(&f.as_str())) {
                continue;
            }
            out.insert(parts.join("::"), p);
        }
    }
    out
}

/// The longest known module that `path` (a `::`-separated path from the
/// crate root) lies in, following the root's module aliases.
fn resolve(path: &[String], known: &BTreeMap<String, PathBuf>) -> Option<String> {
    let aliases = [
        ("digest", "oci::digest"),
        ("hasher", "oci::hasher"),
        ("manifest", "oci::manifest"),
        ("names", "oci::names"),
    ];
    let mut parts: Vec<String> = path.to_vec();
    if let Some((_, to)) = aliases
        .iter()
        .find(|(a, _)| parts.first().is_some_and(|f| f == a))
    {
        let mut v: Vec<String> = to.split("::").map(String::from).collect();
        v.extend(parts.drain(1..));
        parts = v;
    }
    for n in (1..=parts.len()).rev() {
        let m = parts[..n].join("::");
        if known.contains_key(&m) {
            return Some(m);
        }
    }
    None
}

/// Paths (as segments from the crate root) that a file depends on.
fn dependencies(module: &str, text: &str) -> Vec<Vec<String>> {
    let own: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(String::from).collect()
    };
    let mut out = Vec::new();
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        if !current.is_empty() {
            current.push_str(t);
            if t.trim_end().ends_with(';') {
                statements.push(std::mem::take(&mut current));
            }
            continue;
        }
        let reexport = t.starts_with("pub use ") || t.starts_with("pub(crate) use ");
        if t.starts_with("use ") || reexport {
            // Only facades still say `pub use` here (see `graph`): a
            // re-export is the folder's offer, not a use.
            if reexport {
                continue;
            }
            if t.trim_end().ends_with(';') {
                statements.push(t.to_string());
            } else {
                current = t.to_string();
            }
            continue;
        }
        // `crate::a::b` and `super::a` written in code.
        for (marker, relative) in [("crate::", false), ("super::", true)] {
            let mut rest = t;
            while let Some(i) = rest.find(marker) {
                let tail = &rest[i + marker.len()..];
                let seg: Vec<String> = tail
                    .split("::")
                    .map(|s| {
                        s.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .take_while(|s| !s.is_empty())
                    .collect();
                if !seg.is_empty() {
                    if relative {
                        let mut base = own.clone();
                        base.pop();
                        base.extend(seg);
                        out.push(base);
                    } else {
                        out.push(seg);
                    }
                }
                rest = tail;
            }
        }
    }
    for st in statements {
        let body = st
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ")
            .trim_start_matches("use ")
            .trim_end_matches(';');
        let head: String = body.split('{').next().unwrap_or("").to_string();
        let mut seg: Vec<String> = head
            .split("::")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let Some(first) = seg.first().cloned() else {
            continue;
        };
        let mut base: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "super" => {
                let mut b = own.clone();
                b.pop();
                b
            }
            "self" => own.clone(),
            _ => continue, // std, external crates
        };
        seg.remove(0);
        while seg.first().is_some_and(|s| s == "super") {
            base.pop();
            seg.remove(0);
        }
        // `use x::{a, b::c}`: each braced item extends the head.
        let heads: Vec<Vec<String>> = if let Some(i) = body.find('{') {
            body[i + 1..]
                .trim_end_matches('}')
                .split(',')
                .map(|item| {
                    let mut v = base.clone();
                    v.extend(seg.iter().cloned());
                    v.extend(
                        item.split(" as ")
                            .next()
                            .unwrap_or("")
                            .split("::")
                            .map(|s| s.trim().trim_matches(|c| c == '{' || c == '}').to_string())
                            .filter(|s| !s.is_empty() && s != "self"),
                    );
                    v
                })
                .collect()
        } else {
            let mut v = base.clone();
            v.extend(
                seg.iter()
                    .map(|s| s.split(" as ").next().unwrap_or("").trim().to_string()),
            );
            vec![v]
        };
        out.extend(heads);
    }
    out
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    let mut g = Graph::new();
    for (m, path) in &known {
        let text = std::fs::read_to_string(path).expect("read module");
        // Facade files (mod.rs, lib.rs) re-export; other files do not.
        let facade = path
            .file_name()
            .is_some_and(|f| f == "mod.rs" || f == "lib.rs");
        let text = if facade {
            text
        } else {
            text.replace("pub use ", "use ")
                .replace("pub(crate) use ", "use ")
        };
        // Unit tests inside a file may reach anywhere.
        let text = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or("")
            .to_string();
        let me = unit(m.clone());
        let deps = g.entry(me.clone()).or_default();
        for d in dependencies(m, &text) {
            if let Some(target) = resolve(&d, &known).map(unit)
                && target != me
            {
                deps.insert(target);
            }
        }
    }
    g
}

fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> = g.keys().map(|k| (k.as_str(), Mark::New)).collect();
    fn visit<'a>(
        n: &'a str,
        g: &'a Graph,
        mark: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        mark.insert(n, Mark::Open);
        stack.push(n);
        for d in g.get(n).into_iter().flatten() {
            match mark.get(d.as_str()).copied().unwrap_or(Mark::Done) {
                Mark::Open => {
                    let i = stack.iter().position(|s| *s == d).unwrap_or(0);
                    let mut cyc: Vec<String> = stack[i..]
                        .iter()
                        .map(std::string::ToString::to_string)
                        .collect();
                    cyc.push(d.clone());
                    return Some(cyc);
                }
                Mark::New => {
                    if let Some(c) = visit(d, g, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(n, Mark::Done);
        None
    }
    let keys: Vec<&str> = g.keys().map(String::as_str).collect();
    for k in keys {
        if mark.get(k) == Some(&Mark::New)
            && let Some(c) = visit(k, g, &mut mark, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = graph();
    assert!(g.len() > 30, "found only {} modules", g.len());
    assert!(
        g.get("store::put")
            .is_some_and(|d| d.contains("index::blobs")),
        "the checker sees imports: {:?}",
        g.get("store::put")
    );
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

#[test]
fn folders_depend_on_each_other_in_one_direction() {
    let mut folders = Graph::new();
    for (m, deps) in graph() {
        let top = m.split("::").next().unwrap_or("").to_string();
        let entry = folders.entry(top.clone()).or_default();
        for d in deps {
            let dt = d.split("::").next().unwrap_or("").to_string();
            if dt != top {
                entry.insert(dt);
            }
        }
    }
    if let Some(c) = find_cycle(&folders) {
        panic!("folder cycle: {}", c.join(" -> "));
    }
    // The engine's lower layers never reach up to the facade.
    for low in ["oci", "schema", "blob", "engine", "index"] {
        let deps = folders.get(low).cloned().unwrap_or_default();
        for high in ["store", "gc", "maint", "layout", "sample", "server"] {
            assert!(!deps.contains(high), "{low} depends on {high}: {deps:?}");
        }
    }
}

/// The checker finds a cycle when there is one.
#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    g.get_mut("c").expect("c").clear();
    assert_eq!(find_cycle(&g), None);
}
