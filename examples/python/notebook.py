"""How fresh is live video? Streams the bundled clip in real time to a
local endpoint (or yours) while reading it back live, and plots, with
matplotlib, each frame's arrival against its producer time and each
fragment's ACK latency — saved as PNGs.

    python notebook.py --out plots/

Prints one summary line: frames, median and 99th-percentile frame delay,
median ACK latency (milliseconds).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import threading
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import kvs  # noqa: E402

MEDIA = pathlib.Path(__file__).resolve().parents[1] / "media"


def access_units(data: bytes) -> list[tuple[bytes, bool]]:
    """(Annex-B access unit, key) of a one-slice-per-picture H.264 stream."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    aus, current = [], []
    for k, s in enumerate(starts):
        nal = data[s : (starts[k + 1] - 3 if k + 1 < len(starts) else len(data))].rstrip(b"\x00")
        current.append(nal)
        if nal[0] & 0x1F in (1, 5):
            aus.append((b"".join(b"\x00\x00\x00\x01" + n for n in current), nal[0] & 0x1F == 5))
            current = []
    return aus


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=".", help="where the PNGs go")
    ap.add_argument("--fps", type=float, default=25.0)
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    with kvs.LocalEndpoint() as ep:
        client = kvs.Client(region="us-east-1", endpoint_url=ep.endpoint_url,
                            access_key_id="local", secret_access_key="local")
        client.create_stream("notebook", retention_hours=1)
        arrivals: list[tuple[float, float]] = []  # (producer pts, arrival), seconds
        put_at: dict[int, float] = {}
        reader_ready = threading.Event()

        def read() -> None:
            frames = client.frames("notebook", start="now", idle_timeout=3)
            reader_ready.set()
            for f in frames:
                arrivals.append((f.pts, time.time()))

        reader = threading.Thread(target=read)
        reader.start()
        reader_ready.wait()
        time.sleep(0.5)
        aus = access_units((MEDIA / "clip.h264").read_bytes())
        t0 = time.time()
        with client.producer("notebook", video=kvs.H264()) as p:
            for i, (au, key) in enumerate(aus):
                due = t0 + i / args.fps
                time.sleep(max(0.0, due - time.time()))
                put_at[i] = time.time()
                p.put_frame(au, pts=i / args.fps, key=key)
        reader.join()
        acks = [e["latency"] * 1000 for e in p.events() if e["type"] == "acked"]

    base = min(pts for pts, _ in arrivals)
    delays = sorted((arr - put_at[round((pts - base) * args.fps)]) * 1000 for pts, arr in arrivals)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([pts - base for pts, _ in arrivals], [arr - t0 for _, arr in arrivals], ".", ms=3)
    ax.set_xlabel("producer time (s)")
    ax.set_ylabel("arrival at the reader (s)")
    ax.set_title("Frames as they arrive")
    fig.savefig(out / "arrival.png", dpi=100)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(range(1, len(acks) + 1), acks)
    ax.set_xlabel("fragment")
    ax.set_ylabel("ACK latency (ms)")
    ax.set_title("PERSISTED ACK latency")
    fig.savefig(out / "ack_latency.png", dpi=100)

    def pct(v: list[float], q: float) -> float:
        return v[min(len(v) - 1, round((len(v) - 1) * q))]

    print(f"frames={len(delays)} delay_p50_ms={pct(delays, 0.5):.1f} delay_p99_ms={pct(delays, 0.99):.1f} "
          f"ack_p50_ms={pct(sorted(acks), 0.5):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
