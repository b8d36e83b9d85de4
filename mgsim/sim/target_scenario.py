"""Scenarios against a real gateway: ``Scenario(target=Target(url))``, ``mgsim call --target``.

:func:`run_scenario_on_target` plays the scenario's call over its platform's real transport
to a gateway that is not the embedded one and drives that gateway's control API with the
plan's start/stop actions, then collects the transcripts the way an integration gets them
(the conversation messages API, and the webhook receiver when ``Target.webhook_listen`` is
set) and analyses leaks against the call's known sensitive spans.

What the target is decides what can be done:

* **another ``mgsim serve``** (it answers ``GET /_sim/v1/media/stats``): the call's script
  is attached first (``PUT /_sim/v1/calls/{guid}/script``) so the server's reference
  engine transcribes it; SIP and AudioHook default to the server's own addresses; the call
  may run in fast mode (the server's media accounting paces it) and the result carries the
  server's accounting. The same scenario in process gives the same utterances and stop
  summaries (tested).
* **any other gateway** (the ASAPP sandbox): no ``/_sim`` API, so the call is paced in
  real time (it takes as long as the call). Twilio streams to the URL the target's
  twilio-media-stream-url returns; AudioHook needs ``Target.audiohook_url`` (ws or wss) and
  the AudioHook key and secret; SIPREC needs ``Target.sip`` (UDP or TCP).
  Amazon Connect cannot be played there: the gateway reads a Kinesis Video Stream in the
  customer's AWS account, which only Amazon Connect (or an AWS producer with that account's
  credentials) can create and write; the error says so.

Control latency and faults are the embedded gateway's: a target has its own (``mgsim serve
--latency-ms``, ``POST /_sim/v1/faults``), so a scenario asking for them is refused.

Leak analysis: each delivered transcript is matched to the script words of its speaker.
A webhook carries its ``start``/``end`` on the call's timeline. A conversation message has
only its text and ``clientTimestamp``, which, less the wall time the media started, says
roughly when it began (two machines' clocks and the network apart); its words are aligned
with the speaker's script words near that time (:func:`_place_message`), so a one-word
utterance lands on its own word and not on a neighbour within the clocks' error, and words
the text does not match (a mask, a recognizer's other spelling) are covered from the
matched words on either side. A sensitive word counts as transcribed when it falls in a
delivered transcript, and as visible when its text shows in what was delivered. Streaming
windows are the confirmed starts and stops as the integration saw them.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from mgsim.client import AsyncClient, RetryPolicy
from mgsim.errors import ApiError, ConfigError, TransportError
from mgsim.gateway.mapping import ROLES
from mgsim.media._base import Wire
from mgsim.server.app import STOP
from mgsim.sim.scenario import ActionRecord, Scenario, ScenarioResult, guid_for, in_fresh_loop
from mgsim.sim.socket_scenario import _has_faults, play_scenario
from mgsim.speech.engine import TimedWord, Utterance
from mgsim.speech.leaks import analyze_leaks
from mgsim.speech.redact import ParticipantPolicies
from mgsim.targets import Target
from mgsim.transports.playback import Endpoints
from mgsim.transports.routes import MEDIA_STATS
from mgsim.transports.senders import Sender

__all__ = ["RemoteOutcome", "run_scenario_on_target"]

_SAMPLES_PER_MS = 8
_MATCH_TOLERANCE_MS = 250.0  # a message's start is estimated from wall clocks
# How far a message's clientTimestamp may be from its words (a server's clock and ours, the
# network between): its text decides within this.
_MESSAGE_WINDOW_MS = 2000.0
_WEBHOOK_TOLERANCE_MS = 100.0  # a webhook's start/end are on the call's timeline
_QUIET_S = 2.0  # transcripts have stopped arriving when none came for this long


@dataclass(slots=True)
class RemoteOutcome:
    """What a target said about the call, as an integration sees it."""

    base_url: str
    simulator: bool
    """Whether the target is an ``mgsim serve`` (it has the ``/_sim`` API)."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    stop_summaries: list[dict[str, Any]] = field(default_factory=list)
    """``autotranscribeResponse`` of each successful stop-streaming answer, in order."""
    accounting: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "simulator": self.simulator,
            "messages": self.messages,
            "webhooks": len(self.webhooks),
            "stop_summaries": self.stop_summaries,
            "accounting": self.accounting,
            "notes": self.notes,
        }


