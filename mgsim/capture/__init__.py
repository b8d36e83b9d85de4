"""Recording and replaying calls as captures (an edge: files in, wires out).

Every call mgsim plays can be recorded as what its platform put on the wire:

* SIPREC: pcap or pcapng (:mod:`mgsim.capture.pcap`), SIP and RTP on synthesized IP/UDP;
* Twilio Media Streams and Genesys AudioHook: timestamped JSON lines of their WebSocket
  messages (:mod:`mgsim.capture.jsonl`);
* Amazon Connect: its Matroska fragments back to back, as GetMedia returns them
  (:mod:`mgsim.capture.mkv`).

:func:`record` writes one; :func:`load_capture` reads one from anywhere (a customer's SBC
capture, a Twilio log, an AudioHook log, a GetMedia dump) into wires for the gateway's own
decoders, with every protocol problem found; :mod:`mgsim.capture.replay` plays it into the
simulated gateway (``mgsim replay``). This package imports the media decoders; nothing in
:mod:`mgsim.media` imports it.
"""

from __future__ import annotations

from mgsim.capture.errors import CaptureError
from mgsim.capture.files import Capture, load_capture, record

__all__ = ["Capture", "CaptureError", "load_capture", "record"]
