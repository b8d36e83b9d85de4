"""The redaction policy: find sensitive numbers in a transcript and mask them.

Redaction works on **words** so that the utterance text and the word tokens
(``detailedToken``) always agree: a sensitive span is a range of words, and every word in it
is masked whole. Numbers are found by :mod:`mgsim.speech.numbers` (written, spoken, grouped,
"oh", "double five", small cardinals), then each digit run is classified.

Entities (the ``entity`` of a :class:`Span`) and the policy flag that enables each:

=================  ===================  ================================================
entity             flag                 what
=================  ===================  ================================================
``card_number``    ``card_number``      13–19 digits passing the Luhn check
``ssn``            ``ssn``              9 digits grouped 3-2-4, or after "social"/"SSN"
``nine_digit``     ``nine_digit``       any other 9 digits (also an SSN when ``ssn`` is off)
``phone``          ``phone``            10 digits grouped 3-3-4 or after "phone", "call",
                                        "cell"...; 11 digits starting with 1
``ten_digit``      ``ten_digit``        any other 10 digits (also a phone when ``phone``
                                        is off)
``expiry``         ``short_numeric``    written ``MM/YY``, ``MM/YYYY``, or 4 (or 6) digits
                                        after "expiration", "expires", "exp"...
``cvv``            ``short_numeric``    3–4 digits after "CVV", "CVC", "security code"
``pin``            ``short_numeric``    3–4 digits after "PIN"
``short_numeric``  ``short_numeric``    any other 3–8 digits
=================  ===================  ================================================

Keywords count within the 8 words before a number (never after it). Names are best effort;
what is masked depends only on the flags.

**Context.** The policy reads a participant's words across their utterances
(:func:`find_sensitive`'s ``context``: what the same participant said just before, which
the gateway keeps per call, see :class:`mgsim.speech.transcripts.RedactionHistory`). A
number read in two breaths (an Amex read 10 then 5 digits around the agent's "mm-hmm") is
one number, and a keyword said a breath earlier ("the expiry is, let me see... oh four
twenty twenty eight") names the number after it. Context only ever adds masks: the words
alone are masked at least as much.

Decisions where the vendor documentation is silent:

* A 13–19 digit run that fails Luhn is **not** a card. Runs that match no rule as a whole are
  cut between their digit groups (anywhere between spoken digits) into pieces that do, so as
  to mask as many digits as possible, preferring fewer pieces. With payment rules on, a
  Luhn-invalid 16-digit run is therefore still masked piecewise as short numerics; with them
  off it stays visible unless a piece fits another rule (9 or 10 digits, or a Luhn-valid
  stretch of 13–19). A card number and its expiry spoken in one breath are found as a card
  plus a 3–4 digit numeric.
* :meth:`RedactionPolicy.default` turns every rule on, **including short numerics**: the
  vendor enables them when agents take payments, and agents do in mgsim's scenarios. Short
  numerics are skipped when they are clearly amounts or clock times: ``$`` before, ``%``
  after, or followed by dollars, bucks, cents, percent, o'clock, am or pm. Otherwise
  times and years are 3–4 digit numerics like any other ("at three thirty" is masked,
  "at three thirty pm" is not). One or two digits are never masked ("I have two cats").
* A masked word becomes one mask character per character of its **core** (the part between
  its first and last letter or digit); punctuation before and after stays outside the mask
  (``(555)`` → ``(###)``, ``1111,`` → ``####,``). Separators inside a written token are masked
  with it: ``4111-1111-1111-1111`` → ``###################``, so the format of a number
  leaks nothing either. Filler words inside a span (``dash``, ``uh``) are masked too.
* **A number is never left half masked.** A run with a sensitive piece is masked whole:
  digits no piece took join the piece before them. Under the payment rules a number of 5–8
  digits, which no vendor rule names, is masked whole as a ``short_numeric`` (a 6-digit
  expiry without its keyword, a ZIP code, a card read in pieces), so "one two three four
  five" and "12345" are treated alike; without the payment rules both stay.
* **Corrections.** A 1–2 digit number within 3 words of a sensitive span is masked with it
  ("four four nine, sorry, that's *four* not five, eight..."): a digit said apart, or
  corrected, belongs to the number around it. Amounts (``$5``, ``5 dollars``) stay.
* Written forms an ASR engine or a typist produces: ``_`` separates digit groups like ``-``
  (``4111_1111_1111_1111``), full-width and other Unicode digits count as their ASCII
  digits, and a token with a label glued on (``cc#4111111111111111``, ``PIN:1234``) is
  masked whole (:mod:`mgsim.speech.numbers`).
* Redaction is idempotent: masks contain no digits, so redacting twice changes nothing.
* One ``#`` per character is the vendor's behaviour and stays, although it gives spoken
  digits away (``##`` can only be "oh"): the leak analysis reports such a span as
  inferable (:mod:`mgsim.speech.inference`), not as hidden.

How ``redactionOutput`` is delivered (:func:`apply_output_mode`; the vendor shows only the
redacted shape): each webhook ``utterance`` item carries ``text``. With ``redacted`` it is the
masked text, with ``unredacted`` the original, and with ``redacted_and_unredacted`` ``text``
is the masked text and the same item also carries ``unredactedText`` with the original::

    "utterance": [{"text": "my PIN is ####", "unredactedText": "my PIN is 1234"}]

>>> redact_text("my PIN number is 1234")
'my PIN number is ####'
>>> redact_words("card four one one one, one one one one, one one one one, one one one one".split()
...     ).spans[0].entity
'card_number'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from mgsim.errors import ConfigError
from mgsim.speech.numbers import DigitGroup, DigitRun, digit_runs, split_punctuation

__all__ = [
    "ENTITIES",
    "OUTPUT_MODES",
    "OutputMode",
    "ParticipantPolicies",
    "RedactionPolicy",
    "RedactionResult",
    "Span",
    "apply_output_mode",
    "find_sensitive",
    "luhn_valid",
    "mask_word",
    "output_mode_problem",
    "redact_text",
    "redact_words",
]

ENTITIES = (
    "card_number",
    "ssn",
    "nine_digit",
    "phone",
    "ten_digit",
    "expiry",
    "cvv",
    "pin",
    "short_numeric",
)
"""Every entity name a :class:`Span` can carry."""

OutputMode = Literal["redacted", "unredacted", "redacted_and_unredacted"]
OUTPUT_MODES: tuple[OutputMode, ...] = ("redacted", "unredacted", "redacted_and_unredacted")

# The first five entities have a flag of their own; the 3–4 digit ones share one.
_FLAGS = (*ENTITIES[:5], "short_numeric")
_FLAG_OF = {e: e for e in ENTITIES[:5]} | dict.fromkeys(ENTITIES[5:], "short_numeric")
_MAX_DIGITS = 19
_CONTEXT_WINDOW = 8
_NEAR_WORDS = 3  # a 1–2 digit number this close to a sensitive span is part of it
_KEYWORD_GROUPS = {
    "pin": ("pin",),
    # "security" after "social" is retagged where the tags are computed.
    "cvv": ("cvv", "cvv2", "cvc", "cvc2", "csc", "security"),
    "expiry": ("expiration", "expiry", "expires", "expire", "expiring", "expired", "exp", "thru"),
    "ssn": ("ssn", "social"),
    "phone": ("phone", "telephone", "cell", "cellphone", "mobile", "call", "callback", "reach"),
}
_KEYWORDS = {word: tag for tag, words in _KEYWORD_GROUPS.items() for word in words}
_QUANTITY_WORDS = frozenset(
    {"dollar", "dollars", "buck", "bucks", "cents", "percent", "o'clock", "am", "pm", "a.m", "p.m"}
)
_CURRENCY_MARKS = frozenset("$£€")
# Each digit of the doubled positions replaced by the digit sum of its double.
_LUHN_DOUBLE = str.maketrans("0123456789", "0246813579")
_WHITESPACE = re.compile(r"(\s+)")


@dataclass(frozen=True, slots=True)
class RedactionPolicy:
    """Which entities to mask, and with what character.

    Each flag enables the entity of the same name; ``short_numeric`` enables all 3–4 digit
    rules (``cvv``, ``pin``, ``expiry``, ``short_numeric``), the vendor's "payment" rules.

    >>> RedactionPolicy.default(payments=False).short_numeric
    False
    >>> RedactionPolicy.none().enabled
    False
    """

    card_number: bool = True
    ssn: bool = True
    nine_digit: bool = True
    phone: bool = True
    ten_digit: bool = True
    short_numeric: bool = True
    mask_char: str = "#"

    def __post_init__(self) -> None:
        m = self.mask_char
        if len(m) != 1 or m.isalnum() or m.isspace():
            # A digit or letter mask would be re-read as a number, breaking idempotency.
            raise ConfigError(f"mask_char must be one non-alphanumeric character, got {m!r}")

    @classmethod
    def default(cls, *, payments: bool = True) -> RedactionPolicy:
        """The vendor's default rules; ``payments`` adds the 3–4 digit rules (on in mgsim)."""
        return cls(short_numeric=payments)

    @classmethod
    def none(cls) -> RedactionPolicy:
        """No rule at all (what a start request for redacted output is rejected for)."""
        return cls(False, False, False, False, False, False)

    @property
    def enabled(self) -> bool:
        """True when at least one rule is on."""
        return any(getattr(self, flag) for flag in _FLAGS)

    def allows(self, entity: str) -> bool:
        """Whether ``entity`` (one of :data:`ENTITIES`) is masked under this policy."""
        flag = _FLAG_OF.get(entity)
        if flag is None:
            raise ConfigError(f"unknown entity {entity!r}; expected one of {ENTITIES}")
        return bool(getattr(self, flag))