def run_scenario_on_target(scenario: Scenario) -> ScenarioResult:
    """Play ``scenario`` to ``scenario.target`` and analyse what it delivered."""
    target = scenario.target
    if target is None:
        raise ConfigError("run_scenario_on_target needs Scenario(target=Target(...))")
    if _has_faults(scenario):
        raise ConfigError(
            "control latency and faults belong to the embedded gateway; a target has its own "
            "(mgsim serve --latency-ms / --fail-rate, POST /_sim/v1/faults): drop them from "
            "the scenario"
        )
    if scenario.impairment is not None:
        raise ConfigError(
            "media impairments are simulated in process; against a target the network is real"
        )
    if scenario.call_guid is None:
        # A gateway keeps a call's messages after it ends (the vendor for 7 days): a guid of
        # its own keeps this run's transcripts apart from an earlier run of the same call.
        # The seed too: it draws SIPREC's Call-ID and SSRCs, and a recording server takes a
        # second INVITE with an old Call-ID for a request of the old dialog.
        run = uuid.uuid4()
        fresh = guid_for(scenario.namespace, f"{scenario.call.call_id}:{run}")
        scenario = replace(scenario, call_guid=fresh, seed=run.int & 0x7FFFFFFF)
    return in_fresh_loop(_run(scenario, target))


def _receiver(target: Target) -> Any:
    if target.webhook_listen is None:
        return None
    import os

    from mgsim.server.webhook_receiver import create_receiver_app
    from mgsim.transports.serve import AppThread

    secret = target.webhook_secret or os.environ.get("MGSIM_WEBHOOK_SECRET") or ""
    if not secret:
        raise ConfigError(
            "a webhook receiver needs the secret the gateway sends in X-Webhook-Secret: set "
            "MGSIM_WEBHOOK_SECRET (or Target(webhook_secret=...))"
        )
    host, port = target.webhook_listen
    try:
        return AppThread(create_receiver_app(secret), host=host, port=port)
    except OSError as exc:
        raise ConfigError(f"cannot listen for webhooks on {host}:{port}: {exc.strerror}") from None


async def _run(sc: Scenario, target: Target) -> ScenarioResult:
    api_id, api_secret = target.credentials()
    receiver = _receiver(target)
    options: dict[str, Any] = {"api_id": api_id, "api_secret": api_secret}
    async with (
        AsyncClient(target.base_url, retry=RetryPolicy(), **options) as control,
        AsyncClient(target.base_url, **options) as media,
    ):
        for secret in target.secrets():
            control.journal.add_secret(secret)
            media.journal.add_secret(secret)
        stats = await _probe(media)
        remote = RemoteOutcome(target.base_url, stats is not None)
        if stats is None and not sc.realtime:
            sc = replace(sc, realtime=True)
            remote.notes.append(
                "paced in real time: the target is not an mgsim simulator, so there is no "
                "media accounting to pace a fast run by"
            )
        endpoints, sip_transport = _endpoints(sc, target, stats)
        if stats is not None:
            await _attach_script(media, sc)
        started: list[datetime] = []

        def on_sent(wire: Wire, sender: Sender) -> None:
            if not started:
                started.append(datetime.now(UTC))

        if receiver is not None:
            receiver.start()
        try:
            records, journal = await play_scenario(
                sc, endpoints, control=control, media=media, probe=stats is not None,
                sip_transport=sip_transport, on_sent=on_sent,
            )  # fmt: skip
            remote.messages = await _messages(media, sc.guid, target.settle_s)
            if receiver is not None:
                remote.webhooks = await _webhooks(receiver, sc.guid, target.settle_s)
        finally:
            if receiver is not None:
                receiver.stop()
        if stats is not None:
            view = await media.request("GET", f"/_sim/v1/media/calls/{sc.guid}")
            if view.status_code == 200:
                remote.accounting = view.json()["accounting"]
    remote.stop_summaries = [
        e.response["autotranscribeResponse"]
        for e in journal.entries
        if e.endpoint == STOP and isinstance(e.response, dict)
    ]
    return _result(sc, records, journal, remote, started[0] if started else None)


async def _probe(client: AsyncClient) -> dict[str, Any] | None:
    """The target's media statistics if it is an ``mgsim serve``, else None."""
    try:
        response = await client.request("GET", MEDIA_STATS, retry=RetryPolicy.off())
    except TransportError:
        raise TransportError(
            f"no answer from {client.base_url}: is the gateway running there?"
        ) from None
    if response.status_code == 200:
        stats: dict[str, Any] = response.json()
        return stats
    if response.status_code in (401, 403) and client.base_url.startswith("http://127."):
        raise ConfigError(
            f"{client.base_url} refused mgsim's credentials ({response.status_code}): set "
            "ASAPP_API_ID and ASAPP_API_SECRET to the server's MGSIM_API_ID and MGSIM_API_SECRET"
        )
    return None


