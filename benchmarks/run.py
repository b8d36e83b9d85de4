"""Run every benchmark, each in its own subprocess, and summarise the results.

    python benchmarks/run.py [--only media_kvs control_plane] [--skip-deps] [--markdown FILE]

Installs the benchmarks' system tools first (``scripts/bench-deps.sh``: wrk, and Prism
through ``npm ci``), then runs ``run()`` of every benchmark module (``benchmarks/media_*.py``
first, then the others such as ``gateway_media.py``, ``control_plane.py`` last) with its
defaults, one subprocess each with a time limit, so one failure or hang costs only its own
result. Writes ``benchmarks/out/results.json`` (the machine, the command and every result or
error) and prints a Markdown summary. Exits 1 if any benchmark failed; a missed target is
reported in the summary, not as a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
RESULTS = OUT / "results.json"
DEPS_SCRIPT = ROOT / "scripts" / "bench-deps.sh"

# Minimum multiple of real time per media benchmark (encode and decode together).
TARGETS_X_REALTIME = {
    "media_siprec": 1000,
    "media_audiohook": 1000,
    "media_kvs": 1000,
    "media_twilio": 300,
}
DEFAULT_TIMEOUT_S = 600.0
TIMEOUTS_S = {"control_plane": 900.0, "realtime_load": 1800.0, "soak": 900.0, "asr": 1500.0}
GRACE_S = 20.0

# Imports a benchmark file by path, calls run(**kwargs) and prints its dict on one line.
_DRIVER = """
import importlib.util, json, sys
path, kwargs = sys.argv[1], json.loads(sys.argv[2])
spec = importlib.util.spec_from_file_location("benchmark_under_test", path)
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
result = module.run(**kwargs)
print("RESULT_JSON " + json.dumps(result), flush=True)
"""
_MARKER = "RESULT_JSON "


@dataclass
class Case:
    """One call of a benchmark module's ``run()``."""

    module: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if not self.kwargs:
            return self.module
        args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.module}[{args}]"

    @property
    def path(self) -> Path:
        return HERE / f"{self.module}.py"


# Cases beyond each module's defaults.
EXTRA_CASES = [
    Case("media_siprec", {"loss": 0.01, "reorder": 0.01}),
    Case("control_plane", {"pin": True}),  # one core each: steadier than shared cores
]


