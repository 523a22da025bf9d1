//! One timeline for archived media: which fragments play, and in what order.
//!
//! A KVS stream can hold several fragments for the same producer time: a
//! producer that resends a fragment whose ACK was lost (this crate's
//! [`Producer`](crate::producer::Producer) does), or two uploads of the
//! same period. The archived-media API reference (GetHLSStreamingSessionURL,
//! `HLSFragmentSelector.FragmentSelectorType`) says such fragments "are
//! deduplicated … only the oldest ingested collection of fragments are
//! returned". [`playable`] is that rule, in the one place every archived
//! path uses it: the local endpoint's GetClip, HLS, DASH and GetImages, and
//! the [`Consumer`](crate::consumer::Consumer)'s time ranges (ListFragments
//! is left as the service returns it, duplicates and all).
//!
//! Two fragments cover the same time when they start at the same producer
//! millisecond or their spans overlap by more than [`TOLERANCE_MS`]: the
//! reference keeps "the oldest ingested collection of fragments" of those
//! "ingested within the same time range", so any real overlap goes, and
//! the fragments kept never overlap — every path that joins them plays a
//! monotonic timeline. A span is a fragment's media, first frame to the
//! end of its video's last (the service's FragmentLengthInMilliseconds);
//! AAC frames that straddle a fragment boundary do not count. The
//! tolerance (\[I\]: the reference names none) absorbs the rounding of
//! spans to milliseconds, and is shorter than any video frame interval up
//! to 200 fps, so no two kept fragments hold a frame at the same instant.

use std::collections::BTreeMap;

/// A fragment's span on the producer timeline: `[start_ms, end_ms)`, epoch
/// milliseconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Producer timestamp of the fragment's first frame, epoch ms.
    pub start_ms: u64,
    /// Where its media ends, epoch ms (`start_ms` + its duration).
    pub end_ms: u64,
}

impl Span {
    /// `[start_ms, start_ms + duration_ms)`.
    pub fn new(start_ms: u64, duration_ms: u64) -> Self {
        Span {
            start_ms,
            end_ms: start_ms.saturating_add(duration_ms),
        }
    }

    fn same_time(self, other: Span) -> bool {
        let overlap = self
            .end_ms
            .min(other.end_ms)
            .saturating_sub(self.start_ms.max(other.start_ms));
        self.start_ms == other.start_ms || overlap > TOLERANCE_MS
    }
}

/// How far two fragments' spans may overlap (ms) and both be kept: the
/// rounding of spans to milliseconds, not a frame.
pub const TOLERANCE_MS: u64 = 5;

/// The fragments to play, in producer-time order, duplicates dropped: of
/// fragments covering the same producer time (see the module docs), the one
/// that comes first in `fragments` is kept, so the spans kept overlap by
/// [`TOLERANCE_MS`] at most. `fragments` must come in ingest
/// order (server-timestamp order; ListFragments returns them in no order,
/// so sort its list by server timestamp first). `span` gives each one's
/// place on the producer timeline.
pub fn playable<T>(fragments: impl IntoIterator<Item = T>, span: impl Fn(&T) -> Span) -> Vec<T> {
    // Kept fragments by start: (span, fragment).
    let mut kept: BTreeMap<u64, (Span, T)> = BTreeMap::new();
    for f in fragments {
        let s = span(&f);
        let s = Span {
            start_ms: s.start_ms,
            end_ms: s.end_ms.max(s.start_ms),
        };
        let before = kept.range(..=s.start_ms).next_back().map(|(_, (k, _))| *k);
        let after = kept.range(s.start_ms..).next().map(|(_, (k, _))| *k);
        if !before.into_iter().chain(after).any(|k| s.same_time(k)) {
            kept.insert(s.start_ms, (s, f));
        }
    }
    kept.into_values().map(|(_, f)| f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[(u64, u64)]) -> Vec<usize> {
        let items: Vec<(usize, Span)> = input
            .iter()
            .enumerate()
            .map(|(i, &(s, d))| (i, Span::new(s, d)))
            .collect();
        playable(items, |(_, s)| *s)
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn the_first_ingested_of_the_same_time_is_kept() {
        // Two uploads of one period: the second adds nothing.
        assert_eq!(
            run(&[(0, 2000), (2000, 2000), (0, 2000), (2000, 2000)]),
            [0, 1]
        );
        // A resend starting at the same instant, however long.
        assert_eq!(run(&[(1000, 500), (1000, 2000)]), [0]);
        // Ingested out of producer order: played in producer order.
        assert_eq!(run(&[(4000, 2000), (0, 2000), (2000, 2000)]), [1, 2, 0]);
    }

    #[test]
    fn any_real_overlap_goes_and_adjacent_fragments_stay() {
        // Back to back, and within the rounding tolerance.
        assert_eq!(run(&[(0, 2000), (2000, 2000), (6000, 2000)]), [0, 1, 2]);
        assert_eq!(run(&[(0, 2004), (2000, 2000)]), [0, 1]);
        // One frame (40 ms) into the next: the later-ingested one goes,
        // whichever comes first in time.
        assert_eq!(run(&[(2000, 2000), (40, 2000)]), [0]);
        assert_eq!(run(&[(0, 2000), (1960, 2000)]), [0]);
        // A later upload covering the gap between two kept fragments stays.
        assert_eq!(run(&[(0, 2000), (4000, 2000), (2000, 2000)]), [0, 2, 1]);
    }

    #[test]
    fn zero_length_fragments_are_kept_unless_they_start_together() {
        assert_eq!(run(&[(0, 0), (0, 0), (40, 0)]), [0, 2]);
    }
}
