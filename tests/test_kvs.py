from __future__ import annotations

import doctest
import io
from collections.abc import Iterable
from typing import Any

import ebmlite
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgsim.errors import ConfigError, MediaError
from mgsim.media import ebml, kvs
from mgsim.media._base import (
    Anomaly,
    AudioChunk,
    Event,
    SessionClosed,
    SessionOpened,
    StereoCall,
    Wire,
)
from mgsim.media.kvs import (
    CUSTOMER_TRACK,
    MIME_TYPE,
    TRACK_NAMES,
    AudioTrack,
    Block,
    Fragment,
    KinesisVideoStore,
    KinesisVideoStream,
    KvsConsumer,
    KvsError,
    StartSelector,
    build_fragment,
    encode,
    fragment_number,
    parse_arn,
    parse_fragment,
    split_fragments,
)
from mgsim.media.kvs_mkv import TAG_FRAGMENT_NUMBER, restamp_fragment

AGENT_TRACK = kvs.AGENT_TRACK
CONTACT = "5f2a3c1e-9b7d-4e21-a0c3-7d5e8f9a1b2c"
OTHER_CONTACT = "0b9c8d7e-6f5a-4b3c-2d1e-0f9e8d7c6b5a"
ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/mgsim-connect-i-contact-c/1700000000000"
RATE = 8000
MATROSKA = ebmlite.loadSchema("matroska.xml")


def _call(seconds: float = 7.3, seed: int = 7) -> StereoCall:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE

    def voice(freq: float, length: int) -> np.ndarray[Any, np.dtype[np.int16]]:
        x = 9000 * np.sin(2 * np.pi * freq * t[:length]) + rng.normal(0, 2500, length)
        return np.clip(x, -32768, 32767).astype(np.int16)

    # Unequal lengths: the encoder pads the shorter participant with silence.
    return StereoCall(voice(440, n), voice(1020, n - 1237))


def _feed_all(consumer: KvsConsumer, fragments: Iterable[bytes | Wire]) -> list[Event]:
    return [e for f in fragments for e in consumer.feed(f)]


def _assemble(events: list[Event], n: int) -> dict[str, np.ndarray[Any, np.dtype[np.int16]]]:
    out = {name: np.zeros(n, dtype=np.int16) for name in TRACK_NAMES}
    covered = dict.fromkeys(TRACK_NAMES, 0)
    for e in events:
        if isinstance(e, AudioChunk):
            out[e.channel][e.start_sample : e.end_sample] = e.pcm
            covered[e.channel] += len(e.pcm)
    assert covered == dict.fromkeys(TRACK_NAMES, n)
    return out


