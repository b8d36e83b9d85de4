"""Property-based fuzzing of a running `mgsim serve` against the project's OpenAPI file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port

from mgsim.contract import SPEC_PATH

pytestmark = [pytest.mark.socket, pytest.mark.slow]

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "unsupported_method",
        "ignored_auth",
    ]
)


# A schema-violating body can also be too large: 413 rejects it as surely as 400 does.
# Schemathesis' own list of rejecting statuses, plus 413.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "406", "413", "422", "428", "5xx"]
"""


def test_schemathesis_finds_no_5xx_and_no_contract_violation(tmp_path: Path) -> None:
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    port = free_port()
    env = {**os.environ, "MGSIM_API_ID": "fuzz-id", "MGSIM_API_SECRET": "fuzz-secret"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mgsim.cli",
            "serve",
            "--port",
            str(port),
            "--no-limits",
            "--seed",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/openapi.yaml", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        schemathesis = Path(sys.executable).with_name("schemathesis")
        run = subprocess.run(
            [
                str(schemathesis),
                "run",
                str(SPEC_PATH),
                "--url",
                f"http://127.0.0.1:{port}",
                "-H",
                "asapp-api-id: fuzz-id",
                "-H",
                "asapp-api-secret: fuzz-secret",
                "--checks",
                CHECKS,
                "--max-examples",
                "150",
                "--seed",
                "20261123",
                "-w",
                "1",
                "--no-color",
                "--request-timeout",
                "10",
                # Fault rules posted at random would make every later answer a fault; the
                # fault API has its own tests (tests/test_fault_rules.py).
                "--exclude-path-regex",
                "^/_sim/v1/faults",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated is not None, output[-2000:]
    assert int(generated.group(1)) >= 1000 and generated.group(1) == generated.group(2), output[
        -2000:
    ]
