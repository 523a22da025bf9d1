//! PutMedia and GetMedia on the local endpoint, by concern: the injected
//! faults (`faults`), the fragment store (`storage`), PutMedia (`put`),
//! GetMedia (`get`) and the fragment queries (time ranges, start
//! selectors, ListFragments, GetMediaForFragmentList: `queries`).

mod faults;
mod get;
mod put;
mod queries;
mod storage;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

pub use faults::Faults;
pub(crate) use get::{run_get_media, send_fragment_list};
pub(crate) use put::{put_media_headers, run_put_media, PutMediaRequest};
pub(crate) use queries::{
    epoch_ms, fragments_by_number, in_range, list_fragments, start_index, time_range,
};
pub(crate) use storage::{Media, MediaStore, Stored};

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

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn epoch_secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}
