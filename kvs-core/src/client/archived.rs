//! Archived media: ListFragments (every page, time-range selectors),
//! GetMediaForFragmentList (parsed through the fragment assembler), GetClip
//! (an MP4 file, read up to a limit), the HLS/DASH streaming-session URLs and
//! GetImages (every page, images decoded from base64).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::control::{ApiName, KvsClient, StreamId};
use super::error::ClientError;
use super::media::GetMediaSession;
use crate::mkv::fragment::Fragment;

/// One entry of ListFragments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct FragmentInfo {
    /// Fragment number.
    pub fragment_number: String,
    /// Size of the fragment, bytes.
    pub fragment_size_in_bytes: u64,
    /// Producer timestamp, epoch seconds.
    pub producer_timestamp: f64,
    /// Server timestamp, epoch seconds.
    pub server_timestamp: f64,
    /// Duration, ms.
    pub fragment_length_in_milliseconds: u64,
}

impl FragmentInfo {
    /// The producer timestamp as UTC.
    pub fn producer_time(&self) -> SystemTime {
        from_epoch_secs(self.producer_timestamp)
    }

    /// The server timestamp as UTC.
    pub fn server_time(&self) -> SystemTime {
        from_epoch_secs(self.server_timestamp)
    }

    /// The duration.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.fragment_length_in_milliseconds)
    }
}

/// Epoch seconds (the JSON timestamps of the archived-media APIs) of a UTC
/// instant; instants before the epoch are 0.
pub(crate) fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
}

/// The UTC instant of epoch seconds, to the millisecond (negative and
/// non-finite values are the epoch).
pub(crate) fn from_epoch_secs(s: f64) -> SystemTime {
    let ms = if s.is_finite() && s > 0.0 {
        (s * 1000.0).round() as u64
    } else {
        0
    };
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Which timestamps a time range applies to (ListFragments, GetClip, HLS
/// and DASH sessions), and the range `[start, end]`, UTC, to the
/// millisecond (the APIs' `TimestampRange` in epoch seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentSelector {
    /// Producer timestamps in `[start, end]`.
    Producer {
        /// Range start (UTC).
        start: SystemTime,
        /// Range end (UTC).
        end: SystemTime,
    },
    /// Server timestamps in `[start, end]`.
    Server {
        /// Range start (UTC).
        start: SystemTime,
        /// Range end (UTC).
        end: SystemTime,
    },
}

impl FragmentSelector {
    fn to_json(self) -> Value {
        let (kind, a, b) = match self {
            FragmentSelector::Producer { start, end } => ("PRODUCER_TIMESTAMP", start, end),
            FragmentSelector::Server { start, end } => ("SERVER_TIMESTAMP", start, end),
        };
        json!({"FragmentSelectorType": kind, "TimestampRange": {"StartTimestamp": epoch_secs(a), "EndTimestamp": epoch_secs(b)}})
    }
}

/// Largest GetClip body read: the service's 100 MB of fragments plus the
/// MP4 tables.
pub const MAX_CLIP_BYTES: usize = 128 * 1024 * 1024;

/// A GetClip answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Clip {
    /// `Content-Type` (`video/mp4`).
    pub content_type: String,
    /// The MP4 file.
    pub data: bytes::Bytes,
}

/// What a streaming session plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlaybackMode {
    /// The newest fragments, as they arrive.
    #[default]
    Live,
    /// From the selector's start on, as they arrive.
    LiveReplay,
    /// The selector's range, finished.
    OnDemand,
}

