"""A headless JupyterLab on loopback and a Chromium page driving it, for the browser tests.

Nothing here downloads a browser: the tests use Debian's Chromium at ``/usr/bin/chromium``
(``scripts/system-deps.sh`` installs it when run as root) through the ``playwright`` package.
Every wait has a deadline, and the server is shut down on the way out whatever happened.

>>> reason = skip_reason()   # None when Chromium, Playwright and JupyterLab are all present
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

with contextlib.suppress(ImportError):  # without Playwright, skip_reason() says so
    from playwright.sync_api import expect

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium; the tests never use a browser of their own."""

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Flags for a closed network: no background fetches that would be refused over and over."""

# Credentials and remote gateways never reach the notebook kernel.
SCRUBBED_ENV = ("ASAPP_API_ID", "ASAPP_API_SECRET", "MGSIM_BASE_URL", "MGSIM_SANDBOX_URL")

# JupyterLab user settings for a test run: no autosave (the notebook on disk stays as it is),
# every cell kept in the page (no virtual scrolling), and no fetching of news or updates.
LAB_SETTINGS: dict[str, dict[str, object]] = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {
        "checkForUpdates": False,
        "fetchNews": "false",
    },
}


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (as root, `make system-deps` installs Debian's chromium)"
    modules = (
        ("playwright", "dev"),
        ("jupyterlab", "lab"),
        ("ipywidgets", "lab"),
        ("voila", "lab"),
    )
    for module, extra in modules:
        if importlib.util.find_spec(module) is None:
            return f"the {module} package is not importable (pip install -e '.[{extra}]')"
    return None


@dataclass(frozen=True)
class JupyterLab:
    """A running JupyterLab server: its loopback address, token and log file."""

    base_url: str
    token: str
    log: Path

    def url(self, path: str) -> str:
        """The address of ``path`` (e.g. ``lab/tree/x.ipynb``), token included."""
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _write_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        path = settings_dir / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@contextlib.contextmanager
def run_jupyterlab(
    root: Path, workdir: Path, port: int, *, startup_timeout: float = 45.0
) -> Iterator[JupyterLab]:
    """Run JupyterLab on ``127.0.0.1:port`` serving ``root``; stop it (and its kernels) after.

    Configuration, runtime files, settings and workspaces all live under ``workdir``, so the
    user's own Jupyter setup is neither read nor changed.
    """
    names = ("config", "data", "runtime", "ipython", "lab", "checkpoints")
    dirs = {name: workdir / name for name in names}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    _write_settings(dirs["lab"] / "user-settings")
    # None (not expressible on the command line) turns the announcements feed off.
    (dirs["config"] / "jupyter_lab_config.json").write_text('{"LabApp": {"news_url": null}}')
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env |= {
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "MPLBACKEND": "agg",
    }
    token = secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
        "--ServerApp.terminals_enabled=False",
        # Opening a notebook writes a checkpoint: keep it out of the served directory.
        f"--FileCheckpoints.checkpoint_dir={dirs['checkpoints']}",
        f"--LabApp.user_settings_dir={dirs['lab'] / 'user-settings'}",
        f"--LabApp.workspaces_dir={dirs['lab'] / 'workspaces'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    if os.geteuid() == 0:  # CI containers run as root; the server is still loopback-only
        command.append("--allow-root")
    log = workdir / "jupyterlab.log"
    lab = JupyterLab(f"http://127.0.0.1:{port}", token, log)
    with log.open("wb") as sink:
        # A session of its own, so that the server and the kernels it starts can be ended
        # together if a clean shutdown does not happen in time.
        proc = subprocess.Popen(
            command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            _wait_ready(lab, proc, startup_timeout)
            yield lab
        finally:
            _stop(lab, proc)


@dataclass(frozen=True)
class App:
    """``make app`` running: the dashboard's address and the server's log file."""

    base_url: str
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextlib.contextmanager
def run_app(
    root: Path, workdir: Path, port: int, *, startup_timeout: float = 45.0
) -> Iterator[App]:
    """Run ``make app`` (Voilà serving notebooks/app.ipynb) on ``127.0.0.1:port``, with
    Jupyter's configuration and runtime files under ``workdir``; stop it (and its kernels)
    after."""
    names = ("config", "data", "runtime", "ipython")
    dirs = {name: workdir / name for name in names}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env |= {
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "MPLBACKEND": "agg",
        # The kernel must run this environment's Python, as `make app` does from a clone.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }
    log = workdir / "voila.log"
    app = App(f"http://127.0.0.1:{port}", log)
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "app", f"APP_PORT={port}"], cwd=root, env=env,
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"make app exited with {proc.returncode}:\n{app.log_tail()}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"make app not listening within {startup_timeout:.0f} s")
                time.sleep(0.2)
            yield app
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # Voilà shuts its kernels down on ^C
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def _wait_ready(lab: JupyterLab, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{lab.log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(lab.url("api/status"), timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"JupyterLab not ready within {timeout:.0f} s:\n{lab.log_tail()}")
        time.sleep(0.2)


def _stop(lab: JupyterLab, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        # The shutdown endpoint also shuts the kernels down.
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(lab.url("api/shutdown"), timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    # Whatever is left of the server's own session (a kernel that outlived it, say).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


_PROMPT_NUMBER = re.compile(r"\[\d+\]")

# Counts the code cells' prompts in the notebook: numbered ("[3]:"), running or queued
# ("[*]:") and the error outputs shown so far.
_PROMPTS_JS = """
() => {
  const prompts = [...document.querySelectorAll(
      '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')]
    .map((p) => p.textContent.trim());
  const errors = [...document.querySelectorAll(
      '.jp-NotebookPanel:not(.lm-mod-hidden) [data-mime-type="application/vnd.jupyter.error"]')]
    .map((e) => e.textContent.slice(0, 2000));
  return {prompts, errors};
}
"""


@dataclass(frozen=True)
class Execution:
    """What the notebook's code cells show: their prompts and any error outputs."""

    prompts: list[str]
    errors: list[str]

    @property
    def numbered(self) -> int:
        """How many code cells show an execution count."""
        return sum(1 for p in self.prompts if _PROMPT_NUMBER.search(p))

    @property
    def busy(self) -> bool:
        """Whether a cell is still running or queued."""
        return any("*" in p for p in self.prompts)


