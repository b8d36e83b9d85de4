"""httpx clients for the Media Gateway API: :class:`Client` (sync) and :class:`AsyncClient`.

Where the requests go, first match wins:

1. an argument: ``base_url=`` (a running ``mgsim serve`` or ASAPP's sandbox,
   ``https://api.sandbox.asapp.com``) or ``simulator=`` (an embedded simulator); giving both
   is a :class:`~mgsim.errors.ConfigError`;
2. ``MGSIM_BASE_URL``, only when neither argument is given;
3. otherwise a new embedded simulator in this process (no port, no network).

An explicit simulator therefore always wins over the environment: scenarios, demos, panels
and notebooks, which make their own simulator, never follow ``MGSIM_BASE_URL``.

Credentials: ``api_id=`` / ``api_secret=`` arguments, else ``ASAPP_API_ID`` /
``ASAPP_API_SECRET``; the embedded simulator and a loopback URL fall back to the
simulator's local defaults.

Retries follow ASAPP's advice exactly: a 429 is retried after 1 s, 2 s and 4 s; a 5xx (and a
request that got no answer at all) after 250 ms, 500 ms and 1 s; no other 4xx is retried.
Every attempt is recorded in :attr:`Client.journal` with secrets masked.

>>> with Client(simulator=Simulator(virtual=True)) as client:
...     _ = client.open_call("siprec", "0867617078-0032318833-2221801472-0002236962")
...     started = client.start_streaming(
...         "siprec", "0867617078-0032318833-2221801472-0002236962", "cust-1", "agent-7")
...     started.customer.status_code
1000
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx

from mgsim.clock import Clock, SystemClock
from mgsim.contract.models import (
    AutotranscribeParams,
    NamespaceParams,
    StreamingResult,
)
from mgsim.errors import (
    ApiError,
    ConfigError,
    ConflictError,
    RateLimitError,
    ServerError,
    TransportError,
    api_error_for,
)
from mgsim.journal import Journal
from mgsim.server.app import MESSAGES, START, STOP, TWILIO_URL
from mgsim.server.config import DEFAULT_API_ID, DEFAULT_API_SECRET
from mgsim.simulator import Simulator

__all__ = ["AsyncClient", "Client", "RetryPolicy", "StopConfirmation"]


R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Waits before each retry, per kind of failure; an empty tuple means no retries.

    >>> RetryPolicy().delays_for(429)
    (1.0, 2.0, 4.0)
    >>> RetryPolicy.off().delays_for(503)
    ()
    """

    on_429: tuple[float, ...] = (1.0, 2.0, 4.0)
    on_5xx: tuple[float, ...] = (0.25, 0.5, 1.0)
    on_no_answer: tuple[float, ...] = (0.25, 0.5, 1.0)

    @classmethod
    def off(cls) -> RetryPolicy:
        return cls(on_429=(), on_5xx=(), on_no_answer=())

    def delays_for(self, status: int | None) -> tuple[float, ...]:
        if status is None:
            return self.on_no_answer
        if status == 429:
            return self.on_429
        if status >= 500:
            return self.on_5xx
        return ()


@dataclass(frozen=True, slots=True)
class StopConfirmation:
    """Outcome of :meth:`Client.stop_streaming_confirmed`.

    ``confirmed`` is True only when the gateway said so: a 200, or a 409-201 meaning the call
    is already stopped. Otherwise the caller must assume audio is still being transcribed:
    ``elapsed_ms`` is how long it has been exposed so far, and ``reason`` says why.
    """

    confirmed: bool
    attempts: int
    elapsed_ms: float
    result: StreamingResult | None
    reason: str


@dataclass(frozen=True, slots=True)
class _Send:
    request: httpx.Request


@dataclass(frozen=True, slots=True)
class _Sleep:
    seconds: float


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in {"localhost", "::1"} or host.startswith("127.")