@dataclass(frozen=True, slots=True)
class ParticipantPolicies:
    """Redaction rules per participant; both default to :meth:`RedactionPolicy.default`.

    >>> p = ParticipantPolicies(agent=RedactionPolicy.default(payments=False))
    >>> p.for_role("customer").short_numeric, p.for_role("agent").short_numeric
    (True, False)
    """

    customer: RedactionPolicy = field(default_factory=RedactionPolicy.default)
    agent: RedactionPolicy = field(default_factory=RedactionPolicy.default)

    def for_role(self, role: str) -> RedactionPolicy:
        """The policy of ``"customer"`` or ``"agent"``."""
        if role == "customer":
            return self.customer
        if role == "agent":
            return self.agent
        raise ConfigError(f"role must be 'customer' or 'agent', got {role!r}")

    @property
    def enabled(self) -> bool:
        """True when either participant has a rule on."""
        return self.customer.enabled or self.agent.enabled


@dataclass(frozen=True, slots=True)
class Span:
    """Words ``start_word`` up to (not including) ``end_word`` hold ``entity``'s ``digits``."""

    start_word: int
    end_word: int
    entity: str
    digits: str


@dataclass(frozen=True, slots=True)
class RedactionResult:
    """The masked words, the spans found, and the words as they came in."""

    words: tuple[str, ...]
    spans: tuple[Span, ...]
    original: tuple[str, ...]

    @property
    def text(self) -> str:
        """The masked words joined by single spaces."""
        return " ".join(self.words)

    @property
    def changed(self) -> bool:
        return bool(self.spans)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment card numbers.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    if len(digits) < 2 or not (digits.isascii() and digits.isdigit()):
        return False
    rev = digits[::-1]
    doubled = rev[1::2].translate(_LUHN_DOUBLE)
    return (sum(map(int, rev[0::2])) + sum(map(int, doubled))) % 10 == 0


