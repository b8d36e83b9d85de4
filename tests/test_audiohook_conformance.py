"""AudioHook conformance: a running server driven by a client written from the protocol text.

The client here is not mgsim's (:mod:`mgsim.media.audiohook_client`, the senders): it is a
few lines written from the Genesys AudioHook protocol specification and its reference
implementation, so that what mgsim's own client and server agree on by accident cannot
pass. What it relies on, from the documents:

* every text message is ``{"version": "2", "id", "type", "seq", "parameters"}``; the client
  adds ``serverseq`` (the last server ``seq`` it has seen) and ``position`` (an ISO-8601
  duration of the audio sent so far); the server adds ``clientseq`` (the last client
  ``seq`` it has seen); each side's ``seq`` starts at 1 and grows by one per message;
* ``open`` is answered by ``opened`` (with the one chosen media) and only then is audio
  sent: binary frames of PCMU, two channels interleaved sample by sample, external first;
* ``ping`` (optionally with ``rtt``, the round trip the client measured, a plain duration to
  the nanosecond) is answered by ``pong``; ``paused``/``resumed`` report client pauses,
  ``resumed`` with ``start`` and ``discarded``;
* ``close`` is answered by ``closed`` in any state; the server's ``disconnect`` (reason
  ``completed``, ``unauthorized`` or ``error``) is answered by the client's ``close``;
  re-establishing a session is not supported; a connection probe has the all-zero
  ``conversationId`` and may send a 0-byte audio frame;
* the upgrade carries an RFC 9421 HTTP message signature, HMAC-SHA256 keyed with the
  base64-decoded client secret over ``@request-target``, ``@authority`` and the
  ``audiohook-organization-id``, ``audiohook-session-id``, ``audiohook-correlation-id`` and
  ``x-api-key`` headers, with ``keyid``, ``nonce``, ``alg``, ``created`` and ``expires``;
  the reference verifier allows 3 s of clock skew, signatures at most 10 s old, and wants a
  nonce of at least 22 characters; ``open``'s organizationId must be the signed one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from conftest import HEADERS
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mgsim.server.config import (
    DEFAULT_AUDIOHOOK_API_KEY,
    DEFAULT_AUDIOHOOK_CLIENT_SECRET,
    SimulatorConfig,
)
from mgsim.simulator import Simulator
from mgsim.transports.serve import ServerThread

pytestmark = [pytest.mark.socket, pytest.mark.timeout(60)]

ORG = "d7934305-0972-4844-938e-9060eef73d05"
NULL = "00000000-0000-0000-0000-000000000000"
STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
MONO = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}
COVERED = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
REPLY_S = 5.0  # the protocol's open→opened timeout; every answer here is far quicker


def duration(samples: int) -> str:
    """An ISO-8601 duration of ``samples`` at 8 kHz."""
    return f"PT{samples / 8000:.6f}S"


def sign(
    path: str,
    authority: str,
    headers: dict[str, str],
    *,
    secret_b64: str,
    created: int,
    expires: int | None,
    nonce: str | None,
) -> dict[str, str]:
    """``Signature-Input`` and ``Signature`` for an upgrade, per RFC 9421 as AudioHook uses it."""
    lower = {k.lower(): v for k, v in headers.items()}
    params = "(" + " ".join(f'"{c}"' for c in COVERED) + ")"
    params += f';keyid="{lower["x-api-key"]}"'
    if nonce is not None:
        params += f';nonce="{nonce}"'
    params += ';alg="hmac-sha256"' + f";created={created}"
    if expires is not None:
        params += f";expires={expires}"
    values = {"@request-target": path, "@authority": authority, **lower}
    lines = [f'"{c}": {values[c]}' for c in COVERED] + [f'"@signature-params": {params}']
    mac = hmac.new(base64.b64decode(secret_b64), "\n".join(lines).encode(), hashlib.sha256)
    return {
        "Signature-Input": f"sig1={params}",
        "Signature": f"sig1=:{base64.b64encode(mac.digest()).decode()}:",
    }


def test_the_test_signer_reproduces_the_public_test_vector() -> None:
    headers = {
        "Audiohook-Organization-Id": ORG,
        "Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99d",
        "Audiohook-Session-Id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
        "X-API-KEY": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
    }
    signed = sign(
        "/api/v1/voicebiometrics/ws",
        "audiohook.example.com",
        headers,
        secret_b64="TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU=",
        created=1641013200,
        expires=3282026430,
        nonce="VGhpc0lzQVVuaXF1ZU5vbmNl",
    )
    assert signed["Signature"] == "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:"


class Client:
    """One AudioHook client session, as the protocol text describes the client's side."""

    def __init__(self, ws: ClientConnection, session_id: str) -> None:
        self.ws = ws
        self.id = session_id
        self.seq = 0
        self.serverseq = 0
        self.position = 0  # samples of audio time (sent, or reported as paused/discarded)
        self.received: list[dict[str, Any]] = []

    async def send(self, type_: str, parameters: dict[str, Any], **fields: Any) -> None:
        self.seq += 1
        message = {
            "version": "2",
            "id": self.id,
            "type": type_,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "position": duration(self.position),
            "parameters": parameters,
        }
        message.update(fields)
        await self.ws.send(json.dumps(message))

    async def recv(self) -> dict[str, Any]:
        """The next server message, checked against the framing rules."""
        data = await asyncio.wait_for(self.ws.recv(), REPLY_S)
        assert isinstance(data, str), "the server sends only text messages"
        message: dict[str, Any] = json.loads(data)
        assert message["version"] == "2" and message["id"] == self.id
        assert message["seq"] == self.serverseq + 1, "server seq must grow by one"
        assert message["clientseq"] <= self.seq
        assert isinstance(message["parameters"], dict)
        self.serverseq = message["seq"]
        self.received.append(message)
        return message

    async def expect(self, type_: str) -> dict[str, Any]:
        message = await self.recv()
        assert message["type"] == type_, message
        return message

    async def open(
        self,
        conversation: str,
        *,
        organization: str = ORG,
        media: list[dict[str, Any]] | None = None,
    ) -> None:
        params = {
            "organizationId": organization,
            "conversationId": conversation,
            "participant": {
                "id": str(uuid.uuid4()),
                "ani": "+13175550100",
                "aniName": "Caller",
                "dnis": "+13175550199",
            },
            "media": [STEREO, MONO] if media is None else media,
            "language": "en-US",
        }
        await self.send("open", params)

    async def audio(self, samples: int, value: int = 0x55) -> None:
        """``samples`` of stereo PCMU (external, internal interleaved)."""
        await self.ws.send(bytes([value]) * (2 * samples))
        self.position += samples

    async def close(self, reason: str = "end", **fields: Any) -> dict[str, Any]:
        await self.send("close", {"reason": reason}, **fields)
        closed = await self.expect("closed")
        assert closed["clientseq"] == self.seq
        return closed

    async def closed_by_server(self) -> int | None:
        """Wait for the server to end the connection; its close code."""
        try:
            extra = await asyncio.wait_for(self.ws.recv(), REPLY_S)
            raise AssertionError(f"nothing may follow closed, got {extra!r:.200}")
        except ConnectionClosed:
            pass
        return self.ws.close_code


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    config = SimulatorConfig(seed=7, spike_arrest_per_s=None, daily_quota=None, **overrides)
    with Simulator(config) as sim, ServerThread(sim) as running:
        yield running


