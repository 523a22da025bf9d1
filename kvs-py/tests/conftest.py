"""Shared set-up: a local endpoint per test, a client of it, and the
bundled clip (examples/media/clip.h264) as access units."""

import pathlib

import pytest

import kvs

MEDIA = pathlib.Path(__file__).resolve().parents[2] / "examples" / "media"


def nal_units(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B stream (ITU-T H.264 Annex B), trailing zero
    bytes dropped."""
    out = []
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        nal = data[s:end].rstrip(b"\x00")
        if nal:
            out.append(nal)
    return out


def access_units(path: pathlib.Path) -> list[tuple[bytes, bool]]:
    """(Annex-B access unit, key) pairs of a one-slice-per-picture H.264
    stream: each picture's slice ends its access unit."""
    aus = []
    current: list[bytes] = []
    for nal in nal_units(path.read_bytes()):
        current.append(nal)
        t = nal[0] & 0x1F
        if t in (1, 5):
            aus.append((b"".join(b"\x00\x00\x00\x01" + n for n in current), t == 5))
            current = []
    return aus


def avcc(au: bytes) -> bytes:
    """The access unit as a reader gets it back: 4-byte NAL lengths."""
    return b"".join(len(n).to_bytes(4, "big") + n for n in nal_units(au))


@pytest.fixture
def endpoint():
    with kvs.LocalEndpoint() as ep:
        yield ep


@pytest.fixture
def client(endpoint):
    return kvs.Client(
        region="us-east-1",
        endpoint_url=endpoint.endpoint_url,
        access_key_id="test",
        secret_access_key="test",
    )


@pytest.fixture(scope="session")
def clip():
    aus = access_units(MEDIA / "clip.h264")
    assert len(aus) == 200
    return aus


def put_clip(client, clip, stream="cam", **kw):
    """Streams the clip at 25 fps of producer time; returns the producer's
    events."""
    with client.producer(stream, video=kvs.H264(), retention_hours=1, **kw) as p:
        for i, (au, key) in enumerate(clip):
            p.put_frame(au, pts=i * 0.04, key=key)
    return p.events()
