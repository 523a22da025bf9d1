//! PutMedia and GetMedia on the local endpoint.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use super::store::ApiError;
use crate::client::ServiceException;
use crate::ebml::writer;
use crate::mkv::ids;
use crate::protocol::ingest::{Ingest, IngestEvent, IngestLimits, IngestedFragment};
use crate::protocol::Ack;

/// A response body fed from a channel: ends when the sender is dropped,
/// and aborts the connection when an error is sent (a fault).
pub(crate) struct ChannelBody(pub mpsc::Receiver<Result<Bytes, std::io::Error>>);

type Out = mpsc::Sender<Result<Bytes, std::io::Error>>;

fn cut() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "connection cut by the drop-after-bytes fault",
    )
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| b.map(Frame::data)))
    }
}

/// Faults the endpoint injects, for tests of clients under failure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Cut every PutMedia and GetMedia connection after this many body bytes
    /// (request bytes for PutMedia, response bytes for GetMedia).
    pub drop_after_bytes: Option<u64>,
    /// Answer the K-th fragment received by the endpoint (counted over all
    /// connections, from 1) with an ERROR ACK of this code instead of
    /// RECEIVED; that fragment is not stored and the session ends.
    pub error_ack: Option<(crate::protocol::ServiceErrorCode, u64)>,
    /// Wait this long before sending each ACK.
    pub ack_delay: std::time::Duration,
    /// Answer this fraction of control-plane calls with the service's
    /// throttling error (`ClientLimitExceededException`).
    pub throttle: f64,
    /// Cut the k-th PutMedia connection (from 0, counted since the endpoint
    /// started) after `drop_schedule[k]` body bytes; later ones are not cut.
    pub drop_schedule: Vec<u64>,
    /// The first this many PutMedia connections get no ACKs at all (the
    /// fragments are stored).
    pub silent_connections: u64,
}

impl Faults {
    /// Adds a fault from its `kvs local --fault` spelling:
    /// `drop-after-bytes=N`, `error-ack=CODE@K`, `ack-delay-ms=N`, `throttle=P`.
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| format!("fault {spec:?} is not NAME=VALUE"))?;
        let bad = || {
            let form = match name {
                "drop-after-bytes" => "drop-after-bytes=N (bytes)",
                "error-ack" => "error-ack=CODE@K (e.g. 4006@2: the 2nd fragment gets ERROR 4006)",
                "ack-delay-ms" => "ack-delay-ms=N (milliseconds)",
                _ => "throttle=P (a fraction, 0 to 1)",
            };
            format!("bad value in fault {spec:?}; expected {form}")
        };
        match name {
            "drop-after-bytes" => self.drop_after_bytes = Some(value.parse().map_err(|_| bad())?),
            "error-ack" => {
                let (code, k) = value.split_once('@').ok_or_else(bad)?;
                let k: u64 = k.parse().map_err(|_| bad())?;
                if k == 0 {
                    return Err(bad());
                }
                self.error_ack = Some((crate::protocol::ServiceErrorCode::from_id(code.parse().map_err(|_| bad())?), k));
            }
            "ack-delay-ms" => self.ack_delay = std::time::Duration::from_millis(value.parse().map_err(|_| bad())?),
            "throttle" => {
                let p: f64 = value.parse().map_err(|_| bad())?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(bad());
                }
                self.throttle = p;
            }
            _ => return Err(format!("unknown fault {name:?} (known: drop-after-bytes, error-ack, ack-delay-ms, throttle)")),
        }
        Ok(())
    }
}

/// A stored fragment: the GetMedia document without the trailing service
/// tags (`MILLIS_BEHIND_NOW`, `CONTINUATION_TOKEN`, added when it is sent).
#[derive(Debug)]
pub(crate) struct Stored {
    pub number: String,
    pub producer_ms: u64,
    pub server_ms: u64,
    /// `doc[0]`: EBML header, Segment, header elements and the producer's
    /// Tags that came before the Cluster; `doc[1]`: the service's Tags in
    /// front of the Cluster, GetMedia spelling ([`Lead::GetMedia`]); then the
    /// Cluster and the producer's Tags that followed it. (A fragment saved
    /// by an older version whose service Tags cannot be found is one chunk.)
    pub doc: Vec<Bytes>,
    /// Size of the Cluster, bytes.
    pub size: u64,
    /// Duration of the fragment, ms.
    pub duration_ms: u64,
}

