//! Control-plane endpoint per region, as the AWS endpoint rules resolve it
//! (standard, FIPS and dual-stack hosts per partition).

/// Endpoint variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Variant {
    /// FIPS 140 host (`kinesisvideo-fips.…`).
    pub fips: bool,
    /// Dual-stack (IPv4 + IPv6) host.
    pub dualstack: bool,
}

/// Why a region has no endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no Kinesis Video Streams endpoint for region {region:?}{}", if *.fips { " (FIPS)" } else { "" })]
pub struct NoEndpoint {
    /// The region asked for.
    pub region: String,
    /// Whether FIPS was asked for.
    pub fips: bool,
}

/// The control-plane URL for `region`, e.g. `https://kinesisvideo.us-west-2.amazonaws.com`.
pub fn control_plane(region: &str, v: Variant) -> Result<String, NoEndpoint> {
    let bad = || NoEndpoint {
        region: region.to_owned(),
        fips: v.fips,
    };
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad());
    }
    // (suffix, dual-stack suffix, FIPS available)
    let (suffix, ds_suffix, fips_ok) = if region.starts_with("cn-") {
        ("amazonaws.com.cn", "api.amazonwebservices.com.cn", false)
    } else if region.starts_with("us-isob-") {
        ("sc2s.sgov.gov", "api.aws.scloud", true)
    } else if region.starts_with("us-iso-") {
        ("c2s.ic.gov", "api.aws.ic.gov", true)
    } else {
        ("amazonaws.com", "api.aws", true)
    };
    if v.fips && !fips_ok {
        return Err(bad());
    }
    // GovCloud resolves to the FIPS host even for standard requests.
    let fips = v.fips || region.starts_with("us-gov-");
    let service = if fips {
        "kinesisvideo-fips"
    } else {
        "kinesisvideo"
    };
    let host_suffix = if v.dualstack { ds_suffix } else { suffix };
    Ok(format!("https://{service}.{region}.{host_suffix}"))
}

/// True for URLs whose host is on this machine (plain `http://` is allowed there).
pub fn is_loopback_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    match uri.host() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions() {
        let std = Variant::default();
        assert_eq!(
            control_plane("us-west-2", std).unwrap(),
            "https://kinesisvideo.us-west-2.amazonaws.com"
        );
        assert_eq!(
            control_plane(
                "eu-west-1",
                Variant {
                    fips: true,
                    dualstack: false
                }
            )
            .unwrap(),
            "https://kinesisvideo-fips.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            control_plane(
                "us-east-1",
                Variant {
                    fips: false,
                    dualstack: true
                }
            )
            .unwrap(),
            "https://kinesisvideo.us-east-1.api.aws"
        );
        assert_eq!(
            control_plane("cn-north-1", std).unwrap(),
            "https://kinesisvideo.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            control_plane("us-gov-west-1", std).unwrap(),
            "https://kinesisvideo-fips.us-gov-west-1.amazonaws.com"
        );
        assert_eq!(
            control_plane("us-iso-east-1", std).unwrap(),
            "https://kinesisvideo.us-iso-east-1.c2s.ic.gov"
        );
        assert!(control_plane(
            "cn-north-1",
            Variant {
                fips: true,
                dualstack: false
            }
        )
        .is_err());
        assert!(control_plane("evil.com/x", std).is_err());
        assert!(
            is_loopback_url("http://127.0.0.1:8080")
                && is_loopback_url("http://[::1]:1")
                && is_loopback_url("http://localhost")
        );
        assert!(!is_loopback_url("http://10.0.0.1") && !is_loopback_url("http://example.com"));
    }
}
