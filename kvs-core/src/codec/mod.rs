//! Codec adaptation for KVS: H.264/H.265 Annex-B ↔ AVCC, CodecPrivate
//! (avcC, hvcC) from in-band parameter sets, picture size from the SPS,
//! AAC AudioSpecificConfig (also from ADTS headers) and G.711 WAVEFORMATEX.
//!
//! H.264 SPS decoding and RBSP unescaping use the `h264-reader` crate. No
//! maintained crate decodes the H.265 SPS fields an hvcC needs, so that small
//! part (profile/tier/level, size, conformance window, bit depths) is read
//! here with `h264-reader`'s bit reader.

pub mod aac;
pub mod annexb;
pub mod g711;
pub mod h264;
pub mod h265;
pub mod poc;

/// The codecs KVS carries, named from a track's Matroska `CodecID` — so
/// code compares codecs, not strings. A_MS/ACM (WAVEFORMATEX) carries
/// G.711 in KVS (the producer SDKs' and the console's only use of it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// H.264 (`V_MPEG4/ISO/AVC`).
    H264,
    /// H.265 (`V_MPEGH/ISO/HEVC`).
    H265,
    /// AAC (`A_AAC`, or `A_AAC/…` in older files).
    Aac,
    /// G.711 A-law or µ-law in WAVEFORMATEX (`A_MS/ACM`).
    G711,
    /// Any other CodecID (VP8, Opus …), as found.
    Other(String),
}

impl Codec {
    /// The codec of a Matroska `CodecID`.
    pub fn from_codec_id(id: &str) -> Self {
        match id {
            h264::CODEC_ID => Self::H264,
            h265::CODEC_ID => Self::H265,
            g711::CODEC_ID => Self::G711,
            a if a == aac::CODEC_ID || a.starts_with("A_AAC/") => Self::Aac,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Its Matroska `CodecID`.
    pub fn codec_id(&self) -> &str {
        match self {
            Self::H264 => h264::CODEC_ID,
            Self::H265 => h265::CODEC_ID,
            Self::Aac => aac::CODEC_ID,
            Self::G711 => g711::CODEC_ID,
            Self::Other(id) => id,
        }
    }
}

/// Errors of codec adaptation; each names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A parameter set could not be decoded.
    #[error("bad {what}: {reason}")]
    BadParameterSet {
        /// `SPS`, `PPS`, `VPS`.
        what: &'static str,
        /// What failed.
        reason: String,
    },
    /// A parameter set needed for CodecPrivate has not been seen.
    #[error("no {0} found in the stream")]
    Missing(&'static str),
    /// An AVCC length prefix runs past the end of the frame.
    #[error("AVCC NAL unit at byte {offset} declares {len} bytes, {available} remain")]
    BadLength {
        /// Offset of the length prefix in the frame.
        offset: usize,
        /// Declared length.
        len: usize,
        /// Bytes left in the frame.
        available: usize,
    },
    /// Data that should be Annex-B has no start code.
    #[error("no Annex-B start code at the beginning of the data")]
    NotAnnexB,
    /// A malformed ADTS header.
    #[error("bad ADTS header at byte {offset}: {reason}")]
    BadAdts {
        /// Offset in the input.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// An audio setting the codec cannot carry.
    #[error("unsupported audio setting: {0}")]
    Unsupported(String),
}

#[cfg(test)]
mod tests {
    use super::Codec;

    #[test]
    fn codecs_from_and_to_codec_ids() {
        for c in [Codec::H264, Codec::H265, Codec::Aac, Codec::G711] {
            assert_eq!(Codec::from_codec_id(c.codec_id()), c);
        }
        assert_eq!(Codec::from_codec_id("A_AAC/MPEG4/LC"), Codec::Aac);
        assert_eq!(Codec::from_codec_id("V_VP8"), Codec::Other("V_VP8".into()));
        assert_eq!(Codec::Other("V_VP8".into()).codec_id(), "V_VP8");
    }
}
