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
