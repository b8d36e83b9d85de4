"""The call script: a plain-text format a solution engineer can write by hand.

A script describes one call, line by line, in the order things happen::

    # title: Card payment
    # direction: inbound
    [ivr] Thank you for calling Acme Bank. Your call may be recorded.
    [hold 4s music]
    agent: Thanks for holding, this is Sam. How can I help?
    customer: I'd like to pay my bill.
    agent: Sure. What's the card number?
    customer: {card_number: four one one one, one one one one, one one one one, one one one one}
    customer: Expiry {expiry: twelve twenty seven} and the code is {cvv: one two three}.
    [silence 2s]
    [transfer agent2]

Lines
    ``customer: words`` / ``agent: words``
        A turn. The agent's voice is ``agent`` until a ``[transfer ...]`` changes it.
    ``[ivr] words``
        A recorded prompt, played on the agent channel (the one the customer hears).
    ``[hold <duration> [music|beeps]]``
        Hold: synthesised music (default) or a periodic beep on the agent channel.
    ``[silence <duration>]``
        Nobody speaks; only line noise.
    ``[transfer <voice> [<duration>]]``
        Ringback on the agent channel (default 3 s), then ``<voice>`` (``agent``/``agent2``)
        speaks for the agent from the next turn on.
    ``# key: value``
        Before the first turn or directive: a header. Keys: ``title``, ``direction``
        (``inbound``/``outbound``, default inbound), ``call_id`` (default: the file name),
        ``seed`` (default: derived from the call id). Every other ``#`` line is a comment.

Durations are ``4s``, ``1.5s`` or ``800ms``. Numbers in speech are spelled out (``four one
one one``; digits of any script, circled numerals and superscripts alike are refused), so the
words of the sidecar are exactly what is said. Words are Latin-script letters with
punctuation around them: the voices speak English, and would read an emoji or CJK text as
something else (an emoji's name). ``{label: words}`` marks a sensitive span; labels are
those of :data:`LABELS`.

A script is UTF-8 (a byte-order mark is allowed) and at most :data:`MAX_SCRIPT_CHARS`
characters, :data:`MAX_TURNS` turns and :data:`MAX_DIRECTIVES_MS` of holds, silences and
ringback: synthesis takes about a tenth of a second and 0.6 MB per turn, so a script past
these bounds would run for minutes and take gigabytes.

Anything else raises :class:`ScriptError` naming the line.

>>> s = parse_script("# title: Hi\\nagent: Hello, {phone: five five five}.")
>>> [t.text for t in s.turns[0].tokens], s.turns[0].spans[0].label
(['Hello', 'five', 'five', 'five'], 'phone')
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mgsim.errors import ConfigError

__all__ = [
    "AGENT_VOICES",
    "LABELS",
    "MAX_DIRECTIVES_MS",
    "MAX_SCRIPT_CHARS",
    "MAX_TURNS",
    "Event",
    "Hold",
    "Script",
    "ScriptError",
    "Silence",
    "Span",
    "Token",
    "Transfer",
    "Turn",
    "load_script",
    "parse_script",
]

LABELS = ("card_number", "expiry", "cvv", "ssn", "phone")
"""Labels a sensitive span may carry."""

AGENT_VOICES = ("agent", "agent2")
"""Voices that can speak for the agent; ``[transfer agent2]`` switches between them."""

MAX_SCRIPT_CHARS = 64_000
"""Longest script text (about 60 times the sample calls' scripts)."""
MAX_TURNS = 400
"""Most turns (IVR prompts included) in one script: a call of about half an hour."""
MAX_DIRECTIVES_MS = 3_600_000
"""Most hold, silence and ringback time in one script (an hour)."""

Speaker = Literal["customer", "agent"]
Direction = Literal["inbound", "outbound"]

_MIN_DURATION_MS = 100
_MAX_DURATION_MS = 300_000
_DEFAULT_TRANSFER_MS = 3000
_HOLD_STYLES = ("music", "beeps")
_HEADER_KEYS = ("title", "direction", "call_id", "seed")

_LETTER = r"[^\W\d_]"
_WORD_RE = re.compile(
    rf"^(?P<before>\W*)(?P<word>{_LETTER}(?:(?:{_LETTER}|['’.\-])*{_LETTER})?)(?P<after>\W*)$"
)
_PUNCT_RE = re.compile(r"^[^\w\s]+$")
# Every form below is used with fullmatch: `$` would also accept a trailing newline.
_HEADER_RE = re.compile(r"#\s*(?P<key>[A-Za-z_]+)\s*:\s*(?P<value>.*?)\s*")
_TURN_RE = re.compile(r"(?P<who>[A-Za-z_][A-Za-z0-9_]*)\s*:(?P<text>.*)")
_DIRECTIVE_RE = re.compile(r"\[(?P<body>[^\[\]]*)\](?P<rest>.*)")
_DURATION_RE = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s)")
_CALL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ScriptError(ConfigError):
    """A call script could not be parsed; ``line`` is 1-based (``None`` for the whole script).

    >>> str(ScriptError("unknown label 'pin'", line=3, source="card.txt"))
    "card.txt:3: unknown label 'pin'"
    """

    def __init__(self, message: str, *, line: int | None = None, source: str = "<script>"):
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")
        self.line = line
        self.source = source
        self.detail = message


