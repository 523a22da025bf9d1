//! PutMedia throughput and ACK latency against the in-process local
//! endpoint (in memory), beside a bare hyper chunked upload of the same bytes
//! to a sink server, in one run: `cargo bench -p kvs-benches --bench putmedia`
//!
//! - `putmedia/kvs/1080p`: our PutMedia session (signing, data endpoint,
//!   channel body, ACK decoding) to the local endpoint, which parses, checks
//!   and keeps every fragment, until the last fragment's RECEIVED.
//!   The endpoint keeps the last 2 fragments for live readers.
//! - `putmedia/kvs-keep16/1080p`: the same with 16 fragments kept (~16 MB
//!   held, so the allocator hands out fresh pages for every read buffer).
//! - `putmedia/producer/1080p`: the same frames through the high-level
//!   Producer (fragmenting, buffering, ACK tracking, `finish` waiting for
//!   every RECEIVED).
//! - `putmedia/hyper-sink/1080p`: hyper's client streaming the same chunks to
//!   a hyper server that only counts them.
//!
//! Before the timed runs it prints ACK latency p50/p99: from the moment a
//! fragment's end is visible to the endpoint (the next fragment's first
//! bytes) to its PERSISTED ACK.
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use kvs_benches::frames_1080p;
use kvs_core::auth::Credentials;
use kvs_core::client::{ClientConfig, CreateStream, KvsClient, PutMediaOptions, TimecodeType};
use kvs_core::local::{LocalConfig, LocalEndpoint};
use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, TrackConfig};
use kvs_core::producer::{Frame as ProducerFrame, PressurePolicy, Producer};
use kvs_core::protocol::Ack;

const CHUNK: usize = 64 * 1024;

/// The 1080p stream as 64 KiB chunks, and each fragment's first chunk index.
fn stream() -> (Vec<Bytes>, Vec<usize>) {
    let frames = frames_1080p();
    let mut b = FragmentBuilder::new(StreamConfig::new(vec![TrackConfig::video(
        1,
        "V_MPEG4/ISO/AVC",
        Bytes::from_static(&[1]),
        1920,
        1080,
    )]))
    .unwrap();
    let mut parts = vec![b.header()];
    let mut starts = Vec::new();
    let mut flat = Vec::new();
    for gop in frames.chunks(30) {
        let fin: Vec<FrameIn> = gop
            .iter()
            .map(|f| FrameIn {
                track: 1,
                timecode: f.ms + 1,
                key: f.key,
                payload: Payload::Raw(f.avcc.clone()),
            })
            .collect();
        let mut chunks = Vec::new();
        b.fragment(&fin, &[], &mut chunks).unwrap();
        flat.push(parts.concat());
        parts = chunks;
    }
    flat.push(parts.concat());
    flat.push(FragmentBuilder::end_of_fragment_tag().to_vec());
    // Re-chunk: header+fragments into 64 KiB pieces, remembering fragment starts.
    let mut out = Vec::new();
    for (i, piece) in flat.iter().enumerate() {
        if i >= 1 && i <= frames.len() / 30 {
            starts.push(out.len());
        }
        out.extend(piece.chunks(CHUNK).map(Bytes::copy_from_slice));
    }
    (out, starts)
}

async fn kvs_put(
    c: &KvsClient,
    chunks: &[Bytes],
    starts: &[usize],
    latencies: Option<&mut Vec<Duration>>,
) {
    let opts = PutMediaOptions {
        stream: "bench".into(),
        timecode_type: TimecodeType::Relative,
        producer_start: std::time::UNIX_EPOCH + std::time::Duration::from_millis(1),
    };
    let mut s = c.put_media(&opts).await.unwrap();
    // When each fragment's end becomes visible: the next fragment's first
    // chunk, and for the last one the end-of-fragment tag.
    let mut visible = Vec::new();
    for (i, ch) in chunks.iter().enumerate() {
        s.send(ch.clone()).await.unwrap();
        if starts.contains(&i) && i != starts[0] {
            visible.push(Instant::now());
        }
    }
    visible.push(Instant::now());
    s.finish();
    let mut n = 0;
    let mut lat = Vec::new();
    while let Some(a) = s.next_ack().await {
        match a.unwrap() {
            // The bench stream has no retention: RECEIVED is the last ACK.
            Ack::Received { .. } => {
                if let Some(v) = visible.get(n) {
                    lat.push(v.elapsed());
                }
                n += 1;
            }
            Ack::Error { code, .. } => panic!("ERROR ACK {code}"),
            _ => {}
        }
    }
    assert_eq!(n, starts.len(), "every fragment received");
    if let Some(l) = latencies {
        l.extend(lat);
    }
}

