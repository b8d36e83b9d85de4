"""How the simulated router applies fault injection, and the ``/_sim/v1/faults`` API.

Per vendor request, :func:`draw_faults` decides its fate: the first fault rule that applies
(:mod:`mgsim.server.faults`), else a draw from the simulator's
:class:`~mgsim.server.config.Faults`. A request under a timeout is held until its client
gives up (:func:`client_gone_within`): in process, the transport says when
(``scope["extensions"][DISCONNECT_AT]``, on the simulator's clock); under a real server the
disconnect is awaited.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mgsim.contract import CODES, Problem
from mgsim.server.faults import MAX_RULES, FaultDecision, FaultRequest, FaultRule, FaultRuleError

if TYPE_CHECKING:
    from mgsim.server.app import ServerState

__all__ = [
    "DISCONNECT_AT",
    "client_gone_within",
    "draw_faults",
    "forget_rule_counters",
    "gives_up_at",
    "injected",
    "sim_faults_add",
    "sim_faults_clear",
    "sim_faults_delete",
    "sim_faults_list",
]

DISCONNECT_AT = "mgsim.disconnect_at"
"""Scope extension set by the in-process transport: when (simulator clock) the client of
this request gives up waiting."""


def draw_faults(state: ServerState, request: Request, raw: bytes, name: str) -> FaultDecision:
    """The fate of one vendor request: the first fault rule that applies, else a draw from
    the simulator's :class:`~mgsim.server.config.Faults` (an injected error there comes at
    once; its latency only delays requests that go on)."""
    # Without rules there is nothing to match, so the body is not peeked at.
    decision = state.rules.decide(fault_view(request, raw, name)) if len(state.rules) else None
    if decision is not None:
        state.count(f"fault-rule:{decision.rule_id}")
        return decision
    faults = state.config.faults
    delay = faults.latency_ms + (
        state.fault_rng.uniform(0.0, faults.jitter_ms) if faults.jitter_ms else 0.0
    )
    draw = state.fault_rng.random()
    if draw < faults.rate_503:
        return FaultDecision(None, error="503-01")
    if draw < faults.rate_503 + faults.rate_500:
        return FaultDecision(None, error="500-201")
    if draw < faults.rate_503 + faults.rate_500 + faults.rate_429:
        return FaultDecision(None, error="429-01")
    return FaultDecision(None, delay_s=delay / 1000.0)


def fault_view(request: Request, raw: bytes, name: str) -> FaultRequest:
    """What rules match on. The body is only peeked at: a malformed one still gets its
    400 later in the pipeline, if no fault stops it first."""
    if name == "conversation-messages":
        return FaultRequest(name, None, request.query_params.get("externalId"))
    namespace = guid = None
    if raw:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            body = None
        if isinstance(body, dict):
            ns, g = body.get("namespace"), body.get("guid")
            namespace = ns if isinstance(ns, str) else None
            guid = g if isinstance(g, str) else None
    return FaultRequest(name, namespace, guid)


def injected(decision: FaultDecision) -> Problem:
    where = f"rule {decision.rule_id}" if decision.rule_id else "simulator faults"
    assert decision.error is not None
    return Problem(decision.error, f"{CODES[decision.error].message} (injected fault, {where})")


def gives_up_at(request: Request) -> float | None:
    extensions = request.scope.get("extensions") or {}
    value = extensions.get(DISCONNECT_AT)
    return value if isinstance(value, float) else None


async def client_gone_within(state: ServerState, request: Request, cap_s: float) -> bool:
    """Wait until the client gives up or ``cap_s`` passes; True if the client went first."""
    deadline = gives_up_at(request)
    if deadline is not None:
        # In process: the transport said when its client leaves. One sleep on the clock,
        # because a manual virtual clock cannot race two sleeps.
        left = max(0.0, deadline - state.clock.now())
        await state.clock.asleep(min(left, cap_s))
        return left <= cap_s

    async def disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    waiter = asyncio.ensure_future(disconnect())
    timer = asyncio.ensure_future(state.clock.asleep(cap_s))
    done, pending = await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return waiter in done


def forget_rule_counters(state: ServerState, rule_ids: list[str]) -> None:
    """Drop the ``fault-rule:<id>`` counters of rules that were removed, so that adding and
    removing a rule per call does not grow the counters without bound."""
    for rule_id in rule_ids:
        state.counters.pop(f"fault-rule:{rule_id}", None)


def faults_view(state: ServerState) -> dict[str, Any]:
    faults = state.config.faults
    return {
        "rules": state.rules.to_json(),
        "fallback": {
            "latencyMs": faults.latency_ms,
            "jitterMs": faults.jitter_ms,
            "rate503": faults.rate_503,
            "rate500": faults.rate_500,
            "rate429": faults.rate_429,
        },
        "hangCapS": state.config.hang_cap_s,
    }


async def sim_faults_list(
    state: ServerState, request: Request, body: dict[str, Any] | None
) -> Response:
    return JSONResponse(faults_view(state))


async def sim_faults_add(
    state: ServerState, request: Request, body: dict[str, Any] | None
) -> Response:
    assert body is not None
    try:
        rule = FaultRule.from_json(body)
    except FaultRuleError as exc:
        where = exc.json_field or "body"
        raise Problem("400-201", f"{where}: {exc.message}") from None
    if len(state.rules) >= MAX_RULES:
        raise Problem("409-01", f"At most {MAX_RULES} fault rules; delete some first")
    return JSONResponse(state.rules.add(rule).to_json(), status_code=201)


async def sim_faults_clear(
    state: ServerState, request: Request, body: dict[str, Any] | None
) -> Response:
    state.rules.clear()
    return Response(status_code=204)


async def sim_faults_delete(
    state: ServerState, request: Request, body: dict[str, Any] | None
) -> Response:
    rule_id = request.path_params["ruleId"]
    try:
        state.rules.remove(rule_id)
    except KeyError:
        raise Problem("404-01", f"No fault rule with id {rule_id}") from None
    return Response(status_code=204)
