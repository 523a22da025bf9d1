//! SigV4 verification for the local endpoint: the request is signed again
//! through `aws-sigv4` with the date, region and headers it names, and the
//! signatures must match. All three PutMedia payload conventions are
//! accepted (empty-string hash, `UNSIGNED-PAYLOAD`, the streaming literal).
//!
//! The canonical request is built from exactly the headers the client
//! listed in its `SignedHeaders`, whatever they are: the AWS C and C++
//! producers sign `user-agent`, `connection` and, on PutMedia,
//! `transfer-encoding`, which `aws-sigv4`'s default settings leave out of
//! the canonical request (they exclude `user-agent`, `transfer-encoding` and
//! `x-amzn-trace-id`, headers proxies may change). The verifier therefore
//! passes `aws-sigv4` only the signed headers' values, with
//! `excluded_headers` set to `authorization` alone
//! ([`crate::auth::sigv4::sign_exact_headers`]): the
//! signer then covers precisely those headers, plus the `x-amz-date` and
//! `x-amz-security-token` it adds itself from the date and credentials
//! (both taken from the request). A signature whose `SignedHeaders` omit
//! `host` or `x-amz-date` is refused, as the service does.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

use super::store::ApiError;
use crate::auth::sigv4::{SignedBody, SERVICE};
use crate::client::ServiceException;

/// Longest clock difference accepted (the AWS rule: 15 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

fn deny(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(ServiceException::Other(name.to_owned()), message)
}

/// Parses `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(4..6)?,
        n(6..8)?,
        n(9..11)?,
        n(11..13)?,
        n(13..15)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), 1970-01-01 = 0.
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// Checks a request's signature. `body` is `None` for a streaming PutMedia
/// body (its hash comes from `x-amz-content-sha256`, else the empty hash).
pub fn verify(
    method: &str,
    url: &str,
    headers: &http::HeaderMap,
    body: Option<&[u8]>,
    (access_key, secret): (&str, &str),
    region: &str,
    now: SystemTime,
) -> Result<(), ApiError> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let auth = get("authorization").ok_or_else(|| {
        deny(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    })?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        deny(
            "IncompleteSignatureException",
            "Authorization is not AWS4-HMAC-SHA256",
        )
    })?;
    let mut credential = None;
    let mut signed_headers = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            _ => {}
        }
    }
    let (credential, signed_headers) = credential.zip(signed_headers).ok_or_else(|| {
        deny(
            "IncompleteSignatureException",
            "Authorization lacks Credential or SignedHeaders",
        )
    })?;
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return Err(deny(
            "IncompleteSignatureException",
            "malformed credential scope",
        ));
    }
    if scope[0] != access_key {
        return Err(deny(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    if scope[3] != SERVICE || scope[2] != region {
        return Err(deny(
            "InvalidSignatureException",
            format!("Credential should be scoped to {region}/{SERVICE}"),
        ));
    }
    let date = get("x-amz-date").and_then(parse_amz_date).ok_or_else(|| {
        deny(
            "IncompleteSignatureException",
            "missing or malformed X-Amz-Date",
        )
    })?;
    let skew = now.duration_since(date).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        let which = if date > now {
            "Signature not yet current"
        } else {
            "Signature expired"
        };
        return Err(deny(
            "InvalidSignatureException",
            format!(
                "{which}: {} is more than 15 minutes from now",
                get("x-amz-date").unwrap_or("")
            ),
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in ["host", "x-amz-date"] {
        if !names.contains(&required) {
            return Err(deny(
                "InvalidSignatureException",
                format!("the {required} header must be signed"),
            ));
        }
    }
    // Every value of every signed header, as sent (the signer joins
    // repeated headers with commas and trims spaces, as SigV4 says).
    // `x-amz-date` and `x-amz-security-token` are added by the signer.
    let mut pairs = Vec::new();
    for n in &names {
        if *n == "x-amz-date" || *n == "x-amz-security-token" {
            continue;
        }
        let mut values = headers.get_all(*n).iter().peekable();
        if values.peek().is_none() {
            return Err(deny(
                "InvalidSignatureException",
                format!("signed header {n} is missing"),
            ));
        }
        for v in values {
            let v = v.to_str().map_err(|_| {
                deny(
                    "InvalidSignatureException",
                    format!("signed header {n} is not visible ASCII"),
                )
            })?;
            pairs.push((*n, v));
        }
    }
    let token = if names.contains(&"x-amz-security-token") {
        Some(
            get("x-amz-security-token")
                .ok_or_else(|| {
                    deny(
                        "InvalidSignatureException",
                        "signed header x-amz-security-token is missing",
                    )
                })?
                .to_owned(),
        )
    } else {
        None
    };
    let payload = match (body, get("x-amz-content-sha256")) {
        (Some(b), None) => SignedBody::Bytes(b),
        (_, Some("UNSIGNED-PAYLOAD")) => SignedBody::Unsigned,
        (None, None) => SignedBody::StreamingEmptyHash,
        (_, Some(other)) => SignedBody::Precomputed(other),
    };
    let creds = Credentials::new(access_key, secret, token, None, "local-endpoint");
    let expected = authorization(method, url, &pairs, payload, &creds, region, date)
        .map_err(|e| deny("InvalidSignatureException", e))?;
    if expected != auth {
        return Err(deny(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(())
}

/// The `Authorization` value for a request whose signed headers are
/// exactly `headers` (plus `x-amz-date`, and `x-amz-security-token` when the
/// credentials carry a session token).
fn authorization(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    payload: SignedBody<'_>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<String, String> {
    crate::auth::sigv4::sign_exact_headers(method, url, headers, payload, credentials, region, time)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value)
        .ok_or_else(|| "the signer gave no authorization header".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates() {
        assert_eq!(
            parse_amz_date("19700101T000000Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(
            parse_amz_date("20241119T103225Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_732_012_345))
        );
        assert_eq!(
            parse_amz_date("20240229T000000Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_164_800))
        );
        assert_eq!(parse_amz_date("2024-11-19"), None);
        assert_eq!(parse_amz_date("20241319T000000Z"), None);
    }
}