/// Streams the 1080p frames through a Producer as fast as it takes them.
async fn produce(c: &std::sync::Arc<KvsClient>, frames: &[kvs_benches::VideoFrame]) {
    let p = Producer::builder(c.clone(), "bench")
        .track(TrackConfig::video(
            1,
            "V_MPEG4/ISO/AVC",
            Bytes::from_static(&[1, 0x64, 0, 0x28, 0xff, 0xe1, 0, 0]),
            1920,
            1080,
        ))
        .buffer(64 << 20, Duration::from_secs(60))
        .pressure(PressurePolicy::Wait)
        .build()
        .await
        .unwrap();
    for f in frames {
        p.put_frame(ProducerFrame {
            track: 1,
            pts: Duration::from_millis(f.ms as u64),
            dts: None,
            key: f.key,
            payload: Payload::Raw(f.avcc.clone()),
        })
        .await
        .unwrap();
    }
    p.finish(Duration::from_secs(30)).await.unwrap();
}

/// A request body over prepared chunks.
struct Chunks(std::vec::IntoIter<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.next().map(|b| Ok(Frame::data(b))))
    }
}

async fn sink_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let mut body = req.into_body();
                        let mut n = 0usize;
                        while let Some(Ok(f)) = body.frame().await {
                            n += f.data_ref().map_or(0, Bytes::len);
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                            n.to_string(),
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}/sink")
}

async fn endpoint(live_buffer_fragments: usize) -> (LocalEndpoint, KvsClient) {
    let ep = LocalEndpoint::start(LocalConfig {
        live_buffer_fragments,
        ..LocalConfig::default()
    })
    .await
    .unwrap();
    let client = KvsClient::new(
        ClientConfig::new("us-east-1", Credentials::new("a", "b", None, None, "t"))
            .endpoint(ep.url()),
    )
    .unwrap();
    client
        .create_stream(&CreateStream {
            stream_name: "bench".into(),
            data_retention_in_hours: 0,
            ..CreateStream::default()
        })
        .await
        .unwrap();
    (ep, client)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (chunks, starts) = stream();
    let total: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    // The relay case: a stream without retention whose endpoint keeps the
    // last 2 fragments for live readers; and the same keeping 16 (~16 MB),
    // which adds the cost of keeping received memory alive (fresh pages for
    // every read buffer the allocator cannot recycle).
    let (_ep, client) = rt.block_on(endpoint(2));
    let (_ep16, client16) = rt.block_on(endpoint(16));
    let sink = rt.block_on(sink_server());
    let mut lat = Vec::new();
    for _ in 0..10 {
        rt.block_on(kvs_put(&client, &chunks, &starts, Some(&mut lat)));
    }
    lat.sort();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!("ACK latency over {} fragments (fragment end visible -> RECEIVED): p50 {:.2} ms, p99 {:.2} ms", lat.len(), pct(50), pct(99));
    let http: hyper_util::client::legacy::Client<
        _,
        http_body_util::combinators::BoxBody<Bytes, Infallible>,
    > = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let mut g = c.benchmark_group("putmedia");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Bytes(total));
    g.bench_function("kvs/1080p", |b| {
        b.iter(|| rt.block_on(kvs_put(&client, &chunks, &starts, None)))
    });
    // The whole producer: frames in (AVCC, a fragment per second), its own
    // fragmenting, buffering and ACK tracking, until every fragment is
    // RECEIVED.
    let frames = frames_1080p();
    let client = std::sync::Arc::new(client);
    g.bench_function("producer/1080p", |b| {
        b.iter(|| rt.block_on(produce(&client, &frames)))
    });
    g.bench_function("kvs-keep16/1080p", |b| {
        b.iter(|| rt.block_on(kvs_put(&client16, &chunks, &starts, None)))
    });
    g.bench_function("hyper-sink/1080p", |b| {
        b.iter(|| {
            rt.block_on(async {
                let body = Chunks(chunks.clone().into_iter()).boxed();
                let resp = http
                    .request(hyper::Request::post(&sink).body(body).unwrap())
                    .await
                    .unwrap();
                let got = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(std::str::from_utf8(&got).unwrap(), total.to_string());
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
