"""An in-memory Kinesis Video Streams service: stream ARNs, fragment numbers and GetMedia.

This module holds ARN parsing (:func:`parse_arn`, :func:`connect_stream_name`), the 47-digit
:func:`fragment_number`, GetMedia's :class:`StartSelector` and reader :class:`Cursor`, and
the store itself: :class:`KinesisVideoStore` (streams by ARN) of
:class:`KinesisVideoStream` (fragments as :class:`StoredFragment`, stamped with the AWS
tags on arrival).

>>> store = KinesisVideoStore()
>>> stream = store.create_stream("demo")
>>> stream.arn
'arn:aws:kinesisvideo:us-east-1:123456789012:stream/demo/1700000000000'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from mgsim.media._base import Wire
from mgsim.media.kvs_mkv import (
    TAG_CONTINUATION_TOKEN,
    TAG_FRAGMENT_NUMBER,
    TAG_MILLIS_BEHIND_NOW,
    TAG_PRODUCER_TS,
    TAG_SERVER_TS,
    Fragment,
    KvsError,
    build_fragment,
    format_timestamp,
    read_fragment,
    restamp_fragment,
    with_reader_tags,
)

__all__ = [
    "DEFAULT_EPOCH_MS",
    "Cursor",
    "KinesisVideoStore",
    "KinesisVideoStream",
    "StartSelector",
    "StoredFragment",
    "connect_stream_name",
    "fragment_number",
    "parse_arn",
]

DEFAULT_EPOCH_MS: Final = 1_700_000_000_000
"""Producer clock of the first fragment unless told otherwise: fixed, so output is stable."""

# ----------------------------------------------------------------- ARNs and numbers

_ARN_RE: Final = re.compile(
    r"arn:aws(?:-[a-z]+)*:kinesisvideo:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):"
    r"stream/([A-Za-z0-9_.-]{1,256})/(\d{13})"
)
_FRAGMENT_BASE: Final = 91343852333181432392682062622220590765191907586
_FRAGMENT_STEP: Final = 1 << 92


def parse_arn(arn: str) -> tuple[str, str, str, int]:
    """Split a KVS stream ARN into ``(region, account, name, creation_ms)``.

    >>> parse_arn("arn:aws:kinesisvideo:us-west-2:123456789012:stream/x/1700000000000")
    ('us-west-2', '123456789012', 'x', 1700000000000)
    """
    m = _ARN_RE.fullmatch(arn) if isinstance(arn, str) else None
    if not m:
        raise KvsError(f"not a Kinesis Video stream ARN: {arn!r}", reason="bad-arn")
    return m.group(1), m.group(2), m.group(3), int(m.group(4))


def connect_stream_name(instance_id: str, contact_id: str, prefix: str = "mgsim") -> str:
    """Connect's stream name for a call: ``<prefix>-connect-<instance>-contact-<id>``."""
    return f"{prefix}-connect-{instance_id}-contact-{contact_id}"


def fragment_number(stream_arn: str, tick_ms: int) -> str:
    """The 47-digit fragment number for a fragment received at ``tick_ms`` on that stream.

    Numbers grow with ``tick_ms`` (in steps of 2**92) and carry
    stream-specific low bits, so the encoder and the store agree.

    >>> a = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/s/1700000000000"
    >>> n1, n2 = fragment_number(a, 1), fragment_number(a, 2)
    >>> len(n1), int(n1) < int(n2)
    (47, True)
    """
    digest = hashlib.sha256(f"{stream_arn}\n{tick_ms}".encode()).digest()
    stream_part = int.from_bytes(hashlib.sha256(stream_arn.encode()).digest()[:4], "big")
    low = int.from_bytes(digest[:10], "big")  # < 2**80, below one step
    return str(_FRAGMENT_BASE + (stream_part << 96) + tick_ms * _FRAGMENT_STEP + low)


# ---------------------------------------------------------------- stream and store

_SELECTORS: Final = (
    "NOW",
    "EARLIEST",
    "FRAGMENT_NUMBER",
    "SERVER_TIMESTAMP",
    "PRODUCER_TIMESTAMP",
    "CONTINUATION_TOKEN",
)


