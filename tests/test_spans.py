"""Sensitive spans found in words by the redactor's number reader (what annotate labels)."""

from __future__ import annotations

import pytest

from mgsim.sim.call import list_samples, load_sample
from mgsim.speech.engine import Word
from mgsim.speech.redact import ParticipantPolicies, RedactionPolicy
from mgsim.speech.spans import detect_spans


def said(speaker: str, text: str, start: float = 0.0, step: float = 300.0) -> list[Word]:
    return [
        Word(speaker, t, start + step * i, start + step * i + 250)
        for i, t in enumerate(text.split())
    ]


@pytest.mark.parametrize("name", [p.stem for p in list_samples()])
def test_on_true_words_every_labelled_span_is_found(name: str) -> None:
    call = load_sample(name)
    found = detect_spans(call.words)
    for span in call.sensitive:
        hits = [
            d
            for d in found
            if d.speaker == span.speaker
            and min(d.end_ms, span.end_ms) > max(d.start_ms, span.start_ms)
        ]
        assert hits, f"{name}: {span.label} at {span.start_ms} ms not found"
        # The evidence covers the span's words.
        assert set(span.word_indexes) <= {i for d in hits for i in d.word_indexes}


def test_entities_written_and_spoken_as_a_recognizer_writes_them() -> None:
    words = (
        said("customer", "my card is 4 5 3 9, 1 4 8 8, 0 3 4 3, 6 4 6 7.")
        + said("customer", "social is 123 45 6789", start=10_000)
        + said("agent", "call me at 555-867-5309", start=20_000)
        + said("customer", "the security code is four one seven", start=30_000)
        + said("customer", "I have two cats and paid $400", start=40_000)
    )
    found = [(d.entity, d.speaker, d.digits) for d in detect_spans(words)]
    assert found == [
        ("card_number", "customer", 16),
        ("ssn", "customer", 9),
        ("phone", "agent", 10),
        ("cvv", "customer", 3),
    ]


def test_a_long_pause_separates_numbers_and_policy_is_followed() -> None:
    words = said("customer", "one two three") + said("customer", "four five six", start=9_000)
    assert [d.digits for d in detect_spans(words)] == [3, 3]
    off = ParticipantPolicies(customer=RedactionPolicy.default(payments=False))
    assert detect_spans(words, off) == []
    card = said("customer", "4111 1111 1111 1112")  # fails Luhn: not a card
    # Not a card, but every digit is still in a span: the groups are read as numbers of up
    # to 8 digits (the redactor masks those whole), never left out.
    spans = detect_spans(card)
    assert {d.entity for d in spans} == {"short_numeric"}
    assert sorted(i for d in spans for i in d.word_indexes) == [0, 1, 2, 3]


def test_the_agents_question_names_the_customers_digits() -> None:
    # As Whisper heard card_payment (the expiry heard right): the answers are only digits.
    words = (
        said("agent", "and the expiration date,", start=9_600)
        + said("customer", "It's 0 9 28.", start=12_500)
        + said("agent", "and the free digits security code on the back.", start=15_500)
        + said("customer", "That's 4 1 7.", start=18_500)
    )
    found = [(d.entity, d.speaker, d.evidence(words)) for d in detect_spans(words)]
    assert found == [
        ("expiry", "customer", "0 9 28."),
        ("cvv", "customer", "4 1 7."),
    ]
    # Without the agent's words they are only numbers (what annotate labelled before).
    alone = [d.entity for d in detect_spans(words, other_context_ms=0)]
    assert alone == ["short_numeric", "short_numeric"]


def test_the_other_speakers_digits_and_old_words_are_no_context() -> None:
    # The agent reads back digits: they never join the customer's number.
    words = said("agent", "that was 4 5 3 9 right", start=0) + said(
        "customer", "yes 1 4 8 8", start=2_000
    )
    found = detect_spans(words)
    assert [(d.speaker, d.digits) for d in found if d.speaker == "customer"] == [("customer", 4)]
    # A keyword said long before (past the window) names nothing.
    late = said("agent", "expiration date", start=0) + said("customer", "0 9 2 8", start=9_000)
    assert [d.entity for d in detect_spans(late)] == ["short_numeric"]
    assert [d.entity for d in detect_spans(late, other_context_ms=10_000)] == ["expiry"]
