"""Accuracy, speed and memory of the recognizers (Whisper tiny.en, PocketSphinx) on the
sample calls, each engine in its own subprocess in one run.

Each participant channel of every sample call is transcribed whole (everything streamed)
and scored against the sidecar's words for that participant (IVR prompts count as agent
words, as on the agent channel). Reported per engine:

* **WER raw** (:func:`mgsim.speech.wer.word_errors`: lower case, punctuation removed) and
  **WER normalised**, where every digit run on both sides (``four five``, ``4-5``, ``45``,
  ``forty five``) becomes one token per digit, so ``4539`` and ``four five three nine``
  agree; per sample and channel, per sample, and overall (errors summed, divided by all
  reference words).
* **Sensitive-digit recall**: for each labelled span, the digits read
  (:mod:`mgsim.speech.numbers`) from the recognized words of its speaker that overlap the
  span (±300 ms), matched in order to the span's digits (longest common subsequence).
* **Span detection recall**: the share of labelled spans that a span detected in the
  recognized words (:func:`mgsim.speech.spans.detect_spans`, as ``mgsim annotate`` does)
  overlaps, same speaker; also how many detected spans overlap no labelled one (false
  alarms) and, as the baseline, detection on the sidecar's true words.
* **Word-time error**: start-time error of recognized words matched to reference words of
  the same normalised text (``difflib`` alignment), median and 95th percentile of the
  absolute error, and the median signed error (positive: late).
* **Real-time factor**: decode wall time over audio time, and CPU seconds (all threads) per
  audio second, both channels of every call counting as audio. The machine may be shared:
  CPU per audio second is the steadier figure.
* **Peak memory**: the subprocess's peak resident set (``ru_maxrss``) after loading the
  engine and decoding everything.

    python benchmarks/asr.py                    # both engines, one subprocess each
    python benchmarks/asr.py --engine whisper   # one engine in this process
"""

from __future__ import annotations

import argparse
import difflib
import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgsim.sim.call import Call, list_samples
from mgsim.speech.engine import ROLES, SpokenWord, TimedWord
from mgsim.speech.numbers import digit_runs, spoken_digits
from mgsim.speech.spans import detect_spans
from mgsim.speech.wer import WordErrors, normalise_words, word_errors

ENGINES = ("whisper", "sphinx")
SPAN_SLACK_MS = 300.0
TARGETS = {
    "wer_normalised": 0.30,
    "sensitive_digit_recall": 0.90,
    "span_detection_recall": 0.90,
    "real_time_factor": 0.05,
}


def _rate(errors: WordErrors) -> float | None:
    # JSON has no infinity; an empty reference with words heard reads as null.
    rate = errors.rate
    return round(rate, 4) if rate != float("inf") else None


def digit_tokens(words: Sequence[str]) -> list[str]:
    """``words`` normalised, with each digit run replaced by one token per digit."""
    runs = {run.start_word: run for run in digit_runs(words)}
    out: list[str] = []
    i = 0
    while i < len(words):
        run = runs.get(i)
        if run is not None:
            out += list(run.digits)
            i = run.end_word
        else:
            out += normalise_words([words[i]])
            i += 1
    return out


def lcs(a: str, b: str) -> int:
    """Length of the longest common subsequence of two digit strings."""
    prev = [0] * (len(b) + 1)
    for ch in a:
        row = [0]
        for j, other in enumerate(b, 1):
            row.append(prev[j - 1] + 1 if ch == other else max(prev[j], row[-1]))
        prev = row
    return prev[-1]


def start_errors(reference: Sequence[SpokenWord], hypothesis: Sequence[TimedWord]) -> list[float]:
    """hyp.start - ref.start (ms) for words aligned with the same normalised text."""
    ref = [" ".join(normalise_words([w.text])) for w in reference]
    hyp = [" ".join(normalise_words([w.text])) for w in hypothesis]
    matcher = difflib.SequenceMatcher(None, ref, hyp, autojunk=False)
    out = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            r, h = reference[block.a + k], hypothesis[block.b + k]
            out.append(h.start_ms - r.start_ms)
    return out


