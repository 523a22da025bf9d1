//! The producer state machine with a manual clock, its output checked by the
//! service's ingest rules (`protocol::ingest`, no I/O, no `local` feature)
//! and fed back as ACKs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kvs_core::codec::h264;
use kvs_core::mkv::builder::{Payload, TrackConfig};
use kvs_core::mkv::fragment::FragmentAssembler;
use kvs_core::protocol::ingest::{Ingest, IngestEvent, IngestLimits};
use kvs_core::protocol::producer::{
    AckLevel, DropReason, Frame, FrameError, PressurePolicy, ProducerConfig, ProducerCore,
    ProducerEvent, PutOutcome, RotationReason,
};
use kvs_core::protocol::{Ack, ServiceErrorCode};

use crate::support::epoch_ms;

const START: u64 = 1_700_000_000_000;

fn video_track() -> TrackConfig {
    TrackConfig::video(
        1,
        h264::CODEC_ID,
        Bytes::from_static(&[1, 0x42, 0, 0x1e, 0xff, 0xe0, 0]),
        64,
        64,
    )
}

fn audio_track() -> TrackConfig {
    TrackConfig::aac(2, 48_000, 2).unwrap()
}

fn v(i: u64, key: bool) -> Frame {
    Frame {
        track: 1,
        pts: Duration::from_millis(i * 40),
        dts: None,
        key,
        payload: Payload::Raw(Bytes::from(vec![i as u8; 100 + i as usize % 7])),
    }
}

fn a(i: u64) -> Frame {
    Frame {
        track: 2,
        pts: Duration::from_micros(i * 21_333),
        dts: None,
        key: true,
        payload: Payload::Raw(Bytes::from(vec![0xA0 | (i as u8 & 0xf); 20])),
    }
}

/// A producer of a video and an audio track with the default settings.
fn av_producer() -> ProducerCore {
    ProducerCore::new(ProducerConfig::new(
        vec![video_track(), audio_track()],
        START,
    ))
    .unwrap()
}

/// A fake service: the endpoint's ingest, answering RECEIVED/PERSISTED.
struct Service {
    ingest: Ingest,
    stored: Vec<(u64, Vec<u8>)>,
    bytes: Vec<u8>,
    /// Frames of the fragments it stored: track, ms, payload.
    frames: Vec<(u64, i64, Vec<u8>)>,
    /// Refusals end the session with an ERROR ACK (as the service does)
    /// instead of failing the test.
    lenient: bool,
    /// An ERROR ACK was sent: the session is over.
    ended: bool,
    /// Answer the fragment received after this many others with an ERROR
    /// of this code (not stored; the session ends), as the endpoint's
    /// `error-ack` fault does.
    fail_after: Option<(usize, ServiceErrorCode)>,
}

impl Service {
    fn new() -> Self {
        Self {
            ingest: Ingest::new(IngestLimits::default()),
            stored: Vec::new(),
            bytes: Vec::new(),
            frames: Vec::new(),
            lenient: false,
            ended: false,
            fail_after: None,
        }
    }
    fn lenient() -> Self {
        Self {
            lenient: true,
            ..Self::new()
        }
    }
    /// Feeds a chunk; returns the ACKs it completes.
    fn push(&mut self, chunk: Bytes) -> Vec<Ack> {
        if self.ended {
            return Vec::new();
        }
        self.bytes.extend_from_slice(&chunk);
        let (events, result) = self.ingest.push(chunk);
        assert!(
            self.lenient || result.is_ok(),
            "the service refuses: {result:?}"
        );
        let mut acks = self.acks(events);
        if let Err(e) = result {
            self.ended = true;
            acks.push(Ack::Error {
                fragment_timecode: e.timecode,
                fragment_number: None,
                code: e.code,
                error_code: None,
            });
        }
        acks
    }
    fn acks(&mut self, events: Vec<IngestEvent>) -> Vec<Ack> {
        let mut acks = Vec::new();
        for e in events {
            if self.ended {
                break;
            }
            if let IngestEvent::Received(f) = e {
                if let Some((n, code)) = self.fail_after {
                    if self.stored.len() == n {
                        self.ended = true;
                        acks.push(Ack::Error {
                            fragment_timecode: Some(f.timecode),
                            fragment_number: None,
                            code,
                            error_code: None,
                        });
                        break;
                    }
                }
                // The stored fragment, parsed back as a reader would.
                let mut doc = Vec::new();
                kvs_core::ebml::writer::ebml_header(&mut doc, "matroska", 2);
                doc.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0xFF]);
                doc.extend_from_slice(&f.header);
                doc.extend_from_slice(&f.cluster.concat());
                let mut asm = FragmentAssembler::default();
                asm.push(Bytes::from(doc));
                asm.finish();
                let frag = asm.next_fragment().unwrap().unwrap();
                for fr in frag.frames {
                    self.frames
                        .push((fr.track, fr.timestamp_ns / 1_000_000, fr.payload.to_vec()));
                }
                let n = format!("{}", self.stored.len() + 1);
                self.stored.push((f.timecode, f.cluster.concat()));
                acks.push(Ack::Received {
                    fragment_timecode: f.timecode,
                    fragment_number: n.clone(),
                });
                acks.push(Ack::Persisted {
                    fragment_timecode: f.timecode,
                    fragment_number: n,
                });
            }
        }
        acks
    }
}

