//! Parse and build throughput, ours beside the peers, in one run:
//! `cargo bench -p kvs-benches --bench mkv`
//!
//! - `parse/<impl>/<input>-whole` parses one buffer; `-64k` is fed in 64 KiB
//!   chunks (as `Bytes` for kvs, through a 64 KiB-per-read reader for peers).
//! - `parse/floor/…` is a bare EBML walk that only skips elements;
//!   `parse/memcpy/…` one copy of the same bytes.
//! - `build/<impl>/1080p-annexb`: Annex-B frames to MKV, adaptation included;
//!   `build/<impl>/1k-avcc`: 1 KiB AVCC frames.
//!
//! Throughput is in input bytes (parse, build 1080p) or frames (1k-avcc).

use std::hint::black_box;
use std::io::Cursor;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kvs_benches::{frames_1080p, mkv_known_sizes, small_av, ChunkReader, VideoFrame};
use kvs_core::ebml::reader::Walker;
use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, TrackConfig};
use kvs_core::mkv::{ids, Event, Parser, ParserConfig};

const CHUNK: usize = 64 * 1024;

fn kvs_parse(data: &Bytes, chunk: Option<usize>) -> u64 {
    let mut p = Parser::new(ParserConfig::default());
    let mut frames = 0u64;
    let mut drain = |p: &mut Parser| {
        while let Some(ev) = p.next_event().expect("valid input") {
            if let Event::Frame(f) = ev {
                frames += 1;
                black_box(&f.payload);
            }
        }
    };
    match chunk {
        None => {
            p.push(data.clone());
            drain(&mut p);
        }
        Some(n) => {
            let mut off = 0;
            while off < data.len() {
                let end = (off + n).min(data.len());
                p.push(data.slice(off..end));
                drain(&mut p);
                off = end;
            }
        }
    }
    p.finish();
    drain(&mut p);
    frames
}

fn floor_walk(data: &Bytes, chunk: usize) -> u64 {
    let mut w = Walker::new(|id| id == ids::SEGMENT || id == ids::CLUSTER);
    let mut off = 0;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        w.push(data.slice(off..end)).expect("valid input");
        off = end;
    }
    w.stats().elements
}

fn demuxer_parse(data: &[u8], chunk: Option<usize>) -> u64 {
    fn run<R: std::io::Read + std::io::Seek>(r: R) -> u64 {
        let mut mkv = matroska_demuxer::MatroskaFile::open(r).expect("peer opens input");
        let mut frame = matroska_demuxer::Frame::default();
        let mut n = 0;
        while mkv.next_frame(&mut frame).expect("peer reads frame") {
            n += 1;
            black_box(&frame.data);
        }
        n
    }
    match chunk {
        None => run(Cursor::new(data)),
        // The demuxer needs Seek; a 64 KiB BufReader over the cursor is its chunked form.
        Some(n) => run(std::io::BufReader::with_capacity(n, Cursor::new(data))),
    }
}

fn webm_iterable_parse(data: &[u8], chunk: Option<usize>) -> u64 {
    use webm_iterable::matroska_spec::MatroskaSpec;
    let mut n = 0;
    let mut count = |tag: MatroskaSpec| {
        if let MatroskaSpec::SimpleBlock(d) | MatroskaSpec::Block(d) = tag {
            n += 1;
            black_box(&d);
        }
    };
    match chunk {
        None => {
            let mut src = Cursor::new(data);
            for t in webm_iterable::WebmIterator::new(&mut src, &[]) {
                count(t.expect("peer reads tag"));
            }
        }
        Some(c) => {
            let mut src = ChunkReader::new(data, c);
            for t in webm_iterable::WebmIterator::new(&mut src, &[]) {
                count(t.expect("peer reads tag"));
            }
        }
    }
    n
}

fn mkvparser_parse(data: &[u8], chunk: Option<usize>) -> u64 {
    fn count(buf: &[u8], n: &mut u64) -> usize {
        let mut rest = buf;
        loop {
            match mkvparser::parse_element(rest) {
                Ok((r, e)) => {
                    if matches!(
                        e.body,
                        mkvparser::Body::Binary(
                            mkvparser::Binary::SimpleBlock(_) | mkvparser::Binary::Block(_)
                        )
                    ) {
                        *n += 1;
                    }
                    rest = r;
                }
                Err(_) => return buf.len() - rest.len(),
            }
        }
    }
    let mut n = 0;
    match chunk {
        None => {
            count(data, &mut n);
        }
        Some(c) => {
            let mut buf = Vec::new();
            for piece in data.chunks(c) {
                buf.extend_from_slice(piece);
                let used = count(&buf, &mut n);
                buf.drain(..used);
            }
        }
    }
    n
}

fn parse_benches(c: &mut Criterion) {
    let big = mkv_known_sizes(&frames_1080p());
    let mut inputs = vec![("1080p", big)];
    if let Some(av) = small_av() {
        inputs.push(("av-small", av));
    }
    let mut g = c.benchmark_group("parse");
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(3));
    for (name, data) in &inputs {
        let expected = kvs_parse(data, None);
        assert_eq!(kvs_parse(data, Some(CHUNK)), expected);
        assert_eq!(
            demuxer_parse(data, None),
            expected,
            "matroska-demuxer frame count"
        );
        assert_eq!(
            webm_iterable_parse(data, None),
            expected,
            "webm-iterable frame count"
        );
        assert_eq!(
            mkvparser_parse(data, None),
            expected,
            "mkvparser frame count"
        );
        g.throughput(Throughput::Bytes(data.len() as u64));
        for (mode, chunk) in [("whole", None), ("64k", Some(CHUNK))] {
            g.bench_function(format!("kvs/{name}-{mode}"), |b| {
                b.iter(|| kvs_parse(data, chunk))
            });
            g.bench_function(format!("floor/{name}-{mode}"), |b| {
                b.iter(|| floor_walk(data, chunk.unwrap_or(data.len())))
            });
            g.bench_function(format!("matroska-demuxer/{name}-{mode}"), |b| {
                b.iter(|| demuxer_parse(data, chunk))
            });
            g.bench_function(format!("webm-iterable/{name}-{mode}"), |b| {
                b.iter(|| webm_iterable_parse(data, chunk))
            });
            g.bench_function(format!("mkvparser/{name}-{mode}"), |b| {
                b.iter(|| mkvparser_parse(data, chunk))
            });
        }
        let mut dst = vec![0u8; data.len()];
        g.bench_function(format!("memcpy/{name}"), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(data));
                black_box(&dst);
            })
        });
    }
    g.finish();
}

