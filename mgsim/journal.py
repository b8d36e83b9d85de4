"""A record of every request the client made, with secrets masked.

>>> j = Journal(secrets=["s3cret"])
>>> e = j.record(method="POST", endpoint="/x", request={"note": "key s3cret"}, status=200,
...              latency_ms=1.0, attempt=1, wall="2026-01-05T09:00:00+00:00")
>>> e.request
{'note': 'key ***'}
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Journal", "JournalEntry", "mask"]

MASK = "***"
# Bearer-like tokens in URLs (the Twilio media stream token is a JWT).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def mask(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of ``value`` with every secret string and every JWT replaced by ``***``."""
    secrets = [s for s in secrets if s]
    if isinstance(value, str):
        out = _JWT.sub(MASK, value)
        for secret in secrets:
            out = out.replace(secret, MASK)
        return out
    if isinstance(value, dict):
        return {k: mask(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v, secrets) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One HTTP exchange (one attempt)."""

    seq: int
    wall: str
    method: str
    endpoint: str
    namespace: str | None
    guid: str | None
    request: Any
    status: int | None
    code: str | None
    request_id: str | None
    latency_ms: float
    attempt: int
    error: str | None = None
    response: Any = None


@dataclass
class Journal:
    """Every exchange, in order; optionally appended to a JSONL file as it happens.

    The file is written and flushed line by line, so a crash loses at most the exchange in
    flight. ``secrets`` are masked everywhere before anything is stored.
    """

    path: str | os.PathLike[str] | None = None
    secrets: list[str] = field(default_factory=list, repr=False)
    entries: list[JournalEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        if self.path is not None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open

    def add_secret(self, secret: str | None) -> None:
        if secret and secret not in self.secrets:
            self.secrets.append(secret)

    def record(
        self,
        *,
        method: str,
        endpoint: str,
        request: Any,
        status: int | None,
        latency_ms: float,
        attempt: int,
        wall: str,
        code: str | None = None,
        request_id: str | None = None,
        error: str | None = None,
        response: Any = None,
    ) -> JournalEntry:
        body = request if isinstance(request, dict) else None
        with self._lock:
            entry = JournalEntry(
                seq=len(self.entries) + 1,
                wall=wall,
                method=method,
                endpoint=endpoint,
                namespace=(body or {}).get("namespace"),
                guid=mask((body or {}).get("guid", (body or {}).get("externalId")), self.secrets),
                request=mask(request, self.secrets),
                status=status,
                code=code,
                request_id=request_id,
                latency_ms=round(latency_ms, 3),
                attempt=attempt,
                error=mask(error, self.secrets),
                response=mask(response, self.secrets),
            )
            self.entries.append(entry)
            if self._file is not None:
                self._file.write(json.dumps(asdict(entry), default=str) + "\n")
                self._file.flush()
        return entry

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def to_dataframe(self) -> pd.DataFrame:
        """One row per exchange: seq, wall, method, endpoint, namespace, guid, status, code,
        request_id, latency_ms, attempt, error, request, response."""
        import pandas as pd

        columns = [f for f in JournalEntry.__dataclass_fields__]
        rows = [asdict(e) for e in self.entries]
        return pd.DataFrame(rows, columns=columns)

    @staticmethod
    def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """Read back a journal file, skipping a torn last line left by a crash."""
        out: list[dict[str, Any]] = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out
