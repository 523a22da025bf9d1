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

use super::builder::{BuildError, Payload, TrackConfig};
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
    /// The Matroska input declares no track.
    #[error("no Matroska tracks found")]
    NoTracks,
    /// The Matroska input is not valid.
    #[error(transparent)]
    Parse(#[from] crate::mkv::ParseError),
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
    /// Why the input ended early, if it was cut inside an element (the
    /// frames before the cut are kept).
    pub cut: Option<crate::mkv::ParseError>,
}

impl FrameInput {
    /// From the first frame's presentation to the last one's (0 without
    /// frames): how far back a producer's start time goes so that the
    /// whole input lies in the past.
    pub fn duration(&self) -> Duration {
        let first = self.frames.iter().map(|f| f.pts).min();
        let last = self.frames.iter().map(|f| f.pts).max();
        match (first, last) {
            (Some(a), Some(b)) => b - a,
            _ => Duration::ZERO,
        }
    }
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

/// The frames of a Matroska/WebM file (or a GetMedia/PutMedia stream) as
/// a producer's input: its first stream header's tracks, and every frame
/// with presentation times from 0 and decode times (per track, the sorted
/// presentation times; presentation moved later, all tracks alike, just
/// enough that no frame is shown before it is decoded). A later stream
/// header with other H.264/H.265 parameter sets (a camera reconfigured)
/// puts them in band, Annex-B, in front of the track's next key frame, so a
/// producer starts a new fragment with a new header there. Input cut short
/// keeps the frames before the cut (with a warning).
///
/// Errors: [`MuxError::Parse`] for bad Matroska, [`MuxError::NoTracks`],
/// [`MuxError::Codec`] for a frame whose NAL lengths run past its end.
pub fn matroska_frames(data: Bytes) -> Result<FrameInput, MuxError> {
    let (events, err) = crate::mkv::parse_all(data, crate::mkv::ParserConfig::default());
    let cut = match err {
        Some(e) if e.is_truncated() => {
            tracing::warn!(error = %e, "Matroska input cut short; the frames before the cut are kept");
            Some(e)
        }
        Some(e) => return Err(MuxError::Parse(e)),
        None => None,
    };
    let mut c = Collector::default();
    for e in events {
        c.on_event(e)?;
    }
    if c.tracks.is_empty() {
        return Err(MuxError::NoTracks);
    }
    let raw = std::mem::take(&mut c.raw);
    let origin = raw.iter().map(|(f, _)| f.timestamp_ns).min().unwrap_or(0);
    let mut shift = 0;
    let frames = time_frames(raw, &c.tracks, origin, &mut shift);
    Ok(FrameInput {
        tracks: c.tracks,
        frames,
        cut,
    })
}

/// Matroska events into raw frames: the first stream header's tracks, and
/// frames with the parameter sets of a later header put in band.
#[derive(Debug, Default)]
struct Collector {
    tracks: Vec<TrackConfig>,
    /// A later stream header with other parameter sets (a camera
    /// reconfigured): they go in band in front of the next key frame of the
    /// track, so the producer starts a fragment with a new header there.
    pending_sets: Vec<(u64, Bytes, usize)>,
    /// Frames not yet timed, and whether their payload is now Annex-B.
    raw: Vec<(crate::mkv::ParsedFrame, bool)>,
    /// Per video track, NAL units that came as a frame of their own with no
    /// picture (see [`Collector::no_picture`]), for the track's next frame.
    held: Vec<(u64, Vec<u8>)>,
}

impl Collector {
    fn on_event(&mut self, e: crate::mkv::Event) -> Result<(), MuxError> {
        match e {
            crate::mkv::Event::Tracks(t) => {
                let new: Vec<TrackConfig> = t.iter().map(TrackConfig::from).collect();
                for n in &new {
                    let hevc = match n.codec_id.as_str() {
                        crate::codec::h264::CODEC_ID => false,
                        crate::codec::h265::CODEC_ID => true,
                        _ => continue,
                    };
                    let Some((sets, size)) = n
                        .codec_private
                        .as_ref()
                        .and_then(|p| crate::codec::annexb::record_parameter_sets(p, hevc))
                    else {
                        continue;
                    };
                    let before = self.tracks.iter().find(|o| o.number == n.number);
                    if before.is_some_and(|o| o.codec_private != n.codec_private) {
                        self.pending_sets.retain(|(t, _, _)| *t != n.number);
                        self.pending_sets.push((n.number, Bytes::from(sets), size));
                    }
                }
                if self.tracks.is_empty() {
                    self.tracks = new;
                }
            }
            crate::mkv::Event::Frame(mut f) => {
                // A packet of parameter sets (and delimiters) alone, with the
                // time of the picture after it — what ffmpeg copies from an
                // RTSP camera that sends SPS/PPS in packets of their own —
                // joins that picture (two frames at one decode time are
                // refused by the producer), as decoders read them.
                if self.no_picture(&f) {
                    tracing::warn!(
                        track = f.track,
                        timecode = f.timecode,
                        "a frame without a picture (parameter sets alone) joins the next one"
                    );
                    match self.held.iter_mut().find(|(t, _)| *t == f.track) {
                        Some((_, h)) => h.extend_from_slice(&f.payload),
                        None => self.held.push((f.track, f.payload.to_vec())),
                    }
                    return Ok(());
                }
                if let Some(i) = self.held.iter().position(|(t, _)| *t == f.track) {
                    let (_, mut prefix) = self.held.remove(i);
                    prefix.extend_from_slice(&f.payload);
                    f.payload = Bytes::from(prefix);
                }
                // The rest of a picture split across frames (its later
                // slices at the picture's own time — ffmpeg copies a
                // multi-slice picture from RTSP so): joined to it.
                if self.continues_picture(&f) {
                    let size = self.video_codec(f.track).map_or(4, |(_, s)| s);
                    if let Some((prev, annexb)) =
                        self.raw.iter_mut().rev().find(|(p, _)| p.track == f.track)
                    {
                        tracing::warn!(
                            track = f.track,
                            timecode = f.timecode,
                            "a picture's slices came in two frames; joined"
                        );
                        let more = if *annexb {
                            crate::codec::annexb::to_annexb(&f.payload, size)?
                        } else {
                            f.payload.clone()
                        };
                        prev.payload = Bytes::from([&prev.payload[..], &more[..]].concat());
                        return Ok(());
                    }
                }
                if let Some(i) = self
                    .pending_sets
                    .iter()
                    .position(|(t, _, _)| *t == f.track && f.key)
                {
                    let (_, sets, size) = self.pending_sets.remove(i);
                    let au = crate::codec::annexb::to_annexb(&f.payload, size)?;
                    f.payload = Bytes::from([&sets[..], &au[..]].concat());
                    self.raw.push((f, true));
                } else {
                    self.raw.push((f, false));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Collector {
    /// Whether a frame of an H.264/H.265 track holds NAL units but no
    /// picture (no VCL NAL unit); false for any other frame (audio, a
    /// picture, a payload that does not parse).
    fn no_picture(&self, f: &crate::mkv::ParsedFrame) -> bool {
        let Some((codec, size)) = self.video_codec(f.track) else {
            return false;
        };
        let Ok(nals) = crate::codec::annexb::avcc_nals(&f.payload, size) else {
            return false;
        };
        !nals.is_empty() && !nals.iter().any(|n| codec.is_vcl(codec.nal_type(n)))
    }

    /// A video track's codec and NAL length size (from its avcC/hvcC
    /// record: avcC byte 4, hvcC byte 21, low two bits, plus one).
    fn video_codec(&self, track: u64) -> Option<(VideoCodec, usize)> {
        let t = self.tracks.iter().find(|t| t.number == track)?;
        let codec = match t.codec_id.as_str() {
            crate::codec::h264::CODEC_ID => VideoCodec::H264,
            crate::codec::h265::CODEC_ID => VideoCodec::H265,
            _ => return None,
        };
        let p = t.codec_private.as_deref()?;
        let at = if codec == VideoCodec::H264 { 4 } else { 21 };
        Some((codec, usize::from(p.get(at)? & 3) + 1))
    }

    /// Whether a video frame carries the later slices of the picture
    /// before it: the same time as the track's previous frame, and its
    /// first picture NAL unit is not a picture's first slice.
    fn continues_picture(&self, f: &crate::mkv::ParsedFrame) -> bool {
        let Some((codec, size)) = self.video_codec(f.track) else {
            return false;
        };
        let same_time = self
            .raw
            .iter()
            .rev()
            .find(|(p, _)| p.track == f.track)
            .is_some_and(|(p, _)| p.timestamp_ns == f.timestamp_ns);
        if !same_time {
            return false;
        }
        let Ok(nals) = crate::codec::annexb::avcc_nals(&f.payload, size) else {
            return false;
        };
        nals.iter()
            .find(|n| codec.is_vcl(codec.nal_type(n)))
            .is_some_and(|n| !codec.first_slice(n))
    }
}

/// Producer frames of raw Matroska frames: presentation times from
/// `origin` (ns), decode times per track the sorted presentation times,
/// presentation moved later (all tracks alike) just enough that no frame is
/// shown before it is decoded — by `shift` ns at least, which grows to what
/// these frames need.
fn time_frames(
    raw: Vec<(crate::mkv::ParsedFrame, bool)>,
    tracks: &[TrackConfig],
    origin: i64,
    shift: &mut i64,
) -> Vec<Frame> {
    let sorted: Vec<Vec<i64>> = tracks
        .iter()
        .map(|t| {
            let mut v: Vec<i64> = raw
                .iter()
                .filter(|(f, _)| f.track == t.number)
                .map(|(f, _)| f.timestamp_ns - origin)
                .collect();
            v.sort_unstable();
            v
        })
        .collect();
    let mut next = vec![0usize; tracks.len()];
    for (f, _) in &raw {
        if let Some(ti) = tracks.iter().position(|t| t.number == f.track) {
            *shift = (*shift).max(sorted[ti][next[ti]] - (f.timestamp_ns - origin));
            next[ti] += 1;
        }
    }
    let mut next = vec![0usize; tracks.len()];
    let mut frames: Vec<Frame> = Vec::with_capacity(raw.len());
    for (f, annexb) in raw {
        let Some(ti) = tracks.iter().position(|t| t.number == f.track) else {
            continue;
        };
        let pts = f.timestamp_ns - origin + *shift;
        let dts = sorted[ti][next[ti]];
        next[ti] += 1;
        let ns = |v: i64| Duration::from_nanos(v.max(0) as u64);
        frames.push(Frame {
            track: f.track,
            pts: ns(pts),
            dts: (dts != pts).then(|| ns(dts)),
            key: f.key,
            payload: if annexb {
                Payload::AnnexB(f.payload)
            } else {
                Payload::Raw(f.payload)
            },
        });
    }
    frames
}

/// A Matroska/WebM stream read as it arrives (a pipe from ffmpeg or
/// GStreamer), into producer frames as [`matroska_frames`] makes them.
/// Frames are handed out a group of pictures at a time — when the first
/// video track's next key frame arrives — since decode times come from the
/// sorted presentation times of the group (B-frames); an input without
/// video hands out every frame as it comes. Memory: one group of pictures.
#[derive(Debug)]
pub struct MatroskaReader {
    parser: crate::mkv::Parser,
    collector: Collector,
    origin: Option<i64>,
    shift: i64,
}

impl Default for MatroskaReader {
    fn default() -> Self {
        Self::new()
    }
}

impl MatroskaReader {
    /// A reader that has seen nothing yet.
    pub fn new() -> Self {
        MatroskaReader {
            parser: crate::mkv::Parser::new(crate::mkv::ParserConfig::default()),
            collector: Collector::default(),
            origin: None,
            shift: 0,
        }
    }

    /// The first stream header's tracks, once it has arrived.
    pub fn tracks(&self) -> Option<&[TrackConfig]> {
        (!self.collector.tracks.is_empty()).then_some(&self.collector.tracks[..])
    }

    /// Takes the next bytes of the stream; returns the frames now complete
    /// (a group of pictures, in decode order).
    ///
    /// Errors: [`MuxError::Parse`] for input that is not Matroska (the
    /// stream cannot go on), [`MuxError::Codec`] for a frame whose NAL
    /// lengths run past its end.
    pub fn push(&mut self, chunk: Bytes) -> Result<Vec<Frame>, MuxError> {
        self.parser.push(chunk);
        loop {
            match self.parser.next_event() {
                Ok(Some(e)) => self.collector.on_event(e)?,
                Ok(None) => break,
                Err(e) => return Err(MuxError::Parse(e)),
            }
        }
        Ok(self.release(false))
    }

    /// The stream ended: the frames still held. A stream cut inside an
    /// element keeps the frames before the cut.
    ///
    /// Errors: [`MuxError::NoTracks`] when no stream header came.
    pub fn finish(&mut self) -> Result<Vec<Frame>, MuxError> {
        self.parser.finish();
        loop {
            match self.parser.next_event() {
                Ok(Some(e)) => self.collector.on_event(e)?,
                Ok(None) => break,
                Err(e) if e.is_truncated() => {
                    tracing::warn!(error = %e, "Matroska input cut short; the frames before the cut are kept");
                    break;
                }
                Err(e) => return Err(MuxError::Parse(e)),
            }
        }
        if self.collector.tracks.is_empty() {
            return Err(MuxError::NoTracks);
        }
        Ok(self.release(true))
    }

    /// The frames before the newest video key frame (all of them at the
    /// end, or without video), timed.
    fn release(&mut self, all: bool) -> Vec<Frame> {
        let c = &mut self.collector;
        let video = c
            .tracks
            .iter()
            .find(|t| matches!(t.kind, crate::mkv::builder::TrackKind::Video { .. }))
            .map(|t| t.number);
        let upto = match (all, video) {
            (true, _) | (false, None) => c.raw.len(),
            (false, Some(v)) => c
                .raw
                .iter()
                .rposition(|(f, _)| f.track == v && f.key)
                .unwrap_or(0),
        };
        if upto == 0 || c.tracks.is_empty() {
            return Vec::new();
        }
        let batch: Vec<_> = c.raw.drain(..upto).collect();
        let origin = *self
            .origin
            .get_or_insert_with(|| batch.iter().map(|(f, _)| f.timestamp_ns).min().unwrap_or(0));
        time_frames(batch, &c.tracks, origin, &mut self.shift)
    }
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
        cut: None,
    })
}

/// What a producer's input is, told from its first bytes (a pipe has no
/// file name to go by).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Matroska or WebM (the EBML magic, `1A 45 DF A3`).
    Matroska,
    /// An Annex-B elementary stream (ITU-T H.264 Annex B; H.265 Annex B).
    AnnexB(VideoCodec),
}

impl InputFormat {
    /// The format of an input starting with `head` (16 bytes are plenty);
    /// `None` when it is none of them. Annex-B: a start code, then the first
    /// NAL unit's header — H.265's two bytes name a VPS, SPS, PPS, access
    /// unit delimiter or SEI (types 32–35, 39) with layer 0 and temporal id
    /// 0; H.264's one byte a slice, IDR, SEI, SPS, PPS or delimiter (types
    /// 1, 5–9) with the forbidden bit clear. (0x46 0x01, an H.265 access
    /// unit delimiter, would be an H.264 SEI with `nal_ref_idc` 2, which
    /// H.264 forbids, so H.265 is tried first.)
    pub fn sniff(head: &[u8]) -> Option<InputFormat> {
        if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
            return Some(InputFormat::Matroska);
        }
        let zeros = head.iter().take_while(|b| **b == 0).count();
        if zeros < 2 || head.get(zeros) != Some(&1) {
            return None;
        }
        let nal = head.get(zeros + 1..)?;
        let (&b0, b1) = (nal.first()?, nal.get(1));
        let h265 = (b0 >> 1) & 0x3f;
        if b0 & 0x81 == 0 && matches!(h265, 32..=35 | 39) && b1 == Some(&1) {
            return Some(InputFormat::AnnexB(VideoCodec::H265));
        }
        (b0 & 0x80 == 0 && matches!(b0 & 0x1f, 1 | 5..=9))
            .then_some(InputFormat::AnnexB(VideoCodec::H264))
    }
}

/// An Annex-B H.264/H.265 elementary stream read as it arrives (a pipe),
/// into producer frames as [`annexb_frames`] makes them at `fps`: a group
/// of pictures at a time — when the next key frame's access unit has
/// arrived — so presentation order follows the picture order counts
/// (B-frames). Pictures before the first key frame cannot be decoded and
/// are dropped (counted in [`AnnexBReader::skipped`]). Memory: one group of
/// pictures.
#[derive(Debug)]
pub struct AnnexBReader {
    codec: VideoCodec,
    fps: f64,
    buf: Vec<u8>,
    /// Pictures handed out so far.
    emitted: u64,
    skipped: usize,
}

impl AnnexBReader {
    /// A reader of `codec` at `fps` pictures a second.
    ///
    /// Errors: [`MuxError::BadFrameRate`] unless `fps` is positive and finite.
    pub fn new(codec: VideoCodec, fps: f64) -> Result<Self, MuxError> {
        if !(fps.is_finite() && fps > 0.0) {
            return Err(MuxError::BadFrameRate(fps));
        }
        Ok(AnnexBReader {
            codec,
            fps,
            buf: Vec::new(),
            emitted: 0,
            skipped: 0,
        })
    }

