"""HTTP message signatures on the AudioHook WebSocket upgrade (RFC 9421, HMAC-SHA256).

Genesys Cloud signs the ``GET`` that opens an AudioHook connection. The signature base lists
each covered component on its own line as ``"name": value`` -- derived components such as
``@request-target`` and ``@authority`` first as listed, header names lowercased -- and ends
with the ``"@signature-params"`` line, which repeats the ``Signature-Input`` value. The MAC
is HMAC-SHA256 keyed with the base64-decoded client secret; ``keyid`` is the API key.

>>> headers = {"X-API-KEY": "k", "Audiohook-Session-Id": "s",
...            "Audiohook-Organization-Id": "o", "Audiohook-Correlation-Id": "c"}
>>> signed = sign_request("GET", "/ws", "example.com", headers, client_secret_b64="c2VjcmV0",
...                       key_id="k", nonce="bm9uY2Utb2YtMjItY2hhcnM", created=100, expires=200)
>>> verify_signature("GET", "/ws", "example.com", {**headers, **signed},
...                  client_secret_b64="c2VjcmV0", api_key="k", now=102.0)

Freshness follows the reference verifier Genesys publishes, with a clock-skew allowance of
:data:`CLOCK_SKEW_S` (3 s) between the client's clock and the server's: ``created`` is
required and may be at most 3 s in the future; the signature may be at most
:data:`MAX_SIGNATURE_AGE_S` (10 s) old counting the skew against it (so about 7 s by the
server's clock), since a client signs the upgrade the moment it connects; ``expires``, when
given, must be more than 3 s away; the ``nonce`` is required and at least 22 characters (128
random bits in base64). A :class:`NonceCache` also refuses a nonce seen again while its
signature could still be fresh (a replayed upgrade).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from mgsim.errors import ConfigError, MediaError

__all__ = [
    "AUDIOHOOK_COMPONENTS",
    "CLOCK_SKEW_S",
    "MAX_SIGNATURE_AGE_S",
    "MIN_NONCE_CHARS",
    "AudioHookSignatureError",
    "NonceCache",
    "check_api_key",
    "sign_request",
    "signature_base",
    "verify_signature",
]

AUDIOHOOK_COMPONENTS: tuple[str, ...] = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
"""The components Genesys covers, in its order; a verifier requires every one of them."""

CLOCK_SKEW_S = 3.0
"""Allowed difference between the client's clock and the server's (the reference's 3 s)."""
MAX_SIGNATURE_AGE_S = 10.0
"""How old a signature may be (``created`` plus this, less the skew, must not have passed)."""
MIN_NONCE_CHARS = 22
"""The shortest nonce accepted: 128 bits in base64."""

_ALG = "hmac-sha256"
_DERIVED = frozenset({"@method", "@request-target", "@authority", "@path", "@query"})


class AudioHookSignatureError(MediaError):
    """The upgrade request's signature is missing, malformed or wrong.

    ``reason`` is one of ``"missing-header"``, ``"malformed"``, ``"unknown-keyid"``,
    ``"api-key-mismatch"``, ``"bad-alg"``, ``"expired"``, ``"not-yet-valid"``,
    ``"bad-nonce"`` (missing or shorter than 22 characters), ``"replayed"`` (a nonce seen
    before), ``"missing-component"``, ``"mismatch"`` or ``"unexpected-signature"`` (a signed
    request where only unsigned ones are configured). A gateway answers all of them with
    HTTP 401.
    """


class NonceCache:
    """Nonces of recently accepted signatures, kept while they could still be fresh, so a
    replayed upgrade request is refused. Bounded by how many upgrades arrive in
    :data:`MAX_SIGNATURE_AGE_S` plus twice the skew.

    >>> cache = NonceCache()
    >>> cache.check_and_add("n" * 22, now=100.0)
    >>> cache.check_and_add("n" * 22, now=101.0)
    Traceback (most recent call last):
    ...
    mgsim.media.audiohook_signature.AudioHookSignatureError: nonce was used before
    """

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._expiry)

    def check_and_add(self, nonce: str, *, now: float) -> None:
        expiry = self._expiry
        # Insertion order is expiry order: every nonce is kept for the same window.
        while expiry:
            oldest, until = next(iter(expiry.items()))
            if until >= now:
                break
            del expiry[oldest]
        if nonce in self._expiry:
            raise AudioHookSignatureError("nonce was used before", reason="replayed")
        self._expiry[nonce] = now + MAX_SIGNATURE_AGE_S + 2 * CLOCK_SKEW_S


