//! The local endpoint under abuse: connection limits per stream, 100
//! concurrent uploads, a client that stops reading its ACKs, oversized
//! headers, bodies and fragments. It keeps serving, and every fragment it
//! acknowledged stays readable.
#![cfg(feature = "local")]

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::{client, endpoint_with_stream, persisted};
use kvs_core::client::{
    CreateStream, PutMediaOptions, ServiceException, StartSelector, TimecodeType,
};
use kvs_core::local::LocalConfig;
use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, TrackConfig};
use kvs_core::protocol::{Ack, ServiceErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn opts(stream: &str) -> PutMediaOptions {
    PutMediaOptions {
        stream: stream.into(),
        timecode_type: TimecodeType::Relative,
        producer_start: crate::support::at_ms(1_732_012_345_000),
    }
}

/// A stream of `n` one-frame fragments, 100 ms apart, each frame `size` bytes.
fn tiny_fragments(n: usize, size: usize) -> Vec<Bytes> {
    let mut b = FragmentBuilder::new(StreamConfig::new(vec![TrackConfig::video(
        1,
        "V_MPEG4/ISO/AVC",
        Bytes::from_static(&[1, 0x42, 0, 0x1e, 0xff, 0xe0, 0]),
        64,
        64,
    )]))
    .unwrap();
    let mut out = vec![b.header()];
    for i in 0..n {
        let frame = FrameIn {
            track: 1,
            timecode: i as i64 * 100,
            key: true,
            payload: Payload::Raw(Bytes::from(vec![i as u8; size])),
        };
        b.fragment(&[frame], &[], &mut out).unwrap();
    }
    out.push(FragmentBuilder::end_of_fragment_tag());
    out
}

fn code(e: &kvs_core::client::ClientError) -> Option<ServiceException> {
    e.service_code().cloned()
}

#[tokio::test]
async fn connections_per_stream_are_limited() {
    let cfg = LocalConfig {
        max_put_media_connections: 2,
        max_get_media_connections: 1,
        ..LocalConfig::default()
    };
    let (_ep, c) = endpoint_with_stream(cfg, "cam", 1).await;
    // Two PutMedia connections at once (rotation overlap) both stream.
    let mut a = c.put_media(&opts("cam")).await.unwrap();
    let mut b = c.put_media(&opts("cam")).await.unwrap();
    let third = c.put_media(&opts("cam")).await.unwrap_err();
    assert_eq!(
        code(&third),
        Some(ServiceException::ConnectionLimitExceeded)
    );
    for s in [&a, &b] {
        for ch in tiny_fragments(3, 100) {
            s.send(ch).await.unwrap();
        }
    }
    a.finish();
    b.finish();
    for s in [&mut a, &mut b] {
        let mut acks = Vec::new();
        while let Some(x) = s.next_ack().await {
            acks.push(x.unwrap());
        }
        assert_eq!(persisted(&acks).len(), 3, "{acks:?}");
    }
    // Closed connections free their slots.
    let mut reopened = None;
    for _ in 0..50 {
        match c.put_media(&opts("cam")).await {
            Ok(s) => {
                reopened = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(reopened.is_some(), "a slot came free");
    // GetMedia: one reader allowed here, the next refused.
    let _reader = c.get_media("cam", &StartSelector::Earliest).await.unwrap();
    let second = c
        .get_media("cam", &StartSelector::Earliest)
        .await
        .unwrap_err();
    assert_eq!(
        code(&second),
        Some(ServiceException::ConnectionLimitExceeded)
    );
}

#[tokio::test]
async fn a_hundred_concurrent_uploads_are_all_stored() {
    let ep = kvs_core::local::LocalEndpoint::start(LocalConfig::default())
        .await
        .unwrap();
    let c = std::sync::Arc::new(client(ep.url()));
    for i in 0..100 {
        c.create_stream(&CreateStream {
            stream_name: format!("cam-{i}"),
            data_retention_in_hours: 1,
            ..CreateStream::default()
        })
        .await
        .unwrap();
    }
    let data = common::clip(false);
    let uploads: Vec<_> = (0..100)
        .map(|i| {
            let c = c.clone();
            let data = data.clone();
            tokio::spawn(async move {
                common::put_all(&c, &format!("cam-{i}"), &data, TimecodeType::Relative, 1).await
            })
        })
        .collect();
    for u in uploads {
        let (acks, err) = u.await.unwrap();
        assert!(err.is_none(), "{err:?}");
        assert_eq!(persisted(&acks).len(), 4);
    }
    for i in [0, 37, 99] {
        let mut g = c
            .get_media(format!("cam-{i}").as_str(), &StartSelector::Earliest)
            .await
            .unwrap();
        let mut frames = 0;
        for _ in 0..4 {
            frames += g.next_fragment().await.unwrap().unwrap().frames.len();
        }
        assert_eq!(frames, 200);
    }
    assert_eq!(c.list_fragments("cam-50", None).await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_client_that_stops_reading_acks_does_not_stall_others() {
    let (_ep, c) = endpoint_with_stream(LocalConfig::default(), "slow", 1).await;
    c.create_stream(&CreateStream {
        stream_name: "other".into(),
        data_retention_in_hours: 1,
        ..CreateStream::default()
    })
    .await
    .unwrap();
    // 3000 fragments, ~9000 ACKs, sent while nobody reads them.
    let slow = c.put_media(&opts("slow")).await.unwrap();
    let chunks = tiny_fragments(3000, 64);
    let writer = {
        let chunks = chunks.clone();
        async move {
            for ch in chunks {
                if slow.send(ch).await.is_err() {
                    break;
                }
            }
            slow
        }
    };
    let writer = tokio::spawn(writer);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meanwhile the endpoint serves everyone else.
    assert!(c.describe_stream("other").await.is_ok());
    let (acks, err) =
        common::put_all(&c, "other", &common::clip(false), TimecodeType::Relative, 1).await;
    assert!(err.is_none() && persisted(&acks).len() == 4);
    // Now read: every fragment the endpoint acknowledged is stored.
    let mut slow = writer.await.unwrap();
    slow.finish();
    let mut acked = Vec::new();
    while let Some(a) = slow.next_ack().await {
        if let Ack::Persisted {
            fragment_number, ..
        } = a.unwrap()
        {
            acked.push(fragment_number);
        }
    }
    assert_eq!(acked.len(), 3000);
    let listed: Vec<String> = c
        .list_fragments("slow", None)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.fragment_number)
        .collect();
    assert_eq!(listed, acked);
}

/// Sends raw bytes on a fresh connection; returns what came back.
async fn raw(url: &str, request: &[u8]) -> String {
    let host = url.strip_prefix("http://").unwrap();
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    // The server may answer and close before it has read everything.
    let _ = tcp.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn oversized_headers_and_bodies_are_refused() {
    let (ep, c) = endpoint_with_stream(LocalConfig::default(), "cam", 1).await;
    // A 1 MiB header: refused (431) or cut, never served.
    let mut big = b"POST /describeStream HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1 << 20));
    big.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\n{}");
    let answer = raw(ep.url(), &big).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    // 10 000 headers: the same.
    let mut many = b"POST /describeStream HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..10_000 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"Content-Length: 2\r\n\r\n{}");
    let answer = raw(ep.url(), &many).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    // A control-plane body over the limit: the service's InvalidArgument.
    let body = format!(
        "{{\"StreamName\": \"cam\", \"Pad\": \"{}\"}}",
        "p".repeat(2 << 20)
    );
    let req = format!(
        "POST /describeStream HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(ep.url(), req.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert!(answer.contains("InvalidArgumentException"));
    // A fragment over 50 MB: 4001, refused as soon as it is too big, and
    // the fragments before it stay stored.
    let mut s = c.put_media(&opts("cam")).await.unwrap();
    let mut b = FragmentBuilder::new(StreamConfig::new(vec![TrackConfig::video(
        1,
        "V_MPEG4/ISO/AVC",
        Bytes::from_static(&[1, 0x42, 0, 0x1e, 0xff, 0xe0, 0]),
        64,
        64,
    )]))
    .unwrap();
    let mut chunks = vec![b.header()];
    let small = FrameIn {
        track: 1,
        timecode: 0,
        key: true,
        payload: Payload::Raw(Bytes::from_static(b"small")),
    };
    b.fragment(&[small], &[], &mut chunks).unwrap();
    let big: Vec<FrameIn> = (0..7)
        .map(|i| FrameIn {
            track: 1,
            timecode: 1000 + i * 40,
            key: i == 0,
            payload: Payload::Raw(Bytes::from(vec![7u8; 8 << 20])),
        })
        .collect();
    b.fragment(&big, &[], &mut chunks).unwrap();
    let sender = tokio::spawn(async move {
        for ch in chunks {
            if s.send(ch).await.is_err() {
                break;
            }
        }
        s.finish();
        s
    });
    let mut s = sender.await.unwrap();
    let mut acks = Vec::new();
    while let Some(Ok(a)) = s.next_ack().await {
        acks.push(a);
    }
    assert_eq!(persisted(&acks).len(), 1, "{acks:?}");
    assert!(
        matches!(
            acks.last(),
            Some(Ack::Error {
                code: ServiceErrorCode::MaxFragmentSizeReached,
                ..
            })
        ),
        "{acks:?}"
    );
    // And the endpoint still answers.
    assert!(c.describe_stream("cam").await.is_ok());
}