/// Writes everything the core has for the connection into the service and
/// feeds the ACKs back.
fn pump(p: &mut ProducerCore, conn: u64, svc: &mut Service, now: Instant) {
    while let Some(chunk) = p.next_chunk(now) {
        for ack in svc.push(chunk) {
            p.on_ack(conn, &ack, now);
        }
    }
}

fn events(p: &mut ProducerCore) -> Vec<ProducerEvent> {
    std::iter::from_fn(|| p.next_event()).collect()
}

/// Frames per track of everything the service stored, parsed back.
fn stored_frames(svc: &Service) -> Vec<(u64, i64, Vec<u8>)> {
    let mut asm = FragmentAssembler::default();
    asm.push(Bytes::from(svc.bytes.clone()));
    asm.finish();
    let mut out = Vec::new();
    while let Ok(Some(f)) = asm.next_fragment() {
        for fr in f.frames {
            out.push((fr.track, fr.timestamp_ns / 1_000_000, fr.payload.to_vec()));
        }
    }
    out
}

#[test]
fn video_fragments_at_key_frames_are_acknowledged() {
    let t0 = Instant::now();
    let mut p = ProducerCore::new(ProducerConfig::new(vec![video_track()], START)).unwrap();
    let mut svc = Service::new();
    let conn = p.connected(t0);
    for i in 0..100 {
        assert_eq!(
            p.put_frame(v(i, i % 25 == 0), t0).unwrap(),
            PutOutcome::Accepted
        );
        pump(&mut p, conn, &mut svc, t0);
    }
    // Three fragments closed at the key frames; the fourth is still open.
    assert_eq!(svc.stored.len(), 3);
    p.flush(t0).unwrap();
    pump(&mut p, conn, &mut svc, t0);
    assert!(p.is_idle());
    let tcs: Vec<u64> = svc.stored.iter().map(|s| s.0).collect();
    assert_eq!(tcs, [START, START + 1000, START + 2000, START + 3000]);
    let acked: Vec<u64> = events(&mut p)
        .into_iter()
        .filter_map(|e| match e {
            ProducerEvent::Acked {
                producer_timestamp,
                frames,
                ..
            } => {
                assert_eq!(frames, 25);
                Some(epoch_ms(producer_timestamp))
            }
            _ => None,
        })
        .collect();
    assert_eq!(acked, tcs);
    let frames = stored_frames(&svc);
    assert_eq!(frames.len(), 100);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(
            f.2,
            match v(i as u64, false).payload {
                Payload::Raw(b) => b.to_vec(),
                _ => unreachable!(),
            }
        );
    }
}

#[test]
fn audio_and_video_are_interleaved_and_late_audio_is_waited_for() {
    let t0 = Instant::now();
    let mut p = av_producer();
    let mut svc = Service::new();
    let conn = p.connected(t0);
    // Audio lags video by ~200 ms: each audio frame is put when video is
    // 200 ms ahead of it.
    let mut ai = 0;
    for i in 0..100u64 {
        p.put_frame(v(i, i % 25 == 0), t0).unwrap();
        while a(ai).pts + Duration::from_millis(200) <= v(i, false).pts {
            p.put_frame(a(ai), t0).unwrap();
            ai += 1;
        }
        pump(&mut p, conn, &mut svc, t0);
    }
    p.flush(t0).unwrap();
    pump(&mut p, conn, &mut svc, t0);
    assert_eq!(svc.stored.len(), 4);
    let frames = stored_frames(&svc);
    let audio: Vec<i64> = frames.iter().filter(|f| f.0 == 2).map(|f| f.1).collect();
    assert_eq!(audio.len(), ai as usize, "every audio frame stored");
    // Each fragment holds the audio of its own time span.
    let mut asm = FragmentAssembler::default();
    asm.push(Bytes::from(svc.bytes.clone()));
    asm.finish();
    while let Ok(Some(f)) = asm.next_fragment() {
        let start = f.frames[0].timestamp_ns;
        assert!(f.frames[0].key && f.frames[0].track == 1);
        assert!(f
            .frames
            .iter()
            .all(|x| x.timestamp_ns >= start && x.timestamp_ns < start + 1_000_000_000));
    }
    // An audio frame later than the lateness allows is refused.
    let late = p.put_frame(a(5), t0).unwrap_err();
    assert!(
        matches!(late, FrameError::TimestampNotIncreasing { track: 2, .. }),
        "{late}"
    );
}

#[test]
fn audio_that_stops_coming_closes_the_fragment_after_the_lateness() {
    let t0 = Instant::now();
    let mut p = av_producer();
    let mut svc = Service::new();
    let conn = p.connected(t0);
    // Audio up to 900 ms, then a gap (every fragment needs a frame of every
    // track, or the service refuses it with 4011).
    for i in 0..26 {
        p.put_frame(v(i, i % 25 == 0), t0).unwrap();
        if i < 23 {
            p.put_frame(a(i * 40 / 21), t0).ok();
        }
    }
    pump(&mut p, conn, &mut svc, t0);
    assert!(svc.stored.is_empty(), "waits for audio to pass 1 s");
    p.tick(t0 + Duration::from_millis(499));
    pump(&mut p, conn, &mut svc, t0);
    assert!(svc.stored.is_empty());
    p.tick(t0 + Duration::from_millis(500));
    pump(&mut p, conn, &mut svc, t0);
    // The service sees the next cluster's start only when it is sent; our
    // end-of-fragment tag lets it acknowledge right away.
    assert_eq!(svc.stored.len(), 1);
    // Audio for the closed fragment is now late.
    let late = p
        .put_frame(
            Frame {
                track: 2,
                pts: Duration::from_millis(900),
                dts: None,
                key: true,
                payload: Payload::Raw(Bytes::from_static(b"aac")),
            },
            t0,
        )
        .unwrap_err();
    assert!(
        matches!(
            late,
            FrameError::TooLate {
                closed_ms: 1000,
                ..
            }
        ),
        "{late}"
    );
}

