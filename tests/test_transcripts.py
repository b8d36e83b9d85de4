from __future__ import annotations

import doctest
import functools
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import numpy as np
import pytest

from mgsim.contract import validate
from mgsim.errors import ConfigError
from mgsim.sim.call import Call, list_samples, load_sample
from mgsim.speech import transcripts as transcripts_module
from mgsim.speech.engine import ROLES, ScriptEngine, TimedWord, Utterance
from mgsim.speech.redact import OUTPUT_MODES, OutputMode, ParticipantPolicies, RedactionPolicy
from mgsim.speech.transcripts import (
    WEBHOOK_SCHEMA,
    SegmentContext,
    iso_timestamp,
    render_segment,
    tokens,
    utterance_item,
    webhook_body,
)

SAMPLES = [p.stem for p in list_samples()]
BASE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
STREAMS = {
    "customer": "11111111-1111-4111-8111-111111111111",
    "agent": "22222222-2222-4222-8222-222222222222",
}
IDS = {"customer": "cust-7", "agent": "agent-42"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@functools.cache
def sample(name: str) -> Call:
    return load_sample(name)


@functools.cache
def utterances(name: str) -> tuple[Utterance, ...]:
    call = sample(name)
    engine = ScriptEngine(call.words)
    out: list[Utterance] = []
    for role in ROLES:
        pcm = getattr(call.audio, role)
        out += engine.transcribe(role, pcm, np.ones(len(pcm), bool))
    return tuple(out)


def ctx(
    mode: OutputMode = "redacted",
    *,
    detailed: bool = False,
    policies: ParticipantPolicies | None = None,
    guid: str = "CA" + "3f" * 16,
) -> SegmentContext:
    return SegmentContext(guid, STREAMS, IDS, mode, detailed, policies or ParticipantPolicies())


def sensitive_indexes(call: Call) -> set[int]:
    return {i for s in call.sensitive for i in s.word_indexes}


def delivered_words(body: dict[str, Any], field: str) -> list[str]:
    return str(body["autotranscribeResponse"]["utterance"][0][field]).split(" ")


def masked(token: str) -> bool:
    return not any(ch.isalnum() for ch in token)


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("mode", OUTPUT_MODES)
def test_shapes_validate_against_the_schema_and_the_contract(name: str, mode: OutputMode) -> None:
    out = render_segment(utterances(name), ctx(mode), wall_base=BASE)
    assert len(out.items) == len(utterances(name))
    for body in out.webhooks:
        jsonschema.Draft202012Validator(WEBHOOK_SCHEMA).validate(body)
        assert body["streamId"] == STREAMS[body["sender"]["role"]]
        assert body["sender"]["externalId"] == IDS[body["sender"]["role"]]
    for item in out.messages:
        validate("ConversationMessage", item)
        assert ISO.match(item["createdTimestamp"]) and ISO.match(item["clientTimestamp"])
        assert item["createdTimestamp"] > item["clientTimestamp"]
    validate("ConversationMessagesResponse", {"items": out.messages})
    assert len({m["messageId"] for m in out.messages}) == len(out.messages)


@pytest.mark.parametrize("name", [n for n in SAMPLES if sample(n).sensitive])
def test_redacted_masks_every_sensitive_word_and_only_those(name: str) -> None:
    call = sample(name)
    sensitive = sensitive_indexes(call)
    out = render_segment(utterances(name), ctx("redacted"), wall_base=BASE)
    seen = set()
    for t in out.items:
        text = delivered_words(t.webhook, "text")
        assert len(text) == len(t.utterance.words)
        for word, got in zip(t.utterance.words, text, strict=True):
            assert word.index is not None
            if word.index in sensitive:
                seen.add(word.index)
                assert masked(got) and len(got) == len(word.text), (word.text, got)
            else:
                assert got == word.text
        assert t.message["text"] == " ".join(text)
    assert seen == sensitive


@pytest.mark.parametrize("name", SAMPLES)
def test_unredacted_keeps_every_word(name: str) -> None:
    out = render_segment(utterances(name), ctx("unredacted"), wall_base=BASE)
    for t in out.items:
        assert t.webhook["autotranscribeResponse"]["utterance"] == [{"text": t.utterance.text}]
        assert t.message["text"] == t.utterance.text


@pytest.mark.parametrize("name", [n for n in SAMPLES if sample(n).sensitive])
def test_redacted_and_unredacted_carries_both_and_stores_the_redacted(name: str) -> None:
    both = render_segment(utterances(name), ctx("redacted_and_unredacted"), wall_base=BASE)
    red = render_segment(utterances(name), ctx("redacted"), wall_base=BASE)
    changed = 0
    for t, r in zip(both.items, red.items, strict=True):
        item = t.webhook["autotranscribeResponse"]["utterance"][0]
        assert item["text"] == r.webhook["autotranscribeResponse"]["utterance"][0]["text"]
        assert item["unredactedText"] == t.utterance.text
        assert t.message["text"] == item["text"]
        changed += item["text"] != item["unredactedText"]
    assert changed >= 1


@pytest.mark.parametrize("name", SAMPLES)
def test_detailed_tokens_follow_the_words(name: str) -> None:
    out = render_segment(utterances(name), ctx("unredacted", detailed=True), wall_base=BASE)
    for t in out.items:
        item = t.webhook["autotranscribeResponse"]["utterance"][0]
        assert [tok["content"] for tok in item["tokens"]] == list(t.utterance.texts)
        assert [(tok["start"], tok["end"]) for tok in item["tokens"]] == [
            (round(w.start_ms), round(w.end_ms)) for w in t.utterance.words
        ]
        assert item["tokens"][0]["start"] == t.webhook["autotranscribeResponse"]["start"]
        assert item["tokens"][-1]["end"] == t.webhook["autotranscribeResponse"]["end"]


@pytest.mark.parametrize("mode", ["redacted", "redacted_and_unredacted"])
def test_detailed_token_is_refused_with_redacted_output(mode: OutputMode) -> None:
    with pytest.raises(ConfigError):
        ctx(mode, detailed=True)
    with pytest.raises(ConfigError):
        utterance_item(utterances("card_payment")[0], mode, RedactionPolicy(), detailed_token=True)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("hello", {"content": "hello"}),
        ("Sam.", {"content": "Sam", "punctuationAfter": "."}),
        ("(555)", {"content": "555", "punctuationBefore": "(", "punctuationAfter": ")"}),
        ("it's", {"content": "it's"}),
        ("--", {"content": "--"}),
    ],
)
def test_token_punctuation(word: str, expected: dict[str, str]) -> None:
    utt = Utterance("agent", 10.4, 99.6, (TimedWord(word, 10.4, 99.6),))
    assert tokens(utt) == [{**expected, "start": 10, "end": 100}]


