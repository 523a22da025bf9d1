//! The KVS fragment builder: the stream header (EBML header, unknown-size
//! Segment, Info, Tracks) once per connection, then one unknown-size Cluster
//! per fragment with its metadata Tags in front, in the layout of the AWS
//! producers (see the protocol notes, §2.5).
//!
//! No I/O: output is a list of `Bytes` chunks. Element headers and small
//! payloads are packed into one buffer; payloads of [`ZERO_COPY_MIN`] bytes
//! or more are referenced, not copied, so every payload byte is copied at
//! most once (zero times for large frames, Annex-B input included).

use bytes::{BufMut, Bytes, BytesMut};

use super::ids;
use crate::codec::annexb::for_each_nal;
use crate::ebml::vint::size_width;
use crate::ebml::writer;

/// Payloads at least this large are passed through as their own chunk.
pub const ZERO_COPY_MIN: usize = 2048;

/// Most tracks the service accepts in a stream.
pub const MAX_TRACKS: usize = 3;
/// Most metadata tags per fragment.
pub const MAX_TAGS: usize = 10;
/// Longest tag name, bytes.
pub const MAX_TAG_NAME: usize = 128;
/// Longest tag value, bytes.
pub const MAX_TAG_VALUE: usize = 256;
/// Tag names producers may send despite the reserved `AWS` prefix.
pub const PRODUCER_TAGS: [&str; 3] = [
    "AWS_KINESISVIDEO_END_OF_FRAGMENT",
    "AWS_KINESISVIDEO_IMAGE_GENERATION",
    "AWS_KINESISVIDEO_NOTIFICATION",
];

/// Why a header or fragment could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No tracks, or more than the service accepts.
    #[error("a stream needs 1 to {MAX_TRACKS} tracks, got {0}")]
    TrackCount(usize),
    /// A track number outside 1..=127 or used twice.
    #[error("track number {0} is invalid or repeated")]
    BadTrackNumber(u64),
    /// A frame names a track the header does not declare.
    #[error("frame {index} names undeclared track {track}")]
    UnknownTrack {
        /// Index of the frame in the fragment.
        index: usize,
        /// The track it names.
        track: u64,
    },
    /// A fragment with no frames.
    #[error("a fragment needs at least one frame")]
    EmptyFragment,
    /// The first frame of a fragment is not a key frame.
    #[error("a fragment must start with a key frame")]
    NoKeyFrameFirst,
    /// A frame too far from the cluster timecode for the 16-bit block offset.
    #[error("frame {index} is {delta} timecode units from its fragment start; blocks hold -32768..=32767")]
    TimecodeOutOfRange {
        /// Index of the frame in the fragment.
        index: usize,
        /// Its offset from the fragment start.
        delta: i64,
    },
    /// A frame timestamp before the fragment timecode 0 origin.
    #[error("fragment timecode {0} is negative")]
    NegativeTimecode(i64),
    /// More than [`MAX_TAGS`] tags on one fragment.
    #[error("{0} metadata tags on one fragment; at most {MAX_TAGS}")]
    TooManyTags(usize),
    /// A tag name that is empty, too long or uses the reserved prefix.
    #[error("invalid tag name {name:?}: {reason}")]
    BadTagName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A tag value over [`MAX_TAG_VALUE`] bytes.
    #[error("value of tag {name:?} is {len} bytes; at most {MAX_TAG_VALUE}")]
    TagValueTooLong {
        /// The tag's name.
        name: String,
        /// The value's length.
        len: usize,
    },
    /// An Annex-B frame with no NAL unit in it.
    #[error("frame {0} is marked Annex-B but holds no NAL unit")]
    EmptyAnnexB(usize),
}

/// Kind-specific settings of a track.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackKind {
    /// A video track.
    Video {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// An audio track.
    Audio {
        /// Sampling rate, Hz.
        sampling_frequency: f64,
        /// Channel count.
        channels: u8,
        /// Bits per sample, when meaningful (PCM, G.711).
        bit_depth: Option<u8>,
    },
}

