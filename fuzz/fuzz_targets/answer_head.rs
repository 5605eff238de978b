//! cargo-fuzz target; the decoding and the checks live in `syncgate_fuzz::answer_head` (shared with
//! `tests/fuzz_regressions.rs`, which replays saved inputs on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| syncgate_fuzz::answer_head(data));
