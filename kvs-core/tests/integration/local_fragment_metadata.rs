//! Fragment metadata and service tags on the local endpoint, as the
//! service gives them:
//!
//! * producer Tags laid out as the AWS C producer library (PIC) writes them
//!   — in front of the next Cluster, and after the last one — come back on
//!   the fragment whose Cluster they follow, every one of them, through
//!   GetMedia and GetMediaForFragmentList (see `kvs_core::local::ingest`
//!   for the evidence);
//! * GetMediaForFragmentList spells its tags as its model does
//!   (`…_SERVER_SIDE_TIMESTAMP`, `…_PRODUCER_SIDE_TIMESTAMP`), GetMedia as
//!   its model and the real captures do, and the fragment assembler reads
//!   both;
//! * `MILLIS_BEHIND_NOW` is measured from the fragment's server timestamp
//!   to the moment it is sent, also after a restart.
#![cfg(feature = "local")]

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kvs_core::client::{KvsClient, PutMediaOptions, StartSelector, StreamId, TimecodeType};
use kvs_core::ebml::writer;
use kvs_core::local::{LocalConfig, LocalEndpoint};
use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, Tag, TrackConfig};
use kvs_core::mkv::fragment::{Fragment, FragmentAssembler};
use kvs_core::mkv::ids;
use kvs_core::protocol::Ack;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn builder() -> FragmentBuilder {
    FragmentBuilder::new(StreamConfig::new(vec![TrackConfig::video(
        1,
        "V_MPEG4/ISO/AVC",
        Bytes::from_static(&[1]),
        8,
        8,
    )]))
    .unwrap()
}

/// An upload laid out as PIC lays it out: the stream header, then before
/// each Cluster the metadata queued since the previous one (`batches[k]`
/// in front of Cluster k), and `batches[n]` after the last Cluster followed
/// by the end-of-fragment tag (PIC's stream stop). Tag i is `t{i}` = `v{i}`.
/// Returns the chunks and the tag names each fragment must come back with.
fn pic_upload(batches: &[usize], base_tc: i64) -> (Vec<Bytes>, Vec<Vec<String>>) {
    let mut b = builder();
    let mut chunks = vec![b.header()];
    let clusters = batches.len() - 1;
    let mut want: Vec<Vec<String>> = vec![Vec::new(); clusters];
    let mut n = 0;
    for (i, &k) in batches.iter().enumerate() {
        let tags: Vec<Tag> = (n..n + k)
            .map(|j| Tag {
                name: format!("t{j}"),
                value: format!("v{j}"),
            })
            .collect();
        // Before the first Cluster: the first fragment's; before Cluster
        // k > 0: fragment k-1's (it follows that Cluster); after the last:
        // the last fragment's.
        let owner = i.saturating_sub(1).min(clusters - 1);
        want[owner].extend(tags.iter().map(|t| t.name.clone()));
        n += k;
        chunks.push(b.tags(&tags).unwrap());
        if i < clusters {
            let tc = base_tc + 1000 * i as i64;
            let frames = [
                FrameIn {
                    track: 1,
                    timecode: tc,
                    key: true,
                    payload: Payload::Raw(Bytes::from(format!("key-{i}"))),
                },
                FrameIn {
                    track: 1,
                    timecode: tc + 500,
                    key: false,
                    payload: Payload::Raw(Bytes::from(format!("delta-{i}"))),
                },
            ];
            b.fragment(&frames, &[], &mut chunks).unwrap();
        }
    }
    chunks.push(FragmentBuilder::end_of_fragment_tag());
    (chunks, want)
}

fn names(f: &Fragment) -> Vec<String> {
    f.tags.iter().map(|(n, _)| n.clone()).collect()
}

async fn get_media(c: &KvsClient, stream: &str, n: usize) -> Vec<Fragment> {
    let mut g = c.get_media(stream, &StartSelector::Earliest).await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let f = tokio::time::timeout(Duration::from_secs(10), g.next_fragment())
            .await
            .expect("a fragment within 10 s")
            .unwrap()
            .unwrap();
        out.push(f);
    }
    out
}

