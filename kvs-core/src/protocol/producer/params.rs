//! In-band parameter sets: the CodecPrivate and picture size they give.

use super::*;

/// Parameter sets of one track.
#[derive(Debug)]
pub(super) enum ParamSets {
    H264(h264::ParameterSets),
    H265(h265::ParameterSets),
}

/// In-band parameter sets of a codec.
trait InBand: Clone + Default {
    /// Takes the sets of an access unit; true when they changed.
    fn take(&mut self, au: &Bytes) -> bool;
    /// The CodecPrivate for the sets held.
    fn private(&self) -> Result<Bytes, CodecError>;
    /// The picture size of the SPS held.
    fn dimensions(&self) -> Result<(u32, u32), CodecError>;
}

impl InBand for h264::ParameterSets {
    fn take(&mut self, au: &Bytes) -> bool {
        self.collect_annexb(au)
    }
    fn private(&self) -> Result<Bytes, CodecError> {
        self.codec_private()
    }
    fn dimensions(&self) -> Result<(u32, u32), CodecError> {
        h264::ParameterSets::dimensions(self)
    }
}

impl InBand for h265::ParameterSets {
    fn take(&mut self, au: &Bytes) -> bool {
        self.collect_annexb(au)
    }
    fn private(&self) -> Result<Bytes, CodecError> {
        self.codec_private()
    }
    fn dimensions(&self) -> Result<(u32, u32), CodecError> {
        h265::ParameterSets::dimensions(self)
    }
}

/// What a key frame's parameter sets give once they changed: the
/// CodecPrivate and the picture size, or why they give none.
type Derived = Option<Result<(Bytes, (u32, u32)), CodecError>>;

/// A track's sets with an access unit's added (a copy), and what they give
/// when they changed.
fn collect<S: InBand>(all: &[(u64, S)], track: u64, au: &Bytes) -> (S, Derived) {
    let mut sets = all
        .iter()
        .find(|(n, _)| *n == track)
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    let derived = sets
        .take(au)
        .then(|| Ok((sets.private()?, sets.dimensions()?)));
    (sets, derived)
}

/// Replaces a video track's configured size with the one of the SPS in its
/// CodecPrivate (H.264/H.265), when there is one and they differ.
pub(super) fn size_from_codec_private(t: &mut TrackConfig) {
    let hevc = match t.codec() {
        Codec::H264 => false,
        Codec::H265 => true,
        _ => return,
    };
    let TrackKind::Video { width, height } = &mut t.kind else {
        return;
    };
    let Some(record) = t.codec_private.as_ref().filter(|p| !p.is_empty()) else {
        return;
    };
    let Some((sets, _)) = crate::codec::annexb::record_parameter_sets(record, hevc) else {
        return;
    };
    let sets = Bytes::from(sets);
    let size = if hevc {
        let mut s = h265::ParameterSets::default();
        s.collect_annexb(&sets);
        s.dimensions()
    } else {
        let mut s = h264::ParameterSets::default();
        s.collect_annexb(&sets);
        s.dimensions()
    };
    if let Ok((w, h)) = size {
        if (w, h) != (*width, *height) {
            tracing::warn!(
                track = t.number,
                configured = %format!("{width}x{height}"),
                sps = %format!("{w}x{h}"),
                "the configured picture size differs from the SPS; the SPS decides"
            );
            *width = w;
            *height = h;
        }
    }
}

/// What a key frame's in-band parameter sets change.
#[derive(Debug)]
pub(super) struct SetsUpdate {
    /// Index into the tracks.
    track: usize,
    sets: ParamSets,
    /// The new CodecPrivate and picture size, when the CodecPrivate differs.
    pub(super) private: Option<(Bytes, (u32, u32))>,
}

