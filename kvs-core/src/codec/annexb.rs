//! Annex-B byte streams (start-code delimited NAL units) and the AVCC form
//! (4-byte big-endian length prefixes) that Matroska stores.

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memmem;

use super::CodecError;

/// True when `data` starts with a 3- or 4-byte start code.
pub fn is_annexb(data: &[u8]) -> bool {
    data.starts_with(&[0, 0, 1]) || data.starts_with(&[0, 0, 0, 1])
}

/// Calls `f(start, end)` for every NAL unit in an Annex-B buffer, start codes
/// and trailing zero bytes excluded. Bytes before the first start code are
/// ignored.
pub fn for_each_nal(data: &[u8], mut f: impl FnMut(usize, usize)) {
    let finder = memmem::Finder::new(&[0u8, 0, 1]);
    let Some(first) = finder.find(data) else {
        return;
    };
    let mut start = first + 3;
    loop {
        let next = finder.find(&data[start..]).map(|p| p + start);
        let mut end = next.unwrap_or(data.len());
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        if end > start {
            f(start, end);
        }
        match next {
            Some(n) => start = n + 3,
            None => return,
        }
    }
}

/// The NAL units of an Annex-B buffer as zero-copy slices.
pub fn nal_units(data: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    for_each_nal(data, |s, e| out.push(data.slice(s..e)));
    out
}

/// Converts an Annex-B access unit to AVCC (4-byte lengths), copying once.
pub fn to_avcc(data: &[u8]) -> Result<Bytes, CodecError> {
    if !is_annexb(data) {
        return Err(CodecError::NotAnnexB);
    }
    let mut out = BytesMut::with_capacity(data.len() + 16);
    for_each_nal(data, |s, e| {
        out.put_u32((e - s) as u32);
        out.extend_from_slice(&data[s..e]);
    });
    Ok(out.freeze())
}

/// Iterates the NAL units of an AVCC buffer with `length_size`-byte prefixes,
/// checking every length against the buffer.
pub fn avcc_nals(data: &Bytes, length_size: usize) -> Result<Vec<Bytes>, CodecError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        if data.len() - pos < length_size {
            return Err(CodecError::BadLength {
                offset: pos,
                len: length_size,
                available: data.len() - pos,
            });
        }
        let len = data[pos..pos + length_size]
            .iter()
            .fold(0usize, |v, &b| (v << 8) | usize::from(b));
        let start = pos + length_size;
        if len > data.len() - start {
            return Err(CodecError::BadLength {
                offset: pos,
                len,
                available: data.len() - start,
            });
        }
        out.push(data.slice(start..start + len));
        pos = start + len;
    }
    Ok(out)
}

/// Converts AVCC (with `length_size`-byte prefixes) to Annex-B with 4-byte
/// start codes.
pub fn to_annexb(data: &Bytes, length_size: usize) -> Result<Bytes, CodecError> {
    let nals = avcc_nals(data, length_size)?;
    let mut out = BytesMut::with_capacity(data.len() + 4 * nals.len());
    for n in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&n);
    }
    Ok(out.freeze())
}

/// Which video codec an elementary stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

impl VideoCodec {
    /// NAL unit type of a NAL (first byte(s) of the unit).
    pub fn nal_type(self, nal: &[u8]) -> u8 {
        match (self, nal.first()) {
            (_, None) => 0xFF,
            (Self::H264, Some(b)) => b & 0x1F,
            (Self::H265, Some(b)) => (b >> 1) & 0x3F,
        }
    }

    /// True for NAL units carrying picture data.
    pub fn is_vcl(self, t: u8) -> bool {
        match self {
            Self::H264 => (1..=5).contains(&t),
            Self::H265 => t < 32,
        }
    }

    /// True for NAL units of a random-access (key) picture.
    pub fn is_key(self, t: u8) -> bool {
        match self {
            Self::H264 => t == 5,
            Self::H265 => (16..=21).contains(&t),
        }
    }

    /// True for an Annex-B access unit holding a key picture's NAL unit.
    pub fn is_key_unit(self, au: &[u8]) -> bool {
        let mut key = false;
        for_each_nal(au, |s, _| key |= self.is_key(self.nal_type(&au[s..])));
        key
    }

    /// True when this VCL NAL starts a new picture (first slice).
    pub(crate) fn first_slice(self, nal: &[u8]) -> bool {
        let hl = match self {
            Self::H264 => 1,
            Self::H265 => 2,
        };
        // first_mb_in_slice == 0 (ue '1') / first_slice_segment_in_pic_flag.
        nal.get(hl).is_some_and(|b| b & 0x80 != 0)
    }