def mask_word(word: str, mask_char: str = "#") -> str:
    """Mask a word's core, one character per character, keeping outer punctuation.

    >>> mask_word("(555)"), mask_word("1111,"), mask_word("4111-1111")
    ('(###)', '####,', '#########')
    """
    before, core, after = split_punctuation(word)
    return before + mask_char * len(core) + after


class _Context:
    """Per-transcript facts the classifier looks up: keyword tags and quantity marks."""

    __slots__ = ("after", "before", "cores", "tags")

    def __init__(self, words: Sequence[str]) -> None:
        parts = [split_punctuation(w) for w in words]
        self.before = [p[0] for p in parts]
        self.after = [p[2] for p in parts]
        self.cores = [p[1].lower() for p in parts]
        self.tags: list[str | None] = []
        for i, core in enumerate(self.cores):
            tag = _KEYWORDS.get(core)
            if core == "security" and i and self.cores[i - 1] == "social":
                tag = "ssn"
            self.tags.append(tag)

    def keyword(self, start: int) -> str | None:
        """Nearest keyword tag in the words just before ``start``."""
        for k in range(start - 1, max(start - _CONTEXT_WINDOW, 0) - 1, -1):
            if self.tags[k] is not None:
                return self.tags[k]
        return None

    def is_quantity(self, start: int, end: int) -> bool:
        if _CURRENCY_MARKS.intersection(self.before[start]) or "%" in self.after[end - 1]:
            return True
        return end < len(self.cores) and self.cores[end] in _QUANTITY_WORDS


