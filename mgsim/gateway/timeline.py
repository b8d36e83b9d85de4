"""One participant channel's audio as the gateway holds it, sample by sample.

A :class:`Timeline` is an int16 buffer indexed by sample (8 kHz, counted from the start of
the media session) with two boolean masks of the same length:

* ``received``: the sample reached the gateway (from any placement);
* ``streamed``: some copy of the sample reached it while streaming was on.

Placement rules, which make the counts exact whatever order audio arrives in:

* audio is written only where nothing was received yet: the first copy of a sample wins,
  and a repeat is counted in :attr:`Timeline.overlap_samples` instead of being placed again
  (so duplicates are never double-counted);
* a sample's ``streamed`` flag is the OR over every placement of it, and
  :meth:`Timeline.place` reports how many samples became streamed *by this placement*:
  that is what the stop summary adds up;
* the buffer grows geometrically, so placing a long call frame by frame stays linear.

>>> import numpy as np
>>> t = Timeline()
>>> t.place(0, np.ones(160, np.int16), streamed=False)
Placement(new=160, newly_streamed=0, overlap=0)
>>> t.place(80, np.full(160, 2, np.int16), streamed=True)
Placement(new=80, newly_streamed=160, overlap=80)
>>> len(t), int(t.received_mask().sum()), t.streamed_ms()
(240, 240, 20.0)
>>> t.audio()[[0, 80, 160]].tolist()
[1, 1, 2]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError

__all__ = ["MAX_SAMPLES", "Placement", "StreamedRun", "Timeline"]

MAX_SAMPLES = 4 * 3600 * 8000
"""Longest timeline kept (four hours at 8 kHz): a placement beyond it is refused, so a
hostile timestamp cannot make the gateway allocate gigabytes."""

_MIN_CAPACITY = 8000  # one second: avoids a string of tiny reallocations at the start


StreamedRun = tuple[int, int, npt.NDArray[np.bool_] | None]
"""Samples ``start:end`` that one placement newly streamed: all of them (``None``) or
those its mask marks."""


class Placement(NamedTuple):
    """What one :meth:`Timeline.place` changed.

    ``new``: samples received for the first time; ``newly_streamed``: samples whose
    streamed flag this placement set; ``overlap``: samples that were already received.
    """

    new: int
    newly_streamed: int
    overlap: int


class Timeline:
    """Sample-accurate audio of one channel with received and streamed masks.

    ``max_samples`` bounds the length (default :data:`MAX_SAMPLES`).
    """

    def __init__(self, *, max_samples: int = MAX_SAMPLES) -> None:
        self.max_samples = max_samples
        self._audio = np.zeros(0, np.int16)
        self._received = np.zeros(0, np.bool_)
        self._streamed = np.zeros(0, np.bool_)
        self._length = 0
        self.received_samples = 0
        """Samples received at least once."""
        self.streamed_samples = 0
        """Samples streamed at least once."""
        self.overlap_samples = 0
        """Samples that arrived again after they had been received (not placed twice)."""
        self.placements = 0

    def __len__(self) -> int:
        """One past the last sample ever placed."""
        return self._length

    def _grow(self, end: int) -> None:
        capacity = len(self._audio)
        if end <= capacity:
            return
        new_capacity = min(max(end, 2 * capacity, _MIN_CAPACITY), self.max_samples)
        for name in ("_audio", "_received", "_streamed"):
            old = getattr(self, name)
            grown = np.zeros(new_capacity, old.dtype)
            grown[: self._length] = old[: self._length]
            setattr(self, name, grown)

    def place(
        self,
        start: int,
        pcm: npt.NDArray[np.int16],
        *,
        streamed: bool,
        log: list[StreamedRun] | None = None,
    ) -> Placement:
        """Put ``pcm`` at sample ``start``; ``streamed`` says whether streaming was on.

        With ``log``, a placement that newly streams samples appends which ones as a
        :data:`StreamedRun`: a streaming window keeps its own log, so it can later read
        exactly the samples it streamed without copying the whole timeline.

        Raises :class:`~mgsim.errors.ConfigError` for a negative start or an end beyond
        :attr:`max_samples`; nothing changes then.
        """
        n = len(pcm)
        end = start + n
        if start < 0 or end > self.max_samples:
            raise ConfigError(
                f"samples {start}..{end} fall outside the timeline (0..{self.max_samples})"
            )
        self.placements += 1
        if n == 0:
            return Placement(0, 0, 0)
        if start >= self._length and end <= len(self._audio):
            # The usual case, once per frame of every call: audio arriving in order into
            # room already there. Nothing beyond the end was received or streamed.
            self._length = end
            self._audio[start:end] = pcm
            self._received[start:end] = True
            self.received_samples += n
            if not streamed:
                return Placement(n, 0, 0)
            self._streamed[start:end] = True
            self.streamed_samples += n
            if log is not None:
                log.append((start, end, None))
            return Placement(n, n, 0)
        self._grow(end)
        before = self._length
        self._length = max(before, end)
        received = self._received[start:end]
        if start >= before or not received.any():
            # The usual case, audio arriving in order: a plain slice copy.
            self._audio[start:end] = pcm
            received[:] = True
            new = n
        else:
            fresh = ~received
            new = int(np.count_nonzero(fresh))
            if new:
                self._audio[start:end][fresh] = np.asarray(pcm)[fresh]
                received[fresh] = True
        overlap = n - new
        self.received_samples += new
        self.overlap_samples += overlap
        newly = 0
        if streamed:
            marks = self._streamed[start:end]
            newly = n - int(np.count_nonzero(marks)) if overlap else n
            if newly and log is not None:
                log.append((start, end, None if newly == n else ~marks))
            if newly:
                marks[:] = True
            self.streamed_samples += newly
        return Placement(new, newly, overlap)

    def audio(self, lo: int = 0, hi: int | None = None) -> npt.NDArray[np.int16]:
        """A copy of the audio (of samples ``lo:hi`` when given), zeros where nothing was
        received."""
        end = self._length if hi is None else min(hi, self._length)
        return self._audio[lo:end].copy()

    def received_mask(self) -> npt.NDArray[np.bool_]:
        """A copy of the received flags, one per sample."""
        return self._received[: self._length].copy()

    def streamed_mask(self) -> npt.NDArray[np.bool_]:
        """A copy of the streamed flags, one per sample."""
        return self._streamed[: self._length].copy()

    def streamed_ms(self) -> float:
        """Milliseconds of audio streamed (samples / 8)."""
        return self.streamed_samples / 8.0

    def received_ms(self) -> float:
        """Milliseconds of audio received (samples / 8)."""
        return self.received_samples / 8.0
