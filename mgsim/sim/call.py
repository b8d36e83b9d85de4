"""The Call record: a stereo call with its words, sensitive spans and segments.

On disk a call is two files side by side: ``<id>.wav`` (stereo, 8 kHz, 16-bit PCM; channel 0
the customer, channel 1 the agent; FLAC also loads) and ``<id>.json``, the *sidecar*, whose
format :data:`SIDECAR_SCHEMA` pins down and ``sample_audio/README.md`` documents. All times
are integer milliseconds from the start of the call.

>>> call = load_sample("card_payment")                      # doctest: +SKIP
>>> [w.text for w in call.words if w.speaker == "customer"][:3]  # doctest: +SKIP
['Hi', 'I', 'need']
>>> long = make_long_call(minutes=10)                       # doctest: +SKIP
>>> long.duration_ms                                        # doctest: +SKIP
600000
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import soundfile as sf

from mgsim.errors import ConfigError
from mgsim.media._base import SAMPLE_RATE, StereoCall
from mgsim.sim.sidecar import SIDECAR_SCHEMA, dumps_sidecar

__all__ = [
    "SIDECAR_SCHEMA",
    "Call",
    "Segment",
    "SensitiveSpan",
    "Word",
    "list_samples",
    "load_sample",
    "make_long_call",
    "samples_dir",
]

SAMPLES_ENV = "MGSIM_SAMPLES"
_SAMPLES_PER_MS = SAMPLE_RATE // 1000
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga")

_TONES = ("hold", "transfer")  # segments with sound (music, ringback) on the agent channel
_STRUCTURAL = ("call_id", "rate", "channels", "duration_ms", "words", "sensitive", "segments")


@dataclass(frozen=True, slots=True)
class Word:
    """One spoken word and where it sits in the call (ms)."""

    speaker: str
    voice: str
    text: str
    start_ms: float
    end_ms: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SensitiveSpan:
    """A labelled sensitive stretch (card number, SSN...): ``word_indexes`` into the words."""

    label: str
    speaker: str
    text: str
    start_ms: float
    end_ms: float
    word_indexes: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "word_indexes": list(self.word_indexes)}


@dataclass(frozen=True, slots=True)
class Segment:
    """What happens over a stretch: ``speech``, ``ivr``, ``hold``, ``silence``, ``transfer``,
    or ``sound`` (a recording's audible stretch with no recognized words: music, noise,
    speech too unclear to recognize).

    ``speaker``/``voice`` are set for speech and IVR, ``voice`` for a transfer (the new
    agent), ``style`` for hold (``music``/``beeps``), ``speaker`` for sound.
    """

    kind: str
    start_ms: float
    end_ms: float
    speaker: str | None = None
    voice: str | None = None
    style: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True, eq=False)
class Call:
    """A call: audio plus what is said when, and which parts are sensitive.

    ``meta`` holds the sidecar's other fields: ``title``, ``direction``, ``generator`` and
    anything else (``parts`` of a concatenation).
    """

    call_id: str
    audio: StereoCall
    words: tuple[Word, ...] = ()
    sensitive: tuple[SensitiveSpan, ...] = ()
    segments: tuple[Segment, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return str(self.meta.get("title", self.call_id))

    @property
    def direction(self) -> str:
        return str(self.meta.get("direction", "inbound"))

    @property
    def scripted(self) -> bool:
        """True when the words are the truth (synthesized from a script); False for a
        recording whose words were recognized (its sidecar has an ``annotation`` key)."""
        return "annotation" not in self.meta

    @property
    def duration_ms(self) -> float:
        """Length in ms; an integer whenever the audio is whole milliseconds long."""
        n = self.audio.n_samples
        return n // _SAMPLES_PER_MS if n % _SAMPLES_PER_MS == 0 else n / _SAMPLES_PER_MS

    # -- sidecar -----------------------------------------------------------------------------

    def to_sidecar(self) -> dict[str, Any]:
        """The sidecar as a JSON-ready dict (keys in the documented order)."""
        out: dict[str, Any] = {
            "call_id": self.call_id,
            "title": self.title,
            "direction": self.direction,
            "rate": SAMPLE_RATE,
            "channels": self._channels(),
            "duration_ms": self.duration_ms,
            "words": [w.to_json() for w in self.words],
            "sensitive": [s.to_json() for s in self.sensitive],
            "segments": [s.to_json() for s in self.segments],
        }
        for key, value in self.meta.items():
            out.setdefault(key, value)
        return out

    def _channels(self) -> dict[str, int]:
        source = self.meta.get("recording")
        c = source.get("customer_channel", 0) if isinstance(source, dict) else 0
        return {"customer": c, "agent": 1 - c} if c in (0, 1) else {"customer": 0, "agent": 1}

    @classmethod
    def from_sidecar(cls, sidecar: dict[str, Any], audio: StereoCall) -> Call:
        """Build a call from a parsed sidecar and its audio; raises ConfigError if invalid."""
        try:
            jsonschema.validate(sidecar, SIDECAR_SCHEMA)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            if exc.validator == "not" and where.endswith("text"):
                raise ConfigError(
                    f"invalid sidecar: {where}: {exc.instance!r} is not one word; give each "
                    "word its own entry (redaction reads word by word)"
                ) from exc
            raise ConfigError(f"invalid sidecar: {exc.message}") from exc
        words = tuple(Word(**w) for w in sidecar["words"])
        spans = tuple(
            SensitiveSpan(**{**s, "word_indexes": tuple(s["word_indexes"])})
            for s in sidecar["sensitive"]
        )
        _check_spans(spans, words)
        segments = tuple(Segment(**s) for s in sidecar["segments"])
        meta = {k: v for k, v in sidecar.items() if k not in _STRUCTURAL}
        return cls(sidecar["call_id"], audio, words, spans, segments, meta)

    # -- files -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *, check: bool = True) -> Call:
        """Load a call from its audio file or its sidecar (the other is found beside it).

        The audio may be any recording :mod:`mgsim.sim.recording` reads; a sidecar written
        by ``mgsim annotate`` says in its ``recording`` key which channel is the customer's
        or which two files are the legs (relative to the sidecar). With ``check`` a sidecar
        that does not fit its audio is refused (:mod:`mgsim.sim.sidecar_check`).
        """
        from mgsim.sim.recording import load_recording
        from mgsim.sim.sidecar_check import SidecarMismatch, sidecar_problems

        audio_path, sidecar_path = _paths(Path(path), must_exist=False)
        if not sidecar_path.exists():
            raise ConfigError(f"{sidecar_path} does not exist")
        sidecar = _read_sidecar(sidecar_path)
        source = sidecar.get("recording")
        channels = sidecar.get("channels", {"customer": 0, "agent": 1})
        if Path(path).suffix == ".json" and isinstance(source, dict):
            # An annotated recording's sidecar names its audio (relative to the sidecar).
            named = source.get("customer")
            if isinstance(named, str):
                audio_path = sidecar_path.parent / named
        if not audio_path.exists() and not (isinstance(source, dict) and "agent" in source):
            raise ConfigError(f"{audio_path} does not exist")
        if isinstance(source, dict) and isinstance(source.get("agent"), str):
            base = sidecar_path.parent
            rec = load_recording(customer=base / source["customer"], agent=base / source["agent"])
        else:
            customer = channels.get("customer", 0) if isinstance(channels, dict) else None
            if isinstance(source, dict) and "customer_channel" in source:
                customer = source["customer_channel"]
            if not isinstance(customer, int) or customer not in (0, 1):
                raise ConfigError(f"{sidecar_path}: channels {channels} do not fit the audio")
            rec = load_recording(audio_path, customer_channel=customer)
        try:
            call = cls.from_sidecar(sidecar, rec.audio)
        except ConfigError as exc:
            raise ConfigError(f"{sidecar_path}: {exc}") from exc
        if check:
            problems = sidecar_problems(call, stated_duration_ms=sidecar["duration_ms"])
            if problems:
                raise SidecarMismatch(
                    f"{sidecar_path} does not match {audio_path.name}: " + "; ".join(problems)
                )
        return call

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.wav`` (or ``.flac``) and ``<path>.json``; returns both paths."""
        audio_path, sidecar_path = _paths(Path(path), must_exist=False)
        audio_path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(audio_path), self.stereo_array(), SAMPLE_RATE, subtype="PCM_16")
        sidecar_path.write_text(dumps_sidecar(self.to_sidecar()), encoding="utf-8")
        return audio_path, sidecar_path

    def stereo_array(self) -> np.ndarray[Any, np.dtype[np.int16]]:
        """The audio as an ``(n, 2)`` int16 array: customer, agent (shorter one padded)."""
        n = self.audio.n_samples
        out = np.zeros((n, 2), dtype=np.int16)
        out[: len(self.audio.customer), 0] = self.audio.customer
        out[: len(self.audio.agent), 1] = self.audio.agent
        return out

    # -- checks ------------------------------------------------------------------------------

    def timing_problems(
        self, *, threshold_dbfs: float = -50.0, tolerance_ms: int = 50
    ) -> list[str]:
        """Check the sidecar's timings against the audio's energy; [] when they agree.

        On each participant's channel, 10 ms frames louder than ``threshold_dbfs`` count as
        sound. Every word must contain sound, starting and ending within ``tolerance_ms`` of
        its times; outside the words (and, on the agent channel, hold and transfer segments)
        there must be none, give or take ``tolerance_ms``.
        """
        frame = 10 * _SAMPLES_PER_MS
        problems: list[str] = []
        for channel, pcm in (("customer", self.audio.customer), ("agent", self.audio.agent)):
            n = len(pcm) // frame
            x = pcm[: n * frame].astype(np.float64).reshape(n, frame) / 32768.0
            loud = 20 * np.log10(np.sqrt(np.mean(x**2, axis=1)) + 1e-12) > threshold_dbfs
            allowed = np.zeros(n, dtype=bool)
            spans = [(w.start_ms, w.end_ms, w.text) for w in self.words if w.speaker == channel]
            tones = [(s.start_ms, s.end_ms, s.kind) for s in self.segments if s.kind in _TONES]
            for start, end, _ in spans + (tones if channel == "agent" else []):
                lo = max(0, int(start - tolerance_ms) // 10)
                allowed[lo : int(end + tolerance_ms) // 10 + 1] = True
            for start, end, text in spans:
                first_frame = int(start) // 10
                hits = np.flatnonzero(loud[first_frame : -(-int(end) // 10)]) + first_frame
                if not len(hits):
                    problems.append(f"{channel} word {text!r} at {start} ms has no sound")
                elif (
                    hits[0] * 10 - start > tolerance_ms or end - (hits[-1] + 1) * 10 > tolerance_ms
                ):
                    problems.append(
                        f"{channel} word {text!r} [{start}, {end}] ms: sound from "
                        f"{hits[0] * 10} to {(hits[-1] + 1) * 10} ms"
                    )
            for i in np.flatnonzero(loud & ~allowed)[:5]:
                problems.append(f"{channel} channel has sound at {i * 10} ms outside any word")
        return problems

    # -- building longer calls ---------------------------------------------------------------

    @classmethod
    def concat(
        cls,
        calls: Sequence[Call],
        *,
        call_id: str = "concat",
        gap_ms: int = 0,
        title: str | None = None,
    ) -> Call:
        """Play ``calls`` back to back (``gap_ms`` of digital silence between them).

        Every part starts on a whole millisecond so all shifted times stay exact integers;
        ``meta["parts"]`` records each part's call id and offset.
        """
        if not calls:
            raise ConfigError("concat needs at least one call")
        if gap_ms < 0:
            raise ConfigError("gap_ms must be >= 0")
        pieces: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        words: list[Word] = []
        spans: list[SensitiveSpan] = []
        segments: list[Segment] = []
        parts: list[dict[str, Any]] = []
        offset_ms = 0
        for i, call in enumerate(calls):
            if i and gap_ms:
                pieces.append(np.zeros((gap_ms * _SAMPLES_PER_MS, 2), dtype=np.int16))
                offset_ms += gap_ms
            stereo = call.stereo_array()
            whole_ms = -(-len(stereo) // _SAMPLES_PER_MS)
            pad = whole_ms * _SAMPLES_PER_MS - len(stereo)
            pieces.append(np.pad(stereo, ((0, pad), (0, 0))) if pad else stereo)
            base = len(words)
            words.extend(
                replace(w, start_ms=w.start_ms + offset_ms, end_ms=w.end_ms + offset_ms)
                for w in call.words
            )
            spans.extend(
                replace(
                    s,
                    start_ms=s.start_ms + offset_ms,
                    end_ms=s.end_ms + offset_ms,
                    word_indexes=tuple(base + j for j in s.word_indexes),
                )
                for s in call.sensitive
            )
            segments.extend(
                replace(s, start_ms=s.start_ms + offset_ms, end_ms=s.end_ms + offset_ms)
                for s in call.segments
            )
            parts.append({"call_id": call.call_id, "offset_ms": offset_ms})
            offset_ms += whole_ms
        stereo = np.concatenate(pieces)
        audio = StereoCall(np.ascontiguousarray(stereo[:, 0]), np.ascontiguousarray(stereo[:, 1]))
        meta: dict[str, Any] = {
            "title": title if title is not None else " + ".join(c.title for c in calls),
            "direction": calls[0].direction,
            "generator": calls[0].meta.get("generator", {}),
            "parts": parts,
        }
        return cls(call_id, audio, tuple(words), tuple(spans), tuple(segments), meta)

    def truncated(self, end_ms: int) -> Call:
        """The first ``end_ms`` of the call: words and spans cut by the end are dropped,
        segments are clipped."""
        if end_ms < 0:
            raise ConfigError("end_ms must be >= 0")
        n = end_ms * _SAMPLES_PER_MS
        audio = StereoCall(self.audio.customer[:n].copy(), self.audio.agent[:n].copy())
        keep = {
            i: j for j, i in enumerate(i for i, w in enumerate(self.words) if w.end_ms <= end_ms)
        }
        words = tuple(w for i, w in enumerate(self.words) if i in keep)
        spans = tuple(
            replace(s, word_indexes=tuple(keep[i] for i in s.word_indexes))
            for s in self.sensitive
            if all(i in keep for i in s.word_indexes)
        )
        segments = tuple(
            replace(s, end_ms=min(s.end_ms, end_ms)) for s in self.segments if s.start_ms < end_ms
        )
        meta = dict(self.meta)
        if "parts" in meta:
            meta["parts"] = [p for p in meta["parts"] if p["offset_ms"] < end_ms]
        return Call(self.call_id, audio, words, spans, segments, meta)


def _check_spans(spans: Sequence[SensitiveSpan], words: Sequence[Word]) -> None:
    """ConfigError unless every span is a run of consecutive words of its speaker, and no
    word is in two spans: a leak report counts each sensitive word once, span by span."""
    owner: dict[int, int] = {}
    for n, span in enumerate(spans):
        name = f"sensitive span {n} ({span.label!r})"
        indexes = span.word_indexes
        if max(indexes) >= len(words):
            raise ConfigError(f"{name} points past the last word")
        if list(indexes) != list(range(indexes[0], indexes[0] + len(indexes))):
            raise ConfigError(
                f"{name}: word_indexes {list(indexes)} are not consecutive and ascending"
            )
        for i in indexes:
            if i in owner:
                raise ConfigError(
                    f"{name} overlaps sensitive span {owner[i]}: both hold word {i} "
                    f"({words[i].text!r})"
                )
            owner[i] = n
            if words[i].speaker != span.speaker:
                raise ConfigError(
                    f"{name} is the {span.speaker}'s, but word {i} ({words[i].text!r}) is "
                    f"the {words[i].speaker}'s"
                )


def _read_sidecar(path: Path) -> dict[str, Any]:
    """The parsed sidecar at ``path`` (UTF-8, a byte-order mark allowed), or ConfigError
    naming the file and what is wrong with it."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a sidecar is a JSON object, not {type(data).__name__}")
    return data


def _paths(path: Path, *, must_exist: bool) -> tuple[Path, Path]:
    if path.suffix == ".json":
        sidecar = path
        candidates = [path.with_suffix(s) for s in _AUDIO_SUFFIXES]
        audio = next((p for p in candidates if p.exists()), candidates[0])
    elif path.suffix in _AUDIO_SUFFIXES:
        audio, sidecar = path, path.with_suffix(".json")
    elif path.suffix:
        raise ConfigError(f"{path}: expected a .wav, .flac, .ogg or .json path")
    else:
        audio, sidecar = path.with_suffix(".wav"), path.with_suffix(".json")
    if must_exist:
        for p in (audio, sidecar):
            if not p.exists():
                raise ConfigError(f"{p} does not exist")
    return audio, sidecar


def samples_dir() -> Path:
    """The sample calls: ``$MGSIM_SAMPLES`` or ``sample_audio/`` at the repository root."""
    env = os.environ.get(SAMPLES_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "sample_audio"


def list_samples(directory: str | Path | None = None) -> list[Path]:
    """Audio files of the sample calls (those with a sidecar), sorted by name."""
    root = Path(directory) if directory is not None else samples_dir()
    if not root.is_dir():
        raise ConfigError(f"no samples directory at {root} (set {SAMPLES_ENV})")
    return sorted(
        p for p in root.iterdir() if p.suffix in _AUDIO_SUFFIXES and p.with_suffix(".json").exists()
    )


def load_sample(name: str, directory: str | Path | None = None) -> Call:
    """Load one sample call by its call id (file stem)."""
    for path in list_samples(directory):
        if path.stem == name:
            return Call.load(path)
    raise ConfigError(f"no sample call named {name!r}")


def make_long_call(
    minutes: float = 10,
    *,
    directory: str | Path | None = None,
    call_id: str | None = None,
    calls: Iterable[Call] | None = None,
) -> Call:
    """A call exactly ``minutes`` long, made by repeating the samples (or ``calls``) in order.

    Timings of every repeated part are shifted to its offset; the last part is cut at the
    end (words cut mid-way are dropped). Meant for benchmarks.
    """
    target_ms = round(minutes * 60_000)
    if target_ms <= 0:
        raise ConfigError("minutes must be > 0")
    sources = list(calls) if calls is not None else [Call.load(p) for p in list_samples(directory)]
    if not sources or all(c.audio.n_samples == 0 for c in sources):
        raise ConfigError("no audio to build a long call from")
    chosen: list[Call] = []
    total = 0.0
    while total < target_ms:
        nxt = sources[len(chosen) % len(sources)]
        chosen.append(nxt)
        total += -(-nxt.audio.n_samples // _SAMPLES_PER_MS)
    name = call_id or f"long-{target_ms // 1000}s"
    long = Call.concat(chosen, call_id=name, title=f"{len(chosen)} sample calls back to back")
    return long.truncated(target_ms)
