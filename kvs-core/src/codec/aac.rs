//! AAC: AudioSpecificConfig and ADTS.

use bytes::Bytes;

use super::CodecError;

/// CodecID of AAC in Matroska.
pub const CODEC_ID: &str = "A_AAC";

/// Sampling rates indexed by `sampling_frequency_index`.
pub const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Builds an AudioSpecificConfig for `object_type` (2 = AAC-LC) at `rate` Hz
/// with `channels` channels (1–7). Rates outside the table use the escape form.
pub fn audio_specific_config(
    object_type: u8,
    rate: u32,
    channels: u8,
) -> Result<Bytes, CodecError> {
    if object_type == 0 || object_type > 30 {
        return Err(CodecError::Unsupported(format!(
            "AAC object type {object_type}"
        )));
    }
    if channels == 0 || channels > 7 {
        return Err(CodecError::Unsupported(format!("{channels} AAC channels")));
    }
    let mut bits: u64 = u64::from(object_type);
    let mut n: usize = 5;
    match SAMPLE_RATES.iter().position(|&r| r == rate) {
        Some(i) => {
            bits = (bits << 4) | i as u64;
            n += 4;
        }
        None => {
            if rate == 0 || rate >= 1 << 24 {
                return Err(CodecError::Unsupported(format!("{rate} Hz")));
            }
            bits = (bits << 28) | (0xF << 24) | u64::from(rate);
            n += 28;
        }
    }
    bits = (bits << 4) | u64::from(channels);
    n += 4;
    bits <<= 3; // frameLengthFlag, dependsOnCoreCoder, extensionFlag = 0
    n += 3;
    let bytes = n.div_ceil(8);
    bits <<= bytes * 8 - n;
    Ok(Bytes::copy_from_slice(&bits.to_be_bytes()[8 - bytes..]))
}

/// What an ADTS header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// Audio object type (profile + 1).
    pub object_type: u8,
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// Channel configuration.
    pub channels: u8,
    /// Header length (7, or 9 with CRC).
    pub header_len: usize,
    /// Whole frame length, header included.
    pub frame_len: usize,
}

impl AdtsHeader {
    /// The AudioSpecificConfig this header implies.
    pub fn audio_specific_config(&self) -> Result<Bytes, CodecError> {
        audio_specific_config(self.object_type, self.sample_rate, self.channels)
    }
}

/// Decodes the ADTS header at the start of `data` (`offset` is only used in errors).
pub fn parse_adts(data: &[u8], offset: usize) -> Result<AdtsHeader, CodecError> {
    let bad = |reason| CodecError::BadAdts { offset, reason };
    if data.len() < 7 {
        return Err(bad("shorter than an ADTS header"));
    }
    if data[0] != 0xFF || data[1] & 0xF0 != 0xF0 {
        return Err(bad("no ADTS sync word"));
    }
    let protection_absent = data[1] & 1 != 0;
    let object_type = (data[2] >> 6) + 1;
    let sf = usize::from((data[2] >> 2) & 0x0F);
    let sample_rate = *SAMPLE_RATES
        .get(sf)
        .ok_or_else(|| bad("reserved sampling frequency index"))?;
    let channels = ((data[2] & 1) << 2) | (data[3] >> 6);
    let frame_len =
        (usize::from(data[3] & 3) << 11) | (usize::from(data[4]) << 3) | usize::from(data[5] >> 5);
    let header_len = if protection_absent { 7 } else { 9 };
    if frame_len < header_len {
        return Err(bad("frame length shorter than the header"));
    }
    Ok(AdtsHeader {
        object_type,
        sample_rate,
        channels,
        header_len,
        frame_len,
    })
}

/// Splits an ADTS stream into raw AAC frames (headers stripped, zero-copy)
/// and returns them with the first header.
pub fn split_adts(data: &Bytes) -> Result<(AdtsHeader, Vec<Bytes>), CodecError> {
    let mut pos = 0;
    let mut first = None;
    let mut frames = Vec::new();
    while pos < data.len() {
        let h = parse_adts(&data[pos..], pos)?;
        if h.frame_len > data.len() - pos {
            return Err(CodecError::BadAdts {
                offset: pos,
                reason: "frame runs past the end of the data",
            });
        }
        frames.push(data.slice(pos + h.header_len..pos + h.frame_len));
        first.get_or_insert(h);
        pos += h.frame_len;
    }
    let first = first.ok_or(CodecError::BadAdts {
        offset: 0,
        reason: "no ADTS frame",
    })?;
    Ok((first, frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asc_values() {
        // AAC-LC 48 kHz stereo and 44.1 kHz mono, as every encoder writes them.
        assert_eq!(
            &audio_specific_config(2, 48000, 2).unwrap()[..],
            &[0x11, 0x90]
        );
        assert_eq!(
            &audio_specific_config(2, 44100, 1).unwrap()[..],
            &[0x12, 0x08]
        );
        assert_eq!(
            &audio_specific_config(2, 8000, 1).unwrap()[..],
            &[0x15, 0x88]
        );
        assert_eq!(audio_specific_config(2, 12345, 1).unwrap().len(), 5);
        assert!(audio_specific_config(2, 48000, 0).is_err());
    }

    #[test]
    fn adts_round() {
        let frame = [0xFF, 0xF1, 0x50, 0x80, 0x01, 0x3F, 0xFC, 0xAA, 0xBB];
        let (h, frames) = split_adts(&Bytes::copy_from_slice(&frame)).unwrap();
        assert_eq!((h.sample_rate, h.channels, h.frame_len), (44100, 2, 9));
        assert_eq!(&frames[0][..], &[0xAA, 0xBB]);
        assert!(split_adts(&Bytes::from_static(&[
            0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC
        ]))
        .is_err());
    }
}
