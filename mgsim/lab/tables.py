"""Tidy pandas tables of what a scenario or a client did.

Every function takes the object a notebook already holds (a
:class:`~mgsim.sim.scenario.ScenarioResult`, a :class:`~mgsim.journal.Journal`, a
:class:`~mgsim.client.Client`) and returns a :class:`pandas.DataFrame` with one observation
per row and fixed columns, so a table's shape never depends on its content. Times are
milliseconds on the call's timeline (0 = the first sample of the call) unless a column
says otherwise.

>>> from mgsim.sim.call import load_sample
>>> from mgsim.sim.plans import Plan
>>> from mgsim.sim.scenario import Scenario, run_scenario
>>> result = run_scenario(Scenario(load_sample("card_payment"), "twilio", Plan("guard")))
>>> leaks_table(result)[["words", "words_transcribed", "verdict"]]  # doctest: +NORMALIZE_WHITESPACE
             words  words_transcribed            verdict
span
card_number     16                  0  never transcribed
expiry           4                  0  never transcribed
cvv              3                  0  never transcribed
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from mgsim.gateway.calls import CallState
from mgsim.journal import Journal
from mgsim.sim.call import Call
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import (
    NAMESPACES,
    ActionRecord,
    Namespace,
    Scenario,
    ScenarioResult,
    run_scenario,
)
from mgsim.speech.leaks import VERDICT_TEXT, LeakReport

__all__ = [
    "ACTION_COLUMNS",
    "JOURNAL_COLUMNS",
    "LEAK_COLUMNS",
    "SEGMENT_COLUMNS",
    "SUMMARY_COLUMNS",
    "UTTERANCE_COLUMNS",
    "WINDOW_COLUMNS",
    "actions_table",
    "compare_namespaces",
    "journal_table",
    "leaks_table",
    "mask_runs",
    "masked_window",
    "readable",
    "run_namespaces",
    "segments_table",
    "sensitive_word_indexes",
    "summary_table",
    "utterances_table",
    "verdict",
    "windows_table",
]

SAMPLES_PER_MS = 8

JOURNAL_COLUMNS = (
    "seq", "t_ms", "method", "endpoint", "namespace", "guid", "status", "code", "attempt",
    "wait_ms", "latency_ms", "request_id", "error",
)  # fmt: skip
"""Columns of :func:`journal_table`."""

SEGMENT_COLUMNS = (
    "segment", "role", "stream_id", "start_ms", "stop_ms", "streaming_ms", "audio_ms",
    "transcripts", "status",
)  # fmt: skip
"""Columns of :func:`segments_table`."""

WINDOW_COLUMNS = ("role", "start_ms", "end_ms", "duration_ms")
"""Columns of :func:`windows_table`."""

UTTERANCE_COLUMNS = (
    "role", "start_ms", "end_ms", "words", "sensitive_words", "text", "redacted_text",
)  # fmt: skip
"""Columns of :func:`utterances_table`."""

LEAK_COLUMNS = (
    "name", "role", "start_ms", "end_ms", "words", "audio_ms", "streamed_ms",
    "words_transcribed", "transcribed_ms", "words_visible", "visible_text",
    "visible_unredactedText", "visible_tokens", "words_inferable", "leaked", "verdict",
)  # fmt: skip
"""Columns of :func:`leaks_table`."""

SUMMARY_COLUMNS = (
    "call", "namespace", "plan", "margin_before_ms", "margin_after_ms", "latency_ms",
    "redaction_output", "confirm_stop", "fail_closed", "utterances", "requests", "pci_words",
    "pci_ms_streamed", "pci_words_transcribed", "pci_words_visible", "spans_leaked",
    "leaked_labels", "verdict",
)  # fmt: skip
"""Columns of :func:`summary_table` (one row per run)."""

ACTION_COLUMNS = (
    "at_ms", "action", "reason", "done_ms", "lag_ms", "confirmed", "masked_from_ms",
    "masked_until_ms", "detail",
)  # fmt: skip
"""Columns of :func:`actions_table`."""


def _frame(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(columns))


def _journal_of(source: Journal | Any) -> Journal:
    journal = source if isinstance(source, Journal) else getattr(source, "journal", None)
    if not isinstance(journal, Journal):
        raise TypeError(f"expected a Journal or something with a .journal, got {type(source)}")
    return journal


def journal_table(source: Journal | Any) -> pd.DataFrame:
    """One row per HTTP attempt, from a journal (or a client or result holding one).

    ``t_ms`` is when the attempt was sent, relative to the first one; ``wait_ms`` is how long
    the client waited after a failed answer (429, 5xx or none) to the same request before
    sending it again (empty otherwise), which makes ASAPP's back-off schedule visible: 1000,
    2000, 4000 after a 429; 250, 500, 1000 after a 5xx. ``endpoint`` is the last path
    segment that is not the call's guid (``DELETE /_sim/v1/calls/{guid}``, a hang-up, is
    ``DELETE calls``).
    """
    entries = list(_journal_of(source).entries)
    rows: list[dict[str, Any]] = []
    first: datetime | None = None
    previous: tuple[tuple[str, str | None], float, bool] | None = None
    for entry in entries:
        sent = datetime.fromisoformat(entry.wall)
        first = first or sent
        t_ms = round((sent - first).total_seconds() * 1000.0, 3)
        # A retry is the same request right after a failed answer: the client's own retries
        # (attempt > 1) and the confirmed stop's repeated single attempts alike.
        key = (entry.endpoint, entry.guid)
        wait = None
        if previous is not None and previous[0] == key and previous[2]:
            wait = round(t_ms - previous[1], 3)
        failed = entry.status is None or entry.status == 429 or entry.status >= 500
        previous = (key, t_ms + entry.latency_ms, failed)
        rows.append(
            {
                "seq": entry.seq,
                "t_ms": t_ms,
                "method": entry.method,
                "endpoint": _endpoint_name(entry.endpoint, entry.guid),
                "namespace": entry.namespace,
                "guid": entry.guid,
                "status": entry.status,
                "code": entry.code,
                "attempt": entry.attempt,
                "wait_ms": wait,
                "latency_ms": entry.latency_ms,
                "request_id": entry.request_id,
                "error": entry.error,
            }
        )
    frame = _frame(rows, JOURNAL_COLUMNS)
    return frame.astype({"status": "Int64", "wait_ms": "Float64"})


def _endpoint_name(path: str, guid: str | None) -> str:
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    # /_sim/v1/calls/{guid}: the resource is "calls", whichever guid it names.
    if len(parts) >= 2 and (parts[-1] == guid or parts[-2] == "calls"):
        parts = parts[:-1]
    return parts[-1] if parts else path


def readable(frame: pd.DataFrame, index: str | Sequence[str] | None = None) -> pd.DataFrame:
    """``frame`` for reading: missing values (``NaN``, ``<NA>``, ``None``) shown as blanks,
    and with ``index`` (a column or several) naming the rows instead of numbering them.

    The tables keep their types (nullable numbers, so ``query("wait_ms > 0")`` works); this
    copy is for display only.

    >>> frame = pd.DataFrame({"seq": [1, 2], "code": [None, "409-201"], "wait_ms": [pd.NA, 250.0]})
    >>> readable(frame, index="seq")  # doctest: +NORMALIZE_WHITESPACE
            code wait_ms
    seq
    1
    2    409-201   250.0
    """
    out = frame.copy()
    if index is not None:
        out = out.set_index(index if isinstance(index, str) else list(index))
    for column in out.columns:
        missing = out[column].isna()
        if missing.any():
            out[column] = out[column].astype(object).where(~missing, "")
    return out


def segments_table(
    source: ScenarioResult | CallState | None, *, origin_s: float | None = None
) -> pd.DataFrame:
    """One row per streaming segment (start…stop) and participant, as the gateway kept it.

    ``audio_ms`` is the audio the gateway took in while the segment was open (the stop
    summary's ``audioDurationMs``); ``stop_ms`` is empty while a segment is open. Times
    count from ``origin_s`` on the simulator's clock: for a scenario result, the start of
    the call; for a bare call state, by default the moment its media session opened.
    """
    if isinstance(source, ScenarioResult):
        call, origin = source.call, 0.0 if origin_s is None else origin_s
    else:
        call = source
        origin = origin_s if origin_s is not None else (call.opened_at if call else 0.0)
    rows: list[dict[str, Any]] = []
    for seg in call.segments if call is not None else ():
        start = round((seg.started_at - origin) * 1000.0, 3)
        stop = None if seg.stopped_at is None else round((seg.stopped_at - origin) * 1000.0, 3)
        for role in ("customer", "agent"):
            rows.append(
                {
                    "segment": seg.index,
                    "role": role,
                    "stream_id": seg.stream_ids.get(role),
                    "start_ms": start,
                    "stop_ms": stop,
                    "streaming_ms": None if stop is None else round(stop - start, 3),
                    "audio_ms": seg.samples.get(role, 0) // SAMPLES_PER_MS,
                    "transcripts": seg.transcripts.get(role, 0),
                    "status": seg.status[0],
                }
            )
    return _frame(rows, SEGMENT_COLUMNS).astype({"stop_ms": "Float64", "streaming_ms": "Float64"})


def mask_runs(mask: npt.NDArray[np.bool_]) -> list[tuple[float, float]]:
    """The ``(start_ms, end_ms)`` runs where a per-sample (8 kHz) mask is True.

    >>> mask_runs(np.array([False] * 8 + [True] * 16 + [False] * 8))
    [(1.0, 3.0)]
    """
    if mask.size == 0:
        return []
    padded = np.concatenate(([False], mask.astype(bool), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [
        (float(a) / SAMPLES_PER_MS, float(b) / SAMPLES_PER_MS)
        for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]


def windows_table(result: ScenarioResult) -> pd.DataFrame:
    """When each participant's audio actually reached the gateway while streaming was on.

    Unlike :func:`segments_table` (when the control plane said start and stop), this is
    measured on the audio: a Kinesis reader started with ``NOW`` begins at the fragment in
    progress, ``FRAGMENT_NUMBER`` even earlier.
    """
    rows = [
        {"role": role, "start_ms": a, "end_ms": b, "duration_ms": b - a}
        for role in ("customer", "agent")
        for a, b in mask_runs(result.streamed[role])
    ]
    return _frame(rows, WINDOW_COLUMNS)


def sensitive_word_indexes(call: Call) -> frozenset[int]:
    """Indexes (into ``call.words``) of every word inside a sensitive span."""
    return frozenset(i for span in call.sensitive for i in span.word_indexes)


def utterances_table(result: ScenarioResult) -> pd.DataFrame:
    """One row per transcribed utterance, in time order.

    ``text`` is what was said, ``redacted_text`` what the redaction policy leaves of it, and
    ``sensitive_words`` how many of its words lie inside a labelled sensitive span (any
    number above zero means card data reached the transcription engine).
    """
    sensitive = sensitive_word_indexes(result.scenario.call)
    rows = []
    for utt, row in zip(result.utterances, result.utterance_rows(), strict=True):
        rows.append(
            {
                **row,
                "words": len(utt.words),
                "sensitive_words": sum(
                    1 for w in utt.words if sensitive.intersection(w.script_indexes)
                ),
            }
        )
    rows.sort(key=lambda r: (r["start_ms"], r["role"]))
    return _frame(rows, UTTERANCE_COLUMNS)


def leaks_table(source: ScenarioResult | LeakReport) -> pd.DataFrame:
    """One row per sensitive span: how much of it was streamed, transcribed and shown.

    Rows are named by the span's label (``card_number``, ``cvv``...). ``words_visible``
    counts words some delivered field (``text``, ``unredactedText`` or ``tokens``) still
    shows after redaction, ``words_inferable`` masked words whose mask gives their digits
    away; ``verdict`` is the span's (``never transcribed``, ``transcribed but redacted``,
    ``VISIBLE``) and ``leaked`` is True for ``VISIBLE``.
    """
    report = source.report if isinstance(source, ScenarioResult) else source
    rows = [{**r, "verdict": VERDICT_TEXT[r["verdict"]]} for r in report.records()]
    frame = _frame(rows, LEAK_COLUMNS)
    frame.index = pd.Index([s.label for s in report.spans], name="span")
    return frame


def _summary_row(result: ScenarioResult) -> dict[str, Any]:
    sc, leaks = result.scenario, result.leaks
    latency = sc.control_latency_ms + (sc.faults.latency_ms if sc.faults else 0.0)
    return {
        "call": sc.call.call_id,
        "namespace": sc.namespace,
        "plan": sc.plan.kind,
        "margin_before_ms": sc.plan.margin_before_ms,
        "margin_after_ms": sc.plan.margin_after_ms,
        "latency_ms": latency,
        "redaction_output": sc.redaction_output,
        "confirm_stop": sc.confirm_stop,
        "fail_closed": sc.fail_closed and sc.confirm_stop,
        "utterances": len(result.utterances),
        "requests": len(result.journal),
        "pci_words": leaks["pci_words"],
        "pci_ms_streamed": leaks["pci_ms_streamed"],
        "pci_words_transcribed": leaks["pci_words_transcribed"],
        "pci_words_visible": leaks["pci_words_visible"],
        "spans_leaked": leaks["spans_leaked"],
        "leaked_labels": ", ".join(leaks["leaked_labels"]),
        "verdict": verdict(result),
    }


def verdict(result: ScenarioResult) -> str:
    """The run's verdict as the CLI gives it (decided in :mod:`mgsim.speech.leaks`):
    ``"LEAK"`` when any sensitive span is visible (shown, or inferable from its masks),
    otherwise its worst span's verdict, ``"transcribed but redacted"`` or ``"never
    transcribed"`` (``"no sensitive span"`` for a call without any)."""
    report = result.report
    if report.leaked:
        return "LEAK"
    worst = report.worst
    return "no sensitive span" if worst is None else VERDICT_TEXT[worst]


