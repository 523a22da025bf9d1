//! [`KvsProducer`]: frames from a phone encoder into kvs-core's Producer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use kvs_core::client::{
    ClientConfig, CreateStream, FragmentSelector, KvsClient, PlaybackMode, StreamingSessionOptions,
};
use kvs_core::mkv::builder::Payload;
use kvs_core::producer::{Frame, Producer, PutOutcome};

use crate::config::{NalFormat, ProducerConfig, AUDIO, VIDEO};
use crate::credentials::{provider, CredentialsProvider};
use crate::errors::KvsError;
use crate::listener::{pump, ProducerListener, Pump};

/// What `finish` delivered and gave up.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FinishReport {
    /// Fragments acknowledged over the producer's life.
    pub delivered_fragments: u64,
    /// Frames in them.
    pub delivered_frames: u64,
    /// Fragments given up (a full buffer, refused by the service).
    pub dropped_fragments: u64,
    /// Frames in them.
    pub dropped_frames: u64,
    /// Fragments still unacknowledged when the time ran out (given up
    /// with the producer).
    pub unacknowledged_fragments: u64,
}

/// A producer of one stream, for an app. Constructing it never waits on
/// the network: the stream is looked up (created if asked) in the
/// background while frames go to the buffer. Every call returns at once.
#[derive(uniffi::Object)]
pub struct KvsProducer {
    inner: Producer,
    client: Arc<KvsClient>,
    nal: NalFormat,
    has_audio: bool,
    /// When the producer was made (its producer time 0).
    made: Instant,
    /// The encoder's clock at producer time 0 (µs), set by the first frame.
    origin_us: Mutex<Option<i64>>,
    /// What the last `finish` reported.
    finished: Mutex<Option<FinishReport>>,
    /// The listener's thread (stopped, and the listener released on the
    /// dropping thread, when the producer is dropped).
    pump: Pump,
}

impl std::fmt::Debug for KvsProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvsProducer").finish_non_exhaustive()
    }
}

#[uniffi::export]
impl KvsProducer {
    /// A producer of `config.stream_name`, signing with what
    /// `credentials` gives and telling `listener` what happens.
    ///
    /// Errors: `Config` for settings that cannot work (an endpoint URL
    /// that does not parse, an AAC format the service does not take,
    /// parameter sets that do not parse).
    #[uniffi::constructor]
    pub fn new(
        config: ProducerConfig,
        credentials: Arc<dyn CredentialsProvider>,
        listener: Arc<dyn ProducerListener>,
    ) -> Result<Arc<Self>, KvsError> {
        crate::foreign::release_pending();
        let rt = crate::runtime();
        let (tracks, sets) = config.tracks()?;
        let mut cfg = ClientConfig::new(config.region.clone(), provider(credentials))
            .runtime(rt.handle().clone());
        if let Some(url) = &config.endpoint_url {
            cfg = cfg.endpoint(url.clone());
        }
        let client = Arc::new(KvsClient::new(cfg)?);
        // A frame before the first key frame is the app's mistake: said,
        // not skipped.
        let mut b = Producer::builder(client.clone(), config.stream_name.as_str())
            .leading(kvs_core::producer::LeadingPolicy::Refuse);
        for t in tracks {
            b = b.track(t);
        }
        if config.create_if_missing {
            b = b.create_if_missing(CreateStream {
                data_retention_in_hours: config.retention_hours,
                ..CreateStream::default()
            });
        }
        if config.max_buffer_bytes > 0 || config.max_buffer_duration_ms > 0 {
            let defaults = kvs_core::producer::ProducerOptions::default();
            let bytes = match config.max_buffer_bytes {
                0 => defaults.max_buffer_bytes,
                n => usize::try_from(n).unwrap_or(usize::MAX),
            };
            let duration = match config.max_buffer_duration_ms {
                0 => defaults.max_buffer_duration,
                ms => Duration::from_millis(ms),
            };
            b = b.buffer(bytes, duration);
        }
        let inner = {
            let _in_runtime = rt.enter();
            b.start()?
        };
        if !sets.is_empty() {
            inner.set_parameter_sets(VIDEO, &sets)?;
        }
        let pump = pump(inner.subscribe(), listener);
        Ok(Arc::new(Self {
            inner,
            client,
            nal: config.video.nal_format,
            has_audio: config.audio.is_some(),
            made: Instant::now(),
            origin_us: Mutex::new(None),
            finished: Mutex::new(None),
            pump,
        }))
    }

