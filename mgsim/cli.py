"""The ``mgsim`` command.

::

    mgsim serve [--host 127.0.0.1] [--port 8080] [--seed N] [--no-limits]
                [--sip-port 5060 | --no-sip] [--rtp-ports LOW-HIGH] [--rtp-timeout-s S]
                [--keep-calls N] [--audiohook-unsigned]
                [--latency-ms N] [--jitter-ms N] [--fail-rate P]
    mgsim call  --namespace NS --audio FILE|SAMPLE [--plan whole|connect|guard]
                [--margin-ms N] [--latency-ms N] [--fail-rate P] [--naive-stop]
                [--loss P] [--jitter-ms N] [--reorder P]
                [--transport inprocess|socket] [--realtime] [--json]
                [--target URL [--sip URI] [--audiohook-url URL] [--webhook-listen HOST:PORT]]
                [--record CAPTURE]
    mgsim replay CAPTURE [--audio FILE|SAMPLE] [--plan whole|connect|guard] [--json]
    mgsim demo  [--json]
    mgsim annotate RECORDING | --customer A --agent B [-o SIDECAR]   (see mgsim.cli_input)
    mgsim synth SCRIPT [-o CALL.wav]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from mgsim import __version__
from mgsim.cli_input import add_annotate, add_call_inputs, add_synth
from mgsim.errors import ConfigError, MgsimError
from mgsim.report import EXIT_CODES_HELP, EXIT_FAILED, EXIT_USAGE

__all__ = ["main"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_SERVE_ENVIRONMENT = """\
environment:
  MGSIM_API_ID, MGSIM_API_SECRET    credentials of the vendor API and /_sim/ (default
                                    mgsim-local / mgsim-local-secret, loopback only)
  MGSIM_AUDIOHOOK_API_KEY           the AudioHook integration's API key: X-API-KEY and the
                                    signature's keyid (default mgsim-local-audiohook-key)
  MGSIM_AUDIOHOOK_CLIENT_SECRET     its client secret (base64), the HMAC key of the
                                    upgrade's HTTP message signature (default: a local one;
                                    --audiohook-unsigned: none, connections are unsigned)
  MGSIM_WEBHOOK_URL, MGSIM_WEBHOOK_SECRET
                                    where transcript webhooks go, and the secret they carry
