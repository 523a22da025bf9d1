//! H.265: hvcC CodecPrivate from VPS/SPS/PPS and picture size from the SPS.
//!
//! Reads the SPS fields an hvcC needs with `h264-reader`'s RBSP and bit
//! readers (H.265 shares the emulation-prevention rules, with a 2-byte NAL
//! header).

use std::io::Read;
use std::num::NonZeroUsize;

use bytes::{BufMut, Bytes, BytesMut};
use h264_reader::rbsp::{BitRead, BitReader, ByteReader};

use super::annexb::for_each_nal;
use super::CodecError;

/// CodecID of H.265 in Matroska.
pub const CODEC_ID: &str = "V_MPEGH/ISO/HEVC";

/// NAL unit types of the parameter sets.
const VPS: u8 = 32;
const SPS: u8 = 33;
const PPS: u8 = 34;

fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0xFF, |b| (b >> 1) & 0x3F)
}

fn bad(reason: impl ToString) -> CodecError {
    CodecError::BadParameterSet {
        what: "SPS",
        reason: reason.to_string(),
    }
}

/// The SPS fields an hvcC record and a Matroska track need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpsInfo {
    /// The 12 bytes of general profile/tier/level as coded.
    pub general_ptl: [u8; 12],
    /// `sps_max_sub_layers_minus1 + 1`.
    pub sub_layers: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nested: bool,
    /// `chroma_format_idc`.
    pub chroma_format_idc: u32,
    /// Luma bit depth minus 8.
    pub bit_depth_luma_minus8: u32,
    /// Chroma bit depth minus 8.
    pub bit_depth_chroma_minus8: u32,
    /// Displayed width (conformance window applied).
    pub width: u32,
    /// Displayed height (conformance window applied).
    pub height: u32,
    /// `log2_max_pic_order_cnt_lsb_minus4 + 4`.
    pub log2_max_poc_lsb: u32,
    /// `separate_colour_plane_flag`.
    pub separate_colour_planes: bool,
}

/// Decodes the parts of an SPS NAL unit (2-byte header included) listed in [`SpsInfo`].
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, CodecError> {
    if nal_type(nal) != SPS {
        return Err(bad("not an SPS NAL unit"));
    }
    let mut rbsp = Vec::with_capacity(nal.len());
    ByteReader::skipping_bytes(nal, NonZeroUsize::new(2).expect("2 > 0"))
        .read_to_end(&mut rbsp)
        .map_err(bad)?;
    if rbsp.len() < 13 {
        return Err(bad("shorter than its profile/tier/level"));
    }
    let sub_layers_minus1 = (rbsp[0] >> 1) & 0x07;
    let temporal_id_nested = rbsp[0] & 1 != 0;
    let general_ptl: [u8; 12] = rbsp[1..13].try_into().expect("12 bytes");
    let e = |e: h264_reader::rbsp::BitReaderError| bad(format!("{e:?}"));
    let mut r = BitReader::new(&rbsp[13..]);
    let n = u32::from(sub_layers_minus1);
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    for i in 0..n as usize {
        profile_present[i] = r.read_bit("sub_layer_profile_present_flag").map_err(e)?;
        level_present[i] = r.read_bit("sub_layer_level_present_flag").map_err(e)?;
    }
    if n > 0 {
        r.skip(2 * (8 - n), "reserved_zero_2bits").map_err(e)?;
    }
    for i in 0..n as usize {
        if profile_present[i] {
            r.skip(88, "sub_layer_profile").map_err(e)?;
        }
        if level_present[i] {
            r.skip(8, "sub_layer_level_idc").map_err(e)?;
        }
    }
    r.read_ue("sps_seq_parameter_set_id").map_err(e)?;
    let chroma_format_idc = r.read_ue("chroma_format_idc").map_err(e)?;
    if chroma_format_idc > 3 {
        return Err(bad("chroma_format_idc above 3"));
    }
    let mut separate_planes = false;
    if chroma_format_idc == 3 {
        separate_planes = r.read_bit("separate_colour_plane_flag").map_err(e)?;
    }
    let w = r.read_ue("pic_width_in_luma_samples").map_err(e)?;
    let h = r.read_ue("pic_height_in_luma_samples").map_err(e)?;
    let (mut l, mut rt, mut t, mut b) = (0, 0, 0, 0);
    if r.read_bit("conformance_window_flag").map_err(e)? {
        l = r.read_ue("conf_win_left_offset").map_err(e)?;
        rt = r.read_ue("conf_win_right_offset").map_err(e)?;
        t = r.read_ue("conf_win_top_offset").map_err(e)?;
        b = r.read_ue("conf_win_bottom_offset").map_err(e)?;
    }
    let bit_depth_luma_minus8 = r.read_ue("bit_depth_luma_minus8").map_err(e)?;
    let bit_depth_chroma_minus8 = r.read_ue("bit_depth_chroma_minus8").map_err(e)?;
    let log2_max_poc_lsb = r.read_ue("log2_max_pic_order_cnt_lsb_minus4").map_err(e)? + 4;
    if log2_max_poc_lsb > 16 {
        return Err(bad("log2_max_pic_order_cnt_lsb above 16"));
    }
    let chroma_array_type = if separate_planes {
        0
    } else {
        chroma_format_idc
    };
    let sub_w = if chroma_array_type == 1 || chroma_array_type == 2 {
        2
    } else {
        1
    };
    let sub_h = if chroma_array_type == 1 { 2 } else { 1 };
    let crop_w = u64::from(l)
        .saturating_add(u64::from(rt))
        .saturating_mul(sub_w);
    let crop_h = u64::from(t)
        .saturating_add(u64::from(b))
        .saturating_mul(sub_h);
    if crop_w >= u64::from(w) || crop_h >= u64::from(h) {
        return Err(bad("conformance window larger than the picture"));
    }
    Ok(SpsInfo {
        general_ptl,
        sub_layers: sub_layers_minus1 + 1,
        temporal_id_nested,
        chroma_format_idc,
        bit_depth_luma_minus8,
        bit_depth_chroma_minus8,
        width: (u64::from(w) - crop_w) as u32,
        height: (u64::from(h) - crop_h) as u32,
        log2_max_poc_lsb,
        separate_colour_planes: separate_planes,
    })
}

