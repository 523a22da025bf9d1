"""The examples in examples/python, run as a user runs them."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import MEDIA

EXAMPLES = MEDIA.parent / "python"


def moving_face(tmp_path):
    """Four seconds of scikit-image's public-domain astronaut photo moving
    across a grey frame, H.264 at 10 fps (a key frame each second)."""
    import skimage.data
    import skimage.io

    photo = tmp_path / "astronaut.png"
    skimage.io.imsave(photo, skimage.data.astronaut())
    out = tmp_path / "face.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=gray:size=640x480:rate=10:duration=4",
         "-i", str(photo), "-filter_complex", "[1]scale=240:-1[a];[0][a]overlay=x='20+t*80':y=120",
         "-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )
    return out


def env_for(endpoint_url):
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")
    env.pop("AWS_PROFILE", None)
    return env


def run_face_alerts(endpoint, extra=()):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "face_alerts.py"), "cam", "--endpoint-url", endpoint.endpoint_url,
         "--start", "earliest", "--idle-timeout", "3", *extra],
        check=True, capture_output=True, text=True, env=env_for(endpoint.endpoint_url), timeout=120,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_face_alerts_finds_the_moving_face(endpoint, client, tmp_path):
    client.put_file("cam", moving_face(tmp_path))
    events = run_face_alerts(endpoint)
    # Five pictures a second over four seconds, the face in every one.
    assert len(events) >= 15, events
    xs = [e["boxes"][0][0] for e in events]
    assert xs[-1] - xs[0] > 150, "the face moves right"
    pts = [e["pts"] for e in events]
    assert pts == sorted(pts) and pts[-1] - pts[0] > 3
    for e in events:
        assert e["stream"] == "cam" and e["fragment_number"].isdigit()
        assert e["producer_timestamp"].endswith("+00:00")
        x, y, w, h = e["boxes"][0]
        assert 80 <= y <= 260 and 40 <= w <= 200, e


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_kinesis():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_face_alerts_puts_events_into_kinesis(endpoint, client, tmp_path, moto_kinesis):
    import boto3

    kinesis = boto3.client("kinesis", region_name="us-east-1", endpoint_url=moto_kinesis,
                           aws_access_key_id="test", aws_secret_access_key="test")
    kinesis.create_stream(StreamName="alerts", ShardCount=1)
    client.put_file("cam", moving_face(tmp_path))
    events = run_face_alerts(endpoint, ["--kinesis-stream", "alerts", "--kinesis-endpoint-url", moto_kinesis])
    shard = kinesis.describe_stream(StreamName="alerts")["StreamDescription"]["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamName="alerts", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = kinesis.get_records(ShardIterator=it["ShardIterator"])["Records"]
    assert [json.loads(r["Data"]) for r in records] == events
    assert len(events) >= 15


def test_annotate_and_reingest_draws_boxes_into_a_second_stream(endpoint, client, tmp_path):
    import numpy as np

    client.put_file("cam", moving_face(tmp_path))
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "annotate_and_reingest.py"), "cam", "boxed",
         "--endpoint-url", endpoint.endpoint_url, "--start", "earliest", "--idle-timeout", "3"],
        check=True, capture_output=True, text=True, env=env_for(endpoint.endpoint_url), timeout=180,
    )
    assert out.stdout.strip() == "40 pictures annotated into boxed"
    pictures = list(client.frames("boxed", start="earliest", idle_timeout=3, decode="bgr24"))
    assert len(pictures) == 40
    # Green boxes: pixels far greener than the grey canvas and the photo.
    img = pictures[20].image.astype(int)
    green = (img[:, :, 1] > 180) & (img[:, :, 0] < 90) & (img[:, :, 2] < 90)
    assert green.sum() > 300
    # Same producer times as the source.
    source = [f.pts for f in client.frames("cam", start="earliest", idle_timeout=3)]
    assert abs(pictures[0].pts - source[0]) < 0.002


def test_the_notebook_saves_its_plots(tmp_path):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "notebook.py"), "--out", str(tmp_path), "--fps", "50"],
        check=True, capture_output=True, text=True, timeout=180,
    )
    fields = dict(kv.split("=") for kv in out.stdout.split())
    assert int(fields["frames"]) == 200
    assert float(fields["delay_p50_ms"]) < 1000
    for name in ("arrival.png", "ack_latency.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