def _expiry_form(groups: Sequence[DigitGroup], digits: str) -> bool:
    if len(groups) != 2 or groups[0].sep != "/":
        return False
    lens = (len(groups[0].digits), len(groups[1].digits))
    return (
        lens in ((2, 2), (2, 4))
        and 1 <= int(digits[:2]) <= 12
        and (lens[1] == 2 or digits[2:4] == "20")
    )


def _lengths(policy: RedactionPolicy) -> frozenset[int]:
    """Digit counts worth classifying under ``policy`` (the rest can never be masked)."""
    lengths: set[int] = set()
    if policy.card_number:
        lengths.update(range(13, _MAX_DIGITS + 1))
    if policy.ssn or policy.nine_digit:
        lengths.add(9)
    if policy.phone or policy.ten_digit:
        lengths.add(10)
    if policy.phone:
        lengths.add(11)
    if policy.short_numeric:
        lengths.update(range(3, 9))
    return frozenset(lengths)


def _candidates(groups: Sequence[DigitGroup], digits: str, ctx: _Context) -> tuple[str, ...]:
    """Entities a piece of a run could be, most specific first."""
    n = len(digits)
    start, end = groups[0].start_word, groups[-1].end_word
    if 13 <= n <= _MAX_DIGITS:
        return ("card_number",) if luhn_valid(digits) else ()
    lens = tuple(len(g.digits) for g in groups) if len(groups) <= 4 else ()
    if n == 9:
        if lens == (3, 2, 4) or ctx.keyword(start) == "ssn":
            return ("ssn", "nine_digit")
        return ("nine_digit",)
    if n == 10:
        if lens == (3, 3, 4) or ctx.keyword(start) == "phone":
            return ("phone", "ten_digit")
        return ("ten_digit",)
    if n == 11:
        return ("phone",) if digits[0] == "1" else ()
    if not 3 <= n <= 8 or ctx.is_quantity(start, end):
        return ()
    keyword = ctx.keyword(start)
    if _expiry_form(groups, digits) or (keyword == "expiry" and n in (4, 6)):
        return ("expiry",)
    if keyword in ("pin", "cvv", "expiry") and n <= 4:
        return (keyword,)
    return ("short_numeric",)


