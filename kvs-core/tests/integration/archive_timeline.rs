//! One timeline whatever the uploads (issue 13's property): random upload
//! sessions — RELATIVE and ABSOLUTE timecodes, gaps, overlapping periods,
//! exact resends — read back through every archived path (the Consumer's
//! time range as `kvs get --end` reads it, the merged file of it, HLS
//! playlists, DASH manifests, GetClip) give the same fragments in the same
//! order, each at its producer time, none covering time another kept one
//! covers, and nothing lost but duplicates.
#![cfg(feature = "local")]

use crate::common;

use std::sync::Arc;

use bytes::Bytes;
use kvs_core::client::{
    FragmentSelector, KvsClient, PlaybackMode, StreamingSessionOptions, TimecodeType,
};
use kvs_core::consumer::Consumer;
use kvs_core::local::LocalConfig;
use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, TrackConfig};
use kvs_core::mkv::fragment::{Fragment, FragmentAssembler};
use kvs_core::mkv::merge::Merger;
use kvs_core::timeline::Span;
use proptest::prelude::*;

/// Producer time (ms) the sessions are laid around.
const ORIGIN_MS: u64 = 1_732_012_345_000;
/// The clip's fragments last 2 s (50 frames at 25 fps).
const FRAGMENT_MS: u64 = 2000;

/// One upload: `count` of the clip's fragments from `first`, starting at
/// `ORIGIN_MS + at_ms` of producer time.
#[derive(Debug, Clone)]
struct Upload {
    first: usize,
    count: usize,
    at_ms: u64,
    absolute: bool,
}

fn upload() -> impl Strategy<Value = Upload> {
    // Starts on a 40 ms grid over 20 s: gaps, overlaps and exact repeats.
    (0usize..4, 1usize..=3, 0u64..500, any::<bool>()).prop_map(|(first, count, slot, absolute)| {
        Upload {
            first,
            count: count.min(4 - first),
            at_ms: slot * 40,
            absolute,
        }
    })
}

/// The bundled clip's fragments (video only).
fn clip_fragments() -> Vec<Fragment> {
    let mut asm = FragmentAssembler::default();
    asm.push(common::clip(false));
    asm.finish();
    let mut out = Vec::new();
    while let Some(f) = asm.next_fragment().unwrap() {
        out.push(f);
    }
    assert_eq!(out.len(), 4);
    out
}

/// The MKV of an upload: its fragments one after the other from timecode 0
/// (RELATIVE) or from its producer time (ABSOLUTE, ms timecodes).
fn upload_bytes(clip: &[Fragment], u: &Upload) -> Bytes {
    let mut b = FragmentBuilder::new(StreamConfig::new(
        clip[0].tracks.iter().map(TrackConfig::from).collect(),
    ))
    .unwrap();
    let mut out = vec![b.header()];
    let base = if u.absolute {
        (ORIGIN_MS + u.at_ms) as i64
    } else {
        0
    };
    for (k, f) in clip[u.first..u.first + u.count].iter().enumerate() {
        let shift = base + (k as u64 * FRAGMENT_MS) as i64 - f.frames[0].timecode;
        let frames: Vec<FrameIn> = f
            .frames
            .iter()
            .map(|fr| FrameIn {
                track: fr.track,
                timecode: fr.timecode + shift,
                key: fr.key,
                payload: Payload::Raw(fr.payload.clone()),
            })
            .collect();
        b.fragment(&frames, &[], &mut out).unwrap();
    }
    Bytes::from(out.concat())
}

/// Every fragment uploaded, in ingest order: (producer start ms, the
/// clip's fragment it holds).
fn uploaded(uploads: &[Upload]) -> Vec<(u64, usize)> {
    uploads
        .iter()
        .flat_map(|u| {
            (0..u.count).map(move |k| (ORIGIN_MS + u.at_ms + k as u64 * FRAGMENT_MS, u.first + k))
        })
        .collect()
}

fn whole_range() -> FragmentSelector {
    FragmentSelector::Producer {
        start: crate::support::at_ms(ORIGIN_MS),
        end: crate::support::at_ms(ORIGIN_MS + 40_000),
    }
}

