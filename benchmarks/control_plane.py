"""Control-plane throughput: ``mgsim serve --no-limits`` against Stoplight Prism on one spec.

Both servers serve ``mgsim/contract/openapi.yaml`` on loopback and get the same load from
wrk with ``benchmarks/wrk/start_stop.lua``: every connection alternates start-streaming and
stop-streaming on a guid of its own, so the stateful simulator stays on its 200 path (the
calls are opened first through ``POST /_sim/v1/calls``). Prism is the stateless mock a user
would otherwise run; it is measured as started by default (``prism mock SPEC``, which logs
every request) and quietly (``-v warn``), which is its fastest configuration. The servers run
one after the other, never together, after a warm-up each, and are always stopped at the
end. The target is mgsim at least 3x Prism's requests per second. ``--pin`` gives each side
one core (every server on CPU 1, wrk on CPU 0), which makes runs steadier: unpinned, how the
scheduler shares two cores between a server and eight wrk threads varies from run to run.

    python benchmarks/control_plane.py [--duration 10] [--connections 8] [--profile] [--pin]

Prints one JSON object. ``--profile`` also runs the simulator once under cProfile and writes
the top functions to ``benchmarks/out/control_plane_profile.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import json
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEC = ROOT / "mgsim" / "contract" / "openapi.yaml"
LUA = HERE / "wrk" / "start_stop.lua"
OUT = HERE / "out"
HOST = "127.0.0.1"
HEADERS = {
    "asapp-api-id": "mgsim-local",
    "asapp-api-secret": "mgsim-local-secret",
    "content-type": "application/json",
}
TARGET_RATIO = 3.0
# guid prefixes (SIPREC UCIDs are digit groups): 1000 for the warm-up, 1001.. for the rounds,
# so that every round starts with all of its calls stopped.
WARMUP_PREFIX = "1000"
NAMESPACE = "siprec"
PR_SET_PDEATHSIG = 1


# With --pin: the CPU every server runs on, and the one wrk runs on (None: unpinned).
PIN: dict[str, set[int]] = {}


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the benchmark process dies first (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if "server" in PIN:
        os.sched_setaffinity(0, PIN["server"])


def _pin_wrk() -> None:
    if "wrk" in PIN:
        os.sched_setaffinity(0, PIN["wrk"])


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def find_prism() -> str | None:
    """The Prism CLI: ``benchmarks/node_modules`` (``npm ci --prefix benchmarks``), else PATH."""
    local = HERE / "node_modules" / ".bin" / "prism"
    if local.exists():
        return str(local)
    return shutil.which("prism")


@dataclass
class Server:
    """A server process in its own process group, stopped by :meth:`stop` whatever happens."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until the server answers HTTP (any status) or raise ``RuntimeError``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                status, _ = request(self.port, "GET", "/openapi.yaml", None, timeout=2)
                if status:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within {timeout_s:.0f} s: {self.tail()}")

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int | None:
        """Signal the whole process group, then kill it if it lingers; return the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        # Children that outlived the group leader (Node workers) go with the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode


@contextlib.contextmanager
def serving(server: Server, stop_signal: int = signal.SIGTERM) -> Iterator[Server]:
    """Start ``server``, wait until it answers, and stop it on the way out, even on error."""
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop(stop_signal)


def request(
    port: int, method: str, path: str, body: dict[str, Any] | None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """One HTTP request on loopback with the simulator's credentials."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers=HEADERS)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def guids(prefix: str, connections: int) -> list[str]:
    """The guids ``start_stop.lua`` gives connections 1..n for ``prefix``."""
    return [f"{prefix}-{n:04d}" for n in range(1, connections + 1)]


def open_calls(port: int, namespace: str, ids: Sequence[str]) -> None:
    """Open the calls ``ids`` on the simulator (``POST /_sim/v1/calls``)."""
    for guid in ids:
        body = {"namespace": namespace, "guid": guid}
        status, answer = request(port, "POST", "/_sim/v1/calls", body)
        if status != 201:
            raise RuntimeError(f"opening call {guid} answered {status}: {answer[:200]!r}")


def segments_started(port: int, ids: Sequence[str]) -> int:
    """How many streaming segments the simulator recorded for these calls."""
    total = 0
    for guid in ids:
        status, body = request(port, "GET", f"/_sim/v1/calls/{guid}", None)
        if status != 200:
            raise RuntimeError(f"reading call {guid} answered {status}: {body[:200]!r}")
        total += int(json.loads(body)["segments"])
    return total


