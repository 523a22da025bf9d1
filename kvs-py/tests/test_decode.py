"""decode=: pictures equal to FFmpeg's own decode of the same stream, B-frames
in presentation order, H.265, sampling."""

import subprocess

import av
import pytest
import numpy as np
from conftest import MEDIA, put_clip

import kvs


def ffmpeg_pictures(path, fmt, w, h):
    """FFmpeg's decode of a file, picture by picture, in presentation order."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-fps_mode", "passthrough",
         "-f", "rawvideo", "-pix_fmt", fmt, "-"],
        check=True, capture_output=True,
    ).stdout
    shape = (h, w) if fmt == "gray" else (h, w, 3)
    size = int(np.prod(shape))
    return [np.frombuffer(raw[i:i + size], np.uint8).reshape(shape) for i in range(0, len(raw), size)]


def test_pictures_are_ffmpegs_own(client, clip):
    put_clip(client, clip)
    for fmt in ("gray", "bgr24", "rgb24"):
        got = list(client.frames("cam", start="earliest", idle_timeout=2, decode=fmt))
        want = ffmpeg_pictures(MEDIA / "clip.h264", fmt, 640, 360)
        assert len(got) == len(want) == 200
        for i, (f, w) in enumerate(zip(got, want)):
            assert f.image.dtype == np.uint8 and f.image.shape == w.shape
            assert np.array_equal(f.image, w), f"{fmt} picture {i} differs"


def encode(tmp_path, codec):
    """Three seconds of a test pattern, a key frame each second, two
    B-frames between references, in Matroska."""
    out = tmp_path / f"{codec}.mkv"
    args = {
        "h264": ["-c:v", "libx264", "-bf", "2", "-g", "25"],
        "h265": ["-c:v", "libx265", "-x265-params", "bframes=2:keyint=25:min-keyint=25:log-level=none"],
    }[codec]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
         *args, "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )
    return out


def demux(path):
    """The track's CodecPrivate and its packets (AVCC/HVCC data, pts, dts
    in seconds, key) in decode order. Matroska stores presentation times
    only: decode times are the sorted presentation times, moved back by the
    reordering delay so none is after its presentation time."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        extradata = bytes(s.codec_context.extradata)
        raw = [(bytes(p), float(p.pts * p.time_base), p.is_keyframe) for p in c.demux(s) if p.size]
    order = sorted(pts for _, pts, _ in raw)
    delay = max(0.0, max(o - pts for o, (_, pts, _) in zip(order, raw)))
    packets = [(data, pts, o - delay, key) for o, (data, pts, key) in zip(order, raw)]
    return extradata, packets


def round_trip(client, tmp_path, codec):
    src = encode(tmp_path, codec)
    extradata, packets = demux(src)
    assert any(pts != dts for _, pts, dts, _ in packets), "the stream has B-frames"
    track = kvs.H264(codec_private=extradata) if codec == "h264" else kvs.H265(codec_private=extradata)
    with client.producer(codec, video=track, retention_hours=1) as p:
        for data, pts, dts, key in packets:
            # Shifted so the first decode time is not before the start.
            p.put_frame(data, pts=pts + 1.0, dts=dts + 1.0, key=key)
    got = list(client.frames(codec, start="earliest", idle_timeout=2, decode="gray"))
    want = ffmpeg_pictures(src, "gray", 320, 240)
    assert len(got) == len(packets) == len(want) == 75
    # Presentation order, each picture with its own time.
    assert all(a.pts_ns < b.pts_ns for a, b in zip(got, got[1:]))
    for i, (f, w) in enumerate(zip(got, want)):
        assert np.array_equal(f.image, w), f"{codec} picture {i} differs"


def test_h264_with_b_frames_comes_in_presentation_order(client, tmp_path):
    round_trip(client, tmp_path, "h264")


def test_h265_with_b_frames(client, tmp_path):
    round_trip(client, tmp_path, "h265")


def test_sampling_decodes_only_what_it_yields(client, clip):
    put_clip(client, clip)
    # Key frames every 2 s: at 0.5 pictures a second they are enough.
    slow = list(client.frames("cam", start="earliest", idle_timeout=2, decode="gray", sample_fps=0.5))
    assert [f.key for f in slow] == [True] * 4
    fast = list(client.frames("cam", start="earliest", idle_timeout=2, decode="gray", sample_fps=5))
    assert 38 <= len(fast) <= 40
    assert all(b.pts_ns - a.pts_ns >= 200_000_000 for a, b in zip(fast, fast[1:]))


def test_bad_decode_arguments(client):
    import pytest

    with pytest.raises(ValueError):
        client.frames("cam", decode="yuv9")
    with pytest.raises(ValueError):
        client.frames("cam", sample_fps=2)


def test_put_image_encodes_pictures_that_decode_back(client):
    # A smooth picture (gradients), moved a little each time.
    y, x = np.mgrid[0:120, 0:160]
    base = np.stack([x * 255 // 159, y * 255 // 119, np.full_like(x, 128)], axis=2).astype(np.uint8)
    with client.producer("img", video=kvs.H264(), retention_hours=1) as p:
        for i in range(30):
            picture = np.roll(base, i * 4, axis=1)
            p.put_image(picture, pts=i * 0.1, key_interval=1.0)
    got = list(client.frames("img", start="earliest", idle_timeout=2, decode="bgr24"))
    assert len(got) == 30
    assert sum(f.key for f in got) == 3
    # Lossy, but close: the mean error of a picture is small.
    err = np.abs(got[5].image.astype(int) - np.roll(base, 20, axis=1).astype(int)).mean()
    assert err < 8, err
    with pytest.raises(ValueError):
        with client.producer("img2", video=kvs.H264()) as p:
            p.put_image(np.zeros((121, 160, 3), np.uint8), pts=0.0)
