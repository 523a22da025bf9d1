//! ListFragments and GetMediaForFragmentList on the local endpoint, through
//! our client and through boto3's kinesis-video-archived-media client.
#![cfg(feature = "local")]

mod common;

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use common::{endpoint_with_stream, persisted};
use kvs_core::client::{ApiName, FragmentSelector, KvsClient, TimecodeType};
use kvs_core::local::{LocalConfig, LocalEndpoint};
use kvs_core::mkv::fragment::FragmentAssembler;

const START_MS: u64 = 1_732_012_345_000;

async fn stream_with_clip() -> (LocalEndpoint, KvsClient, Bytes) {
    let (ep, c) = endpoint_with_stream(LocalConfig::default(), "cam", 1).await;
    let data = common::clip(false);
    let (acks, err) = common::put_all(&c, "cam", &data, TimecodeType::Relative, START_MS).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(persisted(&acks).len(), 4);
    (ep, c, data)
}

#[tokio::test]
async fn list_and_fetch_fragments() {
    let (_ep, c, _) = stream_with_clip().await;
    let all = c.list_fragments("cam", None).await.unwrap();
    assert_eq!(all.len(), 4);
    let producer: Vec<u64> = all
        .iter()
        .map(|f| (f.producer_timestamp * 1000.0).round() as u64 - START_MS)
        .collect();
    assert_eq!(producer, [0, 2000, 4000, 6000]);
    assert!(all
        .iter()
        .all(|f| f.fragment_size_in_bytes > 10_000 && f.fragment_length_in_milliseconds == 1960));
    let some = c
        .list_fragments(
            "cam",
            Some(FragmentSelector::Producer {
                start_ms: START_MS + 1000,
                end_ms: START_MS + 4500,
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        some.iter()
            .map(|f| f.fragment_number.clone())
            .collect::<Vec<_>>(),
        [
            all[1].fragment_number.clone(),
            all[2].fragment_number.clone()
        ]
    );

    let wanted = vec![
        all[3].fragment_number.clone(),
        all[1].fragment_number.clone(),
    ];
    let frags = c.get_media_for_fragment_list("cam", &wanted).await.unwrap();
    assert_eq!(
        frags
            .iter()
            .map(|f| f.fragment_number.clone().unwrap())
            .collect::<Vec<_>>(),
        wanted,
        "in the order asked"
    );
    assert_eq!(
        frags.iter().map(|f| f.frames.len()).collect::<Vec<_>>(),
        [50, 50]
    );
    assert_eq!(frags[0].producer_timestamp_ms, Some(START_MS + 6000));
    let missing = c
        .get_media_for_fragment_list("cam", &["1".to_string()])
        .await
        .unwrap_err();
    assert_eq!(
        missing.service_code(),
        Some(&kvs_core::client::ServiceException::ResourceNotFound)
    );
}

#[tokio::test]
async fn boto3_archived_media_client() {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if !py.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the .venv is missing; CI must have it"
        );
        return;
    }
    let (ep, c, _) = stream_with_clip().await;
    let data_endpoint = c
        .get_data_endpoint("cam", ApiName::ListFragments)
        .await
        .unwrap();
    assert_eq!(data_endpoint, ep.url());
    let out_file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("boto3-fragments.mkv");
    let script = r#"
import json, sys, boto3
url, path = sys.argv[1:3]
am = boto3.client("kinesis-video-archived-media", endpoint_url=url, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
frags = am.list_fragments(StreamName="cam")["Fragments"]
frags.sort(key=lambda f: f["ProducerTimestamp"])
numbers = [f["FragmentNumber"] for f in frags]
resp = am.get_media_for_fragment_list(StreamName="cam", Fragments=numbers)
open(path, "wb").write(resp["Payload"].read())
print(json.dumps({"numbers": numbers, "content_type": resp["ContentType"], "first_ms": int(frags[0]["ProducerTimestamp"].timestamp() * 1000)}))
"#;
    let url = ep.url().to_owned();
    let path = out_file.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg("-c")
            .arg(script)
            .arg(&url)
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["content_type"], "video/webm");
    assert_eq!(v["first_ms"].as_u64(), Some(START_MS));
    // The body boto3 received, parsed by our assembler: every fragment, every frame.
    let mut asm = FragmentAssembler::default();
    asm.push(Bytes::from(std::fs::read(&out_file).unwrap()));
    asm.finish();
    let mut frames = 0;
    let mut numbers = Vec::new();
    while let Some(f) = asm.next_fragment().unwrap() {
        frames += f.frames.len();
        numbers.push(serde_json::Value::from(f.fragment_number.unwrap()));
    }
    assert_eq!(frames, 200);
    assert_eq!(serde_json::Value::from(numbers), v["numbers"]);
}
