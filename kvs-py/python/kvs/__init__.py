"""kvs: Amazon Kinesis Video Streams for Python, on a Rust core.

Read live or archived video frame by frame, upload with a producer that
loses nothing across dropped connections, and test all of it against an
in-process endpoint — no AWS account needed::

    import kvs

    with kvs.LocalEndpoint() as ep:
        client = kvs.Client(region="us-east-1", endpoint_url=ep.endpoint_url,
                            access_key_id="test", secret_access_key="test")
        with client.producer("front-door", video=kvs.H264()) as p:
            p.put_frame(access_unit, pts=0.0, key=True)
        for frame in client.frames("front-door", start="earliest", idle_timeout=2):
            print(frame.pts, frame.key, len(frame.data))

Times: ``pts`` in seconds (float) and ``pts_ns`` in nanoseconds (int),
producer time since the epoch; timestamps are aware UTC datetimes.
Errors derive from :class:`KvsError`.
"""

from __future__ import annotations

import datetime as _datetime
import os as _os
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from . import _kvs

if _TYPE_CHECKING:
    from ._decode import DecodedFrames
from ._kvs import (
    AAC,
    AccessDeniedError,
    ConfigError,
    ConnectionFailedError,
    EventIterator,
    Fragment,
    FragmentIterator,
    Frame,
    FrameData,
    FrameIterator,
    FragmentsLostError,
    G711,
    H264,
    H265,
    InvalidMediaError,
    KvsError,
    KvsTimeoutError,
    LocalEndpoint,
    NotFoundError,
    ServiceError,
    ThrottledError,
)

__all__ = [
    "AAC",
    "AccessDeniedError",
    "Client",
    "ConfigError",
    "ConnectionFailedError",
    "EventIterator",
    "Fragment",
    "FragmentIterator",
    "Frame",
    "FrameData",
    "FrameIterator",
    "FragmentsLostError",
    "G711",
    "H264",
    "H265",
    "InvalidMediaError",
    "KvsError",
    "KvsTimeoutError",
    "LocalEndpoint",
    "NotFoundError",
    "Producer",
    "ServiceError",
    "ThrottledError",
]


class Client(_kvs.Client):
    """A client of Kinesis Video Streams (or of a local endpoint); see the
    native class for the arguments, credentials and errors."""

    def frames(  # type: ignore[override]
        self,
        stream: str,
        start: str | int | _datetime.datetime | None = None,
        end: _datetime.datetime | None = None,
        idle_timeout: float | None = None,
        decode: str | None = None,
        sample_fps: float | None = None,
    ) -> FrameIterator | DecodedFrames:
        """The frames of a stream, each as soon as it arrives (``for`` and
        ``async for``); ``start``, ``end`` and ``idle_timeout`` as the native
        ``Client.frames``.

        ``decode``: "bgr24", "rgb24" or "gray" sets each video frame's
        ``image`` to its picture, a ``(height, width, 3)`` (or ``(height,
        width)``) uint8 numpy array ready for OpenCV, through PyAV (extra
        ``kvs[decode]``); H.264 and H.265, pictures in presentation order
        (B-frames reordered), a decoder per track kept across fragments and
        made anew when the CodecPrivate changes, nothing yielded before the
        first key frame. ``sample_fps``: at most that many pictures a second
        (only key frames are decoded when they are far enough apart). Audio
        frames come with ``image`` None.

        Raises ValueError for an unknown ``decode`` or a ``sample_fps`` ≤ 0,
        ImportError without PyAV, and what the native method raises.
        """
        frames = super().frames(stream, start, end, idle_timeout)
        if decode is None:
            if sample_fps is not None:
                raise ValueError("sample_fps= needs decode=")
            return frames
        from ._decode import DecodedFrames

        return DecodedFrames(frames, decode, sample_fps)

    def producer(  # type: ignore[override]
        self,
        stream: str,
        video: H264 | H265 | None = None,
        audio: AAC | G711 | None = None,
        create_if_missing: bool = True,
        retention_hours: int = 24,
        start_time: _datetime.datetime | None = None,
        wait_when_full: bool = False,
        finish_timeout: float = 30.0,
    ) -> Producer:
        """A producer of ``stream`` (see :class:`Producer`): a context
        manager that, leaving the block, waits up to ``finish_timeout``
        seconds for every fragment's ACK. ``video``: ``kvs.H264(...)`` or
        ``kvs.H265(...)`` (track 1); ``audio``: ``kvs.AAC(...)`` or
        ``kvs.G711(...)`` (track 2, or 1 without video);
        ``create_if_missing`` creates the stream with ``retention_hours``;
        ``start_time`` (aware datetime, default now) is the producer time
        of pts 0 — put a file faster than real time and it must lie that
        far in the past, as the service refuses producer times ahead of its
        clock; ``wait_when_full`` makes put_frame wait for ACKs when the
        buffer is full instead of dropping the oldest fragment (right for
        files). Raises NotFoundError (no stream, and not created),
        AccessDeniedError, ConnectionFailedError, ConfigError."""
        return Producer(
            super().producer(
                stream, video, audio, create_if_missing, retention_hours, start_time, wait_when_full
            ),
            finish_timeout,
        )