def upgrade_headers(
    server: ServerThread,
    session_id: str,
    *,
    organization: str = ORG,
    api_key: str = DEFAULT_AUDIOHOOK_API_KEY,
    secret: str | None = DEFAULT_AUDIOHOOK_CLIENT_SECRET,
    created_offset: float = 0.0,
    expires_in: float | None = 60.0,
    nonce: str | None = "",
) -> dict[str, str]:
    headers = {
        "Audiohook-Organization-Id": organization,
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "Audiohook-Session-Id": session_id,
        "X-API-KEY": api_key,
    }
    if secret is None:
        return headers
    now = time.time()
    created = int(now + created_offset)
    return {
        **headers,
        **sign(
            "/audiohook/ws",
            f"127.0.0.1:{server.port}",
            headers,
            secret_b64=secret,
            created=created,
            expires=None if expires_in is None else int(now + expires_in),
            nonce=secrets.token_urlsafe(16) if nonce == "" else nonce,
        ),
    }


@asynccontextmanager
async def session(
    server: ServerThread, headers: dict[str, str] | None = None, **header_options: Any
) -> AsyncIterator[Client]:
    session_id = str(uuid.uuid4())
    if headers is None:
        headers = upgrade_headers(server, session_id, **header_options)
    else:
        session_id = headers["Audiohook-Session-Id"]
    url = f"ws://127.0.0.1:{server.port}/audiohook/ws"
    async with connect(url, additional_headers=headers, proxy=None) as ws:
        yield Client(ws, session_id)


