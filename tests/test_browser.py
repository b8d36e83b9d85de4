"""The quick-start notebook in a real browser: JupyterLab on loopback, Debian's Chromium.

Runs the notebook through JupyterLab's menus, then presses the control panel's *start* and
*stop* buttons and checks that the journal table on the page grows by a start-streaming 200
and a stop-streaming 200, and that the timeline figure was drawn. A screenshot is left in
``test-artifacts/browser-quickstart.png``, whether the test passed or not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    App,
    JupyterLab,
    NotebookPage,
    run_app,
    run_jupyterlab,
    skip_reason,
    table_rows,
)
from conftest import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
QUICKSTART = "01_quickstart.ipynb"
SCREENSHOT = ROOT / "test-artifacts" / "browser-quickstart.png"
APP_SCREENSHOT = ROOT / "test-artifacts" / "browser-app.png"

# Deadlines (the whole test takes about 25 s on two cores).
LAB_START_S = 30.0
OPEN_MS = 45_000.0
RUN_S = 45.0
CLICK_MS = 10_000.0
APP_OPEN_MS = 120_000.0

_SKIP = skip_reason()
needs_browser = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


def code_sources(path: Path) -> list[str]:
    """The source of each code cell of the notebook at ``path``, in order."""
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def cells_to_run(sources: list[str]) -> int:
    """How many leading code cells to run so that the control panel stays usable.

    A notebook that ends by closing its panel leaves buttons that can no longer send
    anything; such a closing cell (and what follows it) is left out of the run.
    """
    for index, source in enumerate(sources):
        if re.search(r"^\s*panel\.close\(\)", source, re.MULTILINE):
            return index
    return len(sources)


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        (["a = 1", "panel = ControlPanel()", "panel.close()\nsim.close()"], 2),
        (["panel = ControlPanel()", "panel"], 2),
        (["# panel.close() is left for the reader", "x"], 2),
    ],
)
def test_cells_to_run(sources: list[str], expected: int) -> None:
    assert cells_to_run(sources) == expected


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    with run_jupyterlab(NOTEBOOKS, tmp_path, free_port(), startup_timeout=LAB_START_S) as server:
        yield server


@pytest.fixture
def page() -> Iterator[Page]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), timeout=30_000
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.set_default_timeout(CLICK_MS)
            yield context.new_page()
        finally:
            browser.close()


def same_rows(a: list[dict[str, str]], b: list[dict[str, str]]) -> bool:
    """The same journal rows: a row's time may be printed with more decimals once a later
    row needs them ("0.0" then "0.00"), so times compare as numbers."""

    def norm(rows: list[dict[str, str]]) -> list[dict[str, object]]:
        return [{**r, "t_s": float(r["t_s"]) if r.get("t_s") else r.get("t_s")} for r in rows]

    return norm(a) == norm(b)


def journal_after_click(panel: Locator, button: str, rows: int) -> list[dict[str, str]]:
    """Click ``button`` and return the journal table once it has ``rows`` rows."""
    from playwright.sync_api import expect

    journal = panel.locator("table.mgsim-table")
    panel.get_by_role("button", name=button, exact=True).click(timeout=CLICK_MS)
    expect(journal.locator("tbody tr")).to_have_count(rows, timeout=CLICK_MS)
    return table_rows(journal)


@needs_browser
@pytest.mark.socket
@pytest.mark.slow
def test_quickstart_control_panel(lab: JupyterLab, page: Page) -> None:
    from playwright.sync_api import expect

    sources = code_sources(NOTEBOOKS / QUICKSTART)
    to_run = cells_to_run(sources)
    nb = NotebookPage(page)
    figures = page.locator('.jp-OutputArea-output img[src^="data:image/png"]')
    start_buttons = page.get_by_role("button", name="start", exact=True)
    try:
        nb.open(lab, QUICKSTART, len(sources), OPEN_MS)
        nb.menu("Edit", "editmenu:clear-all")
        expect(figures).to_have_count(0)
        assert nb.execution().numbered == 0

        if to_run == len(sources):
            nb.menu("Run", "runmenu:run-all")
        else:
            nb.select_cell(nb.code_cells().nth(to_run))
            nb.menu("Run", "notebook:run-all-above")
        done = nb.wait_executed(to_run, RUN_S)
        assert done.errors == []
        assert done.numbered == to_run, done.prompts

        # The figure appeared where the cleared outputs had none, and was drawn.
        expect(figures.first).to_be_visible()
        widths = figures.evaluate_all("(imgs) => imgs.map((i) => i.naturalWidth)")
        assert widths and min(widths) > 300

        expect(start_buttons).to_have_count(1)
        panel = nb.code_cells().filter(has=start_buttons)
        plot = panel.locator(".mgsim-control-plot")
        before = table_rows(panel.locator("table.mgsim-table"))
        plot_before = plot.get_attribute("src")
        started = journal_after_click(panel, "start", len(before) + 1)
        # The plot is a separate widget message: it may land after the table.
        expect(plot).not_to_have_attribute("src", plot_before or "")
        plot_started = plot.get_attribute("src")
        stopped = journal_after_click(panel, "stop", len(before) + 2)
        expect(plot).not_to_have_attribute("src", plot_started or "")
        plot_stopped = plot.get_attribute("src")
        panel.scroll_into_view_if_needed()
    finally:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))

    assert same_rows(started[: len(before)], before)
    assert (started[-1]["endpoint"], started[-1]["status"]) == ("start-streaming", "200")
    assert same_rows(stopped[: len(started)], started)
    assert (stopped[-1]["endpoint"], stopped[-1]["status"]) == ("stop-streaming", "200")
    expect(panel).to_contain_text("stop-streaming: ok")
    # The panel's state plot was redrawn after each click.
    assert plot_before and plot_started and plot_stopped
    assert len({plot_before, plot_started, plot_stopped}) == 3


@pytest.fixture
def lab_copy(tmp_path: Path) -> Iterator[tuple[JupyterLab, Path]]:
    """JupyterLab serving a copy of the notebooks, which the test may save over."""
    served = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, served)
    # As `make lab` does: trust them, so that their saved widget views are drawn.
    data = tmp_path / "lab" / "data"
    data.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "nbformat.sign", *map(str, sorted(served.glob("*.ipynb")))],
        env={**os.environ, "JUPYTER_DATA_DIR": str(data)}, check=True, capture_output=True,
        timeout=60,
    )  # fmt: skip
    with run_jupyterlab(served, tmp_path / "lab", free_port(), startup_timeout=LAB_START_S) as lab:
        yield lab, served


@needs_browser
@pytest.mark.socket
@pytest.mark.slow
@pytest.mark.parametrize("name", [QUICKSTART, "03_pci_windows.ipynb"])
def test_a_notebook_opens_unmodified_and_saves_byte_for_byte(
    lab_copy: tuple[JupyterLab, Path], page: Page, name: str
) -> None:
    """Opened in JupyterLab (kernel started, saved widget state restored), a committed
    notebook is not marked modified, and saving it writes the same bytes."""
    from playwright.sync_api import expect

    lab, served = lab_copy
    path = served / name
    before = path.read_bytes()
    nb = NotebookPage(page)
    nb.open(lab, name, len(code_sources(path)), OPEN_MS)
    # The saved widgets are drawn from the notebook's widget state, with no cell run, and
    # none is shown as its text form.
    expect(page.locator(".jp-OutputArea-output .widget-button").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"^(ControlPanel|RunPanel|Audio)\("))).to_have_count(0)
    tab = page.locator(f'.lm-TabBar-tab[title*="{name}"]').first
    page.wait_for_timeout(1000)  # metadata updates from the kernel land after it is idle
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or "")
    mtime = path.stat().st_mtime_ns
    nb.menu("File", "docmanager:save")
    deadline = time.monotonic() + 10
    while path.stat().st_mtime_ns == mtime and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert path.stat().st_mtime_ns != mtime, "JupyterLab did not save"
    # The new mtime can come before the last byte (the file is truncated, then written):
    # read once two reads a moment apart agree.
    after, deadline = b"", time.monotonic() + 10
    while time.monotonic() < deadline:
        page.wait_for_timeout(200)
        again = path.read_bytes()
        if again and again == after:
            break
        after = again
    assert after == before


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with run_app(ROOT, tmp_path, free_port(), startup_timeout=LAB_START_S) as server:
        yield server


@needs_browser
@pytest.mark.socket
@pytest.mark.slow
def test_make_app_serves_the_run_panel_without_code(app: App, page: Page) -> None:
    """``make app``: the dashboard shows the panel and its first run, no code, and runs
    again from the page."""
    from playwright.sync_api import expect

    try:
        # Voilà shows the page once the notebook has run (the panel's first run included).
        page.goto(app.base_url, timeout=APP_OPEN_MS)
        run = page.get_by_role("button", name=re.compile(r"^\W*run\s*$"))
        expect(run).to_be_visible(timeout=APP_OPEN_MS)
        expect(page.get_by_text("mgsim: a card payment through")).to_be_visible()
        # A dashboard: the code that built the panel is not on the page.
        assert "RunPanel(" not in page.content()
        expect(page.get_by_text("from mgsim.lab import")).to_have_count(0)
        expect(page.locator(".cm-editor, .CodeMirror")).to_have_count(0)
        summary = page.locator(".widget-html", has_text="sensitive words transcribed")
        expect(summary.first).to_contain_text("never transcribed")
        # A stop sent once, 400 ms late with no margin: the page reruns and shows the leak.
        page.get_by_role("checkbox", name="confirmed (PCI-safe) stop").uncheck()
        run.click()
        expect(summary.first).to_contain_text("LEAK", timeout=RUN_S * 1000)
        expect(page.locator(".widget-image img, img.widget-image").first).to_be_visible()
    finally:
        APP_SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(APP_SCREENSHOT), full_page=True)
