//! Picture order counts: the presentation order of pictures in an Annex-B
//! stream, which carries no timestamps. With B-frames, decode order (the
//! order in the stream) and presentation order differ; a muxer that gives
//! timestamps from a frame rate needs the latter.
//!
//! H.264 slice headers are decoded with `h264-reader`; for H.265 the few
//! fields before `slice_pic_order_cnt_lsb` are read here (no maintained
//! crate decodes H.265 slice headers).

use std::io::Read;
use std::num::NonZeroUsize;

use h264_reader::nal::slice::{PicOrderCountLsb, SliceHeader};
use h264_reader::nal::sps::PicOrderCntType;
use h264_reader::nal::NalHeader;
use h264_reader::rbsp::{BitRead, BitReader, ByteReader};
use h264_reader::Context;

use super::annexb::{for_each_nal, VideoCodec};

/// The POC most-significant-bits rule shared by H.264 (8.2.1.1) and H.265 (8.3.1).
fn poc_msb(lsb: i64, prev_lsb: i64, prev_msb: i64, max_lsb: i64) -> i64 {
    if lsb < prev_lsb && prev_lsb - lsb >= max_lsb / 2 {
        prev_msb + max_lsb
    } else if lsb > prev_lsb && lsb - prev_lsb > max_lsb / 2 {
        prev_msb - max_lsb
    } else {
        prev_msb
    }
}

/// Picture order counts of access units fed in decode order.
#[derive(Debug)]
pub struct PocCounter {
    codec: VideoCodec,
    h264: Context,
    h265_log2_max_lsb: Option<u32>,
    h265_pps: Vec<(u32, H265Pps)>,
    h265_separate_planes: bool,
    prev_msb: i64,
    prev_lsb: i64,
}

#[derive(Debug, Clone, Copy)]
struct H265Pps {
    extra_bits: u32,
    output_flag_present: bool,
}

impl PocCounter {
    /// A counter for `codec`.
    pub fn new(codec: VideoCodec) -> Self {
        Self {
            codec,
            h264: Context::new(),
            h265_log2_max_lsb: None,
            h265_pps: Vec::new(),
            h265_separate_planes: false,
            prev_msb: 0,
            prev_lsb: 0,
        }
    }

    /// The POC of the next access unit, or `None` when it cannot be told
    /// (no parameter sets yet, an H.264 POC type other than 0, a bad header).
    pub fn next(&mut self, au: &[u8]) -> Option<i64> {
        let mut nals = Vec::new();
        for_each_nal(au, |s, e| nals.push(&au[s..e]));
        match self.codec {
            VideoCodec::H264 => self.next_h264(&nals),
            VideoCodec::H265 => self.next_h265(&nals),
        }
    }

    fn next_h264(&mut self, nals: &[&[u8]]) -> Option<i64> {
        let mut poc = None;
        for nal in nals.iter().filter(|n| n.len() >= 2) {
            let Ok(header) = NalHeader::new(nal[0]) else {
                continue;
            };
            match nal[0] & 0x1F {
                7 => {
                    if let Ok(sps) = super::h264::parse_sps(nal) {
                        self.h264.put_seq_param_set(sps);
                    }
                }
                8 => {
                    if let Ok(pps) = super::h264::parse_pps(&self.h264, nal) {
                        self.h264.put_pic_param_set(pps);
                    }
                }
                1 | 5 if poc.is_none() => {
                    let mut r = BitReader::new(ByteReader::skipping_h264_header(*nal));
                    let (sh, sps, _): (SliceHeader, _, _) =
                        SliceHeader::from_bits(&self.h264, &mut r, header, None).ok()?;
                    let PicOrderCntType::TypeZero {
                        log2_max_pic_order_cnt_lsb_minus4,
                    } = sps.pic_order_cnt
                    else {
                        return None;
                    };
                    let lsb = match sh.pic_order_cnt_lsb? {
                        PicOrderCountLsb::Frame(l)
                        | PicOrderCountLsb::FieldsAbsolute {
                            pic_order_cnt_lsb: l,
                            ..
                        } => i64::from(l),
                        PicOrderCountLsb::FieldsDelta(_) => return None,
                    };
                    if nal[0] & 0x1F == 5 {
                        self.prev_msb = 0;
                        self.prev_lsb = 0;
                    }
                    let max_lsb = 1i64 << (u32::from(log2_max_pic_order_cnt_lsb_minus4) + 4);
                    let msb = poc_msb(lsb, self.prev_lsb, self.prev_msb, max_lsb);
                    if header.nal_ref_idc() != 0 {
                        self.prev_msb = msb;
                        self.prev_lsb = lsb;
                    }
                    poc = Some(msb + lsb);
                }
                _ => {}
            }
        }
        poc
    }