async def api(server: ServerThread, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
        return await http.request(method, path, json=body)


def start_body(guid: str) -> dict[str, Any]:
    return {"namespace": "genesysaudiohook", "guid": guid, "customerId": "c", "agentId": "a"}


def media_call(server: ServerThread, guid: str) -> dict[str, Any]:
    answer: dict[str, Any] = asyncio.run(api(server, "GET", f"/_sim/v1/media/calls/{guid}")).json()
    return answer


def counters(server: ServerThread) -> dict[str, int]:
    counts: dict[str, int] = server.sim.app.state.media.media_counters()
    return counts


# -- a whole session -----------------------------------------------------------------------


def test_a_session_as_the_protocol_describes_it(server: ServerThread) -> None:
    guid = str(uuid.uuid4())
    frame = 1600  # 200 ms, as the reference client sends

    async def run() -> tuple[Client, dict[str, Any]]:
        async with session(server) as client:
            await client.open(guid)
            opened = await client.expect("opened")
            assert opened["parameters"]["media"] == [STEREO]
            assert opened["clientseq"] == 1
            assert (
                await api(server, "POST", "/mg-autotranscribe/v1/start-streaming", start_body(guid))
            ).status_code == 200
            for second in range(3):
                for _ in range(5):
                    await client.audio(frame)
                # rtt as real clients send it: nanoseconds, not on a sample boundary.
                await client.send("ping", {"rtt": f"PT0.00{second + 1}885396S"})
                pong = await client.expect("pong")
                assert pong["clientseq"] == client.seq
            await asyncio.sleep(0.2)  # the frames are on the server before the stop
            stop = await api(
                server,
                "POST",
                "/mg-autotranscribe/v1/stop-streaming",
                {"namespace": "genesysaudiohook", "guid": guid},
            )
            await client.close()
            assert await client.closed_by_server() == 1000
            return client, stop.json()

    client, stop = asyncio.run(run())
    assert [m["type"] for m in client.received] == ["opened", "pong", "pong", "pong", "closed"]
    for role in ("customer", "agent"):
        summary = stop["autotranscribeResponse"][role]["summary"]
        assert summary["totalAudioBytes"] == 15 * frame * 2  # 16-bit PCM of every sample
    acc = media_call(server, guid)["accounting"]
    assert acc["received"] == 15 and acc["dropped"] == {} and acc["errors"] == {}
    assert (acc["ended_by"], acc["end_reason"]) == ("platform", "end")


def test_a_close_that_fails_validation_still_gets_closed(server: ServerThread) -> None:
    guid = str(uuid.uuid4())

    async def run() -> Client:
        async with session(server) as client:
            await client.open(guid)
            await client.expect("opened")
            await client.audio(800)
            client.position += 8000  # a client whose position ran ahead of its audio
            await client.close()
            assert await client.closed_by_server() == 1000
            return client

    client = asyncio.run(run())
    assert [m["type"] for m in client.received] == ["opened", "closed"]
    acc = media_call(server, guid)["accounting"]
    assert acc["ended_by"] == "platform" and acc["anomalies"] == {"bad-close": 1}


# -- the gateway ends the call ----------------------------------------------------------------


def test_a_gateway_hang_up_is_told_with_disconnect_completed(server: ServerThread) -> None:
    guid = str(uuid.uuid4())

    async def run() -> int | None:
        async with session(server) as client:
            await client.open(guid)
            await client.expect("opened")
            await client.audio(1600)
            await asyncio.sleep(0.1)
            assert (await api(server, "DELETE", f"/_sim/v1/calls/{guid}")).status_code == 204
            disconnect = await client.expect("disconnect")
            assert disconnect["parameters"]["reason"] == "completed"
            await client.audio(1600)  # in flight before the client saw the disconnect
            await client.close("end")
            return await client.closed_by_server()

    code = asyncio.run(run())
    assert code == 1000
    view = media_call(server, guid)
    assert view["open"] is False
    acc = view["accounting"]
    assert (acc["ended_by"], acc["end_reason"]) == ("gateway", "hang-up")
    assert acc["received"] == 1 and acc["dropped"] == {"after-close": 1}
    assert acc["errors"] == {}


# -- conversationId: a UUID, compared case-insensitively ---------------------------------------


def test_an_upper_case_conversation_id_is_the_same_call_everywhere(server: ServerThread) -> None:
    guid = str(uuid.uuid4())
    upper = guid.upper()

    async def run() -> dict[str, int]:
        async with session(server) as client:
            await client.open(upper)
            await client.expect("opened")
            script = {
                "words": [{"speaker": "customer", "text": "hello", "startMs": 0, "endMs": 100}]
            }
            assert (
                await api(server, "PUT", f"/_sim/v1/calls/{upper}/script", script)
            ).status_code == 200
            assert (await api(server, "GET", f"/_sim/v1/calls/{upper}")).status_code == 200
            assert (await api(server, "GET", f"/_sim/v1/calls/{guid}")).status_code == 200
            started = await api(
                server, "POST", "/mg-autotranscribe/v1/start-streaming", start_body(upper)
            )
            assert started.status_code == 200, started.text
            await client.audio(1600)
            await asyncio.sleep(0.2)
            stopped = await api(
                server,
                "POST",
                "/mg-autotranscribe/v1/stop-streaming",
                {"namespace": "genesysaudiohook", "guid": guid},
            )
            assert stopped.status_code == 200, stopped.text
            await client.close()
            summary: dict[str, int] = stopped.json()["autotranscribeResponse"]["customer"][
                "summary"
            ]
            return summary

    summary = asyncio.run(run())
    assert summary["totalAudioBytes"] == 3200 and summary["transcripts"] == 1
    assert media_call(server, upper)["guid"] == guid


# -- one session per conversation --------------------------------------------------------------


def test_a_second_session_for_a_conversation_is_refused_at_open(server: ServerThread) -> None:
    guid = str(uuid.uuid4())

    async def run() -> Client:
        async with session(server) as first:
            await first.open(guid)
            await first.expect("opened")
            await first.audio(1600)
            async with session(server) as second:
                await second.open(guid.upper())
                refused = await second.expect("disconnect")  # instead of opened
                assert refused["parameters"]["reason"] == "error"
                assert "409" in refused["parameters"]["info"]
                await second.close("error")
                assert await second.closed_by_server() == 1000
            await first.audio(1600)
            await first.close()
            return second

    second = asyncio.run(run())
    assert [m["type"] for m in second.received] == ["disconnect", "closed"]
    acc = media_call(server, guid)["accounting"]
    assert acc["received"] == 2 and acc["errors"] == {} and acc["ended_by"] == "platform"
    assert counters(server)["media.genesysaudiohook.error.conflict"] == 1


# -- the upgrade's signature ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"created_offset": -3600.0}, "expired"),
        ({"created_offset": -60.0}, "expired"),
        ({"created_offset": 5.0}, "not-yet-valid"),
        ({"expires_in": 2.0}, "expired"),
        ({"nonce": None}, "bad-nonce"),
        ({"nonce": "c2hvcnQ"}, "bad-nonce"),
        ({"secret": "b3RoZXIgc2VjcmV0"}, "mismatch"),
        ({"secret": None}, "missing-header"),
    ],
    ids=[
        "hour-old",
        "minute-old",
        "future",
        "expiring",
        "no-nonce",
        "short-nonce",
        "secret",
        "unsigned",
    ],
)
def test_stale_or_bad_signatures_are_refused_before_the_socket_opens(
    server: ServerThread, options: dict[str, Any], reason: str
) -> None:
    async def run() -> None:
        async with session(server, **options):
            raise AssertionError("the upgrade was accepted")

    with pytest.raises(InvalidStatus) as info:
        asyncio.run(run())
    assert info.value.response.status_code == 401
    assert counters(server)[f"media.genesysaudiohook.rejected.{reason}"] == 1


