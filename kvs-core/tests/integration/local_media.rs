//! PutMedia and GetMedia on the local endpoint, over real HTTP on 127.0.0.1:
//! ACKs for every fragment, and what GetMedia returns equals what was put,
//! frame for frame and byte for byte.
#![cfg(feature = "local")]

use crate::common;

use bytes::Bytes;
use common::endpoint_with_stream;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kvs_core::local::LocalConfig;
use kvs_core::mkv::fragment::FragmentAssembler;
use kvs_core::mkv::{parse_all, Event, ParserConfig};
use kvs_core::protocol::{Ack, AckDecoder, ServiceErrorCode};

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn clip() -> Bytes {
    common::clip(true)
}

async fn put_media(http: &Http, url: &str, stream: &str, body: Bytes) -> (u16, Vec<Ack>) {
    let req = http::Request::post(format!("{url}/putMedia"))
        .header("x-amzn-stream-name", stream)
        .header("x-amzn-fragment-timecode-type", "ABSOLUTE")
        .header("x-amzn-producer-start-timestamp", "1732012345.678")
        .header("x-amzn-fragment-acknowledgment-required", "1")
        .body(Full::new(body))
        .unwrap();
    let resp = http.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    if status != 200 {
        return (status, Vec::new());
    }
    let mut d = AckDecoder::default();
    d.push(&body);
    let mut acks = Vec::new();
    while let Some(a) = d.next_ack() {
        acks.push(a.unwrap());
    }
    d.finish().unwrap();
    (status, acks)
}

/// Reads GetMedia until `n` fragments have come.
async fn get_media(
    http: &Http,
    url: &str,
    selector: serde_json::Value,
    n: usize,
) -> Vec<kvs_core::mkv::fragment::Fragment> {
    let body = serde_json::json!({"StreamName": "porch", "StartSelector": selector});
    let req = http::Request::post(format!("{url}/getMedia"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = http.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "video/webm");
    let mut body = resp.into_body();
    let mut asm = FragmentAssembler::default();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("GetMedia stalled")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            asm.push(data);
            while let Some(f) = asm.next_fragment().unwrap() {
                out.push(f);
            }
        }
    }
    out
}

