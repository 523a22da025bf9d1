"""Type stubs of the native module (checked by mypy.stubtest)."""

import datetime
import os
from typing_extensions import Buffer, disjoint_base
from collections.abc import Awaitable
from typing import Any, final

__all__ = [
    "AAC",
    "AccessDeniedError",
    "Client",
    "ConfigError",
    "ConnectionFailedError",
    "Fragment",
    "FragmentIterator",
    "EventIterator",
    "Frame",
    "FrameData",
    "FrameIterator",
    "FragmentsLostError",
    "G711",
    "H264",
    "H265",
    "InvalidMediaError",
    "KvsError",
    "KvsTimeoutError",
    "LocalEndpoint",
    "NotFoundError",
    "Producer",
    "ServiceError",
    "ThrottledError",
]

class KvsError(Exception):
    kind: str
    retryable: bool
    code: str | None
    fragment_number: str | None
    offset: int | None
    hint: str | None

class NotFoundError(KvsError): ...
class AccessDeniedError(KvsError): ...
class ThrottledError(KvsError): ...
class ConnectionFailedError(KvsError): ...
class KvsTimeoutError(KvsError): ...
class InvalidMediaError(KvsError): ...
class ServiceError(KvsError): ...
class ConfigError(KvsError): ...

class FragmentsLostError(KvsError):
    fragments: int
    frames: int

@final
class FrameData:
    def __len__(self) -> int: ...

@final
class Frame:
    @property
    def track(self) -> int: ...
    @property
    def pts(self) -> float: ...
    @property
    def pts_ns(self) -> int: ...
    @property
    def key(self) -> bool: ...
    @property
    def fragment_number(self) -> str | None: ...
    @property
    def producer_timestamp(self) -> datetime.datetime | None: ...
    @property
    def server_timestamp(self) -> datetime.datetime | None: ...
    @property
    def data(self) -> memoryview: ...
    @property
    def codec(self) -> str | None: ...
    @property
    def codec_private(self) -> bytes | None: ...
    image: Any

@final
class Fragment:
    @property
    def number(self) -> str | None: ...
    @property
    def producer_timestamp(self) -> datetime.datetime | None: ...
    @property
    def server_timestamp(self) -> datetime.datetime | None: ...
    @property
    def continuation_token(self) -> str | None: ...
    @property
    def millis_behind_now(self) -> int | None: ...
    @property
    def tags(self) -> dict[str, str]: ...
    @property
    def frames(self) -> list[Frame]: ...
    def to_mkv(self) -> bytes: ...

@final
class FrameIterator:
    def __iter__(self) -> FrameIterator: ...
    def __next__(self) -> Frame: ...
    def __aiter__(self) -> FrameIterator: ...
    def __anext__(self) -> Awaitable[Frame]: ...
    def close(self) -> None: ...

@final
class FragmentIterator:
    def __iter__(self) -> FragmentIterator: ...
    def __next__(self) -> Fragment: ...
    def __aiter__(self) -> FragmentIterator: ...
    def __anext__(self) -> Awaitable[Fragment]: ...
    def close(self) -> None: ...

@final
class H264:
    def __new__(cls, codec_private: bytes | None = None, width: int = 0, height: int = 0) -> H264: ...

@final
class H265:
    def __new__(cls, codec_private: bytes | None = None, width: int = 0, height: int = 0) -> H265: ...

@final
class AAC:
    def __new__(cls, rate: int = 48000, channels: int = 2) -> AAC: ...

@final
class G711:
    def __new__(cls, law: str = "mulaw", rate: int = 8000, channels: int = 1) -> G711: ...

@final
class EventIterator:
    def __iter__(self) -> EventIterator: ...
    def __next__(self) -> dict[str, Any]: ...

@final
class Producer:
    def put_frame(
        self,
        data: Buffer,
        pts: float,
        key: bool = False,
        track: int | None = None,
        dts: float | None = None,
    ) -> None: ...
    def put_file(self, path: str | os.PathLike[str], fps: float = 25.0, realtime: bool = False) -> int: ...
    def tag_next_fragment(self, name: str, value: str) -> None: ...
    def events(self, timeout: float = 0.0) -> EventIterator: ...
    def finish(self, timeout: float = 30.0) -> None: ...
    def __enter__(self) -> Producer: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool: ...

@disjoint_base
class Client:
    def __new__(
        cls,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
    ) -> Client: ...
    @property
    def region(self) -> str: ...
    def create_stream(
        self,
        name: str,
        retention_hours: int = 24,
        media_type: str | None = None,
        kms_key_id: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> str: ...
    def describe_stream(self, name: str) -> dict[str, Any]: ...
    def list_streams(self) -> list[dict[str, Any]]: ...
    def delete_stream(self, name: str) -> None: ...
    def update_data_retention(self, stream: str, retention_hours: int) -> None: ...
    def list_fragments(
        self,
        stream: str,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
    ) -> list[dict[str, Any]]: ...
    def frames(
        self,
        stream: str,
        start: str | int | datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        idle_timeout: float | None = None,
    ) -> FrameIterator: ...
    def fragments(
        self,
        stream: str,
        start: str | int | datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        idle_timeout: float | None = None,
    ) -> FragmentIterator: ...
    def put_file(
        self,
        stream: str,
        path: str | os.PathLike[str],
        fps: float = 25.0,
        realtime: bool = False,
        create_if_missing: bool = True,
        retention_hours: int = 24,
    ) -> int: ...
    def producer(
        self,
        stream: str,
        video: H264 | H265 | None = None,
        audio: AAC | G711 | None = None,
        create_if_missing: bool = True,
        retention_hours: int = 24,
        start_time: datetime.datetime | None = None,
        wait_when_full: bool = False,
    ) -> Producer: ...

@final
class LocalEndpoint:
    def __new__(
        cls,
        port: int = 0,
        data_dir: str | os.PathLike[str] | None = None,
        faults: list[str] | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> LocalEndpoint: ...
    @property
    def endpoint_url(self) -> str: ...
    def close(self) -> None: ...
    def __enter__(self) -> LocalEndpoint: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool: ...
