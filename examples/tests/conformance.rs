//! Conformance against tools no one here wrote: mkvinfo, ffprobe, ffmpeg and
//! GStreamer. Inputs are made at test time with ffmpeg, mkvmerge and
//! GStreamer, plus the real producer frame sets in `shared/vectors`.
//!
//! The README's test command installs the tools. Without one of them a test
//! says so on stderr and passes locally; under `CI=true` it fails instead.

#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use bytes::Bytes;
use kvs_core::codec::annexb::{access_units, to_avcc, VideoCodec};
use kvs_core::codec::{aac, h264, h265};
use kvs_core::mkv::{Event, Parser, ParserConfig};

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is missing; CI must have it (run the README test command)"
        );
        eprintln!("SKIPPED: {tool} is not installed (the README test command installs it)");
    }
    ok
}

fn have_all(tools: &[&str]) -> bool {
    tools.iter().all(|t| have(t))
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[path = "../../kvs-core/tests/integration/vectors_path.rs"]
mod vectors_path;
use vectors_path::vectors;

/// Test clips, made once per test binary.
struct Clips {
    dir: PathBuf,
}

impl Clips {
    fn get() -> &'static Clips {
        static CLIPS: OnceLock<Clips> = OnceLock::new();
        CLIPS.get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("conformance-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let ff = |args: &[&str]| {
                run(Command::new("ffmpeg")
                    .args(["-y", "-hide_banner", "-loglevel", "error"])
                    .args(args)
                    .current_dir(&dir));
            };
            let src = [
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
                "-t",
                "4",
                "-pix_fmt",
                "yuv420p",
            ];
            ff(&[
                &src[..],
                &["-c:v", "libx264", "-g", "25", "-bf", "0", "v.h264"],
            ]
            .concat());
            ff(&[
                &src[..],
                &[
                    "-c:v",
                    "libx265",
                    "-x265-params",
                    "log-level=none:bframes=0",
                    "-g",
                    "25",
                    "v.h265",
                ],
            ]
            .concat());
            let sine = [
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "4",
            ];
            // The encoders' defaults: B-frames, so decode and presentation order differ.
            ff(&[&src[..], &["-c:v", "libx264", "-g", "25", "vb.h264"]].concat());
            ff(&[
                &src[..],
                &[
                    "-c:v",
                    "libx265",
                    "-x265-params",
                    "log-level=none",
                    "-g",
                    "25",
                    "vb.h265",
                ],
            ]
            .concat());
            ff(&[&sine[..], &["-c:a", "aac", "-b:a", "64k", "a.aac"]].concat());
            ff(&[&sine[..], &["-c:a", "ac3", "-b:a", "96k", "a.ac3"]].concat());
            Clips { dir }
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// One packet: (pts in ms, size, key).
type Packet = (i64, u64, bool);

/// ffprobe's packets, per stream index.
fn ffprobe_packets(file: &Path) -> BTreeMap<usize, Vec<Packet>> {
    let out = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts,size,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(file));
    let mut map: BTreeMap<usize, Vec<Packet>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split(',').collect();
        assert!(f.len() >= 4, "odd ffprobe line {line:?}");
        map.entry(f[0].parse().unwrap()).or_default().push((
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].starts_with('K'),
        ));
    }
    map
}

/// Our parser's packets, per track in declaration order (= ffprobe's stream index).
fn our_packets(file: &Path, chunk: usize) -> BTreeMap<usize, Vec<Packet>> {
    let data = std::fs::read(file).unwrap();
    let mut p = Parser::new(ParserConfig::default());
    let mut order: Vec<u64> = Vec::new();
    let mut map: BTreeMap<usize, Vec<Packet>> = BTreeMap::new();
    let mut handle = |ev: Event, order: &mut Vec<u64>| match ev {
        Event::Tracks(ts) if order.is_empty() => order.extend(ts.iter().map(|t| t.number)),
        Event::Frame(f) => {
            let idx = order
                .iter()
                .position(|n| *n == f.track)
                .expect("declared track");
            map.entry(idx).or_default().push((
                f.timestamp_ns / 1_000_000,
                f.payload.len() as u64,
                f.key,
            ));
        }
        _ => {}
    };
    for c in data.chunks(chunk) {
        p.push(Bytes::copy_from_slice(c));
        while let Some(ev) = p.next_event().unwrap() {
            handle(ev, &mut order);
        }
    }
    p.finish();
    while let Some(ev) = p.next_event().unwrap() {
        handle(ev, &mut order);
    }
    map
}