/// A playback response's body, which must be a 200.
async fn get_text(url: &str) -> String {
    let (status, body) = common::http_get(url).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The `FragmentNumber=` values of a playlist or manifest, in order.
fn numbers_in(text: &str) -> Vec<String> {
    text.split("FragmentNumber=")
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .collect()
}

/// What one session reads back, path by path.
struct ReadBack {
    /// The Consumer's time range: (number, producer ms, frames).
    range: Vec<(String, u64, usize)>,
    hls: Vec<String>,
    hls_times: Vec<String>,
    dash: Vec<String>,
    dash_t: Vec<u64>,
    /// The merged file's video frame times (ms from its start).
    merged_ms: Vec<i64>,
    /// GetClip's video sample count.
    clip_frames: usize,
}

async fn read_back(c: KvsClient) -> ReadBack {
    let mut fragments = Consumer::builder(Arc::new(c.clone()), "cam").range(whole_range());
    let mut range = Vec::new();
    let mut merger = Merger::new();
    let mut file = Vec::new();
    while let Some(f) = fragments.next().await {
        let f = f.unwrap();
        range.push((
            f.fragment_number.clone().unwrap(),
            f.producer_timestamp_ms.unwrap(),
            f.frames.len(),
        ));
        for ch in merger.push(&f).unwrap() {
            file.extend_from_slice(&ch);
        }
    }
    let mut asm = FragmentAssembler::default();
    asm.push(Bytes::from(file));
    asm.finish();
    let mut merged_ms = Vec::new();
    while let Some(f) = asm.next_fragment().unwrap() {
        merged_ms.extend(f.frames.iter().map(|fr| fr.timestamp_ns / 1_000_000));
    }
    let on_demand = StreamingSessionOptions {
        playback_mode: PlaybackMode::OnDemand,
        selector: Some(whole_range()),
        display_fragment_timestamp: true,
        ..Default::default()
    };
    let hls_url = c
        .get_hls_streaming_session_url("cam", &on_demand)
        .await
        .unwrap();
    let playlist = get_text(&hls_url.replace("getHLSMasterPlaylist", "getHLSMediaPlaylist")).await;
    let dash_url = c
        .get_dash_streaming_session_url("cam", &on_demand)
        .await
        .unwrap();
    let mpd = get_text(&dash_url).await;
    let mut t = 0;
    let mut dash_t = Vec::new();
    for s in mpd.lines().filter(|l| l.starts_with("<S ")) {
        let attr = |name: &str| {
            s.split_once(&format!(" {name}=\""))
                .map(|(_, v)| v.split('"').next().unwrap().parse::<u64>().unwrap())
        };
        t = attr("t").unwrap_or(t);
        dash_t.push(t);
        t += attr("d").unwrap();
    }
    let clip = c.get_clip("cam", whole_range()).await.unwrap();
    ReadBack {
        range,
        hls: numbers_in(&playlist),
        hls_times: playlist
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
            .map(str::to_owned)
            .collect(),
        dash: numbers_in(&mpd),
        dash_t,
        merged_ms,
        clip_frames: mp4_sample_count(&clip.data),
    }
}

/// Samples in an MP4's first `stsz` box (the video track's sample sizes).
fn mp4_sample_count(data: &[u8]) -> usize {
    let at = data
        .windows(4)
        .position(|w| w == b"stsz")
        .expect("an stsz box");
    // stsz: version/flags (4), sample_size (4), sample_count (4).
    let n = &data[at + 12..at + 16];
    u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize
}

fn rfc3339(ms: u64) -> String {
    use aws_smithy_types::date_time::{DateTime, Format};
    DateTime::from_millis(ms as i64)
        .fmt(Format::DateTime)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_archived_path_plays_one_deduplicated_timeline(
        uploads in proptest::collection::vec(upload(), 1..5),
        resend in any::<bool>(),
    ) {
        let mut uploads = uploads;
        if resend {
            // A resend of the first upload (what a lost ACK causes).
            uploads.push(uploads[0].clone());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let back = rt.block_on(async {
            let (_ep, c) = common::endpoint_with_stream(LocalConfig::default(), "cam", 1).await;
            let clip = clip_fragments();
            for u in &uploads {
                let kind = if u.absolute { TimecodeType::Absolute } else { TimecodeType::Relative };
                let (acks, err) = common::put_all(
                    &c, "cam", &upload_bytes(&clip, u), kind, ORIGIN_MS + u.at_ms,
                ).await;
                assert!(err.is_none(), "{err:?}");
                assert_eq!(common::persisted(&acks).len(), u.count);
            }
            read_back(c).await
        });
        let all = uploaded(&uploads);
        let kept: Vec<u64> = back.range.iter().map(|r| r.1).collect();
        // Every path: the same fragments, in the same order.
        let numbers: Vec<String> = back.range.iter().map(|r| r.0.clone()).collect();
        prop_assert_eq!(&back.hls, &numbers);
        prop_assert_eq!(&back.dash, &numbers);
        // On one timeline, in producer-time order, each at its producer
        // time (HLS's PROGRAM-DATE-TIME, DASH's t from the first).
        prop_assert!(kept.windows(2).all(|w| w[0] < w[1]), "{:?}", kept);
        let times: Vec<String> = kept.iter().map(|&ms| rfc3339(ms)).collect();
        prop_assert_eq!(&back.hls_times, &times);
        let origin = all.iter().map(|a| a.0).min().unwrap();
        let dash_want: Vec<u64> = kept.iter().map(|ms| ms - origin).collect();
        prop_assert_eq!(&back.dash_t, &dash_want);
        // No two kept fragments overlap; each uploaded fragment is kept or
        // overlaps a kept one ingested before it (nothing lost but
        // duplicates).
        let span = |ms: u64| Span::new(ms, FRAGMENT_MS);
        let same = |a: Span, b: Span| {
            let overlap = a.end_ms.min(b.end_ms).saturating_sub(a.start_ms.max(b.start_ms));
            a.start_ms == b.start_ms || overlap > kvs_core::timeline::TOLERANCE_MS
        };
        for w in kept.windows(2) {
            prop_assert!(!same(span(w[0]), span(w[1])), "{:?}", kept);
        }
        for (i, &(ms, _)) in all.iter().enumerate() {
            let covered = kept.contains(&ms)
                || all[..i]
                    .iter()
                    .any(|&(earlier, _)| kept.contains(&earlier) && same(span(ms), span(earlier)));
            prop_assert!(covered, "{} lost: {:?} of {:?}", ms, kept, all);
        }
        // The merged file and the clip: every kept frame once, in order,
        // the merged one at its producer time from the first.
        let frames: usize = back.range.iter().map(|r| r.2).sum();
        prop_assert_eq!(back.merged_ms.len(), frames);
        prop_assert_eq!(back.clip_frames, frames);
        prop_assert!(back.merged_ms.windows(2).all(|w| w[0] < w[1]));
        let starts: Vec<i64> = kept.iter().map(|&ms| (ms - kept[0]) as i64).collect();
        for s in starts {
            prop_assert!(back.merged_ms.contains(&s), "a fragment at {} ms", s);
        }
    }
}
