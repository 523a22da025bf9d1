//! Fragments into one playable Matroska file (what `kvs get` writes):
//! one stream header, then each fragment's frames on one producer-time
//! timeline.
//!
//! - **One timeline**: the file's timecode 0 is the first fragment's
//!   producer timestamp, recorded as the Segment's `DateUTC` (UTC); each
//!   fragment is placed at its producer timestamp whatever its Cluster
//!   timecode (uploads with RELATIVE timecodes restart at 0), gaps kept as
//!   gaps. Fragments without a producer timestamp keep their Cluster
//!   timecode. A fragment that would go back in time (it starts before the
//!   last frame written: a second upload of the same period, which the
//!   service's playback drops as a duplicate) is left out, with a warning,
//!   and counted ([`Merger::overlapping`]).
//! - **Tags**: a fragment's own metadata tags (not the service's) follow
//!   its blocks, where GetMedia carries them and where PutMedia takes them
//!   for that fragment — a Tags element without a target after the
//!   (unknown-size) Cluster it belongs to. The file can be put again
//!   as it is, tags and all.
//! - **Parameter-set changes**: a Matroska Segment has one Tracks element,
//!   so when a fragment's H.264/H.265 CodecPrivate differs from the
//!   header's (a camera reconfigured mid-stream), its parameter sets are
//!   put in-band, in front of each of its key frames (ISO/IEC 14496-15
//!   allows parameter sets in samples; FFmpeg's decoders take them there),
//!   so every picture decodes at its own size. A change of codec or of the
//!   tracks themselves cannot be merged: [`MergeError::TracksChanged`].
//!
//! Sans-IO: fragments in, bytes out.

use bytes::Bytes;

use super::builder::{
    BuildError, FragmentBuilder, FrameIn, Payload, StreamConfig, Tag, TrackConfig,
};
use super::fragment::Fragment;
use super::types::TrackInfo;
use crate::codec::annexb::{nal_units, record_parameter_sets};
use crate::codec::Codec;

/// Why a fragment cannot join the merged file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The fragment's tracks are not the file's (another codec, another
    /// track set): only a file per header (`kvs get --raw`) can hold it.
    #[error("fragment {fragment} changes the tracks ({reason}); one merged file cannot hold both (read it raw)")]
    TracksChanged {
        /// The fragment's number (`?` when unknown).
        fragment: String,
        /// What changed.
        reason: String,
    },
    /// The fragment cannot be written as a Matroska Cluster.
    #[error("fragment {fragment}: {source}")]
    Build {
        /// The fragment's number (`?` when unknown).
        fragment: String,
        /// Why.
        source: BuildError,
    },
}

/// The merged file being written.
#[derive(Debug, Default)]
pub struct Merger {
    state: Option<State>,
}

#[derive(Debug)]
struct State {
    builder: FragmentBuilder,
    /// Producer time (ms) the file's timecode 0 stands for.
    origin_ms: u64,
    scale_ns: u64,
    /// The header's tracks.
    tracks: Vec<TrackInfo>,
    /// The latest frame timecode written (file units).
    written_until: i128,
    /// Fragments left out for going back in time.
    overlapping: usize,
}

