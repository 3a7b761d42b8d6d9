"""The worker: parse stored calls, then deliver due operations to Partnero, retrying with backoff.

Exactly-once effect on an API that does not de-duplicate: an operation is claimed (its attempt
counted and marked maybe-sent) in a committed transaction before any request leaves, so after a crash,
a timeout or a broken connection the next attempt first asks Partnero whether the key exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

from pydantic import ValidationError

from bridge.config import Config, PartneroSettings
from bridge.outbox import CREATE, record_events, settle
from bridge.partnero import Outcome, PartneroClient, Result
from bridge.signups import CUSTOMER, SIGNUP_ENDPOINT, first_error, record_signup
from bridge.store.base import Attempt, CallStatus, Operation, OpStatus, Store, StoredCall, Transaction
from providers.base import PayloadError, ProviderUnavailable, WebhookRequest

log = logging.getLogger("bridge.delivery")

CALL_BATCH = 100
PURGE_INTERVAL_SECONDS = 3600.0
MAX_RETRY_AFTER_SECONDS = 3600.0


class RateLimiter:
    """A token bucket shared by every request to one Partnero program."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.capacity = max(1.0, per_second)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.per_second)


class ProgramHealth:
    """Pauses every delivery to one Partnero program while it is down or rate limiting.

    Without it each pending operation would discover the outage on its own schedule; with it, a few
    consecutive failures stop all of them, and the pause grows with backoff until an answer comes back.
    """

    def __init__(self, initial: float, maximum: float, threshold: int = 3) -> None:
        self.initial = initial
        self.maximum = maximum
        self.threshold = threshold
        self.failures = 0
        self.paused_until = 0.0

    def record(self, outcome: Outcome, now: float) -> None:
        if outcome.status_code == 429:
            pause = outcome.retry_after if outcome.retry_after is not None else self.initial
            # honour Partnero's word, but a broken header must not stop delivery for days
            self.paused_until = max(self.paused_until, now + min(pause, MAX_RETRY_AFTER_SECONDS))
        elif outcome.result is Result.RETRY:
            self.failures += 1
            if self.failures >= self.threshold:
                pause = backoff_seconds(self.failures - self.threshold + 1, self.initial, self.maximum)
                self.paused_until = max(self.paused_until, now + pause)
        else:
            self.failures = 0

    def paused(self, now: float) -> bool:
        return now < self.paused_until


