"""Amazon Connect on the gateway: a Kinesis Video store, calls opened from it, and readers.

Connect does not push audio to the gateway: it writes each contact into a Kinesis Video
stream, and the gateway reads the stream when it is told to transcribe. :class:`KvsMedia`
models both halves against the gateway's in-memory :class:`~mgsim.media.kvs.KinesisVideoStore`:

* :meth:`KvsMedia.put` stores one fragment (as PutMedia does). The first fragment of a new
  ``ContactId`` on a stream opens the call (``guid`` = ContactId, ``info["stream_arn"]``);
  a fragment with another ContactId ends the previous contact's call (streams are reused
  across contacts) and opens the new one. Every stored fragment of the contact is also
  placed on the call's timeline as *received, not streamed*: the gateway holds it, but no
  transcription reads it.
* start-streaming (through :class:`~mgsim.gateway.calls.MediaBinding`) starts a reader at
  the ``amazonConnectParams`` selector: ``NOW`` reads fragments put after the start;
  ``FRAGMENT_NUMBER`` reads every fragment after ``afterFragmentNumber``, at once for those
  already stored, so audio from before the start call is streamed too. The reader runs
  until stop-streaming, hang-up or the ContactId changing, and its audio is what counts as
  streamed. An unknown ``streamArn`` or ``afterFragmentNumber`` refuses the start with
  ``400-201`` naming the field.

Streams whose producer stopped are retained like ended calls: the most recent
``gateway.keep_audio_of`` keep their fragments, the most recent ``gateway.keep_calls`` exist
(emptied), and older ones are deleted from the store; a later PutMedia creates one again.

Audio is placed on the contact's clock: sample 0 is the producer timestamp of the contact's
first fragment, whichever fragment a reader starts from.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from mgsim.contract import Problem
from mgsim.errors import ConfigError, MediaError
from mgsim.media._base import Anomaly, AudioChunk, Event, SessionClosed, SessionOpened, Wire
from mgsim.media.kvs import (
    Cursor,
    KinesisVideoStore,
    KinesisVideoStream,
    KvsConsumer,
    KvsError,
    StartSelector,
    parse_arn,
)

if TYPE_CHECKING:
    from mgsim.gateway.calls import CallState, Gateway, Segment

__all__ = ["KvsMedia", "PutResult"]

NAMESPACE = "amazonconnect"
_SAMPLES_PER_MS = 8


class PutResult(NamedTuple):
    """What storing one fragment did: its new fragment number, the contact's call (None
    if it could not be opened) and whether this fragment opened that call."""

    fragment_number: str
    call: CallState | None
    opened: bool


@dataclass(slots=True)
class _Watcher:
    """The gateway's view of one stream: whose contact is on it now."""

    consumer: KvsConsumer
    call: CallState | None = None
    origin_ms: int | None = None  # producer timestamp of the contact's first fragment


@dataclass(slots=True)
class _Reader:
    """A GetMedia reader running for one streaming segment."""

    call: CallState
    stream: KinesisVideoStream
    cursor: Cursor
    consumer: KvsConsumer
    shift: int = 0  # samples from the reader's first fragment to the contact's origin
    fragments: int = 0
    done: bool = False
    anomalies: list[Anomaly] = field(default_factory=list)


