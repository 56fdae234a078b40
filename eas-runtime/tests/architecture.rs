//! The shape of eas-runtime, kept by a test: its top-level modules import each other without
//! a cycle (the order reads top-down: platform -> http -> control -> admission -> service -> queue, replica
//! -> leaves), and only the HTTP edge (`src/http/`) names axum, hyper or an HTTP status (and
//! the stress load generator, `src/stress/`, an HTTP client).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`lib` for lib.rs).
fn top(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// The code of a file without its unit tests and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn files() -> (PathBuf, Vec<(PathBuf, String)>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&src, &mut paths);
    let files = paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read");
            (p, code(&text))
        })
        .collect();
    (src, files)
}

#[test]
fn top_level_modules_should_import_each_other_without_a_cycle() {
    let (src, files) = files();
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| top(&src, p)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in &files {
        let from = top(&src, path);
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) && name != from && from != "lib" {
                edges.entry(from.clone()).or_default().insert(name);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in &modules {
        if let Some(cycle) = visit(module, &edges, &mut Vec::new(), &mut done) {
            panic!(
                "import cycle: {}\nall edges: {edges:#?}",
                cycle.join(" -> ")
            );
        }
    }
    // The test can fail: the edges it reads are the real ones.
    assert!(edges["http"].contains("admission"), "{edges:#?}");
}

#[test]
fn only_the_http_edge_should_know_http_servers_and_statuses() {
    let (src, files) = files();
    let mut offenders = Vec::new();
    for (path, code) in &files {
        // The stress load generator is an HTTP client by nature: it speaks HTTP to measure it.
        if matches!(top(&src, path).as_str(), "http" | "stress") {
            continue;
        }
        for word in ["axum", "hyper", "StatusCode", "status_code", "IntoResponse"] {
            if code.contains(word) {
                offenders.push(format!("{} names `{word}`", path.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}
