"""Spoken and written numbers in a transcript, as digit runs.

Redaction works on words, so this module turns a word sequence into **digit runs**: maximal
stretches of number-bearing words, each made of :class:`DigitGroup` pieces that remember the
word range they came from. A run's digits are the concatenation of its groups' digits.

What counts as a number:

* **Written** tokens of digits, optionally split by ``-`` ``/`` ``.`` ``:`` ``_`` inside the
  token: ``4111``, ``4111-1111``, ``4111_1111``, ``555-867-5309``, ``123-45-6789``,
  ``12/27``, ``3:30``. Full-width and other Unicode digits count as their ASCII digits
  (``４１１１``), and a label glued on by ``#`` ``:`` or ``=`` is no obstacle
  (``cc#4111111111111111``, ``PIN:1234``): the whole token is masked.
  Each part is its own group, so ``(555) 867-5309`` gives groups 555 | 867 | 5309.
  A token with exactly one ``.`` and nothing else (``5.00``, ``3.5``) is a decimal amount,
  not digits. Tokens mixing letters and digits (``1st``, ``80s``, ``A12``) are not numbers,
  nor are tokens with a thousands comma inside (``1,000``).
* **Spoken digits**: ``zero`` ``nought`` ``naught`` ``one`` ... ``nine``; ``oh`` / ``o`` as
  zero, but a run made only of ``oh``\\ s is dropped (``oh no`` has no digits) and an ``oh``
  followed by ``,`` ``!`` or ``?`` is an interjection.
* **Repeats**: ``double`` / ``triple`` before one digit (``double five`` = 55,
  ``triple seven`` = 777, ``double oh seven`` = 007).
* **Small cardinals** read as digit groups, greedily: a teen (``eleven`` = 11), a tens word
  with an optional unit (``forty one`` = 41), an optional ``hundred`` (``four hundred and
  twelve`` = 412, ``four hundred oh five`` = 405) and ``thousand`` (``two thousand twenty
  four`` = 2024). Consecutive groups concatenate: ``forty one eleven`` = 4111,
  ``twelve twenty seven`` = 1227, ``twenty twenty seven`` = 2027. Hyphenated compounds
  (``twenty-seven``) count as their parts.

  Limits: no ``million``, no ``a hundred`` (a bare scale word is not a number), no ordinals
  (``twenty first``), no homophones an ASR engine may produce (``for``, ``to``, ``won``).

Joining and breaking:

* Words that never break a run (and are masked with it when they sit inside a sensitive
  span): the spoken separators ``dash`` ``hyphen`` ``space`` ``slash``, the hesitations
  ``uh`` ``um`` ``er`` ``ah`` ``hmm``, and stand-alone ``-`` ``–`` ``—`` ``/`` tokens.
  Punctuation attached to words (``1111,`` ``five.``) never breaks a run either: spoken
  card numbers are often punctuated between their groups.
* ``and`` breaks a run (``between one and two`` is two numbers) except inside a cardinal
  right after ``hundred`` / ``thousand``. Any other word breaks a run.

>>> [run.digits for run in digit_runs("my card is four one one one dash 1111".split())]
['41111111']
>>> [run.digits for run in digit_runs("call forty one eleven at twelve twenty seven".split())]
['4111', '1227']
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "NUMBER_WORDS",
    "DigitGroup",
    "DigitRun",
    "ascii_digits",
    "digit_runs",
    "split_punctuation",
    "spoken_digits",
]

_WRITTEN = re.compile(r"[0-9]+(?:[-/.:_][0-9]+)*", re.ASCII)
_DECIMAL = re.compile(r"[0-9]+\.[0-9]+", re.ASCII)
_SEPARATOR = re.compile(r"([-/.:_])")
# A label glued to a number by a mark: "cc#4111...", "PIN:1234", "acct=12345678".
_LABELLED = re.compile(r"[A-Za-z]+[#:=]([0-9][-/.:_0-9]*)", re.ASCII)

# Item kinds of the flat stream the run builder walks.
_UNIT, _OH, _TEEN, _TENS, _HUNDRED, _THOUSAND, _MULT, _AND = range(8)
_WRITTEN_KIND, _JOIN, _OTHER = 8, 9, 10
_STARTERS = frozenset({_UNIT, _OH, _TEEN, _TENS})
_NUMBER_KINDS = frozenset({_UNIT, _OH, _TEEN, _TENS, _HUNDRED, _THOUSAND, _MULT})

_UNITS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = (
    "ten", "eleven", "twelve", "thirteen", "fourteen",
    "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS_WORDS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")

_WORDS: dict[str, tuple[int, int]] = {
    "zero": (_UNIT, 0),
    "nought": (_UNIT, 0),
    "naught": (_UNIT, 0),
    "oh": (_OH, 0),
    "o": (_OH, 0),
    "hundred": (_HUNDRED, 100),
    "thousand": (_THOUSAND, 1000),
    "double": (_MULT, 2),
    "triple": (_MULT, 3),
    "and": (_AND, 0),
    **{w: (_UNIT, n) for n, w in enumerate(_UNITS, 1)},
    **{w: (_TEEN, n) for n, w in enumerate(_TEENS, 10)},
    **{w: (_TENS, n) for n, w in zip(range(20, 100, 10), _TENS_WORDS, strict=True)},
}
NUMBER_WORDS: dict[str, tuple[str, int]] = {
    word: ({_UNIT: "unit", _OH: "unit", _TEEN: "teen", _TENS: "tens"}[kind], value)
    for word, (kind, value) in _WORDS.items()
    if kind in (_UNIT, _OH, _TEEN, _TENS)
}
"""Spoken number words that carry a value, by kind (``unit``, ``teen``, ``tens``): what a
mask of the same length could hide (:mod:`mgsim.speech.inference`)."""
_JOIN_WORDS = frozenset({"dash", "hyphen", "space", "slash", "uh", "um", "er", "ah", "hmm"})
_JOIN_MARKS = frozenset({"-", "–", "—", "/"})
_INTERJECTION_MARKS = frozenset(",!?")


def split_punctuation(word: str) -> tuple[str, str, str]:
    """Split a word into (punctuation before, core, punctuation after).

    The core runs from the first to the last letter or digit; everything outside it is
    punctuation (an empty core means the word is all punctuation).

    >>> split_punctuation("(555)")
    ('(', '555', ')')
    >>> split_punctuation("o'clock.")
    ('', "o'clock", '.')
    >>> split_punctuation("--")
    ('--', '', '')
    """
    if word.isalnum():
        return "", word, ""
    n = len(word)
    start = 0
    while start < n and not word[start].isalnum():
        start += 1
    if start == n:
        return word, "", ""
    end = n
    while not word[end - 1].isalnum():
        end -= 1
    return word[:start], word[start:end], word[end:]


@dataclass(frozen=True, slots=True)
class DigitGroup:
    """Digits from one indivisible piece of a transcript.

    ``start_word``/``end_word`` (exclusive) index the words it came from: one word for a
    written token, several for ``forty one`` or ``double five``. ``sep`` is the separator
    written right after it inside the same token (``"-"`` for the first group of
    ``4111-1111``), ``written`` tells written digits from spoken ones, ``oh`` marks a zero
    spoken as "oh"/"o".
    """

    digits: str
    start_word: int
    end_word: int
    sep: str = ""
    written: bool = False
    oh: bool = False


@dataclass(frozen=True, slots=True)
class DigitRun:
    """A maximal stretch of number words: its groups in order."""

    groups: tuple[DigitGroup, ...]

    @property
    def digits(self) -> str:
        return "".join(g.digits for g in self.groups)

    @property
    def start_word(self) -> int:
        return self.groups[0].start_word

    @property
    def end_word(self) -> int:
        """One past the last word that carried a digit."""
        return self.groups[-1].end_word

    def digit_words(self) -> tuple[tuple[int, int], ...]:
        """The word range (start, end exclusive) each digit came from, digit by digit.

        >>> digit_runs(["forty", "one", "eleven"])[0].digit_words()
        ((0, 2), (0, 2), (2, 3), (2, 3))
        """
        return tuple((g.start_word, g.end_word) for g in self.groups for _ in g.digits)


@dataclass(frozen=True, slots=True)
class _Item:
    kind: int
    value: int
    word: int
    groups: tuple[DigitGroup, ...] = ()


def _written_groups(core: str, i: int) -> tuple[DigitGroup, ...]:
    parts = _SEPARATOR.split(core)
    return tuple(
        DigitGroup(parts[k], i, i + 1, parts[k + 1] if k + 1 < len(parts) else "", written=True)
        for k in range(0, len(parts), 2)
    )


def ascii_digits(text: str) -> str:
    """``text`` with full-width and other Unicode digits and marks in their ASCII form.

    >>> ascii_digits("４１１１－１１１１"), ascii_digits("٤١١١")
    ('4111-1111', '4111')
    """
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKC", text)
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)


def _word_items(i: int, word: str) -> list[_Item]:
    _, core, after = split_punctuation(word)
    if not core:
        return [_Item(_JOIN if word in _JOIN_MARKS else _OTHER, 0, i)]
    core = ascii_digits(core)
    labelled = _LABELLED.fullmatch(core)
    if labelled and _WRITTEN.fullmatch(labelled.group(1)):
        core = labelled.group(1)
    if _WRITTEN.fullmatch(core):
        if _DECIMAL.fullmatch(core):
            return [_Item(_OTHER, 0, i)]
        return [_Item(_WRITTEN_KIND, 0, i, _written_groups(core, i))]
    low = core.lower()
    if low in _JOIN_WORDS:
        return [_Item(_JOIN, 0, i)]
    entry = _WORDS.get(low)
    if entry is not None:
        if entry[0] == _OH and _INTERJECTION_MARKS.intersection(after):
            return [_Item(_OTHER, 0, i)]
        return [_Item(entry[0], entry[1], i)]
    if "-" in low:
        parts = [_WORDS.get(p) for p in low.split("-")]
        if all(p is not None and p[0] in _NUMBER_KINDS for p in parts):
            return [_Item(p[0], p[1], i) for p in parts if p is not None]
    return [_Item(_OTHER, 0, i)]


def _is(items: Sequence[_Item], pos: int, *kinds: int) -> bool:
    return pos < len(items) and items[pos].kind in kinds


def _nonzero_starter(items: Sequence[_Item], pos: int) -> bool:
    if not _is(items, pos, _UNIT, _TEEN, _TENS):
        return False
    return items[pos].value != 0


def _below_100(items: Sequence[_Item], pos: int) -> tuple[int, int]:
    """Value of a teen, tens (+ unit) or unit starting at ``pos``; the caller checked it."""
    item = items[pos]
    if item.kind == _TENS and _nonzero_starter(items, pos + 1) and items[pos + 1].kind == _UNIT:
        return item.value + items[pos + 1].value, pos + 2
    return item.value, pos + 1


def _after_hundred(items: Sequence[_Item], pos: int) -> tuple[int, int]:
    p = pos + 1 if _is(items, pos, _AND) and _nonzero_starter(items, pos + 1) else pos
    if _nonzero_starter(items, p):
        return _below_100(items, p)
    zero_then_unit = _is(items, p, _OH) or (_is(items, p, _UNIT) and items[p].value == 0)
    if zero_then_unit and _is(items, p + 1, _UNIT) and items[p + 1].value != 0:
        return items[p + 1].value, p + 2
    return 0, pos


def _after_thousand(items: Sequence[_Item], pos: int) -> tuple[int, int]:
    p = pos + 1 if _is(items, pos, _AND) and _nonzero_starter(items, pos + 1) else pos
    if not _nonzero_starter(items, p):
        return 0, pos
    value, p = _below_100(items, p)
    if value <= 9 and _is(items, p, _HUNDRED):
        rest, p = _after_hundred(items, p + 1)
        value = value * 100 + rest
    return value, p


def _cardinal(items: Sequence[_Item], pos: int) -> tuple[DigitGroup, int]:
    """Read one digit group starting at a unit/oh/teen/tens item."""
    first = items[pos]
    if first.kind == _OH or first.value == 0:
        # A zero never starts a compound: "oh four" is 0, 4 and not 4.
        return DigitGroup("0", first.word, first.word + 1, oh=first.kind == _OH), pos + 1
    value, pos = _below_100(items, pos)
    if _is(items, pos, _HUNDRED):
        rest, pos = _after_hundred(items, pos + 1)
        value = value * 100 + rest
    if value <= 999 and _is(items, pos, _THOUSAND):
        rest, pos = _after_thousand(items, pos + 1)
        value = value * 1000 + rest
    return DigitGroup(str(value), first.word, items[pos - 1].word + 1), pos


def _repeat(items: Sequence[_Item], pos: int) -> DigitGroup | None:
    """``double five`` style group at ``pos``, or None when no single digit follows."""
    if pos + 1 >= len(items):
        return None
    times, nxt = items[pos].value, items[pos + 1]
    if nxt.kind in (_UNIT, _OH):
        digit = str(nxt.value)
    elif nxt.kind == _WRITTEN_KIND and len(nxt.groups) == 1 and len(nxt.groups[0].digits) == 1:
        digit = nxt.groups[0].digits
    else:
        return None
    return DigitGroup(digit * times, items[pos].word, nxt.word + 1, oh=nxt.kind == _OH)


def digit_runs(words: Sequence[str]) -> list[DigitRun]:
    """All digit runs in ``words``, in order.

    >>> run = digit_runs(["my", "PIN", "is", "double", "five", "12."])[0]
    >>> run.digits, run.start_word, run.end_word
    ('5512', 3, 6)
    """
    items = [item for i, word in enumerate(words) for item in _word_items(i, word)]
    runs: list[DigitRun] = []
    current: list[DigitGroup] = []

    def flush() -> None:
        if current and not all(g.oh for g in current):
            runs.append(DigitRun(tuple(current)))
        current.clear()

    pos = 0
    while pos < len(items):
        item = items[pos]
        if item.kind == _WRITTEN_KIND:
            current.extend(item.groups)
            pos += 1
        elif item.kind in _STARTERS:
            group, pos = _cardinal(items, pos)
            current.append(group)
        elif item.kind == _MULT and (group_ := _repeat(items, pos)) is not None:
            current.append(group_)
            pos += 2
        elif item.kind == _JOIN:
            pos += 1
        else:
            flush()
            pos += 1
    flush()
    return runs


def spoken_digits(words: Sequence[str]) -> list[str]:
    """Just the digit strings of :func:`digit_runs`.

    >>> spoken_digits("oh four twenty eight and 555-867-5309".split())
    ['0428', '5558675309']
    """
    return [run.digits for run in digit_runs(words)]
