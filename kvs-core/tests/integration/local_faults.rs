//! The local endpoint's fault knobs, seen through our client.
#![cfg(feature = "local")]

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{endpoint_with_stream, persisted};
use kvs_core::client::{ClientError, KvsClient, PutMediaOptions, StartSelector, TimecodeType};
use kvs_core::local::{Faults, LocalConfig, LocalEndpoint};
use kvs_core::protocol::{Ack, ServiceErrorCode};

fn clip() -> Bytes {
    common::clip(true)
}

async fn setup(faults: Faults) -> (LocalEndpoint, KvsClient) {
    endpoint_with_stream(
        LocalConfig {
            faults,
            ..LocalConfig::default()
        },
        "cam",
        1,
    )
    .await
}

/// Uploads the clip; returns the ACKs and how the ACK stream ended.
async fn put(c: &KvsClient, data: &Bytes) -> (Vec<Ack>, Option<ClientError>) {
    common::put_all(c, "cam", data, TimecodeType::Absolute, 0).await
}

#[tokio::test]
async fn putmedia_cut_after_n_bytes_keeps_what_was_whole() {
    let (_ep, c) = setup(Faults {
        drop_after_bytes: Some(400_000),
        ..Faults::default()
    })
    .await;
    let (acks, err) = put(&c, &clip()).await;
    let done = persisted(&acks);
    assert!(!done.is_empty() && done.len() < 4, "{acks:?}");
    assert!(
        matches!(err, Some(ClientError::Transport(_))),
        "the cut surfaces as a transport error: {err:?}"
    );
    // Exactly the acknowledged fragments are stored.
    let mut g = c.get_media("cam", &StartSelector::Earliest).await.unwrap();
    for tc in &done {
        let f = tokio::time::timeout(Duration::from_secs(10), g.next_fragment())
            .await
            .expect("stored fragments come")
            .unwrap()
            .unwrap();
        assert_eq!(f.cluster_timecode, Some(*tc));
    }
}

#[tokio::test]
async fn getmedia_cut_then_resumed_by_continuation_token() {
    // The upload fits under the limit; the GetMedia output (a header per
    // fragment and the service's tags) does not, so it is cut in its last fragment.
    let data = clip();
    let (_ep, c) = setup(Faults {
        drop_after_bytes: Some(data.len() as u64 + 100),
        ..Faults::default()
    })
    .await;
    assert_eq!(persisted(&put(&c, &data).await.0).len(), 4);
    let mut g = c.get_media("cam", &StartSelector::Earliest).await.unwrap();
    let mut whole = Vec::new();
    while let Some(f) = tokio::time::timeout(Duration::from_secs(10), g.next_fragment())
        .await
        .expect("the cut ends the session")
    {
        let f = f.unwrap();
        if f.complete {
            whole.push(f.cluster_timecode.unwrap());
        }
    }
    assert!(whole.len() < 4, "the cut came before the end: {whole:?}");
    let token = g.continuation_token().unwrap().to_owned();
    let mut rest = c
        .get_media("cam", &StartSelector::ContinuationToken(token))
        .await
        .unwrap();
    while whole.len() < 4 {
        let f = tokio::time::timeout(Duration::from_secs(10), rest.next_fragment())
            .await
            .expect("resumed session delivers")
            .unwrap()
            .unwrap();
        whole.push(f.cluster_timecode.unwrap());
    }
    assert_eq!(
        whole,
        [0, 2000, 4000, 6000],
        "no fragment lost or repeated across the resume"
    );
}

#[tokio::test]
async fn error_ack_replaces_the_kth_fragment() {
    let (_ep, c) = setup(Faults {
        error_ack: Some((ServiceErrorCode::InternalError, 2)),
        ..Faults::default()
    })
    .await;
    let (acks, err) = put(&c, &clip()).await;
    assert!(err.is_none());
    assert_eq!(persisted(&acks), [0]);
    match acks.last() {
        Some(Ack::Error {
            code,
            fragment_timecode: Some(2000),
            ..
        }) => {
            assert_eq!(*code, ServiceErrorCode::InternalError);
            assert!(code.is_retryable());
        }
        a => panic!("{a:?}"),
    }
    // The errored fragment was not stored; a second connection is not faulted.
    let (acks, _) = put(&c, &clip()).await;
    assert_eq!(persisted(&acks), [0, 2000, 4000, 6000]);
}

