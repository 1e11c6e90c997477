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

/// The layers, lowest first: a module may use its own layer and those
/// below it, never one above. (The command line, the registry front and the
/// harness are crates of their own, above all of these.)
const LAYERS: &[&[&str]] = &[
    &["text", "clock"],
    &["digest"],
    &["error"],
    &["oci"],
    &["sync_points", "faults", "schema", "blob", "log"],
    &["engine"],
    &["index"],
    &["store"],
    &["gc", "maint", "layout"],
];

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

type Graph = BTreeMap<String, BTreeSet<String>>;

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
            out.insert(parts.join("::"), p);
        }
    }
    out
}

/// The longest known module that `path` (a `::`-separated path from the
/// crate root) lies in.
fn resolve(path: &[String], known: &BTreeMap<String, PathBuf>) -> Option<String> {
    let parts = path;
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

/// The import graph of the library's modules, and every path that goes
/// through the crate root's re-exports (`crate::Error` rather than
/// `crate::error::Error`), which would hide a dependency from the graph.
fn graph_and_root_paths() -> (Graph, Vec<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    let tops: BTreeSet<&str> = known
        .keys()
        .filter_map(|m| m.split("::").next())
        .filter(|t| !t.is_empty())
        .collect();
    let mut via_root = Vec::new();
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
        let me = m.clone();
        let deps = g.entry(me.clone()).or_default();
        for d in dependencies(m, &text) {
            if !m.is_empty() && d.first().is_some_and(|f| !tops.contains(f.as_str())) {
                via_root.push(format!("{m}: crate::{}", d.join("::")));
            }
            if let Some(target) = resolve(&d, &known)
                && target != me
            {
                deps.insert(target);
            }
        }
    }
    (g, via_root)
}

fn graph() -> Graph {
    graph_and_root_paths().0
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
    // Each folder uses only its own layer and those below it.
    let mut upward = Vec::new();
    for (top, deps) in &folders {
        if top.is_empty() {
            continue; // lib.rs: the facade
        }
        let Some(mine) = layer_of(top) else {
            panic!("module `{top}` is in no layer: add it to LAYERS");
        };
        for d in deps.iter().filter(|d| !d.is_empty()) {
            let theirs = layer_of(d).unwrap_or(usize::MAX);
            if theirs > mine {
                upward.push(format!("{top} (layer {mine}) uses {d} (layer {theirs})"));
            }
        }
    }
    assert!(upward.is_empty(), "imports from a layer above: {upward:#?}");
}

/// Lower modules name module paths: an import through the crate root's
/// re-exports hides which module it depends on.
#[test]
fn no_module_imports_through_the_crate_root() {
    let (_, via_root) = graph_and_root_paths();
    assert!(
        via_root.is_empty(),
        "imports through the crate root: {via_root:#?}"
    );
}

/// The checker sees a root path and an upward import when there is one.
#[test]
fn the_checker_sees_root_paths() {
    let deps = dependencies(
        "store::put",
        "use crate::Error;\nlet x = crate::index::blobs::f();\n",
    );
    assert!(deps.contains(&vec!["Error".to_string()]), "{deps:?}");
    assert!(
        deps.iter().any(|d| d.first().is_some_and(|f| f == "index")),
        "{deps:?}"
    );
    assert!(layer_of("index") < layer_of("store"));
    assert!(layer_of("cli").is_none());
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

/// Every source path the documents name (`src/…`, `crates/…`, `tests/…`,
/// `tools/…`, `benches/…`) exists: a document that names a file is a
/// reference, and a moved file must not leave it wrong.
#[test]
fn every_path_the_documents_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for e in std::fs::read_dir(root.join("docs")).expect("docs") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(p);
        }
    }
    let mut missing = Vec::new();
    let mut seen = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("read doc");
        for word in text.split(|c: char| c.is_whitespace() || "`()[]<>\"',;|*".contains(c)) {
            let word = word.trim_end_matches(['.', ':']);
            let named = [
                "src/",
                "crates/",
                "tests/",
                "tools/",
                "benches/",
                "examples/",
            ]
            .iter()
            .any(|p| word.starts_with(p));
            // Paths with placeholders (`src/<module>.rs`) or globs are not
            // names of files.
            if !named || word.contains(['{', '…', '$']) || word.ends_with('/') && word.len() < 5 {
                continue;
            }
            seen += 1;
            if !root.join(word).exists() {
                missing.push(format!(
                    "{}: {word}",
                    doc.strip_prefix(root).unwrap_or(doc).display()
                ));
            }
        }
    }
    assert!(seen > 20, "found only {seen} paths in the documents");
    assert!(
        missing.is_empty(),
        "documents name paths that do not exist: {missing:#?}"
    );
}

/// The README's library example is the code of `examples/ten_lines.rs`,
/// which `cargo test` compiles.
#[test]
fn the_readme_library_example_is_code_that_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let shown = readme
        .split("```rust\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a rust block in the README");
    let example = std::fs::read_to_string(root.join("examples/ten_lines.rs")).expect("example");
    let between = example
        .split("// README begin\n")
        .nth(1)
        .and_then(|b| b.split("    // README end").next())
        .expect("markers in the example");
    let compiled: String = between
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        shown, compiled,
        "README.md and examples/ten_lines.rs differ"
    );
}
