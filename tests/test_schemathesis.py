"""Property-based fuzzing of a running `mgsim serve` with schemathesis, every check on.

Two schemas drive it:

* the project's contract (``mgsim/contract/openapi.yaml``): every failure schemathesis
  reports must be a schema-valid request refused by one of the rules the contract lists as
  those a schema cannot say (guid forms, combinations, call state, the script rules);
* the vendor's OpenAPI file (``shared/reference/mg-autotranscribe.vendor.openapi.yaml``,
  read from ``../shared`` beside the repository as CI lays it out, or from
  ``$MGSIM_SHARED_DIR``; it carries no licence, so no copy is committed): every failure must
  fall under a deviation the contract's deviations table lists.

Neither run may see a 5xx. Both are bounded by ``--max-examples``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import serve_process, vendor_openapi

from mgsim.contract import SPEC_PATH, load_spec

pytestmark = [pytest.mark.socket, pytest.mark.slow]

# A schema-violating body can also be too large: 413 rejects it as surely as 400 does.
# Schemathesis' own list of rejecting statuses, plus 413 and 415.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "406", "413", "415", "422", "428", "5xx"]
"""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    env = {**os.environ, "MGSIM_API_ID": "fuzz-id", "MGSIM_API_SECRET": "fuzz-secret"}
    serve = ["serve", "--no-limits", "--seed", "1", "--port", "{port}"]
    yield from serve_process([sys.executable, "-m", "mgsim.cli", *serve], "/openapi.yaml", env=env)


def run_schemathesis(schema: Path, url: str, tmp: Path, max_examples: int) -> tuple[str, list[Any]]:
    """Run every check; the output and each failure as (check, method path, status, body)."""
    (tmp / "schemathesis.toml").write_text(CONFIG)
    report = tmp / "events.ndjson"
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            str(schema),
            "--url",
            url,
            "-H",
            "asapp-api-id: fuzz-id",
            "-H",
            "asapp-api-secret: fuzz-secret",
            "--checks",
            "all",
            "--continue-on-failure",
            "--max-examples",
            str(max_examples),
            "--seed",
            "20261123",
            "-w",
            "1",
            "--no-color",
            "--request-timeout",
            "10",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            # Fault rules posted at random would make every later answer a fault; the
            # fault API has its own tests (tests/test_fault_rules.py, the contract table).
            "--exclude-path-regex",
            "^/_sim/v1/faults",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp,
    )
    output = run.stdout + run.stderr
    assert run.returncode in (0, 1), output[-4000:]  # 1: failures, judged below
    failures = []
    for line in report.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for case_id, checks in recorder.get("checks", {}).items():
            for check in checks:
                if check["status"] != "failure":
                    continue
                exchange = recorder["interactions"].get(case_id) or {}
                response = exchange.get("response") or {}
                request = exchange.get("request") or {}
                content = (response.get("content") or {}).get("$base64", "")
                failures.append(
                    (
                        check["name"],
                        f"{request.get('method')} {request.get('uri', '').split('?')[0]}",
                        response.get("status_code"),
                        base64.b64decode(content).decode(errors="replace"),
                    )
                )
    return output, failures


# What a refusal says, and the contract's name for why: a deviation of the deviations table,
# or (for the simulator's own script API) a rule of the rules table.
_REASONS: list[tuple[str, str, str]] = [
    ("400-201", r"unknown parameter", "unknown-members"),
    ("400-201", r"^guid: for namespace", "guid-form"),
    ("400-201", r": must not be empty$|: must be at most \d+ characters$", "string-lengths"),
    (
        "400-201",
        r"^(autotranscribeParams\.language|amazonConnectParams\.(streamArn|"
        r"afterFragmentNumber)): has an invalid format",
        "value-forms",
    ),
    (
        "400-201",
        r"^(namespace|guid|amazonConnectParams\.streamArn): is required$",
        "required-members",
    ),
    ("400-201", r"^body: amazonConnectParams \(with its streamArn\) is required", "combinations"),
    ("400-202", r"", "combinations"),
    ("400-203", r"", "call-state"),
    (
        "400-201",
        r"^amazonConnectParams\.streamArn: (no Kinesis|stream .* does not carry)",
        "call-state",
    ),
    ("400-01", r"lone surrogate|not UTF-8|byte-order mark", "json-text"),
    ("415-01", r"", "json-text"),
    (
        "400-201",
        r"^words\[\d+\]\.endMs: .* is before startMs$|^sample: no sample call named",
        "script-rules",
    ),
]


