"""Leak analysis: what of a call's sensitive spans was streamed, transcribed and delivered.

Given a call's script (its words and labelled sensitive spans), what the gateway streamed
(one bool mask per participant on the call's timeline), the utterances the engine produced
and the webhook bodies actually delivered, :func:`analyze_leaks` answers per span:

* ``streamed_ms``: milliseconds of the span's word audio that reached the gateway while
  streaming was on (the audio an ASR engine got to hear; pauses between the words do not
  count);
* ``transcribed``: which of its words the engine put into an utterance, and
  ``transcribed_ms``, the script duration of those words;
* ``visible``: per delivered field (``text``, ``unredactedText``, ``tokens``), which of its
  words a reader of that field can see: a delivered word is hidden when it has no letter
  or digit left (masks are never alphanumeric), and ``tokens`` always show the word. A
  word counts as *visible* when any delivered field shows it, so an integrator who asked
  for ``redacted_and_unredacted`` receives the card number in ``unredactedText``;
  ``visible_by_field`` keeps the fields apart. Words of an utterance whose webhook was not
  delivered (dropped, or never rendered) are transcribed but visible nowhere.

A span *leaks* when at least one of its words is visible. :meth:`LeakReport.summary` adds
up one run (one PCI plan, one policy): ``pci_words_transcribed``, ``pci_ms_streamed``,
``pci_ms_transcribed``, ``pci_words_visible``, ``spans_leaked``.

>>> import numpy as np
>>> from mgsim.speech.engine import ScriptEngine, Word
>>> from mgsim.speech.transcripts import SegmentContext, webhook_body
>>> words = [Word("customer", t, 300 * i, 300 * i + 250) for i, t in enumerate("PIN 1234".split())]
>>> call = Script(words, [Sensitive("pin", "customer", 300, 550, (1,))])
>>> on = {"customer": np.ones(8000, bool), "agent": np.zeros(8000, bool)}
>>> utts = ScriptEngine(words).transcribe("customer", np.zeros(8000, np.int16), on["customer"])
>>> ctx = SegmentContext("g", {"customer": "s", "agent": "t"}, {"customer": "c", "agent": "a"})
>>> report = analyze_leaks(call, utts, streamed=on, webhooks=[webhook_body(u, ctx) for u in utts])
>>> s = report.summary()
>>> s["pci_words_transcribed"], s["pci_words_visible"], s["spans_leaked"]
(1, 0, 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError
from mgsim.speech.engine import ROLES, SAMPLES_PER_MS, SpokenWord, Utterance

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FIELDS",
    "CallScript",
    "LeakReport",
    "Script",
    "Sensitive",
    "SensitiveLike",
    "SpanLeak",
    "analyze_leaks",
    "to_dataframe",
]

FIELDS = ("text", "unredactedText", "tokens")
"""The delivered fields that can show a word."""

BoolArray = npt.NDArray[np.bool_]


class SensitiveLike(Protocol):
    """A labelled sensitive span (``mgsim.sim.call.SensitiveSpan`` fits)."""

    @property
    def label(self) -> str: ...
    @property
    def speaker(self) -> str: ...
    @property
    def start_ms(self) -> float: ...
    @property
    def end_ms(self) -> float: ...
    @property
    def word_indexes(self) -> tuple[int, ...]: ...


class CallScript(Protocol):
    """What the analysis needs of a call (``mgsim.sim.call.Call`` fits)."""

    @property
    def words(self) -> Sequence[SpokenWord]: ...
    @property
    def sensitive(self) -> Sequence[SensitiveLike]: ...


@dataclass(frozen=True, slots=True)
class Sensitive:
    """A sensitive span for scripts built by hand (tests, notebooks)."""

    label: str
    speaker: str
    start_ms: float
    end_ms: float
    word_indexes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Script:
    """A call's words and sensitive spans without audio."""

    words: Sequence[SpokenWord]
    sensitive: Sequence[SensitiveLike] = ()


@dataclass(frozen=True, slots=True)
class SpanLeak:
    """The fate of one sensitive span; tuples run over its words in order."""

    label: str
    role: str
    start_ms: float
    end_ms: float
    word_indexes: tuple[int, ...]
    words: tuple[str, ...]
    audio_ms: float
    streamed_ms: float
    transcribed: tuple[bool, ...]
    transcribed_ms: float
    visible_by_field: Mapping[str, tuple[bool, ...]]

    @property
    def visible(self) -> tuple[bool, ...]:
        """Per word: shown by at least one delivered field."""
        out = [False] * len(self.words)
        for flags in self.visible_by_field.values():
            out = [a or b for a, b in zip(out, flags, strict=True)]
        return tuple(out)

    @property
    def words_transcribed(self) -> int:
        return sum(self.transcribed)

    @property
    def words_visible(self) -> int:
        return sum(self.visible)

    @property
    def leaked(self) -> bool:
        return any(self.visible)

    def to_record(self) -> dict[str, Any]:
        """A flat dict (one table row)."""
        return {
            "label": self.label,
            "role": self.role,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "words": len(self.words),
            "audio_ms": self.audio_ms,
            "streamed_ms": self.streamed_ms,
            "words_transcribed": self.words_transcribed,
            "transcribed_ms": self.transcribed_ms,
            "words_visible": self.words_visible,
            **{f"visible_{f}": sum(self.visible_by_field.get(f, ())) for f in FIELDS},
            "leaked": self.leaked,
        }