    /// True for NAL units that, after picture data, open the next access unit
    /// (AUD, parameter sets, prefix SEI).
    fn opens_unit(self, t: u8) -> bool {
        match self {
            Self::H264 => matches!(t, 6..=9 | 14..=18),
            Self::H265 => matches!(t, 32..=35 | 39 | 41..=44),
        }
    }
}

/// Splits an Annex-B elementary stream into access units (one per picture),
/// each returned as a zero-copy slice that keeps its start codes.
pub fn access_units(codec: VideoCodec, data: &Bytes) -> Vec<Bytes> {
    let mut units = Vec::new();
    let mut unit_start: Option<usize> = None;
    let mut seen_vcl = false;
    let mut prev_end = 0usize;
    let mut nal_starts = Vec::new();
    for_each_nal(data, |s, e| nal_starts.push((s, e)));
    for &(s, e) in &nal_starts {
        // Back up over the start code so units keep theirs.
        let mut code = s - 3;
        if code > prev_end && data[code - 1] == 0 {
            code -= 1;
        }
        let nal = &data[s..e];
        let t = codec.nal_type(nal);
        let boundary =
            seen_vcl && (codec.opens_unit(t) || (codec.is_vcl(t) && codec.first_slice(nal)));
        if boundary {
            if let Some(us) = unit_start {
                units.push(data.slice(us..code));
            }
            unit_start = Some(code);
            seen_vcl = false;
        }
        if unit_start.is_none() {
            unit_start = Some(code);
        }
        seen_vcl |= codec.is_vcl(t);
        prev_end = e;
    }
    if let Some(us) = unit_start {
        units.push(data.slice(us..prev_end));
    }
    units
}

/// The parameter sets of an avcC (`hevc == false`) or hvcC record (a
/// CodecPrivate) as Annex-B, and its NAL length size; `None` when the record
/// is cut short.
pub fn record_parameter_sets(record: &[u8], hevc: bool) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let nal = |out: &mut Vec<u8>, at: usize| -> Option<usize> {
        let len = usize::from(u16::from_be_bytes([*record.get(at)?, *record.get(at + 1)?]));
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(record.get(at + 2..at + 2 + len)?);
        Some(at + 2 + len)
    };
    if hevc {
        let length_size = usize::from(*record.get(21)? & 3) + 1;
        let arrays = *record.get(22)?;
        let mut at = 23;
        for _ in 0..arrays {
            let n = u16::from_be_bytes([*record.get(at + 1)?, *record.get(at + 2)?]);
            at += 3;
            for _ in 0..n {
                at = nal(&mut out, at)?;
            }
        }
        Some((out, length_size))
    } else {
        let length_size = usize::from(*record.get(4)? & 3) + 1;
        let mut at = 5;
        for mask in [0x1f, 0xff] {
            let n = *record.get(at)? & mask;
            at += 1;
            for _ in 0..n {
                at = nal(&mut out, at)?;
            }
        }
        Some((out, length_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_record_parameter_sets_come_back_as_annexb() {
        let sps = Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e, 0x95, 0xa0, 0x50, 0x7e, 0x40]);
        let pps = Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]);
        let record =
            crate::codec::h264::avcc_record(std::slice::from_ref(&sps), std::slice::from_ref(&pps))
                .unwrap();
        let (annexb, length_size) = record_parameter_sets(&record, false).unwrap();
        assert_eq!(length_size, 4);
        assert_eq!(
            annexb,
            [&[0, 0, 0, 1][..], &sps, &[0, 0, 0, 1], &pps].concat()
        );
        // Cut anywhere: None, never a panic.
        for cut in 0..record.len() {
            assert!(record_parameter_sets(&record[..cut], false).is_none());
        }
    }

    #[test]
    fn annexb_avcc_round_trip() {
        let a = [
            0u8, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 9, 0,
        ];
        let avcc = to_avcc(&a).unwrap();
        assert_eq!(
            &avcc[..],
            &[0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x68, 3, 0, 0, 0, 3, 0x65, 9, 9]
        );
        let back = to_annexb(&avcc, 4).unwrap();
        assert_eq!(
            &back[..],
            &[0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 9]
        );
        assert!(matches!(
            avcc_nals(&Bytes::from_static(&[0, 0, 0, 9, 1]), 4),
            Err(CodecError::BadLength { .. })
        ));
        assert_eq!(to_avcc(b"\x01\x02"), Err(CodecError::NotAnnexB));
    }
}
