"""Decoding frames to numpy pictures with PyAV (the FFmpeg binding): the
``decode=`` of :meth:`kvs.Client.frames` (extra ``kvs[decode]``).

H.264 and H.265 frames arrive as AVCC access units with their track's
CodecPrivate (avcC/hvcC), which FFmpeg's decoders take as ``extradata`` —
no parsing of the bitstream here. One decoder per track, kept across
fragments and made anew when the CodecPrivate changes; pictures come out
in presentation order (B-frames reordered by the decoder) and each is
handed back on the frame it belongs to, matched by its timestamp. Audio
frames pass through with ``image`` None.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._kvs import Frame, FrameIterator

FORMATS = ("bgr24", "rgb24", "gray")


_REUSE_BELOW = 8 << 20


def _reuse_picture_buffers() -> None:
    """Lets the C allocator reuse picture buffers rather than map them
    afresh for each picture.

    Every picture allocates a few buffers of its size (FFmpeg's converted
    frame, the numpy array: 0.7 MB at 640x360 BGR). glibc's malloc hands
    the top of its heap back to the system once more than twice its mmap
    threshold is free there, and that threshold only grows as large blocks
    are freed (mallopt(3), "M_MMAP_THRESHOLD": dynamic). Left at what a
    process's history made it (the size of one picture, say), the buffers
    were returned and faulted in again for most pictures: ~45 page faults a
    picture at 640x360 (``perf stat -e page-faults``: 170,000-190,000 for
    4,000 pictures, 9,800 after this; PyAV decoding the file itself, 7,900). Freeing one untouched 8 MiB block raises the threshold to
    8 MiB (16 MiB before the heap top is handed back), so smaller buffers
    are reused; nothing is written, nothing stays allocated. Other
    allocators ignore it.
    """
    import numpy

    block = numpy.empty(_REUSE_BELOW, dtype=numpy.uint8)
    del block


class Decoder:
    """Pictures for frames, in presentation order per track."""

    def __init__(self, fmt: str, sample_fps: float | None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"decode= must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if sample_fps is not None and not sample_fps > 0:
            raise ValueError(f"sample_fps must be > 0, not {sample_fps!r}")
        try:
            import av  # noqa: F401  (checked here: a clear message if missing)
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("decode= needs PyAV: pip install 'kvs[decode]' (or av and numpy)") from e
        self.fmt = fmt
        self.step_ns = None if sample_fps is None else int(1e9 / sample_fps)
        self.tracks: dict[int, _Track] = {}
        _reuse_picture_buffers()

    def push(self, frame: Frame) -> list[Frame]:
        """Takes a frame; returns the frames now ready (video with their
        ``image`` set, audio as it is)."""
        t = self.tracks.get(frame.track)
        if t is None:
            if frame.codec not in ("h264", "h265"):
                return [frame]
            t = self.tracks[frame.track] = _Track(frame.codec, frame.codec_private)
            return t.push(self, frame)
        # A new CodecPrivate comes with a new fragment, at a key frame.
        if frame.key:
            private = frame.codec_private
            if t.codec_private != private:
                out = t.flush(self)
                t = self.tracks[frame.track] = _Track(t.codec, private)
                return out + t.push(self, frame)
        return t.push(self, frame)

    def finish(self) -> list[Frame]:
        """The pictures the decoders still hold (at the end of the input)."""
        out: list[Any] = []
        for t in self.tracks.values():
            out += t.flush(self)
        return out


class _Track:
    def __init__(self, codec: str, codec_private: bytes | None) -> None:
        import av

        self.av: Any = av  # PyAV takes any buffer for a Packet; its stubs say bytes
        self.codec = codec
        self.codec_private = codec_private
        self.ctx = av.CodecContext.create("h264" if codec == "h264" else "hevc", "r")
        if codec_private:
            self.ctx.extradata = codec_private
        self.pending: dict[int, Any] = {}
        self.started = False
        self.last_key: int | None = None
        self.key_interval: int | None = None
        self.next_due: int | None = None

    def push(self, d: Decoder, frame: Frame) -> list[Frame]:
        pts_ns = frame.pts_ns
        if frame.key:
            if self.last_key is not None and pts_ns > self.last_key:
                self.key_interval = pts_ns - self.last_key
            self.last_key = pts_ns
        if not self.started:
            if not frame.key:
                return []  # started inside a GOP: nothing decodes before a key frame
            self.started = True
        # Sampling at most one picture a step: with key frames at most a
        # step apart (N no more than the key-frame rate), the key frames
        # alone are enough and nothing else is decoded.
        if (
            d.step_ns is not None
            and not frame.key
            and self.key_interval is not None
            and self.key_interval <= d.step_ns
        ):
            return []
        # One copy, into FFmpeg's packet. Its pts is the frame's (ns) and
        # comes back on the picture; no time base is set (none is needed to
        # decode, and a Fraction per packet cost ~10% of small-frame decoding).
        packet = self.av.Packet(frame.data)
        packet.pts = pts_ns
        self.pending[pts_ns] = frame
        return self._pictures(d, self.ctx.decode(packet))

    def flush(self, d: Decoder) -> list[Any]:
        out = self._pictures(d, self.ctx.decode(None)) if self.started else []
        self.pending.clear()
        return out

    def _pictures(self, d: Decoder, pictures: Any) -> list[Any]:
        out = []
        for pic in pictures:
            frame = self.pending.pop(pic.pts, None)
            # Frames shown before this one whose pictures never came (a
            # decoding error) are given up.
            for pts in [p for p in self.pending if pic.pts is not None and p < pic.pts]:
                del self.pending[pts]
            if frame is None:
                continue
            if d.step_ns is not None:
                if self.next_due is not None and frame.pts_ns < self.next_due:
                    continue
                self.next_due = frame.pts_ns + d.step_ns
            frame.image = pic.to_ndarray(format=d.fmt)
            out.append(frame)
        return out


class DecodedFrames:
    """An iterator (``for`` and ``async for``) of frames with ``image`` set."""

    def __init__(self, frames: FrameIterator, fmt: str, sample_fps: float | None) -> None:
        self._frames = frames
        self._decoder = Decoder(fmt, sample_fps)
        self._ready: list[Frame] = []
        self._done = False

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        while not self._ready:
            if self._done:
                raise StopIteration
            try:
                frame = next(self._frames)
            except StopIteration:
                self._done = True
                self._ready = self._decoder.finish()
                continue
            self._ready = self._decoder.push(frame)
        return self._ready.pop(0)

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self

    async def __anext__(self) -> Frame:
        while not self._ready:
            if self._done:
                raise StopAsyncIteration
            try:
                frame = await self._frames.__anext__()
            except StopAsyncIteration:
                self._done = True
                self._ready = self._decoder.finish()
                continue
            self._ready = self._decoder.push(frame)
        return self._ready.pop(0)

    def close(self) -> None:
        """Stops reading."""
        self._frames.close()
