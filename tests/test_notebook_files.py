"""The committed notebooks as files: they open in JupyterLab unmodified, carry their widget
state, export to HTML with their widgets, and show tables a person can read.

JupyterLab's save path is reproduced here as it is: the server reads the file with nbformat,
the page parses the JSON (JavaScript has one number type, so ``1.0`` comes back as ``1``), sets
the notebook's ``kernelspec`` and ``language_info`` from the running kernel, and the server
writes what the page sends with ``nbformat.write(nb, version=NO_CONVERT)``. A notebook that
survives that byte for byte is not marked modified on open, and autosave leaves it alone.
(``tests/test_browser.py`` does the same in a real JupyterLab.)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MAX_BYTES = 2_000_000

pytestmark = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])


@pytest.fixture(scope="module")
def kernel() -> Iterator[dict[str, Any]]:
    """What a python3 kernel of this environment tells JupyterLab about itself."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import start_new_kernel

    spec = KernelSpecManager().get_kernel_spec("python3")
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        reply = kc.kernel_info(reply=True, timeout=30)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    yield {
        "kernelspec": {"display_name": spec.display_name, "language": spec.language,
                       "name": "python3"},
        "language_info": reply["content"]["language_info"],
    }  # fmt: skip


def _as_javascript_reads_it(text: str) -> Any:
    # JSON.parse keeps no difference between 1.0 and 1; JSON.stringify then writes 1.
    def number(literal: str) -> float | int:
        value = float(literal)
        return int(value) if value.is_integer() and abs(value) < 2**53 else value

    return json.loads(text, parse_float=number)


def saved_by_jupyterlab(text: str, kernel: dict[str, Any]) -> str:
    """``text`` (a notebook file) after JupyterLab opened it with ``kernel`` and saved it."""
    served = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
    page = _as_javascript_reads_it(json.dumps(served))
    page["metadata"]["kernelspec"] = kernel["kernelspec"]
    page["metadata"]["language_info"] = kernel["language_info"]
    nb = nbformat.from_dict(page)  # type: ignore[no-untyped-call]
    out: str = nbformat.writes(nb, version=nbformat.NO_CONVERT)  # type: ignore[no-untyped-call]
    return out if out.endswith("\n") else out + "\n"


def test_opening_and_saving_in_jupyterlab_changes_no_byte(
    path: Path, kernel: dict[str, Any]
) -> None:
    text = path.read_text(encoding="utf-8")
    assert saved_by_jupyterlab(text, kernel) == text, (
        f"{path.name} would be rewritten on open: re-run scripts/run-notebooks.py"
    )


def test_the_round_trip_check_sees_what_jupyterlab_would_change(
    path: Path, kernel: dict[str, Any]
) -> None:
    # The check above can fail: the metadata the notebooks had before, and a float that
    # JavaScript reads as an integer, are both rewritten.
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb["metadata"]["language_info"] = {"name": "python"}
    text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    assert saved_by_jupyterlab(text, kernel) != text
    nb["metadata"]["language_info"] = kernel["language_info"]
    nb["metadata"]["example"] = 1.0
    text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    assert re.search(r'"example": 1[,\n]', saved_by_jupyterlab(text, kernel))


def test_language_info_is_the_kernels_own(path: Path, kernel: dict[str, Any]) -> None:
    info = json.loads(path.read_text(encoding="utf-8"))["metadata"]["language_info"]
    assert info == kernel["language_info"]
    assert info["version"] == sys.version.split()[0]


def _widget_models(nb: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = nb["metadata"].get("widgets", {}).get(WIDGET_STATE, {})
    models: dict[str, Any] = state.get("state", {})
    return models


def _views(nb: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                yield data[WIDGET_VIEW], data


# The text form of a widget (ipywidgets' repr, or an mgsim panel's one-line description).
_WIDGET_TEXT = re.compile(r"^(Audio|Image|HBox|VBox|IntProgress|ControlPanel|RunPanel)\(")


def test_every_widget_shown_has_its_state_saved(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    models = _widget_models(nb)
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if _WIDGET_TEXT.match("".join(data.get("text/plain", ""))):
                assert WIDGET_VIEW in data, f"{path.name}: a widget saved as its text form only"
    views = list(_views(nb))
    for view, _data in views:
        assert view["model_id"] in models, (path.name, view)
    # Ids are numbered per notebook (mgsim.lab.widget_ids), not random.
    from mgsim.lab.widget_ids import model_id

    assert set(models) == {model_id(path.stem, n) for n in range(len(models))}
    assert path.stat().st_size < MAX_BYTES


def test_html_export_shows_widgets_not_their_text_form(path: Path) -> None:
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    body, _ = HTMLExporter().from_notebook_node(nb)  # type: ignore[no-untyped-call]
    views = list(_views(json.loads(path.read_text(encoding="utf-8"))))
    if not views:
        pytest.skip(f"{path.name} shows no widget")
    assert f'<script type="{WIDGET_STATE}">' in body
    for view, data in views:
        assert f'"model_id": "{view["model_id"]}"' in body
        text = "".join(data.get("text/plain", ""))
        # The text form (Audio(value=b'RIFF...'), HBox(children=...)) is not on the page.
        if text:
            assert _html_escaped(text.splitlines()[0][:40]) not in body, text[:80]
    assert "Audio(value=b&#x27;RIFF" not in body and "Audio(value=b'RIFF" not in body


def _html_escaped(text: str) -> str:
    import html

    return html.escape(text)


_TABLE = re.compile(r'<table border="1" class="dataframe">.*?</table>', re.S)
_CELL = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.S)


def _tables(path: Path) -> Iterator[tuple[int, str]]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    for index, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            html = "".join(output.get("data", {}).get("text/html", []))
            for table in _TABLE.findall(html):
                yield index, table


def test_tables_are_readable(path: Path) -> None:
    """No NaN, <NA> or None cells, no cell or column cut short, rows named not numbered."""
    for index, table in _tables(path):
        cells = [c.strip() for c in _CELL.findall(table)]
        where = f"{path.name} cell {index}"
        for bad in ("NaN", "&lt;NA&gt;", "None", "NaT"):
            assert bad not in cells, f"{where}: a {bad} cell"
        assert not [c for c in cells if c.endswith("...")], f"{where}: a cell cut short"
        head, body = table.split("<tbody>", 1)
        header_rows = head.count("<tr")
        first_row_header = re.search(r"<tr>\s*<th>(.*?)</th>", body)
        numbered = header_rows == 1 and re.search(r"<thead>\s*<tr[^>]*>\s*<th></th>", head)
        assert not (numbered and first_row_header and first_row_header.group(1) == "0"), (
            f"{where}: rows numbered 0, 1, 2... instead of named"
        )
