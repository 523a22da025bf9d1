//! GetClip, HLS and DASH from the local endpoint, played by ffmpeg/ffprobe:
//! every picture of the uploaded clip comes out of the MP4 clip, the HLS
//! playlist and the DASH manifest decoded identically to the source, and
//! the audio decodes; GetImages gives the picture on screen at each instant.
#![cfg(feature = "local")]
#![allow(clippy::print_stderr)]

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::{endpoint_with_stream, http_get as get, persisted};
use kvs_core::client::{
    FragmentSelector, KvsClient, PlaybackMode, ServiceException, StreamingSessionOptions,
    TimecodeType,
};
use kvs_core::local::{LocalConfig, LocalEndpoint};
use serde_json::json;

const START_MS: u64 = 1_732_012_345_000;

fn have(tool: &str) -> bool {
    crate::support::have(tool, "-version")
}

async fn run(args: Vec<String>) -> String {
    let out = tokio::process::Command::new(&args[0])
        .args(&args[1..])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The MD5 of every decoded picture of `input` (a file or URL), in order.
async fn picture_md5s(input: &str) -> Vec<String> {
    let out = run([
        "ffmpeg", "-v", "error", "-i", input, "-map", "0:v", "-f", "framemd5", "-",
    ]
    .map(String::from)
    .to_vec())
    .await;
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

/// Packets per codec type (`video`/`audio`) that ffprobe reads from `input`.
async fn packet_counts(input: &str) -> (usize, usize) {
    let out = run([
        "ffprobe",
        "-v",
        "error",
        "-count_packets",
        "-show_entries",
        "stream=codec_type,codec_name,nb_read_packets",
        "-of",
        "csv=p=0",
        input,
    ]
    .map(String::from)
    .to_vec())
    .await;
    let mut v = 0;
    let mut a = 0;
    // HLS inputs list each stream twice (in its program and on its own).
    let lines: std::collections::BTreeSet<&str> = out.lines().collect();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let Ok(n) = f.last().unwrap().trim().parse::<usize>() else {
            continue;
        };
        match (f[0], f[1]) {
            ("h264", "video") => v += n,
            ("aac", "audio") => a += n,
            other => panic!("unexpected stream {other:?} in {input}"),
        }
    }
    (v, a)
}

/// Video packet times (s) ffprobe reads from a file or URL.
async fn video_pts(input: &str) -> Vec<f64> {
    run([
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        "v",
        "-show_entries",
        "packet=pts_time",
        "-of",
        "csv=p=0",
        input,
    ]
    .map(String::from)
    .to_vec())
    .await
    .lines()
    .map(|l| l.trim().trim_end_matches(','))
    .filter(|l| !l.is_empty())
    .map(|l| l.parse().unwrap_or_else(|_| panic!("{l:?}")))
    .collect()
}

/// GetClip on one producer-time timeline, duplicates dropped (issue 13):
/// a second RELATIVE upload 6 s after the first ends plays after a 6 s gap
/// (its timecodes restart at 0); an upload of the same period again (what a
/// resend after a lost ACK does) adds nothing to the clip or the HLS
/// playlist — the fragment ingested first is kept.
#[tokio::test]
async fn clips_keep_one_timeline_and_drop_duplicates() {
    let (_ep, c) = stream_with_av().await;
    for at in [START_MS, START_MS + 14_000] {
        common::put_clip(&c, "cam", at).await;
    }
    if !have("ffprobe") {
        return;
    }
    let clip = c
        .get_clip(
            "cam",
            FragmentSelector::Producer {
                start: crate::support::at_ms(START_MS),
                end: crate::support::at_ms(START_MS + 30_000),
            },
        )
        .await
        .unwrap();
    let file = tmp("one-timeline.mp4");
    std::fs::write(&file, &clip.data).unwrap();
    let pts = video_pts(&file.display().to_string()).await;
    assert_eq!(pts.len(), 400, "each period once");
    assert!(pts.windows(2).all(|w| w[1] > w[0]), "no jump back");
    // 0 → 7.96 s, a 6 s gap, 14 → 21.96 s.
    assert!(
        (pts[399] - pts[0] - 21.96).abs() < 0.01,
        "{} {}",
        pts[0],
        pts[399]
    );
    assert!((pts[200] - pts[199] - 6.04).abs() < 0.01, "the gap kept");
    let _ = std::fs::remove_file(&file);
    let url = c
        .get_hls_streaming_session_url(
            "cam",
            &StreamingSessionOptions {
                playback_mode: PlaybackMode::OnDemand,
                selector: Some(FragmentSelector::Producer {
                    start: crate::support::at_ms(START_MS),
                    end: crate::support::at_ms(START_MS + 30_000),
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, playlist) = get(&url.replace("getHLSMasterPlaylist", "getHLSMediaPlaylist")).await;
    assert_eq!(playlist.matches("#EXTINF").count(), 8, "{playlist}");
    // The master playlist names every track's codec (video and AAC).
    let (_, master) = get(&url).await;
    assert!(
        master.contains("CODECS=\"avc1.") && master.contains(",mp4a.40.2\""),
        "{master}"
    );
}

/// POSTs `body` to the endpoint's `path` unsigned (the test endpoint takes
/// any caller): status, `x-amzn-ErrorType` and body.
async fn post_json(url: &str, path: &str, body: &serde_json::Value) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url.strip_prefix("http://").unwrap().trim_end_matches('/');
    let body = body.to_string();
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    tcp.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let kind = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(": ")?;
            name.eq_ignore_ascii_case("x-amzn-ErrorType")
                .then(|| value.to_owned())
        })
        .unwrap_or_default();
    (head[9..12].parse().unwrap(), kind, body.to_owned())
}

/// Two 8 s uploads (4 fragments each, RELATIVE timecodes) with a 6 s gap
/// between them.
async fn two_uploads_with_a_gap() -> (LocalEndpoint, KvsClient) {
    let (ep, c) = endpoint_with_stream(LocalConfig::default(), "cam", 1).await;
    for at in [START_MS, START_MS + 14_000] {
        common::put_clip(&c, "cam", at).await;
    }
    (ep, c)
}

fn both_uploads() -> FragmentSelector {
    FragmentSelector::Producer {
        start: crate::support::at_ms(START_MS),
        end: crate::support::at_ms(START_MS + 30_000),
    }
}

/// The media playlist of an HLS session asked for with `opts`.
async fn media_playlist(c: &KvsClient, opts: &StreamingSessionOptions) -> String {
    let url = c.get_hls_streaming_session_url("cam", opts).await.unwrap();
    let (status, list) = get(&url.replace("getHLSMasterPlaylist", "getHLSMediaPlaylist")).await;
    assert_eq!(status, 200, "{list}");
    list
}

/// GetHLSStreamingSessionURL's members as its reference defines them:
/// EXTINF is each fragment's own media (2 s), not the distance to the next
/// one (8 s before the gap); DiscontinuityMode puts `EXT-X-DISCONTINUITY`
/// everywhere, nowhere or where the timeline breaks (the 6 s gap), with
/// the documented defaults per selector type; DisplayFragmentTimestamp adds
/// `EXT-X-PROGRAM-DATE-TIME`; values outside the model's enumerations, a
/// TimestampRange in LIVE mode and a range over 24 hours are refused.
#[tokio::test]
async fn hls_session_members_are_honoured_or_refused() {
    use kvs_core::client::DiscontinuityMode;
    let (ep, c) = two_uploads_with_a_gap().await;
    let on_demand = StreamingSessionOptions {
        playback_mode: PlaybackMode::OnDemand,
        selector: Some(both_uploads()),
        ..Default::default()
    };
    // PRODUCER_TIMESTAMP: NEVER by default.
    let list = media_playlist(&c, &on_demand).await;
    assert_eq!(list.matches("#EXTINF:2.000,").count(), 8, "{list}");
    assert!(!list.contains("#EXT-X-DISCONTINUITY"), "{list}");
    assert!(!list.contains("#EXT-X-PROGRAM-DATE-TIME"), "{list}");
    let segments = |list: &str| -> Vec<String> {
        list.split("#EXTINF")
            .skip(1)
            .map(|seg| seg.to_owned())
            .collect()
    };
    let marks = |mode| {
        let c = &c;
        let opts = StreamingSessionOptions {
            discontinuity_mode: Some(mode),
            ..on_demand.clone()
        };
        async move {
            let list = media_playlist(c, &opts).await;
            // Which segments (by index) a discontinuity tag precedes.
            segments(&list)
                .iter()
                .enumerate()
                .filter(|(_, seg)| seg.contains("#EXT-X-DISCONTINUITY\n"))
                .map(|(i, _)| i + 1)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        marks(DiscontinuityMode::Always).await,
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(marks(DiscontinuityMode::Never).await, Vec::<usize>::new());
    // Only at the 6 s gap: the fragments within an upload follow on.
    assert_eq!(marks(DiscontinuityMode::OnDiscontinuity).await, [4]);

    // SERVER_TIMESTAMP: ALWAYS by default.
    let server = StreamingSessionOptions {
        selector: Some(FragmentSelector::Server {
            start: std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
            end: std::time::SystemTime::now(),
        }),
        ..on_demand.clone()
    };
    let list = media_playlist(&c, &server).await;
    assert_eq!(list.matches("#EXT-X-DISCONTINUITY\n").count(), 7, "{list}");

    // DisplayFragmentTimestamp=ALWAYS: each segment's producer start.
    let list = media_playlist(
        &c,
        &StreamingSessionOptions {
            display_fragment_timestamp: true,
            ..on_demand.clone()
        },
    )
    .await;
    let times: Vec<&str> = list
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .collect();
    assert_eq!(times.len(), 8, "{list}");
    assert_eq!(times[0], "2024-11-19T10:32:25Z");
    assert_eq!(times[4], "2024-11-19T10:32:39Z", "after the gap");

    // Refused as the models say.
    let url = ep.url().to_owned();
    let refused = [
        json!({"StreamName": "cam", "DiscontinuityMode": "SOMETIMES"}),
        json!({"StreamName": "cam", "DisplayFragmentTimestamp": "YES"}),
        json!({"StreamName": "cam", "ContainerFormat": "MKV"}),
        json!({"StreamName": "cam", "PlaybackMode": "REWIND"}),
        json!({"StreamName": "cam", "MaxMediaPlaylistFragmentResults": 0}),
        json!({"StreamName": "cam", "Expires": 299}),
        json!({"StreamName": "cam", "HLSFragmentSelector": {"FragmentSelectorType": "PRODUCER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": 1_732_012_345.0}}}),
        json!({"StreamName": "cam", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": {
            "FragmentSelectorType": "PRODUCER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": 1_732_012_345.0, "EndTimestamp": 1_732_012_345.0 + 86_401.0}}}),
        json!({"StreamName": "cam", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": {
            "FragmentSelectorType": "SERVER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": 1.0, "EndTimestamp": 4_000_000_000.0}}}),
    ];
    for body in refused {
        let (status, kind, msg) = post_json(&url, "/getHLSStreamingSessionURL", &body).await;
        assert_eq!(status, 400, "{body}: {msg}");
        assert!(
            kind.starts_with("InvalidArgumentException"),
            "{body}: {kind}"
        );
    }
    // The valid spellings of the same members are taken.
    let ok = json!({"StreamName": "cam", "PlaybackMode": "LIVE", "DiscontinuityMode": "ON_DISCONTINUITY",
        "DisplayFragmentTimestamp": "NEVER", "ContainerFormat": "MPEG_TS",
        "HLSFragmentSelector": {"FragmentSelectorType": "PRODUCER_TIMESTAMP"},
        "MaxMediaPlaylistFragmentResults": 3, "Expires": 43200});
    let (status, _, msg) = post_json(&url, "/getHLSStreamingSessionURL", &ok).await;
    assert_eq!(status, 200, "{msg}");
    let live = serde_json::from_str::<serde_json::Value>(&msg).unwrap()["HLSStreamingSessionURL"]
        .as_str()
        .unwrap()
        .replace("getHLSMasterPlaylist", "getHLSMediaPlaylist");
    let (_, list) = get(&live).await;
    assert_eq!(list.matches("#EXTINF").count(), 3, "{list}");
    // The live window (fragments 6–8) is past the gap: its one
    // discontinuity is counted, not shown.
    assert!(list.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{list}");
    assert!(!list.contains("#EXT-X-DISCONTINUITY\n"), "{list}");
}

