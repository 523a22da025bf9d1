"""Cameras → Kinesis Video Streams → face detection → alerts.

Follows a stream, decodes a few pictures a second, finds faces with
OpenCV's bundled Haar cascade, and for each picture with faces writes one
JSON event to stdout — stream, fragment number, producer timestamp (UTC),
pts (seconds since the epoch) and the boxes (x, y, width, height in
pixels) — and, with ``--kinesis-stream``, puts it into a Kinesis data
stream with boto3 for whatever raises the alarm.

    python face_alerts.py front-door                      # live, AWS
    python face_alerts.py front-door --endpoint-url http://127.0.0.1:4567 \\
        --start earliest --idle-timeout 5                 # a local endpoint

Credentials and region come as boto3 finds them (environment, profiles …).
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2

import kvs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stream", help="the Kinesis video stream to watch")
    ap.add_argument("--endpoint-url", help="a local endpoint or other KVS URL")
    ap.add_argument("--region")
    ap.add_argument("--start", default="now", help='"now" (default), "earliest", or a fragment number')
    ap.add_argument("--idle-timeout", type=float, help="stop after this many seconds without a frame")
    ap.add_argument("--sample-fps", type=float, default=5.0, help="pictures examined a second (default 5)")
    ap.add_argument("--min-size", type=int, default=40, help="smallest face, pixels (default 40)")
    ap.add_argument("--kinesis-stream", help="also put each event into this Kinesis data stream")
    ap.add_argument("--kinesis-endpoint-url", help="the Kinesis endpoint (e.g. a local moto server)")
    args = ap.parse_args(argv)

    client = kvs.Client(region=args.region, endpoint_url=args.endpoint_url)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    kinesis = None
    if args.kinesis_stream:
        import boto3

        kinesis = boto3.client("kinesis", region_name=client.region, endpoint_url=args.kinesis_endpoint_url)

    frames = client.frames(
        args.stream,
        start=args.start,
        idle_timeout=args.idle_timeout,
        decode="gray",
        sample_fps=args.sample_fps,
    )
    for frame in frames:
        if frame.image is None:
            continue
        boxes = cascade.detectMultiScale(
            frame.image, scaleFactor=1.1, minNeighbors=5, minSize=(args.min_size, args.min_size)
        )
        if len(boxes) == 0:
            continue
        event = {
            "stream": args.stream,
            "fragment_number": frame.fragment_number,
            "producer_timestamp": frame.producer_timestamp.isoformat() if frame.producer_timestamp else None,
            "pts": frame.pts,
            "boxes": [[int(v) for v in box] for box in boxes],
        }
        line = json.dumps(event)
        print(line, flush=True)
        if kinesis is not None:
            kinesis.put_record(StreamName=args.kinesis_stream, Data=line.encode(), PartitionKey=args.stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
