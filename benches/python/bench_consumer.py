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

Memory is what reading takes beyond the library loaded (and kvs's runtime
started) with nothing read, with every mapped file paged in first in both
(MADV_POPULATE_READ): a library's machine code, shared between processes
and read from disk on first use, is not memory a stream holds. It is
measured for one stream in a process, and per stream for 16 read at once
(kvs: 16 ``async for`` under asyncio; the AWS library: 16 of its threads)
— what a process following a fleet of cameras pays for each. Decoding is
timed three times each, alternating, and the best of each kept (the least
disturbed on a shared machine).
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


def page_in_mapped_files() -> None:
    """Maps every page of every mapped file (shared libraries, the Python
    extension modules) into this process, so that a later peak RSS counts
    data, not machine code first run while reading (Linux ≥ 5.14)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madv_populate_read = 22
    for line in pathlib.Path("/proc/self/maps").read_text().splitlines():
        f = line.split()
        if len(f) < 6 or not f[5].startswith("/") or "r" not in f[1]:
            continue
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        libc.madvise(lo, hi - lo, madv_populate_read)


STREAMS_AT_ONCE = 16


def aws_chunks(path: str):
    """The GetMedia bytes as from the network: 1 KiB at a time, never the
    whole response in memory (counted against the library otherwise)."""
    with open(path, "rb") as f:
        while chunk := f.read(1024):
            yield chunk


def run_child(mode: str, arg: str, extra: str) -> None:
    if mode == "baseline":
        page_in_mapped_files()
        print(json.dumps({"rss_mib": peak_rss_mib()}))
    elif mode == "baseline-kvs":
        # The library loaded and its runtime running, no stream read.
        import kvs

        client = kvs.Client(region="us-east-1", endpoint_url=arg, access_key_id="a", secret_access_key="b")
        client.list_streams()
        if extra:  # as the many-streams run: asyncio loaded and running
            import asyncio

            async def idle() -> None:
                await asyncio.gather(*[asyncio.sleep(0.01) for _ in range(STREAMS_AT_ONCE)])

            asyncio.run(idle())
        page_in_mapped_files()
        print(json.dumps({"rss_mib": peak_rss_mib()}))
    elif mode == "baseline-aws":
        sys.path.insert(0, extra)
        from amazon_kinesis_video_consumer_library.kinesis_video_streams_parser import KvsConsumerLibrary

        KvsConsumerLibrary("bench", {"Payload": []}, None, None, None)  # loads its schema
        page_in_mapped_files()
        print(json.dumps({"rss_mib": peak_rss_mib()}))
    elif mode == "kvs" or mode == "kvs-decode":
        import kvs

        if mode == "kvs-decode":
            import av  # noqa: F401  (imported before the clock starts, as in the PyAV run)
            import numpy  # noqa: F401

        url, (stream, _, expect) = arg, extra.partition(":")
        client = kvs.Client(region="us-east-1", endpoint_url=url, access_key_id="a", secret_access_key="b")
        n = sum(1 for _ in client.list_fragments(stream))
        page_in_mapped_files()
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
        KvsConsumerLibrary("bench", {"Payload": []}, None, None, None)  # loads its schema
        page_in_mapped_files()
        lib = KvsConsumerLibrary(
            "bench", {"Payload": aws_chunks(arg)},
            lambda stream, data, dom, duration: fragments.append(len(data)),
            lambda stream: done.append(True),
            lambda stream, e: done.append(e),
        )
        began = time.perf_counter()
        lib.run()  # in this thread
        took = time.perf_counter() - began
        print(json.dumps({"fragments": len(fragments), "bytes": sum(fragments), "seconds": took,
                          "rss_mib": peak_rss_mib()}))
    elif mode == "kvs-many":
        import asyncio

        import kvs

        client = kvs.Client(region="us-east-1", endpoint_url=arg, access_key_id="a", secret_access_key="b")
        client.list_streams()
        page_in_mapped_files()

        stream, _, expect = extra.partition(":")

        async def one() -> int:
            frames = 0
            # Ends at the stream's last frame (16 readers sharing two cores
            # may wait longer than a second for the endpoint).
            async for _ in client.frames(stream, start="earliest", idle_timeout=10.0):
                frames += 1
                if frames == int(expect):
                    break
            return frames

        async def all_at_once() -> list[int]:
            return await asyncio.gather(*[one() for _ in range(STREAMS_AT_ONCE)])

        counts = asyncio.run(all_at_once())
        print(json.dumps({"frames": sum(counts), "rss_mib": peak_rss_mib()}))
    elif mode == "aws-many":
        sys.path.insert(0, extra)
        from amazon_kinesis_video_consumer_library.kinesis_video_streams_parser import KvsConsumerLibrary

        got = []
        KvsConsumerLibrary("bench", {"Payload": []}, None, None, None)
        page_in_mapped_files()
        libs = [
            KvsConsumerLibrary("bench", {"Payload": aws_chunks(arg)},
                               lambda stream, data, dom, duration: got.append(len(data)),
                               lambda stream: None, lambda stream, e: got.append(e))
            for _ in range(STREAMS_AT_ONCE)
        ]
        for lib in libs:
            lib.start()  # its own thread, as the library runs
        for lib in libs:
            lib.join()
        print(json.dumps({"fragments": len(got), "rss_mib": peak_rss_mib()}))
    elif mode in ("pyav", "pyav-decode"):
        import av

        frames = nbytes = 0
        began = time.perf_counter()
        page_in_mapped_files()
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
            fps = lambda r: r["frames"] / r["seconds"]  # noqa: E731
            ours_dec = floor_dec = 0.0
            for _ in range(3):
                ours_dec = max(ours_dec, fps(child("kvs-decode", ep.endpoint_url, f"{name}:{ours['frames'] - 2}")))
                floor_dec = max(floor_dec, fps(child("pyav-decode", str(path), "")))
            # Memory for reading the stream: beyond each library loaded (and
            # kvs's runtime started) with nothing read.
            ours["rss_mib"] -= child("baseline-kvs", ep.endpoint_url, "")["rss_mib"]
            aws["rss_mib"] -= child("baseline-aws", "", args.aws_lib)["rss_mib"]
            floor["rss_mib"] -= child("baseline", "", "")["rss_mib"]
            # Per stream, 16 read at once in one process.
            many = child("kvs-many", ep.endpoint_url, f"{name}:{ours['frames']}")
            many_aws = child("aws-many", str(getmedia), args.aws_lib)
            assert many["frames"] == STREAMS_AT_ONCE * ours["frames"], (many, ours)
            assert many_aws["fragments"] == STREAMS_AT_ONCE * aws["fragments"], (many_aws, aws)
            per_ours = (many["rss_mib"] - child("baseline-kvs", ep.endpoint_url, "asyncio")["rss_mib"]) / STREAMS_AT_ONCE
            per_aws = (many_aws["rss_mib"] - child("baseline-aws", "", args.aws_lib)["rss_mib"]) / STREAMS_AT_ONCE
            mb = lambda r: r["bytes"] / 1e6 / r["seconds"]  # noqa: E731
            print(f"{name}: kvs {fps(ours):.0f} frames/s {mb(ours):.1f} MB/s "
                  f"{ours['rss_mib'] * 1024:.0f} KiB, {per_ours * 1024:.0f} KiB a stream of {STREAMS_AT_ONCE} | "
                  f"AWS library {mb(aws):.2f} MB/s {aws['rss_mib'] * 1024:.0f} KiB, {per_aws * 1024:.0f} KiB a stream "
                  f"({aws['fragments']} of {ours['fragments']} fragments) | PyAV file demux "
                  f"{fps(floor):.0f} frames/s {mb(floor):.1f} MB/s")
            print(f"{name}: ratio_throughput_vs_aws={mb(ours) / mb(aws):.1f} "
                  f"ratio_rss_aws_over_kvs={aws['rss_mib'] / max(ours['rss_mib'], 1 / 1024):.2f} "
                  f"ratio_rss_per_stream_aws_over_kvs={per_aws / max(per_ours, 1 / 1024):.2f} "
                  f"decode_kvs_fps={ours_dec:.1f} decode_pyav_fps={floor_dec:.1f} "
                  f"decode_ratio={ours_dec / floor_dec:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
