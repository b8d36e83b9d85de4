"""Reading a JSON request body as RFC 8259 text: UTF-8, no byte-order mark, only Unicode.

One reader for every body the simulator takes (the vendor API, ``/_sim/`` and the webhook
receiver), so that nothing is accepted that could not be stored and rendered again: a body
that JSON's grammar allows but that is not Unicode text (a lone surrogate such as
``"\\ud800"``, in a member name or a value) is refused, as are numbers JSON does not have
(``NaN``, ``Infinity``, numbers too large for a double) and bodies nested too deeply.

>>> loads(b'{"a": [1, 2.5, "x"]}')
{'a': [1, 2.5, 'x']}
>>> try:
...     loads(b'{"customerId": "\\\\ud800"}')
... except BodyError as exc:
...     print(str(exc).split(": ", 1)[1])
customerId holds \\ud800, a lone surrogate, which is not a Unicode character
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any

import orjson

from mgsim.errors import MgsimError

__all__ = ["BodyError", "content_type_problem", "loads"]

_LONG_DIGITS = re.compile(rb"\d{19}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class BodyError(MgsimError, ValueError):
    """A request body is not JSON text the simulator reads; the message says why."""


def loads(raw: bytes) -> Any:
    """``raw`` parsed as JSON text, or :class:`BodyError` naming what is wrong with it."""
    # orjson reads integers beyond 64 bits as floats; the standard library keeps them exact,
    # so that a field's error names the number as sent.
    if not _LONG_DIGITS.search(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the standard library says precisely why
    if raw.startswith(codecs.BOM_UTF8):
        raise BodyError(
            "Request body is not valid JSON: it starts with a UTF-8 byte-order mark; "
            "send UTF-8 without one (RFC 8259 section 8.1)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(
            "Request body is not valid JSON: it is not UTF-8 (RFC 8259 section 8.1)"
        ) from None
    try:
        body = json.loads(text, parse_constant=_not_a_json_number, parse_float=_finite)
    except RecursionError:
        raise BodyError("Request body is not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise BodyError(f"Request body is not valid JSON: {exc.msg} at offset {exc.pos}") from None
    _check_text(body, "")
    return body


def _check_text(node: Any, path: str) -> None:
    """BodyError if a string anywhere in ``node`` (member names too) is not Unicode text."""
    if isinstance(node, str):
        _check_string(node, path or "body", "holds")
    elif isinstance(node, dict):
        for key, value in node.items():
            _check_string(key, path or "body", "has a member name with")
            _check_text(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_text(value, f"{path}[{i}]")


def _check_string(text: str, where: str, what: str) -> None:
    found = _SURROGATE.search(text)
    if found is not None:
        where = _SURROGATE.sub("\N{REPLACEMENT CHARACTER}", where)
        raise BodyError(
            f"Request body is not valid JSON text: {where} {what} \\u{ord(found[0]):04x}, "
            "a lone surrogate, which is not a Unicode character"
        )


def _not_a_json_number(name: str) -> Any:
    raise BodyError(f"Request body is not valid JSON: {name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyError(f"Request body is not valid JSON: {text[:24]} is out of range")
    return value


def content_type_problem(content_type: str | None) -> str | None:
    """Why a request with this ``Content-Type`` cannot carry a JSON body, or None if it can.

    A body without a ``Content-Type`` is read as JSON (the only type the API takes); any
    other declared type, or a charset other than UTF-8, cannot be.

    >>> content_type_problem("application/json; charset=utf-8") is None
    True
    >>> print(content_type_problem("application/x-www-form-urlencoded"))
    Content-Type application/x-www-form-urlencoded: the body must be application/json
    """
    if content_type is None:
        return None
    media_type, *params = (part.strip() for part in content_type.split(";"))
    if media_type.lower() != "application/json":
        shown = media_type[:64] or "(empty)"
        return f"Content-Type {shown}: the body must be application/json"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return f"Content-Type charset {value.strip()[:32]}: JSON bodies must be UTF-8"
    return None
