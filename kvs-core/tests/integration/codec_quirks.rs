//! Camera parameter-set quirks that decoders accept are accepted here too
//! (with a warning), with the picture size still right; what no decoder
//! accepts is refused with a typed error. The quirks are made from a real
//! x264 SPS (the bundled clip's, 640x360 with a VUI).

use std::time::{Duration, Instant};

use bytes::Bytes;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};
use kvs_core::codec::annexb::{access_units, nal_units, VideoCodec};
use kvs_core::codec::{h264, h265, CodecError};
use kvs_core::mkv::builder::{Payload, TrackConfig, TrackKind};
use kvs_core::protocol::producer::{Frame, ProducerConfig, ProducerCore, PutOutcome};
use proptest::prelude::*;

fn media(name: &str) -> Bytes {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name);
    Bytes::from(std::fs::read(p).unwrap())
}

/// The clip's first access unit's NAL units.
fn clip_nals() -> Vec<Bytes> {
    let clip = media("../examples/media/clip.h264");
    nal_units(&access_units(VideoCodec::H264, &clip)[0])
}

fn nal(nals: &[Bytes], t: u8) -> Bytes {
    nals.iter().find(|n| n[0] & 0x1F == t).unwrap().clone()
}

fn strict(sps: &[u8]) -> Result<SeqParameterSet, String> {
    let rbsp = decode_nal(sps).map_err(|e| e.to_string())?;
    SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).map_err(|e| format!("{e:?}"))
}

/// The SPS with bytes added after its stop bit.
fn with_trailing(sps: &[u8], extra: &[u8]) -> Vec<u8> {
    [sps, extra].concat()
}

#[test]
fn the_clip_sps_is_clean_and_has_a_vui() {
    let sps = nal(&clip_nals(), 7);
    let s = strict(&sps).unwrap();
    assert!(s.vui_parameters.is_some());
    assert_eq!(h264::sps_dimensions(&sps).unwrap(), (640, 360));
}

#[test]
fn a_byte_after_the_stop_bit_is_ignored() {
    let sps = with_trailing(&nal(&clip_nals(), 7), &[0x5a]);
    // The quirk is real: the strict reading refuses it.
    assert!(strict(&sps).unwrap_err().contains("RemainingData"));
    assert_eq!(h264::sps_dimensions(&sps).unwrap(), (640, 360));
    let s = h264::parse_sps(&sps).unwrap();
    assert!(s.vui_parameters.is_some(), "the VUI itself was whole");
}

#[test]
fn a_vui_cut_off_is_dropped_and_the_size_kept() {
    let whole = nal(&clip_nals(), 7);
    // Cut inside the VUI: the last two bytes (the VUI's tail and the stop bit).
    let cut = &whole[..whole.len() - 2];
    assert!(strict(cut).is_err());
    let s = h264::parse_sps(cut).unwrap();
    assert!(s.vui_parameters.is_none());
    assert_eq!(h264::sps_dimensions(cut).unwrap(), (640, 360));
}

#[test]
fn a_level_too_low_for_the_size_is_ignored_and_kept() {
    let mut sps = nal(&clip_nals(), 7).to_vec();
    sps[3] = 10; // level 1.0: 99 macroblocks a frame; 640x360 needs 920
    assert!(strict(&sps).unwrap_err().contains("pic_size_in_map_units"));
    let s = h264::parse_sps(&sps).unwrap();
    assert_eq!(s.level_idc, 10, "the camera's level is kept as sent");
    assert_eq!(h264::sps_dimensions(&sps).unwrap(), (640, 360));
}

#[test]
fn an_sps_cut_before_its_size_is_refused_with_a_reason() {
    let whole = nal(&clip_nals(), 7);
    let err = h264::parse_sps(&whole[..5]).unwrap_err();
    let CodecError::BadParameterSet { what, reason } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*what, "SPS");
    assert!(
        reason.contains("cut off") && reason.contains("UnexpectedEof"),
        "{reason}"
    );
}

