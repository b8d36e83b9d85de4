"""Scenarios end to end: every sample call through every platform, guarded or not."""

from __future__ import annotations

from typing import Any

import pytest

from mgsim.contract.models import AmazonConnectParams, SiprecParams, TwilioParams
from mgsim.errors import ConfigError
from mgsim.media.impair import Impairment
from mgsim.server.config import Faults
from mgsim.sim import scenario as scenario_module
from mgsim.sim.call import Call, list_samples, load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import NAMESPACES, Scenario, guid_for, run_scenario
from mgsim.speech.redact import mask_word

SAMPLES = [p.stem for p in list_samples()]
WITH_PCI = [s for s in SAMPLES if load_sample(s).sensitive]


@pytest.fixture(scope="module")
def calls() -> dict[str, Call]:
    return {name: load_sample(name) for name in SAMPLES}


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("sample", SAMPLES)
def test_guard_with_default_margins_transcribes_no_sensitive_word(
    calls: dict[str, Call], sample: str, namespace: str
) -> None:
    result = run_scenario(Scenario(calls[sample], namespace, Plan("guard")))  # type: ignore[arg-type]
    assert result.leaks["pci_words_transcribed"] == 0
    assert result.leaks["pci_ms_streamed"] == 0
    assert all(a.confirmed for a in result.actions)
    assert result.utterances  # the rest of the call was transcribed
    assert result.call is not None and result.call.accounting.balanced(None) in (True, None)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("sample", WITH_PCI)
def test_whole_call_transcribes_sensitive_words_and_redaction_masks_every_one(
    calls: dict[str, Call], sample: str, namespace: str
) -> None:
    call = calls[sample]
    redacted = run_scenario(Scenario(call, namespace, Plan("whole")))  # type: ignore[arg-type]
    plain = run_scenario(
        Scenario(call, namespace, Plan("whole"), redaction_output="unredacted")  # type: ignore[arg-type]
    )
    total = redacted.leaks["pci_words"]
    assert total > 0
    assert redacted.leaks["pci_words_transcribed"] == total
    assert redacted.leaks["pci_words_visible"] == 0
    assert plain.leaks["pci_words_visible"] == total
    # every word of the call was transcribed exactly once by the whole-call plan
    words = sorted(w.index for u in plain.utterances for w in u.words)
    assert words == sorted(set(words))
    delivered = " ".join(
        item["text"]
        for body in redacted.webhooks
        for item in body["autotranscribeResponse"]["utterance"]
    )
    # per span, the words reach the webhook as masks of the same length
    for span in call.sensitive:
        for i in span.word_indexes:
            assert mask_word(call.words[i].text) in delivered


def test_summary_and_conversation_messages_match_the_transcripts(calls: dict[str, Call]) -> None:
    result = run_scenario(Scenario(calls["card_payment"], "siprec", Plan("guard")))
    assert result.call is not None
    per_role = {"customer": 0, "agent": 0}
    for utt in result.utterances:
        per_role[utt.role] += 1
    counted = {role: sum(s.transcripts[role] for s in result.call.segments) for role in per_role}
    assert counted == per_role
    assert len(result.webhooks) == len(result.utterances)
    stops = [e for e in result.journal.entries if e.endpoint.endswith("stop-streaming")]
    assert len(stops) == len(result.call.segments)
    summaries = [e.response["autotranscribeResponse"]["customer"]["summary"] for e in stops]
    streamed_ms = sum(s["audioDurationMs"] for s in summaries)
    assert streamed_ms == pytest.approx(result.streamed["customer"].sum() / 8, abs=20)


def test_control_latency_with_no_margin_leaks_unless_the_guard_fails_closed(
    calls: dict[str, Call],
) -> None:
    tight = Plan("guard", 0, 0)
    naive = run_scenario(
        Scenario(calls["card_payment"], "twilio", tight, control_latency_ms=400, confirm_stop=False)
    ).leaks
    assert naive["pci_words_transcribed"] > 0 and naive["pci_ms_transcribed"] > 0
    safe = run_scenario(Scenario(calls["card_payment"], "twilio", tight, control_latency_ms=400))
    assert safe.leaks["pci_words_transcribed"] == 0
    assert sum(1 for a in safe.actions if a.masked_until_ms) == len(calls["card_payment"].sensitive)


def test_pci_safe_stop_under_faults_beats_the_naive_stop(calls: dict[str, Call]) -> None:
    faults = Faults(rate_503=0.3, latency_ms=200)
    safe = naive = 0
    for seed in range(8):
        for confirm, bucket in ((True, "safe"), (False, "naive")):
            sc = Scenario(
                calls["card_payment"],
                "siprec",
                Plan("guard"),
                faults=faults,
                seed=seed,
                confirm_stop=confirm,
            )
            leaked = run_scenario(sc).leaks["pci_words_transcribed"]
            if bucket == "safe":
                safe += leaked
            else:
                naive += leaked
    assert safe == 0
    assert naive > 0


