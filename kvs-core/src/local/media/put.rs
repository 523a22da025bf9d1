//! PutMedia: ingest, ACKs, faults, the lingering close.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::client::ServiceException;
use crate::local::store::ApiError;
use crate::protocol::ingest::{Ingest, IngestEvent, IngestLimits};
use crate::protocol::Ack;

use super::storage::{Live, MediaStore};
use super::{cut, now_ms, Faults, Out};

/// What a PutMedia request asked for.
pub(crate) struct PutMediaRequest {
    pub stream: String,
    /// Fragments kept for live readers of a stream without retention.
    pub live_buffer: usize,
    /// Silence after which an IDLE ACK is sent.
    pub idle_ack: std::time::Duration,
    /// Silence after which the request is closed.
    pub idle_close: std::time::Duration,
    /// Age after which the connection gets ERROR 4003 and is closed.
    pub max_age: std::time::Duration,
    pub retention_hours: u32,
    pub relative: bool,
    pub start_ms: u64,
    /// How far ahead of the endpoint's clock a fragment's producer
    /// timestamp may be (`None`: no check).
    pub max_producer_ahead: Option<std::time::Duration>,
}

/// Parses the PutMedia headers (the stream is resolved by the caller).
pub(crate) fn put_media_headers(h: &http::HeaderMap) -> Result<(Value, bool, u64), ApiError> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let stream = match (get("x-amzn-stream-name"), get("x-amzn-stream-arn")) {
        (Some(n), None) => serde_json::json!({"StreamName": n}),
        (None, Some(a)) => serde_json::json!({"StreamARN": a}),
        _ => {
            return Err(ApiError::new(
                ServiceException::InvalidArgument,
                "exactly one of x-amzn-stream-name and x-amzn-stream-arn is required",
            ))
        }
    };
    let relative = match get("x-amzn-fragment-timecode-type") {
        Some("ABSOLUTE") => false,
        Some("RELATIVE") => true,
        _ => {
            return Err(ApiError::new(
                ServiceException::InvalidArgument,
                "x-amzn-fragment-timecode-type must be ABSOLUTE or RELATIVE",
            ))
        }
    };
    let start = get("x-amzn-producer-start-timestamp")
        .and_then(crate::mkv::fragment::parse_epoch_ms)
        .ok_or_else(|| {
            ApiError::new(
                ServiceException::InvalidArgument,
                "x-amzn-producer-start-timestamp must be epoch seconds",
            )
        })?;
    Ok((stream, relative, start))
}

/// An ERROR ACK with the code's symbolic name.
fn error_ack(
    code: crate::protocol::ServiceErrorCode,
    fragment_timecode: Option<u64>,
    fragment_number: Option<String>,
) -> Ack {
    Ack::Error {
        fragment_timecode,
        fragment_number,
        code,
        error_code: code.name().map(str::to_owned),
    }
}

/// The fragment of a PutMedia connection that live readers follow, ended
/// as abandoned if the connection ends before it is stored.
struct LiveGuard {
    store: Arc<MediaStore>,
    stream: String,
    live: Option<Arc<Live>>,
}

