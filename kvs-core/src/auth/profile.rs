//! Credentials and region from the shared `~/.aws/credentials` and
//! `~/.aws/config` files.
//!
//! The format is the AWS CLI's INI dialect: `[name]` sections in the
//! credentials file, `[profile name]` (or `[default]`) in the config file,
//! `key = value` lines, `#`/`;` comments. Keys in the credentials file win
//! over the same keys in the config file.

use std::collections::HashMap;
use std::path::PathBuf;

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;

/// One profile's settings, merged from both files.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The profile's `key = value` settings (keys lower-cased).
    pub settings: HashMap<String, String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<_> = self.settings.keys().collect();
        keys.sort();
        f.debug_struct("Profile")
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

impl Profile {
    /// The `region` setting.
    pub fn region(&self) -> Option<&str> {
        self.settings.get("region").map(String::as_str)
    }

    /// Static credentials, when the profile has keys.
    pub fn credentials(&self, name: &str) -> Result<Credentials, CredentialsError> {
        let key = self.settings.get("aws_access_key_id").ok_or_else(|| {
            CredentialsError::not_loaded(format!("profile {name} has no aws_access_key_id"))
        })?;
        let secret = self.settings.get("aws_secret_access_key").ok_or_else(|| {
            CredentialsError::invalid_configuration(format!(
                "profile {name} has no aws_secret_access_key"
            ))
        })?;
        Ok(Credentials::new(
            key,
            secret,
            self.settings.get("aws_session_token").cloned(),
            None,
            "Profile",
        ))
    }
}

/// Parses one file; `config` selects the config-file section naming.
fn sections(text: &str, config: bool) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            current = if config {
                match name.strip_prefix("profile ") {
                    Some(n) => Some(n.trim().to_owned()),
                    None if name == "default" => Some(name.to_owned()),
                    None => None, // sso-session, services … are not profiles
                }
            } else {
                Some(name.to_owned())
            };
            continue;
        }
        let (Some(section), Some((k, v))) = (&current, line.split_once('=')) else {
            continue;
        };
        let v = v.split(" #").next().unwrap_or("").trim();
        out.entry(section.clone())
            .or_default()
            .insert(k.trim().to_ascii_lowercase(), v.to_owned());
    }
    out
}

/// Merges the named profile out of the two files' text.
pub fn parse(credentials_file: &str, config_file: &str, profile: &str) -> Option<Profile> {
    let creds = sections(credentials_file, false);
    let config = sections(config_file, true);
    if !creds.contains_key(profile) && !config.contains_key(profile) {
        return None;
    }
    let mut settings = config.get(profile).cloned().unwrap_or_default();
    settings.extend(creds.get(profile).cloned().unwrap_or_default());
    Some(Profile { settings })
}

/// Reads a profile's keys from the shared files each time credentials are
/// asked for. Profile: `AWS_PROFILE` or `default`; files:
/// `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE` or `~/.aws/…`.
#[derive(Debug, Clone)]
pub struct ProfileProvider {
    profile: String,
    credentials_path: PathBuf,
    config_path: PathBuf,
}

impl Default for ProfileProvider {
    fn default() -> Self {
        Self::new()
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
}

impl ProfileProvider {
    /// The profile the environment selects, from the standard paths.
    pub fn new() -> Self {
        let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
        let credentials_path = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
            .map_or_else(|| home().join(".aws/credentials"), PathBuf::from);
        let config_path = std::env::var_os("AWS_CONFIG_FILE")
            .map_or_else(|| home().join(".aws/config"), PathBuf::from);
        Self {
            profile,
            credentials_path,
            config_path,
        }
    }

    /// A named profile from the given files.
    pub fn with_files(
        profile: impl Into<String>,
        credentials_path: PathBuf,
        config_path: PathBuf,
    ) -> Self {
        Self {
            profile: profile.into(),
            credentials_path,
            config_path,
        }
    }

    /// Reads the files and returns the profile.
    pub fn profile(&self) -> Result<Profile, CredentialsError> {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        parse(
            &read(&self.credentials_path),
            &read(&self.config_path),
            &self.profile,
        )
        .ok_or_else(|| {
            CredentialsError::not_loaded(format!(
                "no profile {:?} in {} or {}",
                self.profile,
                self.credentials_path.display(),
                self.config_path.display()
            ))
        })
    }
}

impl ProvideCredentials for ProfileProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(self.profile().and_then(|p| p.credentials(&self.profile)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDS: &str = "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s3cr3t\n\n# comment\n[camera]\nAWS_ACCESS_KEY_ID=AKIDCAM\naws_secret_access_key=camsecret\naws_session_token = tok\n";
    const CONFIG: &str = "[default]\nregion = us-west-2\n[profile camera]\nregion = eu-west-1 # inline comment\naws_access_key_id = OVERRIDDEN\n[sso-session x]\nregion = ap-south-1\n";

    #[test]
    fn profiles_merge_both_files() {
        let d = parse(CREDS, CONFIG, "default").unwrap();
        assert_eq!(d.region(), Some("us-west-2"));
        assert_eq!(
            d.credentials("default").unwrap().access_key_id(),
            "AKIDDEFAULT"
        );
        let cam = parse(CREDS, CONFIG, "camera").unwrap();
        assert_eq!(cam.region(), Some("eu-west-1"));
        let c = cam.credentials("camera").unwrap();
        assert_eq!(
            (c.access_key_id(), c.session_token()),
            ("AKIDCAM", Some("tok"))
        );
        assert!(parse(CREDS, CONFIG, "x").is_none());
        assert!(!format!("{cam:?}").contains("camsecret"));
    }

    #[test]
    fn provider_reads_files() {
        let dir = std::env::temp_dir().join(format!("kvs-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("credentials"), CREDS).unwrap();
        std::fs::write(dir.join("config"), CONFIG).unwrap();
        let p = ProfileProvider::with_files("camera", dir.join("credentials"), dir.join("config"));
        assert_eq!(
            p.profile()
                .unwrap()
                .credentials("camera")
                .unwrap()
                .secret_access_key(),
            "camsecret"
        );
        let missing =
            ProfileProvider::with_files("nope", dir.join("credentials"), dir.join("config"));
        assert!(missing.profile().is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
