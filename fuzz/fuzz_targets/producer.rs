//! Fuzz target: `cargo +nightly fuzz run producer fuzz/corpus/producer` (from the repository root).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvs_core::fuzzing::producer(data));
