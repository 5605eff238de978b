//! Replays the fuzzers' saved inputs on stable, in the default `cargo test` run.
//!
//! Every file under `fuzz/regressions/<target>/` (minimized crashes, kept after the fix) and
//! `fuzz/corpus/<target>/` (the small committed seed corpus) is fed to the same entry point the
//! cargo-fuzz target calls: `fuzz/src/lib.rs` is compiled into this test as a module, so decoding and
//! checks cannot drift apart. Running the fuzzers themselves is `fuzz/run.sh` (nightly features).

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// The input files for `target`, sorted, from both folders; a missing folder is just empty.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["regressions", "corpus"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        files.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file()),
        );
    }
    files.sort();
    files
}

/// Runs every input, reporting all that panic (not just the first) with their file names.
fn replay(target: &str, entry: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no inputs for {target} under fuzz/corpus or fuzz/regressions"
    );
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            std::panic::catch_unwind(|| entry(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target} panicked on: {failed:#?}");
}

#[test]
fn config_loader_never_panics_on_saved_inputs() {
    replay("config_yaml", harness::config_yaml);
}

#[test]
fn socket_message_parser_never_panics_on_saved_inputs() {
    replay("socket_message", harness::socket_message);
}

#[test]
fn templates_parse_and_render_saved_inputs_without_panicking() {
    replay("template", harness::template);
}

#[test]
fn event_matcher_plans_and_builds_saved_paths_without_panicking() {
    replay("rest_path", harness::rest_path);
}

#[test]
fn request_heads_are_read_or_handed_over_without_losing_bytes_on_saved_inputs() {
    replay("request_head", harness::request_head);
}

#[test]
fn fixed_fuzz_rule_configs_load() {
    // `rest_path` panics on every input if these stop loading; say so plainly instead.
    assert_eq!(harness::matchers().len(), 3);
}

#[test]
fn upstream_answer_lines_pass_on_whole_on_saved_inputs() {
    replay("answer_head", harness::answer_head);
}
