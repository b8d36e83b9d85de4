"""Which platform channel carries the customer and which the agent.

Each platform labels its audio its own way; ASAPP's start-streaming parameters say how to
read the labels:

========================  ===================================  ===========================
namespace                 channels (platform labels)           decided by
========================  ===================================  ===========================
``siprec``                ``"0"``, ``"1"`` (SDP m-line order)  ``siprecParams.mediaLineOrder``
``twilio``                ``"inbound"``, ``"outbound"``        ``twilioParams.trackMap``
``genesysaudiohook``      ``"external"``, ``"internal"``       fixed: external = customer
``amazonconnect``         ``AUDIO_FROM_CUSTOMER`` / ``_TO_``   fixed by track name
========================  ===================================  ===========================
"""

from __future__ import annotations

from typing import Any, Final, Literal

Role = Literal["customer", "agent"]
ROLES: Final[tuple[Role, Role]] = ("customer", "agent")

_DEFAULT_CHANNELS: Final[dict[str, tuple[str, str]]] = {
    "siprec": ("0", "1"),
    "twilio": ("inbound", "outbound"),
    "genesysaudiohook": ("external", "internal"),
    "amazonconnect": ("AUDIO_FROM_CUSTOMER", "AUDIO_TO_CUSTOMER"),
}


def default_channels(namespace: str) -> tuple[str, str]:
    """The two channel labels a namespace's media session carries."""
    return _DEFAULT_CHANNELS[namespace]


def channel_roles(namespace: str, params: dict[str, Any]) -> dict[str, Role]:
    """Map each channel label of ``namespace`` to a role, given start-streaming ``params``.

    >>> channel_roles("siprec", {"siprecParams": {"mediaLineOrder": "AGENT_FIRST"}})
    {'0': 'agent', '1': 'customer'}
    >>> channel_roles("twilio", {})
    {'inbound': 'customer', 'outbound': 'agent'}
    """
    if namespace == "siprec":
        order = (params.get("siprecParams") or {}).get("mediaLineOrder", "CUSTOMER_FIRST")
        return (
            {"0": "customer", "1": "agent"}
            if order == "CUSTOMER_FIRST"
            else {
                "0": "agent",
                "1": "customer",
            }
        )
    if namespace == "twilio":
        track_map = (params.get("twilioParams") or {}).get("trackMap") or {}
        return {
            "inbound": track_map.get("inbound", "customer"),
            "outbound": track_map.get("outbound", "agent"),
        }
    if namespace == "genesysaudiohook":
        return {"external": "customer", "internal": "agent"}
    if namespace == "amazonconnect":
        return {"AUDIO_FROM_CUSTOMER": "customer", "AUDIO_TO_CUSTOMER": "agent"}
    raise ValueError(f"unknown namespace {namespace!r}")
