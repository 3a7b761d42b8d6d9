"""The worker: parse stored calls, then deliver due operations to Partnero, retrying with backoff.

Exactly-once effect on an API that does not de-duplicate: an operation is claimed (its attempt
counted and marked maybe-sent) in a committed transaction before any request leaves, so after a crash,
a timeout or a broken connection the next attempt first asks Partnero whether the key exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from decimal import Decimal
from typing import Any

from bridge.config import Config, PartneroSettings
from bridge.flow import CircuitBreaker, ProgramState, RateLimiter, Ticket, Verdict, backoff_seconds
from bridge.outbox import CREATE, creates_customer, settle
from bridge.partnero import Outcome, PartneroClient, Result
from bridge.recorder import CALL_BATCH, CallRecorder
from bridge.signups import CUSTOMER
from bridge.store.base import Attempt, Operation, OpStatus, Store, StoredCall, Transaction

log = logging.getLogger("bridge.delivery")

PURGE_INTERVAL_SECONDS = 3600.0
# while webhooks keep arriving: how long the recorder waits before each round, and how much it then takes
GIVE_WAY_SECONDS = 0.05
BUSY_CALL_BATCH = 10
# webhooks count as arriving while one was answered this recently: between two of a stream there is no pause
QUIET_SECONDS = 0.01
LOOKUP_RETRY_PAUSES = (0.2, 0.5)
# A request may only start while its operation's lease outlasts it by this much: a look-up, a rate-limit
# wait or a stalled loop can use up the lease before the POST, and another process that then claims the
# operation finds nothing at Partnero and posts the same key (Partnero does not de-duplicate). The
# margin covers the loop's own lag and a Partnero that commits just after the client stopped waiting.
LEASE_MARGIN_SECONDS = 1.0


class LeaseLost(Exception):
    """The operation's lease ran out before its request could start: it is no longer this worker's."""


class Worker:
    """Parses what arrived (`CallRecorder`), then starts due operations under each program's flow control."""

    def __init__(self, config: Config, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.owner = f"worker-{uuid.uuid4().hex[:12]}"
        self.recorder = CallRecorder(config, store, self.owner, clock)
        self._wake = asyncio.Event()  # something to deliver may be due: a slot freed, operations recorded
        self._calls_arrived = asyncio.Event()
        self._answering = 0  # webhooks being answered on this loop right now
        self._last_answered = 0.0  # time.monotonic() when the last one was answered
        self._inflight: set[asyncio.Task[None]] = set()
        self._clients: dict[str, PartneroClient] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._next_purge = 0.0
        # hooks for metrics and alerts: (operation, outcome, final status or None, latency seconds)
        self.on_finished: list[Callable[[Operation, Outcome, OpStatus | None, float | None], None]] = []
        self.on_unparsed: list[Callable[[StoredCall, str], None]] = self.recorder.on_unparsed
        self._attempt_started: dict[int, float] = {}
        # finishes waiting for the next store call (`_write_finish`), and the task that writes them
        self._finishes: list[tuple[Callable[[Transaction], None], asyncio.Future[None]]] = []
        self._finisher: asyncio.Task[None] | None = None
        self._lease_until: dict[int, float] = {}  # operation id -> end of this worker's lease on it
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
            self._breakers[settings.scope] = CircuitBreaker(
                delivery.initial_backoff_seconds, delivery.breaker_max_pause_seconds, delivery.breaker_threshold
            )
        return self._clients[settings.scope]

    def wake(self) -> None:
        self._wake.set()
        self._calls_arrived.set()

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Held by the ingest handler while it answers a webhook: the recorder gives way to it (see
        `_give_way`), so answering stays fast when webhooks arrive faster than the worker processes them."""
        self._answering += 1
        try:
            yield
        finally:
            self._answering -= 1
            self._last_answered = time.monotonic()

    def program_states(self, now: float | None = None) -> list[ProgramState]:
        """Each Partnero program's flow-control state, for the operator."""
        at = self.clock() if now is None else now
        return [breaker.snapshot(scope, at) for scope, breaker in sorted(self._breakers.items())]

    async def aclose(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=5)
        if self._finisher is not None:
            # the finishes of deliveries cancelled above are still written, before the store may close
            await asyncio.wait({self._finisher}, timeout=5)
        for client in self._clients.values():
            await client.aclose()
        await self.recorder.aclose()
        for endpoint in self.config.endpoints.values():
            await endpoint.adapter.aclose()

    async def run(self, stopping: asyncio.Event) -> None:
        """Record and deliver until `stopping`. On SQLite side by side, so a delivery slot that frees is
        refilled at once rather than after the next round of recording, and the recorder can give way to
        webhooks being answered without holding deliveries back."""
        if self.store.single_process:
            # this process owns the SQLite store (`hold_exclusive`): leases of a dead predecessor are void
            await self.store.run(lambda tx: tx.release_leases(None))
        reconciling = self._start_reconciler(stopping)
        if self.store.single_process:
            await self._record_and_deliver(stopping)
        else:
            await self._run_in_rounds(stopping)
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=self.config.delivery.timeout_seconds + 1)
        if reconciling is not None:
            reconciling.cancel()
            await asyncio.gather(reconciling, return_exceptions=True)

    async def _run_in_rounds(self, stopping: asyncio.Event) -> None:
        """PostgreSQL: one round (record, then start what is due) after the other. Recording and delivering
        side by side made the slow scale-out test (tests/test_scaleout.py, three processes, a 3 s lease)
        post a payment twice (one look-up, then two POSTs of the key within a millisecond). That test fails
        now and then with rounds too (docs/performance.md); suspected: a request reaching the overloaded
        stand-in after its lease had passed, racing another process's look-up, which more requests in
        flight make likelier. Until that is understood, PostgreSQL keeps rounds."""
        while not stopping.is_set():
            try:
                busy = await self.step()
            except Exception:
                log.exception("worker step failed; retrying")
                busy = False
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_wait())

    async def _record_and_deliver(self, stopping: asyncio.Event) -> None:
        recording = asyncio.create_task(self._record_loop(stopping))
        while not stopping.is_set():
            # cleared before the claim, so a wake-up during the claim is not lost
            self._wake.clear()
            try:
                await self.purge_if_due()
                busy = await self.start_due() > 0
            except Exception:
                log.exception("worker step failed; retrying")
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_wait())
        # the recorder finishes the round it is in (its calls are then recorded, not handed back)
        self._calls_arrived.set()
        _, unfinished = await asyncio.wait({recording}, timeout=self.config.delivery.timeout_seconds + 1)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(recording, return_exceptions=True)

    async def _record_loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self._calls_arrived.clear()
            limit = await self._give_way()
            try:
                recorded = await self.recorder.process_received(limit)
            except Exception:
                log.exception("recording stored calls failed; retrying")
                recorded = 0
            if recorded:
                self._wake.set()  # new operations may be due
            if recorded < limit:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._calls_arrived.wait(), self.config.delivery.poll_interval_seconds)

    async def _give_way(self) -> int:
        """How many calls the next round may record. While webhooks are arriving the recorder first waits
        `GIVE_WAY_SECONDS` and then takes a small round: the webhook's answer is what the provider waits
        for, the recording can wait, and full rounds of parsing on this loop (and in the store) are what
        held the answers up. The wait is bounded, so a stream of webhooks that never pauses slows the
        recording down (to about `BUSY_CALL_BATCH` per `GIVE_WAY_SECONDS`) but never stops it."""
        if not self._arriving():
            return CALL_BATCH
        await asyncio.sleep(GIVE_WAY_SECONDS)
        return BUSY_CALL_BATCH if self._arriving() else CALL_BATCH

    def _arriving(self) -> bool:
        return bool(self._answering) or time.monotonic() - self._last_answered < QUIET_SECONDS

    def _start_reconciler(self, stopping: asyncio.Event) -> asyncio.Task[None] | None:
        """Scheduled reconcile (`reconcile_every`) beside the delivery loop, for the endpoints that ask."""
        from bridge.reconciler import Reconciler

        reconciler = Reconciler(self.config, self.store, self.clock)
        return asyncio.create_task(reconciler.run(stopping)) if reconciler.endpoints else None

    def _idle_wait(self) -> float:
        """Sleep until the next poll, or until a paused program's probe is due, whichever is first."""
        wait = self.config.delivery.poll_interval_seconds
        now = self.clock()
        for breaker in self._breakers.values():
            if not breaker.closed and breaker.until > now:
                wait = min(wait, breaker.until - now + 0.001)
        return max(wait, 0.001)

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

    async def process_received(self) -> int:
        return await self.recorder.process_received()

    # --- delivering operations -------------------------------------------------------------------

    async def start_due(self) -> int:
        now = self.clock()
        for scope, breaker in self._breakers.items():
            if breaker.probe_due(now):
                self._spawn(self._probe(scope, breaker.start_probe(now)))
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            return 0
        lease_until = now + self.config.delivery.lease
        wait = self.config.signups.wait_seconds
        held = [scope for scope, breaker in self._breakers.items() if not breaker.closed]
        ops = await self.store.run(lambda tx: tx.claim_operations(self.owner, now, lease_until, free, held, wait))
        for op in ops:
            self._lease_until[op.id] = lease_until
            program = self._breakers.get(op.scope)
            self._spawn(self._deliver(op, program.ticket(now) if program else None))
        return len(ops)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._inflight.add(task)
        task.add_done_callback(self._task_done)

    async def _probe(self, scope: str, ticket: Ticket) -> None:
        """The half-open breaker's one request: is this Partnero program answering again?"""
        await self._limiters[scope].acquire()
        outcome = await self._clients[scope].check()
        self._breakers[scope].record(ticket, _verdict(outcome), self.clock(), outcome.retry_after)
        log.info("probe of Partnero program %s: %s (%s)", scope, outcome.result.value, outcome.detail)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed: %r", task.exception())
        self._wake.set()

    async def _deliver(self, op: Operation, ticket: Ticket | None) -> None:
        self._attempt_started[op.id] = time.perf_counter()
        try:
            outcome, still_maybe_sent = await self._send(op)
        except LeaseLost:
            # sent nothing; whoever claims it next looks the key up first (it is marked maybe-sent)
            log.warning("operation %s: its lease ran out before the request could start; left to the next claim", op.id)
            self._attempt_started.pop(op.id, None)
            self._lease_until.pop(op.id, None)
            return
        except Exception as exc:
            # never leave an operation leased behind a failed task: it is retried like any failure
            log.exception("delivering operation %s failed", op.id)
            outcome, still_maybe_sent = Outcome(Result.RETRY, f"bridge error: {type(exc).__name__}"), True
        await self._finish(op, outcome, still_maybe_sent, ticket)

    async def _send(self, op: Operation) -> tuple[Outcome, bool]:
        """Make the operation's request(s); the outcome, and whether an earlier attempt is still unaccounted."""
        endpoint = self.config.endpoints.get(op.endpoint)
        client = self._client_for(endpoint.partnero) if endpoint else self._clients.get(op.scope)
        if client is None:
            return Outcome(Result.SKIPPED, "no Partnero client for this program (dry run)"), False
        limiter = self._limiters[op.scope]
        if op.action in (CUSTOMER, CREATE) and op.maybe_sent:
            lookup = client.customer_exists if op.action == CUSTOMER else client.transaction_exists
            exists = await self._look_up(lookup, op.target_key, limiter)
            if isinstance(exists, Outcome):
                # the look-up itself failed: the earlier attempt is still unaccounted for
                return exists, True
            if exists:
                return Outcome(Result.DELIVERED, "found at Partnero after an uncertain attempt"), False
        if op.action == CUSTOMER:
            await limiter.acquire()
            await self._hold_lease(op)
            return await client.create_customer(op.request), False
        if op.action == CREATE:
            body = dict(op.request)
            body["amount"] = Decimal(body["amount"])
            await limiter.acquire()
            await self._hold_lease(op)
            return await client.create_transaction(body), False
        sale = await self.store.run(lambda tx: tx.get_operation(op.scope, f"{CREATE}:{op.target_key}"))
        if sale is not None and sale.status in (OpStatus.SKIPPED, OpStatus.DEAD):
            return Outcome(Result.SKIPPED, f"its sale was not delivered ({sale.status.value})"), False
        await limiter.acquire()
        await self._hold_lease(op)
        return await client.delete_transaction(op.target_key, maybe_sent_before=op.maybe_sent), op.maybe_sent

    async def _hold_lease(self, op: Operation) -> None:
        """Make sure this worker's lease outlasts the request about to start, renewing it if it is short;
        `LeaseLost` when it has already run out (another process may be sending this operation)."""
        now = self.clock()
        request_takes = self.config.delivery.timeout_seconds + LEASE_MARGIN_SECONDS
        if self._lease_until.get(op.id, now) - now > request_takes:
            return
        until = now + max(self.config.delivery.lease, request_takes)
        renewed = await self.store.run(lambda tx: tx.renew_operation_lease(op.id, self.owner, now, until))
        if not renewed:
            raise LeaseLost(op.op_key)
        self._lease_until[op.id] = until

    @staticmethod
    async def _look_up(
        lookup: Callable[[str], Awaitable[bool | Outcome]], key: str, limiter: RateLimiter
    ) -> bool | Outcome:
        """A look-up is a harmless read: a flaky answer is asked again at once (a few times, briefly)
        rather than costing the operation a whole backoff step before it may post."""
        for pause in LOOKUP_RETRY_PAUSES:
            await limiter.acquire()
            found = await lookup(key)
            if not isinstance(found, Outcome) or found.result is not Result.RETRY or found.status_code == 429:
                return found
            await asyncio.sleep(pause)
        await limiter.acquire()
        return await lookup(key)

    async def _finish(self, op: Operation, outcome: Outcome, still_maybe_sent: bool, ticket: Ticket | None) -> None:
        now = self.clock()
        program_failure = False
        breaker = self._breakers.get(op.scope)
        if breaker is not None and ticket is not None:
            program_failure = breaker.record(ticket, _verdict(outcome), now, outcome.retry_after)
        settings = self.config.delivery
        attempts = op.attempts + 1
        fields: dict[str, object] = {"lease_owner": None, "lease_until": None, "reason": outcome.detail}
        if outcome.result is Result.RETRY:
            fields["maybe_sent"] = int(outcome.maybe_sent or still_maybe_sent)
            if program_failure:
                # Partnero is down for everyone: the breaker paces the retries, and this operation
                # keeps its attempt budget for failures that are its own
                fields["attempts"] = op.attempts
                fields["next_attempt_at"] = now + backoff_seconds(
                    max(op.attempts, 1),
                    settings.initial_backoff_seconds,
                    settings.breaker_max_pause_seconds,
                    outcome.retry_after,
                )
            elif attempts >= settings.max_attempts:
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
        self._lease_until.pop(op.id, None)
        started = self._attempt_started.pop(op.id, None)
        latency = time.perf_counter() - started if started is not None else None
        attempt = Attempt(op.id, now, outcome.result.value, outcome.status_code, outcome.detail, latency)

        final = fields.get("status")

        def write(tx: Transaction) -> None:
            tx.update_operation(op.id, now, **fields)
            tx.add_attempt(attempt)
            if isinstance(final, OpStatus):
                settle(tx, op, final, str(fields["reason"]), now)

        await self._write_finish(op, write)
        for hook in self.on_finished:
            hook(op, outcome, final if isinstance(final, OpStatus) else None, latency)
        log.info(
            "operation %s %s %s: %s (%s)",
            op.id,
            op.action,
            op.transaction_key,
            outcome.result.value,
            outcome.detail,
        )

    async def _write_finish(self, op: Operation, write: Callable[[Transaction], None]) -> None:
        """Write an operation's finish together with the others finishing meanwhile: one store call (one
        commit on PostgreSQL, one piece of the SQLite writer's batch) for all of them instead of one each.

        Each finish writes what it wrote alone, unconditionally as before, and a finish is only written
        after its request ended, so the lease fence (`_hold_lease`) is untouched. A finish that settles a
        customer is written alone: it takes the customer's lock, and a transaction holding several such
        locks, taken in no fixed order, can deadlock another process's recording (docs/performance.md)."""
        if creates_customer(op):
            await self.store.run(write)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._finishes.append((write, future))
        if self._finisher is None or self._finisher.done():
            self._finisher = asyncio.create_task(self._write_finishes())
        await future

    async def _write_finishes(self) -> None:
        # one pass of the loop first: the deliveries whose answers came in the same pass join the batch
        await asyncio.sleep(0)
        while self._finishes:
            batch, self._finishes = self._finishes, []
            try:
                outcomes = await self._write_batch([write for write, _ in batch])
            except asyncio.CancelledError:
                # the loop is shutting down: nobody is left waiting in silence
                for _, future in batch + self._finishes:
                    future.cancel()
                raise
            except Exception as exc:  # the store failed for the finishes one by one as well
                outcomes = [exc] * len(batch)
            for (_, future), error in zip(batch, outcomes, strict=True):
                if future.done():
                    continue  # its delivery was cancelled; the finish is written all the same
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    async def _write_batch(self, writes: list[Callable[[Transaction], None]]) -> list[Exception | None]:
        """Every write in one store call; when that fails (and is undone whole), each alone, so only the
        finish that fails fails, as when each was written alone."""
        try:
            await self.store.run(lambda tx: [write(tx) for write in writes])
        except Exception as exc:
            if len(writes) == 1:
                return [exc]
            each = await self.store.run_each(writes)
            return [error if isinstance(error, Exception) else None for error in each]
        return [None] * len(writes)


def _verdict(outcome: Outcome) -> Verdict:
    """What an operation's outcome says about the program as a whole."""
    if outcome.result is Result.RETRY:
        return Verdict.RATE_LIMITED if outcome.status_code == 429 else Verdict.FAILURE
    if outcome.result is Result.DEAD:
        return Verdict.NEUTRAL
    return Verdict.SUCCESS
