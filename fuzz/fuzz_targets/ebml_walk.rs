//! Fuzz target: `cargo +nightly fuzz run ebml_walk fuzz/corpus/ebml_walk` (from the repository root).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvs_core::fuzzing::ebml_walk(data));