def _make_engine(name: str, options: dict[str, Any]) -> Any:
    if name == "whisper":
        from mgsim.sim.engines import whisper_engine

        return whisper_engine(**options)
    if name == "sphinx":
        from mgsim.speech.sphinx import SphinxEngine

        return SphinxEngine(**options)
    raise SystemExit(f"unknown engine {name!r}; use one of {ENGINES}")


class _Word:
    """A recognized word with its speaker, for span detection over both channels."""

    __slots__ = ("end_ms", "speaker", "start_ms", "text")

    def __init__(self, speaker: str, w: TimedWord) -> None:
        self.speaker, self.text, self.start_ms, self.end_ms = speaker, w.text, w.start_ms, w.end_ms


def _overlaps(a0: float, a1: float, b0: float, b1: float) -> bool:
    return min(a1, b1) > max(a0, b0)


def run_engine(
    directory: str | Path | None, engine: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Transcribe every sample call's two channels with ``engine``; return its figures."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    eng = _make_engine(engine, options or {})
    load_s = time.perf_counter() - wall0
    load_cpu_s = time.process_time() - cpu0
    calls: dict[str, Any] = {}
    raw_total, norm_total = WordErrors(), WordErrors()
    decode_s = decode_cpu_s = audio_s = 0.0
    digits_ref = digits_hit = 0
    spans_total = spans_found = spans_found_truth = false_alarms = 0
    errors_ms: list[float] = []
    for path in list_samples(directory):
        call = Call.load(path)
        raw_call, norm_call = WordErrors(), WordErrors()
        channels: dict[str, Any] = {}
        heard: list[_Word] = []
        for role in ROLES:
            pcm = getattr(call.audio, role)
            w0, c0 = time.perf_counter(), time.process_time()
            utterances = eng.transcribe(role, pcm, np.ones(len(pcm), dtype=bool))
            decode_s += time.perf_counter() - w0
            decode_cpu_s += time.process_time() - c0
            audio_s += len(pcm) / call.audio.rate
            ref_words = [w for w in call.words if w.speaker == role]
            hyp_words = [w for u in utterances for w in u.words]
            heard += [_Word(role, w) for w in hyp_words]
            reference = [w.text for w in ref_words]
            hypothesis = [w.text for w in hyp_words]
            raw = word_errors(reference, hypothesis)
            norm = word_errors(digit_tokens(reference), digit_tokens(hypothesis))
            raw_call += raw
            norm_call += norm
            errors_ms += start_errors(ref_words, hyp_words)
            channels[role] = {
                "wer_raw": _rate(raw),
                "wer_normalised": _rate(norm),
                "reference_words": raw.reference_words,
                "hypothesis_words": len(hypothesis),
                "utterances": len(utterances),
            }
        detected = detect_spans(heard)
        truth = detect_spans(call.words)
        span_rows = []
        for span in call.sensitive:
            ref = "".join(spoken_digits([call.words[i].text for i in span.word_indexes]))
            near = [
                w.text
                for w in heard
                if w.speaker == span.speaker
                and _overlaps(
                    w.start_ms, w.end_ms, span.start_ms - SPAN_SLACK_MS, span.end_ms + SPAN_SLACK_MS
                )
            ]
            got = "".join(spoken_digits(near))
            hit = lcs(ref, got)
            digits_ref += len(ref)
            digits_hit += hit

            def covers(found: Sequence[Any], span: Any = span) -> bool:
                return any(
                    d.speaker == span.speaker
                    and _overlaps(d.start_ms, d.end_ms, span.start_ms, span.end_ms)
                    for d in found
                )

            found = covers(detected)
            spans_total += 1
            spans_found += found
            spans_found_truth += covers(truth)
            span_rows.append(
                {
                    "label": span.label,
                    "digits": len(ref),
                    "digits_recognized": hit,
                    "detected": found,
                    "detected_as": [
                        d.entity
                        for d in detected
                        if d.speaker == span.speaker
                        and _overlaps(d.start_ms, d.end_ms, span.start_ms, span.end_ms)
                    ],
                }
            )
        false_alarms += sum(
            1
            for d in detected
            if not any(
                s.speaker == d.speaker and _overlaps(d.start_ms, d.end_ms, s.start_ms, s.end_ms)
                for s in call.sensitive
            )
        )
        raw_total += raw_call
        norm_total += norm_call
        calls[call.call_id] = {
            "wer_raw": _rate(raw_call),
            "wer_normalised": _rate(norm_call),
            "channels": channels,
            "spans": span_rows,
        }
    abs_err = np.abs(np.array(errors_ms)) if errors_ms else np.zeros(1)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "benchmark": "asr",
        "engine": engine,
        "options": options or {},
        "model": getattr(getattr(eng, "spec", None), "name", None),
        "python": platform.python_version(),
        "calls": calls,
        "wer_raw": _rate(raw_total),
        "wer_normalised": _rate(norm_total),
        "reference_words": raw_total.reference_words,
        "sensitive_digits": digits_ref,
        "sensitive_digits_recognized": digits_hit,
        "sensitive_digit_recall": round(digits_hit / digits_ref, 4) if digits_ref else None,
        "spans": spans_total,
        "spans_detected": spans_found,
        "span_detection_recall": round(spans_found / spans_total, 4) if spans_total else None,
        "span_detection_recall_on_true_words": round(spans_found_truth / spans_total, 4)
        if spans_total
        else None,
        "spans_detected_false_alarms": false_alarms,
        "word_time_matched": len(errors_ms),
        "word_time_error_median_ms": round(float(np.median(abs_err)), 1),
        "word_time_error_p95_ms": round(float(np.percentile(abs_err, 95)), 1),
        "word_time_signed_median_ms": round(float(np.median(errors_ms or [0.0])), 1),
        "audio_s": round(audio_s, 3),
        "decode_s": round(decode_s, 3),
        "decode_cpu_s": round(decode_cpu_s, 3),
        "real_time_factor": round(decode_s / audio_s, 4) if audio_s else None,
        "cpu_s_per_audio_s": round(decode_cpu_s / audio_s, 4) if audio_s else None,
        "engine_load_s": round(load_s, 3),
        "engine_load_cpu_s": round(load_cpu_s, 3),
        "peak_rss_mb": round(peak_kib / 1024, 1),
    }


