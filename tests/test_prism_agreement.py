"""An independent validator reads the contract as mgsim does, and the vendor's file too.

Stoplight Prism (a JavaScript OpenAPI mock, with its own JSON Schema validator) serves the
project's contract; every row of the contract table whose body is a JSON object goes to it.
Prism refuses exactly the bodies mgsim's own validation of the contract refuses: in
particular, a pattern's ``$`` ends the value there as here, so a trailing newline passes
neither. A second Prism serves the vendor's OpenAPI file: where it takes a start or stop
body that mgsim refuses, the refusal is a deviation the contract lists; mgsim never takes a
body the vendor's file refuses. ``make test`` installs Prism first (``scripts/node-deps.sh``:
``npm ci --prefix benchmarks``, from the pinned lock file); without npm, after a failed
install, or without the vendor's file, these tests are skipped, saying why.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import GUIDS, HEADERS, serve_process, vendor_openapi
from test_contract_table import CALLS, FAULTS, MEDIA, ROWS, START, STOP, Row
from test_schemathesis import deviations, reason

from mgsim.contract import SPEC_PATH, ContractViolation, validate
from mgsim.server.config import SimulatorConfig
from mgsim.simulator import Simulator

pytestmark = [pytest.mark.socket, pytest.mark.slow]

_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
_LOCAL_PRISM = _BENCHMARKS / "node_modules" / ".bin" / "prism"


def _prism() -> str | None:
    return str(_LOCAL_PRISM) if _LOCAL_PRISM.exists() else shutil.which("prism")


def _missing_prism() -> str:
    """Why Prism is absent, for the skip: ``make test`` installs it (scripts/node-deps.sh)."""
    if shutil.which("npm") is None:
        return "Stoplight Prism is not installed: npm is missing (apt-get install nodejs npm)"
    return (
        "Stoplight Prism is not installed: scripts/node-deps.sh (run by make test) has not "
        "run or its `npm ci --prefix benchmarks` failed; it said why"
    )


def _schema(row: Row) -> str | None:
    """The contract's schema for the row's body, or None when the row is not about one."""
    route = row.path.split("?")[0]
    if row.method == "POST" and route in (START, STOP, CALLS, FAULTS, MEDIA):
        return {
            START: "StartStreamingRequest",
            STOP: "StopStreamingRequest",
            CALLS: "SimCallRequest",
            FAULTS: "FaultRuleRequest",
            MEDIA: "SimMediaStatsReset",
        }[route]
    if row.method == "PUT" and route.startswith(CALLS + "/") and route.endswith("/script"):
        return "SimScriptRequest"
    return None


def _comparable(row: Row) -> bool:
    # A JSON object with valid credentials, on a path and method the contract has, that
    # passes the JSON-text checks before the schema (no lone surrogate) and the body limit.
    if row.headers or row.setup or not isinstance(row.body, dict) or row.status == 413:
        return False
    if _schema(row) is None:
        return False
    return row.code != "400-01"


COMPARED = [row for row in ROWS if _comparable(row)]


def mgsim_refuses(row: Row) -> bool:
    schema = _schema(row)
    assert schema is not None
    try:
        validate(schema, row.body)
    except ContractViolation:
        return True
    return False


def _serve(spec: Path) -> Iterator[str]:
    binary = _prism()
    if binary is None:
        pytest.skip(_missing_prism())
    argv = [binary, "mock", str(spec), "-h", "127.0.0.1", "-p", "{port}"]
    yield from serve_process(argv, "/mg-autotranscribe/v1/twilio-media-stream-url", timeout_s=60)


@pytest.fixture(scope="module")
def prism() -> Iterator[str]:
    yield from _serve(SPEC_PATH)


@pytest.fixture(scope="module")
def vendor_prism() -> Iterator[str]:
    path = vendor_openapi()
    if not path.exists():
        pytest.skip(f"the vendor's OpenAPI file is not at {path} (set MGSIM_SHARED_DIR)")
    yield from _serve(path)


def test_enough_rows_are_compared() -> None:
    assert len(COMPARED) >= 100
    # Both verdicts occur, and the trailing-newline rows are among them.
    assert any(mgsim_refuses(r) for r in COMPARED) and not all(mgsim_refuses(r) for r in COMPARED)
    assert {"language-trailing-newline", "kvs-fragment-newline", "script-word-with-spaces"} <= {
        r.id for r in COMPARED
    }


def _prism_refuses(url: str, row: Row) -> tuple[bool, Any]:
    headers = {**HEADERS, "content-type": "application/json"}
    content = json.dumps(row.body).encode()  # as the table sends it: escapes stay escapes
    r = httpx.request(row.method, url + row.path, content=content, headers=headers, timeout=10)
    assert r.status_code < 500, r.text
    return r.status_code in (400, 422), r.status_code


@pytest.mark.parametrize("row", COMPARED, ids=[row.id for row in COMPARED])
def test_prism_refuses_what_mgsim_refuses(prism: str, row: Row) -> None:
    refused, status = _prism_refuses(prism, row)
    assert refused == mgsim_refuses(row), (row.id, status)


VENDOR_ROWS = [row for row in COMPARED if row.path in (START, STOP)]


@pytest.mark.parametrize("row", VENDOR_ROWS, ids=[row.id for row in VENDOR_ROWS])
def test_mgsim_and_the_vendors_file_differ_only_by_listed_deviations(
    vendor_prism: str, row: Row
) -> None:
    vendor_refuses, status = _prism_refuses(vendor_prism, row)
    with Simulator(SimulatorConfig(seed=16), virtual=True) as sim:
        for namespace, guid in GUIDS.items():
            sim.gateway.open_call(namespace, guid)
        with httpx.Client(transport=sim.sync_transport(), base_url="http://sim") as http:
            headers = {**HEADERS, "content-type": "application/json"}
            r = http.post(row.path, content=json.dumps(row.body).encode(), headers=headers)
    if vendor_refuses:
        assert r.status_code == 400, (row.id, "the vendor's file refuses it", status)
    elif r.status_code == 400:
        why = reason("positive_data_acceptance", r.status_code, r.text)
        assert why in deviations(), (row.id, r.text)
