//! The producer: put frames, and they reach KVS — across network faults,
//! service errors, expiring credentials and the 45-minute connection limit.
//!
//! ```no_run
//! # async fn run(client: std::sync::Arc<kvs_core::client::KvsClient>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use bytes::Bytes;
//! use kvs_core::mkv::builder::{Payload, TrackConfig};
//! use kvs_core::producer::{Frame, Producer};
//!
//! let mut video = TrackConfig::video(1, "V_MPEG4/ISO/AVC", Bytes::new(), 1280, 720);
//! video.codec_private = None; // taken from the SPS/PPS of the first key frame
//! let producer = Producer::builder(client, "front-door").track(video).build().await?;
//! let mut events = producer.subscribe();
//! producer
//!     .put_frame(Frame {
//!         track: 1,
//!         pts: Duration::ZERO,
//!         dts: None,
//!         key: true,
//!         payload: Payload::AnnexB(Bytes::from_static(&[0, 0, 0, 1, 0x65])),
//!     })
//!     .await?;
//! producer.finish(Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```
//!
//! The policies (fragmenting, timestamp rules, buffering, resending,
//! rotation) are those of the state machine it drives,
//! [`crate::protocol::producer`]; this layer adds the I/O:
//!
//! - **Bootstrap**: DescribeStream (and CreateStream when asked and the
//!   stream is missing); a stream without retention completes fragments at
//!   RECEIVED, others at PERSISTED. GetDataEndpoint is cached by the client.
//! - **Connections** are opened when there is something to send, with
//!   ABSOLUTE timecodes (so a resent fragment keeps its producer timestamp),
//!   and signed with credentials fetched for each one. Credentials with an
//!   expiry make the connection rotate a minute before it, at a fragment
//!   boundary, so the next one is signed with refreshed credentials (the
//!   provider — `aws-config`'s, say — refreshes them).
//! - **Reconnects** wait an exponential backoff with full jitter
//!   ([`Backoff`]), reset once a connection gets a fragment RECEIVED.
//! - **Rotation** (default every 40 minutes ± 10 %): the old connection's
//!   body ends at a fragment boundary, its last ACKs are read, and the next
//!   connection goes on from the first fragment not yet acknowledged.
//! - **`finish`** closes the open fragment and waits, up to a timeout, for
//!   every fragment to be acknowledged.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;

pub use crate::client::Backoff;
use crate::client::{
    ClientError, CreateStream, KvsClient, PutMediaOptions, RetryPolicy, ServiceException, StreamId,
    StreamInfo, TimecodeType,
};
use crate::mkv::builder::TrackConfig;
pub use crate::protocol::producer::PutOutcome;
pub use crate::protocol::producer::{
    AckLevel, DropReason, FragmentPolicy, Frame, FrameError, LeadingPolicy, PressurePolicy,
    ProducerEvent, RotationReason,
};
use crate::protocol::producer::{ProducerConfig, ProducerCore};

/// Events kept for a subscriber that has not read them yet (the channel is
/// allocated whole, per producer, so it stays small).
pub const EVENT_BACKLOG: usize = 256;

type NextEvent = Pin<
    Box<
        dyn Future<
                Output = (
                    Result<ProducerEvent, broadcast::error::RecvError>,
                    broadcast::Receiver<ProducerEvent>,
                ),
            > + Send,
    >,
>;

/// A producer's events from the moment of [`Producer::subscribe`]:
/// `recv().await`, `try_recv()`, or as a [`futures_core::Stream`]. It ends
/// once the producer is gone and every event was read.
pub struct Events {
    rx: Option<broadcast::Receiver<ProducerEvent>>,
    pending: Option<NextEvent>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

fn event_of(r: Result<ProducerEvent, broadcast::error::RecvError>) -> Option<ProducerEvent> {
    match r {
        Ok(e) => Some(e),
        Err(broadcast::error::RecvError::Lagged(missed)) => {
            Some(ProducerEvent::EventsLost { missed })
        }
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

impl Events {
    /// The next event; `None` once the producer is gone and all were read.
    pub async fn recv(&mut self) -> Option<ProducerEvent> {
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *self), cx)).await
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<ProducerEvent> {
        // A `recv` left unfinished (dropped by a `select!`) holds the
        // receiver: look through it.
        if let Some(fut) = self.pending.as_mut() {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            return match fut.as_mut().poll(&mut cx) {
                Poll::Ready((r, rx)) => {
                    self.pending = None;
                    self.rx = Some(rx);
                    event_of(r)
                }
                Poll::Pending => None,
            };
        }
        let rx = self.rx.as_mut()?;
        match rx.try_recv() {
            Ok(e) => Some(e),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                Some(ProducerEvent::EventsLost { missed })
            }
            Err(_) => None,
        }
    }
}

