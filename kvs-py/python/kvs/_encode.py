"""Encoding pictures to H.264 with PyAV (libx264) for ``Producer.put_image``
(extra ``kvs[decode]``): each picture is encoded as it comes — no B-frames,
no look-ahead — so its access unit (Annex-B, SPS/PPS in front of each key
frame) is put at once; a key frame at least every ``key_interval`` seconds.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

_MS = Fraction(1, 1000)


class ImageEncoder:
    """numpy pictures (BGR, RGB or gray uint8) in, H.264 access units out."""

    def __init__(self, key_interval: float = 2.0) -> None:
        try:
            import av  # noqa: F401
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("put_image needs PyAV: pip install 'kvs[decode]' (or av and numpy)") from e
        self.key_interval = key_interval
        self.ctx: Any = None
        self.size: tuple[int, int] | None = None
        self.last_key: float | None = None

    def encode(self, image: Any, pts: float) -> list[tuple[bytes, float, bool]]:
        """(access unit, pts in seconds, key) for what the encoder gives."""
        import av

        if image.ndim == 2:
            fmt = "gray"
        elif image.ndim == 3 and image.shape[2] == 3:
            fmt = "bgr24"
        else:
            raise ValueError(f"a picture must be (height, width) or (height, width, 3) uint8, not {image.shape}")
        h, w = image.shape[:2]
        if self.ctx is None:
            if w % 2 or h % 2:
                raise ValueError(f"H.264 (4:2:0) needs an even width and height, not {w}x{h}")
            self.ctx = av.CodecContext.create("libx264", "w")
            self.ctx.width, self.ctx.height = w, h
            self.ctx.pix_fmt = "yuv420p"
            self.ctx.time_base = _MS
            self.ctx.options = {"tune": "zerolatency", "bf": "0"}
            self.size = (w, h)
        elif self.size is not None and self.size != (w, h):
            raise ValueError(f"every picture must be {self.size[0]}x{self.size[1]}, not {w}x{h}")
        frame = av.VideoFrame.from_ndarray(image, format=fmt).reformat(format="yuv420p")
        frame.pts = round(pts * 1000)
        frame.time_base = _MS
        if self.last_key is None or pts - self.last_key >= self.key_interval:
            frame.pict_type = av.video.frame.PictureType.I
            self.last_key = pts
        return self._units(self.ctx.encode(frame))

    def flush(self) -> list[tuple[bytes, float, bool]]:
        """What the encoder still holds."""
        return [] if self.ctx is None else self._units(self.ctx.encode(None))

    @staticmethod
    def _units(packets: Any) -> list[tuple[bytes, float, bool]]:
        return [(bytes(p), float(p.pts) / 1000.0, bool(p.is_keyframe)) for p in packets]