@dataclass(frozen=True, slots=True)
class Token:
    """One spoken word: ``text`` is the bare word; punctuation around it steers pauses."""

    text: str
    before: str = ""
    after: str = ""
    label: str | None = None

    @property
    def spoken(self) -> str:
        """The word with its punctuation, as handed to the synthesiser."""
        return f"{self.before}{self.text}{self.after}"


@dataclass(frozen=True, slots=True)
class Span:
    """A labelled sensitive span: tokens ``first``..``last`` (inclusive) of its turn."""

    label: str
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Turn:
    """Someone speaks: a customer or agent turn, or an IVR prompt (``kind="ivr"``)."""

    line: int
    speaker: Speaker
    voice: str
    tokens: tuple[Token, ...]
    spans: tuple[Span, ...] = ()
    kind: Literal["speech", "ivr"] = "speech"

    @property
    def text(self) -> str:
        """The turn's text without span markup."""
        return " ".join(t.spoken for t in self.tokens)


@dataclass(frozen=True, slots=True)
class Hold:
    """The customer is on hold: music or beeps on the agent channel."""

    line: int
    duration_ms: int
    style: Literal["music", "beeps"] = "music"


@dataclass(frozen=True, slots=True)
class Silence:
    """Nobody speaks for ``duration_ms``."""

    line: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Transfer:
    """Ringback for ``duration_ms``, then ``to_voice`` speaks for the agent."""

    line: int
    to_voice: str
    duration_ms: int = _DEFAULT_TRANSFER_MS


Event = Turn | Hold | Silence | Transfer


@dataclass(frozen=True, slots=True)
class Script:
    """A parsed call script."""

    call_id: str
    title: str
    direction: Direction
    seed: int
    events: tuple[Event, ...]
    source: str = "<script>"

    @property
    def turns(self) -> tuple[Turn, ...]:
        """The events in which someone speaks (IVR prompts included)."""
        return tuple(e for e in self.events if isinstance(e, Turn))


