//! `kvs put`, `kvs get` and `kvs demo`, on the library's Producer and
//! Consumer.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kvs_core::auth::Credentials;
use kvs_core::client::{
    ClientConfig, CreateStream, FragmentSelector, KvsClient, StartSelector, StreamId,
};
use kvs_core::codec::aac;
use kvs_core::codec::annexb::VideoCodec;
use kvs_core::consumer::Consumer;
use kvs_core::local::{LocalConfig, LocalEndpoint};
use kvs_core::mkv::builder::TrackConfig;
use kvs_core::mkv::merge::Merger;
use kvs_core::mkv::mux::{
    annexb_frames, matroska_frames, mux_frames, AacInput, AnnexBReader, InputFormat,
    MatroskaReader, MuxOutput,
};
use kvs_core::producer::{AckLevel, Frame, PressurePolicy, Producer, ProducerEvent};

/// The bundled clip (H.264 Annex-B and ADTS AAC), built into the binary.
pub const CLIP_H264: &[u8] = include_bytes!("../../../media/clip.h264");
/// The bundled clip's audio.
pub const CLIP_AAC: &[u8] = include_bytes!("../../../media/clip.aac");

fn read(p: &Path) -> Result<Bytes, String> {
    std::fs::read(p)
        .map(Bytes::from)
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// The codec of an elementary-stream file, from its extension.
fn elementary_codec(input: &Path) -> Result<VideoCodec, String> {
    let ext = input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "h264" | "264" => Ok(VideoCodec::H264),
        "h265" | "265" | "hevc" => Ok(VideoCodec::H265),
        _ => Err(format!(
            "{}: expected .mkv/.webm, or a .h264/.264 or .h265/.hevc Annex-B file",
            input.display()
        )),
    }
}

fn adts(audio: Option<(&Path, Bytes)>) -> Result<Option<AacInput>, String> {
    audio
        .map(|(p, data)| {
            aac::split_adts(&data)
                .map(|(header, frames)| AacInput { header, frames })
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .transpose()
}

/// Frames of an Annex-B elementary stream (with optional ADTS audio).
fn elementary(
    name: &Path,
    codec: VideoCodec,
    video: &Bytes,
    fps: f64,
    audio: Option<(&Path, Bytes)>,
) -> Result<Input, String> {
    let audio = adts(audio)?;
    let i = annexb_frames(codec, video, fps, audio.as_ref())
        .map_err(|e| format!("{}: {e}", name.display()))?;
    Ok(Input {
        tracks: i.tracks,
        frames: i.frames,
    })
}

/// Muxes an elementary stream (with optional ADTS audio), with the same
/// state machine `kvs put` uploads with.
pub fn mux_file(input: &Path, fps: f64, audio: Option<&Path>) -> Result<MuxOutput, String> {
    let codec = elementary_codec(input)?;
    let audio = match audio {
        Some(p) => Some((p, read(p)?)),
        None => None,
    };
    let i = elementary(input, codec, &read(input)?, fps, audio)?;
    mux_frames(i.tracks, i.frames).map_err(|e| format!("{}: {e}", input.display()))
}

/// Media to put: the tracks and the frames in decode order.
pub struct Input {
    tracks: Vec<TrackConfig>,
    frames: Vec<Frame>,
}

impl Input {
    /// Presentation time of the last frame.
    fn duration(&self) -> Duration {
        self.frames.iter().map(|f| f.pts).max().unwrap_or_default()
    }
}

/// Reads an .mkv/.webm, or an Annex-B file (with optional ADTS audio), into
/// frames with presentation and decode times from 0.
pub fn input(file: &Path, fps: f64, audio: Option<&Path>) -> Result<Input, String> {
    let matroska = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mkv") || e.eq_ignore_ascii_case("webm"));
    if !matroska {
        let codec = elementary_codec(file)?;
        let audio = match audio {
            Some(p) => Some((p, read(p)?)),
            None => None,
        };
        return elementary(file, codec, &read(file)?, fps, audio);
    }
    if audio.is_some() {
        return Err("--audio goes with an elementary-stream (.h264/.h265) input".into());
    }
    let data = read(file)?;
    let input = matroska_frames(data).map_err(|e| format!("{}: {e}", file.display()))?;
    if let Some(e) = &input.cut {
        eprintln!(
            "  warning: {}: {e}; the frames before the cut are uploaded",
            file.display()
        );
    }
    Ok(Input {
        tracks: input.tracks,
        frames: input.frames,
    })
}

/// A UTC time as ms since the epoch.
fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `n thing` or `n things`.
fn count(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
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
    leading: usize,
    /// Service errors whose fragment was sent again.
    resent: usize,
    latencies: Vec<Duration>,
    last_latency: Option<Duration>,
    elapsed: Duration,
    /// Ctrl-C stopped the input after this many of its frames.
    interrupted: Option<usize>,
}

impl Report {
    /// Prints the summary; an error unless every fragment was acknowledged
    /// and the whole input put.
    fn verdict(&self) -> Result<(), String> {
        crate::outln!("{}", self.summary());
        if self.dropped > 0 || self.acked == 0 {
            return Err("not every fragment was acknowledged".into());
        }
        if self.interrupted.is_some() {
            return Err("interrupted: the rest of the input was not put".into());
        }
        Ok(())
    }

    fn percentile(&self, p: usize) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        l.get((l.len() * p / 100).min(l.len().saturating_sub(1)))
            .map_or(0.0, |d| ms(*d))
    }

    fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-3);
        format!(
            "{}{}: {} acknowledged, {} dropped, {} ({} sent again); {} ({} skipped before the first key frame), {:.2} MB in {:.1} s ({:.1} Mbit/s); ACK latency p50 {:.1} ms, p99 {:.1} ms",
            self.interrupted
                .map_or(String::new(), |n| format!("interrupted after {} of the input; ", count(n, "frame"))),
            count(self.acked + self.dropped, "fragment"),
            self.acked,
            self.dropped,
            count(self.errors, "service error"),
            self.resent,
            count(self.frames, "frame"),
            self.leading,
            self.bytes as f64 / 1e6,
            secs,
            self.bytes as f64 * 8.0 / 1e6 / secs,
            self.percentile(50),
            self.percentile(99),
        )
    }
}

