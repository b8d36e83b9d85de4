"""The journal survives the process being killed mid-run: every exchange that completed is on
disk, the file reads back, and nothing in it is a secret."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mgsim.journal import Journal

SCRIPT = textwrap.dedent(
    """
    import sys
    from mgsim import Client, Simulator, SimulatorConfig
    from mgsim.journal import Journal

    config = SimulatorConfig(api_id="crash-id", api_secret="crash-secret-77", seed=1,
                             spike_arrest_per_s=None, daily_quota=None)
    journal = Journal(sys.argv[1])
    client = Client(simulator=Simulator(config, virtual=True), journal=journal)
    client.open_call("siprec", "1-1")
    i = 0
    while True:  # until killed
        client.start_streaming("siprec", "1-1", "c", "a")
        client.stop_streaming("siprec", "1-1")
        i += 1
        if i == 50:
            print("ready", flush=True)
    """
)


def test_journal_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"  # 100+ exchanges done
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    rows = Journal.read_jsonl(path)
    assert len(rows) >= 101
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))  # nothing lost in between
    assert {r["status"] for r in rows} <= {200, 201}
    text = path.read_text()
    assert "crash-secret-77" not in text and "crash-id" not in text
