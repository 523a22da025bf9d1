//! Credentials and request signing.
//!
//! Credentials are `aws-credential-types`' [`Credentials`] (secrets zeroized
//! on drop and redacted in `Debug`) behind its [`ProvideCredentials`] trait,
//! so any provider of the AWS SDK ecosystem plugs in. This module adds the
//! providers a device needs without the AWS SDK: static keys (a
//! [`Credentials`] value is itself a provider), [`env::EnvironmentProvider`]
//! and [`profile::ProfileProvider`]. Signing is SigV4 through `aws-sigv4`,
//! service name `kinesisvideo` for every API ([`sigv4`]).

pub mod env;
pub mod profile;
pub mod sigv4;

pub use aws_credential_types::provider::error::CredentialsError;
pub use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
pub use aws_credential_types::Credentials;
