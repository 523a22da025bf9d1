//! The producer over a link that behaves like a WAN: a relay between the
//! producer and the local endpoint (GetDataEndpoint hands out the relay, so
//! only the data plane crosses it) that delays every byte, caps the rate,
//! and can silently black-hole the open connections (a dead NAT mapping)
//! or refuse and reset them (an outage). A slow but moving link is never
//! taken for a stalled one; a dead one is replaced within the ACK timeout;
//! nothing is lost either way.
#![cfg(feature = "local")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use kvs_core::auth::Credentials;
use kvs_core::client::{ClientConfig, CreateStream, KvsClient};
use kvs_core::codec::h264;
use kvs_core::local::{LocalConfig, LocalEndpoint};
use kvs_core::mkv::builder::{Payload, TrackConfig};
use kvs_core::producer::{Backoff, Frame, Producer, ProducerEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the relay does to traffic, changeable while it runs.
#[derive(Default)]
struct Link {
    /// One-way delay of every byte, ms.
    delay_ms: AtomicU64,
    /// Rate cap per direction and connection, bytes per second (0: none).
    rate: AtomicU64,
    /// Connections opened before this number forward nothing, silently.
    dead_below: AtomicU64,
    /// New connections are refused, open ones reset.
    down: AtomicBool,
    opened: AtomicU64,
}

/// A TCP relay on `listener` in front of `upstream`.
fn relay(listener: TcpListener, upstream: std::net::SocketAddr, link: Arc<Link>) {
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let id = link.opened.fetch_add(1, Ordering::SeqCst);
            if link.down.load(Ordering::SeqCst) {
                let _ = client.set_zero_linger();
                drop(client);
                continue;
            }
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, id, link.clone()));
            tokio::spawn(pump(sr, cw, id, link.clone()));
        }
    });
}

/// One direction: a delay line (bytes leave `delay` after they came) with
/// a rate cap; a dead connection swallows everything, a link going down
/// ends it with a reset.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    id: u64,
    link: Arc<Link>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut free_at = Instant::now();
    while let Some((came, chunk)) = rx.recv().await {
        if link.down.load(Ordering::SeqCst) {
            break;
        }
        if id < link.dead_below.load(Ordering::SeqCst) {
            continue; // a dead NAT mapping: gone without a trace
        }
        tokio::time::sleep_until(
            came + Duration::from_millis(link.delay_ms.load(Ordering::SeqCst)),
        )
        .await;
        let rate = link.rate.load(Ordering::SeqCst);
        if rate > 0 {
            tokio::time::sleep_until(free_at).await;
            free_at = free_at.max(Instant::now())
                + Duration::from_secs_f64(chunk.len() as f64 / rate as f64);
        }
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    reader.abort();
    // The half-close travels on (a FIN), unless the link went down.
    if !link.down.load(Ordering::SeqCst) {
        let _ = to.shutdown().await;
    }
}

const START_MS: u64 = 1_750_000_000_000;
/// 2 Mbit/s at 25 fps: 10 KB a frame, a key frame (and fragment) a second.
const FRAME: usize = 10_000;

/// An endpoint whose GetDataEndpoint hands out a relay in front of it.
async fn setup(link: Arc<Link>) -> (LocalEndpoint, KvsClient) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let via = format!("http://{}", listener.local_addr().unwrap());
    let ep = LocalEndpoint::start(LocalConfig {
        data_endpoint: Some(via),
        ..LocalConfig::default()
    })
    .await
    .unwrap();
    let upstream = ep.url().trim_start_matches("http://").parse().unwrap();
    relay(listener, upstream, link);
    let c = KvsClient::new(
        ClientConfig::new("us-east-1", Credentials::new("a", "b", None, None, "t"))
            .endpoint(ep.url()),
    )
    .unwrap();
    (ep, c)
}

