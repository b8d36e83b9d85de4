"""The ``mgsim`` command.

::

    mgsim serve [--host 127.0.0.1] [--port 8080] [--seed N] [--no-limits]
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence

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

    from mgsim.server.config import SimulatorConfig
    from mgsim.simulator import Simulator

    overrides: dict[str, object] = {"seed": args.seed}
    if args.no_limits:
        overrides.update(spike_arrest_per_s=None, daily_quota=None)
    else:
        overrides.update(spike_arrest_per_s=args.spike_arrest, daily_quota=args.daily_quota)
    config = SimulatorConfig.from_env(**overrides)
    if not _is_loopback(args.host) and config.uses_default_credentials:
        raise ConfigError(
            f"refusing to listen on {args.host} with the default local credentials: set "
            "MGSIM_API_ID and MGSIM_API_SECRET, or bind 127.0.0.1"
        )
    sim = Simulator(config)
    print(
        f"mgsim {__version__}: simulated AutoTranscribe Media Gateway on "
        f"http://{args.host}:{args.port} (contract at /openapi.yaml)",
        file=sys.stderr,
    )
    uvicorn.run(
        sim.app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # Access lines would carry the Twilio media token in WebSocket paths; mgsim logs its
        # own events instead.
        access_log=False,
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
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(func=_serve)
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


if __name__ == "__main__":
    sys.exit(main())
