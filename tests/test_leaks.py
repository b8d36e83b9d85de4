from __future__ import annotations

import doctest
import functools
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from mgsim.errors import ConfigError
from mgsim.sim.call import Call, list_samples, load_sample
from mgsim.speech import leaks as leaks_module
from mgsim.speech.engine import ROLES, ScriptEngine, Utterance, Word, streamed_mask
from mgsim.speech.leaks import (
    LeakReport,
    Script,
    Sensitive,
    analyze_leaks,
    to_dataframe,
)
from mgsim.speech.redact import OutputMode, ParticipantPolicies, RedactionPolicy
from mgsim.speech.transcripts import SegmentContext, render_segment

BoolArray = npt.NDArray[np.bool_]
BASE = datetime(2026, 1, 5, 9, tzinfo=UTC)
PCI = [p.stem for p in list_samples() if load_sample(p.stem).sensitive]


@functools.cache
def sample(name: str) -> Call:
    return load_sample(name)


def full(call: Call) -> dict[str, BoolArray]:
    return {r: np.ones(len(getattr(call.audio, r)), bool) for r in ROLES}


def guarded(call: Call, margin_ms: float) -> dict[str, BoolArray]:
    masks = full(call)
    for s in call.sensitive:
        n = len(masks[s.speaker])
        masks[s.speaker] &= ~streamed_mask(n, [(s.start_ms - margin_ms, s.end_ms + margin_ms)])
    return masks


def run(
    call: Call,
    masks: dict[str, BoolArray],
    mode: OutputMode = "redacted",
    policies: ParticipantPolicies | None = None,
    plan: str = "",
) -> tuple[list[Utterance], list[dict[str, Any]], LeakReport]:
    engine = ScriptEngine(call.words)
    utts: list[Utterance] = []
    for role in ROLES:
        utts += engine.transcribe(role, getattr(call.audio, role), masks[role])
    context = SegmentContext(
        "g",
        {"customer": "s1", "agent": "s2"},
        {"customer": "c", "agent": "a"},
        mode,
        policies=policies or ParticipantPolicies(),
    )
    hooks = render_segment(utts, context, wall_base=BASE).webhooks
    report = analyze_leaks(call, utts, streamed=masks, webhooks=hooks, plan=plan)
    return utts, hooks, report


def total_words(call: Call) -> int:
    return sum(len(s.word_indexes) for s in call.sensitive)


def audio_ms(call: Call) -> float:
    return sum(
        call.words[i].end_ms - call.words[i].start_ms
        for s in call.sensitive
        for i in s.word_indexes
    )


@pytest.mark.parametrize("name", PCI)
def test_fully_streamed_and_redacted_transcribes_all_and_shows_nothing(name: str) -> None:
    call = sample(name)
    s = run(call, full(call))[2].summary()
    assert s["spans"] == len(call.sensitive) and s["pci_words"] == total_words(call)
    assert s["pci_words_transcribed"] == total_words(call)
    assert s["pci_ms_streamed"] == pytest.approx(audio_ms(call))
    assert s["pci_ms_transcribed"] == pytest.approx(audio_ms(call))
    assert s["pci_words_visible"] == 0
    # One # per character gives a spoken "oh" away: card_payment's expiry is inferable.
    inferable = ["expiry"] if name == "card_payment" else []
    assert s["leaked_labels"] == inferable and s["spans_inferable"] == len(inferable)
    assert s["spans_transcribed"] == len(call.sensitive)


@pytest.mark.parametrize("name", PCI)
def test_unredacted_output_leaks_every_span(name: str) -> None:
    call = sample(name)
    report = run(call, full(call), "unredacted")[2]
    s = report.summary()
    assert s["pci_words_visible"] == s["pci_words_visible_text"] == total_words(call)
    assert s["spans_leaked"] == len(call.sensitive)
    assert all(span.leaked and all(span.visible) for span in report.spans)


@pytest.mark.parametrize("name", PCI)
def test_redacted_and_unredacted_hides_in_text_but_not_in_unredacted_text(name: str) -> None:
    call = sample(name)
    s = run(call, full(call), "redacted_and_unredacted")[2].summary()
    assert s["pci_words_visible_text"] == 0
    assert s["pci_words_visible_unredactedText"] == total_words(call)
    assert s["pci_words_visible"] == total_words(call)


