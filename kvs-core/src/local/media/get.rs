//! GetMedia: one document per fragment, live follow.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::storage::{tags_element, Live, LiveEnd, MediaStore, Stored};
use super::{cut, now_ms, Faults, Out};

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
///
/// A fragment still being ingested when the reader reaches it is sent as it
/// arrives, as the service does: its head and the service's leading Tags,
/// then each block as it is ingested, then the trailing Tags once it is
/// stored. A fragment the producer abandons inside its Cluster (the
/// connection broke, or the fragment was refused) is ended with a
/// `MILLIS_BEHIND_NOW` Tags element and no `CONTINUATION_TOKEN`: it was
/// not stored, so there is nothing to resume after [I].
pub(crate) async fn run_get_media(
    store: Arc<MediaStore>,
    stream: String,
    mut index: usize,
    out: Out,
    faults: Faults,
) {
    let mut w = Writer {
        out,
        limit: faults.drop_after_bytes,
        sent: 0,
    };
    let Some(notify) = store
        .streams
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&stream)
        .map(|m| m.notify.clone())
    else {
        return;
    };
    // Fragments sent live (skipped when they show up stored), and the one
    // being sent with how many of its parts went.
    let mut sent_live: VecDeque<String> = VecDeque::new();
    let mut following: Option<(Arc<Live>, usize)> = None;
    let mut fragments_sent = 0usize;
    loop {
        if let Some((n, id)) = faults.get_media_error.filter(|(n, _)| fragments_sent >= *n) {
            let next = store
                .streams
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&stream)
                .and_then(|m| m.fragments.get(index).map(|f| f.number.clone()));
            tracing::debug!(after = n, id, "GetMedia ends with an error chunk (fault)");
            let _ = w.send(error_chunk(id, next.as_deref())).await;
            return;
        }
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let step = {
            let streams = store
                .streams
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(m) = streams.get(&stream) else {
                return;
            };
            if let Some((live, from)) = &following {
                let (parts, end) = live.since(*from);
                Step::Live(parts, end)
            } else if let Some(f) = m.fragments.get(index) {
                Step::Stored(f.clone())
            } else if let Some(l) = m.live.iter().find(|l| !sent_live.contains(&l.number)) {
                following = Some((l.clone(), 0));
                continue;
            } else {
                Step::Wait
            }
        };
        match step {
            Step::Stored(f) => {
                index += 1;
                if sent_live.contains(&f.number) {
                    continue;
                }
                let doc = match f.doc() {
                    Ok(d) => d,
                    Err(e) => {
                        // Expired while it was being read: the stream goes on.
                        tracing::warn!(fragment = %f.number, error = %e, "GetMedia: fragment gone");
                        continue;
                    }
                };
                for part in doc {
                    if !w.send(part).await {
                        return;
                    }
                }
                if !w.send(trailer(f.server_ms, Some(&f.number))).await {
                    return;
                }
                fragments_sent += 1;
            }
            Step::Live(parts, end) => {
                let idle = parts.is_empty() && end.is_none();
                if let Some((_, from)) = &mut following {
                    *from += parts.len();
                }
                for part in parts {
                    if !w.send(part).await {
                        return;
                    }
                }
                // With its end, every part of it has been sent: `sent` of
                // them, the first `sent` of the stored document.
                let ended = match end {
                    Some(end) => following.take().map(|(live, sent)| (end, live, sent)),
                    None => None,
                };
                if let Some((end, live, sent)) = ended {
                    // The rest of a stored fragment's document (the
                    // producer's Tags after its Cluster) and its token.
                    let (tail, token) = match &end {
                        LiveEnd::Stored(f) => (
                            f.doc()
                                .ok()
                                .and_then(|d| d.get(sent..).map(<[Bytes]>::to_vec))
                                .unwrap_or_default(),
                            Some(f.number.as_str()),
                        ),
                        LiveEnd::Abandoned => (Vec::new(), None),
                    };
                    for part in tail.into_iter().chain([trailer(live.server_ms, token)]) {
                        if !w.send(part).await {
                            return;
                        }
                    }
                    fragments_sent += 1;
                    if sent_live.len() == 64 {
                        sent_live.pop_front();
                    }
                    sent_live.push_back(live.number.clone());
                } else if idle {
                    tokio::select! {
                        _ = notified => {}
                        _ = w.out.closed() => return,
                    }
                }
            }
            Step::Wait => tokio::select! {
                _ = notified => {}
                _ = w.out.closed() => return,
            },
        }
    }
}

