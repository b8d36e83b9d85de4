"""mgsim.sweep on Dask: the embedded LocalCluster, and a scheduler and two workers started
with Dask's own command-line tools, reached over TCP on 127.0.0.1 (one of them killed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mgsim.cli import main
from mgsim.sweep import Grid, run_sweep

pytestmark = [pytest.mark.socket, pytest.mark.slow]

DASK = Path(sys.executable).with_name("dask")
GRID = {
    "namespaces": ("genesysaudiohook",),
    "margins_before_ms": (0, 1500),
    "latencies": ("exponential:100:300",),
    "error_rates": (0.2,),
    "strategies": ("naive", "pci-safe"),
    "seeds": 2,
}
_START_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """The grid's rows computed in this process, without Dask."""
    return run_sweep(Grid(**GRID), scheduler="in-process", progress=None).rows  # type: ignore[arg-type]


def test_local_cluster_gives_the_in_process_rows(
    tmp_path: Path, reference: pd.DataFrame
) -> None:
    lines: list[str] = []
    result = run_sweep(
        Grid(**GRID), tmp_path, scheduler="local", workers=2, batch_size=3,  # type: ignore[arg-type]
        progress=None, dashboard=False, echo=lines.append,
    )  # fmt: skip
    assert result.cluster == "LocalCluster, 2 worker process(es)"
    assert lines == ["running 8 scenarios in 4 cells on LocalCluster, 2 worker process(es)"]
    pd.testing.assert_frame_equal(result.rows, reference)
    assert set(reference["outcome"]) == {"leak", "masked", "clean"}


def test_local_cluster_workers_keep_glibc_adaptive_malloc() -> None:
    # Dask's default MALLOC_TRIM_THRESHOLD_ turns glibc's adaptive mmap threshold off,
    # which costs a scenario about 20% more CPU in page faults on a worker.
    from mgsim.sweep.cluster import connect

    with connect("local", workers=1, dashboard=False) as conn:
        env = conn.client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        threads = conn.client.run(os.environ.get, "OMP_NUM_THREADS")
    assert list(env.values()) == [None]
    assert list(threads.values()) == ["1"]  # Dask's other worker settings stay


def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args} did not start (exit {proc.poll()})")
        time.sleep(0.1)


class DaskCluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, all ended on close."""

    def __init__(self, tmp: Path) -> None:
        self.file = tmp / "scheduler.json"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        scheduler = self._spawn(
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--scheduler-file", str(self.file),
        )  # fmt: skip
        _wait_for(self.file, scheduler)
        self.address: str = json.loads(self.file.read_text())["address"]
        assert self.address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            self.workers.append(self._spawn(
                "worker", "--scheduler-file", str(self.file), "--host", "127.0.0.1",
                "--nworkers", "1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
            ))  # fmt: skip

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [str(DASK), *args], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    c = DaskCluster(tmp_path_factory.mktemp("dask"))
    try:
        yield c
    finally:
        c.close()


def _client(address: str) -> Any:
    from distributed import Client

    client = Client(address, timeout=_START_TIMEOUT_S)
    client.wait_for_workers(2, timeout=_START_TIMEOUT_S)
    return client


def test_dask_cli_cluster_over_tcp_gives_the_in_process_rows(
    cluster: DaskCluster, tmp_path: Path, reference: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with _client(cluster.address) as client:  # both workers are up before the sweep
        assert len(client.nthreads()) == 2
    # The environment variable Dask itself reads names the cluster.
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.address)
    import dask

    dask.config.refresh()
    try:
        result = run_sweep(Grid(**GRID), tmp_path, batch_size=2, progress=None)  # type: ignore[arg-type]
    finally:
        monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
        dask.config.refresh()
    assert result.cluster == f"scheduler {cluster.address}"
    pd.testing.assert_frame_equal(result.rows, reference)


def test_cli_sweep_on_the_cluster(
    cluster: DaskCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = [
        "sweep", "--out", str(out), "--scheduler", cluster.address, "--namespace",
        "genesysaudiohook", "--margin-ms", "0,1500", "--latency", "fixed:400", "--strategy",
        "naive", "--seeds", "2", "--target", "0.9",
    ]  # fmt: skip
    assert main(argv) == 0
    done = capsys.readouterr()
    assert f"on scheduler {cluster.address}" in done.err
    assert "4 scenarios run, 0 reused" in done.out
    table = pd.read_parquet(out / "summary.parquet")
    assert table["leaks"].tolist() == [2, 0]
    assert main(argv) == 0 and "0 scenarios run, 4 reused" in capsys.readouterr().out


class KillOneWorker:
    """A progress hook that, once the first batch is in, SIGKILLs a worker that is running
    a batch at that moment, and remembers which batches it was running."""

    def __init__(self, client: Any, pids: dict[str, int]) -> None:
        self.client = client
        self.pids = pids
        self.killed: tuple[str, list[str]] | None = None

    def start(self, total: int, already: int) -> None:
        pass

    def update(self, done: int) -> None:
        if done == 0 or self.killed is not None:
            return
        deadline = time.monotonic() + _START_TIMEOUT_S
        while self.killed is None and time.monotonic() < deadline:
            for worker, running in self.client.processing().items():
                keys = [k for k in running if "mgsim-batch" in str(k)]
                if keys:
                    os.kill(self.pids[worker], signal.SIGKILL)
                    self.killed = (worker, [str(k) for k in keys])
                    break
            else:
                time.sleep(0.01)

    def close(self) -> None:
        pass


def test_a_worker_killed_mid_sweep_loses_and_duplicates_no_row(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    grid = Grid(**{**GRID, "seeds": 4})  # type: ignore[arg-type]
    expected = run_sweep(grid, scheduler="in-process", progress=None).rows
    with _client(cluster.address) as client:
        pids = client.run(os.getpid)
        ours = {w.pid for w in cluster.workers}
        assert set(pids.values()) == ours  # only processes this test started are killed
        hook = KillOneWorker(client, pids)
        result = run_sweep(grid, tmp_path, scheduler=client, batch_size=1, progress=hook)
        assert hook.killed is not None, "no worker was running a batch"
        worker, keys = hook.killed
        assert worker not in client.nthreads()  # it is gone ...
        assert len(client.nthreads()) == 1  # ... and the other finished the sweep
    victim = next(w for w in cluster.workers if w.pid == pids[worker])
    assert victim.wait(timeout=15) == -signal.SIGKILL
    # the batches it was running were run again: every row once, the same rows
    assert len(result.rows) == grid.size == 16
    assert not result.rows.duplicated(["cell", "seed"]).any()
    pd.testing.assert_frame_equal(result.rows, expected)
    assert keys and result.computed == 16
