"""mgsim.lab: tables, plots, panels and audio, on known scenarios."""

from __future__ import annotations

import io
import re
import wave

import numpy as np
import pytest
from matplotlib import _pylab_helpers
from matplotlib.figure import Figure

import mgsim.lab as lab
from mgsim.lab import (
    ControlPanel,
    Faults,
    Plan,
    RunPanel,
    Scenario,
    ScenarioResult,
    actions_table,
    compare_plot,
    journal_table,
    leaks_table,
    load_sample,
    mask_runs,
    panel_snapshot,
    run_scenario,
    segments_table,
    summary_table,
    timeline,
    utterances_table,
    wav_bytes,
    windows_table,
)
from mgsim.lab.tables import (
    JOURNAL_COLUMNS,
    LEAK_COLUMNS,
    SEGMENT_COLUMNS,
    SUMMARY_COLUMNS,
    UTTERANCE_COLUMNS,
)
from mgsim.sim.call import list_samples

CALL = load_sample("card_payment")


@pytest.fixture(scope="module")
def guard() -> ScenarioResult:
    """The guard that holds: no sensitive word reaches transcription."""
    return run_scenario(Scenario(CALL, "twilio", Plan("guard")))


@pytest.fixture(scope="module")
def leaky() -> ScenarioResult:
    """No margin, 400 ms latency, no fail-closed step: the first word of each span leaks."""
    return run_scenario(
        Scenario(CALL, "twilio", Plan("guard", 0, 1000), control_latency_ms=400, fail_closed=False)
    )


@pytest.fixture(scope="module")
def whole() -> ScenarioResult:
    return run_scenario(Scenario(CALL, "twilio", Plan("whole")))


def _gids(fig: Figure, gid: str) -> int:
    return sum(1 for ax in fig.axes for p in ax.patches if p.get_gid() == gid)


# -- package --------------------------------------------------------------------------------


def test_all_names_resolve() -> None:
    assert sorted(lab.__all__) == sorted(set(lab.__all__))
    for name in lab.__all__:
        assert getattr(lab, name) is not None


# -- tables ---------------------------------------------------------------------------------


def test_journal_table_shows_the_429_schedule() -> None:
    from mgsim.client import Client
    from mgsim.errors import RateLimitError
    from mgsim.server.config import SimulatorConfig
    from mgsim.simulator import Simulator

    guid = "CA" + "0" * 32
    config = SimulatorConfig(seed=3, faults=Faults(rate_429=0.5))
    with Simulator(config, virtual=True) as sim, Client(simulator=sim) as client:
        client.open_call("twilio", guid)
        with pytest.raises(RateLimitError):
            client.start_streaming("twilio", guid, "c", "a")
        table = journal_table(client)
    assert list(table.columns) == list(JOURNAL_COLUMNS)
    starts = table[table["endpoint"] == "start-streaming"]
    assert starts["status"].tolist() == [429, 429, 429, 429]
    assert starts["attempt"].tolist() == [1, 2, 3, 4]
    assert starts["wait_ms"].tolist()[1:] == [1000.0, 2000.0, 4000.0]
    assert starts["t_ms"].tolist() == [0.0, 1000.0, 3000.0, 7000.0]


def test_journal_table_counts_confirmed_stop_retries_as_waits() -> None:
    result = run_scenario(
        Scenario(CALL, "twilio", Plan("guard"), faults=Faults(rate_503=0.3), seed=7)
    )
    table = journal_table(result)
    stops = table[(table["endpoint"] == "stop-streaming") & table["wait_ms"].notna()]
    assert len(stops) > 0
    assert set(stops["wait_ms"]) <= {250.0, 500.0, 1000.0}


def test_segments_table(guard: ScenarioResult) -> None:
    table = segments_table(guard)
    assert list(table.columns) == list(SEGMENT_COLUMNS)
    customer = table[table["role"] == "customer"]
    assert customer["segment"].tolist() == [0, 1, 2, 3]
    assert customer["start_ms"].tolist() == [400.0, 27560.0, 32782.0, 37492.0]
    assert customer["stop_ms"].tolist() == [19230.0, 28863.0, 33856.0, 51753.0]
    assert (customer["status"] == 1000).all()
    assert customer["transcripts"].sum() == 4


