//! The local endpoint over days, in short: retention enforced as the
//! service enforces it (fragments ingested longer than the stream's
//! retention ago expire — from ListFragments, every read, memory and disk —
//! and a change of retention applies at once), archived reads from disk
//! when only the live edge is in memory, and a memory cap without a data
//! directory. A retention hour is shortened (`LocalConfig::retention_hour`)
//! so hours pass in milliseconds.
#![cfg(feature = "local")]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::endpoint_with_stream;
use kvs_core::client::{FragmentSelector, RetentionChange, StartSelector};
use kvs_core::local::LocalConfig;

const START_MS: u64 = 1_732_012_345_000;

fn scratch(name: &str) -> PathBuf {
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Fragment files (`*.mkv`) under a data directory.
fn files(dir: &Path) -> usize {
    let Ok(streams) = std::fs::read_dir(dir.join("media")) else {
        return 0;
    };
    streams
        .flatten()
        .flat_map(|s| std::fs::read_dir(s.path()).into_iter().flatten().flatten())
        .filter(|f| f.path().extension().is_some_and(|e| e == "mkv"))
        .count()
}

fn everything() -> FragmentSelector {
    FragmentSelector::Server {
        start: std::time::UNIX_EPOCH,
        end: std::time::SystemTime::now() + Duration::from_secs(3600),
    }
}

#[tokio::test]
async fn fragments_expire_with_their_retention_from_memory_and_disk() {
    let dir = scratch("retention");
    let hour = Duration::from_millis(300);
    let cfg = LocalConfig {
        data_dir: Some(dir.clone()),
        retention_hour: hour,
        ..LocalConfig::default()
    };
    let (ep, c) = endpoint_with_stream(cfg, "cam", 1).await;
    let put = || async {
        common::put_clip(&c, "cam", START_MS).await;
    };
    put().await;
    assert_eq!(c.list_fragments("cam", None).await.unwrap().len(), 4);
    assert_eq!(files(&dir), 4);
    // One (shortened) hour later they are gone, everywhere.
    tokio::time::sleep(hour * 2).await;
    assert_eq!(c.list_fragments("cam", None).await.unwrap().len(), 0);
    assert_eq!(files(&dir), 0, "deleted from disk");
    let clip = c.get_clip("cam", everything()).await;
    assert!(clip.is_err(), "nothing to clip");
    // A longer retention applies at once: kept past the old hour.
    put().await;
    let version = c.describe_stream("cam").await.unwrap().version.unwrap();
    c.update_data_retention("cam", &version, RetentionChange::Increase, 9)
        .await
        .unwrap();
    tokio::time::sleep(hour * 2).await;
    assert_eq!(c.list_fragments("cam", None).await.unwrap().len(), 4);
    // And a shorter one too.
    let version = c.describe_stream("cam").await.unwrap().version.unwrap();
    c.update_data_retention("cam", &version, RetentionChange::Decrease, 9)
        .await
        .unwrap();
    tokio::time::sleep(hour * 2).await;
    assert_eq!(c.list_fragments("cam", None).await.unwrap().len(), 0);
    assert_eq!(files(&dir), 0);
    // A restart finds the index as expiry left it.
    put().await;
    ep.shutdown().await;
    let cfg = LocalConfig {
        data_dir: Some(dir.clone()),
        ..LocalConfig::default()
    };
    let ep = kvs_core::local::LocalEndpoint::start(cfg).await.unwrap();
    let c = common::client(ep.url());
    assert_eq!(c.list_fragments("cam", None).await.unwrap().len(), 4);
    ep.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a data directory and one fragment's document in memory, every
/// archived read comes from disk, whole: GetMedia from the start, the
/// fragment list, a clip.
#[tokio::test]
async fn archived_reads_come_from_disk_when_only_the_live_edge_is_in_memory() {
    let dir = scratch("disk-reads");
    let cfg = LocalConfig {
        data_dir: Some(dir.clone()),
        memory_fragments: 1,
        ..LocalConfig::default()
    };
    let (_ep, c) = endpoint_with_stream(cfg, "cam", 1).await;
    common::put_clip(&c, "cam", START_MS).await;
    let mut s = c.get_media("cam", &StartSelector::Earliest).await.unwrap();
    let mut frames = 0;
    for _ in 0..4 {
        let f = s.next_fragment().await.unwrap().unwrap();
        assert!(f.complete);
        frames += f.frames.len();
    }
    assert_eq!(frames, 200 + 346, "every video and audio frame");
    let mut list = c.list_fragments("cam", None).await.unwrap();
    list.sort_by(|a, b| a.producer_timestamp.total_cmp(&b.producer_timestamp));
    let numbers: Vec<String> = list.iter().map(|f| f.fragment_number.clone()).collect();
    let got = c
        .get_media_for_fragment_list("cam", &numbers)
        .await
        .unwrap();
    assert_eq!(got.iter().map(|f| f.frames.len()).sum::<usize>(), 546);
    let clip = c
        .get_clip(
            "cam",
            FragmentSelector::Producer {
                start: crate::support::at_ms(START_MS),
                end: crate::support::at_ms(START_MS + 10_000),
            },
        )
        .await
        .unwrap();
    assert!(clip.data.len() > 500_000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a data directory a stream holds at most its memory cap: the
/// oldest fragments expire first, the newest stay readable.
#[tokio::test]
async fn a_stream_in_memory_keeps_within_its_cap() {
    let cfg = LocalConfig {
        max_memory_bytes_per_stream: 300_000,
        ..LocalConfig::default()
    };
    let (_ep, c) = endpoint_with_stream(cfg, "cam", 1).await;
    common::put_clip(&c, "cam", START_MS).await;
    let list = c.list_fragments("cam", None).await.unwrap();
    let held: u64 = list.iter().map(|f| f.fragment_size_in_bytes).sum();
    assert!(
        !list.is_empty() && list.len() < 4,
        "{} fragments",
        list.len()
    );
    assert!(held <= 300_000, "{held} bytes held");
    let newest = list
        .iter()
        .map(|f| f.producer_timestamp)
        .fold(0.0, f64::max);
    assert!(
        (newest * 1000.0 - (START_MS + 6000) as f64).abs() < 1.0,
        "the newest kept"
    );
}
