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

import datetime as _datetime
from typing import Any as _Any

from . import _kvs
from ._kvs import (
    AAC,
    AccessDeniedError,
    ConfigError,
    ConnectionFailedError,
    Fragment,
    FragmentIterator,
    Frame,
    FrameData,
    FrameIterator,
    G711,
    H264,
    H265,
    InvalidMediaError,
    KvsError,
    KvsTimeoutError,
    LocalEndpoint,
    NotFoundError,
    Producer,
    ServiceError,
    ThrottledError,
)

__all__ = [
    "AAC",
    "AccessDeniedError",
    "Client",
    "ConfigError",
    "ConnectionFailedError",
    "Fragment",
    "FragmentIterator",
    "Frame",
    "FrameData",
    "FrameIterator",
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
        start: str | _datetime.datetime | None = None,
        end: _datetime.datetime | None = None,
        idle_timeout: float | None = None,
        decode: str | None = None,
        sample_fps: float | None = None,
    ) -> _Any:
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
