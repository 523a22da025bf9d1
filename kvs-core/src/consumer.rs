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
//! - **Live** ([`ConsumerBuilder::start`]): GetMedia from the selector
//!   (when the first five tries all fail without an answer from the
//!   service — a wrong endpoint, no network — the stream yields that error
//!   and ends; a throttled try is an answer, retried with backoff);
//!   when the connection breaks, the service ends the session (as it does
//!   after a while) or stops it with a retryable error chunk (3002, 5000),
//!   it starts again after the last fragment it delivered (its
//!   continuation token), with backoff while the service cannot be
//!   reached. An error chunk a new session cannot get past (4000 fragment
//!   not found, 4500–4506 the stream's KMS key) ends the stream with
//!   [`ClientError::InStream`] naming the fragment. A fragment cut by a
//!   broken connection is never delivered whole; it comes whole from the
//!   next session.
//! - **Frames as they arrive** ([`FragmentStream::frames`]): each frame is
//!   yielded as soon as its block arrives — the service (and the local
//!   endpoint) streams a fragment's blocks while they are ingested — with
//!   the fragment's number and timestamps from its leading tags
//!   ([`FragmentHead`]). [`FragmentStream::next`] yields whole fragments.
//! - **Exactly once**: a producer that resent a fragment after a cut may
//!   have had it stored twice, under the same producer timestamp; each
//!   producer timestamp is delivered once (the last 4096 are remembered),
//!   in the service's order. Frame by frame too: after a cut inside a
//!   fragment (the connection broke, or the producer abandoned it), the
//!   fragment comes again whole and only its frames not yet yielded are.
//! - **Time range** ([`ConsumerBuilder::range`]): ListFragments, ordered by
//!   producer timestamp, duplicates resolved as every archived path
//!   resolves them ([`crate::timeline::playable`]: of fragments covering the
//!   same producer time, the first ingested), fetched with
//!   GetMediaForFragmentList in batches; the stream ends after the last.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::client::media::GetMediaSession;
pub use crate::client::Backoff;
use crate::client::{
    ClientError, FragmentSelector, KvsClient, ServiceException, StartSelector, StreamId,
};
use crate::mkv::fragment::{Assembled, Fragment, FragmentHead};
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
/// [`futures_core::Stream`]; or frame by frame ([`Self::frames`]).
/// Dropping it stops the reading.
#[derive(Debug)]
pub struct FragmentStream {
    rx: mpsc::Receiver<Received>,
    /// Items taken from `rx` in one go, not yet handed out (last first).
    /// Taking what is there at once frees the reader's slots together: one
    /// wake-up of the reader task per batch, not one per frame (a
    /// cross-thread wake costs ~20 µs here, more than a small frame's own
    /// work).
    received: Vec<Received>,
    /// `rx`'s capacity: the most taken at once.
    capacity: usize,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Set by [`Self::frames`]: the reader sends frames as they arrive.
    frames: Arc<std::sync::atomic::AtomicBool>,
    /// When the reader last received a frame.
    activity: Activity,
}

/// When a reader last received a frame: shared by it and its stream.
#[derive(Debug, Clone, Default)]
struct Activity(Arc<std::sync::Mutex<Option<tokio::time::Instant>>>);

impl Activity {
    fn touch(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tokio::time::Instant::now());
    }

    fn last(&self) -> Option<tokio::time::Instant> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the reader task sends: boxed where large, so that the channel's
/// slots (allocated 32 at a time per stream) stay the size of a frame.
type Received = Result<Delivered, Box<ClientError>>;

/// What the reader task sends.
#[derive(Debug)]
enum Delivered {
    /// A frame as it arrived (frame by frame only).
    Frame(Arc<FragmentHead>, ParsedFrame),
    /// A whole fragment, and how many of its first frames were already
    /// sent as [`Delivered::Frame`]s.
    Fragment(Box<Fragment>, usize),
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
        let frames = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let activity = Activity::default();
        let out = Out {
            tx: tx.clone(),
            frames: frames.clone(),
            activity: activity.clone(),
        };
        let task = match client.spawn(reader(out)) {
            Ok(t) => Some(t),
            Err(e) => {
                let _ = tx.try_send(Err(Box::new(e)));
                None
            }
        };
        Self {
            rx,
            received: Vec::new(),
            capacity: buffer.max(1),
            task,
            frames,
            activity,
        }
    }

    /// The reader's next item: those already taken first, else every item
    /// waiting (at least one) taken at once.
    async fn recv(&mut self) -> Option<Received> {
        if self.received.is_empty() {
            self.rx.recv_many(&mut self.received, self.capacity).await;
            self.received.reverse();
        }
        self.received.pop()
    }

    /// As [`Self::recv`], polled.
    fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Received>> {
        if self.received.is_empty() {
            std::task::ready!(self
                .rx
                .poll_recv_many(cx, &mut self.received, self.capacity));
            self.received.reverse();
        }
        std::task::Poll::Ready(self.received.pop())
    }
}

