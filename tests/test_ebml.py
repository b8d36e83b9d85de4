from __future__ import annotations

import doctest
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgsim.errors import MediaError
from mgsim.media import ebml
from mgsim.media.ebml import (
    UNKNOWN_SIZE,
    EbmlError,
    binary_element,
    decode_float,
    decode_int,
    decode_string,
    decode_uint,
    encode_id,
    encode_size,
    float_element,
    int_element,
    iter_elements,
    master_element,
    parse,
    read_id,
    read_size,
    scan,
    string_element,
    uint_element,
)

MASTER, CHILD_MASTER, LEAF, OTHER = 0x1A45DFA3, 0x7373, 0x4282, 0xE7


def test_doctests() -> None:
    assert doctest.testmod(ebml).failed == 0


def test_ebml_error_is_a_media_error() -> None:
    err = EbmlError("x", reason="truncated")
    assert isinstance(err, MediaError) and isinstance(err, ValueError)
    assert err.reason == "truncated"


# ------------------------------------------------------------------------- vints


@pytest.mark.parametrize(
    ("value", "length"),
    [
        (0, 1),
        (1, 1),
        (126, 1),
        (127, 2),  # 127 in one byte would be the reserved all-ones value
        (2**14 - 2, 2),
        (2**14 - 1, 3),
        (2**21 - 2, 3),
        (2**28 - 2, 4),
        (2**35 - 2, 5),
        (2**42 - 2, 6),
        (2**49 - 2, 7),
        (2**56 - 2, 8),
    ],
)
def test_size_vint_round_trip_in_shortest_form(value: int, length: int) -> None:
    raw = encode_size(value)
    assert len(raw) == length
    assert read_size(raw, 0) == (value, length)


@pytest.mark.parametrize("length", range(1, 9))
def test_unknown_size_is_all_ones_at_every_length(length: int) -> None:
    raw = encode_size(UNKNOWN_SIZE, length)
    assert len(raw) == length
    assert raw[0] == (0xFF >> (length - 1)) and all(b == 0xFF for b in raw[1:])
    assert read_size(raw, 0) == (UNKNOWN_SIZE, length)


@pytest.mark.parametrize("length", range(1, 9))
def test_size_with_forced_length_pads_with_leading_zeros(length: int) -> None:
    raw = encode_size(5, length)
    assert len(raw) == length and read_size(raw, 0) == (5, length)


@pytest.mark.parametrize(
    ("value", "length", "reason"),
    [
        (127, 1, "oversize"),
        (2**56 - 1, None, "oversize"),
        (-2, None, "bad-vint"),
        (1, 9, "oversize"),
    ],
)
def test_size_that_does_not_fit_raises(value: int, length: int | None, reason: str) -> None:
    with pytest.raises(EbmlError) as info:
        encode_size(value, length)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "element_id", [0xE7, 0xA3, 0x4282, 0x536E, 0x2AD7B1, 0x1A45DFA3, 0x18538067]
)
def test_id_round_trip(element_id: int) -> None:
    raw = encode_id(element_id)
    assert read_id(raw + b"\x80", 0) == (element_id, len(raw))


@pytest.mark.parametrize("element_id", [0, 0x0F00, 0x0101, 0x0810000000])
def test_id_without_valid_marker_is_rejected(element_id: int) -> None:
    with pytest.raises(EbmlError) as info:
        encode_id(element_id)
    assert info.value.reason == "bad-vint"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x00\x80", "bad-vint"),  # no length marker in the first byte
        (b"\x08\x00\x00\x00\x00", "bad-vint"),  # 5-byte ID: Matroska allows at most 4
        (b"\x1a\x45", "truncated"),
    ],
)
def test_read_id_errors(data: bytes, reason: str) -> None:
    with pytest.raises(EbmlError) as info:
        read_id(data, 0)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("data", "reason"), [(b"", "truncated"), (b"\x00", "bad-vint"), (b"\x40", "truncated")]
)
def test_read_size_errors(data: bytes, reason: str) -> None:
    with pytest.raises(EbmlError) as info:
        read_size(data, 0)
    assert info.value.reason == reason


