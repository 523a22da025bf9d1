//! GetMedia: one document per fragment, live follow.

use std::sync::Arc;

use bytes::Bytes;

use super::storage::{tags_element, MediaStore};
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
