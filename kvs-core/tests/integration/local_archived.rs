//! ListFragments and GetMediaForFragmentList on the local endpoint, through
//! our client and through boto3 (kinesis-video-archived-media: also GetClip,
//! the HLS/DASH session URLs and GetImages; kinesis-video-media: GetMedia).
#![cfg(feature = "local")]

use crate::common;

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
        .all(|f| f.fragment_size_in_bytes > 10_000 && f.fragment_length_in_milliseconds == 2000));
    let some = c
        .list_fragments(
            "cam",
            Some(FragmentSelector::Producer {
                start: crate::support::at_ms(START_MS + 1000),
                end: crate::support::at_ms(START_MS + 4500),
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
first, last = frags[0]["ProducerTimestamp"], frags[-1]["ProducerTimestamp"]
sel = {"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": {"StartTimestamp": first, "EndTimestamp": last}}
clip = am.get_clip(StreamName="cam", ClipFragmentSelector=sel)
open(path + ".mp4", "wb").write(clip["Payload"].read())
hls = am.get_hls_streaming_session_url(StreamName="cam", PlaybackMode="ON_DEMAND", HLSFragmentSelector=sel)["HLSStreamingSessionURL"]
dash = am.get_dash_streaming_session_url(StreamName="cam", PlaybackMode="ON_DEMAND", DASHFragmentSelector=sel)["DASHStreamingSessionURL"]
images = am.get_images(StreamName="cam", ImageSelectorType="PRODUCER_TIMESTAMP", StartTimestamp=first, EndTimestamp=last, SamplingInterval=1000, Format="JPEG", MaxResults=10)["Images"]
try:
    am.get_clip(StreamName="cam", ClipFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": {"StartTimestamp": 1, "EndTimestamp": 2}})
    missing = None
except am.exceptions.ResourceNotFoundException as e:
    missing = e.response["Error"]["Code"]
# GetMedia never ends by itself: read until the endpoint has been quiet for 2 s.
kv = boto3.client("kinesisvideo", endpoint_url=url, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
media_url = kv.get_data_endpoint(StreamName="cam", APIName="GET_MEDIA")["DataEndpoint"]
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError
import urllib3
media = boto3.client("kinesis-video-media", endpoint_url=media_url, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b", config=Config(read_timeout=2, retries={"max_attempts": 1}))
got = media.get_media(StreamName="cam", StartSelector={"StartSelectorType": "EARLIEST"})
live = bytearray()
# read1 hands over whatever has arrived, so nothing is lost when the wait ends.
raw = got["Payload"]._raw_stream
try:
    while True:
        chunk = raw.read1(65536)
        if not chunk:
            break
        live += chunk
except (ReadTimeoutError, urllib3.exceptions.ReadTimeoutError):
    pass
open(path + ".live", "wb").write(live)
print(json.dumps({"numbers": numbers, "content_type": resp["ContentType"], "first_ms": int(first.timestamp() * 1000),
    "clip_type": clip["ContentType"], "hls": hls, "dash": dash, "missing": missing, "media_type": got["ContentType"],
    "images": [("ImageContent" in i, i.get("Error")) for i in images]}))
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
    assert_eq!(serde_json::Value::from(numbers.clone()), v["numbers"]);
    // GetClip through boto3: the same MP4 as through our client.
    assert_eq!(v["clip_type"], "video/mp4");
    let ours = c
        .get_clip(
            "cam",
            FragmentSelector::Producer {
                start: crate::support::at_ms(START_MS),
                end: crate::support::at_ms(START_MS + 6000),
            },
        )
        .await
        .unwrap();
    let mp4 = std::fs::read(out_file.with_extension("mkv.mp4")).unwrap();
    assert_eq!(mp4, ours.data, "boto3's clip = ours");
    assert_eq!(v["missing"], "ResourceNotFoundException");
    assert!(v["hls"]
        .as_str()
        .unwrap()
        .contains("getHLSMasterPlaylist.m3u8?SessionToken="));
    assert!(v["dash"]
        .as_str()
        .unwrap()
        .contains("getDASHManifest.mpd?SessionToken="));
    // 0 to 6 s in 1 s steps: 7 pictures (with the `images` feature; an
    // endpoint without a decoder answers MEDIA_ERROR for each).
    let one = if cfg!(feature = "images") {
        serde_json::json!([true, null])
    } else {
        serde_json::json!([false, "MEDIA_ERROR"])
    };
    assert_eq!(v["images"], serde_json::json!(vec![one; 7]));
    // GetMedia through boto3, read until the stream went quiet: every fragment.
    assert_eq!(v["media_type"], "video/webm");
    let mut asm = FragmentAssembler::default();
    asm.push(Bytes::from(
        std::fs::read(out_file.with_extension("mkv.live")).unwrap(),
    ));
    asm.finish();
    let mut live = Vec::new();
    while let Ok(Some(f)) = asm.next_fragment() {
        assert!(
            f.complete && f.continuation_token.is_some(),
            "{:?} {} {:?}",
            f.fragment_number,
            f.frames.len(),
            f.continuation_token
        );
        live.push((f.fragment_number.unwrap(), f.frames.len()));
    }
    assert_eq!(
        live,
        numbers
            .iter()
            .map(|n| (n.as_str().unwrap().to_owned(), 50))
            .collect::<Vec<_>>()
    );
}

/// GetMedia from a producer timestamp starts with the fragment that
/// contains the instant (the API reference), at its start, middle and end,
/// the newest included; in a gap, with the next fragment; past the newest,
/// with nothing yet.
#[tokio::test]
async fn a_start_instant_inside_a_fragment_starts_with_that_fragment() {
    use kvs_core::client::StartSelector;
    let (_ep, c, _) = stream_with_clip().await;
    // The clip: four fragments at 0, 2, 4 and 6 s, each 2 s of media (its
    // last frame starts at 1.96 s and lasts 40 ms).
    let first = |ms: u64| {
        let c = c.clone();
        async move {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(START_MS + ms);
            let mut s = c
                .get_media("cam", &StartSelector::ProducerTimestamp(at))
                .await
                .unwrap();
            tokio::time::timeout(std::time::Duration::from_millis(500), s.next_fragment())
                .await
                .ok()
                .flatten()
                .map(|f| f.unwrap().producer_timestamp_ms.unwrap() - START_MS)
        }
    };
    assert_eq!(first(0).await, Some(0));
    assert_eq!(first(1000).await, Some(0), "the middle of the first");
    assert_eq!(first(1960).await, Some(0), "its last frame");
    assert_eq!(first(1980).await, Some(0), "inside its last frame");
    assert_eq!(first(2000).await, Some(2000), "where the next starts");
    assert_eq!(first(7000).await, Some(6000), "inside the newest");
    assert_eq!(first(9000).await, None, "past the newest: nothing yet");
}