class _Base:
    def __init__(
        self,
        base_url: str | None,
        api_id: str | None,
        api_secret: str | None,
        simulator: Simulator | None,
        retry: RetryPolicy | None,
        timeout: float,
        journal: Journal | None,
        clock: Clock | None,
    ) -> None:
        if base_url and simulator is not None:
            raise ConfigError(
                f"a client goes to one gateway: pass base_url= ({base_url}) for a running "
                "gateway or simulator= for an embedded one, not both"
            )
        if simulator is None:
            # The environment only chooses when the caller did not.
            base_url = base_url or os.environ.get("MGSIM_BASE_URL") or None
        self.simulator: Simulator | None = None
        if not base_url:
            self.simulator = simulator or Simulator()
        api_id = api_id or os.environ.get("ASAPP_API_ID") or None
        api_secret = api_secret or os.environ.get("ASAPP_API_SECRET") or None
        if api_id is None or api_secret is None:
            if self.simulator is not None:
                api_id = api_id or self.simulator.config.api_id
                api_secret = api_secret or self.simulator.config.api_secret
            elif base_url and _is_loopback(base_url):
                api_id = api_id or DEFAULT_API_ID
                api_secret = api_secret or DEFAULT_API_SECRET
            else:
                raise ConfigError(
                    f"credentials are needed for {base_url}: set ASAPP_API_ID and "
                    "ASAPP_API_SECRET or pass api_id= and api_secret="
                )
        self.base_url = base_url or "http://mgsim.embedded"
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.journal = journal if journal is not None else Journal()
        self.journal.add_secret(api_id)
        self.journal.add_secret(api_secret)
        self.clock: Clock = clock or (self.simulator.clock if self.simulator else SystemClock())
        self._headers = {"asapp-api-id": api_id, "asapp-api-secret": api_secret}

    @property
    def embedded(self) -> bool:
        """True when requests go to the in-process simulator."""
        return self.simulator is not None

    def _flow(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        *,
        raise_for_status: bool = True,
        retry: RetryPolicy | None = None,
    ) -> Generator[_Send | _Sleep, httpx.Response | Exception | None, httpx.Response]:
        """The whole exchange, retries included, without doing any I/O itself."""
        policy = retry or self.retry
        attempt = 0
        while True:
            attempt += 1
            request = httpx.Request(
                method,
                self.base_url + path,
                json=json_body,
                params=params,
                headers=self._headers,
            )
            wall = self.clock.wall().isoformat()
            started = self.clock.now()
            outcome = yield _Send(request)
            latency_ms = (self.clock.now() - started) * 1000.0
            endpoint = path
            recorded = json_body if json_body is not None else params
            if isinstance(outcome, Exception):
                self.journal.record(
                    method=method,
                    endpoint=endpoint,
                    request=recorded,
                    status=None,
                    latency_ms=latency_ms,
                    attempt=attempt,
                    wall=wall,
                    error=f"{type(outcome).__name__}: {outcome}",
                )
                delays = policy.delays_for(None)
                if attempt <= len(delays):
                    yield _Sleep(delays[attempt - 1])
                    continue
                raise TransportError(
                    f"{method} {path}: no answer after {attempt} attempt(s): "
                    f"{type(outcome).__name__}"
                ) from None
            assert isinstance(outcome, httpx.Response)
            response = outcome
            data: Any
            try:
                data = response.json() if response.content else None
            except ValueError:
                data = {"text": response.text[:500]}
            error = data.get("error") if isinstance(data, dict) else None
            error = error if isinstance(error, dict) else None
            self.journal.record(
                method=method,
                endpoint=endpoint,
                request=recorded,
                status=response.status_code,
                latency_ms=latency_ms,
                attempt=attempt,
                wall=wall,
                code=(error or {}).get("code"),
                request_id=(error or {}).get("requestId"),
                error=(error or {}).get("message"),
                response=data if response.is_success else None,
            )
            if response.is_success or not raise_for_status:
                return response
            delays = policy.delays_for(response.status_code)
            if attempt <= len(delays):
                yield _Sleep(delays[attempt - 1])
                continue
            raise api_error_for(
                response.status_code,
                str((error or {}).get("code", f"{response.status_code}-01")),
                str((error or {}).get("message", response.reason_phrase)),
                (error or {}).get("requestId"),
            )

    def _confirmed_stop_flow(
        self, namespace: str, guid: str, within_s: float
    ) -> Generator[_Send | _Sleep, httpx.Response | Exception | None, StopConfirmation]:
        """Stop, retrying per ASAPP's advice until the gateway confirms or time runs out."""
        body = {"namespace": namespace, "guid": guid}
        started = self.clock.now()
        attempts = 0
        last_error = ""
        while True:
            attempts += 1
            try:
                response = yield from self._flow("POST", STOP, body, retry=RetryPolicy.off())
            except ConflictError as exc:
                if exc.code == "409-201":
                    # Already stopped: an earlier attempt that timed out, or a stop by someone
                    # else, took effect. Either way nothing is being transcribed.
                    return StopConfirmation(
                        True, attempts, self._ms_since(started), None, "already-stopped"
                    )
                if exc.code == "409-203":
                    # A SIPREC BYE is being processed: the media session is ending.
                    return StopConfirmation(
                        True, attempts, self._ms_since(started), None, "call-ending"
                    )
                delays, last_error = self.retry.on_5xx, exc.code  # 409-202: wait for the other
            except RateLimitError as exc:
                delays, last_error = self.retry.on_429, exc.code
            except ServerError as exc:
                delays, last_error = self.retry.on_5xx, exc.code
            except TransportError:
                delays, last_error = self.retry.on_no_answer, "no answer"
            except ApiError as exc:
                return StopConfirmation(
                    False, attempts, self._ms_since(started), None, f"rejected {exc.code}"
                )
            else:
                result = StreamingResult.from_json(response.json())
                return StopConfirmation(True, attempts, self._ms_since(started), result, "stopped")
            schedule = delays or (0.25,)
            delay = schedule[min(attempts - 1, len(schedule) - 1)]
            if self.clock.now() + delay - started > within_s:
                return StopConfirmation(
                    False,
                    attempts,
                    self._ms_since(started),
                    None,
                    f"not confirmed within {within_s * 1000:.0f} ms (last: {last_error})",
                )
            yield _Sleep(delay)

    def _ms_since(self, started: float) -> float:
        return (self.clock.now() - started) * 1000.0

    @staticmethod
    def _start_body(
        namespace: str,
        guid: str,
        customer_id: str,
        agent_id: str,
        autotranscribe: AutotranscribeParams | None,
        params: NamespaceParams | None,
        extra: dict[str, Any] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "namespace": namespace,
            "guid": guid,
            "customerId": customer_id,
            "agentId": agent_id,
        }
        if autotranscribe is not None:
            body.update(autotranscribe.to_body())
        if params is not None:
            body.update(params.to_body())
        if extra:
            body.update(extra)
        return body


