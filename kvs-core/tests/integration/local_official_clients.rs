//! The local endpoint as the official clients see it: SigV4 over whatever
//! headers the client signed (botocore with `user-agent`,
//! `transfer-encoding` and `x-amzn-trace-id`; a PutMedia request laid out as
//! the AWS C producer sends it), and `Expect: 100-continue` answered at once
//! (real curl, the HTTP stack of the C and C++ producers).
//!
//! Signatures come from botocore (the project `.venv`), computed
//! independently of this crate; requests are written byte for byte on a
//! TCP socket so that every header is exactly as the client sends it.
#![cfg(feature = "local")]
#![allow(clippy::print_stderr)]

use crate::common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use kvs_core::local::{LocalConfig, LocalEndpoint};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AK: &str = "AKIDOFFICIALCLIENT";
const SK: &str = "official/client+secret";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN//////////wEaCXVzLWVhc3QtMSJHMEUCIQ";

/// The project virtualenv's Python with botocore, or `None` outside CI when
/// it is missing (under `CI=true` that is a failure).
fn python() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let ok = p.exists()
        && Command::new(&p)
            .args(["-c", "import botocore"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "botocore is missing from .venv; CI must have it (run the README test command)"
        );
        eprintln!("SKIPPED: .venv with botocore not found (the README test command creates it)");
    }
    ok.then_some(p)
}

/// Whether curl runs; outside CI a missing curl skips the test with a note.
fn have_curl() -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "curl is missing; CI must have it (apt-get install curl)"
        );
        eprintln!("SKIPPED: curl not found (apt-get install curl)");
    }
    ok
}

/// botocore's SigV4 (`SigV4Auth`, the reference signer) over the given
/// headers at the current time. With `sign_all`, botocore's list of headers
/// it never signs (`user-agent`, `x-amzn-trace-id`, `expect`) is emptied, so
/// that every header given is signed, as the AWS C SDK does.
const SIGNER: &str = r#"
import json, sys
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
out = []
for c in json.load(sys.stdin):
    botocore.auth.SIGNED_HEADERS_BLACKLIST = [] if c["sign_all"] else ["expect", "user-agent", "x-amzn-trace-id"]
    req = AWSRequest(method="POST", url=c["url"], data=c["body"].encode())
    for k, v in c["headers"]:
        req.headers[k] = v
    creds = Credentials(c["ak"], c["sk"], c.get("token"))
    botocore.auth.SigV4Auth(creds, "kinesisvideo", "us-east-1").add_auth(req)
    out.append({k.lower(): v for k, v in req.headers.items()})
print(json.dumps(out))
"#;

struct Sign<'a> {
    url: String,
    headers: Vec<(&'a str, String)>,
    body: &'a str,
    token: Option<&'a str>,
    sign_all: bool,
}

