"""Transcription inside the gateway: what a segment streamed becomes transcripts.

When a streaming segment closes (stop-streaming, or a hang-up while streaming) each
participant's audio that was *streamed in that segment* goes through the call's
transcription engine; the utterances are redacted per the segment's ``redactionOutput``,
counted in the stop summary, stored for ``GET /conversation/v1/conversation/messages`` and
handed to the webhook target.

Where recognition runs: in line by default, so that in-process use and every simulation in
virtual time stay deterministic, each segment transcribed before the next event. A server
on a real clock gives the service an :attr:`GatewayTranscription.executor` (one worker
thread): a recognizer that takes seconds of CPU (Whisper) then runs there, for a stop and
for a hang-up alike, while the event loop serves every other call. Readers of the results
(the conversation API, a scenario's collection, shutdown) wait for what is in flight with
:meth:`GatewayTranscription.settled`.

The engine is per call. Sample calls carry their script, so the reference
:class:`~mgsim.speech.engine.ScriptEngine` emits exactly the words whose audio was streamed
(:meth:`GatewayTranscription.attach`). A call with no engine streams and counts audio but
produces no transcripts.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from mgsim.clock import VirtualClock
from mgsim.gateway.guids import canonical_guid
from mgsim.speech.engine import SAMPLES_PER_MS, ScriptEngine, TranscriptionEngine, Utterance
from mgsim.speech.redact import ParticipantPolicies
from mgsim.speech.transcripts import RedactionHistory, SegmentContext, render_segment

if TYPE_CHECKING:
    from mgsim.gateway.calls import CallState, Gateway, Segment

__all__ = ["GatewayTranscription", "RecognitionJob", "WebhookTarget", "audible"]

FRAME = 160  # 20 ms at 8 kHz

log = logging.getLogger(__name__)


def audible(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    """Per sample: False inside 20 ms frames of pure digital silence (masked or absent
    audio), True elsewhere. Real lines always carry some noise, so only a platform that
    mutes audio produces such frames, and no engine hears words in them."""
    n = len(pcm)
    padded = np.zeros(-(-n // FRAME) * FRAME, dtype=np.int16)
    padded[:n] = pcm
    frames = padded.reshape(-1, FRAME).any(axis=1)
    return np.repeat(frames, FRAME)[:n]


class WebhookTarget(Protocol):
    """Where transcript webhooks go (:class:`mgsim.server.webhooks.WebhookSink` or
    :class:`~mgsim.server.webhooks.WebhookSender`)."""

    async def deliver(self, body: Any) -> Any: ...


@dataclass
class _CallTranscripts:
    engine: TranscriptionEngine
    wall_base: datetime
    utterances: list[Utterance] = field(default_factory=list)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    # Each participant's recent words, so redaction sees a number read across utterances.
    history: RedactionHistory = field(default_factory=RedactionHistory)


@dataclass
class RecognitionJob:
    """One closing segment's audio for its call's engine (:meth:`GatewayTranscription.prepare`).

    :meth:`recognise` touches only the copied audio and the engine, never the gateway, so
    the server runs it in a worker thread: a recognizer that takes seconds of CPU (Whisper)
    then holds up only the stop that waits for it, not every other call.
    """

    call: CallState
    seg: Segment
    state: _CallTranscripts
    pieces: list[tuple[str, npt.NDArray[np.int16], npt.NDArray[np.bool_], float]]

    @property
    def engine(self) -> TranscriptionEngine:
        """The call's engine."""
        return self.state.engine

    def recognise(self) -> list[Utterance]:
        """The engine's utterances for every participant's piece, in order."""
        engine = self.state.engine
        out: list[Utterance] = []
        for role, audio, mask, offset_ms in self.pieces:
            out += engine.transcribe(role, audio, mask, offset_ms=offset_ms)
        return out