/// Per stream: frames, payload bytes, first and last pts.
fn totals(m: &BTreeMap<usize, Vec<Packet>>) -> BTreeMap<usize, (usize, u64, i64, i64)> {
    m.iter()
        .map(|(k, v)| {
            (
                *k,
                (
                    v.len(),
                    v.iter().map(|p| p.1).sum(),
                    v.first().unwrap().0,
                    v.last().unwrap().0,
                ),
            )
        })
        .collect()
}

fn framemd5(file: &Path) -> Vec<String> {
    let out = run(Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v", "-f", "framemd5", "-"]));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

fn kvs(args: &[&std::ffi::OsStr]) -> std::process::Output {
    run(Command::new(env!("CARGO_BIN_EXE_kvs")).args(args))
}

fn mux(input: &Path, out: &Path, audio: Option<&Path>) {
    let mut args = vec![
        "mux".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    if let Some(a) = audio {
        args.extend(["--audio".as_ref(), a.as_os_str()]);
    }
    kvs(&args);
}

fn mkvinfo_clean(file: &Path) {
    let out = run(Command::new("mkvinfo").arg(file));
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase()
        + &String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        !text.contains("error"),
        "mkvinfo reports an error on {}:\n{text}",
        file.display()
    );
    assert!(
        text.contains("cluster"),
        "mkvinfo saw no cluster in {}",
        file.display()
    );
}

/// What `kvs mux` must write for the test clip: AVCC access units at 40 ms,
/// AAC frames at 1024 samples, independent of the builder's code.
fn expected_packets(
    video: &Path,
    codec: VideoCodec,
    audio: Option<&Path>,
) -> BTreeMap<usize, Vec<Packet>> {
    let v = Bytes::from(std::fs::read(video).unwrap());
    let mut map = BTreeMap::new();
    let units = access_units(codec, &v);
    map.insert(
        0,
        units
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let avcc = to_avcc(u).unwrap();
                (i as i64 * 40, avcc.len() as u64, codec.is_key_unit(u))
            })
            .collect::<Vec<_>>(),
    );
    if let Some(a) = audio {
        let data = Bytes::from(std::fs::read(a).unwrap());
        let (h, frames) = aac::split_adts(&data).unwrap();
        map.insert(
            1,
            frames
                .iter()
                .enumerate()
                .map(|(k, f)| {
                    (
                        ((k as f64) * 1024.0 * 1000.0 / f64::from(h.sample_rate)).round() as i64,
                        f.len() as u64,
                        true,
                    )
                })
                .collect(),
        );
    }
    map
}

#[test]
fn builder_output_is_read_back_exactly_by_mkvinfo_ffprobe_and_ffmpeg() {
    if !have_all(&["ffmpeg", "ffprobe", "mkvinfo"]) {
        return;
    }
    let c = Clips::get();
    for (input, codec, audio) in [
        ("v.h264", VideoCodec::H264, Some("a.aac")),
        ("v.h264", VideoCodec::H264, None),
        ("v.h265", VideoCodec::H265, None),
        ("v.h265", VideoCodec::H265, Some("a.aac")),
    ] {
        let out = c.path(&format!("built-{input}-{}.mkv", audio.is_some()));
        let audio = audio.map(|a| c.path(a));
        mux(&c.path(input), &out, audio.as_deref());
        mkvinfo_clean(&out);
        let want = expected_packets(&c.path(input), codec, audio.as_deref());
        assert_eq!(want[&0].len(), 100);
        let probe = ffprobe_packets(&out);
        assert_eq!(probe, want, "ffprobe packets of {}", out.display());
        assert_eq!(
            our_packets(&out, 4093),
            want,
            "our parser on {}",
            out.display()
        );
        let a = framemd5(&c.path(input));
        assert_eq!(a.len(), 100);
        assert_eq!(
            framemd5(&out),
            a,
            "decoded pictures of {} differ from the Annex-B input",
            out.display()
        );
    }
}

