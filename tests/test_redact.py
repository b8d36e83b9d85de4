from __future__ import annotations

import doctest
import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mgsim.errors import ConfigError
from mgsim.speech import redact
from mgsim.speech.numbers import split_punctuation
from mgsim.speech.redact import (
    ENTITIES,
    ParticipantPolicies,
    RedactionPolicy,
    Span,
    apply_output_mode,
    find_sensitive,
    luhn_valid,
    mask_word,
    output_mode_problem,
    redact_text,
    redact_words,
)

DEFAULT = RedactionPolicy.default()
NO_PAYMENTS = RedactionPolicy.default(payments=False)
_SPOKEN = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def spoken(digits: str) -> str:
    return " ".join(_SPOKEN[int(d)] for d in digits)


def entities(text: str, policy: RedactionPolicy = DEFAULT) -> list[tuple[str, str]]:
    return [(s.entity, s.digits) for s in find_sensitive(text.split(), policy)]


# --- Luhn ---------------------------------------------------------------------------------

VALID_CARDS = ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117"]


@pytest.mark.parametrize("digits", [*VALID_CARDS, "4222222222222", "79927398713", "00"])
def test_luhn_valid(digits: str) -> None:
    assert luhn_valid(digits)


@pytest.mark.parametrize(
    "digits", ["4111111111111112", "79927398710", "1234567812345678", "", "7", "41a1", "٤١"]
)
def test_luhn_invalid(digits: str) -> None:
    assert not luhn_valid(digits)


# --- entities in every form ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # card numbers
        ("card 4111111111111111", [("card_number", "4111111111111111")]),
        ("card 4111 1111 1111 1111", [("card_number", "4111111111111111")]),
        ("card 4111-1111-1111-1111.", [("card_number", "4111111111111111")]),
        ("amex 3782 822463 10005", [("card_number", "378282246310005")]),
        (f"it's {spoken('5555555555554444')} okay", [("card_number", "5555555555554444")]),
        (
            "forty one eleven, eleven eleven, eleven eleven, eleven eleven",
            [("card_number", "4111111111111111")],
        ),
        (
            "six oh one one " + "double one " * 5 + "one seven",
            [("card_number", "6011111111111117")],
        ),
        # SSNs and nine-digit numerics
        ("ssn 123-45-6789", [("ssn", "123456789")]),
        ("it is 123 45 6789", [("ssn", "123456789")]),
        (f"my social security number is {spoken('123456789')}", [("ssn", "123456789")]),
        ("account 123456789", [("nine_digit", "123456789")]),
        (f"reference {spoken('987654321')}", [("nine_digit", "987654321")]),
        # phones and ten-digit numerics
        ("call (555) 867-5309 today", [("phone", "5558675309")]),
        ("it's 555-867-5309", [("phone", "5558675309")]),
        ("dial 1-800-555-1234", [("phone", "18005551234")]),
        ("dial 18005551234", [("phone", "18005551234")]),
        (f"call me back at {spoken('5558675309')}", [("phone", "5558675309")]),
        ("order 5558675309", [("ten_digit", "5558675309")]),
        (f"order {spoken('5558675309')}", [("ten_digit", "5558675309")]),
        # payment short numerics
        ("the CVV is 123", [("cvv", "123")]),
        ("security code seven three seven", [("cvv", "737")]),
        ("my PIN number is 1234", [("pin", "1234")]),
        ("pin is oh four oh four", [("pin", "0404")]),
        ("pin double five double six", [("pin", "5566")]),
        ("valid until 12/27", [("expiry", "1227")]),
        ("valid until 12/2027", [("expiry", "122027")]),
        ("expiration twelve twenty seven", [("expiry", "1227")]),
        ("it expires oh four twenty eight", [("expiry", "0428")]),
        ("exp date twelve twenty twenty seven", [("expiry", "122027")]),
        ("the code is 4321", [("short_numeric", "4321")]),
        ("one two three", [("short_numeric", "123")]),
        ("at three thirty", [("short_numeric", "330")]),
        ("in twenty twenty four", [("short_numeric", "2024")]),
    ],
)
def test_entities(text: str, expected: list[tuple[str, str]]) -> None:
    assert entities(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I have two cats",
        "one moment please",
        "give me one second",
        "we have twenty one days",
        "between one and two",
        "room 12 at 3",
        "oh no oh no",
        "at three thirty pm",
        "it costs 300 dollars",
        "that is $300",
        "about 45.99 today",
        "forty five percent",
        "seven o'clock",
        "rate of 12%",
        "the 1st and the 2nd",
        "hello, how are you today?",
        "",
    ],
)
def test_ordinary_speech_is_untouched(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("my PIN number is 1234", "my PIN number is ####"),
        ("four one one one", "#### ### ### ###"),
        ("4111-1111-1111-1111", "###################"),
        ("(555) 867-5309.", "(###) ########."),
        ("card: 4111 1111 1111 1111, thanks", "card: #### #### #### ####, thanks"),
        ("pin is 1234.", "pin is ####."),
        ('"1234"', '"####"'),
        ("four one one one dash 1111", "#### ### ### ### #### ####"),  # two PINs
        ("call five five five dash 867 dash 5309", "call #### #### #### #### ### #### ####"),
        ("ssn 123-45-6789!", "ssn ###########!"),
        ("at three thirty", "at ##### ######"),
        ("expires 12/27", "expires #####"),
    ],
)
def test_exact_masks(text: str, masked: str) -> None:
    assert redact_text(text) == masked