/// GetDASHStreamingSessionURL's members: every segment at its place on the
/// timeline (`t` after the 6 s gap, `d` its own 2 s), `kvs:ts` and `kvs:fn`
/// on each `S` when asked for, DisplayFragmentNumber refused outside its
/// enumeration.
#[tokio::test]
async fn dash_session_members_are_honoured_or_refused() {
    let (ep, c) = two_uploads_with_a_gap().await;
    let opts = StreamingSessionOptions {
        playback_mode: PlaybackMode::OnDemand,
        selector: Some(both_uploads()),
        display_fragment_timestamp: true,
        display_fragment_number: true,
        ..Default::default()
    };
    let url = c
        .get_dash_streaming_session_url("cam", &opts)
        .await
        .unwrap();
    let (_, mpd) = get(&url).await;
    let s: Vec<&str> = mpd.lines().filter(|l| l.starts_with("<S ")).collect();
    assert_eq!(s.len(), 8, "{mpd}");
    assert!(s[0].starts_with("<S t=\"0\" d=\"2000\""), "{mpd}");
    assert!(s[1].starts_with("<S d=\"2000\""), "{mpd}");
    assert!(
        s[4].starts_with("<S t=\"14000\" d=\"2000\""),
        "the gap: {mpd}"
    );
    assert!(s[0].contains("kvs:ts=\"2024-11-19T10:32:25Z\""), "{mpd}");
    let numbers = c.list_fragments("cam", Some(both_uploads())).await.unwrap();
    let first = numbers
        .iter()
        .min_by(|a, b| a.producer_timestamp.total_cmp(&b.producer_timestamp))
        .unwrap();
    assert!(
        s[0].contains(&format!("kvs:fn=\"{}\"", first.fragment_number)),
        "{mpd}"
    );
    assert!(mpd.contains("xmlns:kvs="), "{mpd}");
    assert!(
        mpd.contains("mediaPresentationDuration=\"PT22.000S\""),
        "{mpd}"
    );
    let (status, kind, msg) = post_json(
        ep.url(),
        "/getDASHStreamingSessionURL",
        &json!({"StreamName": "cam", "DisplayFragmentNumber": "SOMETIMES"}),
    )
    .await;
    assert_eq!(status, 400, "{msg}");
    assert!(kind.starts_with("InvalidArgumentException"), "{kind}");
}