def test_windows_and_mask_runs(guard: ScenarioResult) -> None:
    table = windows_table(guard)
    customer = table[table["role"] == "customer"]
    assert len(customer) == 4
    assert (customer["duration_ms"] == customer["end_ms"] - customer["start_ms"]).all()
    # No streamed stretch overlaps a sensitive span.
    for span in CALL.sensitive:
        overlap = (customer["start_ms"] < span.end_ms) & (customer["end_ms"] > span.start_ms)
        assert not overlap.any()


@pytest.mark.parametrize(
    ("mask", "runs"),
    [
        ([], []),
        ([True] * 8, [(0.0, 1.0)]),
        ([False] * 8 + [True] * 16 + [False] * 8 + [True] * 8, [(1.0, 3.0), (4.0, 5.0)]),
    ],
)
def test_mask_runs(mask: list[bool], runs: list[tuple[float, float]]) -> None:
    assert mask_runs(np.array(mask, dtype=bool)) == runs


@pytest.mark.parametrize(("fixture", "sensitive"), [("guard", 0), ("whole", 23), ("leaky", 3)])
def test_utterances_table(fixture: str, sensitive: int, request: pytest.FixtureRequest) -> None:
    result: ScenarioResult = request.getfixturevalue(fixture)
    table = utterances_table(result)
    assert list(table.columns) == list(UTTERANCE_COLUMNS)
    assert table["sensitive_words"].sum() == sensitive
    assert table["start_ms"].is_monotonic_increasing
    assert len(table) == len(result.utterances)


def test_utterances_table_redacts(whole: ScenarioResult) -> None:
    table = utterances_table(whole)
    card = table[table["sensitive_words"] >= 16].iloc[0]
    assert "four five three nine" in card["text"]
    assert not any(ch.isdigit() for ch in card["redacted_text"])
    assert "four" not in card["redacted_text"].split()[2:]


def test_leaks_table(leaky: ScenarioResult, guard: ScenarioResult) -> None:
    table = leaks_table(leaky)
    assert list(table.columns) == list(LEAK_COLUMNS)
    assert table.index.tolist() == ["card_number", "expiry", "cvv"]
    assert table["name"].tolist() == ["card number", "expiry date", "CVV"]
    assert table["verdict"].tolist() == ["VISIBLE"] * 3
    assert table["words"].tolist() == [16, 4, 3]
    assert table["words_transcribed"].tolist() == [1, 1, 1]
    assert table["leaked"].tolist() == [True, True, True]
    assert not leaks_table(guard.report)["leaked"].any()


def test_summary_table(guard: ScenarioResult, leaky: ScenarioResult, whole: ScenarioResult) -> None:
    table = summary_table([guard, leaky, whole])
    assert list(table.columns) == list(SUMMARY_COLUMNS)
    # whole + redacted: the expiry's "oh" is read off its mask ("##"), so it leaks too.
    assert table["verdict"].tolist() == ["never transcribed", "LEAK", "LEAK"]
    assert table["pci_words_transcribed"].tolist() == [0, 3, 23]
    assert table["latency_ms"].tolist() == [0.0, 400.0, 0.0]
    assert table["leaked_labels"].tolist()[1] == "card_number, expiry, cvv"
    assert len(summary_table(guard)) == 1


def test_compare_namespaces_one_row_each() -> None:
    table = lab.compare_namespaces(CALL, Plan("guard"))
    assert table["namespace"].tolist() == list(lab.NAMESPACES)
    assert (table["pci_words_transcribed"] == 0).all()
    assert (table["utterances"] == 12).all()


def test_actions_table(leaky: ScenarioResult) -> None:
    table = actions_table(leaky)
    assert table["action"].tolist() == ["start", "stop"] * 4
    assert (table["lag_ms"] == 400.0).all()
    assert table["masked_until_ms"].isna().all()


def test_actions_table_fail_closed() -> None:
    result = run_scenario(
        Scenario(CALL, "twilio", Plan("guard"), faults=Faults(rate_503=0.7), seed=7)
    )
    table = actions_table(result)
    masked = table[table["masked_until_ms"].notna()]
    assert len(masked) == 2
    assert (masked["masked_from_ms"] == masked["at_ms"] + 1500.0).all()
    fig = timeline(result)
    assert _gids(fig, "masked") == 2 * len(masked)  # both lanes
    # Words the mask clipped are marked on both participants' lanes.
    lanes = {ax.get_ylabel() for ax in fig.axes for p in ax.patches if p.get_gid() == "clipped"}
    assert lanes == {"customer", "agent"}


