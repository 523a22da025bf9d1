//! The parser against the real captures in `shared/vectors`: every number in
//! `facts.json` (produced by an independent EBML walk and ffprobe) must come out.

use std::path::PathBuf;

use bytes::Bytes;
use kvs_core::mkv::summary::Summary;
use kvs_core::mkv::{ParseError, ParserConfig};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    crate::support::vectors()
}

fn facts() -> Value {
    let p = vectors_dir().join("facts.json");
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    serde_json::from_str(&text).expect("facts.json is JSON")
}

fn mkv_files(facts: &Value) -> Vec<(String, Value)> {
    facts["files"]
        .as_object()
        .expect("files")
        .iter()
        .filter(|(k, _)| !k.ends_with('/'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn every_vector_gives_the_documented_numbers() {
    let facts = facts();
    let files = mkv_files(&facts);
    assert!(
        files.len() >= 15,
        "expected the 15 MKV vectors, found {}",
        files.len()
    );
    for (name, f) in files {
        let data = Bytes::from(std::fs::read(vectors_dir().join(&name)).expect("vector file"));
        assert_eq!(
            data.len() as u64,
            f["bytes"].as_u64().unwrap(),
            "{name}: size"
        );
        let s = Summary::of(data, ParserConfig::default());
        let e = &f["ebml"];
        assert_eq!(
            s.documents,
            e["ebml_headers"].as_u64().unwrap(),
            "{name}: EBML headers"
        );
        assert_eq!(
            s.segments,
            e["segments"].as_u64().unwrap(),
            "{name}: segments"
        );
        assert_eq!(
            s.clusters,
            e["clusters"].as_u64().unwrap(),
            "{name}: clusters"
        );
        match (&e["truncated"], &s.error) {
            (Value::Null, None) => {}
            (Value::Object(t), Some(ParseError::Truncated { offset, .. })) => {
                assert_eq!(
                    *offset,
                    t["offset"].as_u64().unwrap(),
                    "{name}: truncation offset"
                );
            }
            (want, got) => panic!("{name}: truncation expected {want:?}, got {got:?}"),
        }
        let tracks = e["tracks"].as_object().unwrap();
        assert_eq!(
            s.tracks.iter().filter(|(_, t)| t.frames > 0).count(),
            tracks.len(),
            "{name}: track count"
        );
        for (num, t) in tracks {
            let got = &s.tracks[&num.parse::<u64>().unwrap()];
            assert_eq!(
                got.frames,
                t["frames"].as_u64().unwrap(),
                "{name} track {num}: frames"
            );
            assert_eq!(
                got.frame_bytes,
                t["frame_bytes"].as_u64().unwrap(),
                "{name} track {num}: bytes"
            );
            assert_eq!(
                got.keyframes,
                t["keyframe_blocks"].as_u64().unwrap(),
                "{name} track {num}: key"
            );
            assert_eq!(
                got.first_ts_ns,
                t["first_block_ts_ns"].as_i64(),
                "{name} track {num}: first ts"
            );
            assert_eq!(
                got.last_ts_ns,
                t["last_block_ts_ns"].as_i64(),
                "{name} track {num}: last ts"
            );
        }
        let want_tags: Vec<(String, String)> = e["segment_details"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|seg| seg["simple_tags"].as_array().cloned().unwrap_or_default())
            .filter(|t| t["value"].is_string())
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_owned(),
                    t["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(s.tags, want_tags, "{name}: tags");
    }
}

#[test]
fn truncated_capture_reports_the_cut_after_delivering_earlier_frames() {
    let name = "kvs-parser-java/output-get-media-equal-timecode.mkv";
    let data = Bytes::from(std::fs::read(vectors_dir().join(name)).unwrap());
    let s = Summary::of(data, ParserConfig::default());
    assert_eq!(s.tracks[&1].frames, 239);
    match s.error {
        Some(ParseError::Truncated {
            offset: 1_272_988,
            id: 0xA3,
            needed: 6028,
            available: 1368,
        }) => {}
        other => panic!("unexpected end: {other:?}"),
    }
}