/// The playlists and manifests as third-party tools read them
/// (`playback_check.py`: boto3 opens the sessions, the `m3u8` package parses
/// the playlists, PyAV reads every segment, lxml checks each MPD against the
/// MPD schema): no rule of RFC 8216 or of the MPD schema broken, every
/// segment lasting its EXTINF/`d` and starting where the playlist or the
/// SegmentTimeline puts it, discontinuities where the 6 s gap is.
#[tokio::test]
async fn playlists_and_manifests_pass_the_validators_rules() {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", "import boto3, m3u8, av, lxml"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            ".venv with boto3, m3u8, av and lxml is missing; CI must have it (run the README test command)"
        );
        eprintln!("SKIPPED: .venv with boto3, m3u8, av and lxml not found");
        return;
    }
    let (ep, _c) = two_uploads_with_a_gap().await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/integration/playback_check.py");
    let xsd = std::env::var("KVS_MPD_XSD").unwrap_or_default();
    let out = run(vec![
        py.display().to_string(),
        script.display().to_string(),
        ep.url().to_owned(),
        "cam".into(),
        format!("{}", START_MS / 1000),
        format!("{}", START_MS / 1000 + 30),
        xsd,
    ])
    .await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["errors"], json!([]), "{out}");
    let s = &v["summary"];
    assert_eq!(s["hls-NEVER"]["discontinuities"], json!([]), "{out}");
    assert_eq!(
        s["hls-ALWAYS"]["discontinuities"],
        json!([1, 2, 3, 4, 5, 6, 7]),
        "{out}"
    );
    assert_eq!(
        s["hls-ON_DISCONTINUITY"]["discontinuities"],
        json!([4]),
        "{out}"
    );
    assert_eq!(s["hls-ts"]["discontinuities"], json!([4]), "{out}");
    assert_eq!(s["hls-NEVER"]["program_date_times"], 8, "{out}");
    assert_eq!(s["hls-live"]["segments"], 3, "{out}");
    assert_eq!(s["dash"]["segments"], 8, "{out}");
}