/// Settings of an HLS or DASH streaming session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamingSessionOptions {
    /// What it plays.
    pub playback_mode: PlaybackMode,
    /// The range (required for LIVE_REPLAY and ON_DEMAND).
    pub selector: Option<FragmentSelector>,
    /// Session lifetime in seconds (300–43200; the service's default is 300).
    pub expires_secs: Option<u32>,
    /// Fragments per playlist/manifest (1–5000).
    pub max_fragment_results: Option<u32>,
    /// HLS only: ask for MPEG-TS segments rather than fragmented MP4.
    pub mpeg_ts: bool,
    /// HLS only: where the media playlist marks `EXT-X-DISCONTINUITY`
    /// (`DiscontinuityMode`; the service's default is `Always` for server
    /// timestamps, `Never` for producer timestamps).
    pub discontinuity_mode: Option<DiscontinuityMode>,
    /// `DisplayFragmentTimestamp=ALWAYS`: each fragment's start time in the
    /// HLS playlist (`EXT-X-PROGRAM-DATE-TIME`) or on each DASH `S` element
    /// (`kvs:ts`) — producer or server time, as the selector says.
    pub display_fragment_timestamp: bool,
    /// DASH only, `DisplayFragmentNumber=ALWAYS`: each fragment's number on
    /// its `S` element (`kvs:fn`).
    pub display_fragment_number: bool,
}

/// Where an HLS media playlist marks discontinuities
/// (GetHLSStreamingSessionURL `DiscontinuityMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscontinuityMode {
    /// Between every two fragments (`ALWAYS`).
    Always,
    /// Nowhere (`NEVER`).
    Never,
    /// Where fragments have a gap or an overlap of more than 50 ms
    /// (`ON_DISCONTINUITY`).
    OnDiscontinuity,
}

impl StreamingSessionOptions {
    fn to_json(&self, hls: bool) -> Value {
        let mode = match self.playback_mode {
            PlaybackMode::Live => "LIVE",
            PlaybackMode::LiveReplay => "LIVE_REPLAY",
            PlaybackMode::OnDemand => "ON_DEMAND",
        };
        let (sel, max) = if hls {
            ("HLSFragmentSelector", "MaxMediaPlaylistFragmentResults")
        } else {
            ("DASHFragmentSelector", "MaxManifestFragmentResults")
        };
        let mut body = json!({"PlaybackMode": mode});
        if let Some(s) = self.selector {
            body[sel] = s.to_json();
        }
        if let Some(e) = self.expires_secs {
            body["Expires"] = e.into();
        }
        if let Some(m) = self.max_fragment_results {
            body[max] = m.into();
        }
        if hls {
            body["ContainerFormat"] = if self.mpeg_ts {
                "MPEG_TS"
            } else {
                "FRAGMENTED_MP4"
            }
            .into();
            if let Some(d) = self.discontinuity_mode {
                body["DiscontinuityMode"] = match d {
                    DiscontinuityMode::Always => "ALWAYS",
                    DiscontinuityMode::Never => "NEVER",
                    DiscontinuityMode::OnDiscontinuity => "ON_DISCONTINUITY",
                }
                .into();
            }
        } else if self.display_fragment_number {
            body["DisplayFragmentNumber"] = "ALWAYS".into();
        }
        if self.display_fragment_timestamp {
            body["DisplayFragmentTimestamp"] = "ALWAYS".into();
        }
        body
    }
}

/// Which timestamps GetImages samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageSelectorType {
    /// Producer timestamps.
    #[default]
    Producer,
    /// Server timestamps.
    Server,
}

/// The image encoding GetImages returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// JPEG with a quality of 1–100 (the service's default when `None`).
    Jpeg(Option<u8>),
    /// PNG.
    Png,
}

/// A GetImages request.
#[derive(Debug, Clone, PartialEq)]
pub struct GetImagesRequest {
    /// Which clock the range is on.
    pub selector_type: ImageSelectorType,
    /// First instant (UTC).
    pub start: SystemTime,
    /// Last instant (UTC; at most 300 s after the first).
    pub end: SystemTime,
    /// Time between images, ms (at least 200).
    pub sampling_interval_ms: Option<u32>,
    /// Encoding.
    pub format: ImageFormat,
    /// Output size in pixels (width, height); the picture's own when `None`.
    pub size: Option<(u32, u32)>,
    /// Images in all, at most (1–100).
    pub max_results: Option<u32>,
}

/// One image of GetImages.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Image {
    /// The instant (UTC).
    pub timestamp: SystemTime,
    /// `NO_MEDIA` or `MEDIA_ERROR` when there is no image.
    pub error: Option<String>,
    /// The encoded image.
    pub content: Option<bytes::Bytes>,
}

