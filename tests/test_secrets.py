"""No credential ever shows up in what mgsim writes, logs, raises or displays."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from conftest import GUIDS

from mgsim.client import Client, RetryPolicy
from mgsim.errors import MgsimError
from mgsim.journal import Journal
from mgsim.server.config import Faults, SimulatorConfig
from mgsim.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
API_ID = "id-7f3a9c2e51"
API_SECRET = "sk-41d8cd98f00b204e9800998ecf8427e"
SECRETS = (API_ID, API_SECRET)


def exercise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> tuple[str, Journal]:
    """Drive successes, every kind of error and retries; return everything that was shown."""
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    config = SimulatorConfig(
        api_id=API_ID, api_secret=API_SECRET, seed=2, faults=Faults(rate_503=0.3)
    )
    journal = Journal(tmp_path / "journal.jsonl")
    with Simulator(config, virtual=True) as sim, Client(simulator=sim, journal=journal) as client:
        shown += [repr(sim.config), repr(client.journal.secrets and "masked"), str(config)]
        g = GUIDS["twilio"]
        client.open_call("twilio", g)
        for _ in range(6):
            for action in (
                lambda: client.start_streaming("twilio", g, API_SECRET, API_ID),
                lambda: client.stop_streaming("twilio", g),
                lambda: client.twilio_media_stream_url(),
                lambda: client.conversation_messages(g),
            ):
                try:
                    shown.append(repr(action()))
                except MgsimError as exc:
                    shown += [str(exc), repr(exc)]
        shown.append(repr(client.stop_streaming_confirmed("twilio", g)))
        # wrong credentials: 403 must not echo what was sent
        with Client(
            simulator=sim,
            api_id=API_ID,
            api_secret=API_SECRET + "x",
            retry=RetryPolicy.off(),
            journal=journal,
        ) as wrong:
            try:
                wrong.stop_streaming("twilio", g)
            except MgsimError as exc:
                shown += [str(exc), repr(exc)]

    # no answer at all
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused {request.headers['asapp-api-secret']}")

    with Client(
        "https://gw.example",
        api_id=API_ID,
        api_secret=API_SECRET,
        journal=journal,
        transport=httpx.MockTransport(refuse),
        retry=RetryPolicy.off(),
    ) as down:
        try:
            down.stop_streaming("twilio", GUIDS["twilio"])
        except MgsimError as exc:
            shown += [str(exc), repr(exc)]
    journal.close()
    frame = journal.to_dataframe()
    shown += [frame.to_string(), frame.to_json(), (tmp_path / "journal.jsonl").read_text()]
    shown += [r.getMessage() for r in caplog.records]
    return "\n".join(shown), journal


def test_no_secret_in_journal_dataframe_logs_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text, journal = exercise(tmp_path, caplog)
    for secret in SECRETS:
        assert secret not in text
    # the exercise really went through errors and retries
    statuses = {e.status for e in journal.entries}
    assert {200, 403, 503, None} <= statuses
    assert any(e.attempt > 1 for e in journal.entries)


def test_committed_notebooks_carry_no_credentials() -> None:
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not notebooks:
        pytest.skip("no committed notebooks to scan")
    forbidden = ['asapp-api-secret": "', "ASAPP_API_SECRET="]
    for nb in notebooks:
        data = json.loads(nb.read_text())
        for cell in data.get("cells", []):
            for output in cell.get("outputs", []):
                blob = json.dumps(output)
                for secret in SECRETS:
                    assert secret not in blob, nb.name
                for pattern in forbidden:
                    assert pattern not in blob, (nb.name, pattern)