@dataclass(frozen=True, slots=True)
class LeakReport:
    """Every span of one run, labelled ``plan``."""

    plan: str
    spans: tuple[SpanLeak, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Totals over the spans (``extra`` is merged in, e.g. the policy's name)."""
        spans = self.spans
        return {
            "plan": self.plan,
            **self.extra,
            "spans": len(spans),
            "pci_words": sum(len(s.words) for s in spans),
            "pci_ms": sum(s.audio_ms for s in spans),
            "pci_ms_streamed": sum(s.streamed_ms for s in spans),
            "pci_words_transcribed": sum(s.words_transcribed for s in spans),
            "pci_ms_transcribed": sum(s.transcribed_ms for s in spans),
            "pci_words_visible": sum(s.words_visible for s in spans),
            **{
                f"pci_words_visible_{f}": sum(sum(s.visible_by_field.get(f, ())) for s in spans)
                for f in FIELDS
            },
            "spans_transcribed": sum(1 for s in spans if s.words_transcribed),
            "spans_leaked": sum(1 for s in spans if s.leaked),
            "leaked_labels": [s.label for s in spans if s.leaked],
        }

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per span, with the plan."""
        return [{"plan": self.plan, **self.extra, **s.to_record()} for s in self.spans]


def _shown(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def _delivered_visibility(
    utterances: Sequence[Utterance], webhooks: Iterable[Mapping[str, Any]]
) -> dict[int, dict[str, bool]]:
    """Script word index -> field -> shown, for every delivered word."""
    by_key = {(u.role, round(u.start_ms), round(u.end_ms)): u for u in utterances}
    seen: dict[int, dict[str, bool]] = {}
    for body in webhooks:
        response = body["autotranscribeResponse"]
        utt = by_key.get((body["sender"]["role"], response["start"], response["end"]))
        if utt is None:
            continue
        for item in response["utterance"]:
            for name in FIELDS:
                if name not in item:
                    continue
                if name == "tokens":
                    shown = [_shown(t["content"]) for t in item["tokens"]]
                else:
                    shown = [_shown(t) for t in item[name].split(" ")]
                if len(shown) != len(utt.words):
                    # Not word-aligned: judge each word by whether its text shows up at all.
                    text = str(item[name])
                    shown = [w.text in text for w in utt.words]
                for word, flag in zip(utt.words, shown, strict=True):
                    if word.index is None:
                        continue
                    slot = seen.setdefault(word.index, {})
                    slot[name] = slot.get(name, False) or flag
    return seen


def analyze_leaks(
    call: CallScript,
    utterances: Sequence[Utterance],
    *,
    streamed: Mapping[str, BoolArray],
    webhooks: Iterable[Mapping[str, Any]],
    plan: str = "",
    extra: Mapping[str, Any] | None = None,
) -> LeakReport:
    """Follow every sensitive span of ``call`` through streaming, transcription and delivery.

    ``streamed`` maps each role to its mask on the call's timeline (sample 0 at 0 ms; OR the
    masks of several segments together). ``utterances`` must carry script word indexes (as
    :class:`~mgsim.speech.engine.ScriptEngine` sets them); ``webhooks`` are the bodies
    delivered, matched to utterances by role, start and end.
    """
    for role in ROLES:
        mask = streamed.get(role)
        if mask is None or mask.ndim != 1 or mask.dtype != np.bool_:
            raise ConfigError(f"streamed needs a 1-D bool mask for {role!r}")
    transcribed = {w.index for u in utterances for w in u.words if w.index is not None}
    visibility = _delivered_visibility(utterances, webhooks)
    spans: list[SpanLeak] = []
    for span in call.sensitive:
        if span.speaker not in streamed:
            raise ConfigError(f"span {span.label!r} has an unknown speaker {span.speaker!r}")
        mask = streamed[span.speaker]
        n = len(mask)
        idx = tuple(span.word_indexes)
        words = [call.words[i] for i in idx]
        streamed_samples = 0
        for w in words:  # a few words per span: counting their samples beats a running sum
            a = min(max(round(w.start_ms * SAMPLES_PER_MS), 0), n)
            b = min(max(round(w.end_ms * SAMPLES_PER_MS), a), n)
            streamed_samples += int(np.count_nonzero(mask[a:b]))
        done = tuple(i in transcribed for i in idx)
        fields_used = sorted({f for i in idx for f in visibility.get(i, {})})
        by_field = {f: tuple(visibility.get(i, {}).get(f, False) for i in idx) for f in fields_used}
        spans.append(
            SpanLeak(
                label=span.label,
                role=span.speaker,
                start_ms=span.start_ms,
                end_ms=span.end_ms,
                word_indexes=idx,
                words=tuple(w.text for w in words),
                audio_ms=sum(w.end_ms - w.start_ms for w in words),
                streamed_ms=streamed_samples / SAMPLES_PER_MS,
                transcribed=done,
                transcribed_ms=sum(
                    w.end_ms - w.start_ms for w, t in zip(words, done, strict=True) if t
                ),
                visible_by_field=by_field,
            )
        )
    return LeakReport(plan, tuple(spans), dict(extra or {}))


def to_dataframe(rows: Iterable[Mapping[str, Any]] | LeakReport) -> pd.DataFrame:
    """A pandas table of summaries or span records (pandas is imported only here).

    Pass a report for its span records, or summaries of several runs to compare plans.
    """
    import pandas as pd

    if isinstance(rows, LeakReport):
        rows = rows.records()
    return pd.DataFrame(list(rows))
