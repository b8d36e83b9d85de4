from __future__ import annotations

import contextlib
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgsim.media.rsmetadata import (
    NAMESPACE,
    MetadataError,
    Participant,
    RecordingMetadata,
    Stream,
    build_metadata,
    parse_metadata,
)
from mgsim.media.sip import SipError

META = RecordingMetadata(
    session_id="sess==",
    participants=(
        Participant("p-cust", "sip:+15550100@carrier.example", "Customer & Co"),
        Participant("p-agent", "sip:agent@cc.example", "Agent"),
    ),
    streams=(Stream("s-a", "1", "sess=="), Stream("s-b", "2", "sess==")),
    associations={"p-cust": ("s-b",), "p-agent": ("s-a",)},
    ucid="0867617078-0032318833-2221801472-0002236962",
)

# An older-draft style document: other prefix, id/session attributes, <send> in participant.
LEGACY = b"""<?xml version="1.0"?>
<rs:recording xmlns:rs="urn:ietf:params:xml:ns:recording">
  <rs:session id="S1"><rs:extensiondata xmlns:apkt="http://acmepacket.com/siprec/extensiondata">
    <apkt:ucid>00FA080019001038F725B3</apkt:ucid></rs:extensiondata></rs:session>
  <rs:participant id="P1" session="S1">
    <rs:nameID aor="sip:alice@example.com"><rs:name xml:lang="en">Alice</rs:name></rs:nameID>
    <rs:send>ST2</rs:send>
  </rs:participant>
  <rs:participant id="P2" session="S1"><rs:aor>sip:bob@example.com</rs:aor></rs:participant>
  <rs:stream id="ST1" session="S1"><rs:label>10</rs:label></rs:stream>
  <rs:stream id="ST2" session="S1"><rs:label>11</rs:label></rs:stream>
</rs:recording>"""


@pytest.mark.parametrize("prefix", [None, "rec", "ns0"])
@pytest.mark.parametrize("names", ["nameID", "name"])
def test_round_trip_every_style(prefix: str | None, names: Literal["nameID", "name"]) -> None:
    parsed = parse_metadata(build_metadata(META, prefix=prefix, names=names))
    assert parsed.session_id == META.session_id
    assert parsed.participants == META.participants
    assert parsed.streams == META.streams
    assert parsed.associations == META.associations
    assert parsed.ucid == META.ucid
    assert parsed.label_map() == {"2": "p-cust", "1": "p-agent"}
    assert parsed.found == {
        "namespace": NAMESPACE,
        "prefix": prefix or "none",
        "names": names,
        "attributes": "rfc7865",
        "associations": "participantstreamassoc",
    }


def test_missing_association_falls_back_to_label_order() -> None:
    meta = RecordingMetadata(
        session_id="s",
        participants=META.participants,
        streams=(Stream("x", "2"), Stream("y", "1")),
    )
    parsed = parse_metadata(build_metadata(meta, prefix="rec", names="name"))
    assert parsed.associations is None
    assert parsed.found["associations"] == "none"
    assert parsed.label_map() == {"1": "p-cust", "2": "p-agent"}
    assert parsed.participant("p-agent") == META.participants[1]
    assert parsed.participant("nobody") is None


def test_association_naming_unknown_streams_falls_back() -> None:
    meta = RecordingMetadata("s", META.participants, META.streams, {"p-cust": ("ghost",)})
    assert parse_metadata(build_metadata(meta)).label_map() == {"1": "p-cust", "2": "p-agent"}


def test_legacy_variant() -> None:
    parsed = parse_metadata(LEGACY)
    assert parsed.session_id == "S1"
    assert parsed.participants == (
        Participant("P1", "sip:alice@example.com", "Alice"),
        Participant("P2", "sip:bob@example.com", None),
    )
    assert parsed.streams == (Stream("ST1", "10", "S1"), Stream("ST2", "11", "S1"))
    assert parsed.associations == {"P1": ("ST2",)}
    assert parsed.label_map() == {"11": "P1"}
    assert parsed.ucid == "00FA080019001038F725B3"
    assert parsed.found == {
        "namespace": "urn:ietf:params:xml:ns:recording",
        "prefix": "rs",
        "names": "nameID",
        "attributes": "legacy",
        "associations": "participant-send",
    }


def test_no_namespace_and_str_input() -> None:
    text = '<recording><participant participant_id="a"><name>A</name></participant></recording>'
    parsed = parse_metadata(text)
    assert parsed.found["namespace"] == "none"
    assert parsed.participants == (Participant("a", None, "A"),)
    assert parsed.label_map() == {}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not xml",
        b"<recording>",
        b"<other xmlns='urn:ietf:params:xml:ns:recording:1'/>",
        b'<!DOCTYPE r [<!ENTITY a "aaaa">]><recording>&a;</recording>',
        b'<?xml version="1.0" encoding="bogus-enc"?><recording/>',
        b"<recording>\xff\xfe</recording>",
    ],
)
def test_bad_documents_raise_metadata_error(data: bytes) -> None:
    with pytest.raises(MetadataError) as info:
        parse_metadata(data)
    assert isinstance(info.value, SipError)
    assert (info.value.sip_status, info.value.reason) == (400, "bad-metadata")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_metadata_error(data: bytes) -> None:
    with contextlib.suppress(MetadataError):
        parse_metadata(data)


XML_BITS = st.sampled_from(
    ["<recording>", "</recording>", "<participant id='p'>", "</participant>", "<stream>",
     "</stream>", "<label>", "</label>", "1", "<send>", "</send>", "<name aor='x'>", "</name>",
     "<participantstreamassoc>", "</participantstreamassoc>", "<ucid>", "</ucid>", "&amp;",
     "<x:y>", "</x:y>", " stream_id='s'", ">"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(XML_BITS, max_size=30))
def test_random_xml_raises_only_metadata_error(bits: list[str]) -> None:
    try:
        parsed = parse_metadata("".join(bits))
    except MetadataError:
        return
    assert isinstance(parsed.label_map(), dict)
