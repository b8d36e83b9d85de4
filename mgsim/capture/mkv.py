"""Amazon Connect calls as their Matroska fragments, back to back (what GetMedia returns).

:func:`write_mkv` concatenates a call's Kinesis fragments (ffprobe opens the file, naming
the tracks' codec ``aac`` as Connect's CodecID says); :func:`read_mkv` splits such a dump
(from mgsim, or saved from a real ``GetMedia`` response) into fragments again, each timed
by its end on the call's clock, as the Kinesis encoder times them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mgsim.capture.errors import CaptureError
from mgsim.media._base import Wire
from mgsim.media.kvs import KvsError
from mgsim.media.kvs_mkv import parse_fragment, split_fragments

__all__ = ["read_mkv", "write_mkv"]

_SAMPLE_RATE = 8000


def write_mkv(wires: Iterable[Wire], path: str | Path) -> Path:
    """Write an Amazon Connect call's fragments (``"kvs"`` wires) to ``path``."""
    path = Path(path)
    with path.open("wb") as out:
        for wire in wires:
            if wire.channel != "kvs" or not isinstance(wire.data, bytes):
                raise CaptureError(f"an MKV capture takes Kinesis fragments, not {wire.channel!r}")
            out.write(wire.data)
    return path


def read_mkv(path: str | Path) -> tuple[list[Wire], list[str]]:
    """The fragments of an MKV dump as wires, and the problems found (fragment numbers out of
    order, a fragment without a ContactId or with another one than the first)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CaptureError(f"{path}: {exc.strerror}") from None
    try:
        pieces = split_fragments(data)
    except KvsError as exc:
        raise CaptureError(f"{path}: not a Matroska fragment stream: {exc}") from None
    wires: list[Wire] = []
    problems: list[str] = []
    contact: str | None = None
    last_number: int | None = None
    end_ms = 0.0
    origin: int | None = None
    for i, piece in enumerate(pieces):
        try:
            frag = parse_fragment(piece)
        except KvsError as exc:
            raise CaptureError(f"{path}: fragment {i} cannot be read: {exc}") from None
        if frag.contact_id is None:
            problems.append(f"fragment {i} has no ContactId tag")
        elif contact is None:
            contact = frag.contact_id
        elif frag.contact_id != contact:
            problems.append(f"fragment {i} belongs to contact {frag.contact_id}, not {contact}")
        number = frag.fragment_number
        if number is not None and number.isdigit():
            if last_number is not None and int(number) <= last_number:
                problems.append(f"fragment {i}: fragment number {number} is not after the last")
            last_number = int(number)
        origin = frag.timecode if origin is None else origin
        # A fragment is sent once complete: its time is its last sample's (16-bit PCM).
        last = max(
            (b.timecode + len(b.payload) / 2 * 1000.0 / _SAMPLE_RATE for b in frag.blocks),
            default=0.0,
        )
        end_ms = max(end_ms, float(frag.timecode - origin) + last)
        wires.append(Wire(end_ms, "kvs", piece))
    if not wires:
        raise CaptureError(f"{path}: no fragments")
    return wires, problems
