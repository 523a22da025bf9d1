"""Every exception class comes from a real condition, with its attributes
and a note that says what to do."""

import datetime
import threading
import _thread
import time

import pytest

import kvs


def test_a_missing_stream_is_not_found(client):
    with pytest.raises(kvs.NotFoundError) as e:
        client.describe_stream("nope")
    assert isinstance(e.value, kvs.KvsError)
    assert e.value.code == "ResourceNotFoundException"
    assert e.value.retryable is False
    assert any("stream name" in n for n in e.value.__notes__)


def test_wrong_keys_are_access_denied():
    with kvs.LocalEndpoint(access_key_id="AKIDGOOD", secret_access_key="good") as ep:
        good = kvs.Client(region="us-east-1", endpoint_url=ep.endpoint_url,
                          access_key_id="AKIDGOOD", secret_access_key="good")
        good.create_stream("s", retention_hours=1)
        bad = kvs.Client(region="us-east-1", endpoint_url=ep.endpoint_url,
                         access_key_id="AKIDGOOD", secret_access_key="wrong")
        with pytest.raises(kvs.AccessDeniedError) as e:
            bad.describe_stream("s")
        assert any("credentials" in n for n in e.value.__notes__)


def test_throttling_is_throttled():
    with kvs.LocalEndpoint(faults=["throttle=1.0"]) as ep:
        c = kvs.Client(region="us-east-1", endpoint_url=ep.endpoint_url,
                       access_key_id="a", secret_access_key="b")
        with pytest.raises(kvs.ThrottledError) as e:
            c.list_streams()
        assert e.value.retryable is True
        assert e.value.code == "ClientLimitExceededException"


def test_no_endpoint_is_a_connection_failure():
    with kvs.LocalEndpoint() as ep:
        url = ep.endpoint_url
    c = kvs.Client(region="us-east-1", endpoint_url=url, access_key_id="a", secret_access_key="b")
    with pytest.raises(kvs.ConnectionFailedError) as e:
        c.list_streams()
    assert e.value.retryable is True


def test_a_frame_against_the_rules_is_invalid_media(client, clip):
    with client.producer("cam", video=kvs.H264()) as p:
        p.put_frame(clip[0][0], pts=1.0, key=True)
        p.put_frame(clip[1][0], pts=1.04)
        # Decode times must increase.
        with pytest.raises(kvs.InvalidMediaError) as e:
            p.put_frame(clip[2][0], pts=1.02)
        assert "not after" in str(e.value)
        assert e.value.kind == "InvalidFrame"


def test_bad_settings_are_config_errors(endpoint, monkeypatch, tmp_path):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(kvs.ConfigError):
        kvs.Client(endpoint_url=endpoint.endpoint_url, access_key_id="a", secret_access_key="b")
    with pytest.raises(kvs.ConfigError):
        kvs.Client(region="us-east-1", access_key_id="a")
    with pytest.raises(kvs.ConfigError):
        kvs.LocalEndpoint(faults=["no-such-fault=1"])
    with pytest.raises(ValueError):
        kvs.Client(region="us-east-1", endpoint_url=endpoint.endpoint_url,
                   access_key_id="a", secret_access_key="b").list_fragments(
            "x", datetime.datetime(2025, 1, 1), datetime.datetime(2025, 1, 2))


def test_ctrl_c_stops_a_blocked_iteration(client):
    client.create_stream("quiet", retention_hours=1)
    frames = client.frames("quiet", start="now")
    timer = threading.Timer(0.3, _thread.interrupt_main)
    began = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        next(frames)
    assert time.monotonic() - began < 2.0


def test_another_thread_runs_while_one_waits(client):
    client.create_stream("quiet", retention_hours=1)
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    began = time.monotonic()
    assert list(client.frames("quiet", start="now", idle_timeout=1.0)) == []
    waited = time.monotonic() - began
    stop.set()
    t.join()
    assert 0.9 < waited < 3.0
    # The waiting thread released the GIL: the other one ran freely.
    assert counter[0] > 100_000


def test_a_stream_that_exists_is_a_service_error(client):
    client.create_stream("twice", retention_hours=1)
    with pytest.raises(kvs.ServiceError) as e:
        client.create_stream("twice", retention_hours=1)
    assert e.value.code == "ResourceInUseException"
    assert e.value.retryable is False


def test_acks_that_do_not_come_in_time_are_a_timeout(clip):
    with kvs.LocalEndpoint(faults=["ack-delay-ms=3000"]) as ep:
        c = kvs.Client(region="us-east-1", endpoint_url=ep.endpoint_url,
                       access_key_id="a", secret_access_key="b")
        p = c.producer("slow", video=kvs.H264(), retention_hours=1)
        for i, (au, key) in enumerate(clip[:60]):
            p.put_frame(au, pts=i * 0.04, key=key)
        with pytest.raises(kvs.KvsTimeoutError) as e:
            p.finish(timeout=0.5)
        assert "acknowledged" in str(e.value)
        # Asked again: the same, at once — nothing passes as delivered.
        began = time.monotonic()
        with pytest.raises(kvs.KvsTimeoutError):
            p.finish(timeout=30)
        assert time.monotonic() - began < 1


def test_frames_that_cannot_play_are_invalid_media(client, clip):
    p = client.producer("unplayable", video=kvs.H264(), retention_hours=1)
    for bad in (b"", b"\x12\x34" * 100):
        with pytest.raises(kvs.InvalidMediaError):
            p.put_frame(bad, pts=0.0, key=True)
    for i, (au, key) in enumerate(clip[:50]):
        p.put_frame(au, pts=i * 0.04, key=key)
    p.finish()


def test_a_reader_that_never_connects_says_why():
    c = kvs.Client(region="us-east-1", endpoint_url="http://127.0.0.1:9",
                   access_key_id="a", secret_access_key="b")
    with pytest.raises(kvs.ConnectionFailedError):
        for _ in c.frames("s"):
            pass


def test_start_selectors_are_checked(client, clip):
    from conftest import put_clip

    put_clip(client, clip, stream="sel")
    numbers = [f["number"] for f in client.list_fragments("sel")]
    # A fragment number as an int, "EARLIEST" in capitals.
    after = list(client.frames("sel", start=int(numbers[0]), idle_timeout=1))
    assert after and after[0].fragment_number == numbers[1]
    assert len(list(client.frames("sel", start="EARLIEST", idle_timeout=1))) == 200
    with pytest.raises(TypeError, match="start="):
        client.frames("sel", start=3.5)
    with pytest.raises(TypeError, match="aware datetime"):
        client.list_fragments("sel", "2024-01-01", "2024-01-02")


def test_fragments_the_service_refused_are_lost_on_exit(client, clip):
    # Producer time a minute ahead of the clock: the service refuses every
    # fragment (InvalidProducerTimestamp, 4009...); leaving the with block
    # says so rather than passing as delivered.
    ahead = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
    with pytest.raises(kvs.FragmentsLostError) as e:
        with client.producer("ahead", video=kvs.H264(), start_time=ahead) as p:
            for i, (au, key) in enumerate(clip[:100]):
                p.put_frame(au, pts=i * 0.04, key=key)
    assert (e.value.fragments, e.value.frames) == (2, 100)
    assert e.value.code is not None and e.value.code.isdigit()
    assert "start_time" in " ".join(e.value.__notes__)
    assert client.list_fragments("ahead") == []