class Client(_Base):
    """Synchronous client. Use as a context manager, or call :meth:`close`.

    Parameters are described in the module docstring; ``transport`` replaces the httpx
    transport entirely (tests use ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_id: str | None = None,
        api_secret: str | None = None,
        simulator: Simulator | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        journal: Journal | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(base_url, api_id, api_secret, simulator, retry, timeout, journal, clock)
        if transport is None and self.simulator is not None:
            transport = self.simulator.sync_transport()
        self._http = httpx.Client(transport=transport, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, flow: Generator[_Send | _Sleep, Any, R]) -> R:
        step = next(flow)
        while True:
            outcome: httpx.Response | Exception | None
            if isinstance(step, _Sleep):
                self.clock.sleep(step.seconds)
                outcome = None
            else:
                try:
                    outcome = self._http.send(step.request)
                except httpx.TransportError as exc:
                    outcome = exc
            try:
                step = flow.send(outcome)
            except StopIteration as done:
                value: R = done.value
                return value

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        raise_for_status: bool = False,
        retry: RetryPolicy | None = None,
    ) -> httpx.Response:
        """Send any request (journaled, retried); errors are returned unless raise_for_status."""
        return self._run(
            self._flow(method, path, json, params, raise_for_status=raise_for_status, retry=retry)
        )

    def start_streaming(
        self,
        namespace: str,
        guid: str,
        customer_id: str,
        agent_id: str,
        *,
        autotranscribe: AutotranscribeParams | None = None,
        params: NamespaceParams | None = None,
        extra: dict[str, Any] | None = None,
    ) -> StreamingResult:
        """Start transcribing call ``guid``; raises :class:`mgsim.errors.ApiError` on failure."""
        body = self._start_body(
            namespace, guid, customer_id, agent_id, autotranscribe, params, extra
        )
        return StreamingResult.from_json(self._run(self._flow("POST", START, body)).json())

    def stop_streaming(self, namespace: str, guid: str) -> StreamingResult:
        """Stop transcribing call ``guid``; the result carries each participant's summary."""
        body = {"namespace": namespace, "guid": guid}
        return StreamingResult.from_json(self._run(self._flow("POST", STOP, body)).json())

    def stop_streaming_confirmed(
        self, namespace: str, guid: str, *, within_s: float = 2.0
    ) -> StopConfirmation:
        """PCI-safe stop: retry until the gateway confirms, failing closed after ``within_s``.

        Never raises for gateway errors; read ``confirmed`` and, when False, treat the call as
        still transcribing (``elapsed_ms`` of exposure so far, ``reason`` why).
        """
        return self._run(self._confirmed_stop_flow(namespace, guid, within_s))

    def twilio_media_stream_url(self) -> str:
        """The WebSocket URL to give Twilio's ``<Stream>`` (valid for 5 minutes)."""
        return str(self._run(self._flow("GET", TWILIO_URL)).json()["streamingUrl"])

    def conversation_messages(self, guid: str) -> list[dict[str, Any]]:
        """Transcript messages of call ``guid`` (``items`` of the conversation API)."""
        response = self._run(self._flow("GET", MESSAGES, params={"externalId": guid}))
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def open_call(self, namespace: str, guid: str) -> dict[str, Any]:
        """Simulator only: open a call without a media session (``POST /_sim/v1/calls``)."""
        body = {"namespace": namespace, "guid": guid}
        result: dict[str, Any] = self._run(self._flow("POST", "/_sim/v1/calls", body)).json()
        return result

    def hang_up(self, guid: str) -> None:
        """Simulator only: end a call (``DELETE /_sim/v1/calls/{guid}``)."""
        self._run(self._flow("DELETE", f"/_sim/v1/calls/{guid}"))


