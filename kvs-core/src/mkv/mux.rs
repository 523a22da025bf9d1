//! Muxing elementary streams into a KVS-style Matroska stream.
//!
//! [`annexb_frames`] turns an Annex-B H.264/H.265 elementary stream (and
//! optional ADTS AAC) into producer [`Frame`]s: access units with their
//! key-frame flag, presentation times from the frame rate and the picture
//! order counts (B-frames), decode times from the stream order, AAC frames
//! timed by their 1024 samples each. [`mux_frames`] writes frames with the
//! same state machine the [`crate::producer::Producer`] uploads with
//! ([`ProducerCore`]), so a file and an upload of the same input hold the
//! same fragments: one per video key frame, starting at the first key frame
//! (leading frames skipped and counted), CodecPrivate and picture size from
//! the parameter sets in force, and a new stream header where they change.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::builder::{BuildError, TrackConfig};
use crate::codec::annexb::{access_units, VideoCodec};
use crate::codec::poc::presentation_order;
use crate::codec::{aac, h264, h265, CodecError};
use crate::protocol::producer::{
    AckLevel, Frame, FrameError, ProducerConfig, ProducerCore, ProducerEvent, PutOutcome,
};

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
    /// A frame broke the producer's rules (the message names the frame).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A fragment could not be written.
    #[error("fragment at {timecode_ms} ms cannot be written: {reason}")]
    Unwritable {
        /// Its timecode, ms.
        timecode_ms: u64,
        /// Why.
        reason: String,
    },
    /// No picture in the input.
    #[error("the video input holds no picture")]
    NoVideo,
    /// No picture of the input is a key frame.
    #[error("the video input holds no key frame ({0} pictures, all skipped)")]
    NoKeyFrame(usize),
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

/// Tracks and frames ready for a producer (or [`mux_frames`]).
#[derive(Debug, Clone)]
pub struct FrameInput {
    /// Track 1 is the video (CodecPrivate and size left to the parameter
    /// sets in the stream), track 2 the audio if any.
    pub tracks: Vec<TrackConfig>,
    /// Every frame, in decode order (tracks interleaved by decode time).
    pub frames: Vec<Frame>,
}

/// What a mux produced.
#[derive(Debug, Clone, Default)]
pub struct MuxOutput {
    /// The Matroska stream as chunks (a stream header first, and again
    /// wherever the parameter sets change).
    pub chunks: Vec<Bytes>,
    /// Fragments written.
    pub fragments: usize,
    /// Video frames written.
    pub video_frames: usize,
    /// Audio frames written.
    pub audio_frames: usize,
    /// Frames skipped before the first video key frame.
    pub leading_skipped: usize,
    /// Stream headers written (1 + the parameter-set changes).
    pub headers: usize,
    /// Each fragment's cluster timecode (ms) and its range in `chunks`.
    pub fragment_chunks: Vec<(i64, std::ops::Range<usize>)>,
}

/// A frame time in whole milliseconds, rounded (the stream's timecode unit).
fn ms_round(ns: f64) -> Duration {
    Duration::from_millis((ns / 1e6).round().max(0.0) as u64)
}

