//! Fragments merged into one file (`mkv::merge`, what `kvs get` writes) and
//! time ranges read by the Consumer, as ffprobe and mkvinfo see them: two
//! uploads 6 s apart whose RELATIVE timecodes restart at 0, and the first
//! one uploaded again (a resend of the same period) — one timeline from 0
//! with the gap kept, each period once, every fragment's tags kept.
#![cfg(feature = "local")]
#![allow(clippy::print_stderr)]

use crate::common;

use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use common::{endpoint_with_stream, persisted};
use kvs_core::client::{FragmentSelector, TimecodeType};
use kvs_core::consumer::Consumer;
use kvs_core::local::LocalConfig;
use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, Tag, TrackConfig};
use kvs_core::mkv::fragment::FragmentAssembler;
use kvs_core::mkv::merge::Merger;

const START_MS: u64 = 1_732_012_345_000;

/// The bundled clip with a `camera` tag (its index as the value) after
/// each fragment's blocks (where PutMedia takes a fragment's tags).
fn tagged_clip() -> Bytes {
    let mut asm = FragmentAssembler::default();
    asm.push(common::clip(true));
    asm.finish();
    let mut out = Vec::new();
    let mut builder = None;
    let mut i = 0;
    while let Some(f) = asm.next_fragment().unwrap() {
        let b = builder.get_or_insert_with(|| {
            let b = FragmentBuilder::new(StreamConfig::new(
                f.tracks.iter().map(TrackConfig::from).collect(),
            ))
            .unwrap();
            out.push(b.header());
            b
        });
        let frames: Vec<FrameIn> = f
            .frames
            .iter()
            .map(|fr| FrameIn {
                track: fr.track,
                timecode: fr.timecode,
                key: fr.key,
                payload: Payload::Raw(fr.payload.clone()),
            })
            .collect();
        let tags = [Tag {
            name: "camera".into(),
            value: format!("porch-{i}"),
        }];
        b.fragment(&frames, &[], &mut out).unwrap();
        out.push(b.tags(&tags).unwrap());
        i += 1;
    }
    assert_eq!(i, 4);
    Bytes::from(out.concat())
}

#[tokio::test]
async fn merged_ranges_keep_one_timeline_every_tag_and_no_duplicate() {
    let (_ep, c) = endpoint_with_stream(LocalConfig::default(), "cam", 1).await;
    let data = tagged_clip();
    for at in [START_MS, START_MS + 14_000, START_MS] {
        let (acks, err) = common::put_all(&c, "cam", &data, TimecodeType::Relative, at).await;
        assert!(err.is_none() && persisted(&acks).len() == 4, "{err:?}");
    }
    // The range, read as `kvs get --start producer:T --end T` reads it.
    let mut fragments = Consumer::builder(Arc::new(c), "cam").range(FragmentSelector::Producer {
        start: crate::support::at_ms(START_MS),
        end: crate::support::at_ms(START_MS + 30_000),
    });
    let mut merger = Merger::new();
    let mut file = Vec::new();
    let mut tags = Vec::new();
    while let Some(f) = fragments.next().await {
        let f = f.unwrap();
        tags.extend(f.tags.iter().map(|(_, v)| v.clone()));
        for ch in merger.push(&f).unwrap() {
            file.extend_from_slice(&ch);
        }
    }
    // Each period once (the third upload is a duplicate of the first).
    assert_eq!(
        tags,
        ["porch-0", "porch-1", "porch-2", "porch-3", "porch-0", "porch-1", "porch-2", "porch-3"]
    );
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}-merged.mkv", std::process::id()));
    std::fs::write(&path, &file).unwrap();
    if crate::support::have("ffprobe", "-version") {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v", "-show_entries"])
            .args([
                "packet=pts_time:format_tags=creation_time",
                "-of",
                "csv=p=0",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        // The format's creation time: the first fragment's producer time.
        let created = lines.pop().unwrap();
        assert_eq!(created, "2024-11-19T10:32:25.000000Z", "{text}");
        let pts: Vec<f64> = lines
            .iter()
            .map(|l| l.trim_end_matches(',').parse().unwrap())
            .collect();
        assert_eq!(pts.len(), 400, "each period once");
        assert_eq!(pts[0], 0.0, "the file starts at 0");
        assert!(pts.windows(2).all(|w| w[1] > w[0]), "monotonic");
        assert!((pts[200] - pts[199] - 6.04).abs() < 0.001, "the gap kept");
    }
    if crate::support::have("mkvinfo", "--version") {
        let out = Command::new("mkvinfo")
            .arg("-a")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // Each Cluster followed by its fragment's tag.
        let order: Vec<String> = text
            .lines()
            .filter_map(|l| {
                if l.starts_with("|+ Cluster") {
                    Some("Cluster".to_owned())
                } else {
                    l.split_once("String: ").map(|(_, v)| v.to_owned())
                }
            })
            .collect();
        let want: Vec<String> = tags
            .iter()
            .flat_map(|t| ["Cluster".to_owned(), t.clone()])
            .collect();
        assert_eq!(order, want, "{text}");
    }
    let _ = std::fs::remove_file(&path);
}