class NotebookPage:
    """A JupyterLab notebook open in a Playwright page, driven through the menus."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def open(self, lab: JupyterLab, notebook: str, code_cells: int, timeout_ms: float) -> None:
        """Open ``notebook``, wait for its ``code_cells`` cells and for its kernel to be idle."""
        self.page.goto(lab.url(f"lab/tree/{notebook}"), timeout=timeout_ms)
        expect(self.code_cells()).to_have_count(code_cells, timeout=timeout_ms)
        self.wait_kernel_idle(notebook, timeout_ms)

    def wait_kernel_idle(self, notebook: str, timeout_ms: float) -> None:
        """Wait until the status bar shows the notebook's kernel started and idle."""
        # The toolbar's indicator also says idle while there is no kernel yet; this does not.
        status = self.page.get_by_title(f"Change kernel for {notebook}")
        expect(status).to_have_text(re.compile(r"^(?!No Kernel).* \| Idle$"), timeout=timeout_ms)

    def menu(self, menu: str, command: str, timeout_ms: float = 10_000) -> None:
        """Open the top menu ``menu`` and click the item bound to ``command``."""
        title = re.compile(rf"^\s*{re.escape(menu)}\s*$")
        self.page.locator("#jp-menu-panel .lm-MenuBar-item", has_text=title).first.click(
            timeout=timeout_ms
        )
        self.page.locator(f'.lm-Menu-item[data-command="{command}"]').first.click(
            timeout=timeout_ms
        )

    def code_cells(self) -> Locator:
        """The notebook's code cells, in order."""
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")

    def select_cell(self, cell: Locator, timeout_ms: float = 10_000) -> None:
        """Make ``cell`` the active cell (clicking its prompt, which starts no editing)."""
        cell.locator(".jp-InputArea-prompt").click(timeout=timeout_ms)

    def execution(self) -> Execution:
        """The code cells' prompts and error outputs as the page shows them now."""
        state = self.page.evaluate(_PROMPTS_JS)
        return Execution(list(state["prompts"]), list(state["errors"]))

    def wait_executed(self, expected: int, timeout_s: float) -> Execution:
        """Wait until ``expected`` code cells are numbered and none runs, or one fails."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.execution()
            if state.errors or (not state.busy and state.numbered >= expected):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"cells not executed within {timeout_s:.0f} s: prompts {state.prompts}"
                )
            self.page.wait_for_timeout(200)


def table_rows(table: Locator) -> list[dict[str, str]]:
    """The rows of an HTML table as ``{header: text}`` dicts."""
    headers = [h.strip() for h in table.locator("thead th").all_inner_texts()]
    rows = []
    for row in table.locator("tbody tr").all():
        cells = [c.strip() for c in row.locator("td, th").all_inner_texts()]
        rows.append(dict(zip(headers, cells, strict=False)))
    return rows
