"""A slow recognizer at stop-streaming or hang-up holds up only that call, not the others.

The server recognizes a closing segment in its recognition thread under a real clock
(Whisper takes seconds of CPU per window), whether stop-streaming or a hang-up closed it. A
fake engine blocks inside ``transcribe`` until the test releases it; meanwhile another
call's start and stop, and the same call's second stop, are answered. Nothing is timed: the
engine's wait is bounded only so that a regression (the recognition back on the event loop,
where nothing else can run until it returns) fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import HEADERS

from mgsim.gateway.mapping import default_channels
from mgsim.server.config import SimulatorConfig
from mgsim.simulator import Simulator
from mgsim.speech.engine import TimedWord, Utterance

START = "/mg-autotranscribe/v1/start-streaming"
STOP = "/mg-autotranscribe/v1/stop-streaming"
SLOW, OTHER = "1111", "2222"
BOUND_S = 20.0  # only a bound: the test never waits this long unless it is failing


class BlockingEngine:
    """Recognizes one word per participant, but only once :attr:`release` is set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()
        self.on_loop: list[bool] = []  # per call: was it made from the event loop's thread?
        self.threads: list[str] = []

    def transcribe(
        self, role: str, pcm: Any, streamed: Any, *, offset_ms: float = 0.0
    ) -> list[Utterance]:
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:  # a worker thread runs no event loop
            self.on_loop.append(False)
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        self.release.wait(BOUND_S)
        self.returned.set()
        return [Utterance(role, offset_ms, offset_ms + 400, (TimedWord("hello", 0, 400),))]


def body(guid: str) -> dict[str, str]:
    return {"namespace": "siprec", "guid": guid, "customerId": "c-1", "agentId": "a-1"}


def stop(guid: str) -> dict[str, str]:
    return {"namespace": "siprec", "guid": guid}


def stream_audio(sim: Simulator, guid: str) -> None:
    call = sim.gateway.calls[guid]
    for channel in default_channels("siprec"):
        call.receive(channel, 0, np.full(8000, 900, np.int16), sim.clock.now())


async def streaming(c: httpx.AsyncClient, sim: Simulator, guid: str, engine: Any) -> None:
    """Call ``guid`` open, transcribed by ``engine``, streaming, with a second of audio."""
    sim.gateway.open_call("siprec", guid)
    sim.gateway.transcription.attach(guid, engine)
    assert (await c.post(START, json=body(guid))).status_code == 200
    stream_audio(sim, guid)


def client(sim: Simulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=sim.async_transport(), base_url="http://sim", headers=HEADERS
    )


async def scenario(sim: Simulator, engine: BlockingEngine) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with client(sim) as c:
        sim.gateway.open_call("siprec", OTHER)
        await streaming(c, sim, SLOW, engine)

        slow_stop = asyncio.ensure_future(c.post(STOP, json=stop(SLOW)))
        # Bounded: returns as soon as the engine is inside transcribe.
        assert await asyncio.to_thread(engine.entered.wait, BOUND_S)
        # The recognition is running: other requests are answered meanwhile.
        seen["other_start"] = (await c.post(START, json=body(OTHER))).status_code
        seen["other_stop"] = (await c.post(STOP, json=stop(OTHER))).status_code
        seen["same_call_again"] = (await c.post(STOP, json=stop(SLOW))).json()["error"]["code"]
        seen["engine_still_busy"] = not engine.returned.is_set()
        seen["stop_still_waiting"] = not slow_stop.done()
        engine.release.set()
        answer = await asyncio.wait_for(slow_stop, BOUND_S)
        seen["slow_stop"] = answer.status_code
        seen["summary"] = answer.json()["autotranscribeResponse"]["customer"]["summary"]
        seen["messages"] = len(sim.gateway.conversation(SLOW))
    return seen


