//! `kvs put`, `kvs get` and `kvs demo`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kvs_core::auth::Credentials;
use kvs_core::client::{
    ClientConfig, CreateStream, KvsClient, PutMediaOptions, StartSelector, StreamId, TimecodeType,
};
use kvs_core::codec::aac;
use kvs_core::codec::annexb::VideoCodec;
use kvs_core::local::{LocalConfig, LocalEndpoint};
use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, TrackConfig};
use kvs_core::mkv::mux::{mux_annexb, AacInput, MuxOutput};
use kvs_core::mkv::{parse_all, Event, ParserConfig};
use kvs_core::protocol::Ack;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

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
                "{}: expected a .h264/.264 or .h265/.hevc Annex-B file",
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

/// Per-fragment ACK bookkeeping.
#[derive(Default)]
struct AckLog {
    sent_at: Vec<(u64, Instant)>,
    latencies: Vec<(u64, Duration)>,
    errors: usize,
    received: usize,
    buffering: usize,
}

impl AckLog {
    fn on_ack(&mut self, a: &Ack, quiet: bool) {
        let (kind, tc, n) = match a {
            Ack::Buffering {
                fragment_timecode,
                fragment_number,
            } => {
                self.buffering += 1;
                (
                    "BUFFERING",
                    Some(*fragment_timecode),
                    Some(fragment_number.as_str()),
                )
            }
            Ack::Received {
                fragment_timecode,
                fragment_number,
            } => {
                self.received += 1;
                (
                    "RECEIVED",
                    Some(*fragment_timecode),
                    Some(fragment_number.as_str()),
                )
            }
            Ack::Persisted {
                fragment_timecode,
                fragment_number,
            } => {
                if let Some((_, at)) = self.sent_at.iter().find(|(t, _)| t == fragment_timecode) {
                    self.latencies.push((*fragment_timecode, at.elapsed()));
                }
                (
                    "PERSISTED",
                    Some(*fragment_timecode),
                    Some(fragment_number.as_str()),
                )
            }
            Ack::Error {
                fragment_timecode,
                code,
                ..
            } => {
                self.errors += 1;
                println!("  ACK ERROR     fragment {fragment_timecode:?}: {code}");
                return;
            }
            _ => ("IDLE", None, None),
        };
        if !quiet {
            println!(
                "  ACK {kind:<10} fragment {:>8} ms  #{}",
                tc.unwrap_or(0),
                n.unwrap_or("-")
            );
        }
    }
}

/// Uploads a muxed stream, pacing fragments in real time when asked.
async fn upload(
    c: &KvsClient,
    stream: &str,
    out: &MuxOutput,
    realtime: bool,
    quiet: bool,
) -> Result<AckLog, String> {
    let opts = PutMediaOptions {
        stream: StreamId::from(stream),
        timecode_type: TimecodeType::Relative,
        producer_start_ms: now_ms(),
    };
    let mut session = c.put_media(&opts).await.map_err(|e| e.to_string())?;
    let mut log = AckLog::default();
    let start = Instant::now();
    let header_end = out
        .fragment_chunks
        .first()
        .map_or(out.chunks.len(), |(_, r)| r.start);
    for ch in &out.chunks[..header_end] {
        session.send(ch.clone()).await.map_err(|e| e.to_string())?;
    }
    // A fragment's end is visible to the service when the next fragment (or
    // the end-of-fragment tag) arrives: latency counts from then.
    let mut prev: Option<u64> = None;
    for (tc, range) in &out.fragment_chunks {
        if realtime {
            let due = start + Duration::from_millis(*tc as u64);
            // Read ACKs while waiting for the fragment's time.
            while Instant::now() < due {
                tokio::select! {
                    a = session.next_ack() => match a {
                        Some(Ok(a)) => log.on_ack(&a, quiet),
                        Some(Err(e)) => return Err(e.to_string()),
                        None => return Err("the service closed the PutMedia connection".into()),
                    },
                    _ = tokio::time::sleep_until(due.into()) => {}
                }
            }
        }
        let mut first = true;
        for ch in &out.chunks[range.clone()] {
            session.send(ch.clone()).await.map_err(|e| e.to_string())?;
            if std::mem::take(&mut first) {
                if let Some(p) = prev.take() {
                    log.sent_at.push((p, Instant::now()));
                }
            }
        }
        prev = Some(*tc as u64);
    }
    session
        .send(FragmentBuilder::end_of_fragment_tag())
        .await
        .map_err(|e| e.to_string())?;
    if let Some(p) = prev {
        log.sent_at.push((p, Instant::now()));
    }
    session.finish();
    while let Some(a) = session.next_ack().await {
        log.on_ack(&a.map_err(|e| e.to_string())?, quiet);
    }
    Ok(log)
}