def discover() -> list[Case]:
    """Every benchmark module: a ``benchmarks/*.py`` with a top-level ``def run(``.

    The media modules come first and the control plane last; the rest in between.
    """
    modules = sorted(
        p.stem
        for p in HERE.glob("*.py")
        if p.name != "run.py" and "\ndef run(" in p.read_text(encoding="utf-8")
    )

    def order(module: str) -> tuple[int, str]:
        rank = 0 if module.startswith("media_") else 2 if module == "control_plane" else 1
        return rank, module

    cases: list[Case] = []
    for module in sorted(modules, key=order):
        cases.append(Case(module))
        cases.extend(c for c in EXTRA_CASES if c.module == module)
    return cases


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_case(case: Case, timeout_s: float) -> dict[str, Any]:
    """Run one case in a fresh interpreter; return its result or what went wrong.

    On timeout the case's process group gets SIGTERM (so a benchmark can stop the servers it
    started) and, ``GRACE_S`` later, SIGKILL.
    """
    argv = [sys.executable, "-c", _DRIVER, str(case.path), json.dumps(case.kwargs)]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
    seconds = round(time.monotonic() - started, 1)
    entry: dict[str, Any] = {"name": case.name, "module": case.module, "seconds": seconds}
    line = next((x for x in reversed(stdout.splitlines()) if x.startswith(_MARKER)), None)
    if timed_out:
        entry.update(ok=False, error=f"timed out after {timeout_s:.0f} s", stderr=_tail(stderr))
    elif proc.returncode != 0 or line is None:
        entry.update(
            ok=False, error=f"exited with {proc.returncode}", stderr=_tail(stderr or stdout)
        )
    else:
        entry.update(ok=True, result=json.loads(line[len(_MARKER) :]))
    return entry


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    out = (done.stdout or done.stderr).strip().splitlines()
    return out[0] if out else "unknown"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib: float | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    try:
        import numpy

        numpy_version: str = numpy.__version__
    except ImportError:
        numpy_version = "not installed"
    prism = HERE / "node_modules" / ".bin" / "prism"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy_version,
        "wrk": _first_line(["wrk", "--version"]).split(" Copyright")[0],
        "node": _first_line(["node", "--version"]),
        "prism": _first_line([str(prism), "--version"]) if prism.exists() else "not installed",
        "git_commit": _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def install_deps() -> dict[str, Any]:
    """Run scripts/bench-deps.sh; a failure is recorded, and the benchmarks still run."""
    try:
        done = subprocess.run(
            ["bash", str(DEPS_SCRIPT)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": done.returncode == 0, "output": _tail(done.stderr + done.stdout)}


# ---------------------------------------------------------------------------------------
# Markdown


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _nested_md(key: str, value: dict[str, Any]) -> list[str]:
    """A dict of dicts (``{"siprec": {...}, "twilio": {...}}``) as one table."""
    columns: list[str] = []
    for inner in value.values():
        columns.extend(c for c in inner if c not in columns and not isinstance(inner[c], dict))
    rows = ["", f"| {key} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, inner in value.items():
        cells = [_fmt(inner.get(c, "")) for c in columns]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def _media_md(name: str, result: dict[str, Any]) -> list[str]:
    target = TARGETS_X_REALTIME.get(result.get("benchmark", name))
    rows = ["| measure | value |", "|---|---|"]
    nested: list[str] = []
    for key, value in result.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            nested.extend(_nested_md(key, value))
        elif key != "benchmark" and not isinstance(value, (dict, list)):
            rows.append(f"| {key} | {_fmt(value)} |")
    if target is not None and "x_realtime" in result:
        met = result["x_realtime"] >= target
        rows.append(f"| **target** | ≥ {target:,}x real time: {'met' if met else '**missed**'} |")
    return rows + nested


def _control_plane_md(result: dict[str, Any]) -> list[str]:
    rows = [
        "| server | req/s (median) | rounds req/s | p50 ms | p99 ms | server CPU µs/req "
        "| non-2xx | status codes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in result["servers"].items():
        lat = s["latency_ms"]
        rounds = ", ".join(f"{x:,.0f}" for x in s["requests_per_s_rounds"])
        codes = ", ".join(f"{k}: {v:,}" for k, v in s["status_codes"].items())
        rows.append(
            f"| {name} | {s['requests_per_s']:,.0f} | {rounds} | {lat['p50']:.2f} "
            f"| {lat['p99']:.2f} | {s['server_cpu_us_per_request']:,.0f} | {s['non_2xx']:,} "
            f"| {codes} |"
        )
    rows.append("")
    for key, value in result.items():
        if key.startswith(("ratio", "cpu_ratio")) or key in ("meets_target", "fastest_prism"):
            rows.append(f"- {key}: {_fmt(value)}")
    rows.append(
        f"- target: mgsim ≥ {result['target_ratio']}x the fastest Prism, with 0 non-2xx: "
        f"{'met' if result.get('meets_target') else '**missed**'}"
    )
    for note in result.get("notes", []):
        rows.append(f"- note: {note}")
    return rows


def _soak_md(result: dict[str, Any]) -> list[str]:
    """One row per figure, nested ones as ``group.figure``, then the targets."""
    rows = ["| measure | value |", "|---|---|"]
    for key, value in result.items():
        if key in ("benchmark", "counters", "targets", "failures"):
            continue
        if isinstance(value, dict):
            for inner, v in value.items():
                if not isinstance(v, (dict, list)):
                    rows.append(f"| {key}.{inner} | {_fmt(v)} |")
        elif not isinstance(value, list):
            rows.append(f"| {key} | {_fmt(value)} |")
    missed = [k for k, ok in result.get("targets", {}).items() if not ok]
    rows.append(f"| **targets** | {'met' if not missed else '**missed**: ' + ', '.join(missed)} |")
    return rows


def markdown(report: dict[str, Any]) -> str:
    """The summary printed at the end of a run."""
    m = report["machine"]
    lines = [
        "# mgsim benchmarks",
        "",
        f"- command: `{report['command']}`",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}",
        f"- Python {m['python']}, numpy {m['numpy']}, {m['wrk']}, Node {m['node']}, "
        f"Prism {m['prism']}; commit {m['git_commit']}",
        f"- load average at start: {m['loadavg_at_start']}",
        "",
    ]
    for entry in report["benchmarks"]:
        lines.append(f"## {entry['name']} ({entry['seconds']} s)")
        lines.append("")
        if not entry["ok"]:
            lines.append(f"**FAILED**: {entry['error']}")
            lines.append("")
            lines.append("```")
            lines.append(entry.get("stderr", ""))
            lines.append("```")
        elif entry["module"] == "control_plane":
            lines.extend(_control_plane_md(entry["result"]))
        elif entry["module"] == "soak":
            lines.extend(_soak_md(entry["result"]))
        else:
            lines.extend(_media_md(entry["module"], entry["result"]))
        lines.append("")
    failed = [e["name"] for e in report["benchmarks"] if not e["ok"]]
    lines.append(f"Failed: {', '.join(failed)}" if failed else "All benchmarks ran.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run mgsim's benchmarks.")
    parser.add_argument("--only", nargs="+", metavar="MODULE", help="run only these modules")
    parser.add_argument("--skip-deps", action="store_true", help="do not run bench-deps.sh")
    parser.add_argument("--markdown", type=Path, help="also write the summary to this file")
    args = parser.parse_args(argv)

    command = shlex.join(
        [
            os.path.relpath(sys.executable, ROOT),
            "benchmarks/run.py",
            *(sys.argv[1:] if argv is None else argv),
        ]
    )
    deps = None if args.skip_deps else install_deps()
    cases = discover()
    if args.only:
        unknown = set(args.only) - {c.module for c in cases}
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
        cases = [c for c in cases if c.module in args.only]
    report: dict[str, Any] = {
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "deps": deps,
        "benchmarks": [],
    }
    OUT.mkdir(exist_ok=True)
    for case in cases:
        print(f"running {case.name} ...", file=sys.stderr, flush=True)
        entry = run_case(case, TIMEOUTS_S.get(case.module, DEFAULT_TIMEOUT_S))
        status = "ok" if entry["ok"] else f"FAILED ({entry['error']})"
        print(f"  {status} in {entry['seconds']} s", file=sys.stderr, flush=True)
        report["benchmarks"].append(entry)
        # Written after every case, so an interrupted run keeps what it measured.
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    summary = markdown(report)
    print(summary)
    if args.markdown:
        args.markdown.write_text(summary)
    print(f"results: {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 0 if all(e["ok"] for e in report["benchmarks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
