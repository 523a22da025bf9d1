//! The producer and consumer against the local endpoint's fault knobs. In
//! every case what the consumer reads back equals what was put — frame for
//! frame, byte for byte, in order, no duplicates — except the fragments the
//! producer reported dropped (an outage longer than its buffer).
#![cfg(feature = "local")]

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use kvs_core::auth::Credentials;
use kvs_core::client::{ClientConfig, CreateStream, KvsClient, RetryPolicy, StartSelector};
use kvs_core::codec::annexb::{access_units, VideoCodec};
use kvs_core::codec::{aac, h264};
use kvs_core::consumer::Consumer;
use kvs_core::local::{Faults, LocalConfig, LocalEndpoint};
use kvs_core::mkv::builder::{Payload, TrackConfig};
use kvs_core::producer::{
    Backoff, DropReason, Frame, PressurePolicy, Producer, ProducerBuilder, ProducerEvent,
    RotationReason,
};
use kvs_core::protocol::ServiceErrorCode;

/// One frame as it must come back: track, producer ms, payload.
type Expected = (u64, u64, Bytes);

struct Clip {
    frames: Vec<Frame>,
    expected: Vec<Expected>,
    tracks: Vec<TrackConfig>,
}

const START_MS: u64 = 1_750_000_000_000;

/// The bundled clip as the producer's input: 200 H.264 access units
/// (Annex-B, parameter sets in band) and 346 AAC frames, by time.
fn clip() -> Clip {
    let media = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/media");
    let video = Bytes::from(std::fs::read(media.join("clip.h264")).unwrap());
    let (hdr, audio) =
        aac::split_adts(&Bytes::from(std::fs::read(media.join("clip.aac")).unwrap())).unwrap();
    let mut frames = Vec::new();
    for (i, au) in access_units(VideoCodec::H264, &video)
        .into_iter()
        .enumerate()
    {
        let key = VideoCodec::H264.is_key_unit(&au);
        frames.push(Frame {
            track: 1,
            pts: Duration::from_millis(i as u64 * 40),
            dts: None,
            key,
            payload: Payload::AnnexB(au),
        });
    }
    for (i, a) in audio.into_iter().enumerate() {
        frames.push(Frame {
            track: 2,
            pts: Duration::from_micros(i as u64 * 1024 * 1_000_000 / u64::from(hdr.sample_rate)),
            dts: None,
            key: true,
            payload: Payload::Raw(a),
        });
    }
    frames.sort_by_key(|f| (f.pts, f.track));
    let expected = frames
        .iter()
        .map(|f| {
            let data = f.payload.written().unwrap();
            (f.track, START_MS + f.pts.as_millis() as u64, data)
        })
        .collect();
    let mut v = TrackConfig::video(1, h264::CODEC_ID, Bytes::new(), 640, 360);
    v.codec_private = None;
    let a = TrackConfig::aac(2, hdr.sample_rate, hdr.channels).unwrap();
    Clip {
        frames,
        expected,
        tracks: vec![v, a],
    }
}

fn client(url: &str, attempts: u32) -> Arc<KvsClient> {
    Arc::new(
        KvsClient::new(
            ClientConfig::new("us-east-1", Credentials::new("a", "b", None, None, "t"))
                .endpoint(url)
                .retry(RetryPolicy {
                    max_attempts: attempts,
                    base: Duration::from_millis(5),
                    cap: Duration::from_millis(50),
                }),
        )
        .unwrap(),
    )
}

/// A producer of the clip's tracks to "cam" (created if missing), with
/// pts 0 at `START_MS`.
fn builder(c: &Arc<KvsClient>, clip: &Clip) -> ProducerBuilder {
    let mut b = Producer::builder(c.clone(), "cam")
        .create_if_missing(CreateStream {
            data_retention_in_hours: 1,
            ..CreateStream::default()
        })
        .start_time(UNIX_EPOCH + Duration::from_millis(START_MS));
    for t in &clip.tracks {
        b = b.track(t.clone());
    }
    b
}

async fn producer(c: &Arc<KvsClient>, clip: &Clip) -> Producer {
    builder(c, clip)
        .reconnect(Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(100),
        })
        .ack_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap()
}

/// Every event of a producer from now on, read as they come (so none is
/// lost to the bounded backlog).
struct Recorder {
    events: Arc<std::sync::Mutex<Vec<ProducerEvent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    fn new(p: &Producer) -> Self {
        let mut rx = p.subscribe();
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Some(ProducerEvent::EventsLost { missed }) => {
                        panic!("the recorder fell {missed} events behind")
                    }
                    Some(e) => sink.lock().unwrap().push(e),
                    None => return,
                }
            }
        });
        Self { events, task }
    }

    /// The events so far (after letting the reader catch up).
    async fn take(self) -> Vec<ProducerEvent> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.task.abort();
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

/// Puts the clip at twice real time (~4 s, a fragment a second), finishes,
/// and returns the events.
async fn put_paced(p: &Producer, clip: &Clip) -> Vec<ProducerEvent> {
    let events = Recorder::new(p);
    let t0 = tokio::time::Instant::now();
    for f in &clip.frames {
        tokio::time::sleep_until(t0 + f.pts / 2).await;
        p.put_frame(f.clone()).await.unwrap();
    }
    p.finish(Duration::from_secs(20)).await.unwrap();
    events.take().await
}

