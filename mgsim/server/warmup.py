"""What a server does once, off its event loop, before it takes its first request.

Nothing on a request or media path may block the event loop (every live call's audio waits
for it), and a few things are slow the first time only: importing the simulation package
for ``PUT /_sim/v1/calls/{guid}/script`` (it imports jsonschema, whose optional format
checkers take seconds to load), building the reference validator that explains a refused
body, compiling each request schema's fast validator and reading the contract.
:func:`warm_up` does them all; the app's lifespan runs it in a worker thread before the
server starts listening, so a fresh ``mgsim serve`` answers its first requests as fast as
its later ones. In-process use (no lifespan, virtual time) pays them lazily instead, where
there is no live audio to delay.
"""

from __future__ import annotations

from mgsim.contract import _spec

__all__ = ["REQUEST_SCHEMAS", "warm_up"]

REQUEST_SCHEMAS = (
    "StartStreamingRequest",
    "StopStreamingRequest",
    "SimCallRequest",
    "SimScriptRequest",
    "FaultRuleRequest",
)
"""The schemas request bodies are validated against (see ``mgsim.server.app``)."""


def warm_up() -> None:
    """Import, read and compile now what the request paths would otherwise do the first
    time (blocking; run it off the event loop)."""
    import mgsim.sim.call  # noqa: F401  (jsonschema and soundfile, for scripts)

    _spec.spec_text()
    for name in REQUEST_SCHEMAS:
        _spec._fast_check(name)
        _spec._validator(name)
