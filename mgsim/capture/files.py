"""One entry point per direction: :func:`record` a call's wires, :func:`load_capture` a file."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mgsim.capture.errors import CaptureError
from mgsim.capture.jsonl import read_jsonl, write_jsonl
from mgsim.capture.mkv import read_mkv, write_mkv
from mgsim.capture.pcap import read_pcap, write_pcap
from mgsim.media._base import Wire
from mgsim.media.kvs_mkv import parse_fragment
from mgsim.media.sip import SipError
from mgsim.media.siprec import SiprecSession

__all__ = ["Capture", "load_capture", "record"]

_EBML = b"\x1a\x45\xdf\xa3"
_PCAP = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
)


@dataclass(slots=True)
class Capture:
    """A call read from a capture: its platform, its guid, the wires the gateway's decoder
    takes (times in ms from the call's start) and every protocol problem found."""

    namespace: str
    guid: str
    wires: list[Wire]
    problems: list[str] = field(default_factory=list)
    ignored: int = 0
    """Packets or lines that were not part of the call (other traffic)."""

    @property
    def duration_ms(self) -> float:
        return self.wires[-1].at_ms if self.wires else 0.0


def record(namespace: str, wires: Iterable[Wire], path: str | Path) -> Path:
    """Write the call ``wires`` of ``namespace`` as its platform's capture: pcap/pcapng for
    SIPREC, JSON lines for Twilio and AudioHook, MKV for Amazon Connect."""
    path = Path(path)
    if namespace == "siprec":
        if path.suffix not in (".pcap", ".pcapng"):
            raise CaptureError(f"a SIPREC capture is .pcap or .pcapng, not {path.name}")
        return write_pcap(wires, path)
    if namespace in ("twilio", "genesysaudiohook"):
        return write_jsonl(namespace, wires, path)
    if namespace == "amazonconnect":
        return write_mkv(wires, path)
    raise CaptureError(f"unknown namespace {namespace!r}")


def load_capture(path: str | Path) -> Capture:
    """Read any capture mgsim knows (the format is told by its first bytes)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CaptureError(f"{path}: {exc.strerror}") from None
    if not head:
        raise CaptureError(f"{path}: empty file")
    if head in _PCAP or path.suffix in (".pcap", ".pcapng"):
        sip = read_pcap(path)
        return Capture(
            "siprec", _siprec_guid(path, sip.wires), sip.wires, sip.problems, sip.ignored
        )
    if head == _EBML:
        wires, problems = read_mkv(path)
        contact = parse_fragment(bytes(wires[0].data)).contact_id  # type: ignore[arg-type]
        if contact is None:
            raise CaptureError(f"{path}: the first fragment has no ContactId: whose call is it?")
        return Capture("amazonconnect", contact, wires, problems)
    namespace, wires = read_jsonl(path)
    if namespace == "twilio":
        guid, problems = _twilio(path, wires)
    else:
        guid, problems = _audiohook(path, wires)
    return Capture(namespace, guid, wires, problems)


def _siprec_guid(path: Path, wires: list[Wire]) -> str:
    session = SiprecSession()
    for wire in wires:
        if wire.channel == "sip":
            try:
                session.feed(wire)
            except SipError as exc:
                raise CaptureError(f"{path}: the INVITE is refused: {exc}") from None
            break
    if session.guid is None:
        raise CaptureError(f"{path}: the INVITE names no call (UCID or Call-ID)")
    return session.guid


def _messages(wires: list[Wire]) -> list[tuple[float, dict[str, object]]]:
    out = []
    for wire in wires:
        if isinstance(wire.data, str):
            try:
                msg = json.loads(wire.data)
            except ValueError:
                continue
            if isinstance(msg, dict):
                out.append((wire.at_ms, msg))
    return out


def _twilio(path: Path, wires: list[Wire]) -> tuple[str, list[str]]:
    problems: list[str] = []
    guid = None
    last_seq: int | None = None
    chunks: dict[str, int] = {}
    gaps = 0
    events = []
    for _, msg in _messages(wires):
        event = msg.get("event")
        events.append(event)
        start = msg.get("start")
        if event == "start" and isinstance(start, dict):
            guid = str(start.get("callSid"))
        seq = msg.get("sequenceNumber")
        if isinstance(seq, str) and seq.isdigit():
            if last_seq is not None and int(seq) != last_seq + 1:
                gaps += 1
            last_seq = int(seq)
        media = msg.get("media")
        if event == "media" and isinstance(media, dict):
            track, chunk = str(media.get("track")), str(media.get("chunk", ""))
            if chunk.isdigit():
                if track in chunks and int(chunk) != chunks[track] + 1:
                    problems.append(f"track {track}: chunk {chunk} follows {chunks[track]}")
                chunks[track] = int(chunk)
    if guid is None:
        raise CaptureError(f"{path}: no Twilio start message with a callSid: whose call is it?")
    if gaps:
        problems.append(f"{gaps} gaps in sequenceNumber")
    if "stop" not in events:
        problems.append("no stop message: the log ends mid-call")
    return guid, problems[:50]


def _audiohook(path: Path, wires: list[Wire]) -> tuple[str, list[str]]:
    problems: list[str] = []
    messages = _messages(wires)
    opens = [m for _, m in messages if m.get("type") == "open"]
    if not opens:
        raise CaptureError(f"{path}: no AudioHook open message: whose call is it?")
    params = opens[0].get("parameters")
    guid = params.get("conversationId") if isinstance(params, dict) else None
    if not isinstance(guid, str):
        raise CaptureError(f"{path}: the open message names no conversationId")
    last: int | None = None
    for _, msg in messages:
        seq = msg.get("seq")
        if isinstance(seq, int):
            if last is not None and seq != last + 1:
                problems.append(f"seq {seq} follows {last}")
            last = seq
    if not any(m.get("type") == "close" for _, m in messages):
        problems.append("no close message: the log ends mid-call")
    return guid, problems[:50]
