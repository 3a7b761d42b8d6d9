"""Flow control toward one Partnero program: a rate limit, a circuit breaker, and the backoff between tries.

The breaker exists so that a Partnero outage costs one request every few seconds, not one per pending
operation, and so that a healed Partnero is noticed within `max_pause` seconds:

    closed ──(`threshold` consecutive failure waves)──▶ open ──(pause over)──▶ half-open
      ▲                                                  ▲                         │
      └──────────────── the probe succeeds ──────────────┼──── the probe fails ────┘ (pause doubles,
                                                                                      capped at max_pause)

- A *wave* is every request that was already under way when a failure came back: operations sent
  together fail together, and count as one failure of the program, not one each.
- Any success resets the count, so one payment that Partnero keeps refusing (while others go through)
  never opens the breaker; that payment lives on its own backoff.
- Half-open sends exactly one request: the probe, `GET /v1/test` (Partnero's own key check). It touches
  no payment, so a probe can never pay twice and spends no operation's attempts; and it tells a payment
  Partnero refuses on its own (the probe succeeds, the payment keeps failing on its own backoff toward
  a dead letter) from Partnero being down (the probe fails too).
- Operations that fail while the breaker is open — the wave that opened it — fail because of the
  program: they keep their attempt budget, so an outage of any length dead-letters nothing.
- A 429 opens the breaker for Partnero's Retry-After (bounded), without waiting for a threshold.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

# a Retry-After is Partnero's word, but a broken header must not stop delivery for long
MAX_RETRY_AFTER_SECONDS = 300.0


def backoff_seconds(attempt: int, initial: float, maximum: float, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; a `Retry-After` from Partnero is a floor, never shortened."""
    delay = min(maximum, initial * (2 ** max(0, min(attempt, 64) - 1)))
    jittered = delay * (0.5 + random.random() / 2)
    if retry_after is not None:
        return float(max(min(retry_after, MAX_RETRY_AFTER_SECONDS), min(jittered, maximum)))
    return float(jittered)


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


class BreakerState(StrEnum):
    CLOSED = "closed"  # flowing
    OPEN = "open"  # paused until `until`
    HALF_OPEN = "half-open"  # one probe under way


class Verdict(StrEnum):
    """What one finished request meant for the program."""

    SUCCESS = "success"
    FAILURE = "failure"  # Partnero down or erroring: 5xx, timeout, connection refused
    RATE_LIMITED = "rate-limited"
    NEUTRAL = "neutral"  # a final answer about this one request (4xx): says nothing about the program


@dataclass(frozen=True)
class Ticket:
    """Handed out when a request may start; returned with its verdict when it ends."""

    started: float
    probe: bool


@dataclass(frozen=True)
class ProgramState:
    """One Partnero program's delivery state as the operator sees it."""

    scope: str
    state: str  # "flowing", "open", "half-open" (or "paused" by an operator)
    until: float | None
    consecutive_failures: int


class CircuitBreaker:
    """The state machine above for one Partnero program. Times are in the caller's clock (seconds)."""

    def __init__(self, initial_pause: float = 2.0, max_pause: float = 30.0, threshold: int = 3) -> None:
        self.initial_pause = min(initial_pause, max_pause)
        self.max_pause = max_pause
        self.threshold = threshold
        self.state = BreakerState.CLOSED
        self.failures = 0  # consecutive failure waves
        self.until = 0.0  # end of the current pause (OPEN)
        self.pause = self.initial_pause  # the pause the next failed probe starts
        self._last_failure_at = -math.inf

    @property
    def closed(self) -> bool:
        return self.state is BreakerState.CLOSED

    def ticket(self, now: float) -> Ticket:
        """For an operation started while the breaker is closed."""
        return Ticket(now, probe=False)

    def probe_due(self, now: float) -> bool:
        return self.state is BreakerState.OPEN and now >= self.until

    def start_probe(self, now: float) -> Ticket:
        self.state = BreakerState.HALF_OPEN
        return Ticket(now, probe=True)

    def record(self, ticket: Ticket, verdict: Verdict, now: float, retry_after: float | None = None) -> bool:
        """Account for a finished request. True when the failure is the program's (the breaker is or
        goes open because of it), so the operation should not pay for it with its own attempts."""
        if verdict is Verdict.NEUTRAL:
            if ticket.probe:
                # the probe got a definite answer: Partnero is up
                self._close()
            return False
        if verdict is Verdict.SUCCESS:
            self._close()
            return False
        if verdict is Verdict.RATE_LIMITED:
            pause = retry_after if retry_after is not None else self.initial_pause
            self._open(now, min(max(pause, 0.0), MAX_RETRY_AFTER_SECONDS), keep_pause=True)
            return True
        if ticket.probe:
            self.pause = min(self.max_pause, self.pause * 2)
            self._open(now, self.pause, keep_pause=True)
            return True
        if ticket.started <= self._last_failure_at:
            # sent before the last failure came back: part of that wave, already counted
            return self.state is not BreakerState.CLOSED
        self._last_failure_at = now
        self.failures += 1
        if self.state is BreakerState.CLOSED and self.failures >= self.threshold:
            self._open(now, self.initial_pause, keep_pause=False)
            return True
        return self.state is not BreakerState.CLOSED

    def snapshot(self, scope: str, now: float) -> ProgramState:
        if self.state is BreakerState.CLOSED:
            return ProgramState(scope, "flowing", None, self.failures)
        if self.state is BreakerState.HALF_OPEN:
            return ProgramState(scope, BreakerState.HALF_OPEN.value, None, self.failures)
        return ProgramState(scope, BreakerState.OPEN.value, self.until, self.failures)

    def _open(self, now: float, pause: float, keep_pause: bool) -> None:
        if not keep_pause:
            self.pause = pause
        self.state = BreakerState.OPEN
        self.until = max(self.until, now + pause) if self.until > now else now + pause
        self._last_failure_at = now

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.pause = self.initial_pause