/// One track of the stream header.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackConfig {
    /// Track number blocks refer to (1..=127).
    pub number: u64,
    /// `TrackUID` (the application's track id in the AWS producers).
    pub uid: u64,
    /// Matroska CodecID, e.g. `V_MPEG4/ISO/AVC`.
    pub codec_id: String,
    /// CodecPrivate (avcC, hvcC, AudioSpecificConfig, WAVEFORMATEX), if any.
    pub codec_private: Option<Bytes>,
    /// Track name.
    pub name: Option<String>,
    /// Frame duration, ns, when constant.
    pub default_duration_ns: Option<u64>,
    /// Video or audio settings.
    pub kind: TrackKind,
}

impl TrackConfig {
    /// A video track.
    pub fn video(
        number: u64,
        codec_id: &str,
        codec_private: Bytes,
        width: u32,
        height: u32,
    ) -> Self {
        Self {
            number,
            uid: number,
            codec_id: codec_id.to_owned(),
            codec_private: Some(codec_private),
            name: Some("video".to_owned()),
            default_duration_ns: None,
            kind: TrackKind::Video { width, height },
        }
    }

    /// An AAC-LC track at `rate` Hz with `channels` channels (the
    /// AudioSpecificConfig is derived), 1024 samples per frame.
    pub fn aac(number: u64, rate: u32, channels: u8) -> Result<Self, crate::codec::CodecError> {
        let asc = crate::codec::aac::audio_specific_config(2, rate, channels)?;
        let mut t = Self::audio(
            number,
            crate::codec::aac::CODEC_ID,
            Some(asc),
            f64::from(rate),
            channels,
        );
        t.default_duration_ns = Some(1024 * 1_000_000_000 / u64::from(rate.max(1)));
        Ok(t)
    }

    /// A G.711 track (`A_MS/ACM` with a WAVEFORMATEX), 8 bits per sample.
    pub fn g711(number: u64, law: crate::codec::g711::Law, rate: u32, channels: u8) -> Self {
        let wfx = crate::codec::g711::waveformatex(law, rate, u16::from(channels));
        let mut t = Self::audio(
            number,
            crate::codec::g711::CODEC_ID,
            Some(wfx),
            f64::from(rate),
            channels,
        );
        t.kind = TrackKind::Audio {
            sampling_frequency: f64::from(rate),
            channels,
            bit_depth: Some(8),
        };
        t
    }

    /// An audio track.
    pub fn audio(
        number: u64,
        codec_id: &str,
        codec_private: Option<Bytes>,
        rate: f64,
        channels: u8,
    ) -> Self {
        Self {
            number,
            uid: number,
            codec_id: codec_id.to_owned(),
            codec_private,
            name: Some("audio".to_owned()),
            default_duration_ns: None,
            kind: TrackKind::Audio {
                sampling_frequency: rate,
                channels,
                bit_depth: None,
            },
        }
    }
}

impl TrackConfig {
    /// The track's codec (from its CodecID).
    pub fn codec(&self) -> crate::codec::Codec {
        crate::codec::Codec::from_codec_id(&self.codec_id)
    }
}

impl From<&crate::mkv::TrackInfo> for TrackConfig {
    /// The settings that reproduce a parsed track (for re-muxing what was read).
    fn from(t: &crate::mkv::TrackInfo) -> Self {
        let kind = match (t.video, t.audio) {
            (Some(v), _) => TrackKind::Video {
                width: v.pixel_width as u32,
                height: v.pixel_height as u32,
            },
            (None, Some(a)) => TrackKind::Audio {
                sampling_frequency: a.sampling_frequency,
                channels: a.channels.min(255) as u8,
                bit_depth: a.bit_depth.map(|b| b.min(255) as u8),
            },
            (None, None) if t.track_type == crate::mkv::types::TRACK_TYPE_AUDIO => {
                TrackKind::Audio {
                    sampling_frequency: 8000.0,
                    channels: 1,
                    bit_depth: None,
                }
            }
            (None, None) => TrackKind::Video {
                width: 0,
                height: 0,
            },
        };
        Self {
            number: t.number,
            uid: t.uid.unwrap_or(t.number),
            codec_id: t.codec_id.clone(),
            codec_private: t.codec_private.clone(),
            name: t.name.clone(),
            default_duration_ns: t.default_duration_ns,
            kind,
        }
    }
}