def test_a_replayed_upgrade_is_refused(server: ServerThread) -> None:
    headers = upgrade_headers(server, str(uuid.uuid4()))

    async def run() -> None:
        async with session(server, headers=dict(headers)) as client:
            await client.open(NULL)
            await client.expect("opened")
            await client.close()
        async with session(server, headers=dict(headers)):
            raise AssertionError("the replayed upgrade was accepted")

    with pytest.raises(InvalidStatus) as info:
        asyncio.run(run())
    assert info.value.response.status_code == 401
    assert counters(server)["media.genesysaudiohook.rejected.replayed"] == 1


def test_open_for_another_organization_than_the_signed_one_is_unauthorized(
    server: ServerThread,
) -> None:
    guid = str(uuid.uuid4())

    async def run() -> Client:
        async with session(server, organization=ORG) as client:
            await client.open(guid, organization=str(uuid.uuid4()))
            refused = await client.expect("disconnect")
            assert refused["parameters"]["reason"] == "unauthorized"
            await client.close("error")
            return client

    client = asyncio.run(run())
    assert [m["type"] for m in client.received] == ["disconnect", "closed"]
    assert server.sim.gateway.find(guid) is None


@pytest.mark.parametrize("server", [{"audiohook_client_secret": None}], indirect=True)
def test_unsigned_connections_with_the_api_key_when_configured(server: ServerThread) -> None:
    async def run() -> Client:
        async with session(server, secret=None) as client:
            await client.open(str(uuid.uuid4()))
            await client.expect("opened")
            await client.close()
            return client

    assert [m["type"] for m in asyncio.run(run()).received] == ["opened", "closed"]
    for options in ({"secret": None, "api_key": "not-the-key"}, {}):  # a wrong key; signed

        async def refused(options: dict[str, Any] = options) -> None:
            async with session(server, **options):
                raise AssertionError("accepted")

        with pytest.raises(InvalidStatus) as info:
            asyncio.run(refused())
        assert info.value.response.status_code == 401


