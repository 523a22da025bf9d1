//! G.711 in Matroska: `A_MS/ACM` with a WAVEFORMATEX CodecPrivate.

use bytes::{BufMut, Bytes, BytesMut};

/// CodecID KVS uses for G.711.
pub const CODEC_ID: &str = "A_MS/ACM";

/// G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// A-law (WAVE_FORMAT_ALAW = 6).
    ALaw,
    /// µ-law (WAVE_FORMAT_MULAW = 7).
    MuLaw,
}

/// The 18-byte WAVEFORMATEX for 8-bit G.711 at `rate` Hz with `channels` channels.
pub fn waveformatex(law: Law, rate: u32, channels: u16) -> Bytes {
    let tag: u16 = match law {
        Law::ALaw => 6,
        Law::MuLaw => 7,
    };
    let mut b = BytesMut::with_capacity(18);
    b.put_u16_le(tag);
    b.put_u16_le(channels);
    b.put_u32_le(rate);
    b.put_u32_le(rate * u32::from(channels));
    b.put_u16_le(channels);
    b.put_u16_le(8);
    b.put_u16_le(0);
    b.freeze()
}
