"""SIP messages (RFC 3261): parse and build requests and responses, frame them on a stream.

A :class:`SipMessage` is a start line, an ordered list of headers and a body. Parsing accepts
what real SBCs send: compact header names (``i:`` for ``Call-ID``, ``l:`` for
``Content-Length``...), folded header lines, bare-LF line ends and leading keep-alive CRLFs.
Anything malformed raises :class:`SipError`, whose ``sip_status`` is the status a server
answers with and whose :meth:`SipError.to_response` builds that answer.

Over UDP one datagram is one message (:func:`parse_message`); over TCP messages follow each
other and ``Content-Length`` frames them (:class:`SipStreamParser`).

>>> msg = parse_message(
...     b"OPTIONS sip:srs@example.com SIP/2.0\\r\\nv: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\\r\\n"
...     b"f: <sip:a@example.com>;tag=1\\r\\nt: <sip:srs@example.com>\\r\\ni: abc\\r\\n"
...     b"CSeq: 1 OPTIONS\\r\\nl: 0\\r\\n\\r\\n")
>>> (msg.method, msg.get("Call-ID"), response_to(msg, 200).start_line)
('OPTIONS', 'abc', 'SIP/2.0 200 OK')
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mgsim.errors import MediaError

__all__ = [
    "MAX_MESSAGE",
    "REASONS",
    "BodyPart",
    "SipError",
    "SipMessage",
    "SipStreamParser",
    "build_multipart",
    "canonical_name",
    "header_param",
    "local_tag",
    "parse_content_type",
    "parse_message",
    "parse_multipart",
    "response_to",
]

MAX_MESSAGE = 65535
"""Largest message accepted by default (the largest UDP datagram); bigger ones get 513."""

REASONS: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    415: "Unsupported Media Type",
    420: "Bad Extension",
    421: "Extension Required",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    513: "Message Too Large",
}
"""Reason phrases of the statuses mgsim sends."""

# RFC 3261 section 7.3.3 and the later RFCs that added one-letter names.
_COMPACT = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        *_COMPACT.values(),
        "Accept",
        "Allow",
        "Call-Info",
        "Content-Disposition",
        "CSeq",
        "Max-Forwards",
        "MIME-Version",
        "Record-Route",
        "Require",
        "Unsupported",
        "User-Agent",
        "Warning",
        "User-to-User",
        "WWW-Authenticate",
    )
}
_TOKEN = re.compile(r"[!%'*+\-.0-9A-Za-z^_`|~]+\Z")
_REQUEST_LINE = re.compile(r"([!%'*+\-.0-9A-Za-z^_`|~]+) (\S+) SIP/2\.0\Z")
_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9]) ?(.*)\Z")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")


def canonical_name(name: str) -> str:
    """The long, conventionally capitalised form of a header name (``"i"`` → ``"Call-ID"``)."""
    lower = name.lower()
    long = _COMPACT.get(lower)
    if long is not None:
        return long
    return _CANONICAL.get(lower, name)


@dataclass(slots=True)
class SipMessage:
    """One SIP request (``method`` set) or response (``status`` set).

    Headers keep their order and repetitions; names are stored in canonical long form.
    :meth:`to_bytes` writes ``Content-Length`` from the body, replacing any given one.
    """

    method: str | None = None
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def request(
        cls, method: str, uri: str, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> SipMessage:
        """Build a request; header names may be compact or long."""
        return cls(method=method, uri=uri, headers=_canon(headers), body=body)

    @classmethod
    def response(
        cls,
        status: int,
        headers: Iterable[tuple[str, str]],
        body: bytes = b"",
        reason: str | None = None,
    ) -> SipMessage:
        """Build a response; the reason phrase defaults to the standard one."""
        phrase = REASONS.get(status, "") if reason is None else reason
        return cls(status=status, reason=phrase, headers=_canon(headers), body=body)

    @property
    def is_request(self) -> bool:
        return self.method is not None

    @property
    def start_line(self) -> str:
        if self.method is not None:
            return f"{self.method} {self.uri} SIP/2.0"
        return f"SIP/2.0 {self.status} {self.reason}"

    def get(self, name: str) -> str | None:
        """First value of a header (any case, compact or long name), or None."""
        wanted = canonical_name(name)
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, one per header line, in order."""
        wanted = canonical_name(name)
        return [value for key, value in self.headers if key == wanted]

    def tokens(self, name: str) -> list[str]:
        """Comma-separated tokens of a header over all its lines, lower-cased
        (for ``Require``, ``Supported``, ``Allow``)."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(t.strip().lower() for t in value.split(",") if t.strip())
        return out

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """``(number, method)`` of the CSeq header (validated when parsed)."""
        return _parse_cseq(self.get("CSeq") or "")

    def set(self, name: str, value: str) -> None:
        """Replace every line of a header with one line, or append it."""
        key = canonical_name(name)
        self.headers = [(k, v) for k, v in self.headers if k != key]
        self.headers.append((key, value))

    def to_bytes(self) -> bytes:
        """Serialise with CRLF line ends and a correct ``Content-Length``."""
        lines = [self.start_line]
        lines.extend(f"{k}: {v}" for k, v in self.headers if k != "Content-Length")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


class SipError(MediaError):
    """A SIP message that is malformed or that a recording server must refuse.

    ``sip_status`` is the response status (400, 415, 420, 481, 488, 513...), ``reason`` a
    short tag for counting, ``request`` the offending request when it could be parsed and
    ``headers`` extra headers for the answer (``Accept`` on 415, for instance).
    """

    def __init__(
        self,
        message: str,
        *,
        sip_status: int = 400,
        reason: str = "bad-request",
        request: SipMessage | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message, reason=reason)
        self.sip_status = sip_status
        self.request = request
        self.headers = tuple(headers)

    def to_response(self, request: SipMessage | None = None) -> SipMessage | None:
        """The error response for ``request`` (default: the one attached), or None when
        there is no request to answer or it is an ACK (which never gets a response)."""
        req = request if request is not None else self.request
        if req is None or not req.is_request or req.method == "ACK":
            return None
        return response_to(req, self.sip_status, headers=self.headers)


def local_tag(call_id: str) -> str:
    """The To tag a server puts on its responses for ``call_id``.

    RFC 3261 8.2.6.2 asks for a tag on every response but 100 Trying, and a dialog's
    responses must all carry the same one. Deriving it from the Call-ID makes every answer
    for a call (the 200 OK, a 481, an error refusing a re-INVITE) agree without state, and
    lets a scripted client send in-dialog requests without reading the 200 OK first.

    >>> local_tag("a84b4c76e66710@pc33.example.com")
    '52367391cf35'
    """
    return hashlib.sha1(call_id.encode("utf-8", "replace")).hexdigest()[:12]


def response_to(
    request: SipMessage,
    status: int,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    reason: str | None = None,
) -> SipMessage:
    """A response copying the request's Via, From, To, Call-ID and CSeq (RFC 3261 8.2.6),
    adding ``;tag=to_tag`` to To unless it already has a tag. Without ``to_tag`` every
    response but a 100 gets :func:`local_tag` of the Call-ID, as 8.2.6.2 requires."""
    if to_tag is None and status > 100:
        to_tag = local_tag(request.call_id)
    copied: list[tuple[str, str]] = [(k, v) for k, v in request.headers if k == "Via"]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.get(name)
        if value is None:
            continue
        if name == "To" and to_tag and header_param(value, "tag") is None:
            value = f"{value};tag={to_tag}"
        copied.append((name, value))
    copied.extend(_canon(headers))
    return SipMessage.response(status, copied, body, reason)


def header_param(value: str, name: str) -> str | None:
    """A ``;name=value`` parameter of a header value outside its ``<...>`` URI part."""
    tail = value.rsplit(">", 1)[-1] if "<" in value else value
    for piece in tail.split(";")[1:]:
        key, _, val = piece.partition("=")
        if key.strip().lower() == name.lower():
            return val.strip().strip('"')
    return None


def parse_message(data: bytes, *, max_size: int = MAX_MESSAGE) -> SipMessage:
    """Parse one whole message (a UDP datagram or one framed TCP message).

    ``Content-Length`` is optional; when present, a shorter body is a 400 and extra bytes
    are dropped. A message over ``max_size`` bytes raises 513 (with the parsed request
    attached so the 513 can still be answered).
    """
    data = bytes(data).lstrip(b"\r\n")
    match = _HEAD_END.search(data)
    if match is None:
        if b"\n" not in data:
            raise SipError("no SIP header section", reason="truncated")
        head, rest = data, b""
    else:
        head, rest = data[: match.start()], data[match.end() :]
    msg = _parse_head(head)
    if len(data) > max_size:
        raise SipError(
            f"message of {len(data)} bytes exceeds {max_size}",
            sip_status=513,
            reason="too-large",
            request=msg,
        )
    length = _content_length(msg)
    if length is None:
        msg.body = rest
    elif len(rest) < length:
        raise SipError(f"body has {len(rest)} of {length} bytes", reason="truncated", request=msg)
    else:
        msg.body = rest[:length]
    return msg


class SipStreamParser:
    """Frames SIP messages on a byte stream (TCP, TLS) by ``Content-Length``.

    :meth:`feed` takes any slice of the stream and returns what it completes, in order: each
    item is a :class:`SipMessage` or, for a message that could not be accepted, the
    :class:`SipError` (the parser skips past it and carries on when it can still frame).

    >>> p = SipStreamParser()
    >>> p.feed(b"BYE sip:x SIP/2.0\\r\\nv: SIP/2.0/TCP h;branch=z9hG4bK2\\r\\nf: <sip:a>;tag=1")
    []
    >>> done = p.feed(b"\\r\\nt: <sip:x>\\r\\ni: c\\r\\nCSeq: 2 BYE\\r\\nl: 0\\r\\n\\r\\n")
    >>> [m.method for m in done if isinstance(m, SipMessage)]
    ['BYE']
    """

    def __init__(self, *, max_size: int = MAX_MESSAGE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._skip = 0

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[SipMessage | SipError]:
        """Add bytes from the stream; return the messages (or errors) they complete."""
        self._buf += data
        out: list[SipMessage | SipError] = []
        while True:
            if self._skip:
                dropped = min(self._skip, len(self._buf))
                del self._buf[:dropped]
                self._skip -= dropped
                if self._skip:
                    return out
            while self._buf[:2] == b"\r\n" or self._buf[:1] == b"\n":
                del self._buf[: 2 if self._buf[:1] == b"\r" else 1]
            match = _HEAD_END.search(self._buf)
            if match is None:
                if len(self._buf) > self.max_size:
                    # No end of headers within the limit: the stream cannot be resynchronised.
                    self._buf.clear()
                    out.append(SipError("header section too large", sip_status=513))
                return out
            head_end = match.end()
            try:
                msg = _parse_head(bytes(self._buf[: match.start()]))
            except SipError as exc:
                del self._buf[:head_end]
                out.append(exc)
                continue
            length = _content_length_or_error(msg)
            if isinstance(length, SipError):
                del self._buf[:head_end]
                out.append(length)
                continue
            if head_end + length > self.max_size:
                del self._buf[:head_end]
                self._skip = length
                out.append(
                    SipError(
                        f"message of {head_end + length} bytes exceeds {self.max_size}",
                        sip_status=513,
                        reason="too-large",
                        request=msg,
                    )
                )
                continue
            if len(self._buf) < head_end + length:
                return out
            msg.body = bytes(self._buf[head_end : head_end + length])
            del self._buf[: head_end + length]
            out.append(msg)


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One part of a ``multipart/mixed`` body."""

    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``"multipart/mixed;boundary=x"`` → ``("multipart/mixed", {"boundary": "x"})``."""
    media, *params = value.split(";")
    out: dict[str, str] = {}
    for param in params:
        key, sep, val = param.partition("=")
        if sep:
            out[key.strip().lower()] = val.strip().strip('"')
    return media.strip().lower(), out


def build_multipart(parts: Sequence[BodyPart], boundary: str) -> tuple[str, bytes]:
    """Build a ``multipart/mixed`` body; returns ``(content_type_value, body)``."""
    chunks: list[bytes] = []
    for part in parts:
        head = [f"Content-Type: {part.content_type}"]
        head.extend(f"{k}: {v}" for k, v in part.headers)
        chunks.append(f"--{boundary}\r\n".encode() + "\r\n".join(head).encode() + b"\r\n\r\n")
        chunks.append(part.body + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/mixed;boundary={boundary}", b"".join(chunks)


def parse_multipart(content_type: str, body: bytes) -> list[BodyPart]:
    """Split a ``multipart/*`` body into its parts (RFC 2046); raises 400 on bad framing."""
    media, params = parse_content_type(content_type)
    boundary = params.get("boundary", "")
    if not media.startswith("multipart/") or not boundary:
        raise SipError(f"not a multipart body: {content_type!r}", reason="bad-multipart")
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    pieces = body.split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise SipError("multipart body without closing delimiter", reason="bad-multipart")
    parts: list[BodyPart] = []
    for piece in pieces[1:-1]:
        piece = piece.removeprefix(b"\r\n").removeprefix(b"\n")
        piece = piece.removesuffix(b"\n").removesuffix(b"\r")
        match = _HEAD_END.search(piece)
        if match is None:
            # A part may have no headers at all: then it starts with the blank line.
            if not piece.startswith((b"\r\n", b"\n")):
                raise SipError("multipart part without header end", reason="bad-multipart")
            head, part_body = b"", piece.lstrip(b"\r").removeprefix(b"\n")
        else:
            head, part_body = piece[: match.start()], piece[match.end() :]
        headers = _parse_header_lines(_decode(head)) if head.strip() else []
        ctype = next((v for k, v in headers if k == "Content-Type"), "text/plain")
        extra = tuple((k, v) for k, v in headers if k != "Content-Type")
        parts.append(BodyPart(ctype, part_body, extra))
    return parts


def _canon(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(canonical_name(k), v) for k, v in headers]


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipError("SIP header section is not UTF-8", reason="bad-encoding") from exc


def _parse_header_lines(text: str) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for line in _LINE_END.split(text):
        if not line:
            continue
        if line[0] in " \t":
            # Folded continuation (RFC 3261 7.3.1): joins the previous value with one space.
            if not headers:
                raise SipError("continuation line before any header", reason="bad-header")
            key, value = headers[-1]
            headers[-1] = (key, f"{value} {line.strip()}".strip())
            continue
        name, sep, value = line.partition(":")
        name = name.rstrip(" \t")
        if not sep or not _TOKEN.match(name):
            raise SipError(f"malformed header line {line[:60]!r}", reason="bad-header")
        headers.append((canonical_name(name), value.strip()))
    return headers


def _parse_head(head: bytes) -> SipMessage:
    text = _decode(head)
    start, _, rest = text.partition("\n")
    start = start.rstrip("\r")
    msg = SipMessage(headers=_parse_header_lines(rest))
    request = _REQUEST_LINE.match(start)
    if request is not None:
        msg.method, msg.uri = request.group(1).upper(), request.group(2)
    else:
        status = _STATUS_LINE.match(start)
        if status is None:
            raise SipError(f"bad start line {start[:60]!r}", reason="bad-start-line")
        msg.status, msg.reason = int(status.group(1)), status.group(2)
    missing = [name for name in _REQUIRED if msg.get(name) is None]
    if missing:
        raise SipError(f"missing header(s) {', '.join(missing)}", reason="missing-header")
    _, method = _parse_cseq(msg.get("CSeq") or "")
    if msg.method is not None and method != msg.method:
        raise SipError(f"CSeq method {method} differs from {msg.method}", reason="bad-cseq")
    return msg


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not (parts[0].isascii() and parts[0].isdigit()) or len(parts[0]) > 10:
        raise SipError(f"bad CSeq {value[:40]!r}", reason="bad-cseq")
    return int(parts[0]), parts[1].upper()


def _content_length(msg: SipMessage) -> int | None:
    value = msg.get("Content-Length")
    if value is None:
        return None
    if not value.isdigit() or not value.isascii() or len(value) > 10:
        raise SipError(f"bad Content-Length {value[:20]!r}", reason="bad-length", request=msg)
    return int(value)


def _content_length_or_error(msg: SipMessage) -> int | SipError:
    try:
        length = _content_length(msg)
    except SipError as exc:
        return exc
    if length is None:
        return SipError("Content-Length is required on a stream", reason="bad-length", request=msg)
    return length
