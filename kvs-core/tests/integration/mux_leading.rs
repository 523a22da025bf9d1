//! The whole class of leading data, for every video codec: an elementary
//! stream with garbage before its first start code and cut anywhere (so it
//! may start mid-GOP) muxes from its first key frame on, every frame from
//! there kept byte for byte, those before it counted; with no key frame
//! left, the error says so. Inputs: the bundled H.264 clip and the AWS C
//! producer's 403 H.265 sample frames.

use bytes::Bytes;
use kvs_core::codec::annexb::{access_units, to_avcc, VideoCodec};
use kvs_core::mkv::mux::{mux_annexb, MuxError};
use kvs_core::mkv::{parse_all, Event, ParserConfig};
use proptest::prelude::*;

fn h264_units() -> Vec<Bytes> {
    let p =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/media/clip.h264");
    access_units(VideoCodec::H264, &Bytes::from(std::fs::read(p).unwrap()))
}

fn h265_units() -> Vec<Bytes> {
    let dir = crate::support::vectors().join("kvs-producer-c/h265SampleFrames");
    (1..=403)
        .map(|i| Bytes::from(std::fs::read(dir.join(format!("frame-{i:03}.h265"))).unwrap()))
        .collect()
}

/// Garbage with no zero byte (so no start code forms in it or at its seam).
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 0..48)
}

fn check(codec: VideoCodec, units: &[Bytes], junk: &[u8], cut: usize) -> Result<(), TestCaseError> {
    let cut = cut % units.len();
    let kept = &units[cut..];
    let mut input = junk.to_vec();
    for u in kept {
        input.extend_from_slice(u);
    }
    let first_key = kept.iter().position(|u| codec.is_key_unit(u));
    let out = mux_annexb(codec, &Bytes::from(input), 25.0, None);
    let Some(first_key) = first_key else {
        prop_assert!(
            matches!(out, Err(MuxError::NoKeyFrame(n)) if n == kept.len()),
            "{out:?}"
        );
        return Ok(());
    };
    let out = out.map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(out.leading_skipped, first_key);
    prop_assert_eq!(out.video_frames, kept.len() - first_key);
    let (events, err) = parse_all(Bytes::from(out.chunks.concat()), ParserConfig::default());
    prop_assert!(err.is_none(), "{err:?}");
    let frames: Vec<(bool, Bytes)> = events
        .into_iter()
        .filter_map(|e| match e {
            Event::Frame(f) => Some((f.key, f.payload)),
            _ => None,
        })
        .collect();
    prop_assert!(frames[0].0, "the stream starts with a key frame");
    let want: Vec<Bytes> = kept[first_key..]
        .iter()
        .map(|u| to_avcc(u).unwrap())
        .collect();
    let got: Vec<Bytes> = frames.into_iter().map(|f| f.1).collect();
    prop_assert!(got == want, "frames differ");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn h264_from_any_cut(junk in garbage(), cut in 0usize..200) {
        check(VideoCodec::H264, &h264_units(), &junk, cut)?;
    }

    #[test]
    fn h265_from_any_cut(junk in garbage(), cut in 0usize..403) {
        check(VideoCodec::H265, &h265_units(), &junk, cut)?;
    }
}
