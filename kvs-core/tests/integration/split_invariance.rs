//! Split invariance and round trips: the parser's events do not depend on
//! how the input is cut, and what the builder writes parses back exactly.

use std::path::PathBuf;

use bytes::Bytes;
use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, Tag, TrackConfig};
use kvs_core::mkv::{parse_all, parse_split, Event, ParseError, ParserConfig};
use proptest::prelude::*;

fn vectors() -> PathBuf {
    crate::support::vectors()
}

fn parse_cut(data: &[u8], cuts: &[usize]) -> (Vec<Event>, Option<ParseError>) {
    parse_split(data, cuts, ParserConfig::default())
}

/// Cut points from a seeded generator (reproducible).
fn cuts(seed: u64, len: usize, n: usize) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(|_| rng.usize(..=len)).collect()
}

#[test]
fn every_vector_gives_identical_events_whole_bytewise_and_at_random_splits() {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [
        "kvs-parser-java",
        "kvs-producer-sdk-cpp",
        "rust-av-matroska",
    ] {
        for e in std::fs::read_dir(vectors().join(dir)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    assert!(files.len() >= 15);
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let whole = parse_all(Bytes::from(data.clone()), ParserConfig::default());
        assert!(whole.0.len() > 2, "{}", f.display());
        let bytewise: Vec<usize> = (1..data.len()).collect();
        assert_eq!(
            parse_cut(&data, &bytewise),
            whole,
            "{} byte by byte",
            f.display()
        );
        for seed in [1u64, 7, 0xDEAD_BEEF] {
            assert_eq!(
                parse_cut(&data, &cuts(seed, data.len(), 200)),
                whole,
                "{} seed {seed}",
                f.display()
            );
        }
    }
}

fn stream(audio: bool) -> StreamConfig {
    stream_scaled(audio, 1_000_000)
}

fn stream_scaled(audio: bool, timecode_scale_ns: u64) -> StreamConfig {
    let mut tracks = vec![TrackConfig::video(
        1,
        "V_MPEG4/ISO/AVC",
        Bytes::from_static(&[1, 2, 3]),
        640,
        480,
    )];
    if audio {
        tracks.push(TrackConfig::audio(
            2,
            "A_AAC",
            Some(Bytes::from_static(&[0x11, 0x90])),
            48000.0,
            2,
        ));
    }
    StreamConfig {
        timecode_scale_ns,
        ..StreamConfig::new(tracks)
    }
}

#[derive(Debug, Clone)]
struct Frag {
    frames: Vec<(u64, i16, bool, Vec<u8>)>,
    tags: Vec<(String, String)>,
}

fn frag_strategy(audio: bool) -> impl Strategy<Value = Frag> {
    let frame = (
        if audio { 1u64..=2 } else { 1u64..=1 },
        -2000i16..2000,
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..3000),
    );
    (
        prop::collection::vec(frame, 1..12),
        prop::collection::vec(("[a-z][a-z0-9_]{0,20}", "[ -~]{0,40}"), 0..4),
    )
        .prop_map(|(frames, tags)| Frag { frames, tags })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn build_then_parse_round_trips_at_any_cuts(
        audio in any::<bool>(),
        scale in prop::sample::select(vec![100u64, 1_000, 1_000_000, 1_000_000_000]),
        frags in prop::collection::vec(frag_strategy(true), 1..6),
        cut_seed in any::<u64>(),
        ncuts in 0usize..64,
    ) {
        let mut b = FragmentBuilder::new(stream_scaled(audio, scale)).unwrap();
        let mut chunks = vec![b.header()];
        let mut want = Vec::new();
        let mut want_tags = Vec::new();
        let mut base = 100_000i64;
        for f in &frags {
            let mut frames: Vec<FrameIn> = f.frames.iter().map(|(t, rel, key, p)| FrameIn {
                track: if audio { *t } else { 1 },
                timecode: base + i64::from(*rel),
                key: *key,
                payload: Payload::Raw(Bytes::from(p.clone())),
            }).collect();
            frames[0].key = true;
            frames[0].timecode = base;
            let tags: Vec<Tag> = f.tags.iter().map(|(n, v)| Tag { name: n.clone(), value: v.clone() }).collect();
            b.fragment(&frames, &tags, &mut chunks).unwrap();
            want.extend(frames.iter().map(|fr| match &fr.payload {
                Payload::Raw(p) => (fr.track, fr.timecode, fr.key, p.clone()),
                Payload::AnnexB(_) => unreachable!(),
            }));
            want_tags.extend(f.tags.iter().cloned());
            base += 5000;
        }
        let data: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let (events, err) = parse_cut(&data, &cuts(cut_seed, data.len(), ncuts));
        prop_assert!(err.is_none(), "{:?}", err);
        let got: Vec<_> = events.iter().filter_map(|e| match e {
            Event::Frame(f) => Some((f.track, f.timecode, f.key, f.payload.clone())),
            _ => None,
        }).collect();
        prop_assert_eq!(got, want);
        for e in &events {
            if let Event::Frame(f) = e {
                prop_assert_eq!(f.timestamp_ns, f.timecode * scale as i64);
            }
        }
        let got_tags: Vec<_> = events.iter().flat_map(|e| match e {
            Event::Tags { tags, .. } => tags.iter().map(|t| (t.name.clone(), t.string.clone().unwrap())).collect(),
            _ => Vec::new(),
        }).collect();
        prop_assert_eq!(got_tags, want_tags);
        prop_assert_eq!(events.iter().filter(|e| matches!(e, Event::ClusterStart { .. })).count(), frags.len());
    }

    #[test]
    fn annexb_payloads_come_back_as_avcc(nals in prop::collection::vec(prop::collection::vec(1u8..=255, 1..5000), 1..6)) {
        let mut annexb = Vec::new();
        let mut avcc = Vec::new();
        for (i, n) in nals.iter().enumerate() {
            annexb.extend_from_slice(if i % 2 == 0 { &[0, 0, 0, 1][..] } else { &[0, 0, 1][..] });
            annexb.extend_from_slice(n);
            avcc.extend_from_slice(&(n.len() as u32).to_be_bytes());
            avcc.extend_from_slice(n);
        }
        let mut b = FragmentBuilder::new(stream(false)).unwrap();
        let mut chunks = vec![b.header()];
        b.fragment(&[FrameIn { track: 1, timecode: 0, key: true, payload: Payload::AnnexB(Bytes::from(annexb)) }], &[], &mut chunks).unwrap();
        let data: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let (events, err) = parse_all(Bytes::from(data), ParserConfig::default());
        prop_assert!(err.is_none());
        let frames: Vec<_> = events.iter().filter_map(|e| match e { Event::Frame(f) => Some(f.payload.to_vec()), _ => None }).collect();
        prop_assert_eq!(frames, vec![avcc]);
    }
}

