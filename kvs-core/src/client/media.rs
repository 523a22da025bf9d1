//! PutMedia and GetMedia sessions.
//!
//! PutMedia is one long-lived POST: the body is fed from a channel of MKV
//! chunks (any chunking), and the ACKs the service streams back on the same
//! connection are decoded as they arrive. GetMedia yields whole
//! [`Fragment`]s as soon as each one's trailing service tags arrive.

use std::time::SystemTime;

use aws_credential_types::provider::ProvideCredentials;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::control::{ApiName, KvsClient, StreamId};
use super::error::ClientError;
use super::http::ChannelBody;
use crate::auth::sigv4::{sign_headers, SignedBody};
use crate::mkv::fragment::{Assembled, Fragment, FragmentAssembler, FragmentError};
use crate::protocol::{Ack, AckDecoder};

/// How the cluster timecodes of a PutMedia upload are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimecodeType {
    /// Cluster timecodes are absolute (epoch, TimecodeScale units).
    Absolute,
    /// Cluster timecodes are offsets from the producer start timestamp.
    Relative,
}

/// PutMedia settings.
#[derive(Debug, Clone)]
pub struct PutMediaOptions {
    /// The stream.
    pub stream: StreamId,
    /// Timecode interpretation.
    pub timecode_type: TimecodeType,
    /// Producer start time, UTC (`x-amzn-producer-start-timestamp`, to the
    /// millisecond).
    pub producer_start: SystemTime,
}

/// Where GetMedia starts.
#[derive(Debug, Clone, PartialEq)]
pub enum StartSelector {
    /// The newest fragment on.
    Now,
    /// The oldest stored fragment on.
    Earliest,
    /// The fragment after this one.
    AfterFragmentNumber(String),
    /// The first fragment with this producer timestamp or later (UTC; sent
    /// with ms precision).
    ProducerTimestamp(SystemTime),
    /// The first fragment with this server timestamp or later (UTC; sent with
    /// ms precision).
    ServerTimestamp(SystemTime),
    /// Where an earlier session stopped.
    ContinuationToken(String),
}

impl StartSelector {
    fn to_json(&self) -> Value {
        // Epoch seconds, ms precision (the API's timestamps).
        let secs = |t: &SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
        };
        match self {
            Self::Now => json!({"StartSelectorType": "NOW"}),
            Self::Earliest => json!({"StartSelectorType": "EARLIEST"}),
            Self::AfterFragmentNumber(n) => {
                json!({"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": n})
            }
            Self::ProducerTimestamp(t) => {
                json!({"StartSelectorType": "PRODUCER_TIMESTAMP", "StartTimestamp": secs(t)})
            }
            Self::ServerTimestamp(t) => {
                json!({"StartSelectorType": "SERVER_TIMESTAMP", "StartTimestamp": secs(t)})
            }
            Self::ContinuationToken(t) => {
                json!({"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": t})
            }
        }
    }
}

/// An open PutMedia connection: send MKV with [`PutMediaSession::send`],
/// read ACKs with [`PutMediaSession::next_ack`].
#[derive(Debug)]
pub struct PutMediaSession {
    body: Option<mpsc::Sender<Bytes>>,
    /// Cuts the body (see [`PutMediaSession::abandon`]).
    abort: Option<tokio::sync::oneshot::Sender<()>>,
    acks: mpsc::Receiver<Result<Ack, ClientError>>,
    credentials_expiry: Option<SystemTime>,
}

/// A handle that writes to a PutMedia body; the body ends once the session
/// is finished and every handle is dropped.
#[derive(Debug, Clone)]
pub struct PutMediaSender(mpsc::Sender<Bytes>);

impl PutMediaSender {
    /// Sends MKV bytes; fails when the connection is gone.
    pub async fn send(&self, chunk: Bytes) -> Result<(), ClientError> {
        self.0
            .send(chunk)
            .await
            .map_err(|_| ClientError::Transport("the PutMedia connection is closed".into()))
    }
}

impl Drop for PutMediaSession {
    /// A session dropped unfinished is abandoned, not ended: see
    /// [`PutMediaSession::abandon`].
    fn drop(&mut self) {
        self.abandon();
    }
}

impl PutMediaSession {
    /// When the credentials that signed this connection expire, if they do.
    pub fn credentials_expiry(&self) -> Option<SystemTime> {
        self.credentials_expiry
    }

