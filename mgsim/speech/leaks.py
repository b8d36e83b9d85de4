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

* ``inferable_by_field``: per delivered field, which of its words were masked but whose
  mask gives the digit away (one ``#`` per character: ``##`` can only be ``oh``; see
  :mod:`mgsim.speech.inference`).

Every span gets one of three **verdicts** (:data:`VERDICTS`), decided here and only here,
which the CLI, ``--json`` and the lab all render:

``never_transcribed``
    no word of the span reached a transcript (it may have been streamed and not
    understood, or never streamed at all);
``redacted``
    some of its words were transcribed, and no delivered field shows any of them or lets
    one be inferred from its mask (this includes words whose webhook was never delivered);
``visible``
    a delivered field shows at least one of its words, or a mask reveals one
    (:attr:`SpanLeak.inferable`): the span *leaks*.

A run is ``"leak"`` when any span is visible, otherwise ``"safe"``
(:attr:`LeakReport.verdict`). Spans are named by what they are (:func:`span_name`: "card
number", "expiry date", "CVV", "SSN", "phone number"...). :meth:`LeakReport.summary` adds up
one run (one PCI plan, one policy): ``pci_words_transcribed``, ``pci_ms_streamed``,
``pci_ms_transcribed``, ``pci_words_visible``, ``pci_words_inferable``, ``spans_leaked``,
``verdicts`` (spans per verdict) and ``verdict``.

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
>>> report.spans[0].verdict, report.verdict, report.spans[0].describe()
('redacted', 'safe', 'transcribed (1 of 1 words) and redacted in text')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError
from mgsim.speech.engine import ROLES, SAMPLES_PER_MS, SpokenWord, Utterance
from mgsim.speech.inference import reveals

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FIELDS",
    "NEVER_TRANSCRIBED",
    "REDACTED",
    "VERDICTS",
    "VERDICT_TEXT",
    "VISIBLE",
    "CallScript",
    "LeakReport",
    "Script",
    "Sensitive",
    "SensitiveLike",
    "SpanLeak",
    "analyze_leaks",
    "span_name",
    "to_dataframe",
]

FIELDS = ("text", "unredactedText", "tokens")
"""The delivered fields that can show a word."""

BoolArray = npt.NDArray[np.bool_]

NEVER_TRANSCRIBED = "never_transcribed"
REDACTED = "redacted"
VISIBLE = "visible"
VERDICTS = (NEVER_TRANSCRIBED, REDACTED, VISIBLE)
"""A span's verdicts, from safest to worst."""
VERDICT_TEXT = {
    NEVER_TRANSCRIBED: "never transcribed",
    REDACTED: "transcribed but redacted",
    VISIBLE: "VISIBLE",
}
"""How each verdict reads in tables and the CLI."""

_SPAN_NAMES = {
    "card_number": "card number",
    "card": "card number",
    "expiry": "expiry date",
    "expiration": "expiry date",
    "cvv": "CVV",
    "cvc": "CVC",
    "pin": "PIN",
    "ssn": "SSN",
    "phone": "phone number",
    "account_number": "account number",
    "routing_number": "routing number",
    "dob": "date of birth",
}


