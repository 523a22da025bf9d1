"""What is put comes back, frame for frame and byte for byte, through the
local endpoint: live frames, whole fragments, and an archived range."""

import datetime
import threading
import time

from conftest import avcc, put_clip

import kvs


def test_put_frames_come_back_byte_identical(client, clip):
    events = put_clip(client, clip)
    acked = [e for e in events if e["type"] == "acked"]
    assert len(acked) == 4, events
    assert all(e["latency"] >= 0 and len(e["fragment_number"]) == 47 for e in acked)
    got = list(client.frames("cam", start="earliest", idle_timeout=2))
    assert len(got) == len(clip)
    for i, (f, (au, key)) in enumerate(zip(got, clip)):
        assert f.track == 1
        assert f.key == key, i
        assert bytes(f.data) == avcc(au), f"frame {i} differs"
        assert isinstance(f.data, memoryview) and f.data.readonly
        assert f.pts_ns // 1_000_000 == got[0].pts_ns // 1_000_000 + i * 40
        assert abs(f.pts - f.pts_ns / 1e9) < 1e-6
        assert f.fragment_number and f.fragment_number.isdigit()
        assert f.producer_timestamp.tzinfo is not None
    # Four fragments, one per key frame, their numbers increasing.
    numbers = sorted({f.fragment_number for f in got})
    assert len(numbers) == 4


def test_fragments_and_an_archived_range(client, clip):
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=60)
    put_clip(client, clip, start_time=start)
    fragments = list(client.fragments("cam", start="earliest", idle_timeout=2))
    assert [len(f.frames) for f in fragments] == [50, 50, 50, 50]
    assert fragments[0].producer_timestamp == start.replace(
        microsecond=start.microsecond // 1000 * 1000
    )
    assert all(f.continuation_token for f in fragments)
    listed = client.list_fragments("cam")
    assert [x["number"] for x in listed] == [f.number for f in fragments]
    assert all(abs(x["duration"] - 2.0) < 0.05 for x in listed)
    # The middle two fragments (2 s to 6 s of producer time), from the archive.
    lo = start + datetime.timedelta(seconds=2)
    hi = start + datetime.timedelta(seconds=5.9)
    ranged = list(client.frames("cam", start=lo, end=hi))
    assert [bytes(f.data) for f in ranged] == [avcc(au) for au, _ in clip[50:150]]
    # A range given by listed timestamps, to the millisecond: exactly the
    # fragments stamped within it (no microsecond lost to a float).
    stamps = [x["producer_timestamp"] for x in listed]
    for a, b in [(0, 1), (1, 2), (1, 3), (0, 3)]:
        got = list(client.fragments("cam", start=stamps[a], end=stamps[b]))
        assert [f.number for f in got] == [x["number"] for x in listed[a:b + 1]]
    # Resuming after a fragment (its number or its continuation token).
    after = list(client.frames("cam", start=fragments[1].number, idle_timeout=2))
    assert len(after) == 100
    after_token = list(client.frames("cam", start=fragments[2].continuation_token, idle_timeout=2))
    assert len(after_token) == 50


def test_live_frames_arrive_while_the_fragment_is_open(client, clip):
    """A live reader gets each frame while its fragment is still being
    uploaded (no fragment stored yet)."""
    client.create_stream("live", retention_hours=1)
    frames = client.frames("live", start="now", idle_timeout=10)
    seen = []

    def read():
        for f in frames:
            seen.append(f)
            if len(seen) == 10:
                return

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)
    with client.producer("live", video=kvs.H264()) as p:
        for i, (au, key) in enumerate(clip[:10]):
            p.put_frame(au, pts=i * 0.04, key=key)
        reader.join(timeout=10)
        assert len(seen) == 10
        assert client.list_fragments("live") == []
        assert [bytes(f.data) for f in seen] == [avcc(au) for au, _ in clip[:10]]


def test_a_fragment_saved_as_mkv_plays_in_ffprobe(client, clip, tmp_path):
    import json
    import subprocess

    put_clip(client, clip)
    fragment = next(iter(client.fragments("cam", start="earliest", idle_timeout=2)))
    path = tmp_path / "fragment.mkv"
    path.write_bytes(fragment.to_mkv())
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    stream = json.loads(out)["streams"][0]
    assert stream["codec_name"] == "h264"
    assert (stream["width"], stream["height"]) == (640, 360)
    assert int(stream["nb_read_frames"]) == len(fragment.frames) == 50


def test_events_are_watched_as_they_come(client, clip):
    """Another thread follows the ACKs with events(timeout=...) while
    frames are put."""
    p = client.producer("watched", video=kvs.H264(), retention_hours=1)
    seen = []

    def watch():
        for e in p.events(timeout=5):
            seen.append(e)
            if sum(x["type"] == "acked" for x in seen) == 4:
                return

    t = threading.Thread(target=watch)
    t.start()
    for i, (au, key) in enumerate(clip):
        p.put_frame(au, pts=i * 0.04, key=key)
    p.finish(30)
    t.join(timeout=10)
    acked = [e for e in seen if e["type"] == "acked"]
    assert len(acked) == 4
    assert all(e["frames"] == 50 and e["latency"] >= 0 for e in acked)
    assert any(e["type"] == "connected" for e in seen)
    # The default timeout 0 does not wait: what is left comes at once, no
    # further ACK among it.
    began = time.monotonic()
    rest = list(p.events())
    assert time.monotonic() - began < 2
    assert all(e["type"] != "acked" for e in rest)
