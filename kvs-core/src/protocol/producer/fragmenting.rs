//! Taking frames and cutting them into fragments (the timestamp rules,
//! leading frames, interleaving, the buffer limits).

use super::*;

impl ProducerCore {
    /// Takes a frame (see the module docs for the rules).
    pub fn put_frame(&mut self, frame: Frame, now: Instant) -> Result<PutOutcome, FrameError> {
        let track = frame.track;
        let Some(cfg_track) = self.tracks.iter().find(|t| t.number == track) else {
            return Err(FrameError::UnknownTrack(track));
        };
        let video = matches!(cfg_track.kind, TrackKind::Video { .. });
        let parameter_sets = matches!(cfg_track.codec(), Codec::H264 | Codec::H265);
        let pts_ms = ms(frame.pts);
        if frame.payload.is_empty() {
            return Err(FrameError::Empty { track, pts_ms });
        }
        if frame.payload.len() > MAX_FRAGMENT_BYTES {
            return Err(FrameError::TooLarge {
                track,
                size: frame.payload.len(),
                limit: MAX_FRAGMENT_BYTES,
            });
        }
        let dts_ms = ms(frame.dts.unwrap_or(frame.pts));
        let key = frame.key || !video;
        // Before the first video key frame, or (until the first fragment
        // closes) presented before it: leading frames.
        let leading = self.has_video
            && match self.first_key {
                None => !(video && key),
                Some(k) => self.closed_until.is_none() && pts_ms < k,
            };
        if leading {
            return match self.cfg.leading {
                LeadingPolicy::Skip => {
                    self.leading.0 += 1;
                    self.leading.1 += frame.payload.len();
                    Ok(PutOutcome::Skipped)
                }
                LeadingPolicy::Refuse => Err(FrameError::LeadingFrame {
                    track,
                    pts_ms,
                    first_key_ms: self.first_key,
                }),
            };
        }
        if let Some((_, prev)) = self.last_dts.iter().find(|(t, _)| *t == track) {
            if dts_ms <= *prev {
                return Err(FrameError::TimestampNotIncreasing {
                    track,
                    previous_ms: *prev,
                    got_ms: dts_ms,
                });
            }
        }
        // With video, every fragment starts at a video key frame: with none
        // open, only such a frame can come.
        if self.has_video && self.open_start.is_none() && !(video && key) {
            return Err(FrameError::NoKeyFrameYet(track));
        }
        if !video {
            // Not into a fragment already closed, nor before the open one.
            let floor = self.closed_until.max(self.open_start);
            if let Some(closed) = floor.filter(|f| pts_ms < *f) {
                return Err(FrameError::TooLate {
                    track,
                    pts_ms,
                    closed_ms: closed,
                    lateness_ms: ms(self.cfg.max_lateness),
                });
            }
        }
        // Parameter sets (checked now, applied once the frame is taken).
        // Sets given out of band come first; else the key frame's own.
        let pending = (video && key)
            .then(|| self.pending_sets(track).cloned())
            .flatten();
        let plan = match (&pending, &frame.payload, video && key) {
            (Some(sets), _, _) => self.plan_codec_private(track, sets)?,
            (None, Payload::AnnexB(p), true) => self.plan_codec_private(track, p)?,
            (None, Payload::Raw(_), true) if parameter_sets && !self.has_codec_private(track) => {
                // A fragment without a CodecPrivate plays nowhere.
                return Err(FrameError::NoCodecPrivate {
                    track,
                    reason:
                        "the key frame is not Annex-B with its parameter sets; give them in the \
                             track's CodecPrivate or with set_parameter_sets"
                            .into(),
                });
            }
            _ => None,
        };
        let new_header =
            !self.gens.is_empty() && plan.as_ref().is_some_and(|p| p.private.is_some());
        // Fragment boundaries.
        let start = self.open_start.unwrap_or(pts_ms);
        let min = ms(self.cfg.fragments.min_duration);
        let max = ms(self.cfg.fragments.max_duration);
        let due = if self.has_video {
            video && key && pts_ms > start && pts_ms >= start + min
        } else {
            pts_ms >= start + if min == 0 { 2000 } else { min }
        };
        // The service refuses a fragment without a frame of every track
        // (4011): the fragment goes on until each track has one, unless a
        // track has been silent for half the longest fragment. New
        // parameter sets need a new header, so they start a fragment.
        let starts_fragment = (due
            && (self.boundary.is_some()
                || self.every_track_before(pts_ms, dts_ms)
                || pts_ms - start >= max / 2))
            || (new_header && video && key && pts_ms > start);
        if !starts_fragment && self.boundary.is_none() && pts_ms.saturating_sub(start) > max {
            return Err(FrameError::FragmentTooLong {
                span_ms: pts_ms - start,
                max_ms: max,
            });
        }
        let size = frame.payload.len();
        if self.buffered_bytes() + size > self.cfg.max_buffer_bytes
            || self.buffered_duration() > self.cfg.max_buffer_duration
        {
            match self.cfg.pressure {
                // Only while a closed fragment waits for its ACK: the open
                // one cannot be acknowledged before it closes.
                PressurePolicy::Wait if self.buffer.iter().any(|f| !f.open) => {
                    return Ok(PutOutcome::Full)
                }
                PressurePolicy::Wait => {}
                PressurePolicy::DropOldest => self.drop_oldest(size),
            }
        }
        // Taken: from here on the state changes.
        if video && key {
            self.first_key.get_or_insert(pts_ms);
        }
        if let Some(plan) = plan {
            self.commit_codec_private(plan);
        }
        if pending.is_some() {
            self.sets_applied(track);
        }
        if self.gens.is_empty() || new_header {
            self.gens.push(self.tracks.clone());
        }
        self.open_start.get_or_insert(pts_ms);
        if starts_fragment && self.boundary.is_none() {
            self.boundary = Some((pts_ms, dts_ms, now));
        }
        match self.last_dts.iter_mut().find(|(t, _)| *t == track) {
            Some(e) => e.1 = dts_ms,
            None => self.last_dts.push((track, dts_ms)),
        }
        match self.reached.iter_mut().find(|(t, _)| *t == track) {
            Some(e) => e.1 = e.1.max(pts_ms),
            None => self.reached.push((track, pts_ms)),
        }
        self.open.push(Pending {
            track,
            dts_ms,
            pts_ms,
            key,
            payload: frame.payload,
            gen: self.gens.len() - 1,
            put_at: now,
        });
        self.try_close(now, false)?;
        Ok(PutOutcome::Accepted)
    }