    /// Puts a video access unit: Annex-B or AVCC with 4-byte lengths (as
    /// the format says, or told apart). `pts_us`/`dts_us` in the encoder's
    /// clock, µs (MediaCodec's `presentationTimeUs`, VideoToolbox's
    /// presentation time): the first frame fixes where that clock stands
    /// at the producer's start. Returns at once.
    ///
    /// Errors: `InvalidFrame` for a frame that breaks the rules (a key
    /// frame must come first; decode times must increase; a key frame at
    /// least every 20 s; no parameter sets for the first key frame);
    /// `Finished` after `finish`/`shutdown`.
    pub fn put_video_frame(
        &self,
        data: Vec<u8>,
        pts_us: i64,
        dts_us: Option<i64>,
        is_key: bool,
    ) -> Result<(), KvsError> {
        let data = Bytes::from(data);
        let declared = |r: Result<Payload, kvs_core::codec::CodecError>, what: &str| {
            r.map_err(|e| KvsError::InvalidFrame {
                detail: format!("a frame declared {what}: {e}"),
            })
        };
        let payload = match self.nal {
            NalFormat::AnnexB => declared(Payload::annexb(data), "Annex-B")?,
            NalFormat::Avcc => declared(Payload::avcc(data), "AVCC (4-byte lengths)")?,
            NalFormat::Detect => Payload::video(data),
        };
        let pts = self.producer_time(pts_us)?;
        let dts = dts_us.map(|d| self.producer_time(d)).transpose()?;
        self.put(Frame {
            track: VIDEO,
            pts,
            dts,
            key: is_key,
            payload,
        })
    }

    /// Puts an audio frame (raw AAC, or G.711 samples), `pts_us` in the
    /// encoder's clock (µs). Errors as `put_video_frame`, and `Config`
    /// without an audio format.
    pub fn put_audio_frame(&self, data: Vec<u8>, pts_us: i64) -> Result<(), KvsError> {
        if !self.has_audio {
            return Err(KvsError::config("no audio format was configured"));
        }
        let pts = self.producer_time(pts_us)?;
        self.put(Frame {
            track: AUDIO,
            pts,
            dts: None,
            key: true,
            payload: Payload::Raw(Bytes::from(data)),
        })
    }

    /// The video parameter sets, given apart from the frames (MediaCodec's
    /// codec-config buffer or `csd-0`/`csd-1`; VideoToolbox's format
    /// description): each element one or more sets, Annex-B or bare NAL
    /// units. They apply from the next key frame; a change mid-stream
    /// starts a new fragment with the new CodecPrivate.
    ///
    /// Errors: `InvalidFrame` for sets that do not parse (nothing changes).
    pub fn set_video_parameter_sets(&self, sets: Vec<Vec<u8>>) -> Result<(), KvsError> {
        let sets: Vec<Bytes> = sets.into_iter().map(Bytes::from).collect();
        Ok(self.inner.set_parameter_sets(VIDEO, &sets)?)
    }

    /// Adds a metadata tag to the next fragment (at most 10 a fragment;
    /// names not starting with `AWS`).
    pub fn tag_next_fragment(&self, name: String, value: String) -> Result<(), KvsError> {
        Ok(self.inner.tag_next_fragment(&name, &value)?)
    }

    /// The phone changed networks (Wi-Fi ↔ cellular): reconnect now rather
    /// than after the ACK timeout; nothing is lost.
    pub fn network_changed(&self) {
        self.inner.network_changed();
    }

    /// The app went to the background: the connection closes, the buffer
    /// stays, frames are still taken up to its limits.
    pub fn pause(&self) {
        self.inner.pause();
    }

    /// The app came back: connect and send what was buffered.
    pub fn resume(&self) {
        self.inner.resume();
    }