    /// The track the frames belong to (track 1; CodecPrivate and size from
    /// the parameter sets in the stream).
    pub fn track(&self) -> TrackConfig {
        let codec_id = match self.codec {
            VideoCodec::H264 => h264::CODEC_ID,
            VideoCodec::H265 => h265::CODEC_ID,
        };
        let mut t = TrackConfig::video(1, codec_id, Bytes::new(), 0, 0);
        t.codec_private = None;
        t
    }

    /// Pictures dropped before the first key frame.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Takes the next bytes; returns the pictures of every group now
    /// complete, in decode order.
    ///
    /// Errors: as [`annexb_frames`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Frame>, MuxError> {
        // Only a key frame's arrival completes a group: the new bytes (and
        // a start code cut across the previous chunk) are looked at, and
        // the buffer is split into access units only then.
        let from = self.buf.len().saturating_sub(5);
        self.buf.extend_from_slice(chunk);
        let (codec, region) = (self.codec, &self.buf[from..]);
        let mut key = false;
        crate::codec::annexb::for_each_nal(region, |s, _| {
            key |= codec.is_key(codec.nal_type(&region[s..]));
        });
        if !key {
            return Ok(Vec::new());
        }
        self.release(false)
    }

    /// The stream ended: the pictures still held.
    ///
    /// Errors: as [`annexb_frames`].
    pub fn finish(&mut self) -> Result<Vec<Frame>, MuxError> {
        self.release(true)
    }