#[test]
fn timestamp_rules_are_enforced_when_a_frame_is_put() {
    let t0 = Instant::now();
    let mut p = ProducerCore::new(ProducerConfig::new(vec![video_track()], START)).unwrap();
    // Before the first key frame: skipped by default.
    assert_eq!(p.put_frame(v(0, false), t0), Ok(PutOutcome::Skipped));
    p.put_frame(v(0, true), t0).unwrap();
    p.put_frame(v(1, false), t0).unwrap();
    assert!(matches!(
        p.put_frame(v(1, false), t0),
        Err(FrameError::TimestampNotIncreasing {
            track: 1,
            previous_ms: 40,
            got_ms: 40
        })
    ));
    assert_eq!(
        p.put_frame(
            Frame {
                track: 9,
                ..v(2, false)
            },
            t0
        ),
        Err(FrameError::UnknownTrack(9))
    );
    // 20 s without a key frame is more than a fragment may last.
    let mut err = None;
    for i in 2..600 {
        if let Err(e) = p.put_frame(v(i, false), t0) {
            err = Some((i, e));
            break;
        }
    }
    let (i, e) = err.unwrap();
    assert_eq!(i, 501, "the first frame past 20 s");
    assert!(
        matches!(e, FrameError::FragmentTooLong { max_ms: 20_000, .. }),
        "{e}"
    );
}

/// Frames that could never play are refused when put: empty ones, one
/// larger than a fragment may be, and a first H.264 key frame that is not
/// Annex-B with its parameter sets when the track has no CodecPrivate
/// (its fragment would be stored without one).
#[test]
fn frames_that_cannot_play_are_refused() {
    use kvs_core::protocol::producer::MAX_FRAGMENT_BYTES;
    let t0 = Instant::now();
    let mut bare = video_track();
    bare.codec_private = None;
    let mut p = ProducerCore::new(ProducerConfig::new(vec![bare], START)).unwrap();
    let with = |payload: Payload| Frame {
        payload,
        ..v(0, true)
    };
    assert_eq!(
        p.put_frame(with(Payload::Raw(Bytes::new())), t0),
        Err(FrameError::Empty {
            track: 1,
            pts_ms: 0
        })
    );
    let huge = Bytes::from(vec![0u8; MAX_FRAGMENT_BYTES + 1]);
    assert!(matches!(
        p.put_frame(with(Payload::Raw(huge)), t0),
        Err(FrameError::TooLarge { track: 1, .. })
    ));
    let e = p
        .put_frame(
            with(Payload::Raw(Bytes::from_static(&[0x12, 0x34, 0x56]))),
            t0,
        )
        .unwrap_err();
    assert!(
        matches!(e, FrameError::NoCodecPrivate { track: 1, .. }),
        "{e}"
    );
    // Nothing was taken.
    assert_eq!(p.buffered_bytes(), 0);
}

#[test]
fn a_new_connection_resends_what_was_not_acknowledged_with_a_fresh_header() {
    let t0 = Instant::now();
    let mut p = ProducerCore::new(ProducerConfig::new(vec![video_track()], START)).unwrap();
    let mut svc = Service::new();
    let c1 = p.connected(t0);
    for i in 0..75 {
        p.put_frame(v(i, i % 25 == 0), t0).unwrap();
    }
    p.flush(t0).unwrap();
    // The first fragment goes through; the second is cut half way.
    let header = p.next_chunk(t0).unwrap();
    svc.push(header.clone());
    // Up to fragment 1's ACK, then one chunk of fragment 2.
    while svc.stored.is_empty() {
        let chunk = p.next_chunk(t0).unwrap();
        for ack in svc.push(chunk) {
            p.on_ack(c1, &ack, t0);
        }
    }
    svc.push(p.next_chunk(t0).unwrap());
    p.disconnected("cut");
    let ev = events(&mut p);
    assert!(
        ev.iter()
            .any(|e| matches!(e, ProducerEvent::Disconnected { .. })),
        "{ev:?}"
    );
    // A new service session: header first, then fragments 2 and 3 whole.
    let mut svc2 = Service::new();
    let c2 = p.connected(t0);
    let ev = events(&mut p);
    assert!(
        matches!(ev[..], [ProducerEvent::Connected { resending: 1, .. }]),
        "{ev:?}"
    );
    assert_eq!(p.next_chunk(t0).unwrap(), header, "the same header again");
    svc2.push(header);
    pump(&mut p, c2, &mut svc2, t0);
    assert!(p.is_idle());
    let tcs: Vec<u64> = svc2.stored.iter().map(|s| s.0).collect();
    assert_eq!(tcs, [START + 1000, START + 2000]);
    // Together: every frame once.
    let mut all = stored_frames(&svc);
    all.truncate(25);
    all.extend(stored_frames(&svc2));
    assert_eq!(all.len(), 75);
    assert!(all.windows(2).all(|w| w[1].1 > w[0].1));
}

