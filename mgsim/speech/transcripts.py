"""Utterances as the vendor delivers them: webhook bodies and conversation messages.

One segment (a start…stop window) of one call turns into, per utterance:

* a **webhook body**, POSTed to the integrator as soon as the utterance is final::

    {"type": "transcript", "externalConversationId": "<guid>", "streamId": "<streamId>",
     "sender": {"externalId": "<customerId or agentId>", "role": "customer"},
     "autotranscribeResponse": {"message": "transcript", "start": 20730, "end": 26560,
                                "utterance": [{"text": "it's #### #### ..."}]}}

* a **conversation message**, served later by ``GET /conversation/v1/conversation/messages``::

    {"text": "...", "sender": {"role": "customer", "externalId": "<customerId>"},
     "messageId": "<uuid>", "createdTimestamp": "2026-01-05T09:00:26.860Z",
     "clientTimestamp": "2026-01-05T09:00:20.730Z"}

Decisions where the vendor documentation is silent:

* ``start``/``end`` are integer milliseconds, absolute on the call's timeline (from the start
  of the media session, see :mod:`mgsim.speech.engine`).
* ``redactionOutput`` shapes the ``utterance`` item exactly as
  :func:`mgsim.speech.redact.apply_output_mode` documents: ``text`` redacted (or original for
  ``unredacted``), plus ``unredactedText`` for ``redacted_and_unredacted``. Each participant
  is redacted with its own policy; a participant whose policy has no rule gets its words
  unchanged (the start request is only rejected when *neither* has a rule).
* With ``detailedToken`` (only allowed with ``unredacted``) the item also carries
  ``tokens``: one per word, ``{"content", "start", "end"}`` in ms, plus
  ``punctuationBefore``/``punctuationAfter`` when the word carries punctuation (the core
  goes in ``content``, as :func:`mgsim.speech.numbers.split_punctuation` cuts it).
* A participant's utterances are redacted **in context**: what they said in their
  previous utterances (up to 32 words, unless they were silent for 10 s) counts as the
  words before this one, so a card number read in two breaths around the agent's
  "mm-hmm", or an expiry whose keyword came in the breath before, is recognised
  (:class:`RedactionHistory`, :func:`mgsim.speech.redact.find_sensitive`). Only the words of
  the utterance being delivered are masked: what was delivered stays as it was.
* A message's ``text`` is what the webhook's ``text`` says: for ``redacted_and_unredacted``
  the **redacted** text, so that the stored history (kept 7 days) never holds what
  redaction masked; the unredacted version is only ever in the real-time webhook.
* ``clientTimestamp`` is when the utterance began (``wall_base`` + ``start_ms``),
  ``createdTimestamp`` when its transcript was produced (``wall_base`` + ``end_ms`` +
  ``latency_ms``); ``wall_base`` is the wall-clock time of the call's first sample. Both are
  ISO-8601 UTC with milliseconds and a ``Z``.
* Webhooks are due ``latency_ms`` (300 ms, within the vendor's 200–600 ms) after the
  utterance ends, in order of that time; messages are stored in the same order. The
  summary's ``transcripts`` for a participant counts its utterances in the segment.

>>> from mgsim.speech.engine import TimedWord, Utterance
>>> words = (TimedWord("PIN", 400, 700), TimedWord("1234", 800, 1400))
>>> utt = Utterance("customer", 400, 1400, words)
>>> both = ("customer", "agent")
>>> ctx = SegmentContext("CA1", dict(zip(both, ["s-c", "s-a"])), dict(zip(both, ["c1", "a1"])))
>>> webhook_body(utt, ctx)["autotranscribeResponse"]["utterance"]
[{'text': 'PIN ####'}]
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mgsim.errors import ConfigError
from mgsim.speech.engine import ROLES, Utterance
from mgsim.speech.numbers import split_punctuation
from mgsim.speech.redact import (
    OUTPUT_MODES,
    OutputMode,
    ParticipantPolicies,
    RedactionPolicy,
    apply_output_mode,
)

__all__ = [
    "DEFAULT_LATENCY_MS",
    "WEBHOOK_SCHEMA",
    "RedactionHistory",
    "SegmentContext",
    "SegmentTranscripts",
    "Transcript",
    "iso_timestamp",
    "message_item",
    "render_segment",
    "tokens",
    "utterance_item",
    "webhook_body",
]

DEFAULT_LATENCY_MS = 300.0
"""Delay from an utterance's end to its webhook (the vendor quotes 200–600 ms)."""

