//! The crate's modules depend on each other in one direction only: front ends -> app ->
//! parts -> sandbox -> container layer -> config. Read from the `crate::` paths of every
//! source file, so a new cycle or an upward import fails here before review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom. A module may use modules of its own layer (without cycles) and of layers
/// below it, never above.
const LAYERS: &[(&str, &[&str])] = &[
    // `cli` is the binary's (src/main.rs), which reaches the library as `codebox::`.
    (
        "front ends",
        &["cli", "discord", "service", "render", "terminal"],
    ),
    ("application", &["app"]),
    (
        "parts",
        &[
            "doctor",
            "conversations",
            "llm",
            "packages",
            "executor_api",
            "run_result",
            "store",
            "staging",
            "data_dir",
        ],
    ),
    ("runs", &["sandbox"]),
    ("container layer", &["container"]),
    ("base", &["config", "filetypes", "no_room"]),
];

/// Modules that must import nothing of the crate.
const LEAVES: &[&str] = &["config", "container"];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The `crate::NAME` paths in Rust source, comments left out.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
            rest = after;
        }
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module -> the other top-level modules it names, from a `src` tree.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap();
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        let uses = graph.entry(module.clone()).or_default();
        for name in crate_paths(&source) {
            if name != module {
                uses.insert(name);
            }
        }
    }
    graph
}

/// A cycle as a path `a -> b -> ... -> a`, if the graph has one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

/// Every way the graph breaks the rules, one sentence each.
fn violations(graph: &Graph) -> Vec<String> {
    let rank = |module: &str| LAYERS.iter().position(|(_, mods)| mods.contains(&module));
    let mut found = Vec::new();
    for (module, uses) in graph {
        let Some(from) = rank(module) else {
            found.push(format!("`{module}` is in no layer: add it to LAYERS"));
            continue;
        };
        if LEAVES.contains(&module.as_str()) && !uses.is_empty() {
            found.push(format!(
                "`{module}` must import nothing of the crate, uses {uses:?}"
            ));
        }
        for used in uses {
            match rank(used) {
                Some(to) if to < from => found.push(format!(
                    "`{module}` ({}) uses `{used}` ({}), a layer above it",
                    LAYERS[from].0, LAYERS[to].0
                )),
                _ => {}
            }
        }
    }
    if let Some(cycle) = find_cycle(graph) {
        found.push(format!("cycle: {}", cycle.join(" -> ")));
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn dependencies_point_one_way() {
    let graph = module_graph(&src());
    assert!(graph.contains_key("sandbox") && graph.contains_key("container"));
    let found = violations(&graph);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn a_planted_cycle_or_upward_import_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "sandbox/mod.rs",
        "use crate::container::engine::Containers;\n",
    );
    write(
        "container/mod.rs",
        "// crate::sandbox in a comment is not a use\n",
    );
    write("config/mod.rs", "");
    assert!(violations(&module_graph(dir.path())).is_empty());

    // The container layer reaching back up into the sandbox: a cycle and an upward import.
    write(
        "container/guard.rs",
        "fn f() { crate::sandbox::spec::container_name(\"x\"); }\n",
    );
    let found = violations(&module_graph(dir.path()));
    assert!(found.iter().any(|f| f.starts_with("cycle: ")), "{found:?}");
    assert!(
        found.iter().any(|f| f.contains("a layer above it")),
        "{found:?}"
    );

    // A cycle inside one layer.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("llm.rs"), "use crate::store::X;\n").unwrap();
    std::fs::write(dir.path().join("store.rs"), "use crate::llm::Y;\n").unwrap();
    let found = violations(&module_graph(dir.path()));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("cycle: "), "{found:?}");

    // A module nobody placed.
    std::fs::write(dir.path().join("llm.rs"), "").unwrap();
    std::fs::write(dir.path().join("billing.rs"), "").unwrap();
    let found = violations(&module_graph(dir.path()));
    assert!(
        found.iter().any(|f| f.contains("`billing` is in no layer")),
        "{found:?}"
    );
}