def _padded(x: np.ndarray[Any, np.dtype[np.int16]], n: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.concatenate([x, np.zeros(n - len(x), dtype=np.int16)])


def test_doctests() -> None:
    assert doctest.testmod(kvs).failed == 0


# ------------------------------------------------------------------- round trip


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize(
    ("fragment_ms", "frame_ms"), [(2000, 20), (1000, 20), (500, 100), (2100, 30)]
)
def test_round_trip_is_bit_exact(swap: bool, fragment_ms: int, frame_ms: int) -> None:
    call = _call()
    wires = list(
        encode(
            call,
            guid=CONTACT,
            stream_arn=ARN,
            fragment_ms=fragment_ms,
            frame_ms=frame_ms,
            swap_track_numbers=swap,
        )
    )
    assert all(w.channel == "kvs" and isinstance(w.data, bytes) for w in wires)
    assert len(wires) == -(-call.n_samples // (fragment_ms * 8))
    consumer = KvsConsumer(stream_arn=ARN)
    events = _feed_all(consumer, wires) + consumer.close()
    opened = events[0]
    assert isinstance(opened, SessionOpened)
    assert opened.guid == CONTACT and opened.channels == TRACK_NAMES
    numbers = {CUSTOMER_TRACK: 2, AGENT_TRACK: 1} if swap else {CUSTOMER_TRACK: 1, AGENT_TRACK: 2}
    assert opened.info["tracks"] == numbers
    assert opened.info["stream_arn"] == ARN
    assert opened.info["instance_id"] == kvs.DEFAULT_INSTANCE_ID
    assert opened.info["fragment_number"] == parse_fragment(wires[0].data).fragment_number  # type: ignore[arg-type]
    assert not [e for e in events if isinstance(e, Anomaly)]
    assert events[-1] == SessionClosed("end-of-stream")
    audio = _assemble(events, call.n_samples)
    assert np.array_equal(audio[CUSTOMER_TRACK], call.customer)
    assert np.array_equal(audio[AGENT_TRACK], _padded(call.agent, call.n_samples))


def test_wire_times_and_fragment_tags() -> None:
    call = _call(5.0)
    wires = list(encode(call, guid=CONTACT, stream_arn=ARN, start_ms_epoch=1_700_000_123_000))
    assert [w.at_ms for w in wires] == [2000.0, 4000.0, 5000.0]
    frags = [parse_fragment(w.data) for w in wires]  # type: ignore[arg-type]
    assert [f.producer_timestamp_ms for f in frags] == [
        1_700_000_123_000 + k * 2000 for k in range(3)
    ]
    assert [f.timecode for f in frags] == [f.producer_timestamp_ms for f in frags]
    numbers = [int(f.fragment_number or 0) for f in frags]
    assert numbers == sorted(numbers) and all(len(str(n)) == 47 for n in numbers)
    tags = frags[0].tags
    assert tags["MimeType"] == MIME_TYPE
    assert tags["ContactId"] == CONTACT and tags["InstanceId"] == kvs.DEFAULT_INSTANCE_ID
    assert (tags[CUSTOMER_TRACK], tags[AGENT_TRACK]) == ("1", "2")
    assert list(tags)[:3] == [kvs.TAG_FRAGMENT_NUMBER, kvs.TAG_SERVER_TS, kvs.TAG_PRODUCER_TS]
    assert tags[kvs.TAG_PRODUCER_TS] == "1700000123.000"
    # One SimpleBlock per track per 20 ms frame, all keyframes.
    assert len(frags[0].blocks) == 2 * 100 and all(b.keyframe for b in frags[0].blocks)


def test_empty_call_still_opens_a_session() -> None:
    empty = np.zeros(0, dtype=np.int16)
    [wire] = encode(StereoCall(empty, empty), guid=CONTACT, stream_arn=ARN)
    events = KvsConsumer().feed(wire)
    assert len(events) == 1 and isinstance(events[0], SessionOpened)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fragment_ms": 1000, "frame_ms": 30},
        {"fragment_ms": 0},
        {"frame_ms": 0},
        {"fragment_ms": 40000},
    ],
)
def test_encoder_rejects_bad_timing(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        list(encode(_call(1.0), guid=CONTACT, stream_arn=ARN, **kwargs))


def test_encoder_rejects_bad_arn() -> None:
    with pytest.raises(KvsError) as info:
        list(encode(_call(1.0), guid=CONTACT, stream_arn="arn:aws:s3:::bucket"))
    assert info.value.reason == "bad-arn"


# ------------------------------------------------------- independent Matroska reader


def _names(element: Any, depth: int = 0) -> list[tuple[int, str]]:
    out = []
    for child in element:
        out.append((depth, child.name))
        if isinstance(child, ebmlite.core.MasterElement):
            out.extend(_names(child, depth + 1))
    return out


@pytest.mark.parametrize("swap", [False, True])
def test_every_fragment_reads_with_ebmlite(swap: bool) -> None:
    call = _call(5.0)
    wires = list(encode(call, guid=CONTACT, stream_arn=ARN, swap_track_numbers=swap))
    for wire in wires:
        assert isinstance(wire.data, bytes)
        doc = MATROSKA.loads(wire.data)
        names = _names(doc)
        assert ("UnknownElement" not in {n for _, n in names}) and names
        [segment] = [el for el in doc if el.name == "Segment"]
        # A fragment's tags come before its audio, as GetMedia returns them.
        assert [el.name for el in segment] == ["Info", "Tracks", "Tags", "Cluster"]
        info = next(el for el in segment if el.name == "Info")
        assert next(el.value for el in info if el.name == "TimecodeScale") == 1_000_000
        tracks = next(el for el in segment if el.name == "Tracks")
        by_name = {}
        for entry in tracks:
            fields = {el.name: el for el in entry}
            audio = {el.name: el.value for el in fields["Audio"]}
            assert fields["CodecID"].value == "A_AAC" and fields["TrackType"].value == 2
            assert audio["SamplingFrequency"] == 8000.0 and audio["Channels"] == 1
            by_name[fields["Name"].value] = fields["TrackNumber"].value
        assert by_name == (
            {CUSTOMER_TRACK: 2, AGENT_TRACK: 1} if swap else {CUSTOMER_TRACK: 1, AGENT_TRACK: 2}
        )
        cluster = next(el for el in segment if el.name == "Cluster")
        blocks = [el for el in cluster if el.name == "SimpleBlock"]
        samples = min(16000, call.n_samples - 16000 * wires.index(wire))
        assert len(blocks) == 2 * -(-samples // 160)
        assert next(el.name for el in cluster) == "Timecode"
        tag_names = [
            el.value
            for tags in segment
            if tags.name == "Tags"
            for tag in tags
            for simple in tag
            if simple.name == "SimpleTag"
            for el in simple
            if el.name == "TagName"
        ]
        assert tag_names == [
            "AWS_KINESISVIDEO_FRAGMENT_NUMBER",
            "AWS_KINESISVIDEO_SERVER_TIMESTAMP",
            "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP",
            "ContactId",
            "InstanceId",
            "MimeType",
            "AUDIO_FROM_CUSTOMER",
            "AUDIO_TO_CUSTOMER",
        ]
        assert doc.type == "matroska" and doc.info["DocType"] == "matroska"
        assert [el.name for el in MATROSKA.load(io.BytesIO(wire.data), headers=True)] == [
            "EBML",
            "Segment",
        ]


def test_build_and_parse_fragment_records_agree() -> None:
    frag = Fragment(
        (AudioTrack(7, AGENT_TRACK), AudioTrack(3, CUSTOMER_TRACK)),
        123_456,
        (
            Block(3, 0, b"\x01\x00\x02\x00"),
            Block(7, 0, b"\xff\xff"),
            Block(3, -5, b"", keyframe=False),
        ),
        {"ContactId": CONTACT, "x": ""},
    )
    assert parse_fragment(build_fragment(frag)) == frag
    assert frag.track(CUSTOMER_TRACK).number == 3
    assert frag.duration_ms == 0  # 2 samples end before the first millisecond


# ----------------------------------------------------------------- stream store


def _stream_with_call(
    call: StereoCall, contact: str = CONTACT
) -> tuple[KinesisVideoStream, list[str]]:
    store = KinesisVideoStore()
    stream = store.create_connect_stream("inst-1", contact)
    numbers = []
    for wire in encode(call, guid=contact, stream_arn=stream.arn):
        assert isinstance(wire.data, bytes)
        numbers.append(stream.put_media(wire.data, kvs.DEFAULT_EPOCH_MS + int(wire.at_ms) + 150))
    return stream, numbers


def test_put_media_assigns_increasing_47_digit_numbers() -> None:
    stream, numbers = _stream_with_call(_call(9.0))
    assert len(numbers) == 5 == len(stream)
    assert all(len(n) == 47 and n.isdigit() for n in numbers)
    assert [int(n) for n in numbers] == sorted(int(n) for n in numbers)
    stored = parse_fragment(stream.fragments[2].data)
    assert stored.fragment_number == numbers[2]
    assert stored.server_timestamp_ms == kvs.DEFAULT_EPOCH_MS + 6000 + 150
    assert stored.producer_timestamp_ms == kvs.DEFAULT_EPOCH_MS + 4000


def test_put_media_keeps_numbers_increasing_when_server_time_stalls() -> None:
    stream = KinesisVideoStream(ARN)
    wires = list(encode(_call(3.0), guid=CONTACT, stream_arn=ARN, fragment_ms=1000))
    numbers = [int(stream.put_media(w, 5)) for w in wires]
    assert numbers == sorted(set(numbers))


def test_put_media_of_a_record_without_producer_time_uses_the_cluster_timecode() -> None:
    stream = KinesisVideoStream(ARN)
    record = Fragment(
        (AudioTrack(1, CUSTOMER_TRACK), AudioTrack(2, AGENT_TRACK)), 1_700_000_555_000
    )
    stream.put_media(record, 1_700_000_556_000)
    assert stream.fragments[0].producer_ms == 1_700_000_555_000
    assert parse_fragment(stream.fragments[0].data).producer_timestamp_ms == 1_700_000_555_000


def test_earliest_returns_everything_in_order() -> None:
    stream, numbers = _stream_with_call(_call(9.0))
    got = [parse_fragment(f).fragment_number for f in stream.get_media(StartSelector("EARLIEST"))]
    assert got == numbers


@pytest.mark.parametrize("after", [0, 1, 3])
def test_fragment_number_selector_starts_after_the_given_fragment(after: int) -> None:
    call = _call(9.0)
    stream, numbers = _stream_with_call(call)
    frags = stream.get_media(StartSelector("FRAGMENT_NUMBER", after_fragment_number=numbers[after]))
    assert [parse_fragment(f).fragment_number for f in frags] == numbers[after + 1 :]
    # A consumer starting late places audio from the first fragment it receives.
    events = _feed_all(KvsConsumer(contact_id=CONTACT), frags)
    assert not [e for e in events if isinstance(e, Anomaly)]
    first = (after + 1) * 16000
    audio = _assemble(events, call.n_samples - first)
    assert np.array_equal(audio[CUSTOMER_TRACK], call.customer[first:])
    assert np.array_equal(audio[AGENT_TRACK], _padded(call.agent, call.n_samples)[first:])


def test_unknown_fragment_number_is_rejected() -> None:
    stream, _ = _stream_with_call(_call(3.0))
    with pytest.raises(KvsError) as info:
        stream.get_media(StartSelector("FRAGMENT_NUMBER", after_fragment_number="1234"))
    assert info.value.reason == "unknown-fragment"
    assert (info.value.http_status, info.value.aws_error) == (400, "InvalidArgumentException")


def test_now_returns_only_fragments_put_after_the_call() -> None:
    stream = KinesisVideoStream(ARN)
    wires = list(encode(_call(8.0), guid=CONTACT, stream_arn=ARN))
    stream.put_media(wires[0], 1)
    cursor = stream.start(StartSelector("NOW"))
    assert stream.get_media(StartSelector("NOW")) == []
    assert stream.read(cursor) == ([], cursor)
    n2 = stream.put_media(wires[1], 2)
    n3 = stream.put_media(wires[2], 3)
    got, cursor = stream.read(cursor)
    assert [parse_fragment(f).fragment_number for f in got] == [n2, n3]
    assert cursor.continuation_token == n3
    n4 = stream.put_media(wires[3], 4)
    got, _ = stream.read(cursor)
    assert [parse_fragment(f).fragment_number for f in got] == [n4]
    resumed = stream.get_media(StartSelector("CONTINUATION_TOKEN", continuation_token=n3))
    assert [parse_fragment(f).fragment_number for f in resumed] == [n4]


@pytest.mark.parametrize(
    ("kind", "t", "first_index"),
    [
        ("SERVER_TIMESTAMP", kvs.DEFAULT_EPOCH_MS + 4150, 1),
        ("SERVER_TIMESTAMP", kvs.DEFAULT_EPOCH_MS + 4151, 2),
        ("PRODUCER_TIMESTAMP", kvs.DEFAULT_EPOCH_MS + 3999, 1),  # inside fragment 1
        ("PRODUCER_TIMESTAMP", kvs.DEFAULT_EPOCH_MS + 4000, 2),
        ("PRODUCER_TIMESTAMP", kvs.DEFAULT_EPOCH_MS + 99_000, 5),
    ],
)
def test_timestamp_selectors(kind: str, t: int, first_index: int) -> None:
    stream, numbers = _stream_with_call(_call(9.0))
    got = stream.get_media(StartSelector(kind, start_timestamp_ms=t))
    assert [parse_fragment(f).fragment_number for f in got] == numbers[first_index:]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"type": "LATEST"},
        {"type": "FRAGMENT_NUMBER"},
        {"type": "SERVER_TIMESTAMP"},
        {"type": "PRODUCER_TIMESTAMP"},
        {"type": "CONTINUATION_TOKEN"},
    ],
)
def test_incomplete_selectors_are_rejected(kwargs: dict[str, str]) -> None:
    with pytest.raises(KvsError) as info:
        StartSelector(**kwargs)  # type: ignore[arg-type]
    assert info.value.reason == "bad-selector" and info.value.http_status == 400


