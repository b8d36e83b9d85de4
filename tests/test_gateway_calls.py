"""The call state machine, without HTTP."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mgsim.clock import VirtualClock
from mgsim.contract import Problem
from mgsim.gateway import CallState, Gateway, Segment, StartParams, channel_roles


@pytest.fixture
def gw() -> Gateway:
    return Gateway(VirtualClock(), random.Random(0))


def code_of(exc: pytest.ExceptionInfo[Problem]) -> str:
    return exc.value.code


def test_start_needs_an_open_call(gw: Gateway) -> None:
    with pytest.raises(Problem) as exc:
        gw.start("siprec", "123", StartParams("c", "a"))
    assert code_of(exc) == "400-203"


def test_call_in_another_namespace_is_not_found(gw: Gateway) -> None:
    gw.open_call("siprec", "123")
    with pytest.raises(Problem) as exc:
        gw.start("twilio", "123", StartParams("c", "a"))
    assert code_of(exc) == "400-203"


def test_start_twice_and_stop_twice_conflict(gw: Gateway) -> None:
    gw.open_call("siprec", "123")
    with pytest.raises(Problem) as exc:
        gw.stop("siprec", "123")
    assert code_of(exc) == "409-201"
    gw.start("siprec", "123", StartParams("c", "a"))
    with pytest.raises(Problem) as exc:
        gw.start("siprec", "123", StartParams("c", "a"))
    assert code_of(exc) == "409-201"
    gw.stop("siprec", "123")
    with pytest.raises(Problem) as exc:
        gw.stop("siprec", "123")
    assert code_of(exc) == "409-201"


def test_many_segments_with_fresh_distinct_stream_ids(gw: Gateway) -> None:
    call = gw.open_call("twilio", "CA" + "0" * 32)
    ids: set[str] = set()
    for _ in range(5):
        seg = gw.start("twilio", call.guid, StartParams("c", "a"))
        assert seg.stream_ids["customer"] != seg.stream_ids["agent"]
        ids.update(seg.stream_ids.values())
        gw.stop("twilio", call.guid)
    assert len(ids) == 10
    assert len(call.segments) == 5 and not call.streaming


def test_summary_counts_only_audio_received_while_streaming(gw: Gateway) -> None:
    clock = gw.clock
    assert isinstance(clock, VirtualClock)
    call = gw.open_call("siprec", "123")
    one_second = np.ones(8000, dtype=np.int16)
    assert not call.receive("0", 0, one_second, clock.now())  # before start: not streamed
    gw.start("siprec", "123", StartParams("c", "a"))
    clock.advance(2.5)
    assert call.receive("0", 8000, one_second, clock.now())
    assert call.receive("1", 8000, one_second[:4000], clock.now())
    seg = gw.stop("siprec", "123")
    assert call.receive("0", 16000, one_second, clock.now()) is False
    assert seg.summary("customer") == {
        "totalAudioBytes": 16000,
        "audioDurationMs": 1000,
        "streamingSeconds": 3,
        "transcripts": 0,
    }
    assert seg.summary("agent")["audioDurationMs"] == 500


def test_media_line_order_decides_roles(gw: Gateway) -> None:
    call = gw.open_call("siprec", "123")
    body = {"siprecParams": {"mediaLineOrder": "AGENT_FIRST"}}
    gw.start("siprec", "123", StartParams("c", "a", body=body))
    call.receive("0", 0, np.ones(800, dtype=np.int16), 0.0)
    seg = gw.stop("siprec", "123")
    assert seg.samples == {"customer": 0, "agent": 800}


@pytest.mark.parametrize(
    ("namespace", "params", "expected"),
    [
        ("siprec", {}, {"0": "customer", "1": "agent"}),
        (
            "siprec",
            {"siprecParams": {"mediaLineOrder": "AGENT_FIRST"}},
            {"0": "agent", "1": "customer"},
        ),
        ("twilio", {}, {"inbound": "customer", "outbound": "agent"}),
        (
            "twilio",
            {"twilioParams": {"trackMap": {"inbound": "agent", "outbound": "customer"}}},
            {"inbound": "agent", "outbound": "customer"},
        ),
        ("genesysaudiohook", {}, {"external": "customer", "internal": "agent"}),
        ("amazonconnect", {}, {"AUDIO_FROM_CUSTOMER": "customer", "AUDIO_TO_CUSTOMER": "agent"}),
    ],
)
def test_channel_roles(namespace: str, params: dict[str, object], expected: dict[str, str]) -> None:
    assert channel_roles(namespace, params) == expected


def test_unsupported_language_streams_nothing(gw: Gateway) -> None:
    call = gw.open_call("siprec", "123")
    seg = gw.start("siprec", "123", StartParams("c", "a", language="fr-FR"))
    assert seg.status == (4050, "Language not supported")
    assert call.receive("0", 0, np.ones(80, dtype=np.int16), 0.0) is False
    assert not call.streaming and call.segments == [] and not seg.open


def test_new_agent_id_counts_a_new_leg(gw: Gateway) -> None:
    call = gw.open_call("siprec", "123")
    for agent in ["a1", "a1", "a2"]:
        gw.start("siprec", "123", StartParams("c", agent))
        gw.stop("siprec", "123")
    assert call.legs == 2


def test_hang_up_closes_the_open_segment_and_forgets_the_call(gw: Gateway) -> None:
    gw.open_call("siprec", "123")
    seg = gw.start("siprec", "123", StartParams("c", "a"))
    gw.hang_up("123")
    assert not seg.open
    with pytest.raises(Problem) as exc:
        gw.start("siprec", "123", StartParams("c", "a"))
    assert code_of(exc) == "400-203"
    with pytest.raises(Problem) as exc:
        gw.hang_up("123")
    assert code_of(exc) == "404-01"


def test_bye_in_progress_answers_409_203(gw: Gateway) -> None:
    call = gw.open_call("siprec", "123")
    call.bye_in_progress = True
    with pytest.raises(Problem) as exc:
        gw.start("siprec", "123", StartParams("c", "a"))
    assert code_of(exc) == "409-203"


def test_opening_an_open_call_conflicts(gw: Gateway) -> None:
    gw.open_call("siprec", "123")
    with pytest.raises(Problem) as exc:
        gw.open_call("siprec", "123")
    assert code_of(exc) == "409-01"


class RecordingBinding:
    """A media binding that records its calls and can refuse a start."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.log: list[tuple[str, int]] = []

    def started(self, call: CallState, segment: Segment) -> None:
        if self.refuse:
            raise Problem("400-201", "amazonConnectParams.streamArn: no such stream")
        assert call.current is segment  # the segment is current while started runs
        self.log.append(("started", segment.index))

    def stopped(self, call: CallState, segment: Segment) -> None:
        assert not segment.open
        self.log.append(("stopped", segment.index))


