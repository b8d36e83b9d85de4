"""A bounded soak on loopback: calls that keep cycling against one ``mgsim serve``.

``slots`` call slots run for ``seconds``; each slot plays one real-time call after another
(15–20 s each by default, a fresh guid every time), the slots a mix of the four namespaces
in turn (Twilio 20 ms frames, SIPREC RTP, AudioHook 200 ms frames, Amazon Connect 1 s
fragments), so ``slots`` calls are live at any moment and several times as many are served.
Every call starts and stops streaming every few seconds through :class:`mgsim.AsyncClient`
and ends stopped, so each streaming window's stop summary is seen. The machinery (server
process, sharded httpx transport, call plans, socket playback) is that of
``benchmarks/realtime_load.py``. Each call is given a script over the simulator's API
(``PUT /_sim/v1/calls/{guid}/script``: the words of a sample call that fit in it), so its
streaming windows are transcribed.

Reported, and checked against the targets (the exit status is 1 if any is missed):

* ``calls``: served (ended and accounted), failed (an exception);
* ``media``: sent, received, lost (sent but not received, plus calls whose books do not
  balance: the server must account for every message sent);
* ``transcripts``: the transcript counts of every stop summary, summed, against the
  transcripts the gateway stored for those calls (``GET /conversation/v1/conversation/
  messages``); they must match;
* ``unexpected_errors``: non-2xx answers other than the 409s a toggling client expects,
  WebSocket closes other than 1000, SIP final responses other than 2xx, and by kind;
* ``server_lateness_ms`` as in realtime_load, reported only: its 20 ms p99 target is for
  steady load, and here calls are set up and torn down all the time;
* ``rss_mb``: the server's resident memory sampled every second: start, min, max, last and
  the least-squares slope over the second half in MB/min (target: at most
  :data:`RSS_SLOPE_TARGET` MB/min once the run is long enough to tell, 30 s or more).

Usage::

    python benchmarks/soak.py               # 200 slots, 150 s (memory levels off by ~40 s)
    python benchmarks/soak.py 8 6           # smoke: 8 slots, 6 s (calls of 2.5-3.3 s)
    python benchmarks/soak.py 200 60 --namespaces=twilio,siprec,genesysaudiohook
    python benchmarks/soak.py 200 60 --pin  # generator on CPU 0, server on CPU 1
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import uvloop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from realtime_load import (
    NAMESPACES,
    P99_TARGET_MS,
    Plan,
    ShardedTransport,
    _call_audio,
    _cpu_s,
    _not_received,
    _percentiles,
    _plan,
    _rss_mb,
    _Server,
    pin,
    settle_heap,
)

from mgsim.client import AsyncClient, RetryPolicy
from mgsim.contract.models import AmazonConnectParams, StreamingResult
from mgsim.errors import ApiError, TransportError
from mgsim.gateway.sessions import is_media
from mgsim.media._base import StereoCall, Wire
from mgsim.transports.playback import SocketPlayResult, play_over_sockets

RSS_SLOPE_TARGET = 10.0
"""MB/min: the most the server's memory may grow over the second half of a soak."""
SCRIPT_SAMPLE = "card_payment"
_MIN_SLOPE_S = 30.0
_EXPECTED_STATUS = 409  # a start while streaming, a stop while stopped, a concurrent request


