"""Reproducible widget model ids, so that a notebook saved with its widget state is the same
file every time it is run.

ipywidgets names each widget's model after its comm, a random ``uuid4``: the saved widget
state (``metadata.widgets``) and every widget view in the outputs would differ from one run to
the next. :func:`seed_model_ids` makes the n-th widget a process opens get
``uuid5(NAMESPACE, f"{name}/{n}")`` instead. ``scripts/run-notebooks.py`` calls it in the
kernel before the notebook's first cell, with the notebook's name.

>>> seed_model_ids("example")
>>> import ipywidgets
>>> a, b = ipywidgets.Text(), ipywidgets.Text()
>>> a.model_id == model_id("example", 0) and b.model_id == model_id("example", 3)
True

>>> _restore()

(Each ``Text`` is numbered first, then its ``Layout`` and its ``Style``.)
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator

import ipywidgets

__all__ = ["NAMESPACE", "model_id", "seed_model_ids"]

NAMESPACE = uuid.UUID("6d1b7f64-1c0e-5b8a-9a43-2f6c3c1e0d15")
"""The uuid5 namespace of mgsim's widget model ids."""

_original_open: Callable[[ipywidgets.Widget], None] | None = None
_counter: Iterator[int] = itertools.count()
_name = ""


def model_id(name: str, n: int) -> str:
    """The model id :func:`seed_model_ids` gives the ``n``-th widget (from 0) under ``name``:
    32 hex digits, the form ipywidgets uses."""
    return uuid.uuid5(NAMESPACE, f"{name}/{n}").hex


def seed_model_ids(name: str) -> None:
    """From now on, number the widgets this process opens under ``name``, from 0.

    Calling it again restarts the count (under the new name). A widget given an explicit
    ``model_id`` keeps it and takes no number.
    """
    global _original_open, _counter, _name
    _counter, _name = itertools.count(), name
    if _original_open is not None:
        return
    _original_open = original = ipywidgets.Widget.open

    def open_with_seeded_id(self: ipywidgets.Widget) -> None:
        # Widget.__init__ calls open() once, before the comm exists; the id must be set then.
        if self.comm is None and getattr(self, "_model_id", None) is None:
            self._model_id = model_id(_name, next(_counter))
        original(self)

    setattr(ipywidgets.Widget, "open", open_with_seeded_id)  # noqa: B010 (mypy: method assign)


def _restore() -> None:
    """Undo :func:`seed_model_ids` (for tests)."""
    global _original_open
    if _original_open is not None:
        setattr(ipywidgets.Widget, "open", _original_open)  # noqa: B010
        _original_open = None
