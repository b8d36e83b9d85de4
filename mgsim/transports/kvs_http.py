"""The Kinesis Video store over HTTP: PutMedia and GetMedia as Amazon Connect and a
consumer use them.

* ``PUT /putMedia`` (``POST`` also accepted) with header ``x-amzn-stream-arn``: the body is
  one fragment or several back to back. They go, in order, to the stream's producer
  session (one per ARN, opened on first use, creating the stream), exactly as in-process
  playback feeds them; the first fragment of a new ContactId opens its call. ``200`` with
  ``{"Acks": [{"EventType": "PERSISTED", "FragmentNumber": ...}, ...]}``. When a fragment
  is refused (corrupt EBML, missing track...), the answer is the KVS error:
  :attr:`~mgsim.media.kvs.KvsError.http_status` with ``{"__type": <aws_error>,
  "message": ..., "Acks": [...]}`` and header ``x-amzn-ErrorType``; fragments before it
  are stored, those after it are still processed.
* ``DELETE /putMedia`` with ``x-amzn-stream-arn``: the producer stops writing; the
  contact's call hangs up (Connect ends the stream when the contact ends).
* ``POST /getMedia`` with ``{"StreamARN": ..., "StartSelector": {"StartSelectorType":
  "NOW" | "EARLIEST" | "FRAGMENT_NUMBER" | "SERVER_TIMESTAMP" | "PRODUCER_TIMESTAMP" |
  "CONTINUATION_TOKEN", "AfterFragmentNumber": ..., "StartTimestamp": <epoch s>,
  "ContinuationToken": ...}}``: streams the fragments (``video/webm``) from the selector,
  then follows the stream while a producer writes it; ends when the producer stops or the
  client goes away. Errors as above (``ResourceNotFoundException`` 404 for an unknown
  stream, ``InvalidArgumentException`` 400 otherwise). The body is read as every JSON body
  of the simulator (:mod:`mgsim.server.jsonbody`): one that is not UTF-8 JSON text (a
  byte-order mark, a lone surrogate, ``NaN``) or declares another content type than JSON
  is an ``InvalidArgumentException`` saying why.

Request-level errors (no ARN, malformed ARN, body over :data:`MAX_PUT_BYTES`) answer the
same JSON shape before anything is stored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from mgsim.media.kvs import KvsError, StartSelector, parse_arn, split_fragments
from mgsim.server.jsonbody import BodyError, content_type_problem, loads
from mgsim.transports.hub import Feeder, MediaHub, hub_of

__all__ = ["MAX_PUT_BYTES", "POLL_S", "end_media", "get_media", "put_media"]

MAX_PUT_BYTES = 8 * 1024 * 1024
POLL_S = 0.02
"""How often a following GetMedia looks for new fragments."""
_NS = "amazonconnect"


def kvs_error(exc: KvsError, acks: list[dict[str, Any]] | None = None) -> JSONResponse:
    """The KVS-style error answer for ``exc``."""
    body: dict[str, Any] = {"__type": exc.aws_error, "message": str(exc)}
    if acks is not None:
        body["Acks"] = acks
    return JSONResponse(
        body, status_code=exc.http_status, headers={"x-amzn-ErrorType": exc.aws_error}
    )


def _arn_of(request: Request) -> str:
    arn = request.headers.get("x-amzn-stream-arn", "")
    if not arn:
        raise KvsError("header x-amzn-stream-arn is required", reason="bad-arn")
    parse_arn(arn)
    return arn


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PUT_BYTES:
        raise KvsError(f"body over {MAX_PUT_BYTES} bytes", reason="oversize")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_PUT_BYTES:
            raise KvsError(f"body over {MAX_PUT_BYTES} bytes", reason="oversize")
        chunks.append(chunk)
    return b"".join(chunks)


def _producer(hub: MediaHub, arn: str) -> Feeder:
    feeder = hub.kvs_producers.get(arn)
    if feeder is None or feeder.session.closed:
        feeder = hub.kvs_producers[arn] = hub.open(_NS, stream_arn=arn)
    return feeder


async def put_media(request: Request) -> Response:
    """PutMedia: store fragments (see the module docstring)."""
    hub = hub_of(request.app)
    try:
        arn = _arn_of(request)
        body = await _body(request)
    except KvsError as exc:
        hub.count(f"media.{_NS}.rejected.{exc.reason}")
        return kvs_error(exc)
    try:
        parts = split_fragments(body)
    except KvsError:
        parts = [body]  # the session refuses it and counts the error
    feeder = _producer(hub, arn)
    acks: list[dict[str, Any]] = []
    for part in parts:
        for reply in feeder.feed("kvs", part):
            acks.append(json.loads(reply.data))
    failed = next((a for a in acks if a.get("EventType") == "ERROR"), None)
    if failed is not None:
        refused = KvsError(
            f"fragment refused: {failed.get('ErrorCode')}", reason=failed["ErrorCode"]
        )
        return kvs_error(refused, acks)
    return JSONResponse({"Acks": acks})


async def end_media(request: Request) -> Response:
    """The producer of ``x-amzn-stream-arn`` stops: its contact's call hangs up."""
    hub = hub_of(request.app)
    try:
        arn = _arn_of(request)
    except KvsError as exc:
        return kvs_error(exc)
    feeder = hub.kvs_producers.pop(arn, None)
    if feeder is None:
        return kvs_error(KvsError(f"no producer writes {arn}", reason="unknown-stream"))
    feeder.close()
    call = feeder.session.call
    return JSONResponse({"StreamARN": arn, "ContactId": call.guid if call else None})