def test_store_names_streams_as_connect_does() -> None:
    store = KinesisVideoStore(region="eu-west-2", account="210987654321")
    stream = store.create_connect_stream(
        "inst-9", CONTACT, prefix="acme", creation_ms=1_712_345_678_901
    )
    assert stream.arn == (
        f"arn:aws:kinesisvideo:eu-west-2:210987654321:stream/acme-connect-inst-9-contact-{CONTACT}/1712345678901"
    )
    assert store.get(stream.arn) is stream and stream.arn in store and len(store) == 1
    assert list(store) == [stream]
    assert (stream.region, stream.account, stream.creation_ms) == (
        "eu-west-2",
        "210987654321",
        1_712_345_678_901,
    )
    with pytest.raises(KvsError) as info:
        store.create_connect_stream("inst-9", CONTACT, prefix="acme")
    assert info.value.reason == "stream-exists"


def test_unknown_stream_is_a_404() -> None:
    with pytest.raises(KvsError) as info:
        KinesisVideoStore().get(ARN)
    assert info.value.reason == "unknown-stream"
    assert (info.value.http_status, info.value.aws_error) == (404, "ResourceNotFoundException")


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:kinesisvideo:us-east-1:123456789012:stream/name",
        "arn:aws:kinesisvideo:us-east-1:12345678901:stream/name/1700000000000",
        "arn:aws:kinesis:us-east-1:123456789012:stream/name/1700000000000",
        "arn:aws:kinesisvideo:us-east-1:123456789012:stream/bad name/1700000000000",
        "arn:aws:kinesisvideo:useast:123456789012:stream/name/1700000000000",
        "",
    ],
)
def test_bad_arns_are_rejected(arn: str) -> None:
    with pytest.raises(KvsError) as info:
        KinesisVideoStore().get(arn)
    assert info.value.reason == "bad-arn" and info.value.http_status == 400


