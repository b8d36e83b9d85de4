"""``mgsim replay`` and ``mgsim call --record``: the command-line side of captures."""

from __future__ import annotations

import json
from typing import Any

from mgsim.capture.files import load_capture, record
from mgsim.capture.live import SenderRecording
from mgsim.capture.replay import ReplayReport, replay

__all__ = ["print_replay", "record_call", "replay_command"]


def record_call(scenario: Any, path: str, live: SenderRecording | None = None) -> str:
    """What ``mgsim call --record PATH`` writes: the exchange a SIPREC sender really had
    over sockets (``live``), else the wires ``scenario`` played."""
    if live is not None:
        written = live.finish(scenario.guid)
        if written is not None:
            return str(written)
    return str(record(scenario.namespace, scenario.wires(), path))


def replay_command(
    capture_path: str, plan: Any, call: Any, redaction_output: str, as_json: bool
) -> int:
    report = replay(load_capture(capture_path), plan, call=call, redaction_output=redaction_output)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_replay(report)
    return 0


def print_replay(report: ReplayReport) -> None:
    summary = report.to_json()
    acc = summary["accounting"]
    cap = report.capture
    print(
        f"{cap.namespace} call {cap.guid}: {len(cap.wires)} messages in the capture, "
        f"{cap.ignored} other packets or lines ignored"
    )
    dropped = ", ".join(f"{n} {why}" for why, n in acc.get("dropped", {}).items()) or "none"
    print(
        f"received {acc.get('received', 0)}, streamed {acc.get('streamed', 0)}, dropped "
        f"{dropped}, lost {acc.get('lost', 0)}; ended by {acc.get('ended_by')} "
        f"({acc.get('end_reason')})"
    )
    for i, seg in enumerate(summary["streamed_samples"]):
        parts = ", ".join(f"{role} {n / 8000:.2f} s" for role, n in seg.items())
        print(f"  segment {i + 1}: streamed {parts}")
    for row in summary["utterances"]:
        print(f"  {row['start_ms'] / 1000:7.2f} s  {row['role']:8}  {row['text']}")
    if summary["leaks"] is not None:
        leaks = summary["leaks"]
        print(
            f"sensitive words {leaks['pci_words']}: transcribed "
            f"{leaks['pci_words_transcribed']}, visible {leaks['pci_words_visible']}"
        )
    print(f"protocol problems: {len(cap.problems) or 'none'}")
    for problem in cap.problems:
        print(f"  - {problem}")
    for note in report.notes:
        print(f"note: {note}")