impl futures_core::Stream for Events {
    type Item = ProducerEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ProducerEvent>> {
        if self.pending.is_none() {
            let Some(mut rx) = self.rx.take() else {
                return Poll::Ready(None);
            };
            self.pending = Some(Box::pin(async move {
                let r = rx.recv().await;
                (r, rx)
            }));
        }
        let Some(fut) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        match fut.as_mut().poll(cx) {
            Poll::Ready((r, rx)) => {
                self.pending = None;
                self.rx = Some(rx);
                Poll::Ready(event_of(r))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Why the producer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    /// The frame was refused (see [`FrameError`]); the producer goes on.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream could not be looked up or created.
    #[error("stream bootstrap: {0}")]
    Bootstrap(ClientError),
    /// The settings cannot work.
    #[error("invalid producer settings: {0}")]
    Config(String),
    /// `finish` ran out of time with fragments still unacknowledged.
    #[error("{unacked} fragments were not acknowledged within {timeout:?}")]
    Timeout {
        /// Fragments still buffered.
        unacked: usize,
        /// The time allowed.
        timeout: Duration,
    },
    /// The producer was finished already.
    #[error("the producer is finished")]
    Finished,
    /// Fragments were given up over the producer's life
    /// ([`Producer::losses`], [`Losses::check`]).
    #[error("{} fragments ({} frames) were lost; the last because {}", .0.fragments, .0.frames, .0.last.as_ref().map_or_else(String::new, ToString::to_string))]
    FragmentsLost(Losses),
}

/// Fragments a producer gave up ([`ProducerEvent::FragmentDropped`]),
/// counted over its life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Losses {
    /// Fragments given up.
    pub fragments: usize,
    /// Frames lost with them.
    pub frames: usize,
    /// Why the last one was.
    pub last: Option<DropReason>,
}

impl Losses {
    /// `Ok` when nothing was lost, else [`ProducerError::FragmentsLost`]:
    /// for callers (an upload of a file, a context manager's exit) to
    /// whom a lost fragment is a failure, after [`Producer::finish`].
    pub fn check(self) -> Result<(), ProducerError> {
        if self.fragments == 0 {
            Ok(())
        } else {
            Err(ProducerError::FragmentsLost(self))
        }
    }
}

/// Settings for [`Producer::builder`].
#[derive(Debug)]
pub struct ProducerBuilder {
    client: Arc<KvsClient>,
    stream: StreamId,
    tracks: Vec<TrackConfig>,
    create: Option<CreateStream>,
    start: Option<SystemTime>,
    options: ProducerOptions,
}

/// Every producer setting, with its default ([`Default`]; the README's
/// table is tested against it). The builder's methods set these one by
/// one; [`ProducerBuilder::options`] sets them all.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerOptions {
    /// When fragments start (default: at every video key frame, at most
    /// 20 s; audio-only every 2 s).
    pub fragments: FragmentPolicy,
    /// Buffer limit, bytes of media (default 32 MiB).
    pub max_buffer_bytes: usize,
    /// Buffer limit, media time (default 120 s).
    pub max_buffer_duration: Duration,
    /// What a full buffer does (default: drop the oldest fragment).
    pub pressure: PressurePolicy,
    /// What frames before the first video key frame do (default: skipped).
    pub leading: LeadingPolicy,
    /// How long a fragment waits for the other tracks (default 500 ms).
    pub max_lateness: Duration,
    /// Connection age at which it is rotated (default 40 minutes).
    pub rotation_age: Duration,
    /// Spread the rotation age by ± 10 % so producers started together do
    /// not rotate together (default true).
    pub rotation_jitter: bool,
    /// No ACK progress for this long while data waits for one means the
    /// connection is stalled (default 20 s).
    pub ack_timeout: Duration,
    /// Reconnect waits (default 200 ms doubling to 10 s, full jitter).
    pub reconnect: Backoff,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        // The state machine's defaults are the one source of the numbers.
        let core = ProducerConfig::new(Vec::new(), 0);
        Self {
            fragments: core.fragments,
            max_buffer_bytes: core.max_buffer_bytes,
            max_buffer_duration: core.max_buffer_duration,
            pressure: core.pressure,
            leading: core.leading,
            max_lateness: core.max_lateness,
            rotation_age: core.rotation_age,
            rotation_jitter: true,
            ack_timeout: core.ack_timeout,
            reconnect: Backoff::default(),
        }
    }
}

impl ProducerBuilder {
    /// Every setting at once (see [`ProducerOptions`]).
    pub fn options(mut self, o: ProducerOptions) -> Self {
        self.options = o;
        self
    }

    /// How long no ACK progress may last while data waits for one before
    /// the connection counts as stalled and is replaced (default 20 s).
    pub fn ack_timeout(mut self, d: Duration) -> Self {
        self.options.ack_timeout = d;
        self
    }

    /// Adds a track.
    pub fn track(mut self, t: TrackConfig) -> Self {
        self.tracks.push(t);
        self
    }

    /// Creates the stream with these settings when it does not exist.
    pub fn create_if_missing(mut self, create: CreateStream) -> Self {
        self.create = Some(create);
        self
    }

    /// The wall-clock time of `pts == 0` (default: when `build` runs).
    pub fn start_time(mut self, t: SystemTime) -> Self {
        self.start = Some(t);
        self
    }

    /// When fragments start.
    pub fn fragments(mut self, p: FragmentPolicy) -> Self {
        self.options.fragments = p;
        self
    }

    /// Buffer limits (defaults 32 MiB, 120 s).
    pub fn buffer(mut self, max_bytes: usize, max_duration: Duration) -> Self {
        self.options.max_buffer_bytes = max_bytes;
        self.options.max_buffer_duration = max_duration;
        self
    }

    /// What a full buffer does (default: drop the oldest fragment).
    pub fn pressure(mut self, p: PressurePolicy) -> Self {
        self.options.pressure = p;
        self
    }