/// The headers botocore adds (`authorization`, `x-amz-date`,
/// `x-amz-security-token`) for each request, lower-cased.
fn botocore_sign(py: &PathBuf, reqs: &[Sign<'_>]) -> Vec<serde_json::Map<String, Value>> {
    let input: Vec<Value> = reqs
        .iter()
        .map(|r| {
            json!({
                "url": r.url,
                "headers": r.headers.iter().map(|(k, v)| [*k, v.as_str()]).collect::<Vec<_>>(),
                "body": r.body,
                "ak": AK, "sk": SK, "token": r.token,
                "sign_all": r.sign_all,
            })
        })
        .collect();
    let mut child = Command::new(py)
        .args(["-c", SIGNER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|h| h.as_object().unwrap().clone())
        .collect()
}

/// The signed request's full header list: what was signed plus botocore's
/// additions, in the order given.
fn with_auth(
    headers: &[(&str, String)],
    signed: &serde_json::Map<String, Value>,
) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    for k in ["x-amz-date", "x-amz-security-token", "authorization"] {
        if let Some(v) = signed.get(k).and_then(Value::as_str) {
            all.push((k.to_owned(), v.to_owned()));
        }
    }
    all
}

/// The SignedHeaders list of an Authorization value.
fn signed_headers(authorization: &str) -> &str {
    authorization
        .split(", ")
        .find_map(|p| p.strip_prefix("SignedHeaders="))
        .unwrap()
}

/// A response read off the socket.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes one HTTP/1.1 POST byte for byte (headers exactly as given, the
/// body chunked when `chunked`, else with a content-length) and reads the
/// response to its end.
async fn raw_post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
    chunked: bool,
) -> Reply {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !chunked {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if chunked {
        for piece in body.chunks(4096) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(body);
    }
    tcp.write_all(&out).await.unwrap();
    let read = async {
        let mut buf = Vec::new();
        loop {
            if let Some(r) = parse_reply(&buf) {
                return r;
            }
            let mut chunk = [0u8; 8192];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "connection closed mid-response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .expect("a whole response within 20 s")
}

/// A whole response (content-length or chunked) at the start of `buf`.
fn parse_reply(buf: &[u8]) -> Option<Reply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut rest = &buf[end + 4..];
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = get("content-length") {
        let len: usize = len.parse().unwrap();
        if rest.len() < len {
            return None;
        }
        rest[..len].to_vec()
    } else {
        let mut body = Vec::new();
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
            let data = rest.get(line_end + 2..line_end + 2 + size + 2)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&data[..size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        body
    };
    Some(Reply {
        status,
        headers,
        body,
    })
}

async fn endpoint() -> LocalEndpoint {
    LocalEndpoint::start(LocalConfig {
        credentials: Some((AK.into(), SK.into())),
        ..LocalConfig::default()
    })
    .await
    .unwrap()
}

fn host(ep: &LocalEndpoint) -> String {
    ep.addr().to_string()
}

fn error_type(r: &Reply) -> String {
    r.header("x-amzn-errortype")
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Control plane: botocore signs `user-agent` and `x-amzn-trace-id` too
/// (as the C SDK signs every header it sends); the endpoint accepts it, and
/// refuses the same request once a signed header is changed, or when the
/// SignedHeaders leave out `host` or `x-amz-date`.
#[tokio::test]
async fn every_signed_header_counts_on_the_control_plane() {
    let Some(py) = python() else { return };
    let ep = endpoint().await;
    let base = |body: &str| {
        vec![
            ("host", host(&ep)),
            ("content-type", "application/json".to_owned()),
            (
                "user-agent",
                "aws-sdk-cpp/1.11.400 Linux/6.1 x86_64 GCC/12.2.0".to_owned(),
            ),
            (
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                    .to_owned(),
            ),
            ("content-length", body.len().to_string()),
        ]
    };
    let create = r#"{"StreamName":"signed-all","DataRetentionInHours":1}"#;
    let list = "{}";
    let reqs = [
        Sign {
            url: format!("{}/createStream", ep.url()),
            headers: base(create),
            body: create,
            token: None,
            sign_all: true,
        },
        Sign {
            url: format!("{}/listStreams", ep.url()),
            headers: base(list),
            body: list,
            token: Some(TOKEN),
            sign_all: true,
        },
    ];
    let signed = botocore_sign(&py, &reqs);
    for s in &signed {
        let auth = s["authorization"].as_str().unwrap();
        let names = signed_headers(auth);
        assert!(
            names.contains("user-agent") && names.contains("x-amzn-trace-id"),
            "botocore signed them: {names}"
        );
    }
    // Sent with content-length framing (raw_post writes the header, with
    // the value that was signed), not chunked.
    let addr = ep.addr();
    let post = |i: usize, headers: Vec<(String, String)>| {
        let body = reqs[i].body.as_bytes().to_vec();
        let path = if i == 0 {
            "/createStream"
        } else {
            "/listStreams"
        };
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .filter(|(k, _)| k != "content-length")
            .collect();
        async move { raw_post(addr, path, &headers, &body, false).await }
    };
    let ok = post(0, with_auth(&reqs[0].headers, &signed[0])).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let ok = post(1, with_auth(&reqs[1].headers, &signed[1])).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().contains("signed-all"), "{}", ok.text());

    // One signed header changed after signing: refused.
    for tampered in ["user-agent", "x-amzn-trace-id", "content-type"] {
        let mut h = with_auth(&reqs[1].headers, &signed[1]);
        for (k, v) in h.iter_mut() {
            if k == tampered {
                v.push('x');
            }
        }
        let r = post(1, h).await;
        assert_eq!(r.status, 403, "{tampered}: {}", r.text());
        assert_eq!(error_type(&r), "InvalidSignatureException", "{tampered}");
        assert!(
            r.text().contains("does not match"),
            "{tampered}: {}",
            r.text()
        );
    }
    // SignedHeaders without host or without x-amz-date: refused for that reason.
    for left_out in ["host", "x-amz-date"] {
        let mut h = with_auth(&reqs[1].headers, &signed[1]);
        for (k, v) in h.iter_mut() {
            if k == "authorization" {
                let names = signed_headers(v).to_owned();
                let kept: Vec<&str> = names.split(';').filter(|n| *n != left_out).collect();
                *v = v.replace(&names, &kept.join(";"));
            }
        }
        let r = post(1, h).await;
        assert_eq!(r.status, 403, "{left_out}: {}", r.text());
        assert_eq!(error_type(&r), "InvalidSignatureException");
        assert!(
            r.text()
                .contains(&format!("the {left_out} header must be signed")),
            "{}",
            r.text()
        );
    }
    // A header that was not signed may be added (only the signed ones count).
    let mut h = with_auth(&reqs[1].headers, &signed[1]);
    h.push(("x-not-signed".into(), "anything".into()));
    assert_eq!(post(1, h).await.status, 200);
}

/// The headers of a PutMedia request as the AWS C producer (libcurl) sends
/// them, every one signed.
fn c_producer_headers(host: &str, stream: &str, start: &str) -> Vec<(&'static str, String)> {
    vec![
        ("host", host.to_owned()),
        (
            "user-agent",
            "AWS-SDK-KVS-CPP-CLIENT/3.4.2/1.5.3 GCC/12.2.0 Linux/6.6.51+rpt-rpi-v8 aarch64 CPPSDK"
                .to_owned(),
        ),
        ("x-amzn-stream-name", stream.to_owned()),
        ("x-amzn-producer-start-timestamp", start.to_owned()),
        ("x-amzn-fragment-acknowledgment-required", "1".to_owned()),
        ("x-amzn-fragment-timecode-type", "ABSOLUTE".to_owned()),
        ("transfer-encoding", "chunked".to_owned()),
        ("connection", "keep-alive".to_owned()),
    ]
}

async fn create_stream(ep: &LocalEndpoint, name: &str) {
    // Created with this crate's own (already tested) signer.
    let creds = kvs_core::auth::Credentials::new(AK, SK, None, None, "t");
    let c = kvs_core::client::KvsClient::new(
        kvs_core::client::ClientConfig::new("us-east-1", creds).endpoint(ep.url()),
    )
    .unwrap();
    c.create_stream(&kvs_core::client::CreateStream {
        stream_name: name.into(),
        data_retention_in_hours: 1,
        ..Default::default()
    })
    .await
    .unwrap();
}

/// PutMedia as the C producer sends it — `user-agent`, `transfer-encoding:
/// chunked`, `connection: keep-alive`, the `x-amzn-*` headers, `x-amz-date`,
/// `x-amz-security-token` and `host`, all signed, empty-string payload
/// hash — with the signature botocore computes: the upload is accepted and
/// acknowledged. The SignedHeaders list is checked by hand. The same request
/// with `x-amzn-trace-id` signed too is accepted; with a signed header
/// changed it is refused before any ACK.
#[tokio::test]
async fn c_producer_put_media_is_accepted() {
    let Some(py) = python() else { return };
    let ep = endpoint().await;
    create_stream(&ep, "c-cam").await;
    let url = format!("{}/putMedia", ep.url());
    let plain = c_producer_headers(&host(&ep), "c-cam", "1732012345.678");
    let mut traced = c_producer_headers(&host(&ep), "c-cam", "1732012345.678");
    traced.push((
        "x-amzn-trace-id",
        "Root=1-67890abc-0123456789abcdef01234567".to_owned(),
    ));
    let reqs = [
        Sign {
            url: url.clone(),
            headers: plain.clone(),
            body: "",
            token: Some(TOKEN),
            sign_all: true,
        },
        Sign {
            url,
            headers: traced.clone(),
            body: "",
            token: None,
            sign_all: true,
        },
    ];
    let signed = botocore_sign(&py, &reqs);
    assert_eq!(
        signed_headers(signed[0]["authorization"].as_str().unwrap()),
        "connection;host;transfer-encoding;user-agent;x-amz-date;x-amz-security-token;\
         x-amzn-fragment-acknowledgment-required;x-amzn-fragment-timecode-type;\
         x-amzn-producer-start-timestamp;x-amzn-stream-name"
    );
    assert!(
        signed_headers(signed[1]["authorization"].as_str().unwrap()).contains("x-amzn-trace-id")
    );

    for (i, tc) in [(0usize, 1_732_012_346_000_i64), (1, 1_732_012_347_000)] {
        let body = common::one_frame_stream(tc, b"c-producer-frame");
        let h = with_auth(&reqs[i].headers, &signed[i]);
        let r = raw_post(ep.addr(), "/putMedia", &h, &body, true).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let acks = r.text();
        assert!(
            acks.contains(r#""EventType":"PERSISTED""#) && acks.contains(&tc.to_string()),
            "request {i}: {acks}"
        );
    }

    // Changed after signing: refused with the service's 403, no ACK stream.
    for tampered in [
        "user-agent",
        "x-amzn-producer-start-timestamp",
        "connection",
    ] {
        let mut h = with_auth(&reqs[0].headers, &signed[0]);
        for (k, v) in h.iter_mut() {
            if k == tampered {
                v.push('1');
            }
        }
        let body = common::one_frame_stream(1_732_012_348_000, b"x");
        let r = raw_post(ep.addr(), "/putMedia", &h, &body, true).await;
        assert_eq!(r.status, 403, "{tampered}: {}", r.text());
        assert_eq!(error_type(&r), "InvalidSignatureException", "{tampered}");
    }
}

/// curl (libcurl is the C and C++ producers' HTTP stack) sends a PutMedia
/// body chunked with `Expect: 100-continue` and waits for `100 Continue`
/// before the body: the endpoint answers it at once, so curl never reaches
/// its wait timeout (set to 30 s here, so a missing interim response cannot
/// pass unnoticed). A control-plane POST with the same header gets it too.
#[tokio::test]
async fn expect_100_continue_is_answered_at_once() {
    if !have_curl() {
        return;
    }
    let ep = LocalEndpoint::start(LocalConfig::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("kvs-expect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let create = dir.join("create.json");
    std::fs::write(
        &create,
        r#"{"StreamName":"curl-cam","DataRetentionInHours":1}"#,
    )
    .unwrap();
    let media = dir.join("upload.mkv");
    std::fs::write(
        &media,
        common::one_frame_stream(1_732_012_345_000, b"curl-frame"),
    )
    .unwrap();
    let base = ep.url().to_owned();
    let curl = move |path: &str, file: &PathBuf, extra: &[&str]| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-v", "--max-time", "20", "--expect100-timeout", "30"])
            .args(["-H", "Expect: 100-continue"])
            .args(["-w", "\nTIME_STARTTRANSFER=%{time_starttransfer}\n"])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()));
        for e in extra {
            cmd.args(["-H", e]);
        }
        cmd.arg(format!("{base}{path}"));
        cmd.output().unwrap()
    };
    let out = tokio::task::spawn_blocking(move || {
        let c = curl(
            "/createStream",
            &create,
            &["Content-Type: application/json"],
        );
        let p = curl(
            "/putMedia",
            &media,
            &[
                "Transfer-Encoding: chunked",
                "x-amzn-stream-name: curl-cam",
                "x-amzn-fragment-timecode-type: ABSOLUTE",
                "x-amzn-producer-start-timestamp: 1732012345.000",
                "x-amzn-fragment-acknowledgment-required: 1",
            ],
        );
        (c, p)
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    for (what, o) in [("createStream", &out.0), ("putMedia", &out.1)] {
        let verbose = String::from_utf8_lossy(&o.stderr);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{what}: {verbose}");
        assert!(
            verbose.contains("< HTTP/1.1 100 Continue"),
            "{what}: no interim 100 Continue:\n{verbose}"
        );
        assert!(
            !verbose.contains("Done waiting for 100-continue"),
            "{what}: curl gave up waiting:\n{verbose}"
        );
        assert!(verbose.contains("< HTTP/1.1 200 OK"), "{what}: {verbose}");
        // The interim response comes before the final one.
        assert!(
            verbose.find("100 Continue") < verbose.find("200 OK"),
            "{what}: {verbose}"
        );
        let t: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("TIME_STARTTRANSFER="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(t < 30.0, "{what}: {t}");
        if what == "putMedia" {
            assert!(
                stdout.contains(r#""EventType":"PERSISTED""#),
                "{what}: {stdout}"
            );
        }
    }
}
