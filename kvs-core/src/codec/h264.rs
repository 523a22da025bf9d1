//! H.264: avcC CodecPrivate from SPS/PPS and picture size from the SPS
//! (through `h264-reader`).
//!
//! # Camera quirks
//!
//! `h264-reader` decodes to the letter of Rec. ITU-T H.264 (7.3.2.1.1): it
//! refuses an SPS with bytes after its RBSP stop bit, a VUI cut short, or a
//! `level_idc` too low for the picture size. Decoders (libavcodec, openh264,
//! hardware decoders) take all three, and IP cameras of several brands send
//! them. [`parse_sps`] therefore reads strictly first and, when that fails,
//! reads again leniently: bytes after the stop bit are ignored, a VUI that
//! runs past the end is dropped, and the level's frame-size limit is not
//! applied — each with a `tracing` warning. What no decoder accepts (a
//! picture size, chroma format or bit depth out of range, an SPS cut off
//! before its VUI) is still refused. The lenient pass is a [`BitRead`]
//! around `h264-reader`'s own reader (so the crate still does the decoding)
//! that reads zeros past the end and counts the bits taken.

use std::borrow::Cow;
use std::cell::Cell;

use bytes::{BufMut, Bytes, BytesMut};
use h264_reader::nal::sps::{SeqParameterSet, SpsError};
use h264_reader::rbsp::{decode_nal, BitRead, BitReader, BitReaderError, Integer, Primitive};

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

/// Zero bytes read past the end of a parameter set in the lenient pass
/// (enough for every flag of a VUI; a longer overrun is refused).
const PADDING: usize = 16;

/// A [`BitRead`] that reads `h264-reader`'s [`BitReader`] over the RBSP
/// followed by [`PADDING`] zero bytes, counts the bits it hands out, and
/// accepts whatever follows the last field read.
struct Lenient<'a, 'b> {
    inner: BitReader<&'a [u8]>,
    /// Bits handed out so far.
    pos: &'b Cell<u64>,
    /// Where `vui_parameters_present_flag` was read, once it was.
    vui_at: &'b Cell<Option<u64>>,
}

impl Lenient<'_, '_> {
    fn took(&self, bits: u64) {
        self.pos.set(self.pos.get() + bits);
    }
}

/// Bits of an Exp-Golomb code for `code_num` (H.264 9.1).
fn exp_golomb_bits(code_num: u64) -> u64 {
    2 * u64::from(63 - (code_num + 1).leading_zeros()) + 1
}

impl BitRead for Lenient<'_, '_> {
    fn read_ue(&mut self, name: &'static str) -> Result<u32, BitReaderError> {
        let v = self.inner.read_ue(name)?;
        self.took(exp_golomb_bits(u64::from(v)));
        Ok(v)
    }
    fn read_se(&mut self, name: &'static str) -> Result<i32, BitReaderError> {
        let v = self.inner.read_se(name)?;
        // H.264 9.1.1: k > 0 maps to 2k - 1, k <= 0 to -2k.
        let code = if v > 0 {
            2 * u64::from(v.unsigned_abs()) - 1
        } else {
            2 * u64::from(v.unsigned_abs())
        };
        self.took(exp_golomb_bits(code));
        Ok(v)
    }
    fn read_bit(&mut self, name: &'static str) -> Result<bool, BitReaderError> {
        if name == "vui_parameters_present_flag" {
            self.vui_at.set(Some(self.pos.get()));
        }
        let v = self.inner.read_bit(name)?;
        self.took(1);
        Ok(v)
    }
    fn read<const BITS: u32, I: Integer>(
        &mut self,
        name: &'static str,
    ) -> Result<I, BitReaderError> {
        let v = self.inner.read::<BITS, I>(name)?;
        self.took(u64::from(BITS));
        Ok(v)
    }
    fn read_var<I: Integer>(
        &mut self,
        bit_count: u32,
        name: &'static str,
    ) -> Result<I, BitReaderError> {
        let v = self.inner.read_var(bit_count, name)?;
        self.took(u64::from(bit_count));
        Ok(v)
    }
    fn read_to<V: Primitive>(&mut self, name: &'static str) -> Result<V, BitReaderError> {
        let v = self.inner.read_to::<V>(name)?;
        self.took(8 * std::mem::size_of::<V>() as u64);
        Ok(v)
    }
    fn skip(&mut self, bit_count: u32, name: &'static str) -> Result<(), BitReaderError> {
        self.inner.skip(bit_count, name)?;
        self.took(u64::from(bit_count));
        Ok(())
    }
    fn byte_aligned(&self) -> bool {
        self.inner.byte_aligned()
    }
    fn has_more_rbsp_data(&mut self, name: &'static str) -> Result<bool, BitReaderError> {
        self.inner.has_more_rbsp_data(name)
    }
    fn finish_rbsp(self) -> Result<(), BitReaderError> {
        Ok(())
    }
    fn finish_sei_payload(self) -> Result<(), BitReaderError> {
        Ok(())
    }
}

/// Where the last bit of an RBSP's data is: before its stop bit (the last
/// one bit) when there is one.
fn data_bits(rbsp: &[u8]) -> u64 {
    match rbsp.iter().rposition(|b| *b != 0) {
        Some(i) => 8 * i as u64 + 7 - u64::from(rbsp[i].trailing_zeros()),
        None => 0,
    }
}

