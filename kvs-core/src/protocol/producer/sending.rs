//! Sending: connections, the chunks for each, ACKs, rotation, stalls,
//! deadlines, and writing to a file instead.

use super::*;

impl ProducerCore {
    /// Time has passed: closes fragments whose lateness ran out, and starts a
    /// rotation when the connection is old.
    pub fn tick(&mut self, now: Instant) {
        let _ = self.try_close(now, false);
        if let Some(c) = &mut self.conn {
            let reason = if now.duration_since(c.opened) >= self.cfg.rotation_age {
                Some(RotationReason::Age)
            } else if c.deadline.is_some_and(|d| now >= d) {
                Some(RotationReason::CredentialsExpiring)
            } else {
                None
            };
            if let (None, Some(r)) = (c.rotation, reason) {
                c.rotation = Some(r);
                self.events.push_back(ProducerEvent::Rotating { reason: r });
            }
        }
    }

    /// The next instant something is due without any input: a fragment
    /// closing because its lateness ran out, a rotation (connection age or
    /// expiring credentials), the connection becoming stalled. A driver
    /// calls [`Self::tick`] (and checks [`Self::stalled`]) then, instead of
    /// polling on a fixed period. `None`: nothing is due until more input.
    pub fn next_deadline(&self) -> Option<Instant> {
        // A boundary or a frame waiting for the other tracks.
        let lateness = self
            .boundary
            .map(|(_, _, seen)| seen)
            .into_iter()
            .chain(self.open.iter().map(|p| p.put_at))
            .min()
            .map(|t| t + self.cfg.max_lateness);
        let (rotation, credentials, stall) = match &self.conn {
            Some(c) if c.rotation.is_none() => (
                Some(c.opened + self.cfg.rotation_age),
                c.deadline,
                self.stall_clock(c).map(|s| s + self.cfg.ack_timeout),
            ),
            Some(c) => (
                None,
                None,
                self.stall_clock(c).map(|s| s + self.cfg.ack_timeout),
            ),
            None => (None, None, None),
        };
        [lateness, rotation, credentials, stall]
            .into_iter()
            .flatten()
            .min()
    }

    /// Where the ACK timeout of connection `c` counts from: the later of
    /// its last ACK and the oldest unacknowledged write (`None`: nothing
    /// written waits for an ACK).
    pub(super) fn stall_clock(&self, c: &Conn) -> Option<Instant> {
        let oldest = self.buffer.iter().filter_map(|f| f.written_at).min()?;
        Some(c.last_ack.map_or(oldest, |a| a.max(oldest)))
    }

    /// Whether the current connection is stalled (to be replaced): data
    /// written on it waits for an ACK, and no ACK has come for the ACK
    /// timeout — counted from the later of the last ACK and the oldest
    /// unacknowledged write. A slow but moving connection (ACKs still
    /// coming while a backlog drains through a narrow uplink) is never
    /// stalled; a silent one (a dead NAT mapping) is, after the timeout.
    pub fn stalled(&self, now: Instant) -> bool {
        self.conn
            .as_ref()
            .and_then(|c| self.stall_clock(c))
            .is_some_and(|since| now.duration_since(since) >= self.cfg.ack_timeout)
    }

