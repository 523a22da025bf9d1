//! The HTTP side of the local endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::media::{
    put_media_headers, run_get_media, run_put_media, start_index, ChannelBody, Faults, MediaStore,
    PutMediaRequest,
};
use super::store::{ApiError, Registry};
use crate::client::ServiceException;

/// Settings of a local endpoint.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Region in ARNs.
    pub region: String,
    /// Account id in ARNs.
    pub account: String,
    /// Faults to inject (none by default).
    pub faults: Faults,
    /// Silence on a PutMedia connection after which an IDLE ACK is sent (default 2 s).
    pub idle_ack_interval: std::time::Duration,
    /// Silence after which a PutMedia request is closed (default 30 s, as the service).
    pub idle_timeout: std::time::Duration,
    /// Age of a PutMedia connection after which it gets ERROR 4003
    /// (`MAX_CONNECTION_DURATION_REACHED`) and is closed (default 45 minutes,
    /// as the service; shorten it to test rotation).
    pub max_connection_duration: std::time::Duration,
    /// Fragments kept in memory for live readers of a stream whose retention
    /// is 0 (default 512; the service keeps a few minutes).
    pub live_buffer_fragments: usize,
    /// Keep streams and fragments in this directory, so they survive a
    /// restart (fragments are on disk before PERSISTED is sent). Only an
    /// index and each stream's newest `memory_fragments` stay in memory;
    /// older fragments are read from disk, so memory stays bounded whatever
    /// is stored.
    pub data_dir: Option<std::path::PathBuf>,
    /// With `data_dir`: the newest fragments per stream whose documents
    /// stay in memory, for live readers (default 16).
    pub memory_fragments: usize,
    /// Without `data_dir`: the fragment bytes (Clusters) a stream with
    /// retention holds in memory; past it the oldest fragments expire first,
    /// with a warning (default 1 GiB; 0: no cap).
    pub max_memory_bytes_per_stream: u64,
    /// How long a retention hour lasts (default 3,600 s). Fragments expire
    /// once they were ingested (server time) more than the stream's
    /// `DataRetentionInHours` of these ago, as the service's do; a change of
    /// retention applies at once. Shorten it to watch expiry in a test or a
    /// soak run.
    pub retention_hour: std::time::Duration,
    /// When set, every request must carry a valid SigV4 signature by this
    /// access key and secret; bad or expired ones get the service's 403.
    pub credentials: Option<(String, String)>,
    /// Largest control-plane request body (default 1 MiB).
    pub max_request_bytes: usize,
    /// Concurrent PutMedia connections per stream; one more gets
    /// `ConnectionLimitExceededException` (default 5: rotation and retries
    /// overlap connections for a while).
    pub max_put_media_connections: usize,
    /// Concurrent GetMedia connections per stream; one more gets
    /// `ConnectionLimitExceededException` (default 3, as the service).
    pub max_get_media_connections: usize,
    /// How far a fragment's producer timestamp may be ahead of the
    /// endpoint's clock; a later one is refused with ERROR 4007
    /// (`INVALID_PRODUCER_TIMESTAMP`). The service does not take fragments
    /// with future timestamps (AWS, awslabs/amazon-kinesis-video-streams-
    /// producer-c#370); the ACK code and the tolerance are not documented
    /// (an inference, \[I\] in the protocol notes): default 10 s, for clock skew. `None`: no
    /// check.
    pub max_producer_time_ahead: Option<std::time::Duration>,
    /// The URL GetDataEndpoint answers (default: the endpoint's own), e.g.
    /// a relay in front of it that delays, throttles or drops traffic, so
    /// the data plane goes through it while the control plane does not.
    pub data_endpoint: Option<String>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            port: 0,
            region: "us-east-1".into(),
            account: "123456789012".into(),
            faults: Faults::default(),
            credentials: None,
            data_dir: None,
            memory_fragments: 16,
            max_memory_bytes_per_stream: 1 << 30,
            retention_hour: std::time::Duration::from_secs(3600),
            live_buffer_fragments: 512,
            idle_ack_interval: std::time::Duration::from_secs(2),
            idle_timeout: std::time::Duration::from_secs(30),
            max_connection_duration: std::time::Duration::from_secs(45 * 60),
            max_request_bytes: 1 << 20,
            max_put_media_connections: 5,
            max_get_media_connections: 3,
            max_producer_time_ahead: Some(std::time::Duration::from_secs(10)),
            data_endpoint: None,
        }
    }
}

