"""The control panel: send start-streaming / stop-streaming by hand, watch the journal.

Every button calls a plain method that returns the data it displays, so panels work (and
are tested) without a browser:

>>> panel = ControlPanel(namespace="siprec")
>>> _ = panel.click_open()
>>> panel.click_start()[["endpoint", "status"]].values.tolist()
[['calls', 201], ['start-streaming', 200]]
>>> panel.close()

Panels display themselves when they are a cell's last expression; their widgets sit in
``panel.view`` for custom layouts.

Time: the panel's simulator runs on a virtual clock, which a click of a button moves on by
the real time since the previous click, so the log's ``t_s`` and the stop summary's
``streamingSeconds`` say how long the call really streamed. Clicks from code take no time
(a notebook gives the same numbers every run); ``panel.wait(seconds)`` lets time pass.
"""

from __future__ import annotations

import html
import io
import time
from typing import Any

import ipywidgets as w
import pandas as pd
from matplotlib.figure import Figure

from mgsim.client import Client
from mgsim.clock import VirtualClock
from mgsim.contract.models import (
    AmazonConnectParams,
    AutotranscribeParams,
    NamespaceParams,
    SiprecParams,
    TwilioParams,
)
from mgsim.lab.plots import COLORS
from mgsim.lab.tables import journal_table, readable
from mgsim.sim.scenario import NAMESPACES, guid_for
from mgsim.simulator import Simulator

__all__ = ["JOURNAL_VIEW_COLUMNS", "ControlPanel", "Panel", "connect_stream_arn", "html_table"]

JOURNAL_VIEW_COLUMNS = [
    "seq", "t_s", "method", "endpoint", "namespace", "status", "code", "attempt", "wait_ms",
    "latency_ms", "error",
]  # fmt: skip
"""The journal columns the control panel shows (ids and guids are left out for width);
``t_s`` is when the request was sent, in seconds on the client's clock since its first."""

_TABLE_STYLE = (
    "<style>.mgsim-table td, .mgsim-table th {white-space: nowrap; padding: 1px 8px;}</style>"
)


def connect_stream_arn(guid: str) -> str:
    """A Kinesis Video stream ARN of the shape Amazon Connect gives a contact."""
    return (
        "arn:aws:kinesisvideo:us-east-1:123456789012:stream/"
        f"mgsim-connect-demo-contact-{guid}/1767603600000"
    )


def html_table(frame: pd.DataFrame) -> str:
    """``frame`` as an HTML table whose cells never wrap ("start-streaming", "409-201"
    stay whole) and whose missing values are blank."""
    table = readable(frame).to_html(index=False, border=0, classes="mgsim-table")
    return _TABLE_STYLE + str(table)


