"""What a SIPREC INVITE says about its call: the UCID (from the headers each vendor uses)
and the session's info (participants, streams and labels from the RFC 7865 metadata), as
:class:`~mgsim.media.siprec_server.SiprecSession` records them."""

from __future__ import annotations

from typing import Any

from mgsim.media.rsmetadata import RecordingMetadata
from mgsim.media.sip import SipMessage
from mgsim.media.siprec_ucid import ucid_from_uui

__all__ = ["CHANNELS", "find_ucid", "session_info"]

CHANNELS = ("0", "1")
"""Participant channels of a SIPREC session: the top and the second audio m-line."""


def find_ucid(msg: SipMessage, meta: RecordingMetadata | None) -> tuple[str, str, str]:
    """``(guid, vendor, where)``: the UCID from the places each vendor uses, else Call-ID."""
    cisco = msg.get("Cisco-Guid")
    if cisco:
        return cisco.strip(), "cisco", "Cisco-Guid"
    for uui in msg.get_all("User-to-User"):
        ucid = ucid_from_uui(uui)
        if ucid is not None:
            return ucid, "avaya", "User-to-User"
    x_ucid = msg.get("X-UCID")
    if x_ucid:
        return x_ucid.strip(), "avaya", "X-UCID"
    if meta is not None and meta.ucid:
        return ucid_from_uui(meta.ucid) or meta.ucid, "generic", "metadata"
    return msg.call_id, "unknown", "Call-ID"


def session_info(
    msg: SipMessage,
    meta: RecordingMetadata | None,
    labels: tuple[str | None, str | None],
    vendor: str,
    source: str,
) -> dict[str, Any]:
    contact = msg.get("Contact") or ""
    info: dict[str, Any] = {
        "call_id": msg.call_id,
        "vendor": vendor,
        "guid_source": source,
        "labels": labels,
        "src_feature": "+sip.src" in contact,
        "participants": [],
        "associations": None,
        "channel_participants": {ch: None for ch in CHANNELS},
        "metadata": dict(meta.found) if meta is not None else {"present": "no"},
    }
    if meta is None:
        return info
    label_map = meta.label_map()
    label_of = {s.stream_id: s.label for s in meta.streams}
    info["participants"] = [
        {
            "participant_id": p.participant_id,
            "name": p.name,
            "aor": p.aor,
            "labels": [lab for lab, pid in label_map.items() if pid == p.participant_id],
        }
        for p in meta.participants
    ]
    if meta.associations is not None:
        info["associations"] = {
            pid: [label_of.get(sid, sid) for sid in sids] for pid, sids in meta.associations.items()
        }
    info["channel_participants"] = {
        ch: label_map.get(label) if label is not None else None
        for ch, label in zip(CHANNELS, labels, strict=True)
    }
    return info