/// Stream-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Nanoseconds per timecode unit (default 1,000,000: 1 ms, as the service expects).
    pub timecode_scale_ns: u64,
    /// The tracks, 1 to 3.
    pub tracks: Vec<TrackConfig>,
    /// `SegmentUID`.
    pub segment_uid: [u8; 16],
    /// `Title`, if any.
    pub title: Option<String>,
    /// `MuxingApp` and `WritingApp`.
    pub app: String,
    /// `DateUTC`: the wall-clock time of timecode 0, if known (a merged
    /// file that starts at 0 records where it started).
    pub date_utc: Option<std::time::SystemTime>,
}

impl StreamConfig {
    /// Settings with the defaults and these tracks.
    pub fn new(tracks: Vec<TrackConfig>) -> Self {
        Self {
            timecode_scale_ns: 1_000_000,
            tracks,
            segment_uid: [0x6B; 16],
            title: None,
            app: concat!("kvs-rs ", env!("CARGO_PKG_VERSION")).to_owned(),
            date_utc: None,
        }
    }
}

/// A frame to put in a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameIn {
    /// Track number.
    pub track: u64,
    /// Presentation time in timecode units (absolute, like the cluster timecode).
    pub timecode: i64,
    /// Key frame flag.
    pub key: bool,
    /// The payload.
    pub payload: Payload,
}

/// A frame payload as the application has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Stored as given (AVCC video, raw AAC, G.711 …).
    Raw(Bytes),
    /// H.264/H.265 Annex-B: converted to 4-byte AVCC lengths while writing.
    AnnexB(Bytes),
}

impl Payload {
    /// An H.264/H.265 access unit whose form is not said: Annex-B or AVCC
    /// (4-byte NAL unit lengths). ITU-T H.264 B.1.2 (and H.265 B.2.2) puts a
    /// 4-byte start code (`00 00 00 01`) before the first NAL unit of an
    /// access unit, which as AVCC would be a 1-byte NAL unit — nothing a
    /// decoder uses: so that prefix is Annex-B. Otherwise the bytes are
    /// AVCC when their lengths cover them exactly (a NAL unit of 256–511
    /// bytes starts `00 00 01` as AVCC too), else Annex-B if they start
    /// with a 3-byte start code, else taken as they are.
    pub fn video(data: Bytes) -> Self {
        if data.starts_with(&[0, 0, 0, 1]) {
            return Self::AnnexB(data);
        }
        let mut at = 0usize;
        while let Some(len) = data.get(at..at + 4) {
            let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            at = at.saturating_add(4).saturating_add(n);
        }
        if at == data.len() || !data.starts_with(&[0, 0, 1]) {
            Self::Raw(data)
        } else {
            Self::AnnexB(data)
        }
    }

    /// An access unit declared Annex-B (Android MediaCodec's output),
    /// checked: it must start with a start code (ITU-T H.264 Annex B).
    /// Errors: [`crate::codec::CodecError::NotAnnexB`] (AVCC given as
    /// Annex-B, say), [`crate::codec::CodecError::Missing`] for no bytes.
    pub fn annexb(data: Bytes) -> Result<Self, crate::codec::CodecError> {
        if data.is_empty() {
            return Err(crate::codec::CodecError::Missing("access unit"));
        }
        if !crate::codec::annexb::is_annexb(&data) {
            return Err(crate::codec::CodecError::NotAnnexB);
        }
        Ok(Self::AnnexB(data))
    }

