//! Fuzz target: `cargo +nightly fuzz run mkv_parser fuzz/corpus/mkv_parser` (from the repository root).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvs_core::fuzzing::mkv_parser(data));