# -- what real clients do -----------------------------------------------------------------------


def test_a_probe_with_a_zero_byte_frame(server: ServerThread) -> None:
    async def run() -> Client:
        async with session(server) as client:
            await client.open(NULL)
            await client.expect("opened")
            await client.ws.send(b"")
            await client.close()
            assert await client.closed_by_server() == 1000
            return client

    assert [m["type"] for m in asyncio.run(run()).received] == ["opened", "closed"]
    assert not [k for k in counters(server) if ".error." in k]
    assert server.sim.gateway.calls == {}


def test_a_repeated_paused_is_tolerated(server: ServerThread) -> None:
    guid = str(uuid.uuid4())

    async def run() -> Client:
        async with session(server) as client:
            await client.open(guid)
            await client.expect("opened")
            await client.audio(1600)
            await client.send("paused", {})
            start = client.position
            client.position += 4000  # the client's clock runs on while paused
            await client.send("paused", {})  # still paused, said again
            client.position += 4000
            await client.send("resumed", {"start": duration(start), "discarded": duration(8000)})
            await client.audio(1600)
            await client.send("ping", {})
            await client.expect("pong")
            await client.close()
            return client

    assert [m["type"] for m in asyncio.run(run()).received] == ["opened", "pong", "closed"]
    acc = media_call(server, guid)["accounting"]
    assert acc["received"] == 2 and acc["errors"] == {} and acc["ended_by"] == "platform"


# -- permessage-deflate -------------------------------------------------------------------------


def test_the_audio_websockets_decline_permessage_deflate(server: ServerThread) -> None:
    """A client offers permessage-deflate (websockets does by default); the server declines
    it (RFC 7692 allows that) on AudioHook and on Twilio: µ-law is not worth deflating."""

    async def run() -> list[list[Any]]:
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http:
            answer = await http.get("/mg-autotranscribe/v1/twilio-media-stream-url")
        extensions = []
        async with session(server) as client:
            extensions.append(list(client.ws.protocol.extensions))
            await client.open(NULL)
            await client.expect("opened")
            await client.close()
        async with connect(answer.json()["streamingUrl"], proxy=None) as ws:
            extensions.append(list(ws.protocol.extensions))
        return extensions

    assert asyncio.run(run()) == [[], []]
