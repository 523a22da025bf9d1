//! The HTTP transport: hyper 1 over rustls (webpki roots), HTTP/1.1.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::error::ClientError;

/// A response read whole (bounded).
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// The most a connection reads ahead of its reader, bytes. Response bytes
/// are handed on without copying (GetMedia frames are slices of them), so
/// a read buffer stays allocated while any frame cut from it lives: hyper's
/// default (about 400 KiB) would keep that much alive per frame in flight.
/// 16 KiB rather than 32: a reader of small frames held ~75 KiB a stream
/// instead of ~93 (16 GetMedia readers at once, `benches/python`); frames
/// larger than a buffer are joined from several reads either way.
const READ_BUFFER: usize = 16 << 10;

/// Shared connection pool.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, BoxBody<Bytes, BoxError>>,
    timeout: Duration,
    max_body: usize,
}

impl Transport {
    pub(crate) fn new(timeout: Duration, max_body: usize) -> Self {
        let mut http = HttpConnector::new();
        // Small writes (ACK-paced uploads, JSON calls) must not wait on Nagle.
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .http1_max_buf_size(READ_BUFFER)
            .build(https);
        Self {
            client,
            timeout,
            max_body,
        }
    }

    /// Sends a request and reads the whole response, within the timeout and
    /// the body-size limit.
    pub(crate) async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<Response, ClientError> {
        let fut = async {
            let resp = self
                .client
                .request(req.map(|b| b.map_err(|never| match never {}).boxed()))
                .await
                .map_err(|e| ClientError::Transport(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, self.max_body)
                .collect()
                .await
                .map_err(|e| ClientError::Transport(format!("reading the response body: {e}")))?
                .to_bytes();
            Ok(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    /// Sends a request with a streaming body; returns once the response
    /// headers arrive (within the timeout), leaving the body to the caller.
    pub(crate) async fn open(
        &self,
        req: http::Request<BoxBody<Bytes, BoxError>>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
            .map_err(|e| ClientError::Transport(error_chain(&e)))
    }

    /// Reads a whole (error) body within the limits.
    pub(crate) async fn read_body(&self, body: Incoming) -> Result<Bytes, ClientError> {
        let fut = Limited::new(body, self.max_body).collect();
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(b)) => Ok(b.to_bytes()),
            Ok(Err(e)) => Err(ClientError::Transport(format!(
                "reading the response body: {e}"
            ))),
            Err(_) => Err(ClientError::Timeout(self.timeout)),
        }
    }
}

/// A request body fed from a channel; ends when the sender is dropped, or
/// fails — hyper then closes the connection without the body's end, so the
/// server sees it cut, not complete — when its abort signal fires.
#[derive(Debug)]
pub(crate) struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    abort: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl ChannelBody {
    /// A body of what `rx` brings; `abort` cuts it (dropping its sender
    /// unsent does not).
    pub(crate) fn new(
        rx: tokio::sync::mpsc::Receiver<Bytes>,
        abort: tokio::sync::oneshot::Receiver<()>,
    ) -> Self {
        Self {
            rx,
            abort: Some(abort),
        }
    }
}

/// The body was cut on purpose ([`ChannelBody`]'s abort signal).
#[derive(Debug, thiserror::Error)]
#[error("request body abandoned")]
pub(crate) struct Abandoned;

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(a) = self.abort.as_mut() {
            match Pin::new(a).poll(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Some(Err(Box::new(Abandoned)))),
                Poll::Ready(Err(_)) => self.abort = None,
                Poll::Pending => {}
            }
        }
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A request body's error.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A whole request body, boxed as the transport takes bodies.
pub(crate) fn full(b: Bytes) -> BoxBody<Bytes, BoxError> {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// An error with its sources, on one line (hyper hides the cause in the chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
