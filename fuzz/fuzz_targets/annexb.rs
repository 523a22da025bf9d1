//! Fuzz target: `cargo +nightly fuzz run annexb fuzz/corpus/annexb` (from the repository root).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvs_core::fuzzing::annexb(data));