def _secret(client_secret_b64: str) -> bytes:
    try:
        return base64.b64decode(client_secret_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"client secret is not valid base64: {exc}") from exc


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _component_value(
    name: str, method: str, path: str, authority: str, headers: dict[str, str]
) -> str | None:
    if name == "@method":
        return method.upper()
    if name == "@request-target":
        return path
    if name == "@authority":
        return authority.strip().lower()
    if name == "@path":
        return path.split("?", 1)[0] or "/"
    if name == "@query":
        return "?" + path.split("?", 1)[1] if "?" in path else "?"
    value = headers.get(name)
    # RFC 9421 2.1: header values are trimmed of surrounding whitespace.
    return None if value is None else value.strip()


def _params_value(
    components: Sequence[str],
    *,
    key_id: str,
    nonce: str | None,
    created: int | None,
    expires: int | None,
) -> str:
    parts = ["(" + " ".join(f'"{c}"' for c in components) + ")", f'keyid="{key_id}"']
    if nonce is not None:
        parts.append(f'nonce="{nonce}"')
    parts.append(f'alg="{_ALG}"')
    if created is not None:
        parts.append(f"created={created}")
    if expires is not None:
        parts.append(f"expires={expires}")
    return ";".join(parts)


def signature_base(
    method: str,
    path: str,
    authority: str,
    headers: Mapping[str, str],
    components: Sequence[str],
    params_value: str,
) -> str:
    """The RFC 9421 signature base for ``components`` and a ``Signature-Input`` value.

    Raises :class:`AudioHookSignatureError` (``"missing-component"``) when a covered header
    is absent from ``headers``.
    """
    lowered = _lower(headers)
    lines = []
    for name in components:
        value = _component_value(name, method, path, authority, lowered)
        if value is None:
            raise AudioHookSignatureError(
                f"covered component {name!r} is not in the request", reason="missing-component"
            )
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {params_value}')
    return "\n".join(lines)


def _mac(secret: bytes, base: str) -> bytes:
    return hmac.new(secret, base.encode("utf-8"), hashlib.sha256).digest()


def sign_request(
    method: str,
    path: str,
    authority: str,
    headers: Mapping[str, str],
    *,
    client_secret_b64: str,
    key_id: str,
    nonce: str | None,
    created: int | None,
    expires: int | None,
    components: Sequence[str] = AUDIOHOOK_COMPONENTS,
    label: str = "sig1",
) -> dict[str, str]:
    """Sign an upgrade request the way Genesys Cloud does.

    Returns the two headers to add: ``{"Signature-Input": ..., "Signature": ...}``. ``path``
    is the request target (path and query). Every header in ``components`` must be present.
    """
    for name in components:
        if name.startswith("@") and name not in _DERIVED:
            raise ConfigError(f"unsupported derived component {name!r}")
    params = _params_value(components, key_id=key_id, nonce=nonce, created=created, expires=expires)
    base = signature_base(method, path, authority, headers, components, params)
    digest = base64.b64encode(_mac(_secret(client_secret_b64), base)).decode("ascii")
    return {"Signature-Input": f"{label}={params}", "Signature": f"{label}=:{digest}:"}


# Just enough of RFC 8941 structured fields for one signature: a label, an inner list of
# strings and ;key=value parameters whose values are strings or integers.
_INPUT_RE = re.compile(r'\s*([a-z*][a-z0-9_.*-]*)=\(((?:\s*"[^"\\]*")*)\s*\)((?:;[^,]*)?)\s*$')
_PARAM_RE = re.compile(r';\s*([a-z*][a-z0-9_.*-]*)=(?:"([^"\\]*)"|(-?\d{1,15}))')
_SIG_RE = re.compile(r"\s*([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/=]*):\s*$")


def _parse_input(value: str) -> tuple[str, list[str], dict[str, str | int], str]:
    match = _INPUT_RE.match(value)
    if match is None:
        raise AudioHookSignatureError(
            "Signature-Input is not a single signature definition", reason="malformed"
        )
    label, inner, raw_params = match.groups()
    components = re.findall(r'"([^"\\]*)"', inner)
    params: dict[str, str | int] = {}
    pos = 0
    while pos < len(raw_params):
        pm = _PARAM_RE.match(raw_params, pos)
        if pm is None:
            raise AudioHookSignatureError(
                f"Signature-Input parameters are malformed: {raw_params!r}", reason="malformed"
            )
        key, text, number = pm.groups()
        params[key] = text if text is not None else int(number)
        pos = pm.end()
    # The covered list and parameters exactly as sent, for the @signature-params line.
    return label, components, params, value.strip()[len(label) + 1 :]