class AsyncClient(_Base):
    """Asynchronous client with the same methods as :class:`Client`, as coroutines."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_id: str | None = None,
        api_secret: str | None = None,
        simulator: Simulator | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        journal: Journal | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(base_url, api_id, api_secret, simulator, retry, timeout, journal, clock)
        if transport is None and self.simulator is not None:
            transport = self.simulator.async_transport()
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, flow: Generator[_Send | _Sleep, Any, R]) -> R:
        step = next(flow)
        while True:
            outcome: httpx.Response | Exception | None
            if isinstance(step, _Sleep):
                await self.clock.asleep(step.seconds)
                outcome = None
            else:
                try:
                    outcome = await self._http.send(step.request)
                except httpx.TransportError as exc:
                    outcome = exc
            try:
                step = flow.send(outcome)
            except StopIteration as done:
                value: R = done.value
                return value

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        raise_for_status: bool = False,
        retry: RetryPolicy | None = None,
    ) -> httpx.Response:
        return await self._run(
            self._flow(method, path, json, params, raise_for_status=raise_for_status, retry=retry)
        )

    async def start_streaming(
        self,
        namespace: str,
        guid: str,
        customer_id: str,
        agent_id: str,
        *,
        autotranscribe: AutotranscribeParams | None = None,
        params: NamespaceParams | None = None,
        extra: dict[str, Any] | None = None,
    ) -> StreamingResult:
        body = self._start_body(
            namespace, guid, customer_id, agent_id, autotranscribe, params, extra
        )
        response = await self._run(self._flow("POST", START, body))
        return StreamingResult.from_json(response.json())

    async def stop_streaming(self, namespace: str, guid: str) -> StreamingResult:
        body = {"namespace": namespace, "guid": guid}
        response = await self._run(self._flow("POST", STOP, body))
        return StreamingResult.from_json(response.json())

    async def stop_streaming_confirmed(
        self, namespace: str, guid: str, *, within_s: float = 2.0
    ) -> StopConfirmation:
        return await self._run(self._confirmed_stop_flow(namespace, guid, within_s))

    async def twilio_media_stream_url(self) -> str:
        response = await self._run(self._flow("GET", TWILIO_URL))
        return str(response.json()["streamingUrl"])

    async def conversation_messages(self, guid: str) -> list[dict[str, Any]]:
        response = await self._run(self._flow("GET", MESSAGES, params={"externalId": guid}))
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def open_call(self, namespace: str, guid: str) -> dict[str, Any]:
        body = {"namespace": namespace, "guid": guid}
        response = await self._run(self._flow("POST", "/_sim/v1/calls", body))
        result: dict[str, Any] = response.json()
        return result

    async def hang_up(self, guid: str) -> None:
        await self._run(self._flow("DELETE", f"/_sim/v1/calls/{guid}"))