def summary_table(
    results: ScenarioResult | Iterable[ScenarioResult], *, labels: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per run with its settings and leak totals: the table to compare runs by.
    ``labels`` name the rows (the index, ``run``) instead of numbering them."""
    if isinstance(results, ScenarioResult):
        results = [results]
    frame = _frame((_summary_row(r) for r in results), SUMMARY_COLUMNS)
    if labels is not None:
        if len(labels) != len(frame):
            raise ValueError(f"{len(labels)} labels for {len(frame)} runs")
        frame.index = pd.Index(list(labels), name="run")
    return frame


def run_namespaces(
    call: Call,
    plan: Plan | None = None,
    *,
    namespaces: Sequence[str] = NAMESPACES,
    **scenario: Any,
) -> list[ScenarioResult]:
    """Play ``call`` through each namespace with the same plan and settings.

    ``scenario`` takes any other :class:`~mgsim.sim.scenario.Scenario` field
    (``control_latency_ms``, ``redaction_output``, ``seed``...).
    """
    plan = plan or Plan()
    return [
        run_scenario(Scenario(call, cast(Namespace, ns), plan, **scenario)) for ns in namespaces
    ]


def compare_namespaces(
    call: Call,
    plan: Plan | None = None,
    *,
    namespaces: Sequence[str] = NAMESPACES,
    **scenario: Any,
) -> pd.DataFrame:
    """:func:`summary_table` of :func:`run_namespaces`: one row per namespace."""
    return summary_table(run_namespaces(call, plan, namespaces=namespaces, **scenario))


def masked_window(result: ScenarioResult, action: ActionRecord) -> tuple[float, float]:
    """Where ``action`` (a stop that failed closed) had the audio masked at the source: from
    the guard's deadline (the planned stop plus the stop budget) to the plan's restart;
    ``(0.0, 0.0)`` for an action that masked nothing."""
    if action.masked_until_ms is None:
        return (0.0, 0.0)
    sc = result.scenario
    within = sc.stop_within_ms if sc.stop_within_ms is not None else sc.plan.margin_before_ms
    return (float(action.at_ms + within), float(action.masked_until_ms))


def actions_table(result: ScenarioResult) -> pd.DataFrame:
    """The plan's start/stop actions as they happened: ``lag_ms`` is how long after its
    planned time each took effect (latency, retries), ``confirmed`` whether the gateway
    confirmed it."""
    rows = [
        {
            "at_ms": a.at_ms,
            "action": a.action,
            "reason": a.reason,
            "done_ms": a.done_ms,
            "lag_ms": round(a.done_ms - a.at_ms, 3),
            "confirmed": a.confirmed,
            # Set when a stop failed closed and the audio was masked at the source.
            "masked_from_ms": masked_window(result, a)[0] if a.masked_until_ms else None,
            "masked_until_ms": a.masked_until_ms,
            "detail": a.detail,
        }
        for a in result.actions
    ]
    return _frame(rows, ACTION_COLUMNS).astype(
        {"masked_from_ms": "Float64", "masked_until_ms": "Float64"}
    )