    /// Whether the open fragment (its frames written, and those waiting
    /// before a boundary at (`pts`, `dts`)) holds a frame of every track.
    pub(super) fn every_track_before(&self, pts: u64, dts: u64) -> bool {
        let written = self.buffer.back().filter(|f| f.open);
        self.tracks.iter().all(|t| {
            if written.is_some_and(|f| f.tracks.contains(&t.number)) {
                return true;
            }
            let video = matches!(t.kind, TrackKind::Video { .. });
            self.open.iter().any(|p| {
                p.track == t.number
                    && if video {
                        p.dts_ms < dts
                    } else {
                        p.pts_ms < pts
                    }
            })
        })
    }

    /// Writes the frames whose place is settled and closes the fragments
    /// that are due: every other track passed the boundary, the lateness ran
    /// out, or (`flush`) the caller wants everything out.
    ///
    /// A frame is written — its block appended to the open fragment, to go
    /// out on the connection at once — when no frame of another track can
    /// still come before it in decode order: every other track has reached
    /// its decode time, or it has waited [`ProducerConfig::max_lateness`].
    /// With one track that is at once. Frames after the boundary wait until
    /// the fragment before it closes.
    pub(super) fn try_close(&mut self, now: Instant, flush: bool) -> Result<(), FrameError> {
        loop {
            let cut = self.boundary.map(|(p, d, _)| (p, d));
            self.write_settled(cut, now, flush);
            let Some((cut_pts, cut_dts, seen)) = self.boundary else {
                if flush {
                    self.close(None);
                    self.open_start = None;
                }
                return Ok(());
            };
            let boundary_track = self
                .open
                .iter()
                .find(|p| p.pts_ms == cut_pts && p.dts_ms == cut_dts && p.key)
                .map(|p| p.track);
            let others_passed = self.tracks.iter().all(|t| {
                Some(t.number) == boundary_track
                    || self
                        .reached
                        .iter()
                        .any(|(n, r)| *n == t.number && *r >= cut_pts)
            });
            if !(flush || others_passed || now.duration_since(seen) >= self.cfg.max_lateness) {
                return Ok(());
            }
            self.close(Some((cut_pts, cut_dts)));
            // The frames left open the next fragment; another boundary may
            // already be among them.
            self.open_start = Some(cut_pts);
            let min = ms(self.cfg.fragments.min_duration);
            self.boundary = self
                .open
                .iter()
                .filter(|p| {
                    self.is_video(p.track)
                        && p.key
                        && p.pts_ms > cut_pts
                        && p.pts_ms >= cut_pts + min
                })
                .map(|p| (p.pts_ms, p.dts_ms, seen))
                .next();
        }
    }

