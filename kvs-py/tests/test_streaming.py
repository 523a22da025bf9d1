"""Reading under asyncio, across dropped connections, and for long."""

import asyncio
import datetime
import subprocess
import sys

from conftest import avcc, put_clip

import kvs


def test_async_for_lets_other_tasks_run(client, clip):
    put_clip(client, clip)

    async def main():
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        got = [f async for f in client.frames("cam", start="earliest", idle_timeout=1.0)]
        frags = [f async for f in client.fragments("cam", start="earliest", idle_timeout=1.0)]
        done.set()
        await t
        return got, frags, ticks

    got, frags, ticks = asyncio.run(main())
    assert [bytes(f.data) for f in got] == [avcc(au) for au, _ in clip]
    assert [len(f.frames) for f in frags] == [50, 50, 50, 50]
    # Two idle seconds at least went by: the loop kept running meanwhile.
    assert ticks > 50


def test_a_cancelled_await_loses_no_frame(client, clip):
    """`asyncio.wait_for` giving up on `__anext__` (here: before anything
    was put) drops the wait, not a frame: the next await gets the first."""
    client.create_stream("cam", retention_hours=1)

    async def main():
        it = client.frames("cam", start="earliest", idle_timeout=5.0)
        timed_out = 0
        for _ in range(3):
            try:
                await asyncio.wait_for(it.__anext__(), 0.05)
            except asyncio.TimeoutError:
                timed_out += 1
        await asyncio.to_thread(put_clip, client, clip)
        return timed_out, [f async for f in it]

    timed_out, got = asyncio.run(main())
    assert timed_out == 3
    assert [bytes(f.data) for f in got] == [avcc(au) for au, _ in clip]


EXIT_AFTER_ASYNC_FOR = """
import asyncio, sys, kvs
c = kvs.Client(region="us-east-1", endpoint_url=sys.argv[1], access_key_id="a", secret_access_key="b")

async def one():
    n = 0
    async for _ in c.frames("cam", start="earliest", idle_timeout=5.0):
        n += 1
        if n == 100:
            break
    return n

async def main():
    return await asyncio.gather(*[one() for _ in range(16)])

print(sum(asyncio.run(main())))
"""


def test_the_program_ends_cleanly_right_after_async_for(endpoint, client, clip):
    """A program that ends as its last `await` returns: the runtime's
    threads are done handing results to the loop before the interpreter
    finalizes (a thread taking the GIL then was ended inside Rust code:
    a segmentation fault in about one run of four)."""
    put_clip(client, clip)
    for _ in range(8):
        r = subprocess.run([sys.executable, "-c", EXIT_AFTER_ASYNC_FOR, endpoint.endpoint_url],
                           capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stdout.strip()) == (0, "1600"), r.stderr[-2000:]


def test_live_reading_resumes_across_dropped_connections(clip):
    """Every PutMedia and GetMedia connection is cut after 250 kB: the
    producer resends, the reader resumes, every frame comes once."""
    with kvs.LocalEndpoint(faults=["drop-after-bytes=250000"]) as ep:
        c = kvs.Client(region="us-east-1", endpoint_url=ep.endpoint_url,
                       access_key_id="a", secret_access_key="b")
        put_clip(c, clip)
        got = list(c.frames("cam", start="earliest", idle_timeout=3))
    assert [bytes(f.data) for f in got] == [avcc(au) for au, _ in clip]


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_ten_thousand_frames_in_bounded_memory(client, clip):
    n = 10_000
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=n * 0.04 + 60)
    with client.producer("long", video=kvs.H264(), retention_hours=1, start_time=start,
                         wait_when_full=True) as p:
        for i in range(n):
            au, key = clip[i % len(clip)]
            p.put_frame(au, pts=i * 0.04, key=key)
    frames = client.frames("long", start="earliest", idle_timeout=3)
    count = 0
    peak = 0
    base = None
    for f in frames:
        count += 1
        assert len(f.data) > 0
        if count == 1000:
            base = rss_kib()
        elif base is not None and count % 500 == 0:
            peak = max(peak, rss_kib() - base)
    assert count == n
    assert peak < 20 * 1024, f"RSS grew {peak} KiB while reading"
