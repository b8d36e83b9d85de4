"""Hundreds of concurrent real-time AudioHook sessions against one ``mgsim serve``.

``sessions`` Genesys AudioHook clients connect (opened at random over ``ramp_s``, as the
reference client's Poisson arrivals do) to one ``mgsim serve`` process and each streams
stereo PCMU in real time for ``seconds``: a 200 ms frame (3,200 bytes) every 200 ms, a
``ping`` every 5 s carrying the ``rtt`` it measured (nanosecond precision, as real clients
send it), and every ``cycle_s`` a client pause: ``paused``, then over HTTP stop-streaming
and start-streaming, then ``resumed`` with the pause's ``start`` and ``discarded``. Each
session starts streaming after ``opened`` and stops before its ``close``.

Each stop summary is checked to the frame: before stop-streaming the client has paused and
a ``ping`` has come back as ``pong``, so every frame it sent has been placed (the server
handles a connection's messages in order), and the summary's ``totalAudioBytes`` must be
exactly the segment's frames × 1,600 samples × 2 bytes, for the customer and the agent.

Reported, against the targets: ``disconnects`` (any server ``disconnect``, a connection not
closed 1000 after ``closed``, a failed upgrade: target 0), ``summaries`` (checked and
inexact: target 0 inexact), ``pongs`` (every ping answered), ``server_lateness_ms`` and the
server's longest event-loop stall (``GET /_sim/v1/media/stats``), the generator's own
lateness (whether it kept real time) and the CPU both used. Usage::

    python benchmarks/audiohook_sessions.py            # 500 sessions, 60 s
    python benchmarks/audiohook_sessions.py 20 12      # smoke
    python benchmarks/audiohook_sessions.py 500 60 --pin   # generator CPU 0, server CPU 1
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from realtime_load import HEADERS, ShardedTransport, _cpu_s, _Server, pin

from mgsim.media.audiohook_signature import sign_request
from mgsim.server.config import DEFAULT_AUDIOHOOK_API_KEY, DEFAULT_AUDIOHOOK_CLIENT_SECRET

FRAME_SAMPLES = 1600  # 200 ms at 8 kHz
FRAME_S = 0.2
PING_S = 5.0
ORG = "6a4b6f2e-8d0c-4b8e-9a55-0f3c2d1e7b10"
STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
REPLY_S = 10.0


def _duration(samples: int) -> str:
    return f"PT{samples / 8000:.6f}S"


@dataclass
class Tally:
    sessions: int = 0
    completed: int = 0
    disconnected: int = 0
    """Sessions that did not end with their own close, closed and a 1000 close."""
    disconnects: list[str] = field(default_factory=list)
    summaries: int = 0
    inexact: list[str] = field(default_factory=list)
    pings: int = 0
    pongs: int = 0
    frames: int = 0
    http_errors: list[str] = field(default_factory=list)
    lateness_ms: list[float] = field(default_factory=list)
    http_ms: list[float] = field(default_factory=list)


class _Session:
    """One AudioHook client: its seq bookkeeping, replies and the frames of each segment."""

    def __init__(self, ws: ClientConnection, session_id: str, tally: Tally) -> None:
        self.ws, self.id, self.tally = ws, session_id, tally
        self.seq = self.serverseq = 0
        self.position = 0
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.ensure_future(self._read())
        self.ping_sent = 0.0
        self.rtt_ns = 0
        self.barrier: int | None = None
        """The seq of the ping whose pong the client waits for."""

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                if not isinstance(data, str):
                    continue
                message = json.loads(data)
                self.serverseq = message["seq"]
                if message["type"] == "disconnect":
                    self.tally.disconnects.append(f"disconnect {message['parameters']}")
                if message["type"] == "pong":
                    self.rtt_ns = int((time.perf_counter() - self.ping_sent) * 1e9)
                    self.tally.pongs += 1
                    if self.barrier is None or message["clientseq"] < self.barrier:
                        continue  # a real client does not hold its audio for a pong
                await self.replies.put(message)
        except ConnectionClosed:
            pass

    async def send(self, type_: str, parameters: dict[str, Any]) -> None:
        self.seq += 1
        await self.ws.send(
            json.dumps(
                {
                    "version": "2",
                    "id": self.id,
                    "type": type_,
                    "seq": self.seq,
                    "serverseq": self.serverseq,
                    "position": _duration(self.position),
                    "parameters": parameters,
                }
            )
        )

    async def expect(self, type_: str) -> dict[str, Any]:
        while True:
            message = await asyncio.wait_for(self.replies.get(), REPLY_S)
            if message["type"] == type_:
                return message
            if message["type"] == "disconnect":
                raise ConnectionError(f"disconnect while waiting for {type_}")

    async def ping(self, *, wait: bool = False) -> None:
        """Send a ping (with the last round trip measured); with ``wait``, until its pong."""
        whole, ns = divmod(self.rtt_ns, 10**9)
        rtt = {"rtt": f"PT{whole}.{ns:09d}S"} if self.rtt_ns else {}
        self.ping_sent = time.perf_counter()
        self.tally.pings += 1
        if wait:
            self.barrier = self.seq + 1  # this ping's seq
        await self.send("ping", rtt)
        if wait:
            await self.expect("pong")
            self.barrier = None


def _headers(base_url: str, session_id: str) -> dict[str, str]:
    headers = {
        "Audiohook-Organization-Id": ORG,
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "Audiohook-Session-Id": session_id,
        "X-API-KEY": DEFAULT_AUDIOHOOK_API_KEY,
    }
    now = int(time.time())
    authority = base_url.split("://", 1)[1]
    signed = sign_request(
        "GET",
        "/audiohook/ws",
        authority,
        headers,
        client_secret_b64=DEFAULT_AUDIOHOOK_CLIENT_SECRET,
        key_id=DEFAULT_AUDIOHOOK_API_KEY,
        nonce=uuid.uuid4().hex,
        created=now,
        expires=now + 60,
    )
    return {**headers, **signed}


async def _control(http: httpx.AsyncClient, path: str, body: dict[str, Any], tally: Tally) -> Any:
    what = ""
    for attempt in range(4):
        sent = time.perf_counter()
        try:
            answer = await http.post(path, json=body)
        except httpx.HTTPError as exc:
            what = f"{type(exc).__name__} after {time.perf_counter() - sent:.1f} s"
            break
        tally.http_ms.append((time.perf_counter() - sent) * 1000.0)
        if answer.status_code == 200:
            return answer.json()
        what = f"{answer.status_code} {answer.text[:120]}"
        if answer.status_code < 500 and answer.status_code != 429:
            break
        await asyncio.sleep(0.25 * 2**attempt)
    tally.http_errors.append(f"{path} {what}")
    return None


async def _one(
    base_url: str,
    http: httpx.AsyncClient,
    tally: Tally,
    delay_s: float,
    seconds: float,
    cycle_s: float,
    pause_s: float,
) -> None:
    await asyncio.sleep(delay_s)
    guid, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    url = base_url.replace("http://", "ws://") + "/audiohook/ws"
    tally.sessions += 1
    frame = bytes(range(256)) * (2 * FRAME_SAMPLES // 256) + bytes(2 * FRAME_SAMPLES % 256)
    loop = asyncio.get_running_loop()
    signed_at = time.time()
    try:
        async with connect(
            url, additional_headers=_headers(base_url, session_id), proxy=None, compression=None
        ) as ws:
            s = _Session(ws, session_id, tally)
            await s.send(
                "open",
                {
                    "organizationId": ORG,
                    "conversationId": guid,
                    "participant": {"id": guid, "ani": "+1", "aniName": "c", "dnis": "+2"},
                    "media": [STEREO],
                    "language": "en-US",
                },
            )
            await s.expect("opened")
            start = {
                "namespace": "genesysaudiohook",
                "guid": guid,
                "customerId": "c",
                "agentId": "a",
            }
            stop = {"namespace": "genesysaudiohook", "guid": guid}
            await _control(http, "/mg-autotranscribe/v1/start-streaming", start, tally)
            segment = 0  # frames sent while streaming, this segment
            t0 = loop.time()
            end = t0 + seconds
            next_frame, next_ping = t0 + FRAME_S, t0 + PING_S
            next_pause = t0 + cycle_s - pause_s

            async def barrier_stop() -> None:
                nonlocal segment
                await s.ping(wait=True)  # every frame sent before is on the gateway
                summary = await _control(http, "/mg-autotranscribe/v1/stop-streaming", stop, tally)
                if summary is not None:
                    want = segment * FRAME_SAMPLES * 2
                    for role in ("customer", "agent"):
                        got = summary["autotranscribeResponse"][role]["summary"]["totalAudioBytes"]
                        tally.summaries += 1
                        if got != want:
                            tally.inexact.append(f"{guid} {role}: {got} != {want}")
                segment = 0

            while True:
                now = loop.time()
                due = min(next_frame, next_ping, next_pause)
                if due >= end:
                    break
                if due > now:
                    await asyncio.sleep(due - now)
                if due == next_frame:
                    tally.lateness_ms.append((loop.time() - next_frame) * 1000.0)
                    await ws.send(frame)
                    s.position += FRAME_SAMPLES
                    segment += 1
                    tally.frames += 1
                    next_frame += FRAME_S
                elif due == next_ping:
                    await s.ping()
                    next_ping += PING_S
                else:
                    paused_at = s.position
                    await s.send("paused", {})
                    await barrier_stop()
                    resume_at = loop.time() + pause_s
                    await _control(http, "/mg-autotranscribe/v1/start-streaming", start, tally)
                    await asyncio.sleep(max(0.0, resume_at - loop.time()))
                    gap = round(pause_s * 8000)
                    s.position = paused_at + gap
                    await s.send(
                        "resumed", {"start": _duration(paused_at), "discarded": _duration(gap)}
                    )
                    next_frame = loop.time() + FRAME_S
                    next_pause += cycle_s
            await s.send("paused", {})
            await barrier_stop()
            await s.send("close", {"reason": "end"})
            await s.expect("closed")
            await asyncio.wait_for(s.reader, REPLY_S)
            if ws.close_code != 1000:
                tally.disconnects.append(f"closed {ws.close_code}")
                tally.disconnected += 1
            else:
                tally.completed += 1
    except (ConnectionClosed, ConnectionError, InvalidStatus, TimeoutError, OSError) as exc:
        waited = time.time() - signed_at
        tally.disconnects.append(f"{type(exc).__name__}: {exc}"[:200] + f" after {waited:.1f} s")
        tally.disconnected += 1


def _frames_due(sessions: int, seconds: float, cycle_s: float, pause_s: float) -> int:
    """Frames a session sends in real time: ``seconds`` less its pauses, in 200 ms frames."""
    pauses = int(seconds // cycle_s) - (seconds % cycle_s == 0)
    return sessions * round((seconds - pauses * pause_s) / FRAME_S)


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 1)}


async def _load(
    base_url: str,
    sessions: int,
    seconds: float,
    ramp_s: float,
    cycle_s: float,
    pause_s: float,
    seed: int,
) -> Tally:
    tally = Tally()
    rng = random.Random(seed)
    transport = ShardedTransport()
    async with httpx.AsyncClient(
        base_url=base_url, headers=HEADERS, transport=transport, timeout=30
    ) as http:
        await asyncio.gather(
            *(
                _one(base_url, http, tally, rng.uniform(0, ramp_s), seconds, cycle_s, pause_s)
                for _ in range(sessions)
            )
        )
    return tally


def _generator(args: tuple[str, int, float, float, float, float, int]) -> dict[str, Any]:
    """One generator process: its share of the sessions; its tally and CPU seconds."""
    cpu0 = _cpu_s()
    tally = uvloop.run(_load(*args))
    return {**dataclasses.asdict(tally), "cpu_s": _cpu_s() - cpu0}


def run(
    sessions: int = 500,
    seconds: float = 60.0,
    *,
    ramp_s: float = 30.0,
    cycle_s: float = 10.0,
    pause_s: float = 1.0,
    procs: int = 2,
    pinned: bool = False,
) -> dict[str, Any]:
    """Run the sessions from ``procs`` generator processes (the machine's two cores, when
    free); the report, with ``meets_targets``. ``pinned``: one generator on CPU 0, the
    server on CPU 1."""
    load = os.getloadavg()
    server = _Server(sip=False, quiet=False, start_timeout_s=60.0)
    affinity = pin(server) if pinned else {"pinned": False}
    try:
        server.stats(reset=True)
        cpu0 = _cpu_s(server.proc.pid)
        started = time.monotonic()
        procs = 1 if pinned else procs
        shares = [sessions // procs + (i < sessions % procs) for i in range(procs)]
        jobs = [
            (server.base_url, n, seconds, ramp_s, cycle_s, pause_s, 11 + i)
            for i, n in enumerate(shares)
        ]
        if procs == 1:
            parts = [_generator(jobs[0])]
        else:
            with multiprocessing.get_context("spawn").Pool(procs) as pool:
                parts = pool.map(_generator, jobs)
        wall = time.monotonic() - started
        tally = Tally()
        for part in parts:
            for name in (
                "sessions",
                "completed",
                "disconnected",
                "summaries",
                "pings",
                "pongs",
                "frames",
            ):
                setattr(tally, name, getattr(tally, name) + part[name])
            for name in ("disconnects", "inexact", "http_errors", "lateness_ms", "http_ms"):
                getattr(tally, name).extend(part[name])
        cpu = (_cpu_s(server.proc.pid) - cpu0, sum(p["cpu_s"] for p in parts))
        stats = server.stats()
    finally:
        server.stop()
        if affinity["pinned"]:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    counters = stats["counters"]
    report = {
        "sessions": sessions,
        "seconds": seconds,
        "load_average_at_start": [round(x, 2) for x in load],
        "completed": tally.completed,
        "disconnects": tally.disconnected,
        "disconnect_kinds": sorted(set(tally.disconnects))[:10],
        "summaries": tally.summaries,
        "inexact_summaries": len(tally.inexact),
        "inexact_examples": tally.inexact[:5],
        "pings": tally.pings,
        "pongs": tally.pongs,
        "frames_sent": tally.frames,
        "http_errors": len(tally.http_errors),
        "http_error_examples": tally.http_errors[:5],
        "server_errors": {k: v for k, v in counters.items() if ".error." in k or ".rejected." in k},
        "server_lateness_ms": stats["lateness"],
        "server_loop": stats.get("loop"),
        "generator_lateness_ms": _pct(tally.lateness_ms),
        "http_latency_ms": _pct(tally.http_ms),
        "cpu_s": {"server": round(cpu[0], 1), "generator": round(cpu[1], 1)},
        "generator_processes": procs,
        "server_stderr_tail": server.stderr_tail(),
        "frames_due": _frames_due(sessions, seconds, cycle_s, pause_s),
        "wall_s": round(wall, 1),
        **affinity,
    }
    report["meets_targets"] = (
        report["disconnects"] == 0
        and report["inexact_summaries"] == 0
        and tally.summaries > 0
        and tally.completed == sessions
        and tally.pings == tally.pongs
        and not tally.http_errors
    )
    return report


def main(argv: list[str] | None = None) -> int:
    """The command line: the report as JSON; exit 0 when the targets are met, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sessions",
        nargs="?",
        type=_positive_int,
        default=500,
        help="concurrent sessions (default 500)",
    )
    parser.add_argument(
        "seconds",
        nargs="?",
        type=_positive_float,
        default=60.0,
        help="each session's length (default 60)",
    )
    parser.add_argument(
        "--ramp",
        type=_positive_float,
        default=30.0,
        metavar="S",
        help="sessions open at random over this many seconds (default 30)",
    )
    parser.add_argument(
        "--cycle",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="a client pause every S seconds (default 10)",
    )
    parser.add_argument(
        "--pause",
        type=_positive_float,
        default=1.0,
        metavar="S",
        help="each pause's length (default 1)",
    )
    parser.add_argument(
        "--procs", type=_positive_int, default=2, help="generator processes (default 2)"
    )
    parser.add_argument(
        "--pin", action="store_true", help="one generator on CPU 0, the server on CPU 1"
    )
    args = parser.parse_args(argv)
    if args.pause >= args.cycle:
        parser.error(f"--pause {args.pause} must be shorter than --cycle {args.cycle}")
    result = run(
        args.sessions,
        args.seconds,
        ramp_s=args.ramp,
        cycle_s=args.cycle,
        pause_s=args.pause,
        procs=args.procs,
        pinned=args.pin,
    )
    print(json.dumps(result, indent=2))
    return 0 if result["meets_targets"] else 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
