//! The fragment assembler on the real GetMedia captures.

use std::path::PathBuf;

use bytes::Bytes;
use kvs_core::mkv::fragment::{Fragment, FragmentAssembler, FragmentError};
use kvs_core::mkv::ParseError;
use serde_json::Value;

fn dir() -> PathBuf {
    crate::support::vectors()
}

fn assemble(name: &str, chunk: usize) -> (Vec<Fragment>, Option<FragmentError>) {
    let data = std::fs::read(dir().join(name)).unwrap();
    let mut a = FragmentAssembler::default();
    let mut out = Vec::new();
    let mut err = None;
    for c in data.chunks(chunk) {
        a.push(Bytes::copy_from_slice(c));
        while let Some(f) = a.next_fragment().unwrap() {
            out.push(f);
        }
    }
    a.finish();
    loop {
        match a.next_fragment() {
            Ok(Some(f)) => out.push(f),
            Ok(None) => break,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    (out, err)
}

fn facts() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("facts.json")).unwrap()).unwrap()
}

/// Expected per-document service tag values from facts.json.
fn segment_tag(f: &Value, seg: usize, name: &str) -> Option<String> {
    f["ebml"]["segment_details"][seg]["simple_tags"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["value"].as_str().map(str::to_owned))
}

#[test]
fn getmedia_captures_give_one_fragment_per_document_with_service_tags() {
    let facts = facts();
    for (name, docs, frames) in [
        ("kvs-parser-java/output_get_media.mkv", 5, 300),
        (
            "kvs-parser-java/output_get_media_sparse_fragments.mkv",
            3,
            180,
        ),
        (
            "kvs-parser-java/kinesis_video_renderer_example_output.mkv",
            8,
            444,
        ),
        ("kvs-parser-java/test_mixed_tags.mkv", 10, 100),
    ] {
        for chunk in [1 << 20, 4096, 977] {
            let (frags, err) = assemble(name, chunk);
            assert!(err.is_none(), "{name}: {err:?}");
            assert_eq!(frags.len(), docs, "{name}");
            assert_eq!(
                frags.iter().map(|f| f.frames.len()).sum::<usize>(),
                frames,
                "{name}"
            );
            let f = &facts["files"][name];
            for (i, fr) in frags.iter().enumerate() {
                assert!(fr.complete);
                assert_eq!(
                    fr.fragment_number,
                    segment_tag(f, i, "AWS_KINESISVIDEO_FRAGMENT_NUMBER"),
                    "{name} #{i}"
                );
                assert_eq!(
                    fr.continuation_token,
                    segment_tag(f, i, "AWS_KINESISVIDEO_CONTINUATION_TOKEN"),
                    "{name} #{i}"
                );
                let ms = segment_tag(f, i, "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW")
                    .map(|v| v.parse::<u64>().unwrap());
                assert_eq!(fr.millis_behind_now, ms, "{name} #{i}");
                assert!(fr.server_timestamp_ms.is_some() && fr.producer_timestamp_ms.is_some());
                assert!(fr.frames[0].key, "{name} #{i} starts with a key frame");
                assert_eq!(fr.tracks.len(), 1);
            }
        }
    }
}

#[test]
fn output_get_media_numbers_from_the_parser_library_tests() {
    let (frags, _) = assemble("kvs-parser-java/output_get_media.mkv", 65536);
    let tokens: Vec<_> = frags
        .iter()
        .map(|f| f.continuation_token.clone().unwrap())
        .collect();
    assert!(tokens[0].ends_with("2607743920146159169392"));
    assert!(tokens[1].ends_with("2764885441725874549018"));
    assert!(tokens[2].ends_with("2922026963247510532162"));
    assert_eq!(
        frags[4].fragment_number.as_deref(),
        Some("91343852333181432412489103236310005892133364608")
    );
    let f = &frags[0];
    assert_eq!(f.server_timestamp_ms, Some(1_511_852_109_126));
    assert_eq!(f.producer_timestamp_ms, Some(1_511_852_108_513));
    assert_eq!(f.millis_behind_now, Some(15858));
    for f in &frags {
        let names: Vec<_> = f.tags.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "COMPATIBLE_BRANDS",
                "MAJOR_BRAND",
                "MINOR_VERSION",
                "ENCODER",
                "HANDLER_NAME",
                "ENCODER",
                "DURATION"
            ]
        );
        assert_eq!(f.tags[1].1, "M4V ");
        assert_eq!(f.tags[6].1, "00:00:10.000000000\0\0");
        assert_eq!(f.tracks[0].codec_private.as_ref().unwrap().len(), 54);
    }
    let numbers: Vec<_> = frags
        .iter()
        .map(|f| f.fragment_number.clone().unwrap())
        .collect();
    assert!(
        numbers
            .windows(2)
            .all(|w| w[0].len() == w[1].len() && w[0] < w[1]),
        "fragment numbers increase"
    );
}