/// Fragments of one stream, with a wake-up for live readers.
#[derive(Debug, Default)]
pub(crate) struct Media {
    pub fragments: Vec<Arc<Stored>>,
    pub notify: Arc<Notify>,
}

/// Fragments of every stream.
#[derive(Debug, Default)]
pub(crate) struct MediaStore {
    pub streams: std::sync::Mutex<HashMap<String, Media>>,
    counter: std::sync::atomic::AtomicU64,
    /// Where fragments are written (with `--data-dir`).
    dir: Option<std::path::PathBuf>,
    /// Fragments received over all connections (for the error-ack fault).
    received: std::sync::atomic::AtomicU64,
    /// PutMedia connections so far (for the scheduled faults).
    put_connections: std::sync::atomic::AtomicU64,
    /// Open PutMedia (`true`) and GetMedia (`false`) connections per stream.
    connections: std::sync::Mutex<HashMap<(String, bool), usize>>,
}

/// One open PutMedia or GetMedia connection of a stream, counted until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    store: Arc<MediaStore>,
    key: (String, bool),
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self
            .store
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = c.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

impl MediaStore {
    /// Counts a new PutMedia (`put`) or GetMedia connection of `stream`, or
    /// refuses it when `limit` are open already.
    pub(crate) fn open_connection(
        self: &Arc<Self>,
        stream: &str,
        put: bool,
        limit: usize,
    ) -> Option<ConnectionSlot> {
        let key = (stream.to_owned(), put);
        let mut c = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = c.entry(key.clone()).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            store: self.clone(),
            key,
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn epoch_secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The spellings of the service's Tags in front of a fragment's Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lead {
    /// GetMedia (its model and the real captures):
    /// `AWS_KINESISVIDEO_SERVER_TIMESTAMP`, `…_PRODUCER_TIMESTAMP`.
    GetMedia,
    /// GetMediaForFragmentList (the kinesis-video-archived-media model):
    /// `AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP`, `…_PRODUCER_SIDE_TIMESTAMP`.
    FragmentList,
}

/// The service's Tags element in front of a fragment's Cluster.
fn lead_tags(lead: Lead, number: &str, server_ms: u64, producer_ms: u64) -> Vec<u8> {
    let (server, producer) = match lead {
        Lead::GetMedia => (
            crate::mkv::fragment::TAG_SERVER_TIMESTAMP,
            crate::mkv::fragment::TAG_PRODUCER_TIMESTAMP,
        ),
        Lead::FragmentList => (
            crate::mkv::fragment::TAG_SERVER_SIDE_TIMESTAMP,
            crate::mkv::fragment::TAG_PRODUCER_SIDE_TIMESTAMP,
        ),
    };
    let mut out = Vec::new();
    tags_element(
        &mut out,
        &[
            (crate::mkv::fragment::TAG_FRAGMENT_NUMBER, number.to_owned()),
            (server, epoch_secs(server_ms)),
            (producer, epoch_secs(producer_ms)),
        ],
    );
    out
}

/// Splits a saved document into [prefix, service Tags, rest] (see
/// [`Stored::doc`]), at the position the index recorded or, for documents
/// saved before it was recorded, where the service Tags are found.
fn split_doc(doc: Bytes, at: Option<(usize, usize)>, lead: &[u8]) -> Vec<Bytes> {
    let at = at
        .filter(|&(a, l)| a.checked_add(l).and_then(|e| doc.get(a..e)) == Some(lead))
        .or_else(|| memchr::memmem::find(&doc, lead).map(|a| (a, lead.len())));
    match at {
        Some((a, l)) => vec![doc.slice(..a), doc.slice(a..a + l), doc.slice(a + l..)],
        None => {
            tracing::warn!("saved fragment without its service tags; served as saved");
            vec![doc]
        }
    }
}

/// One `Tags` element holding these SimpleTags.
fn tags_element(out: &mut Vec<u8>, tags: &[(&str, String)]) {
    writer::master(out, ids::TAGS, |t| {
        writer::master(t, ids::TAG, |tag| {
            for (name, value) in tags {
                writer::master(tag, ids::SIMPLE_TAG, |st| {
                    writer::string(st, ids::TAG_NAME, name);
                    writer::string(st, ids::TAG_STRING, value);
                });
            }
        });
    });
}

impl MediaStore {
    /// A fresh 47-digit fragment number, increasing.
    pub(crate) fn next_number(&self) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        format!("9134385233318{:034}", n)
    }

    /// A store that writes every fragment under `dir` before it counts as
    /// stored, and starts with what an earlier run left there.
    pub(crate) fn open(dir: &std::path::Path) -> std::io::Result<Self> {
        let store = Self {
            dir: Some(dir.to_owned()),
            ..Self::default()
        };
        let media = dir.join("media");
        std::fs::create_dir_all(&media)?;
        let mut max = 0u64;
        let mut streams = store
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for entry in std::fs::read_dir(&media)? {
            let entry = entry?;
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("s-"))
                .map(str::to_owned)
            else {
                continue;
            };
            let index =
                std::fs::read_to_string(entry.path().join("index.jsonl")).unwrap_or_default();
            let m = streams.entry(name).or_default();
            for line in index.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                let number = v["number"].as_str().unwrap_or_default().to_owned();
                let doc = std::fs::read(entry.path().join(format!("{number}.mkv")))?;
                max = max.max(number.get(13..).and_then(|n| n.parse().ok()).unwrap_or(0));
                let producer_ms = v["producer_ms"].as_u64().unwrap_or(0);
                let server_ms = v["server_ms"].as_u64().unwrap_or(0);
                let at = v["lead_at"]
                    .as_u64()
                    .zip(v["lead_len"].as_u64())
                    .map(|(a, l)| (a as usize, l as usize));
                let lead = lead_tags(Lead::GetMedia, &number, server_ms, producer_ms);
                m.fragments.push(Arc::new(Stored {
                    doc: split_doc(Bytes::from(doc), at, &lead),
                    number,
                    producer_ms,
                    server_ms,
                    size: v["size"].as_u64().unwrap_or(0),
                    duration_ms: v["duration_ms"].as_u64().unwrap_or(0),
                }));
            }
        }
        drop(streams);
        store
            .counter
            .store(max, std::sync::atomic::Ordering::SeqCst);
        Ok(store)
    }

    fn stream_dir(&self, stream: &str) -> Option<std::path::PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join("media").join(format!("s-{stream}")))
    }

    /// Stores a fragment and wakes live readers. A `durable` fragment (a
    /// stream with retention) is written to disk first with `--data-dir`;
    /// others live only in memory, for live readers.
    pub(crate) fn store(
        &self,
        stream: &str,
        number: String,
        producer_ms: u64,
        server_ms: u64,
        f: &IngestedFragment,
        durable: bool,
    ) -> std::io::Result<()> {
        let size: usize = f.cluster.iter().map(Bytes::len).sum();
        let mut prefix = Vec::with_capacity(f.header.len() + 512);
        writer::ebml_header(&mut prefix, "matroska", 2);
        writer::master_unknown(&mut prefix, ids::SEGMENT);
        prefix.extend_from_slice(&f.header);
        for t in &f.tags {
            prefix.extend_from_slice(t);
        }
        let lead = lead_tags(Lead::GetMedia, &number, server_ms, producer_ms);
        let (lead_at, lead_len) = (prefix.len(), lead.len());
        // The Cluster is kept as received, not copied into the prefix; the
        // producer's Tags that followed it come after it.
        let doc: Vec<Bytes> = [Bytes::from(prefix), Bytes::from(lead)]
            .into_iter()
            .chain(f.cluster.iter().cloned())
            .chain(f.trailing_tags.iter().cloned())
            .collect();
        if let Some(dir) = self.stream_dir(stream).filter(|_| durable) {
            use std::io::Write;
            std::fs::create_dir_all(&dir)?;
            let mut file = std::fs::File::create(dir.join(format!("{number}.mkv")))?;
            for part in &doc {
                file.write_all(part)?;
            }
            file.sync_all()?;
            let line = serde_json::json!({"number": number, "producer_ms": producer_ms, "server_ms": server_ms, "size": size, "duration_ms": f.duration_ms, "lead_at": lead_at, "lead_len": lead_len});
            let mut index = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("index.jsonl"))?;
            index.write_all(format!("{line}\n").as_bytes())?;
            index.sync_all()?;
        }
        let stored = Arc::new(Stored {
            number,
            producer_ms,
            server_ms,
            doc,
            size: size as u64,
            duration_ms: f.duration_ms,
        });
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let m = streams.entry(stream.to_owned()).or_default();
        m.fragments.push(stored);
        m.notify.notify_waiters();
        Ok(())
    }

    /// Drops the oldest fragments of a stream beyond `keep` (the live buffer
    /// of streams without retention).
    pub(crate) fn trim(&self, stream: &str, keep: usize) {
        if let Some(m) = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(stream)
        {
            let excess = m.fragments.len().saturating_sub(keep);
            if excess > 0 {
                m.fragments.drain(..excess);
            }
        }
    }

    /// Forgets a deleted stream's fragments (and their files).
    pub(crate) fn remove(&self, stream: &str) {
        if let Some(m) = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(stream)
        {
            m.notify.notify_waiters();
        }
        if let Some(dir) = self.stream_dir(stream) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

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
    mut body: super::server::PrimedBody,
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
async fn linger(body: &mut super::server::PrimedBody) {
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
    body: &mut super::server::PrimedBody,
    acks: Out,
    faults: Faults,
) -> bool {
    let mut ingest = Ingest::new(IngestLimits::default());
    let mut current: Option<(String, u64)> = None;
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
                IngestEvent::Buffering { timecode } => {
                    let number = store.next_number();
                    current = Some((number.clone(), now_ms()));
                    if !send(Ack::Buffering {
                        fragment_timecode: timecode,
                        fragment_number: number,
                    })
                    .await
                    {
                        return false;
                    }
                }
                IngestEvent::Received(f) => {
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
                    let tc_ms = u64::try_from(
                        u128::from(f.timecode) * u128::from(f.timecode_scale) / 1_000_000,
                    )
                    .unwrap_or(u64::MAX);
                    let producer_ms = if req.relative {
                        req.start_ms.saturating_add(tc_ms)
                    } else {
                        tc_ms
                    };
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
                        store.trim(&req.stream, req.live_buffer);
                    } else if ok {
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

/// Epoch ms of a JSON timestamp (epoch seconds, fractional).
pub(crate) fn epoch_ms(v: Option<&Value>, what: &str) -> Result<u64, ApiError> {
    v.and_then(Value::as_f64)
        .filter(|s| *s >= 0.0)
        .map(|s| (s * 1000.0).round() as u64)
        .ok_or_else(|| {
            ApiError::new(
                ServiceException::InvalidArgument,
                format!("{what} is required"),
            )
        })
}

/// A `{FragmentSelectorType, TimestampRange}` selector: server timestamps?
/// and the range in ms.
pub(crate) fn time_range(
    sel: &Value,
    default_server: bool,
    need_end: bool,
) -> Result<(bool, u64, Option<u64>), ApiError> {
    let by_server = match sel.get("FragmentSelectorType").and_then(Value::as_str) {
        Some("PRODUCER_TIMESTAMP") => false,
        Some("SERVER_TIMESTAMP") => true,
        None => default_server,
        Some(other) => {
            return Err(ApiError::new(
                ServiceException::InvalidArgument,
                format!("unknown FragmentSelectorType {other}"),
            ))
        }
    };
    let r = sel.get("TimestampRange");
    let start = epoch_ms(
        r.and_then(|r| r.get("StartTimestamp")),
        "TimestampRange.StartTimestamp",
    )?;
    let end = match r.and_then(|r| r.get("EndTimestamp")) {
        None | Some(Value::Null) if !need_end => None,
        e => Some(epoch_ms(e, "TimestampRange.EndTimestamp")?),
    };
    if end.is_some_and(|e| e < start) {
        return Err(ApiError::new(
            ServiceException::InvalidArgument,
            "StartTimestamp is after EndTimestamp",
        ));
    }
    Ok((by_server, start, end))
}

/// Whether a fragment's producer (or server) timestamp is in the range.
pub(crate) fn in_range(f: &Stored, by_server: bool, start: u64, end: Option<u64>) -> bool {
    let t = if by_server {
        f.server_ms
    } else {
        f.producer_ms
    };
    t >= start && end.is_none_or(|e| t <= e)
}

/// Where a GetMedia request starts, as an index into the stream's fragments.
pub(crate) fn start_index(media: &Media, selector: &Value) -> Result<usize, ApiError> {
    let bad = |m: &str| ApiError::new(ServiceException::InvalidArgument, m);
    let kind = selector
        .get("StartSelectorType")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("StartSelector.StartSelectorType is required"))?;
    let frags = &media.fragments;
    let after = |number: &str| {
        frags
            .iter()
            .position(|f| f.number == number)
            .map(|i| i + 1)
            .ok_or_else(|| {
                ApiError::new(
                    ServiceException::InvalidArgument,
                    format!("fragment {number} not found"),
                )
            })
    };
    let ts = || epoch_ms(selector.get("StartTimestamp"), "StartTimestamp");
    match kind {
        "EARLIEST" => Ok(0),
        "NOW" => Ok(frags.len()),
        "FRAGMENT_NUMBER" => after(
            selector
                .get("AfterFragmentNumber")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("AfterFragmentNumber is required"))?,
        ),
        "CONTINUATION_TOKEN" => after(
            selector
                .get("ContinuationToken")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("ContinuationToken is required"))?,
        ),
        "PRODUCER_TIMESTAMP" => {
            let t = ts()?;
            Ok(frags
                .iter()
                .position(|f| f.producer_ms >= t)
                .unwrap_or(frags.len()))
        }
        "SERVER_TIMESTAMP" => {
            let t = ts()?;
            Ok(frags
                .iter()
                .position(|f| f.server_ms >= t)
                .unwrap_or(frags.len()))
        }
        other => Err(bad(&format!("unknown StartSelectorType {other}"))),
    }
}