/// Decodes an SPS NAL unit (header byte included), tolerating what decoders
/// tolerate (see the module docs); each tolerated fault is logged as a
/// `tracing` warning.
///
/// Errors: [`CodecError::BadParameterSet`] naming the field for what no
/// decoder accepts.
pub fn parse_sps(sps: &[u8]) -> Result<SeqParameterSet, CodecError> {
    // decode_nal needs a header byte and at least one more.
    if sps.len() < 2 || sps[0] & 0x1F != 7 {
        return Err(bad("SPS", "not an SPS NAL unit"));
    }
    let rbsp = decode_nal(sps).map_err(|e| bad("SPS", e))?;
    let strict = match SeqParameterSet::from_bits(BitReader::new(&rbsp[..])) {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    parse_sps_lenient(&rbsp, &strict)
}

fn parse_sps_lenient(rbsp: &[u8], strict: &SpsError) -> Result<SeqParameterSet, CodecError> {
    if rbsp.len() < 3 {
        return Err(bad("SPS", format!("{strict:?}")));
    }
    let mut data: Vec<u8> = Vec::with_capacity(rbsp.len() + PADDING);
    data.extend_from_slice(rbsp);
    data.extend_from_slice(&[0; PADDING]);
    let mut tolerated: Vec<Cow<'static, str>> = Vec::new();
    // The level's frame-size limit (Annex A) is a claim about the stream
    // that decoders do not enforce: read the SPS with no level named.
    let level_idc = rbsp[2];
    let level_too_low = matches!(
        strict,
        SpsError::FieldValueTooLarge {
            name: "pic_size_in_map_units",
            ..
        }
    );
    if level_too_low {
        data[2] = 0;
        tolerated.push(format!("level_idc {level_idc} is too low for the picture size").into());
    }
    let end = data_bits(rbsp);
    let read = |data: &[u8]| {
        let (taken, vui_at) = (Cell::new(0), Cell::new(None));
        let r = Lenient {
            inner: BitReader::new(data),
            pos: &taken,
            vui_at: &vui_at,
        };
        (SeqParameterSet::from_bits(r), taken.get(), vui_at.get())
    };
    let (mut parsed, pos, vui_at) = read(&data);
    if parsed.is_err() || pos > end {
        // The data ran out. Inside the VUI that is harmless: read again
        // with the VUI flag cleared. Before it, the SPS is unusable.
        match vui_at.filter(|at| *at < end) {
            Some(at) => {
                let (byte, bit) = ((at / 8) as usize, 7 - (at % 8) as u8);
                data[byte] &= !(1 << bit);
                parsed = read(&data).0;
                tolerated.push(format!("VUI cut off after {end} bits; VUI ignored").into());
            }
            None => {
                return Err(bad(
                    "SPS",
                    format!("cut off after {end} bits, before its VUI ({strict:?})"),
                ))
            }
        }
    } else if pos < end {
        tolerated.push(format!("{} bits of data after the last field ignored", end - pos).into());
    }
    let mut sps = parsed.map_err(|e| bad("SPS", format!("{e:?}")))?;
    if tolerated.is_empty() {
        // Strict refused it for a reason leniency does not cover.
        return Err(bad("SPS", format!("{strict:?}")));
    }
    sps.level_idc = level_idc;
    sps.pixel_dimensions()
        .map_err(|e| bad("SPS", format!("{e:?}")))?;
    tracing::warn!(
        quirks = %tolerated.join("; "),
        "SPS accepted as decoders accept it"
    );
    Ok(sps)
}

/// Decodes a PPS NAL unit (header byte included) against the SPSs of `ctx`,
/// ignoring bytes after its last field (as decoders do, with a warning).
pub fn parse_pps(
    ctx: &h264_reader::Context,
    pps: &[u8],
) -> Result<h264_reader::nal::pps::PicParameterSet, CodecError> {
    use h264_reader::nal::pps::PicParameterSet;
    if pps.len() < 2 || pps[0] & 0x1F != 8 {
        return Err(bad("PPS", "not a PPS NAL unit"));
    }
    let rbsp = decode_nal(pps).map_err(|e| bad("PPS", e))?;
    match PicParameterSet::from_bits(ctx, BitReader::new(&rbsp[..])) {
        Ok(p) => Ok(p),
        Err(strict) => {
            let (taken, vui_at) = (Cell::new(0), Cell::new(None));
            let r = Lenient {
                inner: BitReader::new(&rbsp[..]),
                pos: &taken,
                vui_at: &vui_at,
            };
            let p = PicParameterSet::from_bits(ctx, r)
                .map_err(|_| bad("PPS", format!("{strict:?}")))?;
            tracing::warn!(
                bits = data_bits(&rbsp).saturating_sub(taken.get()),
                "data after the last field of a PPS ignored, as decoders do"
            );
            Ok(p)
        }
    }
}

/// Displayed width and height from an SPS NAL, cropping applied.
///
/// Errors: [`CodecError::BadParameterSet`] also when the cropping leaves no
/// picture (a zero width or height, which no decoder shows; found by the
/// `parameter_sets` fuzz target).
pub fn sps_dimensions(sps: &[u8]) -> Result<(u32, u32), CodecError> {
    let (w, h) = parse_sps(sps)?
        .pixel_dimensions()
        .map_err(|e| bad("SPS", format!("{e:?}")))?;
    if w == 0 || h == 0 {
        return Err(bad("SPS", format!("cropping leaves a {w}x{h} picture")));
    }
    Ok((w, h))
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