class KvsMedia:
    """Kinesis Video ingest and readers for one gateway (``gateway.kvs_media``).

    It is also the :class:`~mgsim.gateway.calls.MediaBinding` of every call it opens.

    >>> import numpy as np
    >>> from mgsim.clock import VirtualClock
    >>> from mgsim.gateway import Gateway, StartParams
    >>> from mgsim.media import kvs
    >>> from mgsim.media._base import StereoCall
    >>> gw = Gateway(VirtualClock())
    >>> arn = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/demo/1700000000000"
    >>> contact = "c0ffee00-0000-4000-8000-000000000001"
    >>> call = StereoCall(np.ones(1600, np.int16), np.zeros(1600, np.int16))
    >>> first, second = list(kvs.encode(call, guid=contact, stream_arn=arn, fragment_ms=100))
    >>> gw.kvs_media.put(arn, first).opened
    True
    >>> seg = gw.start("amazonconnect", contact, StartParams("c", "a"))  # NOW
    >>> _ = gw.kvs_media.put(arn, second)
    >>> gw.stop("amazonconnect", contact).samples
    {'customer': 800, 'agent': 800}
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._other_stores: dict[tuple[str, str], KinesisVideoStore] = {}
        self._watchers: dict[str, _Watcher] = {}
        self._readers: dict[str, _Reader] = {}  # by call guid
        # Streams whose producer stopped, oldest first: like ended calls' audio, only the
        # most recent ``gateway.keep_audio_of`` keep their fragments (``_idle``), and like
        # ended calls only the most recent ``gateway.keep_calls`` exist at all (``_emptied``
        # holds the rest of those, released); older ones are deleted from their store.
        self._idle: OrderedDict[str, None] = OrderedDict()
        self._emptied: OrderedDict[str, None] = OrderedDict()

    # -- streams

    def _store_for(self, region: str, account: str) -> KinesisVideoStore:
        main = self.gateway.kvs
        if (region, account) == (main.region, main.account):
            return main
        store = self._other_stores.get((region, account))
        if store is None:
            store = KinesisVideoStore(region=region, account=account)
            self._other_stores[(region, account)] = store
        return store

    def stream(self, arn: str, *, create: bool = False) -> KinesisVideoStream:
        """The stream with that ARN, created first if ``create``.

        Raises :class:`~mgsim.media.kvs.KvsError` (``bad-arn``, ``unknown-stream``).
        """
        region, account, name, creation_ms = parse_arn(arn)
        store = self._store_for(region, account)
        if arn not in store and create:
            return store.create_stream(name, creation_ms=creation_ms)
        return store.get(arn)

    # -- ingest

    def put(self, arn: str, fragment: bytes | Wire, *, create: bool = True) -> PutResult:
        """Store one fragment in stream ``arn`` (PutMedia) and update the calls.

        Raises :class:`~mgsim.media.kvs.KvsError` for a fragment the store refuses
        (nothing is stored then; the contact's call counts the error) or one it stores but
        the gateway cannot read, and :class:`~mgsim.errors.MediaError` (``guid-in-use``)
        when its ContactId is already an open call fed by other media.
        """
        stream = self.stream(arn, create=create)
        self._idle.pop(arn, None)
        self._emptied.pop(arn, None)
        watcher = self._watchers.get(arn)
        data = fragment.data if isinstance(fragment, Wire) else fragment
        try:
            if not isinstance(data, bytes | bytearray):
                raise KvsError("a KVS fragment must be bytes", reason="corrupt-ebml")
            number = stream.put_media(bytes(data), self._server_ms())
        except KvsError as exc:
            if watcher is not None and watcher.call is not None:
                watcher.call.accounting.note_error(exc.reason)
            raise
        latest = stream.latest
        assert latest is not None and latest.number == number
        stored = latest.data
        call, opened = self._watch(arn, stored)
        self._pump(arn)
        return PutResult(number, call, opened)

    def current_call(self, arn: str) -> CallState | None:
        """The open call of the contact now writing ``arn``, if any."""
        watcher = self._watchers.get(arn)
        call = watcher.call if watcher is not None else None
        return call if call is not None and call.closed_at is None else None

    def end_stream(self, arn: str) -> CallState | None:
        """The producer stopped writing ``arn``: the current contact's call hangs up."""
        watcher = self._watchers.pop(arn, None)
        if watcher is None:
            return None
        watcher.consumer.close()
        call = self._hang_up(watcher)
        self._idle[arn] = None
        gw = self.gateway
        while len(self._idle) > gw.keep_audio_of:
            old, _ = self._idle.popitem(last=False)
            if old not in self._watchers:
                self.stream(old).release()
                self._emptied[old] = None
        while len(self._idle) + len(self._emptied) > gw.keep_calls and self._emptied:
            old, _ = self._emptied.popitem(last=False)
            if old not in self._watchers:
                self._delete(old)
        return call

    def streams(self) -> int:
        """How many streams the gateway's stores hold (live, idle and emptied)."""
        return len(self.gateway.kvs) + sum(len(s) for s in self._other_stores.values())

    def _delete(self, arn: str) -> None:
        region, account, _, _ = parse_arn(arn)
        store = self._store_for(region, account)
        store.delete_stream(arn)
        if not len(store) and store is not self.gateway.kvs:
            del self._other_stores[(region, account)]

    def _server_ms(self) -> int:
        return round(self.gateway.clock.wall().timestamp() * 1000)

    def _hang_up(self, watcher: _Watcher) -> CallState | None:
        call, watcher.call = watcher.call, None
        if call is not None and call.closed_at is None:
            self.gateway.hang_up(call.guid)
        return call

    def _watch(self, arn: str, data: bytes) -> tuple[CallState | None, bool]:
        watcher = self._watchers.get(arn)
        if watcher is None:
            watcher = self._watchers[arn] = _Watcher(KvsConsumer(stream_arn=arn))
        try:
            events = watcher.consumer.feed(data)
        except KvsError as exc:
            if watcher.call is not None:
                watcher.call.accounting.note_error(exc.reason)
            raise
        if any(isinstance(e, SessionClosed) for e in events):
            # Another contact now writes this stream: the previous call is over.
            if watcher.call is not None:
                watcher.call.accounting.note_end("platform", "contact-changed")
            self._hang_up(watcher)
            watcher = self._watchers[arn] = _Watcher(KvsConsumer(stream_arn=arn))
            events = watcher.consumer.feed(data)
        opened = False
        for event in events:
            if isinstance(event, SessionOpened):
                watcher.call = self._open(event)
                watcher.origin_ms = event.info.get("producer_timestamp_ms")
                opened = True
        call = watcher.call
        if call is not None:
            self._record(call, events, may_stream=False)
        return call, opened

    def _open(self, event: SessionOpened) -> CallState:
        gw = self.gateway
        existing = gw.calls.get(event.guid)
        info = dict(event.info)
        if existing is not None:
            if existing.namespace != NAMESPACE or existing.source != "sim":
                raise MediaError(
                    f"contact {event.guid} is already an open call", reason="guid-in-use"
                )
            existing.source, existing.info = "kvs", {**existing.info, **info}
            call = existing
        else:
            call = gw.open_call(NAMESPACE, event.guid, event.channels, source="kvs", info=info)
        call.media = self
        return call

    def _record(self, call: CallState, events: list[Event], *, may_stream: bool) -> bool:
        """Place the audio of one fragment; return whether any of it was streamed."""
        now = self.gateway.clock.now()
        streamed = False
        for event in events:
            if isinstance(event, AudioChunk):
                try:
                    streamed |= call.receive(
                        event.channel, event.start_sample, event.pcm, now, may_stream=may_stream
                    )
                except ConfigError:
                    call.accounting.anomalies["out-of-range"] += 1
            elif isinstance(event, Anomaly):
                call.accounting.anomalies[event.kind] += event.count
        if not may_stream:
            chunks = any(isinstance(e, AudioChunk) for e in events)
            if chunks:
                call.accounting.note_received(streamed=False)
            elif any(isinstance(e, Anomaly) and e.kind == "duplicate" for e in events):
                call.accounting.note_dropped("duplicate")
        return streamed

    # -- readers (MediaBinding)

    def started(self, call: CallState, segment: Segment) -> None:
        """Start reading for ``segment``, at its ``amazonConnectParams`` selector."""
        params: dict[str, Any] = segment.params.body.get("amazonConnectParams") or {}
        own = call.info.get("stream_arn")
        arn = params.get("streamArn", own)
        try:
            stream = self.stream(str(arn))
        except KvsError:
            raise Problem(
                "400-201", f"amazonConnectParams.streamArn: no Kinesis Video stream {arn}"
            ) from None
        if arn != own:
            raise Problem(
                "400-201",
                f"amazonConnectParams.streamArn: stream {arn} does not carry contact {call.guid}",
            )
        kind = params.get("startSelectorType", "NOW")
        after = params.get("afterFragmentNumber")
        try:
            cursor = stream.start(StartSelector(kind, after_fragment_number=after))
        except KvsError as exc:
            unknown = exc.reason == "unknown-fragment"
            field_name = "afterFragmentNumber" if unknown else "startSelectorType"
            raise Problem("400-201", f"amazonConnectParams.{field_name}: {exc}") from None
        reader = _Reader(call, stream, cursor, KvsConsumer(contact_id=call.guid, stream_arn=arn))
        self._readers[call.guid] = reader
        self._read(reader)

    def stopped(self, call: CallState, segment: Segment) -> None:
        """Stop the segment's reader."""
        self._readers.pop(call.guid, None)

    def reader_fragments(self, guid: str) -> int | None:
        """Fragments the running reader of call ``guid`` has read (None if none runs)."""
        reader = self._readers.get(guid)
        return None if reader is None else reader.fragments

    def _pump(self, arn: str) -> None:
        for reader in [r for r in self._readers.values() if r.stream.arn == arn]:
            self._read(reader)

    def _read(self, reader: _Reader) -> None:
        call = reader.call
        fragments, reader.cursor = reader.stream.read(reader.cursor)
        for data in fragments:
            if reader.done:
                break
            try:
                events = reader.consumer.feed(data)
            except KvsError as exc:
                call.accounting.anomalies[f"reader-{exc.reason}"] += 1
                continue
            placed: list[Event] = []
            for event in events:
                if isinstance(event, SessionOpened):
                    watcher = self._watchers.get(reader.stream.arn)
                    origin = watcher.origin_ms if watcher and watcher.call is call else None
                    first = event.info.get("producer_timestamp_ms")
                    if origin is not None and first is not None:
                        reader.shift = (first - origin) * _SAMPLES_PER_MS
                elif isinstance(event, SessionClosed):
                    reader.done = True
                elif isinstance(event, AudioChunk):
                    placed.append(
                        AudioChunk(event.channel, event.start_sample + reader.shift, event.pcm)
                    )
            if placed:
                reader.fragments += 1
                if self._record(call, placed, may_stream=True):
                    call.accounting.streamed += 1
        if reader.done:
            self._readers.pop(call.guid, None)
