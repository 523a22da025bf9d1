//! `kvs`: the command-line tool of the kvs library.
//!
//! Run: `cargo run --release -p kvs-examples --bin kvs -- --help`
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `println!` that stops printing, quietly, once standard output is closed
/// (`kvs put … | head`), instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod control;
mod inspect;
mod media;
mod mux;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

fn latency(seconds: f64, audio: bool, mbps: f64) -> Result<(), String> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(seconds) || !positive(mbps) {
        return Err("--seconds and --bitrate must be positive".into());
    }
    eprintln!(
        "25 fps video{} at {mbps} Mbit/s for {seconds} s, real time…",
        if audio { " + AAC" } else { "" }
    );
    let r = kvs_benches::latency::run(kvs_benches::latency::LatencyConfig {
        seconds,
        audio,
        mbps,
    })?;
    println!(
        "frame by frame:       p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} frames)",
        r.frames.p50_ms, r.frames.p99_ms, r.frames.max_ms, r.frames.frames
    );
    println!(
        "fragment by fragment: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} frames)",
        r.fragments.p50_ms, r.fragments.p99_ms, r.fragments.max_ms, r.fragments.frames
    );
    println!("{}", r.line());
    if r.frames.frames == 0 {
        return Err("no frame came back".into());
    }
    Ok(())
}

fn bench_producers(streams: usize, mbps: f64, seconds: f64) -> Result<(), String> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if streams == 0 || !positive(mbps) || !positive(seconds) {
        return Err("--streams, --bitrate and --seconds must be positive".into());
    }
    let cfg = kvs_benches::scale::ScaleConfig {
        streams,
        mbps,
        seconds,
        fps: 30,
        workers: std::thread::available_parallelism().map_or(2, usize::from),
    };
    eprintln!("{streams} producers × {mbps} Mbit/s × {seconds} s, real time…");
    let r = kvs_benches::scale::run(cfg)?;
    println!(
        "CPU {:.2} s ({:.1} % of one core); peak RSS +{:.0} KiB of which media {:.0} KiB; ACK latency p50 {:.1} ms, p99 {:.1} ms; {} frames put",
        r.cpu_seconds,
        r.cpu_seconds / seconds * 100.0,
        r.rss_growth_kib,
        r.media_kib,
        r.ack_p50_ms,
        r.ack_p99_ms,
        r.frames_put
    );
    println!("{}", r.line());
    if r.lost_frames > 0 {
        return Err(format!("{} frames were never acknowledged", r.lost_frames));
    }
    Ok(())
}