    /// What frames before the first video key frame do (default: skipped
    /// and reported once with [`ProducerEvent::LeadingFramesSkipped`]).
    pub fn leading(mut self, p: LeadingPolicy) -> Self {
        self.options.leading = p;
        self
    }

    /// How long a fragment waits for the other tracks (default 500 ms).
    pub fn max_lateness(mut self, d: Duration) -> Self {
        self.options.max_lateness = d;
        self
    }

    /// Connection age for rotation (default 40 minutes, ± 10 % jitter);
    /// an age set here is used as is.
    pub fn rotation_age(mut self, d: Duration) -> Self {
        self.options.rotation_age = d;
        self.options.rotation_jitter = false;
        self
    }

    /// Reconnect waits (default 200 ms doubling to 10 s, full jitter; the
    /// producer never gives up).
    pub fn reconnect(mut self, p: Backoff) -> Self {
        self.options.reconnect = p;
        self
    }

    /// Looks the stream up (creating it if asked) and starts the producer.
    /// Errors: [`ProducerError::Config`] for no tracks or tracks that
    /// cannot work, [`ProducerError::Bootstrap`] when the stream cannot be
    /// looked up or created.
    pub async fn build(self) -> Result<Producer, ProducerError> {
        if self.tracks.is_empty() {
            return Err(ProducerError::Config("no tracks".into()));
        }
        let info = bootstrap(&self.client, &self.stream, self.create.as_ref())
            .await
            .map_err(ProducerError::Bootstrap)?;
        self.launch(Some(info))
    }

    /// Starts the producer at once, without waiting on the network (for an
    /// app's UI thread): frames are taken into the buffer while the stream
    /// is looked up (and created if asked) in the background, retried with
    /// the reconnect backoff — each failure reported as
    /// [`ProducerEvent::Reconnecting`] with the error — until it works.
    /// Until then the ACK level is PERSISTED; a stream without retention
    /// switches it to RECEIVED once found.
    ///
    /// Errors: [`ProducerError::Config`] as for [`Self::build`];
    /// [`ProducerError::Bootstrap`] with [`ClientError::NoRuntime`] when
    /// the client has no runtime to run on.
    pub fn start(self) -> Result<Producer, ProducerError> {
        if self.tracks.is_empty() {
            return Err(ProducerError::Config("no tracks".into()));
        }
        if let StreamId::Name(n) = &self.stream {
            check_stream_name(n)?;
        }
        self.launch(None)
    }

    /// The producer over a stream found (`info`), or to be found by the
    /// driver first.
    fn launch(self, info: Option<StreamInfo>) -> Result<Producer, ProducerError> {
        let start = self.start.unwrap_or_else(SystemTime::now);
        let start_ms = start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let o = &self.options;
        let mut cfg = ProducerConfig::new(self.tracks, start_ms);
        cfg.fragments = o.fragments;
        cfg.pressure = o.pressure;
        cfg.leading = o.leading;
        cfg.max_buffer_bytes = o.max_buffer_bytes;
        cfg.max_buffer_duration = o.max_buffer_duration;
        cfg.max_lateness = o.max_lateness;
        cfg.ack_timeout = o.ack_timeout;
        cfg.rotation_age = if o.rotation_jitter {
            o.rotation_age.mul_f64(0.9 + fastrand::f64() * 0.2)
        } else {
            o.rotation_age
        };
        cfg.ack_level = info.as_ref().map_or(AckLevel::Persisted, ack_level);
        let core = ProducerCore::new(cfg).map_err(|e| ProducerError::Config(e.to_string()))?;
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            work: Notify::new(),
            space: Notify::new(),
            idle: Notify::new(),
            events,
            finishing: std::sync::atomic::AtomicBool::new(false),
            abandoned: Mutex::new(None),
            tally: Mutex::new(Tally::default()),
            paused: std::sync::atomic::AtomicBool::new(false),
            reconnect_now: std::sync::atomic::AtomicBool::new(false),
            finished_within: Mutex::new(Duration::ZERO),
        });
        let (stream, lookup) = match info {
            Some(i) => (StreamId::Arn(i.stream_arn), None),
            None => (self.stream, Some(self.create)),
        };
        let client = self.client.clone();
        let driver = client
            .spawn(drive(
                shared.clone(),
                self.client,
                stream,
                lookup,
                self.options.reconnect,
            ))
            .map_err(ProducerError::Bootstrap)?;
        Ok(Producer {
            _last_handle: Arc::new(LastHandle(shared.clone())),
            shared,
            driver: Arc::new(Mutex::new(Some(driver))),
        })
    }
}

/// A stream name as the API model takes it (`StreamName`: 1 to 256 of
/// `[a-zA-Z0-9_.-]`), checked before any call: the service would refuse
/// it with InvalidArgumentException on every try.
fn check_stream_name(n: &str) -> Result<(), ProducerError> {
    let ok = (1..=256).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ProducerError::Config(format!(
            "stream name {n:?}: 1 to 256 letters, digits, '_', '.' or '-' (the API model's StreamName)"
        )))
    }
}

/// The ACK level a stream's retention calls for: PERSISTED, or RECEIVED
/// for a stream that keeps nothing.
fn ack_level(info: &StreamInfo) -> AckLevel {
    if info.data_retention_in_hours.unwrap_or(0) == 0 {
        AckLevel::Received
    } else {
        AckLevel::Persisted
    }
}

