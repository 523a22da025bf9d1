//! Credentials from the standard environment variables.

use std::collections::HashMap;

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;

/// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, if set,
/// `AWS_SESSION_TOKEN` each time credentials are asked for, so a rotated
/// environment is picked up.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentProvider {
    /// Fixed variables instead of the process environment (for tests).
    vars: Option<HashMap<String, String>>,
}

impl EnvironmentProvider {
    /// A provider over the process environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider over the given variables instead of the process environment.
    pub fn from_vars(vars: HashMap<String, String>) -> Self {
        Self { vars: Some(vars) }
    }

    fn var(&self, name: &str) -> Option<String> {
        match &self.vars {
            Some(v) => v.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.trim().is_empty())
    }

    /// The credentials the environment holds now.
    pub fn load(&self) -> Result<Credentials, CredentialsError> {
        let key = self
            .var("AWS_ACCESS_KEY_ID")
            .ok_or_else(|| CredentialsError::not_loaded("AWS_ACCESS_KEY_ID is not set"))?;
        let secret = self.var("AWS_SECRET_ACCESS_KEY").ok_or_else(|| {
            CredentialsError::invalid_configuration(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
            )
        })?;
        Ok(Credentials::new(
            key.trim(),
            secret.trim(),
            self.var("AWS_SESSION_TOKEN"),
            None,
            "Environment",
        ))
    }
}

impl ProvideCredentials for EnvironmentProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(self.load())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_and_token() {
        let vars = |pairs: &[(&str, &str)]| {
            EnvironmentProvider::from_vars(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let c = vars(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_SESSION_TOKEN", "TOKEN"),
        ])
        .load()
        .unwrap();
        assert_eq!(
            (c.access_key_id(), c.secret_access_key(), c.session_token()),
            ("AKID", "SECRET", Some("TOKEN"))
        );
        assert!(!format!("{c:?}").contains("SECRET"), "secrets are redacted");
        assert!(matches!(
            vars(&[]).load(),
            Err(CredentialsError::CredentialsNotLoaded(_))
        ));
        assert!(matches!(
            vars(&[("AWS_ACCESS_KEY_ID", "AKID")]).load(),
            Err(CredentialsError::InvalidConfiguration(_))
        ));
    }
}