def _endpoints(sc: Scenario, target: Target, stats: dict[str, Any] | None) -> tuple[Endpoints, str]:
    ns = sc.namespace
    sip: tuple[str, int] | None = None
    transport = "udp"
    address = target.sip_address()
    if address is not None:
        sip, transport = (address[0], address[1]), address[2]
    elif stats is not None and stats.get("sip"):
        sip = (str(stats["sip"]["host"]), int(stats["sip"]["udp"]))
    if ns == "siprec" and sip is None:
        raise ConfigError(
            f"SIPREC to {target.base_url}: give the recording server's SIP URI "
            "(--sip sip:HOST:PORT;transport=udp|tcp, Target(sip=...))"
            + ("" if stats is None else "; this mgsim serve runs without SIP (--no-sip)")
        )
    key, secret = target.audiohook_credentials()
    if ns == "genesysaudiohook" and stats is None:
        if target.audiohook_url is None:
            raise ConfigError(
                f"AudioHook to {target.base_url}: give the gateway's AudioHook URL "
                "(--audiohook-url wss://..., Target(audiohook_url=...))"
            )
        if key is None or secret is None:
            raise ConfigError(
                "AudioHook signs its connection: set MGSIM_AUDIOHOOK_API_KEY and "
                "MGSIM_AUDIOHOOK_CLIENT_SECRET to the key and client secret the gateway expects"
            )
    if ns == "amazonconnect" and stats is None:
        raise ConfigError(
            f"Amazon Connect to {target.base_url}: the gateway reads the call from a Kinesis "
            "Video Stream in your AWS account (amazonConnectParams.streamArn), which Amazon "
            "Connect's live media streaming creates and writes; mgsim cannot create one or "
            "write to it. Place a contact with media streaming on and start-streaming with "
            "its stream ARN, or target an mgsim serve, which takes the fragments over HTTP"
        )
    extra: dict[str, Any] = {}
    if key is not None and secret is not None:
        extra = {"audiohook_api_key": key, "audiohook_client_secret": secret}
    return Endpoints(target.base_url, sip=sip, audiohook_url=target.audiohook_url, **extra), (
        transport
    )


async def _attach_script(client: AsyncClient, sc: Scenario) -> None:
    words = [
        {"speaker": w.speaker, "text": w.text, "startMs": w.start_ms, "endMs": w.end_ms}
        for w in sc.call.words
    ]
    response = await client.request(
        "PUT", f"/_sim/v1/calls/{sc.guid}/script", json={"words": words}
    )
    if response.status_code != 200:
        raise ConfigError(
            f"the target refused the call's script ({response.status_code}): {response.text[:200]}"
        )