#[test]
fn a_full_buffer_drops_the_oldest_fragment_or_refuses_frames() {
    let t0 = Instant::now();
    let mut cfg = ProducerConfig::new(vec![video_track()], START);
    cfg.max_buffer_bytes = 6_000; // about two fragments of 25 frames
    let mut p = ProducerCore::new(cfg.clone()).unwrap();
    for i in 0..150 {
        p.put_frame(v(i, i % 25 == 0), t0).unwrap();
    }
    let dropped: Vec<u64> = events(&mut p)
        .into_iter()
        .filter_map(|e| match e {
            ProducerEvent::FragmentDropped {
                producer_timestamp,
                reason: DropReason::BufferFull,
                frames,
            } => {
                assert_eq!(frames, 25);
                Some(epoch_ms(producer_timestamp) - START)
            }
            _ => None,
        })
        .collect();
    assert_eq!(dropped, [0, 1000, 2000, 3000]);
    assert!(p.buffered_bytes() <= 6_000);

    cfg.pressure = PressurePolicy::Wait;
    let mut p = ProducerCore::new(cfg).unwrap();
    let mut refused_at = None;
    for i in 0..150 {
        if p.put_frame(v(i, i % 25 == 0), t0).unwrap() == PutOutcome::Full {
            refused_at = Some(i);
            break;
        }
    }
    let i = refused_at.expect("the buffer fills");
    assert!(events(&mut p).is_empty(), "nothing dropped");
    // ACKs free the space and the same frame is taken.
    let mut svc = Service::new();
    let c = p.connected(t0);
    pump(&mut p, c, &mut svc, t0);
    assert_eq!(
        p.put_frame(v(i, i % 25 == 0), t0).unwrap(),
        PutOutcome::Accepted
    );
}

#[test]
fn new_parameter_sets_rotate_the_connection_at_that_fragment() {
    let t0 = Instant::now();
    let mut track = video_track();
    track.codec_private = None;
    let mut p = ProducerCore::new(ProducerConfig::new(vec![track], START)).unwrap();
    let sps_a: &[u8] = &[
        0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0x95, 0xa0, 0x50, 0x7e, 0x40,
    ];
    let sps_b: &[u8] = &[
        0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x28, 0x95, 0xa0, 0x1e, 0x00, 0x89, 0x10,
    ];
    let pps: &[u8] = &[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80];
    let idr = |sps: &[u8], i: u64| Frame {
        track: 1,
        pts: Duration::from_millis(i * 40),
        dts: None,
        key: true,
        payload: Payload::AnnexB(Bytes::from(
            [sps, pps, &[0, 0, 0, 1, 0x65, 0x88, i as u8][..]].concat(),
        )),
    };
    let p_frame = |i: u64| Frame {
        track: 1,
        pts: Duration::from_millis(i * 40),
        dts: None,
        key: false,
        payload: Payload::AnnexB(Bytes::from(vec![0, 0, 0, 1, 0x41, 0x9a, i as u8])),
    };
    // No parameter sets anywhere: refused with a reason.
    assert!(matches!(
        p.put_frame(
            Frame {
                payload: Payload::AnnexB(Bytes::from_static(&[0, 0, 0, 1, 0x65, 1])),
                ..idr(sps_a, 0)
            },
            t0
        ),
        Err(FrameError::NoCodecPrivate { .. })
    ));
    for i in 0..50 {
        let f = match i {
            0 => idr(sps_a, i),
            25 => idr(sps_b, i),
            _ => p_frame(i),
        };
        p.put_frame(f, t0).unwrap();
    }
    p.flush(t0).unwrap();
    let mut svc = Service::new();
    let c1 = p.connected(t0);
    pump(&mut p, c1, &mut svc, t0);
    assert_eq!(svc.stored.len(), 1, "the first fragment only");
    assert!(p.should_end_body());
    assert!(events(&mut p).contains(&ProducerEvent::Rotating {
        reason: RotationReason::NewHeader
    }));
    p.disconnected("rotated");
    let mut svc2 = Service::new();
    let c2 = p.connected(t0);
    pump(&mut p, c2, &mut svc2, t0);
    assert_eq!(svc2.stored.len(), 1);
    assert!(p.is_idle());
    // Each connection's header carries its own CodecPrivate.
    let cp = |svc: &Service| {
        let mut asm = FragmentAssembler::default();
        asm.push(Bytes::from(svc.bytes.clone()));
        asm.finish();
        asm.next_fragment().unwrap().unwrap().tracks[0]
            .codec_private
            .clone()
            .unwrap()
    };
    assert_ne!(cp(&svc), cp(&svc2));
    assert_eq!(cp(&svc)[3], 0x1e);
    assert_eq!(cp(&svc2)[3], 0x28);
}