/// Sends fragments from `index` on, then follows the stream live until the
/// reader goes away or the stream is deleted.
///
/// `AWS_KINESISVIDEO_MILLIS_BEHIND_NOW` is the time from the fragment's
/// server timestamp to the moment its trailing tags are sent. The GetMedia
/// model describes it as how far the chunk is "behind … the latest chunk on
/// the stream"; every real capture in `../shared/vectors` shows it measured
/// to the time of sending: SERVER_TIMESTAMP + MILLIS_BEHIND_NOW grows from
/// fragment to fragment of one response by the time it took to send them
/// (e.g. 1511852124984, …125070, …125427, …125828, …126240 in
/// `output_get_media.mkv`), and in `test_mixed_tags.mkv` the stream's last
/// fragment — the latest chunk itself — has 274, not 0.
pub(crate) async fn run_get_media(
    store: Arc<MediaStore>,
    stream: String,
    mut index: usize,
    out: Out,
    faults: Faults,
) {
    let mut sent: u64 = 0;
    loop {
        let (next, notify) = {
            let streams = store
                .streams
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(m) = streams.get(&stream) else {
                return;
            };
            (m.fragments.get(index).cloned(), m.notify.clone())
        };
        match next {
            Some(f) => {
                let mut trailer = Vec::new();
                // As the service reports it: from the fragment's server
                // timestamp to the moment this tag is sent (see the docs of
                // `run_get_media`).
                let behind = now_ms().saturating_sub(f.server_ms);
                tags_element(
                    &mut trailer,
                    &[
                        ("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", behind.to_string()),
                        ("AWS_KINESISVIDEO_CONTINUATION_TOKEN", f.number.clone()),
                    ],
                );
                for part in f.doc.iter().cloned().chain([Bytes::from(trailer)]) {
                    let (part, cut_now) = match faults.drop_after_bytes {
                        Some(limit) if sent + part.len() as u64 > limit => {
                            (part.slice(..limit.saturating_sub(sent) as usize), true)
                        }
                        _ => (part, false),
                    };
                    sent += part.len() as u64;
                    if !part.is_empty() && out.send(Ok(part)).await.is_err() {
                        return;
                    }
                    if cut_now {
                        // Let the bytes before the cut reach the socket (the
                        // server drops what it still holds when a body fails).
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        let _ = out.send(Err(cut())).await;
                        return;
                    }
                }
                index += 1;
            }
            None => {
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let has_more = store
                    .streams
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&stream)
                    .map(|m| m.fragments.len() > index);
                match has_more {
                    None => return,
                    Some(true) => continue,
                    Some(false) => tokio::select! {
                        _ = notified => {}
                        _ = out.closed() => return,
                    },
                }
            }
        }
    }
}

