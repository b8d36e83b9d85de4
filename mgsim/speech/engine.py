"""Transcription engines: one participant's received audio in, utterances out.

An engine sees what the gateway saw for one participant: the int16 audio at 8 kHz on the
call's timeline and a ``streamed`` mask of the same length, True where the sample reached the
gateway while streaming was on. Only streamed audio may be transcribed.

**Times.** Sample 0 of the arrays sits at ``offset_ms`` on the call's timeline, whose origin
is the start of the media session (the first sample of the call; for the sample calls, 0 ms
of the WAV file). Every ``start_ms``/``end_ms`` an engine returns is absolute on that
timeline, so times keep increasing across start/stop cycles and the webhook's ``start`` and
``end`` read as absolute from stream start, like the vendor's example (``start: 400``).

**The reference engine**, :class:`ScriptEngine`, knows the script (every word's speaker,
text and timing, as in a sample call's sidecar) and emits exactly the words whose audio was
streamed. Decisions:

* A word is transcribed when at least ``min_coverage`` (default 0.5) of its samples are
  streamed; samples outside the arrays count as not streamed. Words are never cut: a word
  is transcribed whole, with its script timing, or not at all. So a start-streaming that
  lands in the first half of a word keeps it, one in its second half drops it; a
  stop-streaming mirrors that; 20 ms holes (one lost packet each) lower a word's coverage
  by their share, and a word survives as long as at least half of it arrived, the way an
  ASR engine bridges short dropouts.
* Kept words of one participant are grouped into utterances, split where

  - the pause between two kept words is at least ``pause_ms`` (700 ms); a word dropped in
    between leaves its time as pause, so stopping streaming for a while ends an utterance,
  - the other participant spoke in between (a turn) or the voice changed (a transfer to a
    second agent on the same channel),
  - the utterance would grow past ``max_utterance_ms`` (15 s), as an endpointer cuts a
    monologue.

  On the sample calls that makes one utterance per turn, 9 to 18 a minute per call.
* Transcribe one start/stop segment at a time (slice the arrays to the segment's samples
  and pass its ``offset_ms``), so an utterance never spans two segments and its streamId.

>>> import numpy as np
>>> words = [Word("customer", "hi", 0, 200), Word("customer", "there", 250, 500)]
>>> engine = ScriptEngine(words)
>>> pcm = np.zeros(4000, np.int16)
>>> [u.text for u in engine.transcribe("customer", pcm, np.ones(4000, bool))]
['hi there']
>>> late = streamed_mask(4000, [(120, 500)])
>>> [u.text for u in engine.transcribe("customer", pcm, late)]
['there']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError

__all__ = [
    "ROLES",
    "SAMPLES_PER_MS",
    "ScriptEngine",
    "SpokenWord",
    "StreamingTranscriber",
    "TimedWord",
    "TranscriptionEngine",
    "Utterance",
    "Word",
    "check_engine_input",
    "punch_holes",
    "streamed_mask",
]

SAMPLES_PER_MS = 8
"""Samples per millisecond at the 8 kHz every platform here carries."""

BoolArray = npt.NDArray[np.bool_]
Int16Array = npt.NDArray[np.int16]
ROLES = ("customer", "agent")
"""The two participants, in the order the vendor lists them."""


class SpokenWord(Protocol):
    """What an engine needs of a script word (``mgsim.sim.call.Word`` fits)."""

    @property
    def speaker(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def start_ms(self) -> float: ...
    @property
    def end_ms(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Word:
    """A script word for engines and tests that have no sidecar at hand."""

    speaker: str
    text: str
    start_ms: float
    end_ms: float
    voice: str | None = None


@dataclass(frozen=True, slots=True)
class TimedWord:
    """A transcribed word: its text, its time on the call's timeline (ms) and, for the
    reference engine, ``index``, its position in the script the engine was given.

    ``covers`` lists further script words whose audio this word also took in: a recognizer
    may write four spoken digits as one word (``4539``), and each of them was transcribed
    (set by :mod:`mgsim.speech.align`)."""

    text: str
    start_ms: float
    end_ms: float
    index: int | None = None
    covers: tuple[int, ...] = ()

    @property
    def script_indexes(self) -> tuple[int, ...]:
        """Every script word this word stands for (``index`` first), or ``()``."""
        return (self.index, *self.covers) if self.index is not None else self.covers


@dataclass(frozen=True, slots=True)
class Utterance:
    """What the vendor sends one webhook for: one participant's words between pauses.

    ``start_ms``/``end_ms`` are the first word's start and the last word's end, absolute on
    the call's timeline.
    """

    role: str
    start_ms: float
    end_ms: float
    words: tuple[TimedWord, ...]

    @property
    def text(self) -> str:
        """The words joined by single spaces (unredacted)."""
        return " ".join(w.text for w in self.words)

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(w.text for w in self.words)


class TranscriptionEngine(Protocol):
    """Turns one participant's received audio into utterances.

    ``pcm`` is int16 at 8 kHz, ``streamed`` a bool mask of the same length; sample 0 is at
    ``offset_ms`` on the call's timeline. Utterances come back in time order with absolute
    times. Engines are pure: same input, same output.
    """

    def transcribe(
        self,
        role: str,
        pcm: Int16Array,
        streamed: BoolArray,
        *,
        offset_ms: float = 0.0,
    ) -> list[Utterance]: ...


def _check_arrays(pcm: Int16Array, streamed: BoolArray) -> None:
    if streamed.ndim != 1 or streamed.dtype != np.bool_:
        raise ConfigError("streamed must be a 1-D bool array")
    if pcm.ndim != 1 or len(pcm) != len(streamed):
        raise ConfigError(
            f"pcm and streamed must be 1-D and equally long, got {len(pcm)} and {len(streamed)}"
        )


def check_engine_input(role: str, pcm: Int16Array, streamed: BoolArray) -> None:
    """Refuse what no recognizer can take: an unknown role, or ``pcm`` that is not 1-D int16
    as long as a 1-D bool ``streamed`` (raises :class:`ConfigError`)."""
    if role not in ROLES:
        raise ConfigError(f"role must be 'customer' or 'agent', got {role!r}")
    if streamed.ndim != 1 or streamed.dtype != np.bool_:
        raise ConfigError("streamed must be a 1-D bool array")
    if pcm.ndim != 1 or pcm.dtype != np.int16 or len(pcm) != len(streamed):
        raise ConfigError(
            "pcm must be 1-D int16 and as long as streamed, "
            f"got {pcm.dtype} of {len(pcm)} and {len(streamed)}"
        )


class ScriptEngine:
    """The reference engine: the known script, cut down to what was actually streamed.

    ``words`` are the whole call's words in any order (both speakers, so turns are known).
    See the module docstring for the rules and their defaults.
    """

    name = "script"

    def __init__(
        self,
        words: Iterable[SpokenWord],
        *,
        min_coverage: float = 0.5,
        pause_ms: float = 700.0,
        max_utterance_ms: float = 15_000.0,
    ) -> None:
        if not 0.0 < min_coverage <= 1.0:
            raise ConfigError(f"min_coverage must be in (0, 1], got {min_coverage}")
        if pause_ms <= 0 or max_utterance_ms <= 0:
            raise ConfigError("pause_ms and max_utterance_ms must be > 0")
        self.min_coverage = min_coverage
        self.pause_ms = float(pause_ms)
        self.max_utterance_ms = float(max_utterance_ms)
        script = list(words)
        for i, word in enumerate(script):
            # Redaction reads word by word: "4111 1111 1111 1111" as one word would pass it.
            if not word.text or any(c.isspace() for c in word.text):
                raise ConfigError(
                    f"word {i} ({word.text!r}) is not one word; give each word its own entry"
                )
        order = sorted(range(len(script)), key=lambda i: (script[i].start_ms, i))
        self._by_role: dict[str, _RoleScript] = {}
        for role in ROLES:
            picked = [i for i in order if script[i].speaker == role]
            # Where each word sits among all words: a gap in positions means a turn.
            pos = {i: p for p, i in enumerate(order)}
            self._by_role[role] = _RoleScript(
                index=np.array(picked, dtype=np.int64),
                text=tuple(script[i].text for i in picked),
                voice=tuple(getattr(script[i], "voice", None) for i in picked),
                start=np.array([script[i].start_ms for i in picked], dtype=np.float64),
                end=np.array([script[i].end_ms for i in picked], dtype=np.float64),
                position=np.array([pos[i] for i in picked], dtype=np.int64),
            )
        longest = max(
            (float((r.end - r.start).max()) for r in self._by_role.values() if len(r.start)),
            default=0.0,
        )
        self.settle_ms = self.pause_ms + longest
        """How long after an utterance's end no later audio can change it any more."""

    def _script(self, role: str) -> _RoleScript:
        script = self._by_role.get(role)
        if script is None:
            raise ConfigError(f"role must be 'customer' or 'agent', got {role!r}")
        return script

    def coverage(
        self, role: str, streamed: BoolArray, *, offset_ms: float = 0.0
    ) -> npt.NDArray[np.float64]:
        """Fraction of each of ``role``'s script words that was streamed (script order)."""
        s = self._script(role)
        if streamed.ndim != 1 or streamed.dtype != np.bool_:
            raise ConfigError("streamed must be a 1-D bool array")
        n = len(streamed)
        origin = offset_ms * SAMPLES_PER_MS
        lo = np.rint(s.start * SAMPLES_PER_MS - origin).astype(np.int64)
        hi = np.rint(s.end * SAMPLES_PER_MS - origin).astype(np.int64)
        if not len(lo):
            return np.zeros(0)
        # Only the stretch the words cover is summed, so short slices stay cheap.
        first = int(np.clip(lo.min(), 0, n))
        last = int(np.clip(hi.max(), first, n))
        cum = np.zeros(last - first + 1, dtype=np.int64)
        np.cumsum(streamed[first:last], out=cum[1:])
        a = np.clip(lo, first, last) - first
        b = np.clip(hi, first, last) - first
        fraction: npt.NDArray[np.float64] = (cum[b] - cum[a]) / np.maximum(hi - lo, 1)
        return fraction

    def transcribe(
        self,
        role: str,
        pcm: Int16Array,
        streamed: BoolArray,
        *,
        offset_ms: float = 0.0,
    ) -> list[Utterance]:
        """Utterances of ``role`` from its streamed audio (see the module docstring)."""
        _check_arrays(pcm, streamed)
        s = self._script(role)
        coverage = self.coverage(role, streamed, offset_ms=offset_ms)
        kept = np.flatnonzero(coverage >= self.min_coverage - 1e-12)
        utterances: list[Utterance] = []
        current: list[int] = []
        for k in kept.tolist():
            if current and self._breaks(s, current[0], current[-1], k):
                utterances.append(self._utterance(role, s, current))
                current = []
            current.append(k)
        if current:
            utterances.append(self._utterance(role, s, current))
        return utterances

    def _breaks(self, s: _RoleScript, first: int, prev: int, k: int) -> bool:
        return bool(
            s.start[k] - s.end[prev] >= self.pause_ms
            or s.position[k] - s.position[prev] != k - prev  # another speaker in between
            or s.voice[k] != s.voice[prev]
            or s.end[k] - s.start[first] > self.max_utterance_ms
        )

    @staticmethod
    def _utterance(role: str, s: _RoleScript, ks: Sequence[int]) -> Utterance:
        words = tuple(
            TimedWord(s.text[k], float(s.start[k]), float(s.end[k]), int(s.index[k])) for k in ks
        )
        return Utterance(role, words[0].start_ms, words[-1].end_ms, words)


