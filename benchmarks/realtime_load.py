"""Real-time load over real sockets: N concurrent calls against one ``mgsim serve``.

The server runs as its own process (``python -m mgsim.cli serve --no-limits`` with a SIP
port); this process generates the load: ``calls`` concurrent calls, a mix of the four
namespaces in turn (Twilio 20 ms frames, SIPREC 20 ms RTP on two streams, AudioHook
200 ms frames, Amazon Connect 1 s fragments), started over ``ramp_s``, each paced in real
time for ``seconds`` and toggling start/stop-streaming every ``toggle_s`` through
:class:`mgsim.AsyncClient`.

Measured:

* ``lost_frames``: media messages sent but not received by the gateway (must be 0), and
  whether every call's books balance;
* ``lateness``: p50/p99/max frame lateness at the server (how much later than its media
  time each message arrived, against the session's best-placed message; target p99 < 20 ms)
  and the sender's own lateness (whether the load generator kept up);
* ``rss_mb``: the server's resident memory at start, at the end and its peak.

If ``calls`` misses a target, smaller counts are tried (halving, then bisecting) to find
the largest that meets both. Usage::

    python benchmarks/realtime_load.py                  # 200 calls, 60 s
    python benchmarks/realtime_load.py 40 10            # 40 calls, 10 s
    python benchmarks/realtime_load.py 200 60 --no-search
    python benchmarks/realtime_load.py 200 60 --no-search --pin   # generator CPU 0, server CPU 1

Both processes share the machine's CPUs unless ``--pin`` is given. The generator encodes
every message before the clock starts, so the paced loop only writes bytes, and speaks
HTTP through :class:`ShardedTransport` (httpx's transport in small pools).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import numpy as np
import uvloop

from mgsim.client import AsyncClient, RetryPolicy
from mgsim.contract.models import AmazonConnectParams
from mgsim.errors import ApiError
from mgsim.media import audiohook, kvs, siprec, twilio
from mgsim.media._base import StereoCall, Wire
from mgsim.transports.playback import Endpoints, SocketPlayResult, play_over_sockets
from mgsim.transports.senders import prepare_wires

NAMESPACES = ("twilio", "siprec", "genesysaudiohook", "amazonconnect")
HEADERS = {"asapp-api-id": "mgsim-local", "asapp-api-secret": "mgsim-local-secret"}
P99_TARGET_MS = 20.0


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ShardedTransport(httpx.AsyncBaseTransport):
    """httpx's own HTTP transport, ``shards`` of them taking requests in turn.

    An httpx connection pool looks at each of its connections for every request; one pool
    holding the couple of hundred connections of a few hundred concurrent calls spent half
    the generator's CPU doing that. Small pools, used round-robin, keep every request's
    look cheap while still reusing connections.
    """

    def __init__(self, shards: int = 16, per_shard: int = 16) -> None:
        # Idle connections are closed before uvicorn's 5 s keep-alive runs out, so a request
        # never races the server closing the connection it was sent on.
        limits = httpx.Limits(
            max_connections=per_shard, max_keepalive_connections=per_shard, keepalive_expiry=2.0
        )
        self._pools = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(shards)]
        self._next = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = self._pools[self._next]
        self._next = (self._next + 1) % len(self._pools)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def settle_heap() -> None:
    """Collect once, then exempt everything alive (the call plans: hundreds of thousands of
    wires and encoded messages) from the cyclic collector, whose full passes over them
    otherwise stall the paced loop for 100 ms or more."""
    gc.collect()
    gc.freeze()


def pin(server: _Server | None, generator_cpu: int = 0, server_cpu: int = 1) -> dict[str, Any]:
    """Pin this process (the load generator) and the server to separate CPUs; what was
    done, for the report (nothing on a machine with fewer than two CPUs)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or server is None:
        return {"pinned": False}
    os.sched_setaffinity(0, {generator_cpu})
    os.sched_setaffinity(server.proc.pid, {server_cpu})
    return {"pinned": True, "generator_cpu": generator_cpu, "server_cpu": server_cpu}


def _rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024.0
    return {"rss": round(fields.get("VmRSS", 0.0), 1), "peak": round(fields.get("VmHWM", 0.0), 1)}


