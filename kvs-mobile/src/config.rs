//! What an app configures: the stream, the encoder's formats, the buffer.

use bytes::Bytes;
use kvs_core::mkv::builder::TrackConfig;

use crate::errors::KvsError;

/// The video codec of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum VideoCodec {
    /// H.264/AVC (`video/avc`, `kCMVideoCodecType_H264`).
    H264,
    /// H.265/HEVC (`video/hevc`, `kCMVideoCodecType_HEVC`).
    H265,
}

/// How the encoder's access units are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum NalFormat {
    /// Told apart frame by frame (a 4-byte start code is Annex-B; lengths
    /// that cover the frame exactly are AVCC).
    Detect,
    /// Annex-B start codes (Android MediaCodec).
    AnnexB,
    /// 4-byte big-endian lengths, AVCC (iOS VideoToolbox).
    Avcc,
}

/// The video track: track 1.
#[derive(Debug, Clone, uniffi::Record)]
pub struct VideoFormat {
    /// The codec.
    pub codec: VideoCodec,
    /// Picture width in pixels (the SPS decides when they differ).
    pub width: u32,
    /// Picture height in pixels (the SPS decides when they differ).
    pub height: u32,
    /// Parameter sets known up front (SPS and PPS, and VPS for H.265:
    /// Annex-B or bare NAL units), or none: then they come with
    /// `setVideoParameterSets` or in band before the first key frame.
    pub parameter_sets: Option<Vec<Vec<u8>>>,
    /// How the frames are framed.
    pub nal_format: NalFormat,
}

/// G.711 companding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum G711Law {
    /// A-law (ITU-T G.711, Europe).
    ALaw,
    /// µ-law (ITU-T G.711, North America and Japan).
    MuLaw,
}

/// The audio track, track 2.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum AudioFormat {
    /// AAC (raw frames, no ADTS header: MediaCodec's `audio/mp4a-latm`
    /// output, AudioToolbox's `kAudioFormatMPEG4AAC`).
    Aac {
        /// Samples a second (Hz).
        sample_rate: u32,
        /// Channels.
        channels: u8,
        /// The AudioSpecificConfig (MediaCodec's `csd-0`; ISO/IEC
        /// 14496-3 §1.6.2.1), or none for AAC-LC derived from the rate
        /// and channels.
        audio_specific_config: Option<Vec<u8>>,
    },
    /// G.711, 8 bits a sample.
    G711 {
        /// A-law or µ-law.
        law: G711Law,
        /// Samples a second (Hz; 8000 as a rule).
        sample_rate: u32,
        /// Channels.
        channels: u8,
    },
}

/// Everything a [`crate::KvsProducer`] needs.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ProducerConfig {
    /// The stream's name.
    pub stream_name: String,
    /// Its AWS region (`us-east-1`, …).
    pub region: String,
    /// Another endpoint than the region's (a local endpoint in tests).
    pub endpoint_url: Option<String>,
    /// The video track.
    pub video: VideoFormat,
    /// The audio track, if any.
    pub audio: Option<AudioFormat>,
    /// Largest buffer of unacknowledged media, bytes (0: kvs-core's
    /// default, 32 MiB); past it the oldest fragment is dropped (reported
    /// with `onFragmentDropped`).
    pub max_buffer_bytes: u64,
    /// Longest buffer of unacknowledged media, ms (0: the default,
    /// 120,000).
    pub max_buffer_duration_ms: u64,
    /// Creates the stream when it does not exist.
    pub create_if_missing: bool,
    /// Its retention when created, hours (0: kept only until
    /// acknowledged).
    pub retention_hours: u32,
}

/// The video track number.
pub(crate) const VIDEO: u64 = 1;
/// The audio track number.
pub(crate) const AUDIO: u64 = 2;

impl ProducerConfig {
    /// The tracks, and the parameter sets to give before the first frame.
    pub(crate) fn tracks(&self) -> Result<(Vec<TrackConfig>, Vec<Bytes>), KvsError> {
        let v = &self.video;
        let codec_id = match v.codec {
            VideoCodec::H264 => kvs_core::codec::h264::CODEC_ID,
            VideoCodec::H265 => kvs_core::codec::h265::CODEC_ID,
        };
        let mut video = TrackConfig::video(VIDEO, codec_id, Bytes::new(), v.width, v.height);
        video.codec_private = None;
        let sets = v
            .parameter_sets
            .iter()
            .flatten()
            .map(|s| Bytes::copy_from_slice(s))
            .collect();
        let mut tracks = vec![video];
        match &self.audio {
            None => {}
            Some(AudioFormat::Aac {
                sample_rate,
                channels,
                audio_specific_config,
            }) => {
                let mut t = TrackConfig::aac(AUDIO, *sample_rate, *channels)
                    .map_err(|e| KvsError::config(format!("AAC format: {e}")))?;
                if let Some(asc) = audio_specific_config {
                    t.codec_private = Some(Bytes::copy_from_slice(asc));
                }
                tracks.push(t);
            }
            Some(AudioFormat::G711 {
                law,
                sample_rate,
                channels,
            }) => {
                let law = match law {
                    G711Law::ALaw => kvs_core::codec::g711::Law::ALaw,
                    G711Law::MuLaw => kvs_core::codec::g711::Law::MuLaw,
                };
                tracks.push(TrackConfig::g711(AUDIO, law, *sample_rate, *channels));
            }
        }
        Ok((tracks, sets))
    }
}
