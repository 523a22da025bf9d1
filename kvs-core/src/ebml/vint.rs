//! EBML variable-length integers: element IDs and data sizes.
//!
//! An EBML vint stores its own width in the count of leading zero bits of the
//! first byte (1 to 8 bytes). Sizes drop the marker bit; IDs keep it. A size
//! whose value bits are all ones means "unknown size".

/// The value a decoded size takes when the size field says "unknown".
pub const UNKNOWN_SIZE: u64 = u64::MAX;

/// Result of decoding a vint from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VintRead {
    /// Decoded: `(value, width in bytes)`.
    Ok(u64, usize),
    /// The buffer ends before the vint does; at least this many bytes are needed.
    NeedMore(usize),
    /// The first byte is zero: a vint wider than 8 bytes, which EBML forbids.
    Invalid,
}

/// Width in bytes of the vint that starts with `first` (0 if invalid).
#[inline]
pub fn vint_width(first: u8) -> usize {
    if first == 0 {
        0
    } else {
        first.leading_zeros() as usize + 1
    }
}

/// Decodes an element data size. All-ones value bits give [`UNKNOWN_SIZE`].
#[inline]
pub fn read_size(buf: &[u8]) -> VintRead {
    let Some(&first) = buf.first() else {
        return VintRead::NeedMore(1);
    };
    let w = vint_width(first);
    if w == 0 {
        return VintRead::Invalid;
    }
    if buf.len() < w {
        return VintRead::NeedMore(w);
    }
    let mut v = u64::from(first) & (0xFFu64 >> w);
    for &b in &buf[1..w] {
        v = (v << 8) | u64::from(b);
    }
    let all_ones = (1u64 << (7 * w)) - 1;
    if v == all_ones {
        VintRead::Ok(UNKNOWN_SIZE, w)
    } else {
        VintRead::Ok(v, w)
    }
}

/// Decodes an element ID (marker bit kept, as Matroska writes IDs). IDs are at
/// most 4 bytes wide; wider ones are [`VintRead::Invalid`].
#[inline]
pub fn read_id(buf: &[u8]) -> VintRead {
    let Some(&first) = buf.first() else {
        return VintRead::NeedMore(1);
    };
    let w = vint_width(first);
    if w == 0 || w > 4 {
        return VintRead::Invalid;
    }
    if buf.len() < w {
        return VintRead::NeedMore(w);
    }
    let mut v = 0u64;
    for &b in &buf[..w] {
        v = (v << 8) | u64::from(b);
    }
    VintRead::Ok(v, w)
}

/// Decodes a signed vint as used by EBML lacing (value minus the bias
/// `2^(7w-1) - 1`).
#[inline]
pub fn read_signed(buf: &[u8]) -> VintRead {
    match read_size(buf) {
        VintRead::Ok(UNKNOWN_SIZE, _) => VintRead::Invalid,
        VintRead::Ok(v, w) => {
            let bias = (1u64 << (7 * w - 1)) - 1;
            VintRead::Ok(v.wrapping_sub(bias), w)
        }
        other => other,
    }
}

/// Smallest width (1..=8) that holds `v` as a size without colliding with the
/// unknown-size pattern.
#[inline]
pub fn size_width(v: u64) -> usize {
    let mut w = 1;
    while w < 8 && v >= (1u64 << (7 * w)) - 1 {
        w += 1;
    }
    w
}

/// Writes `v` as a size of exactly `width` bytes into `out`.
///
/// # Panics
/// Only on caller bugs: `width` outside 1..=8 or `v` not fitting that width
/// (the builder computes widths with [`size_width`]).
#[inline]
pub fn write_size(out: &mut Vec<u8>, v: u64, width: usize) {
    assert!((1..=8).contains(&width) && (width == 8 || v < (1u64 << (7 * width)) - 1));
    let marked = v | (1u64 << (7 * width));
    out.extend_from_slice(&marked.to_be_bytes()[8 - width..]);
}

/// Writes an unknown size of the given width.
#[inline]
pub fn write_unknown_size(out: &mut Vec<u8>, width: usize) {
    let marked = ((1u64 << (7 * width)) - 1) | (1u64 << (7 * width));
    out.extend_from_slice(&marked.to_be_bytes()[8 - width..]);
}

/// Writes an element ID (already carrying its marker bit).
#[inline]
pub fn write_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = (id.leading_zeros() / 8) as usize;
    out.extend_from_slice(&bytes[skip.min(3)..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(read_size(&[0x81]), VintRead::Ok(1, 1));
        assert_eq!(read_size(&[0x40, 0x02]), VintRead::Ok(2, 2));
        assert_eq!(read_size(&[0xFF]), VintRead::Ok(UNKNOWN_SIZE, 1));
        assert_eq!(
            read_size(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            VintRead::Ok(UNKNOWN_SIZE, 8)
        );
        assert_eq!(read_size(&[0x00]), VintRead::Invalid);
        assert_eq!(read_size(&[0x10, 0]), VintRead::NeedMore(4));
        assert_eq!(
            read_id(&[0x1A, 0x45, 0xDF, 0xA3]),
            VintRead::Ok(0x1A45_DFA3, 4)
        );
        assert_eq!(read_id(&[0x08, 0, 0, 0, 0]), VintRead::Invalid);
        assert_eq!(read_signed(&[0x80 | 63]), VintRead::Ok(0, 1));
    }

    proptest! {
        #[test]
        fn size_round_trip(v in 0u64..(1u64 << 56) - 1, extra in 0usize..8) {
            let w = (size_width(v) + extra).min(8);
            let mut out = Vec::new();
            write_size(&mut out, v, w);
            prop_assert_eq!(out.len(), w);
            prop_assert_eq!(read_size(&out), VintRead::Ok(v, w));
            // Every strict prefix asks for more instead of failing.
            for cut in 0..w {
                prop_assert_eq!(read_size(&out[..cut]), VintRead::NeedMore(if cut == 0 { 1 } else { w }));
            }
        }

        #[test]
        fn unknown_round_trip(w in 1usize..=8) {
            let mut out = Vec::new();
            write_unknown_size(&mut out, w);
            prop_assert_eq!(read_size(&out), VintRead::Ok(UNKNOWN_SIZE, w));
        }
    }
}