"""


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mgsim.server.config import Faults, SimulatorConfig
    from mgsim.simulator import Simulator
    from mgsim.transports.serve import WEBSOCKET_OPTIONS

    overrides: dict[str, object] = {"seed": args.seed}
    overrides["sip_port"] = None if args.no_sip else args.sip_port
    overrides["rtp_ports"] = _port_range(args.rtp_ports) if args.rtp_ports else None
    if args.no_limits:
        overrides.update(spike_arrest_per_s=None, daily_quota=None)
    else:
        overrides.update(spike_arrest_per_s=args.spike_arrest, daily_quota=args.daily_quota)
    overrides["faults"] = Faults(
        latency_ms=args.latency_ms, jitter_ms=args.jitter_ms, rate_503=args.fail_rate
    )
    overrides["rtp_timeout_s"] = args.rtp_timeout_s
    if args.keep_calls < 1:
        raise ConfigError(f"--keep-calls must be >= 1 (ended calls kept), got {args.keep_calls}")
    overrides["keep_calls"] = args.keep_calls
    if args.audiohook_unsigned:
        overrides["audiohook_client_secret"] = None
    if args.capture:
        overrides["capture_dir"] = args.capture
    config = SimulatorConfig.from_env(**overrides)
    if not _is_loopback(args.host) and config.uses_default_credentials:
        raise ConfigError(
            f"refusing to listen on {args.host} with the default local credentials: set "
            "MGSIM_API_ID and MGSIM_API_SECRET, or bind 127.0.0.1"
        )
    if not _is_loopback(args.host) and config.uses_default_audiohook_secret:
        raise ConfigError(
            f"refusing to listen on {args.host} with the default AudioHook key: set "
            "MGSIM_AUDIOHOOK_API_KEY and MGSIM_AUDIOHOOK_CLIENT_SECRET, or bind 127.0.0.1"
        )
    sim = Simulator(config)
    print(
        f"mgsim {__version__}: simulated AutoTranscribe Media Gateway on "
        f"http://{args.host}:{args.port} (contract at /openapi.yaml)",
        file=sys.stderr,
    )
    if config.capture_dir:
        print(f"captures: one per call received, in {config.capture_dir}", file=sys.stderr)
    if config.sip_port:
        sip = f"{config.media_host}:{config.sip_port}"
        print(f"SIPREC: SIP on {sip} (UDP and TCP)", file=sys.stderr)
    elif config.sip_port == 0:
        print("SIPREC: SIP on a free port (GET /_sim/v1/media/stats names it)", file=sys.stderr)
    app: Any = sim.app
    if not args.quiet:
        from mgsim.transports.access_log import AccessLog

        # An unsigned AudioHook setup has no client secret to mask.
        secrets = [
            s
            for s in (config.api_id, config.api_secret, config.audiohook_client_secret)
            if s is not None
        ]
        app = AccessLog(sim.app, sys.stderr, secrets=secrets)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # uvicorn's access lines would carry the Twilio media token in WebSocket paths;
        # AccessLog writes them with tokens masked instead.
        access_log=False,
        **WEBSOCKET_OPTIONS,  # 1 MiB frames, no permessage-deflate on audio
    )
    return 0


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit():
        raise ConfigError(f"--rtp-ports wants LOW-HIGH, got {text!r}")
    return int(low), int(high)


def _scenario_from(args: argparse.Namespace) -> Any:
    from mgsim.server.config import Faults
    from mgsim.sim.plans import Plan
    from mgsim.sim.scenario import Scenario

    plan = Plan(
        args.plan,
        margin_before_ms=args.margin_ms,
        margin_after_ms=args.margin_after_ms if args.margin_after_ms is not None else 1000.0,
    )
    faults = Faults(rate_503=args.fail_rate) if args.fail_rate else None
    impairment = None
    if args.loss or args.jitter_ms or args.reorder:
        from mgsim.media.impair import Impairment

        impairment = Impairment(
            loss=args.loss, jitter_ms=args.jitter_ms, reorder=args.reorder, seed=args.seed
        )
    from mgsim.cli_input import load_call

    target = None
    if args.target is not None:
        from mgsim.targets import Target, parse_listen

        target = Target(
            args.target,
            sip=args.sip,
            audiohook_url=args.audiohook_url,
            webhook_listen=parse_listen(args.webhook_listen) if args.webhook_listen else None,
        )
    elif args.sip or args.audiohook_url or args.webhook_listen:
        raise ConfigError("--sip, --audiohook-url and --webhook-listen go with --target URL")
    return Scenario(
        load_call(args),
        args.namespace,
        plan,
        redaction_output=args.redaction_output,
        control_latency_ms=args.latency_ms,
        faults=faults,
        seed=args.seed,
        confirm_stop=not args.naive_stop,
        impairment=impairment,
        realtime=args.realtime,
        target=target,
    )


def _note_env(command: str) -> None:
    from mgsim.targets import env_note

    note = env_note(command)
    if note:
        print(note, file=sys.stderr)


def _call(args: argparse.Namespace) -> int:
    from mgsim.report import exit_code, print_call, realtime_progress
    from mgsim.sim.scenario import run_scenario

    scenario = _scenario_from(args)  # bad input is refused first, in its one line
    if getattr(args, "target", None) is None:
        _note_env("call")
    pacing = (
        realtime_progress(scenario.call.duration_ms) if args.realtime else contextlib.nullcontext()
    )
    live = None
    if args.record and scenario.namespace == "siprec" and (
        args.transport == "socket" or scenario.target is not None
    ):
        from mgsim.capture.live import recording

        live = recording(args.record)  # the SIP and RTP exchange as it really went
    with pacing, live or contextlib.nullcontext() as recorder:
        if args.transport == "socket" and scenario.target is None:
            from mgsim.sim.socket_scenario import run_scenario_over_sockets

            result = run_scenario_over_sockets(scenario)
        else:
            result = run_scenario(scenario)

    if args.record:
        from mgsim.capture.command import record_call

        written = record_call(scenario, args.record, recorder)
        print(f"mgsim: recorded {written}", file=sys.stderr)
    if args.json:
        print(json.dumps({**result.to_json(), "exit_code": exit_code(result)}, indent=2))
    else:
        print_call(result)
    return exit_code(result)


def _replay(args: argparse.Namespace) -> int:
    from mgsim.capture.command import replay_command
    from mgsim.sim.plans import Plan

    plan = Plan(
        args.plan,
        margin_before_ms=args.margin_ms,
        margin_after_ms=args.margin_after_ms if args.margin_after_ms is not None else 1000.0,
    )
    from mgsim.sim.annotate import load_or_annotate

    call = load_or_annotate(args.audio) if args.audio else None
    return replay_command(args.capture, plan, call, args.redaction_output, args.json)


def _demo(args: argparse.Namespace) -> int:
    from mgsim.report import demo_verdict
    from mgsim.sim.call import load_sample
    from mgsim.sim.plans import Plan
    from mgsim.sim.scenario import NAMESPACES, Scenario, run_scenario

    _note_env("demo")
    call = load_sample("card_payment")
    rows = []
    for namespace in NAMESPACES:
        for plan in ("whole", "guard"):
            for output in ("unredacted", "redacted"):
                result = run_scenario(
                    Scenario(call, namespace, Plan(plan), redaction_output=output)  # type: ignore[arg-type]
                )
                leaks = result.leaks
                rows.append(
                    {
                        "namespace": namespace,
                        "plan": plan,
                        "redaction_output": output,
                        "utterances": len(result.utterances),
                        "pci_words": leaks["pci_words"],
                        "pci_words_transcribed": leaks["pci_words_transcribed"],
                        "pci_words_visible": leaks["pci_words_visible"],
                        "requests": len(result.journal),
                        "verdict": demo_verdict(leaks),
                    }
                )
    if args.json:
        print(json.dumps({"call": call.call_id, "runs": rows}, indent=2))
        return 0
    print(
        f"{call.title}: {call.duration_ms / 1000:.1f} s, {rows[0]['pci_words']} sensitive "
        "words (card number, expiry, CVV), played through each platform's wire format"
    )
    print()
    header = f"{'namespace':18} {'plan':6} {'output':11} {'utterances':>10} "
    header += f"{'PCI transcribed':>16} {'PCI visible':>12}  verdict"
    print(header)
    print("-" * (len(header) + 10))
    for r in rows:
        print(
            f"{r['namespace']:18} {r['plan']:6} {r['redaction_output']:11} {r['utterances']:>10} "
            f"{r['pci_words_transcribed']:>16} {r['pci_words_visible']:>12}  {r['verdict']}"
        )
    print()
    print("whole: the gateway transcribes the card details; only redaction hides them, and its")
    print("       masks (one # per character) still give the expiry's spoken 'oh' away: a leak.")
    print("guard: stop-streaming before each sensitive span, start after: nothing to redact.")
    print("LEAK (n): n sensitive spans visible, shown or inferable from their masks.")
    print()
    print(
        f"Try: {self_command()} call --namespace twilio --audio card_payment --margin-ms 0 "
        "--latency-ms 400"
    )
    return 0


def self_command() -> str:
    """How to run mgsim again from here: ``mgsim`` when the shell finds this one on PATH,
    else its path (``.venv/bin/mgsim`` from a checkout)."""
    import shutil
    from pathlib import Path

    here = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if here is None or here.name != "mgsim" or not here.exists():
        here = Path(sys.executable).with_name("mgsim")
        if not here.exists():
            return f"{sys.executable} -m mgsim.cli"
    found = shutil.which("mgsim")
    if found and Path(found).resolve() == here.resolve():
        return "mgsim"
    try:
        return str(here.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(here.absolute())


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number, got {text!r}") from None


def _probability(text: str) -> float:
    """An argparse type: a float from 0 to 1."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"wants a probability between 0 and 1, got {text}")
    return value