/// ListFragments: the stored fragments in a time range, paged.
pub(crate) fn list_fragments(media: Option<&Media>, req: &Value) -> Result<Value, ApiError> {
    let bad = |m: String| ApiError::new(ServiceException::InvalidArgument, m);
    let max = match req.get("MaxResults") {
        None | Some(Value::Null) => 1000,
        Some(v) => v
            .as_u64()
            .filter(|m| (1..=1000).contains(m))
            .ok_or_else(|| bad("MaxResults must be 1 to 1000".into()))? as usize,
    };
    let start = match req.get("NextToken").and_then(Value::as_str) {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| bad("invalid NextToken".into()))?,
    };
    let range = match req.get("FragmentSelector") {
        None | Some(Value::Null) => None,
        Some(sel) => {
            if sel.get("FragmentSelectorType").is_none() {
                return Err(bad(
                    "FragmentSelector.FragmentSelectorType is required".into()
                ));
            }
            Some(time_range(sel, false, true)?)
        }
    };
    let all: Vec<&Arc<Stored>> = media
        .map(|m| {
            m.fragments
                .iter()
                .filter(|f| range.is_none_or(|(srv, a, b)| in_range(f, srv, a, b)))
                .collect()
        })
        .unwrap_or_default();
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|f| {
            serde_json::json!({
                "FragmentNumber": f.number,
                "FragmentSizeInBytes": f.size,
                "ProducerTimestamp": f.producer_ms as f64 / 1000.0,
                "ServerTimestamp": f.server_ms as f64 / 1000.0,
                "FragmentLengthInMilliseconds": f.duration_ms,
            })
        })
        .collect();
    let mut out = serde_json::json!({"Fragments": page});
    if start + max < all.len() {
        out["NextToken"] = Value::from((start + max).to_string());
    }
    Ok(out)
}

