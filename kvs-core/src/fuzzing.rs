//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the test that
//! replays their seed corpus on the stable toolchain. Each one runs a parser
//! over arbitrary bytes and checks invariants that must hold for any input:
//! no panic, and identical results whatever the chunking.

use bytes::Bytes;

use crate::codec::annexb::{access_units, avcc_nals, to_avcc, VideoCodec};
use crate::codec::{aac, h264, h265};
use crate::ebml::reader::Walker;
use crate::mkv::fragment::FragmentAssembler;
use crate::mkv::{parse_all, parse_split, Event, ParseError, ParserConfig};

/// Split points derived from the input itself, so a crash reproduces.
fn splits(data: &[u8]) -> Vec<usize> {
    // Seeded by the input (FNV-1a of its first bytes): reproducible.
    let seed: u64 = data.iter().take(64).fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = (data.len() / 97).clamp(1, 64);
    let mut v: Vec<usize> = (0..n).map(|_| rng.usize(..=data.len())).collect();
    v.sort_unstable();
    v
}

fn parse_chunked(data: &[u8], cfg: ParserConfig) -> (Vec<Event>, Option<ParseError>) {
    parse_split(data, &splits(data), cfg)
}

/// The bare EBML walker over arbitrary bytes, whole and chunked.
pub fn ebml_walk(data: &[u8]) {
    let is_master = |id| id == crate::mkv::ids::SEGMENT || id == crate::mkv::ids::CLUSTER;
    let mut whole = Walker::new(is_master);
    let r1 = whole.push(Bytes::copy_from_slice(data));
    let mut chunked = Walker::new(is_master);
    let mut r2 = Ok(());
    let mut start = 0;
    for end in splits(data).into_iter().chain([data.len()]) {
        r2 = chunked.push(Bytes::copy_from_slice(&data[start..end]));
        start = end;
        if r2.is_err() {
            break;
        }
    }
    assert_eq!(r1, r2, "walk result depends on chunking");
    if r1.is_ok() {
        assert_eq!(whole.stats(), chunked.stats(), "walk depends on chunking");
    }
}

/// The Matroska parser, lenient and strict, whole and chunked: the events
/// and the final error must not depend on chunking.
pub fn mkv_parser(data: &[u8]) {
    for cfg in [
        ParserConfig::default(),
        ParserConfig {
            strict: true,
            ..ParserConfig::default()
        },
    ] {
        let whole = parse_all(Bytes::copy_from_slice(data), cfg);
        let chunked = parse_chunked(data, cfg);
        // Compared as text: a NaN float (a Duration, say) is unequal to itself.
        assert_eq!(
            format!("{whole:?}"),
            format!("{chunked:?}"),
            "parser events depend on chunking"
        );
        if let Some(e) = &whole.1 {
            assert!(
                e.offset() <= data.len() as u64,
                "error offset past the input"
            );
        }
    }
}

/// The fragment assembler: no panic, frames never exceed the input; with
/// frames handed out as they are parsed, the same fragments come out, and
/// each fragment's frames are exactly the frames handed out before it
/// (since the previous fragment); releasing each fragment's frames as they
/// are handed out leaves the same frames and fragments, the latter without
/// frames.
pub fn fragment_assembler(data: &[u8]) {
    use crate::mkv::fragment::Assembled;
    let run = |frames: bool, release: bool| {
        let mut a = FragmentAssembler::default();
        a.yield_frames(frames);
        let mut out = Vec::new();
        let drain = |a: &mut FragmentAssembler, out: &mut Vec<Assembled>| {
            while let Ok(Some(item)) = a.next_item() {
                if let (true, Assembled::Frame(head, _)) = (release, &item) {
                    a.release_frames(head);
                }
                out.push(item);
            }
        };
        let mut start = 0;
        for end in splits(data).into_iter().chain([data.len()]) {
            a.push(Bytes::copy_from_slice(&data[start..end]));
            start = end;
            drain(&mut a, &mut out);
        }
        a.finish();
        drain(&mut a, &mut out);
        out
    };
    let whole = run(false, false);
    let total: u64 = whole
        .iter()
        .map(|i| match i {
            Assembled::Fragment(f) => f.payload_bytes(),
            Assembled::Frame(..) => panic!("a frame without yield_frames"),
        })
        .sum();
    assert!(
        total as usize <= data.len(),
        "more payload out than bytes in"
    );
    let mut fragments = Vec::new();
    let mut since = Vec::new();
    let mut all_frames = Vec::new();
    for item in run(true, false) {
        match item {
            Assembled::Frame(head, fr) => {
                assert!(head.timecode_scale > 0);
                all_frames.push(fr.clone());
                since.push(fr);
            }
            Assembled::Fragment(f) => {
                assert_eq!(f.frames, since, "a fragment's frames are those handed out");
                since.clear();
                fragments.push(Assembled::Fragment(f));
            }
        }
    }
    assert_eq!(fragments, whole, "frames handed out change the fragments");
    let mut released_frames = Vec::new();
    let mut released = Vec::new();
    for item in run(true, true) {
        match item {
            Assembled::Frame(_, fr) => released_frames.push(fr),
            Assembled::Fragment(f) => released.push(f),
        }
    }
    assert_eq!(released_frames, all_frames, "releasing changes the frames");
    let emptied: Vec<Assembled> = fragments
        .into_iter()
        .map(|i| match i {
            Assembled::Fragment(mut f) => {
                f.frames.clear();
                Assembled::Fragment(f)
            }
            other => other,
        })
        .collect();
    let released: Vec<Assembled> = released.into_iter().map(Assembled::Fragment).collect();
    assert_eq!(
        released, emptied,
        "releasing changes the fragments' metadata"
    );
}