/// Frames of an Annex-B video elementary stream at `fps` (and optional AAC).
///
/// Video frames carry Annex-B payloads ([`crate::mkv::builder::Payload::AnnexB`])
/// with their in-band parameter sets, so whoever writes them takes the
/// CodecPrivate and size from the stream. Presentation times follow the
/// picture order counts when the stream has B-frames; decode times are the
/// stream order at `fps`.
///
/// Errors: [`MuxError::BadFrameRate`], [`MuxError::NoVideo`], an audio
/// setting AAC cannot carry ([`MuxError::Codec`]).
pub fn annexb_frames(
    codec: VideoCodec,
    video: &Bytes,
    fps: f64,
    audio: Option<&AacInput>,
) -> Result<FrameInput, MuxError> {
    if !(fps.is_finite() && fps > 0.0) {
        return Err(MuxError::BadFrameRate(fps));
    }
    let units = access_units(codec, video);
    if units.is_empty() {
        return Err(MuxError::NoVideo);
    }
    let codec_id = match codec {
        VideoCodec::H264 => h264::CODEC_ID,
        VideoCodec::H265 => h265::CODEC_ID,
    };
    // Size and CodecPrivate come from the SPS in the stream.
    let mut video_track = TrackConfig::video(1, codec_id, Bytes::new(), 0, 0);
    video_track.codec_private = None;
    let mut tracks = vec![video_track];
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
    let keys: Vec<bool> = units.iter().map(|u| codec.is_key_unit(u)).collect();
    // Presentation order from the picture order counts (B-frames), else
    // the order of the stream. Counted from the first key frame: pictures
    // before it (a recording cut mid-GOP) cannot be read without the
    // parameter sets that come with it, and are skipped anyway.
    let first_key = keys.iter().position(|k| *k).unwrap_or(units.len());
    let mut order: Vec<usize> = (0..units.len()).collect();
    if let Some(o) = presentation_order(codec, &units[first_key..], &keys[first_key..]) {
        for (i, rank) in o.into_iter().enumerate() {
            order[first_key + i] = first_key + rank;
        }
    }
    let slot = |i: usize| ms_round(i as f64 * 1e9 / fps);
    let mut frames: Vec<(Duration, Frame)> = units
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let (pts, dts) = (slot(order[i]), slot(i));
            (
                dts,
                Frame {
                    track: 1,
                    pts,
                    dts: (dts != pts).then_some(dts),
                    key: keys[i],
                    payload: crate::mkv::builder::Payload::AnnexB(u.clone()),
                },
            )
        })
        .collect();
    if let Some(a) = audio {
        let rate = f64::from(a.header.sample_rate);
        for (k, f) in a.frames.iter().enumerate() {
            let t = ms_round(k as f64 * 1024.0 * 1e9 / rate);
            frames.push((
                t,
                Frame {
                    track: 2,
                    pts: t,
                    dts: None,
                    key: true,
                    payload: crate::mkv::builder::Payload::Raw(f.clone()),
                },
            ));
        }
    }
    // Decode order across tracks; video first at equal times (a stable
    // sort keeps each track's own order).
    frames.sort_by_key(|(t, f)| (*t, f.track));
    Ok(FrameInput {
        tracks,
        frames: frames.into_iter().map(|(_, f)| f).collect(),
    })
}

/// Writes frames (in decode order) as a KVS-style Matroska stream with the
/// producer's state machine (see the module docs); timecodes are the
/// frames' presentation times in ms from 0.
///
/// Errors: a frame the producer refuses ([`MuxError::Frame`], e.g. decode
/// times going back, or no parameter sets in the first key frame),
/// [`MuxError::NoKeyFrame`] when no video key frame came.
pub fn mux_frames(tracks: Vec<TrackConfig>, frames: Vec<Frame>) -> Result<MuxOutput, MuxError> {
    let video_track = tracks
        .iter()
        .find(|t| matches!(t.kind, super::builder::TrackKind::Video { .. }))
        .map(|t| t.number);
    let mut cfg = ProducerConfig::new(tracks, 0);
    // A file holds everything: no buffer limit, no service to wait for.
    cfg.max_buffer_bytes = usize::MAX;
    cfg.max_buffer_duration = Duration::MAX;
    cfg.ack_level = AckLevel::Received;
    let mut core = ProducerCore::new(cfg)?;
    let now = Instant::now();
    let mut out = MuxOutput::default();
    let (mut video, mut audio) = (0usize, 0usize);
    for f in frames {
        let is_video = Some(f.track) == video_track;
        match core.put_frame(f, now)? {
            PutOutcome::Accepted if is_video => video += 1,
            PutOutcome::Accepted => audio += 1,
            PutOutcome::Skipped => out.leading_skipped += 1,
            // The buffer has no limit.
            PutOutcome::Full => {}
        }
    }
    core.flush(now)?;
    while let Some(e) = core.next_event() {
        if let ProducerEvent::FragmentDropped {
            reason,
            producer_timestamp,
            ..
        } = e
        {
            // The stream starts at 0: its timestamps are offsets.
            let timecode_ms = producer_timestamp
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            return Err(MuxError::Unwritable {
                timecode_ms,
                reason: reason.to_string(),
            });
        }
    }
    if video_track.is_some() && video == 0 {
        return Err(MuxError::NoKeyFrame(out.leading_skipped));
    }
    let written = core.drain_as_file(&mut out.chunks);
    out.headers = written.headers;
    out.fragments = written.fragments.len();
    out.fragment_chunks = written.fragments;
    out.video_frames = video;
    out.audio_frames = audio;
    Ok(out)
}

/// Muxes an Annex-B video elementary stream (and optional AAC) at `fps`:
/// [`annexb_frames`] then [`mux_frames`].
pub fn mux_annexb(
    codec: VideoCodec,
    video: &Bytes,
    fps: f64,
    audio: Option<&AacInput>,
) -> Result<MuxOutput, MuxError> {
    let input = annexb_frames(codec, video, fps, audio)?;
    mux_frames(input.tracks, input.frames)
}
