//! Muxing elementary streams into a KVS-style Matroska stream: one fragment
//! per video key frame, CodecPrivate taken from the in-band parameter sets,
//! AVCC payloads, timestamps from a frame rate, AAC interleaved by time.

use bytes::Bytes;

use super::builder::{BuildError, FragmentBuilder, FrameIn, Payload, StreamConfig, TrackConfig};
use crate::codec::annexb::{access_units, for_each_nal, VideoCodec};
use crate::codec::poc::presentation_order;
use crate::codec::{aac, h264, h265, CodecError};

/// Why muxing failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    /// The elementary stream is unusable.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The builder refused a fragment.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// No picture in the input.
    #[error("the video input holds no picture")]
    NoVideo,
    /// The first picture is not a key frame.
    #[error("the video input does not start with a key frame")]
    NoKeyFrame,
    /// A frame rate that is not a positive finite number.
    #[error("invalid frame rate {0}")]
    BadFrameRate(f64),
}

/// Raw AAC frames and their stream settings.
#[derive(Debug, Clone)]
pub struct AacInput {
    /// The first ADTS header (rate, channels, profile).
    pub header: aac::AdtsHeader,
    /// Raw frames, 1024 samples each.
    pub frames: Vec<Bytes>,
}

/// What a mux produced.
#[derive(Debug, Clone, Default)]
pub struct MuxOutput {
    /// The Matroska stream as chunks (header first).
    pub chunks: Vec<Bytes>,
    /// Fragments written.
    pub fragments: usize,
    /// Video frames written.
    pub video_frames: usize,
    /// Audio frames written.
    pub audio_frames: usize,
    /// Each fragment's cluster timecode (ms) and its range in `chunks`.
    pub fragment_chunks: Vec<(i64, std::ops::Range<usize>)>,
}

fn video_track(codec: VideoCodec, units: &[Bytes]) -> Result<TrackConfig, MuxError> {
    match codec {
        VideoCodec::H264 => {
            let mut ps = h264::ParameterSets::default();
            for u in units {
                ps.collect_annexb(u);
                if !ps.sps.is_empty() && !ps.pps.is_empty() {
                    break;
                }
            }
            let (w, h) = ps.dimensions()?;
            Ok(TrackConfig::video(
                1,
                h264::CODEC_ID,
                ps.codec_private()?,
                w,
                h,
            ))
        }
        VideoCodec::H265 => {
            let mut ps = h265::ParameterSets::default();
            for u in units {
                ps.collect_annexb(u);
                if !ps.vps.is_empty() && !ps.sps.is_empty() && !ps.pps.is_empty() {
                    break;
                }
            }
            let (w, h) = ps.dimensions()?;
            Ok(TrackConfig::video(
                1,
                h265::CODEC_ID,
                ps.codec_private()?,
                w,
                h,
            ))
        }
    }
}

fn is_key(codec: VideoCodec, au: &[u8]) -> bool {
    let mut key = false;
    for_each_nal(au, |s, _| key |= codec.is_key(codec.nal_type(&au[s..])));
    key
}

/// Muxes an Annex-B video elementary stream (and optional AAC) at `fps`.
pub fn mux_annexb(
    codec: VideoCodec,
    video: &Bytes,
    fps: f64,
    audio: Option<&AacInput>,
) -> Result<MuxOutput, MuxError> {
    if !(fps.is_finite() && fps > 0.0) {
        return Err(MuxError::BadFrameRate(fps));
    }
    let units = access_units(codec, video);
    if units.is_empty() {
        return Err(MuxError::NoVideo);
    }
    let mut tracks = vec![video_track(codec, &units)?];
    if let Some(a) = audio {
        let asc = a.header.audio_specific_config()?;
        let mut t = TrackConfig::audio(
            2,
            aac::CODEC_ID,
            Some(asc),
            f64::from(a.header.sample_rate),
            a.header.channels,
        );
        t.default_duration_ns = Some(1024 * 1_000_000_000 / u64::from(a.header.sample_rate));
        tracks.push(t);
    }
    let cfg = StreamConfig::new(tracks);
    let scale = cfg.timecode_scale_ns as f64;
    let mut builder = FragmentBuilder::new(cfg)?;
    let mut out = MuxOutput {
        chunks: vec![builder.header()],
        ..MuxOutput::default()
    };

    let keys: Vec<bool> = units.iter().map(|u| is_key(codec, u)).collect();
    if !keys[0] {
        return Err(MuxError::NoKeyFrame);
    }
    // Presentation order from the picture order counts (B-frames), else
    // the order of the stream.
    let order =
        presentation_order(codec, &units, &keys).unwrap_or_else(|| (0..units.len()).collect());
    let slot = |i: usize| ((i as f64) * 1e9 / fps / scale).round() as i64;
    let pts = |i: usize| slot(order[i]);
    let ats =
        |k: usize, rate: u32| ((k as f64) * 1024.0 * 1e9 / f64::from(rate) / scale).round() as i64;
    let mut next_audio = 0usize;
    let mut frames = Vec::new();
    let mut start = 0;
    while start < units.len() {
        let end = (start + 1..units.len())
            .find(|&i| keys[i])
            .unwrap_or(units.len());
        frames.clear();
        for (i, u) in units.iter().enumerate().take(end).skip(start) {
            frames.push(FrameIn {
                track: 1,
                timecode: pts(i),
                key: keys[i],
                payload: Payload::AnnexB(u.clone()),
            });
        }
        if let Some(a) = audio {
            let last = end == units.len();
            while next_audio < a.frames.len() {
                let ts = ats(next_audio, a.header.sample_rate);
                if !last && ts >= slot(end) {
                    break;
                }
                frames.push(FrameIn {
                    track: 2,
                    timecode: ts,
                    key: true,
                    payload: Payload::Raw(a.frames[next_audio].clone()),
                });
                next_audio += 1;
                out.audio_frames += 1;
            }
        }
        // Video stays in decode order (decoders need it); audio goes in
        // before the first picture that is shown after it.
        frames.sort_by_key(|f| {
            if f.track == 1 {
                (0, 0)
            } else {
                (1, f.timecode)
            }
        });
        interleave(&mut frames);
        let first_chunk = out.chunks.len();
        builder.fragment(&frames, &[], &mut out.chunks)?;
        out.fragment_chunks
            .push((frames[0].timecode, first_chunk..out.chunks.len()));
        out.video_frames += end - start;
        out.fragments += 1;
        start = end;
    }
    Ok(out)
}

/// Puts each audio frame (all after the video, sorted by time) in front of
/// the first video frame in decode order whose time is later, keeping the
/// video in decode order and the key picture first.
fn interleave(frames: &mut Vec<FrameIn>) {
    let split = frames
        .iter()
        .position(|f| f.track != 1)
        .unwrap_or(frames.len());
    let audio: Vec<FrameIn> = frames.drain(split..).collect();
    let video = std::mem::take(frames);
    let mut a = audio.into_iter().peekable();
    for (i, v) in video.into_iter().enumerate() {
        while i > 0 && a.peek().is_some_and(|x| x.timecode < v.timecode) {
            frames.push(a.next().expect("peeked"));
        }
        frames.push(v);
    }
    frames.extend(a);
}
