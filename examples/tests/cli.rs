//! The `kvs` tool as a user runs it: `inspect --json` on every captured
//! vector gives the numbers in `facts.json`; bad input gives a one-line reason.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[path = "../../kvs-core/tests/integration/vectors_path.rs"]
mod vectors_path;
use vectors_path::vectors;

fn kvs(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kvs"))
        .args(args)
        .output()
        .expect("kvs runs")
}

#[test]
fn inspect_json_matches_the_vector_facts() {
    let facts: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors().join("facts.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for (name, f) in facts["files"].as_object().unwrap() {
        if name.ends_with('/') {
            continue;
        }
        let out = kvs(&[
            "inspect".as_ref(),
            "--json".as_ref(),
            vectors().join(name).as_os_str(),
        ]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            stdout.trim().lines().count(),
            1,
            "{name}: exactly one JSON line"
        );
        let j: Value = serde_json::from_str(&stdout).unwrap();
        let e = &f["ebml"];
        assert_eq!(j["documents"], e["ebml_headers"], "{name}");
        assert_eq!(j["segments"], e["segments"], "{name}");
        assert_eq!(j["clusters"], e["clusters"], "{name}");
        assert_eq!(
            j["truncated"],
            Value::Bool(!e["truncated"].is_null()),
            "{name}"
        );
        for (num, t) in e["tracks"].as_object().unwrap() {
            let got = &j["tracks"][num];
            assert_eq!(got["frames"], t["frames"], "{name} track {num}");
            assert_eq!(got["frame_bytes"], t["frame_bytes"], "{name} track {num}");
            assert_eq!(got["keyframes"], t["keyframe_blocks"], "{name} track {num}");
            assert_eq!(
                got["first_ts_ns"], t["first_block_ts_ns"],
                "{name} track {num}"
            );
            assert_eq!(
                got["last_ts_ns"], t["last_block_ts_ns"],
                "{name} track {num}"
            );
            let codec = e["segment_details"][0]["tracks"][num]["codec_id"].clone();
            if !codec.is_null() {
                assert_eq!(got["codec_id"], codec, "{name} track {num}");
            }
        }
        let tags: usize = e["segment_details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["simple_tags"].as_array().map_or(0, |t| t.len()))
            .sum();
        assert_eq!(j["tags"].as_array().unwrap().len(), tags, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 15);
}

#[test]
fn inspect_rejects_what_is_not_matroska_with_one_line() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let junk = dir.join("not-matroska.bin");
    std::fs::write(&junk, b"<html><body>503 Service Unavailable</body></html>").unwrap();
    for args in [
        vec!["inspect".as_ref(), junk.as_os_str()],
        vec!["inspect".as_ref(), "--json".as_ref(), junk.as_os_str()],
    ] {
        let out = kvs(&args);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "nothing on stdout");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one-line reason: {err:?}"
        );
        assert!(
            err.contains("not Matroska") || err.contains("malformed"),
            "{err}"
        );
    }
    let missing = kvs(&["inspect".as_ref(), dir.join("nope.mkv").as_os_str()]);
    assert!(!missing.status.success());
}

