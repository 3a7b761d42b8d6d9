"""Turning stored calls into recorded events: read each call with its adapter, apply it to the ledger.

Poison isolation lives here. Whatever goes wrong with one call — the adapter raises, the store refuses
a value, two keys collide — finishes that call as `failed` with the reason (visible in `events --status
failed`, replayable once fixed) and never touches the other calls claimed with it. A round that cannot
finish (the store itself is down) gives back the leases of the calls it did not get to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from bridge.config import Config
from bridge.coupons import CodeBook, CodesUnavailable
from bridge.flow import backoff_seconds
from bridge.outbox import record_events
from bridge.signups import SIGNUP_ENDPOINT, first_error, record_signup
from bridge.simulation import mark_simulated
from bridge.store.base import CallStatus, Store, StoredCall, Transaction, UnstorableText
from providers.base import PayloadError, ProviderUnavailable, WebhookRequest

log = logging.getLogger("bridge.recorder")

CALL_BATCH = 100


class CallRecorder:
    def __init__(self, config: Config, store: Store, owner: str, clock: Callable[[], float]) -> None:
        self.config = config
        self.store = store
        self.owner = owner
        self.clock = clock
        # hooks for alerts: (call, reason) when a call is kept unparsed
        self.on_unparsed: list[Callable[[StoredCall, str], None]] = []
        self.codes = CodeBook(config.coupons, config.delivery.timeout_seconds)

    async def aclose(self) -> None:
        await self.codes.aclose()

    async def process_received(self, limit: int = CALL_BATCH) -> int:
        """Claim up to `limit` received calls and record them; returns how many were claimed."""
        now = self.clock()
        lease_until = now + self.config.delivery.lease
        calls = await self.store.run(lambda tx: tx.claim_calls(self.owner, now, lease_until, limit))
        finished: set[int] = set()
        try:
            await self.record_calls(calls, finished)
        finally:
            left = [call.id for call in calls if call.id not in finished]
            if left:
                # the store failed under us: hand the rest back now rather than when the lease runs out
                await self.store.run(lambda tx: tx.release_call_leases(left))
        return len(calls)

    async def process_call(self, call: StoredCall) -> None:
        await self.record_calls([call], set())

    async def record_calls(self, calls: Sequence[StoredCall], finished: set[int]) -> None:
        """Read every call with its adapter, then record them all in one store round (one commit, not one
        per call), each in its own savepoint; a call whose recording fails is then finished as `failed`
        alone. Adds each call finished in the store to `finished`."""
        plans = []
        for call in calls:
            try:
                plans.append(await self._plan(call))
            except Exception as exc:
                plans.append(_Plan(_raise(exc)))
            # most adapters read without waiting on anything: let the ingest on this loop answer in between
            await asyncio.sleep(0)
        results = await self.store.run_each([plan.work for plan in plans])
        failures: list[tuple[StoredCall, str, bool]] = []
        for call, plan, result in zip(calls, plans, results, strict=True):
            if isinstance(result, Exception):
                failures.append((call, *self._failure(call, result)))
                continue
            finished.add(call.id)
            if plan.unparsed is not None:
                log.warning("call %s on %s kept unparsed: %s", call.id, call.endpoint, plan.unparsed)
                self._unparsed(call, plan.unparsed)
        if not failures:
            return
        now = self.clock()
        outcomes = await self.store.run_each([_finish_failed(call.id, reason, now) for call, reason, _ in failures])
        for (call, reason, alert), outcome in zip(failures, outcomes, strict=True):
            if isinstance(outcome, Exception):
                raise outcome  # the store itself is failing: the calls not finished are handed back
            finished.add(call.id)
            if alert:
                self._unparsed(call, reason)

    def _failure(self, call: StoredCall, exc: Exception) -> tuple[str, bool]:
        """Why recording `call` failed, and whether the operator is alerted."""
        if call.endpoint == SIGNUP_ENDPOINT and isinstance(exc, ValidationError):
            where, message = first_error(exc)
            return f"cannot parse: {where}: {message}", False
        reason = f"cannot record: {_describe(exc)}"
        log.warning("call %s on %s failed: %s", call.id, call.endpoint, reason)
        return reason, True

    def _unparsed(self, call: StoredCall, reason: str) -> None:
        for hook in self.on_unparsed:
            hook(call, reason)

    async def _plan(self, call: StoredCall) -> _Plan:
        """The store work that records `call` (no store access here: the adapter's read only)."""
        now = self.clock()
        if call.endpoint == SIGNUP_ENDPOINT:

            def signup(tx: Transaction) -> None:
                record_signup(tx, call, self.config, now)
                tx.finish_call(call.id, CallStatus.PROCESSED, None, now)

            return _Plan(signup)
        endpoint = self.config.endpoints.get(call.endpoint)
        if endpoint is None:
            return _Plan(lambda tx: tx.finish_call(call.id, CallStatus.FAILED, "endpoint no longer configured", now))
        request = WebhookRequest(call.method, call.path, call.headers, call.body, call.query_string)
        try:
            events = mark_simulated(request, await endpoint.adapter.read(request))
        except ProviderUnavailable as exc:
            return self._defer(call, f"provider API unavailable: {exc}", now)
        except PayloadError as exc:
            error = f"cannot parse: {exc}"
        except Exception as exc:  # an adapter bug must not stop the worker; the call is kept for replay
            log.exception("adapter %s failed on call %s", endpoint.provider, call.id)
            error = f"adapter error: {type(exc).__name__}"
        else:
            try:
                codes = await self.codes.resolve(endpoint, events)
            except CodesUnavailable as exc:
                return self._defer(call, f"Partnero promotion codes unavailable: {exc}", now)

            def record(tx: Transaction) -> None:
                record_events(tx, call, endpoint, events, now, codes)
                tx.finish_call(call.id, CallStatus.PROCESSED, None, now)

            return _Plan(record)
        return _Plan(lambda tx: tx.finish_call(call.id, CallStatus.FAILED, error, now), unparsed=error)

    def _defer(self, call: StoredCall, error: str, now: float) -> _Plan:
        settings = self.config.delivery
        attempts = call.read_attempts + 1
        if attempts >= settings.max_attempts:
            reason = f"gave up after {attempts} reads: {error}"
            return _Plan(lambda tx: tx.finish_call(call.id, CallStatus.FAILED, reason, now))
        delay = backoff_seconds(attempts, settings.initial_backoff_seconds, settings.max_backoff_seconds)
        return _Plan(lambda tx: tx.defer_call(call.id, now + delay, error))


def _finish_failed(call_id: int, reason: str, now: float) -> Callable[[Transaction], None]:
    return lambda tx: tx.finish_call(call_id, CallStatus.FAILED, reason, now)


def _raise(exc: Exception) -> Callable[[Transaction], None]:
    """Work that fails as planning the call did, so that call fails alone, like a failed recording."""

    def work(tx: Transaction) -> None:
        raise exc

    return work


@dataclass(frozen=True)
class _Plan:
    work: Callable[[Transaction], object]
    unparsed: str | None = None  # set when the call is kept unparsed: the operator is alerted once it is stored


def _describe(exc: Exception) -> str:
    """A reason for the operator that names what failed, never the payload value that made it fail."""
    if isinstance(exc, UnstorableText):
        return str(exc)
    # driver messages can quote the offending value (a key, an email): keep only the class and, for
    # constraint violations, the constraint, which names columns but no values
    name = type(exc).__name__
    text = str(exc)
    if "UNIQUE constraint failed" in text or "duplicate key value violates unique constraint" in text:
        return f"{name}: a key collides with one already recorded"
    return name
