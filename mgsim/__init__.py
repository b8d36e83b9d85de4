"""mgsim: a lab for ASAPP's AutoTranscribe Media Gateway.

>>> from mgsim import Client, Simulator
>>> with Client(simulator=Simulator(virtual=True)) as client:
...     client.embedded
True
"""

from __future__ import annotations

from mgsim.client import AsyncClient, Client, RetryPolicy
from mgsim.clock import SystemClock, VirtualClock
from mgsim.contract.models import (
    AmazonConnectParams,
    AutotranscribeParams,
    GenesysAudioHookParams,
    SiprecParams,
    StreamingResult,
    TwilioParams,
)
from mgsim.errors import ApiError, MgsimError
from mgsim.journal import Journal
from mgsim.server.config import Faults, SimulatorConfig
from mgsim.server.faults import FaultRule
from mgsim.server.webhooks import WebhookFaults
from mgsim.simulator import Simulator

__version__ = "0.1.0.dev0"

__all__ = [
    "AmazonConnectParams",
    "ApiError",
    "AsyncClient",
    "AutotranscribeParams",
    "Client",
    "FaultRule",
    "Faults",
    "GenesysAudioHookParams",
    "Journal",
    "MgsimError",
    "RetryPolicy",
    "Simulator",
    "SimulatorConfig",
    "SiprecParams",
    "StreamingResult",
    "SystemClock",
    "TwilioParams",
    "VirtualClock",
    "WebhookFaults",
    "__version__",
]
