"""A real speech recognizer: CMU PocketSphinx with its bundled US English model.

:class:`SphinxEngine` transcribes audio it has no script for, so mgsim can run recordings
other than the sample calls. It follows :class:`mgsim.speech.engine.TranscriptionEngine`:
one participant's int16 audio at 8 kHz and a ``streamed`` mask in, utterances with absolute
word timings out. PocketSphinx is optional (``pip install 'mgsim[asr]'``); it is imported
only when an engine is built.

How a participant's audio is decoded:

1. Samples that were not streamed are set to zero, so nothing outside the streaming
   windows can be heard.
2. **Utterances are split on silence** by energy: 10 ms frames (on a grid fixed to the
   call's timeline, so slicing the audio does not move it) louder than ``threshold_dbfs``
   are speech; speech separated by at least ``pause_ms`` of quiet starts a new utterance;
   bursts with less than ``min_speech_ms`` of speech (clicks) are ignored. Each utterance
   keeps ``pad_ms`` of context either side, trimmed to streamed samples.
3. Each utterance is **resampled to 16 kHz** (the model's rate; its features span
   130–6800 Hz, so it cannot run at 8 kHz) by windowed-sinc interpolation and decoded on
   its own from a freshly reset front end, so results do not depend on what came before.
4. Word timings come from the decoder's segmentation (10 ms frames); fillers, silences and
   noise tokens are dropped, alternate pronunciations (``him(2)``) lose their marker. A
   word less than half streamed is dropped, as the reference engine does. Utterances longer
   than ``max_utterance_ms`` are cut between words.

Accuracy is modest: the model is trained on real wide-band speech, while the sample calls
are narrow-band espeak-ng voices (``benchmarks/asr.py`` measures it).

:mod:`mgsim.speech.wer` scores a transcript against a reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError
from mgsim.speech.engine import SAMPLES_PER_MS, TimedWord, Utterance, check_engine_input

__all__ = [
    "MODEL_RATE",
    "SpeechSpan",
    "SphinxEngine",
    "speech_spans",
    "upsample_2x",
]

MODEL_RATE = 16_000
"""Sample rate of the bundled acoustic model."""

Int16Array = npt.NDArray[np.int16]
BoolArray = npt.NDArray[np.bool_]

_FRAME = 10 * SAMPLES_PER_MS  # one 10 ms energy frame at 8 kHz
_DECODER_FRAME_MS = 10.0  # PocketSphinx's default frame rate is 100 per second
_HALF_TAPS = 16
_INSTALL_HINT = "pip install 'mgsim[asr]'"


def _half_sample_taps(half: int = _HALF_TAPS, beta: float = 8.0) -> npt.NDArray[np.float64]:
    # Ideal interpolation at n + 1/2 is sinc(1/2 - j) over neighbours j = -half+1 .. half;
    # a Kaiser window keeps the stop band well down with few taps.
    j = np.arange(-half + 1, half + 1)
    taps = np.sinc(0.5 - j) * np.kaiser(2 * half, beta)
    return np.asarray(taps / taps.sum(), dtype=np.float64)


_TAPS = _half_sample_taps()


def upsample_2x(pcm: Int16Array) -> Int16Array:
    """Double the sample rate by band-limited (Kaiser-windowed sinc) interpolation.

    Even output samples are the input; odd ones are interpolated half-way between, with
    the signal taken as silent beyond both ends.

    >>> upsample_2x(np.array([0, 100, 100, 0], np.int16)).tolist()[:4]
    [0, 43, 100, 127]
    """
    if pcm.ndim != 1:
        raise ConfigError("pcm must be 1-D")
    if not len(pcm):
        return np.zeros(0, dtype=np.int16)
    x = pcm.astype(np.float64)
    half = _HALF_TAPS
    padded = np.concatenate([np.zeros(half - 1), x, np.zeros(half)])
    # Correlate (not convolve): output n weighs x[n + j] by taps[j + half - 1].
    mid = np.correlate(padded, _TAPS, mode="valid")
    out = np.empty(2 * len(x), dtype=np.float64)
    out[0::2] = x
    out[1::2] = mid
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


@dataclass(frozen=True, slots=True)
class SpeechSpan:
    """Samples ``[start, end)`` of a participant's arrays that hold one utterance."""

    start: int
    end: int