# -- plots ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", [p.stem for p in list_samples()])
def test_timeline_of_a_call_shades_each_sensitive_span(sample: str) -> None:
    call = load_sample(sample)
    fig = timeline(call)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert _gids(fig, "sensitive") == len(call.sensitive)
    assert _gids(fig, "streaming") == 0


@pytest.mark.parametrize("fixture", ["guard", "leaky", "whole"])
def test_timeline_artists_match_the_tables(fixture: str, request: pytest.FixtureRequest) -> None:
    result: ScenarioResult = request.getfixturevalue(fixture)
    fig = timeline(result)
    leaks = result.leaks
    assert _gids(fig, "sensitive") == len(CALL.sensitive)
    assert _gids(fig, "streaming") == len(windows_table(result))
    assert _gids(fig, "utterance") == len(result.utterances)
    assert _gids(fig, "leak") == leaks["pci_words_visible"]
    assert _gids(fig, "inferable") == leaks["pci_words_inferable"]
    masked_only = leaks["pci_words_transcribed"] - leaks["pci_words_visible"]
    assert _gids(fig, "transcribed") == masked_only - leaks["pci_words_inferable"]
    texts = [t for ax in fig.axes for t in ax.texts if t.get_gid() == "utterance-text"]
    assert len(texts) == len(result.utterances)
    assert result.scenario.namespace in fig.get_suptitle()


def test_plots_never_touch_pyplot(guard: ScenarioResult) -> None:
    before = _pylab_helpers.Gcf.get_num_fig_managers()
    timeline(guard)
    compare_plot([guard])
    assert _pylab_helpers.Gcf.get_num_fig_managers() == before


def test_compare_plot(guard: ScenarioResult, leaky: ScenarioResult) -> None:
    fig = compare_plot([guard, leaky], labels=["holds", "fails"])
    assert len(fig.axes) == 2
    verdicts = [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "verdict"]
    assert verdicts[0].startswith("never transcribed") and verdicts[1].startswith("LEAK")
    assert _gids(fig, "sensitive") == 2 * len(CALL.sensitive)
    assert _gids(fig, "leak") == 3
    with pytest.raises(ValueError):
        compare_plot([])


# -- widgets --------------------------------------------------------------------------------


def test_control_panel_clicks_drive_the_journal() -> None:
    panel = ControlPanel(namespace="twilio")
    try:
        assert len(panel.click_open()) == 1
        table = panel.click_start()
        assert table["endpoint"].tolist() == ["calls", "start-streaming"]
        assert "ok" in panel.status.value
        table = panel.click_start()
        assert table["code"].tolist()[-1] == "409-201"
        assert "ConflictError" in panel.status.value
        assert "409-201" in panel.journal.value
        table = panel.click_stop()
        assert table["status"].tolist() == [201, 200, 409, 200]
        assert panel.last.customer.summary is not None
        panel.click_hang_up()
        assert len(panel.journal_frame()) == 5
        assert "5 requests" in panel._repr_mimebundle_()["text/plain"]
    finally:
        panel.close()


@pytest.mark.parametrize(
    ("namespace", "key"),
    [
        ("siprec", "siprecParams"),
        ("twilio", "twilioParams"),
        ("amazonconnect", "amazonConnectParams"),
        ("genesysaudiohook", None),
    ],
)
def test_control_panel_namespace_switch(namespace: str, key: str | None) -> None:
    panel = ControlPanel(namespace="twilio")
    try:
        panel.namespace.value = namespace
        assert panel.guid.value == ControlPanel.default_guid(namespace)
        params = panel.params()
        assert (params.to_body() if params else {}).keys() == ({key} if key else set())
        panel.click_open()
        panel.click_start()
        assert panel.journal_frame()["status"].tolist() == [201, 200]
    finally:
        panel.close()


def test_run_panel_run_shows_the_result() -> None:
    panel = RunPanel("card_payment", margin_before_ms=0, latency_ms=400, fail_closed=False)
    result = panel.run()
    assert result is panel.result
    assert result.leaks["pci_words_visible"] == 3
    assert bytes(panel.plot.value).startswith(b"\x89PNG")
    assert panel.progress.value == panel.STEPS
    assert "LEAK" in panel.summary.value
    assert "card number" in panel.leaks.value and "VISIBLE" in panel.leaks.value
    lines = panel.transcript_lines(result)
    assert [line["sensitive"] for line in lines].count("shown") == 3
    assert "LEAK" in panel._repr_mimebundle_()["text/plain"]
    assert isinstance(panel_snapshot(panel), Figure)