#[test]
fn gstreamer_plays_builder_output_to_eos() {
    if !have_all(&["ffmpeg", "gst-launch-1.0"]) {
        return;
    }
    let c = Clips::get();
    let av = c.path("gst-av.mkv");
    mux(&c.path("v.h264"), &av, Some(&c.path("a.aac")));
    let pipeline = format!(
        "filesrc location={} ! matroskademux name=d d.video_0 ! queue ! h264parse ! avdec_h264 ! fakesink \
         d.audio_0 ! queue ! aacparse ! avdec_aac ! fakesink",
        av.display()
    );
    run(Command::new("timeout")
        .args(["120", "gst-launch-1.0", "-q"])
        .args(pipeline.split_whitespace()));
    let hevc = c.path("gst-hevc.mkv");
    mux(&c.path("v.h265"), &hevc, None);
    let pipeline = format!(
        "filesrc location={} ! matroskademux ! h265parse ! avdec_h265 ! fakesink",
        hevc.display()
    );
    run(Command::new("timeout")
        .args(["120", "gst-launch-1.0", "-q"])
        .args(pipeline.split_whitespace()));
}

fn assert_parser_matches_ffprobe(file: &Path) {
    let probe = totals(&ffprobe_packets(file));
    assert!(
        !probe.is_empty(),
        "ffprobe saw no packets in {}",
        file.display()
    );
    for chunk in [1 << 20, 65536, 1000, 7] {
        assert_eq!(
            totals(&our_packets(file, chunk)),
            probe,
            "{} in {chunk}-byte chunks",
            file.display()
        );
    }
}

#[test]
fn parser_matches_ffprobe_on_ffmpeg_files() {
    if !have_all(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let c = Clips::get();
    let mk = c.path("ffmpeg-av.mkv");
    run(Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-i"])
        .arg(c.path("v.h264"))
        .arg("-i")
        .arg(c.path("a.aac"))
        .args(["-c", "copy"])
        .arg(&mk));
    assert_parser_matches_ffprobe(&mk);
    let webm = c.path("ffmpeg.webm");
    run(Command::new("ffmpeg")
        .args([
            "-y",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
        ])
        .args([
            "-t",
            "3",
            "-c:v",
            "libvpx",
            "-g",
            "25",
            "-c:a",
            "libvorbis",
            "-cluster_time_limit",
            "500",
        ])
        .arg(&webm));
    assert_parser_matches_ffprobe(&webm);
}

#[test]
fn parser_matches_ffprobe_on_mkvmerge_files_with_every_lacing() {
    if !have_all(&["ffmpeg", "ffprobe", "mkvmerge"]) {
        return;
    }
    let c = Clips::get();
    for (i, opts) in [
        &[][..],
        &["--engage", "lacing_xiph"],
        &["--engage", "lacing_ebml"],
        &["--engage", "no_simpleblocks"],
    ]
    .iter()
    .enumerate()
    {
        let out = c.path(&format!("mkvmerge-{i}.mkv"));
        run(Command::new("mkvmerge")
            .arg("-q")
            .arg("-o")
            .arg(&out)
            .args(*opts)
            .arg(c.path("v.h264"))
            .arg(c.path("a.ac3"))
            .arg(c.path("a.aac")));
        // mkvmerge laces audio (fixed lacing for the constant-size AC-3).
        let info = run(Command::new("mkvinfo").args(["-v", "-v"]).arg(&out));
        assert!(
            String::from_utf8_lossy(&info.stdout).contains("8 frame(s)"),
            "mkvmerge did not lace"
        );
        assert_parser_matches_ffprobe(&out);
    }
}

#[test]
fn parser_matches_ffprobe_on_gstreamer_streamable_files() {
    if !have_all(&["ffprobe", "gst-launch-1.0"]) {
        return;
    }
    let c = Clips::get();
    for (name, video, audio) in [
        (
            "gst-vp8.mkv",
            "vp8enc keyframe-max-dist=25 deadline=1",
            "vorbisenc",
        ),
        (
            "gst-h264.mkv",
            "openh264enc ! h264parse",
            "avenc_aac ! aacparse",
        ),
    ] {
        let out = c.path(name);
        let pipeline = format!(
            "-e videotestsrc num-buffers=100 ! video/x-raw,width=320,height=240,framerate=25/1 ! videoconvert ! {video} ! queue \
             ! matroskamux streamable=true name=m ! filesink location={} \
             audiotestsrc num-buffers=150 ! audioconvert ! {audio} ! queue ! m.",
            out.display()
        );
        run(Command::new("timeout")
            .args(["120", "gst-launch-1.0", "-q"])
            .args(pipeline.split_whitespace()));
        assert_parser_matches_ffprobe(&out);
    }
}

#[test]
fn parser_matches_ffprobe_on_every_vector_ffprobe_reads() {
    if !have("ffprobe") {
        return;
    }
    for name in [
        "kvs-parser-java/output_get_media.mkv",
        "kvs-parser-java/clusters.mkv",
        "kvs-parser-java/vogels_480.mkv",
        "kvs-parser-java/bezos_vogels.mkv",
        "kvs-producer-sdk-cpp/test-stream-1_0.mkv",
        "rust-av-matroska/big-buck-bunny_trailer.webm",
    ] {
        let p = vectors().join(name);
        let probe = totals(&ffprobe_packets(&p));
        assert_eq!(totals(&our_packets(&p, 65536)), probe, "{name}");
    }
}

fn concat_frames(dir: &Path, ext: &str) -> Vec<u8> {
    frame_files(dir, ext).concat()
}

#[test]
fn producer_frame_sets_mux_to_identical_pictures() {
    if !have_all(&["ffmpeg", "mkvinfo"]) {
        return;
    }
    let c = Clips::get();
    for (dir, ext, codec, frames, size) in [
        (
            "kvs-producer-c/h265SampleFrames",
            "h265",
            VideoCodec::H265,
            403,
            (640, 360),
        ),
        (
            "kvs-producer-embedded-c/h264_annexb",
            "h264",
            VideoCodec::H264,
            240,
            (1920, 1080),
        ),
    ] {
        let es = concat_frames(&vectors().join(dir), ext);
        let input = c.path(&format!("vector.{ext}"));
        std::fs::write(&input, &es).unwrap();
        let es = Bytes::from(es);
        assert_eq!(access_units(codec, &es).len(), frames, "{dir}");
        let dims = match codec {
            VideoCodec::H264 => {
                let mut ps = h264::ParameterSets::default();
                ps.collect_annexb(&es);
                ps.dimensions().unwrap()
            }
            VideoCodec::H265 => {
                let mut ps = h265::ParameterSets::default();
                ps.collect_annexb(&es);
                ps.dimensions().unwrap()
            }
        };
        assert_eq!(dims, size, "{dir}");
        let out = c.path(&format!("vector-{ext}.mkv"));
        mux(&input, &out, None);
        mkvinfo_clean(&out);
        let want = framemd5(&input);
        assert_eq!(want.len(), frames);
        assert_eq!(framemd5(&out), want, "{dir}");
    }
}

fn frame_files(dir: &Path, ext: &str) -> Vec<Bytes> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| Bytes::from(std::fs::read(p).unwrap()))
        .collect()
}

