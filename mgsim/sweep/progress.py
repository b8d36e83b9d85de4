"""Progress of a sweep: a text bar for terminals, an ipywidgets bar for notebooks.

Both are told ``update(done)`` after each batch; neither shows timing in what a notebook
saves, so a committed notebook's output does not change from run to run.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

__all__ = ["NotebookProgress", "Progress", "TextProgress", "auto_progress"]


class Progress(Protocol):
    def start(self, total: int, already: int) -> None: ...
    def update(self, done: int) -> None: ...
    def close(self) -> None: ...


class TextProgress:
    """``[#####.....] 1,234/5,000 scenarios  56/s  ETA 1m07s`` on one line of ``stream``."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.total = 0
        self._started = 0.0
        self._last = -1.0

    def start(self, total: int, already: int) -> None:
        self.total = total
        self._started = time.monotonic()
        if already:
            print(f"{already:,} scenarios already done; running the rest", file=self.stream)
        self.update(0)

    def update(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self._last < 0.2:
            return  # at most five redraws a second
        self._last = now
        total = max(self.total, 1)
        filled = round(self.width * done / total)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f"  ETA {_duration((self.total - done) / rate)}" if rate and done < total else ""
        line = f"\r[{bar}] {done:,}/{self.total:,} scenarios  {rate:,.0f}/s{eta}"
        self.stream.write(line.ljust(78))
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class NotebookProgress:
    """An ipywidgets progress bar with a count beside it (needs the ``lab`` extra)."""

    def __init__(self) -> None:
        import ipywidgets as widgets

        self.bar = widgets.IntProgress(value=0, min=0, max=1, description="sweep")
        self.label = widgets.Label(value="")
        self.widget: Any = widgets.HBox([self.bar, self.label])

    def start(self, total: int, already: int) -> None:
        from IPython.display import display

        self.bar.max = max(total, 1)
        self.total = total
        self.already = already
        self.update(0)
        display(self.widget)  # type: ignore[no-untyped-call]

    def update(self, done: int) -> None:
        self.bar.value = done
        skipped = f" ({self.already:,} already done)" if self.already else ""
        self.label.value = f"{done:,} of {self.total:,} scenarios{skipped}"

    def close(self) -> None:
        self.bar.bar_style = "success"


def auto_progress() -> Progress | None:
    """A widget in a notebook, a text bar on a terminal, nothing otherwise."""
    shell = sys.modules.get("IPython")
    if shell is not None:
        ip = shell.get_ipython()
        if ip is not None and type(ip).__name__ == "ZMQInteractiveShell":
            try:
                return NotebookProgress()
            except ImportError:
                return None
    return TextProgress() if sys.stderr.isatty() else None