@pytest.mark.parametrize(
    ("namespace", "params"),
    [
        ("siprec", SiprecParams("AGENT_FIRST")),
        ("twilio", TwilioParams("agent", "customer")),
    ],
)
def test_mapping_parameters_are_honoured_end_to_end(
    calls: dict[str, Call], namespace: str, params: SiprecParams | TwilioParams
) -> None:
    result = run_scenario(Scenario(calls["card_payment"], namespace, Plan("whole"), params=params))  # type: ignore[arg-type]
    roles = {u.role for u in result.utterances if "card" in u.text.lower()}
    assert roles  # the script's customer still speaks as the customer
    first = result.utterances[0]
    assert first.role == "agent" and first.text.startswith("Thank")


def test_fragment_number_selector_scenario(calls: dict[str, Call]) -> None:
    guid = guid_for("amazonconnect", "card_payment")
    arn = (
        "arn:aws:kinesisvideo:us-east-1:123456789012:stream/"
        f"mgsim-connect-demo-contact-{guid}/1767603600000"
    )
    with pytest.raises(ConfigError):
        Scenario(calls["card_payment"], "amazonconnect", params=SiprecParams())
    now = run_scenario(
        Scenario(
            calls["card_payment"], "amazonconnect", Plan("whole"), params=AmazonConnectParams(arn)
        )
    )
    assert now.utterances


def test_runs_are_deterministic(calls: dict[str, Call]) -> None:
    sc = Scenario(
        calls["transfer_payment"],
        "genesysaudiohook",
        Plan("guard"),
        faults=Faults(rate_503=0.2),
        seed=3,
    )
    first, second = run_scenario(sc).to_json(), run_scenario(sc).to_json()
    assert first == second