def _require_header(headers: dict[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if value is None or not value.strip():
        raise AudioHookSignatureError(f"request has no {name} header", reason="missing-header")
    return value


def check_api_key(headers: Mapping[str, str], api_key: str) -> None:
    """Check an unsigned upgrade request: ``X-API-KEY`` must be ``api_key`` (compared in
    constant time) and no signature may be present, since none is configured."""
    lowered = _lower(headers)
    if "signature" in lowered or "signature-input" in lowered:
        raise AudioHookSignatureError(
            "request is signed but no client secret is configured (unsigned connections only)",
            reason="unexpected-signature",
        )
    given = _require_header(lowered, "X-API-KEY").strip()
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        raise AudioHookSignatureError("X-API-KEY is not the configured key", reason="unknown-keyid")


def verify_signature(
    method: str,
    path: str,
    authority: str,
    headers: Mapping[str, str],
    *,
    client_secret_b64: str,
    api_key: str,
    now: float,
    clock_skew: float = CLOCK_SKEW_S,
    max_age: float = MAX_SIGNATURE_AGE_S,
    nonces: NonceCache | None = None,
    required: Sequence[str] = AUDIOHOOK_COMPONENTS,
) -> None:
    """Check an AudioHook upgrade request's signature; return ``None`` when it is valid.

    ``now`` is the verifier's clock (Unix seconds), injected so tests and virtual time work.
    Freshness is checked as the module docstring says, with ``clock_skew`` and ``max_age``;
    ``nonces``, when given, refuses a nonce seen before and remembers this one once the
    signature is valid. The ``keyid`` and the ``X-API-KEY`` header must both equal
    ``api_key``; ``required`` components must be covered. Raises
    :class:`AudioHookSignatureError` with the first problem found.
    """
    lowered = _lower(headers)
    sig_input = _require_header(lowered, "Signature-Input")
    sig_value = _require_header(lowered, "Signature")
    label, components, params, params_value = _parse_input(sig_input)
    sig_match = _SIG_RE.match(sig_value)
    if sig_match is None or sig_match.group(1) != label:
        raise AudioHookSignatureError(
            f"Signature has no byte sequence labelled {label!r}", reason="malformed"
        )
    try:
        claimed = base64.b64decode(sig_match.group(2), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AudioHookSignatureError(
            f"Signature is not base64: {exc}", reason="malformed"
        ) from exc

    if params.get("keyid") != api_key:
        raise AudioHookSignatureError(
            f"unknown keyid {params.get('keyid')!r}", reason="unknown-keyid"
        )
    if _require_header(lowered, "X-API-KEY").strip() != api_key:
        raise AudioHookSignatureError(
            "X-API-KEY does not match the key of the signature", reason="api-key-mismatch"
        )
    alg = params.get("alg", _ALG)
    if alg != _ALG:
        raise AudioHookSignatureError(f"unsupported alg {alg!r}", reason="bad-alg")
    created, expires = params.get("created"), params.get("expires")
    if not isinstance(created, int) or (expires is not None and not isinstance(expires, int)):
        raise AudioHookSignatureError(
            "created must be an integer and expires absent or an integer", reason="malformed"
        )
    if created > now + clock_skew:
        raise AudioHookSignatureError(
            f"signature created at {created}, {created - now:.0f} s ahead of the server's "
            f"clock (allowed: {clock_skew:g} s)",
            reason="not-yet-valid",
        )
    if created + max_age < now + clock_skew:
        raise AudioHookSignatureError(
            f"signature created at {created} is {now - created:.0f} s old (at most "
            f"{max_age - clock_skew:g} s, {max_age:g} s less the {clock_skew:g} s skew)",
            reason="expired",
        )
    if expires is not None and expires < now + clock_skew:
        raise AudioHookSignatureError(
            f"signature expires at {expires}, within the {clock_skew:g} s skew of now ({now:.0f})",
            reason="expired",
        )
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or len(nonce) < MIN_NONCE_CHARS:
        raise AudioHookSignatureError(
            f"nonce must be at least {MIN_NONCE_CHARS} characters, got "
            f"{'none' if nonce is None else len(str(nonce))}",
            reason="bad-nonce",
        )
    missing = [name for name in required if name not in components]
    unknown = [c for c in components if c.startswith("@") and c not in _DERIVED]
    if missing or unknown:
        raise AudioHookSignatureError(
            f"signature does not cover {missing or unknown}", reason="missing-component"
        )
    base = signature_base(method, path, authority, headers, components, params_value)
    if not hmac.compare_digest(_mac(_secret(client_secret_b64), base), claimed):
        raise AudioHookSignatureError("signature does not match the request", reason="mismatch")
    if nonces is not None:
        nonces.check_and_add(nonce, now=now)
