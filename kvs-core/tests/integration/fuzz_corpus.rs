//! Replays the committed fuzz seed corpus (`fuzz/corpus/<target>/`) through
//! the same entry points the fuzz targets call, on the stable toolchain.
#![cfg(feature = "fuzzing")]

use std::path::PathBuf;

use kvs_core::fuzzing;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        f(&data);
        // Every prefix of small seeds too: truncation at each byte.
        if data.len() <= 2048 {
            for cut in 0..data.len() {
                f(&data[..cut]);
            }
        }
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn ebml_walk_corpus() {
    replay("ebml_walk", fuzzing::ebml_walk);
}

#[test]
fn mkv_parser_corpus() {
    replay("mkv_parser", fuzzing::mkv_parser);
}

#[test]
fn fragment_assembler_corpus() {
    replay("fragment_assembler", fuzzing::fragment_assembler);
}

#[test]
fn annexb_corpus() {
    replay("annexb", fuzzing::annexb);
}

#[test]
fn ack_decoder_corpus() {
    replay("ack_decoder", fuzzing::ack_decoder);
}

#[test]
fn producer_corpus() {
    replay("producer", fuzzing::producer);
}

#[test]
fn parameter_sets_corpus() {
    replay("parameter_sets", fuzzing::parameter_sets);
}