    /// A sending handle usable while ACKs are awaited on the session (write
    /// and read at once without borrowing it twice).
    pub fn sender(&self) -> PutMediaSender {
        match &self.body {
            Some(tx) => PutMediaSender(tx.clone()),
            // Already finished: a handle whose sends fail.
            None => PutMediaSender(mpsc::channel(1).0),
        }
    }

    /// Sends MKV bytes; fails when the connection is gone.
    pub async fn send(&self, chunk: Bytes) -> Result<(), ClientError> {
        match &self.body {
            Some(tx) => tx
                .send(chunk)
                .await
                .map_err(|_| ClientError::Transport("the PutMedia connection is closed".into())),
            None => Err(ClientError::Transport(
                "the PutMedia body was already finished".into(),
            )),
        }
    }

    /// Ends the body (the terminating chunk); ACKs keep coming until the
    /// service closes the response.
    pub fn finish(&mut self) {
        self.body = None;
        // Dropped unsent: the body ends cleanly once the handles are gone.
        self.abort = None;
    }

    /// Cuts the connection without ending the body: the service sees a
    /// broken upload, so a fragment it was in the middle of is not taken
    /// as whole (a body that ends cleanly inside a Cluster would end that
    /// fragment there — an inference; the local endpoint does so). What
    /// this connection sent but did not get acknowledged must be sent
    /// again. Dropping a session that was not finished does this too.
    pub fn abandon(&mut self) {
        if let Some(a) = self.abort.take() {
            let _ = a.send(());
        }
        self.body = None;
    }

    /// The next ACK; `None` once the service has closed the response.
    pub async fn next_ack(&mut self) -> Option<Result<Ack, ClientError>> {
        self.acks.recv().await
    }
}

/// An open GetMedia (or GetMediaForFragmentList) response yielding
/// fragments, or frames as they arrive.
#[derive(Debug)]
pub struct GetMediaSession {
    body: Incoming,
    assembler: FragmentAssembler,
    /// `GetMedia` or `GetMediaForFragmentList`.
    operation: &'static str,
    done: bool,
    /// Why the connection broke (rather than the service ending the response).
    broken: Option<String>,
    last_token: Option<String>,
    /// The service's bytes, kept when asked for with [`GetMediaSession::keep_raw`].
    raw: Option<crate::ebml::reader::ChunkQueue>,
}

impl GetMediaSession {
    pub(crate) fn new(body: Incoming, operation: &'static str) -> Self {
        Self {
            body,
            assembler: FragmentAssembler::default(),
            operation,
            done: false,
            broken: None,
            last_token: None,
            raw: None,
        }
    }

    /// Keeps the service's bytes as received, to be taken with
    /// [`GetMediaSession::take_raw`].
    pub fn keep_raw(mut self) -> Self {
        self.raw = Some(crate::ebml::reader::ChunkQueue::new());
        self
    }

    /// The service's bytes up to the end of the last fragment handed out
    /// (not taken before), unchanged; empty unless [`GetMediaSession::keep_raw`].
    pub fn take_raw(&mut self) -> Vec<Bytes> {
        let end = self.assembler.offset();
        match &mut self.raw {
            Some(q) => {
                let n = end.saturating_sub(q.offset()).min(q.len() as u64) as usize;
                q.take_chunks(n)
            }
            None => Vec::new(),
        }
    }

