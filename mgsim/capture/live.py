"""Recording live calls as they happen: one capture per call, written while it runs.

A :class:`CaptureDir` is where a server (``mgsim serve --capture DIR``,
``SimulatorConfig(capture_dir=DIR)``) or a sender (``mgsim call --record``) writes its
captures. Each call gets a capture object for its platform:

* :class:`PacketCapture` (SIPREC): every SIP message and RTP/RTCP datagram with the real
  addresses and ports of the sockets that sent and received it, as pcapng (or pcap);
* :class:`MessageCapture` (Twilio, AudioHook): every WebSocket message in both directions,
  and the closing handshake, as timestamped JSON lines (:mod:`mgsim.capture.jsonl`);
* :class:`FragmentCapture` (Amazon Connect): the Matroska fragments the server consumed,
  back to back (:mod:`mgsim.capture.mkv`).

The event loop only stamps and queues each record; one writer thread per directory encodes
and writes them, so a disk that stalls never stalls the calls. A capture is written to a
hidden ``.part`` file and renamed ``<namespace>-<guid>.<ext>`` when its call ends
(``-2``, ``-3``... when the name is taken); a connection that never opened a call leaves
nothing. :meth:`CaptureDir.flush` waits until everything queued is on disk.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from mgsim.capture.errors import CaptureError
from mgsim.capture.frames import Address, PacketWriter, Proto
from mgsim.capture.jsonl import FORMAT
from mgsim.errors import MgsimError
from mgsim.media.audiohook_protocol import parse_position

__all__ = [
    "CaptureDir",
    "FragmentCapture",
    "MessageCapture",
    "PacketCapture",
    "SenderRecording",
    "recording",
    "sender_capture",
]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class CaptureDir:
    """A directory receiving one capture per call (see the module docstring).

    ``recorded_by`` names the side that records (``"server"`` or ``"client"``) in JSON-lines
    headers. ``errors`` lists what could not be written (a full disk, say): a capture
    failing never fails the call.
    """

    def __init__(self, directory: str | Path, *, recorded_by: str = "server") -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CaptureError(f"cannot write captures to {directory}: {exc.strerror}") from None
        self.recorded_by = recorded_by
        self.written: list[Path] = []
        """Finished captures, in the order their calls ended."""
        self.errors: list[str] = []
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._count = 0
        self._thread: threading.Thread | None = None

    # -- captures

    def packets(self) -> PacketCapture:
        """A new SIPREC call's packet capture."""
        return PacketCapture(self, self._part(".pcapng"))

    def messages(self, namespace: str) -> MessageCapture:
        """A new Twilio or AudioHook connection's message capture."""
        return MessageCapture(self, self._part(".jsonl"), namespace)

    def fragments(self) -> FragmentCapture:
        """A new Kinesis producer's fragment capture."""
        return FragmentCapture(self, self._part(".mkv"))

    # -- the writer

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait (at most ``timeout_s``) until everything queued so far is written."""
        done = threading.Event()
        self.submit(done.set)
        done.wait(timeout_s)

    def close(self) -> None:
        """Write what is queued and stop the writer thread."""
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)
            self._thread = None

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the writer thread, after every job submitted before it."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="mgsim-capture", daemon=True
                    )
                    self._thread.start()
        self._queue.put(job)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                job()
            except Exception as exc:  # a capture must never take the server down
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _part(self, suffix: str) -> Path:
        with self._lock:
            self._count += 1
            n = self._count
        return self.directory / f".capture-{n}.part{suffix}"

    def _final(self, namespace: str, guid: str, suffix: str) -> Path:
        stem = f"{namespace}-{_SAFE.sub('_', guid)[:120]}"
        path = self.directory / f"{stem}{suffix}"
        n = 1
        while path.exists():
            n += 1
            path = self.directory / f"{stem}-{n}{suffix}"
        return path


class Capture:
    """One call's capture: records are queued by the event loop, written by the thread."""

    namespace = ""

    def __init__(self, owner: CaptureDir, part: Path) -> None:
        self.owner = owner
        self.part = part
        self.path: Path | None = None
        """Where the capture ended up, once :meth:`finish` has been written."""
        self.done = False

    def finish(self, guid: str | None, to: Path | None = None) -> None:
        """The call ended: close the file and name it for ``guid`` (or ``to``; None: no
        call was opened, and the capture is deleted)."""
        if self.done:
            return
        self.done = True
        self.owner.submit(lambda: self._finish(guid, to))

    def received(self, at_ms: float, data: str | bytes) -> None:
        """A message from the platform, at ``at_ms`` on the call's media clock."""

    def sent(self, at_ms: float, data: str | bytes) -> None:
        """A message to the platform."""

    def closed(self, at_ms: float, sender: str, code: int | None, reason: str = "") -> None:
        """The connection's closing handshake (see :class:`MessageCapture`)."""

    def _close_file(self) -> None:
        raise NotImplementedError

    def _finish(self, guid: str | None, to: Path | None = None) -> None:
        self._close_file()
        if guid is None:
            self.part.unlink(missing_ok=True)
            return
        if not self.part.exists():
            return
        final = to or self.owner._final(self.namespace, guid, self.part.suffix)
        self.part.replace(final)
        self.path = final
        self.owner.written.append(final)


