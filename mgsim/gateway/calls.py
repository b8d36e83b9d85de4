"""Per-call state of the simulated gateway and its state machine.

A call exists from the moment its media session opens (or ``POST /_sim/v1/calls``) until it
hangs up. start-streaming opens a :class:`Segment`; stop-streaming closes it. Audio that
arrives while a segment is open is *streamed* (it goes on to transcription and counts in the
segment's summary); audio outside any segment is received but not streamed.

Transitions and their vendor errors::

    (no call) ──open──► idle ──start──► streaming ──stop──► idle ──hang up──► (gone)
    start on streaming / stop on idle ........ 409-201
    start or stop with no such call ........... 400-203
    anything while a SIPREC BYE is processed .. 409-203

The state machine is pure: it reads time from the injected clock and never sleeps.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mgsim.clock import Clock
from mgsim.contract import Problem
from mgsim.gateway.mapping import ROLES, Role, channel_roles, default_channels

__all__ = ["CallState", "Gateway", "Segment", "StartParams"]

STATUS_OK = (1000, "OK")
STATUS_LANGUAGE = (4050, "Language not supported")
SUPPORTED_LANGUAGES = frozenset({"en-US"})
BYTES_PER_SAMPLE = 2  # the summary counts audio as 16-bit PCM, whatever the wire carried


@dataclass(frozen=True, slots=True)
class StartParams:
    """The start-streaming body, with the vendor defaults filled in."""

    customer_id: str
    agent_id: str
    language: str = "en-US"
    detailed_token: bool = False
    audio_recording_allowed: bool = False
    redaction_output: str = "redacted"
    body: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> StartParams:
        at = body.get("autotranscribeParams") or {}
        return cls(
            customer_id=body["customerId"],
            agent_id=body["agentId"],
            language=at.get("language", "en-US"),
            detailed_token=at.get("detailedToken", False),
            audio_recording_allowed=at.get("audioRecordingAllowed", False),
            redaction_output=at.get("redactionOutput", "redacted"),
            body=body,
        )


@dataclass(slots=True)
class Segment:
    """One start…stop window of a call."""

    index: int
    params: StartParams
    roles: dict[str, Role]
    started_at: float
    stream_ids: dict[Role, str]
    status: tuple[int, str]
    stopped_at: float | None = None
    samples: dict[Role, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))
    transcripts: dict[Role, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))

    @property
    def open(self) -> bool:
        return self.stopped_at is None

    @property
    def transcribing(self) -> bool:
        """Streaming and the language is one the simulator transcribes."""
        return self.status == STATUS_OK

    def summary(self, role: Role, now: float | None = None) -> dict[str, int]:
        """The vendor's per-participant stop summary for this segment."""
        end = self.stopped_at if self.stopped_at is not None else now
        seconds = 0 if end is None else math.ceil(max(0.0, end - self.started_at) - 1e-9)
        n = self.samples[role]
        return {
            "totalAudioBytes": n * BYTES_PER_SAMPLE,
            "audioDurationMs": n // 8,
            "streamingSeconds": seconds,
            "transcripts": self.transcripts[role],
        }


@dataclass(slots=True)
class Chunk:
    """Audio as the gateway received it, with whether it was streamed."""

    channel: str
    start_sample: int
    pcm: npt.NDArray[np.int16]
    received_at: float
    segment: int | None  # index of the streaming segment it fell into, or None


