"""Where a call's requests and media go: the embedded simulator, or a named target.

The rule, the same in the CLI, in Python and in the notebooks:

* A :class:`~mgsim.Client` goes where its arguments say (``base_url=`` or ``simulator=``);
  with neither, to ``MGSIM_BASE_URL`` if set, else to a new embedded simulator.
* Scenarios, ``mgsim call``, ``mgsim demo``, the panels and notebooks 01–05 always play into
  an embedded simulator they make themselves, whatever the environment says, unless a
  target is named: ``Scenario(target=Target(url))``, ``mgsim call --target URL``,
  ``RunPanel(target=...)``. ``MGSIM_BASE_URL`` never redirects them (the CLI says so on
  stderr when it is set), so a shell prepared for the sandbox does not break a demo.
* A :class:`Target` reads what it is not given from the same variables as everything else:
  ``ASAPP_API_ID`` / ``ASAPP_API_SECRET`` (control API), ``MGSIM_AUDIOHOOK_API_KEY`` /
  ``MGSIM_AUDIOHOOK_CLIENT_SECRET`` (AudioHook), ``MGSIM_WEBHOOK_SECRET`` (the webhook
  receiver). A loopback target with no credentials uses mgsim's local defaults.

>>> t = Target("http://127.0.0.1:8080", sip="sip:127.0.0.1:5070;transport=tcp")
>>> t.sip_address()
('127.0.0.1', 5070, 'tcp')
>>> "secret" in repr(Target("https://api.sandbox.asapp.com", api_secret="s3cret"))
False
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlparse

from mgsim.errors import ConfigError

__all__ = ["Target", "env_note", "parse_listen", "parse_sip_uri"]


def parse_sip_uri(uri: str) -> tuple[str, int, str]:
    """``(host, port, transport)`` of a SIP URI such as ``sip:srs.example.com:5060;transport=tcp``.

    The port defaults to 5060 and the transport to UDP (RFC 3261 §19.1); ``sips:`` (TLS) is
    refused with the reason, as mgsim's SIPREC client speaks UDP and TCP only.

    >>> parse_sip_uri("sip:10.0.0.5")
    ('10.0.0.5', 5060, 'udp')
    >>> parse_sip_uri("sip:recorder@[::1]:5080;transport=TCP")
    ('::1', 5080, 'tcp')
    """
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips"):
        raise ConfigError(f"--sip wants a SIP URI such as sip:HOST:PORT;transport=udp, got {uri!r}")
    if scheme.lower() == "sips":
        raise ConfigError(f"{uri}: SIP over TLS (sips:) is not supported; use sip: over UDP or TCP")
    hostport, *params = rest.split(";")
    hostport = hostport.rpartition("@")[2]
    transport = "udp"
    for param in params:
        name, _, value = param.partition("=")
        if name.lower() == "transport":
            transport = value.lower()
    if transport not in ("udp", "tcp"):
        raise ConfigError(f"{uri}: transport={transport} is not supported; use udp or tcp")
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise ConfigError(f"{uri}: the SIP URI names no host")
    if port_text and not port_text.isdigit():
        raise ConfigError(f"{uri}: the port {port_text!r} is not a number")
    port = int(port_text) if port_text else 5060
    if not 0 < port < 65536:
        raise ConfigError(f"{uri}: port {port} is out of range")
    return host, port, transport


def parse_listen(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``--webhook-listen``).

    >>> parse_listen("127.0.0.1:8099")
    ('127.0.0.1', 8099)
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--webhook-listen wants HOST:PORT, such as 127.0.0.1:8099; got {text!r}")
    return host.strip("[]"), int(port)


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in {"localhost", "::1"} or host.startswith("127.")


@dataclass(frozen=True)
class Target:
    """A gateway that is not the embedded one: its control API and where its media goes.

    ``base_url`` is the control API (start/stop-streaming, twilio-media-stream-url,
    conversation messages): another ``mgsim serve`` or ``https://api.sandbox.asapp.com``.
    Media follows the platform: Twilio streams to the URL the target's
    twilio-media-stream-url answers; AudioHook connects to ``audiohook_url`` (ws or wss)
    signed with the AudioHook key and secret; SIPREC sends SIP to ``sip`` (a SIP URI, UDP or
    TCP) and RTP where its SDP answer says; Amazon Connect writes Kinesis fragments, which
    only an ``mgsim serve`` target can take (see :mod:`mgsim.sim.target_scenario`). For an
    ``mgsim serve`` target the SIP and AudioHook addresses default to the server's own.

    ``webhook_listen`` (``(host, port)``) runs a transcript webhook receiver for the
    duration of the call; point the gateway's webhook at
    ``http://HOST:PORT/webhooks/transcripts`` with ``webhook_secret`` in
    ``X-Webhook-Secret``. Secrets never appear in the repr.
    """

    base_url: str
    api_id: str | None = field(default=None, repr=False)
    api_secret: str | None = field(default=None, repr=False)
    sip: str | None = None
    audiohook_url: str | None = None
    audiohook_api_key: str | None = field(default=None, repr=False)
    audiohook_client_secret: str | None = field(default=None, repr=False)
    webhook_listen: tuple[str, int] | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    settle_s: float = 10.0
    """How long to wait after the call for the target's transcripts to stop arriving."""

    def __post_init__(self) -> None:
        parsed = urlparse(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(
                f"a target is the gateway's HTTP(S) base URL, such as http://127.0.0.1:8080 "
                f"or https://api.sandbox.asapp.com; got {self.base_url!r}"
            )
        if self.sip is not None:
            parse_sip_uri(self.sip)
        if self.audiohook_url is not None and urlparse(self.audiohook_url).scheme not in (
            "ws",
            "wss",
        ):
            raise ConfigError(
                f"the AudioHook URL must be ws:// or wss://, got {self.audiohook_url!r}"
            )
        if self.settle_s < 0:
            raise ConfigError(f"settle_s must be >= 0, got {self.settle_s}")

    @property
    def loopback(self) -> bool:
        return _is_loopback(self.base_url)

    def credentials(self) -> tuple[str | None, str | None]:
        """The control API's id and secret: given, else ``ASAPP_API_ID``/``ASAPP_API_SECRET``
        (None for a loopback target: the client then uses mgsim's local defaults)."""
        api_id = self.api_id or os.environ.get("ASAPP_API_ID") or None
        api_secret = self.api_secret or os.environ.get("ASAPP_API_SECRET") or None
        return api_id, api_secret

    def audiohook_credentials(self) -> tuple[str | None, str | None]:
        """AudioHook key and client secret: given, else ``MGSIM_AUDIOHOOK_API_KEY`` /
        ``MGSIM_AUDIOHOOK_CLIENT_SECRET`` (the same names ``mgsim serve`` checks)."""
        key = self.audiohook_api_key or os.environ.get("MGSIM_AUDIOHOOK_API_KEY") or None
        secret = (
            self.audiohook_client_secret or os.environ.get("MGSIM_AUDIOHOOK_CLIENT_SECRET") or None
        )
        return key, secret

    def sip_address(self) -> tuple[str, int, str] | None:
        return None if self.sip is None else parse_sip_uri(self.sip)

    def secrets(self) -> list[str]:
        """Every secret this target may send (masked in journals and errors)."""
        found = [*self.credentials(), *self.audiohook_credentials(), self.webhook_secret]
        return [s for s in found if s]


def env_note(command: str) -> str | None:
    """What the CLI prints on stderr when ``MGSIM_BASE_URL`` is set but ``command`` plays
    into the embedded simulator anyway (None when it is not set)."""
    url = os.environ.get("MGSIM_BASE_URL")
    if not url:
        return None
    if command == "call":
        return (
            f"mgsim: note: MGSIM_BASE_URL is set ({url}), but calls play into the embedded "
            'simulator unless a target is named; add --target "$MGSIM_BASE_URL" to play '
            "this call to that gateway"
        )
    return (
        f"mgsim: note: MGSIM_BASE_URL is set ({url}); `mgsim {command}` always uses the "
        "embedded simulator (only Client() with no arguments follows MGSIM_BASE_URL)"
    )
