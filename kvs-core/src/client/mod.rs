//! Clients for the KVS HTTP APIs (feature `client`): hyper 1 over rustls,
//! SigV4 on every call, region → endpoint resolution, a per-stream
//! GetDataEndpoint cache, retries with exponential backoff and jitter, and
//! errors typed by the service's exception names; PutMedia and GetMedia
//! sessions ([`media`]).

pub mod archived;
pub mod control;
pub mod endpoint;
pub mod error;
mod http;
pub mod media;
pub mod retry;

pub use archived::{
    Clip, DiscontinuityMode, FragmentInfo, FragmentSelector, GetImagesRequest, Image, ImageFormat,
    ImageSelectorType, PlaybackMode, StreamingSessionOptions, MAX_CLIP_BYTES,
};
pub use control::{
    ApiName, ClientConfig, CreateStream, KvsClient, RetentionChange, StreamId, StreamInfo,
};
pub use error::{ClientError, ServiceException};
pub use media::{
    GetMediaSession, PutMediaOptions, PutMediaSender, PutMediaSession, StartSelector, TimecodeType,
};
pub use retry::{Backoff, RetryPolicy};