#[test]
fn old_connections_rotate_at_a_fragment_boundary() {
    let t0 = Instant::now();
    let mut cfg = ProducerConfig::new(vec![video_track()], START);
    cfg.rotation_age = Duration::from_secs(2);
    let mut p = ProducerCore::new(cfg).unwrap();
    let mut svc = Service::new();
    let c1 = p.connected(t0);
    for i in 0..26 {
        p.put_frame(v(i, i % 25 == 0), t0).unwrap();
    }
    pump(&mut p, c1, &mut svc, t0);
    p.tick(t0 + Duration::from_secs(2));
    assert!(p.rotating());
    // The fragment under way (its key frame went out at once) finishes on
    // this connection; the next one goes on a new connection.
    for i in 26..51 {
        p.put_frame(v(i, i % 25 == 0), t0).unwrap();
    }
    pump(&mut p, c1, &mut svc, t0);
    assert!(p.should_end_body(), "ends before the next fragment");
    assert_eq!(svc.stored.len(), 2);
    p.disconnected("rotated");
    let ev = events(&mut p);
    assert!(ev.contains(&ProducerEvent::Rotating {
        reason: RotationReason::Age
    }));
    assert!(
        !ev.iter()
            .any(|e| matches!(e, ProducerEvent::Disconnected { .. })),
        "{ev:?}"
    );
    let mut svc2 = Service::new();
    let c2 = p.connected(t0 + Duration::from_secs(2));
    p.flush(t0).unwrap();
    pump(&mut p, c2, &mut svc2, t0);
    assert_eq!(
        svc2.stored.iter().map(|s| s.0).collect::<Vec<_>>(),
        [START + 2000]
    );
}

#[test]
fn error_acks_resend_or_drop_by_retry_class() {
    let t0 = Instant::now();
    let mut cfg = ProducerConfig::new(vec![video_track()], START);
    cfg.ack_level = AckLevel::Received;
    let mut p = ProducerCore::new(cfg).unwrap();
    for i in 0..75 {
        p.put_frame(v(i, i % 25 == 0), t0).unwrap();
    }
    p.flush(t0).unwrap();
    let c1 = p.connected(t0);
    while p.next_chunk(t0).is_some() {}
    // 5000 on the first fragment (retriable), 4010 on the second (not).
    p.on_ack(
        c1,
        &Ack::Error {
            fragment_timecode: Some(START),
            fragment_number: None,
            code: ServiceErrorCode::from_id(5000),
            error_code: None,
        },
        t0,
    );
    p.on_ack(
        c1,
        &Ack::Error {
            fragment_timecode: Some(START + 1000),
            fragment_number: None,
            code: ServiceErrorCode::from_id(4010),
            error_code: None,
        },
        t0,
    );
    p.on_ack(
        c1,
        &Ack::Received {
            fragment_timecode: START + 2000,
            fragment_number: "3".into(),
        },
        t0,
    );
    let ev = events(&mut p);
    assert!(ev.iter().any(|e| matches!(e, ProducerEvent::FragmentDropped { producer_timestamp, reason: DropReason::Rejected(c), .. } if epoch_ms(*producer_timestamp) == START + 1000 && c.id() == 4010)), "{ev:?}");
    assert!(ev.iter().any(
        |e| matches!(e, ProducerEvent::Acked { producer_timestamp, .. } if epoch_ms(*producer_timestamp) == START + 2000)
    ));
    p.disconnected("error");
    let mut svc = Service::new();
    let c2 = p.connected(t0);
    pump(&mut p, c2, &mut svc, t0);
    assert_eq!(
        svc.stored.iter().map(|s| s.0).collect::<Vec<_>>(),
        [START],
        "only the retriable one again"
    );
    assert!(p.is_idle());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// A frame to try: track (1 video, 2 audio), time step in ms, key flag.
    fn step() -> impl Strategy<Value = (u64, i64, bool)> {
        (1u64..=2, -30i64..120, proptest::bool::weighted(0.1))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the order, gaps and key frames of the input, and with a
        /// connection cut anywhere: every accepted frame is stored exactly
        /// once, byte for byte, unless its fragment was reported dropped
        /// (the service refusing it, e.g. 4011 for a track without frames).
        #[test]
        fn what_is_accepted_is_stored_once_or_reported(steps in proptest::collection::vec(step(), 1..300), cut in 0usize..300) {
            let t0 = Instant::now();
            let mut p = ProducerCore::new(ProducerConfig::new(vec![video_track(), audio_track()], START)).unwrap();
            let mut sessions = vec![Service::lenient()];
            let mut conn = p.connected(t0);
            let mut clock = [0i64, 0i64];
            let mut accepted: Vec<(u64, i64, Vec<u8>)> = Vec::new();
            let mut dropped_frames = 0;
            let mut now = t0;
            let n = steps.len();
            for (i, (track, delta, key)) in steps.into_iter().enumerate() {
                let c = &mut clock[track as usize - 1];
                *c = (*c + delta).max(0);
                let payload = vec![i as u8, (i >> 8) as u8, track as u8];
                now += Duration::from_millis(10);
                let frame = Frame {
                    track,
                    pts: Duration::from_millis(*c as u64),
                    dts: None,
                    key,
                    payload: Payload::Raw(Bytes::from(payload.clone())),
                };
                match p.put_frame(frame, now) {
                    Ok(PutOutcome::Accepted) => accepted.push((track, START as i64 + *c, payload)),
                    Ok(PutOutcome::Full) => prop_assert!(false, "the default buffer is far from full"),
                    Ok(PutOutcome::Skipped) => {}
                    Err(_) => {}
                }
                p.tick(now);
                if i + 1 == n {
                    p.flush(now).unwrap();
                }
                let mut cut_now = i == cut;
                loop {
                    let svc = sessions.last_mut().unwrap();
                    pump(&mut p, conn, svc, now);
                    // A cut, or the service ending the session after an
                    // ERROR: a new session takes over.
                    if !(cut_now || svc.ended) {
                        break;
                    }
                    cut_now = false;
                    prop_assert!(sessions.len() < 100, "sessions keep failing");
                    p.disconnected("cut");
                    sessions.push(Service::lenient());
                    conn = p.connected(now);
                }
                while let Some(e) = p.next_event() {
                    if let ProducerEvent::FragmentDropped { frames, .. } = e {
                        dropped_frames += frames;
                    }
                }
            }
            prop_assert!(p.is_idle(), "every fragment acknowledged or dropped");
            let mut got: Vec<(u64, i64, Vec<u8>)> = sessions.into_iter().flat_map(|s| s.frames).collect();
            got.sort();
            let mut unique = got.clone();
            unique.dedup();
            prop_assert_eq!(unique.len(), got.len(), "a frame stored twice");
            accepted.sort();
            for g in &got {
                prop_assert!(accepted.binary_search(g).is_ok(), "stored but never put: {:?}", (g.0, g.1));
            }
            prop_assert_eq!(got.len() + dropped_frames, accepted.len());
        }
    }
}