/// Streams `seconds` of video in real time with a key frame (and fragment)
/// every `gop` frames, calling `at(second)` at each whole second; finishes
/// and returns every event and the stored producer timestamps (ms from the
/// start).
async fn stream(
    c: &KvsClient,
    seconds: u64,
    gop: u64,
    ack_timeout: Duration,
    mut at: impl FnMut(u64),
) -> (Vec<ProducerEvent>, Vec<u64>) {
    let video = TrackConfig::video(1, h264::CODEC_ID, crate::producer_uploads::avcc(), 0, 0);
    let p = Producer::builder(c.clone(), "wan")
        .track(video)
        .create_if_missing(CreateStream {
            data_retention_in_hours: 1,
            ..CreateStream::default()
        })
        .start_time(UNIX_EPOCH + Duration::from_millis(START_MS))
        .ack_timeout(ack_timeout)
        .reconnect(Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(500),
        })
        .build()
        .await
        .unwrap();
    let mut rx = p.subscribe();
    let events = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(e) = rx.recv().await {
            out.push(e);
        }
        out
    });
    let t0 = Instant::now();
    for i in 0..seconds * 25 {
        if i % 25 == 0 {
            at(i / 25);
        }
        tokio::time::sleep_until(t0 + Duration::from_millis(i * 40)).await;
        p.put_frame(Frame {
            track: 1,
            pts: Duration::from_millis(i * 40),
            dts: None,
            key: i % gop == 0,
            payload: Payload::Raw(Bytes::from(vec![(i % 251) as u8; FRAME])),
        })
        .await
        .unwrap();
    }
    p.finish(Duration::from_secs(60)).await.unwrap();
    drop(p);
    let events = tokio::time::timeout(Duration::from_secs(5), events)
        .await
        .unwrap()
        .unwrap();
    let mut stored: Vec<u64> = c
        .list_fragments("wan", None)
        .await
        .unwrap()
        .iter()
        .map(|f| (f.producer_timestamp * 1000.0).round() as u64 - START_MS)
        .collect();
    stored.sort_unstable();
    (events, stored)
}

fn reconnects(events: &[ProducerEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ProducerEvent::Reconnecting { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

/// 100 ms each way and a cap 50 % above the stream's rate; a 2 s outage
/// at 1 s (connections reset and refused) leaves a backlog of 0.4 s
/// fragments that drains through the cap, an ACK every ~0.3 s, while the
/// newest waits longer than the 1 s ACK timeout for its own. The backlog is
/// never taken for a stall (it was, when the timeout ran from each write):
/// the only reconnects are those of the outage, every fragment stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_after_an_outage_is_not_a_stall() {
    let link = Arc::new(Link::default());
    link.delay_ms.store(100, Ordering::SeqCst);
    link.rate.store(FRAME as u64 * 25 * 3 / 2, Ordering::SeqCst);
    let (_ep, c) = setup(link.clone()).await;
    let l = link.clone();
    let (events, stored) = stream(&c, 5, 10, Duration::from_secs(1), move |s| match s {
        1 => l.down.store(true, Ordering::SeqCst),
        3 => l.down.store(false, Ordering::SeqCst),
        _ => {}
    })
    .await;
    let stalls: Vec<String> = reconnects(&events)
        .into_iter()
        .filter(|e| e.contains("ACK timeout"))
        .collect();
    assert!(stalls.is_empty(), "spurious stalls: {stalls:?}");
    assert!(!reconnects(&events).is_empty(), "the outage was seen");
    // Every fragment stored; twice only a fragment sent before the outage
    // whose ACK the reset lost (the consumer delivers those once).
    let want: Vec<u64> = (0..13).map(|k| k * 400).collect();
    let mut unique = stored.clone();
    unique.dedup();
    assert_eq!(unique, want);
    let twice: Vec<u64> = stored
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    assert!(twice.iter().all(|t| *t < 1000), "stored twice: {twice:?}");
    let acked = events
        .iter()
        .filter(|e| matches!(e, ProducerEvent::Acked { .. }))
        .count();
    assert_eq!(acked, 13);
}

/// At 2 s every open connection goes silent (a dead NAT mapping: nothing
/// forwarded, no reset, no FIN). The producer replaces it after the 2 s
/// ACK timeout, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nat_mapping_is_replaced_within_the_ack_timeout() {
    let link = Arc::new(Link::default());
    link.delay_ms.store(100, Ordering::SeqCst);
    let (_ep, c) = setup(link.clone()).await;
    let l = link.clone();
    let died = Arc::new(std::sync::Mutex::new(None));
    let d = died.clone();
    let (events, stored) = stream(&c, 6, 25, Duration::from_secs(2), move |s| {
        if s == 2 {
            l.dead_below
                .store(l.opened.load(Ordering::SeqCst), Ordering::SeqCst);
            *d.lock().unwrap() = Some(Instant::now());
        }
    })
    .await;
    let stalls: Vec<String> = reconnects(&events)
        .into_iter()
        .filter(|e| e.contains("ACK timeout"))
        .collect();
    assert_eq!(stalls.len(), 1, "{:?}", reconnects(&events));
    assert_eq!(
        stored,
        (0..6).map(|s| s * 1000).collect::<Vec<_>>(),
        "each once"
    );
}
