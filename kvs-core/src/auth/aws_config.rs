//! The standard AWS configuration chain through `aws-config` (feature
//! `aws-config`): environment, shared profiles (with SSO, `credential_process`,
//! assumed roles), web identity, ECS and EC2 instance metadata — everything
//! the AWS SDKs resolve, refreshed by the SDK's own caching provider.
//!
//! The chain's own HTTP calls (SSO, STS, IMDS) go through rustls with the
//! `ring` provider, as the rest of kvs does.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the standard chain as the AWS SDKs do; pass the result to
/// [`crate::client::ClientConfig::from_sdk_config`].
pub async fn load() -> SdkConfig {
    loader().load().await
}

/// The `aws-config` loader kvs would use, to adjust (profile name, profile
/// files, region …) before `load()`.
pub fn loader() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    // The chain's own calls (SSO, STS, IMDS) over rustls + ring.
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(https)
}
