//! Helpers for the binding tests (feature `testing`, never in an app's
//! build): kvs-core's local endpoint in-process, a reader of what was
//! stored, and the bundled clip cut as a phone encoder gives it. They
//! convert only; the endpoint, the reader and the codec code are kvs-core's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kvs_core::client::{ClientConfig, KvsClient, StartSelector};
use kvs_core::codec::annexb::{access_units, nal_units, to_avcc, VideoCodec};
use kvs_core::consumer::Consumer;
use kvs_core::local::{Faults, LocalConfig, LocalEndpoint};

use crate::errors::KvsError;

/// kvs-core's local endpoint on 127.0.0.1, in this process.
#[derive(uniffi::Object)]
pub struct TestEndpoint {
    url: String,
    endpoint: Mutex<Option<LocalEndpoint>>,
}

impl std::fmt::Debug for TestEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEndpoint")
            .field("url", &self.url)
            .finish()
    }
}

#[uniffi::export]
impl TestEndpoint {
    /// Starts an endpoint on a free port: `faults` in `kvs local
    /// --fault` spelling (`drop-after-bytes=N`, …); with `access_key_id`
    /// and `secret_access_key` every request must be signed by them.
    #[uniffi::constructor]
    pub fn new(
        faults: Vec<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
    ) -> Result<Arc<Self>, KvsError> {
        let mut f = Faults::default();
        for spec in &faults {
            f.apply(spec).map_err(KvsError::config)?;
        }
        let cfg = LocalConfig {
            faults: f,
            credentials: access_key_id.zip(secret_access_key),
            ..LocalConfig::default()
        };
        let ep = crate::runtime()
            .block_on(LocalEndpoint::start(cfg))
            .map_err(|e| KvsError::config(format!("local endpoint: {e}")))?;
        Ok(Arc::new(Self {
            url: ep.url().to_owned(),
            endpoint: Mutex::new(Some(ep)),
        }))
    }

    /// Its URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Stops it.
    pub fn shutdown(&self) {
        let ep = self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(ep) = ep {
            crate::runtime().block_on(ep.shutdown());
        }
    }
}

/// A frame read back.
#[derive(Debug, Clone, uniffi::Record)]
pub struct StoredFrame {
    /// Track number (1 video, 2 audio).
    pub track: u64,
    /// Presentation time, ms since the epoch (UTC).
    pub pts_ms: i64,
    /// The frame as stored (AVCC for video).
    pub data: Vec<u8>,
}

/// The frames of `stream` from its start, as kvs-core's consumer reads
/// them (signed with these keys), until `count` came or `timeout_ms`
/// passed (then, those that came).
#[uniffi::export]
pub fn read_stream(
    endpoint_url: String,
    stream: String,
    count: u64,
    timeout_ms: u64,
    access_key_id: String,
    secret_access_key: String,
) -> Result<Vec<StoredFrame>, KvsError> {
    let rt = crate::runtime();
    let client = Arc::new(KvsClient::new(
        ClientConfig::new(
            "us-east-1",
            kvs_core::auth::Credentials::new(access_key_id, secret_access_key, None, None, "test"),
        )
        .endpoint(endpoint_url)
        .runtime(rt.handle().clone()),
    )?);
    rt.block_on(async move {
        let mut frames = Consumer::builder(client, stream.as_str())
            .start(StartSelector::Earliest)
            .frames();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        while (out.len() as u64) < count {
            match tokio::time::timeout_at(deadline, frames.next()).await {
                Ok(Some(Ok((_, f)))) => out.push(StoredFrame {
                    track: f.track,
                    pts_ms: f.timestamp_ns.div_euclid(1_000_000),
                    data: f.payload.to_vec(),
                }),
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(out)
    })
}

/// How a phone's encoder hands out H.264.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum EncoderStyle {
    /// Android MediaCodec: Annex-B access units; the SPS and PPS come once,
    /// in the codec-config buffer, not in the key frames.
    MediaCodec,
    /// iOS VideoToolbox: AVCC with 4-byte lengths; the parameter sets in
    /// the format description.
    VideoToolbox,
}

/// An encoded frame of the test clip.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ClipFrame {
    /// As the encoder gives it.
    pub data: Vec<u8>,
    /// Presentation time, µs from the clip's start.
    pub pts_us: i64,
    /// A key frame.
    pub key: bool,
    /// As it must read back (AVCC for video, the raw frame for audio).
    pub stored: Vec<u8>,
}

/// The bundled clip (`examples/media/clip.h264`, 25 fps, and
/// `clip.aac`, ADTS) as an encoder of `style` gives it.
#[derive(Debug, Clone, uniffi::Record)]
pub struct TestClip {
    /// The SPS and PPS (bare NAL units for VideoToolbox, Annex-B for
    /// MediaCodec's codec-config buffer).
    pub parameter_sets: Vec<Vec<u8>>,
    /// Video frames without parameter sets.
    pub video: Vec<ClipFrame>,
    /// Raw AAC frames.
    pub audio: Vec<ClipFrame>,
    /// AAC sample rate, Hz.
    pub sample_rate: u32,
    /// AAC channels.
    pub channels: u8,
}

/// The clip in `media_dir` (`clip.h264`, `clip.aac`) as `style` gives it.
#[uniffi::export]
pub fn test_clip(media_dir: String, style: EncoderStyle) -> Result<TestClip, KvsError> {
    let read = |name: &str| {
        std::fs::read(std::path::Path::new(&media_dir).join(name))
            .map(Bytes::from)
            .map_err(|e| KvsError::config(format!("{media_dir}/{name}: {e}")))
    };
    let bad = |e: kvs_core::codec::CodecError| KvsError::InvalidFrame {
        detail: e.to_string(),
    };
    let mut sets: Vec<Bytes> = Vec::new();
    let mut video = Vec::new();
    for (i, au) in access_units(VideoCodec::H264, &read("clip.h264")?)
        .into_iter()
        .enumerate()
    {
        let key = VideoCodec::H264.is_key_unit(&au);
        let mut annexb = Vec::new();
        for nal in nal_units(&au) {
            match VideoCodec::H264.nal_type(&nal) {
                7 | 8 => {
                    if !sets.contains(&nal) {
                        sets.push(nal);
                    }
                }
                _ => {
                    annexb.extend_from_slice(&[0, 0, 0, 1]);
                    annexb.extend_from_slice(&nal);
                }
            }
        }
        let stored = to_avcc(&annexb).map_err(bad)?.to_vec();
        let data = match style {
            EncoderStyle::MediaCodec => annexb,
            EncoderStyle::VideoToolbox => stored.clone(),
        };
        video.push(ClipFrame {
            data,
            pts_us: i as i64 * 40_000,
            key,
            stored,
        });
    }
    let (hdr, frames) = kvs_core::codec::aac::split_adts(&read("clip.aac")?).map_err(bad)?;
    let audio = frames
        .into_iter()
        .enumerate()
        .map(|(i, a)| ClipFrame {
            data: a.to_vec(),
            pts_us: (i as u64 * 1024 * 1_000_000 / u64::from(hdr.sample_rate)) as i64,
            key: true,
            stored: a.to_vec(),
        })
        .collect();
    let parameter_sets = sets
        .iter()
        .map(|s| match style {
            EncoderStyle::MediaCodec => [&[0, 0, 0, 1][..], s].concat(),
            EncoderStyle::VideoToolbox => s.to_vec(),
        })
        .collect();
    Ok(TestClip {
        parameter_sets,
        video,
        audio,
        sample_rate: hdr.sample_rate,
        channels: hdr.channels,
    })
}