/// A recording cut mid-GOP with audio starting before the video: every
/// frame before the first video key frame (in presentation time) is
/// skipped, counted and reported once; the stream starts at the key frame
/// and everything from there is stored.
#[test]
fn frames_before_the_first_video_key_frame_are_skipped_and_reported_once() {
    let t0 = Instant::now();
    let mut p = av_producer();
    let mut svc = Service::new();
    let conn = p.connected(t0);
    let mut skipped = 0;
    let mut put = |p: &mut ProducerCore, f: Frame| {
        let out = p.put_frame(f, t0).unwrap();
        if out == PutOutcome::Skipped {
            skipped += 1;
        }
        out
    };
    // Audio from 0 ms, P-frames at 0 and 40 ms, the first key frame at 80 ms.
    assert_eq!(put(&mut p, a(0)), PutOutcome::Skipped);
    assert_eq!(put(&mut p, v(0, false)), PutOutcome::Skipped);
    assert_eq!(put(&mut p, a(1)), PutOutcome::Skipped);
    assert_eq!(put(&mut p, v(1, false)), PutOutcome::Skipped);
    assert_eq!(put(&mut p, a(2)), PutOutcome::Skipped);
    assert_eq!(put(&mut p, v(2, true)), PutOutcome::Accepted);
    // Audio presented before the key frame but arriving after it: leading too.
    assert_eq!(put(&mut p, a(3)), PutOutcome::Skipped); // 64 ms
    let mut kept = vec![(1u64, 80i64)];
    let mut ai = 4;
    for i in 3..60u64 {
        while ai as f64 * 21.333 < (i * 40) as f64 {
            assert_eq!(put(&mut p, a(ai)), PutOutcome::Accepted);
            kept.push((2, (ai * 21_333 / 1000) as i64));
            ai += 1;
        }
        assert_eq!(put(&mut p, v(i, i % 25 == 0)), PutOutcome::Accepted);
        kept.push((1, (i * 40) as i64));
        pump(&mut p, conn, &mut svc, t0);
    }
    p.flush(t0).unwrap();
    pump(&mut p, conn, &mut svc, t0);
    assert!(p.is_idle());
    assert_eq!(skipped, 6);
    let reports: Vec<ProducerEvent> = events(&mut p)
        .into_iter()
        .filter(|e| matches!(e, ProducerEvent::LeadingFramesSkipped { .. }))
        .collect();
    assert_eq!(
        reports,
        vec![ProducerEvent::LeadingFramesSkipped {
            frames: 6,
            bytes: 20 + 100 + 20 + 101 + 20 + 20,
            first_key: Some(Duration::from_millis(80)),
        }]
    );
    assert_eq!(p.leading_skipped().0, 6);
    let mut got: Vec<(u64, i64)> = stored_frames(&svc)
        .into_iter()
        .map(|(t, ms, _)| (t, ms - START as i64))
        .collect();
    got.sort();
    kept.sort();
    assert_eq!(got, kept);
    assert_eq!(
        svc.stored[0].0,
        START + 80,
        "the first fragment starts at the key frame"
    );
}

/// With `LeadingPolicy::Refuse` a leading frame is an error that names it.
#[test]
fn leading_frames_can_be_refused_with_a_reason() {
    use kvs_core::protocol::producer::LeadingPolicy;
    let t0 = Instant::now();
    let mut cfg = ProducerConfig::new(vec![video_track(), audio_track()], START);
    cfg.leading = LeadingPolicy::Refuse;
    let mut p = ProducerCore::new(cfg).unwrap();
    let e = p.put_frame(a(0), t0).unwrap_err();
    assert_eq!(
        e,
        FrameError::LeadingFrame {
            track: 2,
            pts_ms: 0,
            first_key_ms: None
        }
    );
    assert!(
        e.to_string().contains("before the first video key frame"),
        "{e}"
    );
    p.put_frame(v(2, true), t0).unwrap();
    let e = p.put_frame(a(3), t0).unwrap_err();
    assert!(e.to_string().contains("(80 ms)"), "{e}");
    p.put_frame(a(4), t0).unwrap();
}

