//! The API at its edges: threads with no async runtime (the blocking
//! handles), a consumer started where no runtime exists (a typed error, no
//! panic), `try_put_frame` that never waits, and an event stream that says
//! when its subscriber fell behind.
#![cfg(feature = "local")]

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::FutureExt;
use kvs_core::auth::Credentials;
use kvs_core::blocking;
use kvs_core::client::{ClientConfig, ClientError, CreateStream, KvsClient, StartSelector};
use kvs_core::codec::annexb::{access_units, VideoCodec};
use kvs_core::codec::h264;
use kvs_core::consumer::Consumer;
use kvs_core::local::{Faults, LocalConfig, LocalEndpoint};
use kvs_core::mkv::builder::{Payload, TrackConfig};
use kvs_core::producer::{Frame, PressurePolicy, Producer, ProducerEvent, PutOutcome};

/// The bundled clip's access units as frames at 25 fps.
fn clip_frames() -> Vec<Frame> {
    let p =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/media/clip.h264");
    let clip = Bytes::from(std::fs::read(p).unwrap());
    access_units(VideoCodec::H264, &clip)
        .into_iter()
        .enumerate()
        .map(|(i, au)| {
            let key = VideoCodec::H264.is_key_unit(&au);
            Frame {
                track: 1,
                pts: Duration::from_millis(i as u64 * 40),
                dts: None,
                key,
                payload: Payload::AnnexB(au),
            }
        })
        .collect()
}

fn video_track() -> TrackConfig {
    let mut t = TrackConfig::video(1, h264::CODEC_ID, Bytes::new(), 0, 0);
    t.codec_private = None;
    t
}

/// An endpoint running on its own runtime (as a separate service would),
/// and a client made on this thread, outside any runtime.
fn endpoint(faults: Faults) -> (tokio::runtime::Runtime, LocalEndpoint, KvsClient) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ep = rt
        .block_on(LocalEndpoint::start(LocalConfig {
            faults,
            ..LocalConfig::default()
        }))
        .unwrap();
    let client = KvsClient::new(
        ClientConfig::new("us-east-1", Credentials::new("a", "b", None, None, "t"))
            .endpoint(ep.url()),
    )
    .unwrap();
    (rt, ep, client)
}

const START_MS: u64 = 1_750_000_000_000;

fn builder(client: &KvsClient, stream: &str) -> kvs_core::producer::ProducerBuilder {
    Producer::builder(client.clone(), stream)
        .track(video_track())
        .create_if_missing(CreateStream {
            data_retention_in_hours: 1,
            ..CreateStream::default()
        })
        .start_time(UNIX_EPOCH + Duration::from_millis(START_MS))
}

#[test]
fn a_consumer_started_outside_a_runtime_gives_a_typed_error() {
    let client = KvsClient::new(
        ClientConfig::new("us-east-1", Credentials::new("a", "b", None, None, "t"))
            .endpoint("http://127.0.0.1:9"),
    )
    .unwrap();
    let mut stream = Consumer::builder(client, "cam").start(StartSelector::Now);
    match stream.next().now_or_never() {
        Some(Some(Err(ClientError::NoRuntime))) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(stream.next().now_or_never(), Some(None)),
        "then it ends"
    );
}

/// Plain threads, no runtime anywhere on them: a producer puts the clip
/// from one thread, its events are read on another, and a consumer reads
/// every frame back, byte for byte.
#[test]
fn blocking_producer_and_consumer_work_from_plain_threads() {
    let (_rt, _ep, client) = endpoint(Faults::default());
    let producer = blocking::Producer::build(builder(&client, "cam")).unwrap();
    let mut events = producer.events();
    let frames = clip_frames();
    let putter = {
        let producer = producer.clone();
        let frames = frames.clone();
        std::thread::spawn(move || {
            for f in frames {
                producer.put_frame(f).unwrap();
            }
            producer.finish(Duration::from_secs(20)).unwrap();
        })
    };
    let mut acked = 0;
    while acked < 4 {
        match events.recv_timeout(Duration::from_secs(20)) {
            Some(ProducerEvent::Acked { .. }) => acked += 1,
            Some(_) => {}
            None => panic!("no ACK within 20 s"),
        }
    }
    putter.join().unwrap();
    let mut got = Vec::new();
    let mut fragments =
        blocking::fragments(Consumer::builder(client, "cam"), StartSelector::Earliest).unwrap();
    while got.len() < frames.len() {
        let f = fragments
            .next_timeout(Duration::from_secs(20))
            .expect("a fragment within 20 s")
            .unwrap();
        got.extend(f.frames.into_iter().map(|fr| fr.payload));
    }
    let want: Vec<Bytes> = frames
        .iter()
        .map(|f| f.payload.written().unwrap())
        .collect();
    assert!(got == want, "every frame back, in order, byte for byte");
}

/// `try_put_frame` never waits: a frame before the first key frame is
/// `Skipped`; with the first connection silent and a small buffer under
/// `Wait` it answers `Full` at once, where `put_frame` would wait.
#[test]
fn try_put_frame_returns_at_once() {
    let (_rt, _ep, client) = endpoint(Faults {
        silent_connections: 1,
        ..Faults::default()
    });
    let producer = blocking::Producer::build(
        builder(&client, "cam")
            .pressure(PressurePolicy::Wait)
            .buffer(64 << 10, Duration::from_secs(120)),
    )
    .unwrap();
    let frames = clip_frames();
    let mut leading = frames[1].clone();
    leading.pts = Duration::ZERO;
    assert_eq!(
        producer.try_put_frame(leading).unwrap(),
        PutOutcome::Skipped
    );
    let mut outcomes = Vec::new();
    for f in frames {
        let t = std::time::Instant::now();
        outcomes.push(producer.try_put_frame(f).unwrap());
        assert!(t.elapsed() < Duration::from_secs(1), "it waited");
    }
    assert!(outcomes.contains(&PutOutcome::Full), "{outcomes:?}");
}

/// A subscriber that reads nothing while more than its backlog of events
/// happens is told how many it lost, then reads on.
#[test]
fn a_lagging_subscriber_is_told_what_it_lost() {
    let (_rt, _ep, client) = endpoint(Faults::default());
    let producer = blocking::Producer::build(builder(&client, "cam")).unwrap();
    let mut events = producer.events();
    // 300 one-frame fragments (every frame a key frame): 300 ACK events.
    let au = clip_frames()[0].clone();
    for i in 0..300u64 {
        let mut f = au.clone();
        f.pts = Duration::from_millis(i * 40);
        producer.put_frame(f).unwrap();
    }
    producer.finish(Duration::from_secs(30)).unwrap();
    match events.try_recv() {
        Some(ProducerEvent::EventsLost { missed }) => assert!(missed > 0),
        other => panic!("{other:?}"),
    }
    let rest: Vec<ProducerEvent> = std::iter::from_fn(|| events.try_recv()).collect();
    assert!(rest.len() <= kvs_core::producer::EVENT_BACKLOG);
    assert!(rest
        .iter()
        .any(|e| matches!(e, ProducerEvent::Acked { .. })));
}
