"""The load benchmarks' command lines: ``--help`` and bad arguments answer at once.

``benchmarks/audiohook_sessions.py`` read its arguments by hand, so ``--help`` started a
real 500-session load for a minute.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

SESSIONS = Path(__file__).resolve().parent.parent / "benchmarks" / "audiohook_sessions.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SESSIONS), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_help_describes_the_arguments_and_starts_nothing() -> None:
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    for word in ("sessions", "seconds", "--ramp", "--cycle", "--pause", "--procs", "--pin"):
        assert word in done.stdout
    assert "meets_targets" not in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0"], "argument sessions: must be at least 1, not 0"),
        (["5", "-1"], "argument seconds: must be a positive number of seconds, not -1"),
        (["5", "nan"], "must be a positive number of seconds, not nan"),
        (["5", "5", "--pause", "20"], "--pause 20.0 must be shorter than --cycle 10.0"),
        (["5", "5", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_argument_is_refused_with_its_reason(args: list[str], message: str) -> None:
    done = _run(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""
