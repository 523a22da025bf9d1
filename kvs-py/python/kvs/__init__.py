"""kvs: Amazon Kinesis Video Streams for Python, on a Rust core.

Read live or archived video frame by frame, upload with a producer that
loses nothing across dropped connections, and test all of it against an
in-process endpoint — no AWS account needed::

    import kvs

    with kvs.LocalEndpoint() as ep:
        client = kvs.Client(region="us-east-1", endpoint_url=ep.endpoint_url,
                            access_key_id="test", secret_access_key="test")
        with client.producer("front-door", video=kvs.H264()) as p:
            p.put_frame(access_unit, pts=0.0, key=True)
        for frame in client.frames("front-door", start="earliest", idle_timeout=2):
            print(frame.pts, frame.key, len(frame.data))

Times: ``pts`` in seconds (float) and ``pts_ns`` in nanoseconds (int),
producer time since the epoch; timestamps are aware UTC datetimes.
Errors derive from :class:`KvsError`.
"""

from ._kvs import *  # noqa: F403  (the native module's names, listed in its __all__)
from ._kvs import __all__ as __all__