/// The frames of "cam" from the start, as they come (quick resumes).
fn frames_from_start(c: &Arc<KvsClient>) -> kvs_core::consumer::FrameStream {
    Consumer::builder(c.clone(), "cam")
        .backoff(Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(100),
        })
        .start(StartSelector::Earliest)
        .frames()
}

/// Frames of `frames` until the stream holds `n` in all (or `within`
/// passes; the count then tells).
async fn take(
    frames: &mut kvs_core::consumer::FrameStream,
    out: &mut Vec<Expected>,
    n: usize,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < n {
        let next = tokio::time::timeout_at(deadline, frames.next()).await;
        let Ok(Some(f)) = next else { break };
        let (_, fr) = f.unwrap();
        out.push((fr.track, (fr.timestamp_ns / 1_000_000) as u64, fr.payload));
    }
}

/// Nothing more comes (no duplicate after the last frame either).
async fn assert_no_more(frames: &mut kvs_core::consumer::FrameStream) {
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(300), frames.next()).await {
        panic!(
            "an extra frame: {:?}",
            extra.map(|(_, f)| (f.track, f.timestamp_ns))
        );
    }
}

/// Reads frames from the start until `n` have come (or 20 s pass).
async fn read_back(c: &Arc<KvsClient>, n: usize) -> Vec<Expected> {
    let mut frames = frames_from_start(c);
    let mut out = Vec::new();
    take(&mut frames, &mut out, n, Duration::from_secs(20)).await;
    assert_no_more(&mut frames).await;
    out
}

fn assert_same(got: &[Expected], want: &[Expected], case: &str) {
    assert_eq!(got.len(), want.len(), "{case}: frame count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g == w, "{case}: frame {i} differs: got track {} at {} ({} bytes), want track {} at {} ({} bytes)", g.0, g.1, g.2.len(), w.0, w.1, w.2.len());
    }
}

/// Puts every frame, finishes, and returns the events seen.
async fn put_all(p: &Producer, clip: &Clip) -> Vec<ProducerEvent> {
    let events = Recorder::new(p);
    for f in &clip.frames {
        p.put_frame(f.clone()).await.unwrap();
    }
    p.finish(Duration::from_secs(20)).await.unwrap();
    events.take().await
}

async fn endpoint(faults: Faults) -> LocalEndpoint {
    LocalEndpoint::start(LocalConfig {
        faults,
        ..LocalConfig::default()
    })
    .await
    .unwrap()
}

/// Frames compared in track-interleaved order as stored: per track order.
fn by_track(v: &[Expected]) -> Vec<Expected> {
    let mut v = v.to_vec();
    v.sort_by_key(|e| (e.0, e.1));
    v
}

/// Streams the clip through an endpoint with these faults, reads it back and
/// checks it frame for frame; returns the endpoint, client and events.
async fn round_trip(
    faults: Faults,
    attempts: u32,
    clip: &Clip,
    case: &str,
) -> (LocalEndpoint, Arc<KvsClient>, Vec<ProducerEvent>) {
    let ep = endpoint(faults).await;
    let c = client(ep.url(), attempts);
    let p = producer(&c, clip).await;
    let events = put_all(&p, clip).await;
    let got = read_back(&c, clip.expected.len()).await;
    assert_same(&by_track(&got), &by_track(&clip.expected), case);
    (ep, c, events)
}

#[tokio::test]
async fn everything_put_is_read_back() {
    let clip = clip();
    let (_ep, _, events) = round_trip(Faults::default(), 4, &clip, "no faults").await;
    let acked = events
        .iter()
        .filter(|e| matches!(e, ProducerEvent::Acked { .. }))
        .count();
    assert_eq!(acked, 4, "{events:?}");
}

#[tokio::test]
async fn fifty_seeded_connection_drops_lose_and_double_nothing() {
    let clip = clip();
    let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15);
    let mut rand = move || rng.u64(..);
    for case in 0..50u64 {
        // Cuts mid-header (first cases), then anywhere in the ~650 KB upload;
        // up to three connections in a row cut.
        let schedule: Vec<u64> = match case {
            0 => vec![0],
            1 => vec![30],
            2 => vec![120, 40],
            3 => vec![300, 300, 300],
            _ => (0..1 + rand() % 3).map(|_| rand() % 700_000).collect(),
        };
        let faults = Faults {
            drop_schedule: schedule.clone(),
            ..Faults::default()
        };
        let name = format!("case {case}, cuts {schedule:?}");
        let (_ep, _, events) = round_trip(faults, 4, &clip, &name).await;
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, ProducerEvent::FragmentDropped { .. })),
            "{name}: {events:?}"
        );
    }
}

#[tokio::test]
async fn retriable_error_acks_are_resent() {
    let clip = clip();
    for code in [4000, 5000, 5001] {
        let faults = Faults {
            error_ack: Some((ServiceErrorCode::from_id(code), 2)),
            ..Faults::default()
        };
        let (_ep, _, events) = round_trip(faults, 4, &clip, &format!("ERROR {code}")).await;
        assert!(
            events.iter().any(|e| matches!(e, ProducerEvent::ServiceError { code: c, retriable: true, .. } if c.id() == code)),
            "{code}: {events:?}"
        );
    }
}

