//! The library's module graph and file sizes, read from `src/` as text (issue "One house for three
//! artifacts"): its top-level modules form layers, lowest first, and an import only goes to the
//! same layer or a lower one, with no circle anywhere; internal code names what it imports by
//! the module that owns it, never through the crate root's re-exports; and no library file
//! grows past about 700 lines of code. A change that breaks one of these fails here, naming the
//! file and the import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. Each top-level module of `src/` stands in exactly one.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "values, ids, errors and settings",
        &[
            "redact",
            "url",
            "channel_id",
            "topic",
            "error",
            "backoff",
            "lag",
            "health",
            "tls",
            "proxy",
            "gateway",
            "config",
            "threads",
            "models",
        ],
    ),
    (
        "protocol and pure policies",
        &["message", "plan", "snapshot_gate", "event"],
    ),
    (
        "REST, auth and network",
        &["http", "trust", "tunnel", "network", "pool", "auth", "api"],
    ),
    (
        "channel, dispatch and resync",
        &["listener", "dispatch", "channel", "resync"],
    ),
    ("the face", &["client", "cli", "fuzzing", "emulator"]),
];

/// Most lines of code (not blank, not a comment, before the file's `mod tests`) in one file.
const MAX_FILE_LINES: usize = 700;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/` but the command-line tool's, with its top-level module.
fn library_files() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(src()).unwrap();
            let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
            let module = first.trim_end_matches(".rs").to_owned();
            (module != "bin" && module != "lib").then_some((module, path))
        })
        .collect()
}

/// The text of `source` without its comments (line comments and `/* */` blocks) and without the
/// contents of string literals, so that neither can look like an import.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &source[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            i += end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|&c| c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = rest[body..]
                .find(&close)
                .map_or(rest.len(), |e| body + e + close.len());
            out.push_str("\"\"");
            i += end;
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if rest.starts_with("'\"'") {
            i += 3;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The first names after `crate::` in `code`: `crate::a::b` gives `a`, `crate::{a, b::c}` gives
/// `a` and `b`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let preceded = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded {
            continue; // `$crate::` or a longer identifier ending in "crate"
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(e, _)| e);
            let mut level = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain(std::iter::once(',')) {
                match c {
                    '{' => level += 1,
                    '}' => level -= 1,
                    ',' if level == 0 => {
                        let first = item.trim().split("::").next().unwrap_or("").trim();
                        if !first.is_empty() {
                            names.push(first.to_owned());
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names
}

fn layer_of() -> BTreeMap<&'static str, usize> {
    let mut layers = BTreeMap::new();
    for (n, (_, modules)) in LAYERS.iter().enumerate() {
        for m in modules.iter() {
            assert!(layers.insert(*m, n).is_none(), "{m} stands in two layers");
        }
    }
    layers
}

/// Module → the modules it imports from, with the file of one such import.
fn imports() -> (BTreeMap<String, BTreeMap<String, PathBuf>>, Vec<String>) {
    let modules: BTreeSet<String> = library_files().into_iter().map(|(m, _)| m).collect();
    let mut edges: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    let mut through_root = Vec::new();
    for (module, path) in library_files() {
        let code = code_only(&std::fs::read_to_string(&path).unwrap());
        for name in crate_paths(&code) {
            if modules.contains(&name) {
                if name != module {
                    edges
                        .entry(module.clone())
                        .or_default()
                        .entry(name)
                        .or_insert_with(|| path.clone());
                }
            } else {
                through_root.push(format!("{}: crate::{name}", path.display()));
            }
        }
        edges.entry(module).or_default();
    }
    (edges, through_root)
}

#[test]
fn every_module_stands_in_a_layer_and_imports_only_from_its_own_layer_or_lower() {
    let layers = layer_of();
    let (edges, _) = imports();
    let mut wrong = Vec::new();
    for (module, targets) in &edges {
        let Some(&mine) = layers.get(module.as_str()) else {
            wrong.push(format!("src/{module}: in no layer of LAYERS (place it)"));
            continue;
        };
        for (target, file) in targets {
            let theirs = layers.get(target.as_str()).copied().unwrap_or(usize::MAX);
            if theirs > mine {
                wrong.push(format!(
                    "{}: `{module}` ({}) imports `{target}` ({})",
                    file.display(),
                    LAYERS[mine].0,
                    LAYERS.get(theirs).map_or("no layer", |l| l.0),
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports upwards:\n{}", wrong.join("\n"));
    for (_, modules) in LAYERS {
        for m in modules.iter() {
            assert!(
                edges.contains_key(*m),
                "LAYERS names `{m}`, which is no module of src/"
            );
        }
    }
}

#[test]
fn the_modules_form_no_circle() {
    let (edges, _) = imports();
    // Depth-first search; a module met again while still on the path closes a circle.
    fn visit<'a>(
        m: &'a str,
        edges: &'a BTreeMap<String, BTreeMap<String, PathBuf>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| *p == m) {
            let mut circle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            circle.push(m.to_owned());
            return Some(circle);
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for next in edges.get(m).into_iter().flat_map(|t| t.keys()) {
            if let Some(circle) = visit(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        if let Some(circle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn internal_code_imports_from_the_owning_module_not_the_crate_root() {
    let (_, through_root) = imports();
    assert!(
        through_root.is_empty(),
        "names taken through the crate root's re-exports (name the owning module):\n{}",
        through_root.join("\n")
    );
    // Nor does a module pass another module's name on.
    let mut relays = Vec::new();
    for (_, path) in library_files() {
        let code = code_only(&std::fs::read_to_string(&path).unwrap());
        for line in code.lines() {
            let line = line.trim();
            if (line.starts_with("pub use crate::") || line.starts_with("pub(crate) use crate::"))
                && !line.contains("crate::fuzzing")
            {
                relays.push(format!("{}: {line}", path.display()));
            }
        }
    }
    assert!(
        relays.is_empty(),
        "re-exports of another module's names:\n{}",
        relays.join("\n")
    );
}

#[test]
fn no_library_file_is_over_700_lines_of_code() {
    let mut over = Vec::new();
    for (_, path) in library_files() {
        if path.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut code = 0;
        for (i, line) in lines.iter().enumerate() {
            if line.trim_end() == "#[cfg(test)]"
                && lines.get(i + 1).is_some_and(|l| l.starts_with("mod "))
            {
                break;
            }
            let t = line.trim();
            if !t.is_empty() && !t.starts_with("//") {
                code += 1;
            }
        }
        if code > MAX_FILE_LINES {
            over.push(format!("{}: {code} lines of code", path.display()));
        }
    }
    assert!(
        over.is_empty(),
        "split by concept (at most {MAX_FILE_LINES} lines of code a file):\n{}",
        over.join("\n")
    );
}

/// The reader itself: comments and strings never count as imports, groups are read whole.
#[test]
fn the_reader_finds_imports_in_code_only() {
    let code = code_only(
        "use crate::a::B; // crate::c\n/* crate::d */ let s = \"crate::e\";\nuse crate::{f, g::{H, I}};\nlet u = \"http://x\"; crate::j::k();",
    );
    assert_eq!(crate_paths(&code), ["a", "f", "g", "j"]);
}
