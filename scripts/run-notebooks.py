#!/usr/bin/env python3
"""Re-execute the notebooks and save them with their outputs, deterministically.

    .venv/bin/python scripts/run-notebooks.py                 # NN_*.ipynb and app.ipynb
    .venv/bin/python scripts/run-notebooks.py 03_pci_windows  # some of them
    .venv/bin/python scripts/run-notebooks.py --images        # also docs/img/*.png

The kernel runs this interpreter's environment with sandbox credentials and base URLs
removed from its environment, so saved outputs never depend on (or show) them. Each notebook
is saved with its widget state (``metadata.widgets``), so that exported HTML and a fresh
JupyterLab show the widgets as they were at the end of the run; the kernel numbers widget
models with :func:`mgsim.lab.widget_ids.seed_model_ids`, so the ids are the same on every
run. Execution timings are dropped. Running twice gives byte-identical files; ``--check``
exits 1 if a notebook would change.

The notebook metadata is what JupyterLab itself writes when it opens the notebook: the
kernelspec and the kernel's full ``language_info`` (Python's version included), so a
notebook opens unmodified and autosave leaves it alone (``tests/test_notebook_files.py``).
"""

from __future__ import annotations

import argparse
import copy
import difflib
import itertools
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
IMAGES = ROOT / "docs" / "img"
# Never let credentials or a remote gateway leak into saved outputs.
SCRUBBED_ENV = ("ASAPP_API_ID", "ASAPP_API_SECRET", "MGSIM_BASE_URL", "MGSIM_SANDBOX_URL")


def _clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    # JupyterLab sets the kernelspec and language_info from the running kernel when it opens
    # a notebook; anything else here would mark every notebook modified on open. nbclient
    # has already put the kernel's language_info in place.
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
    return nb


def run(path: Path, timeout: int) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    # The kernelspec runs "python": make that this interpreter.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONHASHSEED"] = "0"
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
            record_timing=False,
            store_widget_state=True,
            # Widget model ids numbered per notebook instead of random (see the docstring).
            extra_arguments=[
                "--IPKernelApp.exec_lines=from mgsim.lab.widget_ids import seed_model_ids;"
                f" seed_model_ids({path.stem!r})"
            ],
        )
        started = time.perf_counter()
        client.execute()
        elapsed = time.perf_counter() - started
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return _clean(nb), elapsed


def images() -> None:
    """docs/img/timeline.png for the README (the panel screenshot comes from the browser
    test: tests/test_browser.py saves test-artifacts/browser-quickstart.png)."""
    sys.path.insert(0, str(ROOT))
    import matplotlib

    matplotlib.use("Agg")
    from mgsim.lab import Plan, Scenario, load_sample, run_scenario, timeline

    IMAGES.mkdir(parents=True, exist_ok=True)
    call = load_sample("card_payment")
    result = run_scenario(Scenario(call, "twilio", Plan("guard", 0, 1000), control_latency_ms=400))
    meta = {"Software": None}
    timeline(result).savefig(IMAGES / "timeline.png", dpi=100, bbox_inches="tight", metadata=meta)
    print(f"wrote {IMAGES / 'timeline.png'}")


def _show_difference(name: str, before: str, after: str, lines: int = 24) -> None:
    """The start of what a run would change, on stderr (long lines cut)."""
    diff = difflib.unified_diff(
        before.splitlines(), after.splitlines(), f"{name} (committed)", f"{name} (run)", n=1
    )
    for line in itertools.islice(diff, lines):
        print(line if len(line) < 200 else line[:200] + " ...", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", help="notebook names (default: all NN_*.ipynb and app.ipynb)"
    )
    parser.add_argument("--timeout", type=int, default=120, help="seconds per cell")
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook would change")
    parser.add_argument("--images", action="store_true", help="also write docs/img/*.png")
    args = parser.parse_args()
    # The numbered stories, and the dashboard `make app` serves.
    paths = [*sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), NOTEBOOKS / "app.ipynb"]
    if args.names:
        wanted = {n.removesuffix(".ipynb") for n in args.names}
        paths = [p for p in paths if p.stem in wanted]
        missing = wanted - {p.stem for p in paths}
        if missing:
            parser.error(f"no such notebook: {', '.join(sorted(missing))}")
    changed = []
    total = 0.0
    for path in paths:
        before = path.read_text(encoding="utf-8")
        nb, elapsed = run(path, args.timeout)
        total += elapsed
        after = nbformat.writes(copy.deepcopy(nb)) + "\n"  # type: ignore[no-untyped-call]
        if after != before:
            changed.append(path.name)
            if args.check:
                _show_difference(path.name, before, after)
            else:
                path.write_text(after, encoding="utf-8")
        print(f"{path.name:32} {elapsed:6.1f} s{'  (changed)' if after != before else ''}")
    print(f"{'total':32} {total:6.1f} s")
    if args.images:
        images()
    if args.check and changed:
        print("would change: " + ", ".join(changed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