def run(directory: str | Path | None = None, engine: str | None = None) -> dict[str, Any]:
    """Every engine, each in a fresh subprocess (so peak memory is its own); with
    ``engine``, that one in this process."""
    if engine is not None:
        return run_engine(directory, engine)
    results: dict[str, Any] = {}
    for name in ENGINES:
        cmd = [sys.executable, __file__, "--engine", name]
        if directory is not None:
            cmd += ["--directory", str(directory)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
        if done.returncode:
            results[name] = {"error": done.stderr.strip().splitlines()[-1:]}
        else:
            results[name] = json.loads(done.stdout)
    missed = {
        name: [
            k
            for k, limit in TARGETS.items()
            if isinstance(r.get(k), float)
            and (r[k] > limit if k in ("wer_normalised", "real_time_factor") else r[k] < limit)
        ]
        for name, r in results.items()
    }
    return {"benchmark": "asr", "engines": results, "targets": TARGETS, "missed": missed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=ENGINES)
    parser.add_argument("--directory")
    parser.add_argument(
        "--options",
        default="{}",
        help="engine options as JSON, e.g. '{\"repetition_penalty\": 1.05}' (with --engine)",
    )
    args = parser.parse_args()
    options = json.loads(args.options)
    if options and args.engine is None:
        raise SystemExit("--options needs --engine")
    result = (
        run_engine(args.directory, args.engine, options)
        if args.engine
        else run(args.directory, None)
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