class SenderRecording:
    """A sender's live capture of one call (``mgsim call --record PATH`` over sockets):
    what :func:`recording` hands out while a call is played."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.directory = CaptureDir(path.parent, recorded_by="client")
        self.capture: PacketCapture | None = None

    def for_sender(self, namespace: str) -> PacketCapture | None:
        """The capture a new sender of ``namespace`` records into (SIPREC only: the other
        platforms' messages are exactly the wires they play, recorded from those)."""
        if namespace != "siprec" or self.capture is not None:
            return None
        self.capture = self.directory.packets()
        self.capture.part = self.capture.part.with_suffix(self.path.suffix or ".pcapng")
        return self.capture

    def finish(self, guid: str) -> Path | None:
        """Write the capture to :attr:`path`; None when no sender recorded anything."""
        if self.capture is None:
            return None
        self.capture.finish(guid, self.path)
        self.directory.close()
        return self.path if self.path.exists() else None


_RECORDING: ContextVar[SenderRecording | None] = ContextVar("mgsim_recording", default=None)


@contextlib.contextmanager
def recording(path: str | Path) -> Iterator[SenderRecording]:
    """Record what the senders of calls played meanwhile (in this context) really sent
    and received; :meth:`SenderRecording.finish` writes it."""
    path = Path(path)
    if path.suffix not in (".pcap", ".pcapng"):
        raise CaptureError(f"a SIPREC capture is .pcap or .pcapng, not {path.name}")
    rec = SenderRecording(path)
    token = _RECORDING.set(rec)
    try:
        yield rec
    finally:
        _RECORDING.reset(token)


def sender_capture(namespace: str) -> PacketCapture | None:
    """The capture a sender created now records into, when inside :func:`recording`."""
    rec = _RECORDING.get()
    return rec.for_sender(namespace) if rec is not None else None


class PacketCapture(Capture):
    """A SIPREC call's SIP and RTP, with the real addresses (see :class:`PacketWriter`)."""

    namespace = "siprec"

    def __init__(self, owner: CaptureDir, part: Path) -> None:
        super().__init__(owner, part)
        self._writer: PacketWriter | None = None

    def packet(self, proto: Proto, src: Address, dst: Address, data: bytes) -> None:
        """One datagram (``"udp"``) or SIP message on a TCP connection (``"tcp"``) that
        just went from ``src`` to ``dst``."""
        if self.done:
            return
        at_s = time.time()
        self.owner.submit(lambda: self._write(at_s, proto, src, dst, data))

    def _write(self, at_s: float, proto: Proto, src: Address, dst: Address, data: bytes) -> None:
        if self._writer is None:
            self._writer = PacketWriter(self.part)
        self._writer.packet(at_s, proto, (str(src[0]), int(src[1])),
                            (str(dst[0]), int(dst[1])), data)  # fmt: skip

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MessageCapture(Capture):
    """A WebSocket call's messages both ways, as JSON lines (:mod:`mgsim.capture.jsonl`)."""

    def __init__(self, owner: CaptureDir, part: Path, namespace: str) -> None:
        super().__init__(owner, part)
        self.namespace = namespace
        self._file: IO[str] | None = None
        self._started = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._clock = _MediaClock(namespace)

    def received(self, at_ms: float, data: str | bytes) -> None:
        self.message(at_ms, "client", data)

    def sent(self, at_ms: float, data: str | bytes) -> None:
        self.message(at_ms, "server", data)

    def message(self, at_ms: float, sender: str, data: str | bytes) -> None:
        """A message ``sender`` (``"client"`` or ``"server"``) sent at ``at_ms`` (the
        call's media clock)."""
        if self.done:
            return
        line: dict[str, Any] = {"rx_ms": round(at_ms, 3), "from": sender}
        if isinstance(data, str):
            line["text"] = data
        else:
            line["binary"] = bytes(data)  # encoded by the writer thread
        self.owner.submit(lambda: self._write(line))

    def closed(self, at_ms: float, sender: str, code: int | None, reason: str = "") -> None:
        """The WebSocket closing handshake: who closed, with which code (None: the
        connection died without a close frame)."""
        if self.done:
            return
        line = {"rx_ms": round(at_ms, 3), "from": sender, "close": code, "reason": reason}
        self.owner.submit(lambda: self._write(line))

    def _write(self, line: dict[str, Any]) -> None:
        media_ms = self._clock.at_ms(line.get("text", line.get("binary")), line["from"])
        line = {"at_ms": media_ms, **line}
        if self._file is None:
            self._file = self.part.open("w", encoding="utf-8")
            head = {"mgsim_capture": FORMAT, "namespace": self.namespace,
                    "recorded_by": self.owner.recorded_by, "started": self._started}  # fmt: skip
            self._file.write(json.dumps(head) + "\n")
        binary = line.get("binary")
        if isinstance(binary, bytes):
            line = {**line, "binary": base64.b64encode(binary).decode()}
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class FragmentCapture(Capture):
    """The Kinesis fragments a server consumed, back to back (:mod:`mgsim.capture.mkv`)."""

    namespace = "amazonconnect"

    def __init__(self, owner: CaptureDir, part: Path) -> None:
        super().__init__(owner, part)
        self._file: IO[bytes] | None = None

    def received(self, at_ms: float, data: str | bytes) -> None:
        if self.done:
            return
        fragment = data.encode() if isinstance(data, str) else bytes(data)
        self.owner.submit(lambda: self._write(fragment))

    def _write(self, data: bytes) -> None:
        if self._file is None:
            self._file = self.part.open("wb")
        self._file.write(data)

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


class _MediaClock:
    """Each message's time on the call's media clock, read from the messages themselves:
    a Twilio ``media`` message's ``timestamp``, an AudioHook message's ``position`` and the
    audio its frames carried (a frame is timed by its end, as a client sends it once full).
    Other messages take the time of the media before them. A replay feeds messages at these
    times, so a call received faster than real time (or with jitter) replays as sent."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.ms = 0.0
        self._samples = 0  # AudioHook: the client's position, in samples
        self._width = 2  # AudioHook: channels per sample (until ``opened`` says)

    def at_ms(self, data: object, sender: str) -> float:
        if isinstance(data, bytes):
            if self.namespace == "genesysaudiohook" and sender == "client":
                self._samples += len(data) // self._width
                self.ms = self._samples / 8.0
            return self.ms
        if not isinstance(data, str):
            return self.ms
        try:
            msg = json.loads(data)
        except ValueError:
            return self.ms
        if not isinstance(msg, dict):
            return self.ms
        if self.namespace == "twilio":
            media = msg.get("media")
            if msg.get("event") == "media" and isinstance(media, dict):
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    self.ms = max(self.ms, float(media["timestamp"]))
            return self.ms
        if sender == "client":
            with contextlib.suppress(MgsimError):
                self._samples = parse_position(msg.get("position"))
                self.ms = self._samples / 8.0
        elif msg.get("type") == "opened":
            params = msg.get("parameters")
            media = params.get("media") if isinstance(params, dict) else None
            if isinstance(media, list) and media and isinstance(media[0], dict):
                channels = media[0].get("channels")
                if isinstance(channels, list) and channels:
                    self._width = len(channels)
        return self.ms