    /// A new connection is up; returns its number. Every fragment not yet
    /// acknowledged will go out on it, after a stream header.
    pub fn connected(&mut self, now: Instant) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        let mut resending = 0;
        for f in &mut self.buffer {
            if f.state != FragState::Pending || f.cursor > 0 {
                resending += 1;
            }
            f.state = FragState::Pending;
            f.cursor = 0;
            f.written_at = None;
        }
        self.conn = Some(Conn {
            id,
            opened: now,
            deadline: None,
            header: None,
            header_sent: false,
            draining: false,
            rotation: None,
            last_ack: None,
        });
        self.events.push_back(ProducerEvent::Connected {
            connection: id,
            resending,
        });
        id
    }

    /// The current connection must be replaced by `at` (its credentials
    /// expire); the rotation happens at the first fragment boundary after.
    pub fn rotate_by(&mut self, at: Instant) {
        if let Some(c) = &mut self.conn {
            c.deadline = Some(at);
        }
    }

    /// The connection ended (cut, refused, or drained after a rotation).
    /// Its unacknowledged fragments will be sent again on the next one.
    pub fn disconnected(&mut self, reason: &str) {
        let Some(c) = self.conn.take() else { return };
        let unacked = self
            .buffer
            .iter()
            .any(|f| matches!(f.state, FragState::Sent { conn } if conn == c.id));
        // What it sent but did not get acknowledged goes out again on the
        // next connection (counted there).
        if unacked || c.rotation.is_none() {
            self.events.push_back(ProducerEvent::Disconnected {
                connection: c.id,
                reason: reason.to_owned(),
            });
        }
    }

    /// Whether the current connection is inside a fragment: it has written
    /// part of one, not all (an open fragment's blocks so far, say). Ending
    /// its body cleanly now would end that fragment early; it must be cut.
    pub fn mid_fragment(&self) -> bool {
        self.conn.is_some()
            && self
                .buffer
                .iter()
                .any(|f| f.cursor > 0 && f.written_at.is_none())
    }

    /// Whether the current connection should end its body now: it is being
    /// rotated and has written every fragment it started.
    pub fn should_end_body(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.draining)
    }

    /// Whether the current connection is being replaced.
    pub fn rotating(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.rotation.is_some())
    }

    /// The next chunk to write on the current connection, if any: the stream
    /// header, then the fragments not yet sent, in order.
    pub fn next_chunk(&mut self, now: Instant) -> Option<Bytes> {
        let conn = self.conn.as_mut()?;
        if conn.draining {
            return None;
        }
        // A fragment under way is finished first (an open one as its
        // frames come).
        let idx = match self
            .buffer
            .iter()
            .position(|f| f.cursor > 0 && f.written_at.is_none())
        {
            Some(i) if self.buffer[i].cursor == self.buffer[i].chunks.len() => return None,
            Some(i) => i,
            None => self.buffer.iter().position(|f| {
                f.state == FragState::Pending && f.cursor == 0 && f.rejected.is_none()
            })?,
        };
        let f = &self.buffer[idx];
        if f.cursor == 0 {
            // A new fragment: rotate first if needed.
            if conn.rotation.is_some() {
                conn.draining = true;
                return None;
            }
            match conn.header {
                Some(h) if h != f.header => {
                    conn.rotation = Some(RotationReason::NewHeader);
                    conn.draining = true;
                    self.events.push_back(ProducerEvent::Rotating {
                        reason: RotationReason::NewHeader,
                    });
                    return None;
                }
                _ => {}
            }
            if !conn.header_sent {
                conn.header_sent = true;
                conn.header = Some(f.header);
                let h = self.headers[f.header].clone();
                self.bytes_sent += h.len() as u64;
                return Some(h);
            }
        }
        let id = conn.id;
        let f = &mut self.buffer[idx];
        let chunk = f.chunks[f.cursor].clone();
        f.cursor += 1;
        f.state = FragState::Sent { conn: id };
        if !f.open && f.cursor == f.chunks.len() {
            f.written_at = Some(now);
        }
        self.bytes_sent += chunk.len() as u64;
        Some(chunk)
    }

    /// An ACK arrived on connection `conn`.
    pub fn on_ack(&mut self, conn: u64, ack: &Ack, now: Instant) {
        match self.conn.as_mut() {
            // IDLE says the service has nothing from us: not progress.
            Some(c) if c.id == conn => {
                if !matches!(ack, Ack::Idle) {
                    c.last_ack = Some(now);
                }
            }
            _ => return,
        }
        let find = |buffer: &VecDeque<Fragment>, tc: u64| {
            buffer.iter().position(|f| {
                f.timecode_ms == tc && matches!(f.state, FragState::Sent { conn: c } if c == conn)
            })
        };
        match ack {
            Ack::Received {
                fragment_timecode,
                fragment_number,
            }
            | Ack::Persisted {
                fragment_timecode,
                fragment_number,
            } => {
                let Some(i) = find(&self.buffer, *fragment_timecode) else {
                    return;
                };
                let persisted = matches!(ack, Ack::Persisted { .. });
                if persisted || self.cfg.ack_level == AckLevel::Received {
                    let Some(f) = self.buffer.remove(i) else {
                        return;
                    };
                    self.buffered_bytes -= f.bytes;
                    self.events.push_back(ProducerEvent::Acked {
                        producer_timestamp: utc(f.timecode_ms),
                        fragment_number: fragment_number.clone(),
                        latency: f
                            .written_at
                            .map_or(Duration::ZERO, |w| now.duration_since(w)),
                        frames: f.frames,
                    });
                }
            }
            Ack::Error {
                fragment_timecode,
                fragment_number,
                code,
                ..
            } => {
                let retriable = code.is_retryable();
                self.events.push_back(ProducerEvent::ServiceError {
                    producer_timestamp: fragment_timecode.map(utc),
                    fragment_number: fragment_number.clone(),
                    code: *code,
                    retriable,
                });
                let found = fragment_timecode.and_then(|tc| find(&self.buffer, tc));
                if let Some(f) = found
                    .filter(|_| !retriable)
                    .and_then(|i| self.buffer.get_mut(i))
                    .filter(|f| f.open)
                {
                    // Still taking frames: dropped when it closes.
                    f.rejected = Some(*code);
                } else if !retriable {
                    if let Some(f) = found.and_then(|i| self.buffer.remove(i)) {
                        self.buffered_bytes -= f.bytes;
                        self.events.push_back(ProducerEvent::FragmentDropped {
                            producer_timestamp: utc(f.timecode_ms),
                            frames: f.frames,
                            reason: DropReason::Rejected(*code),
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// Takes every buffered fragment out as one Matroska stream, for a file
    /// rather than a connection: a stream header, the fragments in order, and
    /// a new header wherever the parameter sets change. The END_OF_FRAGMENT
    /// tags, a signal to the service only, are left out. The fragments count
    /// as written and leave the buffer (no ACK will come for them).
    pub fn drain_as_file(&mut self, out: &mut Vec<Bytes>) -> FileWritten {
        let mut written = FileWritten::default();
        let mut header = None;
        for f in std::mem::take(&mut self.buffer) {
            if header != Some(f.header) {
                header = Some(f.header);
                out.push(self.headers[f.header].clone());
                written.headers += 1;
            }
            let first = out.len();
            // The last chunk of a closed fragment is the END_OF_FRAGMENT tag.
            let media = f.chunks.len().saturating_sub(usize::from(!f.open));
            out.extend(f.chunks.into_iter().take(media));
            written
                .fragments
                .push((f.timecode_ms as i64, first..out.len()));
        }
        self.buffered_bytes = 0;
        written
    }
}