#[tokio::test]
async fn put_then_get_gives_back_every_frame() {
    let (ep, _c) = endpoint_with_stream(LocalConfig::default(), "porch", 2).await;
    let http: Http = Client::builder(TokioExecutor::new()).build_http();

    let body = clip();
    let (status, acks) = put_media(&http, ep.url(), "porch", body.clone()).await;
    assert_eq!(status, 200);
    let count = |f: fn(&Ack) -> bool| acks.iter().filter(|a| f(a)).count();
    assert_eq!(count(|a| matches!(a, Ack::Buffering { .. })), 4, "{acks:?}");
    assert_eq!(count(|a| matches!(a, Ack::Received { .. })), 4);
    assert_eq!(count(|a| matches!(a, Ack::Persisted { .. })), 4);
    let persisted: Vec<(u64, String)> = acks
        .iter()
        .filter_map(|a| {
            if let Ack::Persisted {
                fragment_timecode,
                fragment_number,
            } = a
            {
                Some((*fragment_timecode, fragment_number.clone()))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        persisted.iter().map(|p| p.0).collect::<Vec<_>>(),
        [0, 2000, 4000, 6000]
    );
    assert!(
        persisted
            .windows(2)
            .all(|w| w[0].1.len() == 47 && w[0].1 < w[1].1),
        "increasing 47-digit numbers"
    );

    // What was put, frame by frame.
    let (events, err) = parse_all(body, ParserConfig::default());
    assert!(err.is_none());
    let put: Vec<_> = events
        .iter()
        .filter_map(|e| {
            if let Event::Frame(f) = e {
                Some((f.track, f.timecode, f.key, f.payload.clone()))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(put.len(), 200 + 346);

    let frags = get_media(
        &http,
        ep.url(),
        serde_json::json!({"StartSelectorType": "EARLIEST"}),
        4,
    )
    .await;
    let got: Vec<_> = frags
        .iter()
        .flat_map(|f| {
            f.frames
                .iter()
                .map(|fr| (fr.track, fr.timecode, fr.key, fr.payload.clone()))
        })
        .collect();
    assert_eq!(got, put, "GetMedia returns exactly the frames put");
    for (f, (tc, number)) in frags.iter().zip(&persisted) {
        assert_eq!(f.fragment_number.as_ref(), Some(number));
        assert_eq!(f.continuation_token.as_ref(), Some(number));
        assert_eq!(f.cluster_timecode, Some(*tc));
        assert_eq!(f.producer_timestamp_ms, Some(*tc));
        assert!(f.server_timestamp_ms.is_some() && f.millis_behind_now.is_some());
        assert_eq!(f.tracks.len(), 2);
    }

    // Resuming after the second fragment gives the last two.
    let rest = get_media(&http, ep.url(), serde_json::json!({"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": persisted[1].1}), 2).await;
    assert_eq!(
        rest.iter()
            .map(|f| f.cluster_timecode.unwrap())
            .collect::<Vec<_>>(),
        [4000, 6000]
    );

    // Live: a reader started at NOW gets a fragment put afterwards.
    let http2 = http.clone();
    let url = ep.url().to_owned();
    let live = tokio::spawn(async move {
        get_media(
            &http2,
            &url,
            serde_json::json!({"StartSelectorType": "NOW"}),
            1,
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let later = common::one_frame_stream(10_000, b"later");
    let (_, acks) = put_media(&http, ep.url(), "porch", later).await;
    assert!(
        acks.iter().any(|a| matches!(
            a,
            Ack::Persisted {
                fragment_timecode: 10_000,
                ..
            }
        )),
        "{acks:?}"
    );
    let live = live.await.unwrap();
    assert_eq!(live[0].cluster_timecode, Some(10_000));
}

#[tokio::test]
async fn rejected_uploads_get_the_service_errors() {
    let (ep, _c) = endpoint_with_stream(LocalConfig::default(), "porch", 1).await;
    let http: Http = Client::builder(TokioExecutor::new()).build_http();

    // Unknown stream: 404 before streaming.
    assert_eq!(put_media(&http, ep.url(), "nope", clip()).await.0, 404);
    // Garbage: an ERROR ACK with 4006.
    let (status, acks) = put_media(
        &http,
        ep.url(),
        "porch",
        Bytes::from_static(b"<html>not mkv</html>"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        matches!(
            acks.last(),
            Some(Ack::Error {
                code: ServiceErrorCode::InvalidMkvData,
                ..
            })
        ),
        "{acks:?}"
    );
    // The same stream twice on one connection: fragments of the first pass are
    // acknowledged, then the second EBML document is refused.
    let twice = Bytes::from([clip(), clip()].concat());
    let (_, acks) = put_media(&http, ep.url(), "porch", twice).await;
    assert_eq!(
        acks.iter()
            .filter(|a| matches!(a, Ack::Persisted { .. }))
            .count(),
        4
    );
    assert!(
        matches!(
            acks.last(),
            Some(Ack::Error {
                code: ServiceErrorCode::InvalidMkvData,
                ..
            })
        ),
        "{acks:?}"
    );
    // Timecodes must increase within a session (4004, checked by the ingest
    // unit tests); a new connection starts its own session.
    let (_, acks) = put_media(&http, ep.url(), "porch", clip()).await;
    assert_eq!(
        acks.iter()
            .filter(|a| matches!(a, Ack::Persisted { .. }))
            .count(),
        4,
        "{acks:?}"
    );
    // Cut mid-upload: what was whole is stored, the cut fragment is not.
    let full = clip();
    let (_, acks) = put_media(&http, ep.url(), "porch", full.slice(..full.len() - 1000)).await;
    assert_eq!(
        acks.iter()
            .filter(|a| matches!(a, Ack::Persisted { .. }))
            .count(),
        3,
        "{acks:?}"
    );
    assert!(
        matches!(
            acks.last(),
            Some(Ack::Error {
                code: ServiceErrorCode::StreamReadError,
                ..
            })
        ),
        "{acks:?}"
    );
}

#[tokio::test]
async fn client_sessions_put_and_get_through_the_local_endpoint() {
    use kvs_core::client::{PutMediaOptions, StartSelector, TimecodeType};
    let (_ep, c) = endpoint_with_stream(LocalConfig::default(), "porch", 2).await;

    let body = clip();
    let opts = PutMediaOptions {
        stream: "porch".into(),
        timecode_type: TimecodeType::Absolute,
        producer_start: crate::support::at_ms(1_732_012_345_678),
    };
    let mut session = c.put_media(&opts).await.unwrap();
    for piece in body.chunks(65_536) {
        session.send(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    session.finish();
    let mut persisted = Vec::new();
    while let Some(a) = session.next_ack().await {
        if let Ack::Persisted {
            fragment_timecode, ..
        } = a.unwrap()
        {
            persisted.push(fragment_timecode);
        }
    }
    assert_eq!(persisted, [0, 2000, 4000, 6000]);

    let (events, _) = parse_all(body, ParserConfig::default());
    let put: Vec<_> = events
        .iter()
        .filter_map(|e| {
            if let Event::Frame(f) = e {
                Some((f.track, f.timecode, f.payload.clone()))
            } else {
                None
            }
        })
        .collect();
    let mut get = c
        .get_media("porch", &StartSelector::Earliest)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let f = get.next_fragment().await.unwrap().unwrap();
        got.extend(
            f.frames
                .iter()
                .map(|fr| (fr.track, fr.timecode, fr.payload.clone())),
        );
    }
    // Resume where the first session stopped, as a consumer does after a reset.
    let token = get.continuation_token().unwrap().to_owned();
    drop(get);
    let mut resumed = c
        .get_media("porch", &StartSelector::ContinuationToken(token))
        .await
        .unwrap();
    for _ in 0..2 {
        let f = resumed.next_fragment().await.unwrap().unwrap();
        got.extend(
            f.frames
                .iter()
                .map(|fr| (fr.track, fr.timecode, fr.payload.clone())),
        );
    }
    assert_eq!(got, put, "no frame lost or doubled across the resume");

    // A missing stream is a typed error before any media flows.
    let e = c
        .get_media("nope", &StartSelector::Earliest)
        .await
        .unwrap_err();
    assert_eq!(
        e.service_code(),
        Some(&kvs_core::client::ServiceException::ResourceNotFound)
    );
}