def speech_spans(
    pcm: Int16Array,
    streamed: BoolArray,
    *,
    offset_ms: float = 0.0,
    threshold_dbfs: float = -50.0,
    pause_ms: float = 500.0,
    pad_ms: float = 150.0,
    min_speech_ms: float = 100.0,
) -> list[SpeechSpan]:
    """Where the utterances are: speech split on silence, padded, trimmed to streamed samples.

    Frames are 10 ms on the call's timeline (sample 0 sits at ``offset_ms``), so the same
    audio gives the same spans however it is sliced. See the module docstring for the rules.

    >>> tone = (8000 * np.sin(np.arange(2400) * 0.3)).astype(np.int16)   # 300 ms
    >>> gap = np.zeros(8000, np.int16)                                    # 1 s
    >>> pcm = np.concatenate([gap, tone, gap, tone, gap])
    >>> [(s.start, s.end) for s in speech_spans(pcm, np.ones(len(pcm), bool))]
    [(6800, 11600), (17200, 22000)]
    """
    origin = round(offset_ms * SAMPLES_PER_MS)
    lead = (-origin) % _FRAME  # samples before the first frame boundary on the timeline
    n_frames = max(0, (len(pcm) - lead) // _FRAME)
    if not n_frames:
        return []
    x = pcm[lead : lead + n_frames * _FRAME].astype(np.float64).reshape(n_frames, _FRAME)
    power = np.mean((x / 32768.0) ** 2, axis=1)
    loud = np.flatnonzero(10 * np.log10(power + 1e-20) > threshold_dbfs)
    if not len(loud):
        return []
    breaks = np.flatnonzero(np.diff(loud) > int(np.ceil(pause_ms / 10)))
    firsts = np.concatenate([[loud[0]], loud[breaks + 1]])
    lasts = np.concatenate([loud[breaks], [loud[-1]]])
    counts = np.diff(np.concatenate([[0], breaks + 1, [len(loud)]]))
    pad = round(pad_ms * SAMPLES_PER_MS)
    spans: list[SpeechSpan] = []
    for first, last, n_loud in zip(firsts.tolist(), lasts.tolist(), counts.tolist(), strict=True):
        if n_loud * 10 < min_speech_ms:
            continue
        a = max(0, lead + first * _FRAME - pad)
        b = min(len(pcm), lead + (last + 1) * _FRAME + pad)
        on = np.flatnonzero(streamed[a:b])
        if len(on):
            spans.append(SpeechSpan(a + int(on[0]), a + int(on[-1]) + 1))
    return spans


class SphinxEngine:
    """A :class:`~mgsim.speech.engine.TranscriptionEngine` backed by PocketSphinx.

    ``decoder_options`` go to ``pocketsphinx.Config`` as they are (``lw=10``,
    ``beam=1e-60``, ``lm=...``, ``dict=...``); unknown ones raise :class:`ConfigError`.
    The decoder is built once and reused, so one engine must not be used from two threads
    at a time.

    >>> engine = SphinxEngine()                                          # doctest: +SKIP
    >>> [u.text for u in engine.transcribe("customer", pcm, streamed)]   # doctest: +SKIP
    ['hi sam i'd like to make a payment']
    """

    name = "sphinx"

    def __init__(
        self,
        *,
        threshold_dbfs: float = -50.0,
        pause_ms: float = 500.0,
        pad_ms: float = 150.0,
        min_speech_ms: float = 100.0,
        max_utterance_ms: float = 15_000.0,
        decoder_options: Mapping[str, Any] | None = None,
    ) -> None:
        if pause_ms <= 0 or max_utterance_ms <= 0:
            raise ConfigError("pause_ms and max_utterance_ms must be > 0")
        if pad_ms < 0 or min_speech_ms < 0:
            raise ConfigError("pad_ms and min_speech_ms must be >= 0")
        self.threshold_dbfs = float(threshold_dbfs)
        self.pause_ms = float(pause_ms)
        self.pad_ms = float(pad_ms)
        self.min_speech_ms = float(min_speech_ms)
        self.max_utterance_ms = float(max_utterance_ms)
        # An utterance is closed once pause_ms of quiet follows its speech; a stretch of speech
        # no longer than max_utterance_ms ends at most that long after any of its words.
        self.settle_ms = self.pause_ms + self.pad_ms + self.max_utterance_ms
        """How long after an utterance's end no later audio can change it any more.

        Exact for speech that pauses at least every ``max_utterance_ms``. With
        :class:`~mgsim.speech.engine.StreamingTranscriber`, which re-decodes from the last
        word handed out, results match one :meth:`transcribe` as long as no utterance has
        ``min_speech_ms`` of loud audio after its last decoded word; a monologue cut by
        ``max_utterance_ms`` may be decoded slightly differently.
        """
        self._decoder = _make_decoder(dict(decoder_options or {}))

    # -- TranscriptionEngine ---------------------------------------------------------------

    def transcribe(
        self,
        role: str,
        pcm: Int16Array,
        streamed: BoolArray,
        *,
        offset_ms: float = 0.0,
    ) -> list[Utterance]:
        """Utterances of ``role`` decoded from its streamed audio, with absolute times."""
        check_engine_input(role, pcm, streamed)
        heard = np.where(streamed, pcm, np.int16(0)).astype(np.int16)
        utterances: list[Utterance] = []
        spans = speech_spans(
            heard,
            streamed,
            offset_ms=offset_ms,
            threshold_dbfs=self.threshold_dbfs,
            pause_ms=self.pause_ms,
            pad_ms=self.pad_ms,
            min_speech_ms=self.min_speech_ms,
        )
        for span in spans:
            words = self._decode(heard[span.start : span.end])
            timed = self._place(words, span, streamed, offset_ms)
            utterances.extend(self._group(role, timed))
        return utterances

    # -- steps -----------------------------------------------------------------------------

    def _decode(self, pcm: Int16Array) -> list[tuple[str, float, float]]:
        """Words of one utterance: (text, start_ms, end_ms) relative to its first sample."""
        audio = upsample_2x(pcm)
        d = self._decoder
        # The front end carries its noise estimate and cepstral mean over from the previous
        # utterance; resetting it makes every utterance decode the same whatever came before.
        d.reinit_feat()
        d.start_utt()
        d.process_raw(audio.tobytes(), full_utt=True)
        d.end_utt()
        words = []
        for seg in d.seg():
            text = _word_text(seg.word)
            if text:
                start = seg.start_frame * _DECODER_FRAME_MS
                end = (seg.end_frame + 1) * _DECODER_FRAME_MS
                words.append((text, start, end))
        return words

    def _place(
        self,
        words: Iterable[tuple[str, float, float]],
        span: SpeechSpan,
        streamed: BoolArray,
        offset_ms: float,
    ) -> list[TimedWord]:
        """Words on the call's timeline, without those that were mostly not streamed."""
        base_ms = offset_ms + span.start / SAMPLES_PER_MS
        span_ms = (span.end - span.start) / SAMPLES_PER_MS
        out = []
        for text, start, end in words:
            end = min(end, span_ms)  # the decoder may round the last frame up
            lo = span.start + round(start * SAMPLES_PER_MS)
            hi = span.start + round(end * SAMPLES_PER_MS)
            if hi <= lo or np.count_nonzero(streamed[lo:hi]) * 2 < hi - lo:
                continue
            out.append(TimedWord(text, base_ms + start, base_ms + end))
        return out

    def _group(self, role: str, words: Sequence[TimedWord]) -> list[Utterance]:
        groups: list[list[TimedWord]] = []
        for w in words:
            if groups and w.end_ms - groups[-1][0].start_ms <= self.max_utterance_ms:
                groups[-1].append(w)
            else:
                groups.append([w])
        return [Utterance(role, g[0].start_ms, g[-1].end_ms, tuple(g)) for g in groups]


def _make_decoder(options: dict[str, Any]) -> Any:
    try:
        import pocketsphinx
    except ImportError as exc:
        raise ConfigError(f"the sphinx engine needs PocketSphinx: {_INSTALL_HINT}") from exc
    options.setdefault("loglevel", "FATAL")
    try:
        config = pocketsphinx.Config(**options)
        return pocketsphinx.Decoder(config)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"PocketSphinx rejected decoder_options {options}: {exc}") from exc


_ALTERNATE = re.compile(r"\(\d+\)$")


def _word_text(token: str) -> str:
    """A decoder token as a transcript word; '' for silences, fillers and noise."""
    if not token or token[0] in "<[+":
        return ""
    return _ALTERNATE.sub("", token)


# -- word error rate ---------------------------------------------------------------------------