#[test]
fn h265_sps_with_trailing_bytes_keeps_its_size() {
    let data = media("../fuzz/corpus/annexb/h265_key.h265");
    let sps = nal_units(&data)
        .into_iter()
        .find(|n| (n[0] >> 1) & 0x3F == 33)
        .unwrap();
    let want = h265::parse_sps(&sps).unwrap();
    let quirky = with_trailing(&sps, &[0x00, 0x7f, 0x80]);
    assert_eq!(h265::parse_sps(&quirky).unwrap(), want);
}

/// A key frame whose SPS carries the quirk, with no CodecPrivate
/// configured: the producer takes it (the old message blamed a missing
/// SPS/PPS) and the track gets the SPS's size, whatever was configured.
#[test]
fn the_producer_takes_a_quirky_sps_and_its_size() {
    let nals = clip_nals();
    let sps = with_trailing(&nal(&nals, 7), &[0x5a]);
    let mut au = Vec::new();
    for n in &nals {
        au.extend_from_slice(&[0, 0, 0, 1]);
        if n[0] & 0x1F == 7 {
            au.extend_from_slice(&sps);
        } else {
            au.extend_from_slice(n);
        }
    }
    let mut video = TrackConfig::video(1, h264::CODEC_ID, Bytes::new(), 1, 1);
    video.codec_private = None;
    let mut p = ProducerCore::new(ProducerConfig::new(vec![video], 1_000)).unwrap();
    let t0 = Instant::now();
    let out = p
        .put_frame(
            Frame {
                track: 1,
                pts: Duration::ZERO,
                dts: None,
                key: true,
                payload: Payload::AnnexB(Bytes::from(au)),
            },
            t0,
        )
        .unwrap();
    assert_eq!(out, PutOutcome::Accepted);
    p.flush(t0).unwrap();
    let mut file = Vec::new();
    p.drain_as_file(&mut file);
    let (events, err) = kvs_core::mkv::parse_all(
        Bytes::from(file.concat()),
        kvs_core::mkv::ParserConfig::default(),
    );
    assert!(err.is_none(), "{err:?}");
    let tracks = events
        .iter()
        .find_map(|e| match e {
            kvs_core::mkv::Event::Tracks(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    let t = TrackConfig::from(&tracks[0]);
    assert!(
        matches!(
            t.kind,
            TrackKind::Video {
                width: 640,
                height: 360
            }
        ),
        "{:?}",
        t.kind
    );
}

proptest! {
    /// Any bytes after the stop bit: accepted, same size.
    #[test]
    fn any_trailing_bytes_keep_the_size(extra in proptest::collection::vec(any::<u8>(), 1..24)) {
        let sps = with_trailing(&nal(&clip_nals(), 7), &extra);
        prop_assert_eq!(h264::sps_dimensions(&sps).unwrap(), (640, 360));
    }

    /// Any cut: never a panic; what is accepted has the real size (a cut is
    /// only tolerated inside the VUI).
    #[test]
    fn any_cut_is_refused_or_keeps_the_size(len in 0usize..25) {
        let whole = nal(&clip_nals(), 7);
        let cut = &whole[..len.min(whole.len())];
        if let Ok(d) = h264::sps_dimensions(cut) {
            prop_assert_eq!(d, (640, 360));
        }
        let _ = h265::parse_sps(cut);
    }
}

/// Found by the `parameter_sets` fuzz target: an SPS whose cropping leaves
/// no picture is refused, not taken with a 0 width or height.
#[test]
fn cropping_to_nothing_is_refused() {
    let sps = [
        103u8, 100, 0, 31, 172, 178, 0, 124, 198, 116, 32, 0, 0, 125, 32, 0, 29, 76, 1, 227, 6, 73,
    ];
    let err = h264::sps_dimensions(&sps).unwrap_err();
    assert!(err.to_string().contains("cropping leaves"), "{err}");
}