/// Tools for Amazon Kinesis Video Streams media.
#[derive(Parser)]
#[command(name = "kvs", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Scale test: N producers in this process streaming synthetic video in
    /// real time to the in-process endpoint; prints CPU, RSS and ACK latency.
    BenchProducers {
        /// Producers.
        #[arg(long, default_value_t = 100)]
        streams: usize,
        /// Bitrate of each, Mbit/s.
        #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
        bitrate: f64,
        /// Streaming time, seconds.
        #[arg(long, allow_negative_numbers = true, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Frame latency from put_frame to a live consumer over the in-process
    /// endpoint (25 fps, 2 s fragments, real time): frame by frame beside
    /// fragment by fragment, p50/p99 in ms.
    Latency {
        /// Streaming time, seconds.
        #[arg(long, allow_negative_numbers = true, default_value_t = 20.0)]
        seconds: f64,
        /// With an AAC track beside the video.
        #[arg(long)]
        audio: bool,
        /// Video bitrate, Mbit/s.
        #[arg(long, allow_negative_numbers = true, default_value_t = 2.0)]
        bitrate: f64,
    },
    /// An RTSP camera into a stream: H.264/H.265 (+ AAC or G.711), with
    /// timestamps from RTP/RTCP, reconnecting to the camera by itself.
    Rtsp {
        /// Stream name or ARN.
        #[arg(long)]
        stream: String,
        /// rtsp://[user:password@]host[:port]/path (the credentials never
        /// appear in output).
        url: String,
        /// RTP transport.
        #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp"])]
        transport: String,
        /// Stop after this many seconds (default: at Ctrl-C).
        #[arg(long, allow_negative_numbers = true)]
        seconds: Option<f64>,
        #[command(flatten)]
        aws: control::AwsArgs,
    },
    /// Summarise a Matroska file (GetMedia output, a PutMedia body, any MKV/WebM).
    Inspect {
        /// The file to read.
        file: PathBuf,
        /// Print exactly one JSON object instead of the human summary.
        #[arg(long)]
        json: bool,
    },
    /// Mux an Annex-B H.264/H.265 elementary stream into a KVS-style MKV.
    Mux {
        /// `.h264`/`.264` (H.264) or `.h265`/`.hevc` (H.265) Annex-B input.
        input: PathBuf,
        /// Output Matroska file.
        #[arg(short, long)]
        output: PathBuf,
        /// Frames per second of the video.
        #[arg(long, allow_negative_numbers = true, default_value_t = 25.0)]
        fps: f64,
        /// ADTS AAC audio to interleave.
        #[arg(long)]
        audio: Option<PathBuf>,
    },
    /// Start a local endpoint in-process, stream the bundled clip (built
    /// into this binary) to it in real time, read it back with GetMedia and
    /// check every frame.
    Demo {
        /// H.264 Annex-B video instead of the bundled clip.
        #[arg(long)]
        video: Option<PathBuf>,
        /// ADTS AAC audio instead of the bundled clip's.
        #[arg(long)]
        audio: Option<PathBuf>,
    },
    /// PutMedia: upload an .mkv/.webm, or an Annex-B .h264/.h265 (with
    /// --audio); prints each ACK. Frames before the first video key frame
    /// are skipped (counted). Without --realtime the file goes as fast as
    /// the upload takes it, nothing dropped, its producer time backdated
    /// by its length so no fragment is in the future.
    Put {
        /// Stream name or ARN.
        #[arg(long)]
        stream: String,
        /// The file, or `-` for standard input (a pipe from ffmpeg or
        /// GStreamer: Matroska/WebM or Annex-B, put as it is read).
        file: PathBuf,
        /// The format of standard input, when its first bytes should not
        /// decide: mkv (Matroska/WebM), h264 or h265 (Annex-B).
        #[arg(long, value_parser = ["mkv", "webm", "h264", "h265"])]
        format: Option<String>,
        /// Frame rate of an elementary-stream input.
        #[arg(long, allow_negative_numbers = true, default_value_t = 25.0)]
        fps: f64,
        /// ADTS AAC audio to interleave with an elementary-stream input.
        #[arg(long)]
        audio: Option<PathBuf>,
        /// Put each frame at its time (producer time starting now) instead
        /// of as fast as the upload goes.
        #[arg(long)]
        realtime: bool,
        #[command(flatten)]
        aws: control::AwsArgs,
    },
    /// GetMedia into one playable Matroska file.
    Get {
        /// Stream name or ARN.
        #[arg(long)]
        stream: String,
        /// earliest, now, fragment:N, producer:T, server:T or token:T.
        #[arg(long, default_value = "earliest")]
        start: String,
        /// Stop after this many fragments (default: no limit).
        #[arg(long)]
        max_fragments: Option<usize>,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Write the service's bytes unchanged (one EBML document per
        /// fragment, with its tags) instead of one merged, playable file.
        #[arg(long)]
        raw: bool,
        /// Keep following the live stream (through connection resets and
        /// endpoint restarts) instead of stopping once it has been quiet for 3 s.
        #[arg(long)]
        follow: bool,
        /// End of a time range, epoch seconds (UTC), with --start
        /// producer:T or server:T: the fragments that start within it,
        /// read from the archive (ListFragments and
        /// GetMediaForFragmentList, duplicates dropped as the service's
        /// playback does); the read ends after the last.
        #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["raw", "follow"])]
        end: Option<f64>,
        #[command(flatten)]
        aws: control::AwsArgs,
    },
    /// ListFragments: number, producer and server timestamps, size, duration.
    ListFragments {
        /// Stream name or ARN.
        #[arg(long)]
        stream: String,
        /// Range start, epoch seconds (with --to).
        #[arg(long, allow_negative_numbers = true, requires = "to")]
        from: Option<f64>,
        /// Range end, epoch seconds (with --from).
        #[arg(long, allow_negative_numbers = true, requires = "from")]
        to: Option<f64>,
        /// Apply the range to server timestamps instead of producer timestamps.
        #[arg(long)]
        server: bool,
        #[command(flatten)]
        aws: control::AwsArgs,
    },
    /// Run a KVS-compatible endpoint on 127.0.0.1 until interrupted.
    Local {
        /// Port (0: any free port; the URL is printed).
        #[arg(long, default_value_t = 4567)]
        port: u16,
        /// Fault to inject (may repeat): `drop-after-bytes=N` (every PutMedia,
        /// GetMedia and GetMediaForFragmentList connection is cut after N body bytes: fires every time), `error-ack=CODE@K` (the K-th
        /// fragment the endpoint receives, counted over all connections, gets
        /// an ERROR ACK with CODE and the connection ends: fires once), `ack-delay-ms=N` (every ACK is sent N ms late;
        /// ingest goes on), `throttle=P` (each control-plane call is refused
        /// with ClientLimitExceededException with probability P),
        /// `get-media-error=ID@N` (every GetMedia stops after N fragments with
        /// the service's error chunk ID).
        #[arg(long)]
        fault: Vec<String>,
        /// Keep streams and fragments here, so they survive a restart.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Require SigV4 signatures by this access key (with --secret-access-key).
        #[arg(long, requires = "secret_access_key")]
        access_key_id: Option<String>,
        /// The secret that goes with --access-key-id.
        #[arg(long, requires = "access_key_id")]
        secret_access_key: Option<String>,
        /// How many seconds a retention hour lasts: fragments expire once
        /// ingested more than their stream's retention (in these hours) ago.
        #[arg(long, default_value_t = 3600.0)]
        retention_hour_secs: f64,
        /// With --data-dir: the newest fragments per stream kept in memory
        /// (older ones are read from disk).
        #[arg(long, default_value_t = 16)]
        memory_fragments: usize,
        /// Without --data-dir: MB of fragments a stream holds in memory;
        /// beyond it the oldest expire first (0: no cap).
        #[arg(long, default_value_t = 1024)]
        max_memory_mb: u64,
    },
    /// CreateStream.
    CreateStream {
        /// Stream name.
        name: String,
        /// Data retention in hours (0: not stored).
        #[arg(long, default_value_t = 24)]
        retention_hours: u32,
        /// Media type, e.g. `video/h264,audio/aac`.
        #[arg(long)]
        media_type: Option<String>,
        #[command(flatten)]
        aws: control::AwsArgs,
    },
    /// DescribeStream (prints the JSON the service returned, as fields).
    DescribeStream {
        /// Stream name or ARN.
        name: String,
        #[command(flatten)]
        aws: control::AwsArgs,
    },
    /// ListStreams, every page.
    ListStreams {
        #[command(flatten)]
        aws: control::AwsArgs,
    },
    /// DeleteStream.
    DeleteStream {
        /// Stream name or ARN.
        name: String,
        #[command(flatten)]
        aws: control::AwsArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::BenchProducers {
            streams,
            bitrate,
            seconds,
        } => bench_producers(streams, bitrate, seconds),
        Cmd::Latency {
            seconds,
            audio,
            bitrate,
        } => latency(seconds, audio, bitrate),
        Cmd::Rtsp {
            stream,
            url,
            transport,
            seconds,
            aws,
        } => control::client(&aws)
            .and_then(|c| media::rtsp(c, &stream, &url, transport == "udp", seconds)),
        Cmd::Inspect { file, json } => inspect::run(&file, json),
        Cmd::Mux {
            input,
            output,
            fps,
            audio,
        } => mux::run(&input, &output, fps, audio.as_deref()),
        Cmd::Local {
            port,
            fault,
            data_dir,
            access_key_id,
            secret_access_key,
            retention_hour_secs,
            memory_fragments,
            max_memory_mb,
        } => {
            if !(retention_hour_secs.is_finite() && retention_hour_secs >= 0.001) {
                Err("--retention-hour-secs must be at least 0.001".into())
            } else {
                let cfg = kvs_core::local::LocalConfig {
                    port,
                    credentials: access_key_id.zip(secret_access_key),
                    data_dir,
                    retention_hour: std::time::Duration::from_secs_f64(retention_hour_secs),
                    memory_fragments,
                    max_memory_bytes_per_stream: max_memory_mb.saturating_mul(1 << 20),
                    ..kvs_core::local::LocalConfig::default()
                };
                control::local(cfg, &fault)
            }
        }
        Cmd::Demo { video, audio } => media::demo(video.as_deref(), audio.as_deref()),
        Cmd::ListFragments {
            stream,
            from,
            to,
            server,
            aws,
        } => control::client(&aws)
            .and_then(|c| control::list_fragments(&c, &stream, from.zip(to), server)),
        Cmd::Put {
            stream,
            file,
            format,
            fps,
            audio,
            realtime,
            aws,
        } => control::client(&aws).and_then(|c| {
            if file.as_os_str() == "-" {
                if audio.is_some() {
                    return Err("--audio goes with a file, not standard input".into());
                }
                media::put_pipe(c, &stream, media::pipe_format(format.as_deref()), fps)
            } else if format.is_some() {
                Err("--format goes with standard input (-); a file is told by its extension".into())
            } else {
                media::put(c, &stream, &file, fps, audio.as_deref(), realtime)
            }
        }),
        Cmd::Get {
            stream,
            start,
            max_fragments,
            output,
            raw,
            follow,
            end,
            aws,
        } => control::client(&aws).and_then(|c| {
            let opts = media::GetOptions {
                max: max_fragments.unwrap_or(usize::MAX),
                raw,
                follow,
                end,
            };
            media::get(c, &stream, &start, &output, &opts)
        }),
        Cmd::CreateStream {
            name,
            retention_hours,
            media_type,
            aws,
        } => control::create_stream(&aws, &name, retention_hours, media_type),
        Cmd::DescribeStream { name, aws } => control::describe_stream(&aws, &name),
        Cmd::ListStreams { aws } => control::list_streams(&aws),
        Cmd::DeleteStream { name, aws } => control::delete_stream(&aws, &name),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvs: {e}");
            ExitCode::FAILURE
        }
    }
}
