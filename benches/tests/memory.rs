//! Memory held by a parser, measured with a counting allocator (allocation
//! counts are deterministic, unlike timings): the fixed state per stream, and
//! what stays allocated after a 5 MB frame has been handed out and dropped.
//! The peers' figures are printed beside ours for the issue notes.
#![allow(clippy::print_stdout)]
// A global allocator cannot be written without unsafe; this file only counts bytes.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Cursor;
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::Bytes;
use kvs_core::ebml::writer;
use kvs_core::mkv::{ids, Event, Parser, ParserConfig};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::SeqCst);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::SeqCst);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::SeqCst);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// A file: header, then a cluster with a small frame, a 5 MB frame and small frames.
fn file() -> Vec<u8> {
    let mut out = Vec::new();
    writer::ebml_header(&mut out, "matroska", 4);
    let mut seg = Vec::new();
    writer::master(&mut seg, ids::INFO, |b| {
        writer::uint(b, ids::TIMECODE_SCALE, 1_000_000);
        writer::string(b, ids::MUXING_APP, "kvs-benches");
        writer::string(b, ids::WRITING_APP, "kvs-benches");
    });
    writer::master(&mut seg, ids::TRACKS, |b| {
        writer::master(b, ids::TRACK_ENTRY, |e| {
            writer::uint(e, ids::TRACK_NUMBER, 1);
            writer::uint(e, ids::TRACK_UID, 1);
            writer::uint(e, ids::TRACK_TYPE, 1);
            writer::string(e, ids::CODEC_ID, "V_MPEG4/ISO/AVC");
            writer::master(e, ids::VIDEO, |v| {
                writer::uint(v, ids::PIXEL_WIDTH, 1920);
                writer::uint(v, ids::PIXEL_HEIGHT, 1080);
            });
        });
    });
    writer::master(&mut seg, ids::CLUSTER, |c| {
        writer::uint(c, ids::TIMECODE, 0);
        for (i, n) in [1000usize, 5_000_000, 1000, 1000].into_iter().enumerate() {
            let mut block = vec![0x81, 0, i as u8, 0x80];
            block.extend(std::iter::repeat_n(0x42, n));
            writer::element(c, ids::SIMPLE_BLOCK, &block);
        }
    });
    writer::element(&mut out, ids::SEGMENT, &seg);
    out
}

#[test]
fn parser_state_is_small_and_returns_to_baseline_after_a_5_mb_frame() {
    let data = file();
    let data = Bytes::from(data);
    const CHUNK: usize = 64 * 1024;

    // Ours: push the chunks as Bytes (as a network reader hands them out).
    let before = live();
    let mut p = Parser::new(ParserConfig::default());
    let mut baseline = None;
    let mut peak_after_big = 0isize;
    let mut frames = 0;
    let mut off = 0;
    while off < data.len() {
        let end = (off + CHUNK).min(data.len());
        p.push(data.slice(off..end));
        off = end;
        while let Some(ev) = p.next_event().unwrap() {
            if let Event::Frame(f) = ev {
                frames += 1;
                if frames == 1 {
                    baseline = Some(live() - before);
                }
                drop(f);
                if frames == 3 {
                    peak_after_big = live() - before;
                }
            }
        }
    }
    let state = std::mem::size_of::<Parser>() as isize + baseline.unwrap();
    println!(
        "kvs: fixed state {state} B (struct {} B + heap), after the 5 MB frame {} B",
        std::mem::size_of::<Parser>(),
        peak_after_big
    );
    assert_eq!(frames, 4);
    assert!(state <= 64 * 1024, "fixed state {state} B over 64 KiB");
    assert!(
        peak_after_big <= baseline.unwrap() + CHUNK as isize,
        "5 MB frame left {peak_after_big} B behind"
    );
    drop(p);

    // matroska-demuxer: one Frame buffer reused for every frame.
    let before = live();
    let mut m = matroska_demuxer::MatroskaFile::open(std::io::BufReader::with_capacity(
        CHUNK,
        Cursor::new(&data[..]),
    ))
    .unwrap();
    let mut f = matroska_demuxer::Frame::default();
    let mut n = 0;
    let mut after_big = 0;
    while m.next_frame(&mut f).unwrap() {
        n += 1;
        if n == 3 {
            after_big = live() - before;
        }
    }
    println!(
        "matroska-demuxer: after the 5 MB frame {after_big} B held (frame buffer capacity {} B)",
        f.data.capacity()
    );
    drop(m);

    // webm-iterable
    let before = live();
    let mut src = kvs_benches::ChunkReader::new(&data, CHUNK);
    let mut it = webm_iterable::WebmIterator::new(&mut src, &[]);
    let mut n = 0;
    let mut after_big = 0;
    for t in it.by_ref() {
        if let webm_iterable::matroska_spec::MatroskaSpec::SimpleBlock(d) = t.unwrap() {
            drop(d);
            n += 1;
            if n == 3 {
                after_big = live() - before;
            }
        }
    }
    println!("webm-iterable: after the 5 MB frame {after_big} B held");
}
