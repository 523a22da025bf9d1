"""put_file: Annex-B and Matroska files upload whole, as `kvs put` does."""

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