@dataclass(frozen=True, slots=True)
class StartSelector:
    """Where GetMedia starts: ``type`` is a StartSelectorType.

    >>> StartSelector("FRAGMENT_NUMBER", after_fragment_number="913").type
    'FRAGMENT_NUMBER'
    """

    type: str
    after_fragment_number: str | None = None
    start_timestamp_ms: int | None = None
    continuation_token: str | None = None

    def __post_init__(self) -> None:
        if self.type not in _SELECTORS:
            raise KvsError(f"unknown StartSelectorType {self.type!r}", reason="bad-selector")
        needs = {
            "FRAGMENT_NUMBER": self.after_fragment_number,
            "SERVER_TIMESTAMP": self.start_timestamp_ms,
            "PRODUCER_TIMESTAMP": self.start_timestamp_ms,
            "CONTINUATION_TOKEN": self.continuation_token,
        }
        if self.type in needs and needs[self.type] is None:
            raise KvsError(f"{self.type} selector misses its argument", reason="bad-selector")


@dataclass(frozen=True, slots=True)
class Cursor:
    """A reader's place in a stream: the index of the next fragment to return."""

    position: int
    continuation_token: str | None = None


@dataclass(frozen=True, slots=True)
class StoredFragment:
    """One fragment as a stream holds it: number, server and producer times (epoch ms),
    span, ContactId and the document bytes with the AWS tags stamped in."""

    number: str
    server_ms: int
    producer_ms: int
    duration_ms: int
    contact_id: str | None
    data: bytes


class KinesisVideoStream:
    """One in-memory Kinesis Video stream: fragments in put order, read with selectors.

    >>> s = KinesisVideoStream("arn:aws:kinesisvideo:us-east-1:123456789012:stream/s/1700000000000")
    >>> cursor = s.start(StartSelector("NOW"))
    >>> s.read(cursor)[0]
    []
    """

    def __init__(self, arn: str) -> None:
        self.region, self.account, self.name, self.creation_ms = parse_arn(arn)
        self.arn = arn
        self._fragments: list[StoredFragment] = []
        self._index: dict[str, int] = {}  # fragment number -> position
        self._base = 0  # position of _fragments[0]: fragments before it were released
        self._last_tick = -1

    @property
    def fragments(self) -> tuple[StoredFragment, ...]:
        """The fragments still held, oldest first."""
        return tuple(self._fragments)

    @property
    def latest(self) -> StoredFragment | None:
        """The fragment put last, if still held."""
        return self._fragments[-1] if self._fragments else None

    def __len__(self) -> int:
        """How many fragments the stream still holds."""
        return len(self._fragments)

    @property
    def released(self) -> int:
        """How many fragments were put and then released (:meth:`release`)."""
        return self._base

    def release(self) -> int:
        """Let go of every fragment held (as retention expiring does); return how many.

        Positions keep counting, so readers and fragment numbers stay consistent: a
        selector naming a released fragment is ``unknown-fragment``, and a reader behind
        the release goes on from the next fragment put.
        """
        count = len(self._fragments)
        self._base += count
        self._fragments = []
        self._index = {}
        return count

    def put_media(self, fragment: bytes | Fragment | Wire, server_time_ms: int) -> str:
        """Store one fragment, stamping the AWS tags; return its new fragment number.

        A fragment without a producer timestamp tag takes its cluster timecode (producers
        write absolute timecodes by default).
        """
        if isinstance(fragment, Wire):
            fragment = fragment.data if isinstance(fragment.data, bytes) else b""
        # Parsed first: a corrupt fragment must not use up a server tick.
        head = read_fragment(fragment)[0] if isinstance(fragment, bytes) else fragment
        tick = max(int(server_time_ms), self._last_tick + 1)
        number = fragment_number(self.arn, tick)
        producer = head.producer_timestamp_ms
        producer = head.timecode if producer is None else producer
        tags = {
            TAG_FRAGMENT_NUMBER: number,
            TAG_SERVER_TS: format_timestamp(tick),
            TAG_PRODUCER_TS: format_timestamp(producer),
        }
        if isinstance(fragment, bytes):
            # The producer's cluster is stored as sent; only the tags are rewritten.
            frag, duration, data = restamp_fragment(fragment, **tags)
        else:
            frag = fragment.with_tags(**tags)
            duration, data = frag.duration_ms, build_fragment(frag)
        self._last_tick = tick
        stored = StoredFragment(number, tick, producer, duration, frag.contact_id, data)
        self._index[number] = self._base + len(self._fragments)
        self._fragments.append(stored)
        return number

    def start(self, selector: StartSelector) -> Cursor:
        """Open a read position as GetMedia does for ``selector``."""
        frags, base = self._fragments, self._base
        kind = selector.type
        if kind == "NOW":
            return Cursor(base + len(frags))
        if kind == "EARLIEST":
            return Cursor(base)
        if kind in ("FRAGMENT_NUMBER", "CONTINUATION_TOKEN"):
            after = selector.after_fragment_number or selector.continuation_token or ""
            if after not in self._index:
                raise KvsError(f"no fragment {after} in {self.name}", reason="unknown-fragment")
            return Cursor(self._index[after] + 1, after)
        t = selector.start_timestamp_ms or 0
        for i, f in enumerate(frags):
            # A producer timestamp inside a fragment starts at that fragment.
            if (kind == "SERVER_TIMESTAMP" and f.server_ms >= t) or (
                kind == "PRODUCER_TIMESTAMP" and f.producer_ms + max(f.duration_ms, 1) > t
            ):
                return Cursor(base + i)
        return Cursor(base + len(frags))

    def read(self, cursor: Cursor) -> tuple[list[bytes], Cursor]:
        """Everything from ``cursor`` to now, and the cursor to continue from."""
        new = self._fragments[max(0, cursor.position - self._base) :]
        if not new:
            return [], cursor
        end = self._base + len(self._fragments)
        return [f.data for f in new], Cursor(end, new[-1].number)

    def read_media(self, cursor: Cursor) -> tuple[list[bytes], Cursor]:
        """:meth:`read` as GetMedia sends it: each fragment gains a Tag (before its
        Cluster) with ``AWS_KINESISVIDEO_MILLIS_BEHIND_NOW``, how far its server timestamp
        is behind the stream's latest fragment's in ms, and
        ``AWS_KINESISVIDEO_CONTINUATION_TOKEN``, its fragment number: a ``CONTINUATION_TOKEN``
        selector with it goes on after that fragment."""
        new = self._fragments[max(0, cursor.position - self._base) :]
        if not new:
            return [], cursor
        latest = new[-1].server_ms
        docs = [
            with_reader_tags(
                f.data,
                {
                    TAG_MILLIS_BEHIND_NOW: str(latest - f.server_ms),
                    TAG_CONTINUATION_TOKEN: f.number,
                },
            )
            for f in new
        ]
        return docs, Cursor(self._base + len(self._fragments), new[-1].number)

    def get_media(self, selector: StartSelector) -> list[bytes]:
        """One GetMedia call drained to the current end of the stream."""
        return self.read_media(self.start(selector))[0]


