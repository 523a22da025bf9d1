//! SigV4 verification by the local endpoint: our client's and boto3's
//! signatures pass; wrong, unknown, expired and missing ones get the
//! service's 403 error shape.
#![cfg(feature = "local")]

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kvs_core::auth::sigv4::{sign_headers, SignedBody};
use kvs_core::auth::Credentials;
use kvs_core::client::{
    ClientConfig, CreateStream, KvsClient, PutMediaOptions, RetryPolicy, ServiceException,
    StartSelector, TimecodeType,
};
use kvs_core::local::{LocalConfig, LocalEndpoint};

const AK: &str = "AKIDLOCALTEST";
const SK: &str = "local/secret+key";

async fn endpoint() -> LocalEndpoint {
    LocalEndpoint::start(LocalConfig {
        credentials: Some((AK.into(), SK.into())),
        ..LocalConfig::default()
    })
    .await
    .unwrap()
}

fn client(url: &str, ak: &str, sk: &str, token: Option<&str>) -> KvsClient {
    let creds = Credentials::new(ak, sk, token.map(str::to_owned), None, "t");
    KvsClient::new(
        ClientConfig::new("us-east-1", creds)
            .endpoint(url)
            .retry(RetryPolicy::none()),
    )
    .unwrap()
}

fn other(name: &str) -> ServiceException {
    ServiceException::Other(name.to_owned())
}

#[tokio::test]
async fn signed_requests_pass_and_bad_ones_are_refused() {
    let ep = endpoint().await;
    let good = client(ep.url(), AK, SK, Some("session-token-value"));
    good.create_stream(&CreateStream {
        stream_name: "cam".into(),
        data_retention_in_hours: 1,
        ..CreateStream::default()
    })
    .await
    .unwrap();
    assert_eq!(
        good.describe_stream("cam").await.unwrap().stream_name,
        "cam"
    );

    // Signed PutMedia (streaming body, empty-string payload hash) and GetMedia.
    let stream = common::one_frame_stream(5, b"x");
    let (acks, err) = common::put_all(&good, "cam", &stream, TimecodeType::Absolute, 0).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(common::persisted(&acks), [5]);
    let mut g = good
        .get_media("cam", &StartSelector::Earliest)
        .await
        .unwrap();
    assert_eq!(
        g.next_fragment().await.unwrap().unwrap().cluster_timecode,
        Some(5)
    );

    let e = client(ep.url(), AK, "wrong", None)
        .describe_stream("cam")
        .await
        .unwrap_err();
    assert_eq!(
        e.service_code(),
        Some(&other("InvalidSignatureException")),
        "{e}"
    );
    assert!(matches!(
        e,
        kvs_core::client::ClientError::Service { status: 403, .. }
    ));
    let e = client(ep.url(), "AKIDUNKNOWN", SK, None)
        .list_streams()
        .await
        .unwrap_err();
    assert_eq!(
        e.service_code(),
        Some(&other("UnrecognizedClientException"))
    );
    let e = client(ep.url(), AK, "wrong", None)
        .put_media(&PutMediaOptions {
            stream: "cam".into(),
            timecode_type: TimecodeType::Absolute,
            producer_start: crate::support::at_ms(0),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.service_code(),
        Some(&other("InvalidSignatureException")),
        "PutMedia is checked before streaming"
    );
}

#[tokio::test]
async fn expired_and_missing_signatures() {
    let ep = endpoint().await;
    let http: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let url = format!("{}/listStreams", ep.url());
    let send = |headers: Vec<(String, String)>| {
        let mut req = http::Request::post(&url).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        http.request(req.body(Full::new(Bytes::from_static(b"{}"))).unwrap())
    };
    let creds = Credentials::new(AK, SK, None, None, "t");
    for (age, ok) in [
        (Duration::from_secs(20 * 60), false),
        (Duration::from_secs(60), true),
    ] {
        let signed = sign_headers(
            "POST",
            &url,
            &[("content-type", "application/json")],
            SignedBody::Bytes(b"{}"),
            &creds,
            "us-east-1",
            SystemTime::now() - age,
        )
        .unwrap();
        let resp = send(signed).await.unwrap();
        let status = resp.status().as_u16();
        let kind = resp
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        if ok {
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        } else {
            assert_eq!(status, 403);
            assert!(kind.unwrap().starts_with("InvalidSignatureException:"));
            assert!(String::from_utf8_lossy(&body).contains("Signature expired"));
        }
    }
    let resp = send(Vec::new()).await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["x-amzn-errortype"]
        .to_str()
        .unwrap()
        .starts_with("MissingAuthenticationTokenException"));
}

#[tokio::test]
async fn boto3_signatures_verify() {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if !py.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the .venv is missing; CI must have it"
        );
        return;
    }
    let ep = endpoint().await;
    let script = r#"
import json, sys, boto3, botocore
url, ak, sk = sys.argv[1:4]
def kv(secret):
    return boto3.client("kinesisvideo", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak, aws_secret_access_key=secret)
out = {"arn": kv(sk).create_stream(StreamName="boto", DataRetentionInHours=1)["StreamARN"]}
try:
    kv("bad").list_streams()
except botocore.exceptions.ClientError as e:
    out["bad"] = [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
print(json.dumps(out))
"#;
    let url = ep.url().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .args(["-c", script, &url, AK, SK])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["arn"].as_str().unwrap().contains(":stream/boto/"));
    assert_eq!(
        v["bad"],
        serde_json::json!(["InvalidSignatureException", 403])
    );
}
