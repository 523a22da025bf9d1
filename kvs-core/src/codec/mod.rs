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