def test_per_participant_policy() -> None:
    call = sample("card_payment")
    policies = ParticipantPolicies(
        customer=RedactionPolicy.default(payments=False), agent=RedactionPolicy.none()
    )
    out = render_segment(
        utterances("card_payment"), ctx("redacted", policies=policies), wall_base=BASE
    )
    by_label = {s.label: set(s.word_indexes) for s in call.sensitive}
    hidden: set[int] = set()
    for t in out.items:
        text = delivered_words(t.webhook, "text")
        if t.utterance.role == "agent":
            assert " ".join(text) == t.utterance.text
        hidden |= {
            w.index
            for w, got in zip(t.utterance.words, text, strict=True)
            if masked(got) and w.index
        }
    # Without the payment rules the card number is still masked, expiry and CVV are not.
    assert by_label["card_number"] <= hidden
    assert not (by_label["expiry"] | by_label["cvv"]) & hidden


def test_redacted_needs_no_rule_for_a_participant_without_one() -> None:
    utt = Utterance("agent", 0, 100, (TimedWord("1234", 0, 100),))
    item = utterance_item(utt, "redacted_and_unredacted", RedactionPolicy.none())
    assert item == {"text": "1234", "unredactedText": "1234"}


def test_delivery_order_counts_and_due_times() -> None:
    utts = list(utterances("card_payment"))
    out = render_segment(list(reversed(utts)), ctx(), wall_base=BASE, latency_ms=450)
    due = [t.due_ms for t in out.items]
    assert due == sorted(due)
    assert all(t.due_ms == t.utterance.end_ms + 450 for t in out.items)
    assert out.transcripts == {r: sum(u.role == r for u in utts) for r in ROLES}
    assert sum(out.transcripts.values()) == len(out.webhooks) == len(out.messages)
    assert out.utterances == sorted(utts, key=lambda u: (u.end_ms, u.start_ms, u.role))


