//! The producer's events as [`ProducerListener`] callbacks, made on a
//! thread of the library's own.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use kvs_core::producer::{Events, ProducerEvent};

use crate::foreign::Foreign;

/// A fragment the service acknowledged.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FragmentAck {
    /// The service's fragment number (a long decimal string).
    pub fragment_number: String,
    /// The fragment's producer timestamp, ms since the epoch (UTC).
    pub producer_timestamp_ms: i64,
    /// Frames in it.
    pub frames: u64,
}

/// The upload connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ConnectionState {
    /// A connection is up.
    Connected,
    /// It ended (cut, the network changed, rotated).
    Disconnected,
    /// Ended by `pause()`: none until `resume()`.
    Paused,
    /// The last try failed; the next comes after a backoff.
    Reconnecting,
}

/// Buffer and upload figures, each second while connected.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ProducerStats {
    /// Media bytes not yet acknowledged.
    pub buffered_bytes: u64,
    /// Media time not yet acknowledged, ms.
    pub buffered_duration_ms: u64,
    /// Fragments not yet acknowledged.
    pub buffered_fragments: u64,
    /// Bytes written to connections so far (resent ones again).
    pub bytes_sent: u64,
}

/// What the app hears of the producer. Called on the library's
/// "kvs-listener" thread, one call at a time, never on the caller's
/// thread; a slow callback delays the next ones, not the upload.
#[uniffi::export(with_foreign)]
pub trait ProducerListener: Send + Sync {
    /// A fragment was acknowledged (PERSISTED, or RECEIVED for a stream
    /// without retention), `latency_ms` after its last byte was written.
    fn on_ack(&self, fragment: FragmentAck, latency_ms: u64);
    /// An error: the service's numeric code (`"4009"`…) or `"CONNECTION"`
    /// for a connection or stream lookup that failed. `retriable`: the
    /// producer tries again by itself.
    fn on_error(&self, code: String, retriable: bool, message: String);
    /// A fragment was given up (a full buffer, or refused by the service).
    fn on_fragment_dropped(&self, reason: String, frames: u64);
    /// The connection's state changed.
    fn on_connection_state(&self, state: ConnectionState);
    /// Figures, each second while connected.
    fn on_stats(&self, stats: ProducerStats);
}

/// The thread that calls the listener, and how to stop it.
pub(crate) struct Pump {
    stop: Arc<tokio::sync::Notify>,
    /// Told when the thread has delivered the last event and ended.
    ended: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

/// Calls `listener` for each event, on a thread of the library's own,
/// until [`Pump::drain`], [`Pump`]'s drop or the producer's end. A
/// callback that throws is logged and the next events still come.
pub(crate) fn pump(mut events: Events, listener: Arc<dyn ProducerListener>) -> Pump {
    let stop = Arc::new(tokio::sync::Notify::new());
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    let listener = Foreign::new(listener);
    let stopped = stop.clone();
    let run = move || {
        crate::foreign::mark_ours();
        let rt = crate::runtime();
        let call = |e| {
            let call = std::panic::AssertUnwindSafe(|| deliver(&*listener, e));
            if std::panic::catch_unwind(call).is_err() {
                tracing::warn!("a ProducerListener callback failed; the next events still come");
            }
        };
        loop {
            let next = rt.block_on(async {
                tokio::select! {
                    e = events.recv() => Some(e),
                    () = stopped.notified() => None,
                }
            });
            match next {
                Some(Some(e)) => call(e),
                Some(None) => break,
                // Asked to stop: what was sent before is still delivered.
                None => {
                    while let Some(e) = events.try_recv() {
                        call(e);
                    }
                    break;
                }
            }
        }
        let _ = ended_tx.send(());
    };
    if let Err(e) = std::thread::Builder::new()
        .name("kvs-listener".into())
        .spawn(run)
    {
        tracing::error!(error = %e, "no thread for the producer's listener");
    }
    Pump {
        stop,
        ended: std::sync::Mutex::new(Some(ended)),
    }
}

impl Pump {
    /// A future (run it on the library's runtime) that, when run, has the
    /// thread deliver the events sent so far and end: no callback comes
    /// after it resolves (unless a callback takes longer than 2 s).
    pub(crate) fn drain(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let stop = self.stop.clone();
        let ended = self
            .ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        async move {
            stop.notify_one();
            if let Some(ended) = ended {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), ended).await;
            }
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

fn ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn deliver(l: &dyn ProducerListener, e: ProducerEvent) {
    match e {
        ProducerEvent::Acked {
            producer_timestamp,
            fragment_number,
            latency,
            frames,
        } => l.on_ack(
            FragmentAck {
                fragment_number,
                producer_timestamp_ms: ms(producer_timestamp),
                frames: frames as u64,
            },
            latency.as_millis() as u64,
        ),
        ProducerEvent::ServiceError {
            code, retriable, ..
        } => l.on_error(code.id().to_string(), retriable, code.to_string()),
        ProducerEvent::FragmentDropped { frames, reason, .. } => {
            l.on_fragment_dropped(reason.to_string(), frames as u64)
        }
        ProducerEvent::Connected { .. } => l.on_connection_state(ConnectionState::Connected),
        ProducerEvent::Disconnected { reason, .. } => {
            l.on_connection_state(if reason == kvs_core::producer::PAUSED {
                ConnectionState::Paused
            } else {
                ConnectionState::Disconnected
            })
        }
        ProducerEvent::Reconnecting { error, .. } => {
            l.on_connection_state(ConnectionState::Reconnecting);
            l.on_error("CONNECTION".into(), true, error);
        }
        ProducerEvent::StreamLookupFailed {
            error,
            code,
            retriable,
            ..
        } => l.on_error(
            code.unwrap_or_else(|| "CONNECTION".into()),
            retriable,
            format!("stream lookup: {error}"),
        ),
        ProducerEvent::Stats {
            buffered_bytes,
            buffered_duration,
            buffered_fragments,
            bytes_sent,
        } => l.on_stats(ProducerStats {
            buffered_bytes: buffered_bytes as u64,
            buffered_duration_ms: buffered_duration.as_millis() as u64,
            buffered_fragments: buffered_fragments as u64,
            bytes_sent,
        }),
        _ => {}
    }
}