def test_media_binding_hears_start_stop_and_hang_up(gw: Gateway) -> None:
    call = gw.open_call("amazonconnect", "c")
    binding = RecordingBinding()
    call.media = binding
    gw.start("amazonconnect", "c", StartParams("c", "a"))
    gw.stop("amazonconnect", "c")
    gw.start("amazonconnect", "c", StartParams("c", "a"))
    gw.hang_up("c")
    assert binding.log == [("started", 0), ("stopped", 0), ("started", 1), ("stopped", 1)]


def test_a_binding_refusing_the_start_withdraws_the_segment(gw: Gateway) -> None:
    call = gw.open_call("amazonconnect", "c")
    call.media = RecordingBinding(refuse=True)
    with pytest.raises(Problem) as exc:
        gw.start("amazonconnect", "c", StartParams("c", "a"))
    assert code_of(exc) == "400-201"
    assert call.segments == [] and not call.streaming


def test_repeated_audio_is_counted_once_in_the_summary(gw: Gateway) -> None:
    call = gw.open_call("twilio", "CA" + "1" * 32)
    gw.start("twilio", call.guid, StartParams("c", "a"))
    frame = np.ones(160, dtype=np.int16)
    for start in (0, 0, 80, 160):
        call.receive("inbound", start, frame, 0.0)
    seg = gw.stop("twilio", call.guid)
    assert seg.samples["customer"] == 320
    assert call.timeline("inbound").overlap_samples == 160 + 80 + 80


def test_audio_held_but_not_read_is_received_not_streamed(gw: Gateway) -> None:
    call = gw.open_call("twilio", "CA" + "2" * 32)
    gw.start("twilio", call.guid, StartParams("c", "a"))
    assert call.receive("inbound", 0, np.ones(160, np.int16), 0.0, may_stream=False) is False
    assert call.timeline("inbound").received_samples == 160
    assert call.current is not None and call.current.samples["customer"] == 0


def test_roles_follow_the_latest_start(gw: Gateway) -> None:
    call = gw.open_call("siprec", "9")
    assert call.roles == {"0": "customer", "1": "agent"}
    body = {"siprecParams": {"mediaLineOrder": "AGENT_FIRST"}}
    gw.start("siprec", "9", StartParams("c", "a", body=body))
    assert call.channel_of("customer") == "1"


def test_pauses_are_recorded_as_sample_ranges(gw: Gateway) -> None:
    call = gw.open_call("genesysaudiohook", "g")
    call.note_paused(800)
    call.note_paused(900)  # already paused: ignored
    call.note_resumed(1600)
    call.note_resumed(1700)  # not paused: ignored
    call.note_paused(2400)
    assert call.pauses == [(800, 1600), (2400, None)]


def test_only_recent_ended_calls_keep_their_audio() -> None:
    gw = Gateway(VirtualClock(), random.Random(0), keep_audio_of=2)
    for i in range(4):
        call = gw.open_call("siprec", f"{i}")
        gw.start("siprec", f"{i}", StartParams("c", "a"))
        call.receive("0", 0, np.ones(800, dtype=np.int16), 0.0)
        gw.hang_up(f"{i}")
    released = [gw.ended[str(i)].audio_released for i in range(4)]
    assert released == [True, True, False, False]
    assert not gw.ended["0"].timelines and gw.ended["3"].timelines
    # what the control plane and the notebooks report stays for every call
    assert gw.ended["0"].segments[0].summary("customer")["audioDurationMs"] == 100
    assert gw.ended["0"].segments[0].samples["customer"] == 800
    assert len(gw.ended) == 4