    /// Whether an open frame belongs before the boundary `cut` (video before
    /// the boundary key frame in decode order, other tracks before its
    /// presentation time).
    fn before_cut(&self, p: &Pending, cut: Option<(u64, u64)>) -> bool {
        match cut {
            None => true,
            Some((_, cut_dts)) if self.is_video(p.track) => p.dts_ms < cut_dts,
            Some((cut_pts, _)) => p.pts_ms < cut_pts,
        }
    }

    /// Writes, in decode order, the open frames before `cut` whose place is
    /// settled (all of them with `force`).
    fn write_settled(&mut self, cut: Option<(u64, u64)>, now: Instant, force: bool) {
        loop {
            // The next frame in decode order (a video key frame first among
            // equals: it must open its fragment).
            let next = self
                .open
                .iter()
                .enumerate()
                .filter(|(_, p)| self.before_cut(p, cut))
                .min_by_key(|(_, p)| (p.dts_ms, !(p.key && self.is_video(p.track))))
                .map(|(i, _)| i);
            let Some(i) = next else { return };
            let p = &self.open[i];
            let settled = force
                || now.duration_since(p.put_at) >= self.cfg.max_lateness
                || self.tracks.iter().all(|t| {
                    t.number == p.track
                        || self
                            .last_dts
                            .iter()
                            .any(|(n, d)| *n == t.number && *d >= p.dts_ms)
                });
            if !settled {
                return;
            }
            let p = self.open.remove(i);
            self.write(p);
        }
    }

    /// Appends a frame's block to the open fragment (starting one, with a
    /// new stream header when its settings changed, if none is open).
    fn write(&mut self, p: Pending) {
        let start_ms = self.cfg.start_ms;
        let frame = FrameIn {
            track: p.track,
            timecode: (start_ms + p.pts_ms) as i64,
            key: p.key,
            payload: p.payload,
        };
        let size = frame.payload.len();
        let unwritable = |e: BuildError, events: &mut VecDeque<ProducerEvent>| {
            events.push_back(ProducerEvent::FragmentDropped {
                producer_timestamp: utc(start_ms + p.pts_ms),
                frames: 1,
                reason: DropReason::Unwritable(e.to_string()),
            });
        };
        if self.buffer.back().is_none_or(|f| !f.open) {
            if self.builder_gen != Some(p.gen) {
                match FragmentBuilder::new(StreamConfig::new(self.gens[p.gen].clone())) {
                    Ok(b) => {
                        self.headers.push(b.header());
                        self.builder = Some(b);
                        self.builder_gen = Some(p.gen);
                    }
                    Err(e) => return unwritable(e, &mut self.events),
                }
            }
            let Some(builder) = self.builder.as_mut() else {
                return;
            };
            let head = match builder.cluster_start(&frame, &[]) {
                Ok(h) => h,
                Err(e) => return unwritable(e, &mut self.events),
            };
            self.buffer.push_back(Fragment {
                timecode_ms: start_ms + p.pts_ms,
                duration_ms: 0,
                header: self.headers.len() - 1,
                chunks: vec![head],
                bytes: 0,
                frames: 0,
                state: FragState::Pending,
                written_at: None,
                cursor: 0,
                open: true,
                tracks: Vec::new(),
                rejected: None,
            });
        }
        let (Some(builder), Some(f)) = (self.builder.as_mut(), self.buffer.back_mut()) else {
            return;
        };
        let cluster_tc = f.timecode_ms as i64;
        if let Err(e) = builder.block(cluster_tc, f.frames, &frame, &mut f.chunks) {
            return unwritable(e, &mut self.events);
        }
        f.frames += 1;
        if !f.tracks.contains(&frame.track) {
            f.tracks.push(frame.track);
        }
        f.bytes += size;
        f.duration_ms = f
            .duration_ms
            .max((start_ms + p.pts_ms).saturating_sub(f.timecode_ms));
        self.buffered_bytes += size;
    }

