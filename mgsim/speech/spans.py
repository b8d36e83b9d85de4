"""Sensitive spans found in a call's words, by the redactor's own number reader.

``mgsim annotate`` has only recognized words, not labels, so it finds the spans a PCI guard
must stop around the way the gateway's redaction finds what to mask:
:func:`mgsim.speech.redact.find_sensitive` over :mod:`mgsim.speech.numbers`' digit runs (card
numbers by Luhn, SSNs, phone numbers, expiry dates, CVVs, PINs and other 3–4 digit numbers,
as the policy enables them). Each speaker's words are read in time order, split where they
pause for ``max_gap_ms`` or more, as the redactor reads one utterance at a time; a span's
words are its evidence.

A customer's answer is often only digits: the words that name them are the agent's question
("and the expiration date?", "the three-digit security code on the back?"). So each chunk
is read with the other participant's words from the ``other_context_ms`` before it as its
context (:func:`mgsim.speech.redact.find_sensitive`'s ``context``, the redaction policy's "a
participant's context across utterances"). Only their words that are not digits go in: a
keyword the agent said names the customer's number, but digits the agent read out never
join it.

Recall is only as good as recognition: a digit the recognizer missed or heard as a word
("for", "to") is not a digit here, and a card number missing one digit fails Luhn.
``benchmarks/asr.py`` measures how many labelled spans of the sample calls are found.

>>> from mgsim.speech.engine import Word
>>> said = "my card is 4111 1111 1111 1111 thanks".split()
>>> words = [Word("customer", t, 300 * i, 300 * i + 250) for i, t in enumerate(said)]
>>> [(s.entity, s.word_indexes, s.start_ms, s.end_ms) for s in detect_spans(words)]
[('card_number', (3, 4, 5, 6), 900, 2050)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mgsim.speech.engine import ROLES, SpokenWord
from mgsim.speech.numbers import digit_runs
from mgsim.speech.redact import ParticipantPolicies, find_sensitive

__all__ = ["DetectedSpan", "detect_spans"]


@dataclass(frozen=True, slots=True)
class DetectedSpan:
    """A sensitive span found in words: the redactor's ``entity``, who said it, the indexes
    of its words (its evidence) and their times (first start, last end)."""

    entity: str
    speaker: str
    word_indexes: tuple[int, ...]
    start_ms: float
    end_ms: float
    digits: int

    def evidence(self, words: Sequence[SpokenWord]) -> str:
        """The span's words joined by spaces."""
        return " ".join(words[i].text for i in self.word_indexes)


def detect_spans(
    words: Sequence[SpokenWord],
    policies: ParticipantPolicies | None = None,
    *,
    max_gap_ms: float = 3000.0,
    other_context_ms: float = 5000.0,
) -> list[DetectedSpan]:
    """Every sensitive span in ``words`` (both speakers), in time order; ``other_context_ms``
    of the other participant's words before a chunk are its context (0: none)."""
    policies = policies or ParticipantPolicies()
    found: list[DetectedSpan] = []
    for role in ROLES:
        order = sorted(
            (i for i, w in enumerate(words) if w.speaker == role),
            key=lambda i: (words[i].start_ms, i),
        )
        chunks: list[list[int]] = []
        for i in order:
            if chunks and words[i].start_ms - words[chunks[-1][-1]].end_ms < max_gap_ms:
                chunks[-1].append(i)
            else:
                chunks.append([i])
        policy = policies.for_role(role)
        for chunk in chunks:
            context = _other_context(words, role, words[chunk[0]].start_ms, other_context_ms)
            texts = [words[i].text for i in chunk]
            for span in find_sensitive(texts, policy, context=context):
                idx = tuple(chunk[span.start_word : span.end_word])
                found.append(
                    DetectedSpan(
                        span.entity,
                        role,
                        idx,
                        words[idx[0]].start_ms,
                        words[idx[-1]].end_ms,
                        len(span.digits),
                    )
                )
    found.sort(key=lambda s: (s.start_ms, s.speaker))
    return found


def _other_context(
    words: Sequence[SpokenWord], role: str, before_ms: float, window_ms: float
) -> list[str]:
    """The other participant's non-digit words that end in the ``window_ms`` before
    ``before_ms``, oldest first (see the module docstring)."""
    if window_ms <= 0:
        return []
    near = sorted(
        (w for w in words if w.speaker != role and before_ms - window_ms <= w.end_ms <= before_ms),
        key=lambda w: w.start_ms,
    )
    texts = [w.text for w in near]
    digits = {k for run in digit_runs(texts) for k in range(run.start_word, run.end_word)}
    return [t for k, t in enumerate(texts) if k not in digits]
