from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from mgsim.errors import ConfigError
from mgsim.sim.script import (
    LABELS,
    Hold,
    ScriptError,
    Silence,
    Transfer,
    Turn,
    load_script,
    parse_script,
)

EXAMPLE = """\
# title: Card payment
# direction: inbound
[ivr] Thank you for calling Acme Bank. Your call may be recorded.
[hold 4s music]
agent: Thanks for holding, this is Sam. How can I help?
customer: I'd like to pay my bill.
agent: Sure. What's the card number?
customer: It's {card_number: four one one one, one one one one, one one one one, one one one one}.
customer: Expiry {expiry: twelve twenty seven} and the code is {cvv: one two three}.
[silence 2s]
[transfer agent2]
agent: Hello, this is Alex.
"""


def test_example_events_in_order() -> None:
    script = parse_script(EXAMPLE, call_id="card")
    kinds = [type(e).__name__ for e in script.events]
    assert kinds == ["Turn", "Hold"] + ["Turn"] * 5 + ["Silence", "Transfer", "Turn"]
    assert (script.call_id, script.title, script.direction) == ("card", "Card payment", "inbound")
    hold, silence, transfer = script.events[1], script.events[7], script.events[8]
    assert hold == Hold(4, 4000, "music")
    assert silence == Silence(10, 2000)
    assert transfer == Transfer(11, "agent2", 3000)


def test_voices_follow_roles_and_transfer() -> None:
    turns = parse_script(EXAMPLE).turns
    assert [(t.speaker, t.voice, t.kind) for t in turns] == [
        ("agent", "ivr", "ivr"),
        ("agent", "agent", "speech"),
        ("customer", "customer", "speech"),
        ("agent", "agent", "speech"),
        ("customer", "customer", "speech"),
        ("customer", "customer", "speech"),
        ("agent", "agent2", "speech"),
    ]


def test_sensitive_spans_point_at_their_words() -> None:
    turns = parse_script(EXAMPLE).turns
    card = turns[4]
    (span,) = card.spans
    assert span.label == "card_number"
    words = [t.text for t in card.tokens[span.first : span.last + 1]]
    assert words == ["four"] + ["one"] * 15
    assert card.tokens[0].label is None and all(t.label == "card_number" for t in card.tokens[1:])
    expiry, cvv = turns[5].spans
    assert [t.text for t in turns[5].tokens[expiry.first : expiry.last + 1]] == [
        "twelve",
        "twenty",
        "seven",
    ]
    assert [t.text for t in turns[5].tokens[cvv.first : cvv.last + 1]] == ["one", "two", "three"]


def test_punctuation_stays_with_words() -> None:
    turn = parse_script(EXAMPLE).turns[4]
    assert turn.tokens[0].text == "It's"
    # Commas inside the span and the full stop after the brace attach to the word before.
    assert [t.after for t in turn.tokens[1:]] == ([""] * 3 + [","]) * 3 + [""] * 3 + ["."]
    assert turn.text.startswith("It's four one one one, one")
    assert turn.text.endswith("one one.")


@pytest.mark.parametrize(
    ("text", "words", "befores", "afters"),
    [
        ('agent: Hi — I\'m "Alex".', ["Hi", "I'm", "Alex"], ["", "", '"'], ["—", "", '".']),
        ("agent: ( {phone: five five } )", ["five", "five"], ["(", ""], ["", ")"]),
        ("agent: e-mail U.S. it's", ["e-mail", "U.S", "it's"], ["", "", ""], ["", ".", ""]),
    ],
)
def test_tokenising(text: str, words: list[str], befores: list[str], afters: list[str]) -> None:
    (turn,) = parse_script(text).turns
    assert [t.text for t in turn.tokens] == words
    assert [t.before for t in turn.tokens] == befores
    assert [t.after for t in turn.tokens] == afters


@pytest.mark.parametrize(
    ("directive", "expected"),
    [
        ("[hold 4s]", Hold(1, 4000, "music")),
        ("[hold 1.5s beeps]", Hold(1, 1500, "beeps")),
        ("[HOLD 800ms Music]", Hold(1, 800, "music")),
        ("[silence 250ms]", Silence(1, 250)),
        ("[transfer agent2 2s]", Transfer(1, "agent2", 2000)),
    ],
)
def test_directives(directive: str, expected: object) -> None:
    script = parse_script(f"{directive}\nagent: hello")
    assert script.events[0] == expected


def test_defaults_and_headers() -> None:
    plain = parse_script("customer: hi", call_id="abc")
    assert (plain.title, plain.direction, plain.seed) == ("abc", "inbound", zlib.crc32(b"abc"))
    headed = parse_script(
        "# title: T\n# direction: outbound\n# call_id: x-1\n# seed: 42\n#\nagent: hi"
    )
    assert (headed.title, headed.direction, headed.call_id, headed.seed) == (
        "T",
        "outbound",
        "x-1",
        42,
    )


def test_comments_after_the_first_event_are_free_text() -> None:
    script = parse_script("agent: hi\n# note: this is a comment\n#plain comment\ncustomer: yo")
    assert len(script.turns) == 2


def test_load_script_uses_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my_call.txt"
    path.write_text(EXAMPLE, encoding="utf-8")
    script = load_script(path)
    assert (script.call_id, script.source) == ("my_call", "my_call.txt")