# ------------------------------------------------------------------ element values


@pytest.mark.parametrize("value", [0, 1, 255, 256, 1_000_000, 2**63, 2**64 - 1])
def test_uint_element(value: int) -> None:
    [el] = parse(uint_element(OTHER, value), masters=set())
    assert el.id == OTHER and el.as_uint() == value
    assert el.size == max(1, (value.bit_length() + 7) // 8)


@pytest.mark.parametrize("value", [0, -1, 127, -128, 128, -32768, 2**62, -(2**63)])
def test_int_element(value: int) -> None:
    [el] = parse(int_element(OTHER, value), masters=set())
    assert el.as_int() == value


@pytest.mark.parametrize("value", [0.0, 8000.0, -1.5, 1e300])
def test_float_element_is_a_double(value: float) -> None:
    [el] = parse(float_element(0xB5, value), masters=set())
    assert el.size == 8 and el.as_float() == value


@pytest.mark.parametrize(
    ("raw", "value"),
    [(struct.pack(">f", 8000.0), 8000.0), (b"", 0.0), (struct.pack(">d", 2.5), 2.5)],
)
def test_decode_float_sizes(raw: bytes, value: float) -> None:
    assert decode_float(raw) == value


@pytest.mark.parametrize("text", ["matroska", "AUDIO_FROM_CUSTOMER", "", "naïve ✓"])
def test_string_element(text: str) -> None:
    [el] = parse(string_element(LEAF, text), masters=set())
    assert el.as_string() == text


def test_string_trailing_nul_padding_is_dropped() -> None:
    assert decode_string(b"A_AAC\x00\x00") == "A_AAC"


def test_binary_element_keeps_bytes() -> None:
    [el] = parse(binary_element(0xA3, b"\x00\xff\x10"), masters=set())
    assert el.data() == b"\x00\xff\x10"


@pytest.mark.parametrize(
    ("decoder", "raw"),
    [
        (decode_float, b"\x00\x00"),
        (decode_uint, bytes(9)),
        (decode_int, bytes(9)),
        (decode_string, b"\xff\xfe"),
    ],
)
def test_undecodable_values_raise_bad_structure(decoder: object, raw: bytes) -> None:
    with pytest.raises(EbmlError) as info:
        decoder(raw)  # type: ignore[operator]
    assert info.value.reason == "bad-structure"


# ------------------------------------------------------------------------ reader


def _doc(*, unknown: bool = False) -> bytes:
    inner = master_element(CHILD_MASTER, [uint_element(OTHER, 7), string_element(LEAF, "x")])
    return master_element(MASTER, [inner, binary_element(0xA3, b"abc")], unknown_size=unknown)


def test_parse_builds_the_tree() -> None:
    [root] = parse(_doc(), masters={MASTER, CHILD_MASTER})
    assert [c.id for c in root.children] == [CHILD_MASTER, 0xA3]
    inner = root.child(CHILD_MASTER)
    assert inner is not None
    assert inner.child(OTHER).as_uint() == 7  # type: ignore[union-attr]
    assert root.children_with(0xA3)[0].data() == b"abc"
    assert root.child(0x4444) is None
    assert "Element(id=0x1a45dfa3" in repr(root)


def test_unknown_size_master_runs_to_end_of_data() -> None:
    data = _doc(unknown=True)
    [root] = parse(data, masters={MASTER, CHILD_MASTER})
    assert root.unknown_size and root.end == len(data)
    assert len(root.children) == 2


def test_unknown_size_master_ends_at_an_element_of_its_level() -> None:
    first = _doc(unknown=True)
    data = first + _doc(unknown=True)
    roots = parse(data, masters={MASTER, CHILD_MASTER}, levels={MASTER: 0})
    assert [r.offset for r in roots] == [0, len(first)]
    assert roots[0].end == len(first)


def test_lazy_master_keeps_no_children_but_spans_them() -> None:
    [root] = parse(_doc(), masters={MASTER, CHILD_MASTER}, lazy={MASTER})
    assert root.children == []
    assert [eid for eid, _, _ in scan(root.buffer, root.data_offset, root.end)] == [
        CHILD_MASTER,
        0xA3,
    ]


def test_iter_elements_yields_unknown_size_and_stops() -> None:
    data = uint_element(OTHER, 1) + _doc(unknown=True)
    items = list(iter_elements(data))
    assert [i[0] for i in items] == [OTHER, MASTER]
    assert items[-1][3] == UNKNOWN_SIZE


@pytest.mark.parametrize("cut", range(1, len(_doc())))
def test_truncated_documents_raise_truncated(cut: int) -> None:
    data = _doc()
    with pytest.raises(EbmlError) as info:
        parse(data[:cut], masters={MASTER, CHILD_MASTER})
    assert info.value.reason == "truncated"


@pytest.mark.parametrize("walker", ["parse", "scan", "iter"])
def test_child_larger_than_its_parent_is_oversize(walker: str) -> None:
    child = uint_element(OTHER, 1)
    lying = encode_id(OTHER) + encode_size(50) + b"\x01"
    data = master_element(MASTER, [lying]) + bytes(60)
    with pytest.raises(EbmlError) as info:
        if walker == "parse":
            parse(data, masters={MASTER})
        elif walker == "scan":
            scan(data, 5, 5 + len(lying))
        else:
            list(iter_elements(data, 5, 5 + len(lying)))
    assert info.value.reason == "oversize"
    assert parse(master_element(MASTER, [child]), masters={MASTER})[0].children[0].as_uint() == 1


def test_size_limit_is_oversize() -> None:
    data = encode_id(OTHER) + encode_size(2**40) + b"\x00"
    with pytest.raises(EbmlError) as info:
        parse(data, masters=set())
    assert info.value.reason == "oversize"


@pytest.mark.parametrize(
    ("data", "masters", "reason"),
    [
        (encode_id(OTHER) + encode_size(UNKNOWN_SIZE, 1) + b"\x00", set(), "bad-structure"),
        (b"\x00\x81\x00", set(), "bad-vint"),
        (encode_id(OTHER) + b"\x00", set(), "bad-vint"),
    ],
)
def test_malformed_headers(data: bytes, masters: set[int], reason: str) -> None:
    with pytest.raises(EbmlError) as info:
        parse(data, masters=masters)
    assert info.value.reason == reason


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    data = uint_element(OTHER, 1)
    for _ in range(12):
        data = master_element(CHILD_MASTER, [data])
    with pytest.raises(EbmlError) as info:
        parse(data, masters={CHILD_MASTER}, max_depth=8)
    assert info.value.reason == "bad-structure"
    assert parse(data, masters={CHILD_MASTER}, max_depth=16)


def test_scan_refuses_unknown_sizes() -> None:
    with pytest.raises(EbmlError) as info:
        scan(_doc(unknown=True))
    assert info.value.reason == "bad-structure"


def test_parse_refuses_non_bytes() -> None:
    with pytest.raises(EbmlError):
        parse("text", masters=set())  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_ebml_error(data: bytes) -> None:
    for walk in (
        lambda: parse(data, masters={MASTER, CHILD_MASTER, 0x18538067}, levels={MASTER: 0}),
        lambda: scan(data),
        lambda: list(iter_elements(data)),
    ):
        try:
            walk()
        except EbmlError as exc:
            assert exc.reason in {"truncated", "bad-vint", "oversize", "bad-structure"}


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**56 - 2), st.integers(0, 7))
def test_any_size_round_trips_with_padding(value: int, extra: int) -> None:
    shortest = len(encode_size(value))
    length = min(8, shortest + extra)
    assert read_size(encode_size(value, length), 0) == (value, length)
