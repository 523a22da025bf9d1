//! The `aws-config` adapter: credentials and region from shared profile
//! files resolved by the AWS SDK's own chain sign requests that the local
//! endpoint (checking SigV4 for exactly those keys) accepts.
#![cfg(all(feature = "aws-config", feature = "local"))]
// aws-config takes its profile-file types under these (deprecated) names; the
// new ones live in aws-runtime, which is no dependency of ours.
#![allow(deprecated)]

use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
use kvs_core::client::{ClientConfig, CreateStream, KvsClient};
use kvs_core::local::{LocalConfig, LocalEndpoint};

#[tokio::test]
async fn profile_credentials_through_the_sdk_chain_sign_requests() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("aws-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config");
    std::fs::write(
        &config,
        "[profile cam]\nregion = eu-west-1\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile/secret\n",
    )
    .unwrap();
    let files = ProfileFiles::builder()
        .with_file(ProfileFileKind::Config, &config)
        .build();
    let load = |name: &'static str| {
        kvs_core::auth::aws_config::loader()
            .profile_files(files.clone())
            .profile_name(name)
            .load()
    };
    let sdk = load("cam").await;
    let ep = LocalEndpoint::start(LocalConfig {
        credentials: Some(("AKIDPROFILE".into(), "profile/secret".into())),
        region: "eu-west-1".into(),
        ..LocalConfig::default()
    })
    .await
    .unwrap();
    let cfg = ClientConfig::from_sdk_config(&sdk)
        .unwrap()
        .endpoint(ep.url());
    assert_eq!(cfg.region, "eu-west-1");
    let c = KvsClient::new(cfg).unwrap();
    let arn = c
        .create_stream(&CreateStream {
            stream_name: "cam".into(),
            ..CreateStream::default()
        })
        .await
        .unwrap();
    assert!(arn.starts_with("arn:aws:kinesisvideo:"), "{arn}");
    assert_eq!(c.describe_stream("cam").await.unwrap().stream_arn, arn);

    // Other keys from the same chain are refused by the endpoint.
    std::fs::write(
        &config,
        "[profile other]\nregion = eu-west-1\naws_access_key_id = AKIDOTHER\naws_secret_access_key = nope\n",
    )
    .unwrap();
    let sdk = load("other").await;
    let mut cfg = ClientConfig::from_sdk_config(&sdk)
        .unwrap()
        .endpoint(ep.url());
    cfg.retry = kvs_core::client::RetryPolicy::none();
    let e = KvsClient::new(cfg)
        .unwrap()
        .describe_stream("cam")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            kvs_core::client::ClientError::Service { status: 403, .. }
        ),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