    /// The next whole fragment; `None` when the service ended the response.
    /// A fragment cut by a broken connection comes out with `complete == false`.
    pub async fn next_fragment(&mut self) -> Option<Result<Fragment, ClientError>> {
        loop {
            match self.next_item().await? {
                Ok(Assembled::Fragment(f)) => return Some(Ok(f)),
                Ok(Assembled::Frame(..)) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Hands out each frame as soon as its block arrives
    /// ([`Assembled::Frame`] from [`Self::next_item`]), before its fragment
    /// ends — the service streams a fragment's blocks as they are ingested.
    pub fn yield_frames(mut self) -> Self {
        self.assembler.yield_frames(true);
        self
    }

    /// Keeps no more frames of the fragment `head` names, for a reader
    /// that took them all one by one: its [`Assembled::Fragment`] comes with
    /// `frames` empty ([`FragmentAssembler::release_frames`]).
    pub fn release_frames(&mut self, head: &std::sync::Arc<crate::mkv::fragment::FragmentHead>) {
        self.assembler.release_frames(head);
    }

    /// Why the connection broke, when it did (the service did not end the
    /// response): fragments after the break are not whole.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// The next frame (with [`Self::yield_frames`]) or fragment, in stream
    /// order; `None` when the service ended the response.
    ///
    /// A fragment is whole (`complete`) only when the service's trailing
    /// tags ended it with a continuation token (or it is an error chunk):
    /// one cut by a broken connection, or one the producer abandoned (its
    /// trailing tags carry no token), comes out with `complete == false` —
    /// its frames already handed out are not a whole fragment.
    pub async fn next_item(&mut self) -> Option<Result<Assembled, ClientError>> {
        loop {
            match self.assembler.next_item() {
                Ok(Some(Assembled::Fragment(mut f))) => {
                    let ended_by_service = f.millis_behind_now.is_some()
                        || f.error_code.is_some()
                        || f.error_id.is_some();
                    // GetMediaForFragmentList's fragments carry no trailing
                    // tags: whole unless the connection broke.
                    let whole = if self.operation == "GetMedia" {
                        f.continuation_token.is_some()
                    } else {
                        self.broken.is_none()
                    } || f.error_code.is_some()
                        || f.error_id.is_some();
                    if (self.broken.is_some() || ended_by_service) && !whole {
                        f.complete = false;
                    }
                    if f.complete {
                        if let Some(t) = &f.continuation_token {
                            self.last_token = Some(t.clone());
                        }
                    }
                    return Some(Ok(Assembled::Fragment(f)));
                }
                Ok(Some(frame)) => return Some(Ok(frame)),
                Ok(None) if self.done => return None,
                Ok(None) => {}
                Err(FragmentError::Parse(e)) if e.is_truncated() => return None,
                Err(e) => {
                    return Some(Err(ClientError::Media {
                        operation: self.operation,
                        source: e,
                    }))
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if let Some(q) = &mut self.raw {
                            q.push(data.clone());
                        }
                        self.assembler.push(data);
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    self.broken = Some(super::http::error_chain(&e));
                    self.assembler.finish();
                    tracing::debug!(error = %e, operation = self.operation, "connection broke");
                }
                None => {
                    self.done = true;
                    self.assembler.finish();
                }
            }
        }
    }

    /// The continuation token of the last complete fragment, to resume with
    /// [`StartSelector::ContinuationToken`].
    pub fn continuation_token(&self) -> Option<&str> {
        self.last_token.as_deref()
    }
}

impl KvsClient {
    pub(crate) async fn signed(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        payload: SignedBody<'_>,
    ) -> Result<http::request::Builder, ClientError> {
        let creds = self.credentials().await?;
        self.signed_with(&creds, url, headers, payload)
    }

    /// Credentials from the configured provider.
    async fn credentials(&self) -> Result<aws_credential_types::Credentials, ClientError> {
        self.cfg
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| ClientError::Credentials(super::http::error_chain(&e)))
    }

    /// A POST request builder signed with these credentials.
    fn signed_with(
        &self,
        creds: &aws_credential_types::Credentials,
        url: &str,
        headers: &[(&str, &str)],
        payload: SignedBody<'_>,
    ) -> Result<http::request::Builder, ClientError> {
        let signed = sign_headers(
            "POST",
            url,
            headers,
            payload,
            creds,
            &self.cfg.region,
            SystemTime::now(),
        )
        .map_err(|e| ClientError::Config(e.to_string()))?;
        let mut req = http::Request::post(url)
            .header("user-agent", concat!("kvs-rs/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers
            .iter()
            .map(|(k, v)| (*k, *v))
            .chain(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            req = req.header(k, v);
        }
        Ok(req)
    }

    pub(crate) async fn check(
        &self,
        resp: http::Response<Incoming>,
    ) -> Result<Incoming, ClientError> {
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(resp.into_body());
        }
        let (parts, body) = resp.into_parts();
        let body = self.transport.read_body(body).await?;
        let h = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
        Err(ClientError::from_response(
            status,
            h("x-amzn-errortype"),
            h("x-amzn-requestid"),
            &body,
        ))
    }

    /// POSTs a signed JSON body to a data-plane API and returns the response
    /// body once a 200 arrives (service errors typed), forgetting the cached
    /// data endpoint when the connection fails.
    pub(crate) async fn open_json(
        &self,
        stream: &StreamId,
        api: ApiName,
        path: &str,
        mut body: Value,
    ) -> Result<Incoming, ClientError> {
        let base = self.get_data_endpoint(stream.clone(), api).await?;
        let url = format!("{}{path}", base.trim_end_matches('/'));
        stream.add_to(&mut body);
        let body = Bytes::from(body.to_string());
        let req = self
            .signed(
                &url,
                &[("content-type", "application/json")],
                SignedBody::Bytes(&body),
            )
            .await?
            .body(super::http::full(body.clone()))
            .map_err(|e| ClientError::Config(format!("bad request to {url}: {e}")))?;
        let resp = match self.transport.open(req).await {
            Ok(r) => r,
            Err(e) => {
                self.forget_data_endpoint(stream.clone(), api);
                return Err(e);
            }
        };
        self.check(resp).await
    }

    /// Opens a PutMedia connection to the stream's data endpoint.
    pub async fn put_media(&self, opts: &PutMediaOptions) -> Result<PutMediaSession, ClientError> {
        let base = self
            .get_data_endpoint(opts.stream.clone(), ApiName::PutMedia)
            .await?;
        let url = format!("{}/putMedia", base.trim_end_matches('/'));
        let start_ms = opts
            .producer_start
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let start = format!("{}.{:03}", start_ms / 1000, start_ms % 1000);
        let tc = match opts.timecode_type {
            TimecodeType::Absolute => "ABSOLUTE",
            TimecodeType::Relative => "RELATIVE",
        };
        let (id_header, id) = match &opts.stream {
            StreamId::Name(n) => ("x-amzn-stream-name", n.as_str()),
            StreamId::Arn(a) => ("x-amzn-stream-arn", a.as_str()),
        };
        let headers = [
            (id_header, id),
            ("x-amzn-fragment-timecode-type", tc),
            ("x-amzn-producer-start-timestamp", start.as_str()),
            ("x-amzn-fragment-acknowledgment-required", "1"),
        ];
        let (tx, rx) = mpsc::channel(32);
        let (abort, aborted) = tokio::sync::oneshot::channel();
        let creds = self.credentials().await?;
        let credentials_expiry = creds.expiry();
        let req = self
            .signed_with(&creds, &url, &headers, SignedBody::StreamingEmptyHash)?
            .body(ChannelBody::new(rx, aborted).boxed())
            .map_err(|e| ClientError::Config(format!("bad PutMedia request: {e}")))?;
        let resp = match self.transport.open(req).await {
            Ok(r) => r,
            Err(e) => {
                self.forget_data_endpoint(opts.stream.clone(), ApiName::PutMedia);
                return Err(e);
            }
        };
        let mut body = self.check(resp).await?;
        let (ack_tx, ack_rx) = mpsc::channel(64);
        self.spawn(async move {
            let mut decoder = AckDecoder::default();
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            decoder.push(&data);
                            while let Some(a) = decoder.next_ack() {
                                let failed = a.is_err();
                                let a = a.map_err(ClientError::Ack);
                                if ack_tx.send(a).await.is_err() || failed {
                                    return;
                                }
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let _ = ack_tx
                            .send(Err(ClientError::Transport(super::http::error_chain(&e))))
                            .await;
                        return;
                    }
                    None => {
                        if let Err(e) = decoder.finish() {
                            let _ = ack_tx.send(Err(ClientError::Ack(e))).await;
                        }
                        return;
                    }
                }
            }
        })?;
        Ok(PutMediaSession {
            body: Some(tx),
            abort: Some(abort),
            acks: ack_rx,
            credentials_expiry,
        })
    }

    /// Opens a GetMedia connection.
    pub async fn get_media(
        &self,
        stream: impl Into<StreamId>,
        start: &StartSelector,
    ) -> Result<GetMediaSession, ClientError> {
        let body = self
            .open_json(
                &stream.into(),
                ApiName::GetMedia,
                "/getMedia",
                json!({"StartSelector": start.to_json()}),
            )
            .await?;
        Ok(GetMediaSession::new(body, "GetMedia"))
    }
}
