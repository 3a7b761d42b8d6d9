"""Scheduled reconcile in the worker: the provider's API as a safety net behind its webhooks.

An endpoint with `reconcile_every` (and an adapter `api_key`) is compared with the ledger that often:
the payments of the last `reconcile_window`, except the youngest (`reconcile_grace`: their webhook may
still be on its way, and it may carry custom data the API lacks), go through the same path as
`partnero-bridge reconcile --apply`. Each run is bounded to `reconcile_max_requests` API requests and
stops at a long rate-limit wait; the next run tries again. Runs log counts only, never payment data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bridge import backfill
from bridge.config import Config
from bridge.store.base import Store

log = logging.getLogger("bridge.reconcile")


class Reconciler:
    def __init__(self, config: Config, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.endpoints = [e for e in config.endpoints.values() if e.settings.reconcile_every is not None]
        self.next_run = dict.fromkeys((e.name for e in self.endpoints), clock())

    async def run_due(self) -> list[backfill.Summary]:
        """Reconcile every endpoint whose time has come; returns what each run found."""
        done = []
        for endpoint in self.endpoints:
            settings = endpoint.settings
            now = self.clock()
            if now < self.next_run[endpoint.name] or settings.reconcile_every is None:
                continue
            self.next_run[endpoint.name] = now + settings.reconcile_every
            since = datetime.fromtimestamp(now - settings.reconcile_window, tz=UTC)
            until = datetime.fromtimestamp(now - settings.reconcile_grace, tz=UTC)
            try:
                summary = await backfill.run(
                    self.config, self.store, endpoint, since, until, max_requests=settings.reconcile_max_requests
                )
            except backfill.HistoryUnavailable as exc:
                log.warning("reconcile %s is off: %s", endpoint.name, exc)
                self.next_run[endpoint.name] = float("inf")
                continue
            except Exception:  # a provider API surprise must not stop the worker
                log.exception("reconcile %s failed; it runs again at its next time", endpoint.name)
                continue
            log.info(
                "reconcile %s: seen %s, known %s, queued %s missed by webhooks, %s API requests%s",
                endpoint.name,
                summary.seen,
                summary.known,
                len(summary.new),
                summary.api_requests,
                f" (stopped early: {summary.stopped})" if summary.stopped else "",
            )
            done.append(summary)
        return done

    async def run(self, stopping: asyncio.Event, poll_seconds: float = 30.0) -> None:
        """Until `stopping`, run what is due; the worker starts it beside its own loop."""
        while not stopping.is_set():
            await self.run_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), poll_seconds)