def _milliseconds(text: str) -> float:
    """An argparse type: a finite float >= 0."""
    value = _number(text)
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"wants a number of milliseconds >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgsim", description="Simulate ASAPP's AutoTranscribe Media Gateway."
    )
    parser.add_argument("--version", action="version", version=f"mgsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the simulated gateway over HTTP",
        epilog=_SERVE_ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--seed", type=int, default=None, help="seed ids and faults")
    serve.add_argument(
        "--spike-arrest",
        type=int,
        default=100,
        metavar="N",
        help="requests per second before 429 (default 100)",
    )
    serve.add_argument(
        "--daily-quota",
        type=int,
        default=10_000,
        metavar="N",
        help="requests per UTC day before 429 (default 10000, the sandbox's)",
    )
    serve.add_argument(
        "--no-limits",
        action="store_true",
        help="switch spike arrest and the daily quota off (benchmarks)",
    )
    serve.add_argument(
        "--sip-port",
        type=int,
        default=0,
        help="SIP port for SIPREC, UDP and TCP, e.g. 5060 (default 0: any free port, "
        "shown by GET /_sim/v1/media/stats)",
    )
    serve.add_argument("--no-sip", action="store_true", help="do not listen for SIPREC")
    serve.add_argument(
        "--rtp-ports",
        default=None,
        metavar="LOW-HIGH",
        help="UDP port range for RTP (default: any free ports)",
    )
    serve.add_argument(
        "--latency-ms",
        type=_milliseconds,
        metavar="MS",
        default=0.0,
        help="added to every vendor request before it takes effect",
    )
    serve.add_argument(
        "--jitter-ms",
        type=_milliseconds,
        metavar="MS",
        default=0.0,
        help="plus up to this much (uniform, seeded)",
    )
    serve.add_argument(
        "--fail-rate",
        type=_probability,
        metavar="P",
        default=0.0,
        help="probability that a vendor request answers 503 (per-request rules: "
        "POST /_sim/v1/faults, see docs/FAULTS.md)",
    )
    serve.add_argument(
        "--rtp-timeout-s",
        type=float,
        default=30.0,
        help="RTP silence that ends a SIPREC call whose BYE never came (default 30)",
    )
    serve.add_argument(
        "--keep-calls",
        type=int,
        default=1000,
        metavar="N",
        help="ended calls kept, most recent first, with their transcripts (default 1000); "
        "older ones are let go so a long run stays in flat memory",
    )
    serve.add_argument(
        "--capture",
        metavar="DIR",
        help="write one capture of every call received to DIR: SIPREC as pcapng (the SIP "
        "and RTP with the sockets' addresses), Twilio and AudioHook as JSON lines of both "
        "directions, Amazon Connect as its MKV fragments; each replays with mgsim replay",
    )
    serve.add_argument(
        "--audiohook-unsigned",
        action="store_true",
        help="accept unsigned AudioHook connections that carry the API key "
        "(MGSIM_AUDIOHOOK_API_KEY) alone: an integration without a client secret",
    )
    serve.add_argument(
        "--quiet",
        action="store_true",
        help="write no line per request (by default each request is logged to stderr, "
        "media tokens and secrets masked)",
    )
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (default warning)",
    )
    serve.set_defaults(func=_serve)

    call = sub.add_parser(
        "call",
        help="play one call through one platform and report leaks",
        description="Play one call through one platform's wire format into the simulated "
        "gateway, drive start/stop-streaming by a plan, and give every sensitive span a "
        "verdict: never transcribed, transcribed but redacted, or visible.",
        epilog=EXIT_CODES_HELP,
    )
    call.add_argument(
        "--namespace",
        required=True,
        choices=["siprec", "twilio", "genesysaudiohook", "amazonconnect"],
        help="the platform whose wire format carries the call",
    )
    call.add_argument(
        "--audio",
        help="a sample call name (e.g. card_payment), a call's .wav/.json, or a recording "
        "(WAV, FLAC, OGG; annotated first when it has no sidecar)",
    )
    add_call_inputs(call)
    call.add_argument(
        "--plan",
        default="guard",
        choices=["whole", "connect", "guard"],
        help="when to start and stop: whole (the entire call), connect (not during IVR, "
        "hold or transfer ringback), guard (default: connect, plus a stop around each "
        "sensitive span)",
    )
    call.add_argument(
        "--margin-ms",
        type=_milliseconds,
        metavar="MS",
        default=1500.0,
        help="guard: stop this long before each sensitive span (default 1500)",
    )
    call.add_argument(
        "--margin-after-ms",
        type=_milliseconds,
        metavar="MS",
        default=None,
        help="guard: start this long after each span (default 1000)",
    )
    call.add_argument(
        "--redaction-output",
        default="redacted",
        choices=["redacted", "unredacted", "redacted_and_unredacted"],
        help="the start request's redactionOutput (default redacted)",
    )
    call.add_argument(
        "--latency-ms",
        type=_milliseconds,
        metavar="MS",
        default=0.0,
        help="added to every control request before it takes effect",
    )
    call.add_argument(
        "--fail-rate",
        type=_probability,
        metavar="P",
        default=0.0,
        help="probability (0 to 1) that a control request answers 503",
    )
    call.add_argument(
        "--loss",
        type=_probability,
        metavar="P",
        default=0.0,
        help="probability (0 to 1) that a media message is lost (siprec, twilio)",
    )
    call.add_argument(
        "--jitter-ms",
        type=_milliseconds,
        metavar="MS",
        default=0.0,
        help="media arrives up to this much late (uniform; at most 1000)",
    )
    call.add_argument(
        "--reorder",
        type=_probability,
        metavar="P",
        default=0.0,
        help="probability (0 to 1) that an RTP packet arrives after its successor (siprec)",
    )
    call.add_argument(
        "--naive-stop",
        action="store_true",
        help="send stop once instead of retrying it until confirmed",
    )
    call.add_argument(
        "--transport",
        default="inprocess",
        choices=["inprocess", "socket"],
        help="inprocess (default): a virtual-time embedded gateway; socket: a real server on "
        "loopback, media over SIP/RTP, WebSocket or KVS HTTP and control over HTTP "
        "(--latency-ms and --fail-rate need --realtime there)",
    )
    call.add_argument(
        "--realtime",
        action="store_true",
        help="pace the call in real time (it takes as long as the call; progress goes to "
        "stderr); over sockets this is what --latency-ms and --fail-rate need",
    )
    call.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for injected faults and media impairment (default 0: runs repeat exactly)",
    )
    call.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (verdict, spans, actions, transcript, requests)",
    )
    call.add_argument(
        "--target",
        metavar="URL",
        help="play the call to this gateway instead of the embedded one: another mgsim serve "
        "or https://api.sandbox.asapp.com (credentials: ASAPP_API_ID, ASAPP_API_SECRET)",
    )
    call.add_argument(
        "--sip", metavar="URI", help="with --target: the SIPREC recording server, e.g. "
        "sip:HOST:5060;transport=tcp (an mgsim serve target names its own)"
    )  # fmt: skip
    call.add_argument(
        "--audiohook-url", metavar="URL", help="with --target: the AudioHook ws:// or wss:// "
        "URL (key and secret: MGSIM_AUDIOHOOK_API_KEY, MGSIM_AUDIOHOOK_CLIENT_SECRET)"
    )  # fmt: skip
    call.add_argument(
        "--webhook-listen", metavar="HOST:PORT", help="with --target: receive transcript "
        "webhooks at http://HOST:PORT/webhooks/transcripts (secret: MGSIM_WEBHOOK_SECRET)"
    )  # fmt: skip
    call.add_argument(
        "--record", metavar="PATH", help="write the call as a capture: .pcap/.pcapng "
        "(siprec), JSON lines (twilio, genesysaudiohook), .mkv (amazonconnect)"
    )  # fmt: skip
    call.set_defaults(func=_call)

    rep = sub.add_parser("replay", help="play a capture (pcap, Twilio/AudioHook log, MKV) "
                         "into the simulated gateway")  # fmt: skip
    rep.add_argument("capture", help="a .pcap/.pcapng, a JSON-lines log or an MKV dump")
    rep.add_argument("--audio", help="the call's sample name or sidecar: its script lets "
                     "the gateway transcribe and the guard plan find the spans")  # fmt: skip
    rep.add_argument("--plan", default="whole", choices=["whole", "connect", "guard"],
                     help="when the replayed call streams: whole (default), connect, or guard "
                     "(stops around the spans of --audio's script)")  # fmt: skip
    rep.add_argument("--margin-ms", type=float, default=1500.0,
                     help="guard: stop this many ms before each span (default 1500)")  # fmt: skip
    rep.add_argument("--margin-after-ms", type=float, default=None,
                     help="guard: start this many ms after each span (default 1000)")  # fmt: skip
    rep.add_argument("--redaction-output", default="redacted",
                     choices=["redacted", "unredacted", "redacted_and_unredacted"],
                     help="what the transcripts carry (default redacted)")  # fmt: skip
    rep.add_argument("--json", action="store_true", help="print one JSON object")
    rep.set_defaults(func=_replay)

    demo = sub.add_parser("demo", help="the card-payment call through all four platforms")
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.set_defaults(func=_demo)
    add_annotate(sub)
    add_synth(sub)

    from mgsim.sweep.cli import add_parser as add_sweep

    add_sweep(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"mgsim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MgsimError as exc:
        print(f"mgsim: the run could not be completed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (``mgsim call ... | head``): stop quietly, and keep Python
        # from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