/// Builds H.264 (30 fps, a fragment per GOP) plus an audio track from the
/// embedded-C producer frame sets with the library, as a producer would.
fn build_av(
    audio: kvs_core::mkv::builder::TrackConfig,
    audio_frames: &[Bytes],
    audio_ns: i64,
) -> Vec<u8> {
    use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, TrackConfig};
    let video = frame_files(
        &vectors().join("kvs-producer-embedded-c/h264_annexb"),
        "h264",
    );
    let mut ps = h264::ParameterSets::default();
    ps.collect_annexb(&video[0]);
    let (w, h) = ps.dimensions().unwrap();
    let vtrack = TrackConfig::video(1, h264::CODEC_ID, ps.codec_private().unwrap(), w, h);
    let mut b = FragmentBuilder::new(StreamConfig::new(vec![vtrack, audio])).unwrap();
    let mut chunks = vec![b.header()];
    let mut next_audio = 0;
    for (g, gop) in video.chunks(30).enumerate() {
        let start = g * 30;
        let mut frames: Vec<FrameIn> = gop
            .iter()
            .enumerate()
            .map(|(i, f)| FrameIn {
                track: 1,
                timecode: ((start + i) as i64) * 1000 / 30,
                key: i == 0,
                payload: Payload::AnnexB(f.clone()),
            })
            .collect();
        let end_ms = ((start + gop.len()) as i64) * 1000 / 30;
        while next_audio < audio_frames.len() && (next_audio as i64) * audio_ns / 1_000_000 < end_ms
        {
            let timecode = next_audio as i64 * audio_ns / 1_000_000;
            frames.push(FrameIn {
                track: 2,
                timecode,
                key: true,
                payload: Payload::Raw(audio_frames[next_audio].clone()),
            });
            next_audio += 1;
        }
        frames.sort_by_key(|f| (f.timecode, f.track));
        b.fragment(&frames, &[], &mut chunks).unwrap();
    }
    chunks.concat()
}

