"""Where a sweep runs: an embedded Dask LocalCluster, an existing cluster, or this process.

``scheduler`` names it:

* ``None``: the cluster named by Dask's own ``scheduler-address`` setting (the environment
  variable ``DASK_SCHEDULER_ADDRESS``, or a Dask configuration file) if one is set,
  otherwise an embedded LocalCluster;
* ``"local"``: an embedded LocalCluster on 127.0.0.1, one single-threaded worker process per
  core (``workers`` to choose another number), always;
* ``"tcp://HOST:PORT"``: an existing scheduler (its workers need mgsim installed, the same
  version; calls are sent to them, so they need no shared files);
* ``"in-process"``: no Dask at all, one scenario after another here (small grids, tests);
* a ``distributed.Client`` already connected.

The Dask dashboard needs bokeh (in mgsim's ``lab`` extra); its address is reported only
after it answered, so a cluster without one reports none.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from mgsim.errors import ConfigError

__all__ = ["IN_PROCESS", "Connection", "connect"]

IN_PROCESS = "in-process"
_CONNECT_TIMEOUT_S = 20.0


@dataclass(slots=True)
class Connection:
    """A cluster to run batches on (``client`` is None in-process)."""

    client: Any  # distributed.Client | None
    description: str
    threads: int
    dashboard: str | None = None


def _dashboard(client: Any) -> str | None:
    link = getattr(client, "dashboard_link", None)
    if not link:
        return None
    try:
        # The link is built from the scheduler's services; only one that answers counts.
        ok = httpx.get(str(link), timeout=2.0, follow_redirects=True).status_code == 200
    except httpx.HTTPError:
        return None
    return str(link) if ok else None


def _threads(client: Any) -> int:
    return max(1, sum(int(n) for n in client.nthreads().values()))


@contextlib.contextmanager
def connect(
    scheduler: Any = None, *, workers: int | None = None, dashboard: bool = True
) -> Iterator[Connection]:
    """Open the cluster ``scheduler`` names (see the module docstring); close what it
    opened on exit."""
    if scheduler == IN_PROCESS:
        yield Connection(None, "in this process", 1)
        return
    import dask
    import distributed

    # distributed is untyped: its classes are used as Any
    Client: Any = distributed.Client
    LocalCluster: Any = distributed.LocalCluster

    if isinstance(scheduler, Client):
        threads = _threads(scheduler)
        yield Connection(scheduler, f"the given Dask client ({threads} worker threads)", threads,
                         _dashboard(scheduler) if dashboard else None)  # fmt: skip
        return
    if scheduler is None:
        scheduler = dask.config.get("scheduler-address", None) or "local"
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if scheduler == "local":
        n = workers or os.cpu_count() or 1
        with (
            # The workers' statistical profiler samples every task thread's stack every
            # 10 ms; scenarios are CPU-bound Python, so it costs several per cent of them.
            dask.config.set({
                "distributed.worker.profile.enabled": False,
                # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_ set, and any
                # such setting turns off glibc's adaptive mmap threshold: every array
                # above 128 KiB (a call's audio, masks, timelines) is then mapped afresh
                # and faulted in page by page, 7x the page faults and about 20% more CPU
                # per scenario (benchmarks/RESULTS.md). Unset, glibc keeps its default.
                "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
            }),
            LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0" if dashboard else None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            yield Connection(client, f"LocalCluster, {n} worker process(es)", _threads(client),
                             _dashboard(client) if dashboard else None)  # fmt: skip
        return
    if not isinstance(scheduler, str) or not scheduler.startswith(("tcp://", "tls://")):
        raise ConfigError(
            f"scheduler {scheduler!r}: use tcp://HOST:PORT, 'local' or '{IN_PROCESS}'"
        )
    if workers is not None:
        raise ConfigError("workers applies to the embedded LocalCluster, not to " + scheduler)
    try:
        client = Client(scheduler, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    with client:
        if not client.nthreads():
            # a scheduler with no workers would keep every batch waiting
            try:
                client.wait_for_workers(1, timeout=_CONNECT_TIMEOUT_S)
            except TimeoutError:
                raise ConfigError(
                    f"the Dask scheduler at {scheduler} has no workers "
                    f"(none joined within {_CONNECT_TIMEOUT_S:g} s)"
                ) from None
        yield Connection(client, f"scheduler {scheduler}", _threads(client),
                         _dashboard(client) if dashboard else None)  # fmt: skip
