"""SIPREC recording metadata (RFC 7865): the ``application/rs-metadata+xml`` body part.

The metadata names the recorded session, its participants and its media streams (each
stream carries the ``a=label`` of its SDP m-line), and says which participant sends which
stream (``participantstreamassoc``). Recording clients differ, so :func:`parse_metadata`
matches elements by local name whatever the namespace or prefix, accepts the older
attribute names (``id``, ``session``), names given as ``<nameID aor=...><name>`` or as a
bare ``<name>``, and associations given as ``<send>`` inside ``<participant>``. When there is
no association at all, :meth:`RecordingMetadata.label_map` pairs participants with labels in
document order. :attr:`RecordingMetadata.found` reports which variant it read.

>>> meta = RecordingMetadata(
...     session_id="s1",
...     participants=(Participant("p1", "sip:alice@example.com", "Alice"),),
...     streams=(Stream("st1", "1", "s1"),),
...     associations={"p1": ("st1",)},
... )
>>> parsed = parse_metadata(build_metadata(meta, prefix="rec"))
>>> (parsed.label_map(), parsed.found["prefix"])
({'1': 'p1'}, 'rec')
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from mgsim.media.sip import SipError

__all__ = [
    "CONTENT_TYPE",
    "NAMESPACE",
    "MetadataError",
    "Participant",
    "RecordingMetadata",
    "Stream",
    "build_metadata",
    "parse_metadata",
]

NAMESPACE = "urn:ietf:params:xml:ns:recording:1"
"""The RFC 7865 XML namespace."""

CONTENT_TYPE = "application/rs-metadata+xml"
"""MIME type of the metadata body part."""

UCID_NAMESPACE = "urn:x-mgsim:params:xml:ns:ucid"
"""Namespace of the ``<ucid>`` extension element the generic client writes."""

_UCID_TAGS = frozenset({"ucid", "avayaucid", "cisco-guid", "ciscoguid"})
_PREFIX = re.compile(rb"<([A-Za-z_][\w.-]*):recording[\s>/]")


class MetadataError(SipError):
    """Recording metadata that is not well-formed XML or not a ``<recording>`` document.

    A recording server answers it with 400 Bad Request.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, sip_status=400, reason="bad-metadata")


@dataclass(frozen=True, slots=True)
class Participant:
    """One party of the recorded call."""

    participant_id: str
    aor: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Stream:
    """One media stream; ``label`` equals the ``a=label`` of its SDP m-line."""

    stream_id: str
    label: str
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingMetadata:
    """What a metadata document says.

    ``associations`` maps a participant id to the stream ids it sends, or is None when the
    document has no association. ``ucid`` is a call identifier found in extension data.
    ``found`` describes the variant read: ``namespace``, ``prefix``, ``names`` (``nameID``,
    ``name`` or ``none``), ``attributes`` (``rfc7865`` or ``legacy``) and ``associations``
    (``participantstreamassoc``, ``participant-send`` or ``none``).
    """

    session_id: str
    participants: tuple[Participant, ...]
    streams: tuple[Stream, ...]
    associations: Mapping[str, tuple[str, ...]] | None = None
    ucid: str | None = None
    found: Mapping[str, str] = field(default_factory=dict)

    def label_map(self) -> dict[str, str]:
        """``{label: participant_id}`` from the associations, else by document order
        (first participant ↔ lowest label)."""
        label_of = {s.stream_id: s.label for s in self.streams}
        out: dict[str, str] = {}
        if self.associations:
            for pid, stream_ids in self.associations.items():
                for sid in stream_ids:
                    if sid in label_of:
                        out.setdefault(label_of[sid], pid)
            if out:
                return out
        labels = sorted({s.label for s in self.streams}, key=_label_key)
        for label, participant in zip(labels, self.participants, strict=False):
            out[label] = participant.participant_id
        return out

    def participant(self, participant_id: str) -> Participant | None:
        return next((p for p in self.participants if p.participant_id == participant_id), None)


