"""The lab: pandas tables, matplotlib plots and ipywidgets panels for notebooks.

Needs the ``lab`` extra (``pip install 'mgsim[lab]'``: matplotlib, ipywidgets).

>>> from mgsim.lab import run_scenario, Scenario, Plan, load_sample, leaks_table, timeline
>>> result = run_scenario(Scenario(load_sample("card_payment"), "twilio", Plan("guard")))
>>> int(leaks_table(result)["words_visible"].sum())
0
>>> fig = timeline(result)   # a matplotlib Figure: display it or fig.savefig(...)
"""

from __future__ import annotations

from mgsim.lab.audio import audio_player, wav_bytes
from mgsim.lab.plots import compare_plot, energy_db, timeline
from mgsim.lab.run_panel import RunPanel
from mgsim.lab.snapshot import panel_snapshot
from mgsim.lab.tables import (
    actions_table,
    compare_namespaces,
    journal_table,
    leaks_table,
    mask_runs,
    masked_window,
    readable,
    run_namespaces,
    segments_table,
    summary_table,
    utterances_table,
    verdict,
    windows_table,
)
from mgsim.lab.widgets import ControlPanel, connect_stream_arn
from mgsim.server.config import Faults
from mgsim.sim.call import Call, list_samples, load_sample
from mgsim.sim.explain import lost_words
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import NAMESPACES, Scenario, ScenarioResult, run_scenario

__all__ = [
    "NAMESPACES",
    "Call",
    "ControlPanel",
    "Faults",
    "Plan",
    "RunPanel",
    "Scenario",
    "ScenarioResult",
    "actions_table",
    "audio_player",
    "compare_namespaces",
    "compare_plot",
    "connect_stream_arn",
    "energy_db",
    "journal_table",
    "leaks_table",
    "list_samples",
    "load_sample",
    "lost_words",
    "mask_runs",
    "masked_window",
    "panel_snapshot",
    "readable",
    "run_namespaces",
    "run_scenario",
    "segments_table",
    "summary_table",
    "timeline",
    "utterances_table",
    "verdict",
    "wav_bytes",
    "windows_table",
]
