"""GetMedia output as AWS documents it, read by ffprobe and by mgsim's own readers.

AWS's GetMedia reference: every chunk carries the Matroska tags
AWS_KINESISVIDEO_CONTINUATION_TOKEN (UTF-8 string: resume after this chunk),
AWS_KINESISVIDEO_MILLIS_BEHIND_NOW (UTF-8 string: how far the chunk is behind the stream's
latest), AWS_KINESISVIDEO_FRAGMENT_NUMBER, _SERVER_TIMESTAMP and _PRODUCER_TIMESTAMP;
a fragment's tags come before its audio (the Cluster). Regression tests for issue 11:
the tags came after the Cluster, so ffprobe listed none, and the first two were missing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import ebmlite
import httpx
import pytest
from conftest import needs_program, noise_call

from mgsim.media import kvs
from mgsim.media._base import AudioChunk, StereoCall
from mgsim.media.kvs import KvsConsumer
from mgsim.media.kvs_mkv import (
    TAG_CONTINUATION_TOKEN,
    TAG_FRAGMENT_NUMBER,
    TAG_MILLIS_BEHIND_NOW,
    TRACK_NAMES,
    parse_fragment,
    split_fragments,
)
from mgsim.media.kvs_store import KinesisVideoStream, StartSelector
from mgsim.server.config import SimulatorConfig
from mgsim.simulator import Simulator
from mgsim.transports.serve import ServerThread

ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/mgsim-connect-demo/1700000000000"
CONTACT = "1117e864-690f-4e1e-9dcf-6fbfcc288e41"
EBML_MAGIC = bytes.fromhex("1a45dfa3")
MATROSKA = ebmlite.loadSchema("matroska.xml")
CONNECT_TAGS = {
    "ContactId",
    "InstanceId",
    "MimeType",
    "AUDIO_FROM_CUSTOMER",
    "AUDIO_TO_CUSTOMER",
    "AWS_KINESISVIDEO_FRAGMENT_NUMBER",
    "AWS_KINESISVIDEO_SERVER_TIMESTAMP",
    "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP",
    "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW",
    "AWS_KINESISVIDEO_CONTINUATION_TOKEN",
}


@pytest.fixture(scope="module")
def call() -> StereoCall:
    stereo: StereoCall = noise_call(1, 40000)
    return stereo


def stream_of(call: StereoCall) -> KinesisVideoStream:
    stream = KinesisVideoStream(ARN)
    for i, wire in enumerate(kvs.encode(call, guid=CONTACT, stream_arn=ARN, fragment_ms=1000)):
        stream.put_media(wire, 1_700_000_000_000 + 1000 * i)
    return stream


def documents(body: bytes) -> list[bytes]:
    """The fragments of a GetMedia body, split where each EBML header begins (without
    mgsim's reader)."""
    starts = [i for i in range(len(body) - 3) if body[i : i + 4] == EBML_MAGIC]
    assert starts and starts[0] == 0
    return [body[a:b] for a, b in zip(starts, [*starts[1:], len(body)], strict=True)]


def ffprobe_tags(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_entries", "format_tags", "-of", "json",
         str(path)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    # The tracks say A_AAC although they carry PCM (as Connect writes them), so ffprobe's
    # AAC decoder complains; the container itself must read without a word.
    container = [line for line in out.stderr.splitlines() if not line.startswith("[aac")]
    assert container == []
    tags: dict[str, str] = json.loads(out.stdout)["format"]["tags"]
    return tags


def test_each_fragment_has_its_tags_before_its_cluster(call: StereoCall) -> None:
    body = b"".join(stream_of(call).get_media(StartSelector("EARLIEST")))
    for doc in documents(body):
        [segment] = [el for el in MATROSKA.loads(doc) if el.name == "Segment"]
        assert [el.name for el in segment] == ["Info", "Tracks", "Tags", "Cluster"]
        names = {
            simple[0].value
            for tag in next(el for el in segment if el.name == "Tags")
            for simple in tag
            if simple.name == "SimpleTag"
        }
        assert names == CONNECT_TAGS


def test_millis_behind_now_and_continuation_token_have_getmedias_meaning(
    call: StereoCall,
) -> None:
    stream = stream_of(call)
    fragments = [parse_fragment(d) for d in stream.get_media(StartSelector("EARLIEST"))]
    assert len(fragments) == 5
    # Each fragment is a second behind the next: the last is the stream's latest.
    assert [f.tags[TAG_MILLIS_BEHIND_NOW] for f in fragments] == [
        "4000",
        "3000",
        "2000",
        "1000",
        "0",
    ]
    for i, f in enumerate(fragments):
        token = f.tags[TAG_CONTINUATION_TOKEN]
        assert token == f.tags[TAG_FRAGMENT_NUMBER]
        resumed = stream.get_media(StartSelector("CONTINUATION_TOKEN", continuation_token=token))
        assert [parse_fragment(d).fragment_number for d in resumed] == [
            g.fragment_number for g in fragments[i + 1 :]
        ]
    # The audio is what the producer put, sample for sample, and mgsim's consumer of
    # GetMedia output places all of it.
    stored = [parse_fragment(f.data) for f in stream.fragments]
    assert [f.blocks for f in fragments] == [f.blocks for f in stored]
    consumer = KvsConsumer(contact_id=CONTACT)
    events = [e for d in stream.get_media(StartSelector("EARLIEST")) for e in consumer.feed(d)]
    placed = {
        name: sum(len(e.pcm) for e in events if isinstance(e, AudioChunk) and e.channel == name)
        for name in TRACK_NAMES
    }
    assert placed == dict.fromkeys(TRACK_NAMES, call.n_samples)


@needs_program("ffprobe", "ffmpeg")
@pytest.mark.socket
@pytest.mark.timeout(60)
def test_ffprobe_lists_every_tag_of_every_fragment_of_a_getmedia_body(
    call: StereoCall, tmp_path: Path
) -> None:
    config = SimulatorConfig(seed=1, spike_arrest_per_s=None, daily_quota=None)
    with Simulator(config) as sim, ServerThread(sim) as server:
        wires = list(kvs.encode(call, guid=CONTACT, stream_arn=ARN, fragment_ms=1000))
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            head = {"x-amzn-stream-arn": ARN}
            for wire in wires:
                assert isinstance(wire.data, bytes)
                assert http.put("/putMedia", content=wire.data, headers=head).status_code == 200
            http.delete("/putMedia", headers=head)
            got = http.post(
                "/getMedia",
                json={"StreamARN": ARN, "StartSelector": {"StartSelectorType": "EARLIEST"}},
            )
    assert got.status_code == 200
    body = got.content
    (tmp_path / "getmedia.mkv").write_bytes(body)
    docs = documents(body)
    assert len(docs) == len(wires) == len(split_fragments(body))
    # ffprobe reads a segment's head: over the whole body it lists the first fragment's.
    first = ffprobe_tags(tmp_path / "getmedia.mkv")
    seen: list[dict[str, str]] = []
    for i, doc in enumerate(docs):
        path = tmp_path / f"fragment-{i}.mkv"
        path.write_bytes(doc)
        tags = ffprobe_tags(path)
        assert set(tags) >= CONNECT_TAGS, sorted(CONNECT_TAGS - set(tags))
        # ffprobe and mgsim's reader agree on every value.
        mine = parse_fragment(doc).tags
        assert {k: tags[k] for k in CONNECT_TAGS} == {k: mine[k] for k in CONNECT_TAGS}
        assert tags["ContactId"] == CONTACT
        seen.append(tags)
    assert first == seen[0]
    numbers = [t[TAG_FRAGMENT_NUMBER] for t in seen]
    assert len(set(numbers)) == len(numbers) and numbers == sorted(numbers, key=int)
    assert int(seen[-1][TAG_MILLIS_BEHIND_NOW]) == 0
    assert all(int(t[TAG_MILLIS_BEHIND_NOW]) >= 0 for t in seen)
