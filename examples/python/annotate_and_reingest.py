"""Read a stream, draw what was detected, put the annotated video into a
second stream — the "draw boxes and re-ingest" use of the Java parser
library, in a few lines.

    python annotate_and_reingest.py front-door front-door-annotated \\
        --endpoint-url http://127.0.0.1:4567 --start earliest --idle-timeout 5

Faces (OpenCV's Haar cascade) get a green box; every picture goes on, at
its own time, encoded to H.264 by ``Producer.put_image``.
"""

from __future__ import annotations

import argparse
import sys

import cv2

import kvs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="the stream to read")
    ap.add_argument("target", help="the stream to put the annotated video into (created if missing)")
    ap.add_argument("--endpoint-url")
    ap.add_argument("--region")
    ap.add_argument("--start", default="now")
    ap.add_argument("--idle-timeout", type=float)
    args = ap.parse_args(argv)

    client = kvs.Client(region=args.region, endpoint_url=args.endpoint_url)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    frames = client.frames(args.source, start=args.start, idle_timeout=args.idle_timeout, decode="bgr24")
    producer = None
    first_pts = None
    count = 0
    for frame in frames:
        if frame.image is None:
            continue
        if producer is None:
            # The annotated stream keeps the source's producer time.
            producer = client.producer(args.target, video=kvs.H264(), start_time=frame.producer_timestamp)
            first_pts = frame.pts
        image = frame.image.copy()
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        for x, y, w, h in cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40)):
            cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), (0, 255, 0), 4)
        producer.put_image(image, pts=frame.pts - first_pts)
        count += 1
    if producer is not None:
        producer.finish(60)
    print(f"{count} pictures annotated into {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