/// Streams `input` with a Producer, printing each ACK when `acks`, a progress
/// line on a terminal, and waits for every fragment to be acknowledged.
/// Returns the report and the producer start time (ms since the epoch).
///
/// `realtime`: frames are put at their time and the producer time starts
/// now. Otherwise the file goes as fast as the upload takes it (the
/// producer waits for ACKs rather than dropping anything) and its start is
/// backdated by the media's length, so no fragment carries a producer
/// timestamp in the future (the service does not take those).
///
/// `pipe`: the frames come from it as they are read (a group of pictures at
/// a time) rather than from `input.frames`, put at their time (`realtime`).
async fn produce(
    c: Arc<KvsClient>,
    stream: &str,
    input: &Input,
    realtime: bool,
    acks: bool,
    create: Option<CreateStream>,
    mut pipe: Option<tokio::sync::mpsc::Receiver<Result<Vec<Frame>, String>>>,
) -> Result<(Report, u64), String> {
    let now = SystemTime::now();
    let start = if realtime {
        now
    } else {
        now.checked_sub(input.duration()).unwrap_or(now)
    };
    let start_ms = start
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // A hint names the same endpoint as this call (a local one, say).
    let endpoint = c
        .config()
        .endpoint
        .as_ref()
        .map(|u| format!(" --endpoint {u}"))
        .unwrap_or_default();
    // A file never drops a frame: reading waits for the upload.
    let mut b = Producer::builder(c, stream)
        .start_time(start)
        .pressure(PressurePolicy::Wait);
    if let Some(create) = create {
        b = b.create_if_missing(create);
    }
    for t in &input.tracks {
        b = b.track(t.clone());
    }
    let p = b.build().await.map_err(|e| {
        let missing = matches!(&e, kvs_core::producer::ProducerError::Bootstrap(c)
            if c.service_code() == Some(&kvs_core::client::ServiceException::ResourceNotFound));
        if missing {
            // The same endpoint as this call (a local one, say).
            format!("{e} (create it with: kvs create-stream {stream}{endpoint})")
        } else {
            e.to_string()
        }
    })?;
    let level = match p.ack_level() {
        AckLevel::Persisted => "PERSISTED",
        _ => "RECEIVED",
    };
    // Printed times count from the first video key frame (where the stream
    // starts; what precedes it is skipped), in both modes.
    let video: Vec<u64> = input
        .tracks
        .iter()
        .filter(|t| matches!(t.kind, kvs_core::mkv::builder::TrackKind::Video { .. }))
        .map(|t| t.number)
        .collect();
    let base_ms = start_ms
        + input
            .frames
            .iter()
            .find(|f| f.key && (video.is_empty() || video.contains(&f.track)))
            .map_or(0, |f| f.pts.as_millis() as u64);
    let report = Arc::new(Mutex::new(Report::default()));
    let mut events = p.subscribe();
    let r = report.clone();
    let listener = tokio::spawn(async move {
        // On a terminal the progress line (stderr) is cleared before an
        // event's line, so the two do not run together.
        let tty = std::io::stderr().is_terminal();
        while let Some(e) = events.recv().await {
            let mut r = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if tty
                && !matches!(
                    e,
                    ProducerEvent::Stats { .. } | ProducerEvent::Connected { .. }
                )
            {
                eprint!("\r\x1b[K");
            }
            match e {
                ProducerEvent::Acked {
                    producer_timestamp,
                    fragment_number,
                    latency,
                    frames,
                } => {
                    r.acked += 1;
                    r.latencies.push(latency);
                    r.last_latency = Some(latency);
                    if acks {
                        crate::outln!(
                            "  ACK {level} fragment {:>6} ms  {frames:>3} frames  latency {:>6.1} ms  #{fragment_number}",
                            epoch_ms(producer_timestamp).saturating_sub(base_ms),
                            ms(latency)
                        );
                    }
                }
                ProducerEvent::LeadingFramesSkipped { frames, .. } => {
                    r.leading = frames;
                    eprintln!(
                        "  skipped {} before the first video key frame",
                        count(frames, "frame")
                    );
                }
                ProducerEvent::FragmentDropped {
                    producer_timestamp,
                    frames,
                    reason,
                } => {
                    r.dropped += 1;
                    eprintln!(
                        "  dropped the fragment at {} ms ({}): {reason}",
                        epoch_ms(producer_timestamp).saturating_sub(base_ms),
                        count(frames, "frame")
                    );
                }
                ProducerEvent::ServiceError {
                    producer_timestamp,
                    code,
                    retriable,
                    ..
                } => {
                    r.errors += 1;
                    r.resent += usize::from(retriable);
                    eprintln!(
                        "  ACK ERROR {code}{}{}",
                        producer_timestamp.map_or(String::new(), |t| format!(
                            " on the fragment at {} ms",
                            epoch_ms(t).saturating_sub(base_ms)
                        )),
                        if retriable { "; sending it again" } else { "" }
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
    // Ctrl-C: stop reading the input, deliver what was put (the open
    // fragment closed, every ACK waited for) and print the summary; a
    // second Ctrl-C leaves at once.
    let stop = Arc::new(tokio::sync::Notify::new());
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (stop, interrupted) = (stop.clone(), interrupted.clone());
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
                stop.notify_one();
                eprintln!(
                    "\r\x1b[K  interrupted: delivering what was put (Ctrl-C again to leave now)"
                );
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }
    let t0 = tokio::time::Instant::now();
    let mut shown = t0;
    let mut piped: std::collections::VecDeque<Frame> = std::collections::VecDeque::new();
    let mut i = 0;
    loop {
        let f = match pipe.as_mut() {
            None => match input.frames.get(i) {
                Some(f) => f.clone(),
                None => break,
            },
            Some(rx) => match piped.pop_front() {
                Some(f) => f,
                None => {
                    tokio::select! {
                        got = rx.recv() => match got {
                            Some(Ok(batch)) => {
                                piped.extend(batch);
                                continue;
                            }
                            Some(Err(e)) => {
                                eprintln!("  input: {e}; delivering what was put");
                                break;
                            }
                            None => break,
                        },
                        () = stop.notified() => {
                            report
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .interrupted = Some(i);
                            break;
                        }
                    }
                }
            },
        };
        if realtime {
            tokio::select! {
                () = tokio::time::sleep_until(t0 + f.pts) => {}
                () = stop.notified() => {}
            }
        }
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            report
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .interrupted = Some(i);
            break;
        }
        let size = f.payload.len() as u64;
        p.put_frame(f).await.map_err(|e| e.to_string())?;
        i += 1;
        let mut r = report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        r.frames = i;
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
    let elapsed = t0.elapsed();
    // Let the listener take the last events.
    tokio::time::sleep(Duration::from_millis(50)).await;
    listener.abort();
    if progress {
        eprintln!();
    }
    finished.map_err(|e| e.to_string())?;
    let mut r = std::mem::take(
        &mut *report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    r.elapsed = elapsed;
    Ok((r, start_ms))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// `kvs demo`: the bundled clip (or the files given) streamed in real time
/// to an in-process endpoint, read back and compared frame by frame.
pub fn demo(video: Option<&Path>, audio: Option<&Path>) -> Result<(), String> {
    runtime()?.block_on(async {
        let ep = LocalEndpoint::start(LocalConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        crate::outln!("local KVS endpoint at {}", ep.url());
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
        let name = video.map_or("the bundled clip".into(), |v| v.display().to_string());
        let input = match video {
            Some(v) => input(v, 25.0, audio)?,
            None => {
                let audio = match audio {
                    Some(p) => (p, read(p)?),
                    None => (Path::new("clip.aac"), Bytes::from_static(CLIP_AAC)),
                };
                elementary(
                    Path::new("clip.h264"),
                    VideoCodec::H264,
                    &Bytes::from_static(CLIP_H264),
                    25.0,
                    Some(audio),
                )?
            }
        };
        let video_frames = input.frames.iter().filter(|f| f.track == 1).count();
        crate::outln!(
            "streaming {} ({} video + {} audio frames) in real time to stream \"demo\"…",
            name,
            video_frames,
            input.frames.len() - video_frames
        );
        let create = CreateStream {
            data_retention_in_hours: 1,
            media_type: Some("video/h264,audio/aac".into()),
            ..CreateStream::default()
        };
        let (report, start_ms) =
            produce(c.clone(), "demo", &input, true, true, Some(create), None).await?;
        crate::outln!("{}", report.summary());
        if report.dropped > 0 || report.errors > 0 || report.acked == 0 {
            return Err("not every fragment was acknowledged".into());
        }

        crate::outln!("reading it back with the Consumer (GetMedia from EARLIEST)…");
        let mut frames = Consumer::builder(c.clone(), "demo")
            .start(StartSelector::Earliest)
            .frames();
        let mut got = Vec::new();
        // Frames come as they arrive; each fragment is reported once its
        // last frame is in (when the next starts, or at the end).
        let mut current: Option<(Option<String>, u64, usize)> = None;
        let report = |c: &(Option<String>, u64, usize)| {
            crate::outln!(
                "  fragment #{} at {} ms: {} frames",
                c.0.as_deref().unwrap_or("?"),
                c.1,
                c.2
            );
        };
        while got.len() < input.frames.len() {
            let (frag, f) = tokio::time::timeout(Duration::from_secs(10), frames.next())
                .await
                .map_err(|_| "GetMedia stalled".to_string())?
                .ok_or("GetMedia ended early")?
                .map_err(|e| e.to_string())?;
            match &mut current {
                Some(c) if c.0 == frag.fragment_number => c.2 += 1,
                _ => {
                    if let Some(c) = &current {
                        report(c);
                    }
                    let at = frag
                        .producer_timestamp_ms
                        .unwrap_or(0)
                        .saturating_sub(start_ms);
                    current = Some((frag.fragment_number.clone(), at, 1));
                }
            }
            got.push((f.track, f.timestamp_ns / 1_000_000, f.payload));
        }
        if let Some(c) = &current {
            report(c);
        }
        let put: Vec<(u64, i64, Bytes)> = input
            .frames
            .iter()
            .map(|f| {
                // Annex-B goes out as AVCC (4-byte lengths).
                f.payload
                    .written()
                    .map(|d| (f.track, (start_ms + f.pts.as_millis() as u64) as i64, d))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
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
        crate::outln!("all {} frames came back byte-identical", put.len());
        ep.shutdown().await;
        Ok(())
    })
}

/// `kvs put --stream NAME -`: standard input — Matroska/WebM or Annex-B
/// H.264/H.265, told from its first bytes unless `format` says — uploaded
/// as it is read (a pipe from ffmpeg or GStreamer), each frame put at its
/// time from the moment the stream header came; the input's own pace is
/// the upload's. Ends at the end of the input (or Ctrl-C), once every
/// fragment is acknowledged.
pub fn put_pipe(
    c: KvsClient,
    stream: &str,
    format: Option<InputFormat>,
    fps: f64,
) -> Result<(), String> {
    use std::io::Read;
    use tokio::sync::mpsc;
    let rt = runtime()?;
    let (report, _) = rt.block_on(async {
        let (tx, mut rx) = mpsc::channel::<Result<Bytes, String>>(16);
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let msg = match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(format!("standard input: {e}")),
                };
                let last = msg.is_err();
                if tx.blocking_send(msg).is_err() || last {
                    break;
                }
            }
        });
        // Enough of the input to tell what it is.
        let mut head = Vec::new();
        while head.len() < 16 {
            match rx.recv().await {
                Some(Ok(b)) => head.extend_from_slice(&b),
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        if head.is_empty() {
            return Err("standard input is empty".into());
        }
        let format = format.or_else(|| InputFormat::sniff(&head)).ok_or(
            "standard input is neither Matroska/WebM nor Annex-B H.264/H.265 (or give --format)",
        )?;
        let mux = |e: kvs_core::mkv::mux::MuxError| format!("standard input: {e}");
        let mut first = Vec::new();
        let (tracks, mut reader) = match format {
            InputFormat::Matroska => {
                let mut r = MatroskaReader::new();
                first.extend(r.push(Bytes::from(head)).map_err(mux)?);
                while r.tracks().is_none() {
                    match rx.recv().await {
                        Some(Ok(b)) => first.extend(r.push(b).map_err(mux)?),
                        Some(Err(e)) => return Err(e),
                        None => return Err("standard input ended before its stream header".into()),
                    }
                }
                let tracks = r.tracks().unwrap_or_default().to_vec();
                (tracks, PipeReader::Matroska(Box::new(r)))
            }
            InputFormat::AnnexB(codec) => {
                let mut r = AnnexBReader::new(codec, fps).map_err(mux)?;
                first.extend(r.push(&head).map_err(mux)?);
                (vec![r.track()], PipeReader::AnnexB(r))
            }
        };
        let (ftx, frx) = mpsc::channel::<Result<Vec<Frame>, String>>(4);
        let _ = ftx.send(Ok(first)).await;
        tokio::spawn(async move {
            loop {
                let out = match rx.recv().await {
                    Some(Ok(b)) => reader.push(b).map_err(mux),
                    Some(Err(e)) => Err(e),
                    None => {
                        let _ = ftx.send(reader.finish().map_err(mux)).await;
                        if let PipeReader::AnnexB(r) = &reader {
                            if r.skipped() > 0 {
                                eprintln!(
                                    "  skipped {} before the first key frame",
                                    count(r.skipped(), "picture")
                                );
                            }
                        }
                        break;
                    }
                };
                let failed = out.is_err();
                if ftx.send(out).await.is_err() || failed {
                    break;
                }
            }
        });
        let input = Input {
            tracks,
            frames: Vec::new(),
        };
        produce(Arc::new(c), stream, &input, true, true, None, Some(frx)).await
    })?;
    report.verdict()
}

/// `kvs rtsp`: a camera into `stream` until Ctrl-C (or `seconds`), a line
/// per event (connections, reconnections, frames dropped, ACKs) and a
/// summary.
pub fn rtsp(
    c: KvsClient,
    stream: &str,
    url: &str,
    udp: bool,
    seconds: Option<f64>,
) -> Result<(), String> {
    use kvs_core::rtsp::{ingest, RtspEvent, RtspOptions, RtspTransport};
    if seconds.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        return Err("--seconds must be positive".into());
    }
    runtime()?.block_on(async {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            match seconds {
                Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            let _ = stop_tx.send(true);
        });
        // Fragments lost (dropped by the producer, or refused by the
        // service without a resend) make the exit status non-zero.
        let printer = tokio::spawn(async move {
            let mut lost = 0usize;
            while let Some(e) = rx.recv().await {
                match e {
                    RtspEvent::Connected {
                        reconnection,
                        media,
                    } => crate::outln!(
                        "  connected{}: {}",
                        if reconnection > 0 { " again" } else { "" },
                        media.join(", ")
                    ),
                    RtspEvent::Reconnecting { error, delay } => {
                        crate::outln!("  reconnecting in {:.1} s: {error}", delay.as_secs_f64())
                    }
                    RtspEvent::FramesDropped { frames, reason } => {
                        crate::outln!("  dropped {} ({reason})", count(frames, "video frame"));
                    }
                    RtspEvent::NoKeyFrame { waited } => {
                        crate::outln!("  no key frame for {:.0} s", waited.as_secs_f64())
                    }
                    RtspEvent::Producer(ProducerEvent::Acked {
                        fragment_number,
                        latency,
                        frames,
                        ..
                    }) => crate::outln!(
                        "  ACK fragment #{fragment_number} ({frames} frames) in {:.1} ms",
                        ms(latency)
                    ),
                    RtspEvent::Producer(ProducerEvent::ServiceError {
                        code, retriable, ..
                    }) => {
                        crate::outln!(
                            "  ACK ERROR {code}{}",
                            if retriable { "; sending it again" } else { "" }
                        );
                    }
                    RtspEvent::Producer(ProducerEvent::FragmentDropped {
                        frames, reason, ..
                    }) => {
                        lost += 1;
                        crate::outln!(
                            "  dropped a fragment ({}): {reason}",
                            count(frames, "frame")
                        );
                    }
                    RtspEvent::Producer(ProducerEvent::LeadingFramesSkipped { frames, .. }) => {
                        crate::outln!(
                            "  skipped {} before the first video key frame",
                            count(frames, "frame")
                        );
                    }
                    _ => {}
                }
            }
            lost
        });
        let opts = RtspOptions {
            transport: if udp {
                RtspTransport::Udp
            } else {
                RtspTransport::Tcp
            },
            ..RtspOptions::default()
        };
        let builder = Producer::builder(c, stream);
        let report = ingest(url, builder, opts, tx, stop)
            .await
            .map_err(|e| e.to_string())?;
        let lost = printer.await.unwrap_or(0);
        crate::outln!(
            "{} put, {} dropped, {} to the camera",
            count(report.frames as usize, "frame"),
            report.dropped,
            count(report.reconnections as usize, "reconnection")
        );
        if report.frames == 0 {
            return Err("nothing came from the camera".into());
        }
        if lost > 0 {
            return Err(format!(
                "{} lost: not every fragment was acknowledged",
                count(lost, "fragment")
            ));
        }
        Ok(())
    })
}

/// `--format`'s value as an input format.
pub fn pipe_format(name: Option<&str>) -> Option<InputFormat> {
    match name? {
        "h264" => Some(InputFormat::AnnexB(VideoCodec::H264)),
        "h265" => Some(InputFormat::AnnexB(VideoCodec::H265)),
        _ => Some(InputFormat::Matroska),
    }
}

/// The reader of a piped input.
enum PipeReader {
    Matroska(Box<MatroskaReader>),
    AnnexB(AnnexBReader),
}

impl PipeReader {
    fn push(&mut self, b: Bytes) -> Result<Vec<Frame>, kvs_core::mkv::mux::MuxError> {
        match self {
            PipeReader::Matroska(r) => r.push(b),
            PipeReader::AnnexB(r) => r.push(&b),
        }
    }

    fn finish(&mut self) -> Result<Vec<Frame>, kvs_core::mkv::mux::MuxError> {
        match self {
            PipeReader::Matroska(r) => r.finish(),
            PipeReader::AnnexB(r) => r.finish(),
        }
    }
}

/// `kvs put`: uploads a file (see [`produce`]).
pub fn put(
    c: KvsClient,
    stream: &str,
    file: &Path,
    fps: f64,
    audio: Option<&Path>,
    realtime: bool,
) -> Result<(), String> {
    let input = input(file, fps, audio)?;
    let (report, _) = runtime()?.block_on(produce(
        Arc::new(c),
        stream,
        &input,
        realtime,
        true,
        None,
        None,
    ))?;
    report.verdict()
}

/// Epoch seconds (UTC) as a time, to the millisecond.
fn epoch(s: f64) -> Result<SystemTime, String> {
    (s.is_finite() && s >= 0.0)
        .then(|| UNIX_EPOCH + Duration::from_millis((s * 1000.0).round() as u64))
        .ok_or_else(|| format!("bad timestamp {s} (epoch seconds)"))
}

fn selector(s: &str) -> Result<StartSelector, String> {
    let ms = |t: &str| {
        t.parse::<f64>()
            .map_err(|_| format!("bad timestamp {t} (epoch seconds)"))
            .and_then(epoch)
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

/// How `kvs get` reads.
pub struct GetOptions {
    /// Stop after this many fragments.
    pub max: usize,
    /// The service's bytes unchanged rather than one merged file.
    pub raw: bool,
    /// Keep reading through resets and endpoint restarts.
    pub follow: bool,
    /// End of a time range (epoch seconds), read from the archive.
    pub end: Option<f64>,
}

/// `kvs get`: fragments into one playable file (or the service's bytes with
/// `raw`); stops after `max` fragments, or, unless `follow`, once the stream
/// has been quiet (no frame) for 3 s. `follow` keeps reading through resets and
/// endpoint restarts. With `end`, the range from a producer/server start to it.
pub fn get(
    c: KvsClient,
    stream: &str,
    start: &str,
    out: &Path,
    opts: &GetOptions,
) -> Result<(), String> {
    let GetOptions {
        max,
        raw,
        follow,
        end,
    } = *opts;
    let start = selector(start)?;
    if raw && follow {
        return Err("--raw reads one GetMedia session; it does not combine with --follow".into());
    }
    let range = match (end, &start) {
        (None, _) => None,
        (Some(e), s) => {
            let end = epoch(e)?;
            Some(match s {
                StartSelector::ProducerTimestamp(t) => {
                    FragmentSelector::Producer { start: *t, end }
                }
                StartSelector::ServerTimestamp(t) => FragmentSelector::Server { start: *t, end },
                _ => return Err("--end needs --start producer:T or server:T".into()),
            })
        }
    };
    runtime()?.block_on(async {
        // The file is made with the first fragment: nothing that came, or a
        // failure before anything came, leaves no empty file behind.
        let mut file: Option<std::io::BufWriter<std::fs::File>> = None;
        let open = |file: &mut Option<std::io::BufWriter<std::fs::File>>| {
            if file.is_none() {
                *file = Some(std::io::BufWriter::new(
                    std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?,
                ));
            }
            Ok::<(), String>(())
        };
        let mut count = 0;
        let mut skipped = 0;
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
                open(&mut file)?;
                let Some(w) = file.as_mut() else { break };
                for ch in session.take_raw() {
                    w.write_all(&ch).map_err(|e| e.to_string())?;
                }
                count += 1;
            }
        } else {
            let consumer = Consumer::builder(Arc::new(c), stream);
            let mut fragments = match range {
                Some(r) => consumer.range(r),
                None => consumer.start(start),
            };
            let mut merged = Merger::new();
            while count < max {
                let f = if follow {
                    fragments.next().await
                } else {
                    // Quiet: 3 s without a frame (a long fragment's frames
                    // keep it going though no fragment ends meanwhile).
                    let quiet = Duration::from_secs(3);
                    loop {
                        match tokio::time::timeout(quiet, fragments.next()).await {
                            Ok(f) => break f,
                            Err(_)
                                if fragments
                                    .last_frame_at()
                                    .is_some_and(|t| t.elapsed() < quiet) => {}
                            Err(_) => break None,
                        }
                    }
                };
                let Some(f) = f else { break };
                let f = f.map_err(|e| e.to_string())?;
                if f.frames.is_empty() {
                    continue;
                }
                open(&mut file)?;
                let Some(w) = file.as_mut() else { break };
                for ch in merged.push(&f).map_err(|e| e.to_string())? {
                    w.write_all(&ch).map_err(|e| e.to_string())?;
                }
                skipped = merged.overlapping();
                // A follower's file is playable up to here at any time.
                w.flush().map_err(|e| e.to_string())?;
                count += 1;
                eprintln!(
                    "fragment {} ({} frames)",
                    f.fragment_number.as_deref().unwrap_or("?"),
                    f.frames.len()
                );
            }
        }
        let Some(mut w) = file else {
            return Err(format!(
                "no fragment came from {stream} (from this start, within 3 s); {} not written",
                out.display()
            ));
        };
        w.flush().map_err(|e| e.to_string())?;
        eprintln!("{}: {count} fragments", out.display());
        if skipped > 0 {
            eprintln!(
                "{skipped} fragments left out: they cover producer time already written (a second upload of the same period)"
            );
        }
        Ok(())
    })
}