def load_script(path: str | Path) -> Script:
    """Read and parse a script file; the call id defaults to the file's stem.

    The file is UTF-8, with or without a byte-order mark; one that is not, or is larger
    than the limit, raises :class:`ScriptError` before anything is parsed.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > 4 * MAX_SCRIPT_CHARS:  # a UTF-8 character is at most 4 bytes
            raise ScriptError(
                f"{size} bytes is over the limit of {MAX_SCRIPT_CHARS} characters",
                source=p.name,
            )
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScriptError(f"not UTF-8 text (byte {exc.start})", source=p.name) from None
    except OSError as exc:
        raise ScriptError(f"cannot read the script: {exc.strerror}", source=str(p)) from None
    return parse_script(text, call_id=p.stem, source=p.name)


def parse_script(text: str, *, call_id: str = "call", source: str = "<script>") -> Script:
    """Parse script text; ``call_id`` applies unless the script sets ``# call_id:``.

    Raises :class:`ScriptError` with the offending line number.
    """
    return _Parser(source).parse(text, call_id)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.voice = "agent"
        self.pending = ""

    def error(self, message: str, line: int | None = None) -> ScriptError:
        return ScriptError(message, line=line, source=self.source)

    def parse(self, text: str, default_call_id: str) -> Script:
        if len(text) > MAX_SCRIPT_CHARS:
            raise self.error(f"{len(text)} characters is over the limit of {MAX_SCRIPT_CHARS}")
        # A byte-order mark is no part of the first line; composed forms (é as one
        # character, not e and a combining accent) make a word's letters letters.
        text = unicodedata.normalize("NFC", text.removeprefix("\ufeff"))
        headers: dict[str, tuple[str, int]] = {}
        events: list[Event] = []
        turns, directive_ms = 0, 0
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                m = _HEADER_RE.fullmatch(line)
                if m and not events:
                    key = m["key"]
                    if key not in _HEADER_KEYS:
                        known = ", ".join(_HEADER_KEYS)
                        raise self.error(f"unknown header {key!r} (known: {known})", lineno)
                    if key in headers:
                        raise self.error(f"header {key!r} given twice", lineno)
                    headers[key] = (m["value"], lineno)
                continue
            event = self.event(line, lineno)
            events.append(event)
            if isinstance(event, Turn):
                turns += 1
                if turns > MAX_TURNS:
                    raise self.error(f"more than {MAX_TURNS} turns in one script", lineno)
            else:
                directive_ms += event.duration_ms
                if directive_ms > MAX_DIRECTIVES_MS:
                    raise self.error(
                        f"more than {MAX_DIRECTIVES_MS // 60_000} minutes of hold, silence "
                        "and ringback in one script",
                        lineno,
                    )
        if not any(isinstance(e, Turn) for e in events):
            raise self.error("the script has no turns (need 'customer:', 'agent:' or '[ivr]')")
        return self.script(headers, tuple(events), default_call_id)

    def script(
        self, headers: dict[str, tuple[str, int]], events: tuple[Event, ...], default_id: str
    ) -> Script:
        call_id, line = headers.get("call_id", (default_id, None))
        if not _CALL_ID_RE.fullmatch(call_id):
            if "call_id" not in headers and self.source != "<script>":
                raise self.error(
                    f"the file name gives the call id {call_id!r}, which must be letters, "
                    "digits, '_', '.', '-': rename the file or set '# call_id: ...'"
                )
            raise self.error(f"call_id {call_id!r} must be letters, digits, '_', '.', '-'", line)
        title, line = headers.get("title", (call_id, None))
        if not title:
            raise self.error("title is empty", line)
        direction, line = headers.get("direction", ("inbound", None))
        if direction not in ("inbound", "outbound"):
            raise self.error(f"direction must be inbound or outbound, not {direction!r}", line)
        seed_text, line = headers.get("seed", (None, None))
        if seed_text is None:
            # crc32, not hash(): str hashing is salted per process.
            seed = zlib.crc32(call_id.encode())
        elif seed_text.isdigit():
            seed = int(seed_text)
        else:
            raise self.error(f"seed must be a non-negative integer, not {seed_text!r}", line)
        return Script(
            call_id=call_id,
            title=title,
            direction="outbound" if direction == "outbound" else "inbound",
            seed=seed,
            events=events,
            source=self.source,
        )

    def event(self, line: str, lineno: int) -> Event:
        if line.startswith("["):
            m = _DIRECTIVE_RE.fullmatch(line)
            if not m:
                raise self.error(f"unterminated or malformed directive {line!r}", lineno)
            return self.directive(m["body"].split(), m["rest"].strip(), lineno)
        m = _TURN_RE.fullmatch(line)
        if not m:
            raise self.error(
                "expected 'customer: ...', 'agent: ...', '[directive]' or '# comment'", lineno
            )
        who = m["who"]
        if who not in ("customer", "agent"):
            raise self.error(f"unknown speaker {who!r} (use customer or agent)", lineno)
        tokens, spans = self.words(m["text"], lineno)
        if who == "customer":
            return Turn(lineno, "customer", "customer", tokens, spans)
        return Turn(lineno, "agent", self.voice, tokens, spans)

    def directive(self, words: list[str], rest: str, lineno: int) -> Event:
        if not words:
            raise self.error("empty directive []", lineno)
        name, args = words[0].lower(), words[1:]
        if name != "ivr" and rest:
            raise self.error(f"unexpected text after [{name} ...]: {rest!r}", lineno)
        if name == "ivr":
            if args:
                raise self.error("[ivr] takes no arguments; the prompt follows it", lineno)
            tokens, spans = self.words(rest, lineno)
            return Turn(lineno, "agent", "ivr", tokens, spans, kind="ivr")
        if name == "hold":
            if not 1 <= len(args) <= 2:
                raise self.error("use [hold <duration> [music|beeps]]", lineno)
            style = args[1].lower() if len(args) == 2 else "music"
            if style not in _HOLD_STYLES:
                raise self.error(f"hold style must be music or beeps, not {style!r}", lineno)
            duration = self.duration(args[0], lineno)
            return Hold(lineno, duration, "beeps" if style == "beeps" else "music")
        if name == "silence":
            if len(args) != 1:
                raise self.error("use [silence <duration>]", lineno)
            return Silence(lineno, self.duration(args[0], lineno))
        if name == "transfer":
            if not 1 <= len(args) <= 2:
                raise self.error("use [transfer <voice> [<duration>]]", lineno)
            to = args[0]
            if to not in AGENT_VOICES:
                raise self.error(f"cannot transfer to {to!r} (voices: agent, agent2)", lineno)
            if to == self.voice:
                raise self.error(f"{to!r} is already the agent's voice", lineno)
            duration = self.duration(args[1], lineno) if len(args) == 2 else _DEFAULT_TRANSFER_MS
            self.voice = to
            return Transfer(lineno, to, duration)
        raise self.error(f"unknown directive [{name}] (ivr, hold, silence, transfer)", lineno)

    def duration(self, text: str, lineno: int) -> int:
        m = _DURATION_RE.fullmatch(text)
        if not m:
            raise self.error(f"bad duration {text!r} (write 4s, 1.5s or 800ms)", lineno)
        ms = round(float(m["num"]) * (1 if m["unit"] == "ms" else 1000))
        if not _MIN_DURATION_MS <= ms <= _MAX_DURATION_MS:
            raise self.error(
                f"duration {text} out of range ({_MIN_DURATION_MS} ms to "
                f"{_MAX_DURATION_MS // 1000} s)",
                lineno,
            )
        return ms

    def words(self, text: str, lineno: int) -> tuple[tuple[Token, ...], tuple[Span, ...]]:
        tokens: list[Token] = []
        spans: list[Span] = []
        self.pending = ""  # punctuation waiting for the next word, e.g. an opening bracket
        pos = 0
        while pos < len(text):
            open_at = text.find("{", pos)
            close_at = text.find("}", pos)
            if close_at != -1 and (open_at == -1 or close_at < open_at):
                raise self.error("'}' without a matching '{'", lineno)
            if open_at == -1:
                self.plain(text[pos:], tokens, lineno)
                break
            self.plain(text[pos:open_at], tokens, lineno)
            close_at = text.find("}", open_at)
            nested = text.find("{", open_at + 1)
            if close_at == -1:
                raise self.error("'{' without a closing '}'", lineno)
            if nested != -1 and nested < close_at:
                raise self.error("sensitive spans cannot nest", lineno)
            spans.append(self.span(text[open_at + 1 : close_at], tokens, lineno))
            pos = close_at + 1
        if not tokens:
            raise self.error("a turn needs at least one word", lineno)
        if self.pending:
            raise self.error(f"punctuation {self.pending!r} with no word after it", lineno)
        return tuple(tokens), tuple(spans)

    def span(self, body: str, tokens: list[Token], lineno: int) -> Span:
        label, colon, words = body.partition(":")
        label = label.strip()
        if not colon:
            raise self.error("write a sensitive span as {label: words}", lineno)
        if label not in LABELS:
            raise self.error(f"unknown label {label!r} (labels: {', '.join(LABELS)})", lineno)
        first = len(tokens)
        self.plain(words, tokens, lineno, label=label)
        if len(tokens) == first:
            raise self.error(f"sensitive span {label!r} has no words", lineno)
        return Span(label, first, len(tokens) - 1)

    def plain(self, text: str, tokens: list[Token], lineno: int, label: str | None = None) -> None:
        first_in_span = len(tokens)
        for piece in text.split():
            if _PUNCT_RE.fullmatch(piece) and _is_punctuation(piece):
                # Punctuation standing alone (or right after a closing brace) belongs to the
                # word before it, except at the start of a span, where it opens the next word.
                if tokens and (label is None or len(tokens) > first_in_span):
                    prev = tokens[-1]
                    tokens[-1] = Token(prev.text, prev.before, prev.after + piece, prev.label)
                else:
                    self.pending += piece
                continue
            _check_speakable(piece, lambda message: self.error(message, lineno))
            m = _WORD_RE.fullmatch(piece)
            if not m:
                raise self.error(f"cannot read {piece!r} as a word", lineno)
            tokens.append(Token(m["word"], self.pending + m["before"], m["after"], label))
            self.pending = ""


def _is_punctuation(text: str) -> bool:
    """Only punctuation (Unicode category P): symbols and emoji are not, they are spoken."""
    return all(unicodedata.category(c).startswith("P") for c in text)


def _check_speakable(piece: str, error: Callable[[str], ScriptError]) -> None:
    """ScriptError unless ``piece`` is Latin letters and punctuation the voices read as such.

    Numbers of any kind must be spelled out (``isnumeric`` covers every script's digits,
    circled numerals and superscripts alike); letters must be Latin (the voices speak
    English, and read other scripts as something else); symbols and emoji are spoken by
    their names, so they are refused.
    """
    if any(c.isnumeric() for c in piece):
        raise error(f"spell numbers out as words: {piece!r}")
    for c in piece:
        category = unicodedata.category(c)
        if category.startswith("L") and not unicodedata.name(c, "").startswith("LATIN "):
            raise error(
                f"{piece!r}: {c!r} is not a Latin letter; the voices speak English, so write "
                "the words in Latin letters"
            )
        if not (category.startswith(("L", "P")) or category == "Mn"):
            name = unicodedata.name(c, f"U+{ord(c):04X}").lower()
            raise error(
                f"{piece!r}: {c!r} ({name}) is neither a letter nor punctuation, and would be "
                "spoken as its name"
            )