@dataclass(frozen=True, slots=True)
class _RoleScript:
    index: npt.NDArray[np.int64]
    text: tuple[str, ...]
    voice: tuple[str | None, ...]
    start: npt.NDArray[np.float64]
    end: npt.NDArray[np.float64]
    position: npt.NDArray[np.int64]


class StreamingTranscriber:
    """Hands out a participant's utterances as soon as no later audio can change them.

    Call :meth:`update` as audio arrives (with everything received so far) and
    :meth:`flush` at stop-streaming; together they return exactly what one
    :meth:`TranscriptionEngine.transcribe` over the finished segment would, each utterance
    once. An utterance is final when the audio has reached ``settle_ms`` past its end
    (for :class:`ScriptEngine`: the pause plus its longest word). Each update transcribes
    only the audio after the last utterance handed out, so polling stays cheap.

    >>> import numpy as np
    >>> engine = ScriptEngine([Word("agent", "hello", 0, 300), Word("agent", "bye", 2000, 2300)])
    >>> live = StreamingTranscriber(engine, "agent")
    >>> pcm, on = np.zeros(24000, np.int16), np.ones(24000, bool)
    >>> [u.text for u in live.update(pcm[:12000], on[:12000])]
    ['hello']
    >>> [u.text for u in live.flush(pcm, on)]
    ['bye']
    """

    def __init__(
        self, engine: TranscriptionEngine, role: str, *, settle_ms: float | None = None
    ) -> None:
        self.engine = engine
        self.role = role
        if settle_ms is None:
            settle_ms = getattr(engine, "settle_ms", None)
            if not isinstance(settle_ms, int | float):
                raise ConfigError("settle_ms is needed for an engine that does not define it")
        self.settle_ms = float(settle_ms)
        self._cursor_ms: float | None = None

    def _run(self, pcm: Int16Array, streamed: BoolArray, offset_ms: float) -> list[Utterance]:
        _check_arrays(pcm, streamed)
        skip = 0
        if self._cursor_ms is not None:
            # Rounding down keeps every sample of the next word; the tail of the last word
            # handed out that comes along is filtered out below.
            skip = int(np.floor((self._cursor_ms - offset_ms) * SAMPLES_PER_MS))
            skip = min(max(skip, 0), len(pcm))
        out = self.engine.transcribe(
            self.role, pcm[skip:], streamed[skip:], offset_ms=offset_ms + skip / SAMPLES_PER_MS
        )
        if self._cursor_ms is not None:
            out = [u for u in out if u.start_ms >= self._cursor_ms]
        return out

    def update(
        self, pcm: Int16Array, streamed: BoolArray, *, offset_ms: float = 0.0
    ) -> list[Utterance]:
        """New final utterances, given all the segment's audio received so far."""
        horizon = offset_ms + len(pcm) / SAMPLES_PER_MS
        out = self._run(pcm, streamed, offset_ms)
        ready = [u for u in out if u.end_ms + self.settle_ms <= horizon]
        if ready:
            self._cursor_ms = ready[-1].end_ms
        return ready

    def flush(
        self, pcm: Int16Array, streamed: BoolArray, *, offset_ms: float = 0.0
    ) -> list[Utterance]:
        """Everything not handed out yet (streaming stopped: nothing more will arrive)."""
        rest = self._run(pcm, streamed, offset_ms)
        if rest:
            self._cursor_ms = rest[-1].end_ms
        return rest