    /// Closes the open fragment at the boundary `cut` (or at the end of the
    /// media): writes what is left before it, then the metadata tags and the
    /// END_OF_FRAGMENT tag.
    pub(super) fn close(&mut self, cut: Option<(u64, u64)>) {
        let written_until = self
            .buffer
            .back()
            .filter(|f| f.open)
            .map(|f| f.timecode_ms + f.duration_ms + 1 - self.cfg.start_ms);
        let last_open = self
            .open
            .iter()
            .filter(|p| self.before_cut(p, cut))
            .map(|p| p.pts_ms + 1)
            .max();
        let closed = cut.map_or_else(|| last_open.max(written_until).unwrap_or(0), |(c, _)| c);
        // Whatever is left before the cut goes now, in decode order.
        self.write_settled(cut, Instant::now(), true);
        self.closed_until = Some(self.closed_until.map_or(closed, |c| c.max(closed)));
        self.report_leading();
        let tags = std::mem::take(&mut self.tags);
        let Some(i) = self.buffer.iter().rposition(|f| f.open) else {
            return;
        };
        let tag_chunk = self.builder.as_ref().and_then(|b| b.tags(&tags).ok());
        let f = &mut self.buffer[i];
        f.open = false;
        if let Some(t) = tag_chunk.filter(|t| !t.is_empty()) {
            f.chunks.push(t);
        }
        // The end-of-fragment tag ends the unknown-size Cluster, so the
        // service acknowledges the fragment without waiting for the next.
        f.chunks.push(FragmentBuilder::end_of_fragment_tag());
        if let Some(code) = f.rejected {
            if let Some(f) = self.buffer.remove(i) {
                self.buffered_bytes -= f.bytes;
                self.events.push_back(ProducerEvent::FragmentDropped {
                    producer_timestamp: utc(f.timecode_ms),
                    frames: f.frames,
                    reason: DropReason::Rejected(code),
                });
            }
        }
    }

    pub(super) fn drop_oldest(&mut self, incoming: usize) {
        while self.buffered_bytes() + incoming > self.cfg.max_buffer_bytes
            || self.buffered_duration() > self.cfg.max_buffer_duration
        {
            // Never the open fragment, nor the one whose chunks are going
            // out right now.
            let live = self.conn.is_some();
            let Some(i) = self
                .buffer
                .iter()
                .position(|f| !f.open && (!live || f.cursor == 0 || f.written_at.is_some()))
            else {
                return;
            };
            let Some(f) = self.buffer.remove(i) else {
                return;
            };
            self.buffered_bytes -= f.bytes;
            self.events.push_back(ProducerEvent::FragmentDropped {
                producer_timestamp: utc(f.timecode_ms),
                frames: f.frames,
                reason: DropReason::BufferFull,
            });
        }
    }
}
