//! Uploads far larger than the socket buffers, against the local endpoint:
//! a service ERROR that arrives while the upload is ahead of the ACKs is
//! never lost, and a file several times the producer's buffer arrives whole
//! over a slow service when the producer waits instead of dropping.
#![cfg(feature = "local")]

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use kvs_core::auth::Credentials;
use kvs_core::client::{ClientConfig, CreateStream, KvsClient, RetryPolicy};
use kvs_core::codec::annexb::{access_units, nal_units, VideoCodec};
use kvs_core::codec::h264;
use kvs_core::local::{Faults, LocalConfig, LocalEndpoint};
use kvs_core::mkv::builder::{Payload, TrackConfig};
use kvs_core::producer::{
    Backoff, DropReason, Frame, PressurePolicy, Producer, ProducerError, ProducerEvent,
};
use kvs_core::protocol::ServiceErrorCode;

const START_MS: u64 = 1_750_000_000_000;
const FRAGMENTS: u64 = 10;
/// 25 frames of 40 KB: 1 MB fragments, a second each.
const FRAME_BYTES: usize = 40_000;

/// The clip's avcC (a real CodecPrivate), so the stream header is valid.
pub(crate) fn avcc() -> Bytes {
    let clip = Bytes::from(
        std::fs::read(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/media/clip.h264"),
        )
        .unwrap(),
    );
    let mut sets = h264::ParameterSets::default();
    for n in nal_units(&access_units(VideoCodec::H264, &clip)[0]) {
        sets.offer(n);
    }
    sets.codec_private().unwrap()
}

fn frames() -> Vec<Frame> {
    (0..FRAGMENTS * 25)
        .map(|i| Frame {
            track: 1,
            pts: Duration::from_millis(i * 40),
            dts: None,
            key: i % 25 == 0,
            payload: Payload::Raw(Bytes::from(vec![(i % 251) as u8; FRAME_BYTES])),
        })
        .collect()
}

async fn endpoint(faults: Faults) -> (LocalEndpoint, Arc<KvsClient>) {
    let ep = LocalEndpoint::start(LocalConfig {
        faults,
        ..LocalConfig::default()
    })
    .await
    .unwrap();
    let c = Arc::new(
        KvsClient::new(
            ClientConfig::new("us-east-1", Credentials::new("a", "b", None, None, "t"))
                .endpoint(ep.url())
                .retry(RetryPolicy {
                    max_attempts: 4,
                    base: Duration::from_millis(5),
                    cap: Duration::from_millis(50),
                }),
        )
        .unwrap(),
    );
    (ep, c)
}