def test_text_keeps_whitespace() -> None:
    assert redact_text("PIN:\t1234\n  ok ") == "PIN:\t####\n  ok "


def test_card_and_expiry_in_one_breath() -> None:
    text = spoken("4111111111111111") + " " + spoken("1227")
    assert entities(text) == [("card_number", "4111111111111111"), ("short_numeric", "1227")]
    assert set(redact_text(text)) == {"#", " "}


# --- Luhn failures and policy flags -------------------------------------------------------


def test_luhn_invalid_run_is_not_a_card_but_short_groups_are_masked() -> None:
    text = "card 4111 1111 1111 1112"
    assert [e for e, _ in entities(text)] == ["short_numeric"] * 2  # 8 + 8 digits
    assert redact_text(text) == "card #### #### #### ####"
    assert redact_text(text, NO_PAYMENTS) == text


def test_luhn_invalid_single_token_stays_visible() -> None:
    assert redact_text("card 4111111111111112") == "card 4111111111111112"


@pytest.mark.parametrize(
    ("text", "policy", "expected"),
    [
        ("ssn 123-45-6789", RedactionPolicy(ssn=False), [("nine_digit", "123456789")]),
        ("account 123456789", RedactionPolicy(nine_digit=False), []),
        ("call 555-867-5309", RedactionPolicy(phone=False), [("ten_digit", "5558675309")]),
        ("order 5558675309", RedactionPolicy(ten_digit=False), []),
        ("dial 18005551234", RedactionPolicy(phone=False), []),
        ("card 4111111111111111", RedactionPolicy(card_number=False, short_numeric=False), []),
        ("my PIN number is 1234", NO_PAYMENTS, []),
        ("the CVV is 123", NO_PAYMENTS, []),
        ("expires 12/27", NO_PAYMENTS, []),
        ("at three thirty", NO_PAYMENTS, []),
        ("ssn 123-45-6789", RedactionPolicy.none(), []),
    ],
)
def test_policy_flags(text: str, policy: RedactionPolicy, expected: list[tuple[str, str]]) -> None:
    assert entities(text, policy) == expected


def test_only_card_rule() -> None:
    policy = RedactionPolicy(
        ssn=False, nine_digit=False, phone=False, ten_digit=False, short_numeric=False
    )
    text = "card 4111111111111111 ssn 123-45-6789 phone 555-867-5309 pin 1234"
    assert redact_text(text, policy) == (
        "card ################ ssn 123-45-6789 phone 555-867-5309 pin 1234"
    )