def backoff_seconds(attempt: int, initial: float, maximum: float, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; a `Retry-After` from Partnero is a floor, never shortened."""
    delay = min(maximum, initial * (2 ** max(0, attempt - 1)))
    jittered = delay * (0.5 + random.random() / 2)
    if retry_after is not None:
        return float(max(retry_after, min(jittered, maximum)))
    return float(jittered)


class Worker:
    def __init__(self, config: Config, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.owner = f"worker-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._clients: dict[str, PartneroClient] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._health: dict[str, ProgramHealth] = {}
        self._next_purge = 0.0
        self._concurrency = max((e.partnero.max_concurrency for e in config.endpoints.values()), default=4)
        for endpoint in config.endpoints.values():
            self._client_for(endpoint.partnero)
        # sign-ups may also come from `partnero-bridge signup` with the relay's token unset
        self._client_for(config.signup_partnero)

    def _client_for(self, settings: PartneroSettings) -> PartneroClient | None:
        if settings.effective_dry_run:
            return None
        if settings.scope not in self._clients:
            self._clients[settings.scope] = PartneroClient(
                settings.base_url,
                settings.api_key,
                self.config.delivery.timeout_seconds,
                max_connections=settings.max_concurrency,
            )
            self._limiters[settings.scope] = RateLimiter(settings.max_requests_per_second)
            delivery = self.config.delivery
            self._health[settings.scope] = ProgramHealth(delivery.initial_backoff_seconds, delivery.max_backoff_seconds)
        return self._clients[settings.scope]

    def wake(self) -> None:
        self._wake.set()

    async def aclose(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=5)
        for client in self._clients.values():
            await client.aclose()
        for endpoint in self.config.endpoints.values():
            await endpoint.adapter.aclose()

    async def run(self, stopping: asyncio.Event) -> None:
        if self.store.single_process:
            # one SQLite process owns the store: leases of a killed predecessor are void
            await self.store.run(lambda tx: tx.release_leases(None))
        reconciling = self._start_reconciler(stopping)
        while not stopping.is_set():
            try:
                busy = await self.step()
            except Exception:
                log.exception("worker step failed; retrying")
                busy = False
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.delivery.poll_interval_seconds)
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=self.config.delivery.timeout_seconds + 1)
        if reconciling is not None:
            reconciling.cancel()
            await asyncio.gather(reconciling, return_exceptions=True)

    def _start_reconciler(self, stopping: asyncio.Event) -> asyncio.Task[None] | None:
        """Scheduled reconcile (`reconcile_every`) beside the delivery loop, for the endpoints that ask."""
        from bridge.reconciler import Reconciler

        reconciler = Reconciler(self.config, self.store, self.clock)
        return asyncio.create_task(reconciler.run(stopping)) if reconciler.endpoints else None

    async def step(self) -> bool:
        """One round: parse what arrived, start what is due. True when it found work."""
        await self.purge_if_due()
        parsed = await self.process_received()
        started = await self.start_due()
        return parsed > 0 or started > 0

    async def drain(self, timeout: float = 30.0) -> None:
        """Run until nothing is received, due or in flight (tests and one-shot commands)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = await self.step()
            if self._inflight:
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            elif not busy:
                due = await self.store.run(lambda tx: tx.next_due_at())
                if due is None or due > self.clock() + (deadline - time.monotonic()):
                    return
                await asyncio.sleep(min(max(0.0, due - self.clock()), 0.5) + 0.001)

    async def purge_if_due(self) -> int:
        days = self.config.retention_days
        now = self.clock()
        if days is None or now < self._next_purge:
            return 0
        self._next_purge = now + PURGE_INTERVAL_SECONDS
        before = now - days * 86400
        purged = await self.store.run(lambda tx: tx.purge_bodies(before))
        if purged:
            log.info("retention: dropped the raw bodies of %s finished calls older than %s days", purged, days)
        return purged

    # --- parsing stored calls --------------------------------------------------------------------

    async def process_received(self) -> int:
        now = self.clock()
        lease_until = now + self.config.delivery.lease
        calls = await self.store.run(lambda tx: tx.claim_calls(self.owner, now, lease_until, CALL_BATCH))
        for call in calls:
            await self.process_call(call)
        return len(calls)

    async def process_call(self, call: StoredCall) -> None:
        endpoint = self.config.endpoints.get(call.endpoint)
        now = self.clock()
        if call.endpoint == SIGNUP_ENDPOINT:
            await self._process_signup(call, now)
            return
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

            def record(tx: Transaction) -> None:
                record_events(tx, call, endpoint, events, now)
                tx.finish_call(call.id, CallStatus.PROCESSED, None, now)

            await self.store.run(record)
            return
        log.warning("call %s on %s kept unparsed: %s", call.id, call.endpoint, error)
        await self.store.run(lambda tx: tx.finish_call(call.id, CallStatus.FAILED, error, now))

    async def _process_signup(self, call: StoredCall, now: float) -> None:
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

    # --- delivering operations -------------------------------------------------------------------

    async def start_due(self) -> int:
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            return 0
        now = self.clock()
        lease_until = now + self.config.delivery.lease
        paused = [scope for scope, health in self._health.items() if health.paused(now)]
        wait = self.config.signups.wait_seconds
        ops = await self.store.run(lambda tx: tx.claim_operations(self.owner, now, lease_until, free, paused, wait))
        for op in ops:
            task = asyncio.create_task(self._deliver(op))
            self._inflight.add(task)
            task.add_done_callback(self._task_done)
        return len(ops)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed: %r", task.exception())
        self._wake.set()

    async def _deliver(self, op: Operation) -> None:
        endpoint = self.config.endpoints.get(op.endpoint)
        client = self._client_for(endpoint.partnero) if endpoint else self._clients.get(op.scope)
        if client is None:
            await self._finish(op, Outcome(Result.SKIPPED, "no Partnero client for this program (dry run)"))
            return
        limiter = self._limiters[op.scope]
        looked_up_absent = False
        if op.action == CUSTOMER:
            if op.maybe_sent:
                await limiter.acquire()
                exists = await client.customer_exists(op.target_key)
                if isinstance(exists, Outcome):
                    await self._finish(op, exists, still_maybe_sent=True)
                    return
                if exists:
                    await self._finish(op, Outcome(Result.DELIVERED, "customer found after an uncertain attempt"))
                    return
                looked_up_absent = True
            await limiter.acquire()
            outcome = await client.create_customer(op.request)
        elif op.action == CREATE:
            if op.maybe_sent:
                await limiter.acquire()
                exists = await client.transaction_exists(op.target_key)
                if isinstance(exists, Outcome):
                    # the look-up itself failed: the earlier attempt is still unaccounted for
                    await self._finish(op, exists, still_maybe_sent=True)
                    return
                if exists:
                    await self._finish(op, Outcome(Result.DELIVERED, "found at Partnero after an uncertain attempt"))
                    return
                looked_up_absent = True
            body = dict(op.request)
            body["amount"] = Decimal(body["amount"])
            await limiter.acquire()
            outcome = await client.create_transaction(body)
        else:
            sale = await self.store.run(lambda tx: tx.get_operation(op.scope, f"{CREATE}:{op.target_key}"))
            if sale is not None and sale.status in (OpStatus.SKIPPED, OpStatus.DEAD):
                await self._finish(op, Outcome(Result.SKIPPED, f"its sale was not delivered ({sale.status.value})"))
                return
            await limiter.acquire()
            outcome = await client.delete_transaction(op.target_key, maybe_sent_before=op.maybe_sent)
        await self._finish(op, outcome, still_maybe_sent=op.maybe_sent and not looked_up_absent)

    async def _finish(self, op: Operation, outcome: Outcome, still_maybe_sent: bool = False) -> None:
        now = self.clock()
        if op.scope in self._health:
            self._health[op.scope].record(outcome, now)
        settings = self.config.delivery
        attempts = op.attempts + 1
        fields: dict[str, object] = {"lease_owner": None, "lease_until": None, "reason": outcome.detail}
        if outcome.result is Result.RETRY:
            fields["maybe_sent"] = int(outcome.maybe_sent or still_maybe_sent)
            if attempts >= settings.max_attempts:
                fields["status"] = OpStatus.DEAD
                fields["reason"] = f"gave up after {attempts} attempts: {outcome.detail}"
            else:
                delay = backoff_seconds(
                    attempts,
                    settings.initial_backoff_seconds,
                    settings.max_backoff_seconds,
                    outcome.retry_after,
                )
                fields["next_attempt_at"] = now + delay
        else:
            fields["status"] = {
                Result.DELIVERED: OpStatus.DELIVERED,
                Result.SKIPPED: OpStatus.SKIPPED,
                Result.DEAD: OpStatus.DEAD,
            }[outcome.result]
            fields["maybe_sent"] = 0
        attempt = Attempt(op.id, now, outcome.result.value, outcome.status_code, outcome.detail)

        final = fields.get("status")

        def write(tx: Transaction) -> None:
            tx.update_operation(op.id, now, **fields)
            tx.add_attempt(attempt)
            if isinstance(final, OpStatus):
                settle(tx, op, final, str(fields["reason"]), now)

        await self.store.run(write)
        log.info(
            "operation %s %s %s: %s (%s)",
            op.id,
            op.action,
            op.transaction_key,
            outcome.result.value,
            outcome.detail,
        )