/// Puts every frame with a producer of these settings, finishes, and
/// returns every event it reported.
async fn upload(c: &Arc<KvsClient>, buffer: Option<usize>) -> Vec<ProducerEvent> {
    let mut b = Producer::builder(c.clone(), "cam")
        .track(TrackConfig::video(1, h264::CODEC_ID, avcc(), 640, 360))
        .create_if_missing(CreateStream {
            data_retention_in_hours: 1,
            ..CreateStream::default()
        })
        .start_time(UNIX_EPOCH + Duration::from_millis(START_MS))
        .pressure(PressurePolicy::Wait)
        .reconnect(Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
        });
    if let Some(bytes) = buffer {
        b = b.buffer(bytes, Duration::from_secs(120));
    }
    let p = b.build().await.unwrap();
    let mut rx = p.subscribe();
    let events = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(e) = rx.recv().await {
            out.push(e);
        }
        out
    });
    for f in frames() {
        p.put_frame(f).await.unwrap();
    }
    p.finish(Duration::from_secs(30)).await.unwrap();
    let losses = p.losses();
    drop(p);
    let events = tokio::time::timeout(Duration::from_secs(5), events)
        .await
        .expect("the producer's events end once it is gone")
        .unwrap();
    // The losses counted are those the events reported.
    let dropped: Vec<(usize, &DropReason)> = events
        .iter()
        .filter_map(|e| match e {
            ProducerEvent::FragmentDropped { frames, reason, .. } => Some((*frames, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(losses.fragments, dropped.len());
    assert_eq!(losses.frames, dropped.iter().map(|d| d.0).sum::<usize>());
    assert_eq!(losses.last.as_ref(), dropped.last().map(|d| d.1));
    match losses.clone().check() {
        Ok(()) => assert!(dropped.is_empty()),
        Err(ProducerError::FragmentsLost(l)) => assert_eq!(l, losses),
        Err(e) => panic!("{e}"),
    }
    events
}

/// Producer timestamps (ms) of every fragment the endpoint stored.
async fn stored(c: &KvsClient) -> Vec<u64> {
    let mut v: Vec<u64> = c
        .list_fragments("cam", None)
        .await
        .unwrap()
        .iter()
        .map(|f| (f.producer_timestamp * 1000.0).round() as u64)
        .collect();
    v.sort_unstable();
    v
}

/// The ERROR fault on the k-th fragment, for every k, three runs each (the
/// timing varies), a non-retriable and a retriable code: the error is
/// reported with its code every time, a non-retriable code drops exactly
/// that fragment, a retriable one sends it again, and no fragment is stored
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_ack_behind_the_upload_is_never_lost() {
    for (code, retriable) in [
        (ServiceErrorCode::InvalidMkvData, false),
        (ServiceErrorCode::InternalError, true),
    ] {
        for k in 1..=FRAGMENTS {
            for run in 0..3 {
                let case = format!("{code} on fragment {k}, run {run}");
                let (_ep, c) = endpoint(Faults {
                    error_ack: Some((code, k)),
                    ..Faults::default()
                })
                .await;
                let events = upload(&c, None).await;
                // The fragment named by its timestamp and by the number the
                // service gave it.
                let errors: Vec<(ServiceErrorCode, bool, Option<u64>, bool)> = events
                    .iter()
                    .filter_map(|e| match e {
                        ProducerEvent::ServiceError {
                            code,
                            retriable,
                            producer_timestamp,
                            fragment_number,
                        } => Some((
                            *code,
                            *retriable,
                            producer_timestamp.map(crate::support::epoch_ms),
                            fragment_number.as_ref().is_some_and(|n| n.len() == 47),
                        )),
                        _ => None,
                    })
                    .collect();
                let refused = START_MS + (k - 1) * 1000;
                assert_eq!(
                    errors,
                    vec![(code, retriable, Some(refused), true)],
                    "{case}"
                );
                let dropped: Vec<(u64, DropReason)> = events
                    .iter()
                    .filter_map(|e| match e {
                        ProducerEvent::FragmentDropped {
                            producer_timestamp,
                            reason,
                            ..
                        } => Some((
                            crate::support::epoch_ms(*producer_timestamp),
                            reason.clone(),
                        )),
                        _ => None,
                    })
                    .collect();
                let got = stored(&c).await;
                let mut want: Vec<u64> = (0..FRAGMENTS).map(|i| START_MS + i * 1000).collect();
                if retriable {
                    assert!(dropped.is_empty(), "{case}: {dropped:?}");
                } else {
                    assert_eq!(
                        dropped,
                        vec![(refused, DropReason::Rejected(code))],
                        "{case}"
                    );
                    want.retain(|t| *t != refused);
                }
                assert_eq!(got, want, "{case}: stored once each");
            }
        }
    }
}

/// A 10 MB upload through a 2 MiB buffer to a service that delays every
/// ACK by 30 ms: with `Wait` the producer slows down instead of dropping,
/// and every fragment arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_the_buffer_arrives_whole_over_a_slow_service() {
    let (_ep, c) = endpoint(Faults {
        ack_delay: Duration::from_millis(30),
        ..Faults::default()
    })
    .await;
    let events = upload(&c, Some(2 << 20)).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ProducerEvent::FragmentDropped { .. })),
        "nothing dropped"
    );
    let acked = events
        .iter()
        .filter(|e| matches!(e, ProducerEvent::Acked { .. }))
        .count();
    assert_eq!(acked, FRAGMENTS as usize);
    assert_eq!(
        stored(&c).await,
        (0..FRAGMENTS)
            .map(|i| START_MS + i * 1000)
            .collect::<Vec<_>>()
    );
}