def _spans_in_run(
    run: DigitRun, ctx: _Context, policy: RedactionPolicy, lengths: frozenset[int]
) -> list[Span]:
    """Cut a run into maskable pieces, masking the most digits with the fewest pieces."""
    groups = run.groups
    m = len(groups)
    all_digits = run.digits
    offsets = [0]
    for g in groups:
        offsets.append(offsets[-1] + len(g.digits))
    # best[i] scores groups[:i] as (masked digits, -pieces); back[i] is the last piece.
    best: list[tuple[int, int]] = [(0, 0)] * (m + 1)
    back: list[tuple[int, str] | None] = [None] * (m + 1)
    for i in range(1, m + 1):
        score, choice = best[i - 1], None
        total = 0
        for j in range(i - 1, -1, -1):
            total += len(groups[j].digits)
            if total > _MAX_DIGITS:
                break
            if total not in lengths:
                continue
            digits = all_digits[offsets[j] : offsets[i]]
            found = _candidates(groups[j:i], digits, ctx)
            entity = next((e for e in found if policy.allows(e)), None)
            if entity is None:
                continue
            cand = (best[j][0] + total, best[j][1] - 1)
            if cand > score:
                score, choice = cand, (j, entity)
        best[i], back[i] = score, choice
    pieces: list[tuple[int, int, str]] = []  # (first group, end group, entity)
    i = m
    while i > 0:
        step = back[i]
        if step is None:
            i -= 1
            continue
        j, entity = step
        pieces.append((j, i, entity))
        i = j
    pieces.reverse()
    return [
        Span(
            groups[j].start_word,
            groups[i - 1].end_word,
            entity,
            all_digits[offsets[j] : offsets[i]],
        )
        for j, i, entity in _whole_run(pieces, m)
    ]


def _whole_run(pieces: list[tuple[int, int, str]], m: int) -> list[tuple[int, int, str]]:
    """``pieces`` (group ranges of a run of ``m`` groups) grown to cover every group: a
    number is never left half masked. Groups no piece took join the piece before them (the
    first piece when they come first)."""
    if not pieces:
        return pieces
    out = []
    for k, (j, _end, entity) in enumerate(pieces):
        lo = 0 if k == 0 else j
        hi = pieces[k + 1][0] if k + 1 < len(pieces) else m
        out.append((lo, hi, entity))
    return out


def find_sensitive(
    words: Sequence[str], policy: RedactionPolicy, *, context: Sequence[str] = ()
) -> list[Span]:
    """Sensitive spans in ``words`` under ``policy``, in order and not overlapping.

    Pieces cut inside one written token share that word; they are merged into one span
    named after the first piece. ``context`` is what the same participant said just before
    (their previous utterances, oldest first): a number that began there, or a keyword
    said there, counts for ``words`` too. Spans lie within ``words`` (indexes into it).

    >>> find_sensitive("my ssn is 123-45-6789".split(), RedactionPolicy.default())
    [Span(start_word=3, end_word=4, entity='ssn', digits='123456789')]
    >>> find_sensitive(["oh", "four", "twenty", "twenty", "eight"], RedactionPolicy.default(),
    ...                context=["the", "expiry", "is"])[0].entity
    'expiry'
    """
    if not policy.enabled:
        return []
    if context:
        offset = len(context)
        joined = _find(list(context) + list(words), policy)
        # Digits of these words alone: an utterance opening with "Oh, great" right after
        # a number has none, so nothing of it continues that number.
        own = [(r.start_word, r.end_word) for r in digit_runs(words)]
        spans = [
            Span(max(sp.start_word - offset, 0), sp.end_word - offset, sp.entity, sp.digits)
            for sp in joined
            if sp.end_word > offset
            and (sp.start_word >= offset or any(a < sp.end_word - offset for a, _ in own))
        ]
        # Context can only add: whatever the words alone hold is masked as well.
        alone = _find(words, policy)
        covered = {k for sp in spans for k in range(sp.start_word, sp.end_word)}
        extra = [sp for sp in alone if not covered.intersection(range(sp.start_word, sp.end_word))]
        return sorted(spans + extra, key=lambda sp: sp.start_word)
    return _find(words, policy)


def _find(words: Sequence[str], policy: RedactionPolicy) -> list[Span]:
    ctx = _Context(words)
    lengths = _lengths(policy)
    merged: list[Span] = []
    loose: list[DigitRun] = []
    for run in digit_runs(words):
        found = _spans_in_run(run, ctx, policy, lengths)
        if not found:
            loose.append(run)
        for span in found:
            if merged and span.start_word < merged[-1].end_word:
                last = merged[-1]
                end = max(last.end_word, span.end_word)
                merged[-1] = Span(last.start_word, end, last.entity, last.digits + span.digits)
            else:
                merged.append(span)
    return _near_spans(merged, loose, ctx)


