"""The mgsim command."""

from __future__ import annotations

import json
import os
import sys

import pytest

from mgsim.cli import main


def test_call_json_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "--namespace", "twilio", "--audio", "card_payment", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"namespace", "guid", "utterances", "leaks", "requests"} <= set(out)
    assert out["namespace"] == "twilio" and out["guid"].startswith("CA")
    assert {"role", "start_ms", "end_ms", "text", "redacted_text"} <= set(out["utterances"][0])
    assert out["leaks"]["pci_words_transcribed"] == 0 and out["leaks"]["pci_ms_transcribed"] == 0
    assert {"endpoint", "status", "code"} <= set(out["requests"][0])


def test_call_with_latency_and_no_margin_reports_a_leak(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "call",
        "--namespace",
        "siprec",
        "--audio",
        "card_payment",
        "--margin-ms",
        "0",
        "--margin-after-ms",
        "0",
        "--latency-ms",
        "400",
    ]
    assert main([*argv, "--naive-stop"]) == 0
    assert "LEAK" in capsys.readouterr().out
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "MASKED" in out and "fail closed" in out and "no card data visible" in out


def test_demo_compares_the_four_platforms(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert {r["namespace"] for r in runs} == {
        "siprec",
        "twilio",
        "genesysaudiohook",
        "amazonconnect",
    }
    for r in runs:
        if r["plan"] == "guard":
            assert r["pci_words_transcribed"] == 0
        else:
            assert r["pci_words_transcribed"] == r["pci_words"]
            assert r["pci_words_visible"] == (
                r["pci_words"] if r["redaction_output"] == "unredacted" else 0
            )


def test_unknown_audio_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "--namespace", "twilio", "--audio", "nope"]) == 2
    assert "no audio file or sample call named 'nope'" in capsys.readouterr().err


@pytest.mark.socket
@pytest.mark.parametrize("namespace", ["siprec", "amazonconnect"])
def test_call_over_sockets_prints_the_same_json_shape(
    namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["call", "--namespace", namespace, "--audio", "card_payment", "--json"]
    assert main(argv) == 0
    inprocess = json.loads(capsys.readouterr().out)
    assert main([*argv, "--transport", "socket"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == set(inprocess)
    assert out["namespace"] == namespace and out["guid"] == inprocess["guid"]
    assert set(out["utterances"][0]) == {"role", "start_ms", "end_ms", "text", "redacted_text"}
    assert len(out["utterances"]) == len(inprocess["utterances"])
    assert set(out["leaks"]) == set(inprocess["leaks"])
    assert out["leaks"]["pci_words_transcribed"] == 0 and out["leaks"]["pci_ms_transcribed"] == 0
    assert {"endpoint", "status", "code"} <= set(out["requests"][0])
    assert [r["endpoint"] for r in out["requests"]] == [
        r["endpoint"] for r in inprocess["requests"]
    ]


def test_call_over_sockets_wants_real_time_for_latency(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["call", "--namespace", "twilio", "--audio", "card_payment", "--transport", "socket"]
    assert main([*argv, "--latency-ms", "400"]) == 2
    assert "need real time" in capsys.readouterr().err


def test_call_with_media_impairment_reports_what_was_done(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["call", "--namespace", "siprec", "--audio", "card_payment", "--loss", "0.05"]
    assert main([*argv, "--jitter-ms", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    impairment, accounting = out["impairment"], out["accounting"]
    assert impairment["lost"] > 0 and impairment["delayed"] > 0
    # What the impairment removed is exactly what the gateway counts as lost.
    assert accounting["lost"] == impairment["lost"]
    assert accounting["received"] == impairment["sent"] - impairment["lost"]
    assert out["leaks"]["pci_words_transcribed"] == 0


def test_call_refuses_an_impairment_the_transport_cannot_have(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["call", "--namespace", "genesysaudiohook", "--audio", "card_payment"]
    assert main([*argv, "--loss", "0.1"]) == 2
    assert "genesysaudiohook cannot have loss" in capsys.readouterr().err


def test_a_closed_pipe_ends_the_command_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    """``mgsim call ... | head -1``: the reader goes away and the command stops without a
    traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    gone = os.fdopen(write_end, "w", buffering=1)  # every line is written at once: EPIPE
    monkeypatch.setattr(sys, "stdout", gone)
    try:
        assert main(["call", "--namespace", "twilio", "--audio", "card_payment"]) == 1
    finally:
        gone.close()  # now writes to /dev/null: nothing left to fail