def streamed_mask(
    n_samples: int, windows_ms: Iterable[tuple[float, float]], *, offset_ms: float = 0.0
) -> BoolArray:
    """A mask of ``n_samples`` that is True inside each ``(start_ms, end_ms)`` window.

    >>> streamed_mask(16, [(0.5, 1.0)]).astype(int).tolist()
    [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    """
    mask = np.zeros(n_samples, dtype=np.bool_)
    for start, end in windows_ms:
        a = max(0, round((start - offset_ms) * SAMPLES_PER_MS))
        b = min(n_samples, round((end - offset_ms) * SAMPLES_PER_MS))
        if b > a:
            mask[a:b] = True
    return mask


def punch_holes(
    mask: BoolArray, *, hole_ms: float = 20.0, every_ms: float = 100.0, phase_ms: float = 0.0
) -> BoolArray:
    """A copy of ``mask`` with a ``hole_ms`` gap every ``every_ms`` (periodic packet loss).

    One 20 ms hole every 100 ms is 20 % loss, one lost RTP packet in five.

    >>> punch_holes(np.ones(16, bool), hole_ms=0.25, every_ms=1).astype(int).tolist()
    [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1]
    """
    if hole_ms < 0 or every_ms <= 0 or hole_ms > every_ms:
        raise ConfigError("need 0 <= hole_ms <= every_ms and every_ms > 0")
    out = mask.copy()
    period = every_ms * SAMPLES_PER_MS
    width = round(hole_ms * SAMPLES_PER_MS)
    start = phase_ms * SAMPLES_PER_MS
    while start < len(out):
        a = round(start)
        out[a : a + width] = False
        start += period
    return out
