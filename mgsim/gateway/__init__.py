"""The simulated gateway: per-call state where the control plane and the media plane meet.

* :mod:`~mgsim.gateway.calls`: calls, streaming segments and their state machine;
* :mod:`~mgsim.gateway.timeline`: each channel's audio with received/streamed masks;
* :mod:`~mgsim.gateway.accounting`: where every media message went;
* :mod:`~mgsim.gateway.sessions`: media sessions feeding calls from each platform's decoder
  (their shared machinery in :mod:`~mgsim.gateway.media_session`);
* :mod:`~mgsim.gateway.kvs`: Amazon Connect's Kinesis Video store, ingest and readers;
* :mod:`~mgsim.gateway.mapping`: platform channel labels to customer/agent;
* :mod:`~mgsim.gateway.guids`: the one spelling a call's guid is kept under.
"""

from __future__ import annotations

from mgsim.gateway.accounting import Accounting
from mgsim.gateway.calls import CallState, Gateway, MediaBinding, Segment, StartParams
from mgsim.gateway.mapping import ROLES, channel_roles, default_channels
from mgsim.gateway.sessions import MediaSession, open_media_session
from mgsim.gateway.timeline import Timeline

__all__ = [
    "ROLES",
    "Accounting",
    "CallState",
    "Gateway",
    "MediaBinding",
    "MediaSession",
    "Segment",
    "StartParams",
    "Timeline",
    "channel_roles",
    "default_channels",
    "open_media_session",
]
