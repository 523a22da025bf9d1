//! Decoding of the small master elements the parser buffers whole (EBML
//! header, Info, Tracks, Tags) and of Block/SimpleBlock bodies.

use bytes::Bytes;

use super::error::ParseError;
use super::ids;
use super::types::{AudioInfo, EbmlHeader, SegmentInfo, SimpleTag, TrackInfo, VideoInfo};
use super::Limits;
use crate::ebml::reader::{read_header, HeaderRead};
use crate::ebml::vint::{read_signed, read_size, VintRead, UNKNOWN_SIZE};

/// One child inside a buffered master.
pub(crate) struct Child {
    pub id: u32,
    pub offset: u64,
    pub body_offset: u64,
    pub body: Bytes,
}

/// Iterates the children of a buffered master body that starts at stream
/// offset `base`.
pub(crate) fn children(
    body: &Bytes,
    base: u64,
) -> impl Iterator<Item = Result<Child, ParseError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= body.len() {
            return None;
        }
        let offset = base + pos as u64;
        let res = match read_header(&body[pos..]) {
            HeaderRead::Ok(h) => match h.size {
                None => Err(ParseError::UnknownSizeNotAllowed { offset, id: h.id }),
                Some(size) => {
                    let start = pos + h.header_len;
                    let avail = (body.len() - start) as u64;
                    if size > avail {
                        Err(ParseError::OverflowsParent {
                            offset,
                            id: h.id,
                            end: offset + h.header_len as u64 + size,
                            parent_end: base + body.len() as u64,
                        })
                    } else {
                        let end = start + size as usize;
                        pos = end;
                        Ok(Child {
                            id: h.id,
                            offset,
                            body_offset: base + start as u64,
                            body: body.slice(start..end),
                        })
                    }
                }
            },
            HeaderRead::NeedMore => Err(ParseError::OverflowsParent {
                offset,
                id: 0,
                end: base + body.len() as u64 + 1,
                parent_end: base + body.len() as u64,
            }),
            HeaderRead::BadId => Err(ParseError::BadId { offset }),
            HeaderRead::BadSize => Err(ParseError::BadSize { offset }),
        };
        failed = res.is_err();
        Some(res)
    })
}

