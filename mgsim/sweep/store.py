"""A sweep's results on disk: one Parquet file per finished cell, and the summary.

Layout of an output directory::

    grid.json              the grid last run into it (for people; cells carry their own key)
    cells/<key>.parquet    the rows of one finished cell, sorted by seed
    rows.parquet           every row of the last grid run, in grid order
    summary.parquet        one row per cell of that grid (see :func:`~mgsim.sweep.stats.summarize`)

A cell's file is written whole, to a temporary name first and then renamed, so a sweep
stopped at any moment leaves only finished cells behind; started again, it runs only the
cells whose file is missing (or unreadable, or short of rows).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mgsim.errors import ConfigError, MgsimError
from mgsim.sweep.grid import Cell, Grid
from mgsim.sweep.rows import ROW_SCHEMA

__all__ = ["Store"]


class Store:
    """The output directory of a sweep (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} exists and is not a directory")
        self.cells_dir = self.path / "cells"
        try:
            self.cells_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {self.cells_dir}: {exc.strerror}") from exc

    def _file(self, cell: Cell) -> Path:
        return self.cells_dir / f"{cell.key}.parquet"

    def has(self, cell: Cell) -> bool:
        """True when the cell's file holds all its rows."""
        path = self._file(cell)
        if not path.exists():
            return False
        try:
            return bool(pq.ParquetFile(path).metadata.num_rows == len(cell.seeds))
        except (OSError, pa.ArrowException):
            return False  # a damaged file is computed again

    def missing(self, cells: Iterable[Cell]) -> list[Cell]:
        return [cell for cell in cells if not self.has(cell)]

    def write_cell(self, cell: Cell, rows: Sequence[dict[str, Any]]) -> None:
        """Write one finished cell's rows (sorted by seed), atomically."""
        ordered = sorted(rows, key=lambda r: int(r["seed"]))
        seeds = [int(r["seed"]) for r in ordered]
        if seeds != list(cell.seeds):
            raise MgsimError(f"cell {cell.key}: its rows do not cover seeds {cell.seeds} once each")
        table = pa.Table.from_pylist(ordered, schema=ROW_SCHEMA)
        tmp = self._file(cell).with_suffix(f".{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self._file(cell))

    def read_cells(self, cells: Sequence[Cell]) -> pd.DataFrame:
        """The rows of ``cells``, in their order."""
        tables = [pq.read_table(self._file(cell), schema=ROW_SCHEMA) for cell in cells]
        if not tables:
            return ROW_SCHEMA.empty_table().to_pandas()
        return pa.concat_tables(tables).to_pandas()

    def write_grid(self, grid: Grid) -> None:
        (self.path / "grid.json").write_text(json.dumps(grid.to_json(), indent=2) + "\n")

    def write_frame(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.path / f"{name}.parquet"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        frame.to_parquet(tmp, engine="pyarrow", index=False)
        os.replace(tmp, path)
        return path