#[tokio::test]
async fn acks_are_delayed() {
    let (_ep, c) = setup(Faults {
        ack_delay: Duration::from_millis(150),
        ..Faults::default()
    })
    .await;
    let started = Instant::now();
    let (acks, _) = put(&c, &clip()).await;
    assert_eq!(persisted(&acks).len(), 4);
    // Every ACK is held back 150 ms; ingest goes on meanwhile, so they
    // overlap (producer_uploads::delayed_acks_do_not_stall_ingest shows it).
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn fault_spellings() {
    let mut f = Faults::default();
    for spec in [
        "drop-after-bytes=1000",
        "error-ack=4002@3",
        "ack-delay-ms=20",
        "throttle=0.25",
    ] {
        f.apply(spec).unwrap();
    }
    assert_eq!(f.drop_after_bytes, Some(1000));
    assert_eq!(
        f.error_ack,
        Some((ServiceErrorCode::MaxFragmentDurationReached, 3))
    );
    assert_eq!(f.ack_delay, Duration::from_millis(20));
    assert_eq!(f.throttle, 0.25);
    for bad in [
        "nope=1",
        "throttle=2",
        "error-ack=5000",
        "error-ack=5000@0",
        "drop-after-bytes",
    ] {
        assert!(f.apply(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn idle_connections_get_idle_acks_then_close() {
    let cfg = LocalConfig {
        idle_ack_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(450),
        ..LocalConfig::default()
    };
    let (_ep, c) = endpoint_with_stream(cfg, "cam", 1).await;
    let opts = PutMediaOptions {
        stream: "cam".into(),
        timecode_type: TimecodeType::Absolute,
        producer_start: crate::support::at_ms(0),
    };
    let mut s = c.put_media(&opts).await.unwrap();
    // Send nothing and keep the body open: IDLE ACKs, then the service hangs up.
    let mut idle = 0;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(a) = s.next_ack().await {
            if matches!(a.unwrap(), Ack::Idle) {
                idle += 1;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle request was closed");
    assert!((3..=4).contains(&idle), "{idle} IDLE ACKs");
}

#[tokio::test]
async fn old_connections_get_4003() {
    use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, TrackConfig};
    let cfg = LocalConfig {
        max_connection_duration: Duration::from_millis(300),
        ..LocalConfig::default()
    };
    let (_ep, c) = endpoint_with_stream(cfg, "cam", 1).await;
    let mut b = FragmentBuilder::new(StreamConfig::new(vec![TrackConfig::video(
        1,
        "V_MPEG4/ISO/AVC",
        Bytes::from_static(&[1]),
        8,
        8,
    )]))
    .unwrap();
    let opts = PutMediaOptions {
        stream: "cam".into(),
        timecode_type: TimecodeType::Absolute,
        producer_start: crate::support::at_ms(0),
    };
    let mut s = c.put_media(&opts).await.unwrap();
    s.send(b.header()).await.unwrap();
    // A fragment every 100 ms; the connection is too old after 300 ms.
    let feeder = async {
        for i in 0..20i64 {
            let mut out = Vec::new();
            b.fragment(
                &[FrameIn {
                    track: 1,
                    timecode: 100 * i,
                    key: true,
                    payload: Payload::Raw(Bytes::from_static(b"f")),
                }],
                &[],
                &mut out,
            )
            .unwrap();
            if s.send(Bytes::from(out.concat())).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), feeder)
        .await
        .ok();
    s.finish();
    let mut last = None;
    while let Ok(Some(a)) = tokio::time::timeout(Duration::from_secs(5), s.next_ack()).await {
        last = Some(a.unwrap());
    }
    match last {
        Some(Ack::Error { code, .. }) => {
            assert_eq!(code, ServiceErrorCode::MaxConnectionDurationReached);
            assert!(code.is_retryable(), "a producer reconnects after 4003");
        }
        a => panic!("{a:?}"),
    }
}