/// Builds an `HEVCDecoderConfigurationRecord` (hvcC) with 4-byte NAL lengths.
pub fn hvcc_record(vps: &[Bytes], sps: &[Bytes], pps: &[Bytes]) -> Result<Bytes, CodecError> {
    let first = sps.first().ok_or(CodecError::Missing("SPS"))?;
    if vps.is_empty() {
        return Err(CodecError::Missing("VPS"));
    }
    if pps.is_empty() {
        return Err(CodecError::Missing("PPS"));
    }
    let info = parse_sps(first)?;
    let mut out = BytesMut::new();
    out.put_u8(1);
    out.put_slice(&info.general_ptl);
    out.put_u16(0xF000); // min_spatial_segmentation_idc = 0
    out.put_u8(0xFC); // parallelismType = 0
    out.put_u8(0xFC | (info.chroma_format_idc as u8 & 3));
    out.put_u8(0xF8 | (info.bit_depth_luma_minus8 as u8 & 7));
    out.put_u8(0xF8 | (info.bit_depth_chroma_minus8 as u8 & 7));
    out.put_u16(0); // avgFrameRate
    out.put_u8(((info.sub_layers & 7) << 3) | (u8::from(info.temporal_id_nested) << 2) | 3);
    out.put_u8(3);
    for (t, list) in [(VPS, vps), (SPS, sps), (PPS, pps)] {
        out.put_u8(0x80 | t);
        out.put_u16(list.len() as u16);
        for n in list {
            out.put_u16(n.len() as u16);
            out.put_slice(n);
        }
    }
    Ok(out.freeze())
}

/// VPS/SPS/PPS gathered from in-band NAL units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterSets {
    /// VPS NAL units.
    pub vps: Vec<Bytes>,
    /// SPS NAL units.
    pub sps: Vec<Bytes>,
    /// PPS NAL units.
    pub pps: Vec<Bytes>,
}

impl ParameterSets {
    /// Collects the parameter sets of an Annex-B access unit, wherever they
    /// sit. Returns true when the set changed. A new set of a kind replaces
    /// the old one once a full VPS/SPS/PPS group has been seen.
    pub fn collect_annexb(&mut self, au: &Bytes) -> bool {
        let mut changed = false;
        for_each_nal(au, |s, e| changed |= self.offer(au.slice(s..e)));
        changed
    }

    /// Offers one NAL unit. Returns true when it changed the sets.
    pub fn offer(&mut self, nal: Bytes) -> bool {
        let list = match nal_type(&nal) {
            VPS => &mut self.vps,
            SPS => &mut self.sps,
            PPS => &mut self.pps,
            _ => return false,
        };
        if list.contains(&nal) {
            return false;
        }
        // One set of each kind is what KVS producers send; the newest wins.
        list.clear();
        list.push(nal);
        true
    }

    /// The hvcC record for the sets held.
    pub fn codec_private(&self) -> Result<Bytes, CodecError> {
        hvcc_record(&self.vps, &self.sps, &self.pps)
    }

    /// Picture size from the SPS.
    pub fn dimensions(&self) -> Result<(u32, u32), CodecError> {
        let i = parse_sps(self.sps.first().ok_or(CodecError::Missing("SPS"))?)?;
        Ok((i.width, i.height))
    }
}
