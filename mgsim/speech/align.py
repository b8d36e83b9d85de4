"""Tie a recognizer's words to a call's words by time, so leak analysis can follow them.

Leak analysis (:mod:`mgsim.speech.leaks`) asks of every sensitive word of a call whether it
was transcribed and whether a delivered field shows it; it knows words by their index in
the call's word list, which the reference engine sets. A recognizer knows no such list, so
:class:`AlignedEngine` gives each recognized word the index of the call word of the same
speaker it overlaps most in time (or none, when it overlaps no call word). A recognized
word that covers the audio of a card digit therefore counts as that digit transcribed,
whatever text the recognizer heard there: the audio reached the engine and was turned
into words, which is what a PCI guard must prevent.

>>> import numpy as np
>>> from mgsim.speech.engine import ScriptEngine, Word
>>> words = [Word("customer", "four", 0, 300), Word("customer", "two", 400, 700)]
>>> heard = [Word("customer", "for", 20, 280), Word("customer", "to", 450, 650)]
>>> engine = AlignedEngine(ScriptEngine(heard), words)
>>> [(w.text, w.index) for u in engine.transcribe("customer", np.zeros(8000, np.int16),
...     np.ones(8000, bool)) for w in u.words]
[('for', 0), ('to', 1)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from mgsim.speech.engine import (
    ROLES,
    SpokenWord,
    TimedWord,
    TranscriptionEngine,
    Utterance,
)

__all__ = ["AlignedEngine", "align_words"]


def align_words(
    words: Iterable[TimedWord], script: list[SpokenWord], role: str
) -> tuple[TimedWord, ...]:
    """``words`` with ``index`` set to the overlapping ``script`` word of ``role`` (most
    overlap wins; ``None`` when none overlaps)."""
    picked = [i for i, w in enumerate(script) if w.speaker == role]
    starts = np.array([script[i].start_ms for i in picked], dtype=np.float64)
    ends = np.array([script[i].end_ms for i in picked], dtype=np.float64)
    durations = np.maximum(ends - starts, 1.0)
    out = []
    for w in words:
        index: int | None = None
        covers: tuple[int, ...] = ()
        if len(picked):
            overlap = np.minimum(ends, w.end_ms) - np.maximum(starts, w.start_ms)
            best = int(np.argmax(overlap))
            if overlap[best] > 0:
                index = picked[best]
                # Script words at least half inside this one were heard as part of it.
                covers = tuple(
                    picked[k]
                    for k in np.flatnonzero(overlap >= durations / 2).tolist()
                    if k != best
                )
        out.append(replace(w, index=index, covers=covers))
    return tuple(out)


class AlignedEngine:
    """Wraps an engine; its utterances' words carry indexes into ``script`` by time."""

    def __init__(self, engine: TranscriptionEngine, script: Iterable[SpokenWord]) -> None:
        self.engine = engine
        self.script = list(script)
        self.name = str(getattr(engine, "name", "engine"))
        settle = getattr(engine, "settle_ms", None)
        if isinstance(settle, int | float):
            self.settle_ms = float(settle)

    def transcribe(
        self,
        role: str,
        pcm: npt.NDArray[np.int16],
        streamed: npt.NDArray[np.bool_],
        *,
        offset_ms: float = 0.0,
    ) -> list[Utterance]:
        utterances = self.engine.transcribe(role, pcm, streamed, offset_ms=offset_ms)
        if role not in ROLES:
            return utterances
        return [replace(u, words=align_words(u.words, self.script, role)) for u in utterances]