def reason(check: str, status: int | None, body: str) -> str | None:
    """The contract's reason for one failure schemathesis reports, or None if there is none."""
    if check == "use_after_free" and status == 200 and '"open":false' in body:
        return "ended-calls-kept"  # simHangUp: GET answers for the ended call it keeps
    if check != "positive_data_acceptance" or status is None or status >= 500:
        return None
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return None
    for code, message, why in _REASONS:
        if error.get("code") == code and re.search(message, error.get("message", "")):
            return why
    return None


def deviations() -> set[str]:
    """The ids of the contract's deviations table."""
    text = load_spec()["info"]["description"]
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", text, flags=re.MULTILINE))


def test_the_reasons_are_the_contracts() -> None:
    listed = deviations()
    assert {"unknown-members", "guid-form", "call-state", "json-text"} <= listed
    for _, _, why in _REASONS:
        assert why in listed or why == "script-rules", why
    spec = load_spec()
    assert "PUT /_sim/v1/calls/{guid}/script" in spec["info"]["description"]
    hang_up = spec["paths"]["/_sim/v1/calls/{guid}"]["delete"]["description"]
    assert "keeps answering" in hang_up


@pytest.mark.parametrize(
    ("check", "status", "body", "expected"),
    [
        (
            "positive_data_acceptance",
            400,
            '{"error":{"code":"400-203","message":"x"}}',
            "call-state",
        ),
        (
            "positive_data_acceptance",
            400,
            '{"error":{"code":"400-201","message":"agentId: must not be empty"}}',
            "string-lengths",
        ),
        ("positive_data_acceptance", 500, '{"error":{"code":"500-01","message":"x"}}', None),
        ("response_schema_conformance", 200, "{}", None),
        ("positive_data_acceptance", 400, '{"error":{"code":"400-201","message":"odd"}}', None),
    ],
)
def test_reason_explains_only_what_the_contract_lists(
    check: str, status: int, body: str, expected: str | None
) -> None:
    assert reason(check, status, body) == expected


def _judge(output: str, failures: list[Any], allowed: set[str], minimum: int) -> Counter[str]:
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None and int(generated.group(1)) >= minimum, output[-2000:]
    unexplained = [f for f in failures if reason(f[0], f[2], f[3]) not in allowed]
    assert not unexplained, "\n".join(map(str, unexplained[:10])) + "\n" + output[-3000:]
    return Counter(str(reason(f[0], f[2], f[3])) for f in failures)


def test_schemathesis_against_the_projects_contract(server: str, tmp_path: Path) -> None:
    output, failures = run_schemathesis(SPEC_PATH, server, tmp_path, max_examples=100)
    # Only what the rules table says a schema cannot: a well-formed request can still name
    # a call that does not exist, or break a rule between fields.
    allowed = {"guid-form", "combinations", "call-state", "script-rules", "ended-calls-kept"}
    _judge(output, failures, allowed, minimum=1000)


def test_schemathesis_against_the_vendors_file(server: str, tmp_path: Path) -> None:
    path = vendor_openapi()
    if not path.exists():
        pytest.skip(f"the vendor's OpenAPI file is not at {path} (set MGSIM_SHARED_DIR)")
    output, failures = run_schemathesis(path, server, tmp_path, max_examples=100)
    seen = _judge(output, failures, deviations(), minimum=300)
    # The vendor's looser schemas do produce requests mgsim refuses on purpose.
    assert seen, output[-2000:]
