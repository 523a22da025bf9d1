//! Push-side input handling: a queue of received chunks that hands out
//! contiguous slices without copying whenever the bytes sit in one chunk, and
//! a generic element walker (used as the speed floor and by the fuzzers).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::vint::{read_id, read_size, VintRead, UNKNOWN_SIZE};

/// Received bytes not yet consumed, kept as the caller's own chunks.
///
/// Taking a range that lies inside one chunk is a reference-count bump; only
/// a range that straddles chunks is copied (once) into a fresh buffer.
#[derive(Debug, Default)]
pub struct ChunkQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
    offset: u64,
    scratch: Vec<u8>,
}

impl ChunkQueue {
    /// An empty queue whose first byte will be at stream offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk (empty chunks are ignored).
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes buffered and not yet consumed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stream offset of the first buffered byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The first buffered chunk (empty when nothing is buffered).
    #[inline]
    pub fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| &c[..])
    }

    /// Up to `n` bytes from the front, contiguous. Copies into a small scratch
    /// buffer only when those bytes straddle chunks.
    pub fn peek(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.len);
        match self.chunks.front() {
            Some(front) if front.len() >= n => &front[..n],
            Some(_) => {
                self.scratch.clear();
                for c in &self.chunks {
                    let want = n - self.scratch.len();
                    if want == 0 {
                        break;
                    }
                    self.scratch.extend_from_slice(&c[..want.min(c.len())]);
                }
                &self.scratch
            }
            None => &[],
        }
    }

    /// Removes exactly `n` bytes from the front and returns them; the caller
    /// checks `len() >= n` first.
    pub fn take(&mut self, n: usize) -> Bytes {
        debug_assert!(n <= self.len);
        if n == 0 {
            return Bytes::new();
        }
        self.len -= n;
        self.offset += n as u64;
        let front = self.chunks.front_mut().expect("take on empty queue");
        if front.len() > n {
            return front.split_to(n);
        }
        if front.len() == n {
            return self.chunks.pop_front().expect("front exists");
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let want = n - out.len();
            let front = self.chunks.front_mut().expect("length accounted");
            if front.len() <= want {
                out.extend_from_slice(front);
                self.chunks.pop_front();
            } else {
                out.extend_from_slice(&front.split_to(want));
            }
        }
        out.freeze()
    }

    /// Removes exactly `n` bytes from the front and returns them as the
    /// chunks they sit in (sliced, never copied); the caller checks
    /// `len() >= n` first.
    pub fn take_chunks(&mut self, n: usize) -> Vec<Bytes> {
        debug_assert!(n <= self.len);
        let mut out = Vec::new();
        let mut left = n.min(self.len);
        self.len -= left;
        self.offset += left as u64;
        while left > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                out.extend(self.chunks.pop_front());
            } else {
                out.push(front.split_to(left));
                left = 0;
            }
        }
        out
    }

    /// A copy of `n` buffered bytes starting `skip` bytes after the front,
    /// leaving the queue as it is (clamped to what is buffered).
    pub fn copy_range(&self, skip: usize, n: usize) -> Bytes {
        let mut out = Vec::with_capacity(n.min(self.len));
        let mut skip = skip;
        for c in &self.chunks {
            if out.len() == n {
                break;
            }
            if skip >= c.len() {
                skip -= c.len();
                continue;
            }
            let want = (n - out.len()).min(c.len() - skip);
            out.extend_from_slice(&c[skip..skip + want]);
            skip = 0;
        }
        Bytes::from(out)
    }

    /// Discards up to `n` bytes from the front; returns how many were discarded.
    pub fn skip(&mut self, n: u64) -> u64 {
        let mut left = n;
        while left > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if (front.len() as u64) <= left {
                left -= front.len() as u64;
                self.len -= front.len();
                self.chunks.pop_front();
            } else {
                let k = left as usize;
                let _ = front.split_to(k);
                self.len -= k;
                left = 0;
            }
        }
        let done = n - left;
        self.offset += done;
        done
    }
}

/// A decoded element header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementHeader {
    /// Element ID with its marker bit, e.g. `0x1A45DFA3`.
    pub id: u32,
    /// Data size; `None` for the unknown size.
    pub size: Option<u64>,
    /// Bytes taken by the ID and the size field.
    pub header_len: usize,
}

/// What reading an element header from a buffer gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRead {
    /// A complete header.
    Ok(ElementHeader),
    /// More bytes are needed.
    NeedMore,
    /// The ID is malformed (first byte zero or wider than 4 bytes).
    BadId,
    /// The size field is malformed (first byte zero).
    BadSize,
}

