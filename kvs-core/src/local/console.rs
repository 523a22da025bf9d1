//! The web console of the local endpoint: `GET /` serves one page (HTML,
//! CSS and JavaScript in this crate, nothing fetched from elsewhere) that
//! shows what the endpoint holds, as the AWS console's media viewer does:
//! the streams (status, media type, retention, data rate over the last
//! 10 s), and for the one picked a live player (the endpoint's own HLS,
//! natively where the browser plays it, else Media Source Extensions fed
//! the fragmented-MP4 segments), a fragment timeline (ListFragments:
//! durations, sizes, gaps), the latest PERSISTED ACKs with their latency
//! and a thumbnail strip (GetImages).
//!
//! The page calls the endpoint's KVS APIs like any client, unsigned — it
//! works on an endpoint started without keys — plus one console-only read,
//! `GET /console/acks?stream=NAME`: the newest PERSISTED ACKs of a stream
//! (`[{"fragment", "at" (epoch ms), "latency_ms" (from the fragment's last
//! byte)}]`). Hand-written rather than a front-end framework: one page, no
//! build step, nothing to install.

use serde_json::{json, Value};

use super::media::MediaStore;

/// The page.
pub(crate) const PAGE: &str = include_str!("console.html");

/// `GET /console/acks?stream=NAME`: the stream's newest PERSISTED ACKs,
/// oldest first.
pub(crate) fn acks(media: &MediaStore, stream: &str) -> Value {
    let streams = media
        .streams
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let list: Vec<Value> = streams
        .get(stream)
        .map(|m| {
            m.acks
                .iter()
                .map(|(number, at, latency)| {
                    json!({"fragment": number, "at": at,
                        "latency_ms": latency.as_secs_f64() * 1000.0})
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Array(list)
}
