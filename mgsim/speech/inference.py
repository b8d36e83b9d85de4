"""What a reader can infer from a masked spoken number.

The vendor masks one ``#`` per character, so a masked word keeps its length. Written
digits give nothing away by it (``4111`` → ``####``: four digits, any four), but a spoken
digit does: ``##`` can only be ``oh``, ``#`` only ``o``, ``#######`` among the tens only
``seventy``. A reader who knows the masked words are a number being read (a card number
read digit by digit, an expiry) narrows each word down to the number words of its length.

:func:`candidates` gives the values a masked word can still stand for; a word whose mask
leaves one value **reveals** it (:func:`reveals`). The leak analysis reports a span with
such a word as inferable, not hidden (:mod:`mgsim.speech.leaks`).

The reader is assumed to know which kind of number word each mask hides (a digit, a teen,
a tens word, a hyphenated compound); that is the cautious assumption, since a span's
length and context usually tell.

>>> sorted(candidates("oh")), sorted(candidates("seven")), candidates("4111")
([0], [3, 7, 8], None)
>>> reveals("oh"), reveals("zero"), reveals("seventy")
(True, False, True)
"""

from __future__ import annotations

from collections import defaultdict

from mgsim.speech.numbers import NUMBER_WORDS, split_punctuation

__all__ = ["candidates", "reveals"]


def _by_length() -> dict[str, dict[int, frozenset[int]]]:
    table: dict[str, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    for word, (kind, value) in NUMBER_WORDS.items():
        table[kind][len(word)].add(value)
    units = {w: v for w, (k, v) in NUMBER_WORDS.items() if k == "unit" and v}
    for tens, (kind, value) in NUMBER_WORDS.items():
        if kind == "tens":
            for unit, digit in units.items():
                table["compound"][len(tens) + 1 + len(unit)].add(value + digit)
    return {k: {n: frozenset(v) for n, v in by_n.items()} for k, by_n in table.items()}


_BY_LENGTH = _by_length()


def _kind(core: str) -> str | None:
    entry = NUMBER_WORDS.get(core)
    if entry is not None:
        return entry[0]
    parts = core.split("-")
    if len(parts) == 2 and [NUMBER_WORDS.get(p, ("", 0))[0] for p in parts] == ["tens", "unit"]:
        return "compound"
    return None


def candidates(word: str) -> frozenset[int] | None:
    """The values a reader of ``word``'s mask can take it for; None when ``word`` is not a
    spoken number word (written digits, fillers, other words), whose mask says nothing."""
    core = split_punctuation(word)[1].lower()
    kind = _kind(core)
    if kind is None:
        return None
    return _BY_LENGTH[kind][len(core)]


def reveals(word: str) -> bool:
    """True when ``word`` masked one ``#`` per character can only be one number."""
    found = candidates(word)
    return found is not None and len(found) == 1