_MS = {"type": "integer", "minimum": 0}
_TOKEN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["content", "start", "end"],
    "properties": {
        "content": {"type": "string", "minLength": 1},
        "start": _MS,
        "end": _MS,
        "punctuationBefore": {"type": "string", "minLength": 1},
        "punctuationAfter": {"type": "string", "minLength": 1},
    },
}
WEBHOOK_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "AutoTranscribe transcript webhook",
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "externalConversationId", "streamId", "sender", "autotranscribeResponse"],
    "properties": {
        "type": {"const": "transcript"},
        "externalConversationId": {"type": "string", "minLength": 1},
        "streamId": {"type": "string", "minLength": 1},
        "sender": {
            "type": "object",
            "additionalProperties": False,
            "required": ["externalId", "role"],
            "properties": {
                "externalId": {"type": "string"},
                "role": {"enum": list(ROLES)},
            },
        },
        "autotranscribeResponse": {
            "type": "object",
            "additionalProperties": False,
            "required": ["message", "start", "end", "utterance"],
            "properties": {
                "message": {"const": "transcript"},
                "start": _MS,
                "end": _MS,
                "utterance": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["text"],
                        "properties": {
                            "text": {"type": "string"},
                            "unredactedText": {"type": "string"},
                            "tokens": {"type": "array", "items": _TOKEN},
                        },
                    },
                },
            },
        },
    },
}
"""JSON Schema (2020-12) of one webhook body as mgsim sends it."""


@dataclass(frozen=True, slots=True)
class SegmentContext:
    """What the gateway knows about a segment that shapes its transcripts.

    ``stream_ids`` and ``external_ids`` map each role to its streamId (from the start
    response) and to ``customerId``/``agentId`` (from the start request).
    """

    guid: str
    stream_ids: Mapping[str, str]
    external_ids: Mapping[str, str]
    redaction_output: OutputMode = "redacted"
    detailed_token: bool = False
    policies: ParticipantPolicies = field(default_factory=ParticipantPolicies)

    def __post_init__(self) -> None:
        if self.redaction_output not in OUTPUT_MODES:
            raise ConfigError(f"redactionOutput must be one of {OUTPUT_MODES}")
        if self.detailed_token and self.redaction_output != "unredacted":
            raise ConfigError("detailedToken=true is only allowed with redactionOutput=unredacted")
        for name, mapping in (("stream_ids", self.stream_ids), ("external_ids", self.external_ids)):
            missing = [r for r in ROLES if r not in mapping]
            if missing:
                raise ConfigError(f"{name} lacks {', '.join(missing)}")


def tokens(utterance: Utterance) -> list[dict[str, Any]]:
    """The ``detailedToken`` tokens of an utterance, one per word.

    >>> from mgsim.speech.engine import TimedWord, Utterance
    >>> words = (TimedWord("Hi,", 0, 200), TimedWord("(Sam)", 250, 500))
    >>> for token in tokens(Utterance("agent", 0, 500, words)):
    ...     print(token)
    {'content': 'Hi', 'start': 0, 'end': 200, 'punctuationAfter': ','}
    {'content': 'Sam', 'start': 250, 'end': 500, 'punctuationBefore': '(', 'punctuationAfter': ')'}
    """
    out: list[dict[str, Any]] = []
    for word in utterance.words:
        before, core, after = split_punctuation(word.text)
        token: dict[str, Any] = {
            "content": core or word.text,
            "start": round(word.start_ms),
            "end": round(word.end_ms),
        }
        if before and core:
            token["punctuationBefore"] = before
        if after:
            token["punctuationAfter"] = after
        out.append(token)
    return out