def _outcome(sc: Scenario) -> dict[str, object]:
    result = run_scenario(sc)
    out = result.to_json()
    out["webhooks"] = result.webhooks
    out["streamed"] = {role: int(mask.sum()) for role, mask in result.streamed.items()}
    assert result.call is not None
    out["summaries"] = [
        [seg.summary(r) for r in ("customer", "agent")] for seg in result.call.segments
    ]
    out["opened_at"], out["closed_at"] = result.call.opened_at, result.call.closed_at
    return out


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize(
    "options",
    [
        {"plan": Plan("guard")},
        {"plan": Plan("guard"), "faults": Faults(rate_503=0.3, latency_ms=200), "seed": 3},
        {"plan": Plan("guard", margin_before_ms=100), "control_latency_ms": 400, "seed": 1},
        {"plan": Plan("whole"), "confirm_stop": False, "faults": Faults(rate_503=0.5)},
    ],
    ids=["guard", "faults", "late-stops", "naive"],
)
def test_feeding_media_in_runs_changes_nothing(
    calls: dict[str, Call],
    namespace: str,
    options: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Frames due before the next control event are fed in one step; every timestamp,
    segment, transcript and request comes out as when each frame takes its own turn."""
    sc = Scenario(calls["account_verification"], namespace, **options)  # type: ignore[arg-type]
    batched = _outcome(sc)
    monkeypatch.setattr(scenario_module, "BATCH_MEDIA", False)
    stepped = _outcome(sc)
    assert batched == stepped
    assert batched["summaries"] and batched["webhooks"]


def test_guids_have_each_platform_form() -> None:
    from mgsim.server.rules import check_guid

    for namespace in NAMESPACES:
        check_guid(namespace, guid_for(namespace, "anything"))


def test_fragment_number_backlog_is_transcribed(calls: dict[str, Call]) -> None:
    """Audio from before the start, replayed by a FRAGMENT_NUMBER reader, is transcribed."""
    from mgsim.clock import VirtualClock
    from mgsim.gateway import Gateway, StartParams
    from mgsim.media import kvs
    from mgsim.sim.play import play
    from mgsim.speech.engine import ScriptEngine

    call = calls["card_payment"].truncated(12000)
    guid = guid_for("amazonconnect", call.call_id)
    arn = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/mgsim-replay/1767603600000"
    gw = Gateway(VirtualClock())
    gw.transcription.attach(guid, ScriptEngine(call.words))

    def start() -> None:
        first = gw.kvs.get(arn).fragments[0].number
        body = {
            "amazonConnectParams": {
                "streamArn": arn,
                "startSelectorType": "FRAGMENT_NUMBER",
                "afterFragmentNumber": first,
            }
        }
        gw.start("amazonconnect", guid, StartParams("c", "a", body=body))

    wires = kvs.encode(call.audio, guid=guid, stream_arn=arn, fragment_ms=1000)
    play(
        gw,
        "amazonconnect",
        wires,
        {8000.0: start, 11000.0: lambda: gw.stop("amazonconnect", guid)},
        session_options={"stream_arn": arn},
    )
    words = [w for u in gw.transcription.utterances(guid) for w in u.words]
    assert words and min(w.start_ms for w in words) < 2000  # replayed from the second fragment
    assert gw.ended[guid].segments[0].transcripts["agent"] > 0


def _words(result: scenario_module.ScenarioResult) -> list[tuple[str, float, float]]:
    return [(w.text, w.start_ms, w.end_ms) for u in result.utterances for w in u.words]


def test_real_time_mode_paces_the_call_and_gives_the_same_result(
    calls: dict[str, Call], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pacing is checked as a property that load cannot break: no media message reaches the
    gateway before its own time on the real clock (without pacing the whole call would
    arrive at once). Nothing bounds how late it may be. The transcript is the virtual run's
    but at the window's edges (below)."""
    import time

    call = calls["card_payment"].truncated(2500)
    virtual = run_scenario(Scenario(call, "genesysaudiohook", Plan("whole")))
    paced_scenario = Scenario(call, "genesysaudiohook", Plan("whole"), realtime=True)

    fed: list[tuple[float, float]] = []  # (s since the run began, the message's media time)
    open_session = scenario_module.open_media_session

    def recording_session(*args: object, **options: object) -> object:
        session = open_session(*args, **options)  # type: ignore[arg-type]
        feed = session.feed

        def recording_feed(wire: Any, **kw: Any) -> Any:
            fed.append((time.monotonic() - began, wire.at_ms / 1000.0))
            return feed(wire, **kw)

        session.feed = recording_feed  # type: ignore[method-assign]
        return session

    monkeypatch.setattr(scenario_module, "open_media_session", recording_session)
    began = time.monotonic()
    paced = run_scenario(paced_scenario)

    assert len(fed) == len(list(paced_scenario.sent_wires()))
    assert max(media for _, media in fed) >= 2.0  # the messages span the call
    early = [(at, media) for at, media in fed if at < media]
    assert not early, early[:5]  # each message waited for its time

    # Both ends of the streamed window follow the control requests, whose answers come
    # when the machine gets round to them: a word at either edge may be heard in one run
    # and not the other. Every word from one AudioHook frame (200 ms) after the start took
    # effect to one frame before the stop was due is heard in both, the same.
    start, stop = paced.actions[0], paced.actions[-1]
    assert (start.action, start.confirmed, stop.action) == ("start", True, "stop")
    lo, hi = start.done_ms + 200, stop.at_ms - 200

    def inside(result: scenario_module.ScenarioResult) -> list[tuple[str, float, float]]:
        return [w for w in _words(result) if lo <= w[1] and w[2] <= hi]

    assert inside(virtual) and inside(paced) == inside(virtual)


@pytest.mark.parametrize(
    ("namespace", "impairment"),
    [
        ("siprec", Impairment(loss=0.03, reorder=0.02, duplicate=0.01, jitter_ms=40, seed=5)),
        ("twilio", Impairment(loss=0.03, jitter_ms=40, burst=0.01, seed=5)),
        ("genesysaudiohook", Impairment(jitter_ms=60, burst=0.02, seed=5)),
        ("amazonconnect", Impairment(jitter_ms=200, burst=0.05, seed=5)),
    ],
)
def test_impaired_media_is_accounted_for_and_the_guard_still_holds(
    calls: dict[str, Call], namespace: str, impairment: Impairment
) -> None:
    sc = Scenario(calls["card_payment"], namespace, Plan("guard"), impairment=impairment)  # type: ignore[arg-type]
    result = run_scenario(sc)
    report = result.impairment
    assert report is not None and report.sent > 0
    assert result.call is not None
    books = result.call.accounting.as_dict()
    expected = report.expected_accounting()
    assert (books["received"], books["lost"]) == (expected["received"], expected["lost"])
    assert books["dropped"] == expected["dropped"]
    assert result.leaks["pci_words_transcribed"] == 0
    assert result.to_json()["impairment"]["sent"] == report.sent


def test_lost_media_costs_words_and_the_loss_is_where_the_audio_is_missing(
    calls: dict[str, Call],
) -> None:
    call = calls["card_payment"]
    clean = run_scenario(Scenario(call, "twilio", Plan("whole")))
    lossy = run_scenario(
        Scenario(call, "twilio", Plan("whole"), impairment=Impairment(loss=0.4, seed=2))
    )
    assert lossy.impairment is not None and lossy.impairment.dropped > 0
    words = sum(len(u.words) for u in lossy.utterances)
    assert words < sum(len(u.words) for u in clean.utterances)
    assert sum(int(m.sum()) for m in lossy.streamed.values()) < sum(
        int(m.sum()) for m in clean.streamed.values()
    )


def test_an_impairment_the_platform_cannot_have_is_refused(calls: dict[str, Call]) -> None:
    with pytest.raises(ConfigError, match="cannot have loss"):
        Scenario(calls["card_payment"], "amazonconnect", impairment=Impairment(loss=0.1))
