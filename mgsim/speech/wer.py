"""Word error rate: how far a recognizer's words are from what was said.

>>> word_error_rate("my card number is".split(), "my card is".split())
0.25
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["WordErrors", "normalise_words", "word_error_rate", "word_errors"]


_NOT_WORD = re.compile(r"[^a-z0-9']+")


def normalise_words(words: Iterable[str]) -> list[str]:
    """Lower-case words with punctuation removed; hyphens and other marks split words,
    apostrophes inside a word stay (``it's`` is one word), edge apostrophes go.

    >>> normalise_words(["It's", "twenty-seven,", "'quoted'", "--"])
    ["it's", 'twenty', 'seven', 'quoted']
    """
    out: list[str] = []
    for word in words:
        for piece in _NOT_WORD.split(word.lower()):
            piece = piece.strip("'")
            if piece:
                out.append(piece)
    return out


@dataclass(frozen=True, slots=True)
class WordErrors:
    """Edit counts of a hypothesis against a reference (a minimal word-level alignment).

    Add them up over calls before taking the rate, so long calls weigh more.
    """

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_words: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors per reference word: 0.0 for two empty transcripts, ``inf`` when only
        the reference is empty."""
        if self.reference_words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.reference_words

    def __add__(self, other: WordErrors) -> WordErrors:
        return WordErrors(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_words + other.reference_words,
        )


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> WordErrors:
    """Substitutions, deletions and insertions turning ``reference`` into ``hypothesis``,
    after :func:`normalise_words`; among alignments with fewest edits, the one with the
    fewest substitutions.

    >>> word_errors(["a", "b", "c"], ["a", "x", "c", "d"])
    WordErrors(substitutions=1, deletions=0, insertions=1, reference_words=3)
    """
    ref = normalise_words(reference)
    hyp = normalise_words(hypothesis)
    # Row i holds (edits, substitutions, deletions, insertions) of ref[:i] vs hyp[:j];
    # tuples compare edits first, then prefer fewer substitutions.
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, r in enumerate(ref, 1):
        row = [(i, 0, i, 0)]
        for j, h in enumerate(hyp, 1):
            e, s, d, n = prev[j - 1]
            diag = (e, s, d, n) if r == h else (e + 1, s + 1, d, n)
            e, s, d, n = prev[j]
            delete = (e + 1, s, d + 1, n)
            e, s, d, n = row[j - 1]
            insert = (e + 1, s, d, n + 1)
            row.append(min(diag, delete, insert))
        prev = row
    _, s, d, n = prev[-1]
    return WordErrors(s, d, n, len(ref))


def word_error_rate(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words.

    >>> word_error_rate(["hello", "world"], ["hello"])
    0.5
    """
    return word_errors(reference, hypothesis).rate