def test_parse_arn_accepts_partitions() -> None:
    arn = "arn:aws-us-gov:kinesisvideo:us-gov-west-1:123456789012:stream/a.b_c-d/1700000000000"
    assert parse_arn(arn) == ("us-gov-west-1", "123456789012", "a.b_c-d", 1_700_000_000_000)


def test_fragment_numbers_differ_by_stream_and_grow_with_time() -> None:
    other = ARN.replace("/1700000000000", "/1700000000001")
    assert fragment_number(ARN, 10) != fragment_number(other, 10)
    assert int(fragment_number(ARN, 10)) < int(fragment_number(ARN, 11))


# ------------------------------------------------------------------- consumer


def test_contact_change_on_a_reused_stream_stops_the_consumer() -> None:
    first, second = _call(4.5, seed=1), _call(3.0, seed=2)
    stream = KinesisVideoStream(ARN)
    for guid, call, start in (
        (CONTACT, first, 1_700_000_000_000),
        (OTHER_CONTACT, second, 1_700_000_100_000),
    ):
        for wire in encode(call, guid=guid, stream_arn=ARN, start_ms_epoch=start):
            stream.put_media(wire, start + int(wire.at_ms))
    frags = stream.get_media(StartSelector("EARLIEST"))
    consumer = KvsConsumer()
    events = _feed_all(consumer, frags)
    closed = [i for i, e in enumerate(events) if isinstance(e, SessionClosed)]
    assert closed and events[closed[0]] == SessionClosed("contact-changed")
    assert closed[0] == len(events) - 1  # nothing after the close
    assert consumer.closed and consumer.fragments == 3
    audio = _assemble(events, first.n_samples)
    assert np.array_equal(audio[CUSTOMER_TRACK], first.customer)
    assert consumer.feed(frags[0]) == [] and consumer.close() == []
    # A consumer told which contact to follow skips the earlier contact's fragments.
    follower = KvsConsumer(contact_id=OTHER_CONTACT)
    events = _feed_all(follower, frags)
    assert isinstance(events[0], SessionOpened) and events[0].guid == OTHER_CONTACT
    audio = _assemble(events, second.n_samples)
    assert np.array_equal(audio[AGENT_TRACK], _padded(second.agent, second.n_samples))


