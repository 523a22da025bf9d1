//! With a data directory the local endpoint's streams and fragments survive
//! a restart, and fragment numbers keep increasing.
#![cfg(feature = "local")]

use crate::common;

use std::path::PathBuf;

use bytes::Bytes;
use common::client;
use kvs_core::client::{CreateStream, KvsClient, StartSelector, TimecodeType};
use kvs_core::local::{LocalConfig, LocalEndpoint};

async fn put(c: &KvsClient, data: &Bytes) -> Vec<String> {
    common::persisted_numbers(
        &common::put_all(c, "cam", data, TimecodeType::Absolute, 0)
            .await
            .0,
    )
}

#[tokio::test]
async fn streams_and_fragments_survive_a_restart() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("kvs-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = LocalConfig {
        data_dir: Some(dir.clone()),
        ..LocalConfig::default()
    };
    let data = common::clip(false);

    let ep = LocalEndpoint::start(cfg.clone()).await.unwrap();
    let c = client(ep.url());
    let arn = c
        .create_stream(&CreateStream {
            stream_name: "cam".into(),
            data_retention_in_hours: 3,
            ..CreateStream::default()
        })
        .await
        .unwrap();
    let first = put(&c, &data).await;
    assert_eq!(first.len(), 4);
    // A stream without retention is only relayed: nothing of it on disk.
    c.create_stream(&CreateStream {
        stream_name: "live".into(),
        ..CreateStream::default()
    })
    .await
    .unwrap();
    let (acks, err) = common::put_all(&c, "live", &data, TimecodeType::Absolute, 0).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        acks.iter()
            .filter(|a| matches!(a, kvs_core::protocol::Ack::Received { .. }))
            .count(),
        4
    );
    assert!(
        !dir.join("media/s-live").exists(),
        "retention 0 writes nothing to disk"
    );
    ep.shutdown().await;

    let ep = LocalEndpoint::start(cfg).await.unwrap();
    let c = client(ep.url());
    let info = c.describe_stream("cam").await.unwrap();
    assert_eq!(
        (info.stream_arn, info.data_retention_in_hours),
        (arn, Some(3))
    );
    let mut g = c.get_media("cam", &StartSelector::Earliest).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let f = g.next_fragment().await.unwrap().unwrap();
        assert_eq!(f.frames.len(), 50);
        got.push(f.fragment_number.unwrap());
    }
    assert_eq!(got, first, "the same fragments, numbers and all");
    drop(g);
    let second = put(&c, &data).await;
    assert!(
        second[0] > first[3],
        "numbers keep increasing after a restart"
    );
    c.delete_stream(&c.describe_stream("cam").await.unwrap().stream_arn, None)
        .await
        .unwrap();
    assert!(
        !dir.join("media/s-cam").exists(),
        "a deleted stream's files go too"
    );
    ep.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
