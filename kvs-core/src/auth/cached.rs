//! Credentials asked for once and kept until shortly before they expire.
//!
//! For a provider that is slow or costly to ask — a mobile app's backend,
//! Cognito, a callback into another language — where each signed request
//! would otherwise ask again. The AWS SDKs keep such a cache inside their
//! runtime (`aws-config`'s identity cache), which this crate does not pull
//! in without its `aws-config` feature; this is the same rule in a few
//! lines: ask when nothing is kept, or when what is kept expires within the
//! refresh margin; never hand out credentials past their expiry.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;

/// How long before their expiry kept credentials are replaced (default).
/// Longer than the minute before expiry at which the producer replaces a
/// connection, so that the new connection is signed with new credentials.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A [`ProvideCredentials`] that keeps what `inner` gives until
/// `margin` before its expiry (credentials without an expiry are kept for
/// good). Concurrent asks while a refresh is under way wait for it.
#[derive(Debug)]
pub struct CachedCredentials<P> {
    inner: P,
    margin: Duration,
    kept: Arc<tokio::sync::Mutex<Option<Credentials>>>,
}

impl<P: ProvideCredentials> CachedCredentials<P> {
    /// Keeps `inner`'s credentials, refreshed [`DEFAULT_REFRESH_MARGIN`]
    /// before they expire.
    pub fn new(inner: P) -> Self {
        Self::with_margin(inner, DEFAULT_REFRESH_MARGIN)
    }

    /// As [`Self::new`], refreshed `margin` before expiry.
    pub fn with_margin(inner: P, margin: Duration) -> Self {
        Self {
            inner,
            margin,
            kept: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    async fn get(&self) -> aws_credential_types::provider::Result {
        let mut kept = self.kept.lock().await;
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|e| e > SystemTime::now() + self.margin)
        };
        if let Some(c) = kept.as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let c = self.inner.provide_credentials().await?;
        *kept = Some(c.clone());
        Ok(c)
    }
}

impl<P: ProvideCredentials> ProvideCredentials for CachedCredentials<P> {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Credentials expiring `ttl` after each ask (counted).
    #[derive(Debug)]
    struct Counting(AtomicUsize, Option<Duration>);

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                "AKID",
                format!("secret-{n}"),
                None,
                self.1.map(|t| SystemTime::now() + t),
                "test",
            )))
        }
    }

    #[tokio::test]
    async fn asks_again_only_within_the_margin_of_expiry() {
        // An hour left: kept.
        let c = CachedCredentials::new(Counting(
            AtomicUsize::new(0),
            Some(Duration::from_secs(3600)),
        ));
        for _ in 0..5 {
            assert_eq!(
                c.provide_credentials().await.unwrap().secret_access_key(),
                "secret-0"
            );
        }
        assert_eq!(c.inner.0.load(Ordering::SeqCst), 1);
        // Two minutes left, five of margin: asked every time.
        let c = CachedCredentials::new(Counting(
            AtomicUsize::new(0),
            Some(Duration::from_secs(120)),
        ));
        for i in 0..3 {
            let got = c.provide_credentials().await.unwrap();
            assert_eq!(got.secret_access_key(), format!("secret-{i}"));
        }
        // No expiry: kept for good.
        let c = CachedCredentials::new(Counting(AtomicUsize::new(0), None));
        c.provide_credentials().await.unwrap();
        c.provide_credentials().await.unwrap();
        assert_eq!(c.inner.0.load(Ordering::SeqCst), 1);
    }
}
