"""The rule for where requests go, checked with ``MGSIM_BASE_URL`` set (as a shell prepared
for the sandbox or a running ``mgsim serve`` has it), never with it removed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import GUIDS

from mgsim.cli import main
from mgsim.client import Client
from mgsim.errors import ConfigError
from mgsim.sim.call import load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import Scenario, run_scenario
from mgsim.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
# A sandbox URL without credentials, and a loopback port where nothing listens: either
# would fail a request that followed it.
ELSEWHERE = ("https://api.sandbox.asapp.com", "http://127.0.0.1:9")


@pytest.fixture(params=ELSEWHERE)
def elsewhere(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    url: str = request.param
    monkeypatch.setenv("MGSIM_BASE_URL", url)
    monkeypatch.delenv("ASAPP_API_ID", raising=False)
    monkeypatch.delenv("ASAPP_API_SECRET", raising=False)
    return url


def test_an_explicit_simulator_wins_over_the_environment(elsewhere: str) -> None:
    with Simulator(virtual=True, seed=1) as sim, Client(simulator=sim) as client:
        assert client.embedded
        client.open_call("twilio", GUIDS["twilio"])
        assert (
            client.start_streaming("twilio", GUIDS["twilio"], "c", "a").customer.status_code == 1000
        )


def test_both_base_url_and_simulator_says_what_to_do(elsewhere: str) -> None:
    with Simulator(virtual=True) as sim, pytest.raises(ConfigError, match="not both") as err:
        Client("http://127.0.0.1:8080", simulator=sim)
    assert "base_url=" in str(err.value) and "simulator=" in str(err.value)
    assert "MGSIM_BASE_URL" not in str(err.value)  # the user did not set anything wrong


def test_run_scenario_ignores_the_environment(elsewhere: str) -> None:
    call = load_sample("card_payment").truncated(20_000)
    result = run_scenario(Scenario(call, "twilio", Plan("whole")))
    assert result.utterances and result.journal.entries[0].status == 200


def test_mgsim_call_plays_into_the_embedded_simulator_and_says_so(
    elsewhere: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", "--namespace", "siprec", "--audio", "card_payment", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["leaks"]["pci_words"] == 23
    assert "MGSIM_BASE_URL is set" in err and "--target" in err


@pytest.mark.slow
def test_mgsim_demo_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MGSIM_BASE_URL", ELSEWHERE[0])
    assert main(["demo", "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)["runs"]) == 16
    assert "embedded simulator" in err


def test_panels_ignore_the_environment(elsewhere: str) -> None:
    from mgsim.lab import ControlPanel, RunPanel

    panel = ControlPanel(namespace="siprec")
    try:
        panel.click_open()
        frame = panel.click_start()
        assert list(frame["status"]) == [201, 200]  # call opened, streaming started
    finally:
        panel.close()
    run = RunPanel("card_payment", namespace="twilio")
    assert run.run().leaks["pci_words_transcribed"] == 0


@pytest.mark.slow
def test_notebooks_01_to_05_run_with_the_environment_set() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    env = dict(os.environ, MGSIM_BASE_URL=ELSEWHERE[0])
    env.pop("ASAPP_API_ID", None)
    env.pop("ASAPP_API_SECRET", None)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        for path in sorted((ROOT / "notebooks").glob("0[1-5]_*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            nbclient.NotebookClient(
                nb,
                timeout=120,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
            ).execute()
            errors = [
                o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"
            ]
            assert errors == [], f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    finally:
        os.environ.clear()
        os.environ.update(saved)