/// Looks the stream up (DescribeStream), creating it first when asked and
/// missing.
async fn bootstrap(
    client: &KvsClient,
    stream: &StreamId,
    create: Option<&CreateStream>,
) -> Result<StreamInfo, ClientError> {
    match client.describe_stream(stream.clone()).await {
        Ok(i) => Ok(i),
        Err(e)
            if e.service_code() == Some(&ServiceException::ResourceNotFound)
                && create.is_some() =>
        {
            let mut create = create.cloned().unwrap_or_default();
            if let StreamId::Name(n) = stream {
                create.stream_name = n.clone();
            }
            match client.create_stream(&create).await {
                Ok(_) => {}
                Err(e) if e.service_code() == Some(&ServiceException::ResourceInUse) => {}
                Err(e) => return Err(e),
            }
            client.describe_stream(stream.clone()).await
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug)]
struct Shared {
    core: Mutex<ProducerCore>,
    /// New fragments or a finish request: the driver has work.
    work: Notify,
    /// ACKs freed buffer space.
    space: Notify,
    /// Fragments were acknowledged (finish waits on it).
    idle: Notify,
    events: broadcast::Sender<ProducerEvent>,
    finishing: std::sync::atomic::AtomicBool,
    /// Set when every handle is gone: the driver stops by then.
    abandoned: Mutex<Option<Instant>>,
    /// Fragments acknowledged and given up so far.
    tally: Mutex<Tally>,
    /// The app asked for no connection ([`Producer::pause`]).
    paused: std::sync::atomic::AtomicBool,
    /// The connection is to be replaced now ([`Producer::network_changed`]).
    reconnect_now: std::sync::atomic::AtomicBool,
    /// The time the first `finish` allowed.
    finished_within: Mutex<Duration>,
}

/// What a producer delivered and gave up, counted over its life.
#[derive(Debug, Default)]
struct Tally {
    acked: Acked,
    lost: Losses,
}

/// Fragments acknowledged ([`ProducerEvent::Acked`]), counted over a
/// producer's life ([`Producer::acked`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acked {
    /// Fragments acknowledged.
    pub fragments: usize,
    /// Frames in them.
    pub frames: usize,
}

impl Shared {
    /// When the driver must look again with no input: the core's next
    /// deadline, the end of the grace time of an abandoned producer, and
    /// `also` (the next statistics), whichever comes first.
    fn wake_at(&self, also: Option<Instant>) -> Option<Instant> {
        let core = self.core().next_deadline().map(Instant::from_std);
        let grace = *self
            .abandoned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        [core, grace, also].into_iter().flatten().min()
    }

