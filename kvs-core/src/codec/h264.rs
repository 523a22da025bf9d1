//! H.264: avcC CodecPrivate from SPS/PPS and picture size from the SPS
//! (through `h264-reader`).

use bytes::{BufMut, Bytes, BytesMut};
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};

use super::annexb::for_each_nal;
use super::CodecError;

/// CodecID of H.264 in Matroska.
pub const CODEC_ID: &str = "V_MPEG4/ISO/AVC";

fn bad(what: &'static str, reason: impl ToString) -> CodecError {
    CodecError::BadParameterSet {
        what,
        reason: reason.to_string(),
    }
}

/// Decodes an SPS NAL unit (header byte included).
pub fn parse_sps(sps: &[u8]) -> Result<SeqParameterSet, CodecError> {
    // decode_nal needs a header byte and at least one more.
    if sps.len() < 2 || sps[0] & 0x1F != 7 {
        return Err(bad("SPS", "not an SPS NAL unit"));
    }
    let rbsp = decode_nal(sps).map_err(|e| bad("SPS", e))?;
    SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).map_err(|e| bad("SPS", format!("{e:?}")))
}

/// Displayed width and height from an SPS NAL, cropping applied.
pub fn sps_dimensions(sps: &[u8]) -> Result<(u32, u32), CodecError> {
    parse_sps(sps)?
        .pixel_dimensions()
        .map_err(|e| bad("SPS", format!("{e:?}")))
}

/// Builds an `AVCDecoderConfigurationRecord` (avcC) with 4-byte NAL lengths.
pub fn avcc_record(sps: &[Bytes], pps: &[Bytes]) -> Result<Bytes, CodecError> {
    let first = sps.first().ok_or(CodecError::Missing("SPS"))?;
    if pps.is_empty() {
        return Err(CodecError::Missing("PPS"));
    }
    if first.len() < 4 {
        return Err(bad("SPS", "shorter than 4 bytes"));
    }
    parse_sps(first)?;
    let mut out = BytesMut::new();
    out.put_u8(1);
    out.put_slice(&first[1..4]); // profile, compatibility, level
    out.put_u8(0xFF); // lengthSizeMinusOne = 3
    out.put_u8(0xE0 | (sps.len().min(31) as u8));
    for s in sps.iter().take(31) {
        out.put_u16(s.len() as u16);
        out.put_slice(s);
    }
    out.put_u8(pps.len().min(255) as u8);
    for p in pps.iter().take(255) {
        out.put_u16(p.len() as u16);
        out.put_slice(p);
    }
    Ok(out.freeze())
}

/// Parameter sets gathered from in-band NAL units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterSets {
    /// SPS NAL units (distinct, in order of first appearance).
    pub sps: Vec<Bytes>,
    /// PPS NAL units.
    pub pps: Vec<Bytes>,
}

impl ParameterSets {
    /// Collects the SPS/PPS of an Annex-B access unit, wherever they sit.
    /// Returns true when the set changed.
    pub fn collect_annexb(&mut self, au: &Bytes) -> bool {
        let mut changed = false;
        for_each_nal(au, |s, e| changed |= self.offer(au.slice(s..e)));
        changed
    }

    /// Offers one NAL unit; keeps it if it is an SPS/PPS not yet held (a new
    /// SPS/PPS with the same id replaces the old one). Returns true on change.
    pub fn offer(&mut self, nal: Bytes) -> bool {
        let list = match nal.first().map(|b| b & 0x1F) {
            Some(7) => &mut self.sps,
            Some(8) => &mut self.pps,
            _ => return false,
        };
        if list.contains(&nal) {
            return false;
        }
        // Same parameter-set id (first ue after the fixed bytes) replaces.
        let id = |n: &Bytes| -> Option<u32> {
            if n.len() < 2 {
                return None;
            }
            let rbsp = decode_nal(n).ok()?;
            let skip = if n[0] & 0x1F == 7 { 3 } else { 0 };
            let mut r = BitReader::new(rbsp.get(skip..)?);
            h264_reader::rbsp::BitRead::read_ue(&mut r, "id").ok()
        };
        let new_id = id(&nal);
        if let Some(pos) = list.iter().position(|o| id(o) == new_id) {
            list[pos] = nal;
        } else {
            list.push(nal);
        }
        true
    }

    /// The avcC record for the sets held.
    pub fn codec_private(&self) -> Result<Bytes, CodecError> {
        avcc_record(&self.sps, &self.pps)
    }

    /// Picture size from the first SPS.
    pub fn dimensions(&self) -> Result<(u32, u32), CodecError> {
        sps_dimensions(self.sps.first().ok_or(CodecError::Missing("SPS"))?)
    }
}
