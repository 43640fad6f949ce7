//! The demo, run whole, does what the README says, and the README's sample of its output has
//! the shape of the real thing: the same sections, tables and columns, in the same order, so
//! the sample cannot rot when the output changes.

mod common;

use std::process::Command;

use common::bin;

/// The README's sample: the code block after the `<!-- demo-output -->` marker.
fn readme_sample() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let after = readme
        .split_once("<!-- demo-output -->")
        .expect("README.md has a <!-- demo-output --> marker before the demo's sample")
        .1;
    let block = after
        .split_once("```\n")
        .expect("a code block after the marker")
        .1;
    block
        .split_once("\n```")
        .expect("the code block ends")
        .0
        .to_owned()
}

/// The shape of demo output: section titles, each table's columns, and the summary lines'
/// first words, in order. Values, row counts and times are not shape.
fn shape(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let next = lines.get(i + 1).copied().unwrap_or("");
        if !next.is_empty() && next.chars().all(|c| c == '-' || c == ' ') {
            let columns: Vec<&str> = line
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            out.push(format!("table: {}", columns.join(" | ")));
        } else if line.ends_with(':') && !line.starts_with(' ') {
            out.push(format!("section: {line}"));
        } else if let Some(first) = ["Fleet:", "Sent ", ">>> SLO", "drift ("]
            .iter()
            .find(|p| line.starts_with(**p))
        {
            out.push(format!("line: {first}"));
        }
    }
    out
}

#[test]
fn the_demo_does_what_the_readme_shows() {
    let http = format!("127.0.0.1:{}", common::free_tcp_port());
    let out = Command::new(bin("pitot"))
        .args([
            "demo",
            "--duration",
            "24s",
            "--every",
            "4s",
            "--http",
            &http,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Exact counts, the scripted slowdown paging, the scripted drift found on its host.
    assert!(text.contains("(exact)"), "{text}");
    assert!(
        text.contains(">>> SLO") && text.contains("-> PAGE"),
        "{text}"
    );
    let drifted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("DRIFT") && l.contains(" vs "))
        .collect();
    assert!(
        drifted.iter().any(|l| l.contains("gpu-host-3 vs rest")),
        "{text}"
    );
    assert!(
        drifted
            .iter()
            .all(|l| !l.contains("gpu-host-1") && !l.contains("gpu-host-2")),
        "only gpu-host-3 drifted: {text}"
    );

    // The README's sample starts at the final table; so does the comparison.
    let tail = &text[text.find("Final fleet latency").expect("a final table")..];
    let live_transition = text
        .lines()
        .find(|l| l.starts_with(">>> SLO"))
        .unwrap_or_default();
    let real: Vec<String> = shape(live_transition)
        .into_iter()
        .chain(shape(tail))
        .collect();
    let sample = readme_sample();
    assert_eq!(
        shape(&sample),
        real,
        "README.md's demo sample no longer has the shape of the demo's output; paste a fresh \
         run of `cargo run --release -- demo --duration 30s` (its first `>>> SLO` line, then \
         everything from `Final fleet latency`) after the <!-- demo-output --> marker.\n\
         --- real output ---\n{text}"
    );
}
