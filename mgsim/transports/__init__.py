"""Real network transports of the simulated gateway, and the senders that use them.

Server side (mounted by :func:`mgsim.server.app.create_app`, all on the app's event loop):

* :mod:`~mgsim.transports.websocket`: the Twilio Media Streams and Genesys AudioHook
  WebSocket endpoints;
* :mod:`~mgsim.transports.sip`: SIPREC over SIP (UDP and TCP) with RTP over UDP;
* :mod:`~mgsim.transports.kvs_http`: the Kinesis Video store over HTTP (PutMedia,
  GetMedia);
* :mod:`~mgsim.transports.hub`, :mod:`~mgsim.transports.metrics`,
  :mod:`~mgsim.transports.routes`: the state, counters and lateness they share.

Client side: :mod:`~mgsim.transports.senders` (one sender per platform) and
:mod:`~mgsim.transports.playback` (:func:`~mgsim.transports.playback.play_over_sockets`,
paced or as fast as possible, with timed start/stop actions).

Import the submodules; this package imports nothing so that the server can load its
routes without the client side.
"""