/// What a GetMedia reader does next.
enum Step {
    /// Send a stored fragment whole.
    Stored(Arc<Stored>),
    /// Send these parts of the fragment being followed (and end it).
    Live(Vec<Bytes>, Option<LiveEnd>),
    /// Wait for more.
    Wait,
}

/// The service's Tags after a fragment's Cluster: how far behind it is
/// sent (see the docs of [`run_get_media`]) and, for a stored fragment,
/// where to resume.
fn trailer(server_ms: u64, token: Option<&str>) -> Bytes {
    let behind = now_ms().saturating_sub(server_ms);
    let mut tags = vec![("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", behind.to_string())];
    if let Some(t) = token {
        tags.push(("AWS_KINESISVIDEO_CONTINUATION_TOKEN", t.to_owned()));
    }
    let mut out = Vec::new();
    tags_element(&mut out, &tags);
    Bytes::from(out)
}

/// The service's error chunk that ends a GetMedia response: an EBML
/// document whose Tags carry the fragment number, `AWS_KINESISVIDEO_ERROR_ID`
/// and `AWS_KINESISVIDEO_ERROR_CODE` (GetMedia API reference, whose
/// descriptions of the ids are the codes' text).
fn error_chunk(id: u64, fragment: Option<&str>) -> Bytes {
    let code = match id {
        3002 => "Error writing to the stream",
        4000 => "Requested fragment is not found",
        4500 => "Access denied for the stream's KMS key",
        4501 => "Stream's KMS key is disabled",
        4502 => "Validation error on the stream's KMS key",
        4503 => "KMS key specified in the stream is unavailable",
        4504 => "Invalid usage of the KMS key specified in the stream",
        4505 => "Invalid state of the KMS key specified in the stream",
        4506 => "Unable to find the KMS key specified in the stream",
        _ => "Internal error",
    };
    let mut out = Vec::new();
    crate::ebml::writer::ebml_header(&mut out, "matroska", 2);
    crate::ebml::writer::master_unknown(&mut out, crate::mkv::ids::SEGMENT);
    let mut tags = vec![
        (crate::mkv::fragment::TAG_GETMEDIA_ERROR_ID, id.to_string()),
        (
            crate::mkv::fragment::TAG_GETMEDIA_ERROR_CODE,
            code.to_owned(),
        ),
    ];
    if let Some(n) = fragment {
        tags.insert(0, (crate::mkv::fragment::TAG_FRAGMENT_NUMBER, n.to_owned()));
    }
    tags_element(&mut out, &tags);
    Bytes::from(out)
}

/// The response body, with the `drop-after-bytes` fault applied.
/// Sends `parts` as a response body, cut after `limit` bytes when a
/// fault asks for it (GetMediaForFragmentList under `drop-after-bytes`).
pub(crate) async fn send_fragment_list(fragments: Vec<Arc<Stored>>, out: Out, limit: Option<u64>) {
    let mut w = Writer {
        out,
        limit,
        sent: 0,
    };
    for f in fragments {
        let parts = match super::queries::fragment_list_doc(&f) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(fragment = %f.number, error = %e, "GetMediaForFragmentList: fragment gone");
                let _ = w.out.send(Err(e)).await;
                return;
            }
        };
        for p in parts {
            if !w.send(p).await {
                return;
            }
        }
    }
}

struct Writer {
    out: Out,
    limit: Option<u64>,
    sent: u64,
}

impl Writer {
    /// Sends a part; false when the reader is gone or the fault cut the
    /// connection.
    async fn send(&mut self, part: Bytes) -> bool {
        let (part, cut_now) = match self.limit {
            Some(limit) if self.sent + part.len() as u64 > limit => {
                (part.slice(..limit.saturating_sub(self.sent) as usize), true)
            }
            _ => (part, false),
        };
        self.sent += part.len() as u64;
        if !part.is_empty() && self.out.send(Ok(part)).await.is_err() {
            return false;
        }
        if cut_now {
            // Let the bytes before the cut reach the socket (the server
            // drops what it still holds when a body fails).
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let _ = self.out.send(Err(cut())).await;
            return false;
        }
        true
    }
}