@dataclass
class _Tally:
    """What the slots saw, summed as calls end."""

    results: list[SocketPlayResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    summary_transcripts: int = 0
    stored_transcripts: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    expected_409: int = 0
    notes: Counter[str] = field(default_factory=Counter)


def _durations(seconds: float) -> tuple[float, float, float]:
    """Shortest and longest call, and the start/stop period, for a soak of ``seconds``."""
    low = min(15.0, seconds / 2.4)
    return low, low * 4.0 / 3.0, min(3.0, low / 2.0)


def _calls_of(slot: int, seconds: float, start_s: float) -> list[float]:
    """The durations of the calls slot ``slot`` plays back to back until ``seconds``.

    The first call of each slot is cut short by a per-slot fraction, so that the live
    calls' ages (and so the server's memory) are spread as in a long-running system from
    the start rather than moving in lockstep generations.
    """
    low, high, _ = _durations(seconds)
    out: list[float] = []
    t, k = start_s, 0
    while True:
        d = low + (high - low) * (((slot * 7 + k * 11) % 11) / 10.0)
        if k == 0:
            d = low / 2.0 + (d - low / 2.0) * ((slot * 0.618034) % 1.0)
        if t + d > seconds:
            if seconds - t >= low * 0.6:  # the slot's last call ends with the soak
                out.append(round(seconds - t, 2))
            return out
        out.append(round(d, 2))
        t += d
        k += 1


def _schedule(
    slot: int, duration: float, toggle_s: float, opens_at_s: float
) -> list[tuple[float, str]]:
    """Start ``0.5 s`` (plus a per-slot phase) in, but only once the call's first media
    message (at ``opens_at_s``) has opened it; toggle every ``toggle_s``; stop before the
    call ends so that every streaming window has its stop summary."""
    phase = (slot * 0.37) % toggle_s
    actions: list[tuple[float, str]] = []
    t, streaming = max(0.5 + phase * 0.5, opens_at_s + 0.05), False
    while t < duration - 0.6:
        actions.append((t * 1000.0, "stop" if streaming else "start"))
        streaming = not streaming
        t += toggle_s
    if streaming:
        actions.append((max(actions[-1][0] + 100.0, (duration - 0.4) * 1000.0), "stop"))
    return actions


def _opens_at_s(namespace: str, wires: list[Wire]) -> float:
    """When the call's first media message goes (a Kinesis fragment goes when complete)."""
    return next((w.at_ms / 1000.0 for w in wires if is_media(namespace, w)), 0.0)


def _transcripts(result: StreamingResult) -> int:
    return sum(
        p.summary.transcripts for p in (result.customer, result.agent) if p.summary is not None
    )


def _unexpected(result: SocketPlayResult, sender_errors: Counter[str]) -> None:
    """Count what a call's sockets were answered that a healthy run never sees."""
    if result.close_code not in (None, 1000):
        sender_errors[f"{result.namespace}.close.{result.close_code}"] += 1
    for reply in result.replies:
        if result.namespace == "siprec" and isinstance(reply, bytes):
            status = reply.split(b" ", 2)[1] if reply.startswith(b"SIP/2.0 ") else b""
            if status.isdigit() and int(status) >= 300:
                sender_errors[f"siprec.sip.{int(status)}"] += 1


def _action(
    client: AsyncClient, kind: str, namespace: str, guid: str, params: Any
) -> Callable[[], Awaitable[StreamingResult]]:
    if kind == "start":
        return lambda: client.start_streaming(namespace, guid, "c", "a", params=params)
    return lambda: client.stop_streaming(namespace, guid)


async def _slot(
    slot: int,
    server: _Server,
    client: AsyncClient,
    http: httpx.AsyncClient,
    plans: list[tuple[float, Plan]],
    delay_s: float,
    toggle_s: float,
    tally: _Tally,
) -> None:
    await asyncio.sleep(delay_s)
    while plans:
        duration, (namespace, guid, wires, extra) = plans.pop(0)  # played calls are let go
        params = AmazonConnectParams(extra["stream_arn"]) if namespace == "amazonconnect" else None
        schedule = _schedule(slot, duration, toggle_s, _opens_at_s(namespace, wires))
        actions = [(ms, _action(client, kind, namespace, guid, params)) for ms, kind in schedule]
        options: dict[str, Any] | None = None
        if namespace == "amazonconnect":
            options = {"http": http}
        # Transcribed from a script (the words of a sample call that fit in this one), so
        # every streaming window yields transcripts to account for.
        script = {"sample": SCRIPT_SAMPLE, "untilMs": duration * 1000.0}
        try:
            await client.request(
                "PUT", f"/_sim/v1/calls/{guid}/script", json=script, raise_for_status=True
            )
        except (ApiError, TransportError) as exc:
            tally.errors["script"] += 1
            tally.notes[f"script {str(exc)[:60]}"] += 1
        try:
            result = await play_over_sockets(
                server.endpoints,
                namespace,
                wires,
                actions,
                client=client,
                guid=guid,
                realtime=True,
                strict=False,
                sender_options=options,
                **extra,
            )
        except Exception as exc:  # one call's failure is reported, the slot goes on
            tally.failures.append(f"{namespace} {guid}: {exc!r}")
            continue
        tally.results.append(result)
        _unexpected(result, tally.errors)
        for outcome in result.actions:
            if isinstance(outcome.error, ApiError) and outcome.error.status == _EXPECTED_STATUS:
                tally.expected_409 += 1
                tally.notes[f"409 {outcome.error.code}"] += 1
            elif outcome.error is not None:
                status = getattr(outcome.error, "status", type(outcome.error).__name__)
                tally.errors[f"{namespace}.action.{status}"] += 1
                tally.notes[f"{namespace} {str(outcome.error)[:60]}"] += 1
            elif isinstance(outcome.value, StreamingResult):
                tally.summary_transcripts += _transcripts(outcome.value)
        counted = sum(
            _transcripts(o.value) for o in result.actions if isinstance(o.value, StreamingResult)
        )
        try:
            stored = len(await client.conversation_messages(guid))
            tally.stored_transcripts += stored
            if stored != counted and len(tally.mismatches) < 10:
                tally.mismatches.append(
                    {
                        "namespace": namespace,
                        "guid": guid,
                        "summaries": counted,
                        "stored": stored,
                        "actions": _describe(schedule, result),
                        "server_view": await _server_view(client, guid),
                    }
                )
        except ApiError as exc:
            tally.errors[f"messages.{exc.status}"] += 1
        except TransportError as exc:  # no answer: an unexpected error, not a crash
            tally.errors["messages.no-answer"] += 1
            tally.notes[f"messages {str(exc)[:60]}"] += 1


def _describe(schedule: list[tuple[float, str]], result: Any) -> list[str]:
    """Each action of a call as ``"<ms> <kind> <outcome>"``, for a call whose counts differ."""
    kinds = dict(schedule)
    lines = []
    for outcome in result.actions:
        ms = outcome.at_ms
        kind = kinds.get(ms, "?")
        if outcome.error is not None:
            what = f"error {getattr(outcome.error, 'code', type(outcome.error).__name__)}"
        elif isinstance(outcome.value, StreamingResult):
            what = f"transcripts {_transcripts(outcome.value)}"
        else:
            what = "ok"
        lines.append(f"{ms:.0f} {kind} {what}")
    return lines


async def _server_view(client: AsyncClient, guid: str) -> Any:
    """What the simulator says of the call (``GET /_sim/v1/calls/{guid}``), or the error."""
    try:
        return (await client.request("GET", f"/_sim/v1/calls/{guid}")).json()
    except (ApiError, TransportError) as exc:
        return str(exc)[:120]


async def _sample_rss(pid: int, samples: list[tuple[float, float]], t0: float) -> None:
    while True:
        with contextlib.suppress(OSError, ValueError):
            samples.append((time.monotonic() - t0, _rss_mb(pid)["rss"]))
        await asyncio.sleep(1.0)


def _slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    half = [s for s in samples if s[0] >= samples[-1][0] / 2.0] if samples else []
    if len(half) < 3:
        return None
    t = np.array([s[0] for s in half])
    rss = np.array([s[1] for s in half])
    return round(float(np.polyfit(t, rss, 1)[0]) * 60.0, 2)


class _CountingTransport(httpx.AsyncBaseTransport):
    """Counts PutMedia/DELETE answers that are not 2xx (the Kinesis producers' errors)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, errors: Counter[str]) -> None:
        self.inner = inner
        self.errors = errors

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not 200 <= response.status_code < 300:
            self.errors[f"amazonconnect.http.{response.status_code}"] += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _soak(
    server: _Server,
    slots: int,
    seconds: float,
    namespaces: tuple[str, ...],
    rss: list[tuple[float, float]],
    cpu_mark: dict[str, float],
) -> _Tally:
    _, _, toggle_s = _durations(seconds)
    ramp_s = min(5.0, seconds / 6.0)
    # Every call is planned before the clock starts (the audio is shared by calls of the
    # same length: only the wire encoding, guid included, differs).
    audio: dict[float, StereoCall] = {}
    plans: list[list[tuple[float, Plan]]] = []
    n = 0
    for slot in range(slots):
        row = []
        for duration in _calls_of(slot, seconds, ramp_s * slot / slots):
            if duration not in audio:
                audio[duration] = _call_audio(duration, len(audio))
            plan = _plan(slot, duration, namespaces, audio[duration], serial=n)
            row.append((duration, plan))
            n += 1
        plans.append(row)
    settle_heap()
    tally = _Tally()
    control = ShardedTransport()
    media = _CountingTransport(ShardedTransport(), tally.errors)
    async with (
        AsyncClient(
            server.base_url, transport=control, retry=RetryPolicy.off(), timeout=30.0
        ) as client,
        httpx.AsyncClient(transport=media, timeout=30.0) as http,
    ):
        with contextlib.suppress(ApiError):  # warm-up, as in realtime_load
            await client.start_streaming("twilio", "CA" + "0" * 32, "c", "a")
        server.stats(reset=True)
        sampler = asyncio.get_running_loop().create_task(
            _sample_rss(server.proc.pid, rss, time.monotonic())
        )
        cpu_mark["generator"] = _cpu_s()
        await asyncio.gather(
            *(
                _slot(i, server, client, http, row, ramp_s * i / slots, toggle_s, tally)
                for i, row in enumerate(plans)
            )
        )
        sampler.cancel()
    return tally


def run(
    slots: int = 200,
    seconds: float = 150.0,
    *,
    namespaces: tuple[str, ...] = NAMESPACES,
    pinned: bool = False,
) -> dict[str, Any]:
    """Soak ``slots`` cycling call slots for ``seconds``; the report, with ``meets_targets``.
    ``pinned`` runs the generator on CPU 0 and the server on CPU 1."""
    server = _Server()
    affinity = pin(server) if pinned else {"pinned": False}
    rss: list[tuple[float, float]] = []
    mark: dict[str, float] = {}
    try:
        rss_start = _rss_mb(server.proc.pid)["rss"]
        cpu0 = _cpu_s(server.proc.pid)
        started = time.monotonic()
        tally = uvloop.run(_soak(server, slots, seconds, namespaces, rss, mark))
        wall = time.monotonic() - started
        cpu = (_cpu_s(server.proc.pid) - cpu0, _cpu_s() - mark.get("generator", 0.0))
        stats = server.stats()
        rss_end = _rss_mb(server.proc.pid)
    finally:
        server.stop()
        if affinity["pinned"]:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    ok = tally.results
    sent = sum(r.sent for r in ok)
    received = sum(int(r.accounting.get("received", 0)) for r in ok)
    unbalanced = sum(1 for r in ok if not r.balanced())
    lost = sent - received + unbalanced
    lateness = stats["lateness"]
    values = [v for _, v in rss] or [rss_start]
    slope = _slope_mb_per_min(rss)
    unexpected = sum(tally.errors.values())
    checks = {
        "no_failed_calls": not tally.failures,
        "no_lost_frames": lost == 0,
        "books_balance": unbalanced == 0,
        "transcripts_accounted": tally.summary_transcripts == tally.stored_transcripts,
        "no_unexpected_errors": unexpected == 0,
        "memory_flat": seconds < _MIN_SLOPE_S or (slope is not None and slope <= RSS_SLOPE_TARGET),
    }
    # Reported, not a soak target: the lateness target is the steady-load benchmark's
    # (realtime_load.py); here calls are set up and torn down all the time.
    lateness["p99_under_steady_load_target"] = lateness["p99_ms"] < P99_TARGET_MS
    return {
        "benchmark": "soak",
        "cpus": os.cpu_count(),
        "slots": slots,
        "seconds": seconds,
        "affinity": affinity,
        "wall_s": round(wall, 1),
        "calls": {"served": len(ok), "failed": len(tally.failures)},
        "failures": tally.failures[:3],
        "error_samples": dict(tally.notes.most_common(5)),
        "media": {
            "sent": sent,
            "received": received,
            "lost": lost,
            "unbalanced_calls": unbalanced,
            "not_received": _not_received(ok),
        },
        "transcripts": {
            "stop_summaries": tally.summary_transcripts,
            "stored": tally.stored_transcripts,
            "mismatched_calls": tally.mismatches,
        },
        "actions": {
            "total": sum(len(r.actions) for r in ok),
            "expected_409": tally.expected_409,
        },
        "unexpected_errors": {"total": unexpected, **dict(sorted(tally.errors.items()))},
        "server_lateness_ms": lateness,
        "sender_lateness_ms": _percentiles([x for r in ok for x in r.send_lateness_ms]),
        "cpu_s": {"server": round(cpu[0], 1), "generator": round(cpu[1], 1)},
        "rss_mb": {
            "start": rss_start,
            "min": min(values),
            "max": max(values),
            "last": values[-1],
            "end": rss_end["rss"],
            "slope_second_half_mb_per_min": slope,
            "samples": len(rss),
            "every_5s": [round(v) for t, v in rss[::5]],
        },
        "counters": stats["counters"],
        "targets": checks,
        "meets_targets": all(checks.values()),
    }


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    slots = int(args[0]) if args else 200
    seconds = float(args[1]) if len(args) > 1 else 150.0
    chosen = [a.partition("=")[2] for a in argv if a.startswith("--namespaces=")]
    namespaces = tuple(chosen[-1].split(",")) if chosen else NAMESPACES
    if (
        slots < 1
        or not math.isfinite(seconds)
        or seconds < 2.0
        or not set(namespaces) <= set(NAMESPACES)
    ):
        print(
            "usage: soak.py [SLOTS >= 1] [SECONDS >= 2] [--namespaces=twilio,...] [--pin]",
            file=sys.stderr,
        )
        return 2
    report = run(slots, seconds, namespaces=namespaces, pinned="--pin" in argv)
    print(json.dumps(report, indent=2))
    return 0 if report["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
