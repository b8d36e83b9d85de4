"""Signed, short-lived tokens for the Twilio media stream URL."""

from __future__ import annotations

import secrets

import jwt

from mgsim.clock import Clock

__all__ = ["TokenError", "TwilioTokens"]


class TokenError(Exception):
    """The token in a media stream URL is malformed, forged or expired."""


class TwilioTokens:
    """Issue and check HS256 tokens that expire ``ttl_s`` after issue.

    The signing key is random per simulator: tokens never outlive the process that made them.
    """

    def __init__(self, clock: Clock, ttl_s: float = 300.0, key: bytes | None = None) -> None:
        self._clock = clock
        self._ttl = ttl_s
        self._key = key or secrets.token_bytes(32)

    def issue(self, subject: str) -> str:
        iat = self._clock.wall().timestamp()
        # The claims are readable by anyone holding the URL: they name no credential.
        claims = {
            "sub": subject,
            "iat": int(iat),
            "exp": iat + self._ttl,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def check(self, token: str) -> dict[str, object]:
        """Return the claims, or raise :class:`TokenError` saying why not."""
        now = self._clock.wall().timestamp()
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                options={"verify_exp": False, "require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid media stream token: {exc}") from None
        exp = claims["exp"]
        if not isinstance(exp, int | float) or now >= exp:
            raise TokenError("the media stream URL has expired (its TTL is 5 minutes)")
        return claims
