"""put_file: Annex-B and Matroska files upload whole, as `kvs put` does."""

import datetime
import subprocess

import pytest
from conftest import MEDIA, avcc

import kvs


def test_an_annexb_file_uploads_whole(client, clip):
    assert client.put_file("f", MEDIA / "clip.h264", fps=25) == 200
    got = list(client.frames("f", start="earliest", idle_timeout=2))
    assert [bytes(f.data) for f in got] == [avcc(au) for au, _ in clip]
    # Its producer time ends now: the file's length back.
    fragments = client.list_fragments("f")
    assert len(fragments) == 4


def test_a_matroska_file_uploads_whole(client, tmp_path):
    src = tmp_path / "in.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-g", "25",
         "-c:a", "aac", "-pix_fmt", "yuv420p", str(src)],
        check=True,
    )
    n = client.put_file("m", src)
    got = list(client.frames("m", start="earliest", idle_timeout=2))
    assert len(got) == n
    assert {f.codec for f in got} == {"h264", "aac"}


def test_bad_files_say_what_is_wrong(client, tmp_path):
    with pytest.raises(FileNotFoundError):
        client.put_file("x", tmp_path / "missing.h264")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(kvs.ConfigError):
        client.put_file("x", tmp_path / "notes.txt")
    (tmp_path / "bad.mkv").write_bytes(b"\x1a\x45\xdf\xa3\x00\x00")
    with pytest.raises(kvs.InvalidMediaError) as e:
        client.put_file("x", tmp_path / "bad.mkv")
    assert "bad.mkv" in str(e.value)


def test_a_producer_puts_files_one_after_another(client, clip, tmp_path):
    # Two copies of the clip through one producer: the second plays after
    # the first, frame for frame the same; a file with a track the producer
    # lacks (AAC audio) is refused.
    with_audio = tmp_path / "av.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:v", "libx264", "-c:a", "aac",
         "-pix_fmt", "yuv420p", str(with_audio)],
        check=True,
    )
    # 16 s of video put at once: its producer time starts in the past (the
    # service refuses fragments from the future).
    began = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=20)
    with client.producer("two", video=kvs.H264(), wait_when_full=True, start_time=began) as p:
        assert p.put_file(MEDIA / "clip.h264", fps=25) == 200
        assert p.put_file(MEDIA / "clip.h264", fps=25) == 200
        with pytest.raises(kvs.ConfigError, match="track 2"):
            p.put_file(with_audio)
    got = list(client.frames("two", start="earliest", idle_timeout=2))
    assert [bytes(f.data) for f in got] == [avcc(au) for au, _ in clip] * 2
    pts = [f.pts for f in got]
    assert pts == sorted(pts) and len(set(pts)) == 400
    # One frame interval (40 ms at 25 fps) between the copies.
    assert pts[200] - pts[199] == pytest.approx(0.040, abs=0.002)


def test_data_retention_is_set_outright(client):
    client.create_stream("kept", retention_hours=24)
    for hours in (48, 2, 0):
        client.update_data_retention("kept", hours)
        assert client.describe_stream("kept")["retention_hours"] == hours
    with pytest.raises(kvs.NotFoundError):
        client.update_data_retention("no-such-stream", 1)
