"""The simulated gateway: per-call state where the control plane and the media plane meet."""

from __future__ import annotations

from mgsim.gateway.calls import CallState, Gateway, Segment, StartParams
from mgsim.gateway.mapping import ROLES, channel_roles, default_channels

__all__ = [
    "ROLES",
    "CallState",
    "Gateway",
    "Segment",
    "StartParams",
    "channel_roles",
    "default_channels",
]