def build_metadata(
    meta: RecordingMetadata,
    *,
    prefix: str | None = None,
    names: Literal["nameID", "name"] = "nameID",
) -> bytes:
    """Serialise metadata the way a recording client would.

    ``prefix`` writes elements as ``prefix:recording`` instead of using a default namespace;
    ``names="name"`` writes a bare ``<name aor=...>`` instead of ``<nameID>``; associations
    are written only when ``meta.associations`` is not None; ``meta.ucid`` goes in the
    session's ``<extensiondata>``.
    """
    p = f"{prefix}:" if prefix else ""
    xmlns = f"xmlns:{prefix}" if prefix else "xmlns"
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<{p}recording {xmlns}={quoteattr(NAMESPACE)}>",
        f"<{p}datamode>complete</{p}datamode>",
        f"<{p}session session_id={quoteattr(meta.session_id)}>",
    ]
    if meta.ucid is not None:
        out.append(
            f"<{p}extensiondata xmlns:ext={quoteattr(UCID_NAMESPACE)}>"
            f"<ext:ucid>{escape(meta.ucid)}</ext:ucid></{p}extensiondata>"
        )
    out.append(f"</{p}session>")
    for part in meta.participants:
        out.append(f"<{p}participant participant_id={quoteattr(part.participant_id)}>")
        aor = f" aor={quoteattr(part.aor)}" if part.aor is not None else ""
        text = escape(part.name or "")
        if names == "nameID":
            out.append(f"<{p}nameID{aor}><{p}name>{text}</{p}name></{p}nameID>")
        else:
            out.append(f"<{p}name{aor}>{text}</{p}name>")
        out.append(f"</{p}participant>")
    for stream in meta.streams:
        session = stream.session_id or meta.session_id
        out.append(
            f"<{p}stream stream_id={quoteattr(stream.stream_id)} session_id={quoteattr(session)}>"
            f"<{p}label>{escape(stream.label)}</{p}label></{p}stream>"
        )
    for pid, stream_ids in (meta.associations or {}).items():
        sends = "".join(f"<{p}send>{escape(s)}</{p}send>" for s in stream_ids)
        out.append(
            f"<{p}participantstreamassoc participant_id={quoteattr(pid)}>{sends}"
            f"</{p}participantstreamassoc>"
        )
    out.append(f"</{p}recording>")
    return "\n".join(out).encode()


def parse_metadata(data: bytes | str) -> RecordingMetadata:
    """Read a metadata document, tolerating vendor variants (see the module docstring).

    Raises :class:`MetadataError` for anything that is not a well-formed ``<recording>``;
    DTDs are refused outright (no entity expansion).
    """
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
    if b"<!DOCTYPE" in raw.upper() or b"<!ENTITY" in raw.upper():
        raise MetadataError("metadata with a DTD is refused")
    try:
        root = ET.fromstring(raw)
    except (ET.ParseError, ValueError, LookupError) as exc:
        raise MetadataError(f"metadata is not well-formed XML: {exc}") from exc
    namespace, tag = _split(root.tag)
    if tag != "recording":
        raise MetadataError(f"metadata root is <{tag}>, not <recording>")
    prefix = _PREFIX.search(raw)
    found = {
        "namespace": namespace or "none",
        "prefix": prefix.group(1).decode("ascii", "replace") if prefix else "none",
        "names": "none",
        "attributes": "rfc7865",
        "associations": "none",
    }
    session_id = ""
    participants: list[Participant] = []
    streams: list[Stream] = []
    assoc: dict[str, list[str]] = {}
    for child in root:
        kind = _split(child.tag)[1]
        if kind == "session":
            session_id = _attr(child, ("session_id", "id"), found)
        elif kind == "participant":
            pid = _attr(child, ("participant_id", "id"), found)
            participants.append(_participant(child, pid, found))
            sends = _texts(child, "send")
            if sends:
                assoc.setdefault(pid, []).extend(sends)
                found["associations"] = "participant-send"
        elif kind == "stream":
            sid = _attr(child, ("stream_id", "id"), found)
            label = next(iter(_texts(child, "label")), "")
            session = _attr(child, ("session_id", "session"), found) or None
            streams.append(Stream(sid, label, session))
        elif kind == "participantstreamassoc":
            pid = _attr(child, ("participant_id", "id"), found)
            assoc.setdefault(pid, []).extend(_texts(child, "send"))
            found["associations"] = "participantstreamassoc"
    ucid = next(
        (
            (el.text or "").strip()
            for el in root.iter()
            if isinstance(el.tag, str) and _split(el.tag)[1].lower() in _UCID_TAGS
        ),
        None,
    )
    return RecordingMetadata(
        session_id=session_id,
        participants=tuple(participants),
        streams=tuple(streams),
        associations={k: tuple(v) for k, v in assoc.items()} if assoc else None,
        ucid=ucid or None,
        found=found,
    )


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _attr(element: ET.Element, names: tuple[str, ...], found: dict[str, str]) -> str:
    for local, value in element.attrib.items():
        key = _split(local)[1]
        if key == names[0]:
            return value.strip()
        if key in names[1:]:
            found["attributes"] = "legacy"
            return value.strip()
    return ""


def _texts(element: ET.Element, name: str) -> list[str]:
    return [
        (el.text or "").strip()
        for el in element
        if isinstance(el.tag, str) and _split(el.tag)[1] == name
    ]


def _participant(element: ET.Element, pid: str, found: dict[str, str]) -> Participant:
    aor: str | None = None
    name: str | None = None
    for child in element:
        if not isinstance(child.tag, str):
            continue
        kind = _split(child.tag)[1]
        if kind == "nameID":
            found["names"] = "nameID"
            aor = child.attrib.get("aor", aor)
            inner = _texts(child, "name")
            name = inner[0] if inner else name
        elif kind == "name":
            if found["names"] == "none":
                found["names"] = "name"
            aor = child.attrib.get("aor", aor)
            name = (child.text or "").strip() or name
        elif kind == "aor":
            aor = (child.text or "").strip() or aor
    return Participant(pid, aor, name)


def _label_key(label: str) -> tuple[int, str]:
    return (
        (int(label), "")
        if label.isascii() and label.isdigit() and len(label) < 10
        else (1 << 31, label)
    )
