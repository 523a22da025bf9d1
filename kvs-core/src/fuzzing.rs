//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the test that
//! replays their seed corpus on the stable toolchain. Each one runs a parser
//! over arbitrary bytes and checks invariants that must hold for any input:
//! no panic, and identical results whatever the chunking.

use bytes::Bytes;

use crate::codec::annexb::{access_units, avcc_nals, to_avcc, VideoCodec};
use crate::codec::{aac, h264, h265};
use crate::ebml::reader::Walker;
use crate::mkv::fragment::FragmentAssembler;
use crate::mkv::{parse_all, parse_split, Event, ParseError, ParserConfig};

/// Split points derived from the input itself, so a crash reproduces.
fn splits(data: &[u8]) -> Vec<usize> {
    let mut x: u64 = data.iter().take(64).fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let n = (data.len() / 97).clamp(1, 64);
    let mut v: Vec<usize> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (data.len() as u64 + 1)) as usize
        })
        .collect();
    v.sort_unstable();
    v
}

fn parse_chunked(data: &[u8], cfg: ParserConfig) -> (Vec<Event>, Option<ParseError>) {
    parse_split(data, &splits(data), cfg)
}

/// The bare EBML walker over arbitrary bytes, whole and chunked.
pub fn ebml_walk(data: &[u8]) {
    let is_master = |id| id == crate::mkv::ids::SEGMENT || id == crate::mkv::ids::CLUSTER;
    let mut whole = Walker::new(is_master);
    let r1 = whole.push(Bytes::copy_from_slice(data));
    let mut chunked = Walker::new(is_master);
    let mut r2 = Ok(());
    let mut start = 0;
    for end in splits(data).into_iter().chain([data.len()]) {
        r2 = chunked.push(Bytes::copy_from_slice(&data[start..end]));
        start = end;
        if r2.is_err() {
            break;
        }
    }
    assert_eq!(r1, r2, "walk result depends on chunking");
    if r1.is_ok() {
        assert_eq!(whole.stats(), chunked.stats(), "walk depends on chunking");
    }
}

/// The Matroska parser, lenient and strict, whole and chunked: the events
/// and the final error must not depend on chunking.
pub fn mkv_parser(data: &[u8]) {
    for cfg in [
        ParserConfig::default(),
        ParserConfig {
            strict: true,
            ..ParserConfig::default()
        },
    ] {
        let whole = parse_all(Bytes::copy_from_slice(data), cfg);
        let chunked = parse_chunked(data, cfg);
        // Compared as text: a NaN float (a Duration, say) is unequal to itself.
        assert_eq!(
            format!("{whole:?}"),
            format!("{chunked:?}"),
            "parser events depend on chunking"
        );
        if let Some(e) = &whole.1 {
            assert!(
                e.offset() <= data.len() as u64,
                "error offset past the input"
            );
        }
    }
}

/// The fragment assembler: no panic, frames never exceed the input.
pub fn fragment_assembler(data: &[u8]) {
    let mut a = FragmentAssembler::default();
    let mut total = 0usize;
    let mut start = 0;
    for end in splits(data).into_iter().chain([data.len()]) {
        a.push(Bytes::copy_from_slice(&data[start..end]));
        start = end;
        while let Ok(Some(f)) = a.next_fragment() {
            total += f.payload_bytes() as usize;
        }
    }
    a.finish();
    while let Ok(Some(f)) = a.next_fragment() {
        total += f.payload_bytes() as usize;
    }
    assert!(total <= data.len(), "more payload out than bytes in");
}

/// Annex-B splitting, AVCC conversion, SPS/VPS decoding and ADTS on arbitrary bytes.
pub fn annexb(data: &[u8]) {
    let b = Bytes::copy_from_slice(data);
    for codec in [VideoCodec::H264, VideoCodec::H265] {
        let units = access_units(codec, &b);
        assert!(units.iter().map(Bytes::len).sum::<usize>() <= data.len());
        let keys: Vec<bool> = (0..units.len()).map(|i| i == 0).collect();
        if let Some(order) = crate::codec::poc::presentation_order(codec, &units, &keys) {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert!(
                sorted.iter().enumerate().all(|(i, &o)| i == o),
                "presentation order is a permutation"
            );
        }
    }
    if let Ok(avcc) = to_avcc(data) {
        let nals = avcc_nals(&avcc, 4).expect("our own AVCC parses");
        assert!(nals.iter().all(|n| !n.is_empty()));
    }
    let mut p264 = h264::ParameterSets::default();
    p264.collect_annexb(&b);
    let _ = p264.codec_private();
    let _ = p264.dimensions();
    let mut p265 = h265::ParameterSets::default();
    p265.collect_annexb(&b);
    let _ = p265.codec_private();
    let _ = p265.dimensions();
    let _ = h264::sps_dimensions(data);
    let _ = h265::parse_sps(data);
    let _ = aac::split_adts(&b);
}

/// The PutMedia ACK decoder: the same ACKs (or the same error) whatever the chunking.
pub fn ack_decoder(data: &[u8]) {
    use crate::protocol::AckDecoder;
    let run = |ends: &[usize]| {
        let mut d = AckDecoder::new(1024);
        let mut out = Vec::new();
        let mut start = 0;
        for &end in ends.iter().chain([data.len()].iter()) {
            d.push(&data[start..end]);
            start = end;
            while let Some(a) = d.next_ack() {
                let stop = a.is_err();
                out.push(a);
                if stop {
                    return out;
                }
            }
        }
        if let Err(e) = d.finish() {
            out.push(Err(e));
        }
        out
    };
    assert_eq!(run(&[]), run(&splits(data)), "ACKs depend on chunking");
}