def test_policy_basics() -> None:
    assert DEFAULT.enabled and DEFAULT.short_numeric
    assert not NO_PAYMENTS.short_numeric and NO_PAYMENTS.card_number
    assert not RedactionPolicy.none().enabled
    assert all(DEFAULT.allows(e) for e in ENTITIES)
    assert [e for e in ENTITIES if NO_PAYMENTS.allows(e)] == [
        "card_number", "ssn", "nine_digit", "phone", "ten_digit",
    ]  # fmt: skip
    with pytest.raises(ConfigError):
        DEFAULT.allows("email")


@pytest.mark.parametrize("mask", ["", "##", "0", "x", " "])
def test_bad_mask_char(mask: str) -> None:
    with pytest.raises(ConfigError):
        RedactionPolicy(mask_char=mask)


def test_other_mask_char() -> None:
    policy = RedactionPolicy(mask_char="*")
    assert redact_text("pin (1234)", policy) == "pin (****)"


@pytest.mark.parametrize(
    ("word", "masked"),
    [("1234", "####"), ("1234,", "####,"), ("(555)", "(###)"), ("--", "--"), ("", "")],
)
def test_mask_word(word: str, masked: str) -> None:
    assert mask_word(word) == masked


# --- participants and output modes --------------------------------------------------------


def test_per_participant_policies() -> None:
    policies = ParticipantPolicies(agent=NO_PAYMENTS)
    words = ["your", "PIN", "is", "1234", "and", "card", "4111111111111111"]
    customer = redact_words(words, policies.for_role("customer")).text
    agent = redact_words(words, policies.for_role("agent")).text
    assert customer == "your PIN is #### and card ################"
    assert agent == "your PIN is 1234 and card ################"
    assert policies.enabled
    assert not ParticipantPolicies(RedactionPolicy.none(), RedactionPolicy.none()).enabled
    assert ParticipantPolicies().customer == DEFAULT


@pytest.mark.parametrize("role", ["Customer", "bot", ""])
def test_unknown_role(role: str) -> None:
    with pytest.raises(ConfigError):
        ParticipantPolicies().for_role(role)


WORDS = ["my", "PIN", "is", "1234."]


@pytest.mark.parametrize(
    ("mode", "item"),
    [
        ("redacted", {"text": "my PIN is ####."}),
        ("unredacted", {"text": "my PIN is 1234."}),
        (
            "redacted_and_unredacted",
            {"text": "my PIN is ####.", "unredactedText": "my PIN is 1234."},
        ),
    ],
)
def test_apply_output_mode(mode: redact.OutputMode, item: dict[str, str]) -> None:
    assert apply_output_mode(WORDS, mode, DEFAULT) == item


def test_apply_output_mode_rejects() -> None:
    with pytest.raises(ConfigError):
        apply_output_mode(WORDS, "masked", DEFAULT)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        apply_output_mode(WORDS, "redacted", RedactionPolicy.none())
    assert apply_output_mode(WORDS, "unredacted", RedactionPolicy.none()) == {
        "text": "my PIN is 1234."
    }


@pytest.mark.parametrize(
    ("mode", "detailed", "policy", "problem"),
    [
        ("redacted", False, DEFAULT, None),
        ("redacted_and_unredacted", False, ParticipantPolicies(), None),
        ("unredacted", True, RedactionPolicy.none(), None),
        ("redacted", True, DEFAULT, "detailedToken"),
        ("redacted_and_unredacted", True, DEFAULT, "detailedToken"),
        ("redacted", False, RedactionPolicy.none(), "no"),
        (
            "redacted_and_unredacted",
            False,
            ParticipantPolicies(RedactionPolicy.none(), RedactionPolicy.none()),
            "no",
        ),
        ("REDACTED", False, DEFAULT, "must be one of"),
    ],
)
def test_output_mode_problem(
    mode: str,
    detailed: bool,
    policy: RedactionPolicy | ParticipantPolicies,
    problem: str | None,
) -> None:
    found = output_mode_problem(mode, detailed_token=detailed, policy=policy)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