fn frames_of(data: Bytes) -> Vec<(u64, i64, bool, Bytes)> {
    let (events, _) = parse_all(data, ParserConfig::default());
    events
        .into_iter()
        .filter_map(|e| {
            if let Event::Frame(f) = e {
                Some((f.track, f.timecode, f.key, f.payload))
            } else {
                None
            }
        })
        .collect()
}

pub fn demo(video: &Path, audio: &Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let ep = LocalEndpoint::start(LocalConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        println!("local KVS endpoint at {}", ep.url());
        let c = KvsClient::new(
            ClientConfig::new(
                "us-east-1",
                Credentials::new("demo", "demo", None, None, "demo"),
            )
            .endpoint(ep.url()),
        )
        .map_err(|e| e.to_string())?;
        let arn = c
            .create_stream(&CreateStream {
                stream_name: "demo".into(),
                data_retention_in_hours: 1,
                media_type: Some("video/h264,audio/aac".into()),
                ..CreateStream::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        println!("created stream {arn}");
        let out = mux_file(video, 25.0, Some(audio))?;
        println!(
            "streaming {} ({} fragments, {} video + {} audio frames) in real time…",
            video.display(),
            out.fragments,
            out.video_frames,
            out.audio_frames
        );
        let log = upload(&c, "demo", &out, true, false).await?;
        if log.errors > 0 || log.latencies.len() != out.fragments {
            return Err(format!(
                "{} fragments persisted of {}, {} errors",
                log.latencies.len(),
                out.fragments,
                log.errors
            ));
        }

        println!("reading it back with GetMedia (EARLIEST)…");
        let mut get = c
            .get_media("demo", &StartSelector::Earliest)
            .await
            .map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        for _ in 0..out.fragments {
            let f = tokio::time::timeout(Duration::from_secs(10), get.next_fragment())
                .await
                .map_err(|_| "GetMedia stalled".to_string())?
                .ok_or("GetMedia ended early")?
                .map_err(|e| e.to_string())?;
            println!(
                "  fragment #{} at {} ms: {} frames",
                f.fragment_number.as_deref().unwrap_or("?"),
                f.cluster_timecode.unwrap_or(0),
                f.frames.len()
            );
            got.extend(
                f.frames
                    .into_iter()
                    .map(|fr| (fr.track, fr.timecode, fr.key, fr.payload)),
            );
        }
        let put = frames_of(Bytes::from(out.chunks.concat()));
        if got != put {
            return Err(format!(
                "read back {} frames, put {}; they differ",
                got.len(),
                put.len()
            ));
        }
        println!("all {} frames came back byte-identical", put.len());
        println!("ACK latency, fragment end visible to the endpoint → PERSISTED:");
        for (tc, l) in &log.latencies {
            println!("  fragment {tc:>6} ms: {:.1} ms", l.as_secs_f64() * 1000.0);
        }
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
    let out = if file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mkv"))
    {
        let data = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let chunks: Vec<Bytes> = data.chunks(65_536).map(Bytes::copy_from_slice).collect();
        let n = chunks.len();
        // An MKV file is sent as it is, without pacing.
        MuxOutput {
            chunks,
            fragment_chunks: vec![(0, 0..n)],
            ..MuxOutput::default()
        }
    } else {
        mux_file(file, fps, None)?
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let log = rt.block_on(upload(&c, stream, &out, realtime, false))?;
    println!(
        "{} fragments: {} received, {} persisted, {} errors",
        log.buffering,
        log.received,
        log.latencies.len(),
        log.errors
    );
    if log.errors > 0 || log.received < log.buffering || log.buffering == 0 {
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

pub fn get(
    c: KvsClient,
    stream: &str,
    start: &str,
    max: usize,
    out: &Path,
    raw: bool,
) -> Result<(), String> {
    let start = selector(start)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut session = c
            .get_media(StreamId::from(stream), &start)
            .await
            .map_err(|e| e.to_string())?;
        if raw {
            session = session.keep_raw();
        }
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?,
        );
        let mut builder: Option<FragmentBuilder> = None;
        let mut count = 0;
        while count < max {
            let Some(f) = session.next_fragment().await else {
                break;
            };
            let f = f.map_err(|e| e.to_string())?;
            if f.frames.is_empty() || !f.complete {
                continue;
            }
            if raw {
                for ch in session.take_raw() {
                    file.write_all(&ch).map_err(|e| e.to_string())?;
                }
                count += 1;
                continue;
            }
            // One playable file: the first fragment's header, then every cluster.
            let b = match &mut builder {
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
            count += 1;
            eprintln!(
                "fragment {} ({} frames)",
                f.fragment_number.as_deref().unwrap_or("?"),
                f.frames.len()
            );
        }
        file.flush().map_err(|e| e.to_string())?;
        eprintln!("{}: {count} fragments", out.display());
        Ok(())
    })
}