def test_run_panel_set_and_auto_run() -> None:
    panel = RunPanel("card_payment", auto_run=False)
    panel.set(namespace="siprec", margin_before_ms=600, fail_closed=False)
    assert panel.result is None  # set() never runs
    sc = panel.scenario()
    assert (sc.namespace, sc.plan.margin_before_ms, sc.fail_closed) == ("siprec", 600.0, False)
    with pytest.raises(TypeError):
        panel.set(margin=1)
    panel.auto_run = True
    panel.plan.value = "whole"
    assert panel.result is not None and panel.result.scenario.plan.kind == "whole"
    assert panel.result.leaks["pci_words_transcribed"] == 23


# -- audio ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "channels"), [("customer", 1), ("agent", 1), ("stereo", 2)])
def test_wav_bytes(role: str, channels: int) -> None:
    data = wav_bytes(CALL, role, start_ms=1000, end_ms=3000)  # type: ignore[arg-type]
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (channels, 8000, 2)
        assert wav.getnframes() == 16000
        frames = np.frombuffer(wav.readframes(16000), dtype="<i2")
    expected = CALL.stereo_array()[8000:24000]
    if role != "stereo":
        expected = expected[:, 0 if role == "customer" else 1]
    assert np.array_equal(frames, expected.reshape(-1))


def test_wav_bytes_rejects_unknown_roles() -> None:
    with pytest.raises(ValueError):
        wav_bytes(CALL, "both")  # type: ignore[arg-type]


def test_audio_player() -> None:
    player = lab.audio_player(CALL, "agent", end_ms=500)
    assert player.format == "wav" and bytes(player.value)[:4] == b"RIFF" and not player.autoplay


def test_control_panel_state_plot_follows_the_requests() -> None:
    from mgsim.lab.widgets import ControlPanel, streaming_states

    panel = ControlPanel(namespace="siprec")
    first = panel.plot.value
    panel.click_open()
    panel.click_start()
    after_start = panel.plot.value
    panel.click_start()  # refused: 409-201
    frame = panel.click_stop()
    assert streaming_states(frame) == [False, True, True, False]
    assert first != after_start != panel.plot.value
    assert bytes(panel.plot.value).startswith(b"\x89PNG")
    panel.close()


# -- readability ----------------------------------------------------------------------------


def test_readable_blanks_missing_values_and_keeps_the_rest(leaky: ScenarioResult) -> None:
    table = actions_table(leaky)
    assert table["masked_until_ms"].isna().all()
    shown = lab.readable(table)
    assert (shown["masked_until_ms"] == "").all()
    assert shown["at_ms"].tolist() == table["at_ms"].tolist()
    for text in (repr(shown), shown.to_string()):
        assert "NaN" not in text and "<NA>" not in text and "None" not in text


def test_summary_table_rows_can_be_named(guard: ScenarioResult, leaky: ScenarioResult) -> None:
    table = summary_table([guard, leaky], labels=["holds", "fails"])
    assert table.index.tolist() == ["holds", "fails"] and table.index.name == "run"
    with pytest.raises(ValueError, match="1 labels for 2 runs"):
        summary_table([guard, leaky], labels=["one"])


def test_a_hang_up_is_named_for_its_endpoint_not_its_guid() -> None:
    from mgsim.lab.widgets import ControlPanel, streaming_states

    panel = ControlPanel(namespace="twilio")
    try:
        panel.click_open()
        panel.click_start()
        frame = panel.click_hang_up()
        assert frame[["method", "endpoint"]].values.tolist()[-1] == ["DELETE", "calls"]
        assert panel.guid.value not in frame["endpoint"].tolist()
        assert streaming_states(frame) == [False, True, False]
    finally:
        panel.close()


def test_control_panel_log_times_clicks_in_the_page_on_its_virtual_clock() -> None:
    from mgsim.lab import widgets

    real = iter([100.0, 102.5, 107.25, 110.0])
    panel = widgets.ControlPanel(namespace="siprec")
    panel._now = lambda: next(real)  # four clicks in the page, 2.5, 4.75 and 2.75 s apart
    try:
        for button in ("open call", "start", "start", "stop"):
            panel.buttons[button].click()
        frame = panel.journal_frame()
        summary = panel.last.customer.summary
    finally:
        panel.close()
    assert frame["t_s"].tolist() == [0.0, 2.5, 7.25, 10.0]
    assert frame["code"].tolist()[2] == "409-201"
    # The call streamed from the first start to the stop, 7.5 s on the panel's clock, which
    # the gateway counts in whole seconds, rounded up.
    assert summary.streaming_seconds == 8
    assert "<td>7.25</td>" in panel.journal.value and "<td>10.00</td>" in panel.journal.value


