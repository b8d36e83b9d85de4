"""Where every media message of a call went: received, dropped (and why) or lost.

The unit is the **media message** as the platform sends it: one Twilio ``media`` message,
one RTP packet, one AudioHook binary frame, one Kinesis Video fragment. Each one the
sender emits ends up in exactly one of three places:

* **received**: decoded and placed on the call's timeline, whether or not streaming was on
  (audio that arrives while not streaming is *received, not streamed*: not a drop);
* **dropped**, with a reason: ``"duplicate"`` (a repeat the decoder discarded),
  ``"late"`` (too old to place), ``"paused"`` (sent while the platform had paused the
  media), ``"decode-error"`` (the decoder refused it), ``"after-close"`` (it came after the
  session or the call had ended), ``"after-error"`` (after a protocol error, while the
  session waits to be closed), ``"out-of-range"`` (a position the timeline cannot hold);
* **lost**: never arrived, as the decoder reports from sequence gaps (Twilio ``chunk``,
  RTP sequence numbers).

So when the sender's count is known, ``sent == received + dropped + lost``
(:meth:`Accounting.balanced`). Client-side discards (AudioHook ``discarded``) and
decoder observations (reordering, DTMF, gaps later filled) are kept in ``anomalies``; they
are not messages on the wire.

How the media session ended is kept too (:meth:`Accounting.note_end`): ``ended_by`` is
``"platform"`` when the platform's own closing handshake came (Twilio ``stop``, AudioHook
``close``, SIP ``BYE``, the Kinesis producer ending its stream), ``"drop"`` when the
connection died without it (``end_reason`` says how: ``"connection-lost"`` for a socket
that vanished, ``"media-timeout"`` for RTP that stopped, ``"no-stop"``/``"no-close"``/
``"no-bye"`` for a connection closed without the handshake), ``"error"`` when the
gateway ended it after a protocol error (``end_reason`` is the error's reason) and
``"gateway"`` when the gateway hung the call up on its own (``DELETE /_sim/v1/calls/{guid}``,
``end_reason`` ``"hang-up"``) and told the platform so. Either way the call hangs up: its
open segment closes and what was streamed is transcribed.

>>> acc = Accounting()
>>> acc.note_received(streamed=True); acc.note_dropped("duplicate"); acc.note_lost(2)
>>> acc.balanced(4), acc.as_dict()["dropped"]
(True, {'duplicate': 1})
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DROP_REASONS", "END_KINDS", "Accounting"]

DROP_REASONS = frozenset(
    {"duplicate", "late", "paused", "decode-error", "after-close", "after-error", "out-of-range"}
)
"""The reasons a media message can be dropped for."""

END_KINDS = frozenset({"platform", "drop", "error", "gateway"})
"""How a media session can end (see :meth:`Accounting.note_end`)."""


@dataclass(slots=True)
class Accounting:
    """Per-call counts of media messages (see the module docstring for the rules)."""

    received: int = 0
    streamed: int = 0
    """Of the received messages, those with audio placed while streaming."""
    dropped: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    """Decoder errors by their ``MediaError.reason`` (each also drops its message)."""
    anomalies: Counter[str] = field(default_factory=Counter)
    """Every decoder :class:`~mgsim.media._base.Anomaly` kind seen, with its count."""
    ended_by: str | None = None
    """``"platform"``, ``"drop"``, ``"error"`` or ``"gateway"`` once the media session ended
    (None before)."""
    end_reason: str | None = None
    """The platform's close reason, the drop's reason or the error's reason."""

    def note_received(self, *, streamed: bool, count: int = 1) -> None:
        self.received += count
        if streamed:
            self.streamed += count

    def note_dropped(self, reason: str, count: int = 1) -> None:
        if reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {reason!r}")
        self.dropped[reason] += count

    def note_lost(self, count: int) -> None:
        self.lost += count

    def note_error(self, reason: str, *, dropped: bool = True) -> None:
        """A message the decoder refused: counted as an error and, if it carried media
        (``dropped``), as a ``"decode-error"`` drop."""
        self.errors[reason] += 1
        if dropped:
            self.note_dropped("decode-error")

    def note_end(self, kind: str, reason: str) -> bool:
        """Record how the media session ended; the first call wins. Return whether this
        one was recorded.

        >>> acc = Accounting()
        >>> acc.note_end("drop", "connection-lost"), acc.note_end("platform", "stop")
        (True, False)
        >>> acc.ended_by, acc.end_reason
        ('drop', 'connection-lost')
        """
        if kind not in END_KINDS:
            raise ValueError(f"unknown end kind {kind!r}")
        if self.ended_by is not None:
            return False
        self.ended_by, self.end_reason = kind, reason
        return True

    @property
    def dropped_connection(self) -> bool:
        """True when the media connection died without the platform's closing handshake."""
        return self.ended_by == "drop"

    @property
    def total(self) -> int:
        """Messages accounted for: received + dropped + lost."""
        return self.received + sum(self.dropped.values()) + self.lost

    def balanced(self, sent: int | None) -> bool | None:
        """Whether ``sent`` media messages are all accounted for (None if unknown)."""
        return None if sent is None else sent == self.total

    def as_dict(self) -> dict[str, Any]:
        """Plain counts, for tables and JSON."""
        return {
            "received": self.received,
            "streamed": self.streamed,
            "dropped": dict(sorted(self.dropped.items())),
            "lost": self.lost,
            "errors": dict(sorted(self.errors.items())),
            "anomalies": dict(sorted(self.anomalies.items())),
            "ended_by": self.ended_by,
            "end_reason": self.end_reason,
        }
