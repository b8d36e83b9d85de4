"""Accuracy and speed of the PocketSphinx engine on the committed sample calls.

Each participant channel of every sample call is transcribed whole (everything streamed)
and scored against the sidecar's words for that participant (IVR prompts count as agent
words, as on the agent channel). The word error rate is given per call and channel, per
call, and overall (errors summed over all channels, divided by all reference words). The
real-time factor is decode time over the audio decoded (both channels of a call count),
so below 1 is faster than real time.

    python benchmarks/asr.py             # needs: pip install 'mgsim[asr]'
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from mgsim.sim.call import Call, list_samples
from mgsim.speech.engine import ROLES
from mgsim.speech.sphinx import SphinxEngine
from mgsim.speech.wer import WordErrors, word_errors


def _rate(errors: WordErrors) -> float | None:
    # JSON has no infinity; an empty reference with words heard reads as null.
    rate = errors.rate
    return round(rate, 4) if rate != float("inf") else None


def run(directory: str | Path | None = None, **engine_options: Any) -> dict[str, Any]:
    """Transcribe every sample call's two channels; return WERs and the real-time factor."""
    t0 = time.perf_counter()
    engine = SphinxEngine(**engine_options)
    load_s = time.perf_counter() - t0
    calls: dict[str, Any] = {}
    total = WordErrors()
    decode_s = 0.0
    audio_s = 0.0
    for path in list_samples(directory):
        call = Call.load(path)
        per_call = WordErrors()
        channels: dict[str, Any] = {}
        for role in ROLES:
            pcm = getattr(call.audio, role)
            start = time.perf_counter()
            utterances = engine.transcribe(role, pcm, np.ones(len(pcm), dtype=bool))
            decode_s += time.perf_counter() - start
            audio_s += len(pcm) / call.audio.rate
            reference = [w.text for w in call.words if w.speaker == role]
            hypothesis = [w.text for u in utterances for w in u.words]
            errors = word_errors(reference, hypothesis)
            per_call += errors
            channels[role] = {
                "wer": _rate(errors),
                "reference_words": errors.reference_words,
                "hypothesis_words": len(hypothesis),
                "substitutions": errors.substitutions,
                "deletions": errors.deletions,
                "insertions": errors.insertions,
                "utterances": len(utterances),
            }
        total += per_call
        calls[call.call_id] = {"wer": _rate(per_call), "channels": channels}
    return {
        "benchmark": "asr",
        "engine": engine.name,
        "python": platform.python_version(),
        "calls": calls,
        "wer": _rate(total),
        "reference_words": total.reference_words,
        "substitutions": total.substitutions,
        "deletions": total.deletions,
        "insertions": total.insertions,
        "audio_s": round(audio_s, 3),
        "decode_s": round(decode_s, 3),
        "real_time_factor": round(decode_s / audio_s, 4) if audio_s else None,
        "engine_load_s": round(load_s, 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
