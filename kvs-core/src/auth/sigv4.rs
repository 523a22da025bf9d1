//! SigV4 for Kinesis Video Streams, through the `aws-sigv4` crate.
//!
//! Every KVS API — control plane, PutMedia, GetMedia, archived media — signs
//! with service name `kinesisvideo` and the stream's region. The caller
//! chooses which headers are signed by passing them; the signature covers
//! exactly those plus `host` (taken from the URL when not given),
//! `x-amz-date` and, with temporary credentials, `x-amz-security-token`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// The signing name of every KVS API.
pub const SERVICE: &str = "kinesisvideo";

/// SHA-256 of the empty string, the payload hash the AWS C producer uses for
/// PutMedia's unsigned streaming body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How the body enters the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedBody<'a> {
    /// A body known in full (control-plane JSON): its SHA-256 is signed.
    Bytes(&'a [u8]),
    /// A streaming body that is not signed, hashed as the empty string
    /// (PutMedia as the AWS C producer sends it; no `x-amz-content-sha256`).
    StreamingEmptyHash,
    /// A streaming body declared `UNSIGNED-PAYLOAD`; the caller also sends
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD`.
    Unsigned,
    /// A payload hash given as is (e.g. the `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`
    /// literal some clients send for PutMedia).
    Precomputed(&'a str),
}

/// A signing failure (a URL the signer cannot parse, a header value that is
/// not valid, …).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the request: {0}")]
pub struct SigningError(String);

/// Signs a request and returns the headers to add to it (`authorization`,
/// `x-amz-date` and, with a session token, `x-amz-security-token`).
/// `aws-sigv4`'s defaults leave `user-agent`, `transfer-encoding` and
/// `x-amzn-trace-id` out of the signature even when passed.
pub fn sign_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    payload: SignedBody<'_>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, SigningError> {
    let req = (method, url, headers, payload);
    sign_with(req, credentials, region, time, SigningSettings::default())
}

/// Signs over exactly `headers` (only `authorization` left out), as a
/// verifier recomputes a signature over the headers a client chose to sign
/// (the AWS C and C++ SDKs sign `user-agent`, and `transfer-encoding` on
/// PutMedia). Returns the same headers as [`sign_headers`].
pub fn sign_exact_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    payload: SignedBody<'_>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, SigningError> {
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(vec![std::borrow::Cow::Borrowed("authorization")]);
    let req = (method, url, headers, payload);
    sign_with(req, credentials, region, time, settings)
}

/// A request to sign: method, URL, headers, payload.
type ToSign<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], SignedBody<'a>);

fn sign_with(
    (method, url, headers, payload): ToSign<'_>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    settings: SigningSettings,
) -> Result<Vec<(String, String)>, SigningError> {
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SigningError(e.to_string()))?
        .into();
    let body = match payload {
        SignedBody::Bytes(b) => SignableBody::Bytes(b),
        SignedBody::StreamingEmptyHash => SignableBody::Precomputed(EMPTY_SHA256.to_owned()),
        SignedBody::Unsigned => SignableBody::UnsignedPayload,
        SignedBody::Precomputed(h) => SignableBody::Precomputed(h.to_owned()),
    };
    let request = SignableRequest::new(method, url, headers.iter().copied(), body)
        .map_err(|e| SigningError(e.to_string()))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| SigningError(e.to_string()))?
        .into_parts();
    let (out, _) = instructions.into_parts();
    Ok(out
        .into_iter()
        .map(|h| (h.name().to_owned(), h.value().to_owned()))
        .collect())
}