class GatewayTranscription:
    """The gateway's transcription service; ``gateway.transcription``."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        policies: ParticipantPolicies | None = None,
        webhooks: WebhookTarget | None = None,
    ) -> None:
        self.gateway = gateway
        self.policies = policies or ParticipantPolicies()
        self.webhooks = webhooks
        self._calls: dict[str, _CallTranscripts] = {}
        # Guids given an engine while no call of theirs was open, oldest first: a script for
        # a call that never comes must not be kept for ever.
        self._waiting: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.executor: Executor | None = None
        """Where recognitions run off the event loop (set by a server on a real clock);
        None: always in line."""
        self._recognising: dict[str, set[asyncio.Task[None]]] = {}

    def attach(self, guid: str, engine: TranscriptionEngine) -> None:
        """Transcribe call ``guid`` with ``engine`` (before or after its media opens).

        At most ``gateway.keep_calls`` engines wait for calls that are not open yet; beyond
        that the one attached longest ago is dropped.
        """
        clock = self.gateway.clock
        guid = canonical_guid(guid)
        call = self.gateway.calls.get(guid)
        opened = call.opened_at if call is not None else clock.now()
        wall_base = clock.wall() - timedelta(seconds=clock.now() - opened)
        self._calls[guid] = _CallTranscripts(engine, wall_base)
        self._waiting.pop(guid, None)
        if call is None:
            self._waiting[guid] = None
            while len(self._waiting) > self.gateway.keep_calls:
                self._calls.pop(self._waiting.popitem(last=False)[0], None)

    def forget(self, guid: str) -> None:
        """Drop what is kept for transcribing ``guid`` (its engine, utterances and webhook
        bodies); the stored conversation messages are not touched."""
        self._calls.pop(guid, None)
        self._waiting.pop(guid, None)

    @property
    def engines(self) -> int:
        """How many guids have transcription state (an engine) kept."""
        return len(self._calls)

    @property
    def waiting(self) -> int:
        """How many of those are engines waiting for a call that is not open yet."""
        return len(self._waiting)

    def utterances(self, guid: str) -> list[Utterance]:
        """Every utterance transcribed for ``guid`` so far (all segments)."""
        state = self._calls.get(guid)
        return list(state.utterances) if state else []

    def webhooks_of(self, guid: str) -> list[dict[str, Any]]:
        """Every webhook body produced for ``guid`` so far."""
        state = self._calls.get(guid)
        return list(state.webhooks) if state else []

    def call_opened(self, call: CallState) -> None:
        """Re-anchor the wall clock of sample 0 when the media session opens."""
        self._waiting.pop(call.guid, None)
        state = self._calls.get(call.guid)
        if state is not None:
            clock = self.gateway.clock
            state.wall_base = clock.wall() - timedelta(seconds=clock.now() - call.opened_at)

    def segment_started(self, call: CallState, seg: Segment) -> None:
        """Nothing to prepare: the segment logs what it streams (``seg.streamed_runs``)."""

    def segment_stopped(self, call: CallState, seg: Segment) -> None:
        """Transcribe what ``seg`` streamed (see :meth:`prepare`): off the loop where
        :meth:`runs_off_loop` says so (wait for it with :meth:`settled`), else here and now."""
        job = self.prepare(call, seg)
        if job is None:
            return
        if self.runs_off_loop(job):
            self.recognise_off_loop(job)
        else:
            self.finish(job, job.recognise())

    def runs_off_loop(self, job: RecognitionJob) -> bool:
        """Whether ``job`` is recognized in :attr:`executor`: there is one, a loop is
        running, its clock is real (a :class:`VirtualClock`, or a
        :class:`~mgsim.clock.LoopClock` in virtual time, would see a thread take no
        simulated time), and the engine is not the reference one, which replays a script
        in microseconds (a thread would only make the answer later)."""
        if self.executor is None or isinstance(job.engine, ScriptEngine):
            return False
        clock = self.gateway.clock
        if isinstance(clock, VirtualClock) or getattr(clock, "virtual", False):
            return False
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def recognise_off_loop(self, job: RecognitionJob, *, report: bool = True) -> asyncio.Task[None]:
        """Recognize ``job`` in :attr:`executor` and finish it on the loop; the task, kept
        until done. A failure is logged when ``report`` (nobody awaits the task)."""
        executor = self.executor
        assert executor is not None
        loop = asyncio.get_running_loop()
        guid = job.call.guid

        async def run() -> None:
            utterances = await loop.run_in_executor(executor, job.recognise)
            self.finish(job, utterances)

        task = loop.create_task(run(), name=f"mgsim recognise {guid}")
        self._recognising.setdefault(guid, set()).add(task)

        def done(task: asyncio.Task[None]) -> None:
            pending = self._recognising.get(guid)
            if pending is not None:
                pending.discard(task)
                if not pending:
                    del self._recognising[guid]
            if report and not task.cancelled() and task.exception() is not None:
                log.error("recognizing call %s failed: %r", guid, task.exception())

        task.add_done_callback(done)
        return task

    @property
    def in_flight(self) -> int:
        """How many recognitions are running or queued off the loop."""
        return sum(len(tasks) for tasks in self._recognising.values())

    async def settled(self, guid: str | None = None) -> None:
        """Return once the recognitions in flight for ``guid`` (every call's, if None) have
        finished; a failed one does not raise here (it was logged)."""
        key = None if guid is None else canonical_guid(guid)
        tasks = [
            task
            for g, pending in self._recognising.items()
            if key is None or g == key
            for task in pending
        ]
        if tasks:
            await asyncio.wait(tasks)

    def prepare(self, call: CallState, seg: Segment) -> RecognitionJob | None:
        """What a closing segment hands the recognizer: each participant's streamed audio
        and mask, copied out of the call, so that :meth:`RecognitionJob.recognise` may run
        anywhere (a worker thread, off the server's event loop) while the call goes on.
        None when there is nothing to transcribe (no engine, or a segment that did not
        start)."""
        state = self._calls.get(call.guid)
        if state is None or not seg.transcribing:
            return None
        pieces: list[tuple[str, npt.NDArray[np.int16], npt.NDArray[np.bool_], float]] = []
        for channel, role in seg.roles.items():
            timeline = call.timelines.get(channel)
            runs = seg.streamed_runs.get(channel)
            if timeline is None or not runs:
                continue
            # Only the stretch this window streamed is read, so a long call's many windows
            # cost what they streamed, not the whole call each. It starts on a 20 ms frame
            # boundary so that audible() sees the frames it would see in the whole call.
            lo = min(r[0] for r in runs) // FRAME * FRAME
            hi = -(-max(r[1] for r in runs) // FRAME) * FRAME
            audio = timeline.audio(lo, hi)  # a copy: the job may outlive this turn
            mask = np.zeros(len(audio), np.bool_)
            for start, end, marks in runs:
                if marks is None:
                    mask[start - lo : end - lo] = True
                else:
                    mask[start - lo : end - lo] |= marks
            mask &= audible(audio)
            pieces.append((str(role), audio, mask, lo / SAMPLES_PER_MS))
        return RecognitionJob(call, seg, state, pieces)

    def finish(self, job: RecognitionJob, utterances: list[Utterance]) -> None:
        """Redact, count, store and send what :meth:`RecognitionJob.recognise` heard."""
        call, seg, state = job.call, job.seg, job.state
        ctx = SegmentContext(
            call.guid,
            {str(role): sid for role, sid in seg.stream_ids.items()},
            {"customer": seg.params.customer_id, "agent": seg.params.agent_id},
            seg.params.redaction_output,  # type: ignore[arg-type]
            seg.params.detailed_token,
            self.policies,
        )
        out = render_segment(
            utterances,
            ctx,
            wall_base=state.wall_base,
            new_id=self.gateway.new_id,
            history=state.history,
        )
        for role_name, n in out.transcripts.items():
            for role in seg.transcripts:
                if role == role_name:
                    seg.transcripts[role] += n
        self.gateway.store_messages(call.guid, out.messages)
        state.utterances += out.utterances
        state.webhooks += out.webhooks
        self._deliver(out.webhooks)

    def _deliver(self, bodies: Sequence[dict[str, Any]]) -> None:
        if self.webhooks is None:
            return
        target = self.webhooks
        nowait = getattr(target, "deliver_nowait", None)
        if nowait is not None:  # the in-process sink keeps bodies synchronously
            for body in bodies:
                nowait(body)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Plain synchronous code (no loop): send the batch now, on a loop of its own, and
            # let the sender close its HTTP client before that loop ends.
            async def send_all() -> None:
                for body in bodies:
                    await target.deliver(body)
                closer = getattr(target, "aclose", None)
                if closer is not None:
                    await closer()

            asyncio.run(send_all())
            return
        for body in bodies:  # a real sender POSTs from tasks the app's loop owns
            task = loop.create_task(target.deliver(body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
