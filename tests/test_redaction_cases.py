"""Redaction on calls read as a contact-centre caller reads: corrections, numbers read in two
breaths, keywords said a breath earlier, odd written forms.

Each case is decided against the vendor's policy (API_FACTS: card numbers by Luhn, SSNs,
9- and 10-digit numerics and phone numbers always, 3- and 4-digit numerics when agents take
payments, spoken digits as well as written, rules per participant), read as *a
participant's* context across their utterances. The conversations go through the reference
engine (which splits utterances at pauses and turns, as on a call), the gateway's rendering
with its per-call redaction history, and the leak analysis, so a case passes only when no
delivered field shows or gives away a digit of the span.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from mgsim.media._base import StereoCall
from mgsim.sim.call import Call, SensitiveSpan
from mgsim.sim.call import Word as CallWord
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import Scenario, run_scenario
from mgsim.sim.script import parse_script
from mgsim.speech.engine import ROLES, ScriptEngine, Utterance, Word
from mgsim.speech.leaks import LeakReport, Script, Sensitive, analyze_leaks
from mgsim.speech.redact import RedactionPolicy, find_sensitive, redact_text, redact_words
from mgsim.speech.transcripts import RedactionHistory, SegmentContext, render_segment

BASE = datetime(2026, 1, 5, 9, tzinfo=UTC)
WORD_MS, GAP_MS, TURN_GAP_MS = 300, 60, 900


def lay_out(script_text: str) -> tuple[list[Word], list[Sensitive], int]:
    """The words and spans of ``script_text`` (the call-script format) laid out in time."""
    script = parse_script(script_text)
    words: list[Word] = []
    spans: list[Sensitive] = []
    t = 0
    for turn in script.turns:
        first = len(words)
        for token in turn.tokens:
            words.append(Word(turn.speaker, token.spoken, t, t + WORD_MS))
            t += WORD_MS + GAP_MS
        for span in turn.spans:
            a, b = first + span.first, first + span.last
            spans.append(
                Sensitive(span.label, turn.speaker, words[a].start_ms, words[b].end_ms,
                          tuple(range(a, b + 1)))
            )  # fmt: skip
        t += TURN_GAP_MS
    return words, spans, t


def play(script_text: str) -> tuple[list[str], LeakReport]:
    """Lay ``script_text`` out, transcribe, deliver with redacted output and analyse: the
    delivered texts and the leak report."""
    words, spans, t = lay_out(script_text)
    n = (t + 1000) * 8
    streamed = {role: np.ones(n, bool) for role in ROLES}
    engine = ScriptEngine(words)
    utterances: list[Utterance] = []
    for role in ROLES:
        utterances += engine.transcribe(role, np.zeros(n, np.int16), streamed[role])
    ctx = SegmentContext("g", {"customer": "s1", "agent": "s2"}, {"customer": "c", "agent": "a"})
    out = render_segment(utterances, ctx, wall_base=BASE, history=RedactionHistory())
    texts = [hook["autotranscribeResponse"]["utterance"][0]["text"] for hook in out.webhooks]
    report = analyze_leaks(Script(words, spans), out.utterances, streamed=streamed,
                           webhooks=out.webhooks)  # fmt: skip
    return texts, report


def assert_hidden(report: LeakReport) -> None:
    for span in report.spans:
        assert span.words_transcribed == len(span.words), span.label
        assert span.verdict == "redacted", (span.label, span.describe())


def test_a_correction_in_mid_number_leaves_no_digit() -> None:
    # The lone "four" of "that's four not five" sits between two masked stretches.
    texts, report = play(
        "agent: What's the card number?\n"
        "customer: {card_number: four five three nine one four four nine}, sorry, that's "
        "{card_number: four} not {card_number: five, eight eight zero three four three six "
        "four six seven}\n"
    )
    card = texts[1].split()
    assert card[8:10] == ["sorry,", "that's"] and card[11] == "not"
    assert set(card[10]) == {"#"}
    assert_hidden(report)


AMEX = (
    "agent: Go ahead with the card number.\n"
    "customer: {card_number: three seven eight two, eight two two four, six three}\n"
    "agent: mm-hmm\n"
    "customer: {card_number: one zero zero, zero five}\n"
)


def test_an_amex_read_ten_then_five_around_the_agents_mm_hmm() -> None:
    # 378282246310005 is Luhn-valid; the customer's second breath continues the number
    # of the first, so the five digits are a card number's, not a lone 5-digit run.
    texts, report = play(AMEX)
    assert texts[2] == "mm-hmm"
    assert all(set(w) <= set("#,") for w in texts[3].split())
    assert_hidden(report)
    first = "three seven eight two eight two two four six three"
    second = redact_words(["one", "zero", "zero", "zero", "five"], context=first.split(" "))
    assert second.spans[0].entity == "card_number"


@pytest.mark.parametrize("namespace", ["twilio", "siprec"])
def test_the_gateway_keeps_a_participants_context_across_utterances(namespace: str) -> None:
    words, spans, t = lay_out(AMEX)
    rng = np.random.default_rng(1)
    noise = rng.integers(-40, 40, size=(t + 1000) * 8).astype(np.int16)  # line noise
    call = Call(
        "amex_two_breaths",
        StereoCall(noise, noise.copy()),
        tuple(CallWord(w.speaker, w.speaker, w.text, w.start_ms, w.end_ms) for w in words),
        tuple(SensitiveSpan(s.label, s.speaker, "", s.start_ms, s.end_ms, s.word_indexes)
              for s in spans),
    )  # fmt: skip
    result = run_scenario(Scenario(call, namespace, Plan("whole")))  # type: ignore[arg-type]
    assert [s.verdict for s in result.report.spans] == ["redacted", "redacted"]
    assert result.report.spans[1].words_transcribed == 5


def test_an_expiry_whose_keyword_came_a_breath_earlier() -> None:
    # Six digits alone would be nothing the vendor names; after "expiry" they are a date.
    texts, report = play(
        "agent: And the expiry date?\n"
        "customer: The expiry is, let me see\n"
        "agent: Take your time.\n"
        "customer: {expiry: oh four twenty twenty eight}\n"
    )
    assert texts[-1] == "## #### ###### ###### #####"
    words = ["oh", "four", "twenty", "twenty", "eight"]
    entity = find_sensitive(words, RedactionPolicy.default(), context=["the", "expiry", "is"])
    assert entity[0].entity == "expiry"
    # The "##" still gives the month's 0 away (one # per character, the vendor's way):
    # the analysis says so rather than calling the span hidden.
    (span,) = report.spans
    assert span.verdict == "visible" and span.inferable and span.words_visible == 0


def test_an_oh_after_a_number_is_not_its_next_digit() -> None:
    out = redact_words(["Oh", "great", "I", "see", "it"], context=["zero", "one", "four", "seven"])
    assert out.words == ("Oh", "great", "I", "see", "it")


def test_context_is_the_participants_own_and_fades() -> None:
    history = RedactionHistory()
    history.add(Utterance("agent", 0, 1000, ()))
    assert history.context("customer", 1500) == ()
    history.add(Utterance("customer", 0, 1000, ()))
    assert history.context("customer", 1000 + RedactionHistory.GAP_MS + 1) == ()


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("card 4111_1111_1111_1111", "card ###################"),
        ("cc#4111111111111111", "###################"),
        ("card ４１１１１１１１１１１１１１１１", "card ################"),
        ("card ４１１１－１１１１－１１１１－１１１１", "card ###################"),
        ("PIN:1234", "########"),
    ],
)
def test_written_forms_a_typist_or_an_asr_produces(text: str, masked: str) -> None:
    assert redact_text(text) == masked
    spans = find_sensitive(text.split(), RedactionPolicy.default())
    assert spans and spans[0].entity in ("card_number", "short_numeric")


def test_card_written_forms_are_cards() -> None:
    for text in ("4111_1111_1111_1111", "cc#4111111111111111", "４１１１１１１１１１１１１１１１"):
        assert find_sensitive([text], RedactionPolicy.default())[0].entity == "card_number"


@pytest.mark.parametrize(
    "text", ["zip one two three four five", "zip 12345", "zip twelve three forty five"]
)
def test_a_five_digit_number_is_masked_whole_spoken_or_written(text: str) -> None:
    # Not a vendor rule by name; under the payment rules a number of 3 to 8 digits is
    # masked whole, so spoken and written forms agree and nothing is left half shown.
    out = redact_text(text).split()
    assert out[0] == "zip" and all(set(w) == {"#"} for w in out[1:])
    no_payments = RedactionPolicy.default(payments=False)
    assert redact_text(text, no_payments) == text


def test_a_run_is_never_left_half_masked() -> None:
    # 17 digits, Luhn-invalid: masked as pieces, and the digit no piece took goes with them.
    text = "one two three four five six seven eight nine one two three four five six seven one"
    assert "#" in redact_text(text) and not any(w.isalpha() for w in redact_text(text).split())


def test_small_numbers_away_from_sensitive_ones_stay() -> None:
    assert redact_text("I have two cats and one dog") == "I have two cats and one dog"
    assert (
        redact_text("card 4111111111111111 for 5 dollars") == "card ################ for 5 dollars"
    )