fn source_h264() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/media/clip.h264")
        .display()
        .to_string()
}

async fn stream_with_av() -> (LocalEndpoint, KvsClient) {
    let (ep, c) = endpoint_with_stream(LocalConfig::default(), "cam", 1).await;
    let data = common::clip(true);
    let (acks, err) = common::put_all(&c, "cam", &data, TimecodeType::Relative, START_MS).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(persisted(&acks).len(), 4);
    (ep, c)
}

fn whole() -> FragmentSelector {
    FragmentSelector::Producer {
        start: crate::support::at_ms(START_MS),
        end: crate::support::at_ms(START_MS + 10_000),
    }
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{name}", std::process::id()))
}

#[tokio::test]
async fn get_clip_is_an_mp4_ffmpeg_plays_picture_for_picture() {
    let (_ep, c) = stream_with_av().await;
    let clip = c.get_clip("cam", whole()).await.unwrap();
    assert_eq!(&clip.data[4..8], b"ftyp");
    if !have("ffmpeg") || !have("ffprobe") {
        return;
    }
    let file = tmp("clip.mp4");
    std::fs::write(&file, &clip.data).unwrap();
    let f = file.display().to_string();
    assert_eq!(packet_counts(&f).await, (200, 346));
    assert_eq!(picture_md5s(&f).await, picture_md5s(&source_h264()).await);
    // The audio decodes from start to end without an error.
    run([
        "ffmpeg", "-v", "error", "-xerror", "-i", &f, "-map", "0:a", "-f", "null", "-",
    ]
    .map(String::from)
    .to_vec())
    .await;
    // A part of the stream: the two middle fragments.
    let part = c
        .get_clip(
            "cam",
            FragmentSelector::Producer {
                start: crate::support::at_ms(START_MS + 1000),
                end: crate::support::at_ms(START_MS + 4500),
            },
        )
        .await
        .unwrap();
    std::fs::write(&file, &part.data).unwrap();
    assert_eq!(packet_counts(&f).await.0, 100);
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn get_clip_errors_are_the_services() {
    let (_ep, c) = stream_with_av().await;
    let code = |e: kvs_core::client::ClientError| e.service_code().cloned();
    let none = c
        .get_clip(
            "cam",
            FragmentSelector::Server {
                start: crate::support::at_ms(1000),
                end: crate::support::at_ms(2000),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(none), Some(ServiceException::ResourceNotFound));
    let long = c
        .get_clip(
            "cam",
            FragmentSelector::Producer {
                start: crate::support::at_ms(START_MS),
                end: crate::support::at_ms(START_MS + 25 * 3600 * 1000),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(long), Some(ServiceException::InvalidArgument));
    c.create_stream(&kvs_core::client::CreateStream {
        stream_name: "relay".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let no_retention = c.get_clip("relay", whole()).await.unwrap_err();
    assert_eq!(code(no_retention), Some(ServiceException::NoDataRetention));
    let hls = c
        .get_hls_streaming_session_url("relay", &StreamingSessionOptions::default())
        .await
        .unwrap_err();
    assert_eq!(code(hls), Some(ServiceException::NoDataRetention));
    let on_demand_without_range = c
        .get_dash_streaming_session_url(
            "cam",
            &StreamingSessionOptions {
                playback_mode: PlaybackMode::OnDemand,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        code(on_demand_without_range),
        Some(ServiceException::InvalidArgument)
    );
    // An empty range: the models want the end later than the start.
    let empty = FragmentSelector::Producer {
        start: crate::support::at_ms(START_MS + 1000),
        end: crate::support::at_ms(START_MS + 1000),
    };
    let clip = c.get_clip("cam", empty).await.unwrap_err();
    assert_eq!(code(clip), Some(ServiceException::InvalidArgument));
    let replay = StreamingSessionOptions {
        playback_mode: PlaybackMode::OnDemand,
        selector: Some(empty),
        ..Default::default()
    };
    let hls = c
        .get_hls_streaming_session_url("cam", &replay)
        .await
        .unwrap_err();
    assert_eq!(code(hls), Some(ServiceException::InvalidArgument));
    let dash = c
        .get_dash_streaming_session_url("cam", &replay)
        .await
        .unwrap_err();
    assert_eq!(code(dash), Some(ServiceException::InvalidArgument));
}

#[tokio::test]
async fn hls_and_dash_sessions_play_in_ffmpeg() {
    let (_ep, c) = stream_with_av().await;
    let on_demand = StreamingSessionOptions {
        playback_mode: PlaybackMode::OnDemand,
        selector: Some(whole()),
        ..Default::default()
    };
    let hls = c
        .get_hls_streaming_session_url("cam", &on_demand)
        .await
        .unwrap();
    assert!(
        hls.contains("/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken="),
        "{hls}"
    );
    let dash = c
        .get_dash_streaming_session_url("cam", &on_demand)
        .await
        .unwrap();
    assert!(
        dash.contains("/dash/v1/getDASHManifest.mpd?SessionToken="),
        "{dash}"
    );

    // The playlists as a player sees them.
    let (status, master) = get(&hls).await;
    assert_eq!(status, 200, "{master}");
    assert!(
        master.contains("CODECS=\"avc1.") && master.contains("mp4a.40.2"),
        "{master}"
    );
    assert!(master.contains("RESOLUTION=640x360"), "{master}");
    let media_url = hls.replace("getHLSMasterPlaylist.m3u8", "getHLSMediaPlaylist.m3u8");
    let (_, playlist) = get(&media_url).await;
    assert_eq!(playlist.matches("#EXTINF:2.000,").count(), 4, "{playlist}");
    assert!(playlist.contains("#EXT-X-TARGETDURATION:2\n"), "{playlist}");
    assert!(playlist.contains("#EXT-X-MAP:URI=") && playlist.ends_with("#EXT-X-ENDLIST\n"));

    // LIVE: the newest fragments, no end.
    let live = c
        .get_hls_streaming_session_url(
            "cam",
            &StreamingSessionOptions {
                max_fragment_results: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, live_list) = get(&live.replace("getHLSMasterPlaylist", "getHLSMediaPlaylist")).await;
    assert_eq!(live_list.matches("#EXTINF").count(), 2, "{live_list}");
    assert!(live_list.contains("#EXT-X-MEDIA-SEQUENCE:2") && !live_list.contains("ENDLIST"));

    // A bad token is refused as the service refuses it.
    let (status, body) = get(&hls.replace("SessionToken=", "SessionToken=x")).await;
    assert_eq!(status, 403, "{body}");

    if !have("ffmpeg") || !have("ffprobe") {
        return;
    }
    let source = picture_md5s(&source_h264()).await;
    assert_eq!(picture_md5s(&hls).await, source, "HLS pictures");
    assert_eq!(packet_counts(&hls).await, (200, 346));
    assert_eq!(picture_md5s(&dash).await, source, "DASH pictures");
    // HLS with MPEG-TS segments.
    let ts = c
        .get_hls_streaming_session_url(
            "cam",
            &StreamingSessionOptions {
                mpeg_ts: true,
                ..on_demand.clone()
            },
        )
        .await
        .unwrap();
    let (_, ts_list) = get(&ts.replace("getHLSMasterPlaylist", "getHLSMediaPlaylist")).await;
    assert!(
        ts_list.contains("getTSFragment.ts?") && !ts_list.contains("EXT-X-MAP"),
        "{ts_list}"
    );
    assert_eq!(picture_md5s(&ts).await, source, "HLS MPEG-TS pictures");
    assert_eq!(packet_counts(&ts).await, (200, 346));
    run([
        "ffmpeg", "-v", "error", "-xerror", "-i", &ts, "-f", "null", "-",
    ]
    .map(String::from)
    .to_vec())
    .await;
}

/// Frame `n` of the source clip as RGB, decoded by ffmpeg.
#[cfg(feature = "images")]
async fn ffmpeg_frame(n: usize) -> Vec<u8> {
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i", &source_h264(), "-vf"])
        .arg(format!("select=eq(n\\,{n})"))
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// The mean absolute difference of two pictures' samples (RGB bytes).
#[cfg(feature = "images")]
fn mean_difference(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len() as f64
}

#[cfg(feature = "images")]
fn png_rgb(data: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut r = png::Decoder::new(std::io::Cursor::new(data))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// GetImages plays the deduplicated timeline: the clip uploaded again 2 s
/// later covers the times of the first upload's last three fragments with
/// other pictures; the first ingested are the ones shown there, and the
/// second upload's last fragment (past the first's end) is shown after.
#[cfg(feature = "images")]
#[tokio::test]
async fn get_images_show_the_first_ingested_of_duplicates() {
    use kvs_core::client::{GetImagesRequest, ImageFormat, ImageSelectorType};
    let (_ep, c) = stream_with_av().await;
    common::put_clip(&c, "cam", START_MS + 2000).await;
    if !have("ffmpeg") {
        return;
    }
    // (ms after START_MS, the source frame on screen then).
    for (at, frame) in [(2000, 50), (4200, 105), (8200, 155)] {
        let req = GetImagesRequest {
            selector_type: ImageSelectorType::Producer,
            start: crate::support::at_ms(START_MS + at),
            end: crate::support::at_ms(START_MS + at + 1),
            sampling_interval_ms: Some(200),
            format: ImageFormat::Png,
            size: None,
            max_results: Some(1),
        };
        let images = c.get_images("cam", &req).await.unwrap();
        let (_, _, ours) = png_rgb(images[0].content.as_ref().unwrap());
        let theirs = ffmpeg_frame(frame).await;
        let mean = mean_difference(&ours, &theirs);
        assert!(
            mean < 4.0,
            "at {at} ms: frame {frame}? mean difference {mean}"
        );
    }
}

#[cfg(feature = "images")]
#[tokio::test]
async fn get_images_are_the_pictures_at_those_instants() {
    use kvs_core::client::{GetImagesRequest, ImageFormat, ImageSelectorType};
    let (_ep, c) = stream_with_av().await;
    let req = GetImagesRequest {
        selector_type: ImageSelectorType::Producer,
        start: crate::support::at_ms(START_MS - 2000),
        end: crate::support::at_ms(START_MS + 7800),
        sampling_interval_ms: Some(200),
        format: ImageFormat::Png,
        size: None,
        max_results: Some(100),
    };
    // 50 instants: 25 per page, both pages read.
    let images = c.get_images("cam", &req).await.unwrap();
    assert_eq!(images.len(), 50);
    assert!(images[..10]
        .iter()
        .all(|i| i.error.as_deref() == Some("NO_MEDIA") && i.content.is_none()));
    assert!(
        images[10..].iter().all(|i| i.content.is_some()),
        "{:?}",
        images[10].error
    );
    assert_eq!(images[10].timestamp, crate::support::at_ms(START_MS));
    if !have("ffmpeg") {
        return;
    }
    // The picture on screen at each instant is the source's frame there
    // (25 fps): compared with ffmpeg's decode, allowing for YUV→RGB rounding.
    for (i, frame) in [(10, 0), (15, 25), (22, 60), (49, 195)] {
        let (w, h, ours) = png_rgb(images[i].content.as_ref().unwrap());
        assert_eq!((w, h), (640, 360));
        let theirs = ffmpeg_frame(frame).await;
        assert_eq!(ours.len(), theirs.len());
        let mean = mean_difference(&ours, &theirs);
        assert!(
            mean < 4.0,
            "image {i} vs frame {frame}: mean difference {mean}"
        );
        if frame > 0 {
            // And not merely any picture: the previous second's differs.
            let other = ffmpeg_frame(frame - 25).await;
            assert!(mean_difference(&ours, &other) > 2.0 * mean);
        }
    }
    // JPEG, scaled.
    let small = c
        .get_images(
            "cam",
            &GetImagesRequest {
                start: crate::support::at_ms(START_MS + 1000),
                end: crate::support::at_ms(START_MS + 1000),
                format: ImageFormat::Jpeg(Some(90)),
                size: Some((320, 180)),
                ..req
            },
        )
        .await
        .unwrap();
    let jpeg = small[0].content.as_ref().unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let file = tmp("image.jpg");
    std::fs::write(&file, jpeg).unwrap();
    let probe = run([
        "ffprobe",
        "-v",
        "error",
        "-show_entries",
        "stream=codec_name,width,height",
        "-of",
        "csv=p=0",
        &file.display().to_string(),
    ]
    .map(String::from)
    .to_vec())
    .await;
    assert_eq!(probe.trim(), "mjpeg,320,180");
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn sessions_play_uploads_with_restarting_timecodes_on_one_timeline() {
    let (_ep, c) = stream_with_av().await;
    // A second upload whose relative timecodes start at 0 again, 8 s later.
    common::put_clip(&c, "cam", START_MS + 8000).await;
    if !have("ffmpeg") || !have("ffprobe") {
        return;
    }
    let source = picture_md5s(&source_h264()).await;
    let twice: Vec<String> = [source.clone(), source].concat();
    for mpeg_ts in [false, true] {
        let url = c
            .get_hls_streaming_session_url(
                "cam",
                &StreamingSessionOptions {
                    playback_mode: PlaybackMode::OnDemand,
                    selector: Some(FragmentSelector::Producer {
                        start: crate::support::at_ms(START_MS),
                        end: crate::support::at_ms(START_MS + 20_000),
                    }),
                    mpeg_ts,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(picture_md5s(&url).await, twice, "MPEG-TS: {mpeg_ts}");
        // Presentation times run on: 0 to 16 s, no jump back.
        let pts = video_pts(&url).await;
        assert_eq!(pts.len(), 400);
        assert!(pts.windows(2).all(|w| w[1] > w[0]), "MPEG-TS: {mpeg_ts}");
        assert!(
            (pts[399] - pts[0] - 15.96).abs() < 0.01,
            "{} {}",
            pts[0],
            pts[399]
        );
    }
}

/// The web console's page and its ACK read, as a browser fetches them
/// (the page itself is driven in Chromium by the tool's tests).
#[tokio::test]
async fn the_console_page_and_its_acks_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (ep, _c) = stream_with_av().await;
    let (status, page) = get(&format!("{}/", ep.url())).await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>kvs local</title>"), "{page}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing fetched from elsewhere"
    );
    let (status, acks) = get(&format!("{}/console/acks?stream=cam", ep.url())).await;
    assert_eq!(status, 200);
    let acks: serde_json::Value = serde_json::from_str(&acks).unwrap();
    assert_eq!(acks.as_array().unwrap().len(), 4, "{acks}");
    assert!(acks[0]["latency_ms"].as_f64().unwrap() >= 0.0);
    // HEAD answers like GET, without the body.
    let host = ep.url().strip_prefix("http://").unwrap().to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    tcp.write_all(
        format!("HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", page.len())),
        "{head}"
    );
}
