"""The ``mgsim`` command.

::

    mgsim serve [--host 127.0.0.1] [--port 8080] [--seed N] [--no-limits]
                [--sip-port 5060 | --no-sip] [--rtp-ports LOW-HIGH] [--rtp-timeout-s S]
                [--keep-calls N]
                [--latency-ms N] [--jitter-ms N] [--fail-rate P]
    mgsim call  --namespace NS --audio FILE|SAMPLE [--plan whole|connect|guard]
                [--margin-ms N] [--latency-ms N] [--fail-rate P] [--naive-stop]
                [--loss P] [--jitter-ms N] [--reorder P]
                [--transport inprocess|socket] [--realtime] [--json]
    mgsim demo  [--json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from mgsim import __version__
from mgsim.errors import ConfigError

__all__ = ["main"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mgsim.server.config import Faults, SimulatorConfig
    from mgsim.simulator import Simulator

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
    if config.sip_port:
        sip = f"{config.media_host}:{config.sip_port}"
        print(f"SIPREC: SIP on {sip} (UDP and TCP)", file=sys.stderr)
    elif config.sip_port == 0:
        print("SIPREC: SIP on a free port (GET /_sim/v1/media/stats names it)", file=sys.stderr)
    uvicorn.run(
        sim.app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # Access lines would carry the Twilio media token in WebSocket paths; mgsim logs its
        # own events instead.
        access_log=False,
        ws_max_size=1 << 20,  # decoders refuse over 64 kB with their own close codes
    )
    return 0


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit():
        raise ConfigError(f"--rtp-ports wants LOW-HIGH, got {text!r}")
    return int(low), int(high)


def _load_call(audio: str) -> Any:
    from pathlib import Path

    from mgsim.sim.call import Call, list_samples, load_sample

    if Path(audio).exists():
        return Call.load(audio)
    names = [p.stem for p in list_samples()]
    if audio in names:
        return load_sample(audio)
    raise ConfigError(f"no audio file or sample call named {audio!r} (samples: {', '.join(names)})")


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
    return Scenario(
        _load_call(args.audio),
        args.namespace,
        plan,
        redaction_output=args.redaction_output,
        control_latency_ms=args.latency_ms,
        faults=faults,
        seed=args.seed,
        confirm_stop=not args.naive_stop,
        impairment=impairment,
        realtime=args.realtime,
    )


def _print_call(result: Any) -> None:
    sc = result.scenario
    leaks = result.leaks
    print(f"{sc.call.title or sc.call.call_id} via {sc.namespace} (guid {result.guid})")
    print(
        f"plan {sc.plan.kind}: stop {sc.plan.margin_before_ms:.0f} ms before and start "
        f"{sc.plan.margin_after_ms:.0f} ms after each sensitive span; redaction "
        f"{sc.redaction_output}"
    )
    print()
    for a in result.actions:
        mark = "ok " if a.confirmed else ("MASKED" if a.masked_until_ms else "FAILED")
        print(f"  {a.at_ms / 1000:7.2f} s  {a.action:5}  {mark:6}  {a.reason}  ({a.detail})")
    print()
    for row in result.utterance_rows():
        text = row["redacted_text"] if sc.redaction_output != "unredacted" else row["text"]
        print(f"  {row['start_ms'] / 1000:7.2f} s  {row['role']:8}  {text}")
    print()
    verdict = "LEAK" if leaks["pci_words_visible"] else "no card data visible"
    print(
        f"sensitive words: {leaks['pci_words']}; transcribed {leaks['pci_words_transcribed']} "
        f"({leaks['pci_ms_transcribed']:.0f} ms of audio); visible after redaction "
        f"{leaks['pci_words_visible']}: {verdict}"
    )
    codes = [f"{e.status}" for e in result.journal.entries]
    print(f"requests: {len(codes)} ({', '.join(sorted(set(codes)))})")
    if result.impairment is not None:
        imp = result.impairment
        print(
            f"media impaired: {imp.sent} messages sent, {imp.dropped} lost, "
            f"{imp.reordered} reordered, {imp.delayed} delayed"
        )


def _call(args: argparse.Namespace) -> int:
    from mgsim.sim.scenario import run_scenario

    scenario = _scenario_from(args)
    if args.transport == "socket":
        from mgsim.sim.socket_scenario import run_scenario_over_sockets

        result = run_scenario_over_sockets(scenario)
    else:
        result = run_scenario(scenario)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print_call(result)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mgsim.sim.call import load_sample
    from mgsim.sim.plans import Plan
    from mgsim.sim.scenario import NAMESPACES, Scenario, run_scenario

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
    header += f"{'PCI transcribed':>16} {'PCI visible':>12}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['namespace']:18} {r['plan']:6} {r['redaction_output']:11} {r['utterances']:>10} "
            f"{r['pci_words_transcribed']:>16} {r['pci_words_visible']:>12}"
        )
    print()
    print("whole: the gateway transcribes the card details; only redaction hides them.")
    print("guard: stop-streaming before each sensitive span, start after: nothing to redact.")
    print(
        "Try: mgsim call --namespace twilio --audio card_payment --plan guard --margin-ms 0 "
        "--latency-ms 400"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgsim", description="Simulate ASAPP's AutoTranscribe Media Gateway."
    )
    parser.add_argument("--version", action="version", version=f"mgsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the simulated gateway over HTTP")
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
        type=float,
        default=0.0,
        help="added to every vendor request before it takes effect",
    )
    serve.add_argument(
        "--jitter-ms", type=float, default=0.0, help="plus up to this much (uniform, seeded)"
    )
    serve.add_argument(
        "--fail-rate",
        type=float,
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
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(func=_serve)

    call = sub.add_parser("call", help="play one call through one platform and report leaks")
    call.add_argument(
        "--namespace",
        required=True,
        choices=["siprec", "twilio", "genesysaudiohook", "amazonconnect"],
    )
    call.add_argument(
        "--audio", required=True, help="a sample call name (e.g. card_payment) or a .wav/.json path"
    )
    call.add_argument("--plan", default="guard", choices=["whole", "connect", "guard"])
    call.add_argument(
        "--margin-ms",
        type=float,
        default=1500.0,
        help="guard: stop this long before each sensitive span (default 1500)",
    )
    call.add_argument(
        "--margin-after-ms",
        type=float,
        default=None,
        help="guard: start this long after each span (default 1000)",
    )
    call.add_argument(
        "--redaction-output",
        default="redacted",
        choices=["redacted", "unredacted", "redacted_and_unredacted"],
    )
    call.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="added to every control request before it takes effect",
    )
    call.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        help="probability that a control request answers 503",
    )
    call.add_argument(
        "--loss",
        type=float,
        default=0.0,
        help="probability that a media message is lost (siprec, twilio)",
    )
    call.add_argument(
        "--jitter-ms",
        type=float,
        default=0.0,
        help="media arrives up to this much late (uniform; at most 1000)",
    )
    call.add_argument(
        "--reorder",
        type=float,
        default=0.0,
        help="probability that an RTP packet arrives after its successor (siprec)",
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
        help="pace the call in real time (it takes as long as the call); over sockets this "
        "is what --latency-ms and --fail-rate need",
    )
    call.add_argument("--seed", type=int, default=0)
    call.add_argument("--json", action="store_true", help="print one JSON object")
    call.set_defaults(func=_call)

    demo = sub.add_parser("demo", help="the card-payment call through all four platforms")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=_demo)

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
        return 2
    except BrokenPipeError:
        # The reader went away (``mgsim call ... | head``): stop quietly, and keep Python
        # from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