def test_missing_fragment_is_reported_as_a_gap() -> None:
    call = _call(7.0)
    wires = list(encode(call, guid=CONTACT, stream_arn=ARN))
    events = _feed_all(KvsConsumer(), [wires[0], wires[2], wires[3]])
    gaps = [e for e in events if isinstance(e, Anomaly)]
    assert [(g.kind, g.channel, g.count) for g in gaps] == [("gap", n, 100) for n in TRACK_NAMES]
    chunks = [e for e in events if isinstance(e, AudioChunk) and e.channel == CUSTOMER_TRACK]
    assert [c.start_sample for c in chunks] == [0, 32000, 48000]
    assert np.array_equal(chunks[1].pcm, call.customer[32000:48000])


def test_repeated_fragment_is_a_duplicate_and_not_replayed() -> None:
    wires = list(encode(_call(4.0), guid=CONTACT, stream_arn=ARN))
    consumer = KvsConsumer()
    events = _feed_all(consumer, [wires[0], wires[0], wires[1]])
    anomalies = [e for e in events if isinstance(e, Anomaly)]
    assert [a.kind for a in anomalies] == ["duplicate"]
    assert sum(len(e.pcm) for e in events if isinstance(e, AudioChunk)) == 2 * 32000


def _fragment(timecode: int, rels: list[int], contact: str = CONTACT, samples: int = 160) -> bytes:
    tracks = (AudioTrack(1, CUSTOMER_TRACK), AudioTrack(2, AGENT_TRACK))
    blocks = tuple(
        Block(t, rel, np.full(samples, rel + t, dtype="<i2").tobytes())
        for rel in rels
        for t in (1, 2)
    )
    return build_fragment(Fragment(tracks, timecode, blocks, {"ContactId": contact}))


