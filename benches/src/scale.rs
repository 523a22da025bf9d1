//! The scale run behind `kvs bench-producers` and `benches/scale.rs`: N
//! producers in one process, each streaming synthetic video at a bitrate in
//! real time to the in-process local endpoint, measured for CPU time, peak
//! RSS and ACK latency.
//!
//! Streams have no retention, and the endpoint keeps one fragment per stream
//! for live readers, so the process holds what the producers buffer plus
//! one fragment per stream — the RSS figure is per stream beyond that
//! media, which is also reported.

#![allow(clippy::print_stdout)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use kvs_core::client::CreateStream;
use kvs_core::local::LocalConfig;
use kvs_core::mkv::builder::Payload;
use kvs_core::producer::{Frame, Producer, ProducerEvent};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct ScaleConfig {
    /// Producers.
    pub streams: usize,
    /// Bitrate of each, Mbit/s.
    pub mbps: f64,
    /// Streaming time.
    pub seconds: f64,
    /// Frames per second (a key frame, so a fragment, every second).
    pub fps: u32,
    /// Tokio worker threads.
    pub workers: usize,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct ScaleReport {
    /// The run.
    pub cfg: ScaleConfig,
    /// Process CPU time (user + system) over the streaming, seconds.
    pub cpu_seconds: f64,
    /// Peak RSS growth over the run, KiB.
    pub rss_growth_kib: f64,
    /// Media held at the peak (producer buffers + the endpoint's one
    /// fragment per stream), KiB.
    pub media_kib: f64,
    /// ACK latency percentiles, ms.
    pub ack_p50_ms: f64,
    /// 99th percentile, ms.
    pub ack_p99_ms: f64,
    /// Frames put.
    pub frames_put: u64,
    /// Frames put but never acknowledged.
    pub lost_frames: u64,
}

impl ScaleReport {
    /// CPU seconds per stream-second.
    pub fn cpu_per_stream_second(&self) -> f64 {
        self.cpu_seconds / (self.cfg.streams as f64 * self.cfg.seconds)
    }

    /// RSS per stream beyond its media, KiB.
    pub fn rss_kib_per_stream(&self) -> f64 {
        (self.rss_growth_kib - self.media_kib).max(0.0) / self.cfg.streams as f64
    }

    /// The one-line summary.
    pub fn line(&self) -> String {
        format!(
            "streams={} cpu_s_per_stream_s={:.6} rss_kib_per_stream={:.1} ack_p50_ms={:.1} ack_p99_ms={:.1} lost_frames={}",
            self.cfg.streams,
            self.cpu_per_stream_second(),
            self.rss_kib_per_stream(),
            self.ack_p50_ms,
            self.ack_p99_ms,
            self.lost_frames
        )
    }
}

/// This process's CPU time (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) at ")".
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line (11, 12 here).
    (ticks(11) + ticks(12)) / 100.0
}

/// A /proc/self/status figure in KiB (VmRSS, VmHWM).
fn status_kib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// Runs the scale test on a fresh runtime.
pub fn run(cfg: ScaleConfig) -> Result<ScaleReport, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.workers.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run_async(cfg))
}

async fn run_async(cfg: ScaleConfig) -> Result<ScaleReport, String> {
    let (ep, client, video) = crate::local_setup(LocalConfig {
        live_buffer_fragments: 1,
        max_put_media_connections: 2,
        ..LocalConfig::default()
    })
    .await?;
    // Everything per stream counts from here: producers, connections,
    // the endpoint's side of them.
    let rss0 = status_kib("VmRSS:");
    // Frame payloads: one shared buffer, sliced (no per-frame allocation).
    let frame_bytes = (cfg.mbps * 1e6 / 8.0 / f64::from(cfg.fps)) as usize;
    let pool = Bytes::from(
        (0..frame_bytes * 4)
            .map(|i| (i * 7 + 13) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut producers = Vec::with_capacity(cfg.streams);
    for i in 0..cfg.streams {
        let name = format!("bench-{i}");
        let p = Producer::builder(client.clone(), name.as_str())
            .create_if_missing(CreateStream {
                data_retention_in_hours: 0,
                ..CreateStream::default()
            })
            .track(video.clone())
            .start_time(SystemTime::now())
            .build()
            .await
            .map_err(|e| e.to_string())?;
        producers.push(p);
    }
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut listeners = Vec::new();
    for p in &producers {
        let mut events = p.subscribe();
        let latencies = latencies.clone();
        let acked = acked.clone();
        listeners.push(tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let ProducerEvent::Acked {
                    latency, frames, ..
                } = e
                {
                    acked.fetch_add(frames as u64, std::sync::atomic::Ordering::Relaxed);
                    latencies
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(latency);
                }
            }
        }));
    }
    let cpu0 = cpu_seconds();
    let frames_total = (cfg.seconds * f64::from(cfg.fps)) as u64;
    let media_peak = Arc::new(Mutex::new(0usize));
    let mut tasks = Vec::new();
    for (i, p) in producers.iter().enumerate() {
        let p = p.clone();
        let pool = pool.clone();
        let media_peak = media_peak.clone();
        // Only stream 0 samples everyone's buffers.
        let all = if i == 0 {
            producers.clone()
        } else {
            Vec::new()
        };
        let streams = cfg.streams;
        let fps = cfg.fps;
        tasks.push(tokio::spawn(async move {
            // Spread the streams' frame times over one frame interval.
            let interval = Duration::from_secs(1) / fps;
            let t0 = tokio::time::Instant::now() + interval.mul_f64(i as f64 / streams as f64);
            let mut put = 0u64;
            for n in 0..frames_total {
                tokio::time::sleep_until(t0 + interval * n as u32).await;
                let off = (n as usize % 4) * frame_bytes;
                let frame = Frame {
                    track: 1,
                    pts: interval * n as u32,
                    dts: None,
                    key: n % u64::from(fps) == 0,
                    payload: Payload::Raw(pool.slice(off..off + frame_bytes)),
                };
                if p.put_frame(frame).await.is_ok() {
                    put += 1;
                }
                // Stream 0 samples the media held by everyone each second.
                if i == 0 && n % u64::from(fps) == 0 {
                    let held: usize = all.iter().map(Producer::buffered_bytes).sum();
                    let mut m = media_peak
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *m = (*m).max(held);
                }
            }
            put
        }));
    }
    let mut frames_put = 0;
    for t in tasks {
        frames_put += t.await.map_err(|e| e.to_string())?;
    }
    let streaming_cpu = cpu_seconds() - cpu0;
    let peak = status_kib("VmHWM:");
    for p in &producers {
        let _ = p.finish(Duration::from_secs(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for l in listeners {
        l.abort();
    }
    let mut lat = latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    lat.sort();
    let pct = |p: usize| {
        lat.get((lat.len() * p / 100).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let fragment_kib = cfg.mbps * 1e6 / 8.0 / 1024.0;
    let media_kib = *media_peak
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) as f64
        / 1024.0
        + cfg.streams as f64 * fragment_kib;
    ep.shutdown().await;
    Ok(ScaleReport {
        cfg,
        cpu_seconds: streaming_cpu,
        rss_growth_kib: (peak - rss0).max(0.0),
        media_kib,
        ack_p50_ms: pct(50),
        ack_p99_ms: pct(99),
        frames_put,
        lost_frames: frames_put.saturating_sub(acked.load(std::sync::atomic::Ordering::Relaxed)),
    })
}
