//! Our SigV4 against botocore's `SigV4Auth` (the AWS SDK for Python, the
//! reference signer) on identical requests: the `Authorization` headers
//! must be identical. botocore comes from the project virtualenv the README
//! test command creates (`.venv`).
#![allow(clippy::print_stderr)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use kvs_core::auth::sigv4::{sign_headers, SignedBody};
use kvs_core::auth::Credentials;
use serde_json::{json, Value};

const SIGNER: &str = r#"
import json, sys, datetime
from unittest import mock
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
out = []
for c in json.load(sys.stdin):
    when = datetime.datetime.fromtimestamp(c["time"], tz=datetime.timezone.utc).replace(tzinfo=None)
    req = AWSRequest(method=c["method"], url=c["url"], headers=c["headers"], data=c["body"].encode())
    creds = Credentials(c["ak"], c["sk"], c.get("token"))
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        botocore.auth.SigV4Auth(creds, "kinesisvideo", c["region"]).add_auth(req)
    out.append({k.lower(): v for k, v in req.headers.items()})
print(json.dumps(out))
"#;

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

/// (method, url, region, headers, body, session token)
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    &'a str,
    Option<&'a str>,
);

#[test]
fn identical_authorization_to_botocore() {
    let Some(py) = python() else { return };
    let time = UNIX_EPOCH + Duration::from_secs(1_732_012_345);
    let token = "IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCXVzLWVhc3QtMSJHMEUCIQ";
    let cases: Vec<Case<'_>> = vec![
        (
            "POST",
            "https://kinesisvideo.us-west-2.amazonaws.com/describeStream",
            "us-west-2",
            vec![("content-type", "application/json")],
            r#"{"StreamName":"front-door"}"#,
            None,
        ),
        (
            "POST",
            "https://kinesisvideo.eu-west-1.amazonaws.com/createStream",
            "eu-west-1",
            vec![("content-type", "application/json")],
            r#"{"StreamName":"cam","DataRetentionInHours":24,"MediaType":"video/h264"}"#,
            Some(token),
        ),
        (
            "POST",
            "https://s-1e415f8b.kinesisvideo.us-east-1.amazonaws.com/putMedia",
            "us-east-1",
            vec![
                ("x-amzn-stream-name", "front-door"),
                ("x-amzn-fragment-timecode-type", "ABSOLUTE"),
                ("x-amzn-producer-start-timestamp", "1732012345.678"),
                ("x-amzn-fragment-acknowledgment-required", "1"),
            ],
            "",
            None,
        ),
        (
            "POST",
            "https://s-1e415f8b.kinesisvideo.us-east-1.amazonaws.com/putMedia",
            "us-east-1",
            vec![
                ("x-amzn-stream-name", "front-door"),
                ("x-amzn-fragment-timecode-type", "RELATIVE"),
                ("x-amzn-producer-start-timestamp", "1732012345.005"),
            ],
            "",
            Some(token),
        ),
        (
            "POST",
            "https://b-feb73142.kinesisvideo.ap-south-1.amazonaws.com/getMedia",
            "ap-south-1",
            vec![("content-type", "application/json")],
            r#"{"StreamName":"x","StartSelector":{"StartSelectorType":"NOW"}}"#,
            None,
        ),
        (
            "POST",
            "http://127.0.0.1:38211/listStreams",
            "us-east-1",
            vec![("content-type", "application/json")],
            "{}",
            None,
        ),
    ];
    let (ak, sk) = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    let input: Vec<Value> = cases
        .iter()
        .map(|(m, u, r, h, b, t)| {
            json!({"method": m, "url": u, "region": r, "body": b, "ak": ak, "sk": sk, "token": t, "time": 1_732_012_345,
                   "headers": h.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect::<serde_json::Map<_, _>>()})
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
        "botocore signer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), cases.len());
    for ((m, u, r, h, b, t), want) in cases.iter().zip(&theirs) {
        let creds = Credentials::new(ak, sk, t.map(str::to_owned), None, "test");
        // The streaming PutMedia body is signed as the empty string.
        let payload = if b.is_empty() {
            SignedBody::StreamingEmptyHash
        } else {
            SignedBody::Bytes(b.as_bytes())
        };
        let ours = sign_headers(m, u, h, payload, &creds, r, time).unwrap();
        let get = |name: &str| {
            ours.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("authorization"), want["authorization"].as_str(), "{u}");
        assert_eq!(get("x-amz-date"), want["x-amz-date"].as_str(), "{u}");
        assert_eq!(
            get("x-amz-security-token"),
            want["x-amz-security-token"].as_str(),
            "{u}"
        );
        assert!(get("authorization")
            .unwrap()
            .contains("/kinesisvideo/aws4_request"));
    }
}
