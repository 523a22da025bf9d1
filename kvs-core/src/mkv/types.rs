//! Plain data types the parser emits and the builder consumes.

use bytes::Bytes;

/// Matroska track type for video.
pub const TRACK_TYPE_VIDEO: u64 = 1;
/// Matroska track type for audio.
pub const TRACK_TYPE_AUDIO: u64 = 2;

/// The EBML header that opens every Matroska document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbmlHeader {
    /// Stream offset of the header element.
    pub offset: u64,
    /// `DocType`, trailing NULs removed (`matroska`, `webm`).
    pub doc_type: String,
    /// `DocTypeVersion`.
    pub doc_type_version: u64,
    /// `DocTypeReadVersion`.
    pub doc_type_read_version: u64,
    /// `EBMLMaxSizeLength` (8 if absent).
    pub max_size_length: u64,
}

/// The segment's `Info` element.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentInfo {
    /// Nanoseconds per timecode unit (1,000,000 when absent).
    pub timecode_scale: u64,
    /// `Duration` in timecode units, when present.
    pub duration: Option<f64>,
    /// `SegmentUID`, when present.
    pub segment_uid: Option<Bytes>,
    /// `Title`, when present.
    pub title: Option<String>,
    /// `MuxingApp`, when present.
    pub muxing_app: Option<String>,
    /// `WritingApp`, when present.
    pub writing_app: Option<String>,
}

impl Default for SegmentInfo {
    fn default() -> Self {
        Self {
            timecode_scale: 1_000_000,
            duration: None,
            segment_uid: None,
            title: None,
            muxing_app: None,
            writing_app: None,
        }
    }
}

/// Video settings of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoInfo {
    /// `PixelWidth`.
    pub pixel_width: u64,
    /// `PixelHeight`.
    pub pixel_height: u64,
}

/// Audio settings of a track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioInfo {
    /// `SamplingFrequency` in Hz.
    pub sampling_frequency: f64,
    /// `Channels`.
    pub channels: u64,
    /// `BitDepth`, when present.
    pub bit_depth: Option<u64>,
}

/// One `TrackEntry`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackInfo {
    /// `TrackNumber`, the number blocks refer to.
    pub number: u64,
    /// `TrackUID`, when present.
    pub uid: Option<u64>,
    /// `TrackType` (1 video, 2 audio, …).
    pub track_type: u64,
    /// `CodecID`, trailing NULs removed.
    pub codec_id: String,
    /// `CodecPrivate`, when present.
    pub codec_private: Option<Bytes>,
    /// `Name`, when present.
    pub name: Option<String>,
    /// `DefaultDuration` in nanoseconds, when present.
    pub default_duration_ns: Option<u64>,
    /// Video settings, for video tracks.
    pub video: Option<VideoInfo>,
    /// Audio settings, for audio tracks.
    pub audio: Option<AudioInfo>,
}

impl TrackInfo {
    /// The track's codec (from its CodecID).
    pub fn codec(&self) -> crate::codec::Codec {
        crate::codec::Codec::from_codec_id(&self.codec_id)
    }
}

/// One `SimpleTag`, flattened in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleTag {
    /// `TagName`, trailing NULs removed.
    pub name: String,
    /// `TagString` exactly as stored (trailing NULs kept), if present.
    pub string: Option<String>,
    /// `TagBinary`, if present.
    pub binary: Option<Bytes>,
    /// 0 for a SimpleTag directly under a `Tag`, 1 for one nested in it, …
    pub level: u8,
}

/// A frame taken out of a SimpleBlock or BlockGroup (one per lace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFrame {
    /// Track number the block names.
    pub track: u64,
    /// Absolute timecode in TimecodeScale units (cluster timecode + block offset).
    pub timecode: i64,
    /// Absolute timestamp in nanoseconds (`timecode × TimecodeScale`).
    pub timestamp_ns: i64,
    /// Key frame: SimpleBlock key flag, or a BlockGroup without ReferenceBlock.
    pub key: bool,
    /// SimpleBlock invisible flag.
    pub invisible: bool,
    /// SimpleBlock discardable flag.
    pub discardable: bool,
    /// `BlockDuration` (timecode units), for BlockGroups that carry it.
    pub duration: Option<u64>,
    /// `DiscardPadding` in nanoseconds, for BlockGroups that carry it.
    pub discard_padding_ns: Option<i64>,
    /// Index of this frame within its lace (0 when not laced).
    pub lace_index: u8,
    /// Stream offset of the block element.
    pub offset: u64,
    /// The frame's bytes (a slice of the input where possible).
    pub payload: Bytes,
}