#[tokio::test]
async fn missing_and_delayed_acks() {
    let clip = clip();
    // The first connection never acknowledges: the producer gives up on it
    // after the ACK timeout and sends everything again. The service now holds
    // that connection's fragments twice; the consumer delivers each once.
    let faults = Faults {
        silent_connections: 1,
        ack_delay: Duration::from_millis(100),
        ..Faults::default()
    };
    let (_ep, c, events) = round_trip(faults, 4, &clip, "silent then slow ACKs").await;
    assert!(
        events.iter().any(
            |e| matches!(e, ProducerEvent::Reconnecting { error, .. } if error.contains("ACK timeout"))
        ),
        "{events:?}"
    );
    assert!(c.list_fragments("cam", None).await.unwrap().len() > 4);
}

#[tokio::test]
async fn throttled_control_plane_calls() {
    let clip = clip();
    let faults = Faults {
        throttle: 0.5,
        ..Faults::default()
    };
    round_trip(faults, 12, &clip, "throttled").await;
}

/// An endpoint keeping its streams in a fresh data directory: the
/// directory, the settings (to restart it) and the endpoint.
async fn persistent(name: &str) -> (std::path::PathBuf, LocalConfig, LocalEndpoint) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = LocalConfig {
        data_dir: Some(dir.clone()),
        ..LocalConfig::default()
    };
    let ep = LocalEndpoint::start(cfg.clone()).await.unwrap();
    (dir, cfg, ep)
}