/// Annex-B splitting, AVCC conversion, SPS/VPS decoding and ADTS on arbitrary bytes.
pub fn annexb(data: &[u8]) {
    let b = Bytes::copy_from_slice(data);
    for codec in [VideoCodec::H264, VideoCodec::H265] {
        let units = access_units(codec, &b);
        assert!(units.iter().map(Bytes::len).sum::<usize>() <= data.len());
        let keys: Vec<bool> = (0..units.len()).map(|i| i == 0).collect();
        if let Some(order) = crate::codec::poc::presentation_order(codec, &units, &keys) {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert!(
                sorted.iter().enumerate().all(|(i, &o)| i == o),
                "presentation order is a permutation"
            );
        }
    }
    if let Ok(avcc) = to_avcc(data) {
        let nals = avcc_nals(&avcc, 4).expect("our own AVCC parses");
        assert!(nals.iter().all(|n| !n.is_empty()));
    }
    let mut p264 = h264::ParameterSets::default();
    p264.collect_annexb(&b);
    let _ = p264.codec_private();
    let _ = p264.dimensions();
    let mut p265 = h265::ParameterSets::default();
    p265.collect_annexb(&b);
    let _ = p265.codec_private();
    let _ = p265.dimensions();
    let _ = h264::sps_dimensions(data);
    let _ = h265::parse_sps(data);
    let _ = aac::split_adts(&b);
}

/// The H.264 and H.265 parameter-set readers on one arbitrary NAL unit
/// (header included): never a panic; a size read is never zero; bytes
/// after an SPS's stop bit never change the size it gives.
pub fn parameter_sets(data: &[u8]) {
    if let Ok((w, h)) = h264::sps_dimensions(data) {
        assert!(w > 0 && h > 0, "a zero picture size was accepted");
        // (After a byte above 3, so no emulation-prevention sequence forms.)
        if data.last().is_some_and(|b| *b > 3) {
            let mut more = data.to_vec();
            more.push(0x80);
            assert_eq!(
                h264::sps_dimensions(&more).ok(),
                Some((w, h)),
                "a byte after the stop bit changed the size"
            );
        }
    }
    let _ = h264::parse_pps(&h264_reader::Context::new(), data);
    if let (Ok(info), true) = (h265::parse_sps(data), data.last().is_some_and(|b| *b > 3)) {
        assert!(info.width > 0 && info.height > 0);
        let mut more = data.to_vec();
        more.extend_from_slice(&[0x5a, 0x80]);
        assert_eq!(h265::parse_sps(&more).ok(), Some(info));
    }
}

/// The PutMedia ACK decoder: the same ACKs (or the same error) whatever the chunking.
pub fn ack_decoder(data: &[u8]) {
    use crate::protocol::AckDecoder;
    let run = |ends: &[usize]| {
        let mut d = AckDecoder::new(1024);
        let mut out = Vec::new();
        let mut start = 0;
        for &end in ends.iter().chain([data.len()].iter()) {
            d.push(&data[start..end]);
            start = end;
            while let Some(a) = d.next_ack() {
                let stop = a.is_err();
                out.push(a);
                if stop {
                    return out;
                }
            }
        }
        if let Err(e) = d.finish() {
            out.push(Err(e));
        }
        out
    };
    assert_eq!(run(&[]), run(&splits(data)), "ACKs depend on chunking");
}

