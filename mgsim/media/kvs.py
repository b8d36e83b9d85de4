"""Amazon Connect live media: Matroska fragments in a Kinesis Video Stream.

Connect writes each call into a Kinesis Video Stream (KVS) as a sequence of *fragments*,
each a complete Matroska document with an ``AUDIO_FROM_CUSTOMER`` and an
``AUDIO_TO_CUSTOMER`` track of 8 kHz 16-bit PCM (layout in :mod:`mgsim.media.kvs_mkv`).
This module holds the encoder (:func:`encode`, a :class:`StereoCall` to fragments) and
:class:`KvsConsumer`, the decoder. It is also the family's front door: every public name of
:mod:`mgsim.media.kvs_mkv` (records, :func:`build_fragment`, :func:`parse_fragment`,
:func:`split_fragments`, :class:`KvsError`, element IDs) and :mod:`mgsim.media.kvs_store`
(ARNs, fragment numbers, :class:`StartSelector`, the in-memory stream store) is importable
from here.

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

import itertools
from collections.abc import Iterator, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError
from mgsim.media import ebml
from mgsim.media import kvs_mkv as _mkv
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
from mgsim.media.kvs_mkv import (
    AGENT_TRACK,
    CUSTOMER_TRACK,
    TRACK_NAMES,
    AudioTrack,
    Block,
    BlockTable,
    Fragment,
    KvsError,
    build_document,
    build_fragment,
    format_timestamp,
    parse_fragment,
    read_fragment,
    split_fragments,
)
from mgsim.media.kvs_store import (
    DEFAULT_EPOCH_MS,
    Cursor,
    KinesisVideoStore,
    KinesisVideoStream,
    StartSelector,
    StoredFragment,
    connect_stream_name,
    fragment_number,
    parse_arn,
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

MIME_TYPE: Final = "audio/L16;rate=8000;channels=1;"
DEFAULT_INSTANCE_ID: Final = "4f1b5c3e-2d7a-4e9b-8c61-0a2b3c4d5e6f"

# Tag names and Matroska element IDs live in kvs_mkv; they stay importable from here.
TAG_FRAGMENT_NUMBER, TAG_SERVER_TS = _mkv.TAG_FRAGMENT_NUMBER, _mkv.TAG_SERVER_TS
TAG_PRODUCER_TS = _mkv.TAG_PRODUCER_TS
EBML_HEADER, DOC_TYPE = _mkv.EBML_HEADER, _mkv.DOC_TYPE
SEGMENT, INFO, TIMECODE_SCALE = _mkv.SEGMENT, _mkv.INFO, _mkv.TIMECODE_SCALE
TRACKS, TRACK_ENTRY = _mkv.TRACKS, _mkv.TRACK_ENTRY
TRACK_NUMBER, TRACK_UID = _mkv.TRACK_NUMBER, _mkv.TRACK_UID
TRACK_TYPE, NAME, CODEC_ID = _mkv.TRACK_TYPE, _mkv.NAME, _mkv.CODEC_ID
CODEC_PRIVATE, AUDIO = _mkv.CODEC_PRIVATE, _mkv.AUDIO
SAMPLING_FREQUENCY, CHANNELS = _mkv.SAMPLING_FREQUENCY, _mkv.CHANNELS
BIT_DEPTH, TAGS, TAG = _mkv.BIT_DEPTH, _mkv.TAGS, _mkv.TAG
TARGETS, SIMPLE_TAG = _mkv.TARGETS, _mkv.SIMPLE_TAG
TAG_NAME, TAG_STRING = _mkv.TAG_NAME, _mkv.TAG_STRING
CLUSTER, TIMECODE, SIMPLE_BLOCK = _mkv.CLUSTER, _mkv.TIMECODE, _mkv.SIMPLE_BLOCK
SEEK_HEAD, CUES = _mkv.SEEK_HEAD, _mkv.CUES
CHAPTERS, ATTACHMENTS = _mkv.CHAPTERS, _mkv.ATTACHMENTS

# doctest.testmod(kvs) also runs the examples of what moved to kvs_mkv and kvs_store.
__test__ = {
    "KvsError": KvsError,
    "build_fragment": build_fragment,
    "format_timestamp": format_timestamp,
    "parse_arn": parse_arn,
    "fragment_number": fragment_number,
    "StartSelector": StartSelector,
    "KinesisVideoStream": KinesisVideoStream,
}

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
            TAG_SERVER_TS: format_timestamp(server_ms),
            TAG_PRODUCER_TS: format_timestamp(producer_ms),
            **connect_tags,
        }
        cluster = [ebml.uint_element(TIMECODE, producer_ms), blocks]
        yield Wire(stop * 1000.0 / SAMPLE_RATE, "kvs", build_document(tracks, cluster, tags))


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


def _track_names(frag: Fragment, blocks: BlockTable) -> dict[int, str]:
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
        frag, blocks, buf = read_fragment(bytes(data))
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
        self, frag: Fragment, names: Mapping[int, str], blocks: BlockTable, buf: bytes
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
