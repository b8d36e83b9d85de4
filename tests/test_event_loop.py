"""Nothing on a request path may stall a fresh ``mgsim serve``'s event loop.

Every live call's audio waits while the loop is blocked, so an import, a file read or a
validator built on the first request of a kind is a correctness defect, not slowness: the
first ``PUT /_sim/v1/calls/{guid}/script`` used to hold the loop for about 2-4 s importing
jsonschema. The server measures its own loop with a ticker (``loop.worst_stall_ms`` in
``GET /_sim/v1/media/stats``); a fresh process, so nothing is imported or loaded already,
gets the first request of every kind and the longest stall must stay far below a stall of
that size. The bound is generous on purpose: it tells a blocked loop from a busy one, it
does not time the code. It is checked on the stall counted in the loop thread's CPU time, so
that a shared machine not running the process for a while is not taken for a blocking call
(which spends its time on the thread).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import HEADERS, free_port

pytestmark = [pytest.mark.socket, pytest.mark.timeout(120)]

STALL_BOUND_MS = 750.0


@contextlib.contextmanager
def fresh_server() -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MGSIM_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mgsim.cli", "serve", "--port", str(port), "--no-limits"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/_sim/v1/media/stats", headers=HEADERS, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(err) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def first_requests(guid: str) -> list[tuple[str, str, Any, int]]:
    """(method, path, body, expected status): the first of every kind on a fresh server."""
    start = {"namespace": "genesysaudiohook", "guid": guid, "customerId": "c", "agentId": "a"}
    stop = {"namespace": "genesysaudiohook", "guid": guid}
    return [
        ("PUT", f"/_sim/v1/calls/{guid}/script", {"sample": "card_payment"}, 200),
        ("POST", "/_sim/v1/calls", {"namespace": "genesysaudiohook", "guid": guid}, 201),
        ("POST", "/mg-autotranscribe/v1/start-streaming", {"namespace": "nowhere"}, 400),
        ("POST", "/mg-autotranscribe/v1/start-streaming", start, 200),
        ("POST", "/mg-autotranscribe/v1/stop-streaming", stop, 200),
        ("POST", "/_sim/v1/faults", {"endpoint": "stop-streaming", "latencyMs": 1}, 201),
        ("GET", "/openapi.yaml", None, 200),
        ("GET", f"/conversation/v1/conversation/messages?externalId={guid}", None, 200),
        ("DELETE", f"/_sim/v1/calls/{guid}", None, 204),
    ]


def test_the_first_requests_of_a_fresh_server_do_not_stall_its_loop() -> None:
    guid = str(uuid.uuid4())
    with fresh_server() as url, httpx.Client(base_url=url, headers=HEADERS) as http:
        http.post("/_sim/v1/media/stats", json={"reset_lateness": True}).raise_for_status()
        for method, path, body, status in first_requests(guid):
            answer = http.request(method, path, json=body)
            assert answer.status_code == status, (path, answer.text)
        time.sleep(0.05)  # the ticker wakes (late, if the loop was stalled) and records it
        loop = http.get("/_sim/v1/media/stats").json()["loop"]
    assert loop["ticks"] > 0
    assert loop["worst_stall_cpu_ms"] < STALL_BOUND_MS, loop
