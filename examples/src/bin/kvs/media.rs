//! `kvs put`, `kvs get` and `kvs demo`, on the library's Producer and
//! Consumer.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kvs_core::auth::Credentials;
use kvs_core::client::{ClientConfig, CreateStream, KvsClient, StartSelector, StreamId};
use kvs_core::codec::aac;
use kvs_core::codec::annexb::VideoCodec;
use kvs_core::consumer::Consumer;
use kvs_core::local::{LocalConfig, LocalEndpoint};
use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, TrackConfig};
use kvs_core::mkv::fragment::Fragment;
use kvs_core::mkv::mux::{mux_annexb, AacInput, MuxOutput};
use kvs_core::mkv::{parse_all, Event, ParserConfig};
use kvs_core::producer::{Frame, Producer, ProducerEvent};

/// Muxes an elementary stream (with optional ADTS audio).
pub fn mux_file(input: &Path, fps: f64, audio: Option<&Path>) -> Result<MuxOutput, String> {
    let ext = input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let codec = match ext.as_str() {
        "h264" | "264" => VideoCodec::H264,
        "h265" | "265" | "hevc" => VideoCodec::H265,
        _ => {
            return Err(format!(
                "{}: expected .mkv, or a .h264/.264 or .h265/.hevc Annex-B file",
                input.display()
            ))
        }
    };
    let read = |p: &Path| {
        std::fs::read(p)
            .map(Bytes::from)
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let video = read(input)?;
    let audio = match audio {
        Some(p) => {
            let (header, frames) =
                aac::split_adts(&read(p)?).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(AacInput { header, frames })
        }
        None => None,
    };
    mux_annexb(codec, &video, fps, audio.as_ref()).map_err(|e| format!("{}: {e}", input.display()))
}

/// Media to put: the tracks and the frames in decode order.
pub struct Input {
    tracks: Vec<TrackConfig>,
    frames: Vec<Frame>,
}

/// Reads an .mkv, or muxes an Annex-B file (with optional ADTS audio), into
/// frames with presentation and decode times from 0.
pub fn input(file: &Path, fps: f64, audio: Option<&Path>) -> Result<Input, String> {
    let data = if file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mkv"))
    {
        Bytes::from(std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?)
    } else {
        Bytes::from(mux_file(file, fps, audio)?.chunks.concat())
    };
    let (events, err) = parse_all(data, ParserConfig::default());
    if let Some(e) = err.filter(|e| !e.is_truncated()) {
        return Err(format!("{}: {e}", file.display()));
    }
    let mut tracks = Vec::new();
    let mut raw = Vec::new();
    for e in events {
        match e {
            Event::Tracks(t) if tracks.is_empty() => {
                tracks = t.iter().map(TrackConfig::from).collect();
            }
            Event::Frame(f) => raw.push(f),
            _ => {}
        }
    }
    let origin = raw.iter().map(|f| f.timestamp_ns).min().unwrap_or(0);
    // Decode times: per track, the sorted presentation times; presentation
    // moved later (all tracks alike) just enough that no frame is shown
    // before it is decoded.
    let sorted: Vec<Vec<i64>> = tracks
        .iter()
        .map(|t| {
            let mut v: Vec<i64> = raw
                .iter()
                .filter(|f| f.track == t.number)
                .map(|f| f.timestamp_ns - origin)
                .collect();
            v.sort_unstable();
            v
        })
        .collect();
    let mut next = vec![0usize; tracks.len()];
    let mut shift = 0i64;
    for f in &raw {
        if let Some(ti) = tracks.iter().position(|t| t.number == f.track) {
            shift = shift.max(sorted[ti][next[ti]] - (f.timestamp_ns - origin));
            next[ti] += 1;
        }
    }
    let mut next = vec![0usize; tracks.len()];
    let mut frames: Vec<Frame> = Vec::with_capacity(raw.len());
    for f in raw {
        let Some(ti) = tracks.iter().position(|t| t.number == f.track) else {
            continue;
        };
        let pts = f.timestamp_ns - origin + shift;
        let dts = sorted[ti][next[ti]];
        next[ti] += 1;
        let ns = |v: i64| Duration::from_nanos(v.max(0) as u64);
        frames.push(Frame {
            track: f.track,
            pts: ns(pts),
            dts: (dts != pts).then(|| ns(dts)),
            key: f.key,
            payload: Payload::Raw(f.payload),
        });
    }
    Ok(Input { tracks, frames })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What an upload achieved.
#[derive(Default)]
struct Report {
    acked: usize,
    dropped: usize,
    errors: usize,
    frames: usize,
    bytes: u64,
    latencies: Vec<Duration>,
    last_latency: Option<Duration>,
}

impl Report {
    fn percentile(&self, p: usize) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        l.get((l.len() * p / 100).min(l.len().saturating_sub(1)))
            .map_or(0.0, |d| ms(*d))
    }

    fn summary(&self) -> String {
        format!(
            "{} fragments: {} acknowledged, {} dropped, {} errors; {} frames, {:.2} MB; ACK latency p50 {:.1} ms, p99 {:.1} ms",
            self.acked + self.dropped,
            self.acked,
            self.dropped,
            self.errors,
            self.frames,
            self.bytes as f64 / 1e6,
            self.percentile(50),
            self.percentile(99),
        )
    }
}

/// Streams `input` with a Producer (paced at frame time when `realtime`),
/// printing each ACK when `acks`, a progress line on a terminal, and waits
/// for every fragment to be acknowledged. Returns the report and the
/// producer start time (ms since the epoch).
async fn produce(
    c: Arc<KvsClient>,
    stream: &str,
    input: &Input,
    realtime: bool,
    acks: bool,
    create: Option<CreateStream>,
) -> Result<(Report, u64), String> {
    let start = SystemTime::now();
    let start_ms = start
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut b = Producer::builder(c, stream).start_time(start);
    if let Some(create) = create {
        b = b.create_if_missing(create);
    }
    for t in &input.tracks {
        b = b.track(t.clone());
    }
    let p = b.build().await.map_err(|e| e.to_string())?;
    let report = Arc::new(Mutex::new(Report::default()));
    let mut events = p.subscribe();
    let r = report.clone();
    let listener = tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            let mut r = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match e {
                ProducerEvent::Acked {
                    timecode_ms,
                    fragment_number,
                    latency,
                    frames,
                } => {
                    r.acked += 1;
                    r.latencies.push(latency);
                    r.last_latency = Some(latency);
                    if acks {
                        println!(
                            "  ACK PERSISTED fragment {:>6} ms  {frames:>3} frames  latency {:>6.1} ms  #{fragment_number}",
                            timecode_ms.saturating_sub(start_ms),
                            ms(latency)
                        );
                    }
                }
                ProducerEvent::FragmentDropped {
                    timecode_ms,
                    frames,
                    reason,
                } => {
                    r.dropped += 1;
                    eprintln!(
                        "  dropped fragment {} ms ({frames} frames): {reason:?}",
                        timecode_ms.saturating_sub(start_ms)
                    );
                }
                ProducerEvent::ServiceError {
                    timecode_ms,
                    code,
                    retriable,
                } => {
                    r.errors += usize::from(!retriable);
                    eprintln!(
                        "  ACK ERROR {code} (fragment {:?}){}",
                        timecode_ms.map(|t| t.saturating_sub(start_ms)),
                        if retriable { ", sending it again" } else { "" }
                    );
                }
                ProducerEvent::Reconnecting { delay, error, .. } => {
                    eprintln!(
                        "  connection lost ({error}); reconnecting in {:.0} ms",
                        ms(delay)
                    );
                }
                _ => {}
            }
        }
    });
    let progress = std::io::stderr().is_terminal();
    let t0 = tokio::time::Instant::now();
    let mut shown = t0;
    for (i, f) in input.frames.iter().enumerate() {
        if realtime {
            tokio::time::sleep_until(t0 + f.pts).await;
        }
        let size = match &f.payload {
            Payload::Raw(b) | Payload::AnnexB(b) => b.len() as u64,
        };
        p.put_frame(f.clone()).await.map_err(|e| e.to_string())?;
        let mut r = report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        r.frames = i + 1;
        r.bytes += size;
        if progress && shown.elapsed() >= Duration::from_millis(250) {
            shown = tokio::time::Instant::now();
            eprint!(
                "\r{} frames, {:.2} MB, {} fragments acknowledged, ACK latency {}   ",
                r.frames,
                r.bytes as f64 / 1e6,
                r.acked,
                r.last_latency
                    .map_or("-".into(), |l| format!("{:.1} ms", ms(l)))
            );
        }
    }
    let finished = p.finish(Duration::from_secs(60)).await;
    // Let the listener take the last events.
    tokio::time::sleep(Duration::from_millis(50)).await;
    listener.abort();
    if progress {
        eprintln!();
    }
    finished.map_err(|e| e.to_string())?;
    let r = std::mem::take(
        &mut *report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok((r, start_ms))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

pub fn demo(video: &Path, audio: &Path) -> Result<(), String> {
    runtime()?.block_on(async {
        let ep = LocalEndpoint::start(LocalConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        println!("local KVS endpoint at {}", ep.url());
        let c = Arc::new(
            KvsClient::new(
                ClientConfig::new(
                    "us-east-1",
                    Credentials::new("demo", "demo", None, None, "demo"),
                )
                .endpoint(ep.url()),
            )
            .map_err(|e| e.to_string())?,
        );
        let input = input(video, 25.0, Some(audio))?;
        let video_frames = input.frames.iter().filter(|f| f.track == 1).count();
        println!(
            "streaming {} ({} video + {} audio frames) in real time to stream \"demo\"…",
            video.display(),
            video_frames,
            input.frames.len() - video_frames
        );
        let create = CreateStream {
            data_retention_in_hours: 1,
            media_type: Some("video/h264,audio/aac".into()),
            ..CreateStream::default()
        };
        let (report, start_ms) =
            produce(c.clone(), "demo", &input, true, true, Some(create)).await?;
        println!("{}", report.summary());
        if report.dropped > 0 || report.errors > 0 || report.acked == 0 {
            return Err("not every fragment was acknowledged".into());
        }

        println!("reading it back with the Consumer (GetMedia from EARLIEST)…");
        let mut frames = Consumer::builder(c.clone(), "demo")
            .start(StartSelector::Earliest)
            .frames();
        let mut got = Vec::new();
        let mut last: Option<String> = None;
        while got.len() < input.frames.len() {
            let (frag, f) = tokio::time::timeout(Duration::from_secs(10), frames.next())
                .await
                .map_err(|_| "GetMedia stalled".to_string())?
                .ok_or("GetMedia ended early")?
                .map_err(|e| e.to_string())?;
            if last.as_deref() != frag.fragment_number.as_deref() {
                last.clone_from(&frag.fragment_number);
                println!(
                    "  fragment #{} at {} ms: {} frames",
                    frag.fragment_number.as_deref().unwrap_or("?"),
                    frag.producer_timestamp_ms
                        .unwrap_or(0)
                        .saturating_sub(start_ms),
                    frag.frames.len()
                );
            }
            got.push((f.track, f.timestamp_ns / 1_000_000, f.payload));
        }
        let put: Vec<(u64, i64, Bytes)> = input
            .frames
            .iter()
            .map(|f| {
                let data = match &f.payload {
                    Payload::Raw(b) | Payload::AnnexB(b) => b.clone(),
                };
                (f.track, (start_ms + f.pts.as_millis() as u64) as i64, data)
            })
            .collect();
        let mut a = got.clone();
        let mut b = put.clone();
        a.sort_by_key(|x| (x.0, x.1));
        b.sort_by_key(|x| (x.0, x.1));
        if a != b {
            return Err(format!(
                "read back {} frames, put {}; they differ",
                got.len(),
                put.len()
            ));
        }
        println!("all {} frames came back byte-identical", put.len());
        ep.shutdown().await;
        Ok(())
    })
}

pub fn put(
    c: KvsClient,
    stream: &str,
    file: &Path,
    fps: f64,
    realtime: bool,
) -> Result<(), String> {
    let input = input(file, fps, None)?;
    let (report, _) =
        runtime()?.block_on(produce(Arc::new(c), stream, &input, realtime, true, None))?;
    println!("{}", report.summary());
    if report.dropped > 0 || report.errors > 0 || report.acked == 0 {
        return Err("not every fragment was acknowledged".into());
    }
    Ok(())
}
fn selector(s: &str) -> Result<StartSelector, String> {
    let ms = |t: &str| {
        t.parse::<f64>()
            .map(|s| (s * 1000.0) as u64)
            .map_err(|_| format!("bad timestamp {t}"))
    };
    Ok(match s.split_once(':') {
        None if s == "earliest" => StartSelector::Earliest,
        None if s == "now" => StartSelector::Now,
        Some(("fragment", n)) => StartSelector::AfterFragmentNumber(n.to_owned()),
        Some(("producer", t)) => StartSelector::ProducerTimestamp(ms(t)?),
        Some(("server", t)) => StartSelector::ServerTimestamp(ms(t)?),
        Some(("token", t)) => StartSelector::ContinuationToken(t.to_owned()),
        _ => {
            return Err(format!(
                "bad --start {s:?} (earliest, now, fragment:N, producer:T, server:T, token:T)"
            ))
        }
    })
}

/// Appends a fragment's frames to a merged, playable file.
fn write_merged(
    file: &mut impl Write,
    builder: &mut Option<FragmentBuilder>,
    f: &Fragment,
) -> Result<(), String> {
    let b = match builder {
        Some(b) => b,
        None => {
            let tracks: Vec<TrackConfig> = f.tracks.iter().map(TrackConfig::from).collect();
            let cfg = StreamConfig {
                timecode_scale_ns: f.timecode_scale,
                ..StreamConfig::new(tracks)
            };
            let b = FragmentBuilder::new(cfg).map_err(|e| e.to_string())?;
            file.write_all(&b.header()).map_err(|e| e.to_string())?;
            builder.insert(b)
        }
    };
    let frames: Vec<FrameIn> = f
        .frames
        .iter()
        .map(|fr| FrameIn {
            track: fr.track,
            timecode: fr.timecode,
            key: fr.key,
            payload: Payload::Raw(fr.payload.clone()),
        })
        .collect();
    let mut chunks = Vec::new();
    b.fragment(&frames, &[], &mut chunks)
        .map_err(|e| e.to_string())?;
    for ch in chunks {
        file.write_all(&ch).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `kvs get`: fragments into one playable file (or the service's bytes with
/// `raw`); stops after `max` fragments, or, unless `follow`, once the stream
/// has been quiet for 3 s. `follow` keeps reading through resets and
/// endpoint restarts.
pub fn get(
    c: KvsClient,
    stream: &str,
    start: &str,
    max: usize,
    out: &Path,
    raw: bool,
    follow: bool,
) -> Result<(), String> {
    let start = selector(start)?;
    if raw && follow {
        return Err("--raw reads one GetMedia session; it does not combine with --follow".into());
    }
    runtime()?.block_on(async {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?,
        );
        let mut count = 0;
        if raw {
            let mut session = c
                .get_media(StreamId::from(stream), &start)
                .await
                .map_err(|e| e.to_string())?
                .keep_raw();
            while count < max {
                let next =
                    tokio::time::timeout(Duration::from_secs(3), session.next_fragment()).await;
                let Ok(Some(f)) = next else { break };
                let f = f.map_err(|e| e.to_string())?;
                if f.frames.is_empty() || !f.complete {
                    continue;
                }
                for ch in session.take_raw() {
                    file.write_all(&ch).map_err(|e| e.to_string())?;
                }
                count += 1;
            }
        } else {
            let mut fragments = Consumer::builder(Arc::new(c), stream).start(start);
            let mut builder: Option<FragmentBuilder> = None;
            while count < max {
                let f = if follow {
                    fragments.next().await
                } else {
                    match tokio::time::timeout(Duration::from_secs(3), fragments.next()).await {
                        Ok(f) => f,
                        Err(_) => break,
                    }
                };
                let Some(f) = f else { break };
                let f = f.map_err(|e| e.to_string())?;
                if f.frames.is_empty() {
                    continue;
                }
                write_merged(&mut file, &mut builder, &f)?;
                // A follower's file is playable up to here at any time.
                file.flush().map_err(|e| e.to_string())?;
                count += 1;
                eprintln!(
                    "fragment {} ({} frames)",
                    f.fragment_number.as_deref().unwrap_or("?"),
                    f.frames.len()
                );
            }
        }
        file.flush().map_err(|e| e.to_string())?;
        eprintln!("{}: {count} fragments", out.display());
        Ok(())
    })
}
