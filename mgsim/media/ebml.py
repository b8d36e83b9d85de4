"""Minimal EBML: variable-size integers, element writers and a bounds-checked reader.

EBML (the binary container under Matroska) is a tree of elements, each ``ID | size | data``.
IDs and sizes are *vints*: the count of leading zero bits in the first byte gives the length
(1-8 bytes), the rest of the bits the value. A size whose value bits are all ones means
"unknown size": the element runs until something that cannot be its child appears, which is
how a live producer writes a Segment it has not finished yet.

Writing::

    >>> uint_element(0x2AD7B1, 1_000_000).hex()
    '2ad7b1830f4240'
    >>> master_element(0x1A45DFA3, [string_element(0x4282, "matroska")]).hex()
    '1a45dfa38b4282886d6174726f736b61'

Reading::

    >>> doc = master_element(0x1A45DFA3, [string_element(0x4282, "matroska")])
    >>> [el] = parse(doc, masters={0x1A45DFA3})
    >>> el.child(0x4282).as_string()
    'matroska'

Every malformed input raises :class:`EbmlError` with a ``reason`` of ``"truncated"`` (the
bytes end inside an element), ``"bad-vint"`` (no length marker, or an ID longer than 4
bytes), ``"oversize"`` (a child reaching past its parent, or over the size limit) or
``"bad-structure"`` (unknown size on a non-master, nesting too deep, undecodable value).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping, Set
from typing import Final

from mgsim.errors import MediaError

__all__ = [
    "MAX_ELEMENT_SIZE",
    "UNKNOWN_SIZE",
    "EbmlError",
    "Element",
    "binary_element",
    "decode_float",
    "decode_int",
    "decode_string",
    "decode_uint",
    "encode_id",
    "encode_size",
    "float_element",
    "int_element",
    "iter_elements",
    "master_element",
    "parse",
    "read_id",
    "read_size",
    "scan",
    "string_element",
    "uint_element",
]

UNKNOWN_SIZE: Final = -1
"""Returned by :func:`read_size` for the reserved all-ones size value."""

MAX_ELEMENT_SIZE: Final = 1 << 30
"""Default largest element the reader accepts (1 GiB); larger declared sizes are "oversize"."""

_MAX_ID_LEN: Final = 4  # EBMLMaxIDLength for Matroska
_MAX_SIZE_LEN: Final = 8


class EbmlError(MediaError):
    """EBML bytes that cannot be read; ``reason`` says why."""


# Length of a vint from its first byte: 1 + number of leading zero bits (0 => invalid).
_VINT_LEN: Final = bytes(
    [0] + [next(n for n in range(1, 9) if b & (0x80 >> (n - 1))) for b in range(1, 256)]
)


def encode_size(value: int, length: int | None = None) -> bytes:
    """Encode an element size as a vint, in the shortest form unless ``length`` is given.

    ``value`` may be :data:`UNKNOWN_SIZE`, written as all ones (``length`` defaults to 1).

    >>> encode_size(0).hex(), encode_size(127).hex(), encode_size(UNKNOWN_SIZE, 8).hex()
    ('80', '407f', '01ffffffffffffff')
    """
    if value == UNKNOWN_SIZE:
        n = length or 1
        if not 1 <= n <= _MAX_SIZE_LEN:
            raise EbmlError(f"vint length {n} out of range", reason="bad-vint")
        return ((1 << (7 * n + 1)) - 1).to_bytes(n, "big")
    if value < 0:
        raise EbmlError(f"negative size {value}", reason="bad-vint")
    if length is None:
        length = 1
        # All-ones is reserved for "unknown", hence the -1 on each capacity.
        while value > (1 << (7 * length)) - 2:
            length += 1
    if not 1 <= length <= _MAX_SIZE_LEN or value > (1 << (7 * length)) - 2:
        raise EbmlError(f"size {value} does not fit a {length}-byte vint", reason="oversize")
    return ((1 << (7 * length)) | value).to_bytes(length, "big")


def encode_id(element_id: int) -> bytes:
    """Encode an element ID; IDs are written with their length marker included.

    >>> encode_id(0x1A45DFA3).hex()
    '1a45dfa3'
    """
    if element_id <= 0:
        raise EbmlError(f"bad element id {element_id:#x}", reason="bad-vint")
    n = (element_id.bit_length() + 7) // 8
    raw = element_id.to_bytes(n, "big")
    if n > _MAX_ID_LEN or _VINT_LEN[raw[0]] != n:
        raise EbmlError(f"element id {element_id:#x} has no valid marker", reason="bad-vint")
    return raw


def read_id(data: bytes, pos: int, end: int | None = None) -> tuple[int, int]:
    """Read an element ID at ``pos``; return ``(id, position after it)``."""
    stop = len(data) if end is None else end
    if pos >= stop:
        raise EbmlError(f"element id expected at {pos}, data ends", reason="truncated")
    n = _VINT_LEN[data[pos]]
    if n == 0 or n > _MAX_ID_LEN:
        raise EbmlError(f"bad element id byte {data[pos]:#04x} at {pos}", reason="bad-vint")
    if pos + n > stop:
        raise EbmlError(f"element id at {pos} truncated", reason="truncated")
    return int.from_bytes(data[pos : pos + n], "big"), pos + n


def read_size(data: bytes, pos: int, end: int | None = None) -> tuple[int, int]:
    """Read a size vint at ``pos``; return ``(size or UNKNOWN_SIZE, position after it)``.

    >>> read_size(bytes.fromhex("4001"), 0), read_size(b"\\xff", 0)
    ((1, 2), (-1, 1))
    """
    stop = len(data) if end is None else end
    if pos >= stop:
        raise EbmlError(f"element size expected at {pos}, data ends", reason="truncated")
    first = data[pos]
    n = _VINT_LEN[first]
    if n == 0:
        raise EbmlError(f"bad size byte {first:#04x} at {pos}", reason="bad-vint")
    if pos + n > stop:
        raise EbmlError(f"element size at {pos} truncated", reason="truncated")
    value = int.from_bytes(data[pos : pos + n], "big") & ((1 << (7 * n)) - 1)
    if value == (1 << (7 * n)) - 1:
        return UNKNOWN_SIZE, pos + n
    return value, pos + n


def _element(element_id: int, payload: bytes) -> bytes:
    return encode_id(element_id) + encode_size(len(payload)) + payload


def uint_element(element_id: int, value: int) -> bytes:
    """An unsigned integer element in the fewest bytes (zero is one byte)."""
    if value < 0:
        raise EbmlError(f"uint element given {value}", reason="bad-structure")
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def int_element(element_id: int, value: int) -> bytes:
    """A signed (two's complement) integer element in the fewest bytes."""
    # ~value has the bit length of a negative number's two's-complement magnitude.
    n = max(1, ((value if value >= 0 else ~value).bit_length() + 8) // 8)
    return _element(element_id, value.to_bytes(n, "big", signed=True))


def float_element(element_id: int, value: float) -> bytes:
    """A float element, written as an 8-byte IEEE double."""
    return _element(element_id, struct.pack(">d", value))


def string_element(element_id: int, value: str) -> bytes:
    """A string element (ASCII ``String`` or UTF-8 ``UTF-8`` alike: both are written UTF-8)."""
    return _element(element_id, value.encode("utf-8"))


def binary_element(element_id: int, value: bytes) -> bytes:
    """A binary element (SimpleBlock, SegmentUID, CodecPrivate...)."""
    return _element(element_id, bytes(value))


def master_element(
    element_id: int, children: Iterable[bytes], *, unknown_size: bool = False
) -> bytes:
    """A master element around already-encoded children.

    With ``unknown_size`` the size is written as the reserved all-ones 8-byte value, as a
    streaming producer writes a Segment.
    """
    body = b"".join(children)
    if unknown_size:
        return encode_id(element_id) + encode_size(UNKNOWN_SIZE, 8) + body
    return encode_id(element_id) + encode_size(len(body)) + body


def decode_uint(data: bytes) -> int:
    """Value of an unsigned integer element (0-8 bytes; empty means 0)."""
    if len(data) > 8:
        raise EbmlError(f"{len(data)}-byte integer", reason="bad-structure")
    return int.from_bytes(data, "big")


def decode_int(data: bytes) -> int:
    """Value of a signed integer element (0-8 bytes)."""
    if len(data) > 8:
        raise EbmlError(f"{len(data)}-byte integer", reason="bad-structure")
    return int.from_bytes(data, "big", signed=True)


def decode_float(data: bytes) -> float:
    """Value of a float element (0, 4 or 8 bytes)."""
    if len(data) == 8:
        return float(struct.unpack(">d", data)[0])
    if len(data) == 4:
        return float(struct.unpack(">f", data)[0])
    if not data:
        return 0.0
    raise EbmlError(f"{len(data)}-byte float", reason="bad-structure")


def decode_string(data: bytes) -> str:
    """Value of a string element: UTF-8, trailing NUL padding removed."""
    try:
        return data.rstrip(b"\x00").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EbmlError(f"string element is not UTF-8: {exc}", reason="bad-structure") from exc


class Element:
    """One parsed element: its ID, where its data lies in ``buffer``, and its children.

    Only elements whose ID the caller named as masters have ``children``; the data of the
    others is read on demand with :meth:`data`, :meth:`as_uint`, :meth:`as_string`...
    """

    __slots__ = ("buffer", "children", "data_offset", "end", "id", "offset", "unknown_size")

    def __init__(
        self,
        element_id: int,
        buffer: bytes,
        offset: int,
        data_offset: int,
        end: int,
        unknown_size: bool,
        children: list[Element],
    ) -> None:
        self.id = element_id
        self.buffer = buffer
        self.offset = offset
        self.data_offset = data_offset
        self.end = end
        self.unknown_size = unknown_size
        self.children = children

    def __repr__(self) -> str:
        return f"Element(id={self.id:#x}, offset={self.offset}, size={self.size})"

    @property
    def size(self) -> int:
        """Size of the data in bytes (resolved even when written as unknown)."""
        return self.end - self.data_offset

    def data(self) -> bytes:
        return self.buffer[self.data_offset : self.end]

    def as_uint(self) -> int:
        return decode_uint(self.data())

    def as_int(self) -> int:
        return decode_int(self.data())

    def as_float(self) -> float:
        return decode_float(self.data())

    def as_string(self) -> str:
        return decode_string(self.data())

    def child(self, element_id: int) -> Element | None:
        """The first child with that ID, or ``None``."""
        for c in self.children:
            if c.id == element_id:
                return c
        return None

    def children_with(self, element_id: int) -> list[Element]:
        return [c for c in self.children if c.id == element_id]


def iter_elements(
    data: bytes,
    start: int = 0,
    end: int | None = None,
    *,
    max_size: int = MAX_ELEMENT_SIZE,
) -> Iterator[tuple[int, int, int, int]]:
    """Walk sibling elements in ``data[start:end]`` without descending.

    Yields ``(id, offset, data_offset, size)`` where size may be :data:`UNKNOWN_SIZE`; the
    walk stops at an unknown-size element (its end is only known to a schema-aware reader).

    >>> list(iter_elements(uint_element(0xE7, 5) + uint_element(0xE7, 6)))
    [(231, 0, 2, 1), (231, 3, 5, 1)]
    """
    stop = len(data) if end is None else end
    pos = start
    while pos < stop:
        eid, p = read_id(data, pos, stop)
        size, p = read_size(data, p, stop)
        yield eid, pos, p, size
        if size == UNKNOWN_SIZE:
            return
        if size > max_size:
            raise EbmlError(f"element {eid:#x} declares {size} bytes", reason="oversize")
        if p + size > stop:
            reason = "truncated" if stop == len(data) else "oversize"
            raise EbmlError(f"element {eid:#x} at {pos} runs past its bounds", reason=reason)
        pos = p + size


def scan(
    data: bytes, start: int = 0, end: int | None = None, *, max_size: int = MAX_ELEMENT_SIZE
) -> list[tuple[int, int, int]]:
    """Sibling elements of ``data[start:end]`` as ``(id, data_offset, data_end)``, all sizes
    known. The flat, fast walk for a cluster's thousands of blocks.

    >>> scan(uint_element(0xE7, 5) + binary_element(0xA3, b"xy"))
    [(231, 2, 3), (163, 5, 7)]
    """
    stop = len(data) if end is None else end
    total = len(data)
    vint_len = _VINT_LEN
    out: list[tuple[int, int, int]] = []
    pos = start
    while pos < stop:
        first = data[pos]
        n = vint_len[first]
        if n == 0 or n > _MAX_ID_LEN:
            raise EbmlError(f"bad element id byte {first:#04x} at {pos}", reason="bad-vint")
        p = pos + n
        if p >= stop:
            raise EbmlError(f"element at {pos} truncated", reason="truncated")
        eid = first if n == 1 else int.from_bytes(data[pos:p], "big")
        first = data[p]
        m = vint_len[first]
        if m == 0:
            raise EbmlError(f"bad size byte {first:#04x} at {p}", reason="bad-vint")
        q = p + m
        if q > stop:
            raise EbmlError(f"element size at {p} truncated", reason="truncated")
        if m == 1:
            size = first & 0x7F
            unknown = size == 0x7F
        elif m == 2:
            size = (first & 0x3F) << 8 | data[p + 1]
            unknown = size == 0x3FFF
        else:
            size = int.from_bytes(data[p:q], "big") & ((1 << (7 * m)) - 1)
            unknown = size == (1 << (7 * m)) - 1
        if unknown:
            raise EbmlError(f"unknown size on element {eid:#x} at {pos}", reason="bad-structure")
        if size > max_size:
            raise EbmlError(f"element {eid:#x} declares {size} bytes", reason="oversize")
        pos = q + size
        if pos > stop:
            reason = "truncated" if pos > total else "oversize"
            raise EbmlError(f"element {eid:#x} at {p - n} runs past its bounds", reason=reason)
        out.append((eid, q, pos))
    return out


def parse(
    data: bytes,
    *,
    masters: Set[int],
    levels: Mapping[int, int] | None = None,
    lazy: Set[int] = frozenset(),
    max_depth: int = 8,
    max_size: int = MAX_ELEMENT_SIZE,
) -> list[Element]:
    """Parse ``data`` into a tree of top-level :class:`Element` s.

    ``masters`` are the IDs whose data is a list of child elements. ``levels`` gives the
    nesting level of IDs that end an unknown-size element: an unknown-size element of level
    L ends where an element of level <= L begins (otherwise at its parent's end), which is
    how a reader finds the end of a live Segment or Cluster. Masters in ``lazy`` keep no
    children when their size is known (the caller walks them with :func:`iter_elements`,
    cheaper for thousands of blocks); an unknown size still needs its children read.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EbmlError(f"expected bytes, got {type(data).__name__}", reason="bad-structure")
    buf = bytes(data)
    lv = levels or {}
    eager = frozenset(masters) - frozenset(lazy)
    out, _ = _parse_level(buf, 0, len(buf), masters, eager, lv, None, 0, max_depth, max_size)
    return out


def _parse_level(
    buf: bytes,
    pos: int,
    stop: int,
    masters: Set[int],
    eager: Set[int],
    levels: Mapping[int, int],
    closer_level: int | None,
    depth: int,
    max_depth: int,
    max_size: int,
) -> tuple[list[Element], int]:
    """Parse siblings from ``pos`` to ``stop``; with ``closer_level``, stop early before an
    element of that level or above (the end of an unknown-size parent). Returns the
    elements and where parsing stopped."""
    if depth > max_depth:
        raise EbmlError(f"elements nested deeper than {max_depth}", reason="bad-structure")
    out: list[Element] = []
    vint_len = _VINT_LEN
    total = len(buf)
    while pos < stop:
        # Inlined read_id / read_size: this loop runs once per SimpleBlock.
        first = buf[pos]
        n = vint_len[first]
        if n == 0 or n > _MAX_ID_LEN:
            raise EbmlError(f"bad element id byte {first:#04x} at {pos}", reason="bad-vint")
        p = pos + n
        if p > stop:
            raise EbmlError(f"element id at {pos} truncated", reason="truncated")
        eid = int.from_bytes(buf[pos:p], "big") if n > 1 else first
        if closer_level is not None:
            lvl = levels.get(eid)
            if lvl is not None and lvl <= closer_level:
                return out, pos
        if p >= stop:
            raise EbmlError(f"element size at {p} truncated", reason="truncated")
        first = buf[p]
        m = vint_len[first]
        if m == 0:
            raise EbmlError(f"bad size byte {first:#04x} at {p}", reason="bad-vint")
        q = p + m
        if q > stop:
            raise EbmlError(f"element size at {p} truncated", reason="truncated")
        size = (
            (first & (0xFF >> m))
            if m == 1
            else int.from_bytes(buf[p:q], "big") & ((1 << (7 * m)) - 1)
        )
        if size == (1 << (7 * m)) - 1:
            if eid not in masters:
                raise EbmlError(f"unknown size on data element {eid:#x}", reason="bad-structure")
            my_level = levels.get(eid, depth)
            kids, end = _parse_level(
                buf, q, stop, masters, eager, levels, my_level, depth + 1, max_depth, max_size
            )
            out.append(Element(eid, buf, pos, q, end, True, kids))
            pos = end
            continue
        end = q + size
        if size > max_size:
            raise EbmlError(f"element {eid:#x} declares {size} bytes", reason="oversize")
        if end > stop:
            reason = "truncated" if end > total else "oversize"
            raise EbmlError(f"element {eid:#x} at {pos} runs past its bounds", reason=reason)
        if eid in eager:
            kids, _ = _parse_level(
                buf, q, end, masters, eager, levels, None, depth + 1, max_depth, max_size
            )
        else:
            kids = []
        out.append(Element(eid, buf, pos, q, end, False, kids))
        pos = end
    return out, pos
