//! The latency run behind `kvs latency` and `benches/latency.rs`: one
//! producer puts synthetic frames in real time (25 fps video with a key
//! frame, so a fragment, every 2 s; optionally AAC at 48 kHz) to the
//! in-process local endpoint, and two live consumers read them back at
//! once — frame by frame ([`kvs_core::consumer::FragmentStream::frames`],
//! each frame as its block arrives) and fragment by fragment
//! ([`kvs_core::consumer::FragmentStream::next`], each frame when its whole
//! fragment has come). A frame's latency is from the moment `put_frame`
//! was called to the moment the consumer hands it out.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kvs_core::client::{CreateStream, KvsClient, StartSelector};
use kvs_core::consumer::Consumer;
use kvs_core::local::LocalConfig;
use kvs_core::mkv::builder::{Payload, TrackConfig};
use kvs_core::producer::{Frame, Producer};
use tokio::time::Instant;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct LatencyConfig {
    /// Streaming time, seconds.
    pub seconds: f64,
    /// With an AAC track (48 kHz, 1024 samples a frame) beside the video.
    pub audio: bool,
    /// Video bitrate, Mbit/s.
    pub mbps: f64,
}

/// Latency percentiles of one path, ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Frames measured.
    pub frames: usize,
}

impl Percentiles {
    fn of(mut v: Vec<Duration>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        Self {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            frames: v.len(),
        }
    }
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct LatencyReport {
    /// The run.
    pub cfg: LatencyConfig,
    /// Frame by frame (each frame as its block arrives).
    pub frames: Percentiles,
    /// Fragment by fragment (each frame when its fragment is whole).
    pub fragments: Percentiles,
    /// Frames put.
    pub put: usize,
}

impl LatencyReport {
    /// The one-line summary.
    pub fn line(&self) -> String {
        format!(
            "audio={} put={} frames_p50_ms={:.1} frames_p99_ms={:.1} frames_max_ms={:.1} fragments_p50_ms={:.1} fragments_p99_ms={:.1} ratio_p50={:.1}",
            self.cfg.audio,
            self.put,
            self.frames.p50_ms,
            self.frames.p99_ms,
            self.frames.max_ms,
            self.fragments.p50_ms,
            self.fragments.p99_ms,
            self.fragments.p50_ms / self.frames.p50_ms.max(0.001),
        )
    }
}

/// When each frame (track, producer ms) was put.
type PutTimes = Arc<Mutex<HashMap<(u64, u64), Instant>>>;

/// Runs the latency test on a fresh runtime (two worker threads).
pub fn run(cfg: LatencyConfig) -> Result<LatencyReport, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run_async(cfg))
}

async fn run_async(cfg: LatencyConfig) -> Result<LatencyReport, String> {
    let (ep, client, video) = crate::local_setup(LocalConfig::default()).await?;
    let start = SystemTime::now();
    let start_ms = start
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as u64;
    let mut b = Producer::builder(client.clone(), "latency")
        .create_if_missing(CreateStream {
            data_retention_in_hours: 1,
            ..CreateStream::default()
        })
        .track(video)
        .start_time(start);
    if cfg.audio {
        b = b.track(TrackConfig::aac(2, 48_000, 2).map_err(|e| e.to_string())?);
    }
    let producer = b.build().await.map_err(|e| e.to_string())?;
    let put: PutTimes = Arc::new(Mutex::new(HashMap::new()));
    let by_frame = spawn_reader(&client, put.clone(), start_ms, true);
    let by_fragment = spawn_reader(&client, put.clone(), start_ms, false);
    // Both readers are connected before the first frame.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let fps = 25u64;
    let frame_bytes = (cfg.mbps * 1e6 / 8.0 / fps as f64) as usize;
    let pool = Bytes::from(
        (0..frame_bytes * 2 + 1024)
            .map(|i| (i * 7 + 13) as u8)
            .collect::<Vec<u8>>(),
    );
    // Every frame in presentation order: video every 40 ms, audio every
    // 1024/48000 s.
    let end = Duration::from_secs_f64(cfg.seconds);
    let mut schedule: Vec<(Duration, u64)> = (0..)
        .map(|i| (Duration::from_millis(i * 1000 / fps), 1))
        .take_while(|(t, _)| *t < end)
        .collect();
    if cfg.audio {
        schedule.extend(
            (0..)
                .map(|i: u64| (Duration::from_micros(i * 1024 * 1_000_000 / 48_000), 2))
                .take_while(|(t, _)| *t < end),
        );
    }
    schedule.sort();
    let t0 = Instant::now();
    let mut n = 0usize;
    for (i, (pts, track)) in schedule.iter().copied().enumerate() {
        tokio::time::sleep_until(t0 + pts).await;
        let key = track == 2 || (pts.as_millis() as u64 % 2000) < 40;
        let len = if track == 1 {
            if key {
                frame_bytes * 2
            } else {
                frame_bytes
            }
        } else {
            300
        };
        let off = i % 512;
        let frame = Frame {
            track,
            pts,
            dts: None,
            key,
            payload: Payload::Raw(pool.slice(off..off + len)),
        };
        put.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((track, start_ms + pts.as_millis() as u64), Instant::now());
        producer.put_frame(frame).await.map_err(|e| e.to_string())?;
        n += 1;
    }
    producer
        .finish(Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    // The last fragment reaches the readers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frames = Percentiles::of(by_frame.stop());
    let fragments = Percentiles::of(by_fragment.stop());
    ep.shutdown().await;
    Ok(LatencyReport {
        cfg,
        frames,
        fragments,
        put: n,
    })
}

/// A live reader and the latencies it measured.
struct Reader {
    task: tokio::task::JoinHandle<()>,
    latencies: Arc<Mutex<Vec<Duration>>>,
}

impl Reader {
    fn stop(self) -> Vec<Duration> {
        self.task.abort();
        std::mem::take(
            &mut *self
                .latencies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

fn spawn_reader(client: &Arc<KvsClient>, put: PutTimes, start_ms: u64, by_frame: bool) -> Reader {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let out = latencies.clone();
    let stream = Consumer::builder(client.clone(), "latency").start(StartSelector::Now);
    let record = move |track: u64, ns: i64| {
        let at = Instant::now();
        let key = (track, (ns / 1_000_000) as u64);
        if let Some(t) = put
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            out.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(at.duration_since(*t));
        } else if key.1 >= start_ms {
            unknown_frame(key);
        }
    };
    // frames() is asked for before the reader starts, so every fragment
    // comes frame by frame.
    let task = if by_frame {
        let mut frames = stream.frames();
        tokio::spawn(async move {
            while let Some(Ok((_, f))) = frames.next().await {
                record(f.track, f.timestamp_ns);
            }
        })
    } else {
        let mut fragments = stream;
        tokio::spawn(async move {
            while let Some(Ok(frag)) = fragments.next().await {
                for f in &frag.frames {
                    record(f.track, f.timestamp_ns);
                }
            }
        })
    };
    Reader { task, latencies }
}

/// A frame came back that was never put (would be a bug).
fn unknown_frame(key: (u64, u64)) {
    println!("warning: frame {key:?} came back but was never put");
}