    /// Every handle was dropped and the grace time is over.
    fn past_grace(&self) -> bool {
        self.abandoned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|d| Instant::now() >= d)
    }

    fn core(&self) -> std::sync::MutexGuard<'_, ProducerCore> {
        self.core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What was delivered and given up so far.
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err(Finished)` once `finish` was called: nothing more is taken.
    fn taking(&self) -> Result<(), ProducerError> {
        if self.finishing.load(std::sync::atomic::Ordering::SeqCst) {
            Err(ProducerError::Finished)
        } else {
            Ok(())
        }
    }

    /// Forwards the core's events to subscribers.
    fn publish(&self, core: &mut ProducerCore) {
        while let Some(e) = core.next_event() {
            {
                let mut t = self.tally();
                match &e {
                    ProducerEvent::FragmentDropped { frames, reason, .. } => {
                        t.lost.fragments += 1;
                        t.lost.frames += frames;
                        t.lost.last = Some(reason.clone());
                    }
                    ProducerEvent::Acked { frames, .. } => {
                        t.acked.fragments += 1;
                        t.acked.frames += frames;
                    }
                    _ => {}
                }
            }
            match &e {
                ProducerEvent::Acked { .. } | ProducerEvent::FragmentDropped { .. } => {
                    self.space.notify_waiters();
                    self.idle.notify_waiters();
                }
                _ => {}
            }
            let _ = self.events.send(e);
        }
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// A running producer; clones share it.
#[derive(Debug, Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    driver: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    _last_handle: Arc<LastHandle>,
}

/// Dropped with the last [`Producer`] handle: what is buffered is still
/// delivered, for at most [`ABANDON_GRACE`], then the driver stops.
#[derive(Debug)]
struct LastHandle(Arc<Shared>);

/// How long a producer dropped without `finish` keeps delivering what it
/// buffered.
pub const ABANDON_GRACE: Duration = Duration::from_secs(30);

impl Drop for LastHandle {
    fn drop(&mut self) {
        let s = &self.0;
        {
            let mut core = s.core();
            let _ = core.flush(now());
            s.publish(&mut core);
        }
        *s.abandoned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Instant::now() + ABANDON_GRACE);
        s.finishing.store(true, std::sync::atomic::Ordering::SeqCst);
        s.work.notify_one();
    }
}

impl Producer {
    /// Settings for a producer of `stream`.
    pub fn builder(
        client: impl Into<Arc<KvsClient>>,
        stream: impl Into<StreamId>,
    ) -> ProducerBuilder {
        ProducerBuilder {
            client: client.into(),
            stream: stream.into(),
            tracks: Vec::new(),
            create: None,
            start: None,
            options: ProducerOptions::default(),
        }
    }

    /// The events from now on (ACKs with latency, errors, drops, reconnects,
    /// rotations, buffer statistics each second). A subscriber that falls
    /// more than [`EVENT_BACKLOG`] events behind loses the oldest, and is
    /// told so with [`ProducerEvent::EventsLost`].
    pub fn subscribe(&self) -> Events {
        Events {
            rx: Some(self.shared.events.subscribe()),
            pending: None,
        }
    }

    /// Puts a frame if it can be taken now, without waiting: `Full` when the
    /// buffer is full under [`PressurePolicy::Wait`] (try again once ACKs
    /// free space), `Skipped` for a frame before the first video key frame
    /// ([`LeadingPolicy::Skip`]). For callers that must never block (a
    /// camera callback, a UI thread).
    ///
    /// Errors: [`ProducerError::Frame`] for a frame that breaks the rules,
    /// [`ProducerError::Finished`] after `finish`.
    pub fn try_put_frame(&self, frame: Frame) -> Result<PutOutcome, ProducerError> {
        self.shared.taking()?;
        let outcome = {
            let mut core = self.shared.core();
            let out = core.put_frame(frame, now());
            self.shared.publish(&mut core);
            out?
        };
        if outcome == PutOutcome::Accepted {
            self.shared.work.notify_one();
        }
        Ok(outcome)
    }

    /// Which ACK completes a fragment on this stream: PERSISTED, or RECEIVED
    /// for a stream without retention (decided from DescribeStream).
    pub fn ack_level(&self) -> AckLevel {
        self.shared.core().config().ack_level
    }

    /// Puts a frame. With [`PressurePolicy::Wait`] it waits while the buffer
    /// is full; a frame before the first video key frame is skipped (see
    /// [`LeadingPolicy`]); a refused frame is an error and the producer goes
    /// on.
    pub async fn put_frame(&self, frame: Frame) -> Result<(), ProducerError> {
        self.shared.taking()?;
        loop {
            let space = self.shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            let outcome = {
                let mut core = self.shared.core();
                let out = core.put_frame(frame.clone(), now());
                self.shared.publish(&mut core);
                out?
            };
            match outcome {
                PutOutcome::Accepted => {
                    self.shared.work.notify_one();
                    return Ok(());
                }
                PutOutcome::Skipped => return Ok(()),
                PutOutcome::Full => space.await,
            }
        }
    }

    /// Puts frames in order (a file's, from [`crate::mkv::mux`]): as fast as
    /// the buffer takes them, or with `realtime` each at its presentation
    /// time (pts) after the call began (counted from the first frame's), as
    /// a camera would. Returns how many
    /// were taken (leading frames skipped before the first video key frame
    /// are not counted). A refused frame stops it with the error (those
    /// before it are put).
    pub async fn put_frames(
        &self,
        frames: impl IntoIterator<Item = Frame>,
        realtime: bool,
    ) -> Result<usize, ProducerError> {
        let t0 = Instant::now();
        let skipped_before = self.shared.core().leading_skipped().0;
        let mut n = 0;
        let mut first = None;
        for f in frames {
            if realtime {
                let first = *first.get_or_insert(f.pts);
                tokio::time::sleep_until(t0 + f.pts.saturating_sub(first)).await;
            }
            self.put_frame(f).await?;
            n += 1;
        }
        let skipped = self.shared.core().leading_skipped().0 - skipped_before;
        Ok(n - skipped)
    }

    /// Puts a file's frames ([`crate::mkv::mux::matroska_frames`],
    /// [`crate::mkv::mux::annexb_frames`]) as [`Self::put_frames`] does,
    /// on this producer's timeline: the first frame at the file's own pts
    /// when nothing was put before, otherwise one frame interval (the
    /// file's first, 33 ms when it has one frame) after the latest frame
    /// put, so files put one after another play one after another.
    ///
    /// Errors: [`ProducerError::Config`] when a track of the file is not
    /// one of the producer's (same track number and codec ID), before any
    /// frame is put; then as [`Self::put_frames`].
    pub async fn put_file(
        &self,
        input: crate::mkv::mux::FrameInput,
        realtime: bool,
    ) -> Result<usize, ProducerError> {
        let reached = {
            let core = self.shared.core();
            let ours = &core.config().tracks;
            for t in &input.tracks {
                if !ours
                    .iter()
                    .any(|o| o.number == t.number && o.codec_id == t.codec_id)
                {
                    let have: Vec<String> = ours
                        .iter()
                        .map(|o| format!("{} {}", o.number, o.codec_id))
                        .collect();
                    return Err(ProducerError::Config(format!(
                        "the file's track {} ({}) is not one of this producer's tracks ({})",
                        t.number,
                        t.codec_id,
                        have.join(", ")
                    )));
                }
            }
            core.time_reached()
        };
        let mut frames = input.frames;
        // The earliest time of the file, decode times included (B-frames).
        let first = frames
            .iter()
            .flat_map(|f| [Some(f.pts), f.dts])
            .flatten()
            .min();
        if let (Some(reached), Some(first)) = (reached, first) {
            let mut pts: Vec<Duration> = frames.iter().map(|f| f.pts).collect();
            pts.sort_unstable();
            pts.dedup();
            let interval = match pts.as_slice() {
                [a, b, ..] => *b - *a,
                _ => Duration::from_millis(33),
            };
            let to = Duration::from_millis(reached) + interval;
            for f in &mut frames {
                f.pts = f.pts - first + to;
                f.dts = f.dts.map(|d| d - first + to);
            }
        }
        self.put_frames(frames, realtime).await
    }

    /// Adds a fragment metadata tag to the next fragment (the service's
    /// limits apply: at most 10 per fragment, names not starting with `AWS`).
    pub fn tag_next_fragment(&self, name: &str, value: &str) -> Result<(), ProducerError> {
        self.shared.taking()?;
        self.shared
            .core()
            .tag_next_fragment(name, value)
            .map_err(|e| ProducerError::Frame(FrameError::Build(e)))
    }

    /// Fragments given up so far (each also reported as
    /// [`ProducerEvent::FragmentDropped`]): by a full buffer
    /// ([`PressurePolicy::DropOldest`]) or refused by the service.
    pub fn losses(&self) -> Losses {
        self.shared.tally().lost.clone()
    }

    /// Fragments acknowledged so far, and the frames in them.
    pub fn acked(&self) -> Acked {
        self.shared.tally().acked
    }

    /// Parameter sets given apart from the frames, applied from the
    /// track's next key frame (a new fragment under a new stream header
    /// when they change the CodecPrivate): see
    /// [`ProducerCore::set_parameter_sets`]. For Android MediaCodec's
    /// codec-config buffer and iOS VideoToolbox's format description.
    pub fn set_parameter_sets(
        &self,
        track: u64,
        sets: &[bytes::Bytes],
    ) -> Result<(), ProducerError> {
        self.shared.taking()?;
        self.shared
            .core()
            .set_parameter_sets(track, sets)
            .map_err(ProducerError::Frame)
    }

    /// The network changed (Wi-Fi to cellular, say): the connection is
    /// replaced now — what it had not had acknowledged is sent again on
    /// the new one — instead of after the ACK timeout on a dead socket.
    pub fn network_changed(&self) {
        self.shared
            .reconnect_now
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.work.notify_one();
    }

    /// No connection until [`Self::resume`] (an app sent to the
    /// background): the connection ends (its last ACKs waited for up to
    /// 2 s); frames are still taken into the buffer, within its limits
    /// and pressure policy, and sent on resume — or on [`Self::finish`],
    /// which connects again to deliver them.
    pub fn pause(&self) {
        self.shared
            .paused
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.work.notify_one();
    }

    /// Connects again after [`Self::pause`] (at once, no backoff).
    pub fn resume(&self) {
        self.shared
            .paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.shared.work.notify_one();
    }

    /// Media bytes buffered and not yet acknowledged.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.core().buffered_bytes()
    }

    /// Closes the open fragment and waits until every fragment is
    /// acknowledged (PERSISTED, or RECEIVED without retention) or given
    /// up, then ends the connection. Fails with [`ProducerError::Timeout`]
    /// if that takes longer than `timeout` (the producer stops either
    /// way). Fragments given up are not an error here: see
    /// [`Self::losses`] and [`Losses::check`]. Called again, it gives the
    /// first call's outcome at once (a timeout: the fragments still
    /// unacknowledged).
    pub async fn finish(&self, timeout: Duration) -> Result<(), ProducerError> {
        let stopped = self
            .driver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none();
        if stopped {
            // Finished before: the same outcome at once (what was not
            // acknowledged then never will be).
            return match self.shared.core().buffered_fragments() {
                0 => Ok(()),
                unacked => Err(ProducerError::Timeout {
                    unacked,
                    timeout: *self
                        .shared
                        .finished_within
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                }),
            };
        }
        *self
            .shared
            .finished_within
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = timeout;
        {
            let mut core = self.shared.core();
            core.flush(now())?;
            self.shared.publish(&mut core);
        }
        self.shared
            .finishing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // What is buffered goes out: a paused producer connects again.
        self.shared
            .paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.shared.work.notify_one();
        let wait = async {
            loop {
                let idle = self.shared.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.shared.core().is_idle() {
                    return;
                }
                idle.await;
            }
        };
        let done = tokio::time::timeout(timeout, wait).await;
        let unacked = self.shared.core().buffered_fragments();
        let driver = self
            .driver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(d) = driver {
            if done.is_err() {
                d.abort();
            }
            self.shared.work.notify_one();
            let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
        }
        match done {
            Ok(()) => Ok(()),
            Err(_) => Err(ProducerError::Timeout { unacked, timeout }),
        }
    }

    /// A [`futures_sink::Sink`] of frames over this producer.
    pub fn sink(&self) -> FrameSink {
        FrameSink {
            producer: self.clone(),
            pending: None,
        }
    }
}

type PutFuture = Pin<Box<dyn Future<Output = Result<(), ProducerError>> + Send>>;

/// Frames into a [`Producer`] as a [`futures_sink::Sink`]; closing it
/// finishes the producer (waiting up to 60 s for the last ACKs).
pub struct FrameSink {
    producer: Producer,
    pending: Option<PutFuture>,
}

impl std::fmt::Debug for FrameSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSink")
            .field("busy", &self.pending.is_some())
            .finish()
    }
}

impl FrameSink {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProducerError>> {
        match self.pending.as_mut() {
            None => Poll::Ready(Ok(())),
            Some(f) => {
                let r = std::task::ready!(f.as_mut().poll(cx));
                self.pending = None;
                Poll::Ready(r)
            }
        }
    }
}

impl futures_sink::Sink<Frame> for FrameSink {
    type Error = ProducerError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_pending(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Frame) -> Result<(), Self::Error> {
        let this = self.get_mut();
        let p = this.producer.clone();
        this.pending = Some(Box::pin(async move { p.put_frame(item).await }));
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_pending(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        if this.pending.is_none() {
            let p = this.producer.clone();
            this.pending = Some(Box::pin(
                async move { p.finish(Duration::from_secs(60)).await },
            ));
        }
        this.poll_pending(cx)
    }
}

/// How a connection ended.
enum Ended {
    /// Rotated, or finished: its body ended and its ACKs were all read.
    Drained,
    /// Broke, or the service ended it (ERROR ACK, closed response).
    Failed(String),
    /// Ended as the app asked ([`Producer::pause`],
    /// [`Producer::network_changed`]): the next one comes without backoff.
    Asked(&'static str),
}

async fn drive(
    shared: Arc<Shared>,
    client: Arc<KvsClient>,
    mut stream: StreamId,
    lookup: Option<Option<CreateStream>>,
    reconnect: Backoff,
) {
    // The reconnect loop is the retry: the calls in it are made once.
    let client = client.with_retry(RetryPolicy::none());
    let mut attempt: u32 = 0;
    let mut stats_at = Instant::now();
    if let Some(create) = lookup {
        // Started without waiting (`ProducerBuilder::start`): the stream is
        // found (or created) first, frames buffering meanwhile.
        loop {
            match bootstrap(&client, &stream, create.as_ref()).await {
                Ok(info) => {
                    shared.core().set_ack_level(ack_level(&info));
                    stream = StreamId::Arn(info.stream_arn);
                    attempt = 0;
                    break;
                }
                Err(e) => {
                    if shared.past_grace() {
                        return;
                    }
                    let delay = reconnect.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    let _ = shared.events.send(ProducerEvent::StreamLookupFailed {
                        error: e.to_string(),
                        code: e.service_code().map(|c| c.name().to_owned()),
                        retriable: e.is_retryable(),
                        delay,
                    });
                    let work = shared.work.notified();
                    // A network change cuts the wait short.
                    let _ = tokio::time::timeout(delay, work).await;
                    shared
                        .reconnect_now
                        .store(false, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    }
    loop {
        // Connect only when there is something to send, and not paused.
        loop {
            let work = shared.work.notified();
            tokio::pin!(work);
            work.as_mut().enable();
            shared
                .reconnect_now
                .store(false, std::sync::atomic::Ordering::SeqCst);
            let paused = shared.paused.load(std::sync::atomic::Ordering::SeqCst);
            let (has_work, finishing_idle) = {
                let mut core = shared.core();
                core.tick(now());
                shared.publish(&mut core);
                (
                    core.buffered_fragments() > 0,
                    core.is_idle() && shared.finishing.load(std::sync::atomic::Ordering::SeqCst),
                )
            };
            if finishing_idle || shared.past_grace() {
                return;
            }
            if has_work && !paused {
                break;
            }
            // Asleep until a frame comes or something falls due.
            match shared.wake_at(None) {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at, work).await;
                }
                None => work.await,
            }
        }
        let start_ms = shared.core().config().start_ms;
        let opts = PutMediaOptions {
            stream: stream.clone(),
            timecode_type: TimecodeType::Absolute,
            producer_start: std::time::UNIX_EPOCH + Duration::from_millis(start_ms),
        };
        let ended = match client.put_media(&opts).await {
            Ok(session) => {
                let conn = {
                    let mut core = shared.core();
                    let c = core.connected(now());
                    // When the credentials that signed it expire, it is
                    // replaced a minute before (at a fragment boundary).
                    if let Some(exp) = session.credentials_expiry() {
                        let left = exp
                            .duration_since(SystemTime::now())
                            .unwrap_or_default()
                            .saturating_sub(Duration::from_secs(60));
                        core.rotate_by(now() + left);
                    }
                    shared.publish(&mut core);
                    c
                };
                let ended =
                    run_connection(&shared, session, conn, &mut attempt, &mut stats_at).await;
                let mut core = shared.core();
                match &ended {
                    Ended::Drained => core.disconnected("rotated"),
                    Ended::Failed(r) => core.disconnected(r),
                    Ended::Asked(r) => core.disconnected(r),
                }
                shared.publish(&mut core);
                ended
            }
            Err(e) => Ended::Failed(e.to_string()),
        };
        if let Ended::Asked(_) = ended {
            // No backoff (a pause waits for resume above).
            attempt = 0;
        }
        if let Ended::Failed(error) = ended {
            if shared.past_grace()
                || (shared.finishing.load(std::sync::atomic::Ordering::SeqCst)
                    && shared.core().is_idle())
            {
                return;
            }
            let delay = next_try(&shared, reconnect, &mut attempt, error);
            tokio::time::sleep(delay).await;
        }
    }
}

/// Counts a failed try and reports it ([`ProducerEvent::Reconnecting`]);
/// returns the wait before the next.
fn next_try(shared: &Shared, reconnect: Backoff, attempt: &mut u32, error: String) -> Duration {
    let delay = reconnect.delay(*attempt);
    *attempt = attempt.saturating_add(1);
    let _ = shared.events.send(ProducerEvent::Reconnecting {
        attempt: *attempt,
        delay,
        error,
    });
    delay
}

/// The reason of the [`ProducerEvent::Disconnected`] that [`Producer::pause`]
/// brings.
pub const PAUSED: &str = "paused";
/// Why a connection ended on [`Producer::network_changed`].
const NETWORK_CHANGED: &str = "the network changed";

/// How long a broken connection's remaining ACKs are waited for.
const DRAIN_ACKS: Duration = Duration::from_secs(2);

/// Applies every ACK still to come on a connection whose body can no longer
/// be written (the service closed it, or it broke), until the response ends
/// or fails, or [`DRAIN_ACKS`] passes.
async fn drain_acks(shared: &Shared, session: &mut crate::client::PutMediaSession, conn: u64) {
    session.finish();
    let deadline = Instant::now() + DRAIN_ACKS;
    while let Ok(Some(Ok(ack))) = tokio::time::timeout_at(deadline, session.next_ack()).await {
        let mut core = shared.core();
        core.on_ack(conn, &ack, now());
        shared.publish(&mut core);
    }
}

async fn run_connection(
    shared: &Shared,
    mut session: crate::client::PutMediaSession,
    conn: u64,
    attempt: &mut u32,
    stats_at: &mut Instant,
) -> Ended {
    let sender = session.sender();
    let mut sender = Some(sender);
    let mut next: Option<bytes::Bytes> = None;
    loop {
        if shared
            .reconnect_now
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            // The old network is gone: its socket would only time out.
            return Ended::Asked(NETWORK_CHANGED);
        }
        if shared.paused.load(std::sync::atomic::Ordering::SeqCst) {
            // Between fragments the body ends and the last ACKs are
            // waited for; inside one it is cut (dropped: abandoned), as
            // a body ending there would end the fragment early.
            if !shared.core().mid_fragment() {
                drain_acks(shared, &mut session, conn).await;
            }
            return Ended::Asked(PAUSED);
        }
        // What to write next, and whether the body should end.
        let end_body = {
            let mut core = shared.core();
            if next.is_none() && sender.is_some() {
                next = core.next_chunk(now());
            }
            let finishing = shared.finishing.load(std::sync::atomic::Ordering::SeqCst);
            shared.publish(&mut core);
            core.should_end_body() || (finishing && core.is_idle())
        };
        if end_body && next.is_none() && sender.is_some() {
            sender = None;
            session.finish();
        }
        let work = shared.work.notified();
        // Asleep until I/O, a frame, or the next deadline (statistics each
        // second at the latest).
        let wake = shared
            .wake_at(Some(*stats_at + Duration::from_secs(1)))
            .unwrap_or_else(|| *stats_at + Duration::from_secs(1));
        tokio::select! {
            sent = async {
                match (&sender, &next) {
                    (Some(s), Some(chunk)) => s.send(chunk.clone()).await,
                    _ => std::future::pending().await,
                }
            } => {
                match sent {
                    Ok(()) => next = None,
                    Err(e) => {
                        // The service may have ended the connection after
                        // an ERROR: what it acknowledged before is still
                        // on its way and must count.
                        drain_acks(shared, &mut session, conn).await;
                        return Ended::Failed(e.to_string());
                    }
                }
            }
            ack = session.next_ack() => {
                match ack {
                    Some(Ok(ack)) => {
                        // Backoff restarts on progress (a fragment taken),
                        // not on any ACK: a connection that always breaks
                        // mid-fragment after its BUFFERING backs off.
                        if matches!(ack, crate::protocol::Ack::Received { .. } | crate::protocol::Ack::Persisted { .. }) {
                            *attempt = 0;
                        }
                        let mut core = shared.core();
                        core.on_ack(conn, &ack, now());
                        shared.publish(&mut core);
                    }
                    Some(Err(e)) => return Ended::Failed(e.to_string()),
                    None if sender.is_none() => return Ended::Drained,
                    None => return Ended::Failed("the service ended the response".into()),
                }
            }
            _ = work => {}
            _ = tokio::time::sleep_until(wake) => {
                if shared.past_grace() {
                    return Ended::Failed("the producer was dropped".into());
                }
                let mut core = shared.core();
                core.tick(now());
                if core.stalled(now()) {
                    shared.publish(&mut core);
                    return Ended::Failed("no ACK within the ACK timeout".into());
                }
                if stats_at.elapsed() >= Duration::from_secs(1) {
                    *stats_at = Instant::now();
                    let _ = shared.events.send(ProducerEvent::Stats {
                        buffered_bytes: core.buffered_bytes(),
                        buffered_duration: core.buffered_duration(),
                        buffered_fragments: core.buffered_fragments(),
                        bytes_sent: core.bytes_sent(),
                    });
                }
                shared.publish(&mut core);
            }
        }
    }
}

#[cfg(test)]
mod events_tests {
    use super::*;

    /// An event sent after a `recv` was left unfinished (a `select!` took
    /// another branch) is still there for `try_recv` and for `recv`.
    #[tokio::test]
    async fn try_recv_sees_past_an_unfinished_recv() {
        let (tx, rx) = broadcast::channel(8);
        let mut events = Events {
            rx: Some(rx),
            pending: None,
        };
        let quiet = tokio::time::timeout(Duration::from_millis(10), events.recv()).await;
        assert!(quiet.is_err(), "nothing yet");
        let e = |missed| ProducerEvent::EventsLost { missed };
        tx.send(e(1)).unwrap();
        tx.send(e(2)).unwrap();
        assert_eq!(events.try_recv(), Some(e(1)));
        assert_eq!(events.recv().await, Some(e(2)));
        assert_eq!(events.try_recv(), None);
        drop(tx);
        assert_eq!(events.recv().await, None);
    }
}