    fn rbsp265(nal: &[u8]) -> Option<Vec<u8>> {
        let mut v = Vec::with_capacity(nal.len());
        ByteReader::skipping_bytes(nal, NonZeroUsize::new(2).expect("2 > 0"))
            .read_to_end(&mut v)
            .ok()?;
        Some(v)
    }

    fn next_h265(&mut self, nals: &[&[u8]]) -> Option<i64> {
        let mut poc = None;
        for nal in nals.iter().filter(|n| n.len() >= 3) {
            let t = (nal[0] >> 1) & 0x3F;
            let tid = (nal[1] & 7).saturating_sub(1);
            match t {
                33 => {
                    // log2_max_pic_order_cnt_lsb_minus4 follows the bit depths.
                    let info = super::h265::parse_sps(nal).ok()?;
                    self.h265_log2_max_lsb = Some(info.log2_max_poc_lsb);
                    self.h265_separate_planes = info.separate_colour_planes;
                }
                34 => {
                    let rbsp = Self::rbsp265(nal)?;
                    let mut r = BitReader::new(&rbsp[..]);
                    let id = r.read_ue("pps_pic_parameter_set_id").ok()?;
                    r.read_ue("pps_seq_parameter_set_id").ok()?;
                    r.read_bit("dependent_slice_segments_enabled_flag").ok()?;
                    let output_flag_present = r.read_bit("output_flag_present_flag").ok()?;
                    let extra_bits: u32 = r.read::<3, u32>("num_extra_slice_header_bits").ok()?;
                    self.h265_pps.retain(|(i, _)| *i != id);
                    self.h265_pps.push((
                        id,
                        H265Pps {
                            extra_bits,
                            output_flag_present,
                        },
                    ));
                }
                0..=31 if poc.is_none() => {
                    let rbsp = Self::rbsp265(nal)?;
                    let mut r = BitReader::new(&rbsp[..]);
                    if !r.read_bit("first_slice_segment_in_pic_flag").ok()? {
                        continue;
                    }
                    if (16..=23).contains(&t) {
                        r.read_bit("no_output_of_prior_pics_flag").ok()?;
                    }
                    let pps_id = r.read_ue("slice_pic_parameter_set_id").ok()?;
                    let pps = self.h265_pps.iter().find(|(i, _)| *i == pps_id)?.1;
                    r.skip(pps.extra_bits, "slice_reserved_flag").ok()?;
                    r.read_ue("slice_type").ok()?;
                    if pps.output_flag_present {
                        r.read_bit("pic_output_flag").ok()?;
                    }
                    if self.h265_separate_planes {
                        r.skip(2, "colour_plane_id").ok()?;
                    }
                    if t == 19 || t == 20 {
                        self.prev_msb = 0;
                        self.prev_lsb = 0;
                        poc = Some(0);
                        continue;
                    }
                    let bits = self.h265_log2_max_lsb?;
                    let lsb = i64::from(r.read_var::<u32>(bits, "slice_pic_order_cnt_lsb").ok()?);
                    let max_lsb = 1i64 << bits;
                    // BLA pictures restart the count.
                    let msb = if (16..=18).contains(&t) {
                        0
                    } else {
                        poc_msb(lsb, self.prev_lsb, self.prev_msb, max_lsb)
                    };
                    // Only TemporalId-0 pictures that are not RADL/RASL or
                    // sub-layer non-reference pictures anchor the next count.
                    let sub_layer_non_ref = t <= 14 && t % 2 == 0;
                    if tid == 0 && !(6..=9).contains(&t) && !sub_layer_non_ref {
                        self.prev_msb = msb;
                        self.prev_lsb = lsb;
                    }
                    poc = Some(msb + lsb);
                }
                _ => {}
            }
        }
        poc
    }
}

/// For access units in decode order, each one's index in presentation
/// order, or `None` when the order cannot be told for every unit. Counts
/// restart at each key (IDR/IRAP) unit in `keys`, so presentation order is
/// computed per group of pictures.
pub fn presentation_order(
    codec: VideoCodec,
    units: &[bytes::Bytes],
    keys: &[bool],
) -> Option<Vec<usize>> {
    let mut counter = PocCounter::new(codec);
    let pocs: Vec<i64> = units
        .iter()
        .map(|u| counter.next(u))
        .collect::<Option<_>>()?;
    let mut out = vec![0usize; units.len()];
    let mut start = 0;
    while start < units.len() {
        let end = (start + 1..units.len())
            .find(|&i| keys[i])
            .unwrap_or(units.len());
        let mut idx: Vec<usize> = (start..end).collect();
        idx.sort_by_key(|&i| (pocs[i], i));
        for (rank, &i) in idx.iter().enumerate() {
            out[i] = start + rank;
        }
        start = end;
    }
    Some(out)
}
