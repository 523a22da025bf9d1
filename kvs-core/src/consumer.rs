//! The consumer: fragments (or frames) of a stream, live or from a time
//! range, that keep coming across resets and the service's session ends.
//!
//! ```no_run
//! # async fn run(client: std::sync::Arc<kvs_core::client::KvsClient>) -> Result<(), Box<dyn std::error::Error>> {
//! use kvs_core::client::StartSelector;
//! use kvs_core::consumer::Consumer;
//!
//! let mut fragments = Consumer::builder(client, "front-door").start(StartSelector::Now);
//! while let Some(f) = fragments.next().await {
//!     let f = f?;
//!     println!("{} frames at {:?}", f.frames.len(), f.producer_timestamp_ms);
//! }
//! # Ok(()) }
//! ```
//!
//! - **Live** ([`ConsumerBuilder::start`]): GetMedia from the selector;
//!   when the connection breaks, the service ends the session (as it does
//!   after a while) or sends an ERROR tag, it starts again after the last
//!   fragment it delivered (its continuation token), with backoff while the
//!   service cannot be reached. A fragment cut by a broken connection is
//!   never delivered; it comes whole from the next session.
//! - **Exactly once**: a producer that resent a fragment after a cut may
//!   have had it stored twice, under the same producer timestamp; each
//!   producer timestamp is delivered once (the last 4096 are remembered),
//!   in the service's order.
//! - **Time range** ([`ConsumerBuilder::range`]): ListFragments, ordered by
//!   producer timestamp (duplicates dropped), fetched with
//!   GetMediaForFragmentList in batches; the stream ends after the last.

use std::sync::Arc;

use tokio::sync::mpsc;

pub use crate::client::Backoff;
use crate::client::{
    ClientError, FragmentSelector, KvsClient, ServiceException, StartSelector, StreamId,
};
use crate::mkv::fragment::Fragment;
use crate::mkv::types::ParsedFrame;

/// Settings for [`Consumer::builder`].
#[derive(Debug)]
pub struct ConsumerBuilder {
    client: Arc<KvsClient>,
    stream: StreamId,
    backoff: Backoff,
    buffer: usize,
}

/// Every consumer setting, with its default ([`Default`]). The builder's
/// methods set these one by one; [`ConsumerBuilder::options`] sets them
/// all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// Waits between resumes and retries (default 200 ms doubling to 10 s,
    /// full jitter).
    pub backoff: Backoff,
    /// Fragments read ahead of the caller (default 8, at least 1).
    pub read_ahead: usize,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            read_ahead: 8,
        }
    }
}

/// Entry point: `Consumer::builder(client, stream)`.
#[derive(Debug)]
pub struct Consumer;

impl Consumer {
    /// Settings for reading `stream` with `client` (a [`KvsClient`] or an
    /// `Arc` of one).
    pub fn builder(
        client: impl Into<Arc<KvsClient>>,
        stream: impl Into<StreamId>,
    ) -> ConsumerBuilder {
        ConsumerBuilder {
            client: client.into(),
            stream: stream.into(),
            backoff: ConsumerOptions::default().backoff,
            buffer: ConsumerOptions::default().read_ahead,
        }
    }
}