    fn release(&mut self, all: bool) -> Result<Vec<Frame>, MuxError> {
        let data = Bytes::copy_from_slice(&self.buf);
        let units = access_units(self.codec, &data);
        let keys: Vec<usize> = units
            .iter()
            .enumerate()
            .filter(|(_, u)| self.codec.is_key_unit(u))
            .map(|(i, _)| i)
            .collect();
        // Up to the newest key frame (whose group may still grow), or all.
        let upto = if all {
            units.len()
        } else {
            keys.last().copied().unwrap_or(0)
        };
        if upto == 0 {
            return Ok(Vec::new());
        }
        let end = if upto == units.len() {
            data.len()
        } else {
            units[upto].as_ptr() as usize - data.as_ptr() as usize
        };
        self.buf.drain(..end);
        let first_key = keys.first().copied().filter(|k| *k < upto);
        let Some(first_key) = first_key else {
            // Nothing decodable yet: pictures before any key frame.
            self.skipped += upto;
            return Ok(Vec::new());
        };
        if self.emitted == 0 {
            self.skipped += first_key;
        }
        let start = units[first_key].as_ptr() as usize - data.as_ptr() as usize;
        let batch = data.slice(if self.emitted == 0 { start } else { 0 }..end);
        let mut frames = annexb_frames(self.codec, &batch, self.fps, None)?.frames;
        let offset = ms_round(self.emitted as f64 * 1e9 / self.fps);
        for f in &mut frames {
            f.pts += offset;
            f.dts = f.dts.map(|d| d + offset);
        }
        self.emitted += frames.len() as u64;
        Ok(frames)
    }
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

#[cfg(test)]
mod sniff_tests {
    use super::*;