class RedactionHistory:
    """What each participant said lately, for redacting their next utterance in context.

    >>> from mgsim.speech.engine import TimedWord, Utterance
    >>> history = RedactionHistory()
    >>> history.add(Utterance("customer", 0, 900, (TimedWord("expiry", 0, 400),)))
    >>> history.context("customer", 1500), history.context("customer", 20_000)
    (('expiry',), ())
    """

    WORDS = 32
    GAP_MS = 10_000.0

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, tuple[str, ...]]] = {}

    def context(self, role: str, start_ms: float) -> tuple[str, ...]:
        """The words ``role`` said before ``start_ms`` that still count."""
        last = self._last.get(role)
        if last is None or start_ms - last[0] > self.GAP_MS:
            return ()
        return last[1]

    def add(self, utterance: Utterance) -> None:
        words = self.context(utterance.role, utterance.start_ms) + utterance.texts
        self._last[utterance.role] = (utterance.end_ms, words[-self.WORDS :])


def utterance_item(
    utterance: Utterance,
    mode: OutputMode,
    policy: RedactionPolicy,
    *,
    detailed_token: bool = False,
    context: Sequence[str] = (),
) -> dict[str, Any]:
    """The webhook's ``utterance`` item under ``redactionOutput=mode`` and ``policy``;
    ``context`` is the participant's words before it (:class:`RedactionHistory`)."""
    if detailed_token and mode != "unredacted":
        raise ConfigError("detailedToken=true is only allowed with redactionOutput=unredacted")
    words = utterance.texts
    item: dict[str, Any]
    if mode != "unredacted" and not policy.enabled:
        # Nothing to mask for this participant: the redacted text is the original.
        original = " ".join(words)
        item = {"text": original}
        if mode == "redacted_and_unredacted":
            item["unredactedText"] = original
    else:
        item = dict(apply_output_mode(words, mode, policy, context=context))
    if detailed_token:
        item["tokens"] = tokens(utterance)
    return item


def webhook_body(
    utterance: Utterance, ctx: SegmentContext, *, context: Sequence[str] = ()
) -> dict[str, Any]:
    """The webhook body for one utterance of the segment described by ``ctx``."""
    role = utterance.role
    return {
        "type": "transcript",
        "externalConversationId": ctx.guid,
        "streamId": ctx.stream_ids[role],
        "sender": {"externalId": ctx.external_ids[role], "role": role},
        "autotranscribeResponse": {
            "message": "transcript",
            "start": round(utterance.start_ms),
            "end": round(utterance.end_ms),
            "utterance": [
                utterance_item(
                    utterance,
                    ctx.redaction_output,
                    ctx.policies.for_role(role),
                    detailed_token=ctx.detailed_token,
                    context=context,
                )
            ],
        },
    }


def iso_timestamp(base: datetime, ms: float) -> str:
    """``base`` + ``ms`` as ISO-8601 UTC with milliseconds.

    >>> from datetime import UTC, datetime
    >>> iso_timestamp(datetime(2026, 1, 5, 9, tzinfo=UTC), 20730)
    '2026-01-05T09:00:20.730Z'
    """
    if base.tzinfo is None:
        raise ConfigError("the wall-clock base must be timezone-aware")
    moment = (base + timedelta(milliseconds=round(ms))).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def message_item(
    utterance: Utterance,
    ctx: SegmentContext,
    *,
    text: str,
    message_id: str,
    wall_base: datetime,
    latency_ms: float = DEFAULT_LATENCY_MS,
) -> dict[str, Any]:
    """One conversation message (``ConversationMessage`` in the contract)."""
    role = utterance.role
    return {
        "text": text,
        "sender": {"role": role, "externalId": ctx.external_ids[role]},
        "messageId": message_id,
        "createdTimestamp": iso_timestamp(wall_base, utterance.end_ms + latency_ms),
        "clientTimestamp": iso_timestamp(wall_base, utterance.start_ms),
    }