impl Merger {
    /// A merger that has written nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes that append `f` to the file: the EBML header and stream
    /// header first (from the first fragment), then the fragment's Cluster
    /// and its tags. A fragment without frames gives nothing.
    ///
    /// Errors: [`MergeError::TracksChanged`] when its tracks are not the
    /// file's beyond their CodecPrivate; [`MergeError::Build`] when its
    /// frames cannot be placed (a frame more than 32 s of timecode units
    /// from its fragment's start).
    pub fn push(&mut self, f: &Fragment) -> Result<Vec<Bytes>, MergeError> {
        let number = || f.fragment_number.clone().unwrap_or_else(|| "?".into());
        let build = |source| MergeError::Build {
            fragment: number(),
            source,
        };
        let mut out = Vec::new();
        if f.frames.is_empty() {
            return Ok(out);
        }
        if self.state.is_none() {
            let cfg = StreamConfig {
                timecode_scale_ns: f.timecode_scale,
                date_utc: f
                    .producer_timestamp_ms
                    .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
                // Each file its own SegmentUID (RFC 9559: unique per Segment).
                segment_uid: std::array::from_fn(|_| fastrand::u8(..)),
                ..StreamConfig::new(f.tracks.iter().map(TrackConfig::from).collect())
            };
            let builder = FragmentBuilder::new(cfg).map_err(build)?;
            out.push(builder.header());
            self.state = Some(State {
                builder,
                origin_ms: f.producer_timestamp_ms.unwrap_or(0),
                scale_ns: f.timecode_scale.max(1),
                tracks: f.tracks.to_vec(),
                written_until: i128::MIN,
                overlapping: 0,
            });
        }
        let Some(m) = self.state.as_mut() else {
            return Ok(out);
        };
        // In-band parameter sets, per track whose CodecPrivate changed.
        let mut in_band: Vec<(u64, Bytes)> = Vec::new();
        for t in f.tracks.iter() {
            let Some(h) = m.tracks.iter().find(|h| h.number == t.number) else {
                return Err(MergeError::TracksChanged {
                    fragment: number(),
                    reason: format!("track {} is new", t.number),
                });
            };
            if h.codec_id != t.codec_id {
                return Err(MergeError::TracksChanged {
                    fragment: number(),
                    reason: format!(
                        "track {} is {} where the file's is {}",
                        t.number, t.codec_id, h.codec_id
                    ),
                });
            }
            if h.codec_private == t.codec_private {
                continue;
            }
            if let Some(sets) = parameter_sets(h, t) {
                in_band.push((t.number, sets));
            } else if matches!(t.codec(), Codec::H264 | Codec::H265) {
                return Err(MergeError::TracksChanged {
                    fragment: number(),
                    reason: format!(
                        "track {}'s CodecPrivate cannot be carried in-band",
                        t.number
                    ),
                });
            }
        }
        // Where this fragment's Cluster goes, in the file's timecode units.
        let cluster = i128::from(f.cluster_timecode.unwrap_or(0));
        let place = match f.producer_timestamp_ms {
            Some(p) => {
                (i128::from(p) - i128::from(m.origin_ms)) * 1_000_000 / i128::from(m.scale_ns)
            }
            None => cluster,
        };
        let first = f.frames.iter().map(|fr| fr.timecode).min().unwrap_or(0);
        if place + i128::from(first) - cluster < m.written_until {
            m.overlapping += 1;
            tracing::warn!(
                fragment = %number(),
                "left out of the merged file: it starts before the last frame written"
            );
            return Ok(out);
        }
        let frames: Vec<FrameIn> = f
            .frames
            .iter()
            .map(|fr| {
                let sets = in_band
                    .iter()
                    .find(|(n, _)| *n == fr.track)
                    .filter(|_| fr.key)
                    .map(|(_, s)| s);
                let payload = match sets {
                    Some(s) => Bytes::from([&s[..], &fr.payload[..]].concat()),
                    None => fr.payload.clone(),
                };
                FrameIn {
                    track: fr.track,
                    timecode: (place + i128::from(fr.timecode) - cluster).max(0) as i64,
                    key: fr.key,
                    payload: Payload::Raw(payload),
                }
            })
            .collect();
        let mut tags: Vec<Tag> = f
            .tags
            .iter()
            .map(|(name, value)| Tag {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        if let Err(e) = super::builder::validate_tags(&tags) {
            tracing::warn!(fragment = %number(), "tags left out of the merged file: {e}");
            tags.clear();
        }
        m.builder.fragment(&frames, &[], &mut out).map_err(build)?;
        let last = frames.iter().map(|fr| fr.timecode).max().unwrap_or(0);
        m.written_until = m.written_until.max(i128::from(last));
        if !tags.is_empty() {
            out.push(m.builder.tags(&tags).map_err(build)?);
        }
        Ok(out)
    }
}

impl Merger {
    /// Fragments left out because they started before the last frame
    /// written (see the module docs).
    pub fn overlapping(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.overlapping)
    }
}

/// The parameter sets of `new`'s CodecPrivate (avcC/hvcC) as NAL units
/// with the NAL length size of `header`'s, ready to go in front of a key
/// frame; `None` when either record cannot be read or their length sizes
/// differ (the frames' NAL lengths would not match the file's).
fn parameter_sets(header: &TrackInfo, new: &TrackInfo) -> Option<Bytes> {
    let hevc = match new.codec() {
        Codec::H264 => false,
        Codec::H265 => true,
        _ => return None,
    };
    let (_, size) = record_parameter_sets(header.codec_private.as_deref()?, hevc)?;
    let (annexb, new_size) = record_parameter_sets(new.codec_private.as_deref()?, hevc)?;
    if size != new_size || !(1..=4).contains(&size) {
        return None;
    }
    let mut out = Vec::with_capacity(annexb.len());
    for nal in nal_units(&Bytes::from(annexb)) {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes()[4 - size..]);
        out.extend_from_slice(&nal);
    }
    Some(Bytes::from(out))
}