class Producer:
    """A producer of one stream (from :meth:`Client.producer`): a context
    manager that, on exit, waits until every fragment is acknowledged.

    ``put_frame``, ``tag_next_fragment``, ``events`` and ``finish`` are the
    native producer's; ``put_image`` encodes pictures to H.264 first.
    """

    def __init__(self, native: _kvs.Producer, finish_timeout: float = 30.0) -> None:
        self._native = native
        self._encoder: _Any = None
        self._finish_timeout = finish_timeout

    def put_frame(
        self,
        data: _Any,
        pts: float,
        key: bool = False,
        track: int | None = None,
        dts: float | None = None,
    ) -> None:
        """Puts one frame. ``data``: bytes-like — an H.264/H.265 access
        unit (Annex-B or AVCC, told apart by its start code) or an audio
        frame. ``pts``: seconds since the producer's start time; ``dts``:
        the decode time when it differs (B-frames). ``key``: a key frame
        (every audio frame is one). ``track``: 1 for video (or the only
        track), 2 for audio beside video; default the video track.

        Blocks (GIL released) only while the buffer is full with
        ``wait_when_full``. Raises InvalidMediaError for a frame that
        breaks the rules (empty; decode times must increase per track; a
        key frame at least every 20 s; the first key frame Annex-B with its
        parameter sets unless the format has them), KvsError after finish.
        """
        self._native.put_frame(data, pts, key, track, dts)

    def put_image(self, image: _Any, pts: float, key_interval: float = 2.0) -> None:
        """Encodes a picture — a ``(height, width, 3)`` BGR or ``(height,
        width)`` gray uint8 numpy array, as OpenCV has them — to H.264 with
        PyAV (libx264, no B-frames, no delay) and puts it on the video track
        (created ``video=kvs.H264()``). ``pts`` in seconds from the
        producer's start; a key frame at least every ``key_interval``
        seconds. Raises ValueError for a picture of another shape or size,
        ImportError without PyAV, and what ``put_frame`` raises."""
        from ._encode import ImageEncoder

        if self._encoder is None:
            self._encoder = ImageEncoder(key_interval)
        for unit, t, key in self._encoder.encode(image, pts):
            self._native.put_frame(unit, t, key)

    def put_file(self, path: str | _os.PathLike[str], fps: float = 25.0, realtime: bool = False) -> int:
        """Puts a video file's frames on this producer's timeline (see the
        native ``Producer.put_file``); returns how many were put."""
        return self._native.put_file(path, fps, realtime)

    def tag_next_fragment(self, name: str, value: str) -> None:
        """Adds a metadata tag to the next fragment to close."""
        self._native.tag_next_fragment(name, value)

    def events(self, timeout: float = 0.0) -> EventIterator:
        """The producer's events as they come: an iterator of dicts with a
        "type": "acked" (fragment_number, producer_timestamp, latency in
        seconds, frames), "service_error" (code, name, retriable,
        fragment_number, producer_timestamp), "fragment_dropped"
        (producer_timestamp, frames, reason), "connected", "disconnected",
        "reconnecting", "rotating", "leading_frames_skipped", "stats",
        "events_lost" (at most 256 are kept unread). Each step waits up to
        ``timeout`` seconds (GIL released); the iteration ends when none
        comes in that time — with the default 0, once the events so far
        are read: ``list(p.events())``."""
        return self._native.events(timeout)

    def finish(self, timeout: float = 30.0) -> None:
        """Puts what the picture encoder still holds, closes the open
        fragment and waits until every fragment is acknowledged."""
        if self._encoder is not None:
            for unit, t, key in self._encoder.flush():
                self._native.put_frame(unit, t, key)
            self._encoder = None
        self._native.finish(timeout)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.finish(self._finish_timeout)
        except Exception:
            if exc_type is None:
                raise