def test_control_panel_clicks_from_code_take_no_time_unless_told() -> None:
    from mgsim.lab import widgets

    panel = widgets.ControlPanel(namespace="twilio")
    panel._now = lambda: pytest.fail("clicks from code never read the real clock")
    try:
        panel.click_open()
        panel.click_start()
        panel.wait(2.5)
        panel.click_stop()
        panel.click_hang_up()
        with pytest.raises(ValueError, match="forward"):
            panel.wait(-1)
        frame = panel.journal_frame()
    finally:
        panel.close()
    assert frame["t_s"].tolist() == [0.0, 0.0, 2.5, 2.5]
    # Twice the same panel from code: the same log, so a saved notebook is the same file.
    again = widgets.ControlPanel(namespace="twilio")
    try:
        again.click_open()
        again.click_start()
        again.wait(2.5)
        again.click_stop()
        again.click_hang_up()
        assert again.journal.value == panel.journal.value
    finally:
        again.close()


def test_control_panel_log_cells_do_not_wrap() -> None:
    panel = ControlPanel(namespace="siprec")
    try:
        panel.click_open()
        panel.click_start()
        panel.click_start()
        panel.click_hang_up()
    finally:
        panel.close()
    html = panel.journal.value
    assert "white-space: nowrap" in html
    for cell in ("start-streaming", "409-201", "DELETE", "calls"):
        assert f"<td>{cell}</td>" in html, cell
    assert f"<td>{panel.guid.value}</td>" not in html  # (error messages may name it)
    assert "NaN" not in html and "&lt;NA&gt;" not in html and "None" not in html


@pytest.mark.parametrize("fixture", ["guard", "whole"])
def test_plot_text_is_at_least_9_points_and_inside_the_figure(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    result: ScenarioResult = request.getfixturevalue(fixture)
    for fig in (timeline(result), compare_plot([result, result])):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()  # labels find their places when drawn
        renderer = canvas.get_renderer()
        box = fig.bbox
        texts: list[Text] = list(fig.texts)
        for ax in fig.axes:
            texts += [*ax.texts, ax.xaxis.label, ax.yaxis.label]
            legend = ax.get_legend()
            texts += legend.get_texts() if legend is not None else []
            lo, hi = sorted(ax.get_xlim())
            texts += [t for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
            texts += ax.get_yticklabels()
        texts = [t for t in texts if t.get_visible() and t.get_text().strip()]
        assert len(texts) > 10
        for text in texts:
            assert text.get_fontsize() >= 9, (text.get_text(), text.get_fontsize())
            if text.get_clip_on() and text.get_gid() in ("utterance-text", "clipped-label"):
                continue  # clipped to its lane on purpose, within the axes
            extent = text.get_window_extent(renderer)
            assert extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1, text.get_text()
            assert extent.y0 >= box.y0 - 1 and extent.y1 <= box.y1 + 1, text.get_text()


# -- widget ids -----------------------------------------------------------------------------


_IDS_OF_A_RUN = """
import ipywidgets
from mgsim.lab.widget_ids import seed_model_ids
seed_model_ids("test-notebook")
audio, html = ipywidgets.Audio(value=b"RIFF"), ipywidgets.HTML("x")
kept = ipywidgets.Text(model_id="f" * 32)
print(audio.model_id, audio.layout.model_id, html.model_id, kept.model_id)
"""


def test_seeded_widget_ids_are_the_same_on_every_run() -> None:
    import subprocess
    import sys

    from mgsim.lab import widget_ids

    # Each run in a process of its own, as each notebook run has a kernel of its own.
    runs = [
        subprocess.run([sys.executable, "-c", _IDS_OF_A_RUN], capture_output=True, text=True,
                       check=True, timeout=60).stdout.split()
        for _ in range(2)
    ]  # fmt: skip
    assert runs[0] == runs[1]
    audio, layout, html, kept = runs[0]
    assert (audio, layout) == (widget_ids.model_id("test-notebook", 0),
                               widget_ids.model_id("test-notebook", 1))  # fmt: skip
    assert kept == "f" * 32  # an explicit id is kept
    assert len({audio, layout, html}) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in (audio, layout, html))