    #[test]
    fn inputs_are_told_apart_by_their_first_bytes() {
        let h264 = |b: &[u8]| InputFormat::sniff(b);
        assert_eq!(
            h264(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F]),
            Some(InputFormat::Matroska)
        );
        // H.264: SPS, delimiter, IDR behind 3- and 4-byte start codes.
        for nal in [0x67, 0x09, 0x65, 0x06] {
            assert_eq!(
                h264(&[0, 0, 0, 1, nal, 0x10]),
                Some(InputFormat::AnnexB(VideoCodec::H264)),
                "{nal:#x}"
            );
            assert_eq!(
                h264(&[0, 0, 1, nal]),
                Some(InputFormat::AnnexB(VideoCodec::H264))
            );
        }
        // H.265: VPS, SPS, access unit delimiter (0x46 0x01 is not H.264).
        for nal in [0x40, 0x42, 0x46] {
            assert_eq!(
                h264(&[0, 0, 0, 1, nal, 0x01, 0x0c]),
                Some(InputFormat::AnnexB(VideoCodec::H265)),
                "{nal:#x}"
            );
        }
        // Neither.
        for other in [
            &b"RIFF"[..],
            &[0, 0, 0, 1, 0x80],
            &[0, 0, 2, 0x67],
            &[],
            &[0, 0, 1],
        ] {
            assert_eq!(h264(other), None, "{other:?}");
        }
    }
}

#[cfg(test)]
mod quirk_tests {
    use super::*;
    use crate::mkv::builder::{FragmentBuilder, FrameIn, StreamConfig};

