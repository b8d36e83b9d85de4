"""Amazon Connect live media: Matroska fragments in a Kinesis Video Stream.

Connect writes each call into a Kinesis Video Stream (KVS) as a sequence of *fragments*. As
``GetMedia`` returns them, every fragment is a complete Matroska document::

    EBML header (DocType "matroska")
    Segment (unknown size, as a live producer writes it)
      Info     TimecodeScale 1,000,000 (timecodes in ms)
      Tracks   AUDIO_FROM_CUSTOMER, AUDIO_TO_CUSTOMER (CodecID "A_AAC", payload is PCM)
      Cluster  Timecode (absolute, ms) + SimpleBlocks (track, int16 relative ms, flags, PCM)
      Tags     AWS_KINESISVIDEO_FRAGMENT_NUMBER / _SERVER_TIMESTAMP / _PRODUCER_TIMESTAMP,
               ContactId, InstanceId, MimeType, AUDIO_FROM_CUSTOMER=<n>, AUDIO_TO_CUSTOMER=<n>

Track numbers are not fixed, so tracks are always matched by ``Name``. This module has the
fragment builder and parser, an in-memory stream store with GetMedia start selectors, the
encoder (a :class:`StereoCall` to fragments) and :class:`KvsConsumer`, the decoder.

>>> import numpy as np
>>> from mgsim.media._base import StereoCall
>>> call = StereoCall(np.arange(800, dtype=np.int16), np.zeros(800, dtype=np.int16))
>>> arn = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/demo/1700000000000"
>>> wires = list(encode(call, guid="c0ffee00-0000-4000-8000-000000000001", stream_arn=arn))
>>> consumer = KvsConsumer()
>>> events = [e for w in wires for e in consumer.feed(w)]
>>> type(events[0]).__name__, events[1].channel, len(events[1].pcm)
('SessionOpened', 'AUDIO_FROM_CUSTOMER', 800)
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError, MediaError
from mgsim.media import ebml
from mgsim.media._base import (
    SAMPLE_RATE,
    Anomaly,
    AudioChunk,
    Event,
    SessionClosed,
    SessionOpened,
    StereoCall,
    Wire,
)

__all__ = [
    "AGENT_TRACK",
    "CUSTOMER_TRACK",
    "DEFAULT_EPOCH_MS",
    "DEFAULT_INSTANCE_ID",
    "MIME_TYPE",
    "TRACK_NAMES",
    "AudioTrack",
    "Block",
    "Cursor",
    "Fragment",
    "KinesisVideoStore",
    "KinesisVideoStream",
    "KvsConsumer",
    "KvsError",
    "StartSelector",
    "StoredFragment",
    "build_fragment",
    "connect_stream_name",
    "encode",
    "fragment_number",
    "parse_arn",
    "parse_fragment",
    "split_fragments",
]

CUSTOMER_TRACK: Final = "AUDIO_FROM_CUSTOMER"
AGENT_TRACK: Final = "AUDIO_TO_CUSTOMER"
TRACK_NAMES: Final = (CUSTOMER_TRACK, AGENT_TRACK)
MIME_TYPE: Final = "audio/L16;rate=8000;channels=1;"
DEFAULT_INSTANCE_ID: Final = "4f1b5c3e-2d7a-4e9b-8c61-0a2b3c4d5e6f"
DEFAULT_EPOCH_MS: Final = 1_700_000_000_000
"""Producer clock of the first fragment unless told otherwise: fixed, so output is stable."""

TAG_FRAGMENT_NUMBER: Final = "AWS_KINESISVIDEO_FRAGMENT_NUMBER"
TAG_SERVER_TS: Final = "AWS_KINESISVIDEO_SERVER_TIMESTAMP"
TAG_PRODUCER_TS: Final = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"
_AWS_TAGS: Final = (TAG_FRAGMENT_NUMBER, TAG_SERVER_TS, TAG_PRODUCER_TS)

# Matroska element IDs (marker bits included, as written on the wire).
EBML_HEADER, DOC_TYPE = 0x1A45DFA3, 0x4282
SEGMENT, INFO, TIMECODE_SCALE = 0x18538067, 0x1549A966, 0x2AD7B1
TRACKS, TRACK_ENTRY, TRACK_NUMBER, TRACK_UID = 0x1654AE6B, 0xAE, 0xD7, 0x73C5
TRACK_TYPE, NAME, CODEC_ID, CODEC_PRIVATE = 0x83, 0x536E, 0x86, 0x63A2
AUDIO, SAMPLING_FREQUENCY, CHANNELS, BIT_DEPTH = 0xE1, 0xB5, 0x9F, 0x6264
TAGS, TAG, TARGETS, SIMPLE_TAG = 0x1254C367, 0x7373, 0x63C0, 0x67C8
TAG_NAME, TAG_STRING = 0x45A3, 0x4487
CLUSTER, TIMECODE, SIMPLE_BLOCK = 0x1F43B675, 0xE7, 0xA3

SEEK_HEAD, CUES, CHAPTERS, ATTACHMENTS = 0x114D9B74, 0x1C53BB6B, 0x1043A770, 0x1941A469

_MASTERS: Final = frozenset(
    {EBML_HEADER, SEGMENT, INFO, TRACKS, TRACK_ENTRY, AUDIO, CLUSTER}
    | {TAGS, TAG, TARGETS, SIMPLE_TAG}
)
_LAZY: Final = frozenset({CLUSTER})  # blocks are walked with ebml.scan, not kept as a tree
# A document root ends an unknown-size Segment; a level-1 element ends an unknown-size
# Cluster (or any other level-1 element written with unknown size).
_LEVELS: Final = {EBML_HEADER: 0, SEGMENT: 0} | dict.fromkeys(
    (INFO, TRACKS, CLUSTER, TAGS, SEEK_HEAD, CUES, CHAPTERS, ATTACHMENTS), 1
)

# AAC AudioSpecificConfig for AAC-LC, 8 kHz (index 11), mono: keeps players that trust the
# CodecID consistent with the real rate and channel count.
_AAC_8K_MONO: Final = bytes([0x15, 0x88])

_EBML_HEADER_BYTES: Final = ebml.master_element(
    EBML_HEADER,
    [
        ebml.uint_element(0x4286, 1),  # EBMLVersion
        ebml.uint_element(0x42F7, 1),  # EBMLReadVersion
        ebml.uint_element(0x42F2, 4),  # EBMLMaxIDLength
        ebml.uint_element(0x42F3, 8),  # EBMLMaxSizeLength
        ebml.string_element(DOC_TYPE, "matroska"),
        ebml.uint_element(0x4287, 4),  # DocTypeVersion
        ebml.uint_element(0x4285, 2),  # DocTypeReadVersion
    ],
)
_INFO_BYTES: Final = ebml.master_element(
    INFO,
    [
        ebml.uint_element(TIMECODE_SCALE, 1_000_000),
        ebml.string_element(0x4D80, "mgsim-kvs"),  # MuxingApp
        ebml.string_element(0x5741, "mgsim-kvs"),  # WritingApp
    ],
)

# (HTTP status, AWS error type) a KVS endpoint answers with for each reason.
_HTTP: Final[Mapping[str, tuple[int, str]]] = {
    "unknown-stream": (404, "ResourceNotFoundException"),
    "stream-exists": (400, "ResourceInUseException"),
}
_INVALID: Final = (400, "InvalidArgumentException")  # every other reason


class KvsError(MediaError):
    """A fragment, selector or ARN that cannot be accepted.

    ``reason`` is one of ``"corrupt-ebml"``, ``"missing-track"``, ``"bad-codec-private"``,
    ``"bad-audio"``, ``"bad-tag"``, ``"unknown-fragment"``, ``"unknown-stream"``,
    ``"stream-exists"``, ``"bad-arn"``, ``"bad-selector"``; :attr:`http_status` and
    :attr:`aws_error` are what a KVS endpoint would answer.

    >>> err = KvsError("no such stream", reason="unknown-stream")
    >>> err.http_status, err.aws_error
    (404, 'ResourceNotFoundException')
    """

    @property
    def http_status(self) -> int:
        return _HTTP.get(self.reason, _INVALID)[0]

    @property
    def aws_error(self) -> str:
        return _HTTP.get(self.reason, _INVALID)[1]


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class AudioTrack:
    """One TrackEntry. Connect labels PCM as ``A_AAC``; the parser keeps what it reads."""

    number: int
    name: str
    uid: int = 0
    codec_id: str = "A_AAC"
    sampling_frequency: float = float(SAMPLE_RATE)
    channels: int = 1
    codec_private: bytes = _AAC_8K_MONO

    def __post_init__(self) -> None:
        if not self.uid:  # Matroska forbids a zero TrackUID; default to the track number
            object.__setattr__(self, "uid", self.number)

    def encode(self) -> bytes:
        """The TrackEntry element."""
        audio = ebml.master_element(
            AUDIO,
            [
                ebml.float_element(SAMPLING_FREQUENCY, self.sampling_frequency),
                ebml.uint_element(CHANNELS, self.channels),
                ebml.uint_element(BIT_DEPTH, 16),
            ],
        )
        parts = [
            ebml.uint_element(TRACK_NUMBER, self.number),
            ebml.uint_element(TRACK_UID, self.uid),
            ebml.uint_element(TRACK_TYPE, 2),  # audio
            ebml.string_element(NAME, self.name),
            ebml.string_element(CODEC_ID, self.codec_id),
        ]
        if self.codec_private:
            parts.append(ebml.binary_element(CODEC_PRIVATE, self.codec_private))
        return ebml.master_element(TRACK_ENTRY, [*parts, audio])


class Block(NamedTuple):
    """One SimpleBlock: track number, timecode relative to the cluster (ms), payload."""

    track: int
    timecode: int
    payload: bytes
    keyframe: bool = True


@dataclass(frozen=True, slots=True)
class Fragment:
    """One fragment as a record: what :func:`build_fragment` writes and
    :func:`parse_fragment` reads back. ``tags`` keeps the SimpleTags in order."""

    tracks: tuple[AudioTrack, ...]
    timecode: int
    blocks: tuple[Block, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def fragment_number(self) -> str | None:
        return self.tags.get(TAG_FRAGMENT_NUMBER)

    @property
    def contact_id(self) -> str | None:
        return self.tags.get("ContactId")

    @property
    def producer_timestamp_ms(self) -> int | None:
        return _parse_ts(self.tags.get(TAG_PRODUCER_TS))

    @property
    def server_timestamp_ms(self) -> int | None:
        return _parse_ts(self.tags.get(TAG_SERVER_TS))

    @property
    def duration_ms(self) -> int:
        """Span from the cluster timecode to the end of the last block."""
        end = 0
        tracks = {t.number: t for t in self.tracks}
        for b in self.blocks:
            t = tracks.get(b.track)
            freq = t.sampling_frequency if t else 0.0
            rate = int(freq) if 1.0 <= freq < 1e9 else SAMPLE_RATE  # also false for NaN
            end = max(end, b.timecode + (len(b.payload) // 2) * 1000 // rate)
        return end

    def track(self, name: str) -> AudioTrack:
        """The track with that ``Name`` (Connect's numbers vary), else ``missing-track``."""
        for t in self.tracks:
            if t.name == name:
                return t
        raise KvsError(f"fragment has no track named {name}", reason="missing-track")

    def with_tags(self, **tags: str) -> Fragment:
        """A copy with these tags set; AWS tags are kept first, as KVS writes them."""
        merged = {**self.tags, **tags}
        ordered: dict[str, str] = {k: merged[k] for k in _AWS_TAGS if k in merged}
        ordered.update((k, v) for k, v in merged.items() if k not in ordered)
        return replace(self, tags=ordered)


def _format_ts(ms: int) -> str:
    # KVS writes timestamps as epoch seconds with millisecond decimals.
    return f"{ms // 1000}.{ms % 1000:03d}"


def _parse_ts(text: str | None) -> int | None:
    if text is None:
        return None
    m = re.fullmatch(r"(\d{1,15})(?:\.(\d{1,9}))?", text.strip())
    if not m:
        raise KvsError(f"bad timestamp tag {text!r}", reason="bad-tag")
    frac = (m.group(2) or "").ljust(3, "0")[:3]
    return int(m.group(1)) * 1000 + int(frac)


# ------------------------------------------------------------------ build and parse


def _simple_block(b: Block) -> bytes:
    if not 0 < b.track < 127:
        raise ConfigError(f"track number {b.track} out of range 1..126")
    head = bytes((0x80 | b.track,)) + b.timecode.to_bytes(2, "big", signed=True)
    body = head + (b"\x80" if b.keyframe else b"\x00") + b.payload
    return b"\xa3" + ebml.encode_size(len(body)) + body


def build_fragment(fragment: Fragment) -> bytes:
    """Write ``fragment`` as a complete Matroska document (what GetMedia returns).

    >>> f = Fragment((AudioTrack(1, CUSTOMER_TRACK), AudioTrack(2, AGENT_TRACK)), 0,
    ...              (Block(1, 0, b"\\x01\\x00"),), {"ContactId": "abc"})
    >>> parse_fragment(build_fragment(f)) == f
    True
    """
    blocks = [_simple_block(b) for b in fragment.blocks]
    cluster = [ebml.uint_element(TIMECODE, fragment.timecode), *blocks]
    return _document(fragment.tracks, cluster, fragment.tags)


def _document(
    tracks: tuple[AudioTrack, ...], cluster_children: list[bytes], tags: Mapping[str, str]
) -> bytes:
    simple_tags = [
        ebml.master_element(
            SIMPLE_TAG, [ebml.string_element(TAG_NAME, k), ebml.string_element(TAG_STRING, v)]
        )
        for k, v in tags.items()
    ]
    tags_el = ebml.master_element(
        TAGS, [ebml.master_element(TAG, [ebml.master_element(TARGETS, []), *simple_tags])]
    )
    segment = ebml.master_element(
        SEGMENT,
        [
            _INFO_BYTES,
            ebml.master_element(TRACKS, [t.encode() for t in tracks]),
            ebml.master_element(CLUSTER, cluster_children),
            tags_el,
        ],
        unknown_size=True,
    )
    return _EBML_HEADER_BYTES + segment


def _only(elements: list[ebml.Element], element_id: int, what: str) -> ebml.Element:
    found = [e for e in elements if e.id == element_id]
    if len(found) != 1:
        raise ebml.EbmlError(f"expected one {what}, found {len(found)}", reason="bad-structure")
    return found[0]


def _parse_track(entry: ebml.Element) -> AudioTrack:
    number = entry.child(TRACK_NUMBER)
    if number is None or not 0 < number.as_uint() < 127:
        raise ebml.EbmlError("TrackEntry without a usable TrackNumber", reason="bad-structure")
    name, codec, priv, uid = (entry.child(i) for i in (NAME, CODEC_ID, CODEC_PRIVATE, TRACK_UID))
    audio = entry.child(AUDIO)
    freq = audio.child(SAMPLING_FREQUENCY) if audio else None
    chans = audio.child(CHANNELS) if audio else None
    return AudioTrack(
        number=number.as_uint(),
        name=name.as_string() if name else "",
        uid=uid.as_uint() if uid else 0,
        codec_id=codec.as_string() if codec else "",
        sampling_frequency=freq.as_float() if freq else float(SAMPLE_RATE),
        channels=chans.as_uint() if chans else 1,
        codec_private=priv.data() if priv else b"",
    )


# One row per SimpleBlock: track number, relative timecode, payload start and end in the
# buffer, keyframe flag. Arrays, not objects: a 2-second fragment holds 200 blocks.
_Blocks = npt.NDArray[np.int64]


def _scan_cluster(cluster: ebml.Element) -> tuple[int, _Blocks]:
    """The cluster Timecode and its SimpleBlocks as a (blocks x 5) array of offsets."""
    buf = cluster.buffer
    timecode: int | None = None
    starts: list[int] = []
    ends: list[int] = []
    for eid, pos, end in ebml.scan(buf, cluster.data_offset, cluster.end):
        if eid == SIMPLE_BLOCK:
            starts.append(pos)
            ends.append(end)
        elif eid == TIMECODE and timecode is None:
            timecode = ebml.decode_uint(buf[pos:end])
    if timecode is None:
        raise ebml.EbmlError("Cluster without Timecode", reason="bad-structure")
    pos_a = np.array(starts, dtype=np.int64)
    end_a = np.array(ends, dtype=np.int64)
    if len(pos_a) and (end_a - pos_a).min() < 4:
        raise ebml.EbmlError("SimpleBlock shorter than its header", reason="truncated")
    raw = np.frombuffer(buf, dtype=np.uint8)
    head = [raw[pos_a + i].astype(np.int64) for i in range(4)]
    # Track numbers above 126 (multi-byte vints) never occur in Connect's two tracks.
    if ((head[0] & 0x80) == 0).any() or ((head[0] & 0x7F) == 0).any():
        raise ebml.EbmlError("SimpleBlock track number is not a 1-byte vint", reason="bad-vint")
    if (head[3] & 0x06).any():
        raise ebml.EbmlError("laced SimpleBlock", reason="bad-structure")
    rel = (head[1] << 8 | head[2]) - ((head[1] & 0x80) << 9)
    blocks = np.stack([head[0] & 0x7F, rel, pos_a + 4, end_a, (head[3] >> 7) & 1], axis=1)
    return timecode, blocks.reshape(-1, 5)


def _read(data: bytes) -> tuple[Fragment, _Blocks, bytes]:
    """Parse everything but the blocks, which stay offsets into the returned buffer."""
    try:
        roots = ebml.parse(data, masters=_MASTERS, levels=_LEVELS, lazy=_LAZY)
        header = _only(roots, EBML_HEADER, "EBML header")
        doctype = header.child(DOC_TYPE)
        if doctype is None or doctype.as_string() not in ("matroska", "webm"):
            raise ebml.EbmlError("DocType is not matroska", reason="bad-structure")
        segment = _only(roots, SEGMENT, "Segment")
        info = segment.child(INFO)
        scale = info.child(TIMECODE_SCALE) if info else None
        if scale is not None and scale.as_uint() != 1_000_000:
            raise ebml.EbmlError("TimecodeScale is not 1 ms", reason="bad-structure")
        tracks_el = segment.child(TRACKS)
        entries = tracks_el.children_with(TRACK_ENTRY) if tracks_el else []
        tracks = tuple(_parse_track(e) for e in entries)
        cluster = _only(segment.children, CLUSTER, "Cluster")
        timecode, blocks = _scan_cluster(cluster)
        tags: dict[str, str] = {}
        for tags_el in segment.children_with(TAGS):
            for tag in tags_el.children_with(TAG):
                for st in tag.children_with(SIMPLE_TAG):
                    name, value = st.child(TAG_NAME), st.child(TAG_STRING)
                    if name is not None:
                        tags[name.as_string()] = value.as_string() if value else ""
    except ebml.EbmlError as exc:
        raise KvsError(f"corrupt fragment: {exc}", reason="corrupt-ebml") from exc
    frag = Fragment(tracks, timecode, (), tags)
    frag.producer_timestamp_ms  # noqa: B018 - validate the tags now, not on first use
    frag.server_timestamp_ms  # noqa: B018
    return frag, blocks, cluster.buffer


def parse_fragment(data: bytes) -> Fragment:
    """Read one fragment document back into a :class:`Fragment`.

    Raises :class:`KvsError`: ``corrupt-ebml`` for anything structurally wrong (the
    underlying :class:`~mgsim.media.ebml.EbmlError` is chained), ``bad-tag`` for an
    unreadable timestamp tag.
    """
    frag, raw, buf = _read(data)
    blocks = tuple(Block(t, rel, buf[a:b], bool(key)) for t, rel, a, b, key in raw.tolist())
    return replace(frag, blocks=blocks)


def split_fragments(data: bytes) -> list[bytes]:
    """Split a GetMedia body (documents back to back) into one bytes per fragment."""
    try:
        roots = ebml.parse(data, masters=_MASTERS, levels=_LEVELS, lazy=_MASTERS)
    except ebml.EbmlError as exc:
        raise KvsError(f"corrupt media body: {exc}", reason="corrupt-ebml") from exc
    starts = [e.offset for e in roots if e.id == EBML_HEADER]
    if not starts or starts[0] != 0:
        raise KvsError("media body does not start with an EBML header", reason="corrupt-ebml")
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]


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
        self._index: dict[str, int] = {}
        self._last_tick = -1

    @property
    def fragments(self) -> tuple[StoredFragment, ...]:
        return tuple(self._fragments)

    def __len__(self) -> int:
        return len(self._fragments)

    def put_media(self, fragment: bytes | Fragment | Wire, server_time_ms: int) -> str:
        """Store one fragment, stamping the AWS tags; return its new fragment number.

        A fragment without a producer timestamp tag takes its cluster timecode (producers
        write absolute timecodes by default).
        """
        if isinstance(fragment, Wire):
            fragment = fragment.data if isinstance(fragment.data, bytes) else b""
        frag = parse_fragment(fragment) if isinstance(fragment, bytes) else fragment
        tick = max(int(server_time_ms), self._last_tick + 1)
        self._last_tick = tick
        number = fragment_number(self.arn, tick)
        producer = frag.producer_timestamp_ms
        producer = frag.timecode if producer is None else producer
        frag = frag.with_tags(
            **{
                TAG_FRAGMENT_NUMBER: number,
                TAG_SERVER_TS: _format_ts(tick),
                TAG_PRODUCER_TS: _format_ts(producer),
            }
        )
        stored = StoredFragment(
            number, tick, producer, frag.duration_ms, frag.contact_id, build_fragment(frag)
        )
        self._index[number] = len(self._fragments)
        self._fragments.append(stored)
        return number

    def start(self, selector: StartSelector) -> Cursor:
        """Open a read position as GetMedia does for ``selector``."""
        frags = self._fragments
        kind = selector.type
        if kind == "NOW":
            return Cursor(len(frags))
        if kind == "EARLIEST":
            return Cursor(0)
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
                return Cursor(i)
        return Cursor(len(frags))

    def read(self, cursor: Cursor) -> tuple[list[bytes], Cursor]:
        """Everything from ``cursor`` to now, and the cursor to continue from."""
        new = self._fragments[cursor.position :]
        if not new:
            return [], cursor
        return [f.data for f in new], Cursor(len(self._fragments), new[-1].number)

    def get_media(self, selector: StartSelector) -> list[bytes]:
        """One GetMedia call drained to the current end of the stream."""
        return self.read(self.start(selector))[0]


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

    def get(self, arn: str) -> KinesisVideoStream:
        """The stream with that ARN: ``bad-arn`` if malformed, ``unknown-stream`` if absent."""
        parse_arn(arn)
        try:
            return self._streams[arn]
        except KeyError:
            raise KvsError(f"no stream {arn}", reason="unknown-stream") from None


