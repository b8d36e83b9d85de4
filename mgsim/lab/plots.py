"""Timeline plots of a call: what was said, what was streamed, transcribed and leaked.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through pyplot:
they work under any backend (Agg in CI), are never shown behind the caller's back and are
freed when dropped. Display one by making it a cell's last expression (with ``%matplotlib
inline``) or save it with ``fig.savefig``.

Every artist that carries meaning has a ``gid`` so tests (and curious users) can find it:

==================  ==============================================================
gid                 what
==================  ==============================================================
``sensitive``       a labelled sensitive span (gold), one per span, in its speaker's lane
``streaming``       audio reaching the gateway while streaming was on (green bar)
``utterance``       a transcribed utterance (blue bar); its text is ``utterance-text``
``leak``            a sensitive word shown in delivered output (red)
``transcribed``     a sensitive word transcribed but masked by redaction (orange, hatched)
``inferable``       a masked sensitive word whose mask gives its digit away (red, crossed)
``envelope``        the participant's audio energy (grey)
``masked``          audio masked at the source after a stop failed closed (hatched), drawn
                    on both lanes: the mask silences both participants
``clipped``         words of either participant the mask cut (dashed box, with a count)
==================  ==============================================================

>>> from mgsim.sim.call import load_sample
>>> from mgsim.sim.plans import Plan
>>> from mgsim.sim.scenario import Scenario, run_scenario
>>> fig = timeline(run_scenario(Scenario(load_sample("card_payment"), "twilio", Plan("guard"))))
>>> sum(p.get_gid() == "sensitive" for ax in fig.axes for p in ax.patches)
3
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Patch, Rectangle

from mgsim.lab.tables import mask_runs, masked_window, verdict
from mgsim.sim.call import Call
from mgsim.sim.explain import lost_words
from mgsim.sim.scenario import ScenarioResult

__all__ = ["COLORS", "compare_plot", "energy_db", "timeline"]

ROLES = ("customer", "agent")
COLORS = {
    "envelope": "#9aa5b1",
    "sensitive": "#f6c343",
    "streaming": "#2e9e5b",
    "utterance": "#3b6fb6",
    "leak": "#d62728",
    "transcribed": "#ff7f0e",
    "inferable": "#d62728",
    "masked": "#555555",
    "clipped": "#555555",
}
"""The palette, by ``gid``."""

_FRAME_MS = 20
_FLOOR_DB = -60.0


def energy_db(pcm: npt.NDArray[np.int16], frame_ms: int = _FRAME_MS) -> npt.NDArray[np.float64]:
    """RMS level of each ``frame_ms`` frame of 8 kHz audio in dBFS, floored at -60.

    >>> energy_db(np.zeros(320, np.int16)).tolist()
    [-60.0, -60.0]
    """
    n = frame_ms * 8
    frames = len(pcm) // n
    x = pcm[: frames * n].astype(np.float64).reshape(frames, n) / 32768.0
    db = 20.0 * np.log10(np.sqrt(np.mean(x**2, axis=1)) + 1e-12)
    out: npt.NDArray[np.float64] = np.maximum(db, _FLOOR_DB)
    return out


def _call_of(source: ScenarioResult | Call) -> Call:
    return source.scenario.call if isinstance(source, ScenarioResult) else source


def _lane_envelope(ax: Axes, pcm: npt.NDArray[np.int16]) -> None:
    level = (energy_db(pcm) - _FLOOR_DB) / -_FLOOR_DB  # 0 (silence) .. 1 (full scale)
    t = (np.arange(len(level)) + 0.5) * _FRAME_MS / 1000.0
    ax.fill_between(
        t, -level, level, color=COLORS["envelope"], linewidth=0, gid="envelope", zorder=2
    )


def _rect(ax: Axes, x0_ms: float, x1_ms: float, y0: float, y1: float, gid: str, **kw: Any) -> None:
    ax.add_patch(
        Rectangle(
            (x0_ms / 1000.0, y0),
            (x1_ms - x0_ms) / 1000.0,
            y1 - y0,
            gid=gid,
            **{"facecolor": COLORS.get(gid), "edgecolor": COLORS.get(gid), "linewidth": 0, **kw},
        )
    )


def _word_marks(result: ScenarioResult) -> list[tuple[str, float, float, str]]:
    """``(role, start_ms, end_ms, gid)`` for each sensitive word that was transcribed."""
    call = result.scenario.call
    marks = []
    for span in result.report.spans:
        flags = zip(
            span.word_indexes, span.transcribed, span.visible, span.inferable_words, strict=True
        )
        for idx, done, shown, guessed in flags:
            if done or shown:
                word = call.words[idx]
                gid = "leak" if shown else ("inferable" if guessed else "transcribed")
                marks.append((span.role, word.start_ms, word.end_ms, gid))
    return marks


_MARK_STYLE: dict[str, dict[str, Any]] = {
    "transcribed": {"hatch": "////", "alpha": 0.8},
    "inferable": {"hatch": "xx", "alpha": 0.9, "edgecolor": "white"},
}


def _masked(result: ScenarioResult) -> list[tuple[float, float]]:
    """Windows (ms) where a stop failed closed and the audio was masked at the source."""
    return [(a, b) for a, b in (masked_window(result, act) for act in result.actions) if b > a]


def _shown_text(result: ScenarioResult, row: dict[str, Any]) -> str:
    text = row["text"] if result.scenario.redaction_output == "unredacted" else row["redacted_text"]
    return str(text)


def _fit(text: str, width_ms: float, ms_per_char: float) -> str:
    room = max(1, int(width_ms / ms_per_char))
    return text if len(text) <= room else text[: max(0, room - 1)] + "…"


def timeline(
    source: ScenarioResult | Call,
    *,
    fig: Figure | SubFigure | None = None,
    figsize: tuple[float, float] = (13.0, 5.0),
    show_text: bool = True,
    title: str | None = None,
    xlim_ms: tuple[float, float] | None = None,
) -> Figure:
    """Two lanes, customer above agent, for one run (or just a call, before any run).

    Each lane shows the participant's audio energy, the sensitive spans shaded gold, the
    stretches that reached the gateway while streaming (green bar below), the transcribed
    utterances (blue bar above, with the text as delivered) and every sensitive word that
    was transcribed: red when delivered output shows it, orange when redaction masked it.
    Draws into ``fig`` (a figure or subfigure) when given; returns the root figure.
    """
    call = _call_of(source)
    result = source if isinstance(source, ScenarioResult) else None
    target: Figure | SubFigure = fig if fig is not None else Figure(figsize=figsize)
    axes = target.subplots(2, 1, sharex=True)
    # Room for the lane names on the left, the title on top and the legend below, so the
    # figure is whole even when saved without bbox_inches="tight".
    target.subplots_adjust(left=0.085, right=0.985, top=0.86, bottom=0.3, hspace=0.25)
    duration_ms = float(call.duration_ms)
    lo, hi = xlim_ms or (0.0, duration_ms)
    width_in = target.get_figure(root=True).get_size_inches()[0] * 0.85
    ms_per_char = (hi - lo) / max(1.0, width_in * 72.0 / (9.0 * 0.6))
    rows = result.utterance_rows() if result is not None else []
    marks = _word_marks(result) if result is not None else []
    clipped = [x for x in lost_words(result) if x.clipped] if result is not None else []
    for ax, role in zip(axes, ROLES, strict=True):
        pcm = call.audio.customer if role == "customer" else call.audio.agent
        _lane_envelope(ax, pcm)
        for span in call.sensitive:
            if span.speaker == role:
                _rect(
                    ax, span.start_ms, span.end_ms, -1.05, 1.05, "sensitive", alpha=0.45, zorder=1
                )
                ax.text(
                    (span.start_ms + span.end_ms) / 2000.0, 1.0, span.label, fontsize=9,
                    va="top", ha="center",
                    color="#7a5b00", gid="sensitive-label", zorder=5,
                )  # fmt: skip
        if result is not None:
            for a, b in mask_runs(result.streamed[role]):
                _rect(ax, a, b, -1.45, -1.2, "streaming", zorder=3)
            mine = [r for r in rows if r["role"] == role]
            for i, row in enumerate(mine):
                _rect(ax, row["start_ms"], row["end_ms"], 1.15, 1.35, "utterance", zorder=3)
                if show_text:
                    room = (mine[i + 1]["start_ms"] if i + 1 < len(mine) else hi) - row["start_ms"]
                    ax.text(
                        row["start_ms"] / 1000.0, 1.45 + 0.3 * (i % 2),
                        _fit(_shown_text(result, row), room, ms_per_char),
                        fontsize=9, va="bottom", clip_on=True, gid="utterance-text", zorder=5,
                    )  # fmt: skip
            for a, b in _masked(result):
                _rect(ax, a, b, -1.05, 1.05, "masked", fill=False, hatch="xx", alpha=0.5,
                      zorder=3)  # fmt: skip
            # Words the mask cut, on either participant's lane: a dashed box and a marker.
            for x in clipped:
                if x.role == role:
                    _rect(ax, x.start_ms, x.end_ms, -1.15, 1.15, "clipped", fill=False,
                          linestyle="--", linewidth=1.2, zorder=4)  # fmt: skip
                    ax.text(
                        (x.start_ms + x.end_ms) / 2000.0, -1.0, f"{x.count} clipped",
                        fontsize=9, ha="center", va="bottom", color=COLORS["clipped"],
                        gid="clipped-label", zorder=5, clip_on=True,
                    )  # fmt: skip
            for who, a, b, gid in marks:
                if who == role:
                    _rect(ax, a, b, -1.05, 1.05, gid, zorder=4, **_MARK_STYLE.get(gid, {}))
        ax.set_ylim(-1.6, 2.15)
        ax.set_yticks([])
        ax.set_ylabel(role, rotation=0, ha="right", va="center", fontsize=10)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    axes[-1].set_xlim(lo / 1000.0, hi / 1000.0)
    axes[-1].set_xlabel("seconds from the start of the call")
    # Below the x axis, so it never collides with the title.
    axes[-1].legend(handles=_legend(result), loc="upper left",
                    bbox_to_anchor=(0.0, -0.32), ncol=4, fontsize=9, frameon=False)  # fmt: skip
    target.suptitle(title if title is not None else _title(source), fontsize=11, x=0.01, ha="left")
    root = target.get_figure(root=True)
    assert isinstance(root, Figure)
    return root


def _legend(result: ScenarioResult | None) -> list[Patch]:
    items = [("envelope", "audio"), ("sensitive", "sensitive span")]
    if result is not None:
        items += [
            ("streaming", "streamed to the gateway"),
            ("utterance", "transcribed"),
            ("leak", "sensitive word shown (leak)"),
            ("inferable", "masked, but inferable (leak)"),
            ("transcribed", "sensitive word masked"),
        ]
        if _masked(result):
            items.append(("masked", "audio masked, both participants (stop failed closed)"))
            items.append(("clipped", "words the mask clipped"))
    hatches = {"masked": "xx", "inferable": "xx"}
    return [
        Patch(facecolor="none" if k in ("masked", "clipped") else COLORS[k],
              edgecolor="white" if k == "inferable" else COLORS[k],
              linestyle="--" if k == "clipped" else "-",
              hatch=hatches.get(k), label=label)
        for k, label in items
    ]  # fmt: skip


def _title(source: ScenarioResult | Call) -> str:
    if isinstance(source, Call):
        spans = len(source.sensitive)
        return f"{source.title} ({source.duration_ms / 1000:.1f} s, {spans} sensitive spans)"
    sc, leaks = source.scenario, source.leaks
    plan: str = sc.plan.kind
    if plan == "guard":
        plan += (
            f" ({sc.plan.margin_before_ms:.0f} ms before, {sc.plan.margin_after_ms:.0f} ms after)"
        )
    return (
        f"{sc.call.title} via {sc.namespace}, plan {plan}: {verdict(source)}: "
        f"{leaks['pci_words_transcribed']} of {leaks['pci_words']} sensitive words transcribed, "
        f"{leaks['pci_words_visible']} visible"
    )


def compare_plot(
    results: Sequence[ScenarioResult],
    *,
    labels: Sequence[str] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """One row per run (e.g. the four namespaces), customer and agent lanes in each.

    Rows show the sensitive spans (gold), streaming (green), utterances (blue) and the
    transcribed sensitive words (red when shown, orange when masked); the right margin
    gives each run's verdict. ``labels`` name the rows (default: the namespace).
    """
    if not results:
        raise ValueError("compare_plot needs at least one result")
    labels = list(labels) if labels is not None else [r.scenario.namespace for r in results]
    fig = Figure(figsize=figsize or (13.0, 1.1 + 1.0 * len(results)))
    axes = fig.subplots(len(results), 1, sharex=True, squeeze=False)[:, 0]
    end_ms = max(r.scenario.call.duration_ms for r in results)
    for ax, result, label in zip(axes, results, labels, strict=True):
        call = result.scenario.call
        lane = {"customer": 1.0, "agent": 0.0}
        for span in call.sensitive:
            y = lane[span.speaker]
            _rect(ax, span.start_ms, span.end_ms, y - 0.4, y + 0.4, "sensitive", alpha=0.45)
        for role, y in lane.items():
            for a, b in mask_runs(result.streamed[role]):
                _rect(ax, a, b, y - 0.35, y - 0.1, "streaming", zorder=3)
        for utt in result.utterances:
            y = lane[utt.role]
            _rect(ax, utt.start_ms, utt.end_ms, y + 0.1, y + 0.35, "utterance", zorder=3)
        for who, a, b, gid in _word_marks(result):
            style = _MARK_STYLE.get(gid, {})
            _rect(ax, a, b, lane[who] - 0.4, lane[who] + 0.4, gid, zorder=4, **style)
        ax.set_ylim(-0.55, 1.55)
        ax.set_yticks([0.0, 1.0], ["agent", "customer"], fontsize=9)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10, labelpad=10)
        leaks = result.leaks
        ax.text(
            1.005, 0.5,
            f"{verdict(result)}\n{leaks['pci_words_transcribed']}/{leaks['pci_words']} transcribed"
            f"\n{leaks['pci_words_visible']} visible",
            transform=ax.transAxes, fontsize=9, va="center", gid="verdict",
            color=COLORS["leak"] if result.report.leaked else "black",
        )  # fmt: skip
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[-1].set_xlim(0.0, end_ms / 1000.0)
    axes[-1].set_xlabel("seconds from the start of the call")
    axes[0].legend(handles=_legend(results[0])[1:], loc="lower left", bbox_to_anchor=(0.0, 1.05),
                   ncol=4, fontsize=9, frameon=False)  # fmt: skip
    height = fig.get_size_inches()[1]
    fig.subplots_adjust(left=0.16, right=0.88, top=1.0 - 0.75 / height, bottom=0.6 / height)
    return fig
