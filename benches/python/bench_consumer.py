"""Reading video from Kinesis Video Streams in Python: kvs beside the AWS
consumer library for Python and beside PyAV reading the same media from a
file (the floor), in one run, reported as ratios.

    python benches/python/bench_consumer.py --aws-lib PATH [--seconds 6]

PATH is a checkout of aws-samples/amazon-kinesis-video-streams-consumer-
library-for-python (it is not on PyPI; it vendors its parser, ebmlite).
Each reader runs in a fresh process against the in-process local endpoint
(kvs), or on the same GetMedia bytes fed as botocore hands them to it
(1 KiB chunks; the AWS library), so peak RSS is each reader's own. Inputs:
a 1080p H.264 stream (ffmpeg's test pattern, ~8 Mbit/s) and the bundled
small-frame clip twenty times over (4,000 frames, 160 s: long enough to
time). Needs ffmpeg, PyAV and the kvs package.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve()
MEDIA = HERE.parents[2] / "examples" / "media"


def make_1080p(dir: pathlib.Path, seconds: float) -> pathlib.Path:
    out = dir / "1080p.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=25:duration={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "8M", "-g", "50", "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )
    return out


def child(mode: str, arg: str, extra: str) -> dict:
    """Runs one reader in this script as a fresh process; its JSON result."""
    out = subprocess.run([sys.executable, str(HERE), "--child", mode, arg, extra],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not carried over
    from the parent across fork and exec)."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_child(mode: str, arg: str, extra: str) -> None:
    if mode == "baseline":
        print(json.dumps({"rss_mib": peak_rss_mib()}))
    elif mode == "baseline-kvs":
        # The library loaded and its runtime running, no stream read.
        import kvs

        client = kvs.Client(region="us-east-1", endpoint_url=arg, access_key_id="a", secret_access_key="b")
        client.list_streams()
        print(json.dumps({"rss_mib": peak_rss_mib()}))
    elif mode == "baseline-aws":
        sys.path.insert(0, extra)
        from amazon_kinesis_video_consumer_library.kinesis_video_streams_parser import KvsConsumerLibrary

        KvsConsumerLibrary("bench", {"Payload": []}, None, None, None)  # loads its schema
        print(json.dumps({"rss_mib": peak_rss_mib()}))
    elif mode == "kvs" or mode == "kvs-decode":
        import kvs

        if mode == "kvs-decode":
            import av  # noqa: F401  (imported before the clock starts, as in the PyAV run)
            import numpy  # noqa: F401

        url, (stream, _, expect) = arg, extra.partition(":")
        client = kvs.Client(region="us-east-1", endpoint_url=url, access_key_id="a", secret_access_key="b")
        n = sum(1 for _ in client.list_fragments(stream))
        frames = nbytes = 0
        began = time.perf_counter()
        decode = "bgr24" if mode == "kvs-decode" else None
        last = began
        for f in client.frames(stream, start="earliest", idle_timeout=1.0, decode=decode):
            frames += 1
            nbytes += len(f.data)
            last = time.perf_counter()
            if expect and frames == int(expect):
                # The decoder's last pictures would otherwise wait for the
                # idle timeout (the end of the input) to be flushed.
                break
        print(json.dumps({"frames": frames, "bytes": nbytes, "seconds": last - began,
                          "fragments": n, "rss_mib": peak_rss_mib()}))
    elif mode == "aws":
        sys.path.insert(0, extra)
        from amazon_kinesis_video_consumer_library.kinesis_video_streams_parser import KvsConsumerLibrary

        fragments = []
        done = []

        def chunks():
            # As from the network: 1 KiB at a time, never the whole response
            # in memory (counted against the library otherwise).
            with open(arg, "rb") as f:
                while chunk := f.read(1024):
                    yield chunk

        lib = KvsConsumerLibrary(
            "bench", {"Payload": chunks()},
            lambda stream, data, dom, duration: fragments.append(len(data)),
            lambda stream: done.append(True),
            lambda stream, e: done.append(e),
        )
        began = time.perf_counter()
        lib.run()  # in this thread
        took = time.perf_counter() - began
        print(json.dumps({"fragments": len(fragments), "bytes": sum(fragments), "seconds": took,
                          "rss_mib": peak_rss_mib()}))
    elif mode in ("pyav", "pyav-decode"):
        import av

        frames = nbytes = 0
        began = time.perf_counter()
        with av.open(arg) as c:
            s = c.streams.video[0]
            for p in c.demux(s):
                if not p.size:
                    continue
                frames += 1
                nbytes += p.size
                if mode == "pyav-decode":
                    for pic in p.decode():
                        pic.to_ndarray(format="bgr24")
        print(json.dumps({"frames": frames, "bytes": nbytes, "seconds": time.perf_counter() - began,
                          "rss_mib": peak_rss_mib()}))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        run_child(*sys.argv[2:5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aws-lib", required=True, help="checkout of the AWS consumer library for Python")
    ap.add_argument("--seconds", type=float, default=6.0, help="length of the 1080p input")
    args = ap.parse_args()
    import boto3
    import kvs

    with tempfile.TemporaryDirectory() as tmp, kvs.LocalEndpoint() as ep:
        d = pathlib.Path(tmp)
        client = kvs.Client(region="us-east-1", endpoint_url=ep.endpoint_url, access_key_id="a", secret_access_key="b")
        small = d / "small.h264"  # Annex-B streams concatenate
        small.write_bytes((MEDIA / "clip.h264").read_bytes() * 20)
        inputs = {"1080p": make_1080p(d, args.seconds), "small": small}
        for name, path in inputs.items():
            client.put_file(name, path)
            # The GetMedia bytes the service sends, for the AWS library.
            import botocore.config
            import botocore.exceptions

            media = boto3.client("kinesis-video-media", region_name="us-east-1", endpoint_url=ep.endpoint_url,
                                 aws_access_key_id="a", aws_secret_access_key="b",
                                 config=botocore.config.Config(read_timeout=2))
            body = media.get_media(StreamName=name, StartSelector={"StartSelectorType": "EARLIEST"})["Payload"]
            raw = bytearray()
            try:  # until the stream has been quiet for 2 s
                while chunk := body.read(65536):
                    raw += chunk
            except (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ResponseStreamingError):
                pass
            body.close()
            getmedia = d / f"{name}.getmedia.mkv"
            getmedia.write_bytes(raw)
            ours = child("kvs", ep.endpoint_url, name)
            aws = child("aws", str(getmedia), args.aws_lib)
            floor = child("pyav", str(path), "")
            ours_dec = child("kvs-decode", ep.endpoint_url, f"{name}:{ours['frames'] - 2}")
            floor_dec = child("pyav-decode", str(path), "")
            # Memory for reading the stream: beyond each library loaded (and
            # kvs's runtime started) with nothing read.
            ours["rss_mib"] -= child("baseline-kvs", ep.endpoint_url, "")["rss_mib"]
            aws["rss_mib"] -= child("baseline-aws", "", args.aws_lib)["rss_mib"]
            floor["rss_mib"] -= child("baseline", "", "")["rss_mib"]
            mb = lambda r: r["bytes"] / 1e6 / r["seconds"]  # noqa: E731
            print(f"{name}: kvs {ours['frames'] / ours['seconds']:.0f} frames/s {mb(ours):.1f} MB/s "
                  f"{ours['rss_mib']:.1f} MiB | AWS library {mb(aws):.2f} MB/s {aws['rss_mib']:.1f} MiB "
                  f"({aws['fragments']} of {ours['fragments']} fragments) | PyAV file demux "
                  f"{floor['frames'] / floor['seconds']:.0f} frames/s {mb(floor):.1f} MB/s")
            print(f"{name}: ratio_throughput_vs_aws={mb(ours) / mb(aws):.1f} "
                  f"ratio_rss_aws_over_kvs={aws['rss_mib'] / max(ours['rss_mib'], 0.1):.2f} "
                  f"decode_kvs_fps={ours_dec['frames'] / ours_dec['seconds']:.1f} "
                  f"decode_pyav_fps={floor_dec['frames'] / floor_dec['seconds']:.1f} "
                  f"decode_ratio={ (ours_dec['frames'] / ours_dec['seconds']) / (floor_dec['frames'] / floor_dec['seconds']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