# ------------------------------------------------------------------------- encoder


def encode(
    call: StereoCall,
    *,
    guid: str,
    stream_arn: str,
    instance_id: str = DEFAULT_INSTANCE_ID,
    fragment_ms: int = 2000,
    frame_ms: int = 20,
    swap_track_numbers: bool = False,
    start_ms_epoch: int = DEFAULT_EPOCH_MS,
) -> Iterator[Wire]:
    """Play ``call`` as Connect writes it: one fragment Wire (channel ``"kvs"``) per
    ``fragment_ms``, one SimpleBlock per track per ``frame_ms``.

    ``guid`` is the ContactId. Cluster timecodes are absolute (epoch ms from
    ``start_ms_epoch``); each fragment already carries the AWS tags a store would stamp
    when it arrives at the end of its span. ``at_ms`` is the media time it is complete.
    """
    parse_arn(stream_arn)
    if frame_ms <= 0 or fragment_ms <= 0 or fragment_ms % frame_ms:
        raise ConfigError("fragment_ms must be a positive multiple of frame_ms")
    if fragment_ms > 32767:
        raise ConfigError("fragment_ms must fit a 16-bit relative timecode")
    cust_no, agent_no = (2, 1) if swap_track_numbers else (1, 2)
    tracks = tuple(
        sorted(
            (AudioTrack(cust_no, CUSTOMER_TRACK), AudioTrack(agent_no, AGENT_TRACK)),
            key=lambda t: t.number,
        )
    )
    n = call.n_samples
    pcm: list[tuple[int, npt.NDArray[np.uint8]]] = []
    for number, sig in ((cust_no, call.customer), (agent_no, call.agent)):
        padded = np.zeros(n, dtype="<i2")
        padded[: len(sig)] = sig
        pcm.append((number, padded.view(np.uint8)))
    connect_tags = {
        "ContactId": guid,
        "InstanceId": instance_id,
        "MimeType": MIME_TYPE,
        CUSTOMER_TRACK: str(cust_no),
        AGENT_TRACK: str(agent_no),
    }
    per_ms = SAMPLE_RATE // 1000
    frag_samples = fragment_ms * per_ms
    for start in range(0, max(n, 1), frag_samples):
        stop = min(start + frag_samples, n)
        producer_ms = start_ms_epoch + start // per_ms
        blocks = _frame_blocks(pcm, start, stop, frame_ms)
        server_ms = start_ms_epoch + -(-stop // per_ms)
        tags = {
            TAG_FRAGMENT_NUMBER: fragment_number(stream_arn, server_ms),
            TAG_SERVER_TS: _format_ts(server_ms),
            TAG_PRODUCER_TS: _format_ts(producer_ms),
            **connect_tags,
        }
        cluster = [ebml.uint_element(TIMECODE, producer_ms), blocks]
        yield Wire(stop * 1000.0 / SAMPLE_RATE, "kvs", _document(tracks, cluster, tags))


def _frame_blocks(
    pcm: list[tuple[int, npt.NDArray[np.uint8]]], start: int, stop: int, frame_ms: int
) -> bytes:
    """SimpleBlocks for samples ``start:stop``, one per track per frame, interleaved.

    Full frames all have the same layout, so they are laid out as one numpy array
    (frames x tracks x bytes) instead of 100 small byte strings per second."""
    per_ms = SAMPLE_RATE // 1000
    frame = frame_ms * per_ms
    k = (stop - start) // frame
    parts: list[bytes] = []
    if k:
        payload = 2 * frame
        head = b"\xa3" + ebml.encode_size(4 + payload)
        h = len(head)
        arr = np.empty((k, len(pcm), h + 4 + payload), np.uint8)
        arr[:, :, :h] = np.frombuffer(head, np.uint8)
        rel = np.arange(k) * frame_ms
        arr[:, :, h + 1] = (rel >> 8)[:, None]
        arr[:, :, h + 2] = (rel & 0xFF)[:, None]
        arr[:, :, h + 3] = 0x80  # keyframe: every PCM frame stands alone
        for j, (number, raw) in enumerate(pcm):
            arr[:, j, h] = 0x80 | number
            arr[:, j, h + 4 :] = raw[2 * start : 2 * (start + k * frame)].reshape(k, payload)
        parts.append(arr.tobytes())
    tail = start + k * frame
    if tail < stop:
        rel_bytes = ((tail - start) // per_ms).to_bytes(2, "big", signed=True) + b"\x80"
        for number, raw in pcm:
            body = bytes((0x80 | number,)) + rel_bytes + raw[2 * tail : 2 * stop].tobytes()
            parts.append(b"\xa3" + ebml.encode_size(len(body)) + body)
    return b"".join(parts)


# ------------------------------------------------------------------------ consumer


def _check_audio(track: AudioTrack) -> None:
    if track.sampling_frequency != SAMPLE_RATE or track.channels != 1:
        raise KvsError(
            f"{track.name}: {track.sampling_frequency} Hz x {track.channels}, "
            f"expected {SAMPLE_RATE} Hz mono",
            reason="bad-audio",
        )
    if track.codec_id == "A_AAC" and track.codec_private:
        # AudioSpecificConfig: 5 bits object type, 4 bits rate index, 4 bits channels.
        cp = track.codec_private
        bits = int.from_bytes(cp[:2], "big") if len(cp) >= 2 else -1
        if bits < 0 or (bits >> 7) & 0xF != 11 or (bits >> 3) & 0xF != 1:
            raise KvsError(
                f"{track.name}: CodecPrivate {cp.hex()} is not 8 kHz mono",
                reason="bad-codec-private",
            )


def _track_names(frag: Fragment, blocks: _Blocks) -> dict[int, str]:
    """Track number -> name, after checking both tracks, their audio and every block."""
    names: dict[int, str] = {}
    for name in TRACK_NAMES:
        track = frag.track(name)
        _check_audio(track)
        names[track.number] = name
    unknown = ~np.isin(blocks[:, 0], list(names))
    if unknown.any():
        number = int(blocks[unknown, 0][0])
        raise KvsError(f"block for undeclared track {number}", reason="missing-track")
    if ((blocks[:, 3] - blocks[:, 2]) % 2).any():
        raise KvsError("odd-length 16-bit PCM payload", reason="bad-audio")
    return names


class KvsConsumer:
    """Decode the fragments of one Connect contact, as GetMedia delivers them.

    ``feed`` takes fragment bytes (or the encoder's :class:`Wire`). The first fragment of
    the wanted contact (``contact_id``, or whichever comes first) opens the session; audio
    is placed at ``(producer timestamp - first fragment's producer timestamp) + relative
    block timecode``, in samples, so a consumer that starts late (FRAGMENT_NUMBER, NOW)
    still places every fragment on the platform's own clock. Fragments of another contact
    before the session opens are skipped; after it, they close it (``"contact-changed"``)
    and nothing more is accepted.
    """

    def __init__(self, *, contact_id: str | None = None, stream_arn: str | None = None) -> None:
        self.contact_id = contact_id
        self.stream_arn = stream_arn
        self.opened = False
        self.closed = False
        self.fragments = 0
        self._origin_producer: int | None = None
        self._origin_timecode = 0
        self._next: dict[str, int] = {}
        self._last_number: str | None = None

    def feed(self, fragment: bytes | Wire) -> list[Event]:
        """Decode one fragment; return what it means for the session."""
        if self.closed:
            return []
        data = fragment.data if isinstance(fragment, Wire) else fragment
        if not isinstance(data, bytes | bytearray):
            raise KvsError("a KVS fragment must be bytes", reason="corrupt-ebml")
        frag, blocks, buf = _read(bytes(data))
        events: list[Event] = []
        if self.opened and frag.contact_id != self.contact_id:
            self.closed = True
            return [SessionClosed("contact-changed")]
        if not self.opened and self.contact_id not in (None, frag.contact_id):
            return []
        # Validate before any state changes, so a rejected fragment leaves nothing behind.
        names = _track_names(frag, blocks)
        if not self.opened:
            events.append(self._open(frag, names))
        number = frag.fragment_number
        if number is not None and number == self._last_number:
            return [*events, Anomaly("duplicate", f"fragment {number} delivered twice")]
        self._last_number = number
        self.fragments += 1
        events.extend(self._audio(frag, names, blocks, buf))
        return events

    def close(self) -> list[Event]:
        """End of the media: close the session if it is still open."""
        if self.opened and not self.closed:
            self.closed = True
            return [SessionClosed("end-of-stream")]
        self.closed = True
        return []

    def _open(self, frag: Fragment, names: Mapping[int, str]) -> SessionOpened:
        numbers = {name: number for number, name in names.items()}
        self.opened = True
        self.contact_id = frag.contact_id
        self._origin_producer = frag.producer_timestamp_ms
        self._origin_timecode = frag.timecode
        info: dict[str, Any] = {
            "fragment_number": frag.fragment_number,
            "instance_id": frag.tags.get("InstanceId"),
            "producer_timestamp_ms": frag.producer_timestamp_ms,
            "tracks": numbers,
        }
        if self.stream_arn is not None:
            info["stream_arn"] = self.stream_arn
        return SessionOpened(guid=frag.contact_id or "", channels=TRACK_NAMES, info=info)

    def _audio(
        self, frag: Fragment, names: Mapping[int, str], blocks: _Blocks, buf: bytes
    ) -> list[Event]:
        producer = frag.producer_timestamp_ms
        if producer is not None and self._origin_producer is not None:
            base_ms = producer - self._origin_producer
        else:
            base_ms = frag.timecode - self._origin_timecode
        numbers, rel, pay_a, pay_b = blocks[:, 0], blocks[:, 1], blocks[:, 2], blocks[:, 3]
        raw = np.frombuffer(buf, dtype=np.uint8)
        starts = (base_ms + rel) * (SAMPLE_RATE // 1000)
        events: list[Event] = []
        for number, name in names.items():  # customer first, as TRACK_NAMES
            mine = np.flatnonzero(numbers == number)
            if not len(mine):
                continue
            s, a, b = starts[mine], pay_a[mine], pay_b[mine]
            e = s + (b - a) // 2
            # Blocks that continue exactly where the previous one ended form one chunk.
            cuts = [0, *(np.flatnonzero(s[1:] != e[:-1]) + 1).tolist(), len(s)]
            for i, j in itertools.pairwise(cuts):
                size = int(b[i] - a[i])
                if (b[i:j] - a[i:j] == size).all():
                    payload = raw[a[i:j, None] + np.arange(size)].reshape(-1)
                else:
                    payload = np.frombuffer(
                        b"".join(
                            buf[x:y] for x, y in zip(a[i:j].tolist(), b[i:j].tolist(), strict=True)
                        ),
                        dtype=np.uint8,
                    )
                pcm = payload.view("<i2").astype(np.int16)
                events.extend(self._place(name, int(s[i]), pcm, max(size // 2, 1)))
        return events

    def _place(self, name: str, start: int, pcm: npt.NDArray[np.int16], frame: int) -> list[Event]:
        events: list[Event] = []
        end = start + len(pcm)
        expected = self._next.get(name)
        skip = 0
        if expected is not None and start > expected:
            gap = start - expected
            detail = f"{gap} samples missing before {start}"
            events.append(Anomaly("gap", detail, name, -(-gap // frame)))
        elif expected is not None and start < expected:
            skip = min(expected - start, end - start)
            kind = "duplicate" if skip == end - start else "overlap"
            # Repeated audio is dropped, not replayed: replay is what makes consumers stutter.
            detail = f"{skip} samples repeat audio before {expected}"
            events.append(Anomaly(kind, detail, name, -(-skip // frame)))
        self._next[name] = max(end, expected or 0)
        if start + skip < end:
            events.append(AudioChunk(name, start + skip, pcm[skip:]))
        return events