struct Shared {
    cfg: LocalConfig,
    url: String,
    registry: Mutex<Registry>,
    media: Arc<MediaStore>,
    sessions: super::playback::Sessions,
}

type Resp = Response<BoxBody<Bytes, std::io::Error>>;

/// A running local endpoint. Dropping it stops the server.
pub struct LocalEndpoint {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LocalEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEndpoint")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl LocalEndpoint {
    /// Binds 127.0.0.1 and starts serving on the current tokio runtime.
    pub async fn start(cfg: LocalConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", cfg.port)).await?;
        let addr = listener.local_addr()?;
        let mut registry = Registry::new(cfg.region.clone(), cfg.account.clone());
        let media = match &cfg.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                if let Ok(text) = std::fs::read_to_string(dir.join("streams.json")) {
                    let v: Value = serde_json::from_str(&text)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                    registry
                        .load_json(&v)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                }
                MediaStore::open(dir)?
            }
            None => MediaStore::default(),
        }
        .with_limits(cfg.memory_fragments, cfg.max_memory_bytes_per_stream);
        let shared = Arc::new(Shared {
            url: format!("http://{addr}"),
            registry: Mutex::new(registry),
            media: Arc::new(media),
            sessions: super::playback::Sessions::default(),
            cfg,
        });
        let (stop, mut stopped) = oneshot::channel();
        // Stopping also cuts the connections that are open.
        let (cut, _) = tokio::sync::watch::channel(false);
        let cut_all = cut.clone();
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => {
                        let _ = cut_all.send(true);
                        break;
                    }
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        // ACKs are small writes that must not wait for the peer's delayed ACK.
                        let _ = tcp.set_nodelay(true);
                        let s = s.clone();
                        let mut cut = cut.subscribe();
                        tokio::spawn(async move {
                            let svc = service_fn(move |req| handle(s.clone(), req));
                            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc);
                            tokio::select! {
                                r = conn => if let Err(e) = r {
                                    tracing::debug!(error = %e, "connection ended with an error");
                                },
                                _ = cut.changed() => {}
                            }
                        });
                    }
                }
            }
        });
        // Retention: fragments past their stream's retention expire, swept
        // every second (or each hundredth of a shortened retention hour).
        let sweep = Arc::downgrade(&shared);
        let every = (shared.cfg.retention_hour / 100).clamp(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_secs(1),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(s) = sweep.upgrade() else { break };
                let hour_ms = s.cfg.retention_hour.as_millis() as u64;
                let streams = s
                    .registry
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .streams();
                let now = super::media::now_ms();
                for (name, meta) in streams {
                    if meta.retention_hours > 0 {
                        let keep = u64::from(meta.retention_hours).saturating_mul(hour_ms);
                        s.media.expire(&name, now.saturating_sub(keep));
                    }
                }
            }
        });
        tracing::info!(%addr, "local KVS endpoint listening");
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The endpoint's URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry, for inspection in tests.
    pub fn streams(&self) -> std::collections::HashMap<String, super::store::StreamMeta> {
        self.shared
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .streams()
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for LocalEndpoint {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn request_id() -> String {
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

fn json_response(status: u16, body: &Value, rid: &str) -> Resp {
    let body = Full::new(Bytes::from(
        serde_json::to_vec(body).expect("JSON values serialise"),
    ));
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-RequestId", rid)
        .body(body.map_err(|never| match never {}).boxed())
        .expect("static response parts")
}

fn streaming_response(
    content_type: &str,
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> Resp {
    Response::builder()
        .status(200)
        .header("content-type", content_type)
        .header("x-amzn-RequestId", request_id())
        .body(ChannelBody(rx).boxed())
        .expect("static response parts")
}

/// The service's error shape: status, `x-amzn-ErrorType`, `x-amzn-RequestId`, `{"Message": …}`.
pub(crate) fn error_response(e: &ApiError) -> Resp {
    let rid = request_id();
    let mut r = json_response(e.status(), &json!({"Message": e.message}), &rid);
    let value = format!(
        "{}:https://kinesisvideo.amazonaws.com/doc/2017-09-30/",
        e.exception.name()
    );
    r.headers_mut().insert(
        "x-amzn-ErrorType",
        value.parse().expect("exception names are header-safe"),
    );
    r
}

async fn handle(s: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let op = req.uri().path().trim_start_matches('/').to_owned();
    if req.method() == hyper::Method::GET {
        return Ok(playback(&s, &req));
    }
    if req.method() == hyper::Method::HEAD && matches!(op.as_str(), "" | "console") {
        // The console page, asked about (link checkers, `curl -I`).
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "text/html; charset=utf-8")
            .header("content-length", super::console::PAGE.len())
            .body(Empty::new().map_err(|never| match never {}).boxed())
            .expect("static response parts"));
    }
    if req.method() != hyper::Method::POST {
        return Ok(error_response(&ApiError::new(
            ServiceException::Other("UnknownOperationException".into()),
            format!("{} {op} is not an API", req.method()),
        )));
    }
    let check =
        |headers: &http::HeaderMap, path: &str, body: Option<&[u8]>| -> Result<(), ApiError> {
            match &s.cfg.credentials {
                None => Ok(()),
                Some((k, sk)) => super::verify::verify(
                    "POST",
                    &format!("{}{path}", s.url),
                    headers,
                    body,
                    (k, sk),
                    &s.cfg.region,
                    std::time::SystemTime::now(),
                ),
            }
        };
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    if op == "putMedia" {
        if let Err(e) = check(req.headers(), &path, None) {
            return Ok(error_response(&e));
        }
        return Ok(put_media(&s, req).await);
    }
    let headers = req.headers().clone();
    let body = match Limited::new(req.into_body(), s.cfg.max_request_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::new(
                ServiceException::InvalidArgument,
                format!("request body: {e}"),
            )))
        }
    };
    if let Err(e) = check(&headers, &path, Some(&body)) {
        return Ok(error_response(&e));
    }
    if s.cfg.faults.throttle > 0.0 && fastrand::f64() < s.cfg.faults.throttle {
        return Ok(error_response(&ApiError::new(
            ServiceException::ClientLimitExceeded,
            "Rate exceeded (injected by the local endpoint).",
        )));
    }
    let json: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Ok(error_response(&ApiError::new(
                    ServiceException::Other("SerializationException".into()),
                    "request body is not a JSON object",
                )))
            }
        }
    };
    if op == "getMedia" {
        return Ok(get_media(&s, &json));
    }
    if matches!(
        op.as_str(),
        "listFragments"
            | "getMediaForFragmentList"
            | "getClip"
            | "getHLSStreamingSessionURL"
            | "getDASHStreamingSessionURL"
            | "getImages"
    ) {
        let meta = match s
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .find(&json)
        {
            Ok(m) => m.clone(),
            Err(e) => return Ok(error_response(&e)),
        };
        if op == "getImages" {
            let fragments = s
                .media
                .streams
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&meta.name)
                .map(|m| m.fragments.clone())
                .unwrap_or_default();
            // Decoding takes a while: off the lock and off the async workers.
            let images = tokio::task::spawn_blocking(move || {
                super::images::get_images(&meta, &fragments, &json)
            })
            .await;
            return Ok(match images {
                Ok(Ok(v)) => json_response(200, &v, &request_id()),
                Ok(Err(e)) => error_response(&e),
                Err(_) => error_response(&ApiError::new(
                    ServiceException::Other("InternalFailure".into()),
                    "image extraction failed",
                )),
            });
        }
        let streams = s
            .media
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let media = streams.get(&meta.name);
        use super::playback::Protocol;
        let session = |p: Protocol| match s.sessions.open(p, &meta, media, &json, &s.url) {
            Ok(v) => json_response(200, &v, &request_id()),
            Err(e) => error_response(&e),
        };
        match op.as_str() {
            "getHLSStreamingSessionURL" => return Ok(session(Protocol::Hls)),
            "getDASHStreamingSessionURL" => return Ok(session(Protocol::Dash)),
            "getClip" => {
                return Ok(match super::playback::get_clip(&meta, media, &json) {
                    Ok(parts) => chunks_response(200, "video/mp4", parts),
                    Err(e) => error_response(&e),
                })
            }
            _ => {}
        }
        if op == "listFragments" {
            return Ok(match super::media::list_fragments(media, &json) {
                Ok(v) => json_response(200, &v, &request_id()),
                Err(e) => error_response(&e),
            });
        }
        // Streamed a fragment at a time (read from disk when it is no
        // longer in memory), so a long list costs one fragment of memory.
        return Ok(match super::media::fragments_by_number(media, &json) {
            Ok(fragments) => {
                let (tx, rx) = tokio::sync::mpsc::channel(16);
                tokio::spawn(super::media::send_fragment_list(
                    fragments,
                    tx,
                    s.cfg.faults.drop_after_bytes,
                ));
                streaming_response("video/webm", rx)
            }
            Err(e) => error_response(&e),
        });
    }
    let result = s
        .registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .handle(&op, &json, s.cfg.data_endpoint.as_deref().unwrap_or(&s.url));
    if result.is_ok() {
        if let Some(dir) = &s.cfg.data_dir {
            if matches!(
                op.as_str(),
                "createStream"
                    | "deleteStream"
                    | "updateStream"
                    | "updateDataRetention"
                    | "tagStream"
                    | "untagStream"
            ) {
                let snapshot = s
                    .registry
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .to_json();
                let tmp = dir.join("streams.json.tmp");
                let saved = std::fs::write(&tmp, snapshot.to_string())
                    .and_then(|()| std::fs::rename(&tmp, dir.join("streams.json")));
                if let Err(e) = saved {
                    tracing::error!(error = %e, "cannot save the stream registry");
                    return Ok(error_response(&ApiError::new(
                        ServiceException::Other("InternalFailure".into()),
                        "cannot save the stream registry",
                    )));
                }
            }
        }
    }
    if op == "deleteStream" && result.is_ok() {
        // The registry no longer knows it; drop its media and wake readers.
        let known: std::collections::HashSet<String> = s
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .streams()
            .into_keys()
            .collect();
        let gone: Vec<String> = s
            .media
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .filter(|k| !known.contains(*k))
            .cloned()
            .collect();
        for g in gone {
            s.media.remove(&g);
        }
    }
    Ok(match result {
        Ok(v) => json_response(200, &v, &request_id()),
        Err(e) => error_response(&e),
    })
}