@dataclass(frozen=True, slots=True)
class Transcript:
    """One utterance as delivered: its webhook body, its stored message, when it is due
    (ms on the call's timeline)."""

    utterance: Utterance
    webhook: dict[str, Any]
    message: dict[str, Any]
    due_ms: float


@dataclass(frozen=True, slots=True)
class SegmentTranscripts:
    """Everything a segment delivers, in delivery order."""

    items: tuple[Transcript, ...]

    @property
    def webhooks(self) -> list[dict[str, Any]]:
        return [t.webhook for t in self.items]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [t.message for t in self.items]

    @property
    def utterances(self) -> list[Utterance]:
        return [t.utterance for t in self.items]

    @property
    def transcripts(self) -> dict[str, int]:
        """Utterances per role: what the stop summary's ``transcripts`` adds up."""
        counts = dict.fromkeys(ROLES, 0)
        for t in self.items:
            counts[t.utterance.role] += 1
        return counts


def _default_id(ctx: SegmentContext) -> Callable[[Utterance], str]:
    def make(utt: Utterance) -> str:
        key = f"mgsim:{ctx.guid}:{ctx.stream_ids[utt.role]}:{utt.start_ms}:{utt.end_ms}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, key))

    return make


def render_segment(
    utterances: Sequence[Utterance],
    ctx: SegmentContext,
    *,
    wall_base: datetime,
    latency_ms: float = DEFAULT_LATENCY_MS,
    new_id: Callable[[], str] | None = None,
    history: RedactionHistory | None = None,
) -> SegmentTranscripts:
    """Turn one segment's utterances (both roles, any order) into what the gateway delivers.

    ``new_id`` makes message ids (the gateway's seeded UUIDs); by default they are UUIDs
    derived from the guid, streamId and times, so runs are reproducible. ``history`` is the
    call's :class:`RedactionHistory` (updated here), so that context carries over from
    earlier segments; by default the segment starts without any.

    >>> from datetime import UTC, datetime
    >>> from mgsim.speech.engine import TimedWord, Utterance
    >>> utt = Utterance("agent", 400, 630, (TimedWord("Thanks", 400, 630),))
    >>> both = ("customer", "agent")
    >>> ctx = SegmentContext("CA1", dict(zip(both, "12")), dict(zip(both, "ca")))
    >>> out = render_segment([utt], ctx, wall_base=datetime(2026, 1, 5, 9, tzinfo=UTC))
    >>> out.transcripts, out.messages[0]["createdTimestamp"], out.items[0].due_ms
    ({'customer': 0, 'agent': 1}, '2026-01-05T09:00:00.930Z', 930.0)
    """
    ids: Callable[[Utterance], str] = (
        _default_id(ctx) if new_id is None else (lambda _utt: new_id())
    )
    items: list[Transcript] = []
    order = sorted(utterances, key=lambda u: (u.end_ms, u.start_ms, u.role))
    for utt in order:
        if not utt.words:
            continue
        history = RedactionHistory() if history is None else history
        body = webhook_body(utt, ctx, context=history.context(utt.role, utt.start_ms))
        history.add(utt)
        text = body["autotranscribeResponse"]["utterance"][0]["text"]
        message = message_item(
            utt, ctx, text=text, message_id=ids(utt), wall_base=wall_base, latency_ms=latency_ms
        )
        items.append(Transcript(utt, body, message, utt.end_ms + latency_ms))
    return SegmentTranscripts(tuple(items))
