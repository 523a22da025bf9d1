//! The HTTP transport: hyper 1 over rustls (webpki roots), HTTP/1.1.

use std::convert::Infallible;
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
const READ_BUFFER: usize = 32 << 10;

/// Shared connection pool.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, BoxBody<Bytes, Infallible>>,
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
                .request(req.map(BodyExt::boxed))
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
        req: http::Request<BoxBody<Bytes, Infallible>>,
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

/// A request body fed from a channel; ends when the sender is dropped.
pub(crate) struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
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