@dataclass(slots=True)
class CallState:
    namespace: str
    guid: str
    channels: tuple[str, ...]
    opened_at: float
    source: str = "sim"  # "sim" (control API) or the media transport that opened it
    segments: list[Segment] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    pending: bool = False
    bye_in_progress: bool = False
    closed_at: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def current(self) -> Segment | None:
        """The open segment, if streaming."""
        if self.segments and self.segments[-1].open:
            return self.segments[-1]
        return None

    @property
    def streaming(self) -> bool:
        return self.current is not None

    @property
    def legs(self) -> int:
        """Call legs seen so far: a start with a new agentId begins a new leg (a transfer)."""
        agents = [s.params.agent_id for s in self.segments]
        return sum(1 for i, a in enumerate(agents) if i == 0 or a != agents[i - 1])

    def receive(
        self, channel: str, start_sample: int, pcm: npt.NDArray[np.int16], now: float
    ) -> bool:
        """Take in decoded audio of ``channel``; return whether it was streamed."""
        seg = self.current
        streamed = seg is not None and seg.transcribing
        self.chunks.append(
            Chunk(channel, start_sample, pcm, now, seg.index if seg and streamed else None)
        )
        if seg is not None and streamed:
            role = seg.roles.get(channel)
            if role is not None:
                seg.samples[role] += len(pcm)
        return streamed


class Gateway:
    """All calls of one simulated gateway.

    >>> from mgsim.clock import VirtualClock
    >>> gw = Gateway(VirtualClock(), random.Random(1))
    >>> call = gw.open_call("twilio", "CA" + "0" * 32)
    >>> seg = gw.start("twilio", call.guid, StartParams("c1", "a1"))
    >>> gw.stop("twilio", call.guid).summary("customer")["totalAudioBytes"]
    0
    """

    def __init__(self, clock: Clock, rng: random.Random | None = None) -> None:
        self.clock = clock
        self.rng = rng or random.Random()
        self.calls: dict[str, CallState] = {}
        self.ended: dict[str, CallState] = {}
        # Transcript messages per guid, as GET /conversation/v1/conversation/messages serves.
        self.messages: dict[str, list[dict[str, Any]]] = {}

    def new_id(self) -> str:
        """A random (or, with a seeded rng, reproducible) version-4 UUID string."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def open_call(
        self,
        namespace: str,
        guid: str,
        channels: tuple[str, ...] | None = None,
        *,
        source: str = "sim",
        info: dict[str, Any] | None = None,
    ) -> CallState:
        if guid in self.calls:
            raise Problem("409-01", f"a call with guid {guid} is already open")
        call = CallState(
            namespace=namespace,
            guid=guid,
            channels=channels or default_channels(namespace),
            opened_at=self.clock.now(),
            source=source,
            info=dict(info or {}),
        )
        self.calls[guid] = call
        self.ended.pop(guid, None)
        return call

    def get(self, namespace: str, guid: str) -> CallState:
        call = self.calls.get(guid)
        if call is None or call.namespace != namespace:
            raise Problem(
                "400-203", f"No call with guid {guid} found in namespace {namespace}"
            )
        if call.bye_in_progress:
            raise Problem("409-203")
        return call

    def start(self, namespace: str, guid: str, params: StartParams) -> Segment:
        call = self.get(namespace, guid)
        if call.streaming:
            raise Problem("409-201", f"Call transcription already started for guid {guid}")
        status = STATUS_OK if params.language in SUPPORTED_LANGUAGES else STATUS_LANGUAGE
        seg = Segment(
            index=len(call.segments),
            params=params,
            roles=channel_roles(namespace, params.body),
            started_at=self.clock.now(),
            stream_ids={role: self.new_id() for role in ROLES},
            status=status,
        )
        call.segments.append(seg)
        return seg

    def stop(self, namespace: str, guid: str) -> Segment:
        call = self.get(namespace, guid)
        seg = call.current
        if seg is None:
            raise Problem("409-201", f"Call transcription already stopped for guid {guid}")
        seg.stopped_at = self.clock.now()
        return seg

    def hang_up(self, guid: str) -> CallState:
        call = self.calls.pop(guid, None)
        if call is None:
            raise Problem("404-01", f"No open call with guid {guid}")
        now = self.clock.now()
        if call.current is not None:
            call.current.stopped_at = now
        call.closed_at = now
        self.ended[guid] = call
        return call