impl LiveGuard {
    fn abandon(&mut self) {
        if let Some(l) = self.live.take() {
            self.store.abandon(&self.stream, &l);
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Reads a PutMedia body, stores its fragments and sends the ACKs.
///
/// Once the ACKs end (an ERROR, the connection's age, the body's end), the
/// rest of the body is read and discarded for up to [`LINGER`] before the
/// connection closes: a client still writing would otherwise get a TCP
/// reset, which makes its system discard the ACKs it has received but not
/// yet read (the ERROR among them). HTTP servers close this way ("lingering
/// close"), and a client reading while it writes sees the real service's
/// last ACKs.
pub(crate) async fn run_put_media(
    store: Arc<MediaStore>,
    req: PutMediaRequest,
    mut body: crate::local::server::PrimedBody,
    acks: Out,
    faults: Faults,
) {
    let cut = ingest_put_media(store, req, &mut body, acks, faults).await;
    if !cut {
        linger(&mut body).await;
    }
}

/// How long a PutMedia body is still read after its ACKs ended.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards a body until it ends, fails, or [`LINGER`] passes.
async fn linger(body: &mut crate::local::server::PrimedBody) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// Ingests a PutMedia body and sends its ACKs; true when the connection was
/// cut by the `drop-after-bytes` fault (no lingering close then).
async fn ingest_put_media(
    store: Arc<MediaStore>,
    req: PutMediaRequest,
    body: &mut crate::local::server::PrimedBody,
    acks: Out,
    faults: Faults,
) -> bool {
    let mut ingest = Ingest::new(IngestLimits::default());
    let mut current: Option<(String, u64)> = None;
    // The fragment live readers are following; abandoned on every way out
    // that does not store it.
    let mut live = LiveGuard {
        store: store.clone(),
        stream: req.stream.clone(),
        live: None,
    };
    let producer_ms = |timecode: u64, scale: u64| {
        let tc_ms =
            u64::try_from(u128::from(timecode) * u128::from(scale) / 1_000_000).unwrap_or(u64::MAX);
        if req.relative {
            req.start_ms.saturating_add(tc_ms)
        } else {
            tc_ms
        }
    };
    let mut total: u64 = 0;
    let delay = faults.ack_delay;
    let nth = store
        .put_connections
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let drop_at = faults
        .drop_after_bytes
        .or_else(|| faults.drop_schedule.get(nth as usize).copied());
    let mute = nth < faults.silent_connections;
    // Delayed ACKs go out from their own task, each `delay` after it was
    // due, so ingest goes on meanwhile (as at a slow service).
    let delayed = (!delay.is_zero()).then(|| {
        let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Bytes)>();
        let out = acks.clone();
        tokio::spawn(async move {
            while let Some((due, line)) = rx.recv().await {
                tokio::time::sleep_until(due + delay).await;
                if out.send(Ok(line)).await.is_err() {
                    return;
                }
            }
        });
        tx
    });
    let send = |a: Ack| {
        let acks = acks.clone();
        let delayed = delayed.clone();
        async move {
            if mute {
                return !acks.is_closed();
            }
            let line = Bytes::from(a.to_json_line());
            match delayed {
                Some(d) => d.send((tokio::time::Instant::now(), line)).is_ok() && !acks.is_closed(),
                None => acks.send(Ok(line)).await.is_ok(),
            }
        }
    };
    let mut silent = std::time::Duration::ZERO;
    let opened = tokio::time::Instant::now();
    loop {
        let mut cut_now = false;
        if opened.elapsed() >= req.max_age {
            let number = current.as_ref().map(|(n, _)| n.clone());
            send(error_ack(
                crate::protocol::ServiceErrorCode::MaxConnectionDurationReached,
                None,
                number,
            ))
            .await;
            return false;
        }
        // While no data flows the service sends IDLE ACKs, and closes the
        // request after its idle timeout.
        let frame = match tokio::time::timeout(req.idle_ack, body.frame()).await {
            Ok(f) => {
                silent = std::time::Duration::ZERO;
                f
            }
            Err(_) => {
                silent += req.idle_ack;
                if silent >= req.idle_close || !send(Ack::Idle).await {
                    return false;
                }
                continue;
            }
        };
        let (events, done) = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    if let Some(limit) = drop_at {
                        let room = limit.saturating_sub(total);
                        if data.len() as u64 > room {
                            data.truncate(room as usize);
                            cut_now = true;
                        }
                    }
                    total += data.len() as u64;
                    let mut pushed = ingest.push(data);
                    if cut_now {
                        // The fragment whose Cluster had ended is whole.
                        pushed.0.extend(ingest.abort());
                    }
                    (pushed, false)
                }
                Err(_) => continue,
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "PutMedia body broke off");
                // What arrived whole is kept; its ACKs may not get through.
                ((ingest.abort(), Ok(())), true)
            }
            None => (ingest.finish(), true),
        };
        let (events, result) = events;
        for ev in events {
            match ev {
                IngestEvent::Buffering {
                    timecode,
                    header,
                    tags,
                } => {
                    let number = store.next_number();
                    let server_ms = now_ms();
                    current = Some((number.clone(), server_ms));
                    live.abandon();
                    live.live = Some(store.begin_live(
                        &req.stream,
                        &number,
                        producer_ms(timecode, ingest.timecode_scale()),
                        server_ms,
                        &header,
                        &tags,
                    ));
                    if !send(Ack::Buffering {
                        fragment_timecode: timecode,
                        fragment_number: number,
                    })
                    .await
                    {
                        return false;
                    }
                }
                IngestEvent::Data(parts) => {
                    if let Some(l) = &live.live {
                        l.append(parts);
                    }
                }
                IngestEvent::Received(f) => {
                    let received_at = std::time::Instant::now();
                    let (number, server_ms) = current
                        .take()
                        .unwrap_or_else(|| (store.next_number(), now_ms()));
                    let nth = store
                        .received
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                        + 1;
                    if let Some((code, k)) = faults.error_ack {
                        if nth == k {
                            send(error_ack(code, Some(f.timecode), Some(number))).await;
                            return false;
                        }
                    }
                    let producer_ms = producer_ms(f.timecode, f.timecode_scale);
                    if let Some(ahead) = req.max_producer_ahead {
                        if producer_ms > now_ms().saturating_add(ahead.as_millis() as u64) {
                            tracing::info!(
                                stream = %req.stream,
                                producer_ms,
                                "fragment refused: producer timestamp in the future"
                            );
                            let code = crate::protocol::ServiceErrorCode::InvalidProducerTimestamp;
                            send(error_ack(code, Some(f.timecode), Some(number))).await;
                            return false;
                        }
                    }
                    if req.retention_hours > 0 {
                        // Written (with --data-dir, to disk) before PERSISTED goes out.
                        if let Err(e) = store.store(
                            &req.stream,
                            number.clone(),
                            producer_ms,
                            server_ms,
                            &f,
                            true,
                        ) {
                            tracing::error!(error = %e, "cannot store a fragment");
                            let code = crate::protocol::ServiceErrorCode::ArchivalError;
                            send(error_ack(code, Some(f.timecode), Some(number))).await;
                            return false;
                        }
                        live.live = None;
                    }
                    let ok = send(Ack::Received {
                        fragment_timecode: f.timecode,
                        fragment_number: number.clone(),
                    })
                    .await;
                    if req.retention_hours == 0 {
                        // Without retention the data is only held, in memory, for live readers.
                        let _ = store.store(
                            &req.stream,
                            number.clone(),
                            producer_ms,
                            server_ms,
                            &f,
                            false,
                        );
                        live.live = None;
                        store.trim(&req.stream, req.live_buffer);
                    } else if ok {
                        store.note_ack(&req.stream, &number, received_at.elapsed());
                        send(Ack::Persisted {
                            fragment_timecode: f.timecode,
                            fragment_number: number,
                        })
                        .await;
                    }
                    if !ok {
                        return false;
                    }
                }
            }
        }
        if cut_now {
            let _ = acks.send(Err(cut())).await;
            return true;
        }
        if let Err(e) = result {
            tracing::info!(error = %e, stream = %req.stream, "PutMedia rejected");
            let number = current.as_ref().map(|(n, _)| n.clone());
            send(error_ack(e.code, e.timecode, number)).await;
            return false;
        }
        if done {
            return false;
        }
    }
}
