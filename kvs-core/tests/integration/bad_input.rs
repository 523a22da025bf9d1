//! Hostile input: typed errors with offsets, bounded memory, no panics.

use bytes::Bytes;
use kvs_core::mkv::fragment::FragmentAssembler;
use kvs_core::mkv::{parse_all, Limits, ParseError, Parser, ParserConfig};
use proptest::prelude::*;

const EBML_HEADER: &[u8] = &[0x1A, 0x45, 0xDF, 0xA3, 0x84, 0x42, 0x82, 0x81, b'm'];

fn err(data: Vec<u8>) -> ParseError {
    let (_, e) = parse_all(Bytes::from(data), ParserConfig::default());
    e.expect("an error")
}

#[test]
fn not_matroska_is_reported_at_byte_zero() {
    assert!(matches!(
        err(b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ParseError::NotMatroska { offset: 0, .. }
            | ParseError::BadId { offset: 0 }
            | ParseError::Truncated { offset: 0, .. }
    ));
    assert!(matches!(
        err(vec![0x00, 0x01, 0x02]),
        ParseError::BadId { offset: 0 }
    ));
}

#[test]
fn huge_declared_block_is_refused_before_buffering() {
    // Segment (unknown) > Cluster (unknown) > SimpleBlock declaring 2^56 - 2 bytes.
    let mut d = EBML_HEADER.to_vec();
    d.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0xFF, 0x1F, 0x43, 0xB6, 0x75, 0xFF, 0xA3,
    ]);
    d.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]);
    let at = EBML_HEADER.len() as u64 + 10;
    match err(d) {
        ParseError::TooLarge { offset, size, .. } => {
            assert_eq!(offset, at);
            assert_eq!(size, (1 << 56) - 2);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn huge_declared_unknown_element_is_skipped_without_buffering() {
    // An unknown Segment child declaring 2^56-2 bytes: skipped lazily, so the
    // input simply ends inside it.
    let mut d = EBML_HEADER.to_vec();
    d.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0xFF, 0x4F, 0xFF]);
    d.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]);
    d.extend_from_slice(&[0u8; 1000]);
    assert!(matches!(err(d), ParseError::Truncated { id: 0x4FFF, .. }));
}

#[test]
fn a_million_nested_elements_hit_the_depth_limit() {
    // Tags > Tag > SimpleTag > SimpleTag > … 10^6 levels, each with a 4-byte size.
    let depth = 1_000_000usize;
    let mut body: Vec<u8> = Vec::new();
    let mut sizes = vec![0u32; depth];
    for i in (0..depth - 1).rev() {
        sizes[i] = sizes[i + 1] + 6;
    }
    for s in sizes.iter() {
        body.extend_from_slice(&[0x67, 0xC8, 0x10]);
        body.extend_from_slice(&s.to_be_bytes()[1..]);
    }
    let mut tag = vec![0x73, 0x73, 0x01];
    tag.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
    tag.extend_from_slice(&body);
    let mut tags = vec![0x12, 0x54, 0xC3, 0x67, 0x01];
    tags.extend_from_slice(&(tag.len() as u64).to_be_bytes()[1..]);
    tags.extend_from_slice(&tag);
    let mut d = EBML_HEADER.to_vec();
    d.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0xFF]);
    d.extend_from_slice(&tags);
    assert!(matches!(err(d), ParseError::TooDeep { limit: 32, .. }));
}

#[test]
fn lace_count_larger_than_the_block() {
    let mut d = EBML_HEADER.to_vec();
    d.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0xFF, 0x1F, 0x43, 0xB6, 0x75, 0xFF, 0xE7, 0x81, 0x00,
    ]);
    // SimpleBlock: track 1, tc 0, Xiph lacing, 200 frames, one size byte.
    let at = d.len() as u64;
    d.extend_from_slice(&[0xA3, 0x87, 0x81, 0x00, 0x00, 0x82, 199, 5, 1]);
    match err(d) {
        ParseError::BadBlock { offset, .. } => assert_eq!(offset, at),
        e => panic!("{e:?}"),
    }
}

#[test]
fn limits_are_configurable() {
    let cfg = ParserConfig {
        limits: Limits {
            max_metadata_size: 3,
            ..Limits::default()
        },
        strict: false,
    };
    let (_, e) = parse_all(Bytes::from_static(EBML_HEADER), cfg);
    assert!(matches!(e, Some(ParseError::TooLarge { limit: 3, .. })));
}