impl ProducerCore {
    /// Parameter sets given apart from the frames — Android MediaCodec's
    /// codec-config buffer (`csd-0`, `csd-1`), iOS VideoToolbox's format
    /// description — for an H.264/H.265 track whose frames carry none
    /// (AVCC frames, or Annex-B without in-band sets). Each element is one
    /// or more sets, Annex-B (with start codes) or a bare NAL unit. They
    /// apply from the track's next key frame: when they give another
    /// CodecPrivate than the one in force, that key frame starts a new
    /// fragment under a new stream header (ISO/IEC 14496-15 §5.3.3,
    /// `avcC`/`hvcC`).
    ///
    /// Errors: [`FrameError::UnknownTrack`] for a track not configured,
    /// [`FrameError::BadParameterSets`] for a track that is not H.264/H.265
    /// video or sets that give no CodecPrivate (no SPS/PPS, an SPS that
    /// does not parse, another codec's sets) — nothing changes then.
    pub fn set_parameter_sets(&mut self, track: u64, sets: &[Bytes]) -> Result<(), FrameError> {
        let Some(t) = self.tracks.iter().find(|t| t.number == track) else {
            return Err(FrameError::UnknownTrack(track));
        };
        let mut blob = Vec::new();
        for s in sets {
            let annexb = s.starts_with(&[0, 0, 1]) || s.starts_with(&[0, 0, 0, 1]);
            if !annexb {
                blob.extend_from_slice(&[0, 0, 0, 1]);
            }
            blob.extend_from_slice(s);
        }
        let blob = Bytes::from(blob);
        let (check, expected) = match t.codec() {
            Codec::H264 => {
                let mut p = h264::ParameterSets::default();
                p.collect_annexb(&blob);
                (
                    p.codec_private().map(drop),
                    "an H.264 track takes an SPS and a PPS",
                )
            }
            Codec::H265 => {
                let mut p = h265::ParameterSets::default();
                p.collect_annexb(&blob);
                (
                    p.codec_private().map(drop),
                    "an H.265 track takes a VPS, an SPS and a PPS",
                )
            }
            _ => {
                return Err(FrameError::BadParameterSets {
                    track,
                    reason: "the track is not H.264/H.265 video".into(),
                    expected: "parameter sets are for H.264/H.265 video tracks",
                })
            }
        };
        check.map_err(|e| FrameError::BadParameterSets {
            track,
            reason: e.to_string(),
            expected,
        })?;
        self.pending_sets.retain(|(n, _)| *n != track);
        self.pending_sets.push((track, blob));
        Ok(())
    }

    /// The out-of-band parameter sets waiting for a track's key frame.
    pub(super) fn pending_sets(&self, track: u64) -> Option<&Bytes> {
        self.pending_sets
            .iter()
            .find(|(n, _)| *n == track)
            .map(|(_, b)| b)
    }

    /// Out-of-band sets applied: no longer pending.
    pub(super) fn sets_applied(&mut self, track: u64) {
        self.pending_sets.retain(|(n, _)| *n != track);
    }

    /// What in-band parameter sets would change, without changing anything:
    /// the updated sets and the new CodecPrivate when it differs from the
    /// current one. Fails when the track still has no CodecPrivate.
    pub(super) fn plan_codec_private(
        &self,
        track: u64,
        au: &Bytes,
    ) -> Result<Option<SetsUpdate>, FrameError> {
        let Some(t) = self.tracks.iter().position(|t| t.number == track) else {
            return Ok(None);
        };
        let (sets, derived) = match self.tracks[t].codec() {
            Codec::H264 => {
                let (sets, derived) = collect(&self.h264_sets, track, au);
                (ParamSets::H264(sets), derived)
            }
            Codec::H265 => {
                let (sets, derived) = collect(&self.h265_sets, track, au);
                (ParamSets::H265(sets), derived)
            }
            _ => return Ok(None),
        };
        let current = self.tracks[t]
            .codec_private
            .clone()
            .filter(|p| !p.is_empty());
        let private = match derived {
            Some(Ok(d)) => Some(d).filter(|(p, _)| current.as_ref() != Some(p)),
            Some(Err(e)) if current.is_none() => {
                return Err(FrameError::NoCodecPrivate {
                    track,
                    reason: e.to_string(),
                })
            }
            Some(Err(e)) => {
                // The sets in force stay; the stream goes on with them.
                tracing::warn!(track, error = %e, "in-band parameter sets unusable; keeping the ones in force");
                None
            }
            None => None,
        };
        if current.is_none() && private.is_none() {
            return Err(FrameError::NoCodecPrivate {
                track,
                reason: "the key frame carries no parameter sets (SPS/PPS, and VPS for H.265)"
                    .into(),
            });
        }
        Ok(Some(SetsUpdate {
            track: t,
            sets,
            private,
        }))
    }

    /// Applies a plan; true when an in-use CodecPrivate changed (a new
    /// header is needed).
    pub(super) fn commit_codec_private(&mut self, plan: SetsUpdate) -> bool {
        let number = self.tracks[plan.track].number;
        match plan.sets {
            ParamSets::H264(s) => match self.h264_sets.iter_mut().find(|(n, _)| *n == number) {
                Some(e) => e.1 = s,
                None => self.h264_sets.push((number, s)),
            },
            ParamSets::H265(s) => match self.h265_sets.iter_mut().find(|(n, _)| *n == number) {
                Some(e) => e.1 = s,
                None => self.h265_sets.push((number, s)),
            },
        }
        let Some((p, (w, h))) = plan.private else {
            return false;
        };
        let t = &mut self.tracks[plan.track];
        t.codec_private = Some(p);
        if let TrackKind::Video { width, height } = &mut t.kind {
            (*width, *height) = (w, h);
        }
        // Before anything was put, the first settings are simply completed.
        !self.gens.is_empty()
    }
}
