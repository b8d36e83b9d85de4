"""The soak benchmark's short mode, run as a user runs it: its own process, real sockets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.socket, pytest.mark.slow, pytest.mark.timeout(60)]

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SOAK), "8", "6"],
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_calls_cycle_in_every_slot(report: dict[str, Any]) -> None:
    # 8 slots of 6 s with calls of at most 3.3 s: every slot hangs up and starts a new call.
    assert report["calls"]["failed"] == 0
    assert report["calls"]["served"] >= 2 * 8
    assert report["failures"] == []


@pytest.mark.parametrize(
    ("key", "expected"),
    [("lost", 0), ("unbalanced_calls", 0), ("not_received", {})],
)
def test_every_frame_is_received_and_accounted(
    report: dict[str, Any], key: str, expected: object
) -> None:
    media = report["media"]
    assert media["sent"] > 1000
    assert media["received"] == media["sent"]
    assert media[key] == expected


def test_transcripts_and_errors_are_accounted(report: dict[str, Any]) -> None:
    # Every call has a script, so streaming windows produce transcripts to account for.
    assert report["transcripts"]["stop_summaries"] > 0
    assert report["transcripts"]["stop_summaries"] == report["transcripts"]["stored"]
    assert report["unexpected_errors"] == {"total": 0}
    assert report["targets"]["books_balance"] and report["targets"]["no_lost_frames"]


def test_memory_is_sampled_every_second(report: dict[str, Any]) -> None:
    rss = report["rss_mb"]
    assert rss["samples"] >= 5
    assert 0 < rss["min"] <= rss["max"]