def _near_spans(spans: list[Span], loose: list[DigitRun], ctx: _Context) -> list[Span]:
    """``spans`` plus the 1–2 digit numbers said within a few words of one: a correction
    ("four four nine, sorry, that's four not five, eight four...") or a digit read apart
    belongs to the number around it."""
    if not spans:
        return spans
    out = list(spans)
    for run in loose:
        if len(run.digits) > 2 or ctx.is_quantity(run.start_word, run.end_word):
            continue
        gaps = [
            (run.start_word - sp.end_word if sp.end_word <= run.start_word
             else sp.start_word - run.end_word, sp)
            for sp in spans
        ]  # fmt: skip
        gap, near = min(gaps, key=lambda g: g[0])
        if 0 <= gap <= _NEAR_WORDS:
            out.append(Span(run.start_word, run.end_word, near.entity, run.digits))
    return sorted(out, key=lambda sp: sp.start_word)


def redact_words(
    words: Sequence[str],
    policy: RedactionPolicy | None = None,
    *,
    context: Sequence[str] = (),
) -> RedactionResult:
    """Mask every word of every sensitive span (default policy when none is given);
    ``context`` is the participant's words just before (see :func:`find_sensitive`).

    >>> redact_words(["call", "555-867-5309", "now"]).words
    ('call', '############', 'now')
    """
    policy = RedactionPolicy.default() if policy is None else policy
    original = tuple(words)
    spans = find_sensitive(original, policy, context=context)
    out = list(original)
    for span in spans:
        for k in range(span.start_word, span.end_word):
            out[k] = mask_word(out[k], policy.mask_char)
    return RedactionResult(tuple(out), tuple(spans), original)


def redact_text(text: str, policy: RedactionPolicy | None = None) -> str:
    """Redact free text, keeping its whitespace exactly.

    >>> redact_text("PIN:  oh four twenty eight.")
    'PIN:  ## #### ###### #####.'
    """
    pieces = _WHITESPACE.split(text)
    # re.split with a capture group alternates text and whitespace, text first.
    words = pieces[0::2]
    masked = redact_words(words, policy).words
    pieces[0::2] = masked
    return "".join(pieces)


def output_mode_problem(
    mode: str, *, detailed_token: bool, policy: RedactionPolicy | ParticipantPolicies
) -> str | None:
    """Why a start request's ``redactionOutput`` must be rejected (400-202), or None.

    >>> output_mode_problem("redacted", detailed_token=True, policy=RedactionPolicy.default())
    'detailedToken=true cannot be combined with redactionOutput=redacted'
    """
    if mode not in OUTPUT_MODES:
        return f"redactionOutput must be one of {', '.join(OUTPUT_MODES)}, got {mode!r}"
    if mode == "unredacted":
        return None
    if detailed_token:
        return f"detailedToken=true cannot be combined with redactionOutput={mode}"
    if not policy.enabled:
        return f"redactionOutput={mode} needs redaction rules, and none are configured"
    return None


def apply_output_mode(
    words: Sequence[str],
    mode: OutputMode,
    policy: RedactionPolicy | None = None,
    *,
    context: Sequence[str] = (),
) -> dict[str, str]:
    """One webhook ``utterance`` item for ``words`` under ``redactionOutput=mode``.

    ``text`` is redacted unless the mode is ``unredacted``; ``redacted_and_unredacted`` adds
    ``unredactedText`` with the original words.

    >>> apply_output_mode(["PIN", "1234"], "redacted_and_unredacted")
    {'text': 'PIN ####', 'unredactedText': 'PIN 1234'}
    """
    policy = RedactionPolicy.default() if policy is None else policy
    if mode not in OUTPUT_MODES:
        raise ConfigError(f"redactionOutput must be one of {OUTPUT_MODES}, got {mode!r}")
    original = " ".join(words)
    if mode == "unredacted":
        return {"text": original}
    if not policy.enabled:
        raise ConfigError(f"redactionOutput={mode} needs at least one redaction rule")
    redacted = redact_words(words, policy, context=context).text
    if mode == "redacted":
        return {"text": redacted}
    return {"text": redacted, "unredactedText": original}