    /// Closes the open fragment and waits, at most `timeout_ms`, until
    /// every fragment is acknowledged (a paused producer connects again
    /// for it); then the producer stops. The listener has heard every
    /// event (each ACK) when it returns, and hears none after. Returns what was delivered and
    /// what was given up (fragments still unacknowledged when the time ran
    /// out are given up: they may or may not have been stored). A second
    /// call returns the first's report.
    pub async fn finish(&self, timeout_ms: u64) -> FinishReport {
        if let Some(r) = self.lock_finished().clone() {
            return r;
        }
        let p = self.inner.clone();
        let t = Duration::from_millis(timeout_ms);
        // Every event of the producer heard before this returns; none after.
        let drained = self.pump.drain();
        let ended = crate::on_runtime(async move {
            let r = p.finish(t).await;
            drained.await;
            r
        })
        .await;
        let unacked = match ended {
            Ok(Err(kvs_core::producer::ProducerError::Timeout { unacked, .. })) => unacked,
            _ => 0,
        };
        let acked = self.inner.acked();
        let lost = self.inner.losses();
        let r = FinishReport {
            delivered_fragments: acked.fragments as u64,
            delivered_frames: acked.frames as u64,
            dropped_fragments: lost.fragments as u64,
            dropped_frames: lost.frames as u64,
            unacknowledged_fragments: unacked as u64,
        };
        *self.lock_finished() = Some(r.clone());
        crate::foreign::release_pending();
        r
    }

    /// Stops at once: no more frames are taken and nothing more is sent or
    /// waited for; what was sent but not yet acknowledged may or may not
    /// have been stored. (Not `close`: UniFFI's Kotlin objects have their
    /// own, which releases the object.)
    pub fn shutdown(&self) {
        let p = self.inner.clone();
        crate::runtime().spawn(async move { p.finish(Duration::ZERO).await });
    }

    /// An HLS URL for `stream` that ExoPlayer and AVPlayer open
    /// (GetHLSStreamingSessionURL, signed with this producer's
    /// credentials): `live` follows the newest fragments; otherwise the
    /// last 24 hours, on demand (the service's longest ON_DEMAND range).
    ///
    /// Errors: `Service` (`ResourceNotFoundException`,
    /// `NoDataRetentionException`…), `Connection`.
    pub async fn hls_url(&self, stream: String, live: bool) -> Result<String, KvsError> {
        let c = self.client.clone();
        let opts = if live {
            StreamingSessionOptions::default()
        } else {
            let end = SystemTime::now();
            StreamingSessionOptions {
                playback_mode: PlaybackMode::OnDemand,
                selector: Some(FragmentSelector::Server {
                    start: end - Duration::from_secs(24 * 3600),
                    end,
                }),
                ..StreamingSessionOptions::default()
            }
        };
        let url = crate::on_runtime(async move {
            c.get_hls_streaming_session_url(stream.as_str(), &opts)
                .await
        })
        .await
        .map_err(|e| KvsError::Connection {
            detail: e.to_string(),
        })??;
        Ok(url)
    }
}

impl Drop for KvsProducer {
    fn drop(&mut self) {
        crate::foreign::release_pending();
    }
}

impl KvsProducer {
    fn lock_finished(&self) -> std::sync::MutexGuard<'_, Option<FinishReport>> {
        self.finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Producer time of an encoder timestamp: the first one given stands
    /// for the time elapsed since the producer was made.
    fn producer_time(&self, us: i64) -> Result<Duration, KvsError> {
        let origin = *self
            .origin_us
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(|| us.saturating_sub(self.made.elapsed().as_micros() as i64));
        us.checked_sub(origin)
            .and_then(|d| u64::try_from(d).ok())
            .map(Duration::from_micros)
            .ok_or_else(|| KvsError::InvalidFrame {
                detail: format!(
                    "timestamp {us} µs lies before the producer's start in the encoder's clock ({origin} µs)"
                ),
            })
    }

    fn put(&self, frame: Frame) -> Result<(), KvsError> {
        match self.inner.try_put_frame(frame)? {
            PutOutcome::Accepted | PutOutcome::Skipped => Ok(()),
            PutOutcome::Full => Err(KvsError::config("the buffer is full")),
        }
    }
}