@pytest.mark.timeout(90)
def test_a_slow_recognition_leaves_other_calls_answered() -> None:
    engine = BlockingEngine()
    with Simulator(SimulatorConfig(seed=6, spike_arrest_per_s=None), virtual=False) as sim:
        try:
            seen = asyncio.run(scenario(sim, engine))
        finally:
            engine.release.set()
    assert seen["engine_still_busy"] and seen["stop_still_waiting"], seen
    assert (seen["other_start"], seen["other_stop"]) == (200, 200)
    assert seen["same_call_again"] == "409-202"  # the stop is still in flight
    # Once released, the stop's summary counts the transcripts the engine gave.
    assert seen["slow_stop"] == 200 and seen["summary"]["transcripts"] == 1, seen
    assert seen["messages"] == 2  # one per participant, stored for the conversation API
    assert engine.on_loop == [False, False]  # customer and agent, both in a worker thread
    assert {name.split("_")[0] for name in engine.threads} == {"mgsim-recognise"}


def on_a_real_clock(play: Any, *engines: BlockingEngine) -> Any:
    """``play(sim)`` on a simulator with a real clock; the engines are released whatever
    happens, so a failing test never leaves a thread waiting."""
    with Simulator(SimulatorConfig(seed=6, spike_arrest_per_s=None), virtual=False) as sim:
        try:
            return asyncio.run(play(sim))
        finally:
            for engine in engines:
                engine.release.set()


@pytest.mark.timeout(90)
def test_a_hang_up_while_streaming_recognizes_off_the_loop() -> None:
    """``DELETE /_sim/v1/calls/{guid}`` closes the streaming segment; it is answered once
    that is transcribed, and other calls are served meanwhile."""
    engine = BlockingEngine()

    async def hang_up(sim: Simulator) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with client(sim) as c:
            sim.gateway.open_call("siprec", OTHER)
            await streaming(c, sim, SLOW, engine)
            deleting = asyncio.ensure_future(c.delete(f"/_sim/v1/calls/{SLOW}"))
            assert await asyncio.to_thread(engine.entered.wait, BOUND_S)
            seen["other_start"] = (await c.post(START, json=body(OTHER))).status_code
            seen["other_stop"] = (await c.post(STOP, json=stop(OTHER))).status_code
            seen["delete_waiting"] = not deleting.done()
            engine.release.set()
            seen["delete"] = (await asyncio.wait_for(deleting, BOUND_S)).status_code
            seen["messages"] = len(sim.gateway.conversation(SLOW))
        return seen

    seen = on_a_real_clock(hang_up, engine)
    assert (seen["other_start"], seen["other_stop"], seen["delete_waiting"]) == (200, 200, True)
    assert (seen["delete"], seen["messages"]) == (204, 2)
    assert engine.on_loop == [False, False]


@pytest.mark.timeout(90)
def test_the_conversation_api_waits_for_a_platform_hang_up_in_recognition() -> None:
    """A platform's hang-up (a BYE, a closed WebSocket) ends the call on the loop and
    nobody waits for its recognition there: the conversation API does, so an integration
    reading the transcripts right after the call ended gets all of them."""
    engine = BlockingEngine()

    async def read_after_bye(sim: Simulator) -> dict[str, Any]:
        async with client(sim) as c:
            await streaming(c, sim, SLOW, engine)
            sim.gateway.hang_up(SLOW)  # what the media session does on a BYE
            assert sim.gateway.transcription.in_flight == 1
            reading = asyncio.ensure_future(
                c.get("/conversation/v1/conversation/messages", params={"externalId": SLOW})
            )
            assert await asyncio.to_thread(engine.entered.wait, BOUND_S)
            waiting = not reading.done()
            engine.release.set()
            items = (await asyncio.wait_for(reading, BOUND_S)).json()["items"]
            return {
                "waiting": waiting,
                "items": len(items),
                "left": sim.gateway.transcription.in_flight,
            }

    seen = on_a_real_clock(read_after_bye, engine)
    assert seen == {"waiting": True, "items": 2, "left": 0}


