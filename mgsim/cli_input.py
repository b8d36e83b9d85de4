"""The ``mgsim annotate`` and ``mgsim synth`` commands, and ``mgsim call``'s recording flags.

::

    mgsim annotate RECORDING [-o SIDECAR.json] [--customer-channel 0|1]
    mgsim annotate --customer A.wav --agent B.wav [-o SIDECAR.json]
    mgsim synth SCRIPT.txt [-o CALL.wav]
    mgsim call --audio RECORDING [--customer-channel 0|1] ...
    mgsim call --customer A.wav --agent B.wav ...

Every bad input ends in one line on stderr and exit status 2 (``mgsim.cli.main`` prints a
:class:`~mgsim.errors.ConfigError`), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mgsim.errors import ConfigError

__all__ = ["add_annotate", "add_call_inputs", "add_synth", "load_call"]


def add_call_inputs(call: argparse.ArgumentParser) -> None:
    """``mgsim call``'s flags for a user's own recording."""
    _recording_flags(call, "instead of --audio")


def _recording_flags(parser: argparse.ArgumentParser, legs_instead_of: str) -> None:
    parser.add_argument(
        "--customer",
        metavar="FILE",
        help=f"the customer's leg, a mono recording (with --agent; {legs_instead_of})",
    )
    parser.add_argument("--agent", metavar="FILE", help="the agent's leg, a mono recording")
    parser.add_argument(
        "--customer-channel",
        type=int,
        choices=[0, 1],
        default=0,
        help="which channel of a stereo recording is the customer (default 0, the left)",
    )


def load_call(args: argparse.Namespace) -> Any:
    """The call ``mgsim call`` plays (a recording without a sidecar is annotated first)."""
    from mgsim.sim.annotate import load_or_annotate

    return load_or_annotate(
        args.audio,
        customer=args.customer,
        agent=args.agent,
        customer_channel=args.customer_channel,
    )


def _annotate(args: argparse.Namespace) -> int:
    from mgsim.sim.annotate import annotate_files, summary_lines

    if args.recording is None and (args.customer is None or args.agent is None):
        raise ConfigError("give a RECORDING, or both --customer FILE and --agent FILE")
    result = annotate_files(
        args.recording,
        customer=args.customer,
        agent=args.agent,
        customer_channel=args.customer_channel,
        output=args.output,
    )
    for line in summary_lines(result):
        print(line)
    return 0


def add_annotate(sub: Any) -> None:
    p = sub.add_parser(
        "annotate",
        help="recognize a recording's words and sensitive spans into an editable sidecar",
    )
    p.add_argument("recording", nargs="?", help="a WAV, FLAC or OGG file (mono or stereo)")
    _recording_flags(p, "instead of RECORDING")
    p.add_argument(
        "-o", "--output", help="where the sidecar goes (default: beside the recording, .json)"
    )
    p.set_defaults(func=_annotate)


def _synth(args: argparse.Namespace) -> int:
    from mgsim.sim.script import parse_script
    from mgsim.sim.synth import SynthError, synthesize

    path = Path(args.script)
    try:
        # utf-8-sig: a script saved by an editor that writes a byte-order mark still reads.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such script") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: a directory, not a script") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from exc
    output = Path(args.output) if args.output else path.with_suffix(".wav")
    if output.suffix not in (".wav", ".flac"):
        raise ConfigError(f"{output}: the call is written as .wav or .flac")
    if output.resolve() == path.resolve():
        raise ConfigError(f"{output}: would overwrite the script")
    script = parse_script(text, call_id=path.stem, source=path.name)
    try:
        call = synthesize(script)
    except SynthError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        audio, sidecar = call.save(output)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write it ({exc.strerror})") from exc
    spans = ", ".join(s.label for s in call.sensitive) or "none"
    print(
        f"{audio} and {sidecar}: {call.duration_ms / 1000:.1f} s, {len(call.words)} words, "
        f"sensitive spans: {spans}"
    )
    print(f"play it: mgsim call --namespace twilio --audio {audio}", file=sys.stderr)
    return 0


def add_synth(sub: Any) -> None:
    p = sub.add_parser("synth", help="synthesize a call script into a WAV and its sidecar")
    p.add_argument("script", help="a call script (.txt; format in mgsim/sim/script.py)")
    p.add_argument("-o", "--output", help="the call's .wav or .flac (default: beside the script)")
    p.set_defaults(func=_synth)