def test_message_times_and_ids() -> None:
    utt = min(utterances("card_payment"), key=lambda u: u.start_ms)
    out = render_segment([utt], ctx(), wall_base=BASE, latency_ms=300)
    msg = out.messages[0]
    assert msg["clientTimestamp"] == iso_timestamp(BASE, utt.start_ms) == "2026-01-05T09:00:00.400Z"
    assert msg["createdTimestamp"] == iso_timestamp(BASE, utt.end_ms + 300)
    again = render_segment([utt], ctx(), wall_base=BASE)
    assert again.messages[0]["messageId"] == msg["messageId"]
    other = render_segment([utt], ctx(guid="CA" + "00" * 16), wall_base=BASE)
    assert other.messages[0]["messageId"] != msg["messageId"]
    counter = iter(["m-1", "m-2"])
    fixed = render_segment([utt], ctx(), wall_base=BASE, new_id=lambda: next(counter))
    assert fixed.messages[0]["messageId"] == "m-1"


@pytest.mark.parametrize(
    ("base", "ms", "expected"),
    [
        (BASE, 0, "2026-01-05T09:00:00.000Z"),
        (BASE, 83_420.4, "2026-01-05T09:01:23.420Z"),
        (BASE, 86_400_000, "2026-01-06T09:00:00.000Z"),
        (
            datetime(2026, 1, 5, 10, tzinfo=timezone(timedelta(hours=1))),
            5,
            "2026-01-05T09:00:00.005Z",
        ),
    ],
)
def test_iso_timestamp(base: datetime, ms: float, expected: str) -> None:
    assert iso_timestamp(base, ms) == expected


def test_iso_timestamp_refuses_a_naive_base() -> None:
    with pytest.raises(ConfigError):
        iso_timestamp(datetime(2026, 1, 5), 0)


@pytest.mark.parametrize(
    "kw",
    [
        {"stream_ids": {"customer": "x"}},
        {"external_ids": {}},
        {"redaction_output": "both"},
    ],
)
def test_bad_context_raises(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"guid": "g", "stream_ids": STREAMS, "external_ids": IDS, **kw}
    with pytest.raises(ConfigError):
        SegmentContext(**args)


def test_empty_utterance_is_not_delivered() -> None:
    out = render_segment([Utterance("agent", 0, 0, ())], ctx(), wall_base=BASE)
    assert out.items == () and out.transcripts == {"customer": 0, "agent": 0}


def test_webhook_body_example_from_the_docs() -> None:
    texts = ["my", "PIN", "number", "is", "1234"]
    words = tuple(TimedWord(w, 400 + 700 * i, 868 + 700 * i) for i, w in enumerate(texts))
    utt = Utterance("customer", 400, 3968, words)
    body = webhook_body(utt, ctx())
    assert body["autotranscribeResponse"] == {
        "message": "transcript",
        "start": 400,
        "end": 3968,
        "utterance": [{"text": "my PIN number is ####"}],
    }
    assert body["type"] == "transcript" and body["externalConversationId"] == "CA" + "3f" * 16


def test_doctests() -> None:
    assert doctest.testmod(transcripts_module).failed == 0
