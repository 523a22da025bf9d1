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


def config(stream, url, clip):
    return km.ProducerConfig(
        stream_name=stream, region="us-east-1", endpoint_url=url,
        video=km.VideoFormat(codec=km.VideoCodec.H264, width=640, height=360,
                             parameter_sets=clip.parameter_sets, nal_format=km.NalFormat.AVCC),
        audio=km.AudioFormat.AAC(sample_rate=clip.sample_rate, channels=clip.channels,
                                 audio_specific_config=None),
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
    asyncio.run(p.finish(1_000))
