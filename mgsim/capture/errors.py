"""The error a capture that cannot be read raises."""

from __future__ import annotations

from mgsim.errors import ConfigError

__all__ = ["CaptureError"]


class CaptureError(ConfigError):
    """A capture file that cannot be read as a call: truncated, an unknown format or link
    type, no call in it, lines that are not JSON. A :class:`~mgsim.errors.ConfigError`, so
    the CLI prints it on one line (exit 2)."""