def _selector(body: Any) -> tuple[str, StartSelector]:
    if not isinstance(body, dict) or not isinstance(body.get("StreamARN"), str):
        raise KvsError("StreamARN is required", reason="bad-arn")
    raw = body.get("StartSelector")
    if not isinstance(raw, dict) or not isinstance(raw.get("StartSelectorType"), str):
        raise KvsError("StartSelector.StartSelectorType is required", reason="bad-selector")
    stamp = raw.get("StartTimestamp")
    if stamp is not None and not isinstance(stamp, int | float):
        raise KvsError("StartTimestamp is epoch seconds", reason="bad-selector")
    selector = StartSelector(
        raw["StartSelectorType"],
        after_fragment_number=raw.get("AfterFragmentNumber"),
        start_timestamp_ms=None if stamp is None else round(stamp * 1000),
        continuation_token=raw.get("ContinuationToken"),
    )
    return body["StreamARN"], selector


# The JSON content types AWS SDKs declare for a JSON request body.
_AWS_JSON = frozenset({"application/x-amz-json-1.0", "application/x-amz-json-1.1"})


def _json_body(request: Request, raw: bytes) -> Any:
    """The body read as every JSON body the simulator takes (:mod:`mgsim.server.jsonbody`:
    UTF-8 without a byte-order mark, only Unicode text, finite numbers, a JSON content type
    if one is declared), refused in the KVS shape: ``InvalidArgumentException`` (400) with
    the reader's message, since GetMedia is AWS's API, not the vendor's."""
    declared = request.headers.get("content-type")
    if declared is not None and declared.split(";")[0].strip().lower() not in _AWS_JSON:
        problem = content_type_problem(declared)
        if problem is not None:
            raise KvsError(problem, reason="bad-selector")
    try:
        return loads(raw)
    except BodyError as exc:
        raise KvsError(str(exc), reason="bad-selector") from None


async def get_media(request: Request) -> Response:
    """GetMedia: fragments from a start selector, following a live stream."""
    hub = hub_of(request.app)
    try:
        # A selector is a few hundred bytes: read at most what a PutMedia may send.
        body = _json_body(request, await _body(request))
        arn, selector = _selector(body)
        stream = hub.gateway.kvs_media.stream(arn)
        cursor = stream.start(selector)
    except KvsError as exc:
        hub.count(f"media.{_NS}.rejected.{exc.reason}")
        return kvs_error(exc)

    async def fragments() -> AsyncIterator[bytes]:
        nonlocal cursor
        while True:
            new, cursor = stream.read_media(cursor)
            for data in new:
                yield data
            producer = hub.kvs_producers.get(arn)
            if producer is None or producer.session.closed:
                return
            await asyncio.sleep(POLL_S)

    return StreamingResponse(fragments(), media_type="video/webm")