#[test]
fn mux_rejects_unknown_extensions_and_bad_streams() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let txt = dir.join("clip.txt");
    std::fs::write(&txt, b"hello").unwrap();
    let out = kvs(&[
        "mux".as_ref(),
        txt.as_os_str(),
        "-o".as_ref(),
        dir.join("x.mkv").as_os_str(),
    ]);
    assert!(!out.status.success());
    let noise = dir.join("noise.h264");
    std::fs::write(&noise, [0u8, 0, 0, 1, 0x41, 0x9a, 1, 2, 3]).unwrap();
    let out = kvs(&[
        "mux".as_ref(),
        noise.as_os_str(),
        "-o".as_ref(),
        dir.join("y.mkv").as_os_str(),
    ]);
    assert!(!out.status.success());
    // A lone P slice: nothing to start a stream with.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no key frame"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bundled_clip_muxes_into_four_fragments() {
    let media = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bundled.mkv");
    let r = kvs(&[
        "mux".as_ref(),
        media.join("clip.h264").as_os_str(),
        "--audio".as_ref(),
        media.join("clip.aac").as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let j: Value = serde_json::from_slice(
        &kvs(&["inspect".as_ref(), "--json".as_ref(), out.as_os_str()]).stdout,
    )
    .unwrap();
    assert_eq!(j["clusters"], 4);
    assert_eq!(j["tracks"]["1"]["frames"], 200);
    assert_eq!(j["tracks"]["1"]["keyframes"], 4);
    // Timestamps kept: producer time, 7.96 s from first to last frame.
    let span = j["tracks"]["1"]["last_ts_ns"].as_i64().unwrap()
        - j["tracks"]["1"]["first_ts_ns"].as_i64().unwrap();
    assert_eq!(span, 7_960_000_000i64);
    assert_eq!(j["tracks"]["2"]["codec_id"], "A_AAC");
}

/// Kills the child on drop so a failed assertion leaves no server behind.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `kvs ARGS --endpoint URL` with no AWS credentials in the environment.
fn kvs_on(url: &str, home: &std::path::Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kvs"))
        .args(args)
        .args(["--endpoint", url])
        .env("HOME", home)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap()
}

/// Starts `kvs put ARGS FILE --endpoint URL` with its output piped.
fn put_child(
    url: &str,
    home: &std::path::Path,
    args: &[&str],
    file: &std::path::Path,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_kvs"))
        .arg("put")
        .args(args)
        .arg(file)
        .args(["--endpoint", url])
        .env("HOME", home)
        .env_remove("AWS_ACCESS_KEY_ID")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts `kvs local` with these extra arguments; returns it and its URL.
fn start_local(extra: &[&std::ffi::OsStr]) -> (Running, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvs"))
        .args(["local", "--port", "0"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .env_remove("AWS_ACCESS_KEY_ID")
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (Running(child), url)
}

#[test]
fn kvs_local_serves_the_control_plane_commands() {
    let (_guard, url) = start_local(&[]);
    let run = |args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--endpoint", url.as_str()]);
        Command::new(env!("CARGO_BIN_EXE_kvs"))
            .args(a)
            .env("HOME", env!("CARGO_TARGET_TMPDIR"))
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
    };
    let created = run(&[
        "create-stream",
        "porch",
        "--retention-hours",
        "2",
        "--media-type",
        "video/h264",
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let arn = String::from_utf8(created.stdout).unwrap();
    assert!(arn.starts_with("arn:aws:kinesisvideo:us-east-1:"), "{arn}");
    let listed = String::from_utf8(run(&["list-streams"]).stdout).unwrap();
    assert!(
        listed.starts_with("porch\tACTIVE\tarn:aws:kinesisvideo:"),
        "{listed}"
    );
    let described = String::from_utf8(run(&["describe-stream", "porch"]).stdout).unwrap();
    assert!(
        described.contains("retention: 2 h") && described.contains("media:     video/h264"),
        "{described}"
    );
    assert!(run(&["delete-stream", "porch"]).status.success());
    let gone = run(&["describe-stream", "porch"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("ResourceNotFoundException"));
}

#[test]
fn demo_streams_and_reads_back_every_frame() {
    let out = Command::new(env!("CARGO_BIN_EXE_kvs"))
        .arg("demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("ACK PERSISTED").count(), 4, "{text}");
    assert!(
        text.contains("all 546 frames came back byte-identical"),
        "{text}"
    );
}

/// `kvs get --start producer:T --end T`: the fragments that start in the
/// range, from the archive, each period once — the clip put twice at once
/// (the second upload covers the same producer time, a duplicate the
/// service's playback drops) gives the clip's 4 fragments and 200 pictures.
#[test]
fn get_reads_a_time_range_once() {
    let (_guard, url) = start_local(&[]);
    let dir = scratch("range");
    let run = |args: &[&std::ffi::OsStr]| kvs_on(&url, &dir, args);
    assert!(run(&["create-stream".as_ref(), "cam".as_ref()])
        .status
        .success());
    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media/clip.h264");
    for _ in 0..2 {
        let put = run(&[
            "put".as_ref(),
            "--stream".as_ref(),
            "cam".as_ref(),
            clip.as_os_str(),
        ]);
        assert!(
            put.status.success(),
            "{}",
            String::from_utf8_lossy(&put.stderr)
        );
    }
    let listed = run(&[
        "list-fragments".as_ref(),
        "--stream".as_ref(),
        "cam".as_ref(),
    ]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    let producer: Vec<f64> = listed
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(producer.len(), 8, "{listed}");
    let first = producer.iter().copied().fold(f64::MAX, f64::min);
    let last = producer.iter().copied().fold(0.0, f64::max);
    let out = dir.join("range.mkv");
    let start = format!("producer:{first:.3}");
    let end = format!("{last:.3}");
    let got = run(&[
        "get".as_ref(),
        "--stream".as_ref(),
        "cam".as_ref(),
        "--start".as_ref(),
        start.as_ref(),
        "--end".as_ref(),
        end.as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(got.status.success(), "{err}");
    assert!(err.contains(": 4 fragments"), "{err}");
    // --end needs a producer or server start.
    let bad = run(&[
        "get".as_ref(),
        "--stream".as_ref(),
        "cam".as_ref(),
        "--end".as_ref(),
        end.as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--end needs --start producer:T or server:T"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    if have_ffmpeg() {
        let packets = ffprobe_packets(&out, "v");
        assert_eq!(packets.len(), 200);
        assert!(packets.windows(2).all(|w| w[1].0 > w[0].0), "monotonic");
    }
}

#[test]
fn put_then_get_through_kvs_local() {
    let (_guard, url) = start_local(&[]);
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let kvs_at = |args: &[&std::ffi::OsStr]| kvs_on(&url, &tmp, args);
    assert!(kvs_at(&["create-stream".as_ref(), "cam".as_ref()])
        .status
        .success());
    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media/clip.h264");
    let put = kvs_at(&[
        "put".as_ref(),
        "--stream".as_ref(),
        "cam".as_ref(),
        clip.as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&put.stdout);
    assert!(
        put.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&put.stderr)
    );
    assert!(
        text.contains("4 fragments: 4 acknowledged, 0 dropped, 0 service errors"),
        "{text}"
    );
    let listed = kvs_at(&[
        "list-fragments".as_ref(),
        "--stream".as_ref(),
        "cam".as_ref(),
    ]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(
        listed.lines().count(),
        5,
        "a header and 4 fragments: {listed}"
    );
    assert!(
        listed
            .lines()
            .skip(1)
            .all(|l| l.split('\t').count() == 5 && l.ends_with("\t2000")),
        "{listed}"
    );
    let out = tmp.join("got.mkv");
    let got = kvs_at(&[
        "get".as_ref(),
        "--stream".as_ref(),
        "cam".as_ref(),
        "--max-fragments".as_ref(),
        "4".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    // One playable file: a single Segment with every frame.
    let j: Value = serde_json::from_slice(
        &kvs(&["inspect".as_ref(), "--json".as_ref(), out.as_os_str()]).stdout,
    )
    .unwrap();
    assert_eq!(
        (
            j["documents"].as_u64(),
            j["segments"].as_u64(),
            j["clusters"].as_u64()
        ),
        (Some(1), Some(1), Some(4))
    );
    assert_eq!(j["tracks"]["1"]["frames"], 200);
    // Timestamps kept: producer time, 7.96 s from first to last frame.
    let span = j["tracks"]["1"]["last_ts_ns"].as_i64().unwrap()
        - j["tracks"]["1"]["first_ts_ns"].as_i64().unwrap();
    assert_eq!(span, 7_960_000_000i64);
    // --raw: the service's bytes, one document per fragment with its tags,
    // ending exactly after the third fragment.
    let raw = tmp.join("raw.mkv");
    let got = kvs_at(&[
        "get".as_ref(),
        "--stream".as_ref(),
        "cam".as_ref(),
        "--max-fragments".as_ref(),
        "3".as_ref(),
        "--raw".as_ref(),
        "-o".as_ref(),
        raw.as_os_str(),
    ]);
    assert!(got.status.success());
    let j: Value = serde_json::from_slice(
        &kvs(&["inspect".as_ref(), "--json".as_ref(), raw.as_os_str()]).stdout,
    )
    .unwrap();
    assert_eq!(
        (j["documents"].as_u64(), j["clusters"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(j["tracks"]["1"]["frames"], 150);
    assert_eq!(j["truncated"], false, "{j}");
    let tags = j["tags"].to_string();
    assert_eq!(
        tags.matches("AWS_KINESISVIDEO_CONTINUATION_TOKEN").count(),
        3,
        "{tags}"
    );
    // And ffmpeg decodes all 200 pictures from it, where the tool is installed.
    if have_ffmpeg() {
        assert_eq!(picture_md5s(&out).len(), 200);
    }
}

#[test]
fn get_follow_survives_an_endpoint_restart() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("follow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = ["--data-dir".as_ref(), dir.as_os_str()];
    let (local, url) = start_local(&data);
    let port = url.rsplit(':').next().unwrap().to_owned();
    let kvs_at = |args: &[&std::ffi::OsStr]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kvs"));
        c.args(args)
            .args(["--endpoint", &url])
            .env("HOME", env!("CARGO_TARGET_TMPDIR"))
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_PROFILE");
        c
    };
    let ok = |mut c: Command| {
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media/clip.h264");
    ok(kvs_at(&["create-stream".as_ref(), "cam".as_ref()]));
    ok(kvs_at(&[
        "put".as_ref(),
        "--stream".as_ref(),
        "cam".as_ref(),
        clip.as_os_str(),
    ]));
    // A follower for 8 fragments: the 4 stored and 4 more after a restart.
    let out = dir.with_extension("mkv");
    let follower = kvs_at(&[
        "get".as_ref(),
        "--stream".as_ref(),
        "cam".as_ref(),
        "--follow".as_ref(),
        "--max-fragments".as_ref(),
        "8".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let follower = Running(follower);
    std::thread::sleep(std::time::Duration::from_millis(800));
    drop(local);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let restarted = Command::new(env!("CARGO_BIN_EXE_kvs"))
        .args(["local", "--port", &port])
        .args(data)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _restarted = Running(restarted);
    std::thread::sleep(std::time::Duration::from_millis(500));
    // In real time: a put as fast as it can ends at the present, so it
    // would cover the first one's producer time (and be left out of the
    // merged file as a second upload of the same period).
    ok(kvs_at(&[
        "put".as_ref(),
        "--stream".as_ref(),
        "cam".as_ref(),
        "--realtime".as_ref(),
        clip.as_os_str(),
    ]));
    let mut follower = follower;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = follower.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the follower never got 8 fragments"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success());
    let j: Value = serde_json::from_slice(
        &kvs(&["inspect".as_ref(), "--json".as_ref(), out.as_os_str()]).stdout,
    )
    .unwrap();
    assert_eq!(
        (j["segments"].as_u64(), j["clusters"].as_u64()),
        (Some(1), Some(8))
    );
    assert_eq!(j["tracks"]["1"]["frames"], 400);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&out);
}

#[test]
fn bench_producers_prints_its_summary_line() {
    let out = kvs(&[
        "bench-producers".as_ref(),
        "--streams".as_ref(),
        "5".as_ref(),
        "--seconds".as_ref(),
        "2".as_ref(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("streams=5 cpu_s_per_stream_s="), "{text}");
    assert!(last.ends_with(" lost_frames=0"), "{text}");
    for key in ["rss_kib_per_stream=", "ack_p50_ms=", "ack_p99_ms="] {
        assert!(last.contains(key), "{text}");
    }
}

/// The MD5 of every picture ffmpeg decodes from a file.
fn picture_md5s(file: &std::path::Path) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

/// Whether ffmpeg is installed; under CI a missing ffmpeg is a failure.
fn have_ffmpeg() -> bool {
    let have = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have || std::env::var("CI").as_deref() != Ok("true"),
        "ffmpeg is missing; CI must have it"
    );
    have
}

#[test]
fn b_frame_streams_round_trip_through_put_and_get() {
    if !have_ffmpeg() {
        return;
    }
    let tmp = scratch("bframes");
    let src = tmp.join("vb.h264");
    // x264's defaults: B-frames, so decode and presentation order differ.
    x264(&src, "320x240", "4", &[]);
    let (_local, url) = start_local(&[]);
    let (_, _, out) = put_and_get(&url, &tmp, "b", &src, &[]);
    let want = picture_md5s(&src);
    assert_eq!(want.len(), 100);
    assert_eq!(
        picture_md5s(&out),
        want,
        "the same pictures in the same order"
    );
    // The merged file starts at 0 and records the stream's start (DateUTC,
    // which ffprobe shows as creation_time).
    let first = ffprobe_packets(&out, "v")
        .iter()
        .map(|p| p.0)
        .min()
        .unwrap();
    assert!(first < 200, "starts at {first} ms");
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format_tags=creation_time",
            "-of",
            "csv=p=0",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let created = String::from_utf8_lossy(&probe.stdout);
    assert!(
        created.trim().starts_with("20"),
        "creation_time {created:?}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs ffmpeg with these arguments (quiet, overwriting).
fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-y", "-v", "error"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// x264 video of ffmpeg's `testsrc2` at `size`, 25 fps, 1 key frame a
/// second, for `seconds`, with these extra output options, into `out` (its
/// extension picks the container).
fn x264(out: &std::path::Path, size: &str, seconds: &str, extra: &[&str]) {
    let src = format!("testsrc2=size={size}:rate=25");
    let mut args = vec!["-f", "lavfi", "-i", src.as_str()];
    args.extend(extra);
    args.extend(["-pix_fmt", "yuv420p", "-c:v", "libx264", "-g", "25"]);
    args.extend(["-t", seconds, out.to_str().unwrap()]);
    ffmpeg(&args);
}

/// Packets of one stream as ffprobe lists them: (pts in ms, key).
fn ffprobe_packets(file: &std::path::Path, stream: &str) -> Vec<(i64, bool)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "packet=pts_time,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (t, f) = l.split_once(',')?;
            Some((
                (t.parse::<f64>().ok()? * 1000.0).round() as i64,
                f.starts_with('K'),
            ))
        })
        .collect()
}

/// Puts `file` (with extra arguments) to a new stream on `url`, gets it
/// back merged, and returns put's stdout, stderr and the file got.
fn put_and_get(
    url: &str,
    dir: &std::path::Path,
    stream: &str,
    file: &std::path::Path,
    extra: &[&str],
) -> (String, String, PathBuf) {
    put_and_get_with(url, dir, stream, file, extra, &[])
}

/// [`put_and_get`] with extra arguments for `get` too (e.g. `--raw`).
fn put_and_get_with(
    url: &str,
    dir: &std::path::Path,
    stream: &str,
    file: &std::path::Path,
    extra: &[&str],
    get_extra: &[&str],
) -> (String, String, PathBuf) {
    let run = |args: &[&std::ffi::OsStr]| kvs_on(url, dir, args);
    assert!(run(&["create-stream".as_ref(), stream.as_ref()])
        .status
        .success());
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "put".as_ref(),
        "--stream".as_ref(),
        stream.as_ref(),
        file.as_os_str(),
    ];
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    let put = run(&args);
    let (out, err) = (
        String::from_utf8_lossy(&put.stdout).into_owned(),
        String::from_utf8_lossy(&put.stderr).into_owned(),
    );
    assert!(put.status.success(), "put {}: {out}{err}", file.display());
    let got = dir.join(format!("{stream}-got.mkv"));
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "get".as_ref(),
        "--stream".as_ref(),
        stream.as_ref(),
        "-o".as_ref(),
        got.as_os_str(),
    ];
    args.extend(get_extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    let get = run(&args);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    (out, err, got)
}

/// ffmpeg's ordinary H.264 + AAC MKV (audio from 0 ms, video from ~21 ms),
/// with and without B-frames, uploads whole from the first video key frame:
/// the same pictures come back, every audio packet from the key frame on,
/// and the one audio frame before it is reported skipped.
#[test]
fn ordinary_ffmpeg_mkv_files_upload_from_the_first_key_frame() {
    if !have_ffmpeg() {
        return;
    }
    let dir = scratch("ffmpeg-mkv");
    let (_local, url) = start_local(&[]);
    for (name, bframes) in [("av", "0"), ("avb", "3")] {
        let src = dir.join(format!("{name}.mkv"));
        x264(
            &src,
            "320x240",
            "4",
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-bf",
                bframes,
                "-c:a",
                "aac",
            ],
        );
        let audio = ffprobe_packets(&src, "a");
        let first_video = ffprobe_packets(&src, "v")
            .iter()
            .map(|p| p.0)
            .min()
            .unwrap();
        assert!(
            audio[0].0 < first_video,
            "{name}: audio starts first, as ffmpeg writes it"
        );
        let (out, err, got) = put_and_get(&url, &dir, name, &src, &[]);
        let leading = audio.iter().filter(|p| p.0 < first_video).count();
        assert!(
            err.contains(&format!(
                "skipped {leading} frame{} before the first video key frame",
                if leading == 1 { "" } else { "s" }
            )),
            "{name}: {err}"
        );
        assert!(
            out.contains("4 fragments: 4 acknowledged, 0 dropped, 0 service errors"),
            "{name}: {out}"
        );
        assert_eq!(
            picture_md5s(&got),
            picture_md5s(&src),
            "{name}: the same pictures"
        );
        assert_eq!(
            ffprobe_packets(&got, "a").len(),
            audio.len() - leading,
            "{name}: audio from the key frame on"
        );
    }
}

/// An Annex-B H.264 elementary stream with its IDR and the next frames
/// cut off (a recording that starts mid-GOP), and one with an SPS carrying
/// a byte after its stop bit (a camera quirk): `kvs mux` and `kvs put`
/// take both, and ffmpeg decodes the same pictures from the result as from
/// the source from its first key frame on.
#[test]
fn mid_gop_recordings_and_quirky_sps_upload() {
    if !have_ffmpeg() {
        return;
    }
    let dir = scratch("mid-gop");
    let (_local, url) = start_local(&[]);
    // Without and with B-frames (decode order ahead of presentation order).
    for bf in ["0", "3"] {
        let src = dir.join(format!("src-{bf}.h264"));
        x264(&src, "320x240", "4", &["-bf", bf]);
        let data = std::fs::read(&src).unwrap();
        // Access units start at each slice NAL; find the 4th slice (the
        // 4th picture in decode order) and cut everything before it.
        let mut slices = Vec::new();
        let mut i = 0;
        while i + 4 < data.len() {
            if data[i..i + 3] == [0, 0, 1] {
                let t = data[i + 3] & 0x1F;
                if t == 1 || t == 5 {
                    slices.push(if i > 0 && data[i - 1] == 0 { i - 1 } else { i });
                }
                i += 3;
            } else {
                i += 1;
            }
        }
        let cut = dir.join(format!("mid-gop-{bf}.h264"));
        std::fs::write(&cut, &data[slices[3]..]).unwrap();
        // The SPS with one extra byte after its stop bit.
        let sps_at = data.windows(4).position(|w| w == [0, 0, 1, 0x67]).unwrap() + 3;
        let pps_at = sps_at
            + data[sps_at..]
                .windows(4)
                .position(|w| w == [0, 0, 1, 0x68])
                .unwrap();
        let sps_end = pps_at - usize::from(data[pps_at - 1] == 0);
        let mut quirky = data[..sps_end].to_vec();
        quirky.push(0x5a);
        quirky.extend_from_slice(&data[sps_end..]);
        let quirky_path = dir.join(format!("quirky-{bf}.h264"));
        std::fs::write(&quirky_path, &quirky).unwrap();

        let want_all = picture_md5s(&src);
        assert_eq!(want_all.len(), 100);
        for (name, file, skipped, want) in [
            (
                format!("midgop{bf}"),
                &cut,
                22usize,
                want_all[25..].to_vec(),
            ),
            (format!("quirky{bf}"), &quirky_path, 0, want_all.clone()),
        ] {
            let muxed = dir.join(format!("{name}.mkv"));
            let m = kvs(&[
                "mux".as_ref(),
                file.as_os_str(),
                "-o".as_ref(),
                muxed.as_os_str(),
            ]);
            assert!(
                m.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&m.stderr)
            );
            // The same pictures in the same (presentation) order.
            assert_eq!(picture_md5s(&muxed), want, "{name}: kvs mux");
            let (out, _, got) = put_and_get(&url, &dir, &name, file, &[]);
            assert!(
                out.contains(&format!("({skipped} skipped before the first key frame)")),
                "{name}: {out}"
            );
            assert_eq!(picture_md5s(&got), want, "{name}: kvs put + get");
        }
    }
}

/// A camera reconfigured mid-stream (320x240, then 640x360): every fragment
/// carries the CodecPrivate and size of the parameter sets in force — in
/// `kvs mux`'s file and in what `kvs put` stored — and the pictures decode.
#[test]
fn parameter_set_changes_start_a_fragment_with_a_new_header() {
    if !have_ffmpeg() {
        return;
    }
    let dir = scratch("reconfigured");
    let a = dir.join("a.h264");
    let b = dir.join("b.h264");
    for (f, size) in [(&a, "320x240"), (&b, "640x360")] {
        x264(f, size, "2", &["-bf", "0"]);
    }
    let both = dir.join("both.h264");
    std::fs::write(
        &both,
        [std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()].concat(),
    )
    .unwrap();
    // mkvinfo reads the first EBML document of a file: each document (a
    // stream header and what follows it) is handed to it on its own.
    let sizes = |file: &std::path::Path| -> Vec<(u64, u64, String)> {
        let data = std::fs::read(file).unwrap();
        let mut starts: Vec<usize> = data
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == [0x1A, 0x45, 0xDF, 0xA3])
            .map(|(i, _)| i)
            .collect();
        starts.push(data.len());
        let mut out = Vec::new();
        for (k, w) in starts.windows(2).enumerate() {
            let part = dir.join(format!("doc-{k}.mkv"));
            std::fs::write(&part, &data[w[0]..w[1]]).unwrap();
            let info = Command::new("mkvinfo").arg(&part).output().unwrap();
            let text = String::from_utf8_lossy(&info.stdout).into_owned();
            let grab = |key: &str| -> u64 {
                text.lines()
                    .find_map(|l| l.split_once(key).and_then(|(_, v)| v.trim().parse().ok()))
                    .unwrap_or_else(|| panic!("no {key} in {text}"))
            };
            let private = text
                .lines()
                .find_map(|l| {
                    l.split_once("Codec's private data: ")
                        .map(|(_, v)| v.to_owned())
                })
                .unwrap_or_default();
            out.push((grab("Pixel width:"), grab("Pixel height:"), private));
        }
        out
    };
    let have_mkvinfo = Command::new("mkvinfo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have_mkvinfo || std::env::var("CI").as_deref() != Ok("true"),
        "mkvinfo is missing; CI must have it"
    );
    let muxed = dir.join("both.mkv");
    let m = kvs(&[
        "mux".as_ref(),
        both.as_os_str(),
        "-o".as_ref(),
        muxed.as_os_str(),
    ]);
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let (_local, url) = start_local(&[]);
    let (_, _, raw) = put_and_get_with(&url, &dir, "cam", &both, &[], &["--raw"]);
    if have_mkvinfo {
        // kvs mux: one header per parameter-set generation, each with the
        // size and CodecPrivate (avcC) of its SPS.
        let m = sizes(&muxed);
        let dims: Vec<(u64, u64)> = m.iter().map(|d| (d.0, d.1)).collect();
        assert_eq!(dims, vec![(320, 240), (640, 360)]);
        assert_ne!(m[0].2, m[1].2, "a new CodecPrivate");
        // GetMedia: one document (and header) per fragment, 2 of each.
        let r = sizes(&raw);
        let dims: Vec<(u64, u64)> = r.iter().map(|d| (d.0, d.1)).collect();
        assert_eq!(dims, vec![(320, 240), (320, 240), (640, 360), (640, 360)]);
        assert_eq!(r[1].2, m[0].2);
        assert_eq!(r[3].2, m[1].2);
        // An MKV whose stream header changes (the GetMedia output itself)
        // put again: the producer follows the new header there too.
        let (_, _, again) = put_and_get_with(&url, &dir, "again", &raw, &[], &["--raw"]);
        let a = sizes(&again);
        let dims: Vec<(u64, u64)> = a.iter().map(|d| (d.0, d.1)).collect();
        assert_eq!(dims, vec![(320, 240), (320, 240), (640, 360), (640, 360)]);
        assert_eq!(a[0].2, m[0].2);
        assert_eq!(a[2].2, m[1].2);
    }
    // Every picture of both parts decodes, at its own size, from the muxed
    // file and from what was stored.
    let unscaled = |file: &std::path::Path| -> Vec<String> {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(file)
            .args(["-map", "0:v", "-autoscale", "0", "-f", "framemd5", "-"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
            .collect()
    };
    let want: Vec<String> = [unscaled(&a), unscaled(&b)].concat();
    assert_eq!(want.len(), 100);
    assert_eq!(unscaled(&muxed), want);
    assert_eq!(unscaled(&raw), want);
    // Merged into one file (one stream header): the second part's
    // parameter sets travel in-band with its key frames, so its pictures
    // decode at their own size too.
    let merged = dir.join("merged.mkv");
    let get = kvs_on(
        &url,
        &dir,
        &[
            "get".as_ref(),
            "--stream".as_ref(),
            "cam".as_ref(),
            "-o".as_ref(),
            merged.as_os_str(),
        ],
    );
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(unscaled(&merged), want);
    // Parameter sets only in CodecPrivate (frames without SPS/PPS, as
    // ffmpeg's MKV files can carry them): the two parts put one after the
    // other; the merged file carries the second part's in-band, and every
    // picture decodes at its own size.
    let run = |args: &[&std::ffi::OsStr]| kvs_on(&url, &dir, args);
    assert!(run(&["create-stream".as_ref(), "oob".as_ref()])
        .status
        .success());
    for part in [&a, &b] {
        let mkv = part.with_extension("mkv");
        let (src, dst) = (part.to_str().unwrap(), mkv.to_str().unwrap());
        ffmpeg(&[
            "-i",
            src,
            "-c",
            "copy",
            "-bsf:v",
            "filter_units=remove_types=7|8",
            dst,
        ]);
        // In real time: the second part's producer time follows the first's.
        let put = run(&[
            "put".as_ref(),
            "--stream".as_ref(),
            "oob".as_ref(),
            "--realtime".as_ref(),
            mkv.as_os_str(),
        ]);
        assert!(
            put.status.success(),
            "{}",
            String::from_utf8_lossy(&put.stderr)
        );
    }
    let merged = dir.join("oob.mkv");
    let get = run(&[
        "get".as_ref(),
        "--stream".as_ref(),
        "oob".as_ref(),
        "-o".as_ref(),
        merged.as_os_str(),
    ]);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(unscaled(&merged), want);
}

/// `kvs put FILE.h264 --audio FILE.aac` interleaves ADTS audio as `kvs mux`
/// does; a stream without retention prints RECEIVED ACKs.
#[test]
fn put_takes_audio_for_elementary_streams_and_prints_the_real_ack_type() {
    let dir = scratch("put-audio");
    let media = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media");
    let (_local, url) = start_local(&[]);
    let run = |args: &[&std::ffi::OsStr]| kvs_on(&url, &dir, args);
    assert!(run(&[
        "create-stream".as_ref(),
        "live".as_ref(),
        "--retention-hours".as_ref(),
        "0".as_ref()
    ])
    .status
    .success());
    let put = run(&[
        "put".as_ref(),
        "--stream".as_ref(),
        "live".as_ref(),
        media.join("clip.h264").as_os_str(),
        "--audio".as_ref(),
        media.join("clip.aac").as_os_str(),
    ]);
    let out = String::from_utf8_lossy(&put.stdout);
    assert!(
        put.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&put.stderr)
    );
    assert_eq!(out.matches("ACK RECEIVED").count(), 4, "{out}");
    assert!(!out.contains("PERSISTED"), "{out}");
    assert!(out.contains("546 frames (0 skipped"), "{out}");
}

/// The tool's small truths: `inspect` of an empty file fails; a closed
/// standard output ends quietly; help shows real defaults; `demo` needs no
/// file of the build tree.
#[test]
fn the_tool_tells_the_truth() {
    let dir = scratch("truths");
    let empty = dir.join("empty.mkv");
    std::fs::write(&empty, b"").unwrap();
    let r = kvs(&["inspect".as_ref(), empty.as_os_str()]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("no Matroska data"));

    let help =
        |cmd: &str| String::from_utf8(kvs(&[cmd.as_ref(), "--help".as_ref()]).stdout).unwrap();
    assert!(
        !help("get").contains("18446744073709551615"),
        "{}",
        help("get")
    );
    let create = help("create-stream");
    let media_line = create.lines().find(|l| l.contains("--media-type")).unwrap();
    assert!(!media_line.contains("default"), "{media_line}");
    assert!(help("local").contains("fires once"), "{}", help("local"));
    // A fault spelled wrong says how to spell it.
    let bad = kvs(&[
        "local".as_ref(),
        "--fault".as_ref(),
        "error-ack=4006".as_ref(),
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("expected error-ack=CODE@K"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // Inspecting an elementary stream points at mux and put.
    let es = dir.join("clip.h264");
    std::fs::write(&es, [0u8, 0, 0, 1, 0x67, 0x42]).unwrap();
    let r = kvs(&["inspect".as_ref(), es.as_os_str()]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("kvs mux"));

    // `kvs put … | head -1`: the tool finishes its upload without a panic.
    let (_local, url) = start_local(&[]);
    assert!(
        kvs_on(&url, &dir, &["create-stream".as_ref(), "p".as_ref()])
            .status
            .success()
    );
    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media/clip.h264");
    let mut child = put_child(&url, &dir, &["--stream", "p"], &clip);
    drop(child.stdout.take()); // the reader went away
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A put to a stream that does not exist says how to create it, on the
    // same endpoint.
    let r = kvs_on(
        &url,
        &dir,
        &[
            "put".as_ref(),
            "--stream".as_ref(),
            "absent".as_ref(),
            clip.as_os_str(),
        ],
    );
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(&format!("kvs create-stream absent --endpoint {url}")),
        "{err}"
    );
    // A negative number is a value to refuse, not a flag.
    let r = kvs(&["latency".as_ref(), "--seconds".as_ref(), "-1".as_ref()]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("must be positive"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );

    // `kvs get` of a stream with nothing in it, or of no stream: a reason,
    // a non-zero exit, and no empty file left behind.
    assert!(
        kvs_on(&url, &dir, &["create-stream".as_ref(), "quiet".as_ref()])
            .status
            .success()
    );
    for stream in ["quiet", "nosuch"] {
        let got = dir.join(format!("{stream}.mkv"));
        let r = kvs_on(
            &url,
            &dir,
            &[
                "get".as_ref(),
                "--stream".as_ref(),
                stream.as_ref(),
                "-o".as_ref(),
                got.as_os_str(),
            ],
        );
        assert!(!r.status.success(), "{stream}");
        assert!(!got.exists(), "{stream}: no empty file");
    }

    // demo from another directory, with the build tree's clip out of reach.
    let demo = Command::new(env!("CARGO_BIN_EXE_kvs"))
        .arg("demo")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let help = help("demo");
    assert!(!help.contains("media/clip.h264"), "{help}");
}

/// Ctrl-C during `kvs put --realtime`: the input stops, what was put is
/// delivered (the open fragment closed and acknowledged, not abandoned),
/// the summary is printed and the exit says it was interrupted.
#[test]
fn an_interrupted_put_delivers_what_it_took_and_says_so() {
    let dir = scratch("interrupted");
    let (_local, url) = start_local(&[]);
    assert!(
        kvs_on(&url, &dir, &["create-stream".as_ref(), "i".as_ref()])
            .status
            .success()
    );
    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media/clip.h264");
    let child = put_child(&url, &dir, &["--realtime", "--stream", "i"], &clip);
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.contains("interrupted after"))
        .unwrap_or_else(|| panic!("no summary: {stdout}{stderr}"));
    assert!(summary.contains(" 0 dropped"), "{summary}");
    // Every fragment acknowledged is stored, the last one (open at Ctrl-C)
    // included: about 3 s of an 8 s clip, so 2 fragments.
    let acked: usize = summary
        .split(" acknowledged")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    let listed = kvs_on(
        &url,
        &dir,
        &["list-fragments".as_ref(), "--stream".as_ref(), "i".as_ref()],
    );
    let fragments = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert!((1..4).contains(&acked), "{summary}");
    assert_eq!(
        fragments,
        acked,
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
}

/// Runs `source | tee SRC | kvs put --stream STREAM - [extra]` through a
/// shell; returns put's standard output and error.
fn pipe_put(
    url: &str,
    dir: &std::path::Path,
    source: &str,
    src: &std::path::Path,
    stream: &str,
    extra: &str,
) -> String {
    assert!(
        kvs_on(url, dir, &["create-stream".as_ref(), stream.as_ref()])
            .status
            .success()
    );
    let line = format!(
        "set -o pipefail; {source} | tee '{}' | '{}' put --stream {stream} - {extra} --endpoint {url}",
        src.display(),
        env!("CARGO_BIN_EXE_kvs"),
    );
    let out = Command::new("bash")
        .args(["-c", &line])
        .env("HOME", dir)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{line}: {text}");
    text
}

/// Pipes into `kvs put -`: ffmpeg's Matroska (x264 with B-frames and AAC,
/// from a lavfi source), ffmpeg's raw H.264 (Annex-B, `--fps`), and
/// GStreamer's streamable Matroska (videotestsrc through x264enc,
/// audiotestsrc through avenc_aac): every picture the pipe carried comes
/// back decoded identically, with its audio, and the upload keeps the
/// input's own pace (real time).
#[test]
fn put_reads_pipes_from_ffmpeg_and_gstreamer() {
    if !have_ffmpeg() {
        return;
    }
    let have_gst = Command::new("gst-inspect-1.0")
        .arg("x264enc")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have_gst || std::env::var("CI").as_deref() != Ok("true"),
        "GStreamer with x264enc (gstreamer1.0-plugins-ugly) is missing; CI must have it"
    );
    let (_local, url) = start_local(&[]);
    let dir = scratch("pipes");
    let mut cases = vec![
        (
            "ffmpeg-mkv",
            "ffmpeg -v error -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 3 -c:v libx264 -g 25 -pix_fmt yuv420p -c:a aac -f matroska -".to_owned(),
            "",
            75,
        ),
        (
            "ffmpeg-h264",
            "ffmpeg -v error -f lavfi -i testsrc2=size=320x240:rate=25 -t 3 -c:v libx264 -g 25 -bf 0 -pix_fmt yuv420p -f h264 -".to_owned(),
            "--fps 25",
            75,
        ),
    ];
    if have_gst {
        cases.push((
            "gstreamer-mkv",
            "gst-launch-1.0 -q videotestsrc num-buffers=75 ! video/x-raw,width=320,height=240,framerate=25/1 ! x264enc key-int-max=25 ! h264parse ! queue ! mux. audiotestsrc num-buffers=141 samplesperbuffer=1024 ! audio/x-raw,rate=48000 ! audioconvert ! avenc_aac ! aacparse ! queue ! mux. matroskamux name=mux streamable=true ! fdsink fd=1".to_owned(),
            "",
            75,
        ));
    }
    for (name, source, extra, pictures) in cases {
        let src = dir.join(format!("{name}.src"));
        let started = std::time::Instant::now();
        let text = pipe_put(&url, &dir, &source, &src, name, extra);
        assert!(text.contains("0 dropped"), "{name}: {text}");
        // The input's pace: 3 s of media take about 3 s to put.
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(2500),
            "{name}: put faster than real time ({:?})",
            started.elapsed()
        );
        let got = dir.join(format!("{name}.mkv"));
        let get = kvs_on(
            &url,
            &dir,
            &[
                "get".as_ref(),
                "--stream".as_ref(),
                name.as_ref(),
                "-o".as_ref(),
                got.as_os_str(),
            ],
        );
        assert!(
            get.status.success(),
            "{}",
            String::from_utf8_lossy(&get.stderr)
        );
        let want = picture_md5s(&src);
        assert_eq!(want.len(), pictures, "{name}");
        assert_eq!(picture_md5s(&got), want, "{name}: the same pictures");
        if !extra.contains("fps") {
            // The audio came too: every AAC packet from the first key frame on.
            let audio = ffprobe_packets(&got, "a");
            let source_audio = ffprobe_packets(&src, "a");
            assert!(
                !audio.is_empty() && source_audio.len() - audio.len() <= 2,
                "{name}: {} of {} audio packets",
                audio.len(),
                source_audio.len()
            );
        }
    }
}

/// Resident memory of a process, bytes (`VmRSS` in /proc).
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Soak: `kvs local --data-dir` taking several GB faster than real time
/// (`KVS_SOAK_MB`, default 4,096 MB: 10 MB fragments of 25 frames) into a
/// stream with a 1-hour retention whose hour lasts 1 s: the endpoint's
/// resident memory stays under a fixed bound (it would hold every byte if
/// fragments stayed in memory), the expired fragments are gone from
/// ListFragments and from disk, and every fragment still within retention
/// reads back whole.
#[test]
#[allow(clippy::print_stderr)] // the measured figures, for the record
fn a_long_upload_keeps_the_endpoint_within_bounds() {
    use bytes::Bytes;
    use kvs_core::client::{ClientConfig, CreateStream, KvsClient};
    use kvs_core::producer::{PressurePolicy, Producer};
    use kvs_core::{Credentials, Frame, Payload, TrackConfig};
    use std::time::{Duration, SystemTime};

    const BOUND: u64 = 400 << 20;
    let total_mb: u64 = std::env::var("KVS_SOAK_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let dir = scratch("soak");
    let (local, url) = start_local(&[
        "--data-dir".as_ref(),
        dir.as_os_str(),
        "--retention-hour-secs".as_ref(),
        "1".as_ref(),
        "--memory-fragments".as_ref(),
        "4".as_ref(),
    ]);
    let pid = local.0.id();
    // The endpoint's memory, sampled while it works.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                peak.fetch_max(rss(pid), std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // The key frame: the bundled clip's first access unit (SPS, PPS, IDR);
    // the others 400 KB each (a slice NAL unit of filler).
    let clip =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media/clip.h264")).unwrap();
    let key = kvs_core::codec::annexb::access_units(
        kvs_core::codec::annexb::VideoCodec::H264,
        &Bytes::from(clip),
    )[0]
    .clone();
    let filler = {
        let mut f = vec![0u8; 400 * 1024];
        let len = (f.len() - 4) as u32;
        f[..4].copy_from_slice(&len.to_be_bytes());
        f[4] = 0x41;
        for (i, b) in f[5..].iter_mut().enumerate() {
            *b = (i % 251) as u8 | 1;
        }
        Bytes::from(f)
    };
    let frames = (total_mb << 20) / filler.len() as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (listed, expired_files, read_back) = rt.block_on(async {
        let c = KvsClient::new(
            ClientConfig::new("us-east-1", Credentials::new("a", "b", None, None, "soak"))
                .endpoint(url.as_str()),
        )
        .unwrap();
        c.create_stream(&CreateStream {
            stream_name: "soak".into(),
            data_retention_in_hours: 1,
            ..CreateStream::default()
        })
        .await
        .unwrap();
        let mut video = TrackConfig::video(1, "V_MPEG4/ISO/AVC", Bytes::new(), 0, 0);
        video.codec_private = None;
        // Backdated by the media's length: no producer time in the future.
        let media = Duration::from_millis(frames * 40);
        let p = Producer::builder(c.clone(), "soak")
            .track(video)
            .start_time(SystemTime::now() - media)
            .pressure(PressurePolicy::Wait)
            .build()
            .await
            .unwrap();
        for i in 0..frames {
            let (is_key, payload) = if i % 25 == 0 {
                (true, Payload::AnnexB(key.clone()))
            } else {
                (false, Payload::Raw(filler.clone()))
            };
            p.put_frame(Frame {
                track: 1,
                pts: Duration::from_millis(i * 40),
                dts: None,
                key: is_key,
                payload,
            })
            .await
            .unwrap();
        }
        p.finish(Duration::from_secs(120)).await.unwrap();
        // A longer retention, at once: what is listed now stays to be read.
        let version = c.describe_stream("soak").await.unwrap().version.unwrap();
        c.update_data_retention(
            "soak",
            &version,
            kvs_core::client::RetentionChange::Increase,
            1000,
        )
        .await
        .unwrap();
        let mut listed = c.list_fragments("soak", None).await.unwrap();
        listed.sort_by(|a, b| a.producer_timestamp.total_cmp(&b.producer_timestamp));
        let numbers: Vec<String> = listed.iter().map(|f| f.fragment_number.clone()).collect();
        let on_disk = std::fs::read_dir(dir.join("media").join("s-soak"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "mkv"))
            .count();
        let read_back = c
            .get_media_for_fragment_list("soak", &numbers)
            .await
            .unwrap();
        (listed.len(), on_disk, read_back)
    });
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    sampler.join().unwrap();
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    let fragments = (frames as usize).div_ceil(25);
    eprintln!(
        "soak: {total_mb} MB in {fragments} fragments; endpoint peak RSS {} MB; {listed} fragments within retention",
        peak >> 20
    );
    assert!(peak > 0, "the endpoint's memory was read");
    assert!(peak < BOUND, "peak RSS {} MB", peak >> 20);
    assert!(
        listed < fragments / 2,
        "{listed} of {fragments} still listed: expired ones stay"
    );
    assert_eq!(
        expired_files, listed,
        "the expired fragments' files are gone"
    );
    assert_eq!(read_back.len(), listed);
    let last = frames as usize - 25 * (fragments - 1);
    for (i, f) in read_back.iter().enumerate() {
        assert!(f.complete);
        let want = if i + 1 == read_back.len() { last } else { 25 };
        assert_eq!(f.frames.len(), want, "whole");
        assert!(f.frames[1..].iter().all(|fr| fr.payload == filler));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The web console of `kvs local` in a real browser: headless Chromium
/// (Debian's `chromium`) driven by `playwright-core` (npm, in `.tools`)
/// through `examples/tests/console/check.js` — a stream put with `kvs put`
/// is listed, its live video plays (time advances, 640 pixels wide as the
/// clip) both through Chromium's own HLS and through the Media Source
/// Extensions player, the timeline shows its 4 fragments, thumbnails come
/// from GetImages; the screenshots are saved under the target directory.
#[test]
fn the_web_console_plays_a_stream_in_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let modules = root.join(".tools/node_modules");
    let ready = modules.join("playwright-core").exists()
        && std::path::Path::new("/usr/bin/chromium").exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ready {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "node, chromium or .tools/node_modules/playwright-core is missing; CI must have them (run the README test command)"
        );
        return;
    }
    let (_local, url) = start_local(&[]);
    let dir = scratch("console");
    let media = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media");
    assert!(
        kvs_on(&url, &dir, &["create-stream".as_ref(), "cam".as_ref()])
            .status
            .success()
    );
    let put = kvs_on(
        &url,
        &dir,
        &[
            "put".as_ref(),
            "--stream".as_ref(),
            "cam".as_ref(),
            media.join("clip.h264").as_os_str(),
            "--audio".as_ref(),
            media.join("clip.aac").as_os_str(),
        ],
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (player, shot) in [("", "console.png"), ("?player=mse", "console-mse.png")] {
        let shot = artifacts.join(shot);
        let out = Command::new("node")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console/check.js"))
            .arg(format!("{url}/{player}"))
            .args(["cam", "640", "4"])
            .arg(&shot)
            .env("NODE_PATH", &modules)
            .output()
            .unwrap();
        let seen = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{player}: {seen}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(seen.trim()).unwrap();
        assert_eq!(v["fragments"], 4, "{seen}");
        assert_eq!(v["video_width"], 640, "{seen}");
        assert_eq!(v["advanced"], true, "{seen}");
        if player.is_empty() {
            assert_eq!(v["mode"], "native-hls", "Chromium plays HLS itself: {seen}");
        } else {
            assert_eq!(v["mode"], "mse", "{seen}");
        }
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 10_000,
            "a screenshot"
        );
    }
}

/// A real RTSP server on 127.0.0.1 (GStreamer's gst-rtsp-server through
/// `python3-gi`, `examples/tests/rtsp/server.py`: a live x264 camera with
/// AAC, digest authentication); returns it and its port (`port` 0: any).
fn rtsp_server(port: u16) -> (Running, u16) {
    use std::io::BufRead;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rtsp/server.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["cam", "s3cret-pass", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port from the RTSP server: {line:?}"));
    (Running(child), port)
}

/// Slice NAL units (types 1 and 5), each without the trailing zero bytes
/// of the byte stream.
fn slices<'a>(nals: impl Iterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    nals.filter(|n| n.first().is_some_and(|b| matches!(b & 0x1f, 1 | 5)))
        .map(|n| {
            let end = n.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            n[..end].to_vec()
        })
        .collect()
}

/// The slice NAL units of a merged MKV's video track, in order, and its
/// picture count.
fn mkv_slices(file: &std::path::Path) -> (Vec<Vec<u8>>, usize) {
    let mut asm = kvs_core::mkv::fragment::FragmentAssembler::default();
    asm.push(bytes::Bytes::from(std::fs::read(file).unwrap()));
    asm.finish();
    let (mut out, mut pictures) = (Vec::new(), 0);
    while let Some(f) = asm.next_fragment().unwrap() {
        for fr in f.frames.iter().filter(|fr| fr.track == 1) {
            let nals = kvs_core::codec::annexb::avcc_nals(&fr.payload, 4).unwrap();
            out.extend(slices(nals.iter().map(|n| &n[..])));
            pictures += 1;
        }
    }
    (out, pictures)
}

/// The slice NAL units of an Annex-B H.264 file, in order (RTP
/// depacketizers may put parameter sets between a picture's slices, so
/// slices, not access units, are what two recordings share).
fn annexb_slices(file: &std::path::Path) -> Vec<Vec<u8>> {
    let data = bytes::Bytes::from(std::fs::read(file).unwrap());
    slices(
        kvs_core::codec::annexb::nal_units(&data)
            .iter()
            .map(|n| &n[..]),
    )
}

/// `kvs rtsp` against a real RTSP server with digest authentication: over
/// TCP the pictures read back from the endpoint are the camera's, byte for
/// byte (ffmpeg, a second client of the same shared media, records the
/// reference), with the AAC track; over UDP too; a camera killed and
/// restarted mid-stream costs one reconnection event and only the time it
/// was away, every picture still decoding; a wrong password fails; the
/// password never appears in any output.
#[test]
fn rtsp_cameras_stream_into_kvs() {
    let have_server = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have_server || std::env::var("CI").as_deref() != Ok("true"),
        "gst-rtsp-server for python3 (gir1.2-gst-rtsp-server-1.0, python3-gi) is missing; CI must have it"
    );
    if !have_server || !have_ffmpeg() {
        return;
    }
    let (_local, url) = start_local(&[]);
    let dir = scratch("rtsp");
    let (camera, port) = rtsp_server(0);
    let cam_url = format!("rtsp://cam:s3cret-pass@127.0.0.1:{port}/cam");
    let rtsp = |stream: &str, extra: &[&str]| -> std::process::Child {
        assert!(
            kvs_on(&url, &dir, &["create-stream".as_ref(), stream.as_ref()])
                .status
                .success()
        );
        Command::new(env!("CARGO_BIN_EXE_kvs"))
            .args(["rtsp", "--stream", stream, &cam_url])
            .args(extra)
            .args(["--endpoint", &url])
            .env("HOME", &dir)
            .env_remove("AWS_ACCESS_KEY_ID")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let output = |child: std::process::Child| -> String {
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(
            !text.contains("s3cret"),
            "the password in the output: {text}"
        );
        text
    };
    let get = |stream: &str| -> PathBuf {
        let got = dir.join(format!("{stream}.mkv"));
        let g = kvs_on(
            &url,
            &dir,
            &[
                "get".as_ref(),
                "--stream".as_ref(),
                stream.as_ref(),
                "-o".as_ref(),
                got.as_os_str(),
            ],
        );
        assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
        got
    };

    // TCP, with ffmpeg recording what the camera sends meanwhile.
    let reference = dir.join("reference.h264");
    let recorder = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-rtsp_transport",
            "tcp",
            "-i",
            &cam_url,
        ])
        .args(["-map", "0:v", "-c", "copy", "-t", "9", "-f", "h264"])
        .arg(&reference)
        .spawn()
        .unwrap();
    let tcp = output(rtsp("tcp", &["--seconds", "6"]));
    assert!(
        tcp.contains("connected: video/h264, audio/mpeg4-generic"),
        "{tcp}"
    );
    assert!(recorder.wait_with_output().unwrap().status.success());
    let got = get("tcp");
    let (ours, pictures) = mkv_slices(&got);
    let theirs = annexb_slices(&reference);
    assert!(pictures >= 100, "{pictures} pictures in 6 s");
    // Whichever client started first, the slices both have are the same,
    // in the same order.
    let (a, b) = match theirs.iter().position(|p| *p == ours[0]) {
        Some(at) => (0, at),
        None => (
            ours.iter()
                .position(|p| *p == theirs[0])
                .expect("a slice in common with the recording"),
            0,
        ),
    };
    let overlap = (ours.len() - a).min(theirs.len() - b);
    assert!(overlap >= 100, "{overlap} slices to compare");
    assert!(
        ours[a..a + overlap] == theirs[b..b + overlap],
        "the camera's pictures, byte for byte"
    );
    assert!(!ffprobe_packets(&got, "a").is_empty(), "the AAC track came");

    // The README's first camera command: ffmpeg copying the camera into a
    // pipe (it hands a picture's slices over in separate packets).
    let copied = dir.join("copied.src");
    let text = pipe_put(
        &url,
        &dir,
        &format!("ffmpeg -v error -rtsp_transport tcp -i {cam_url} -t 4 -c copy -f matroska -"),
        &copied,
        "copied",
        "",
    );
    assert!(text.contains("0 dropped"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    let got = get("copied");
    let (_, pictures) = mkv_slices(&got);
    assert!(pictures >= 75, "{pictures} pictures copied");
    assert_eq!(picture_md5s(&got).len(), pictures, "every picture decodes");

    // UDP.
    let udp = output(rtsp("udp", &["--transport", "udp", "--seconds", "4"]));
    assert!(udp.contains("connected: video/h264"), "{udp}");
    let got = get("udp");
    let (_, pictures) = mkv_slices(&got);
    assert!(pictures >= 60, "{pictures} pictures over UDP");
    assert_eq!(picture_md5s(&got).len(), pictures, "every picture decodes");

    // The camera goes away for ~2 s and comes back on the same port.
    let child = rtsp("restart", &["--seconds", "10"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    drop(camera);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (_camera, again) = rtsp_server(port);
    assert_eq!(again, port);
    let text = output(child);
    assert_eq!(
        text.matches("reconnecting").count(),
        1,
        "one event for the outage: {text}"
    );
    assert!(text.contains("connected again"), "{text}");
    assert!(text.contains("1 reconnection to the camera"), "{text}");
    let got = get("restart");
    let pts = ffprobe_packets(&got, "v");
    assert_eq!(picture_md5s(&got).len(), pts.len(), "every picture decodes");
    let gap = pts.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(
        gap >= 1500,
        "the outage is a gap on the timeline ({gap} ms)"
    );
    assert!(
        pts.len() >= 5 * 25,
        "{} pictures: only the outage is missing",
        pts.len()
    );

    // A wrong password: an error, without the password.
    let bad = Command::new(env!("CARGO_BIN_EXE_kvs"))
        .args(["rtsp", "--stream", "tcp"])
        .arg(format!("rtsp://cam:wrong-s3cret@127.0.0.1:{port}/cam"))
        .args(["--seconds", "30", "--endpoint", &url])
        .env("HOME", &dir)
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{text}");
    assert!(text.contains("rtsp://127.0.0.1:"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}
