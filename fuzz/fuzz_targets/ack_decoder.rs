//! Fuzz target: `cargo +nightly fuzz run ack_decoder fuzz/corpus/ack_decoder` (from the repository root).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvs_core::fuzzing::ack_decoder(data));