def test_a_byte_order_mark_is_no_part_of_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_text("# title: With a BOM\nagent: hi", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert load_script(path).title == "With a BOM"
    assert parse_script("\ufeffagent: hi").turns[0].text == "hi"


def test_accents_in_either_form_are_letters() -> None:
    composed, decomposed = parse_script("agent: café"), parse_script("agent: cafe\u0301")
    assert composed.turns[0].tokens == decomposed.turns[0].tokens


def test_a_file_name_that_is_no_call_id_is_named_as_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "my call.txt"
    path.write_text("agent: hi", encoding="utf-8")
    with pytest.raises(ScriptError, match=r"the file name gives the call id 'my call'.*rename"):
        load_script(path)
    path.write_text("# call_id: my_call\nagent: hi", encoding="utf-8")
    assert load_script(path).call_id == "my_call"


def test_files_that_are_not_scripts_are_clear_errors(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("agent: café".encode("latin-1"))
    with pytest.raises(ScriptError, match=r"latin1\.txt: not UTF-8 text"):
        load_script(latin1)
    with pytest.raises(ScriptError, match="cannot read the script"):
        load_script(tmp_path / "missing.txt")
    huge = tmp_path / "huge.txt"
    huge.write_text("agent: hi\n" * 30_000, encoding="utf-8")
    with pytest.raises(ScriptError, match="over the limit"):
        load_script(huge)
    with pytest.raises(ScriptError, match="over the limit of 64000"):
        parse_script("agent: " + "hi " * 30_000)


BAD = [
    ("bob: hi", 1, "unknown speaker 'bob'"),
    ("agent hello", 1, "expected 'customer: ...'"),
    ("agent: hi\nagent: {pin: one two}", 2, "unknown label 'pin'"),
    ("agent: {card_number one two}", 1, "{label: words}"),
    ("agent: {card_number: one {cvv: two}}", 1, "cannot nest"),
    ("agent: {cvv: one two", 1, "without a closing"),
    ("agent: one two}", 1, "without a matching"),
    ("agent: {cvv: }", 1, "has no words"),
    ("agent: {cvv: , }", 1, "has no words"),
    ("agent: my code is 123", 1, "spell numbers out"),
    ("agent: and/or", 1, "cannot read 'and/or'"),
    ("agent:   ", 1, "at least one word"),
    ("[ivr]", 1, "at least one word"),
    ("[ivr 2] hi", 1, "takes no arguments"),
    ("[hold]", 1, "use [hold"),
    ("[hold 4x]", 1, "bad duration '4x'"),
    ("[hold 4s jazz]", 1, "hold style"),
    ("[hold 400s]", 1, "out of range"),
    ("[silence 50ms]", 1, "out of range"),
    ("[silence]", 1, "use [silence"),
    ("[silence 2s] now", 1, "unexpected text"),
    ("[transfer]", 1, "use [transfer"),
    ("[transfer bob]", 1, "cannot transfer to 'bob'"),
    ("[transfer agent]", 1, "already the agent's voice"),
    ("[transfer agent2]\n[transfer agent2]", 2, "already the agent's voice"),
    ("[dance 2s]", 1, "unknown directive [dance]"),
    ("agent: hi\n[hold 4s", 2, "unterminated"),
    ("[]", 1, "empty directive"),
    ("# direction: sideways\nagent: hi", 1, "inbound or outbound"),
    ("# title: a\n# title: b\nagent: hi", 2, "given twice"),
    ("# colour: red\nagent: hi", 1, "unknown header 'colour'"),
    ("# seed: abc\nagent: hi", 1, "seed must be"),
    ("# call_id: bad id\nagent: hi", 1, "call_id 'bad id'"),
    ("# title:\nagent: hi", 1, "title is empty"),
    ("", None, "no turns"),
    ("[silence 2s]\n[hold 2s]", None, "no turns"),
    # Spoken as something else: an emoji by its name, other scripts by an English voice.
    ("agent: I am 😀 happy", 1, "(grinning face) is neither a letter nor punctuation"),
    ("agent: hello😀", 1, "grinning face"),
    ("agent: hi\ncustomer: 坂本 here", 2, "'坂' is not a Latin letter"),
    ("agent: Привет", 1, "not a Latin letter"),
    ("agent: one + one", 1, "(plus sign)"),
    # Numerals of every kind are numbers to spell out.
    ("agent: step ①", 1, "spell numbers out as words: '①'"),
    ("agent: x² please", 1, "spell numbers out as words: 'x²'"),
    ("agent: code ４２", 1, "spell numbers out"),
    ("agent: code ٣", 1, "spell numbers out"),
    ("[silence ２s]", 1, "bad duration"),
    ("agent: hi\n" * 401, 401, "more than 400 turns"),
    ("agent: hi\n" + "[hold 300s]\n" * 13, 14, "more than 60 minutes of hold"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), BAD)
def test_bad_scripts_name_the_line(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse_script(text, source="bad.txt")
    err = info.value
    assert isinstance(err, ConfigError) and isinstance(err, ValueError)
    assert err.line == line
    assert fragment in str(err)
    prefix = f"bad.txt:{line}: " if line is not None else "bad.txt: "
    assert str(err).startswith(prefix)


def test_every_label_is_accepted() -> None:
    text = "\n".join(f"customer: it is {{{label}: one two}}." for label in LABELS)
    script = parse_script(text)
    assert [t.spans[0].label for t in script.turns] == list(LABELS)


def test_turns_are_frozen_records() -> None:
    turn = parse_script("agent: hi").turns[0]
    assert isinstance(turn, Turn)
    with pytest.raises(AttributeError):
        turn.voice = "agent2"  # type: ignore[misc]
