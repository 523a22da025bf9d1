//! Fuzz target: `cargo +nightly fuzz run parameter_sets fuzz/corpus/parameter_sets` (from the repository root).
//! Seeds: real camera and encoder SPS/PPS/VPS (the shared vectors' producers,
//! x264) and their quirky variants (a byte after the stop bit, a cut VUI, a
//! level too low).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvs_core::fuzzing::parameter_sets(data));