#[test]
fn memory_returns_to_baseline_after_a_5_mb_frame() {
    let mut d = EBML_HEADER.to_vec();
    d.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0xFF, 0x1F, 0x43, 0xB6, 0x75, 0xFF, 0xE7, 0x81, 0x00,
    ]);
    let n = 5_000_000usize;
    d.extend_from_slice(&[0xA3, 0x01]);
    d.extend_from_slice(&((n + 4) as u64).to_be_bytes()[1..]);
    d.extend_from_slice(&[0x81, 0, 0, 0x80]);
    d.extend(std::iter::repeat_n(0x55, n));
    let mut p = Parser::default();
    for c in d.chunks(65536) {
        p.push(Bytes::copy_from_slice(c));
        while let Some(ev) = p.next_event().unwrap() {
            drop(ev);
        }
    }
    // Everything consumed, nothing retained.
    assert_eq!(p.buffered(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..4096), prefix in any::<bool>()) {
        let mut d = Vec::new();
        if prefix {
            d.extend_from_slice(EBML_HEADER);
            d.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0xFF, 0x1F, 0x43, 0xB6, 0x75, 0xFF]);
        }
        d.extend_from_slice(&data);
        let _ = parse_all(Bytes::from(d.clone()), ParserConfig::default());
        let _ = parse_all(Bytes::from(d.clone()), ParserConfig { strict: true, ..ParserConfig::default() });
        let mut a = FragmentAssembler::default();
        a.push(Bytes::from(d));
        a.finish();
        while let Ok(Some(_)) = a.next_fragment() {}
    }
}

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(crate::support::vectors().join(name)).unwrap()
}

#[test]
fn crc32_is_checked_strictly_and_reported_leniently() {
    let mut data = vector("kvs-parser-java/bezos_vogels.mkv");
    let strict = ParserConfig {
        strict: true,
        ..ParserConfig::default()
    };
    // Intact: both modes accept every CRC-32 in the file.
    assert!(parse_all(Bytes::from(data.clone()), strict).1.is_none());
    // Flip one byte of the muxing-app string inside the CRC-protected Info.
    let at = data
        .windows(4)
        .position(|w| w == b"Lavf")
        .expect("Info text");
    data[at] ^= 0x20;
    let (lenient_events, lenient_err) =
        parse_all(Bytes::from(data.clone()), ParserConfig::default());
    assert!(lenient_err.is_none());
    assert!(lenient_events.len() > 500);
    match parse_all(Bytes::from(data), strict).1 {
        Some(ParseError::CrcMismatch { id, .. }) => assert_eq!(id, 0x1549_A966),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_elements_are_skipped_unless_strict() {
    let mut d = EBML_HEADER.to_vec();
    d.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0xFF]);
    let at = d.len() as u64;
    d.extend_from_slice(&[0x4F, 0xEE, 0x83, 1, 2, 3]); // an element no schema here knows
    d.extend_from_slice(&[
        0x1F, 0x43, 0xB6, 0x75, 0xFF, 0xE7, 0x81, 0x05, 0xA3, 0x85, 0x81, 0x00, 0x01, 0x80, 0xAA,
    ]);
    let (events, err) = parse_all(Bytes::from(d.clone()), ParserConfig::default());
    assert!(err.is_none());
    let frame = events
        .iter()
        .find_map(|e| {
            if let kvs_core::mkv::Event::Frame(f) = e {
                Some(f.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(
        (frame.timecode, frame.key, &frame.payload[..]),
        (6, true, &[0xAA][..])
    );
    let strict = ParserConfig {
        strict: true,
        ..ParserConfig::default()
    };
    assert_eq!(
        parse_all(Bytes::from(d), strict).1,
        Some(ParseError::Unexpected {
            offset: at,
            id: 0x4FEE,
            parent: 0x1853_8067
        })
    );
}

#[test]
fn nul_terminated_doc_type_reads_as_matroska() {
    let (events, _) = parse_all(
        Bytes::from(vector("kvs-parser-java/test_mixed_tags.mkv")),
        ParserConfig::default(),
    );
    match &events[0] {
        kvs_core::mkv::Event::Header(h) => assert_eq!(h.doc_type, "matroska"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn unknown_size_cluster_ends_with_its_sized_segment() {
    // Segment of 15 bytes holding an unknown-size Cluster; what follows the
    // Segment is not the Cluster's, even though a SimpleBlock ID comes next.
    let mut d = EBML_HEADER.to_vec();
    d.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0x8F]);
    d.extend_from_slice(&[
        0x1F, 0x43, 0xB6, 0x75, 0xFF, 0xE7, 0x81, 0x00, 0xA3, 0x85, 0x81, 0x00, 0x00, 0x80, 0xAA,
    ]);
    let after = d.len() as u64;
    d.extend_from_slice(&[0xA3, 0x85, 0x81, 0x00, 0x00, 0x80, 0xBB]);
    let (events, err) = parse_all(Bytes::from(d.clone()), ParserConfig::default());
    let frames = events
        .iter()
        .filter(|e| matches!(e, kvs_core::mkv::Event::Frame(_)))
        .count();
    assert_eq!(
        frames, 1,
        "the block after the Segment is not a frame of its Cluster"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, kvs_core::mkv::Event::DocumentEnd)));
    assert_eq!(err, None, "lenient mode skips the stray top-level element");
    let strict = ParserConfig {
        strict: true,
        ..ParserConfig::default()
    };
    assert_eq!(
        parse_all(Bytes::from(d), strict).1,
        Some(ParseError::Unexpected {
            offset: after,
            id: 0xA3,
            parent: 0
        })
    );
}