def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by ``pid`` (default: this process)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Server:
    """``mgsim serve`` in a child process: with SIP on a free port, or ``sip=False``
    without. Its stderr goes to a file (a pipe nobody reads would block the server once
    full), which :meth:`stderr_tail` quotes."""

    def __init__(
        self, *, sip: bool = True, quiet: bool = True, start_timeout_s: float = 20.0
    ) -> None:
        self.port = _free_port(socket.SOCK_STREAM)
        self.sip_port = _free_port(socket.SOCK_DGRAM) if sip else 0
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
        cmd = [sys.executable, "-m", "mgsim.cli", "serve", "--port", str(self.port)]
        cmd += ["--sip-port", str(self.sip_port)] if sip else ["--no-sip"]
        cmd += ["--no-limits", "--log-level", "error", *(["--quiet"] if quiet else [])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        self.base_url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                httpx.get(self.base_url + "/openapi.yaml", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("mgsim serve did not start") from None
                time.sleep(0.1)

    def stderr_tail(self) -> str:
        """The last 2,000 characters the server wrote to stderr."""
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-2000:]

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(self.base_url, sip=("127.0.0.1", self.sip_port))

    def stats(self, reset: bool = False) -> dict[str, Any]:
        path = self.base_url + "/_sim/v1/media/stats"
        r = httpx.post(path, headers=HEADERS) if reset else httpx.get(path, headers=HEADERS)
        result: dict[str, Any] = r.json()
        return result

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _call_audio(seconds: float, seed: int) -> StereoCall:
    n = int(seconds * 8000)
    t = np.arange(n) / 8000.0
    rng = np.random.default_rng(seed)
    customer = 6000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 300, n)
    agent = 4000 * np.sin(2 * np.pi * 1010 * t) + rng.normal(0, 300, n)
    return StereoCall(customer.astype(np.int16), agent.astype(np.int16))


Plan = tuple[str, str, list[Wire], dict[str, Any]]


def _plan(
    i: int,
    seconds: float,
    namespaces: tuple[str, ...],
    audio: StereoCall | None = None,
    serial: int | None = None,
) -> Plan:
    """Call ``i`` (the namespace is the ``i``-th in turn): a fresh guid, its wires and extra
    playback options. ``serial`` (default ``i``) makes the SIP Call-ID and the Kinesis
    stream unique when one slot plays several calls."""
    namespace = namespaces[i % len(namespaces)]
    audio = audio or _call_audio(seconds, i)
    n = i if serial is None else serial
    extra: dict[str, Any] = {}
    if namespace == "twilio":
        guid = "CA" + uuid.uuid4().hex
        wires = list(twilio.encode(audio, guid=guid))
    elif namespace == "siprec":
        guid = f"{n:010d}-{uuid.uuid4().int % 10**10:010d}"
        wires = list(siprec.encode(audio, guid=guid, seed=n))
    elif namespace == "genesysaudiohook":
        guid = str(uuid.uuid4())
        wires = list(audiohook.encode(audio, guid=guid, frame_ms=200))
    else:
        guid = str(uuid.uuid4())
        arn = f"arn:aws:kinesisvideo:us-east-1:123456789012:stream/mgsim-load-{n}/1700000000000"
        wires = list(kvs.encode(audio, guid=guid, stream_arn=arn, fragment_ms=1000))
        extra = {"stream_arn": arn}
    # Encoded for the socket before the clock starts (playback only writes the bytes).
    extra["prepared"] = prepare_wires(namespace, wires)
    return namespace, guid, wires, extra


async def _one(
    i: int,
    plan: Plan,
    server: _Server,
    client: AsyncClient,
    http: httpx.AsyncClient,
    delay_s: float,
    seconds: float,
    toggle_s: float,
) -> SocketPlayResult:
    namespace, guid, wires, extra = plan
    await asyncio.sleep(delay_s)
    params = AmazonConnectParams(extra["stream_arn"]) if namespace == "amazonconnect" else None

    def start() -> Any:
        return client.start_streaming(namespace, guid, "c", "a", params=params)

    def stop() -> Any:
        return client.stop_streaming(namespace, guid)

    # Start 1 s in, then stop/start every toggle_s (phase spread over the calls).
    phase = (i * 0.37) % toggle_s
    actions: list[tuple[float, Any]] = []
    t, streaming = 1.0 + phase, False
    while t < seconds - 0.5:
        actions.append((t * 1000.0, stop if streaming else start))
        streaming = not streaming
        t += toggle_s
    return await play_over_sockets(
        server.endpoints,
        namespace,
        wires,
        actions,
        client=client,
        guid=guid,
        realtime=True,
        strict=False,
        sender_options={"http": http} if namespace == "amazonconnect" else None,
        **extra,
    )


async def _load(
    server: _Server,
    calls: int,
    seconds: float,
    ramp_s: float,
    toggle_s: float,
    namespaces: tuple[str, ...],
    cpu_mark: dict[str, float],
) -> Any:
    plans = [_plan(i, seconds, namespaces) for i in range(calls)]
    settle_heap()
    control = ShardedTransport()
    media = ShardedTransport()
    async with (
        AsyncClient(
            server.base_url, transport=control, retry=RetryPolicy.off(), timeout=30.0
        ) as client,
        httpx.AsyncClient(transport=media, timeout=30.0) as http,
    ):
        # Warm up: the first request opens a connection and makes the server build its
        # request validators; neither belongs in the measurement.
        with contextlib.suppress(ApiError):
            await client.start_streaming("twilio", "CA" + "0" * 32, "c", "a")
        server.stats(reset=True)
        cpu_mark["generator"] = _cpu_s()
        tasks = [
            _one(i, plan, server, client, http, ramp_s * i / calls, seconds, toggle_s)
            for i, plan in enumerate(plans)
        ]
        return await asyncio.gather(*tasks, return_exceptions=True)


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.array(values or [0.0])
    return {
        "p50": round(float(np.percentile(arr, 50)), 1),
        "p99": round(float(np.percentile(arr, 99)), 1),
        "max": round(float(arr.max()), 1),
    }