def test_overlapping_fragments_are_trimmed() -> None:
    consumer = KvsConsumer()
    # Without producer timestamp tags, placement falls back to cluster timecodes.
    events = _feed_all(consumer, [_fragment(1000, [0, 20, 40]), _fragment(1040, [0, 20])])
    overlaps = [e for e in events if isinstance(e, Anomaly)]
    assert [(o.kind, o.count) for o in overlaps] == [("overlap", 1)] * 2
    chunks = [e for e in events if isinstance(e, AudioChunk) and e.channel == CUSTOMER_TRACK]
    assert [(c.start_sample, len(c.pcm)) for c in chunks] == [(0, 480), (480, 160)]
    assert set(chunks[1].pcm.tolist()) == {21}  # the second half of the later fragment


def test_gap_inside_a_fragment_splits_the_chunk() -> None:
    events = KvsConsumer().feed(_fragment(0, [0, 20, 60]))
    chunks = [e for e in events if isinstance(e, AudioChunk) and e.channel == AGENT_TRACK]
    assert [(c.start_sample, c.end_sample) for c in chunks] == [(0, 320), (480, 640)]
    assert [(e.kind, e.count) for e in events if isinstance(e, Anomaly)] == [("gap", 1)] * 2


def test_consumer_info_without_stream_arn() -> None:
    [opened, *_] = KvsConsumer().feed(_fragment(0, [0]))
    assert isinstance(opened, SessionOpened) and "stream_arn" not in opened.info


# ------------------------------------------------------------------ corrupt input


def _bad_track_fragment(**changes: Any) -> bytes:
    customer = AudioTrack(1, CUSTOMER_TRACK, **changes)
    tracks = (customer, AudioTrack(2, AGENT_TRACK))
    return build_fragment(Fragment(tracks, 0, (Block(1, 0, b"\x00\x00"),), {"ContactId": CONTACT}))