#[tokio::test]
async fn an_endpoint_restart_with_a_data_dir_loses_nothing() {
    let clip = clip();
    let (dir, cfg, ep) = persistent("restart").await;
    let port = ep.addr().port();
    let c = client(ep.url(), 4);
    let p = producer(&c, &clip).await;
    let mut events = p.subscribe();
    let half = clip.frames.len() / 2;
    for f in &clip.frames[..half] {
        p.put_frame(f.clone()).await.unwrap();
    }
    // Wait for some ACKs, then restart the endpoint under the producer.
    loop {
        if let Some(ProducerEvent::Acked { .. }) = events.recv().await {
            break;
        }
    }
    ep.shutdown().await;
    for f in &clip.frames[half..half + 50] {
        p.put_frame(f.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ep = LocalEndpoint::start(LocalConfig { port, ..cfg })
        .await
        .unwrap();
    for f in &clip.frames[half + 50..] {
        p.put_frame(f.clone()).await.unwrap();
    }
    p.finish(Duration::from_secs(20)).await.unwrap();
    let got = read_back(&c, clip.expected.len()).await;
    assert_same(&by_track(&got), &by_track(&clip.expected), "restart");
    ep.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn rotation_twice_a_second_keeps_every_frame() {
    let clip = clip();
    // The endpoint ends connections at 1.2 s (4003); the producer rotates
    // before that, at 0.5 s, and never meets the 4003.
    let ep = LocalEndpoint::start(LocalConfig {
        max_connection_duration: Duration::from_millis(1200),
        ..LocalConfig::default()
    })
    .await
    .unwrap();
    let c = client(ep.url(), 4);
    let p = builder(&c, &clip)
        .rotation_age(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let events = put_paced(&p, &clip).await;
    let mut rotations = 0;
    for e in events {
        match e {
            ProducerEvent::Rotating {
                reason: RotationReason::Age,
            } => rotations += 1,
            ProducerEvent::ServiceError { code, .. } => panic!("service error {code:?}"),
            _ => {}
        }
    }
    assert!(rotations >= 2, "{rotations} rotations");
    let got = read_back(&c, clip.expected.len()).await;
    assert_same(&by_track(&got), &by_track(&clip.expected), "rotation");
}

#[tokio::test]
async fn an_outage_longer_than_the_buffer_drops_the_oldest_and_recovers() {
    let clip = clip();
    let (dir, cfg, ep) = persistent("outage").await;
    let port = ep.addr().port();
    let c = client(ep.url(), 2);
    // About two fragments of the clip (each ~150 KB).
    const CAP: usize = 350_000;
    let p = builder(&c, &clip)
        .buffer(CAP, Duration::from_secs(60))
        .pressure(PressurePolicy::DropOldest)
        .reconnect(Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
        })
        .build()
        .await
        .unwrap();
    let mut events = p.subscribe();
    let recorder = Recorder::new(&p);
    // The first fragment (0–2 s) goes through: it closes at the key frame
    // at 2 s, once the audio has passed it.
    let first = clip
        .frames
        .iter()
        .position(|f| f.pts >= Duration::from_millis(2100))
        .unwrap();
    for f in &clip.frames[..first] {
        p.put_frame(f.clone()).await.unwrap();
    }
    while !matches!(events.recv().await, Some(ProducerEvent::Acked { .. })) {}
    ep.shutdown().await;
    // The endpoint is gone while the remaining 6 s (~480 KB) are put.
    let outage_end = clip.frames.len();
    let mut peak = 0;
    for f in &clip.frames[first..outage_end] {
        p.put_frame(f.clone()).await.unwrap();
        peak = peak.max(p.buffered_bytes());
    }
    assert!(peak <= CAP, "buffer peaked at {peak} bytes");
    let ep = LocalEndpoint::start(LocalConfig { port, ..cfg })
        .await
        .unwrap();
    for f in &clip.frames[outage_end..] {
        p.put_frame(f.clone()).await.unwrap();
    }
    p.finish(Duration::from_secs(20)).await.unwrap();
    let mut dropped = Vec::new();
    for e in recorder.take().await {
        if let ProducerEvent::FragmentDropped {
            producer_timestamp,
            frames,
            reason,
        } = e
        {
            assert_eq!(reason, DropReason::BufferFull);
            dropped.push((crate::support::epoch_ms(producer_timestamp), frames));
        }
    }
    assert!(!dropped.is_empty(), "the outage overflowed the buffer");
    // Every frame but those of the dropped fragments (each fragment spans
    // 2 s from its timecode), and each dropped fragment reported once.
    let lost = |ms: u64| dropped.iter().any(|(tc, _)| ms >= *tc && ms < tc + 2000);
    let want: Vec<Expected> = clip
        .expected
        .iter()
        .filter(|e| !lost(e.1))
        .cloned()
        .collect();
    let lost_frames: usize = dropped.iter().map(|d| d.1).sum();
    assert_eq!(want.len() + lost_frames, clip.expected.len());
    let got = read_back(&c, want.len()).await;
    assert_same(&by_track(&got), &by_track(&want), "outage");
    ep.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_consumer_resumes_after_cuts_and_reads_time_ranges() {
    let clip = clip();
    let (dir, cfg, ep) = persistent("consumer").await;
    let c = client(ep.url(), 4);
    let p = producer(&c, &clip).await;
    put_all(&p, &clip).await;
    ep.shutdown().await;
    // Every GetMedia connection is now cut after 250 KB (about a fragment
    // and a half): the consumer resumes from its last whole fragment.
    let ep = LocalEndpoint::start(LocalConfig {
        faults: Faults {
            drop_after_bytes: Some(250_000),
            ..Faults::default()
        },
        ..cfg
    })
    .await
    .unwrap();
    let c = client(ep.url(), 4);
    let got = read_back(&c, clip.expected.len()).await;
    assert_same(&by_track(&got), &by_track(&clip.expected), "GetMedia cuts");
    // A time range, 2 s to 6 s of producer time: the two middle fragments
    // (GetMediaForFragmentList, cut at 250 KB too: asked for again from the
    // fragment it broke in).
    let range = || {
        Consumer::builder(c.clone(), "cam")
            .backoff(Backoff {
                base: Duration::from_millis(5),
                cap: Duration::from_millis(100),
            })
            .range(kvs_core::client::FragmentSelector::Producer {
                start: crate::support::at_ms(START_MS + 2000),
                end: crate::support::at_ms(START_MS + 5999),
            })
    };
    let mut whole = range();
    let mut frames = Vec::new();
    while let Some(f) = whole.next().await {
        for fr in f.unwrap().frames {
            frames.push((fr.track, (fr.timestamp_ns / 1_000_000) as u64, fr.payload));
        }
    }
    // Frame by frame: each once, though the fragment cut comes again.
    let mut one_by_one = range().frames();
    let mut by_frame = Vec::new();
    while let Some(f) = one_by_one.next().await {
        let (_, fr) = f.unwrap();
        by_frame.push((fr.track, (fr.timestamp_ns / 1_000_000) as u64, fr.payload));
    }
    assert_same(
        &by_track(&by_frame),
        &by_track(&frames),
        "time range, frame by frame",
    );
    let want: Vec<Expected> = clip
        .expected
        .iter()
        .filter(|e| {
            // Fragments start at the video key frames (2 s and 4 s) and hold
            // the audio up to the next one.
            e.1 >= START_MS + 2000 && e.1 < START_MS + 6000
        })
        .cloned()
        .collect();
    assert_same(&by_track(&frames), &by_track(&want), "time range");
    ep.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Credentials that expire 61.5 s after each fetch (counted).
#[derive(Debug)]
struct Expiring(Arc<std::sync::atomic::AtomicUsize>);

impl aws_credential_types::provider::ProvideCredentials for Expiring {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
            "AKIDEXPIRING",
            "expiring/secret",
            Some(format!("token-{n}")),
            Some(std::time::SystemTime::now() + Duration::from_millis(61_500)),
            "test",
        )))
    }
}

#[tokio::test]
async fn connections_rotate_before_their_credentials_expire() {
    let clip = clip();
    // The endpoint checks every signature against these keys.
    let ep = LocalEndpoint::start(LocalConfig {
        credentials: Some(("AKIDEXPIRING".into(), "expiring/secret".into())),
        ..LocalConfig::default()
    })
    .await
    .unwrap();
    let fetched = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = Arc::new(
        KvsClient::new(
            ClientConfig::new("us-east-1", Expiring(fetched.clone())).endpoint(ep.url()),
        )
        .unwrap(),
    );
    // Each connection's credentials have 1.5 s left before the one-minute
    // margin; a fragment comes each second.
    let p = builder(&c, &clip).build().await.unwrap();
    let events = put_paced(&p, &clip).await;
    let mut rotations = 0;
    let mut connections = 0;
    for e in events {
        match e {
            ProducerEvent::Rotating {
                reason: RotationReason::CredentialsExpiring,
            } => rotations += 1,
            ProducerEvent::Connected { .. } => connections += 1,
            ProducerEvent::Reconnecting { error, .. } => panic!("a connection failed: {error}"),
            _ => {}
        }
    }
    assert!(rotations >= 1, "{rotations} rotations");
    // Each rotation opens a new connection — but the last one can come due
    // while the final fragment is already going out on the old connection
    // (frames are written as they come), and the stream ends there.
    assert!(
        connections == rotations + 1 || connections == rotations,
        "{connections} connections for {rotations} rotations"
    );
    assert!(fetched.load(std::sync::atomic::Ordering::SeqCst) >= 2 * connections);
    let got = read_back(&c, clip.expected.len()).await;
    assert_same(
        &by_track(&got),
        &by_track(&clip.expected),
        "expiring credentials",
    );
}

#[tokio::test]
async fn frames_go_in_through_the_sink_too() {
    use futures_util::SinkExt;
    let clip = clip();
    let ep = endpoint(Faults::default()).await;
    let c = client(ep.url(), 4);
    let p = producer(&c, &clip).await;
    let mut sink = p.sink();
    for f in &clip.frames {
        sink.feed(f.clone()).await.unwrap();
    }
    // Closing the sink finishes the producer: everything acknowledged.
    sink.close().await.unwrap();
    assert_eq!(p.buffered_bytes(), 0);
    let got = read_back(&c, clip.expected.len()).await;
    assert_same(&by_track(&got), &by_track(&clip.expected), "sink");
}

#[tokio::test]
async fn fragment_metadata_tags_reach_the_reader() {
    let clip = clip();
    let ep = endpoint(Faults::default()).await;
    let c = client(ep.url(), 4);
    let p = producer(&c, &clip).await;
    // The service's limits are checked when the tag is given.
    assert!(p.tag_next_fragment("AWS_MINE", "x").is_err());
    p.tag_next_fragment("camera", "front-door").unwrap();
    let second = clip
        .frames
        .iter()
        .position(|f| f.pts >= Duration::from_millis(2100))
        .unwrap();
    for f in &clip.frames[..second] {
        p.put_frame(f.clone()).await.unwrap();
    }
    // The first fragment has closed; this one goes with the second.
    p.tag_next_fragment("event", "person").unwrap();
    for f in &clip.frames[second..] {
        p.put_frame(f.clone()).await.unwrap();
    }
    p.finish(Duration::from_secs(20)).await.unwrap();
    let mut fragments = Consumer::builder(c.clone(), "cam").start(StartSelector::Earliest);
    let mut tags = Vec::new();
    for _ in 0..4 {
        tags.push(fragments.next().await.unwrap().unwrap().tags);
    }
    let kv = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    assert_eq!(
        tags,
        [
            kv("camera", "front-door"),
            kv("event", "person"),
            vec![],
            vec![]
        ]
    );
}

#[tokio::test]
async fn a_producer_dropped_without_finish_still_delivers_what_it_buffered() {
    let clip = clip();
    let ep = endpoint(Faults::default()).await;
    let c = client(ep.url(), 4);
    let p = producer(&c, &clip).await;
    for f in &clip.frames {
        p.put_frame(f.clone()).await.unwrap();
    }
    drop(p);
    let got = read_back(&c, clip.expected.len()).await;
    assert_same(
        &by_track(&got),
        &by_track(&clip.expected),
        "dropped producer",
    );
}

#[tokio::test]
async fn h265_with_parameter_sets_in_band_and_aac() {
    // The C producer's own sample frames: H.265 Annex-B (VPS, SPS, PPS in
    // every key frame, every 45) at 25 fps, and its 48 kHz AAC frames.
    let vectors = crate::support::vectors().join("kvs-producer-c");
    let read = |dir: &str, ext: &str| -> Vec<Bytes> {
        let mut files: Vec<_> = std::fs::read_dir(vectors.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| Bytes::from(std::fs::read(p).unwrap()))
            .collect()
    };
    let video = read("h265SampleFrames", "h265");
    let audio = read("aacSampleFrames", "aac");
    assert_eq!(video.len(), 403);
    // The AAC set is shorter (582 frames, 12.4 s): video up to its end, so
    // every fragment has both tracks.
    let audio_ms = |i: usize| Duration::from_micros(i as u64 * 1024 * 1_000_000 / 48_000);
    let end = audio_ms(audio.len());
    let mut frames = Vec::new();
    for (i, v) in video
        .iter()
        .enumerate()
        .take_while(|(i, _)| Duration::from_millis(*i as u64 * 40) < end)
    {
        frames.push(Frame {
            track: 1,
            pts: Duration::from_millis(i as u64 * 40),
            dts: None,
            key: i % 45 == 0,
            payload: Payload::AnnexB(v.clone()),
        });
    }
    for (i, a) in audio.iter().enumerate() {
        frames.push(Frame {
            track: 2,
            pts: audio_ms(i),
            dts: None,
            key: true,
            payload: Payload::Raw(a.clone()),
        });
    }
    frames.sort_by_key(|f| (f.pts, f.track));
    let expected: Vec<Expected> = frames
        .iter()
        .map(|f| {
            let data = f.payload.written().unwrap();
            (f.track, START_MS + f.pts.as_millis() as u64, data)
        })
        .collect();
    let mut v = TrackConfig::video(1, kvs_core::codec::h265::CODEC_ID, Bytes::new(), 640, 360);
    v.codec_private = None;
    let clip = Clip {
        frames,
        expected,
        tracks: vec![v, TrackConfig::aac(2, 48_000, 2).unwrap()],
    };
    let (_ep, c, events) = round_trip(Faults::default(), 4, &clip, "H.265 + AAC").await;
    let acked = events
        .iter()
        .filter(|e| matches!(e, ProducerEvent::Acked { .. }))
        .count();
    assert_eq!(acked, 7, "a fragment per key frame (every 1.8 s)");
    // The CodecPrivate came from the in-band VPS/SPS/PPS: an hvcC.
    let mut fragments = Consumer::builder(c.clone(), "cam").start(StartSelector::Earliest);
    let f = fragments.next().await.unwrap().unwrap();
    let hvcc = f.tracks[0].codec_private.clone().unwrap();
    assert_eq!(hvcc[0], 1, "configurationVersion");
    assert_eq!(hvcc[22], 3, "VPS, SPS and PPS arrays");
}

/// Frames reach a live reader as they are put, not when their fragment
/// closes: the producer writes each block at once, the endpoint streams it
/// to GetMedia readers as it is ingested, the consumer yields it as it is
/// parsed — with the fragment's number and timestamps from its leading tags.
#[tokio::test]
async fn live_frames_arrive_before_their_fragment_closes() {
    let clip = clip();
    let ep = endpoint(Faults::default()).await;
    let c = client(ep.url(), 4);
    let p = producer(&c, &clip).await;
    let mut frames = frames_from_start(&c);
    // The first second (video and audio) of the first 2 s fragment.
    let split = clip
        .frames
        .iter()
        .position(|f| f.pts >= Duration::from_secs(1))
        .unwrap();
    for f in &clip.frames[..split] {
        p.put_frame(f.clone()).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < split {
        let (head, fr) = tokio::time::timeout(Duration::from_secs(10), frames.next())
            .await
            .expect("the open fragment's frames arrive")
            .unwrap()
            .unwrap();
        assert_eq!(head.producer_timestamp_ms, Some(START_MS));
        assert!(head.fragment_number.is_some());
        got.push((fr.track, (fr.timestamp_ns / 1_000_000) as u64, fr.payload));
    }
    // Its fragment is still open: nothing is stored yet.
    let stored = c.list_fragments("cam", None).await.unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    assert_same(
        &by_track(&got),
        &by_track(&clip.expected[..split]),
        "open fragment",
    );
    // The rest, each frame once.
    for f in &clip.frames[split..] {
        p.put_frame(f.clone()).await.unwrap();
    }
    p.finish(Duration::from_secs(20)).await.unwrap();
    take(
        &mut frames,
        &mut got,
        clip.expected.len(),
        Duration::from_secs(10),
    )
    .await;
    assert_same(&by_track(&got), &by_track(&clip.expected), "live");
    assert_no_more(&mut frames).await;
}

/// A live reader while every PutMedia and GetMedia connection is cut at a
/// random byte: fragments the producer abandons inside their Cluster (and
/// resends whole), GetMedia sessions cut inside a fragment (resumed after
/// the last whole one) — each frame is yielded once, none is lost.
#[tokio::test]
async fn live_reading_across_random_cuts_yields_every_frame_once() {
    let clip = clip();
    let mut rng = fastrand::Rng::with_seed(0x5EED_F4A3);
    for case in 0..8 {
        // Past a fragment (~160 KB with its header), so each connection
        // gets one through; anywhere in the ~650 KB upload.
        let limit = 200_000 + rng.u64(..400_000);
        let ep = endpoint(Faults {
            drop_after_bytes: Some(limit),
            ..Faults::default()
        })
        .await;
        let c = client(ep.url(), 4);
        let p = producer(&c, &clip).await;
        let reader = {
            let c = c.clone();
            let n = clip.expected.len();
            tokio::spawn(async move { read_back(&c, n).await })
        };
        put_all(&p, &clip).await;
        let got = reader.await.unwrap();
        assert_same(
            &by_track(&got),
            &by_track(&clip.expected),
            &format!("case {case}, cut at {limit}"),
        );
    }
}

/// The service stops a GetMedia response with an error chunk: a KMS key
/// that cannot be used (4500) stops the consumer with a typed error naming
/// the fragment; an internal error (5000) is resumed after the last
/// fragment delivered, so every frame still comes, once.
#[tokio::test]
async fn error_chunks_stop_or_resume_the_consumer_by_their_id() {
    let clip = clip();
    // Fatal: after two fragments.
    let ep = endpoint(Faults {
        get_media_error: Some((2, 4500)),
        ..Faults::default()
    })
    .await;
    let c = client(ep.url(), 4);
    put_all(&producer(&c, &clip).await, &clip).await;
    let mut listed = c.list_fragments("cam", None).await.unwrap();
    listed.sort_by(|a, b| a.producer_timestamp.total_cmp(&b.producer_timestamp));
    let mut fragments = Consumer::builder(c.clone(), "cam").start(StartSelector::Earliest);
    for want in &listed[..2] {
        let f = fragments.next().await.unwrap().unwrap();
        assert_eq!(f.fragment_number.as_ref(), Some(&want.fragment_number));
    }
    let e: kvs_core::Error = fragments.next().await.unwrap().unwrap_err().into();
    assert_eq!(e.kind(), kvs_core::ErrorKind::Service);
    assert!(!e.is_retryable());
    assert_eq!(
        e.fragment_number(),
        Some(listed[2].fragment_number.as_str())
    );
    assert!(e.to_string().contains("4500"), "{e}");
    assert!(
        e.to_string()
            .contains("Access denied for the stream's KMS key"),
        "{e}"
    );
    assert!(fragments.next().await.is_none(), "the consumer stopped");
    // Retryable: every session stops after one fragment, and the consumer
    // resumes after it each time.
    let ep = endpoint(Faults {
        get_media_error: Some((1, 5000)),
        ..Faults::default()
    })
    .await;
    let c = client(ep.url(), 4);
    put_all(&producer(&c, &clip).await, &clip).await;
    let got = read_back(&c, clip.expected.len()).await;
    assert_same(&by_track(&got), &by_track(&clip.expected), "5000 resumed");
}

/// A whole input at once (`put_frames`, as a file upload does): every frame
/// put, counted, and read back.
#[tokio::test]
async fn put_frames_puts_a_whole_input() {
    let clip = clip();
    let ep = endpoint(Faults::default()).await;
    let c = client(ep.url(), 4);
    let p = producer(&c, &clip).await;
    assert_eq!(
        p.put_frames(clip.frames.clone(), false).await.unwrap(),
        clip.frames.len()
    );
    p.finish(Duration::from_secs(20)).await.unwrap();
    let got = read_back(&c, clip.expected.len()).await;
    assert_same(&by_track(&got), &by_track(&clip.expected), "put_frames");
}

/// `frames()` asked for while a fragment is already arriving: the frames
/// of that fragment come with it whole once it ends (none twice, none
/// lost), and the next fragments frame by frame.
#[tokio::test]
async fn frames_asked_for_mid_fragment_lose_and_double_nothing() {
    let clip = clip();
    let ep = endpoint(Faults::default()).await;
    let c = client(ep.url(), 4);
    let p = producer(&c, &clip).await;
    let stream = Consumer::builder(c.clone(), "cam")
        .backoff(Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(100),
        })
        .start(StartSelector::Earliest);
    let split = clip
        .frames
        .iter()
        .position(|f| f.pts >= Duration::from_secs(1))
        .unwrap();
    for f in &clip.frames[..split] {
        p.put_frame(f.clone()).await.unwrap();
    }
    // The first fragment's frames reach the consumer before frames() is
    // asked for.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut frames = stream.frames();
    for f in &clip.frames[split..] {
        p.put_frame(f.clone()).await.unwrap();
    }
    p.finish(Duration::from_secs(20)).await.unwrap();
    let mut got = Vec::new();
    take(
        &mut frames,
        &mut got,
        clip.expected.len(),
        Duration::from_secs(10),
    )
    .await;
    assert_same(&by_track(&got), &by_track(&clip.expected), "late frames()");
    assert_no_more(&mut frames).await;
}

/// Files put one after another on one producer (`put_file`) play one after
/// another: the second copy of the clip comes whole, every frame shifted by
/// one constant past the first copy's last; a file with a track the
/// producer lacks is refused before any frame is put.
#[tokio::test]
async fn put_file_continues_the_producers_timeline() {
    use kvs_core::mkv::mux::FrameInput;
    let clip = clip();
    let ep = endpoint(Faults::default()).await;
    let c = client(ep.url(), 4);
    let p = producer(&c, &clip).await;
    let input = || FrameInput {
        tracks: clip.tracks.clone(),
        frames: clip.frames.clone(),
        cut: None,
    };
    let n = clip.frames.len();
    assert_eq!(p.put_file(input(), false).await.unwrap(), n);
    assert_eq!(p.put_file(input(), false).await.unwrap(), n);
    let mut other = input();
    other.tracks[0].codec_id = kvs_core::codec::h265::CODEC_ID.into();
    let e = p.put_file(other, false).await.unwrap_err();
    assert!(
        matches!(&e, kvs_core::producer::ProducerError::Config(m) if m.contains("track 1 (V_MPEGH/ISO/HEVC)")),
        "{e}"
    );
    p.finish(Duration::from_secs(20)).await.unwrap();
    let got = by_track(&read_back(&c, 2 * n).await);
    let want = by_track(&clip.expected);
    // Per track: the first copy, then the second.
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for track in [1, 2] {
        let g: Vec<&Expected> = got.iter().filter(|e| e.0 == track).collect();
        let half = g.len() / 2;
        first.extend(g[..half].iter().map(|e| (*e).clone()));
        second.extend(g[half..].iter().map(|e| (*e).clone()));
    }
    assert_same(&first, &want, "first file");
    let last = want.iter().map(|e| e.1).max().unwrap();
    let shift = second[0].1 - want[0].1;
    assert!(second[0].1 > last, "the second file starts after the first");
    for (g, w) in second.iter().zip(&want) {
        assert_eq!((g.0, &g.2), (w.0, &w.2), "second file: same frames");
        assert!(
            (g.1 - w.1).abs_diff(shift) <= 1,
            "second file: one shift ({shift} ms), frame at {} for {}",
            g.1,
            w.1
        );
    }
}

/// As a phone streams: the producer starts without waiting on the network
/// (the stream is created in the background), the encoder's frames come
/// as AVCC without parameter sets (given once apart, as MediaCodec's
/// codec-config buffer or VideoToolbox's format description), the network
/// changes mid-stream, the app goes to the background and back — both
/// inside a fragment, whose partial upload must not be stored as the
/// fragment (its connection is cut, not ended). Nothing is lost and every
/// frame reads back byte for byte.
#[tokio::test]
async fn a_phone_producer_starts_at_once_pauses_and_changes_networks() {
    use kvs_core::codec::annexb::{nal_units, to_avcc};
    let clip = clip();
    let ep = endpoint(Faults::default()).await;
    let c = client(ep.url(), 4);
    // The parameter sets, and every video frame without them, as AVCC.
    let mut sets = Vec::new();
    let mut frames = Vec::new();
    let mut want = Vec::new();
    for f in &clip.frames {
        let mut f = f.clone();
        if let Payload::AnnexB(au) = &f.payload {
            let mut slices = Vec::new();
            for nal in nal_units(au) {
                match VideoCodec::H264.nal_type(&nal) {
                    7 | 8 => {
                        if !sets.contains(&nal) {
                            sets.push(nal);
                        }
                    }
                    _ => slices.extend_from_slice(&[&[0, 0, 0, 1][..], &nal[..]].concat()),
                }
            }
            f.payload = Payload::Raw(to_avcc(&slices).unwrap());
        }
        want.push((
            f.track,
            START_MS + f.pts.as_millis() as u64,
            f.payload.written().unwrap(),
        ));
        frames.push(f);
    }
    assert_eq!(sets.len(), 2, "one SPS and one PPS");
    // Started at once: no stream yet.
    let p = builder(&c, &clip)
        .reconnect(Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(100),
        })
        .start()
        .unwrap();
    let events = Recorder::new(&p);
    // Sets that give no CodecPrivate are refused and change nothing.
    assert!(p.set_parameter_sets(1, &[sets[1].clone()]).is_err());
    assert!(p.set_parameter_sets(2, &sets).is_err());
    p.set_parameter_sets(1, &sets).unwrap();
    let n = frames.len();
    for (i, f) in frames.into_iter().enumerate() {
        if i == n / 4 {
            p.network_changed();
        }
        if i == n / 2 {
            p.pause();
        }
        if i == 3 * n / 4 {
            // While paused nothing was acknowledged of what came since.
            p.resume();
        }
        p.put_frame(f).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    p.finish(Duration::from_secs(20)).await.unwrap();
    assert_eq!(p.losses().fragments, 0);
    assert_eq!(p.acked().frames, n);
    let ev = events.take().await;
    let reasons: Vec<&str> = ev
        .iter()
        .filter_map(|e| match e {
            ProducerEvent::Disconnected { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    let got = read_back(&c, n).await;
    assert_same(&by_track(&got), &by_track(&want), "phone");
    assert!(reasons.contains(&"the network changed"), "{reasons:?}");
    assert!(reasons.contains(&"paused"), "{reasons:?}");
}

/// A `finish` that ran out of time stops the producer; asked again, it
/// says so at once (not "done"); tags after it are refused like frames.
#[tokio::test]
async fn finish_again_after_a_timeout_gives_the_same_outcome() {
    let clip = clip();
    let ep = endpoint(Faults {
        ack_delay: Duration::from_secs(3),
        ..Faults::default()
    })
    .await;
    let c = client(ep.url(), 4);
    let p = producer(&c, &clip).await;
    for f in clip.frames.iter().take(200) {
        p.put_frame(f.clone()).await.unwrap();
    }
    let first = p.finish(Duration::from_millis(300)).await.unwrap_err();
    let kvs_core::producer::ProducerError::Timeout { unacked, .. } = first else {
        panic!("{first}");
    };
    assert!(unacked > 0);
    let began = std::time::Instant::now();
    let again = p.finish(Duration::from_secs(30)).await.unwrap_err();
    assert!(began.elapsed() < Duration::from_secs(1), "at once");
    assert!(
        matches!(again, kvs_core::producer::ProducerError::Timeout { unacked: u, timeout } if u == unacked && timeout == Duration::from_millis(300)),
        "{again}"
    );
    assert!(matches!(
        p.tag_next_fragment("k", "v"),
        Err(kvs_core::producer::ProducerError::Finished)
    ));
}

/// A consumer whose GetMedia never answers (nothing listens there) gives
/// up with the error after its first tries rather than waiting forever.
#[tokio::test]
async fn a_consumer_that_never_connects_says_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = client(&format!("http://127.0.0.1:{port}"), 1);
    let mut frames = frames_from_start(&c);
    let got = tokio::time::timeout(Duration::from_secs(10), frames.next())
        .await
        .expect("an answer within the tries");
    let e = got.expect("an item").unwrap_err();
    assert!(e.is_retryable(), "a connection failure: {e}");
}

/// A reader of a stream with long fragments sees frames flow
/// (`last_frame_at`) while no fragment has ended yet: what tells a quiet
/// stream from a long fragment.
#[tokio::test]
async fn frames_flowing_inside_a_long_fragment_are_seen() {
    let clip = clip();
    let ep = endpoint(Faults::default()).await;
    let c = client(ep.url(), 4);
    let p = producer(&c, &clip).await;
    let mut fragments = Consumer::builder(c.clone(), "cam")
        .backoff(Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(100),
        })
        .start(StartSelector::Now);
    assert!(fragments.last_frame_at().is_none());
    // The first fragment's first second (its frames up to 1 s), slowly:
    // the fragment stays open.
    let began = tokio::time::Instant::now();
    for f in clip
        .frames
        .iter()
        .filter(|f| f.pts < Duration::from_secs(1))
    {
        p.put_frame(f.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let no_fragment = tokio::time::timeout(Duration::from_millis(200), fragments.next()).await;
    assert!(no_fragment.is_err(), "no fragment has ended");
    let seen = fragments.last_frame_at().expect("frames were seen");
    assert!(seen > began, "seen after the first put");
    drop(p);
}