def wrk(
    wrk_bin: str, port: int, *, connections: int, duration_s: float, prefix: str
) -> dict[str, Any]:
    """Run wrk once (one thread per connection, see the Lua script) and return its summary."""
    argv = [
        wrk_bin,
        f"-t{connections}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        f"http://{HOST}:{port}",
        "--",
        prefix,
        NAMESPACE,
    ]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
        check=False,
        cwd=ROOT,
        preexec_fn=_pin_wrk,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(line[len("WRK_JSON ") :])
    shown = [os.path.basename(argv[0]), *argv[1:]]
    shown[shown.index(str(LUA))] = str(LUA.relative_to(ROOT))
    result["argv"] = shown
    return result


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Requests/s, latency in ms and the non-2xx count of one wrk run."""
    codes: dict[str, int] = raw["status_codes"]
    non_2xx = {k: v for k, v in codes.items() if not k.split()[-1].startswith("2")}
    errors = raw["errors"]
    lat = raw["latency_us"]
    return {
        "requests": raw["requests"],
        "duration_s": round(raw["duration_us"] / 1e6, 3),
        "requests_per_s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "latency_ms": {k: round(lat[k] / 1000, 3) for k in ("p50", "p90", "p99", "p999", "max")}
        | {"mean": round(lat["mean"] / 1000, 3)},
        "status_codes": codes,
        "non_2xx": sum(non_2xx.values()),
        "socket_errors": sum(errors[k] for k in ("connect", "read", "write", "timeout")),
    }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (all its threads) so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # Fields 14 and 15 of stat(5) (utime, stime) are the 12th and 13th after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _prefix(round_no: int) -> str:
    return str(int(WARMUP_PREFIX) + round_no)


def _prepare(
    server: Server,
    wrk_bin: str,
    *,
    connections: int,
    warmup_s: float,
    rounds: int,
    stateful: bool,
) -> None:
    """Open every call the warm-up and the rounds will use, then warm the server up."""
    if stateful:
        ids = [g for r in range(rounds + 1) for g in guids(_prefix(r), connections)]
        open_calls(server.port, NAMESPACE, ids)
    if warmup_s > 0:
        wrk(wrk_bin, server.port, connections=connections, duration_s=warmup_s, prefix=_prefix(0))


def _round(
    server: Server,
    wrk_bin: str,
    *,
    connections: int,
    duration_s: float,
    round_no: int,
    stateful: bool,
) -> dict[str, Any]:
    """One measured wrk run; every round uses calls of its own, all stopped at its start."""
    prefix = _prefix(round_no)
    assert server.proc is not None
    cpu_before = cpu_seconds(server.proc.pid)
    raw = wrk(wrk_bin, server.port, connections=connections, duration_s=duration_s, prefix=prefix)
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    result = summarize(raw)
    # CPU per request shows the server's own cost even when other processes share the cores.
    result["server_cpu_s"] = round(cpu, 2)
    result["server_cpu_util"] = round(cpu / result["duration_s"], 2)
    result["server_cpu_us_per_request"] = round(cpu / max(1, raw["requests"]) * 1e6, 1)
    result["wrk"] = " ".join(raw["argv"])
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    if stateful:
        # Proof that the server kept state: every answered start opened a segment. Requests
        # still in flight when wrk stopped may add up to one segment per connection.
        segments = segments_started(server.port, guids(prefix, connections))
        answered = raw["status_codes"].get("start 200", 0)
        result["segments_started"] = segments
        result["starts_answered_200"] = answered
        result["state_consistent"] = 0 <= segments - answered <= connections
    return result


def _combine(command: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median round's numbers, with every round kept and the codes summed over all."""
    ranked = sorted(rounds, key=lambda r: r["requests_per_s"])
    median = ranked[len(ranked) // 2]
    codes: dict[str, int] = {}
    for r in rounds:
        for k, v in r["status_codes"].items():
            codes[k] = codes.get(k, 0) + v
    combined: dict[str, Any] = {
        "command": command,
        "requests_per_s": median["requests_per_s"],
        "latency_ms": median["latency_ms"],
        "server_cpu_us_per_request": median["server_cpu_us_per_request"],
        "server_cpu_util": median["server_cpu_util"],
        "requests_per_s_rounds": [r["requests_per_s"] for r in rounds],
        "status_codes": codes,
        "non_2xx": sum(r["non_2xx"] for r in rounds),
        "socket_errors": sum(r["socket_errors"] for r in rounds),
        "wrk": median["wrk"],
        "rounds": rounds,
    }
    if "state_consistent" in median:
        combined["state_consistent"] = all(r["state_consistent"] for r in rounds)
    return combined


def _mgsim_argv(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mgsim.cli",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-limits",
        "--quiet",  # no line per request: the figures measure the API, not the log
    ]


# `mgsim serve` in-process, with a profiler the benchmark switches on and off by signal.
_PROFILED_SERVE = """
import cProfile, signal, sys
from mgsim.cli import main
profiler = cProfile.Profile()
def _on(signum, frame):
    profiler.enable()
def _off(signum, frame):
    profiler.disable()
    profiler.dump_stats(sys.argv[1])
signal.signal(signal.SIGUSR1, _on)
signal.signal(signal.SIGUSR2, _off)
sys.exit(main(sys.argv[2:]))
"""


def _prism_variants(prism: str, port: int) -> dict[str, list[str]]:
    base = [prism, "mock", "-h", HOST, "-p", str(port)]
    return {
        "prism": [*base, str(SPEC.relative_to(ROOT))],
        "prism_quiet": [*base, "-v", "warn", str(SPEC.relative_to(ROOT))],
    }


def profile_mgsim(
    wrk_bin: str, *, connections: int, duration_s: float, top: int = 30
) -> dict[str, Any]:
    """Load the simulator under cProfile; return (and save) its most expensive functions.

    The profiler runs only while wrk does (SIGUSR1 switches it on, SIGUSR2 off and saves),
    so start-up and imports stay out of the figures.
    """
    OUT.mkdir(exist_ok=True)
    prof = OUT / "control_plane.prof"
    prof.unlink(missing_ok=True)
    port = free_port()
    argv = [sys.executable, "-c", _PROFILED_SERVE, str(prof), *_mgsim_argv(port)[3:]]
    server = Server("mgsim (cProfile)", argv, port, OUT / "mgsim_profile.log")
    with serving(server):
        assert server.proc is not None
        _prepare(server, wrk_bin, connections=connections, warmup_s=1, rounds=1, stateful=True)
        os.kill(server.proc.pid, signal.SIGUSR1)
        measured = _round(
            server,
            wrk_bin,
            connections=connections,
            duration_s=duration_s,
            round_no=1,
            stateful=True,
        )
        os.kill(server.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not prof.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    stats = pstats.Stats(str(prof))
    rows: list[dict[str, Any]] = []
    raw_stats: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (path, line, func), (_cc, calls, tottime, cumtime, _callers) in raw_stats.items():
        rows.append(
            {
                "function": f"{_short(path)}:{line}({func})",
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
            }
        )
    by_self = sorted(rows, key=lambda r: r["tottime_s"], reverse=True)[:top]
    by_cum = sorted(rows, key=lambda r: r["cumtime_s"], reverse=True)[:top]
    text = OUT / "control_plane_profile.txt"
    with text.open("w") as f:
        f.write(f"requests answered under cProfile: {measured['requests']}\n")
        f.write("columns: self s, cumulative s, calls, function\n\n")
        for title, table in (("self time", by_self), ("cumulative time", by_cum)):
            f.write(f"top {top} by {title}\n")
            for r in table:
                f.write(
                    f"{r['tottime_s']:9.3f} {r['cumtime_s']:9.3f} {r['calls']:9d}  "
                    f"{r['function']}\n"
                )
            f.write("\n")
    return {
        "requests_under_profiler": measured["requests"],
        "top_self": by_self[:12],
        "report": str(text.relative_to(ROOT)),
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/work/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


class _Terminated(Exception):
    pass


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated(f"signal {signum}")


def run(
    duration_s: float = 10,
    warmup_s: float = 5,
    connections: int = 8,
    rounds: int = 3,
    profile: bool = False,
    pin: bool = False,
) -> dict[str, Any]:
    """Measure start/stop cycles on mgsim and Prism with one wrk setting; return the numbers.

    All servers start together (idle ones cost nothing) and each gets a ``warmup_s`` warm-up;
    then ``rounds`` times, each server in turn gets ``duration_s`` of load from
    ``connections`` wrk connections (one wrk thread each). Interleaving the rounds spreads
    any noise from other processes on the machine over every server alike; each server's
    figures are those of its median round. Prism is skipped, with a note, when its CLI is
    not installed; a missing wrk raises ``RuntimeError``. ``pin`` gives the servers CPU 1 and
    wrk CPU 0 (``RuntimeError`` with fewer than two CPUs).
    """
    PIN.clear()
    if pin:
        if len(os.sched_getaffinity(0)) < 2:
            raise RuntimeError("pinning needs at least two CPUs")
        PIN.update(server={1}, wrk={0})
    wrk_bin = shutil.which("wrk")
    if wrk_bin is None:
        raise RuntimeError("wrk is not installed (scripts/bench-deps.sh installs it)")
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    OUT.mkdir(exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "control_plane",
        "connections": connections,
        "wrk_threads": connections,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "rounds": rounds,
        "namespace": NAMESPACE,
        "target_ratio": TARGET_RATIO,
        "pinned": pin,
        "loadavg_1m_before": round(os.getloadavg()[0], 2),
        "servers": {},
        "notes": [],
    }
    servers: list[tuple[Server, bool]] = []
    port = free_port()
    servers.append((Server("mgsim", _mgsim_argv(port), port, OUT / "mgsim.log"), True))
    prism = find_prism()
    if prism is None:
        result["notes"].append("Prism is not installed (npm ci --prefix benchmarks): skipped")
    else:
        version = subprocess.run(
            [prism, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
        result["prism_version"] = version.stdout.strip()
        for name in ("prism", "prism_quiet"):
            port = free_port()
            argv = _prism_variants(prism, port)[name]
            servers.append((Server(name, argv, port, OUT / f"{name}.log"), False))
    per_server: dict[str, list[dict[str, Any]]] = {s.name: [] for s, _ in servers}
    try:
        with contextlib.ExitStack() as stack:
            for server, _ in servers:
                stack.enter_context(serving(server))
            for server, stateful in servers:
                _prepare(
                    server,
                    wrk_bin,
                    connections=connections,
                    warmup_s=warmup_s,
                    rounds=rounds,
                    stateful=stateful,
                )
            for round_no in range(1, rounds + 1):
                for server, stateful in servers:
                    per_server[server.name].append(
                        _round(
                            server,
                            wrk_bin,
                            connections=connections,
                            duration_s=duration_s,
                            round_no=round_no,
                            stateful=stateful,
                        )
                    )
        for server, _ in servers:
            command = " ".join(server.argv).replace(str(ROOT) + "/", "")
            result["servers"][server.name] = _combine(command, per_server[server.name])
        if profile:
            result["profile"] = profile_mgsim(
                wrk_bin, connections=connections, duration_s=duration_s
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    result["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    _ratios(result)
    return result


def _ratios(result: dict[str, Any]) -> None:
    servers = result["servers"]
    mg = servers.get("mgsim")
    if mg is None:
        return
    result["mgsim_non_2xx"] = mg["non_2xx"]
    prisms = {k: v for k, v in servers.items() if k.startswith("prism")}
    for name, numbers in prisms.items():
        result[f"ratio_vs_{name}"] = round(mg["requests_per_s"] / numbers["requests_per_s"], 2)
        result[f"cpu_ratio_vs_{name}"] = round(
            numbers["server_cpu_us_per_request"] / mg["server_cpu_us_per_request"], 2
        )
    if prisms:
        fastest = max(prisms, key=lambda k: prisms[k]["requests_per_s"])
        ratio = result[f"ratio_vs_{fastest}"]
        result["fastest_prism"] = fastest
        result["ratio"] = ratio
        result["meets_target"] = bool(ratio >= TARGET_RATIO and mg["non_2xx"] == 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per server")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (= threads)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per server")
    parser.add_argument("--profile", action="store_true", help="also profile mgsim (cProfile)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="one core each: every server on CPU 1, wrk on CPU 0 (steadier between runs)",
    )
    args = parser.parse_args(argv)
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        parser.error("--pin needs at least two CPUs")
    result = run(
        args.duration, args.warmup, args.connections, args.rounds, args.profile, pin=args.pin
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
