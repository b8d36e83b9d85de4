"""Twilio Media Streams and Genesys AudioHook calls as timestamped JSON lines.

One line per WebSocket message, in the order sent, after a first line naming the format::

    {"mgsim_capture": 1, "namespace": "twilio"}
    {"at_ms": 0.0, "text": "{\\"event\\":\\"connected\\",...}"}
    {"at_ms": 20.0, "binary": "<base64>"}          (AudioHook audio frames)

``at_ms`` is the message's time on the call's media clock. A capture recorded live (a
server's, ``mgsim serve --capture``, or a sender's over real sockets) says so in its first
line (``"recorded_by"``, ``"started"``: the wall-clock time of its ``at_ms`` 0) and holds
both directions and the WebSocket's closing handshake::

    {"at_ms": 12.5, "from": "client", "text": "..."}
    {"at_ms": 13.0, "from": "server", "text": "{\"type\":\"opened\",...}"}
    {"at_ms": 52011.2, "from": "server", "close": 1000, "reason": "..."}

``"from"`` is ``"client"`` (the platform: Twilio, Genesys) or ``"server"`` (the gateway),
``"client"`` when absent; ``"close"`` is the close code (null: the connection died
without a close frame). A replay feeds the client's messages; the rest is the record of
what the gateway answered. :func:`read_jsonl` also reads a
plain log of Twilio messages, one message object per line as Twilio sent them (what a
Media Streams server typically logs); their times come from ``media.timestamp``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mgsim.capture.errors import CaptureError
from mgsim.media._base import Wire

__all__ = ["read_jsonl", "write_jsonl"]

FORMAT = 1


def write_jsonl(namespace: str, wires: Iterable[Wire], path: str | Path) -> Path:
    """Write ``wires`` of ``namespace`` (``twilio`` or ``genesysaudiohook``) to ``path``."""
    if namespace not in ("twilio", "genesysaudiohook"):
        raise CaptureError(f"JSON lines hold Twilio or AudioHook calls, not {namespace}")
    path = Path(path)
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"mgsim_capture": FORMAT, "namespace": namespace}) + "\n")
        for wire in wires:
            line: dict[str, Any] = {"at_ms": wire.at_ms}
            if isinstance(wire.data, str):
                line["text"] = wire.data
            else:
                line["binary"] = base64.b64encode(bytes(wire.data)).decode()
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
    return path


def read_jsonl(path: str | Path) -> tuple[str, list[Wire]]:
    """``(namespace, wires)`` of a JSON-lines capture; every bad line is a
    :class:`CaptureError` naming its number."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptureError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    rows: list[tuple[int, Any]] = []
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            rows.append((n, json.loads(text)))
        except (ValueError, RecursionError):
            raise CaptureError(f"{path}:{n}: not a JSON line: {text[:60]!r}") from None
    if not rows:
        raise CaptureError(f"{path}: empty: no messages to replay")
    n, head = rows[0]
    if isinstance(head, dict) and "mgsim_capture" in head:
        if head.get("mgsim_capture") != FORMAT:
            raise CaptureError(
                f"{path}:{n}: capture format {head.get('mgsim_capture')!r} "
                f"is not one this mgsim reads ({FORMAT})"
            )
        namespace = head.get("namespace")
        if namespace not in ("twilio", "genesysaudiohook"):
            raise CaptureError(
                f"{path}:{n}: namespace {namespace!r} is not twilio or genesysaudiohook"
            )
        wires = [_envelope(path, n, row) for n, row in rows[1:]]
        return str(namespace), [w for w in wires if w is not None]
    if isinstance(head, dict) and "event" in head:
        return "twilio", _twilio_log(path, rows)
    raise CaptureError(
        f'{path}:{n}: neither an mgsim capture header nor a Twilio message (no "event")'
    )


def _envelope(path: Path, n: int, row: Any) -> Wire | None:
    """The client message of one line; None for the server's messages and closes."""
    if not isinstance(row, dict) or not isinstance(row.get("at_ms"), int | float):
        raise CaptureError(f"{path}:{n}: a message line needs a numeric at_ms")
    sender = row.get("from", "client")
    if sender not in ("client", "server"):
        raise CaptureError(f'{path}:{n}: "from" is "client" or "server", not {sender!r}')
    if "close" in row:
        code = row["close"]
        if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
            raise CaptureError(f"{path}:{n}: a close code is a number or null")
        return None
    if sender == "server":
        return None
    if isinstance(row.get("text"), str):
        return Wire(float(row["at_ms"]), "ws", row["text"])
    if isinstance(row.get("binary"), str):
        try:
            return Wire(float(row["at_ms"]), "ws", base64.b64decode(row["binary"], validate=True))
        except (binascii.Error, ValueError):
            raise CaptureError(f"{path}:{n}: binary is not base64") from None
    raise CaptureError(f"{path}:{n}: a message line needs text or binary")


def _twilio_log(path: Path, rows: list[tuple[int, Any]]) -> list[Wire]:
    wires = []
    last = 0.0
    for n, row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("event"), str):
            raise CaptureError(f'{path}:{n}: not a Twilio message (no "event")')
        media = row.get("media")
        if isinstance(media, dict) and "timestamp" in media:
            try:
                last = float(media["timestamp"])
            except (TypeError, ValueError):
                raise CaptureError(f"{path}:{n}: media.timestamp is not a number") from None
        wires.append(Wire(last, "ws", json.dumps(row, separators=(",", ":"))))
    return wires