class KinesisVideoStore:
    """Streams by ARN, as the Kinesis Video service holds them for one account."""

    def __init__(self, *, region: str = "us-east-1", account: str = "123456789012") -> None:
        self.region = region
        self.account = account
        self._streams: dict[str, KinesisVideoStream] = {}

    def __contains__(self, arn: object) -> bool:
        return arn in self._streams

    def __iter__(self) -> Iterator[KinesisVideoStream]:
        return iter(list(self._streams.values()))

    def __len__(self) -> int:
        return len(self._streams)

    def create_stream(
        self, name: str, *, creation_ms: int = DEFAULT_EPOCH_MS
    ) -> KinesisVideoStream:
        """Create a stream called ``name``; a name already used raises ``stream-exists``."""
        arn = f"arn:aws:kinesisvideo:{self.region}:{self.account}:stream/{name}/{creation_ms}"
        if any(s.name == name for s in self._streams.values()):
            raise KvsError(f"stream {name} already exists", reason="stream-exists")
        stream = KinesisVideoStream(arn)
        self._streams[arn] = stream
        return stream

    def create_connect_stream(
        self,
        instance_id: str,
        contact_id: str,
        *,
        prefix: str = "mgsim",
        creation_ms: int = DEFAULT_EPOCH_MS,
    ) -> KinesisVideoStream:
        """Create the stream Connect opens for a contact (reused later by other contacts)."""
        name = connect_stream_name(instance_id, contact_id, prefix)
        return self.create_stream(name, creation_ms=creation_ms)

    def delete_stream(self, arn: str) -> bool:
        """Delete the stream with that ARN (as DeleteStream does); False if there is none.

        A stream created again under the same name and creation time has the same ARN and
        starts empty.
        """
        return self._streams.pop(arn, None) is not None

    def get(self, arn: str) -> KinesisVideoStream:
        """The stream with that ARN: ``bad-arn`` if malformed, ``unknown-stream`` if absent."""
        parse_arn(arn)
        try:
            return self._streams[arn]
        except KeyError:
            raise KvsError(f"no stream {arn}", reason="unknown-stream") from None
