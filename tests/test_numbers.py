from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mgsim.speech import numbers
from mgsim.speech.numbers import DigitGroup, digit_runs, split_punctuation, spoken_digits


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # written
        ("4111", ["4111"]),
        ("4111-1111", ["41111111"]),
        ("4111 1111 1111 1111", ["4111111111111111"]),
        ("555-867-5309", ["5558675309"]),
        ("(555) 867-5309", ["5558675309"]),
        ("123-45-6789", ["123456789"]),
        ("555.867.5309", ["5558675309"]),
        ("12/27", ["1227"]),
        ("3:30", ["330"]),
        ("+1 800 555 1234", ["18005551234"]),
        # spoken digits, zero words, oh
        ("four one one one", ["4111"]),
        ("Four One One One", ["4111"]),
        ("zero nought naught nine", ["0009"]),
        ("five five five oh", ["5550"]),
        ("o four", ["04"]),
        ("oh four twenty eight", ["0428"]),
        # repeats
        ("double five", ["55"]),
        ("triple seven", ["777"]),
        ("double oh seven", ["007"]),
        ("double 5 six", ["556"]),
        # cardinals
        ("forty one eleven", ["4111"]),
        ("twelve twenty seven", ["1227"]),
        ("twenty twenty seven", ["2027"]),
        ("twenty-seven", ["27"]),
        ("four-one-one-one", ["4111"]),
        ("one hundred twenty three", ["123"]),
        ("four hundred and twelve", ["412"]),
        ("four hundred oh five", ["405"]),
        ("fifteen hundred", ["1500"]),
        ("two thousand twenty four", ["2024"]),
        ("two thousand and five", ["2005"]),
        ("three thousand four hundred", ["3400"]),
        ("one two hundred", ["1200"]),
        ("twenty one thirty", ["2130"]),
        # joiners and punctuation
        ("four one one one dash two two two two", ["41112222"]),
        ("4111 - 2222 / 3333", ["411122223333"]),
        ("four one uh one one", ["4111"]),
        ("1111, five.", ["11115"]),
        ("four, one, one, one.", ["4111"]),
        # breakers
        ("1234 and 5678", ["1234", "5678"]),
        ("between one and two", ["1", "2"]),
        ("five hundred and", ["500"]),
        ("call one now two", ["1", "2"]),
    ],
)
def test_spoken_digits(text: str, expected: list[str]) -> None:
    assert spoken_digits(text.split()) == expected


@pytest.mark.parametrize(
    "text",
    [
        "oh no",
        "oh oh",
        "oh, four",  # an interjection; "four" alone is kept below
        "double",
        "double trouble",
        "a hundred",
        "hundred thousand",
        "5.00",
        "3.5",
        "1,000",
        "1st 2nd 80s A12",
        "-- / #### ...",
        "",
    ],
)
def test_no_multi_digit_runs(text: str) -> None:
    runs = [r for r in spoken_digits(text.split()) if len(r) > 1]
    assert runs == []


def test_interjection_oh_is_not_a_digit() -> None:
    assert spoken_digits(["oh,", "four", "one"]) == ["41"]
    assert spoken_digits(["oh!", "five"]) == ["5"]


@pytest.mark.parametrize(
    ("words", "start", "end"),
    [
        (["my", "pin", "is", "four", "one", "one", "one", "thanks"], 3, 7),
        (["call", "(555)", "867-5309."], 1, 3),
        (["double", "five", "ok"], 0, 2),
        (["one", "dash"], 0, 1),  # a trailing joiner carries no digit
    ],
)
def test_run_word_range(words: list[str], start: int, end: int) -> None:
    [run] = digit_runs(words)
    assert (run.start_word, run.end_word) == (start, end)


def test_digit_words_map_each_digit_to_its_words() -> None:
    [run] = digit_runs(["forty", "one", "eleven", "5"])
    assert run.digits == "41115"
    assert run.digit_words() == ((0, 2), (0, 2), (2, 3), (2, 3), (3, 4))


@pytest.mark.parametrize(
    ("word", "groups"),
    [
        ("4111-1111", [("4111", "-"), ("1111", "")]),
        ("123-45-6789", [("123", "-"), ("45", "-"), ("6789", "")]),
        ("12/27", [("12", "/"), ("27", "")]),
        ("(555)", [("555", "")]),
    ],
)
def test_written_groups_keep_separators(word: str, groups: list[tuple[str, str]]) -> None:
    [run] = digit_runs([word])
    assert [(g.digits, g.sep) for g in run.groups] == groups
    assert all(g.written for g in run.groups)


def test_spoken_groups_are_not_written() -> None:
    [run] = digit_runs(["oh", "twenty", "one"])
    assert run.groups == (
        DigitGroup("0", 0, 1, oh=True),
        DigitGroup("21", 1, 3),
    )


@pytest.mark.parametrize(
    ("word", "parts"),
    [
        ("1111,", ("", "1111", ",")),
        ("five.", ("", "five", ".")),
        ("(555)", ("(", "555", ")")),
        ('"4111-1111?!"', ('"', "4111-1111", '?!"')),
        ("o'clock", ("", "o'clock", "")),
        ("...", ("...", "", "")),
        ("", ("", "", "")),
        ("$300", ("$", "300", "")),
    ],
)
def test_split_punctuation(word: str, parts: tuple[str, str, str]) -> None:
    assert split_punctuation(word) == parts
    assert "".join(parts) == word


@given(st.lists(st.text(max_size=12), max_size=30))
def test_random_words_never_raise_and_ranges_are_sane(words: list[str]) -> None:
    for run in digit_runs(words):
        assert run.digits.isascii() and run.digits.isdigit()
        assert 0 <= run.start_word < run.end_word <= len(words)
        for a, b in run.digit_words():
            assert run.start_word <= a < b <= run.end_word


_SPOKEN = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@given(st.text(alphabet="0123456789", min_size=1, max_size=25))
def test_digit_by_digit_speech_round_trips(digits: str) -> None:
    words = [_SPOKEN[int(d)] for d in digits]
    assert spoken_digits(words) == [digits]


def test_doctests() -> None:
    result = doctest.testmod(numbers)
    assert result.attempted > 0 and result.failed == 0