@pytest.mark.parametrize(
    ("fragment", "reason"),
    [
        (
            build_fragment(
                Fragment((AudioTrack(1, CUSTOMER_TRACK),), 0, (), {"ContactId": CONTACT})
            ),
            "missing-track",
        ),
        (_bad_track_fragment(sampling_frequency=16000.0), "bad-audio"),
        (_bad_track_fragment(channels=2), "bad-audio"),
        (_bad_track_fragment(codec_private=bytes([0x12, 0x10])), "bad-codec-private"),
        (_bad_track_fragment(codec_private=b"\x15"), "bad-codec-private"),
        (
            build_fragment(
                Fragment(
                    (AudioTrack(1, CUSTOMER_TRACK), AudioTrack(2, AGENT_TRACK)),
                    0,
                    (Block(1, 0, b"\x00\x00\x00"),),
                    {"ContactId": CONTACT},
                )
            ),
            "bad-audio",
        ),
        (
            build_fragment(
                Fragment(
                    (AudioTrack(1, CUSTOMER_TRACK), AudioTrack(2, AGENT_TRACK)),
                    0,
                    (Block(5, 0, b"\x00\x00"),),
                    {"ContactId": CONTACT},
                )
            ),
            "missing-track",
        ),
        (
            build_fragment(
                Fragment(
                    (AudioTrack(1, CUSTOMER_TRACK), AudioTrack(2, AGENT_TRACK)),
                    0,
                    (),
                    {"ContactId": CONTACT, kvs.TAG_PRODUCER_TS: "yesterday"},
                )
            ),
            "bad-tag",
        ),
        (b"", "corrupt-ebml"),
        (b"\x1a\x45\xdf\xa3\x80", "corrupt-ebml"),  # header only, no Segment
        (
            ebml.master_element(kvs.EBML_HEADER, [ebml.string_element(0x4282, "webp")]),
            "corrupt-ebml",
        ),
    ],
)
def test_bad_fragments_raise_kvs_error(fragment: bytes, reason: str) -> None:
    with pytest.raises(KvsError) as info:
        KvsConsumer().feed(fragment)
    assert info.value.reason == reason
    assert isinstance(info.value, MediaError)


def test_non_bytes_is_refused() -> None:
    with pytest.raises(KvsError):
        KvsConsumer().feed(Wire(0.0, "kvs", "text"))


@pytest.mark.parametrize("cut", [1, 10, 40, 100, 300, 1000, 5000, -200, -60, -1])
def test_truncated_fragments_raise_corrupt_ebml(cut: int) -> None:
    data = next(iter(encode(_call(2.0), guid=CONTACT, stream_arn=ARN))).data
    assert isinstance(data, bytes)
    with pytest.raises(KvsError) as info:
        KvsConsumer().feed(data[:cut])
    assert info.value.reason == "corrupt-ebml"
    assert isinstance(info.value.__cause__, ebml.EbmlError)


def test_split_fragments_of_a_get_media_body() -> None:
    wires = list(encode(_call(5.0), guid=CONTACT, stream_arn=ARN))
    body = b"".join(w.data for w in wires)  # type: ignore[misc]
    assert split_fragments(body) == [w.data for w in wires]
    with pytest.raises(KvsError):
        split_fragments(body[5:])


def _small_fragment() -> bytes:
    data = next(iter(encode(_call(0.2), guid=CONTACT, stream_arn=ARN, fragment_ms=100))).data
    assert isinstance(data, bytes)
    return data


_SAMPLE = _small_fragment()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_kvs_error(data: bytes) -> None:
    try:
        KvsConsumer().feed(data)
    except KvsError as exc:
        assert exc.reason in {
            "corrupt-ebml",
            "missing-track",
            "bad-audio",
            "bad-codec-private",
            "bad-tag",
        }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, len(_SAMPLE) - 1), st.integers(0, 255)), max_size=4),
    st.integers(1, len(_SAMPLE)),
)
def test_damaged_fragments_only_raise_kvs_error(flips: list[tuple[int, int]], keep: int) -> None:
    data = bytearray(_SAMPLE)
    for pos, value in flips:
        data[pos] = value
    try:
        events = KvsConsumer().feed(bytes(data[:keep]))
    except KvsError:
        return
    assert all(isinstance(e, SessionOpened | AudioChunk | Anomaly) for e in events)