fn kvs_build(
    b: &mut FragmentBuilder,
    frames: &[FrameIn],
    per_fragment: usize,
    out: &mut Vec<Bytes>,
) {
    out.clear();
    out.push(b.header());
    for frag in frames.chunks(per_fragment) {
        b.fragment(frag, &[], out).expect("valid fragment");
    }
}

/// Clusters prepared as webm-iterable tags outside the timing; the writer
/// then serialises them (sizes, headers, payload copies).
fn webm_clusters(
    blocks: Vec<(i64, Vec<u8>)>,
    per_fragment: usize,
) -> Vec<webm_iterable::matroska_spec::MatroskaSpec> {
    use webm_iterable::matroska_spec::{Master, MatroskaSpec};
    let mut out = Vec::new();
    let mut it = blocks.into_iter().peekable();
    while it.peek().is_some() {
        let frag: Vec<_> = it.by_ref().take(per_fragment).collect();
        let mut children = vec![MatroskaSpec::Timestamp(frag[0].0 as u64)];
        children.extend(frag.into_iter().map(|(_, d)| MatroskaSpec::SimpleBlock(d)));
        out.push(MatroskaSpec::Cluster(Master::Full(children)));
    }
    out
}

fn webm_build(clusters: &[webm_iterable::matroska_spec::MatroskaSpec], sink: &mut Vec<u8>) {
    sink.clear();
    let mut w = webm_iterable::WebmWriter::new(&mut *sink);
    let segment = webm_iterable::matroska_spec::MatroskaSpec::Segment(
        webm_iterable::matroska_spec::Master::Start,
    );
    w.write_advanced(
        &segment,
        webm_iterable::WriteOptions::is_unknown_sized_element(),
    )
    .expect("write");
    for c in clusters {
        w.write(c).expect("write");
    }
}

fn build_benches(c: &mut Criterion) {
    let video = frames_1080p();
    let cfg = StreamConfig::new(vec![TrackConfig::video(
        1,
        "V_MPEG4/ISO/AVC",
        Bytes::from_static(&[1]),
        1920,
        1080,
    )]);
    let mut g = c.benchmark_group("build");
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(3));

    let annexb: Vec<FrameIn> = video
        .iter()
        .map(|f| FrameIn {
            track: 1,
            timecode: f.ms,
            key: f.key,
            payload: Payload::AnnexB(f.annexb.clone()),
        })
        .collect();
    let bytes: u64 = video.iter().map(|f| f.annexb.len() as u64).sum();
    let mut builder = FragmentBuilder::new(cfg.clone()).expect("valid config");
    let mut out = Vec::new();
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("kvs/1080p-annexb", |b| {
        b.iter(|| kvs_build(&mut builder, &annexb, 30, &mut out))
    });
    let clusters = webm_clusters(video.iter().map(block_bytes).collect(), 30);
    let mut sink = Vec::with_capacity(bytes as usize * 2);
    g.bench_function("webm-iterable/1080p-annexb", |b| {
        b.iter(|| webm_build(&clusters, &mut sink))
    });
    let flat: Vec<u8> = video
        .iter()
        .flat_map(|f| f.annexb.iter().copied())
        .collect();
    let mut dst = vec![0u8; flat.len()];
    g.bench_function("memcpy/1080p-annexb", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&flat)))
    });

    let small: Vec<FrameIn> = (0..10_000)
        .map(|i| FrameIn {
            track: 1,
            timecode: i * 10,
            key: i % 100 == 0,
            payload: Payload::Raw(Bytes::from(vec![7u8; 1024])),
        })
        .collect();
    let mut builder = FragmentBuilder::new(cfg).expect("valid config");
    g.throughput(Throughput::Elements(small.len() as u64));
    g.bench_function("kvs/1k-avcc", |b| {
        b.iter(|| kvs_build(&mut builder, &small, 100, &mut out))
    });
    let small_blocks: Vec<(i64, Vec<u8>)> = (0..10_000i64)
        .map(|i| {
            let mut d = vec![
                0x81,
                0,
                ((i % 100) * 10) as u8,
                if i % 100 == 0 { 0x80 } else { 0 },
            ];
            d.extend_from_slice(&[7u8; 1024]);
            (i * 10, d)
        })
        .collect();
    let small_clusters = webm_clusters(small_blocks, 100);
    g.bench_function("webm-iterable/1k-avcc", |b| {
        b.iter(|| webm_build(&small_clusters, &mut sink))
    });
    g.finish();
}

/// A SimpleBlock body (header + AVCC payload), prepared outside the timing.
fn block_bytes(f: &VideoFrame) -> (i64, Vec<u8>) {
    let mut d = vec![0x81, 0, 0, if f.key { 0x80 } else { 0 }];
    d.extend_from_slice(&f.avcc);
    (f.ms, d)
}

criterion_group!(benches, parse_benches, build_benches);
criterion_main!(benches);
