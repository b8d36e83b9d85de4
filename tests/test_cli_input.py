"""``mgsim synth`` and ``mgsim annotate`` / ``mgsim call`` input errors: one line each."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
from conftest import needs_program

from mgsim import cli
from mgsim.sim.call import Call

needs_espeak = needs_program("espeak-ng", "espeak-ng")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


@needs_espeak
def test_synth_writes_a_call_that_plays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "pay.txt"
    # A byte-order mark, as some editors write, is not part of the first line.
    script.write_bytes(
        b"\xef\xbb\xbf# title: Pay\nagent: Your code?\ncustomer: It is {cvv: four one seven}.\n"
    )
    code, out, _ = run(["synth", str(script), "-o", str(tmp_path / "out" / "pay.wav")], capsys)
    assert code == 0
    assert "pay.wav and" in out and "sensitive spans: cvv" in out
    call = Call.load(tmp_path / "out" / "pay.wav")
    assert call.scripted and call.title == "Pay"
    assert [s.label for s in call.sensitive] == ["cvv"]
    code, out, _ = run(
        ["call", "--namespace", "siprec", "--audio", str(tmp_path / "out" / "pay.wav")], capsys
    )
    assert code == 0 and "PCI guard: before cvv" in out


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["synth", "{d}/none.txt"], "none.txt: no such script"),
        ("bad", ["synth", "{d}/s.txt"], "s.txt:1: unknown speaker 'nobody'"),
        ("latin", ["synth", "{d}/s.txt"], "s.txt: not UTF-8 text"),
        ("ok", ["synth", "{d}/s.txt", "-o", "{d}/s.mp3"], "s.mp3: the call is written as .wav"),
        (None, ["synth", "{d}"], "a directory, not a script"),
        (None, ["annotate"], "give a RECORDING, or both --customer"),
        (None, ["annotate", "--customer", "{d}/a.wav"], "give a RECORDING, or both"),
        ("junk", ["annotate", "{d}/j.wav"], "j.wav: not a readable audio file"),
        (None, ["annotate", "{d}/missing.flac"], "missing.flac: no such file"),
        (
            "junk",
            ["call", "--namespace", "twilio", "--audio", "{d}/j.wav"],
            "j.wav: not a readable",
        ),
        (None, ["call", "--namespace", "twilio"], "give --audio FILE|SAMPLE, or --customer"),
        (
            "mono",
            ["call", "--namespace", "twilio", "--customer", "{d}/m.wav"],
            "agent leg is missing",
        ),
        (None, ["call", "--namespace", "twilio", "--audio", "nosuch"], "no audio file or sample"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setup: str | None,
    args: list[str],
    message: str,
) -> None:
    if setup == "bad":
        (tmp_path / "s.txt").write_text("nobody: hello\n")
    elif setup == "latin":
        (tmp_path / "s.txt").write_bytes("agent: caf\xe9\n".encode("latin-1"))
    elif setup == "ok":
        (tmp_path / "s.txt").write_text("agent: hello\n")
    elif setup == "junk":
        (tmp_path / "j.wav").write_bytes(b"RIFF\x00\x00junk" * 10)
    elif setup == "mono":
        sf.write(str(tmp_path / "m.wav"), [0.0] * 800, 8000)
    code, out, err = run([a.format(d=tmp_path) for a in args], capsys)
    assert code == 2, err
    assert out == ""
    assert err.startswith("mgsim: ") and err.count("\n") == 1, err
    assert message in err


def test_bad_input_stays_one_line_with_mgsim_base_url_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note that ``mgsim call`` plays to the embedded simulator although MGSIM_BASE_URL
    is set comes after the input is read: a refused input is still its one line."""
    monkeypatch.setenv("MGSIM_BASE_URL", "http://127.0.0.1:9")
    code, out, err = run(["call", "--namespace", "twilio", "--audio", "nosuch"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("mgsim: ") and err.count("\n") == 1, err
    assert "no audio file or sample" in err
