//! SigV4 verification for the local endpoint: the request is signed again
//! through `aws-sigv4` with the date, region and headers it names, and the
//! signatures must match. All three PutMedia payload conventions are
//! accepted (empty-string hash, `UNSIGNED-PAYLOAD`, the streaming literal).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

use super::store::ApiError;
use crate::auth::sigv4::{sign_headers, Payload};
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
    if scope[3] != crate::auth::sigv4::SERVICE || scope[2] != region {
        return Err(deny(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to {region}/{}",
                crate::auth::sigv4::SERVICE
            ),
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
    if !names.contains(&"host") {
        return Err(deny(
            "InvalidSignatureException",
            "the host header must be signed",
        ));
    }
    let mut pairs = Vec::new();
    for n in &names {
        if *n == "x-amz-date" || *n == "x-amz-security-token" {
            continue;
        }
        let v = get(n).ok_or_else(|| {
            deny(
                "InvalidSignatureException",
                format!("signed header {n} is missing"),
            )
        })?;
        pairs.push((*n, v));
    }
    let token = if names.contains(&"x-amz-security-token") {
        get("x-amz-security-token").map(str::to_owned)
    } else {
        None
    };
    let payload = match (body, get("x-amz-content-sha256")) {
        (Some(b), None) => Payload::Bytes(b),
        (_, Some("UNSIGNED-PAYLOAD")) => Payload::Unsigned,
        (None, None) => Payload::StreamingEmptyHash,
        (_, Some(other)) => Payload::Precomputed(other),
    };
    let creds = Credentials::new(access_key, secret, token, None, "local-endpoint");
    let expected = sign_headers(method, url, &pairs, payload, &creds, region, date)
        .map_err(|e| deny("InvalidSignatureException", e.to_string()))?;
    let want = expected
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str());
    if want != Some(auth) {
        return Err(deny(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(())
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