@pytest.mark.parametrize("name", PCI)
@pytest.mark.parametrize("margin_ms", [0, 300])
def test_guarded_spans_are_neither_streamed_nor_transcribed(name: str, margin_ms: int) -> None:
    call = sample(name)
    report = run(call, guarded(call, margin_ms), "unredacted")[2]
    s = report.summary()
    assert s["pci_words_transcribed"] == 0 and s["pci_ms_streamed"] == 0
    assert s["pci_words_visible"] == 0 and s["spans_leaked"] == 0
    assert all(span.visible_by_field == {} for span in report.spans)


def test_stop_in_the_middle_of_the_card_number() -> None:
    call = sample("card_payment")
    card = next(s for s in call.sensitive if s.label == "card_number")
    half = card.word_indexes[len(card.word_indexes) // 2]
    stop = call.words[half].start_ms
    masks = full(call)
    masks["customer"] &= ~streamed_mask(len(masks["customer"]), [(stop, card.end_ms + 500)])
    report = run(call, masks, "unredacted", plan="late stop")[2]
    span = next(sp for sp in report.spans if sp.label == "card_number")
    before = card.word_indexes.index(half)
    assert span.transcribed == tuple(i < before for i in range(len(card.word_indexes)))
    assert span.streamed_ms == pytest.approx(
        sum(call.words[i].end_ms - call.words[i].start_ms for i in card.word_indexes[:before])
    )
    assert span.transcribed_ms == pytest.approx(span.streamed_ms)
    assert span.leaked and span.words_visible == before
    assert report.summary()["plan"] == "late stop"


def test_half_a_card_without_payment_rules_is_a_redaction_miss() -> None:
    # Eight digits are no card, SSN or phone: only the 3-4 digit payment rules mask them.
    call = sample("card_payment")
    card = next(s for s in call.sensitive if s.label == "card_number")
    stop = call.words[card.word_indexes[8]].start_ms
    masks = full(call)
    masks["customer"] &= ~streamed_mask(len(masks["customer"]), [(stop, card.end_ms + 500)])
    with_rules = run(call, masks)[2].summary()
    policies = ParticipantPolicies(customer=RedactionPolicy.default(payments=False))
    without = run(call, masks, policies=policies)[2].summary()
    assert with_rules["pci_words_transcribed"] == without["pci_words_transcribed"] > 8
    assert with_rules["pci_words_visible"] == 0
    assert without["pci_words_visible"] >= 8 + 4 + 3  # half the card, expiry and CVV
    assert set(without["leaked_labels"]) == {"card_number", "expiry", "cvv"}


def test_undelivered_webhooks_show_nothing() -> None:
    call = sample("account_verification")
    utts, hooks, _ = run(call, full(call), "unredacted")
    report = analyze_leaks(call, utts, streamed=full(call), webhooks=[])
    s = report.summary()
    assert s["pci_words_transcribed"] == total_words(call) and s["pci_words_visible"] == 0
    some = analyze_leaks(call, utts, streamed=full(call), webhooks=hooks[:1])
    assert some.summary()["pci_words_visible"] == 0  # the first utterance holds no PCI


def test_tokens_count_as_visible() -> None:
    words = [Word("customer", t, 300 * i, 300 * i + 250) for i, t in enumerate(["PIN", "1234"])]
    script = Script(words, [Sensitive("pin", "customer", 300, 550, (1,))])
    on = {"customer": np.ones(8000, bool), "agent": np.zeros(8000, bool)}
    utts = ScriptEngine(words).transcribe("customer", np.zeros(8000, np.int16), on["customer"])
    context = SegmentContext(
        "g",
        {"customer": "s", "agent": "t"},
        {"customer": "c", "agent": "a"},
        "unredacted",
        detailed_token=True,
    )
    hooks = render_segment(utts, context, wall_base=BASE).webhooks
    span = analyze_leaks(script, utts, streamed=on, webhooks=hooks).spans[0]
    assert span.visible_by_field == {"text": (True,), "tokens": (True,)}


def test_records_and_dataframes() -> None:
    call = sample("card_payment")
    reports = [
        run(call, full(call), plan="no guard")[2],
        run(call, guarded(call, 300), "unredacted", plan="guard 300 ms")[2],
    ]
    table = to_dataframe([r.summary() for r in reports])
    assert isinstance(table, pd.DataFrame)
    assert list(table["plan"]) == ["no guard", "guard 300 ms"]
    assert list(table["pci_words_transcribed"]) == [total_words(call), 0]
    spans = to_dataframe(reports[0])
    assert len(spans) == len(call.sensitive)
    assert set(spans["label"]) == {"card_number", "expiry", "cvv"}
    assert {"streamed_ms", "words_visible", "visible_text", "leaked"} <= set(spans.columns)


def test_extra_goes_into_summary_and_records() -> None:
    call = sample("card_payment")
    utts, hooks, _ = run(call, full(call))
    report = analyze_leaks(call, utts, streamed=full(call), webhooks=hooks, extra={"policy": "x"})
    assert report.summary()["policy"] == "x"
    assert all(r["policy"] == "x" for r in report.records())


@pytest.mark.parametrize(
    "bad", [{"customer": np.ones(8, bool)}, {"customer": np.ones(8), "agent": np.ones(8)}]
)
def test_masks_are_checked(bad: dict[str, Any]) -> None:
    call = sample("card_payment")
    with pytest.raises(ConfigError):
        analyze_leaks(call, [], streamed=bad, webhooks=[])


def test_doctests() -> None:
    assert doctest.testmod(leaks_module).failed == 0


# -- verdicts -------------------------------------------------------------------------------


def _script(texts: str, sensitive: tuple[int, ...], label: str = "cvv") -> Script:
    words = [Word("customer", t, 300 * i, 300 * i + 250) for i, t in enumerate(texts.split())]
    span = Sensitive(label, "customer", words[sensitive[0]].start_ms,
                     words[sensitive[-1]].end_ms, sensitive)  # fmt: skip
    return Script(words, [span])


def _verdict(script: Script, mode: OutputMode, streamed: bool = True) -> leaks_module.SpanLeak:
    n = 300 * 8 * (len(script.words) + 1)
    masks = {"customer": np.full(n, streamed), "agent": np.zeros(n, bool)}
    utts = ScriptEngine(script.words).transcribe(
        "customer", np.zeros(n, np.int16), masks["customer"]
    )
    ctx = SegmentContext(
        "g", {"customer": "s", "agent": "t"}, {"customer": "c", "agent": "a"}, mode
    )
    hooks = render_segment(utts, ctx, wall_base=BASE).webhooks
    return analyze_leaks(script, utts, streamed=masks, webhooks=hooks).spans[0]


def test_each_span_gets_one_of_three_verdicts() -> None:
    script = _script("the code is four one seven", (3, 4, 5))
    never = _verdict(script, "redacted", streamed=False)
    redacted = _verdict(script, "redacted")
    shown = _verdict(script, "unredacted")
    assert (never.verdict, redacted.verdict, shown.verdict) == leaks_module.VERDICTS
    assert never.describe() == "never transcribed (none of its audio was streamed)"
    assert redacted.describe() == "transcribed (3 of 3 words) and redacted in text"
    assert shown.describe() == "VISIBLE: 3 of 3 words shown in text"
    assert not never.leaked and not redacted.leaked and shown.leaked
    assert shown.to_json()["name"] == "CVV" and shown.to_json()["visible_in"] == ["text"]


@pytest.mark.parametrize(
    ("text", "inferable"),
    [
        ("the code is four oh seven", 1),  # "##"
        ("the code is four o seven", 1),  # "#"
        ("the code is four zero seven", 0),  # "####": four, five, nine or zero
        ("the code is three seventy one", 1),  # "#######" among the tens: seventy
        ("the code is 407", 0),  # written digits keep only their count
    ],
)
def test_masks_that_reveal_a_digit_make_the_span_inferable(text: str, inferable: int) -> None:
    words = text.split()
    span = _verdict(_script(text, tuple(range(3, len(words)))), "redacted")
    assert span.words_visible == 0 and span.words_transcribed == len(words) - 3
    assert span.words_inferable == inferable
    assert span.inferable is bool(inferable)
    assert span.verdict == ("visible" if inferable else "redacted")
    if inferable:
        assert span.describe().startswith("VISIBLE (inferable): masked in text")
        assert not any(w in span.describe() for w in ("oh", "seventy", " o "))


def test_report_verdict_and_worst_span() -> None:
    leak = analyze_leaks(Script([], []), [], streamed=_no_audio(), webhooks=[])
    assert leak.verdict == "safe" and leak.worst is None and leak.summary()["verdicts"] == {
        "never_transcribed": 0, "redacted": 0, "visible": 0,
    }  # fmt: skip


def _no_audio() -> dict[str, BoolArray]:
    return {r: np.zeros(8, bool) for r in ROLES}


@pytest.mark.parametrize(
    ("label", "name"),
    [("card_number", "card number"), ("expiry", "expiry date"), ("cvv", "CVV"),
     ("ssn", "SSN"), ("phone", "phone number"), ("loyalty_id", "loyalty id")],
)  # fmt: skip
def test_spans_are_named_for_what_they_are(label: str, name: str) -> None:
    assert leaks_module.span_name(label) == name