impl FragmentStream {
    /// The next fragment; `None` when a time range is exhausted (a live
    /// stream never ends by itself) or after a fatal error.
    pub async fn next(&mut self) -> Option<Result<Fragment, ClientError>> {
        loop {
            match self.recv().await? {
                Ok(Delivered::Fragment(f, _)) => return Some(Ok(*f)),
                Ok(Delivered::Frame(..)) => {}
                Err(e) => return Some(Err(*e)),
            }
        }
    }

    /// When the reader last received a frame (of any fragment, whole or
    /// not yet), `None` before the first: a stream whose fragments are
    /// long is not quiet while their frames flow, though no fragment ended
    /// for a while.
    pub fn last_frame_at(&self) -> Option<tokio::time::Instant> {
        self.activity.last()
    }

    /// Frame by frame, each as soon as its block arrives (live), with the
    /// head of the fragment it belongs to.
    pub fn frames(self) -> FrameStream {
        self.frames.store(true, std::sync::atomic::Ordering::SeqCst);
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
        use std::task::Poll;
        loop {
            return match self.poll_recv(cx) {
                Poll::Ready(Some(Ok(Delivered::Frame(..)))) => continue,
                Poll::Ready(Some(Ok(Delivered::Fragment(f, _)))) => Poll::Ready(Some(Ok(*f))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(*e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

/// Frames of a [`FragmentStream`], in order, each as soon as it arrives.
#[derive(Debug)]
pub struct FrameStream {
    fragments: FragmentStream,
    /// A fragment that came whole, and the next of its frames to yield.
    current: Option<(Arc<FragmentHead>, Fragment)>,
    index: usize,
}

impl FrameStream {
    /// The next frame and the head of the fragment it belongs to
    /// (number, timestamps, tracks); `None` as for
    /// [`FragmentStream::next`].
    pub async fn next(&mut self) -> Option<Result<(Arc<FragmentHead>, ParsedFrame), ClientError>> {
        loop {
            if let Some((head, f)) = &self.current {
                if let Some(fr) = f.frames.get(self.index) {
                    self.index += 1;
                    return Some(Ok((head.clone(), fr.clone())));
                }
                self.current = None;
            }
            match self.fragments.recv().await? {
                Ok(Delivered::Frame(head, fr)) => return Some(Ok((head, fr))),
                // A fragment that came whole (a time range, or before the
                // switch to frames): its frames not yet yielded.
                Ok(Delivered::Fragment(f, sent)) => {
                    self.current = Some((Arc::new(FragmentHead::from(&*f)), *f));
                    self.index = sent;
                }
                Err(e) => return Some(Err(*e)),
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

/// The reader task's side of a [`FragmentStream`].
#[derive(Debug, Clone)]
struct Out {
    tx: mpsc::Sender<Received>,
    frames: Arc<std::sync::atomic::AtomicBool>,
    activity: Activity,
}

impl Out {
    async fn send(&self, d: Result<Delivered, ClientError>) -> Result<(), ()> {
        self.tx.send(d.map_err(Box::new)).await.map_err(|_| ())
    }

    fn frames(&self) -> bool {
        self.frames.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// GetMedia tries before a consumer that never got an answer gives up
/// with the error (after that, it resumes for good).
const FIRST_TRIES: u32 = 5;

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
    let mut once = ExactlyOnce::default();
    // Whether GetMedia ever answered: until it has, a failure that goes
    // on is more likely a wrong endpoint than a passing fault.
    let mut answered = false;
    loop {
        let session = match client.get_media(stream.clone(), &selector).await {
            Ok(s) => {
                answered = true;
                s
            }
            Err(e) if fatal(&e) || (!answered && attempt + 1 >= FIRST_TRIES) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Err(e) => {
                // A service's answer (throttled, say) is not a wrong
                // endpoint: from then on only the backoff applies.
                answered |= e.service_code().is_some();
                tracing::debug!(error = %e, attempt, "GetMedia failed; retrying");
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        // Frames are always assembled as they arrive: whether they are
        // delivered so is decided frame by frame (`frames()` may be asked
        // for after the session opened).
        let mut session = session.yield_frames();
        if read_session(&mut session, &mut once, &mut selector, &mut attempt, &tx)
            .await
            .is_err()
        {
            return;
        }
        // The session ended or broke: resume after the last fragment.
        tokio::time::sleep(backoff.delay(attempt)).await;
        attempt = attempt.saturating_add(1).min(4);
    }
}

/// Delivers a GetMedia session's frames and fragments once each; `Err`
/// when the caller went away.
async fn read_session(
    session: &mut GetMediaSession,
    once: &mut ExactlyOnce,
    selector: &mut StartSelector,
    attempt: &mut u32,
    tx: &Out,
) -> Result<(), ()> {
    loop {
        match session.next_item().await {
            Some(Ok(Assembled::Frame(head, fr))) => {
                deliver_frame(session, once, head, fr, tx).await?
            }
            // Cut: by a broken connection (the session ends next), or
            // abandoned by the producer (it comes again, resent).
            Some(Ok(Assembled::Fragment(f))) if !f.complete => {
                tracing::debug!(fragment = ?f.fragment_number, "fragment not whole");
            }
            Some(Ok(Assembled::Fragment(f))) if f.error_code.is_some() || f.error_id.is_some() => {
                let e = in_stream("GetMedia", f);
                if !e.is_retryable() {
                    // Fragment gone, the stream's KMS key unusable: a new
                    // session would stop the same way.
                    let _ = tx.send(Err(e)).await;
                    return Err(());
                }
                tracing::debug!(error = %e, "GetMedia error chunk; resuming");
                return Ok(());
            }
            Some(Ok(Assembled::Fragment(f))) => {
                *attempt = 0;
                if let Some(t) = f
                    .continuation_token
                    .clone()
                    .or_else(|| f.fragment_number.clone())
                {
                    *selector = StartSelector::ContinuationToken(t);
                }
                if let Some(sent) = once.fragment(f.producer_timestamp_ms) {
                    tx.send(Ok(Delivered::Fragment(Box::new(f), sent))).await?;
                }
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "GetMedia stream unreadable; resuming");
                return Ok(());
            }
            None => return Ok(()),
        }
    }
}

/// The error of a service's error chunk.
fn in_stream(operation: &'static str, f: Fragment) -> ClientError {
    ClientError::InStream {
        operation,
        fragment_number: f.fragment_number,
        error_id: f.error_id,
        error_code: f.error_code,
    }
}

/// What was delivered, to deliver each producer timestamp once and, after
/// a cut inside a fragment, each of its frames once.
#[derive(Debug, Default)]
struct ExactlyOnce {
    /// Producer timestamps of fragments delivered whole.
    seen: std::collections::VecDeque<u64>,
    /// The fragment being delivered frame by frame (its producer
    /// timestamp) and how many of its frames went, over all sessions.
    partial: Option<(Option<u64>, usize)>,
    /// The fragment of the frames now arriving, and how many came in this
    /// session.
    arriving: Option<(Arc<FragmentHead>, usize)>,
}

impl ExactlyOnce {
    /// A frame of `head` arrived: whether to deliver it now — with
    /// `frames_on`, when it is the next of its fragment after those
    /// delivered (frames already delivered, after a cut, are not again; a
    /// frame after a gap — frame by frame was asked for inside this
    /// fragment — is left for the whole fragment, which brings every frame
    /// not yet delivered).
    fn frame(&mut self, head: &Arc<FragmentHead>, frames_on: bool) -> bool {
        let key = head.producer_timestamp_ms;
        if key.is_some_and(|k| self.seen.contains(&k)) {
            return false;
        }
        let index = match &mut self.arriving {
            Some((h, n)) if Arc::ptr_eq(h, head) => {
                *n += 1;
                *n - 1
            }
            _ => {
                self.arriving = Some((head.clone(), 1));
                0
            }
        };
        let sent = match self.partial {
            Some((k, sent)) if k == key && key.is_some() => sent,
            _ => {
                self.partial = Some((key, 0));
                0
            }
        };
        frames_on && index == sent
    }

    /// The frame [`Self::frame`] called new was delivered.
    fn sent_frame(&mut self) {
        if let Some((_, sent)) = &mut self.partial {
            *sent += 1;
        }
    }

    /// A whole fragment arrived: `None` when its producer timestamp was
    /// delivered already, else how many of its first frames were.
    fn fragment(&mut self, key: Option<u64>) -> Option<usize> {
        self.arriving = None;
        let sent = match self.partial.take() {
            Some((k, sent)) if k == key => sent,
            _ => 0,
        };
        if let Some(t) = key {
            if self.seen.contains(&t) {
                return None;
            }
            if self.seen.len() == SEEN {
                self.seen.pop_front();
            }
            self.seen.push_back(t);
        }
        Some(sent)
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

/// Delivers a frame that arrived, if it is the next of its fragment
/// ([`ExactlyOnce::frame`]); `Err` when the caller went away. A fragment
/// delivered frame by frame is not kept for its whole
/// [`Delivered::Fragment`] (which then brings no frames).
async fn deliver_frame(
    session: &mut GetMediaSession,
    once: &mut ExactlyOnce,
    head: Arc<FragmentHead>,
    frame: ParsedFrame,
    tx: &Out,
) -> Result<(), ()> {
    tx.activity.touch();
    if once.frame(&head, tx.frames()) {
        // Every earlier frame of this fragment went: none need be kept.
        session.release_frames(&head);
        tx.send(Ok(Delivered::Frame(head, frame))).await?;
        once.sent_frame();
    }
    Ok(())
}

/// Fragments asked for in one GetMediaForFragmentList request.
const BATCH: usize = 100;

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
    // Ingest order, then duplicates resolved as every archived path does.
    list.sort_by(|a, b| {
        a.server_timestamp
            .total_cmp(&b.server_timestamp)
            .then_with(|| a.fragment_number.cmp(&b.fragment_number))
    });
    let numbers: Vec<String> = crate::timeline::playable(list, |f| {
        crate::timeline::Span::new(
            (f.producer_timestamp * 1000.0).round() as u64,
            f.fragment_length_in_milliseconds,
        )
    })
    .into_iter()
    .map(|f| f.fragment_number)
    .collect();
    let mut once = ExactlyOnce::default();
    // The first fragment not yet delivered whole.
    let mut next = 0;
    let mut attempt = 0u32;
    while next < numbers.len() {
        let batch = &numbers[next..numbers.len().min(next + BATCH)];
        let got = client
            .get_media_for_fragment_list_session(stream.clone(), batch)
            .await;
        let mut session = match got {
            Ok(s) => s.yield_frames(),
            Err(e) if fatal(&e) || attempt >= 5 => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Err(_) => {
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        let before = next;
        let broke = loop {
            match session.next_item().await {
                Some(Ok(Assembled::Frame(head, fr))) => {
                    if deliver_frame(&mut session, &mut once, head, fr, &tx)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                // Cut by a broken connection: asked for again.
                Some(Ok(Assembled::Fragment(f))) if !f.complete => {}
                Some(Ok(Assembled::Fragment(f)))
                    if f.error_id.is_some() || f.error_code.is_some() =>
                {
                    let _ = tx.send(Err(in_stream("GetMediaForFragmentList", f))).await;
                    return;
                }
                Some(Ok(Assembled::Fragment(f))) => {
                    attempt = 0;
                    // Fragments come in the order asked; one the service
                    // left out is passed over.
                    if let Some(i) = f
                        .fragment_number
                        .as_ref()
                        .and_then(|n| numbers[next..].iter().position(|m| m == n))
                    {
                        next += i + 1;
                    }
                    if let Some(sent) = once.fragment(f.producer_timestamp_ms) {
                        if tx
                            .send(Ok(Delivered::Fragment(Box::new(f), sent)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                None => break session.broken().map(str::to_owned),
            }
        };
        match broke {
            Some(why) if attempt >= 5 => {
                let _ = tx.send(Err(ClientError::Transport(why))).await;
                return;
            }
            Some(why) => {
                tracing::debug!(error = %why, attempt, "GetMediaForFragmentList broke; resuming");
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt += 1;
            }
            None if next == before => {
                tracing::warn!(
                    fragments = batch.len(),
                    "GetMediaForFragmentList returned none of the fragments asked for; passing them over"
                );
                next += batch.len();
            }
            None => {}
        }
    }
}
