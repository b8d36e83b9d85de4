"""mgsim: a lab for ASAPP's AutoTranscribe Media Gateway."""

from __future__ import annotations

__version__ = "0.1.0.dev0"