/// B-frames: decode order runs ahead of presentation order. An open GOP's
/// leading pictures (decoded after the key frame, shown before it) are
/// skipped; the rest uploads whole.
#[test]
fn b_frame_streams_upload_whole_from_the_first_key_frame() {
    let t0 = Instant::now();
    let mut p = ProducerCore::new(ProducerConfig::new(vec![video_track()], START)).unwrap();
    let mut svc = Service::new();
    let conn = p.connected(t0);
    let f = |pts: u64, dts: u64, key: bool| Frame {
        track: 1,
        pts: Duration::from_millis(pts),
        dts: Some(Duration::from_millis(dts)),
        key,
        payload: Payload::Raw(Bytes::from(vec![pts as u8; 50])),
    };
    // I (shown at 80), then a leading B shown at 40; then P/B pairs.
    assert_eq!(p.put_frame(f(80, 0, true), t0), Ok(PutOutcome::Accepted));
    assert_eq!(p.put_frame(f(40, 40, false), t0), Ok(PutOutcome::Skipped));
    let mut want = vec![80];
    let mut dts = 80;
    for k in 1..40u64 {
        let base = 80 + k * 80;
        // P at base (key every 10), B at base - 40.
        p.put_frame(f(base, dts, k % 10 == 0), t0).unwrap();
        p.put_frame(f(base - 40, dts + 40, false), t0).unwrap();
        want.extend([base, base - 40]);
        dts += 80;
        pump(&mut p, conn, &mut svc, t0);
    }
    p.flush(t0).unwrap();
    pump(&mut p, conn, &mut svc, t0);
    assert!(p.is_idle());
    let mut got: Vec<i64> = stored_frames(&svc)
        .into_iter()
        .map(|(_, ms, _)| ms - START as i64)
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want.iter().map(|w| *w as i64).collect::<Vec<_>>());
}

/// Staleness is "no ACK progress while data is pending": a backlog that
/// drains slowly (an ACK every 15 s, each well within the 20 s timeout,
/// though the newest fragments were written 40 s before theirs) never
/// counts as stalled; a connection that goes silent does, 20 s after its
/// last ACK.
#[test]
fn a_slow_but_moving_connection_is_not_stalled() {
    let t0 = Instant::now();
    let mut p = ProducerCore::new(ProducerConfig::new(vec![video_track()], START)).unwrap();
    for i in 0..150u64 {
        p.put_frame(v(i, i % 25 == 0), t0).unwrap();
    }
    p.flush(t0).unwrap();
    let mut svc = Service::new();
    let conn = p.connected(t0);
    let mut acks = Vec::new();
    while let Some(chunk) = p.next_chunk(t0) {
        acks.extend(svc.push(chunk));
    }
    let persisted: Vec<&Ack> = acks
        .iter()
        .filter(|a| matches!(a, Ack::Persisted { .. }))
        .collect();
    assert_eq!(persisted.len(), 6);
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert!(!p.stalled(at(19)));
    // One PERSISTED every 15 s for the first three fragments.
    for (k, ack) in persisted.iter().take(3).enumerate() {
        let now = at(15 * (k as u64 + 1));
        assert!(
            !p.stalled(now),
            "stalled at {} s while ACKs come",
            15 * (k + 1)
        );
        p.on_ack(conn, ack, now);
    }
    assert!(!p.stalled(at(64)), "the last ACK came at 45 s");
    // An IDLE is not progress.
    p.on_ack(conn, &Ack::Idle, at(60));
    assert!(p.stalled(at(65)), "silent for 20 s with data pending");
}

/// The core names its next deadline, so a driver sleeps until then instead
/// of polling: nothing due when idle; the lateness of a fragment waiting
/// for audio; the ACK timeout of written data; the rotation age.
#[test]
fn the_next_deadline_is_named() {
    let t0 = Instant::now();
    let mut cfg = ProducerConfig::new(vec![video_track(), audio_track()], START);
    cfg.rotation_age = Duration::from_secs(3600);
    let mut p = ProducerCore::new(cfg).unwrap();
    assert_eq!(p.next_deadline(), None);
    p.put_frame(v(0, true), t0).unwrap();
    p.put_frame(a(0), t0).unwrap();
    // A key frame at 1 s while audio has not reached it: the fragment waits
    // at most the lateness (500 ms) from now.
    let t1 = t0 + Duration::from_millis(10);
    p.put_frame(v(25, true), t1).unwrap();
    assert_eq!(p.next_deadline(), Some(t1 + Duration::from_millis(500)));
    let t2 = t1 + Duration::from_millis(600);
    p.tick(t2);
    assert_eq!(
        p.buffered_fragments(),
        2,
        "closed by the lateness (and the next open with its key frame)"
    );
    assert_eq!(p.next_deadline(), None, "nothing due until a connection");
    let conn = p.connected(t2);
    assert_eq!(p.next_deadline(), Some(t2 + Duration::from_secs(3600)));
    while p.next_chunk(t2).is_some() {}
    assert_eq!(
        p.next_deadline(),
        Some(t2 + Duration::from_secs(20)),
        "the ACK timeout of what was written"
    );
    let _ = conn;
}