    const SPS: &[u8] = &[
        0x67, 0x4d, 0x40, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2e, 0x48,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xcc, 0xb2];

    fn avcc(nals: &[&[u8]]) -> Bytes {
        let mut out = Vec::new();
        for n in nals {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n);
        }
        Bytes::from(out)
    }

    /// What ffmpeg copies from an RTSP camera that sends a picture's slices
    /// (and its parameter sets) in packets of their own: frames at one time
    /// that together are one picture. They come out as one frame each
    /// picture, the producer's rule of increasing decode times kept.
    #[test]
    fn a_picture_split_across_frames_is_joined() {
        let private =
            h264::avcc_record(&[Bytes::from_static(SPS)], &[Bytes::from_static(PPS)]).unwrap();
        let track = TrackConfig::video(1, h264::CODEC_ID, private, 640, 360);
        let mut b = FragmentBuilder::new(StreamConfig::new(vec![track])).unwrap();
        let first_slice: &[u8] = &[0x65, 0x88, 0x84, 0x01];
        let second_slice: &[u8] = &[0x65, 0x01, 0x42, 0x22];
        let p_slice: &[u8] = &[0x41, 0x9a, 0x38, 0x0d];
        let frame = |timecode: i64, key: bool, payload: Bytes| FrameIn {
            track: 1,
            timecode,
            key,
            payload: Payload::Raw(payload),
        };
        let mut out = vec![b.header()];
        b.fragment(
            &[
                // Parameter sets alone, at the key picture's time.
                frame(0, true, avcc(&[&[0x09, 0x10], SPS, PPS])),
                frame(0, true, avcc(&[first_slice])),
                frame(0, true, avcc(&[second_slice])),
                frame(40, false, avcc(&[p_slice])),
            ],
            &[],
            &mut out,
        )
        .unwrap();
        let input = matroska_frames(Bytes::from(out.concat())).unwrap();
        let got: Vec<(Duration, Bytes)> = input
            .frames
            .iter()
            .map(|f| match &f.payload {
                Payload::Raw(b) => (f.pts, b.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    Duration::ZERO,
                    avcc(&[&[0x09, 0x10], SPS, PPS, first_slice, second_slice])
                ),
                (Duration::from_millis(40), avcc(&[p_slice])),
            ]
        );
    }
}
