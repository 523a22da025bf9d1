//! The control-plane client against moto in server mode (a third-party
//! implementation of the KVS control plane), started on a free loopback
//! port from the project virtualenv and stopped when the test ends.
#![cfg(feature = "client")]
#![allow(clippy::print_stderr)]

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kvs_core::auth::Credentials;
use kvs_core::client::{
    ApiName, ClientConfig, ClientError, CreateStream, KvsClient, RetryPolicy, ServiceException,
};

struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto() -> Option<Moto> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if !bin.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "moto_server is missing from .venv; CI must have it"
        );
        eprintln!("SKIPPED: .venv/bin/moto_server not found (the README test command installs it)");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let m = Moto { child, port };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto_server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(m)
}

fn client(port: u16) -> KvsClient {
    let creds = Credentials::new("AKIDMOTO", "moto-secret", None, None, "test");
    KvsClient::new(
        ClientConfig::new("us-east-1", creds)
            .endpoint(format!("http://127.0.0.1:{port}"))
            .retry(RetryPolicy::none()),
    )
    .unwrap()
}

#[tokio::test]
async fn control_plane_against_moto() {
    let Some(m) = moto() else { return };
    let c = client(m.port);
    let mut arns = Vec::new();
    for i in 0..5 {
        let arn = c
            .create_stream(&CreateStream {
                stream_name: format!("cam-{i}"),
                data_retention_in_hours: 24,
                media_type: Some("video/h264".into()),
                device_name: Some("front-door".into()),
                ..CreateStream::default()
            })
            .await
            .unwrap();
        assert!(arn.starts_with("arn:aws:kinesisvideo:us-east-1:"), "{arn}");
        arns.push(arn);
    }
    let info = c.describe_stream("cam-2").await.unwrap();
    assert_eq!(info.stream_name, "cam-2");
    assert_eq!(info.stream_arn, arns[2]);
    assert_eq!(info.data_retention_in_hours, Some(24));
    assert_eq!(info.media_type.as_deref(), Some("video/h264"));
    let by_arn = c.describe_stream(arns[2].as_str()).await.unwrap();
    assert_eq!(by_arn.stream_name, "cam-2");

    let names: HashSet<String> = c
        .list_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.stream_name)
        .collect();
    assert_eq!(names, (0..5).map(|i| format!("cam-{i}")).collect());

    let ep = c
        .get_data_endpoint("cam-1", ApiName::PutMedia)
        .await
        .unwrap();
    assert!(
        ep.starts_with("https://") || ep.starts_with("http://"),
        "{ep}"
    );
    assert_eq!(
        c.get_data_endpoint("cam-1", ApiName::PutMedia)
            .await
            .unwrap(),
        ep,
        "cached"
    );

    // Typed service errors: a second stream with the same name, a missing stream.
    let dup = c
        .create_stream(&CreateStream {
            stream_name: "cam-0".into(),
            ..CreateStream::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        dup.service_code(),
        Some(&ServiceException::ResourceInUse),
        "{dup}"
    );
    c.delete_stream(&arns[0], None).await.unwrap();
    let gone = c.describe_stream("cam-0").await.unwrap_err();
    assert_eq!(
        gone.service_code(),
        Some(&ServiceException::ResourceNotFound),
        "{gone}"
    );
    assert!(!gone.is_retryable());
    assert_eq!(c.list_streams().await.unwrap().len(), 4);
}

#[tokio::test]
async fn refused_connection_and_remote_http_are_typed() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = client(port); // nothing listens there
    let e = c.list_streams().await.unwrap_err();
    assert!(matches!(e, ClientError::Transport(_)), "{e:?}");
    assert!(e.is_retryable());
    let creds = Credentials::new("a", "b", None, None, "test");
    let remote = KvsClient::new(
        ClientConfig::new("us-east-1", creds).endpoint("http://kinesisvideo.example.com"),
    );
    assert!(matches!(remote, Err(ClientError::Config(_))));
}
