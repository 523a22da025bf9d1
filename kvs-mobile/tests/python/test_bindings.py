"""The phone scenario through the UniFFI-generated Python bindings of
kvs-mobile (not the `kvs` package): VideoToolbox-style AVCC with AAC, a
network change and a pause, read back byte for byte; the listener called
off the caller's thread; typed errors."""

import asyncio
import os
import pathlib
import sys
import threading

import pytest

sys.path.insert(0, os.environ["KVS_MOBILE_BINDINGS"])
import kvs_mobile as km  # noqa: E402

MEDIA = str(pathlib.Path(__file__).resolve().parents[3] / "examples" / "media")


class Recorder(km.ProducerListener):
    def __init__(self):
        self.acks = []
        self.threads = set()
        self.states = []

    def on_ack(self, fragment, latency_ms):
        self.threads.add(threading.current_thread().name)
        self.acks.append(fragment)

    def on_error(self, code, retriable, message):
        self.threads.add(threading.current_thread().name)

    def on_fragment_dropped(self, reason, frames):
        pass

    def on_connection_state(self, state):
        self.threads.add(threading.current_thread().name)
        self.states.append(state)

    def on_stats(self, stats):
        pass


class Keys(km.CredentialsProvider):
    def credentials(self):
        return km.TemporaryCredentials(access_key_id="test", secret_access_key="test",
                                       session_token=None, expiration_ms=None)


def config(stream, url, clip, audio=True):
    return km.ProducerConfig(
        stream_name=stream, region="us-east-1", endpoint_url=url,
        video=km.VideoFormat(codec=km.VideoCodec.H264, width=640, height=360,
                             parameter_sets=clip.parameter_sets, nal_format=km.NalFormat.AVCC),
        audio=km.AudioFormat.AAC(sample_rate=clip.sample_rate, channels=clip.channels,
                                 audio_specific_config=None) if audio else None,
        max_buffer_bytes=0, max_buffer_duration_ms=0, create_if_missing=True, retention_hours=1)


@pytest.fixture
def endpoint():
    ep = km.TestEndpoint([], None, None)
    yield ep
    ep.shutdown()


def test_a_phone_stream_reads_back_whole(endpoint):
    clip = km.test_clip(MEDIA, km.EncoderStyle.VIDEO_TOOLBOX)
    puts = sorted([(f.pts_us, 1, f) for f in clip.video] + [(f.pts_us, 2, f) for f in clip.audio],
                  key=lambda p: p[0])
    rec = Recorder()
    p = km.KvsProducer(config("py-phone", endpoint.url(), clip), Keys(), rec)
    for i, (pts, track, f) in enumerate(puts):
        if i == len(puts) // 3:
            p.network_changed()
        if i == len(puts) // 2:
            p.pause()
        if i == 2 * len(puts) // 3:
            p.resume()
        if track == 1:
            p.put_video_frame(f.data, pts, None, f.key)
        else:
            p.put_audio_frame(f.data, pts)
    report = asyncio.run(p.finish(20_000))
    assert (report.delivered_frames, report.dropped_fragments) == (len(puts), 0)
    assert rec.acks and threading.current_thread().name not in rec.threads
    assert km.ConnectionState.PAUSED in rec.states
    got = km.read_stream(endpoint.url(), "py-phone", len(puts), 20_000, "test", "test")
    for track in (1, 2):
        want = [f.stored for _, t, f in puts if t == track]
        have = [g.data for g in sorted((g for g in got if g.track == track), key=lambda g: g.pts_ms)]
        assert have == want


def test_rules_are_typed_errors(endpoint):
    clip = km.test_clip(MEDIA, km.EncoderStyle.VIDEO_TOOLBOX)
    p = km.KvsProducer(config("py-rules", endpoint.url(), clip), Keys(), Recorder())
    delta = next(f for f in clip.video if not f.key)
    with pytest.raises(km.KvsError.InvalidFrame) as e:
        p.put_video_frame(delta.data, 0, None, False)
    assert "key frame" in str(e.value)
    bad = config("py-rules", "not a url", clip)
    with pytest.raises(km.KvsError.Config):
        km.KvsProducer(bad, Keys(), Recorder())
    for name in ("", "with space", "ü-stream", "x" * 257):
        with pytest.raises(km.KvsError.Config, match="stream name"):
            km.KvsProducer(config(name, endpoint.url(), clip), Keys(), Recorder())
    with pytest.raises(km.KvsError.InvalidFrame, match="SPS"):
        p.set_video_parameter_sets([b"\x01\x02\x03"])
    asyncio.run(p.finish(1_000))


def test_declared_framing_is_checked_when_put(endpoint):
    clip = km.test_clip(MEDIA, km.EncoderStyle.MEDIA_CODEC)  # Annex-B frames
    p = km.KvsProducer(config("py-framing", endpoint.url(), clip), Keys(), Recorder())  # declares AVCC
    with pytest.raises(km.KvsError.InvalidFrame, match="AVCC"):
        p.put_video_frame(clip.video[0].data, 0, None, True)
    with pytest.raises(km.KvsError.InvalidFrame):
        p.put_video_frame(clip.video[0].data, -2**63, None, True)  # no overflow either
    asyncio.run(p.finish(1_000))
    with pytest.raises(km.KvsError.Finished):
        p.set_video_parameter_sets(clip.parameter_sets)


class Throwing(Recorder):
    """Throws from every state callback; ACKs are still recorded."""

    def on_connection_state(self, state):
        raise RuntimeError("the app's callback failed")


def test_a_listener_that_throws_still_hears_what_follows(endpoint):
    clip = km.test_clip(MEDIA, km.EncoderStyle.VIDEO_TOOLBOX)
    rec = Throwing()
    p = km.KvsProducer(config("py-throws", endpoint.url(), clip, audio=False), Keys(), rec)
    for f in clip.video:
        p.put_video_frame(f.data, f.pts_us, None, f.key)
    report = asyncio.run(p.finish(20_000))
    assert report.delivered_frames == len(clip.video)
    # Heard before finish returned (each failure is also reported on
    # stderr by Rust's panic hook).
    assert len(rec.acks) == report.delivered_fragments >= 4


def test_a_program_that_exits_after_finish_exits_cleanly(endpoint, tmp_path):
    # No del: the interpreter shuts down with the finished producer and its
    # listener still referenced, and must not abort (five runs: a race
    # would show).
    script = tmp_path / "exit.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {os.environ['KVS_MOBILE_BINDINGS']!r})
sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})
import asyncio, kvs_mobile as km
from test_bindings import Recorder, Keys, config, MEDIA
clip = km.test_clip(MEDIA, km.EncoderStyle.VIDEO_TOOLBOX)
p = km.KvsProducer(config("py-exit", {endpoint.url()!r}, clip, audio=False), Keys(), Recorder())
for f in clip.video[:60]:
    p.put_video_frame(f.data, f.pts_us, None, f.key)
asyncio.run(p.finish(10_000))
print("done")
""")
    import subprocess

    for _ in range(5):
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stdout.strip()) == (0, "done"), r.stderr[-2000:]
