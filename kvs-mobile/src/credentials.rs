//! Credentials from the app: a callback asked when they are needed, kept
//! (kvs-core's [`CachedCredentials`]) until five minutes before they expire.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;
use kvs_core::auth::cached::CachedCredentials;

use crate::errors::KvsError;

/// Temporary credentials (Cognito, an STS token from the app's backend).
#[derive(Debug, Clone, uniffi::Record)]
pub struct TemporaryCredentials {
    /// The access key ID.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
    /// When they expire, ms since the epoch (UTC); none for keys that do
    /// not.
    pub expiration_ms: Option<i64>,
}

/// Gives credentials when asked: again before the ones it gave expire
/// (connections are replaced a minute before their signing credentials
/// expire, signed with new ones). Called on a library thread, never the
/// caller's; it may block (a network call to the app's backend).
#[uniffi::export(with_foreign)]
pub trait CredentialsProvider: Send + Sync {
    /// The credentials to sign with now. An error is reported and asked
    /// again after a backoff.
    fn credentials(&self) -> Result<TemporaryCredentials, KvsError>;
}

/// A [`CredentialsProvider`] as kvs-core's [`ProvideCredentials`].
#[derive(Clone)]
struct AppProvider(crate::foreign::Foreign<dyn CredentialsProvider>);

impl std::fmt::Debug for AppProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForeignCredentialsProvider")
    }
}

impl ProvideCredentials for AppProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let provider = self.0.clone();
        future::ProvideCredentials::new(async move {
            let got = tokio::task::spawn_blocking(move || provider.credentials())
                .await
                .map_err(|e| CredentialsError::provider_error(e.to_string()))?;
            let c = got.map_err(CredentialsError::provider_error)?;
            let expiry = c
                .expiration_ms
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64));
            Ok(Credentials::new(
                c.access_key_id,
                c.secret_access_key,
                c.session_token,
                expiry,
                "kvs-mobile",
            ))
        })
    }
}

/// The app's provider, cached.
pub(crate) fn provider(p: Arc<dyn CredentialsProvider>) -> impl ProvideCredentials + 'static {
    CachedCredentials::new(AppProvider(crate::foreign::Foreign::new(p)))
}