/// A response whose body is the given chunks, sent as they are.
fn chunks_response(status: u16, content_type: &str, parts: Vec<Bytes>) -> Resp {
    let len: usize = parts.iter().map(Bytes::len).sum();
    let (tx, rx) = tokio::sync::mpsc::channel(parts.len().max(1));
    for p in parts {
        // The channel holds every part: this never waits or fails.
        let _ = tx.try_send(Ok(p));
    }
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", len)
        .header("x-amzn-RequestId", request_id())
        .body(ChannelBody(rx).boxed())
        .expect("static response parts")
}

/// HLS and DASH playback requests: `GET /hls/v1/…` and `GET /dash/v1/…`
/// with a session token, no signature.
fn playback(s: &Arc<Shared>, req: &Request<Incoming>) -> Resp {
    let path = req.uri().path();
    let op = path.rsplit('/').next().unwrap_or_default();
    let query: std::collections::HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // The web console.
    if path == "/" || path == "/console" {
        return Response::builder()
            .status(200)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-cache")
            .body(
                Full::new(Bytes::from_static(super::console::PAGE.as_bytes()))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .expect("static response parts");
    }
    if path == "/console/acks" {
        let stream = query
            .get("stream")
            .map(|s| s.replace("%20", " "))
            .unwrap_or_default();
        return json_response(200, &super::console::acks(&s.media, &stream), &request_id());
    }
    if !(path.starts_with("/hls/v1/") || path.starts_with("/dash/v1/")) {
        return error_response(&ApiError::new(
            ServiceException::Other("UnknownOperationException".into()),
            format!("GET {path} is not an API"),
        ));
    }
    let token = query.get("SessionToken").map(String::as_str);
    let session = match s.sessions.find(token) {
        Ok(x) => x,
        Err(e) => return error_response(&e),
    };
    let streams = s
        .media
        .streams
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match super::playback::serve(
        &session,
        token.unwrap_or_default(),
        op,
        &query,
        streams.get(session.stream()),
    ) {
        Ok((ct, parts)) => chunks_response(200, ct, parts),
        Err(e) => error_response(&e),
    }
}

fn limit_error(api: &str, stream: &str, limit: usize) -> ApiError {
    ApiError::new(
        ServiceException::ConnectionLimitExceeded,
        format!("{stream} already has {limit} open {api} connections"),
    )
}

async fn put_media(s: &Arc<Shared>, req: Request<Incoming>) -> Resp {
    let (stream_sel, relative, start_ms) = match put_media_headers(req.headers()) {
        Ok(v) => v,
        Err(e) => return error_response(&e),
    };
    let meta = match s
        .registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .find(&stream_sel)
    {
        Ok(m) => m.clone(),
        Err(e) => return error_response(&e),
    };
    let Some(slot) = s
        .media
        .open_connection(&meta.name, true, s.cfg.max_put_media_connections)
    else {
        return error_response(&limit_error(
            "PutMedia",
            &meta.name,
            s.cfg.max_put_media_connections,
        ));
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let request = PutMediaRequest {
        live_buffer: s.cfg.live_buffer_fragments,
        idle_ack: s.cfg.idle_ack_interval,
        idle_close: s.cfg.idle_timeout,
        max_age: s.cfg.max_connection_duration,
        stream: meta.name,
        retention_hours: meta.retention_hours,
        relative,
        start_ms,
        max_producer_ahead: s.cfg.max_producer_time_ahead,
    };
    let body = primed_body(req.into_body()).await;
    let run = run_put_media(s.media.clone(), request, body, tx, s.cfg.faults.clone());
    tokio::spawn(async move {
        let _slot = slot;
        run.await;
    });
    streaming_response("application/json", rx)
}

/// Polls a request body once before the response goes out, so that a
/// client waiting on `Expect: 100-continue` (libcurl, thus the AWS C and
/// C++ producers) gets `100 Continue` at once instead of sending its body
/// after its own timeout (1 s in libcurl).
///
/// hyper's HTTP/1 server writes `100 Continue` when the body is first
/// polled, but only while no response head has been written. PutMedia
/// answers 200 before reading the body (ACKs stream back while it is
/// read), so the body is polled here and the connection is given one turn
/// (`yield_now`): its dispatcher reads the body (writing the interim
/// response) before it takes the 200 from this handler. Whatever that
/// first poll returned is handed on in front of the rest of the body.
async fn primed_body(mut body: Incoming) -> PrimedBody {
    use hyper::body::Body;
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut body).poll_frame(cx) {
            std::task::Poll::Ready(f) => Some(f),
            std::task::Poll::Pending => None,
        })
    })
    .await;
    tokio::task::yield_now().await;
    PrimedBody { first, body }
}

/// A request body with the result of its first poll kept in front.
pub(crate) struct PrimedBody {
    first: Option<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>>,
    body: Incoming,
}

impl hyper::body::Body for PrimedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(first);
        }
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }
}

fn get_media(s: &Arc<Shared>, json: &Value) -> Resp {
    let meta = match s
        .registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .find(json)
    {
        Ok(m) => m.clone(),
        Err(e) => return error_response(&e),
    };
    let selector = json.get("StartSelector").cloned().unwrap_or(Value::Null);
    let index = {
        let mut streams = s
            .media
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let media = streams.entry(meta.name.clone()).or_default();
        match start_index(media, &selector) {
            Ok(i) => i,
            Err(e) => return error_response(&e),
        }
    };
    let Some(slot) = s
        .media
        .open_connection(&meta.name, false, s.cfg.max_get_media_connections)
    else {
        return error_response(&limit_error(
            "GetMedia",
            &meta.name,
            s.cfg.max_get_media_connections,
        ));
    };
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let run = run_get_media(s.media.clone(), meta.name, index, tx, s.cfg.faults.clone());
    tokio::spawn(async move {
        let _slot = slot;
        run.await;
    });
    streaming_response("video/webm", rx)
}