/// Fragments as they come: `next().await`, or as a
/// [`futures_core::Stream`]. Dropping it stops the reading.
#[derive(Debug)]
pub struct FragmentStream {
    rx: mpsc::Receiver<Result<Fragment, ClientError>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for FragmentStream {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl FragmentStream {
    /// Starts `reader` on the client's runtime; with none, the stream
    /// yields [`ClientError::NoRuntime`] and ends.
    fn spawn<F>(client: &KvsClient, buffer: usize, reader: impl FnOnce(Out) -> F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(buffer);
        let task = match client.spawn(reader(tx.clone())) {
            Ok(t) => Some(t),
            Err(e) => {
                let _ = tx.try_send(Err(e));
                None
            }
        };
        Self { rx, task }
    }
}

impl FragmentStream {
    /// The next fragment; `None` when a time range is exhausted (a live
    /// stream never ends by itself) or after a fatal error.
    pub async fn next(&mut self) -> Option<Result<Fragment, ClientError>> {
        self.rx.recv().await
    }

    /// Frame by frame, each with the fragment it came in.
    pub fn frames(self) -> FrameStream {
        FrameStream {
            fragments: self,
            current: None,
            index: 0,
        }
    }
}

impl futures_core::Stream for FragmentStream {
    type Item = Result<Fragment, ClientError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Frames of a [`FragmentStream`], in order.
#[derive(Debug)]
pub struct FrameStream {
    fragments: FragmentStream,
    current: Option<Arc<Fragment>>,
    index: usize,
}

impl FrameStream {
    /// The next frame and the fragment it belongs to.
    pub async fn next(&mut self) -> Option<Result<(Arc<Fragment>, ParsedFrame), ClientError>> {
        loop {
            if let Some(f) = &self.current {
                if let Some(fr) = f.frames.get(self.index) {
                    self.index += 1;
                    return Some(Ok((f.clone(), fr.clone())));
                }
            }
            match self.fragments.next().await? {
                Ok(f) => {
                    self.current = Some(Arc::new(f));
                    self.index = 0;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Errors a new session cannot fix.
fn fatal(e: &ClientError) -> bool {
    matches!(
        e.service_code(),
        Some(
            ServiceException::ResourceNotFound
                | ServiceException::NotAuthorized
                | ServiceException::AccessDenied
                | ServiceException::InvalidArgument
        )
    ) || matches!(
        e,
        ClientError::Config(_) | ClientError::Credentials(_) | ClientError::NoRuntime
    )
}

impl ConsumerBuilder {
    /// Every setting at once (see [`ConsumerOptions`]).
    pub fn options(mut self, o: ConsumerOptions) -> Self {
        self.backoff = o.backoff;
        self.buffer = o.read_ahead.max(1);
        self
    }

    /// Waits between resumes and retries (default 200 ms doubling to 10 s,
    /// full jitter). The consumer's loops are the only retries: the calls in
    /// them are made once.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Fragments read ahead of the caller (default 8).
    pub fn read_ahead(mut self, n: usize) -> Self {
        self.buffer = n.max(1);
        self
    }

    /// Follows the stream from `selector`, live. Its reader runs on the
    /// client's runtime ([`crate::client::ClientConfig::runtime`]); with no
    /// runtime, the stream's first item is [`ClientError::NoRuntime`].
    pub fn start(self, selector: StartSelector) -> FragmentStream {
        let c = self.client.clone();
        FragmentStream::spawn(&c, self.buffer, |tx| {
            follow(once(&self.client), self.stream, selector, self.backoff, tx)
        })
    }

    /// The fragments of a time range, in producer-time order (reader as in
    /// [`Self::start`]).
    pub fn range(self, selector: FragmentSelector) -> FragmentStream {
        let c = self.client.clone();
        FragmentStream::spawn(&c, self.buffer, |tx| {
            range(once(&self.client), self.stream, selector, self.backoff, tx)
        })
    }
}

type Out = mpsc::Sender<Result<Fragment, ClientError>>;

/// Producer timestamps remembered to recognise resent fragments.
const SEEN: usize = 4096;

async fn follow(
    client: Arc<KvsClient>,
    stream: StreamId,
    mut selector: StartSelector,
    backoff: Backoff,
    tx: Out,
) {
    let mut attempt = 0u32;
    let mut seen: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    loop {
        let mut session = match client.get_media(stream.clone(), &selector).await {
            Ok(s) => s,
            Err(e) if fatal(&e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, attempt, "GetMedia failed; retrying");
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        loop {
            match session.next_fragment().await {
                Some(Ok(f)) if !f.complete => break,
                Some(Ok(f)) if f.error_code.is_some() || f.error_id.is_some() => {
                    tracing::debug!(code = ?f.error_code, "GetMedia ERROR tag; resuming");
                    break;
                }
                Some(Ok(f)) => {
                    attempt = 0;
                    if let Some(t) = f
                        .continuation_token
                        .clone()
                        .or_else(|| f.fragment_number.clone())
                    {
                        selector = StartSelector::ContinuationToken(t);
                    }
                    // Each producer timestamp once: a fragment resent after a
                    // cut is stored again under the same one.
                    if let Some(t) = f.producer_timestamp_ms {
                        if seen.contains(&t) {
                            continue;
                        }
                        if seen.len() == SEEN {
                            seen.pop_front();
                        }
                        seen.push_back(t);
                    }
                    if tx.send(Ok(f)).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "GetMedia stream unreadable; resuming");
                    break;
                }
                None => break,
            }
        }
        // The session ended or broke: resume after the last fragment.
        tokio::time::sleep(backoff.delay(attempt)).await;
        attempt = attempt.saturating_add(1).min(4);
    }
}

/// The client with its own retries off (the consumer's loops retry).
fn once(client: &Arc<KvsClient>) -> Arc<KvsClient> {
    Arc::new(client.with_retry(crate::client::RetryPolicy::none()))
}

/// Retries a call while it fails with a retriable error, five times at most.
async fn retried<T, F, Fut>(backoff: Backoff, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if fatal(&e) || attempt >= 5 => return Err(e),
            Err(_) => {
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

async fn range(
    client: Arc<KvsClient>,
    stream: StreamId,
    selector: FragmentSelector,
    backoff: Backoff,
    tx: Out,
) {
    let list = retried(backoff, || {
        client.list_fragments(stream.clone(), Some(selector))
    })
    .await;
    let mut list = match list {
        Ok(l) => l,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    list.sort_by(|a, b| a.producer_timestamp.total_cmp(&b.producer_timestamp));
    list.dedup_by(|b, a| a.producer_timestamp == b.producer_timestamp);
    for batch in list.chunks(100) {
        let numbers: Vec<String> = batch.iter().map(|f| f.fragment_number.clone()).collect();
        let got = retried(backoff, || {
            client.get_media_for_fragment_list(stream.clone(), &numbers)
        })
        .await;
        let fragments = match got {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        for f in fragments {
            if tx.send(Ok(f)).await.is_err() {
                return;
            }
        }
    }
}