/// The producer state machine driven by arbitrary operations (frames with
/// any timestamps, key flags and Annex-B or raw payloads on two tracks, time
/// passing, connection cuts, flushes). Invariants: no panic; every session's
/// bytes parse without an error, start with a header and hold clusters with
/// strictly increasing timecodes, each starting with a key frame; acknowledging
/// every whole fragment empties the producer after a final flush.
pub fn producer(data: &[u8]) {
    use crate::mkv::builder::{Payload, TrackConfig};
    use crate::protocol::producer::{Frame, ProducerConfig, ProducerCore};
    use crate::protocol::Ack;
    use std::time::Duration;

    let mut video = TrackConfig::video(1, h264::CODEC_ID, Bytes::new(), 64, 64);
    video.codec_private = None;
    let Ok(audio) = TrackConfig::aac(2, 48_000, 2) else {
        return;
    };
    let mut cfg = ProducerConfig::new(vec![video, audio], 1_700_000_000_000);
    cfg.max_buffer_bytes = 64 * 1024;
    let Ok(mut p) = ProducerCore::new(cfg) else {
        return;
    };
    let base = std::time::Instant::now();
    let mut now = base;
    let mut conn = p.connected(now);
    let mut session: Vec<u8> = Vec::new();
    let mut acked: Vec<u64> = Vec::new();
    let mut clocks = [0u64; 2];
    // Writes what the producer has, then acknowledges every whole fragment
    // of the session (checking the session's layout on the way).
    let pump =
        |p: &mut ProducerCore, conn: u64, session: &mut Vec<u8>, acked: &mut Vec<u64>, now| {
            while let Some(c) = p.next_chunk(now) {
                session.extend_from_slice(&c);
            }
            let (events, err) = parse_all(Bytes::from(session.clone()), ParserConfig::default());
            if let Some(e) = err {
                assert!(e.is_truncated(), "the producer wrote bad MKV: {e}");
            }
            let mut last_tc = None;
            let mut open: Option<u64> = None;
            let mut first_frame = false;
            for ev in events {
                match ev {
                    Event::ClusterTimecode(tc) => {
                        assert!(
                            last_tc.is_none_or(|l| tc > l),
                            "cluster timecodes must increase"
                        );
                        last_tc = Some(tc);
                        open = Some(tc);
                        first_frame = true;
                    }
                    Event::Frame(f) if first_frame => {
                        assert!(f.key, "a fragment must start with a key frame");
                        first_frame = false;
                    }
                    // The end-of-fragment tag closes the cluster: acknowledge it.
                    Event::Tags { .. } => {
                        if let Some(tc) = open.take() {
                            if !acked.contains(&tc) {
                                acked.push(tc);
                                let ack = Ack::Persisted {
                                    fragment_timecode: tc,
                                    fragment_number: tc.to_string(),
                                };
                                p.on_ack(conn, &ack, now);
                            }
                        }
                    }
                    _ => {}
                }
            }
        };
    for op in data.chunks(4) {
        let [kind, a, b, c] = [
            op[0],
            *op.get(1).unwrap_or(&0),
            *op.get(2).unwrap_or(&0),
            *op.get(3).unwrap_or(&0),
        ];
        match kind % 8 {
            0..=4 => {
                let track = u64::from(kind % 2) + 1;
                let clock = &mut clocks[(track - 1) as usize];
                // Mostly forward, sometimes back.
                *clock = clock.saturating_add_signed(i64::from(a as i8) * 3);
                let len = usize::from(c) % 64;
                let annexb = b & 2 != 0;
                let payload = if annexb {
                    // Start codes around whatever follows in the input.
                    let mut v = vec![0, 0, 0, 1];
                    v.extend(data.iter().cycle().skip(usize::from(c)).take(len));
                    Payload::AnnexB(Bytes::from(v))
                } else {
                    Payload::Raw(Bytes::from(vec![b; len + 1]))
                };
                let _ = p.put_frame(
                    Frame {
                        track,
                        pts: Duration::from_millis(*clock),
                        dts: None,
                        key: b & 1 == 1,
                        payload,
                    },
                    now,
                );
            }
            5 => {
                now += Duration::from_millis(u64::from(a) * 10);
                p.tick(now);
            }
            6 => {
                p.disconnected("cut");
                session.clear();
                acked.clear();
                conn = p.connected(now);
            }
            _ => {
                let _ = p.flush(now);
            }
        }
        pump(&mut p, conn, &mut session, &mut acked, now);
        while p.next_event().is_some() {}
    }
    let _ = p.flush(now);
    pump(&mut p, conn, &mut session, &mut acked, now);
    assert!(
        p.is_idle(),
        "every whole fragment was acknowledged, so nothing may remain"
    );
}