#[test]
fn g711_and_raw_aac_tracks_are_read_by_ffmpeg() {
    if !have_all(&["ffmpeg", "ffprobe", "mkvinfo"]) {
        return;
    }
    use kvs_core::codec::g711::Law;
    use kvs_core::mkv::builder::TrackConfig;
    let c = Clips::get();
    let alaw = frame_files(&vectors().join("kvs-producer-embedded-c/g711_alaw"), "alaw");
    // The C producer's AAC-LC set (48 kHz stereo). The embedded-C set declares
    // 8 kHz mono, but its frames only decode with a 32–48 kHz configuration.
    let aac_raw = frame_files(&vectors().join("kvs-producer-c/aacSampleFrames"), "aac");
    for (name, track, frames, ns, codec, rate) in [
        (
            "g711.mkv",
            TrackConfig::g711(2, Law::ALaw, 8000, 1),
            &alaw,
            40_000_000,
            "pcm_alaw",
            8000,
        ),
        (
            "aacraw.mkv",
            TrackConfig::aac(2, 48000, 2).unwrap(),
            &aac_raw,
            1024 * 1_000_000_000 / 48000,
            "aac",
            48000,
        ),
    ] {
        let out = c.path(name);
        std::fs::write(&out, build_av(track, frames, ns)).unwrap();
        mkvinfo_clean(&out);
        let streams = run(Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,sample_rate,width,height",
                "-of",
                "csv=p=0",
            ])
            .arg(&out));
        let text = String::from_utf8(streams.stdout).unwrap();
        assert!(text.contains("h264,1920,1080"), "{name}: {text}");
        assert!(text.contains(&format!("{codec},{rate}")), "{name}: {text}");
        let packets = ffprobe_packets(&out);
        assert_eq!(packets[&0].len(), 240, "{name}");
        let audio_sent = frames
            .iter()
            .take(packets[&1].len())
            .map(|f| f.len() as u64)
            .sum::<u64>();
        assert_eq!(
            packets[&1].iter().map(|p| p.1).sum::<u64>(),
            audio_sent,
            "{name}: audio bytes"
        );
        let want_pts: Vec<i64> = (0..packets[&1].len() as i64)
            .map(|k| k * ns / 1_000_000)
            .collect();
        assert_eq!(
            packets[&1].iter().map(|p| p.0).collect::<Vec<_>>(),
            want_pts,
            "{name}: audio pts"
        );
        // Both tracks decode without a single error.
        let dec = run(Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&out)
            .args(["-f", "null", "-"]));
        assert!(
            dec.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&dec.stderr)
        );
    }
}

#[test]
fn b_frame_streams_get_presentation_timestamps() {
    if !have_all(&["ffmpeg", "ffprobe", "mkvinfo"]) {
        return;
    }
    let c = Clips::get();
    for (input, codec) in [("vb.h264", VideoCodec::H264), ("vb.h265", VideoCodec::H265)] {
        let out = c.path(&format!("{input}.mkv"));
        mux(&c.path(input), &out, Some(&c.path("a.aac")));
        mkvinfo_clean(&out);
        let probe = ffprobe_packets(&out);
        let video = &probe[&0];
        // Decode order is kept, so timestamps are not monotonic …
        assert!(
            video.windows(2).any(|w| w[1].0 < w[0].0),
            "{input}: expected B-frames"
        );
        // … but every presentation slot of 40 ms is used exactly once.
        let mut pts: Vec<i64> = video.iter().map(|p| p.0).collect();
        pts.sort_unstable();
        assert_eq!(pts, (0..100).map(|i| i * 40).collect::<Vec<_>>(), "{input}");
        // Sizes in decode order are the AVCC access units.
        let units = access_units(codec, &Bytes::from(std::fs::read(c.path(input)).unwrap()));
        let sizes: Vec<u64> = units
            .iter()
            .map(|u| to_avcc(u).unwrap().len() as u64)
            .collect();
        assert_eq!(
            video.iter().map(|p| p.1).collect::<Vec<_>>(),
            sizes,
            "{input}"
        );
        assert_eq!(our_packets(&out, 5000), probe, "{input}: our parser");
        let want = framemd5(&c.path(input));
        assert_eq!(framemd5(&out), want, "{input}: decoded pictures");
    }
}

