"""The run-call panel: pick a call, a namespace, a plan and its margins, press run.

>>> panel = RunPanel("card_payment", namespace="twilio", margin_before_ms=0, latency_ms=400,
...                  fail_closed=False)
>>> panel.run().leaks["pci_words_visible"]
3
>>> [line["sensitive"] for line in panel.transcript_lines(panel.result)][5]
'shown'
"""

from __future__ import annotations

import html
import io
from typing import Any

import ipywidgets as w

from mgsim.lab.plots import COLORS, timeline
from mgsim.lab.tables import leaks_table, sensitive_word_indexes, summary_table, verdict
from mgsim.lab.widgets import Panel, html_table
from mgsim.sim.call import Call, list_samples, load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import NAMESPACES, Scenario, ScenarioResult, run_scenario
from mgsim.targets import Target

__all__ = ["RunPanel"]

_SAMPLE_NAMES: tuple[str, ...] | None = None


def _samples() -> tuple[str, ...]:
    global _SAMPLE_NAMES
    if _SAMPLE_NAMES is None:
        _SAMPLE_NAMES = tuple(p.stem for p in list_samples())
    return _SAMPLE_NAMES


class RunPanel(Panel):
    """Run a call through a namespace under a plan, with margins and latency on sliders.

    :meth:`run` (the *run* button) plays the call in virtual time (or to ``target``, a real
    gateway), then shows the timeline
    plot, the transcript as delivered and the leak table. ``auto_run`` re-runs on every
    change of a control. Set controls from code with :meth:`set`.
    """

    STEPS = 4

    def __init__(
        self,
        call: str | Call = "card_payment",
        *,
        namespace: str = "twilio",
        plan: str = "guard",
        margin_before_ms: float = 1500.0,
        margin_after_ms: float = 1000.0,
        latency_ms: float = 0.0,
        redaction_output: str = "redacted",
        confirm_stop: bool = True,
        fail_closed: bool = True,
        seed: int = 0,
        auto_run: bool = False,
        dpi: int = 80,
        target: Target | None = None,
    ) -> None:
        self._calls: dict[str, Call] = {}
        names = list(_samples())
        if isinstance(call, Call):
            self._calls[call.call_id] = call
            if call.call_id not in names:
                names.append(call.call_id)
            call = call.call_id
        self.seed = seed
        self.dpi = dpi
        self.target = target
        """Where *run* plays the call: None (an embedded simulator, virtual time) or a real
        gateway (:class:`mgsim.targets.Target`; the latency slider must then stay at 0)."""
        self.result: ScenarioResult | None = None
        style = {"description_width": "140px"}
        wide = w.Layout(width="460px")
        self.call = w.Dropdown(options=names, value=call, description="call", style=style)
        self.namespace = w.Dropdown(options=NAMESPACES, value=namespace, description="namespace",
                                    style=style)  # fmt: skip
        self.plan = w.Dropdown(options=["whole", "connect", "guard"], value=plan,
                               description="plan", style=style)  # fmt: skip
        self.margin_before = w.IntSlider(value=int(margin_before_ms), min=0, max=3000, step=100,
                                         description="stop before (ms)", style=style,
                                         layout=wide)  # fmt: skip
        self.margin_after = w.IntSlider(value=int(margin_after_ms), min=0, max=3000, step=100,
                                        description="start after (ms)", style=style,
                                        layout=wide)  # fmt: skip
        self.latency = w.IntSlider(value=int(latency_ms), min=0, max=3000, step=50,
                                   description="control latency (ms)", style=style,
                                   layout=wide)  # fmt: skip
        self.redaction_output = w.Dropdown(
            options=["redacted", "unredacted", "redacted_and_unredacted"],
            value=redaction_output, description="redactionOutput", style=style,
        )  # fmt: skip
        self.confirm_stop = w.Checkbox(value=confirm_stop, description="confirmed (PCI-safe) stop")
        self.fail_closed = w.Checkbox(value=fail_closed, description="fail closed (mask audio)")
        self.button = w.Button(description="run", button_style="primary", icon="play")
        self.button.on_click(lambda _b: self.run())
        self.progress = w.IntProgress(value=0, min=0, max=self.STEPS, description="idle")
        self.summary = w.HTML(value="")
        self.plot = w.Image(format="png", layout=w.Layout(width="100%"))
        self.transcript = w.HTML(value="")
        self.leaks = w.HTML(value="")
        self.controls = [
            self.call, self.namespace, self.plan, self.margin_before, self.margin_after,
            self.latency, self.redaction_output, self.confirm_stop, self.fail_closed,
        ]  # fmt: skip
        self.auto_run = auto_run
        for control in self.controls:
            control.observe(self._changed, names="value")
        self.view = w.VBox([
            w.HBox([w.VBox([self.call, self.namespace, self.plan, self.redaction_output]),
                    w.VBox([self.margin_before, self.margin_after, self.latency,
                            self.confirm_stop, self.fail_closed])]),
            w.HBox([self.button, self.progress]),
            self.summary,
            self.plot,
            w.HBox([w.VBox([w.HTML("<b>transcript as delivered</b>"), self.transcript],
                           layout=w.Layout(width="60%")),
                    w.VBox([w.HTML("<b>sensitive spans</b>"), self.leaks],
                           layout=w.Layout(width="40%"))]),
        ])  # fmt: skip

    def _changed(self, _change: Any) -> None:
        if self.auto_run:
            self.run()

    def set(self, **values: Any) -> RunPanel:
        """Set controls by name (``call``, ``namespace``, ``plan``, ``margin_before_ms``,
        ``margin_after_ms``, ``latency_ms``, ``redaction_output``, ``confirm_stop``,
        ``fail_closed``)."""
        widgets = {
            "call": self.call, "namespace": self.namespace, "plan": self.plan,
            "margin_before_ms": self.margin_before, "margin_after_ms": self.margin_after,
            "latency_ms": self.latency, "redaction_output": self.redaction_output,
            "confirm_stop": self.confirm_stop, "fail_closed": self.fail_closed,
        }  # fmt: skip
        unknown = sorted(set(values) - set(widgets))
        if unknown:
            raise TypeError(f"unknown control(s): {', '.join(unknown)}")
        auto, self.auto_run = self.auto_run, False
        try:
            for name, value in values.items():
                widgets[name].value = (
                    int(value) if isinstance(widgets[name], w.IntSlider) else value
                )
        finally:
            self.auto_run = auto
        return self

    def load_call(self) -> Call:
        """The selected call (loaded once)."""
        name = self.call.value
        if name not in self._calls:
            self._calls[name] = load_sample(name)
        return self._calls[name]

    def scenario(self) -> Scenario:
        """The scenario the controls describe."""
        return Scenario(
            self.load_call(),
            self.namespace.value,
            Plan(self.plan.value, float(self.margin_before.value), float(self.margin_after.value)),
            redaction_output=self.redaction_output.value,
            control_latency_ms=float(self.latency.value),
            confirm_stop=self.confirm_stop.value,
            fail_closed=self.fail_closed.value,
            seed=self.seed,
            target=self.target,
        )

    def _step(self, n: int, what: str) -> None:
        self.progress.value = n
        self.progress.description = what

    def run(self) -> ScenarioResult:
        """Run the scenario and refresh every output; returns the result."""
        self._step(0, "loading")
        scenario = self.scenario()
        self._step(1, "running")
        result = run_scenario(scenario)
        self.result = result
        self._step(2, "plotting")
        self.plot.value = self.render_png(result)
        self._step(3, "tables")
        self.transcript.value = self.transcript_html(result)
        self.leaks.value = html_table(
            leaks_table(result)[["name", "words", "words_transcribed", "words_visible", "verdict"]]
        )
        row = summary_table(result).iloc[0]
        color = COLORS["leak"] if row["verdict"] == "LEAK" else COLORS["streaming"]
        self.summary.value = (
            f"<b style='color:{color}'>{html.escape(str(row['verdict']))}</b>: "
            f"{row['pci_words_transcribed']} of {row['pci_words']} sensitive words transcribed, "
            f"{row['pci_words_visible']} visible; {row['utterances']} utterances, "
            f"{row['requests']} requests"
        )
        self._step(self.STEPS, "done")
        return result

    def render_png(self, result: ScenarioResult) -> bytes:
        """The timeline of ``result`` as PNG bytes (what the plot widget shows)."""
        buf = io.BytesIO()
        timeline(result).savefig(buf, format="png", dpi=self.dpi, bbox_inches="tight")
        return buf.getvalue()

    @staticmethod
    def transcript_lines(result: ScenarioResult) -> list[dict[str, Any]]:
        """The transcript as delivered, one dict per utterance: ``t_s``, ``role``, ``text``
        (what the webhook's ``text`` field carried) and ``sensitive``: ``"shown"`` when it
        shows a sensitive word, ``"masked"`` when it had one and redaction hid it, else
        ``""``."""
        sensitive = sensitive_word_indexes(result.scenario.call)
        shown = {
            i
            for span in result.report.spans
            for i, flag, guessed in zip(
                span.word_indexes, span.visible, span.inferable_words, strict=True
            )
            if flag or guessed
        }
        mode = result.scenario.redaction_output
        lines = []
        for utt, row in zip(result.utterances, result.utterance_rows(), strict=True):
            idx = {i for word in utt.words for i in word.script_indexes}
            mark = "shown" if idx & shown else ("masked" if idx & sensitive else "")
            lines.append(
                {
                    "t_s": round(row["start_ms"] / 1000.0, 2),
                    "role": row["role"],
                    "text": row["text"] if mode == "unredacted" else row["redacted_text"],
                    "sensitive": mark,
                }
            )
        lines.sort(key=lambda line: line["t_s"])
        return lines

    @classmethod
    def transcript_html(cls, result: ScenarioResult) -> str:
        """:meth:`transcript_lines` as HTML, leaks in red and masked lines in orange."""
        colors = {"shown": COLORS["leak"], "masked": COLORS["transcribed"], "": "inherit"}
        out = []
        for line in cls.transcript_lines(result):
            out.append(
                f"<div style='color:{colors[line['sensitive']]}'>"
                f"<code>{line['t_s']:6.2f} s</code> <b>{line['role']}</b>: "
                f"{html.escape(line['text'])}</div>"
            )
        return "".join(out)

    def _describe(self) -> str:
        state = "not run yet"
        if self.result is not None:
            state = verdict(self.result)
        return (
            f"RunPanel({self.call.value} via {self.namespace.value}, plan {self.plan.value}, "
            f"margins {self.margin_before.value}/{self.margin_after.value} ms, latency "
            f"{self.latency.value} ms: {state})"
        )