/// GetMediaForFragmentList: the named fragments' documents, in the order
/// asked, as the stored chunks (nothing copied) with the service Tags in
/// this API's spelling (`…_SERVER_SIDE_TIMESTAMP`, `…_PRODUCER_SIDE_TIMESTAMP`).
pub(crate) fn fragments_by_number(
    media: Option<&Media>,
    req: &Value,
) -> Result<Vec<Bytes>, ApiError> {
    let bad = |m: String| ApiError::new(ServiceException::InvalidArgument, m);
    let numbers = req
        .get("Fragments")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty() && a.len() <= 1000)
        .ok_or_else(|| bad("Fragments must list 1 to 1000 fragment numbers".into()))?;
    let docs: Vec<Vec<Bytes>> = numbers
        .iter()
        .map(|n| {
            let n = n
                .as_str()
                .ok_or_else(|| bad("fragment numbers are strings".into()))?;
            media
                .and_then(|m| m.fragments.iter().find(|f| f.number == n))
                .map(|f| match f.doc.split_first() {
                    Some((prefix, [_, rest @ ..])) => {
                        let lead =
                            lead_tags(Lead::FragmentList, &f.number, f.server_ms, f.producer_ms);
                        [prefix.clone(), Bytes::from(lead)]
                            .into_iter()
                            .chain(rest.iter().cloned())
                            .collect()
                    }
                    _ => f.doc.clone(),
                })
                .ok_or_else(|| {
                    ApiError::new(
                        ServiceException::ResourceNotFound,
                        format!("fragment {n} not found"),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(docs.concat())
}
