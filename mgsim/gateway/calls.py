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

Each participant channel's audio lands on a :class:`~mgsim.gateway.timeline.Timeline`
(received and streamed masks per sample), and :class:`~mgsim.gateway.accounting.Accounting`
says where every media message went. A media session may attach a :class:`MediaBinding` to
its call: the gateway tells it when a segment starts and stops, which is how Amazon Connect
starts and stops its Kinesis Video reader without the HTTP layer knowing about it.

Retention: only the most recent ``keep_calls`` ended calls are kept (their state in
``Gateway.ended``, their transcript messages for the conversation API), and only the most
recent ``keep_audio_of`` of those keep their audio; older ones are let go as newer calls end,
so a gateway serving calls for days runs in flat memory. Transcript messages are served for
:data:`MESSAGE_RETENTION_S` (7 days, the vendor's retention) of the gateway clock.

The state machine is pure: it reads time from the injected clock and never sleeps.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from mgsim.clock import Clock
from mgsim.contract import Problem
from mgsim.errors import ConfigError
from mgsim.gateway.accounting import Accounting
from mgsim.gateway.guids import canonical_guid
from mgsim.gateway.kvs import KvsMedia
from mgsim.gateway.mapping import ROLES, Role, channel_roles, default_channels
from mgsim.gateway.timeline import StreamedRun, Timeline
from mgsim.gateway.transcription import GatewayTranscription, RecognitionJob
from mgsim.media.kvs import KinesisVideoStore

__all__ = [
    "DEFAULT_KEEP_AUDIO_OF",
    "DEFAULT_KEEP_CALLS",
    "MESSAGE_RETENTION_S",
    "CallState",
    "Gateway",
    "MediaBinding",
    "Segment",
    "StartParams",
]

STATUS_OK = (1000, "OK")
STATUS_LANGUAGE = (4050, "Language not supported")
SUPPORTED_LANGUAGES = frozenset({"en-US"})
BYTES_PER_SAMPLE = 2  # the summary counts audio as 16-bit PCM, whatever the wire carried
DEFAULT_KEEP_AUDIO_OF = 64
"""Ended calls that keep their audio timelines, most recent first."""
DEFAULT_KEEP_CALLS = 1000
"""Ended calls whose state and transcript messages are kept, most recent first."""
MESSAGE_RETENTION_S = 7 * 24 * 3600.0
"""How long the conversation API serves a transcript message (the vendor keeps 7 days)."""


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
    streamed_runs: dict[str, list[StreamedRun]] = field(default_factory=dict, repr=False)
    """Per channel, the samples this window newly streamed (emptied once it is transcribed)."""

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


class MediaBinding(Protocol):
    """A media session's hook into its call's streaming windows.

    ``started`` runs inside start-streaming once the new segment is current; raising
    :class:`~mgsim.contract.Problem` there refuses the start (the segment is withdrawn and
    the control plane answers with the problem). ``stopped`` runs when the segment closes
    (stop-streaming or hang-up).
    """

    def started(self, call: CallState, segment: Segment) -> None: ...

    def stopped(self, call: CallState, segment: Segment) -> None: ...


@dataclass(slots=True)
class CallState:
    """One call: its streaming segments, its per-channel timelines and its accounting."""

    namespace: str
    guid: str
    channels: tuple[str, ...]
    opened_at: float
    source: str = "sim"  # "sim" (control API) or the media transport that opened it
    segments: list[Segment] = field(default_factory=list)
    timelines: dict[str, Timeline] = field(default_factory=dict)
    audio_released: bool = False  # an old ended call whose timelines were let go
    accounting: Accounting = field(default_factory=Accounting)
    pauses: list[tuple[int, int | None]] = field(default_factory=list)
    """Platform pauses as ``(from_sample, to_sample)``; ``None`` while still paused."""
    media: MediaBinding | None = None
    pending: bool = False
    bye_in_progress: bool = False
    closed_at: float | None = None
    last_audio_at: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    on_hang_up: Callable[[CallState], None] | None = field(default=None, repr=False)
    """Told when the gateway hangs the call up on its own (``DELETE /_sim/v1/calls/{guid}``),
    so the media session can tell the platform; a session ending the call itself clears it
    first."""

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

    @property
    def roles(self) -> dict[str, Role]:
        """Channel → role as the latest start-streaming said (the defaults before any)."""
        if self.segments:
            return dict(self.segments[-1].roles)
        return channel_roles(self.namespace, {})

    def timeline(self, channel: str) -> Timeline:
        """The timeline of ``channel`` (created empty on first use)."""
        tl = self.timelines.get(channel)
        if tl is None:
            tl = self.timelines[channel] = Timeline()
        return tl

    def channel_of(self, role: Role, roles: dict[str, Role] | None = None) -> str:
        """The channel carrying ``role`` under ``roles`` (default: :attr:`roles`)."""
        for channel, r in (roles or self.roles).items():
            if r == role:
                return channel
        raise KeyError(role)

    def receive(
        self,
        channel: str,
        start_sample: int,
        pcm: npt.NDArray[np.int16],
        now: float,
        *,
        may_stream: bool = True,
    ) -> bool:
        """Take in decoded audio of ``channel``; return whether it was streamed.

        Audio is streamed when a segment is open and transcribing (and ``may_stream``:
        False places it as received only, for audio the gateway holds but has not read,
        such as a Kinesis Video store's). The open segment counts, per role, only samples
        that this placement newly marked streamed, so repeats never count twice. Raises
        :class:`~mgsim.errors.ConfigError` for a position the timeline cannot hold.
        """
        seg = self.current
        streamed = may_stream and seg is not None and seg.transcribing
        log = seg.streamed_runs.setdefault(channel, []) if streamed and seg is not None else None
        placed = self.timeline(channel).place(start_sample, pcm, streamed=streamed, log=log)
        self.last_audio_at = now
        if seg is not None and streamed:
            role = seg.roles.get(channel)
            if role is not None:
                seg.samples[role] += placed.newly_streamed
        return streamed

    def note_paused(self, at_sample: int) -> None:
        """The platform paused its media at ``at_sample``."""
        if not self.pauses or self.pauses[-1][1] is not None:
            self.pauses.append((at_sample, None))

    def note_resumed(self, at_sample: int) -> None:
        """The platform resumed its media at ``at_sample``."""
        if self.pauses and self.pauses[-1][1] is None:
            self.pauses[-1] = (self.pauses[-1][0], at_sample)


class Gateway:
    """All calls of one simulated gateway.

    >>> from mgsim.clock import VirtualClock
    >>> gw = Gateway(VirtualClock(), random.Random(1))
    >>> call = gw.open_call("twilio", "CA" + "0" * 32)
    >>> seg = gw.start("twilio", call.guid, StartParams("c1", "a1"))
    >>> gw.stop("twilio", call.guid).summary("customer")["totalAudioBytes"]
    0
    """

    def __init__(
        self,
        clock: Clock,
        rng: random.Random | None = None,
        *,
        keep_audio_of: int = DEFAULT_KEEP_AUDIO_OF,
        keep_calls: int = DEFAULT_KEEP_CALLS,
    ) -> None:
        _check_retention(keep_audio_of, keep_calls)
        self.clock = clock
        self.rng = rng or random.Random()
        self.calls: dict[str, CallState] = {}
        self.ended: OrderedDict[str, CallState] = OrderedDict()
        """Ended calls still kept, in the order they ended (oldest first)."""
        # So that a days-long serve runs in flat memory, only the most recent `keep_calls`
        # ended calls are kept at all (state, summaries, transcript messages), and only the
        # most recent `keep_audio_of` of those keep their audio timelines too.
        self.keep_audio_of = keep_audio_of
        self.keep_calls = keep_calls
        self.released = 0
        """How many ended calls were let go because newer ones ended (see :attr:`keep_calls`)."""
        self._with_audio: OrderedDict[str, None] = OrderedDict()
        self.kvs = KinesisVideoStore()
        """The Kinesis Video streams Amazon Connect writes into (in-memory)."""
        self.kvs_media = KvsMedia(self)
        self.transcription = GatewayTranscription(self)
        """Opens calls from fragments put into :attr:`kvs` and reads them while streaming."""
        self.messages: dict[str, list[dict[str, Any]]] = {}
        """Transcript messages per guid, oldest first (:meth:`conversation` serves them)."""
        # Per guid, (clock time stored, how many messages) per batch, oldest first: what
        # the 7-day retention of the conversation API is measured on.
        self._batches: dict[str, deque[tuple[float, int]]] = {}

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
        guid = canonical_guid(guid)
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
        # A guid that ends again later counts as recent then.
        self.ended.pop(guid, None)
        self._with_audio.pop(guid, None)
        self.transcription.call_opened(call)
        return call

    def get(self, namespace: str, guid: str) -> CallState:
        call = self.calls.get(canonical_guid(guid))
        if call is None or call.namespace != namespace:
            raise Problem("400-203", f"No call with guid {guid} found in namespace {namespace}")
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
        if status != STATUS_OK:
            # A stream status other than 1000 is a stream that did not start (the vendor's
            # ASR closes it with 4050): the call stays as it was, not streaming, so the
            # corrected start is accepted and a stop meanwhile is a 409-201.
            seg.stopped_at = seg.started_at
            return seg
        call.segments.append(seg)
        # Snapshot for transcription first: a media binding may replay audio from before the
        # start (Kinesis FRAGMENT_NUMBER), and that audio belongs to this segment.
        self.transcription.segment_started(call, seg)
        if call.media is not None:
            try:
                call.media.started(call, seg)
            except BaseException:
                call.segments.pop()
                raise
        return seg

    def stop(self, namespace: str, guid: str) -> Segment:
        seg, job = self.stop_deferred(namespace, guid)
        if job is not None:
            self.transcription.finish(job, job.recognise())
        return seg

    def stop_deferred(self, namespace: str, guid: str) -> tuple[Segment, RecognitionJob | None]:
        """Stop streaming like :meth:`stop`, but leave the recognition to the caller: run
        ``job.recognise()`` wherever it likes (the server: a worker thread), then
        ``transcription.finish(job, utterances)``; the stop summary counts the transcripts
        once that is done."""
        call = self.get(namespace, guid)
        seg = call.current
        if seg is None:
            raise Problem("409-201", f"Call transcription already stopped for guid {guid}")
        seg.stopped_at = self.clock.now()
        if call.media is not None:
            call.media.stopped(call, seg)
        job = self.transcription.prepare(call, seg)
        seg.streamed_runs.clear()
        return seg, job

    def hang_up(self, guid: str) -> CallState:
        """End call ``guid``: its open segment closes and is transcribed. A media session
        still connected to it is told (:attr:`CallState.on_hang_up`)."""
        call = self.calls.pop(canonical_guid(guid), None)
        if call is None:
            raise Problem("404-01", f"No open call with guid {guid}")
        guid = call.guid
        now = self.clock.now()
        seg = call.current
        if seg is not None:
            seg.stopped_at = now
            if call.media is not None:
                call.media.stopped(call, seg)
            self.transcription.segment_stopped(call, seg)
            seg.streamed_runs.clear()
        call.closed_at = now
        call.bye_in_progress = False
        self.ended[guid] = call
        self._with_audio[guid] = None
        while len(self._with_audio) > self.keep_audio_of:
            old = self.ended.get(self._with_audio.popitem(last=False)[0])
            if old is not None:
                old.timelines.clear()
                old.audio_released = True
                # Its transcripts stay in ``messages`` (the conversation API); the engine
                # and the per-utterance detail go with the audio.
                self.transcription.forget(old.guid)
        while len(self.ended) > self.keep_calls:
            self._release(self.ended.popitem(last=False)[0])
        listener, call.on_hang_up = call.on_hang_up, None
        if listener is not None:
            listener(call)
        return call

    def _release(self, guid: str) -> None:
        """Let an old ended call go entirely: its messages and transcription state too."""
        self._with_audio.pop(guid, None)
        self.messages.pop(guid, None)
        self._batches.pop(guid, None)
        self.transcription.forget(guid)
        self.released += 1

    # -- lookups

    def find(self, guid: str) -> CallState | None:
        """The open call ``guid``, else the kept ended one, else None."""
        guid = canonical_guid(guid)
        return self.calls.get(guid) or self.ended.get(guid)

    def not_found(self, guid: str) -> Problem:
        """The 404-01 for a guid that is neither open nor kept; once older ended calls have
        been released it says so, since ``guid`` may be one of them."""
        if not self.released:
            return Problem("404-01", f"No call with guid {guid}")
        return Problem(
            "404-01",
            f"No call with guid {guid}: it is not open, and only the most recent "
            f"{self.keep_calls} ended calls are kept ({self.released} older ones were "
            "released); raise that number with mgsim serve --keep-calls N "
            "(SimulatorConfig.keep_calls)",
        )

    # -- transcript messages

    def store_messages(self, guid: str, messages: list[dict[str, Any]]) -> None:
        """Keep ``messages`` for the conversation API of ``guid``, stamped with the clock."""
        if not messages:
            return
        now = self.clock.now()
        self._expire(guid, now)
        self.messages.setdefault(guid, []).extend(messages)
        self._batches.setdefault(guid, deque()).append((now, len(messages)))

    def conversation(self, guid: str) -> list[dict[str, Any]]:
        """The messages of ``guid`` the conversation API serves, oldest first: those stored
        within :data:`MESSAGE_RETENTION_S` of the gateway clock, of a call that is open or
        kept (a released call's are gone, as after the vendor's retention).

        >>> from mgsim.clock import VirtualClock
        >>> clock = VirtualClock()
        >>> gw = Gateway(clock)
        >>> gw.store_messages("g", [{"text": "hello"}])
        >>> len(gw.conversation("g"))
        1
        >>> clock.advance(MESSAGE_RETENTION_S + 1)
        >>> gw.conversation("g")
        []
        """
        guid = canonical_guid(guid)
        self._expire(guid, self.clock.now())
        return list(self.messages.get(guid, ()))

    def _expire(self, guid: str, now: float) -> None:
        batches = self._batches.get(guid)
        if not batches:
            return
        cutoff = now - MESSAGE_RETENTION_S
        gone = 0
        while batches and batches[0][0] < cutoff:
            gone += batches.popleft()[1]
        if gone:
            del self.messages[guid][:gone]
        if not batches:
            del self._batches[guid]
            self.messages.pop(guid, None)


def _check_retention(keep_audio_of: int, keep_calls: int) -> None:
    for name, value in (("keep_audio_of", keep_audio_of), ("keep_calls", keep_calls)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if keep_audio_of < 0:
        raise ConfigError(f"keep_audio_of must be >= 0, got {keep_audio_of}")
    if keep_calls < 1:
        raise ConfigError(f"keep_calls must be >= 1, got {keep_calls}")
    if keep_calls < keep_audio_of:
        raise ConfigError(
            f"keep_calls ({keep_calls}) must be >= keep_audio_of ({keep_audio_of}): only "
            "kept calls can keep their audio"
        )
