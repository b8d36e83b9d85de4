"""What an impairment did to a wire sequence: per-stream records and totals.

:func:`mgsim.media.impair.impair` returns an :class:`Impaired` result: the wires as the
gateway receives them and an :class:`ImpairReport` of what was lost, duplicated, reordered
and delayed, per media stream, so a test can check a gateway's accounting against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mgsim.media._base import Wire

__all__ = ["ImpairReport", "Impaired", "StreamReport"]


@dataclass(frozen=True, slots=True)
class StreamReport:
    """What happened to one media stream (an RTP m-line, a Twilio track, the AudioHook
    socket, the Kinesis stream).

    ``dropped_frames``: ordinals (from 0, in sending order) of the lost messages, so a
    test knows exactly which audio is missing; ``unseen``: how many of them no receiver
    can detect (at the stream's edges, only with ``keep_edges=False``); ``duplicated``:
    extra copies delivered; ``reordered``: messages whose first copy arrived after a later
    message of the stream; ``delayed``: messages whose ``at_ms`` moved.
    """

    sent: int = 0
    dropped_frames: tuple[int, ...] = ()
    unseen: int = 0
    duplicated: int = 0
    reordered: int = 0
    delayed: int = 0

    @property
    def dropped(self) -> int:
        return len(self.dropped_frames)


@dataclass(frozen=True, slots=True)
class ImpairReport:
    """Per-stream :class:`StreamReport` records, and totals over them."""

    namespace: str
    streams: dict[str, StreamReport] = field(default_factory=dict)

    def _sum(self, name: str) -> int:
        return sum(int(getattr(s, name)) for s in self.streams.values())

    @property
    def sent(self) -> int:
        """Media messages the sender emitted."""
        return self._sum("sent")

    @property
    def dropped(self) -> int:
        """Media messages lost on the way."""
        return self._sum("dropped")

    @property
    def unseen(self) -> int:
        return self._sum("unseen")

    @property
    def duplicated(self) -> int:
        return self._sum("duplicated")

    @property
    def reordered(self) -> int:
        return self._sum("reordered")

    @property
    def delayed(self) -> int:
        return self._sum("delayed")

    @property
    def delivered(self) -> int:
        """Media messages that reach the receiver, copies included."""
        return self.sent - self.dropped + self.duplicated

    @property
    def accountable(self) -> int:
        """Media messages a receiver can account for: ``received + dropped + lost`` of a
        faithful gateway (every delivered copy, plus every loss it can see)."""
        return self.delivered + self.dropped - self.unseen

    def expected_accounting(self) -> dict[str, Any]:
        """The accounting a faithful gateway shows for the impaired call (when the call
        itself had no other trouble): ``received``, ``lost``, ``dropped`` (by reason) and
        the anomaly counts these impairments cause, in
        :meth:`~mgsim.gateway.accounting.Accounting.as_dict` form."""
        lost = self.dropped - self.unseen
        dropped = {"duplicate": self.duplicated} if self.duplicated else {}
        anomalies: dict[str, int] = {}
        if self.namespace == "siprec":
            anomalies = {"loss": lost, "reorder": self.reordered, "duplicate": self.duplicated}
        elif self.namespace == "twilio":
            anomalies = {"gap": lost, "loss": lost}
        return {
            "received": self.sent - self.dropped,
            "lost": lost,
            "dropped": dropped,
            "anomalies": {k: v for k, v in sorted(anomalies.items()) if v},
        }


@dataclass(frozen=True, slots=True)
class Impaired:
    """The impaired ``wires`` (in arrival order) and the :class:`ImpairReport`.

    Iterating over it yields the wires, so it can stand where an encoder's output does.
    """

    wires: tuple[Wire, ...]
    report: ImpairReport

    def __iter__(self) -> Iterator[Wire]:
        return iter(self.wires)

    def __len__(self) -> int:
        return len(self.wires)
