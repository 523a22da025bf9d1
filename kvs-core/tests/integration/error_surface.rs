//! One error surface: every module's error converts into `kvs_core::Error`
//! with `?`, keeping its typed source, and answers kind, retryability, the
//! service's exception and the byte offset.
#![cfg(feature = "local")]

use std::time::Duration;

use bytes::Bytes;
use kvs_core::auth::Credentials;
use kvs_core::client::{ClientConfig, ClientError, KvsClient, RetryPolicy, ServiceException};
use kvs_core::local::{Faults, LocalConfig, LocalEndpoint};
use kvs_core::mkv::{parse_all, ParserConfig};
use kvs_core::{Error, ErrorKind};

fn parse(data: &'static [u8]) -> Result<(), Error> {
    let (_, err) = parse_all(Bytes::from_static(data), ParserConfig::default());
    err.map_or(Ok(()), |e| Err(e.into()))
}

#[test]
fn bad_matroska_keeps_its_offset() {
    // An EBML header ID, then a size byte of zero (malformed) at byte 4.
    let e = parse(&[0x1A, 0x45, 0xDF, 0xA3, 0x00, 0x00]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(!e.is_retryable());
    let Error::Parse(p) = &e else { panic!("{e:?}") };
    assert_eq!(e.offset(), Some(p.offset()));
    assert!(
        e.to_string().contains(&format!("byte {}", p.offset())),
        "{e}"
    );
}

#[tokio::test]
async fn service_errors_keep_their_exception_and_retry_class() {
    let ep = LocalEndpoint::start(LocalConfig {
        faults: Faults {
            throttle: 1.0,
            ..Faults::default()
        },
        ..LocalConfig::default()
    })
    .await
    .unwrap();
    let c = KvsClient::new(
        ClientConfig::new("us-east-1", Credentials::new("a", "b", None, None, "t"))
            .endpoint(ep.url())
            .retry(RetryPolicy {
                max_attempts: 1,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(1),
            }),
    )
    .unwrap();
    let e: Error = c.describe_stream("nope").await.unwrap_err().into();
    assert_eq!(e.kind(), ErrorKind::Service);
    assert_eq!(
        e.service_error(),
        Some(&ServiceException::ClientLimitExceeded)
    );
    assert!(e.is_retryable(), "throttling is retryable");

    let ep = LocalEndpoint::start(LocalConfig::default()).await.unwrap();
    let c = KvsClient::new(
        ClientConfig::new("us-east-1", Credentials::new("a", "b", None, None, "t"))
            .endpoint(ep.url()),
    )
    .unwrap();
    let e: Error = c.describe_stream("nope").await.unwrap_err().into();
    assert_eq!(e.service_error(), Some(&ServiceException::ResourceNotFound));
    assert!(!e.is_retryable());
    assert!(
        matches!(&e, Error::Client(ClientError::Service { status: 404, .. })),
        "{e:?}"
    );
}

#[test]
fn a_refused_frame_is_the_callers() {
    use kvs_core::mkv::builder::{Payload, TrackConfig};
    use kvs_core::protocol::producer::{Frame, ProducerConfig, ProducerCore};
    let mut p = ProducerCore::new(ProducerConfig::new(
        vec![TrackConfig::aac(1, 48_000, 2).unwrap()],
        0,
    ))
    .unwrap();
    let f = |ms| Frame {
        track: 1,
        pts: Duration::from_millis(ms),
        dts: None,
        key: true,
        payload: Payload::Raw(Bytes::from_static(b"a")),
    };
    p.put_frame(f(10), std::time::Instant::now()).unwrap();
    let e: Error = p
        .put_frame(f(5), std::time::Instant::now())
        .unwrap_err()
        .into();
    assert_eq!(e.kind(), ErrorKind::InvalidFrame);
    assert!(e.to_string().contains("is not after"), "{e}");
}