def test_a_rejected_first_fragment_leaves_the_consumer_unopened() -> None:
    consumer = KvsConsumer()
    with pytest.raises(KvsError):
        consumer.feed(_bad_track_fragment(channels=2))
    assert not consumer.opened and consumer.fragments == 0
    events = consumer.feed(_fragment(0, [0]))
    assert isinstance(events[0], SessionOpened)
    assert events[0].info["tracks"] == {CUSTOMER_TRACK: 1, AGENT_TRACK: 2}


@pytest.mark.parametrize("fragment_ms", [500, 1000, 2000])
def test_restamp_keeps_the_cluster_and_matches_a_rebuild(fragment_ms: int) -> None:
    rng = np.random.default_rng(fragment_ms)
    audio = StereoCall(
        rng.integers(-3000, 3000, 8000 * 5, dtype=np.int16),
        rng.integers(-3000, 3000, 8000 * 5, dtype=np.int16),
    )
    tags = {TAG_FRAGMENT_NUMBER: "91343852333181432392682062607743920146264210453", "x": "y"}
    wires = list(kvs.encode(audio, guid=CONTACT, stream_arn=ARN, fragment_ms=fragment_ms))
    for wire in wires:
        assert isinstance(wire.data, bytes)
        full = kvs.parse_fragment(wire.data)
        head, duration, data = restamp_fragment(wire.data, **tags)
        assert data == build_fragment(full.with_tags(**tags))
        assert duration == full.duration_ms > 0
        assert head.tags == full.with_tags(**tags).tags


def test_a_restamped_fragment_reads_back_as_remembered() -> None:
    from mgsim.media import kvs_mkv

    rng = np.random.default_rng(3)
    audio = StereoCall(
        rng.integers(-3000, 3000, 8000 * 2, dtype=np.int16),
        rng.integers(-3000, 3000, 8000 * 2, dtype=np.int16),
    )
    wire = next(iter(kvs.encode(audio, guid=CONTACT, stream_arn=ARN, fragment_ms=1000)))
    assert isinstance(wire.data, bytes)
    _, _, doc = restamp_fragment(wire.data, **{TAG_FRAGMENT_NUMBER: "12345"})
    remembered = kvs_mkv._read_fragment(doc)
    parsed = kvs_mkv._parse(doc)  # what reading it afresh gives
    assert remembered[0] == parsed[0] and remembered[3] == parsed[3]
    assert np.array_equal(remembered[1], parsed[1]) and remembered[2] == parsed[2]
    assert kvs.parse_fragment(doc).blocks == kvs.parse_fragment(wire.data).blocks


def test_release_lets_go_of_fragments_and_positions_keep_counting() -> None:
    call = _call(6.0)
    stream, numbers = _stream_with_call(call)
    reader = stream.start(StartSelector("EARLIEST"))
    first, reader = stream.read(reader)
    assert len(first) == len(numbers) and stream.latest is not None
    assert stream.release() == len(numbers)
    assert (len(stream), stream.released, stream.latest) == (0, len(numbers), None)
    assert stream.get_media(StartSelector("EARLIEST")) == []
    with pytest.raises(KvsError) as info:
        stream.start(StartSelector("FRAGMENT_NUMBER", after_fragment_number=numbers[0]))
    assert info.value.reason == "unknown-fragment"
    # Fragments put after the release are found by every selector and by the old reader.
    later = list(encode(call, guid=OTHER_CONTACT, stream_arn=stream.arn, fragment_ms=2000))
    new_numbers = [
        stream.put_media(w, kvs.DEFAULT_EPOCH_MS + 60_000 + i) for i, w in enumerate(later)
    ]
    got, _ = stream.read(reader)
    assert [parse_fragment(f).fragment_number for f in got] == new_numbers
    after_first = StartSelector("FRAGMENT_NUMBER", after_fragment_number=new_numbers[0])
    assert [
        parse_fragment(f).fragment_number for f in stream.get_media(after_first)
    ] == new_numbers[1:]