# --- result shape -------------------------------------------------------------------------


def test_result_carries_spans_and_original() -> None:
    result = redact_words(["pin", "1234", "ok"])
    assert result.spans == (Span(1, 2, "pin", "1234"),)
    assert result.original == ("pin", "1234", "ok")
    assert result.words == ("pin", "####", "ok")
    assert result.changed and not redact_words(["ok"]).changed


def test_pieces_inside_one_token_merge() -> None:
    spans = find_sensitive(["4111-1111-1111-1112"], DEFAULT)
    assert spans == [Span(0, 1, "short_numeric", "4111111111111112")]


# --- properties ---------------------------------------------------------------------------

_VOCAB = [
    *_SPOKEN, "oh", "o", "double", "triple", "hundred", "thousand", "and", "dash", "uh",
    "eleven", "twelve", "twenty", "forty", "ninety-nine", "twenty-seven",
    "pin", "cvv", "social", "call", "expires", "dollars", "pm", "my", "card", "is", "the",
    "4111", "1111", "555-867-5309", "(555)", "12/27", "123-45-6789", "5.00", "$300", "-", "/",
    "####", "#", "1st",
]  # fmt: skip
_word = st.one_of(
    st.sampled_from(_VOCAB),
    st.builds(lambda w, p: w + p, st.sampled_from(_VOCAB), st.sampled_from([",", ".", "?", ""])),
    st.from_regex(r"[0-9]{1,6}", fullmatch=True),
    st.text(max_size=6).filter(lambda s: not any(c.isspace() for c in s)),
)
_words = st.lists(_word, max_size=40)
_policy = st.builds(
    RedactionPolicy,
    card_number=st.booleans(),
    ssn=st.booleans(),
    nine_digit=st.booleans(),
    phone=st.booleans(),
    ten_digit=st.booleans(),
    short_numeric=st.booleans(),
)


@given(_words, _policy)
def test_every_word_is_kept_or_fully_masked(words: list[str], policy: RedactionPolicy) -> None:
    result = redact_words(words, policy)
    assert len(result.words) == len(words)
    masked: set[int] = set()
    for span in result.spans:
        assert 0 <= span.start_word < span.end_word <= len(words)
        assert span.entity in ENTITIES and policy.allows(span.entity)
        masked.update(range(span.start_word, span.end_word))
    for i, (before, after) in enumerate(zip(words, result.words, strict=True)):
        assert len(after) == len(before)
        if i not in masked:
            assert after == before
        else:
            b, core, a = split_punctuation(before)
            assert after == b + "#" * len(core) + a


@given(_words, _policy)
def test_spans_are_ordered_and_disjoint(words: list[str], policy: RedactionPolicy) -> None:
    spans = find_sensitive(words, policy)
    for first, second in itertools.pairwise(spans):
        assert first.end_word <= second.start_word


@given(_words, _policy)
def test_redaction_is_idempotent(words: list[str], policy: RedactionPolicy) -> None:
    once = redact_words(words, policy)
    twice = redact_words(once.words, policy)
    assert twice.words == once.words
    assert twice.spans == ()


@given(st.text(max_size=200))
def test_random_text_never_raises(text: str) -> None:
    out = redact_text(text)
    assert len(out) == len(text)
    assert re.sub(r"\S", "x", out) == re.sub(r"\S", "x", text)


@given(st.text(alphabet="0123456789", min_size=3, max_size=40))
def test_long_digit_speech_is_fully_masked_by_default(digits: str) -> None:
    # 3- to 8-digit pieces cover any run of 3 or more digits, and a run is never left
    # half masked: nothing is left.
    left = redact_text(spoken(digits)).replace("#", "").split()
    assert left == []


def test_doctests() -> None:
    result = doctest.testmod(redact)
    assert result.attempted > 0 and result.failed == 0