/// Every fragment of an MKV stream, through the fragment assembler.
fn fragments_of(mkv: &[u8]) -> Vec<kvs_core::mkv::fragment::Fragment> {
    let mut asm = kvs_core::mkv::fragment::FragmentAssembler::default();
    asm.push(Bytes::copy_from_slice(mkv));
    asm.finish();
    let mut out = Vec::new();
    while let Some(f) = asm.next_fragment().unwrap() {
        out.push(f);
    }
    out
}

/// The stream as one progressive MP4 (GetClip) and as init + media
/// segments (HLS/DASH), written next to each other.
fn write_mp4s(mkv: &[u8], name: &str) -> (PathBuf, PathBuf) {
    use kvs_core::mp4;
    let frags = fragments_of(mkv);
    let tracks = mp4::Mp4Track::from_mkv(&frags[0].tracks).unwrap();
    let base = frags[0]
        .frames
        .iter()
        .map(|f| f.timestamp_ns)
        .min()
        .unwrap();
    let mut all = Vec::new();
    let mut segmented = vec![mp4::init_segment(&tracks)];
    for (i, f) in frags.iter().enumerate() {
        let next = frags
            .get(i + 1)
            .and_then(|n| n.frames.iter().map(|x| x.timestamp_ns).min());
        let samples = mp4::samples(&tracks, &f.frames, base, next);
        segmented.extend(mp4::media_segment(i as u32 + 1, &tracks, &samples));
        all.extend(samples);
    }
    let c = Clips::get();
    let (clip, frag) = (
        c.path(&format!("{name}.mp4")),
        c.path(&format!("{name}-frag.mp4")),
    );
    std::fs::write(&clip, mp4::progressive(&tracks, &all).concat()).unwrap();
    std::fs::write(&frag, segmented.concat()).unwrap();
    (clip, frag)
}

#[test]
fn mp4_clips_and_segments_play_picture_for_picture_for_every_codec() {
    if !have_all(&["ffmpeg", "ffprobe"]) {
        return;
    }
    use kvs_core::mkv::mux::mux_annexb;
    let c = Clips::get();
    // H.264 and H.265, with and without B-frames: ffmpeg decodes the same
    // pictures from the MP4s as from the MKV they came from.
    for (file, codec) in [
        ("v.h264", VideoCodec::H264),
        ("vb.h264", VideoCodec::H264),
        ("v.h265", VideoCodec::H265),
        ("vb.h265", VideoCodec::H265),
    ] {
        let video = Bytes::from(std::fs::read(c.path(file)).unwrap());
        let mkv = mux_annexb(codec, &video, 25.0, None)
            .unwrap()
            .chunks
            .concat();
        let src = c.path(&format!("{file}.mkv"));
        std::fs::write(&src, &mkv).unwrap();
        let want = framemd5(&src);
        assert_eq!(want.len(), 100, "{file}");
        let (clip, frag) = write_mp4s(&mkv, file);
        assert_eq!(framemd5(&clip), want, "{file}: progressive MP4");
        assert_eq!(framemd5(&frag), want, "{file}: fragmented MP4");
    }
    // G.711 A-law beside H.264: the audio bytes all arrive and decode cleanly.
    use kvs_core::codec::g711::Law;
    use kvs_core::mkv::builder::TrackConfig;
    let alaw = frame_files(&vectors().join("kvs-producer-embedded-c/g711_alaw"), "alaw");
    let mkv = build_av(TrackConfig::g711(2, Law::ALaw, 8000, 1), &alaw, 40_000_000);
    let want = ffprobe_packets(&{
        let p = c.path("g711-src.mkv");
        std::fs::write(&p, &mkv).unwrap();
        p
    });
    for out in <[PathBuf; 2]>::from(write_mp4s(&mkv, "g711")) {
        let got = ffprobe_packets(&out);
        assert_eq!(got[&0].len(), 240, "{}", out.display());
        let bytes = |m: &BTreeMap<usize, Vec<Packet>>| m[&1].iter().map(|p| p.1).sum::<u64>();
        assert_eq!(bytes(&got), bytes(&want), "{}: audio bytes", out.display());
        let streams = run(Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,sample_rate",
                "-of",
                "csv=p=0",
            ])
            .arg(&out));
        let text = String::from_utf8(streams.stdout).unwrap();
        assert!(text.contains("pcm_alaw,8000"), "{text}");
        let dec = run(Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&out)
            .args(["-f", "null", "-"]));
        assert!(
            dec.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&dec.stderr)
        );
    }
}
