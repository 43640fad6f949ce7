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
