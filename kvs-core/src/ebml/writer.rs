//! Element writer helpers for building EBML into a `Vec<u8>`.

use super::vint::{size_width, write_id, write_size, write_unknown_size};

/// Writes a complete element whose body is `body`.
pub fn element(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    write_id(out, id);
    write_size(out, body.len() as u64, size_width(body.len() as u64));
    out.extend_from_slice(body);
}

/// Writes an unsigned integer element in the fewest bytes (at least one).
pub fn uint(out: &mut Vec<u8>, id: u32, v: u64) {
    let n = (8 - (v.leading_zeros() / 8) as usize).max(1);
    element(out, id, &v.to_be_bytes()[8 - n..]);
}

/// Writes an unsigned integer element with a fixed 8-byte body.
pub fn uint8(out: &mut Vec<u8>, id: u32, v: u64) {
    element(out, id, &v.to_be_bytes());
}

/// Writes an 8-byte float element.
pub fn float(out: &mut Vec<u8>, id: u32, v: f64) {
    element(out, id, &v.to_be_bytes());
}

/// Writes a string element (no terminator).
pub fn string(out: &mut Vec<u8>, id: u32, v: &str) {
    element(out, id, v.as_bytes());
}

/// Writes a master element whose children `f` writes; the size is filled in
/// afterwards with the smallest width that fits.
pub fn master(out: &mut Vec<u8>, id: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    f(&mut body);
    element(out, id, &body);
}

/// Writes the header of a master element of unknown size (1-byte size field).
pub fn master_unknown(out: &mut Vec<u8>, id: u32) {
    write_id(out, id);
    write_unknown_size(out, 1);
}

/// Writes an element header for a body of `len` bytes that the caller appends.
pub fn header(out: &mut Vec<u8>, id: u32, len: u64) {
    write_id(out, id);
    write_size(out, len, size_width(len));
}

/// Writes a Matroska EBML header (EBML version 1, IDs ≤ 4 bytes, sizes ≤ 8
/// bytes) with the given DocType and DocTypeVersion (read version 2).
pub fn ebml_header(out: &mut Vec<u8>, doc_type: &str, doc_type_version: u64) {
    use crate::mkv::ids;
    master(out, ids::EBML, |b| {
        uint(b, ids::EBML_VERSION, 1);
        uint(b, ids::EBML_READ_VERSION, 1);
        uint(b, ids::EBML_MAX_ID_LENGTH, 4);
        uint(b, ids::EBML_MAX_SIZE_LENGTH, 8);
        string(b, ids::DOC_TYPE, doc_type);
        uint(b, ids::DOC_TYPE_VERSION, doc_type_version);
        uint(b, ids::DOC_TYPE_READ_VERSION, 2);
    });
}