/// Reads an element header from the front of `buf` (at most 12 bytes used).
pub fn read_header(buf: &[u8]) -> HeaderRead {
    let (id, iw) = match read_id(buf) {
        VintRead::Ok(v, w) => (v as u32, w),
        VintRead::NeedMore(_) => return HeaderRead::NeedMore,
        VintRead::Invalid => return HeaderRead::BadId,
    };
    match read_size(&buf[iw..]) {
        VintRead::Ok(s, sw) => HeaderRead::Ok(ElementHeader {
            id,
            size: (s != UNKNOWN_SIZE).then_some(s),
            header_len: iw + sw,
        }),
        VintRead::NeedMore(_) => HeaderRead::NeedMore,
        VintRead::Invalid => HeaderRead::BadSize,
    }
}

/// Counts of what a bare walk saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalkStats {
    /// Element headers read.
    pub elements: u64,
    /// Bytes skipped as element bodies.
    pub skipped_bytes: u64,
}

/// Error of the bare walker: a malformed header at a stream offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed EBML element header at byte {offset}")]
pub struct WalkError {
    /// Stream offset of the bad header.
    pub offset: u64,
}

/// A schema-less EBML walk: descends into the elements `is_master` names and
/// skips every other body. It allocates nothing per element and is the
/// speed floor the Matroska parser is measured against.
#[derive(Debug)]
pub struct Walker<F: Fn(u32) -> bool> {
    queue: ChunkQueue,
    skip: u64,
    is_master: F,
    stats: WalkStats,
}

impl<F: Fn(u32) -> bool> Walker<F> {
    /// A walker that descends into the masters `is_master` accepts.
    pub fn new(is_master: F) -> Self {
        Self {
            queue: ChunkQueue::new(),
            skip: 0,
            is_master,
            stats: WalkStats::default(),
        }
    }

    /// Feeds a chunk and walks as far as it goes.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), WalkError> {
        self.queue.push(chunk);
        loop {
            if self.skip > 0 {
                let n = self.queue.skip(self.skip);
                self.skip -= n;
                self.stats.skipped_bytes += n;
                if self.skip > 0 {
                    return Ok(());
                }
            }
            let offset = self.queue.offset();
            match read_header(self.queue.peek(12)) {
                HeaderRead::Ok(h) => {
                    self.queue.skip(h.header_len as u64);
                    self.stats.elements += 1;
                    if !(self.is_master)(h.id) {
                        self.skip = h.size.unwrap_or(0);
                    }
                }
                HeaderRead::NeedMore => return Ok(()),
                HeaderRead::BadId | HeaderRead::BadSize => return Err(WalkError { offset }),
            }
        }
    }

    /// What the walk has seen so far.
    pub fn stats(&self) -> WalkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges_are_sliced_or_copied_without_consuming() {
        let mut q = ChunkQueue::new();
        let a = Bytes::from_static(b"hello ");
        q.push(a.clone());
        q.push(Bytes::from_static(b"big "));
        q.push(Bytes::from_static(b"world"));
        assert_eq!(&q.copy_range(4, 8)[..], b"o big wo");
        assert_eq!(&q.copy_range(10, 100)[..], b"world", "clamped");
        assert_eq!(q.len(), 15, "copy_range consumes nothing");
        q.skip(2);
        let parts = q.take_chunks(10);
        assert_eq!(parts.concat(), b"llo big wo");
        assert_eq!(parts[0].as_ptr(), a[2..].as_ptr(), "sliced, not copied");
        assert_eq!((q.len(), q.offset()), (3, 12));
        assert_eq!(q.take_chunks(3).concat(), b"rld");
        assert!(q.is_empty());
    }

    #[test]
    fn take_is_zero_copy_inside_a_chunk_and_copies_across() {
        let mut q = ChunkQueue::new();
        let a = Bytes::from_static(b"hello ");
        q.push(a.clone());
        q.push(Bytes::from_static(b"world"));
        let h = q.take(3);
        assert_eq!(&h[..], b"hel");
        assert_eq!(h.as_ptr(), a.as_ptr());
        assert_eq!(q.peek(5), b"lo wo");
        let s = q.take(5);
        assert_eq!(&s[..], b"lo wo");
        assert_eq!(q.offset(), 8);
        assert_eq!(q.skip(10), 3);
        assert!(q.is_empty());
    }
}
