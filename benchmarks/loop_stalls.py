"""What blocks a fresh server's event loop: every request and media path, in asyncio debug mode.

A server (the app ``mgsim serve`` runs, with its lifespan and a SIP port) runs in a thread
on an event loop in debug mode whose ``slow_callback_duration`` is ``threshold_ms``; asyncio
then logs every callback or task step that held the loop longer, naming the coroutine. While
AudioHook and Twilio calls play in real time beside it, the run sends one of every kind of
request to the fresh server (the first of each is the one that may import or load
something), then repeats them, and a :class:`~mgsim.transports.loopwatch.LoopWatch` ticker
on the server's loop records the longest stall during each request.

Reported: ``slow_callbacks`` (what asyncio logged: the step and how long it held the loop)
and ``stall_ms`` per request, first and repeated. Usage::

    python benchmarks/loop_stalls.py            # threshold 20 ms
    python benchmarks/loop_stalls.py 5          # threshold 5 ms

Debug mode slows everything down a little; the figures say which paths block, not how fast
the server is.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
import threading
import time
import uuid
from typing import Any

import httpx
import numpy as np
import uvicorn

from mgsim.media import audiohook, twilio
from mgsim.media._base import StereoCall
from mgsim.server.config import SimulatorConfig
from mgsim.simulator import Simulator
from mgsim.transports.loopwatch import LoopWatch
from mgsim.transports.playback import Endpoints, play_over_sockets

HEADERS = {"asapp-api-id": "mgsim-local", "asapp-api-secret": "mgsim-local-secret"}


class _Slow(logging.Handler):
    """Collects asyncio's "Executing ... took N seconds" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        match = re.search(r"took ([0-9.]+) seconds", text)
        if match:
            where = re.sub(r" at 0x[0-9a-f]+", "", text.split(" took ")[0])
            self.records.append((where[:300], float(match.group(1)) * 1000.0))


class _ServerLoop:
    """``sim.app`` under uvicorn on a debug-mode loop in a thread, with a LoopWatch on it."""

    def __init__(self, sim: Simulator, threshold_ms: float) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(sim.app, log_level="critical", lifespan="on", access_log=False)
        )
        self.threshold_s = threshold_ms / 1000.0
        self.watch = LoopWatch(0.002)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = self.threshold_s
        self.loop = loop

        async def main() -> None:
            self.watch.start()
            await self.server.serve(sockets=[self.sock])
            await self.watch.stop()

        loop.run_until_complete(main())
        loop.close()

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _requests(guid: str, fresh: str) -> list[tuple[str, str, str, Any]]:
    """(name, method, path, body): one of every kind of request."""
    start = {"namespace": "genesysaudiohook", "guid": guid, "customerId": "c", "agentId": "a"}
    return [
        ("openapi", "GET", "/openapi.yaml", None),
        ("twilio-url", "GET", "/mg-autotranscribe/v1/twilio-media-stream-url", None),
        ("script-sample", "PUT", f"/_sim/v1/calls/{fresh}/script", {"sample": "card_payment"}),
        ("script-words", "PUT", f"/_sim/v1/calls/{fresh}/script",
         {"words": [{"speaker": "customer", "text": "hi", "startMs": 0, "endMs": 9}]}),
        ("bad-body", "POST", "/mg-autotranscribe/v1/start-streaming", {"namespace": "x"}),
        ("bad-json", "POST", "/mg-autotranscribe/v1/start-streaming", "{"),
        ("start", "POST", "/mg-autotranscribe/v1/start-streaming", start),
        ("stop", "POST", "/mg-autotranscribe/v1/stop-streaming",
         {"namespace": "genesysaudiohook", "guid": guid}),
        ("messages", "GET", f"/conversation/v1/conversation/messages?externalId={guid}", None),
        ("sim-open", "POST", "/_sim/v1/calls",
         {"namespace": "twilio", "guid": "CA" + uuid.uuid4().hex}),
        ("sim-get", "GET", f"/_sim/v1/calls/{guid}", None),
        ("faults-add", "POST", "/_sim/v1/faults",
         {"endpoint": "stop-streaming", "latencyMs": 1, "count": 1}),
        ("faults-list", "GET", "/_sim/v1/faults", None),
        ("media-stats", "GET", "/_sim/v1/media/stats", None),
        ("media-call", "GET", f"/_sim/v1/media/calls/{guid}", None),
    ]


async def _drive(server: _ServerLoop, seconds: float) -> dict[str, Any]:
    base = f"http://127.0.0.1:{server.port}"
    endpoints = Endpoints(base)
    rng = np.random.default_rng(5)
    n = int(seconds * 8000)
    call = StereoCall(
        rng.integers(-6000, 6000, n).astype(np.int16), rng.integers(-6000, 6000, n).astype(np.int16)
    )
    guid = str(uuid.uuid4())
    plays = [
        play_over_sockets(endpoints, "genesysaudiohook", audiohook.encode(call, guid=guid))
    ] + [
        play_over_sockets(
            endpoints, "genesysaudiohook", audiohook.encode(call, guid=str(uuid.uuid4()))
        )
        for _ in range(3)
    ] + [
        play_over_sockets(endpoints, "twilio", twilio.encode(call, guid="CA" + uuid.uuid4().hex))
        for _ in range(4)
    ]
    media = asyncio.gather(*plays)
    stalls: dict[str, list[float]] = {}
    statuses: dict[str, list[int]] = {}
    async with httpx.AsyncClient(base_url=base, headers=HEADERS) as http:
        await asyncio.sleep(1.0)  # the calls are open
        for _round in ("first", "again"):
            for name, method, path, body in _requests(guid, str(uuid.uuid4())):
                await asyncio.sleep(0.05)
                server.watch.reset()
                content = body if isinstance(body, str) else None
                json_body = None if isinstance(body, str) else body
                answer = await http.request(method, path, json=json_body, content=content)
                await asyncio.sleep(0.02)  # a stall ending with the answer is still seen
                stalls.setdefault(name, []).append(round(server.watch.worst_s * 1000.0, 1))
                statuses.setdefault(name, []).append(answer.status_code)
    results = await media
    return {
        "stall_ms": {name: {"first": v[0], "again": v[1]} for name, v in stalls.items()},
        "statuses": statuses,
        "calls_balanced": all(r.balanced() for r in results),
    }


def run(threshold_ms: float = 20.0, seconds: float = 10.0) -> dict[str, Any]:
    """Drive a fresh server as described above; what blocked its loop."""
    handler = _Slow()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    sim = Simulator(
        SimulatorConfig(seed=1, sip_port=0, spike_arrest_per_s=None, daily_quota=None)
    )
    server = _ServerLoop(sim, threshold_ms)
    started = time.monotonic()
    try:
        server.start()
        startup_s = time.monotonic() - started
        driven = asyncio.run(_drive(server, seconds))
    finally:
        server.stop()
        sim.close()
        logger.removeHandler(handler)
    worst = sorted(handler.records, key=lambda r: -r[1])
    return {
        "threshold_ms": threshold_ms,
        "startup_s": round(startup_s, 2),
        "slow_callbacks": [{"where": w, "ms": round(ms, 1)} for w, ms in worst[:20]],
        **driven,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(*(float(a) for a in sys.argv[1:])), indent=2))