    /// An access unit declared AVCC with 4-byte lengths (iOS
    /// VideoToolbox's output), checked: the lengths must cover it exactly
    /// (ISO/IEC 14496-15 §5.3.2). Errors:
    /// [`crate::codec::CodecError::BadLength`] (Annex-B given as AVCC, a
    /// cut buffer), [`crate::codec::CodecError::Missing`] for no bytes.
    pub fn avcc(data: Bytes) -> Result<Self, crate::codec::CodecError> {
        if data.is_empty() {
            return Err(crate::codec::CodecError::Missing("access unit"));
        }
        let nals = crate::codec::annexb::avcc_nals(&data, 4)?;
        if nals.iter().any(Bytes::is_empty) {
            return Err(crate::codec::CodecError::BadLength {
                offset: 0,
                len: 0,
                available: data.len(),
            });
        }
        Ok(Self::Raw(data))
    }

    /// Bytes as the application gave them.
    pub fn len(&self) -> usize {
        match self {
            Self::Raw(b) | Self::AnnexB(b) => b.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame as it is written, and as a reader gets it back: Annex-B
    /// as AVCC with 4-byte lengths, raw as given.
    ///
    /// Errors: [`crate::codec::CodecError::NotAnnexB`] for Annex-B without
    /// a start code.
    pub fn written(&self) -> Result<Bytes, crate::codec::CodecError> {
        match self {
            Self::Raw(b) => Ok(b.clone()),
            Self::AnnexB(b) => crate::codec::annexb::to_avcc(b),
        }
    }
}

/// A fragment metadata tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Name (≤ 128 bytes; no `AWS` prefix except the producer tags).
    pub name: String,
    /// Value (≤ 256 bytes).
    pub value: String,
}

/// Checks a set of fragment tags against the service's limits.
pub fn validate_tags(tags: &[Tag]) -> Result<(), BuildError> {
    if tags.len() > MAX_TAGS {
        return Err(BuildError::TooManyTags(tags.len()));
    }
    for t in tags {
        let bad = |reason| BuildError::BadTagName {
            name: t.name.clone(),
            reason,
        };
        if t.name.is_empty() {
            return Err(bad("empty"));
        }
        if t.name.len() > MAX_TAG_NAME {
            return Err(bad("longer than 128 bytes"));
        }
        if t.name.starts_with("AWS") && !PRODUCER_TAGS.contains(&t.name.as_str()) {
            return Err(bad("the AWS prefix is reserved"));
        }
        if t.value.len() > MAX_TAG_VALUE {
            return Err(BuildError::TagValueTooLong {
                name: t.name.clone(),
                len: t.value.len(),
            });
        }
    }
    Ok(())
}

/// Builds the stream header and fragments of one stream.
#[derive(Debug, Clone)]
pub struct FragmentBuilder {
    cfg: StreamConfig,
    scratch: BytesMut,
    nals: Vec<(usize, usize)>,
}

impl FragmentBuilder {
    /// Validates the settings and returns a builder.
    pub fn new(cfg: StreamConfig) -> Result<Self, BuildError> {
        if cfg.tracks.is_empty() || cfg.tracks.len() > MAX_TRACKS {
            return Err(BuildError::TrackCount(cfg.tracks.len()));
        }
        for (i, t) in cfg.tracks.iter().enumerate() {
            if t.number == 0
                || t.number > 127
                || cfg.tracks[..i].iter().any(|o| o.number == t.number)
            {
                return Err(BuildError::BadTrackNumber(t.number));
            }
        }
        Ok(Self {
            cfg,
            scratch: BytesMut::with_capacity(64 * 1024),
            nals: Vec::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &StreamConfig {
        &self.cfg
    }

    /// EBML header, unknown-size Segment, Info and Tracks.
    pub fn header(&self) -> Bytes {
        let c = &self.cfg;
        let mut out = Vec::with_capacity(512);
        writer::ebml_header(&mut out, "matroska", 2);
        writer::master_unknown(&mut out, ids::SEGMENT);
        writer::master(&mut out, ids::INFO, |b| {
            writer::element(b, ids::SEGMENT_UID, &c.segment_uid);
            writer::uint(b, ids::TIMECODE_SCALE, c.timecode_scale_ns);
            if let Some(d) = c.date_utc {
                // Matroska's epoch is 2001-01-01T00:00:00 UTC.
                const EPOCH_2001_S: u64 = 978_307_200;
                let ns = match d.duration_since(std::time::UNIX_EPOCH) {
                    Ok(since) => {
                        since.as_nanos() as i128 - i128::from(EPOCH_2001_S) * 1_000_000_000
                    }
                    Err(_) => -(i128::from(EPOCH_2001_S) * 1_000_000_000),
                };
                let ns = ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
                writer::element(b, ids::DATE_UTC, &ns.to_be_bytes());
            }
            if let Some(t) = &c.title {
                writer::string(b, ids::TITLE, t);
            }
            writer::string(b, ids::MUXING_APP, &c.app);
            writer::string(b, ids::WRITING_APP, &c.app);
        });
        writer::master(&mut out, ids::TRACKS, |b| {
            for t in &c.tracks {
                writer::master(b, ids::TRACK_ENTRY, |e| {
                    writer::uint(e, ids::TRACK_NUMBER, t.number);
                    writer::uint8(e, ids::TRACK_UID, t.uid);
                    let ty = match t.kind {
                        TrackKind::Video { .. } => 1,
                        TrackKind::Audio { .. } => 2,
                    };
                    writer::uint(e, ids::TRACK_TYPE, ty);
                    writer::uint(e, ids::FLAG_LACING, 0);
                    if let Some(n) = &t.name {
                        writer::string(e, ids::NAME, n);
                    }
                    writer::string(e, ids::CODEC_ID, &t.codec_id);
                    if let Some(cp) = &t.codec_private {
                        writer::element(e, ids::CODEC_PRIVATE, cp);
                    }
                    if let Some(d) = t.default_duration_ns {
                        writer::uint(e, ids::DEFAULT_DURATION, d);
                    }
                    match t.kind {
                        TrackKind::Video { width, height } => writer::master(e, ids::VIDEO, |v| {
                            writer::uint(v, ids::PIXEL_WIDTH, u64::from(width));
                            writer::uint(v, ids::PIXEL_HEIGHT, u64::from(height));
                        }),
                        TrackKind::Audio {
                            sampling_frequency,
                            channels,
                            bit_depth,
                        } => writer::master(e, ids::AUDIO, |a| {
                            writer::float(a, ids::SAMPLING_FREQUENCY, sampling_frequency);
                            writer::uint(a, ids::CHANNELS, u64::from(channels));
                            if let Some(bd) = bit_depth {
                                writer::uint(a, ids::BIT_DEPTH, u64::from(bd));
                            }
                        }),
                    }
                });
            }
        });
        Bytes::from(out)
    }

    /// Metadata tags as the Tags elements that precede a fragment's Cluster
    /// (one Tags per item, as the AWS producers send them).
    pub fn tags(&self, tags: &[Tag]) -> Result<Bytes, BuildError> {
        validate_tags(tags)?;
        let mut out = Vec::new();
        for t in tags {
            write_tag(&mut out, &t.name, &t.value);
        }
        Ok(Bytes::from(out))
    }

    /// The end-of-fragment / end-of-session tag.
    pub fn end_of_fragment_tag() -> Bytes {
        let mut out = Vec::new();
        write_tag(&mut out, PRODUCER_TAGS[0], "");
        Bytes::from(out)
    }

    /// Writes one fragment — its tags, then an unknown-size Cluster with the
    /// frames in the order given — appending chunks to `out`. The cluster
    /// timecode is the first frame's. (The same bytes as
    /// [`Self::cluster_start`] followed by [`Self::block`] for each frame.)
    pub fn fragment(
        &mut self,
        frames: &[FrameIn],
        tags: &[Tag],
        out: &mut Vec<Bytes>,
    ) -> Result<(), BuildError> {
        let first = frames.first().ok_or(BuildError::EmptyFragment)?;
        for (index, f) in frames.iter().enumerate() {
            self.check_block(first.timecode, index, f)?;
        }
        out.push(self.cluster_start(first, tags)?);
        for (index, f) in frames.iter().enumerate() {
            self.write_block(first.timecode, index, f, out)?;
        }
        self.flush(out);
        Ok(())
    }

    /// The start of a fragment written frame by frame, as a producer streams
    /// it: `tags` (metadata that goes with this fragment), then an
    /// unknown-size Cluster whose Timecode is `first`'s. `first` is the
    /// fragment's first frame (a key frame, timecode ≥ 0), which the caller
    /// then writes with [`Self::block`] like every other.
    pub fn cluster_start(&mut self, first: &FrameIn, tags: &[Tag]) -> Result<Bytes, BuildError> {
        if !first.key {
            return Err(BuildError::NoKeyFrameFirst);
        }
        if first.timecode < 0 {
            return Err(BuildError::NegativeTimecode(first.timecode));
        }
        validate_tags(tags)?;
        let mut head = Vec::with_capacity(64);
        for t in tags {
            write_tag(&mut head, &t.name, &t.value);
        }
        writer::master_unknown(&mut head, ids::CLUSTER);
        writer::uint8(&mut head, ids::TIMECODE, first.timecode as u64);
        writer::uint(&mut head, ids::POSITION, 0);
        Ok(Bytes::from(head))
    }

    /// One frame's SimpleBlock in the Cluster started at `cluster_timecode`
    /// ([`Self::cluster_start`]), appended to `out` as chunks (payloads of
    /// [`ZERO_COPY_MIN`] bytes and more are referenced, not copied). `index` names the frame
    /// in errors. Nothing is written when the frame is refused.
    pub fn block(
        &mut self,
        cluster_timecode: i64,
        index: usize,
        frame: &FrameIn,
        out: &mut Vec<Bytes>,
    ) -> Result<(), BuildError> {
        self.check_block(cluster_timecode, index, frame)?;
        self.write_block(cluster_timecode, index, frame, out)?;
        self.flush(out);
        Ok(())
    }

    /// The checks a frame must pass to be written in a Cluster.
    fn check_block(&self, cluster_tc: i64, index: usize, f: &FrameIn) -> Result<(), BuildError> {
        if !self.cfg.tracks.iter().any(|t| t.number == f.track) {
            return Err(BuildError::UnknownTrack {
                index,
                track: f.track,
            });
        }
        let delta = f.timecode.wrapping_sub(cluster_tc);
        if i16::try_from(delta).is_err() {
            return Err(BuildError::TimecodeOutOfRange { index, delta });
        }
        if let Payload::AnnexB(p) = &f.payload {
            let mut any = false;
            for_each_nal(p, |_, _| any = true);
            if !any {
                return Err(BuildError::EmptyAnnexB(index));
            }
        }
        Ok(())
    }

    /// Writes a checked frame's block into the scratch buffer and `out`.
    fn write_block(
        &mut self,
        cluster_tc: i64,
        index: usize,
        f: &FrameIn,
        out: &mut Vec<Bytes>,
    ) -> Result<(), BuildError> {
        let rel = (f.timecode - cluster_tc) as i16;
        let flags = if f.key { 0x80 } else { 0 };
        match &f.payload {
            Payload::Raw(p) => {
                self.block_header(f.track, rel, flags, p.len() as u64);
                self.put_payload(p, out);
            }
            Payload::AnnexB(p) => {
                self.nals.clear();
                let nals = &mut self.nals;
                for_each_nal(p, |s, e| nals.push((s, e)));
                if self.nals.is_empty() {
                    return Err(BuildError::EmptyAnnexB(index));
                }
                let len: usize = self.nals.iter().map(|(s, e)| 4 + e - s).sum();
                self.block_header(f.track, rel, flags, len as u64);
                for i in 0..self.nals.len() {
                    let (s, e) = self.nals[i];
                    self.scratch.put_u32((e - s) as u32);
                    if e - s >= ZERO_COPY_MIN {
                        self.put_payload(&p.slice(s..e), out);
                    } else {
                        self.scratch.extend_from_slice(&p[s..e]);
                    }
                }
            }
        }
        Ok(())
    }

    fn block_header(&mut self, track: u64, rel: i16, flags: u8, payload_len: u64) {
        let body = payload_len + 4;
        let w = size_width(body);
        let marked = body | (1u64 << (7 * w));
        self.scratch.put_u8(ids::SIMPLE_BLOCK as u8);
        self.scratch
            .extend_from_slice(&marked.to_be_bytes()[8 - w..]);
        self.scratch.put_u8(0x80 | track as u8);
        self.scratch.put_i16(rel);
        self.scratch.put_u8(flags);
    }

    fn put_payload(&mut self, p: &Bytes, out: &mut Vec<Bytes>) {
        if p.len() >= ZERO_COPY_MIN {
            self.flush(out);
            out.push(p.clone());
        } else {
            self.scratch.extend_from_slice(p);
        }
    }

    fn flush(&mut self, out: &mut Vec<Bytes>) {
        if !self.scratch.is_empty() {
            out.push(self.scratch.split().freeze());
        }
    }
}

fn write_tag(out: &mut Vec<u8>, name: &str, value: &str) {
    writer::master(out, ids::TAGS, |tags| {
        writer::master(tags, ids::TAG, |tag| {
            writer::master(tag, ids::SIMPLE_TAG, |st| {
                writer::string(st, ids::TAG_NAME, name);
                writer::string(st, ids::TAG_STRING, value);
            });
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video() -> TrackConfig {
        TrackConfig::video(1, "V_MPEG4/ISO/AVC", Bytes::from_static(&[1]), 64, 64)
    }

    fn frame(track: u64, timecode: i64, key: bool) -> FrameIn {
        FrameIn {
            track,
            timecode,
            key,
            payload: Payload::Raw(Bytes::from_static(b"x")),
        }
    }

    #[test]
    fn video_payloads_are_told_apart_by_their_start_code() {
        let annexb = Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88]);
        let short = Bytes::from_static(&[0, 0, 1, 0x65, 0x88]);
        let avcc = Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]);
        assert_eq!(Payload::video(annexb.clone()), Payload::AnnexB(annexb));
        assert_eq!(Payload::video(short.clone()), Payload::AnnexB(short));
        assert_eq!(Payload::video(avcc.clone()), Payload::Raw(avcc));
        assert_eq!(Payload::video(Bytes::new()), Payload::Raw(Bytes::new()));
        // A 300-byte NAL unit as AVCC begins 00 00 01 2C: still AVCC.
        let mut nal300 = vec![0, 0, 1, 0x2C, 0x41];
        nal300.resize(304, 0x9A);
        let nal300 = Bytes::from(nal300);
        assert_eq!(Payload::video(nal300.clone()), Payload::Raw(nal300));
    }

    #[test]
    fn stream_settings_are_checked() {
        assert_eq!(
            FragmentBuilder::new(StreamConfig::new(vec![])).unwrap_err(),
            BuildError::TrackCount(0)
        );
        let four = (1..=4)
            .map(|n| TrackConfig {
                number: n,
                ..video()
            })
            .collect();
        assert_eq!(
            FragmentBuilder::new(StreamConfig::new(four)).unwrap_err(),
            BuildError::TrackCount(4)
        );
        let dup = vec![video(), video()];
        assert_eq!(
            FragmentBuilder::new(StreamConfig::new(dup)).unwrap_err(),
            BuildError::BadTrackNumber(1)
        );
        let zero = vec![TrackConfig {
            number: 0,
            ..video()
        }];
        assert_eq!(
            FragmentBuilder::new(StreamConfig::new(zero)).unwrap_err(),
            BuildError::BadTrackNumber(0)
        );
    }

    #[test]
    fn fragments_are_checked() {
        let mut b = FragmentBuilder::new(StreamConfig::new(vec![video()])).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            b.fragment(&[], &[], &mut out),
            Err(BuildError::EmptyFragment)
        );
        assert_eq!(
            b.fragment(&[frame(1, 0, false)], &[], &mut out),
            Err(BuildError::NoKeyFrameFirst)
        );
        assert_eq!(
            b.fragment(&[frame(1, -5, true)], &[], &mut out),
            Err(BuildError::NegativeTimecode(-5))
        );
        assert_eq!(
            b.fragment(&[frame(1, 0, true), frame(2, 1, false)], &[], &mut out),
            Err(BuildError::UnknownTrack { index: 1, track: 2 })
        );
        assert_eq!(
            b.fragment(&[frame(1, 0, true), frame(1, 40_000, false)], &[], &mut out),
            Err(BuildError::TimecodeOutOfRange {
                index: 1,
                delta: 40_000
            })
        );
        assert!(out.is_empty(), "nothing is written for a refused fragment");
        b.fragment(&[frame(1, 0, true), frame(1, 32_767, false)], &[], &mut out)
            .unwrap();
        assert!(!out.is_empty());
    }

    #[test]
    fn tag_limits_are_the_services() {
        let tag = |n: &str, v: &str| Tag {
            name: n.to_owned(),
            value: v.to_owned(),
        };
        assert!(validate_tags(
            &(0..10)
                .map(|i| tag(&format!("t{i}"), "v"))
                .collect::<Vec<_>>()
        )
        .is_ok());
        assert_eq!(
            validate_tags(
                &(0..11)
                    .map(|i| tag(&format!("t{i}"), "v"))
                    .collect::<Vec<_>>()
            ),
            Err(BuildError::TooManyTags(11))
        );
        assert!(validate_tags(&[tag(&"n".repeat(128), &"v".repeat(256))]).is_ok());
        assert!(matches!(
            validate_tags(&[tag(&"n".repeat(129), "v")]),
            Err(BuildError::BadTagName { .. })
        ));
        assert!(matches!(
            validate_tags(&[tag("n", &"v".repeat(257))]),
            Err(BuildError::TagValueTooLong { len: 257, .. })
        ));
        assert!(matches!(
            validate_tags(&[tag("", "v")]),
            Err(BuildError::BadTagName { .. })
        ));
        assert!(matches!(
            validate_tags(&[tag("AWS_MINE", "v")]),
            Err(BuildError::BadTagName { .. })
        ));
        assert!(matches!(
            validate_tags(&[tag("AWSfoo", "v")]),
            Err(BuildError::BadTagName { .. })
        ));
        assert!(validate_tags(&[tag("AWS_KINESISVIDEO_END_OF_FRAGMENT", "")]).is_ok());
        assert!(validate_tags(&[tag("aws_lowercase_is_fine", "")]).is_ok());
    }
}

#[cfg(test)]
mod declared_format_tests {
    use super::Payload;
    use crate::codec::CodecError;
    use bytes::Bytes;

    /// A frame declared in one framing but given in the other is refused,
    /// not stored corrupt.
    #[test]
    fn declared_framing_is_checked() {
        let annexb = Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88, 0x84, 0, 0, 1, 0x65, 0x11]);
        let avcc = Bytes::from_static(&[0, 0, 0, 3, 0x65, 0x88, 0x84, 0, 0, 0, 2, 0x65, 0x11]);
        assert_eq!(
            Payload::annexb(annexb.clone()),
            Ok(Payload::AnnexB(annexb.clone()))
        );
        assert_eq!(Payload::avcc(avcc.clone()), Ok(Payload::Raw(avcc.clone())));
        assert_eq!(Payload::annexb(avcc), Err(CodecError::NotAnnexB));
        assert!(matches!(
            Payload::avcc(annexb),
            Err(CodecError::BadLength { .. })
        ));
        assert!(matches!(
            Payload::avcc(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 1, 0x65])),
            Err(CodecError::BadLength { .. })
        ));
        assert_eq!(
            Payload::annexb(Bytes::new()),
            Err(CodecError::Missing("access unit"))
        );
    }
}