#[test]
fn user_tags_attach_to_their_fragment() {
    let (frags, _) = assemble("kvs-parser-java/test_mixed_tags.mkv", 333);
    let counts: Vec<_> = frags.iter().map(|f| f.tags.len()).collect();
    assert_eq!(counts, [10, 5, 5, 5, 5, 5, 5, 5, 5, 5]);
    for f in &frags {
        for (i, (n, v)) in f.tags.iter().enumerate() {
            assert_eq!(n, &format!("testTag_{}", i % 5));
            assert_eq!(v, &format!("testTag_{}_Value", i % 5));
        }
    }
    let (frags, _) = assemble("kvs-parser-java/test_tags_empty_cluster.mkv", 7);
    assert_eq!(frags.len(), 1);
    assert_eq!(frags[0].tags.len(), 5);
    assert!(frags[0].frames.is_empty());
}

#[test]
fn header_only_fragment_and_truncated_capture() {
    let (frags, err) = assemble("kvs-parser-java/empty-mkv-with-tags.mkv", 100);
    assert!(err.is_none());
    let numbers: Vec<_> = frags
        .iter()
        .filter_map(|f| f.fragment_number.clone())
        .collect();
    assert_eq!(numbers, ["91343852338378294813695855977007281634605393997"]);

    let (frags, err) = assemble("kvs-parser-java/output-get-media-equal-timecode.mkv", 65536);
    assert_eq!(frags.len(), 2);
    assert!(frags[0].complete && !frags[1].complete);
    assert!(frags[0].continuation_token.is_some() && frags[1].continuation_token.is_none());
    assert!(frags[1].fragment_number.is_some());
    assert!(matches!(
        err,
        Some(FragmentError::Parse(ParseError::Truncated {
            offset: 1_272_988,
            ..
        }))
    ));
}

#[test]
fn producer_stream_gives_one_fragment_per_cluster() {
    let (frags, err) = assemble("kvs-producer-sdk-cpp/test-stream-1_0.mkv", 65536);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(frags.len(), 37);
    assert_eq!(frags.iter().map(|f| f.frames.len()).sum::<usize>(), 1640);
    assert_eq!(frags[0].cluster_timecode, Some(1_703_120_790_149));
    assert!(frags
        .windows(2)
        .all(|w| w[1].cluster_timecode.unwrap() == w[0].cluster_timecode.unwrap() + 1500));
    let tagged: usize = frags
        .iter()
        .map(|f| {
            f.tags
                .iter()
                .filter(|(n, _)| n.starts_with("metadata_key_"))
                .count()
        })
        .sum();
    assert_eq!(tagged, 27);
}

/// Each fragment of a real GetMedia capture, written out on its own with
/// `to_mkv`, reads back as one fragment with the same frames (timestamps to
/// the millisecond).
#[test]
fn a_fragment_written_as_its_own_file_reads_back() {
    let (frags, _) = assemble("kvs-parser-java/output_get_media.mkv", 4096);
    assert!(frags.len() > 3);
    for f in frags.iter().filter(|f| !f.frames.is_empty()) {
        let file: Vec<u8> = f.to_mkv().unwrap().concat();
        let mut a = FragmentAssembler::default();
        a.push(bytes::Bytes::from(file));
        a.finish();
        let back = a.next_fragment().unwrap().unwrap();
        assert!(a.next_fragment().unwrap().is_none());
        let key = |fr: &kvs_core::mkv::ParsedFrame| {
            (
                fr.track,
                fr.timestamp_ns / 1_000_000,
                fr.key,
                fr.payload.clone(),
            )
        };
        assert_eq!(
            back.frames.iter().map(key).collect::<Vec<_>>(),
            f.frames.iter().map(key).collect::<Vec<_>>()
        );
        assert_eq!(back.tracks.len(), f.tracks.len());
    }
}
