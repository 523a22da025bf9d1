//! The clients against servers that misbehave (hand-written, on 127.0.0.1):
//! a TLS failure, an HTML error page, an HTML page where ACKs belong, a
//! malformed ACK line and a connection reset each come out as a typed
//! [`ClientError`], never a panic or a hang.
#![cfg(feature = "client")]

use std::time::Duration;

use bytes::Bytes;
use kvs_core::auth::Credentials;
use kvs_core::client::{
    ClientConfig, ClientError, KvsClient, PutMediaOptions, RetryPolicy, TimecodeType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fake data endpoint answers PutMedia.
#[derive(Clone, Copy)]
enum PutMedia {
    /// 502 with an HTML page.
    HtmlError,
    /// 200 with an HTML page as the body (a captive portal).
    HtmlBody,
    /// 200, then a line that is not an ACK.
    BadAck,
    /// The connection reset once the request head is read.
    Reset,
}

async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A server that answers GetDataEndpoint with itself and PutMedia as told.
async fn fake_endpoint(mode: PutMedia) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let me = url.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let me = me.clone();
            tokio::spawn(async move {
                let head = read_head(&mut tcp).await;
                if head.starts_with("POST /getDataEndpoint") {
                    let body = format!("{{\"DataEndpoint\":\"{me}\"}}");
                    let _ = tcp.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes()).await;
                    return;
                }
                let html = "<html><body><h1>502 Bad Gateway</h1></body></html>";
                match mode {
                    PutMedia::HtmlError => {
                        let _ = tcp.write_all(format!("HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}", html.len()).as_bytes()).await;
                    }
                    PutMedia::HtmlBody => {
                        let _ = tcp.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n{html}").as_bytes()).await;
                    }
                    PutMedia::BadAck => {
                        let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"EventType\":\"RECEIVED\",\"FragmentTimecode\":\"soon\"}\n").await;
                    }
                    PutMedia::Reset => {
                        let _ = tcp.set_zero_linger();
                    }
                }
                // Close (a reset with linger 0) after a moment.
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
    });
    url
}

fn client(url: &str) -> KvsClient {
    let mut cfg = ClientConfig::new("us-east-1", Credentials::new("a", "b", None, None, "t"))
        .endpoint(url)
        .retry(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        });
    cfg.timeout = Duration::from_secs(5);
    KvsClient::new(cfg).unwrap()
}

/// Opens PutMedia, sends a little, and returns the first error met.
async fn put(url: &str) -> ClientError {
    let c = client(url);
    let opts = PutMediaOptions {
        stream: "cam".into(),
        timecode_type: TimecodeType::Relative,
        producer_start: crate::support::at_ms(1),
    };
    let mut s = match c.put_media(&opts).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let _ = s.send(Bytes::from_static(b"\x1a\x45\xdf\xa3")).await;
    s.finish();
    let next = tokio::time::timeout(Duration::from_secs(5), s.next_ack())
        .await
        .expect("an answer, not a hang");
    match next {
        Some(Err(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_html_error_page_is_an_unexpected_response() {
    let e = put(&fake_endpoint(PutMedia::HtmlError).await).await;
    match &e {
        ClientError::UnexpectedResponse { status, body } => {
            assert_eq!(*status, 502);
            assert!(body.contains("502 Bad Gateway"), "{body}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn html_where_acks_belong_is_a_decode_error() {
    let e = put(&fake_endpoint(PutMedia::HtmlBody).await).await;
    // The decoder's own error: the stray byte and its offset.
    assert!(
        matches!(
            &e,
            ClientError::Ack(kvs_core::protocol::AckError::Garbage { byte: b'<', .. })
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_malformed_ack_line_is_a_decode_error() {
    let e = put(&fake_endpoint(PutMedia::BadAck).await).await;
    match &e {
        ClientError::Ack(source) => {
            let reason = source.to_string();
            assert!(reason.contains("FragmentTimecode"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_connection_reset_is_a_transport_error() {
    let e = put(&fake_endpoint(PutMedia::Reset).await).await;
    assert!(matches!(&e, ClientError::Transport(_)), "{e:?}");
}

#[tokio::test]
async fn a_tls_failure_is_a_transport_error() {
    // A server that answers the TLS handshake with plain HTTP.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    let c = client(&format!("https://127.0.0.1:{port}"));
    let e = c.describe_stream("cam").await.unwrap_err();
    match &e {
        ClientError::Transport(m) => assert!(!m.is_empty()),
        other => panic!("{other:?}"),
    }
    // Nothing listening at all: refused, also typed.
    drop(c);
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = client(&format!("https://127.0.0.1:{port}"))
        .describe_stream("cam")
        .await
        .unwrap_err();
    assert!(matches!(&e, ClientError::Transport(_)), "{e:?}");
}
