"""Configuration of a simulated gateway."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mgsim.errors import ConfigError
from mgsim.server.faults import FaultRule
from mgsim.server.webhooks import WebhookFaults

__all__ = [
    "DEFAULT_API_ID",
    "DEFAULT_API_SECRET",
    "DEFAULT_AUDIOHOOK_API_KEY",
    "DEFAULT_AUDIOHOOK_CLIENT_SECRET",
    "Faults",
    "SimulatorConfig",
]

DEFAULT_API_ID = "mgsim-local"
"""Credentials a fresh simulator accepts when none are configured. For loopback use only:
``mgsim serve`` refuses to listen beyond 127.0.0.1 while these are in force."""
DEFAULT_API_SECRET = "mgsim-local-secret"
DEFAULT_AUDIOHOOK_API_KEY = "mgsim-local-audiohook-key"
"""The AudioHook API key (``X-API-KEY`` and signature ``keyid``) accepted by default."""
DEFAULT_AUDIOHOOK_CLIENT_SECRET = "bWdzaW0tbG9jYWwtYXVkaW9ob29rLWNsaWVudC1zZWNyZXQ="
"""The base64 AudioHook client secret (HMAC key of the upgrade signature) by default."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Seeded fault injection on the control plane.

    ``latency_ms`` is added to every vendor request before it takes effect (plus a uniform
    jitter of up to ``jitter_ms``); the rates are probabilities per request of answering
    503-01, 500-201 or 429-01 instead of processing it. A rejected request changes nothing.
    These apply to every request that no :class:`~mgsim.server.faults.FaultRule` decides
    (see ``SimulatorConfig.fault_rules`` and docs/FAULTS.md).
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_503: float = 0.0
    rate_500: float = 0.0
    rate_429: float = 0.0

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"Faults.{name} must be >= 0")
        total = self.rate_503 + self.rate_500 + self.rate_429
        for name in ("rate_503", "rate_500", "rate_429"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"Faults.{name} must be between 0 and 1")
        if total > 1.0:
            raise ConfigError("the fault rates add up to more than 1")


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything a simulated gateway can be told.

    ``seed`` makes request ids, stream ids and faults reproducible (notebooks and tests set
    it); ``None`` draws from the operating system.
    """

    api_id: str = field(default=DEFAULT_API_ID, repr=False)
    api_secret: str = field(default=DEFAULT_API_SECRET, repr=False)
    spike_arrest_per_s: int | None = 100
    daily_quota: int | None = 10_000
    max_body_bytes: int = 64 * 1024
    redaction_rules_configured: bool = True
    public_url: str | None = None
    twilio_url_ttl_s: float = 300.0
    seed: int | None = None
    faults: Faults = field(default_factory=Faults)
    sip_port: int | None = None
    """UDP and TCP port of the SIP listener (0: any free port); None: no SIP listener. The
    listeners run only under a real ASGI server (its lifespan), never in-process."""
    media_host: str = "127.0.0.1"
    """Address the SIP and RTP sockets bind (and the SDP answer names)."""
    rtp_ports: tuple[int, int] | None = None
    """Inclusive range of UDP ports for RTP and RTCP (per SIPREC call two even RTP ports,
    each with its RTCP port next to it, RFC 3550 11); None: any free ports."""
    audiohook_api_key: str = field(default=DEFAULT_AUDIOHOOK_API_KEY, repr=False)
    """The AudioHook integration's API key (``X-API-KEY`` and the signature's ``keyid``)."""
    audiohook_client_secret: str | None = field(default=DEFAULT_AUDIOHOOK_CLIENT_SECRET, repr=False)
    """The integration's client secret (base64), the HMAC key of the upgrade's signature;
    None: connections are unsigned and the API key alone admits them (an AudioHook
    integration configured without a client secret)."""
    webhook_url: str | None = None
    """Where transcript webhooks are POSTed (None: kept in memory only)."""
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_secret_header: str = "X-Webhook-Secret"
    webhook_faults: WebhookFaults = field(default_factory=WebhookFaults)
    """Drops and delays of transcript webhooks (whichever target is in use)."""
    fault_rules: tuple[FaultRule, ...] = ()
    """Per-request fault rules the simulator starts with, tried in order before ``faults``;
    more can be added at run time (``Simulator.faults``, ``POST /_sim/v1/faults``)."""
    hang_cap_s: float = 30.0
    """How long a request under a timeout rule is held at most when its client does not
    give up first; then the gateway answers 504-01."""
    rtp_timeout_s: float = 30.0
    """RTP silence after which a SIPREC call whose BYE never came is ended as dropped
    (``media-timeout``); paused recordings do not count."""
    keep_calls: int = 1000
    """How many ended calls the gateway keeps, most recent first: their state
    (``GET /_sim/v1/calls/{guid}``) and transcript messages (the conversation API). Older
    ones are let go as newer calls end, so a long-running server stays in flat memory; the
    most recent 64 (or ``keep_calls`` if fewer) also keep their audio."""
    capture_dir: str | None = None
    """Where to write one capture of every call received over a real transport
    (``mgsim serve --capture DIR``; :mod:`mgsim.capture.live`); None: no captures."""

    def __post_init__(self) -> None:
        if not self.api_id or not self.api_secret:
            raise ConfigError("api_id and api_secret must not be empty")
        if self.spike_arrest_per_s is not None and self.spike_arrest_per_s < 1:
            raise ConfigError("spike_arrest_per_s must be >= 1 (or None to switch it off)")
        if self.daily_quota is not None and self.daily_quota < 1:
            raise ConfigError("daily_quota must be >= 1 (or None to switch it off)")
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        if self.sip_port is not None and not 0 <= self.sip_port <= 65535:
            raise ConfigError("sip_port must be a port number (0: any free port)")
        if self.rtp_ports is not None:
            low, high = self.rtp_ports
            if not 1024 <= low < high <= 65535:
                raise ConfigError("rtp_ports must be a range (low, high) within 1024..65535")
            if (high + 1 - (low + low % 2)) // 2 < 2:
                # One call needs two RTP ports, each even with its RTCP port next to it.
                raise ConfigError(
                    "rtp_ports must hold two even/odd RTP/RTCP port pairs (4 ports from an "
                    f"even one), got {low}-{high}"
                )
        object.__setattr__(self, "fault_rules", tuple(self.fault_rules))
        if not all(isinstance(rule, FaultRule) for rule in self.fault_rules):
            raise ConfigError("fault_rules must be FaultRule instances")
        if not 0 < self.hang_cap_s <= 3600:
            raise ConfigError("hang_cap_s must be in (0, 3600] seconds")
        if not self.rtp_timeout_s > 0:
            raise ConfigError("rtp_timeout_s must be > 0 seconds")
        if isinstance(self.keep_calls, bool) or not isinstance(self.keep_calls, int):
            raise ConfigError(f"keep_calls must be an integer, got {self.keep_calls!r}")
        if self.keep_calls < 1:
            raise ConfigError(f"keep_calls must be >= 1 (ended calls kept), got {self.keep_calls}")
        if not self.audiohook_api_key or self.audiohook_client_secret == "":
            raise ConfigError(
                "the AudioHook API key and client secret must not be empty (no client secret "
                "at all, for unsigned connections, is audiohook_client_secret=None)"
            )

    @property
    def uses_default_credentials(self) -> bool:
        return self.api_id == DEFAULT_API_ID or self.api_secret == DEFAULT_API_SECRET

    @property
    def uses_default_audiohook_secret(self) -> bool:
        return self.audiohook_api_key == DEFAULT_AUDIOHOOK_API_KEY or (
            self.audiohook_client_secret == DEFAULT_AUDIOHOOK_CLIENT_SECRET
        )

    @classmethod
    def from_env(cls, **overrides: object) -> SimulatorConfig:
        """Read ``MGSIM_API_ID`` / ``MGSIM_API_SECRET`` and ``MGSIM_AUDIOHOOK_API_KEY`` /
        ``MGSIM_AUDIOHOOK_CLIENT_SECRET`` (falling back to the local defaults), and
        ``MGSIM_WEBHOOK_URL`` / ``MGSIM_WEBHOOK_SECRET`` (no webhooks when unset).
        ``overrides`` win (``audiohook_client_secret=None`` for unsigned AudioHook)."""
        values: dict[str, object] = {
            "api_id": os.environ.get("MGSIM_API_ID") or DEFAULT_API_ID,
            "api_secret": os.environ.get("MGSIM_API_SECRET") or DEFAULT_API_SECRET,
            "audiohook_api_key": os.environ.get("MGSIM_AUDIOHOOK_API_KEY")
            or DEFAULT_AUDIOHOOK_API_KEY,
            "audiohook_client_secret": os.environ.get("MGSIM_AUDIOHOOK_CLIENT_SECRET")
            or DEFAULT_AUDIOHOOK_CLIENT_SECRET,
            "webhook_url": os.environ.get("MGSIM_WEBHOOK_URL") or None,
            "webhook_secret": os.environ.get("MGSIM_WEBHOOK_SECRET") or None,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