def _not_received(results: list[SocketPlayResult]) -> dict[str, int]:
    """Media messages the server accounted for other than as received, by reason."""
    out: Counter[str] = Counter()
    for r in results:
        acc = r.accounting
        out.update(
            {f"{r.namespace}.dropped.{k}": int(v) for k, v in acc.get("dropped", {}).items()}
        )
        out.update({f"{r.namespace}.error.{k}": int(v) for k, v in acc.get("errors", {}).items()})
        if acc.get("lost"):
            out[f"{r.namespace}.lost"] += int(acc["lost"])
    return dict(sorted(out.items()))


def _measure(
    calls: int,
    seconds: float,
    ramp_s: float,
    toggle_s: float,
    namespaces: tuple[str, ...] = NAMESPACES,
    pinned: bool = False,
) -> dict[str, Any]:
    server = _Server()
    affinity = pin(server) if pinned else {"pinned": False}
    try:
        rss_start = _rss_mb(server.proc.pid)
        server.stats(reset=True)
        started = time.monotonic()
        cpu0 = _cpu_s(server.proc.pid)
        mark: dict[str, float] = {}
        results = uvloop.run(_load(server, calls, seconds, ramp_s, toggle_s, namespaces, mark))
        wall = time.monotonic() - started
        cpu = (_cpu_s(server.proc.pid) - cpu0, _cpu_s() - mark.get("generator", 0.0))
        stats = server.stats()
        rss_end = _rss_mb(server.proc.pid)
    finally:
        server.stop()
        if affinity["pinned"]:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if isinstance(r, SocketPlayResult)]
    sent = sum(r.sent for r in ok)
    received = sum(int(r.accounting.get("received", 0)) for r in ok)
    action_errors = sum(a.error is not None for r in ok for a in r.actions)
    lateness = stats["lateness"]
    lost = sent - received + sum(1 for r in ok if not r.balanced())
    return {
        "calls": calls,
        "seconds": seconds,
        "affinity": affinity,
        "wall_s": round(wall, 1),
        "calls_failed": len(failures),
        "failures": failures[:3],
        "media_sent": sent,
        "media_received": received,
        "lost_frames": lost,
        "unbalanced_calls": sum(1 for r in ok if not r.balanced()),
        "not_received": _not_received(ok),
        "action_errors": action_errors,
        "actions": sum(len(r.actions) for r in ok),
        "server_lateness_ms": lateness,
        "sender_lateness_ms": _percentiles([x for r in ok for x in r.send_lateness_ms]),
        "sender_lateness_by_namespace_ms": {
            ns: _percentiles([x for r in ok if r.namespace == ns for x in r.send_lateness_ms])
            for ns in namespaces
        },
        "cpu_s": {"server": round(cpu[0], 1), "generator": round(cpu[1], 1)},
        "rss_mb": {"start": rss_start["rss"], "end": rss_end["rss"], "peak": rss_end["peak"]},
        "counters": stats["counters"],
        "meets_targets": lost == 0
        and not failures
        and action_errors == 0
        and lateness["p99_ms"] < P99_TARGET_MS,
    }


def run(
    calls: int = 200,
    seconds: float = 60.0,
    *,
    ramp_s: float = 5.0,
    toggle_s: float = 3.0,
    search: bool = True,
    max_runs: int = 5,
    namespaces: tuple[str, ...] = NAMESPACES,
    pinned: bool = False,
) -> dict[str, Any]:
    """Measure ``calls`` concurrent real-time calls of ``seconds``; with ``search``, when
    the targets are missed, find the largest count that meets them (at most ``max_runs``
    measurements). ``pinned`` runs the generator on CPU 0 and the server on CPU 1."""
    runs = [_measure(calls, seconds, ramp_s, toggle_s, namespaces, pinned)]
    best: int | None = calls if runs[0]["meets_targets"] else None
    if search and best is None:
        low, high = 0, calls  # low meets the targets (0 trivially), high does not
        n = max(1, calls // 2)
        while len(runs) < max_runs and high - low > max(2, calls // 20):
            outcome = _measure(n, seconds, ramp_s, toggle_s, namespaces, pinned)
            runs.append(outcome)
            if outcome["meets_targets"]:
                low, best = n, n
            else:
                high = n
            n = (low + high) // 2 if best is not None else max(1, n // 2)
    return {
        "benchmark": "realtime_load",
        "cpus": os.cpu_count(),
        "targets": {"lost_frames": 0, "server_p99_ms": P99_TARGET_MS},
        "largest_calls_meeting_targets": best,
        "runs": runs,
    }


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n_calls = int(args[0]) if args else 200
    n_seconds = float(args[1]) if len(args) > 1 else 60.0
    search = "--no-search" not in sys.argv
    report = run(n_calls, n_seconds, search=search, pinned="--pin" in sys.argv)
    print(json.dumps(report, indent=2))
