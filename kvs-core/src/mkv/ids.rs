//! Matroska element IDs used by the builder and the parser.
#![allow(missing_docs)] // the constant names are the Matroska element names

pub const EBML: u32 = 0x1A45_DFA3;
pub const EBML_VERSION: u32 = 0x4286;
pub const EBML_READ_VERSION: u32 = 0x42F7;
pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
pub const DOC_TYPE: u32 = 0x4282;
pub const DOC_TYPE_VERSION: u32 = 0x4287;
pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;

pub const VOID: u32 = 0xEC;
pub const CRC32: u32 = 0xBF;

pub const SEGMENT: u32 = 0x1853_8067;
pub const SEEK_HEAD: u32 = 0x114D_9B74;
pub const INFO: u32 = 0x1549_A966;
pub const TRACKS: u32 = 0x1654_AE6B;
pub const CLUSTER: u32 = 0x1F43_B675;
pub const CUES: u32 = 0x1C53_BB6B;
pub const CHAPTERS: u32 = 0x1043_A770;
pub const ATTACHMENTS: u32 = 0x1941_A469;
pub const TAGS: u32 = 0x1254_C367;

pub const SEGMENT_UID: u32 = 0x73A4;
pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
pub const DURATION: u32 = 0x4489;
pub const TITLE: u32 = 0x7BA9;
/// `DateUTC`: when the segment starts, ns since 2001-01-01 (signed).
pub const DATE_UTC: u32 = 0x4461;
pub const MUXING_APP: u32 = 0x4D80;
pub const WRITING_APP: u32 = 0x5741;

pub const TRACK_ENTRY: u32 = 0xAE;
pub const TRACK_NUMBER: u32 = 0xD7;
pub const TRACK_UID: u32 = 0x73C5;
pub const TRACK_TYPE: u32 = 0x83;
pub const FLAG_LACING: u32 = 0x9C;
pub const DEFAULT_DURATION: u32 = 0x23_E383;
pub const NAME: u32 = 0x536E;
pub const CODEC_ID: u32 = 0x86;
pub const CODEC_PRIVATE: u32 = 0x63A2;
pub const VIDEO: u32 = 0xE0;
pub const PIXEL_WIDTH: u32 = 0xB0;
pub const PIXEL_HEIGHT: u32 = 0xBA;
pub const AUDIO: u32 = 0xE1;
pub const SAMPLING_FREQUENCY: u32 = 0xB5;
pub const CHANNELS: u32 = 0x9F;
pub const BIT_DEPTH: u32 = 0x6264;

pub const TIMECODE: u32 = 0xE7;
pub const POSITION: u32 = 0xA7;
pub const PREV_SIZE: u32 = 0xAB;
pub const SILENT_TRACKS: u32 = 0x5854;
pub const SIMPLE_BLOCK: u32 = 0xA3;
pub const BLOCK_GROUP: u32 = 0xA0;
pub const ENCRYPTED_BLOCK: u32 = 0xAF;
pub const BLOCK: u32 = 0xA1;
pub const BLOCK_DURATION: u32 = 0x9B;
pub const REFERENCE_BLOCK: u32 = 0xFB;
pub const DISCARD_PADDING: u32 = 0x75A2;
pub const BLOCK_ADDITIONS: u32 = 0x75A1;

pub const TAG: u32 = 0x7373;
pub const TARGETS: u32 = 0x63C0;
pub const SIMPLE_TAG: u32 = 0x67C8;
pub const TAG_NAME: u32 = 0x45A3;
pub const TAG_STRING: u32 = 0x4487;
pub const TAG_BINARY: u32 = 0x4485;
pub const TAG_LANGUAGE: u32 = 0x447A;
pub const TAG_DEFAULT: u32 = 0x4484;

/// Short human name of an element ID, for error messages.
pub fn name(id: u32) -> &'static str {
    match id {
        EBML => "EBML header",
        SEGMENT => "Segment",
        SEEK_HEAD => "SeekHead",
        INFO => "Info",
        TRACKS => "Tracks",
        CLUSTER => "Cluster",
        CUES => "Cues",
        CHAPTERS => "Chapters",
        ATTACHMENTS => "Attachments",
        TAGS => "Tags",
        SIMPLE_BLOCK => "SimpleBlock",
        BLOCK_GROUP => "BlockGroup",
        BLOCK => "Block",
        TIMECODE => "Timecode",
        VOID => "Void",
        CRC32 => "CRC-32",
        _ => "element",
    }
}
