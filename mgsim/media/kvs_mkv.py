"""Matroska fragments as Kinesis Video Streams carries them: records, writer and reader.

As ``GetMedia`` returns them, every fragment is a complete Matroska document::

    EBML header (DocType "matroska")
    Segment (unknown size, as a live producer writes it)
      Info     TimecodeScale 1,000,000 (timecodes in ms)
      Tracks   AUDIO_FROM_CUSTOMER, AUDIO_TO_CUSTOMER (CodecID "A_AAC", payload is PCM)
      Tags     Tag: AWS_KINESISVIDEO_FRAGMENT_NUMBER / _SERVER_TIMESTAMP / _PRODUCER_TIMESTAMP,
                    ContactId, InstanceId, MimeType, AUDIO_FROM_CUSTOMER=<n>, AUDIO_TO_CUSTOMER=<n>
               Tag: AWS_KINESISVIDEO_MILLIS_BEHIND_NOW, AWS_KINESISVIDEO_CONTINUATION_TOKEN
                    (GetMedia only: :func:`with_reader_tags`)
      Cluster  Timecode (absolute, ms) + SimpleBlocks (track, int16 relative ms, flags, PCM)

The fragment's tags come before its Cluster, as GetMedia returns them: a reader (ffprobe,
the Kinesis Video parser library) meets a fragment's ContactId and numbers before its
audio, and a Matroska demuxer that reads the head of a segment up to its first Cluster
lists every tag without seeking.

Track numbers are not fixed, so tracks are always matched by ``Name``. This module holds the
track names, tag names and Matroska element IDs, :class:`KvsError` (shared by the whole KVS
family), the :class:`AudioTrack` / :class:`Block` / :class:`Fragment` records,
:func:`build_fragment`, :func:`parse_fragment`, :func:`split_fragments`, and the lower-level
:func:`build_document` / :func:`read_fragment` the encoder and consumer in
:mod:`mgsim.media.kvs` use to skip per-block objects.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError, MediaError
from mgsim.media import ebml
from mgsim.media._base import SAMPLE_RATE

__all__ = [
    "AGENT_TRACK",
    "CUSTOMER_TRACK",
    "TAG_CONTINUATION_TOKEN",
    "TAG_FRAGMENT_NUMBER",
    "TAG_MILLIS_BEHIND_NOW",
    "TAG_PRODUCER_TS",
    "TAG_SERVER_TS",
    "TRACK_NAMES",
    "AudioTrack",
    "Block",
    "BlockTable",
    "Fragment",
    "KvsError",
    "build_document",
    "build_fragment",
    "format_timestamp",
    "parse_fragment",
    "read_fragment",
    "restamp_fragment",
    "split_fragments",
    "with_reader_tags",
]

CUSTOMER_TRACK: Final = "AUDIO_FROM_CUSTOMER"
AGENT_TRACK: Final = "AUDIO_TO_CUSTOMER"
TRACK_NAMES: Final = (CUSTOMER_TRACK, AGENT_TRACK)

TAG_FRAGMENT_NUMBER: Final = "AWS_KINESISVIDEO_FRAGMENT_NUMBER"
TAG_SERVER_TS: Final = "AWS_KINESISVIDEO_SERVER_TIMESTAMP"
TAG_PRODUCER_TS: Final = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"
TAG_MILLIS_BEHIND_NOW: Final = "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW"
TAG_CONTINUATION_TOKEN: Final = "AWS_KINESISVIDEO_CONTINUATION_TOKEN"
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


def format_timestamp(ms: int) -> str:
    """A timestamp tag value: epoch seconds with millisecond decimals, as KVS writes them.

    >>> format_timestamp(1_700_000_000_050)
    '1700000000.050'
    """
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
    return build_document(fragment.tracks, cluster, fragment.tags)


def build_document(
    tracks: tuple[AudioTrack, ...], cluster_children: list[bytes], tags: Mapping[str, str]
) -> bytes:
    """A fragment document from its tracks, ready-made Cluster children and tags.

    :func:`build_fragment` goes through here; the encoder calls it directly with the
    SimpleBlocks already laid out as bytes.
    """
    return _build_document(tracks, cluster_children, tags)[0]


def _tag(tags: Mapping[str, str]) -> bytes:
    """One Tag element (empty Targets: the whole segment) holding ``tags`` as SimpleTags."""
    simple_tags = [
        ebml.master_element(
            SIMPLE_TAG, [ebml.string_element(TAG_NAME, k), ebml.string_element(TAG_STRING, v)]
        )
        for k, v in tags.items()
    ]
    return ebml.master_element(TAG, [ebml.master_element(TARGETS, []), *simple_tags])


def _build_document(
    tracks: tuple[AudioTrack, ...], cluster_children: list[bytes], tags: Mapping[str, str]
) -> tuple[bytes, int]:
    """The document, and how many bytes follow the Cluster (none: it comes last)."""
    segment = ebml.master_element(
        SEGMENT,
        [
            _INFO_BYTES,
            ebml.master_element(TRACKS, [t.encode() for t in tracks]),
            ebml.master_element(TAGS, [_tag(tags)]),
            ebml.master_element(CLUSTER, cluster_children),
        ],
        unknown_size=True,
    )
    return _EBML_HEADER_BYTES + segment, 0


def with_reader_tags(doc: bytes, tags: Mapping[str, str]) -> bytes:
    """``doc`` with one more Tag of ``tags`` in its Tags element, which stays before the
    Cluster: what GetMedia adds to each stored fragment as it sends it
    (``AWS_KINESISVIDEO_MILLIS_BEHIND_NOW``, ``AWS_KINESISVIDEO_CONTINUATION_TOKEN``).

    Only the Segment's first children are stepped over (a few bytes each); the Cluster is
    copied as it is. Raises :class:`KvsError` (``corrupt-ebml``) for a document whose
    Segment has no Tags element before its Cluster.

    >>> f = Fragment((AudioTrack(1, CUSTOMER_TRACK),), 0, (Block(1, 0, b"\\x01\\x00"),), {})
    >>> doc = with_reader_tags(build_fragment(f), {TAG_MILLIS_BEHIND_NOW: "0"})
    >>> parse_fragment(doc).tags
    {'AWS_KINESISVIDEO_MILLIS_BEHIND_NOW': '0'}
    """
    try:
        _, pos = ebml.read_id(doc, 0)
        size, pos = ebml.read_size(doc, pos)
        pos += size  # past the EBML header
        element, pos = ebml.read_id(doc, pos)
        if element != SEGMENT:
            raise ebml.EbmlError("no Segment after the EBML header", reason="bad-structure")
        _, pos = ebml.read_size(doc, pos)
        while True:
            start = pos
            element, pos = ebml.read_id(doc, pos)
            size, pos = ebml.read_size(doc, pos)
            if element == CLUSTER or size < 0:
                raise ebml.EbmlError("no Tags before the Cluster", reason="bad-structure")
            if element == TAGS:
                end = pos + size
                if end > len(doc):
                    raise ebml.EbmlError("Tags cut short", reason="truncated")
                tags_el = ebml.master_element(TAGS, [doc[pos:end], _tag(tags)])
                return doc[:start] + tags_el + doc[end:]
            pos += size
    except ebml.EbmlError as exc:
        raise KvsError(f"corrupt fragment: {exc}", reason="corrupt-ebml") from exc


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


# Arrays, not objects: a 2-second fragment holds 200 blocks.
BlockTable = npt.NDArray[np.int64]
"""One row per SimpleBlock: track number, relative timecode (ms), payload start and end in
the fragment buffer, keyframe flag."""


def _scan_cluster(cluster: ebml.Element) -> tuple[int, BlockTable]:
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


def read_fragment(data: bytes) -> tuple[Fragment, BlockTable, bytes]:
    """Parse everything but the blocks, which stay offsets into the returned buffer.

    Returns the :class:`Fragment` without blocks, its (read-only) :data:`BlockTable` and
    the buffer the offsets point into. Raises :class:`KvsError` as :func:`parse_fragment`
    does. The last few results are remembered: a fragment put into a stream is read by the
    store, the stream's watcher and every consumer, all within moments.
    """
    frag, blocks, buf, _ = _read_fragment(bytes(data))
    return frag, blocks, buf


def restamp_fragment(data: bytes, **tags: str) -> tuple[Fragment, int, bytes]:
    """``data`` with these tags set (as :meth:`Fragment.with_tags`), its Cluster kept byte
    for byte: what a stream stores when it stamps a producer's fragment.

    Returns the stamped :class:`Fragment` (without blocks), its duration in ms (as
    :attr:`Fragment.duration_ms` of the full fragment) and the new document. Raises
    :class:`KvsError` as :func:`parse_fragment` does.
    """
    frag, blocks, buf, (lo, hi) = _read_fragment(bytes(data))
    frag = frag.with_tags(**tags)
    duration = 0
    if len(blocks):
        rates = np.full(128, SAMPLE_RATE, dtype=np.int64)
        for t in frag.tracks:
            f = t.sampling_frequency
            if 1.0 <= f < 1e9:  # also false for NaN
                rates[t.number] = int(f)
        samples = (blocks[:, 3] - blocks[:, 2]) // 2
        duration = max(0, int((blocks[:, 1] + samples * 1000 // rates[blocks[:, 0]]).max()))
    doc, after = _build_document(frag.tracks, [buf[lo:hi]], frag.tags)
    # What reading the new document gives is known already: remember it, so the stream's
    # watcher and readers do not parse it again.
    new_hi = len(doc) - after
    new_lo = new_hi - (hi - lo)
    moved = blocks.copy()
    moved[:, 2:4] += new_lo - lo
    moved.flags.writeable = False
    _remember(doc, (frag, moved, doc, (new_lo, new_hi)))
    return frag, duration, doc


_Parsed = tuple[Fragment, BlockTable, bytes, tuple[int, int]]
_RECENT: OrderedDict[bytes, _Parsed] = OrderedDict()
_RECENT_SIZE = 16


_RECENT_LOCK = threading.Lock()  # an embedded simulator's loop thread shares the module


def _remember(data: bytes, parsed: _Parsed) -> None:
    with _RECENT_LOCK:
        _RECENT[data] = parsed
        _RECENT.move_to_end(data)
        while len(_RECENT) > _RECENT_SIZE:
            _RECENT.popitem(last=False)


def _read_fragment(data: bytes) -> _Parsed:
    with _RECENT_LOCK:
        parsed = _RECENT.get(data)
    if parsed is None:
        parsed = _parse(data)
        _remember(data, parsed)
    return parsed


def _parse(data: bytes) -> _Parsed:
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
    blocks.flags.writeable = False  # shared by every reader of the same bytes
    return frag, blocks, cluster.buffer, (cluster.data_offset, cluster.end)


def parse_fragment(data: bytes) -> Fragment:
    """Read one fragment document back into a :class:`Fragment`.

    Raises :class:`KvsError`: ``corrupt-ebml`` for anything structurally wrong (the
    underlying :class:`~mgsim.media.ebml.EbmlError` is chained), ``bad-tag`` for an
    unreadable timestamp tag.
    """
    frag, raw, buf = read_fragment(data)
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
