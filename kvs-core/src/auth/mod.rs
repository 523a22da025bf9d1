//! Credentials and request signing.
//!
//! Credentials are `aws-credential-types`' [`Credentials`] (secrets zeroized
//! on drop and redacted in `Debug`) behind its [`ProvideCredentials`] trait,
//! so any provider of the AWS SDK ecosystem plugs in. This module adds the
//! providers a device needs without the AWS SDK: static keys (a
//! [`Credentials`] value is itself a provider), [`env::EnvironmentProvider`]
//! and [`profile::ProfileProvider`]. Signing is SigV4 through `aws-sigv4`,
//! service name `kinesisvideo` for every API ([`sigv4`]). With the
//! `aws-config` feature, [`aws_config`] brings the AWS SDKs' whole chain (SSO,
//! IMDS, ECS, web identity).

#[cfg(feature = "aws-config")]
pub mod aws_config;
#[cfg(feature = "client")]
pub mod cached;
pub mod env;
pub mod profile;
pub mod sigv4;

pub use aws_credential_types::provider::error::CredentialsError;
pub use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
pub use aws_credential_types::Credentials;

/// The region the AWS SDKs would use, without the SDK: `AWS_REGION`, then
/// `AWS_DEFAULT_REGION`, then the `region` of the selected profile
/// (`AWS_PROFILE`, default `default`) in the shared config file. `None`
/// when none names one.
pub fn default_region() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
        .or_else(|| {
            profile::ProfileProvider::new()
                .profile()
                .ok()
                .and_then(|p| p.region().map(str::to_owned))
        })
}

/// The usual lookup without the AWS SDK: the environment, then the shared
/// profile files. Each request for credentials asks both again, so rotated
/// keys are picked up.
#[derive(Debug, Default, Clone)]
pub struct DefaultChain {
    env: env::EnvironmentProvider,
    profile: profile::ProfileProvider,
}

impl DefaultChain {
    /// The chain over the process environment and the standard files.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first credentials found.
    pub fn load(&self) -> Result<Credentials, CredentialsError> {
        match self.env.load() {
            Ok(c) => Ok(c),
            Err(CredentialsError::CredentialsNotLoaded(_)) => self
                .profile
                .profile()
                .and_then(|p| p.credentials("selected")),
            Err(e) => Err(e),
        }
    }
}

impl ProvideCredentials for DefaultChain {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(self.load())
    }
}