/// A pipe delivers its bytes in any pieces: the readers of a stream as it
/// arrives give the frames the whole-file functions give — Matroska (the
/// bundled clip with audio, muxed) and Annex-B (the bundled H.264 clip) —
/// whatever the cuts, a group of pictures at a time.
#[test]
fn pipe_readers_give_the_whole_file_frames_at_any_cut() {
    use kvs_core::codec::annexb::VideoCodec;
    use kvs_core::mkv::mux::{annexb_frames, matroska_frames, AnnexBReader, MatroskaReader};
    let mkv = crate::common::clip(true);
    let h264 = Bytes::from(
        std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/media/clip.h264"),
        )
        .unwrap(),
    );
    let whole_mkv = matroska_frames(mkv.clone()).unwrap();
    let whole_annexb = annexb_frames(VideoCodec::H264, &h264, 25.0, None).unwrap();
    assert_eq!(whole_annexb.frames.len(), 200);
    for seed in 0..6 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut reader = MatroskaReader::new();
        let mut got = Vec::new();
        let mut at = 0;
        let mut batches = 0;
        while at < mkv.len() {
            let n = rng.usize(1..=20_000).min(mkv.len() - at);
            let out = reader.push(mkv.slice(at..at + n)).unwrap();
            batches += usize::from(!out.is_empty());
            got.extend(out);
            at += n;
        }
        got.extend(reader.finish().unwrap());
        assert_eq!(reader.tracks().unwrap(), &whole_mkv.tracks[..]);
        assert_eq!(got, whole_mkv.frames, "Matroska, seed {seed}");
        assert!(
            batches >= 3,
            "a group of pictures at a time, not at the end"
        );

        let mut reader = AnnexBReader::new(VideoCodec::H264, 25.0).unwrap();
        let mut got = Vec::new();
        let mut at = 0;
        while at < h264.len() {
            let n = rng.usize(1..=20_000).min(h264.len() - at);
            got.extend(reader.push(&h264[at..at + n]).unwrap());
            at += n;
        }
        got.extend(reader.finish().unwrap());
        assert_eq!(got, whole_annexb.frames, "Annex-B, seed {seed}");
        assert_eq!(reader.skipped(), 0);
    }
    // Pictures before the first key frame are dropped and counted.
    let first_key = whole_annexb
        .frames
        .iter()
        .skip(1)
        .position(|f| f.key)
        .unwrap()
        + 1;
    let mut reader = AnnexBReader::new(VideoCodec::H264, 25.0).unwrap();
    let tail = &h264[h264.len() / 8..];
    let mut got = reader.push(tail).unwrap();
    got.extend(reader.finish().unwrap());
    assert!(got[0].key && reader.skipped() > 0 && reader.skipped() < first_key);
}
