"""The one exception tree of mgsim.

::

    MgsimError                      every error mgsim raises on purpose
    ├── ConfigError                 bad configuration or arguments (also a ValueError)
    ├── ApiError                    the gateway answered with the vendor error envelope
    │   ├── BadRequestError         400-xx (400-201 parameter, 400-202 combination, 400-203 guid)
    │   ├── AuthenticationError     401-xx
    │   ├── PermissionError_        403-xx
    │   ├── NotFoundError           404-xx
    │   ├── ConflictError           409-xx (409-201 started/stopped, 409-202 pending, 409-203 BYE)
    │   ├── PayloadTooLargeError    413-xx
    │   ├── RateLimitError          429-xx
    │   └── ServerError             5xx
    ├── TransportError              no HTTP answer at all (connection refused, timeout)
    └── MediaError                  a wire format could not be decoded (also a ValueError)
        └── one subclass per platform module in :mod:`mgsim.media`

``ConfigError`` has subclasses where input comes from files: ``mgsim.sim.script.ScriptError``
(a call script, with its line number).

API errors carry the vendor ``code`` (``"409-201"``), the ``request_id`` and the HTTP
``status`` so a caller can branch on them without parsing messages.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "MediaError",
    "MgsimError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionError_",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "api_error_for",
]


class MgsimError(Exception):
    """Root of every error mgsim raises on purpose."""


class ConfigError(MgsimError, ValueError):
    """A configuration value or argument is invalid."""


class TransportError(MgsimError):
    """The request got no HTTP answer (connection refused, timed out, reset)."""


class MediaError(MgsimError, ValueError):
    """A wire-format message could not be decoded.

    Platform modules subclass it; ``reason`` is a short machine-readable tag
    (``"bad-json"``, ``"bad-base64"``, ``"truncated"``...) used for counting.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class ApiError(MgsimError):
    """The gateway answered with the vendor error envelope.

    >>> err = ApiError(409, "409-201", "Call transcription already started", "abc")
    >>> (err.status, err.code, err.request_id)
    (409, '409-201', 'abc')
    """

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{code}: {message} (requestId={request_id})")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class BadRequestError(ApiError):
    """400: malformed request, bad parameter, bad combination or unknown guid."""


class AuthenticationError(ApiError):
    """401: credentials missing."""


class PermissionError_(ApiError):
    """403: credentials wrong."""


class NotFoundError(ApiError):
    """404: no such path or resource."""


class ConflictError(ApiError):
    """409: state conflict (already started/stopped, request pending, BYE)."""


class PayloadTooLargeError(ApiError):
    """413: request body over the documented limit."""


class RateLimitError(ApiError):
    """429: spike arrest or daily quota."""


class ServerError(ApiError):
    """5xx: the gateway failed or is unavailable."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionError_,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitError,
}


def api_error_for(status: int, code: str, message: str, request_id: str | None = None) -> ApiError:
    """Build the most specific :class:`ApiError` subclass for an HTTP status."""
    cls = ServerError if status >= 500 else _BY_STATUS.get(status, ApiError)
    return cls(status, code, message, request_id)