class Panel:
    """Base of the panels: displays its ``view``, with a short stable text form."""

    view: w.Box

    def _describe(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # The widget view for live kernels; a stable one-line text for saved notebooks.
        bundle: dict[str, Any] = dict(self.view._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = self._describe()
        return bundle


def streaming_states(frame: pd.DataFrame) -> list[bool]:
    """Whether the call is streaming after each request of a journal table."""
    streaming, out = False, []
    methods = frame["method"] if "method" in frame else [""] * len(frame)
    for method, endpoint, status in zip(methods, frame["endpoint"], frame["status"], strict=True):
        ok = status is not None and not pd.isna(status) and 200 <= int(status) < 300
        if ok and str(endpoint).endswith("start-streaming"):
            streaming = True
        elif ok and (
            str(endpoint).endswith("stop-streaming") or (method == "DELETE" and endpoint == "calls")
        ):
            streaming = False  # stopped, or hung up
        out.append(streaming)
    return out


def state_png(frame: pd.DataFrame) -> bytes:
    """A small PNG: the call's streaming state after each request, one marker per request
    (green answered 2xx, red an error)."""
    fig = Figure(figsize=(6.0, 1.5), dpi=90)
    ax = fig.subplots()
    states = streaming_states(frame)
    xs = list(range(1, len(states) + 1))
    if xs:
        ax.step([0, *xs], [0, *map(int, states)], where="post", color=COLORS["streaming"])
        colors = [
            COLORS["streaming"]
            if (s is not None and not pd.isna(s) and int(s) < 300)
            else COLORS["leak"]
            for s in frame["status"]
        ]
        ax.scatter(xs, list(map(int, states)), c=colors, zorder=3, s=28)
    ax.set_xlim(0, max(5, len(xs) + 1))
    ax.set_ylim(-0.3, 1.3)
    ax.set_yticks([0, 1], ["stopped", "streaming"])
    ax.set_xlabel("request")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class ControlPanel(Panel):
    """Send start-streaming / stop-streaming by hand and watch the journal grow.

    By default the panel owns an embedded simulator on a virtual clock (``seed`` makes its
    ids reproducible); pass ``client`` to drive another one, or a real gateway. Buttons:
    *open call* (simulator only: a call without media), *start*, *stop*, *hang up*.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        namespace: str = "twilio",
        guid: str | None = None,
        seed: int = 1,
    ) -> None:
        self._owned: Simulator | None = None
        if client is None:
            self._owned = Simulator(virtual=True, seed=seed)
            client = Client(simulator=self._owned)
        self.client = client
        self.last: Any = None
        """What the last action returned (a result, a dict or the exception raised)."""
        self._now = time.monotonic  # real time between clicks in the page (tests set their own)
        self._last_button: float | None = None
        style = {"description_width": "120px"}
        self.namespace = w.Dropdown(options=NAMESPACES, value=namespace, description="namespace",
                                    style=style)  # fmt: skip
        self.guid = w.Text(value=guid or self.default_guid(namespace), description="guid",
                           style=style, layout=w.Layout(width="520px"))  # fmt: skip
        self.customer_id = w.Text(value="customer-1", description="customerId", style=style)
        self.agent_id = w.Text(value="agent-1", description="agentId", style=style)
        self.redaction_output = w.Dropdown(
            options=["redacted", "unredacted", "redacted_and_unredacted"],
            value="redacted", description="redactionOutput", style=style,
        )  # fmt: skip
        self.detailed_token = w.Checkbox(value=False, description="detailedToken")
        self.media_line_order = w.Dropdown(options=["CUSTOMER_FIRST", "AGENT_FIRST"],
                                           description="mediaLineOrder", style=style)  # fmt: skip
        self.inbound = w.Dropdown(options=["customer", "agent"], description="inbound track is",
                                  style=style)  # fmt: skip
        self.start_selector = w.Dropdown(options=["NOW", "FRAGMENT_NUMBER"],
                                         description="startSelector", style=style)  # fmt: skip
        self.after_fragment = w.Text(value="", description="afterFragment", style=style)
        self.buttons = {
            name: w.Button(description=name, button_style=kind)
            for name, kind in (("open call", ""), ("start", "success"), ("stop", "danger"),
                               ("hang up", "warning"))
        }  # fmt: skip
        actions = {
            "open call": self.click_open,
            "start": self.click_start,
            "stop": self.click_stop,
            "hang up": self.click_hang_up,
        }
        for name, button in self.buttons.items():
            button.on_click(lambda _b, act=actions[name]: self._button(act))
        self.status = w.HTML(value="")
        self.journal = w.HTML(value="")
        self.plot = w.Image(format="png", layout=w.Layout(width="560px"))
        self.plot.add_class("mgsim-control-plot")
        self.namespace.observe(self._namespace_changed, names="value")
        self._params_box = w.VBox([])
        self._namespace_changed(None)
        self.view = w.VBox([
            w.HBox([self.namespace, self.guid]),
            w.HBox([self.customer_id, self.agent_id]),
            w.HBox([self.redaction_output, self.detailed_token]),
            self._params_box,
            w.HBox(list(self.buttons.values())),
            self.status,
            self.plot,
            self.journal,
        ])  # fmt: skip
        self.view.add_class("mgsim-control-panel")
        self.refresh()

    @staticmethod
    def default_guid(namespace: str) -> str:
        """A stable call id of the right form for ``namespace``."""
        return guid_for(namespace, "control-panel")

    def _namespace_changed(self, _change: Any) -> None:
        ns = self.namespace.value
        if _change is not None:
            self.guid.value = self.default_guid(ns)
        self._params_box.children = {
            "siprec": (self.media_line_order,),
            "twilio": (self.inbound,),
            "amazonconnect": (self.start_selector, self.after_fragment),
        }.get(ns, ())

    def params(self) -> NamespaceParams | None:
        """The namespace parameters the widgets describe."""
        ns = self.namespace.value
        if ns == "siprec":
            return SiprecParams(self.media_line_order.value)
        if ns == "twilio":
            inbound = self.inbound.value
            return TwilioParams(inbound, "agent" if inbound == "customer" else "customer")
        if ns == "amazonconnect":
            after = self.after_fragment.value.strip() or None
            return AmazonConnectParams(
                connect_stream_arn(self.guid.value), self.start_selector.value, after
            )
        return None

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on the client's clock before the next click, as the time
        between two clicks in the page does (a real clock needs no telling)."""
        if seconds < 0:
            raise ValueError(f"cannot wait {seconds} s: time only moves forward")
        if isinstance(self.client.clock, VirtualClock):
            self.client.clock.advance(seconds)

    def _button(self, action: Any) -> pd.DataFrame:
        # A click in the page: the virtual clock catches up with the real time since the
        # previous one (the first click starts the count).
        now = self._now()
        if self._last_button is not None:
            self.wait(max(0.0, now - self._last_button))
        self._last_button = now
        frame: pd.DataFrame = action()
        return frame

    def _act(self, label: str, action: Any) -> pd.DataFrame:
        try:
            self.last = action()
            self.status.value = f"<b>{html.escape(label)}</b>: ok"
        except Exception as exc:  # shown in the panel: a click must never fail silently
            self.last = exc
            self.status.value = (
                f"<b>{html.escape(label)}</b>: <span style='color:{COLORS['leak']}'>"
                f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>"
            )
        return self.refresh()

    def click_open(self) -> pd.DataFrame:
        """Open a call without media (embedded simulator only); returns the journal table."""
        return self._act("open call", lambda: self.client.open_call(self.namespace.value,
                                                                    self.guid.value))  # fmt: skip

    def click_start(self) -> pd.DataFrame:
        """Send start-streaming with the panel's parameters; returns the journal table."""
        autotranscribe = AutotranscribeParams(
            redaction_output=self.redaction_output.value,
            detailed_token=True if self.detailed_token.value else None,
        )
        return self._act(
            "start-streaming",
            lambda: self.client.start_streaming(
                self.namespace.value, self.guid.value, self.customer_id.value,
                self.agent_id.value, autotranscribe=autotranscribe, params=self.params(),
            ),
        )  # fmt: skip

    def click_stop(self) -> pd.DataFrame:
        """Send stop-streaming; returns the journal table."""
        return self._act(
            "stop-streaming",
            lambda: self.client.stop_streaming(self.namespace.value, self.guid.value),
        )

    def click_hang_up(self) -> pd.DataFrame:
        """End the call (embedded simulator only); returns the journal table."""
        return self._act("hang up", lambda: self.client.hang_up(self.guid.value))

    def journal_frame(self) -> pd.DataFrame:
        """The client's journal as :func:`~mgsim.lab.tables.journal_table` shows it, plus
        ``t_s``: when each request was sent, in seconds since the first (to 0.01 s)."""
        frame = journal_table(self.client)
        frame.insert(2, "t_s", (frame["t_ms"] / 1000.0).round(2))
        return frame

    def refresh(self) -> pd.DataFrame:
        """Redraw the journal table and the state plot; returns the table."""
        frame = self.journal_frame()
        self.journal.value = html_table(frame[JOURNAL_VIEW_COLUMNS])
        self.plot.value = state_png(frame)
        return frame

    def close(self) -> None:
        """Close the client and the simulator the panel made."""
        self.client.close()
        if self._owned is not None:
            self._owned.close()

    def _describe(self) -> str:
        return (
            f"ControlPanel({self.namespace.value}, guid {self.guid.value}, "
            f"{len(self.client.journal)} requests)"
        )
