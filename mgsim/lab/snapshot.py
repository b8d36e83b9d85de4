"""A still image of the run panel: its controls, the timeline, the transcript and the leaks.

For places where a live widget cannot go (a README, a ticket, an email to a customer).

>>> from mgsim.lab.run_panel import RunPanel
>>> panel = RunPanel("card_payment")
>>> _ = panel.run()
>>> fig = panel_snapshot(panel)
>>> len(fig.subfigs)
3
"""

from __future__ import annotations

from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import FancyBboxPatch
from matplotlib.transforms import Bbox

from mgsim.lab.plots import COLORS, timeline
from mgsim.lab.run_panel import RunPanel
from mgsim.lab.tables import leaks_table, summary_table

__all__ = ["panel_snapshot"]

_FIELD = "#f3f4f6"
_TEXT_COLORS = {"shown": COLORS["leak"], "masked": COLORS["transcribed"], "": "#222222"}


def _controls(sub: SubFigure, panel: RunPanel) -> None:
    ax = sub.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    fields = [
        ("call", panel.call.value),
        ("namespace", panel.namespace.value),
        ("plan", panel.plan.value),
        ("redactionOutput", panel.redaction_output.value),
        ("stop before (ms)", panel.margin_before.value),
        ("start after (ms)", panel.margin_after.value),
        ("control latency (ms)", panel.latency.value),
        ("confirmed stop", "yes" if panel.confirm_stop.value else "no"),
        ("fail closed", "yes" if panel.fail_closed.value else "no"),
    ]
    for i, (name, value) in enumerate(fields):
        x, y = 0.01 + 0.245 * (i % 4), 0.72 - 0.3 * (i // 4)
        ax.text(x, y + 0.1, name, fontsize=9, color="#555555", transform=ax.transAxes)
        ax.add_patch(
            FancyBboxPatch((x, y - 0.06), 0.22, 0.14, boxstyle="round,pad=0.005",
                           transform=ax.transAxes, facecolor=_FIELD, edgecolor="#c9ccd1")
        )  # fmt: skip
        ax.text(x + 0.008, y, str(value), fontsize=9.5, va="center", transform=ax.transAxes)
    ax.add_patch(
        FancyBboxPatch((0.75, 0.06), 0.07, 0.16, boxstyle="round,pad=0.005",
                       transform=ax.transAxes, facecolor="#2f6fd6", edgecolor="none")
    )  # fmt: skip
    ax.text(0.785, 0.14, "▶ run", fontsize=10, color="white", ha="center", va="center",
            transform=ax.transAxes)  # fmt: skip
    ax.add_patch(
        FancyBboxPatch((0.84, 0.1), 0.15, 0.08, boxstyle="round,pad=0.003",
                       transform=ax.transAxes, facecolor=COLORS["streaming"], edgecolor="none")
    )  # fmt: skip
    ax.text(0.84, 0.22, "done", fontsize=9, color="#555555", transform=ax.transAxes)


def _transcript(sub: SubFigure, panel: RunPanel) -> None:
    assert panel.result is not None
    ax = sub.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.text(0.01, 0.96, "transcript as delivered", fontsize=10, weight="bold",
            transform=ax.transAxes, va="top")  # fmt: skip
    lines = panel.transcript_lines(panel.result)
    step = 0.86 / max(len(lines), 12)
    for i, line in enumerate(lines):
        text = f"{line['t_s']:6.2f} s  {line['role']:<8}  {line['text']}"
        color = _TEXT_COLORS[line["sensitive"]]
        ax.text(0.01, 0.86 - i * step, text[:95], fontsize=9, family="monospace", color=color,
                transform=ax.transAxes, va="top")  # fmt: skip


def _leaks(sub: SubFigure, panel: RunPanel) -> None:
    assert panel.result is not None
    ax = sub.add_axes((0.02, 0.0, 0.96, 1.0))
    ax.set_axis_off()
    row = summary_table(panel.result).iloc[0]
    color = COLORS["leak"] if row["verdict"] == "LEAK" else COLORS["streaming"]
    ax.text(0.0, 0.96, str(row["verdict"]), fontsize=13, weight="bold", color=color,
            transform=ax.transAxes, va="top")  # fmt: skip
    ax.text(
        0.0, 0.84,
        f"{row['pci_words_transcribed']} of {row['pci_words']} sensitive words transcribed, "
        f"{row['pci_words_visible']} visible",
        fontsize=9, transform=ax.transAxes, va="top",
    )  # fmt: skip
    columns = ["name", "words", "words_transcribed", "words_visible", "verdict"]
    frame = leaks_table(panel.result)[columns]
    table = ax.table(
        cellText=frame.astype(str).values.tolist(),
        colLabels=["span", "words", "transcribed", "visible", "verdict"],
        bbox=Bbox.from_bounds(0.0, 0.3, 1.0, 0.42),
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    for (r, _c), cell in table.get_celld().items():
        cell.set_edgecolor("#d0d4da")
        if r == 0:
            cell.set_facecolor(_FIELD)


def panel_snapshot(panel: RunPanel, *, figsize: tuple[float, float] = (14.0, 10.0)) -> Figure:
    """A figure laid out like the run panel after its last run (runs it first if needed)."""
    if panel.result is None:
        panel.run()
    fig = Figure(figsize=figsize, facecolor="white")
    rows = fig.subfigures(3, 1, height_ratios=[1.4, 4.6, 3.4])
    top, middle, bottom = rows.ravel()  # type: ignore[union-attr]
    _controls(top, panel)
    assert panel.result is not None
    timeline(panel.result, fig=middle)
    left, right = bottom.subfigures(1, 2, width_ratios=[2.2, 1.0]).ravel()
    _transcript(left, panel)
    _leaks(right, panel)
    return fig
