"""Vendor error codes (``HTTPSTATUS-SUBCODE``) and their default messages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorCode:
    status: int
    code: str
    message: str


_TABLE = [
    ErrorCode(400, "400-01", "Bad request"),
    ErrorCode(400, "400-201", "API parameter incorrect"),
    ErrorCode(400, "400-202", "Transcription parameter or combination incorrect"),
    ErrorCode(400, "400-203", "No call with the specified guid found"),
    ErrorCode(401, "401-01", "Unauthorized"),
    ErrorCode(403, "403-01", "Forbidden Response"),
    ErrorCode(404, "404-01", "Not Found"),
    ErrorCode(405, "405-01", "Method Not Allowed"),
    ErrorCode(409, "409-01", "Conflict"),
    ErrorCode(409, "409-201", "Call transcription already started or already stopped"),
    ErrorCode(409, "409-202", "Another API request for the same guid is pending"),
    ErrorCode(409, "409-203", "SIPREC BYE is being processed"),
    ErrorCode(413, "413-01", "Request Entity Too Large"),
    ErrorCode(415, "415-01", "Unsupported Media Type"),
    ErrorCode(422, "422-01", "Unprocessable Entity"),
    ErrorCode(429, "429-01", "Too Many Requests"),
    ErrorCode(500, "500-01", "Internal server error"),
    ErrorCode(500, "500-201", "Internal error"),
    ErrorCode(503, "503-01", "Service Unavailable"),
    ErrorCode(504, "504-01", "Gateway Timeout"),
]

CODES: dict[str, ErrorCode] = {c.code: c for c in _TABLE}
"""Every vendor error code mgsim can answer, by code."""


class Problem(Exception):
    """Raised inside the simulator to answer with a vendor error envelope.

    >>> p = Problem("409-201", "Call transcription already started")
    >>> (p.status, p.code)
    (409, '409-201')
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        entry = CODES[code]
        self.code = code
        self.status = entry.status
        self.message = message or entry.message
        super().__init__(f"{code}: {self.message}")
