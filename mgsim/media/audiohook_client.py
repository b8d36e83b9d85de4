"""Genesys Cloud AudioHook v2, client side: a :class:`StereoCall` as Genesys would send it.

:func:`encode` yields ``open``, binary frames of interleaved µ-law (``external`` = the
customer first, then ``internal``), periodic ``ping``, client-initiated
``paused``/``resumed`` windows, ``discarded`` gaps, ``update`` and a final ``close``, each
as a :class:`Wire` on channel ``"ws"``. The server that reads them is
:class:`mgsim.media.audiohook.AudioHookSession`; the shared wire format is
:mod:`mgsim.media.audiohook_protocol`.

>>> import numpy as np
>>> from mgsim.media._base import StereoCall
>>> call = StereoCall(np.zeros(1600, np.int16), np.zeros(1600, np.int16))
>>> wires = list(encode(call, guid="3f1c2d4e-0000-4000-8000-000000000001"))
>>> [(w.at_ms, json.loads(w.data)["type"] if isinstance(w.data, str) else len(w.data))
...  for w in wires]
[(0.0, 'open'), (200.0, 3200), (200.0, 'close')]
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

from mgsim.errors import ConfigError
from mgsim.media._base import StereoCall, Wire
from mgsim.media.audiohook_protocol import (
    EXTERNAL_OFFER,
    MAX_MESSAGE_BYTES,
    NULL_UUID,
    STEREO_OFFER,
    UUID_RE,
    format_position,
)
from mgsim.media.g711 import ulaw_encode_array

__all__ = ["encode"]

_DEFAULT_ORG = "6a4b6f2e-8d0c-4b8e-9a55-0f3c2d1e7b10"
_ID_NAMESPACE = uuid.UUID("8e3f0a52-2c1d-4f4e-9b7a-5d6c0e1f2a3b")


def _windows(spans: Sequence[tuple[float, float]], n: int, what: str) -> list[tuple[int, int]]:
    out = []
    for start_ms, end_ms in spans:
        start, end = round(start_ms * 8), min(round(end_ms * 8), n)
        if not 0 <= start < end:
            raise ConfigError(f"{what} window {(start_ms, end_ms)} is empty or outside the call")
        out.append((start, end))
    return out


class _Client:
    """Seq/serverseq bookkeeping of the sending side."""

    def __init__(self, session_id: str) -> None:
        self.session_id, self.seq, self.serverseq = session_id, 0, 0

    def message(
        self, type_: str, position: int, parameters: dict[str, Any], *, replied: bool = False
    ) -> str:
        self.seq += 1
        text = json.dumps(
            {
                "version": "2",
                "id": self.session_id,
                "type": type_,
                "seq": self.seq,
                "serverseq": self.serverseq,
                "position": format_position(position),
                "parameters": parameters,
            },
            separators=(",", ":"),
        )
        # In-process playback delivers each reply before the next client message.
        self.serverseq += replied
        return text


def encode(
    call: StereoCall,
    *,
    guid: str,
    session_id: str | None = None,
    organization_id: str = _DEFAULT_ORG,
    participant: dict[str, str] | None = None,
    frame_ms: int = 200,
    frame_sizes: Sequence[int] | None = None,
    pauses: Sequence[tuple[float, float]] = (),
    discards: Sequence[tuple[float, float]] = (),
    updates: Sequence[tuple[float, str]] = (),
    ping_every_ms: int = 5000,
    channels: Literal["stereo", "external"] = "stereo",
    language: str = "en-US",
    probe: bool = False,
) -> Iterator[Wire]:
    """Play ``call`` as a Genesys AudioHook client would send it, on channel ``"ws"``.

    ``guid`` is the ``conversationId`` (a UUID); ``session_id`` defaults to one derived from
    it. ``frame_ms`` sets the frame length, or ``frame_sizes`` the bytes of each frame in a
    repeating cycle. ``pauses`` are client pauses as ``(start_ms, end_ms)``: ``paused``, no
    audio, then ``resumed``; ``discards`` are windows the client drops and reports with
    ``discarded``; ``updates`` are ``(at_ms, language)`` changes. ``channels="external"``
    offers (and sends) only the customer. ``probe`` sends a connection probe: ``open`` with
    the all-zero conversationId, then ``close``. Each :class:`Wire`'s ``at_ms`` is when a
    real-time client sends it: a frame once its last sample is captured.
    """
    if not UUID_RE.fullmatch(guid):
        raise ConfigError(f"an AudioHook conversationId is a UUID, got {guid!r}")
    client = _Client(session_id or str(uuid.uuid5(_ID_NAMESPACE, guid)))
    participant = participant or {
        "id": str(uuid.uuid5(_ID_NAMESPACE, guid + "/participant")),
        "ani": "+15555550100",
        "aniName": "Customer",
        "dnis": "+15555550199",
    }
    offers = [STEREO_OFFER, EXTERNAL_OFFER] if channels == "stereo" else [EXTERNAL_OFFER]
    open_params = {
        "organizationId": organization_id,
        "conversationId": NULL_UUID if probe else guid,
        "participant": participant,
        "media": offers,
        "language": language,
    }
    yield Wire(0.0, "ws", client.message("open", 0, open_params, replied=True))
    if probe:
        yield Wire(0.0, "ws", client.message("close", 0, {"reason": "end"}, replied=True))
        return

    n = call.n_samples
    width = 2 if channels == "stereo" else 1
    sizes = list(frame_sizes) if frame_sizes is not None else [frame_ms * 8 * width]
    if not sizes or any(s <= 0 or s % width or s > MAX_MESSAGE_BYTES for s in sizes):
        raise ConfigError(f"frame sizes must be positive multiples of {width} up to 64,000")
    customer = np.zeros(n, np.int16)
    customer[: len(call.customer)] = call.customer
    if width == 2:
        both = np.zeros((n, 2), np.int16)
        both[:, 0] = customer
        both[: len(call.agent), 1] = call.agent
        codes = ulaw_encode_array(both).tobytes()  # C order: external, internal, external...
    else:
        codes = ulaw_encode_array(customer).tobytes()

    pause_w, discard_w = _windows(pauses, n, "pause"), _windows(discards, n, "discard")
    gaps = sorted(pause_w + discard_w)
    if any(a[1] > b[0] for a, b in itertools.pairwise(gaps)):
        raise ConfigError("pause and discard windows must not overlap")

    # (sample time, order at that time, kind, a, b); frames sort before control messages
    # at the same instant, a resume/discard report before a pause that starts right there.
    actions: list[tuple[int, int, str, int, Any]] = []
    cursor, cycle = 0, 0
    for gap_start, gap_end in [*gaps, (n, n)]:
        while cursor < gap_start:
            end = min(cursor + sizes[cycle % len(sizes)] // width, gap_start)
            actions.append((end, 0, "frame", cursor, end))
            cursor, cycle = end, cycle + 1
        cursor = max(cursor, gap_end)
    for start, end in pause_w:
        actions += [(start, 2, "paused", start, end), (end, 1, "resumed", start, end)]
    actions += [(end, 1, "discarded", start, end) for start, end in discard_w]
    if ping_every_ms > 0:
        actions += [(t, 3, "ping", 0, None) for t in range(ping_every_ms * 8, n, ping_every_ms * 8)]
    actions += [(min(round(t * 8), n), 3, "update", 0, lang) for t, lang in updates]
    actions.sort(key=lambda a: (a[0], a[1]))

    sent, paused = 0, False  # samples accounted for (audio + reported gaps)
    for at, _, kind, a, b in actions:
        at_ms = at / 8
        if kind == "frame":
            yield Wire(at_ms, "ws", codes[a * width : b * width])
            sent = b
        elif kind == "paused":
            paused = True
            yield Wire(at_ms, "ws", client.message("paused", sent, {}))
        elif kind in ("resumed", "discarded"):
            paused, sent = False, b
            gap = {"start": format_position(a), "discarded": format_position(b - a)}
            yield Wire(at_ms, "ws", client.message(kind, b, gap))
        else:
            # While paused the client's clock runs on; otherwise it reports audio sent.
            position = at if paused else sent
            params = {} if kind == "ping" else {"language": b}
            yield Wire(at_ms, "ws", client.message(kind, position, params, replied=True))
    close_at = n if paused else sent
    yield Wire(n / 8, "ws", client.message("close", close_at, {"reason": "end"}, replied=True))
