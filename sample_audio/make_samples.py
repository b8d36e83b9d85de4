"""Regenerate (or check) the sample calls from the scripts in ``scripts/``.

Usage, from the repository root::

    python sample_audio/make_samples.py            # write sample_audio/<name>.wav + .json
    python sample_audio/make_samples.py --check    # verify the committed files match
    python sample_audio/make_samples.py card_payment ivr_hold   # only these

``--check`` always compares the committed sidecars with what the scripts say (words,
speakers, voices, sensitive spans, segment kinds). When the installed espeak-ng has the
version recorded in the sidecars it also re-synthesises every call and requires identical
audio and timings; with another version (or none) it says so and skips that part, because
different espeak-ng releases pronounce differently.

The scripts in ``NATURAL_VOICE`` are spoken by Piper's neural voice through a telephone
channel (:mod:`mgsim.sim.natural_voice`, the ``samples`` extra). ``--check`` re-synthesises
them when the recorded piper-tts and voice model are installed and requires the same
sidecar and audio within ``NATURAL_AUDIO_SNR_DB`` (onnxruntime's float rounding may differ
on another CPU family); otherwise it says so and skips that part.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402

from mgsim.errors import MgsimError  # noqa: E402
from mgsim.sim.call import Call  # noqa: E402
from mgsim.sim.script import Hold, Script, Silence, Turn, load_script  # noqa: E402
from mgsim.sim.synth import espeak_version, synthesize  # noqa: E402

SCRIPTS = HERE / "scripts"
BUDGET_BYTES = 12_000_000
NATURAL_VOICE = ("natural_card_payment", "natural_identity_check")
"""Scripts spoken by Piper through a telephone channel; all others by espeak-ng."""
NATURAL_AUDIO_SNR_DB = 40.0


def expected_outline(script: Script) -> dict[str, Any]:
    """What the script alone says the sidecar must contain (no timings)."""
    words: list[tuple[str, str, str]] = []
    spans: list[tuple[str, str, list[int]]] = []
    kinds: list[str] = []
    for event in script.events:
        if isinstance(event, Turn):
            base = len(words)
            words += [(event.speaker, event.voice, t.text) for t in event.tokens]
            for span in event.spans:
                idx = list(range(base + span.first, base + span.last + 1))
                spans.append((span.label, " ".join(words[i][2] for i in idx), idx))
            kinds.append(event.kind)
        elif isinstance(event, Hold):
            kinds.append("hold")
        elif isinstance(event, Silence):
            kinds.append("silence")
        else:
            kinds.append("transfer")
    return {
        "call_id": script.call_id,
        "title": script.title,
        "direction": script.direction,
        "words": words,
        "sensitive": spans,
        "segments": kinds,
    }


def actual_outline(call: Call) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "title": call.title,
        "direction": call.direction,
        "words": [(w.speaker, w.voice, w.text) for w in call.words],
        "sensitive": [(s.label, s.text, list(s.word_indexes)) for s in call.sensitive],
        "segments": [s.kind for s in call.segments],
    }


def check(names: list[str], version: str | None) -> int:
    failures = 0
    for name in names:
        script = load_script(SCRIPTS / f"{name}.txt")
        wav = HERE / f"{name}.wav"
        try:
            committed = Call.load(wav)
        except MgsimError as exc:
            print(f"FAIL {name}: {exc}")
            failures += 1
            continue
        if actual_outline(committed) != expected_outline(script):
            print(f"FAIL {name}: sidecar words/spans/segments differ from the script")
            failures += 1
            continue
        if name in NATURAL_VOICE:
            failures += check_natural(name, script, committed)
            continue
        recorded = committed.meta.get("generator", {}).get("espeak_ng")
        if version is None or recorded != version:
            have = version or "not installed"
            print(
                f"ok   {name}: outline matches; audio not compared (made with espeak-ng "
                f"{recorded}, have {have})"
            )
            continue
        fresh = synthesize(script)
        same_audio = np.array_equal(fresh.stereo_array(), committed.stereo_array())
        if not same_audio or fresh.to_sidecar() != committed.to_sidecar():
            print(f"FAIL {name}: regenerated audio or sidecar differs from the committed files")
            failures += 1
        else:
            print(f"ok   {name}: identical to a fresh synthesis")
    orphans = sorted(
        p.name
        for p in HERE.iterdir()
        if p.suffix in (".wav", ".json") and not (SCRIPTS / f"{p.stem}.txt").exists()
    )
    for orphan in orphans:
        print(f"FAIL {orphan}: no script for it in scripts/")
        failures += 1
    return failures


def natural_versions() -> dict[str, str] | None:
    """The installed piper-tts and voice package as the sidecars record them, or None."""
    from importlib.metadata import PackageNotFoundError, version

    from mgsim.sim.natural_voice import VOICE_PACKAGE

    try:
        return {
            "piper_tts": version("piper-tts"),
            "onnxruntime": version("onnxruntime"),
            "voice_package": f"{VOICE_PACKAGE} {version(VOICE_PACKAGE)}",
        }
    except PackageNotFoundError:
        return None


def check_natural(name: str, script: Script, committed: Call) -> int:
    from mgsim.sim.natural_voice import synthesize_natural

    generator = committed.meta.get("generator", {})
    recorded = {k: generator.get(k) for k in ("piper_tts", "onnxruntime", "voice_package")}
    have = natural_versions()
    if have != recorded:
        # Another onnxruntime may round differently, so only the recorded versions compare.
        made = ", ".join(f"{k} {v}" for k, v in recorded.items())
        now = "not installed" if have is None else ", ".join(f"{k} {v}" for k, v in have.items())
        print(f"ok   {name}: outline matches; audio not compared (made with {made}, have {now})")
        return 0
    fresh = synthesize_natural(script)
    if fresh.to_sidecar() != committed.to_sidecar():
        print(f"FAIL {name}: regenerated sidecar differs from the committed one")
        return 1
    new = fresh.stereo_array().astype(np.float64)
    old = committed.stereo_array().astype(np.float64)
    error = float(np.sum((new - old) ** 2))
    if error == 0.0:
        print(f"ok   {name}: identical to a fresh synthesis")
        return 0
    snr = 10 * np.log10(float(np.sum(old**2)) / error)
    if snr < NATURAL_AUDIO_SNR_DB:
        print(f"FAIL {name}: regenerated audio differs ({snr:.1f} dB SNR)")
        return 1
    print(f"ok   {name}: same sidecar, audio within {snr:.1f} dB SNR of a fresh synthesis")
    return 0


def generate(names: list[str]) -> int:
    for name in names:
        script = load_script(SCRIPTS / f"{name}.txt")
        if name in NATURAL_VOICE:
            from mgsim.sim.natural_voice import synthesize_natural

            call = synthesize_natural(script)
        else:
            call = synthesize(script)
        wav, sidecar = call.save(HERE / f"{name}.wav")
        size = wav.stat().st_size + sidecar.stat().st_size
        print(
            f"wrote {wav.name} + {sidecar.name}: {call.duration_ms / 1000:.1f} s, "
            f"{len(call.words)} words, {len(call.sensitive)} sensitive, {size / 1e6:.2f} MB"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="script names (default: all)")
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args(argv)
    available = sorted(p.stem for p in SCRIPTS.glob("*.txt"))
    names = args.names or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        parser.error(f"no script named {', '.join(unknown)} in {SCRIPTS}")
    version = espeak_version()
    if args.check:
        failures = check(names, version)
    else:
        if version is None and set(names) - set(NATURAL_VOICE):
            print("espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
            return 2
        if set(names) & set(NATURAL_VOICE) and natural_versions() is None:
            print(
                "piper-tts and its voice are not installed (pip install -e '.[samples]')",
                file=sys.stderr,
            )
            return 2
        try:
            failures = generate(names)
        except MgsimError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    total = sum(p.stat().st_size for p in HERE.iterdir() if p.suffix in (".wav", ".json"))
    print(
        f"sample_audio: {total / 1e6:.2f} MB committed audio and sidecars "
        f"(budget {BUDGET_BYTES / 1e6:.1f} MB)"
    )
    if total > BUDGET_BYTES:
        print("FAIL: over the size budget", file=sys.stderr)
        failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
