//! Fuzz target: `cargo +nightly fuzz run fragment_assembler fuzz/corpus/fragment_assembler` (from the repository root).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvs_core::fuzzing::fragment_assembler(data));
