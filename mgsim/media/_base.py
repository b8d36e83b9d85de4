"""Records shared by every wire-format module.

Each platform module in :mod:`mgsim.media` has the same two halves:

* an **encoder** that turns a stereo call into the platform's message sequence::

      encode(call: StereoCall, *, guid: str, ...) -> Iterator[Wire]

  Each :class:`Wire` says *when* (media time, ms from the start of the call) the platform
  would send it, on which logical connection (``channel``) and what bytes or text it carries.

* a push **decoder** with ``feed(wire) -> list[Event]`` and ``close() -> list[Event]``. It
  keeps per-session state (sequence numbers, positions, pause state), never touches a
  socket, and reports what it saw as :data:`Event` records. Anything it cannot accept raises
  that module's subclass of :class:`mgsim.errors.MediaError`.

Audio positions are **sample indexes at 8 kHz from the start of the media session**, taken
from the platform's own clock (Twilio ``timestamp``, RTP timestamp, AudioHook sample count,
Matroska timecodes), never from arrival order. Participant channels keep the platform's own
labels (``"inbound"``, ``"external"``, ``"0"`` for the top SDP m-line,
``"AUDIO_FROM_CUSTOMER"``); the gateway maps them to customer/agent with the start-streaming
parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError

__all__ = [
    "SAMPLE_RATE",
    "Anomaly",
    "AudioChunk",
    "Event",
    "Reply",
    "SessionClosed",
    "SessionOpened",
    "SessionPaused",
    "SessionResumed",
    "StereoCall",
    "Wire",
]

SAMPLE_RATE = 8000
"""Every platform here carries narrow-band telephone audio: 8,000 samples per second."""

Int16Array = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class StereoCall:
    """One call's audio: the customer's and the agent's signal, int16 at 8 kHz.

    The two arrays may differ in length; encoders pad the shorter with silence.
    """

    customer: Int16Array
    agent: Int16Array
    rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        if self.rate != SAMPLE_RATE:
            raise ConfigError(f"calls must be {SAMPLE_RATE} Hz, got {self.rate} Hz")
        for name in ("customer", "agent"):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.dtype != np.int16 or arr.ndim != 1:
                raise ConfigError(f"{name} must be a 1-D int16 numpy array")

    @property
    def n_samples(self) -> int:
        """Length of the longer participant, in samples."""
        return max(len(self.customer), len(self.agent))

    @property
    def duration_ms(self) -> float:
        return self.n_samples * 1000.0 / self.rate


@dataclass(frozen=True, slots=True)
class Wire:
    """One message as the platform puts it on the wire.

    ``at_ms`` is the media time at which a real-time sender emits it; in-process playback
    ignores it, paced playback sleeps until it. ``channel`` names the logical connection:
    ``"ws"`` (Twilio, AudioHook), ``"sip"``, ``"rtp:0"`` / ``"rtp:1"`` (SDP m-line index),
    ``"kvs"`` (one Matroska fragment put into the stream).
    """

    at_ms: float
    channel: str
    data: str | bytes


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """A media session began. ``guid`` is the call id the platform carries."""

    guid: str
    channels: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Decoded audio of one participant channel placed at ``start_sample``."""

    channel: str
    start_sample: int
    pcm: Int16Array

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.pcm)


@dataclass(frozen=True, slots=True)
class SessionPaused:
    """The platform paused the media (AudioHook pause, SIPREC ``a=inactive``)."""

    at_sample: int


@dataclass(frozen=True, slots=True)
class SessionResumed:
    at_sample: int


@dataclass(frozen=True, slots=True)
class SessionClosed:
    reason: str


@dataclass(frozen=True, slots=True)
class Reply:
    """What the gateway sends back on ``channel`` (AudioHook ``opened``, SIP ``200 OK``...)."""

    channel: str
    data: str | bytes


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something the decoder noticed but survived: ``kind`` is a short tag
    (``"loss"``, ``"reorder"``, ``"duplicate"``, ``"late"``), ``count`` how many frames."""

    kind: str
    detail: str
    channel: str = ""
    count: int = 1


Event = (
    SessionOpened | AudioChunk | SessionPaused | SessionResumed | SessionClosed | Reply | Anomaly
)
