"""Turning stored calls into recorded events: read each call with its adapter, apply it to the ledger.

Poison isolation lives here. Whatever goes wrong with one call — the adapter raises, the store refuses
a value, two keys collide — finishes that call as `failed` with the reason (visible in `events --status
failed`, replayable once fixed) and never touches the other calls claimed with it. A round that cannot
finish (the store itself is down) gives back the leases of the calls it did not get to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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

    async def process_received(self) -> int:
        """Claim a batch of received calls and record each; returns how many were claimed."""
        now = self.clock()
        lease_until = now + self.config.delivery.lease
        calls = await self.store.run(lambda tx: tx.claim_calls(self.owner, now, lease_until, CALL_BATCH))
        done = 0
        try:
            for call in calls:
                await self.process_call(call)
                done += 1
        finally:
            left = [call.id for call in calls[done:]]
            if left:
                # the store failed under us: hand the rest back now rather than when the lease runs out
                await self.store.run(lambda tx: tx.release_call_leases(left))
        return len(calls)

    async def process_call(self, call: StoredCall) -> None:
        try:
            await self._record(call)
        except Exception as exc:
            reason = f"cannot record: {_describe(exc)}"
            log.warning("call %s on %s failed: %s", call.id, call.endpoint, reason)
            now = self.clock()
            await self.store.run(lambda tx: tx.finish_call(call.id, CallStatus.FAILED, reason, now))
            self._unparsed(call, reason)

    def _unparsed(self, call: StoredCall, reason: str) -> None:
        for hook in self.on_unparsed:
            hook(call, reason)

    async def _record(self, call: StoredCall) -> None:
        now = self.clock()
        if call.endpoint == SIGNUP_ENDPOINT:
            await self._record_signup(call, now)
            return
        endpoint = self.config.endpoints.get(call.endpoint)
        if endpoint is None:
            await self.store.run(
                lambda tx: tx.finish_call(call.id, CallStatus.FAILED, "endpoint no longer configured", now)
            )
            return
        request = WebhookRequest(call.method, call.path, call.headers, call.body, call.query_string)
        try:
            events = await endpoint.adapter.read(request)
        except ProviderUnavailable as exc:
            await self._defer(call, f"provider API unavailable: {exc}")
            return
        except PayloadError as exc:
            error = f"cannot parse: {exc}"
        except Exception as exc:  # an adapter bug must not stop the worker; the call is kept for replay
            log.exception("adapter %s failed on call %s", endpoint.provider, call.id)
            error = f"adapter error: {type(exc).__name__}"
        else:
            events = mark_simulated(request, events)
            try:
                codes = await self.codes.resolve(endpoint, events)
            except CodesUnavailable as exc:
                await self._defer(call, f"Partnero promotion codes unavailable: {exc}")
                return

            def record(tx: Transaction) -> None:
                record_events(tx, call, endpoint, events, now, codes)
                tx.finish_call(call.id, CallStatus.PROCESSED, None, now)

            await self.store.run(record)
            return
        log.warning("call %s on %s kept unparsed: %s", call.id, call.endpoint, error)
        await self.store.run(lambda tx: tx.finish_call(call.id, CallStatus.FAILED, error, now))
        self._unparsed(call, error)

    async def _record_signup(self, call: StoredCall, now: float) -> None:
        def record(tx: Transaction) -> None:
            record_signup(tx, call, self.config, now)
            tx.finish_call(call.id, CallStatus.PROCESSED, None, now)

        try:
            await self.store.run(record)
        except ValidationError as exc:
            where, message = first_error(exc)
            error = f"cannot parse: {where}: {message}"
            await self.store.run(lambda tx: tx.finish_call(call.id, CallStatus.FAILED, error, now))

    async def _defer(self, call: StoredCall, error: str) -> None:
        settings = self.config.delivery
        now = self.clock()
        attempts = call.read_attempts + 1
        if attempts >= settings.max_attempts:
            reason = f"gave up after {attempts} reads: {error}"
            await self.store.run(lambda tx: tx.finish_call(call.id, CallStatus.FAILED, reason, now))
            return
        delay = backoff_seconds(attempts, settings.initial_backoff_seconds, settings.max_backoff_seconds)
        await self.store.run(lambda tx: tx.defer_call(call.id, now + delay, error))


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
