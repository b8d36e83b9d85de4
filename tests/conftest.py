"""Shared fixtures: an embedded simulator on a virtual clock, and a real server on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from mgsim.client import Client
from mgsim.contract import CODES, validate
from mgsim.media.sip import SipMessage, parse_message
from mgsim.server.config import SimulatorConfig
from mgsim.simulator import Simulator

HEADERS = {"asapp-api-id": "mgsim-local", "asapp-api-secret": "mgsim-local-secret"}

GUIDS = {
    "siprec": "0867617078-0032318833-2221801472-0002236962",
    "twilio": "CA" + "3f" * 16,
    "amazonconnect": "1117e864-690f-4e1e-9dcf-6fbfcc288e41",
    "genesysaudiohook": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
}
ARN = (
    "arn:aws:kinesisvideo:us-east-1:000000000000:stream/"
    "demo-connect-acme-contact-1117e864-690f-4e1e-9dcf-6fbfcc288e41/1654194145007"
)


def call(
    sim: Simulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    """One request through the embedded app; every error answer must be the vendor envelope."""
    with httpx.Client(transport=sim.sync_transport(), base_url="http://sim") as http:
        r = http.request(
            method,
            path,
            json=body if content is None else None,
            content=content,
            headers=HEADERS if headers is None else headers,
        )
    if r.status_code >= 400:
        validate("Error", r.json())
        assert r.json()["error"]["code"] in CODES
        assert r.json()["error"]["code"].startswith(str(r.status_code))
    return r


def code(r: httpx.Response) -> str:
    """The vendor error code of an error answer."""
    return str(r.json()["error"]["code"])


def start_extra(namespace: str) -> dict[str, object]:
    """Namespace parameters a valid start-streaming needs."""
    if namespace == "amazonconnect":
        return {"amazonConnectParams": {"streamArn": ARN}}
    return {}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    s = Simulator(SimulatorConfig(seed=42), virtual=True)
    yield s
    s.close()


@pytest.fixture
def client(sim: Simulator) -> Iterator[Client]:
    with Client(simulator=sim) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


RECEIVER_REPORT = bytes([0x81, 201, 0, 7]) + (0x1234).to_bytes(4, "big") + bytes(24)
"""An RTCP receiver report (RFC 3550 6.4.2) with one report block, as an SBC sends."""


def noise_call(seed: int, samples: int) -> Any:
    """A ``StereoCall`` of seeded noise on both participants."""
    import numpy as np

    from mgsim.media._base import StereoCall

    rng = np.random.default_rng(seed)
    return StereoCall(
        rng.integers(-8000, 8000, samples).astype(np.int16),
        rng.integers(-8000, 8000, samples).astype(np.int16),
    )


def wait_serving(proc: subprocess.Popen[bytes], url: str, output: object = None) -> None:
    """Wait (20 s at most) until an ``mgsim serve`` process answers at ``url``; raise with
    its output (``output()``, when given) if it exits or never answers."""
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url + "/openapi.yaml", timeout=1)
            return
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = output() if callable(output) else ""
                raise RuntimeError(text) from None
            time.sleep(0.1)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A simulator with SIP on a free port served on loopback (``ServerThread``);
    ``indirect`` parametrization passes ``SimulatorConfig`` overrides."""
    from mgsim.transports.serve import ServerThread

    overrides: dict[str, Any] = getattr(request, "param", {})
    config = SimulatorConfig(
        seed=3, sip_port=0, spike_arrest_per_s=None, daily_quota=None, **overrides
    )
    with Simulator(config) as sim, ServerThread(sim) as running:
        yield running


@dataclass
class LiveServer:
    url: str
    sim: Simulator


@pytest.fixture
def live_server() -> Iterator[LiveServer]:
    """A real uvicorn serving a (real-time) simulator on a free loopback port."""
    sim = Simulator(SimulatorConfig(seed=7))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(sim.app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 10 s")
        time.sleep(0.02)
    yield LiveServer(f"http://127.0.0.1:{port}", sim)
    server.should_exit = True
    thread.join(timeout=10)


def needs_program(program: str, package: str) -> pytest.MarkDecorator:
    """Skip a test, naming the Debian package to install, when `program` is not on PATH.

    `make test` installs these packages (scripts/system-deps.sh) where it can; elsewhere the
    tests that need one are skipped with this reason instead of failing.
    """
    import shutil

    return pytest.mark.skipif(
        shutil.which(program) is None,
        reason=f"{program} is not installed (apt-get install {package})",
    )


def vendor_openapi() -> Path:
    """Where the vendor's OpenAPI file is: ``shared/`` beside the clone, as CI lays it out
    (``$MGSIM_SHARED_DIR`` overrides). It carries no licence, so no copy is committed; the
    tests that need it skip, naming this path, when it is absent."""
    shared = os.environ.get("MGSIM_SHARED_DIR")
    root = Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared"
    return root / "reference" / "mg-autotranscribe.vendor.openapi.yaml"


def serve_process(argv: list[str], probe: str, *, timeout_s: float = 30.0, **popen: Any) -> Any:
    """Start a server process, yield its loopback URL once ``probe`` (a path) answers, and
    stop it (its whole process group) afterwards. ``argv`` gets the port as ``{port}``."""
    port = free_port()
    proc = subprocess.Popen(
        [arg.format(port=port) for arg in argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # children (node's, say) go with it
        **popen,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                httpx.get(url + probe, timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, f"{argv[0]} exited with {proc.returncode}"
                assert time.monotonic() < deadline, f"{argv[0]} did not start in {timeout_s} s"
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


class Sbc:
    """A bare UDP SBC on loopback: sends what it is given and reads every answer."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)

    def exchange(self, data: bytes, to: tuple[str, int]) -> list[SipMessage]:
        """Send a request; return every response up to the final one."""
        self.sock.sendto(data, to)
        out: list[SipMessage] = []
        while not out or out[-1].status < 200:
            out.append(parse_message(self.sock.recv(65536)))
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sbc() -> Iterator[Sbc]:
    """A :class:`Sbc`, closed after the test."""
    peer = Sbc()
    yield peer
    peer.close()