impl KvsClient {
    /// GetImages, every page.
    pub async fn get_images(
        &self,
        stream: impl Into<StreamId>,
        req: &GetImagesRequest,
    ) -> Result<Vec<Image>, ClientError> {
        use base64::Engine as _;
        let stream = stream.into();
        let base = self
            .get_data_endpoint(stream.clone(), ApiName::GetImages)
            .await?;
        let mut body = json!({
            "ImageSelectorType": match req.selector_type {
                ImageSelectorType::Producer => "PRODUCER_TIMESTAMP",
                ImageSelectorType::Server => "SERVER_TIMESTAMP",
            },
            "StartTimestamp": epoch_secs(req.start),
            "EndTimestamp": epoch_secs(req.end),
            "Format": match req.format { ImageFormat::Png => "PNG", ImageFormat::Jpeg(_) => "JPEG" },
        });
        stream.add_to(&mut body);
        if let ImageFormat::Jpeg(Some(q)) = req.format {
            body["FormatConfig"] = json!({"JPEGQuality": q.to_string()});
        }
        if let Some(i) = req.sampling_interval_ms {
            body["SamplingInterval"] = i.into();
        }
        if let Some((w, h)) = req.size {
            body["WidthPixels"] = w.into();
            body["HeightPixels"] = h.into();
        }
        if let Some(m) = req.max_results {
            body["MaxResults"] = m.into();
        }
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "TimeStamp")]
            ts: f64,
            #[serde(rename = "Error", default)]
            error: Option<String>,
            #[serde(rename = "ImageContent", default)]
            content: Option<String>,
        }
        #[derive(Deserialize)]
        struct Out {
            #[serde(rename = "Images", default)]
            images: Vec<Raw>,
            #[serde(rename = "NextToken", default)]
            next: Option<String>,
        }
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut page = body.clone();
            if let Some(t) = &token {
                page["NextToken"] = Value::from(t.as_str());
            }
            let out: Out = self
                .call("GetImages", base.trim_end_matches('/'), "/getImages", page)
                .await?;
            for r in out.images {
                let content = match r.content {
                    None => None,
                    Some(b64) => Some(
                        base64::engine::general_purpose::STANDARD
                            .decode(b64.as_bytes())
                            .map_err(|e| ClientError::Decode {
                                operation: "GetImages",
                                reason: format!("ImageContent is not base64: {e}"),
                            })?
                            .into(),
                    ),
                };
                all.push(Image {
                    timestamp: from_epoch_secs(r.ts),
                    error: r.error,
                    content,
                });
            }
            match out.next.filter(|t| !t.is_empty()) {
                Some(t) if token.as_deref() != Some(&t) => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// GetClip: the fragments in the range as one MP4 file (at most
    /// [`MAX_CLIP_BYTES`] are read).
    pub async fn get_clip(
        &self,
        stream: impl Into<StreamId>,
        selector: FragmentSelector,
    ) -> Result<Clip, ClientError> {
        let body = self
            .open_json(
                &stream.into(),
                ApiName::GetClip,
                "/getClip",
                json!({"ClipFragmentSelector": selector.to_json()}),
            )
            .await?;
        let data = http_body_util::Limited::new(body, MAX_CLIP_BYTES)
            .collect()
            .await
            .map_err(|e| ClientError::Transport(format!("reading the clip: {e}")))?
            .to_bytes();
        Ok(Clip {
            content_type: "video/mp4".into(),
            data,
        })
    }

    /// GetHLSStreamingSessionURL: a URL any HLS player can open.
    pub async fn get_hls_streaming_session_url(
        &self,
        stream: impl Into<StreamId>,
        options: &StreamingSessionOptions,
    ) -> Result<String, ClientError> {
        self.session_url(stream.into(), options, true).await
    }

    /// GetDASHStreamingSessionURL: a URL any DASH player can open.
    pub async fn get_dash_streaming_session_url(
        &self,
        stream: impl Into<StreamId>,
        options: &StreamingSessionOptions,
    ) -> Result<String, ClientError> {
        self.session_url(stream.into(), options, false).await
    }

    async fn session_url(
        &self,
        stream: StreamId,
        options: &StreamingSessionOptions,
        hls: bool,
    ) -> Result<String, ClientError> {
        let (api, op, path, field) = if hls {
            (
                ApiName::GetHlsStreamingSessionUrl,
                "GetHLSStreamingSessionURL",
                "/getHLSStreamingSessionURL",
                "HLSStreamingSessionURL",
            )
        } else {
            (
                ApiName::GetDashStreamingSessionUrl,
                "GetDASHStreamingSessionURL",
                "/getDASHStreamingSessionURL",
                "DASHStreamingSessionURL",
            )
        };
        let base = self.get_data_endpoint(stream.clone(), api).await?;
        let mut body = options.to_json(hls);
        stream.add_to(&mut body);
        let out: Value = self
            .call(op, base.trim_end_matches('/'), path, body)
            .await?;
        out.get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Decode {
                operation: op,
                reason: format!("no {field} in the answer"),
            })
    }

    /// ListFragments, every page, optionally in a time range.
    pub async fn list_fragments(
        &self,
        stream: impl Into<StreamId>,
        selector: Option<FragmentSelector>,
    ) -> Result<Vec<FragmentInfo>, ClientError> {
        let stream = stream.into();
        let base = self
            .get_data_endpoint(stream.clone(), ApiName::ListFragments)
            .await?;
        #[derive(Deserialize)]
        struct Out {
            #[serde(rename = "Fragments", default)]
            fragments: Vec<FragmentInfo>,
            #[serde(rename = "NextToken", default)]
            next: Option<String>,
        }
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"MaxResults": 1000});
            stream.add_to(&mut body);
            if let Some(sel) = selector {
                body["FragmentSelector"] = sel.to_json();
            }
            if let Some(t) = &token {
                body["NextToken"] = Value::from(t.as_str());
            }
            let out: Out = self
                .call(
                    "ListFragments",
                    base.trim_end_matches('/'),
                    "/listFragments",
                    body,
                )
                .await?;
            all.extend(out.fragments);
            match out.next.filter(|t| !t.is_empty()) {
                Some(t) if token.as_deref() != Some(&t) => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// GetMediaForFragmentList: the named fragments, in the order asked,
    /// read whole into memory. [`Self::get_media_for_fragment_list_session`]
    /// hands them out one at a time (or frame by frame) as they arrive.
    ///
    /// Errors: [`ClientError::Transport`] when the connection breaks
    /// before the response ends; [`ClientError::Media`] for bytes that are
    /// not Matroska; the service's errors.
    pub async fn get_media_for_fragment_list(
        &self,
        stream: impl Into<StreamId>,
        numbers: &[String],
    ) -> Result<Vec<Fragment>, ClientError> {
        let mut session = self
            .get_media_for_fragment_list_session(stream, numbers)
            .await?;
        let mut out = Vec::new();
        while let Some(f) = session.next_fragment().await {
            out.push(f?);
        }
        match session.broken() {
            Some(e) => Err(ClientError::Transport(e.to_owned())),
            None => Ok(out),
        }
    }

    /// GetMediaForFragmentList as a [`GetMediaSession`]: the named
    /// fragments in the order asked, each handed out as soon as the next
    /// one starts (or its frames as they arrive, with
    /// [`GetMediaSession::yield_frames`]), so memory holds one fragment at
    /// most. A fragment the connection broke inside comes out with
    /// `complete == false`; [`GetMediaSession::broken`] then says why.
    pub async fn get_media_for_fragment_list_session(
        &self,
        stream: impl Into<StreamId>,
        numbers: &[String],
    ) -> Result<GetMediaSession, ClientError> {
        let body = self
            .open_json(
                &stream.into(),
                ApiName::GetMediaForFragmentList,
                "/getMediaForFragmentList",
                json!({"Fragments": numbers}),
            )
            .await?;
        Ok(GetMediaSession::new(body, "GetMediaForFragmentList"))
    }
}