/// The raw GetMediaForFragmentList response.
async fn raw_fragment_list(ep: &LocalEndpoint, stream: &str, numbers: &[String]) -> Bytes {
    let http: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let body = serde_json::json!({"StreamName": stream, "Fragments": numbers}).to_string();
    let req = http::Request::post(format!("{}/getMediaForFragmentList", ep.url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = http.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn assemble(data: Bytes) -> Vec<Fragment> {
    let mut asm = FragmentAssembler::default();
    asm.push(data);
    asm.finish();
    let mut out = Vec::new();
    while let Some(f) = asm.next_fragment().unwrap() {
        out.push(f);
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// 99 tags in PIC's layout over 10 fragments (the first takes the 4 sent
/// before its Cluster and the 5 after it; the last takes the 10 after the
/// last Cluster): every tag comes back, once, in order, on its fragment,
/// through GetMedia and through GetMediaForFragmentList.
#[tokio::test]
async fn pic_metadata_comes_back_on_the_fragment_it_follows() {
    let (ep, c) = common::endpoint_with_stream(LocalConfig::default(), "meta", 1).await;
    let batches = [4, 5, 10, 10, 10, 10, 10, 10, 10, 10, 10];
    let (chunks, want) = pic_upload(&batches, 1_732_012_345_000);
    assert_eq!(want.iter().map(Vec::len).sum::<usize>(), 99);
    let (acks, err) = common::put_all(
        &c,
        "meta",
        &Bytes::from(chunks.concat()),
        TimecodeType::Absolute,
        0,
    )
    .await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(common::persisted(&acks).len(), 10, "{acks:?}");

    let live = get_media(&c, "meta", 10).await;
    assert_eq!(live.iter().map(names).collect::<Vec<_>>(), want);
    for f in &live {
        assert!(f.tags.iter().all(|(n, v)| v == &n.replace('t', "v")));
        assert!(f.millis_behind_now.is_some() && f.continuation_token.is_some());
        assert_eq!(f.frames.len(), 2);
    }

    let numbers = common::persisted_numbers(&acks);
    let archived = c
        .get_media_for_fragment_list("meta", &numbers)
        .await
        .unwrap();
    assert_eq!(archived.iter().map(names).collect::<Vec<_>>(), want);
    // The tags stay in the document of their fragment, after its Cluster.
    let raw = raw_fragment_list(&ep, "meta", &numbers[9..]).await;
    let last = assemble(raw.clone());
    assert_eq!(last.len(), 1);
    assert_eq!(names(&last[0]), want[9]);
    let cluster_at = raw
        .windows(4)
        .position(|w| w == [0x1F, 0x43, 0xB6, 0x75])
        .unwrap();
    let tag_at = raw.windows(3).position(|w| w == b"t89").unwrap();
    assert!(tag_at > cluster_at, "after the Cluster's blocks");
}

/// GetMediaForFragmentList writes `AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP`
/// and `…_PRODUCER_SIDE_TIMESTAMP` (its model), GetMedia the spellings
/// without `_SIDE` (its model, the real captures); the assembler reads both
/// into the same fields, equal to what ListFragments reports.
#[tokio::test]
async fn each_api_spells_its_timestamps_as_its_model() {
    let (ep, c) = common::endpoint_with_stream(LocalConfig::default(), "spell", 1).await;
    let mut data = common::one_frame_stream(1_732_012_345_000, b"a").to_vec();
    let mut b = builder();
    let mut more = Vec::new();
    b.fragment(
        &[FrameIn {
            track: 1,
            timecode: 1_732_012_346_000,
            key: true,
            payload: Payload::Raw(Bytes::from_static(b"b")),
        }],
        &[],
        &mut more,
    )
    .unwrap();
    data.extend_from_slice(&more.concat());
    let (acks, err) =
        common::put_all(&c, "spell", &Bytes::from(data), TimecodeType::Absolute, 0).await;
    assert!(err.is_none(), "{err:?}");
    let numbers = common::persisted_numbers(&acks);
    assert_eq!(numbers.len(), 2);

    let raw = raw_fragment_list(&ep, "spell", &numbers).await;
    assert!(contains(&raw, "AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP"));
    assert!(contains(&raw, "AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP"));
    assert!(!contains(&raw, "AWS_KINESISVIDEO_SERVER_TIMESTAMP"));
    assert!(!contains(&raw, "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"));
    assert!(
        !contains(&raw, "MILLIS_BEHIND_NOW"),
        "not in this API's model"
    );

    let listed = c.list_fragments("spell", None).await.unwrap();
    let archived = assemble(raw);
    let live = get_media(&c, "spell", 2).await;
    for (i, info) in listed.iter().enumerate() {
        let server = (info.server_timestamp * 1000.0).round() as u64;
        let producer = (info.producer_timestamp * 1000.0).round() as u64;
        for f in [&archived[i], &live[i]] {
            assert_eq!(
                f.fragment_number.as_deref(),
                Some(info.fragment_number.as_str())
            );
            assert_eq!(f.server_timestamp_ms, Some(server));
            assert_eq!(f.producer_timestamp_ms, Some(producer));
        }
    }
    assert_eq!(live[1].producer_timestamp_ms, Some(1_732_012_346_000));
}

/// The assembler reads GetMediaForFragmentList's exception tags: the
/// integer code of `AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE` becomes the
/// numeric error.
#[test]
fn fragment_list_exception_tags_are_read() {
    let mut doc = Vec::new();
    writer::ebml_header(&mut doc, "matroska", 2);
    writer::master_unknown(&mut doc, ids::SEGMENT);
    writer::master(&mut doc, ids::TAGS, |t| {
        writer::master(t, ids::TAG, |tag| {
            for (n, v) in [
                (
                    "AWS_KINESISVIDEO_FRAGMENT_NUMBER",
                    "91343852333181432392682062607743920146159169392",
                ),
                ("AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE", "4000"),
                (
                    "AWS_KINESISVIDEO_EXCEPTION_MESSAGE",
                    "Requested fragment is not found",
                ),
            ] {
                writer::master(tag, ids::SIMPLE_TAG, |st| {
                    writer::string(st, ids::TAG_NAME, n);
                    writer::string(st, ids::TAG_STRING, v);
                });
            }
        });
    });
    let frags = assemble(Bytes::from(doc));
    assert_eq!(frags.len(), 1);
    assert_eq!(frags[0].error_id, Some(4000));
    assert_eq!(frags[0].error_code.as_deref(), Some("4000"));
    assert!(frags[0].tags.is_empty(), "service tags are not user tags");
}

/// MILLIS_BEHIND_NOW counts from the fragment's server timestamp (when its
/// first bytes arrived) to the moment it is sent — the relation every real
/// capture shows — for every fragment, the stream's latest included, and
/// still after the endpoint restarts from its data directory.
#[tokio::test]
async fn millis_behind_now_counts_from_the_server_timestamp() {
    let dir = std::env::temp_dir().join(format!("kvs-mbn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = LocalConfig {
        data_dir: Some(dir.clone()),
        ..LocalConfig::default()
    };
    let (ep, c) = common::endpoint_with_stream(cfg.clone(), "mbn", 1).await;
    // Two fragments, each sent in two parts 400 ms apart: their server
    // timestamps are taken at their first bytes.
    let (chunks, _) = pic_upload(&[1, 1, 1], 1_732_012_345_000);
    let data = Bytes::from(chunks.concat());
    let second_cluster = data
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == [0x1F, 0x43, 0xB6, 0x75])
        .nth(1)
        .unwrap()
        .0;
    let mut s = c
        .put_media(&PutMediaOptions {
            stream: StreamId::from("mbn"),
            timecode_type: TimecodeType::Absolute,
            producer_start: crate::support::at_ms(0),
        })
        .await
        .unwrap();
    for (from, to) in [
        (0, second_cluster - 8),
        (second_cluster - 8, second_cluster + 20),
        (second_cluster + 20, data.len()),
    ] {
        s.send(data.slice(from..to)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    s.finish();
    let mut persisted = 0;
    while let Some(a) = s.next_ack().await {
        persisted += usize::from(matches!(a.unwrap(), Ack::Persisted { .. }));
    }
    assert_eq!(persisted, 2);

    let check = |frags: &[Fragment], before: u64, after: u64, min_behind: u64| {
        for f in frags {
            let server = f.server_timestamp_ms.unwrap();
            let behind = f.millis_behind_now.unwrap();
            assert!(
                (before..=after).contains(&(server + behind)),
                "server {server} + behind {behind} is when it was sent: within [{before}, {after}]"
            );
            assert!(behind >= min_behind, "{behind} < {min_behind}");
        }
    };
    let before = now_ms();
    let frags = get_media(&c, "mbn", 2).await;
    check(&frags, before, now_ms(), 400);
    // The latest fragment on the stream is behind too (not 0).
    assert!(frags[1].millis_behind_now.unwrap() >= 400);

    // After a restart the server timestamps still count (and the
    // fragments keep their tags and spelling).
    ep.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ep = LocalEndpoint::start(cfg).await.unwrap();
    let c = common::client(ep.url());
    let before = now_ms();
    let again = get_media(&c, "mbn", 2).await;
    check(&again, before, now_ms(), 700);
    assert_eq!(
        again.iter().map(names).collect::<Vec<_>>(),
        [vec!["t0", "t1"], vec!["t2"]]
    );
    let numbers: Vec<String> = again
        .iter()
        .map(|f| f.fragment_number.clone().unwrap())
        .collect();
    let raw = raw_fragment_list(&ep, "mbn", &numbers).await;
    assert!(contains(&raw, "AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP"));
    assert_eq!(
        assemble(raw).iter().map(names).collect::<Vec<_>>(),
        [vec!["t0", "t1"], vec!["t2"]]
    );
    ep.shutdown().await;

    // A data directory saved before the split was recorded in the index.
    let index = dir.join("media").join("s-mbn").join("index.jsonl");
    let old: String = std::fs::read_to_string(&index)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            assert!(o.remove("lead_at").is_some() && o.remove("lead_len").is_some());
            format!("{v}\n")
        })
        .collect();
    std::fs::write(&index, old).unwrap();
    let ep = LocalEndpoint::start(LocalConfig {
        data_dir: Some(dir.clone()),
        ..LocalConfig::default()
    })
    .await
    .unwrap();
    let raw = raw_fragment_list(&ep, "mbn", &numbers).await;
    assert!(contains(&raw, "AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP"));
    assert!(!contains(&raw, "AWS_KINESISVIDEO_SERVER_TIMESTAMP"));
    assert_eq!(assemble(raw).len(), 2);
    ep.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