mod late_errors {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// The upload runs ahead of the ACKs: every fragment is written
        /// before any ACK comes back, the service refuses the k-th with an
        /// ERROR and ends the connection, and the `lose` ACKs just before
        /// the ERROR are lost with the connection. Whatever the timing: the
        /// error is reported with its code, a non-retriable one drops
        /// exactly that fragment (reported), a retriable one sends it again,
        /// and a fragment is stored twice only when its PERSISTED was lost.
        #[test]
        fn an_error_behind_the_upload_is_reported_and_applied(
            k in 0usize..8,
            retriable in any::<bool>(),
            lose in 0usize..20,
        ) {
            let t0 = Instant::now();
            let code = if retriable { ServiceErrorCode::InternalError } else { ServiceErrorCode::InvalidMkvData };
            let mut p = ProducerCore::new(ProducerConfig::new(vec![video_track()], START)).unwrap();
            for i in 0..200u64 {
                p.put_frame(v(i, i % 25 == 0), t0).unwrap();
            }
            p.flush(t0).unwrap();
            let mut svc = Service::lenient();
            svc.fail_after = Some((k, code));
            let conn = p.connected(t0);
            let mut acks = Vec::new();
            while let Some(chunk) = p.next_chunk(t0) {
                acks.extend(svc.push(chunk));
            }
            let error_at = acks.iter().position(|a| matches!(a, Ack::Error { .. })).unwrap();
            let lost = lose.min(error_at);
            let mut persisted_lost = 0;
            for (i, ack) in acks.iter().enumerate() {
                if i < error_at && i >= error_at - lost {
                    persisted_lost += usize::from(matches!(ack, Ack::Persisted { .. }));
                    continue;
                }
                p.on_ack(conn, ack, t0);
            }
            p.disconnected("the service ended the response");
            let evs = events(&mut p);
            let errors: Vec<(ServiceErrorCode, bool)> = evs.iter().filter_map(|e| match e {
                ProducerEvent::ServiceError { code, retriable, .. } => Some((*code, *retriable)),
                _ => None,
            }).collect();
            prop_assert_eq!(errors, vec![(code, retriable)]);
            let dropped: Vec<u64> = evs.iter().filter_map(|e| match e {
                ProducerEvent::FragmentDropped { producer_timestamp, .. } => Some(epoch_ms(*producer_timestamp)),
                _ => None,
            }).collect();
            if retriable {
                prop_assert!(dropped.is_empty());
            } else {
                prop_assert_eq!(dropped, vec![START + k as u64 * 1000]);
            }
            // A second connection takes the rest.
            let mut svc2 = Service::new();
            let conn2 = p.connected(t0);
            pump(&mut p, conn2, &mut svc2, t0);
            prop_assert!(p.is_idle());
            let mut stored: Vec<u64> = svc.stored.iter().chain(&svc2.stored).map(|(tc, _)| *tc).collect();
            stored.sort_unstable();
            let twice = stored.windows(2).filter(|w| w[0] == w[1]).count();
            prop_assert_eq!(twice, persisted_lost);
            stored.dedup();
            prop_assert_eq!(stored.len(), if retriable { 8 } else { 7 });
        }
    }
}

/// Parameter sets given apart (a phone encoder's format description) with
/// AVCC frames that carry none: the first set makes the first header; a
/// new one, given mid-stream, applies at the next key frame — a new
/// fragment under a new header — and not before.
#[test]
fn parameter_sets_given_apart_apply_at_the_next_key_frame() {
    let t0 = Instant::now();
    let mut track = video_track();
    track.codec_private = None;
    let mut p = ProducerCore::new(ProducerConfig::new(vec![track], START)).unwrap();
    let sps_a = Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e, 0x95, 0xa0, 0x50, 0x7e, 0x40]);
    let sps_b = Bytes::from_static(&[0x67, 0x42, 0xc0, 0x28, 0x95, 0xa0, 0x1e, 0x00, 0x89, 0x10]);
    let pps = Bytes::from_static(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]); // Annex-B form too
    let avcc = |nal: &[u8]| {
        let mut v = (nal.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(nal);
        Bytes::from(v)
    };
    let frame = |i: u64, key: bool| Frame {
        track: 1,
        pts: Duration::from_millis(i * 40),
        dts: None,
        key,
        payload: Payload::Raw(avcc(&[if key { 0x65 } else { 0x41 }, 0x88, i as u8])),
    };
    // AVCC without sets: refused until they are given.
    assert!(matches!(
        p.put_frame(frame(0, true), t0),
        Err(FrameError::NoCodecPrivate { .. })
    ));
    p.set_parameter_sets(1, &[sps_a.clone(), pps.clone()])
        .unwrap();
    for i in 0..50 {
        if i == 10 {
            // Mid-GOP: waits for the key frame at 25.
            p.set_parameter_sets(1, &[sps_b.clone(), pps.clone()])
                .unwrap();
        }
        p.put_frame(frame(i, i % 25 == 0), t0).unwrap();
    }
    p.flush(t0).unwrap();
    let mut svc = Service::new();
    let c1 = p.connected(t0);
    pump(&mut p, c1, &mut svc, t0);
    assert_eq!(
        svc.stored.len(),
        1,
        "the first fragment under the first header"
    );
    assert!(events(&mut p).contains(&ProducerEvent::Rotating {
        reason: RotationReason::NewHeader
    }));
    p.disconnected("rotated");
    let mut svc2 = Service::new();
    let c2 = p.connected(t0);
    pump(&mut p, c2, &mut svc2, t0);
    assert_eq!(svc2.stored.len(), 1);
    let first = |svc: &Service| {
        let mut asm = FragmentAssembler::default();
        asm.push(Bytes::from(svc.bytes.clone()));
        asm.finish();
        asm.next_fragment().unwrap().unwrap()
    };
    let (f1, f2) = (first(&svc), first(&svc2));
    assert_eq!(f1.tracks[0].codec_private.as_ref().unwrap()[3], 0x1e);
    assert_eq!(f2.tracks[0].codec_private.as_ref().unwrap()[3], 0x28);
    // The new sets did not cut the first GOP.
    assert_eq!((f1.frames.len(), f2.frames.len()), (25, 25));
}