def span_name(label: str) -> str:
    """What a span labelled ``label`` is, in words.

    >>> span_name("card_number"), span_name("cvv"), span_name("member_id")
    ('card number', 'CVV', 'member id')
    """
    return _SPAN_NAMES.get(label.lower(), label.replace("_", " "))


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
    inferable_by_field: Mapping[str, tuple[bool, ...]] = field(default_factory=dict)

    @staticmethod
    def _any(by_field: Mapping[str, tuple[bool, ...]], n: int) -> tuple[bool, ...]:
        out = [False] * n
        for flags in by_field.values():
            out = [a or b for a, b in zip(out, flags, strict=True)]
        return tuple(out)

    @property
    def name(self) -> str:
        """What the span is, in words (:func:`span_name`)."""
        return span_name(self.label)

    @property
    def visible(self) -> tuple[bool, ...]:
        """Per word: shown by at least one delivered field."""
        return self._any(self.visible_by_field, len(self.words))

    @property
    def inferable_words(self) -> tuple[bool, ...]:
        """Per word: masked, but the mask gives its digits away in some delivered field."""
        return self._any(self.inferable_by_field, len(self.words))

    @property
    def words_inferable(self) -> int:
        return sum(i and not v for i, v in zip(self.inferable_words, self.visible, strict=True))

    @property
    def inferable(self) -> bool:
        """True when no field shows a word but some mask reveals one."""
        return not any(self.visible) and any(self.inferable_words)

    @property
    def verdict(self) -> str:
        """``never_transcribed``, ``redacted`` or ``visible`` (see the module docstring)."""
        if any(self.visible) or any(self.inferable_words):
            return VISIBLE
        return REDACTED if any(self.transcribed) else NEVER_TRANSCRIBED

    def describe(self) -> str:
        """The verdict with its reason, in one line (no word of the span is quoted)."""
        n = len(self.words)
        if self.verdict == NEVER_TRANSCRIBED:
            if self.streamed_ms <= 0:
                return "never transcribed (none of its audio was streamed)"
            return f"never transcribed ({self.streamed_ms:.0f} ms of its audio streamed)"
        done = f"{self.words_transcribed} of {n} words"
        if self.verdict == REDACTED:
            fields = sorted(self.visible_by_field)
            if not fields:
                return f"transcribed ({done}) and never delivered"
            return f"transcribed ({done}) and redacted in {', '.join(fields)}"
        shown = [f for f, flags in sorted(self.visible_by_field.items()) if any(flags)]
        if shown:
            return f"VISIBLE: {self.words_visible} of {n} words shown in {', '.join(shown)}"
        where = [f for f, flags in sorted(self.inferable_by_field.items()) if any(flags)]
        return (
            f"VISIBLE (inferable): masked in {', '.join(where)}, but {self.words_inferable} "
            f"of its {n} words can be read off their masks"
        )

    @property
    def words_transcribed(self) -> int:
        return sum(self.transcribed)

    @property
    def words_visible(self) -> int:
        return sum(self.visible)

    @property
    def leaked(self) -> bool:
        """True when the verdict is ``visible`` (shown, or inferable from its masks)."""
        return self.verdict == VISIBLE

    def to_json(self) -> dict[str, Any]:
        """The span's verdict as plain JSON (``mgsim call --json``); quotes no word."""
        return {
            "label": self.label,
            "name": self.name,
            "role": self.role,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "verdict": self.verdict,
            "reason": self.describe(),
            "words": len(self.words),
            "streamed_ms": self.streamed_ms,
            "words_transcribed": self.words_transcribed,
            "words_visible": self.words_visible,
            "words_inferable": self.words_inferable,
            "visible_in": [f for f, flags in sorted(self.visible_by_field.items()) if any(flags)],
            "inferable_in": sorted(self.inferable_by_field),
        }

    def to_record(self) -> dict[str, Any]:
        """A flat dict (one table row)."""
        return {
            "label": self.label,
            "name": self.name,
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
            "words_inferable": self.words_inferable,
            "leaked": self.leaked,
            "verdict": self.verdict,
        }


@dataclass(frozen=True, slots=True)
class LeakReport:
    """Every span of one run, labelled ``plan``."""

    plan: str
    spans: tuple[SpanLeak, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def leaked(self) -> bool:
        """True when any span's verdict is ``visible``."""
        return any(s.leaked for s in self.spans)

    @property
    def verdict(self) -> str:
        """``"leak"`` when any span is visible, else ``"safe"``."""
        return "leak" if self.leaked else "safe"

    @property
    def worst(self) -> str | None:
        """The worst span verdict (None for a call without sensitive spans)."""
        found = {s.verdict for s in self.spans}
        return next((v for v in reversed(VERDICTS) if v in found), None)

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
            "pci_words_inferable": sum(s.words_inferable for s in spans),
            "spans_leaked": sum(1 for s in spans if s.leaked),
            "spans_inferable": sum(1 for s in spans if s.inferable),
            "leaked_labels": [s.label for s in spans if s.leaked],
            "verdicts": {v: sum(1 for s in spans if s.verdict == v) for v in VERDICTS},
            "verdict": self.verdict,
        }

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per span, with the plan."""
        return [{"plan": self.plan, **self.extra, **s.to_record()} for s in self.spans]


def _shown(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def _delivered_visibility(
    utterances: Sequence[Utterance], webhooks: Iterable[Mapping[str, Any]]
) -> tuple[dict[int, dict[str, bool]], dict[int, dict[str, bool]]]:
    """Script word index -> field -> shown, for every delivered word; and the same for
    masked words whose mask gives their digits away."""
    by_key = {(u.role, round(u.start_ms), round(u.end_ms)): u for u in utterances}
    seen: dict[int, dict[str, bool]] = {}
    inferred: dict[int, dict[str, bool]] = {}
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
                aligned = len(shown) == len(utt.words)
                if not aligned:
                    # Not word-aligned: judge each word by whether its text shows up at all.
                    text = str(item[name])
                    shown = [w.text in text for w in utt.words]
                for word, flag in zip(utt.words, shown, strict=True):
                    for index in word.script_indexes:
                        slot = seen.setdefault(index, {})
                        slot[name] = slot.get(name, False) or flag
                        # A mask keeps the word's length, which can pin down a spoken digit.
                        guess = aligned and not flag and name != "tokens" and reveals(word.text)
                        hint = inferred.setdefault(index, {})
                        hint[name] = hint.get(name, False) or guess
    return seen, inferred


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
    transcribed = {i for u in utterances for w in u.words for i in w.script_indexes}
    visibility, inferred = _delivered_visibility(utterances, webhooks)
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
        guessed = {f: tuple(inferred.get(i, {}).get(f, False) for i in idx) for f in fields_used}
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
                inferable_by_field={f: g for f, g in guessed.items() if any(g)},
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
