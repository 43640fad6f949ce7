//! Tidy checks written as tests (rust-analyzer's habit): every Rust file opens with `//!`
//! docs, no test is skipped or expected to panic, and no source names an absolute path
//! from the machine it was written on.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "shared", "agent", "aggregator", "bench"] {
        let d = root.join(dir);
        if d.exists() {
            rust_files(&d, &mut files);
        }
    }
    assert!(files.len() > 20, "found only {} Rust files", files.len());
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("utf-8 source");
            (p, text)
        })
        .collect()
}

#[test]
fn every_file_opens_with_module_docs() {
    for (path, text) in sources() {
        assert!(
            text.trim_start().starts_with("//!"),
            "{} does not open with //! docs",
            path.display()
        );
    }
}

#[test]
fn no_ignored_or_should_panic_tests() {
    let banned = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    for (path, text) in sources() {
        for b in banned {
            assert!(!text.contains(b), "{} uses {b}]", path.display());
        }
    }
}

#[test]
fn no_absolute_paths_of_the_dev_machine() {
    let banned = [concat!("/wo", "rk/"), concat!("/ro", "ot/")];
    for (path, text) in sources() {
        for b in banned {
            assert!(!text.contains(b), "{} names {b}", path.display());
        }
    }
}

/// The crate-internal module graph of one crate's `src/`: top-level module → the top-level
/// modules its non-test code names with `crate::`. Test code (`tests.rs` files and what follows
/// `#[cfg(test)]`) and comments are left out: tests may reach across layers.
fn module_graph(
    src: &Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for path in files {
        let rel = path.strip_prefix(src).expect("under src");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_owned();
        if matches!(first.as_str(), "lib" | "main")
            || rel.file_name().is_some_and(|n| n == "tests.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("utf-8 source");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let deps = graph.entry(first.clone()).or_default();
        for line in code.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // `$crate::` in macros and `pitot_shared::…` paths are not this crate's.
                let before = &line[..i];
                if before.ends_with('$') || before.ends_with("_") || name.is_empty() {
                    continue;
                }
                if name != first {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
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
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_circles_and_the_aggregator_is_layered() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in ["src", "agent/src", "aggregator/src", "shared/src"] {
        let graph = module_graph(&root.join(krate));
        assert!(graph.len() > 3, "{krate}: found only {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{krate}: import circle {}", cycle.join(" → "));
        }
    }
    let graph = module_graph(&root.join("aggregator/src"));
    // The bottom: the model imports nothing of the crate.
    assert_eq!(
        graph["model"],
        Default::default(),
        "model imports {:?}",
        graph["model"]
    );
    // `glue` (shared/daemon/glue.rs, compiled into both daemons) names nothing of either.
    // The store knows keys and bytes (the model) and the clock (glue), no engine, no API.
    let allowed: std::collections::BTreeSet<String> =
        ["model".to_owned(), "glue".to_owned()].into();
    assert!(
        graph["store"].is_subset(&allowed),
        "the store imports {:?}; it may import only the model and the glue",
        graph["store"]
    );
    // The engines sit above the store and below the API.
    for engine in [
        "slo",
        "drift",
        "reports",
        "merge",
        "timeline",
        "models",
        "audit",
        "access",
        "export",
        "exposition",
        "alerts",
    ] {
        for above in ["api", "server", "config"] {
            assert!(
                !graph[engine].contains(above),
                "{engine} imports {above}, a layer above it"
            );
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default();
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

/// The rollout-controller and CI examples ask the gate what the API answers: the endpoint, the
/// decision field and its three values, the CLI with --wait.
#[test]
fn the_gate_examples_use_the_api_as_it_is() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/gate");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("example");
    let argo = read("argo-rollouts-analysis.yaml");
    for want in [
        "/api/v1/gate/",
        "{$.decision}",
        "result == \"pass\"",
        "result == \"fail\"",
        "Bearer",
    ] {
        assert!(argo.contains(want), "argo: {want}");
    }
    let flagger = read("flagger-canary.yaml");
    assert!(flagger.contains("type: rollout") && flagger.contains("/api/v1/gate/llama3-canary"));
    for ci in ["github-actions.yaml", "gitlab-ci.yml"] {
        assert!(read(ci).contains("pitot gate llama3-canary --url"), "{ci}");
        assert!(read(ci).contains("--wait 20m"), "{ci}");
    }
}
