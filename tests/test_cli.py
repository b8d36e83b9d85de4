"""The mgsim command."""

from __future__ import annotations

import argparse
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
    assert main([*argv, "--naive-stop"]) == 1  # CI can gate on it
    out = capsys.readouterr().out
    assert "verdict: LEAK (exit 1): card number, expiry date, CVV visible" in out
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "MASKED" in out and "fail closed" in out and "verdict: safe (exit 0)" in out


def test_flaky_naive_stops_name_each_span_and_never_say_card_data(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The run the issue quotes: CVV digits reached the transcript, masked; the card number
    # and expiry never did. Each span has its own verdict, by name.
    argv = ["call", "--namespace", "twilio", "--audio", "card_payment", "--fail-rate", "0.7"]
    assert main([*argv, "--naive-stop", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "card data" not in out
    spans = out.split("sensitive spans (3):\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in spans] == ["card", "expiry", "CVV"]
    assert "never transcribed" in spans[0] and "never transcribed" in spans[1]
    assert "transcribed (3 of 3 words) and redacted in text" in spans[2]


def test_ssn_and_phone_spans_are_named_for_what_they_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["call", "--namespace", "siprec", "--audio", "account_verification", "--json"]
    assert main([*argv, "--plan", "whole", "--redaction-output", "unredacted"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["verdict"]) for s in out["spans"]] == [
        ("SSN", "visible"),
        ("phone number", "visible"),
    ]
    assert out["verdict"] == "leak" and out["exit_code"] == 1
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert {s["verdict"] for s in out["spans"]} == {"never_transcribed"}
    assert out["verdict"] == "safe" and out["exit_code"] == 0


def test_masks_that_give_digits_away_are_a_leak(capsys: pytest.CaptureFixture[str]) -> None:
    # The expiry "oh nine twenty eight" becomes "## #### ###### #####": "##" can only be "oh".
    argv = ["call", "--namespace", "twilio", "--audio", "card_payment", "--plan", "whole"]
    assert main([*argv, "--json"]) == 1
    spans = {s["label"]: s for s in json.loads(capsys.readouterr().out)["spans"]}
    assert spans["expiry"]["verdict"] == "visible" and spans["expiry"]["words_visible"] == 0
    assert spans["expiry"]["words_inferable"] == 1 and spans["expiry"]["inferable_in"] == ["text"]
    assert spans["card_number"]["verdict"] == spans["cvv"]["verdict"] == "redacted"
    assert main(argv) == 1
    assert "expiry date    customer" in capsys.readouterr().out


def test_plan_header_says_what_each_plan_does(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["call", "--namespace", "twilio", "--audio", "card_payment", "--plan"]
    headers = {}
    for plan in ("whole", "connect", "guard"):
        main([*base, plan])
        headers[plan] = capsys.readouterr().out.splitlines()[1]
    assert "ms before" not in headers["whole"] and "no stop for sensitive spans" in headers["whole"]
    assert "ms before" not in headers["connect"] and "IVR, hold" in headers["connect"]
    assert "stop 1500 ms before and start 1000 ms after" in headers["guard"]


def test_times_are_when_actions_took_effect(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["call", "--namespace", "amazonconnect", "--audio", "card_payment", "--plan", "connect"]
    main([*argv, "--json"])
    out = json.loads(capsys.readouterr().out)
    start = out["actions"][0]
    assert start["at_ms"] == 400.0 and start["sent_ms"] == start["effective_ms"] == 1020.0
    first_lost = out["lost"][0]
    assert first_lost["role"] == "agent" and first_lost["words"] == ["Thank", "you", "for"]
    assert "took effect at 1.02 s" in first_lost["reason"]
    main(argv)
    text = capsys.readouterr().out
    assert "    0.40 s    1.02 s     1.02 s  start" in text
    assert '"Thank you for": before streaming began' in text


def test_failed_closed_mask_is_shown_on_both_channels(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["call", "--namespace", "twilio", "--audio", "card_payment", "--fail-rate", "0.7"]
    assert main([*argv, "--seed", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["masked"] and all(m["roles"] == ["customer", "agent"] for m in out["masked"])
    clipped = [x for x in out["lost"] if x["clipped"]]
    assert {x["role"] for x in clipped} == {"customer", "agent"}
    # Sensitive words are counted, never quoted.
    assert all(x["words"] == [] for x in clipped if x["role"] == "customer")
    main([*argv, "--seed", "7"])
    text = capsys.readouterr().out
    assert "audio masked at the source, customer and agent alike" in text
    assert 'agent    [masked] "And the three": masked at the source' in text


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
            assert r["pci_words_transcribed"] == 0 and r["verdict"] == "never transcribed"
        else:
            assert r["pci_words_transcribed"] == r["pci_words"]
            assert r["pci_words_visible"] == (
                r["pci_words"] if r["redaction_output"] == "unredacted" else 0
            )
            # Redacted, the expiry's "oh" is still read off its mask.
            assert r["verdict"] == (
                "LEAK (3)" if r["redaction_output"] == "unredacted" else "LEAK (1)"
            )


def test_unknown_audio_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "--namespace", "twilio", "--audio", "nope"]) == 2
    assert "no audio file or sample call named 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--fail-rate", "2", "argument --fail-rate: wants a probability between 0 and 1, got 2"),
        ("--loss", "-0.1", "argument --loss: wants a probability between 0 and 1, got -0.1"),
        ("--latency-ms", "-5", "argument --latency-ms: wants a number of milliseconds >= 0"),
        ("--margin-ms", "soon", "argument --margin-ms: wants a number, got 'soon'"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_flag(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["call", "--namespace", "twilio", "--audio", "card_payment", flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "rate_503" not in err and "Traceback" not in err


def test_serve_fail_rate_is_checked_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--fail-rate", "2"])
    assert info.value.code == 2
    assert "--fail-rate: wants a probability" in capsys.readouterr().err


def test_every_call_flag_has_help_and_the_exit_codes_are_documented(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mgsim.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, f"mgsim {name} {action.option_strings} has no help"
    with pytest.raises(SystemExit):
        main(["call", "--help"])
    out = capsys.readouterr().out
    assert "0 safe" in out and "1 leak" in out and "2 usage error" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from mgsim import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"mgsim {__version__}"


def test_a_run_that_cannot_complete_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mgsim.errors import TransportError
    from mgsim.sim import scenario

    def broken(_: object) -> None:
        raise TransportError("the server never opened call CA1")

    monkeypatch.setattr(scenario, "run_scenario", broken)
    assert main(["call", "--namespace", "twilio", "--audio", "card_payment"]) == 3
    err = capsys.readouterr().err
    assert "could not be completed: the server never opened call CA1" in err


@pytest.mark.socket
@pytest.mark.parametrize(
    ("namespace", "media"),
    [
        ("siprec", r"SIP over UDP to 127\.0\.0\.1:\d+, RTP over UDP to ports \d+, \d+ "),
        (
            "twilio",
            r"over WebSocket ws://127\.0\.0\.1:\d+/mg-twilio-autotranscribe/twilio-media/\*\*\*$",
        ),
    ],
)
def test_socket_mode_says_which_transport_and_ports_it_used(
    namespace: str, media: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    argv = ["call", "--namespace", namespace, "--audio", "card_payment", "--transport", "socket"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    control = next(line for line in lines if line.startswith("over sockets:"))
    assert re.fullmatch(r"over sockets: control over HTTP http://127\.0\.0\.1:\d+", control)
    media_line = lines[lines.index(control) + 1]
    assert re.search(media, media_line), media_line


def test_realtime_progress_reports_while_the_call_plays() -> None:
    import io
    import time

    from mgsim.report import realtime_progress

    out = io.StringIO()
    with realtime_progress(3000, stream=out, every_s=0.2):
        time.sleep(0.7)
    lines = out.getvalue().splitlines()
    assert lines[0] == "mgsim: playing the call in real time (3.0 s)"
    assert any(line.startswith("mgsim: playing in real time:") for line in lines[1:-1])
    assert lines[-1].startswith("mgsim: call played in ")


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


def test_the_demos_try_line_works_as_printed_without_mgsim_on_path() -> None:
    import shlex
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    mgsim = Path(sys.executable).with_name("mgsim")
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    demo = subprocess.run(
        [str(mgsim.relative_to(root)) if mgsim.is_relative_to(root) else str(mgsim), "demo"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    line = next(x for x in demo.stdout.splitlines() if x.startswith("Try: "))
    argv = shlex.split(line.removeprefix("Try: "))
    assert argv[0] != "mgsim"  # not on this PATH: the printed command names the path
    tried = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert tried.returncode == 0, tried.stderr
    assert "verdict: safe (exit 0)" in tried.stdout


def test_the_try_line_says_mgsim_when_the_shell_finds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from mgsim.cli import self_command

    mgsim = Path(sys.executable).with_name("mgsim")
    monkeypatch.setattr(sys, "argv", [str(mgsim), "demo"])
    monkeypatch.setenv("PATH", f"{mgsim.parent}{os.pathsep}/usr/bin")
    assert self_command() == "mgsim"
    monkeypatch.setenv("PATH", "/usr/bin")
    assert self_command().endswith("bin/mgsim") and Path(self_command()).exists()