/// `ack-delay-ms` delays the ACKs, not the ingest (as a slow service would):
/// the endpoint takes in all ten fragments while their ACKs are still
/// 400 ms away, so their server timestamps lie far closer together than
/// the 8 s a stalled ingest would spread them over (two ACKs a fragment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_acks_do_not_stall_ingest() {
    let (_ep, c) = endpoint(Faults {
        ack_delay: Duration::from_millis(400),
        ..Faults::default()
    })
    .await;
    let events = upload(&c, None).await;
    let acked = events
        .iter()
        .filter(|e| matches!(e, ProducerEvent::Acked { .. }))
        .count();
    assert_eq!(acked, FRAGMENTS as usize);
    let server: Vec<f64> = c
        .list_fragments("cam", None)
        .await
        .unwrap()
        .iter()
        .map(|f| f.server_timestamp)
        .collect();
    let span = server.iter().cloned().fold(f64::MIN, f64::max)
        - server.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        span < 2.0,
        "ingest took {span:.2} s for {FRAGMENTS} fragments"
    );
}

/// A producer timestamp a minute in the future is refused with 4007
/// (INVALID_PRODUCER_TIMESTAMP), as the service refuses future timestamps;
/// the producer reports it and drops the fragment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_timestamps_in_the_future_are_refused() {
    let (_ep, c) = endpoint(Faults::default()).await;
    let p = Producer::builder(c.clone(), "future")
        .track(TrackConfig::video(1, h264::CODEC_ID, avcc(), 640, 360))
        .create_if_missing(CreateStream {
            data_retention_in_hours: 1,
            ..CreateStream::default()
        })
        .start_time(std::time::SystemTime::now() + Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let mut rx = p.subscribe();
    for f in frames().into_iter().take(30) {
        p.put_frame(f).await.unwrap();
    }
    p.finish(Duration::from_secs(10)).await.unwrap();
    let mut refused = 0;
    while let Some(e) = rx.try_recv() {
        if let ProducerEvent::ServiceError {
            code, retriable, ..
        } = e
        {
            assert_eq!(code, ServiceErrorCode::InvalidProducerTimestamp);
            assert!(!retriable);
            refused += 1;
        }
    }
    assert_eq!(refused, 2, "both fragments refused");
    assert!(c.list_fragments("future", None).await.unwrap().is_empty());
}

/// A connection that always breaks mid-fragment (after its BUFFERING ACK)
/// makes no progress, so the reconnect backoff keeps growing instead of
/// restarting on that ACK: the attempts count up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_gets_a_fragment_through_backs_off() {
    let (_ep, c) = endpoint(Faults {
        drop_after_bytes: Some(500_000),
        ..Faults::default()
    })
    .await;
    let p = Producer::builder(c.clone(), "cam")
        .track(TrackConfig::video(1, h264::CODEC_ID, avcc(), 640, 360))
        .create_if_missing(CreateStream {
            data_retention_in_hours: 1,
            ..CreateStream::default()
        })
        .start_time(UNIX_EPOCH + Duration::from_millis(START_MS))
        .reconnect(Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_secs(10),
        })
        .build()
        .await
        .unwrap();
    let mut events = p.subscribe();
    for f in frames().into_iter().take(26) {
        p.put_frame(f).await.unwrap();
    }
    let mut attempts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while attempts.len() < 5 {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ProducerEvent::Reconnecting { attempt, .. })) => attempts.push(attempt),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert_eq!(attempts, vec![1, 2, 3, 4, 5], "the backoff grows");
}