@pytest.mark.timeout(90)
def test_recognitions_queue_in_one_thread_of_their_own() -> None:
    """Two stops at once: the second recognition waits for the first (one thread, so two
    Whisper decodes never share two cores), and asyncio's default pool stays free."""
    first, second = BlockingEngine(), BlockingEngine()

    async def two_stops(sim: Simulator) -> dict[str, Any]:
        async with client(sim) as c:
            await streaming(c, sim, SLOW, first)
            await streaming(c, sim, OTHER, second)
            stops = [asyncio.ensure_future(c.post(STOP, json=stop(g))) for g in (SLOW, OTHER)]
            assert await asyncio.to_thread(first.entered.wait, BOUND_S)
            # asyncio.to_thread itself answered, so the default pool is not held up.
            seen = {"second_started": second.entered.is_set()}
            first.release.set()
            assert await asyncio.to_thread(second.entered.wait, BOUND_S)
            second.release.set()
            answers = await asyncio.wait_for(asyncio.gather(*stops), BOUND_S)
            seen["stops"] = [a.status_code for a in answers]
        return seen

    seen = on_a_real_clock(two_stops, first, second)
    assert seen == {"second_started": False, "stops": [200, 200]}
    assert set(first.threads) == set(second.threads) and len(set(first.threads)) == 1


def test_under_a_virtual_clock_recognition_runs_in_line() -> None:
    """Deterministic simulation: each stop is complete, in the loop's own thread."""
    engine = BlockingEngine()
    engine.release.set()
    with Simulator(SimulatorConfig(seed=6), virtual=True) as sim:
        sim.gateway.open_call("siprec", SLOW)
        sim.gateway.transcription.attach(SLOW, engine)
        with httpx.Client(transport=sim.sync_transport(), base_url="http://sim") as http:
            assert http.post(START, json=body(SLOW), headers=HEADERS).status_code == 200
            stream_audio(sim, SLOW)
            r = http.post(STOP, json=stop(SLOW), headers=HEADERS)
    assert r.json()["autotranscribeResponse"]["agent"]["summary"]["transcripts"] == 1
    assert engine.on_loop == [True, True]


@pytest.mark.timeout(90)
def test_a_stop_whose_client_leaves_is_still_transcribed() -> None:
    engine = BlockingEngine()

    async def leave_midway(sim: Simulator) -> int:
        async with client(sim) as c:
            await streaming(c, sim, SLOW, engine)
            slow_stop = asyncio.ensure_future(c.post(STOP, json=stop(SLOW)))
            assert await asyncio.to_thread(engine.entered.wait, BOUND_S)
            slow_stop.cancel()  # in process, the request is cancelled with its client
            with pytest.raises(asyncio.CancelledError):
                await slow_stop
            engine.release.set()
            async with asyncio.timeout(BOUND_S):  # bounded: done once the thread returns
                while len(sim.gateway.conversation(SLOW)) < 2:
                    await asyncio.sleep(0.01)
            return len(sim.gateway.conversation(SLOW))

    with Simulator(SimulatorConfig(seed=6, spike_arrest_per_s=None), virtual=False) as sim:
        try:
            assert asyncio.run(leave_midway(sim)) == 2
        finally:
            engine.release.set()


def test_a_scenario_in_virtual_time_recognizes_every_segment_in_line(monkeypatch) -> None:
    """A scenario's loop runs in virtual time (LoopClock): a recognition sent to a worker
    thread would take no simulated time while the call rushed on without its transcripts
    (a guarded Whisper call lost two of its three utterances so). A recognizer that is not
    the script engine and takes real time must still give what the script engine gives."""
    import time

    import mgsim.sim.scenario as scenario_module
    from mgsim.lab import Plan, Scenario, load_sample, run_scenario

    real_engine_for = scenario_module.engine_for
    threads: list[str] = []

    class SlowEngine:  # not a ScriptEngine: the server cannot tell it is quick
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def transcribe(self, role: str, pcm: Any, streamed: Any, *, offset_ms: float = 0.0):
            threads.append(threading.current_thread().name)
            time.sleep(0.05)  # real time, as a recognizer's CPU takes
            return self.inner.transcribe(role, pcm, streamed, offset_ms=offset_ms)

    call = load_sample("card_payment")
    expected = run_scenario(Scenario(call, "twilio", Plan("guard")))
    monkeypatch.setattr(
        scenario_module, "engine_for", lambda *a, **k: SlowEngine(real_engine_for(*a, **k))
    )
    slow = run_scenario(Scenario(call, "twilio", Plan("guard")))
    assert threads and set(threads) == {threading.main_thread().name}
    assert slow.utterance_rows() == expected.utterance_rows()
    assert len(slow.utterance_rows()) > 1