pub(crate) fn uint(c: &Child) -> Result<u64, ParseError> {
    if c.body.len() > 8 {
        return Err(ParseError::BadValue {
            offset: c.offset,
            what: "unsigned integer",
        });
    }
    Ok(c.body.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

pub(crate) fn sint(c: &Child) -> Result<i64, ParseError> {
    if c.body.len() > 8 {
        return Err(ParseError::BadValue {
            offset: c.offset,
            what: "signed integer",
        });
    }
    if c.body.is_empty() {
        return Ok(0);
    }
    let neg = c.body[0] & 0x80 != 0;
    let v = c
        .body
        .iter()
        .fold(if neg { -1i64 } else { 0 }, |v, &b| (v << 8) | i64::from(b));
    Ok(v)
}

fn float(c: &Child) -> Result<f64, ParseError> {
    match c.body.len() {
        0 => Ok(0.0),
        4 => Ok(f64::from(f32::from_be_bytes(
            c.body[..4].try_into().expect("4 bytes"),
        ))),
        8 => Ok(f64::from_be_bytes(c.body[..8].try_into().expect("8 bytes"))),
        _ => Err(ParseError::BadValue {
            offset: c.offset,
            what: "float",
        }),
    }
}

/// A string with trailing NUL padding removed (identifiers, names).
fn ident(c: &Child) -> String {
    let b = &c.body[..];
    let end = b.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Checks a leading CRC-32 child against the rest of `body`.
pub(crate) fn check_crc(body: &Bytes, base: u64, id: u32, strict: bool) -> Result<(), ParseError> {
    if body.len() >= 6 && body[0] == 0xBF && body[1] == 0x84 {
        let want = u32::from_le_bytes(body[2..6].try_into().expect("4 bytes"));
        let got = crc32fast::hash(&body[6..]);
        if want != got {
            if strict {
                return Err(ParseError::CrcMismatch { offset: base, id });
            }
            tracing::warn!(
                offset = base,
                id,
                "CRC-32 mismatch (ignored in lenient mode)"
            );
        }
    }
    Ok(())
}

fn unexpected(strict: bool, c: &Child, parent: u32) -> Result<(), ParseError> {
    if strict && c.id != ids::VOID && c.id != ids::CRC32 {
        return Err(ParseError::Unexpected {
            offset: c.offset,
            id: c.id,
            parent,
        });
    }
    Ok(())
}

pub(crate) fn parse_ebml_header(
    body: &Bytes,
    offset: u64,
    base: u64,
    strict: bool,
) -> Result<EbmlHeader, ParseError> {
    let mut h = EbmlHeader {
        offset,
        doc_type: String::new(),
        doc_type_version: 1,
        doc_type_read_version: 1,
        max_size_length: 8,
    };
    for c in children(body, base) {
        let c = c?;
        match c.id {
            ids::DOC_TYPE => h.doc_type = ident(&c),
            ids::DOC_TYPE_VERSION => h.doc_type_version = uint(&c)?,
            ids::DOC_TYPE_READ_VERSION => h.doc_type_read_version = uint(&c)?,
            ids::EBML_MAX_SIZE_LENGTH => h.max_size_length = uint(&c)?,
            ids::EBML_VERSION | ids::EBML_READ_VERSION | ids::EBML_MAX_ID_LENGTH => {
                uint(&c)?;
            }
            _ => unexpected(strict, &c, ids::EBML)?,
        }
    }
    Ok(h)
}

pub(crate) fn parse_info(body: &Bytes, base: u64, strict: bool) -> Result<SegmentInfo, ParseError> {
    let mut info = SegmentInfo::default();
    for c in children(body, base) {
        let c = c?;
        match c.id {
            ids::TIMECODE_SCALE => {
                let v = uint(&c)?;
                if v == 0 {
                    return Err(ParseError::BadValue {
                        offset: c.offset,
                        what: "TimecodeScale of 0",
                    });
                }
                info.timecode_scale = v;
            }
            ids::DURATION => info.duration = Some(float(&c)?),
            ids::SEGMENT_UID => info.segment_uid = Some(c.body.clone()),
            ids::TITLE => info.title = Some(ident(&c)),
            ids::MUXING_APP => info.muxing_app = Some(ident(&c)),
            ids::WRITING_APP => info.writing_app = Some(ident(&c)),
            _ => unexpected(strict, &c, ids::INFO)?,
        }
    }
    Ok(info)
}

pub(crate) fn parse_tracks(
    body: &Bytes,
    base: u64,
    limits: &Limits,
    strict: bool,
) -> Result<Vec<TrackInfo>, ParseError> {
    let mut out = Vec::new();
    for c in children(body, base) {
        let c = c?;
        if c.id != ids::TRACK_ENTRY {
            unexpected(strict, &c, ids::TRACKS)?;
            continue;
        }
        if out.len() >= limits.max_tracks {
            return Err(ParseError::TooMany {
                offset: base,
                what: "tracks",
                limit: limits.max_tracks,
            });
        }
        let mut t = TrackInfo {
            number: 0,
            uid: None,
            track_type: 0,
            codec_id: String::new(),
            codec_private: None,
            name: None,
            default_duration_ns: None,
            video: None,
            audio: None,
        };
        for f in children(&c.body, c.body_offset) {
            let f = f?;
            match f.id {
                ids::TRACK_NUMBER => t.number = uint(&f)?,
                ids::TRACK_UID => t.uid = Some(uint(&f)?),
                ids::TRACK_TYPE => t.track_type = uint(&f)?,
                ids::CODEC_ID => t.codec_id = ident(&f),
                ids::CODEC_PRIVATE => t.codec_private = Some(f.body.clone()),
                ids::NAME => t.name = Some(ident(&f)),
                ids::DEFAULT_DURATION => t.default_duration_ns = Some(uint(&f)?),
                ids::VIDEO => {
                    let mut v = VideoInfo {
                        pixel_width: 0,
                        pixel_height: 0,
                    };
                    for g in children(&f.body, f.body_offset) {
                        let g = g?;
                        match g.id {
                            ids::PIXEL_WIDTH => v.pixel_width = uint(&g)?,
                            ids::PIXEL_HEIGHT => v.pixel_height = uint(&g)?,
                            _ => {}
                        }
                    }
                    t.video = Some(v);
                }
                ids::AUDIO => {
                    let mut a = AudioInfo {
                        sampling_frequency: 8000.0,
                        channels: 1,
                        bit_depth: None,
                    };
                    for g in children(&f.body, f.body_offset) {
                        let g = g?;
                        match g.id {
                            ids::SAMPLING_FREQUENCY => a.sampling_frequency = float(&g)?,
                            ids::CHANNELS => a.channels = uint(&g)?,
                            ids::BIT_DEPTH => a.bit_depth = Some(uint(&g)?),
                            _ => {}
                        }
                    }
                    t.audio = Some(a);
                }
                _ => {}
            }
        }
        out.push(t);
    }
    Ok(out)
}

pub(crate) fn parse_tags(
    body: &Bytes,
    base: u64,
    limits: &Limits,
    strict: bool,
) -> Result<Vec<SimpleTag>, ParseError> {
    let mut out = Vec::new();
    for tag in children(body, base) {
        let tag = tag?;
        if tag.id != ids::TAG {
            unexpected(strict, &tag, ids::TAGS)?;
            continue;
        }
        for st in children(&tag.body, tag.body_offset) {
            let st = st?;
            if st.id == ids::SIMPLE_TAG {
                simple_tag(&st, 0, limits, base, &mut out)?;
            }
        }
    }
    Ok(out)
}

fn simple_tag(
    st: &Child,
    level: usize,
    limits: &Limits,
    base: u64,
    out: &mut Vec<SimpleTag>,
) -> Result<(), ParseError> {
    if level + 4 > limits.max_depth {
        return Err(ParseError::TooDeep {
            offset: st.offset,
            limit: limits.max_depth,
        });
    }
    if out.len() >= limits.max_tags {
        return Err(ParseError::TooMany {
            offset: base,
            what: "tags",
            limit: limits.max_tags,
        });
    }
    let idx = out.len();
    out.push(SimpleTag {
        name: String::new(),
        string: None,
        binary: None,
        level: level.min(255) as u8,
    });
    for f in children(&st.body, st.body_offset) {
        let f = f?;
        match f.id {
            ids::TAG_NAME => out[idx].name = ident(&f),
            ids::TAG_STRING => {
                out[idx].string = Some(String::from_utf8_lossy(&f.body).into_owned())
            }
            ids::TAG_BINARY => out[idx].binary = Some(f.body.clone()),
            ids::SIMPLE_TAG => simple_tag(&f, level + 1, limits, base, out)?,
            _ => {}
        }
    }
    Ok(())
}

/// The fixed part of a Block / SimpleBlock and its laced frame sizes.
pub(crate) struct BlockHead {
    pub track: u64,
    pub rel_timecode: i16,
    pub flags: u8,
}

/// Parses a block header and calls `frame(index, count, payload)` for each
/// frame of its lace.
pub(crate) fn parse_block(
    body: &Bytes,
    offset: u64,
    mut frame: impl FnMut(u8, u8, Bytes),
) -> Result<BlockHead, ParseError> {
    let bad = |reason| ParseError::BadBlock { offset, reason };
    let (track, tw) = match read_size(body) {
        VintRead::Ok(UNKNOWN_SIZE, _) | VintRead::Invalid => {
            return Err(bad("invalid track number"))
        }
        VintRead::NeedMore(_) => return Err(bad("block shorter than its header")),
        VintRead::Ok(v, w) => (v, w),
    };
    if body.len() < tw + 3 {
        return Err(bad("block shorter than its header"));
    }
    let rel_timecode = i16::from_be_bytes([body[tw], body[tw + 1]]);
    let flags = body[tw + 2];
    let mut pos = tw + 3;
    let lacing = (flags >> 1) & 0x03;
    if lacing == 0 {
        frame(0, 1, body.slice(pos..));
        return Ok(BlockHead {
            track,
            rel_timecode,
            flags,
        });
    }
    let Some(&n_minus_1) = body.get(pos) else {
        return Err(bad("lace count missing"));
    };
    pos += 1;
    let count = usize::from(n_minus_1) + 1;
    // Sizes of the first count-1 frames; the last takes the rest.
    let mut sizes = [0usize; 256];
    match lacing {
        1 => {
            for s in sizes.iter_mut().take(count - 1) {
                let mut v = 0usize;
                loop {
                    let Some(&b) = body.get(pos) else {
                        return Err(bad("Xiph lace sizes run past the block"));
                    };
                    pos += 1;
                    v += usize::from(b);
                    if b != 255 {
                        break;
                    }
                }
                *s = v;
            }
        }
        3 => {
            if count > 1 {
                let (first, w) = match read_size(&body[pos..]) {
                    VintRead::Ok(v, w) if v != UNKNOWN_SIZE => (v, w),
                    _ => return Err(bad("bad EBML lace size")),
                };
                pos += w;
                let mut prev = first as i64;
                sizes[0] = usize::try_from(first).map_err(|_| bad("EBML lace size too large"))?;
                for s in sizes.iter_mut().take(count - 1).skip(1) {
                    let (d, w) = match read_signed(&body[pos..]) {
                        VintRead::Ok(v, w) => (v as i64, w),
                        _ => return Err(bad("bad EBML lace size delta")),
                    };
                    pos += w;
                    prev = prev
                        .checked_add(d)
                        .filter(|v| *v >= 0)
                        .ok_or_else(|| bad("negative EBML lace size"))?;
                    *s = usize::try_from(prev).map_err(|_| bad("EBML lace size too large"))?;
                }
            }
        }
        _ => {
            let rest = body.len() - pos;
            if !rest.is_multiple_of(count) {
                return Err(bad("fixed-size lace does not divide the block"));
            }
            for s in sizes.iter_mut().take(count - 1) {
                *s = rest / count;
            }
        }
    }
    // Validate every size before handing out any frame.
    let mut total = 0usize;
    for s in sizes.iter().take(count - 1) {
        total = total
            .checked_add(*s)
            .ok_or_else(|| bad("lace sizes exceed the block"))?;
    }
    if total > body.len() - pos {
        return Err(bad("lace sizes exceed the block"));
    }
    for (i, s) in sizes.iter().take(count - 1).enumerate() {
        let end = pos + *s;
        frame(i as u8, count as u8, body.slice(pos..end));
        pos = end;
    }
    frame((count - 1) as u8, count as u8, body.slice(pos..));
    Ok(BlockHead {
        track,
        rel_timecode,
        flags,
    })
}