async def _messages(client: AsyncClient, guid: str, settle_s: float) -> list[dict[str, Any]]:
    """The target's conversation messages of ``guid``, once no new one came for a while
    (bounded by ``settle_s``: a real gateway delivers its last transcripts after the call)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    items: list[dict[str, Any]] = []
    quiet_since = loop.time()
    while True:
        try:
            latest = await client.conversation_messages(guid)
        except ApiError as exc:
            if exc.status != 404:
                raise
            latest = []
        if len(latest) != len(items):
            items, quiet_since = latest, loop.time()
        now = loop.time()
        if now >= deadline or (items and now - quiet_since >= min(_QUIET_S, settle_s)):
            return items
        if not items and settle_s == 0:
            return items
        await asyncio.sleep(0.2)


async def _webhooks(receiver: Any, guid: str, settle_s: float) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    received: list[dict[str, Any]] = receiver.app.state.received
    count, quiet_since = -1, loop.time()
    while True:
        mine = [b for b in received if b.get("externalConversationId") == guid]
        if len(mine) != count:
            count, quiet_since = len(mine), loop.time()
        now = loop.time()
        if now >= deadline or (mine and now - quiet_since >= min(_QUIET_S, settle_s)):
            return mine
        await asyncio.sleep(0.1)


def _result(
    sc: Scenario,
    records: list[ActionRecord],
    journal: Any,
    remote: RemoteOutcome,
    started: datetime | None,
) -> ScenarioResult:
    delivered = _delivered(sc, remote, started)
    utterances = [u for u, _ in delivered]
    bodies = [b for _, b in delivered]
    streamed = _streamed(records, sc)
    report = analyze_leaks(
        sc.call, utterances, streamed=streamed, webhooks=bodies, plan=sc.plan.kind,
        extra={"namespace": sc.namespace, "transport": "target"},
    )  # fmt: skip
    policies = ParticipantPolicies()  # the vendor's default policy, as the target's
    return ScenarioResult(
        scenario=sc,
        guid=sc.guid,
        call=None,
        utterances=utterances,
        webhooks=remote.webhooks,
        streamed=streamed,
        actions=records,
        journal=journal,
        report=report,
        policies=policies,
        remote=remote,
    )


def _delivered(
    sc: Scenario, remote: RemoteOutcome, started: datetime | None
) -> list[tuple[Utterance, dict[str, Any]]]:
    """Each delivered transcript as an utterance on the call's script, with the body the
    leak analysis reads its visibility from."""
    out: list[tuple[Utterance, dict[str, Any]]] = []
    if remote.webhooks:
        for body in sorted(
            remote.webhooks,
            key=lambda b: (b["autotranscribeResponse"]["start"], b["sender"]["role"]),
        ):
            response = body["autotranscribeResponse"]
            role = body["sender"]["role"]
            start, end = float(response["start"]), float(response["end"])
            out.append((_utterance(sc, role, start, end, None), body))
        return out
    if started is None:
        return out
    for item in remote.messages:
        role = item["sender"]["role"]
        stamp = item.get("clientTimestamp")
        with contextlib.suppress(KeyError, ValueError, TypeError):
            at = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
            start = (at - started).total_seconds() * 1000.0
            utt = _place_message(sc, role, start, str(item.get("text", "")))
            body = {
                "sender": {"role": role},
                "autotranscribeResponse": {
                    "start": round(utt.start_ms),
                    "end": round(utt.end_ms),
                    "utterance": [{"text": str(item.get("text", ""))}],
                },
            }
            out.append((utt, body))
    return out


def _core(word: str) -> str:
    """A word as the text comparison sees it: lower case, without punctuation."""
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "#")


def _place_message(sc: Scenario, role: str, start: float, text: str) -> Utterance:
    """The script words of ``role`` a conversation message that began about ``start`` ms
    into the call says.

    The message's words are aligned (difflib) with the speaker's script words from
    ``_MESSAGE_WINDOW_MS`` before ``start`` on; the utterance runs from the first matched
    word to the last, widened by the message's unmatched words at either end, so no word
    the message may hold (a masked digit, another spelling) is left out of the leak
    analysis. A text that matches nothing falls back to the words at ``start``.

    >>> from mgsim.sim.call import load_sample
    >>> sc = Scenario(load_sample("card_payment"), "twilio")
    >>> _place_message(sc, "agent", 32_900.0, "digit security").texts
    ('digit', 'security')
    """
    tokens = [t for t in (_core(w) for w in text.split()) if t]
    words = [
        (i, w)
        for i, w in enumerate(sc.call.words)
        if w.speaker == role and w.start_ms >= start - _MESSAGE_WINDOW_MS
    ][: len(tokens) + 40]
    cores = [_core(w.text) for _, w in words]
    matcher = difflib.SequenceMatcher(None, tokens, cores, autojunk=False)
    pairs = [(b.a + k, b.b + k) for b in matcher.get_matching_blocks() for k in range(b.size)]
    if not pairs:
        return _utterance(sc, role, start, None, len(tokens))
    (first_t, first_w), (last_t, last_w) = pairs[0], pairs[-1]
    lo = max(first_w - first_t, 0)
    hi = min(last_w + (len(tokens) - 1 - last_t), len(words) - 1)
    picked = tuple(TimedWord(w.text, w.start_ms, w.end_ms, i) for i, w in words[lo : hi + 1])
    return Utterance(role, picked[0].start_ms, picked[-1].end_ms, picked)


def _utterance(
    sc: Scenario, role: str, start: float, end: float | None, count: int | None
) -> Utterance:
    """The script words of ``role`` a transcript delivered at ``start`` (to ``end``, or
    ``count`` words on) covers."""
    picked: list[TimedWord] = []
    for i, w in enumerate(sc.call.words):
        tolerance = _MATCH_TOLERANCE_MS if end is None else _WEBHOOK_TOLERANCE_MS
        if w.speaker != role or w.start_ms < start - tolerance:
            continue
        if end is not None and w.end_ms > end + tolerance:
            continue
        picked.append(TimedWord(w.text, w.start_ms, w.end_ms, i))
    picked.sort(key=lambda t: t.start_ms)
    if count is not None:
        picked = picked[:count]
    if end is None:
        end = picked[-1].end_ms if picked else start
        start = picked[0].start_ms if picked else start
    return Utterance(role, start, end, tuple(picked))


def _streamed(records: list[ActionRecord], sc: Scenario) -> dict[str, npt.NDArray[np.bool_]]:
    """Streaming windows as the integration saw them: from each confirmed start to the next
    confirmed stop (or the call's end)."""
    n = len(sc.call.audio.customer)
    mask = np.zeros(n, dtype=bool)
    opened: float | None = None
    for rec in sorted(records, key=lambda r: r.done_ms):
        if rec.action == "start" and rec.confirmed and opened is None:
            opened = rec.done_ms
        elif rec.action == "stop" and rec.confirmed and opened is not None:
            mask[round(opened * _SAMPLES_PER_MS) : round(rec.done_ms * _SAMPLES_PER_MS)] = True
            opened = None
    if opened is not None:
        mask[round(opened * _SAMPLES_PER_MS) :] = True
    return {role: mask.copy() for role in ROLES}
