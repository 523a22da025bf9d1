//! The Producer and Consumer for threads that have no async runtime: a
//! camera callback, a C or JNI thread, a script. Each call blocks the
//! calling thread until done (or, for [`Producer::try_put_frame`], returns
//! at once); the I/O runs on a small tokio runtime these handles own (two
//! worker threads, shared by a producer's or consumer's clones).
//!
//! ```no_run
//! use std::time::Duration;
//! use bytes::Bytes;
//! use kvs_core::auth::Credentials;
//! use kvs_core::blocking;
//! use kvs_core::client::{ClientConfig, KvsClient, StartSelector};
//! use kvs_core::mkv::builder::{Payload, TrackConfig};
//! use kvs_core::producer::{Frame, Producer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = KvsClient::new(ClientConfig::new("us-east-1", Credentials::new("AKID", "SECRET", None, None, "static")))?;
//! let mut video = TrackConfig::video(1, "V_MPEG4/ISO/AVC", Bytes::new(), 0, 0);
//! video.codec_private = None; // from the first key frame's SPS/PPS
//! let producer = blocking::Producer::build(Producer::builder(client.clone(), "front-door").track(video))?;
//! let au = Bytes::from_static(&[0, 0, 0, 1, 0x65]);
//! producer.put_frame(Frame { track: 1, pts: Duration::ZERO, dts: None, key: true, payload: Payload::AnnexB(au) })?;
//! producer.finish(Duration::from_secs(30))?;
//!
//! let consumer = kvs_core::consumer::Consumer::builder(client, "front-door");
//! for fragment in blocking::fragments(consumer, StartSelector::Earliest)?.take(10) {
//!     println!("{} frames", fragment?.frames.len());
//! }
//! # Ok(()) }
//! ```
//!
//! Calling these from inside an async runtime would block one of its
//! threads: use [`crate::producer`] and [`crate::consumer`] there.

use std::sync::Arc;
use std::time::Duration;

use crate::client::{ClientError, FragmentSelector, StartSelector};
use crate::consumer::{ConsumerBuilder, FragmentStream};
use crate::mkv::fragment::Fragment;
use crate::producer::{
    AckLevel, Events, Frame, ProducerBuilder, ProducerError, ProducerEvent, PutOutcome,
};

/// The runtime the blocking handles run their I/O on.
fn runtime() -> Result<Arc<tokio::runtime::Runtime>, std::io::Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kvs-io")
        .enable_all()
        .build()
        .map(Arc::new)
}

/// A [`crate::producer::Producer`] for threads without a runtime; clones
/// share it.
#[derive(Debug, Clone)]
pub struct Producer {
    inner: crate::producer::Producer,
    rt: Arc<tokio::runtime::Runtime>,
}

impl Producer {
    /// Looks the stream up (creating it if the builder asks) and starts the
    /// producer, blocking until it is ready.
    ///
    /// Errors: as [`ProducerBuilder::build`]; a runtime that cannot start is
    /// [`ProducerError::Config`].
    pub fn build(builder: ProducerBuilder) -> Result<Self, ProducerError> {
        let rt = runtime().map_err(|e| ProducerError::Config(format!("no I/O runtime: {e}")))?;
        let inner = rt.block_on(builder.build())?;
        Ok(Self { inner, rt })
    }

    /// Puts a frame, blocking while the buffer is full under
    /// [`crate::producer::PressurePolicy::Wait`]; see
    /// [`crate::producer::Producer::put_frame`].
    pub fn put_frame(&self, frame: Frame) -> Result<(), ProducerError> {
        self.rt.block_on(self.inner.put_frame(frame))
    }

    /// Puts a frame without blocking; see
    /// [`crate::producer::Producer::try_put_frame`].
    pub fn try_put_frame(&self, frame: Frame) -> Result<PutOutcome, ProducerError> {
        self.inner.try_put_frame(frame)
    }

    /// Adds a metadata tag to the next fragment.
    pub fn tag_next_fragment(&self, name: &str, value: &str) -> Result<(), ProducerError> {
        self.inner.tag_next_fragment(name, value)
    }

    /// Which ACK completes a fragment on this stream.
    pub fn ack_level(&self) -> AckLevel {
        self.inner.ack_level()
    }

    /// Closes the open fragment and blocks until every fragment is
    /// acknowledged, or `timeout` passes ([`ProducerError::Timeout`]).
    pub fn finish(&self, timeout: Duration) -> Result<(), ProducerError> {
        self.rt.block_on(self.inner.finish(timeout))
    }

    /// The events from now on, as a blocking iterator.
    pub fn events(&self) -> EventIter {
        EventIter {
            events: self.inner.subscribe(),
            rt: self.rt.clone(),
        }
    }
}

/// A producer's events, blocking: [`Iterator::next`] waits for the next
/// one; [`EventIter::recv_timeout`] waits at most so long. Ends once the
/// producer is gone and every event was read.
#[derive(Debug)]
pub struct EventIter {
    events: Events,
    rt: Arc<tokio::runtime::Runtime>,
}

impl EventIter {
    /// The next event, waiting at most `timeout` (`None`: none came, or the
    /// producer is gone).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<ProducerEvent> {
        let events = &mut self.events;
        self.rt
            .block_on(async { tokio::time::timeout(timeout, events.recv()).await })
            .ok()
            .flatten()
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<ProducerEvent> {
        self.events.try_recv()
    }
}

impl Iterator for EventIter {
    type Item = ProducerEvent;

    fn next(&mut self) -> Option<ProducerEvent> {
        let events = &mut self.events;
        self.rt.block_on(events.recv())
    }
}

/// Fragments of a consumer, blocking: each [`Iterator::next`] waits for
/// the next fragment. Dropping it stops the reading.
#[derive(Debug)]
pub struct FragmentIter {
    stream: FragmentStream,
    rt: Arc<tokio::runtime::Runtime>,
}

impl FragmentIter {
    /// The next fragment, waiting at most `timeout` (`None`: none came in
    /// time; the iterator goes on).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Fragment, ClientError>> {
        let stream = &mut self.stream;
        self.rt
            .block_on(async { tokio::time::timeout(timeout, stream.next()).await })
            .ok()
            .flatten()
    }
}

impl Iterator for FragmentIter {
    type Item = Result<Fragment, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = &mut self.stream;
        self.rt.block_on(stream.next())
    }
}

/// Follows a stream live from `selector` (see
/// [`ConsumerBuilder::start`]), blocking.
///
/// Errors: a runtime that cannot start ([`ClientError::Config`]).
pub fn fragments(
    consumer: ConsumerBuilder,
    selector: StartSelector,
) -> Result<FragmentIter, ClientError> {
    let rt = runtime().map_err(|e| ClientError::Config(format!("no I/O runtime: {e}")))?;
    let stream = {
        let _in = rt.enter();
        consumer.start(selector)
    };
    Ok(FragmentIter { stream, rt })
}

/// The fragments of a time range in producer-time order (see
/// [`ConsumerBuilder::range`]), blocking.
///
/// Errors: a runtime that cannot start ([`ClientError::Config`]).
pub fn range(
    consumer: ConsumerBuilder,
    selector: FragmentSelector,
) -> Result<FragmentIter, ClientError> {
    let rt = runtime().map_err(|e| ClientError::Config(format!("no I/O runtime: {e}")))?;
    let stream = {
        let _in = rt.enter();
        consumer.range(selector)
    };
    Ok(FragmentIter { stream, rt })
}
