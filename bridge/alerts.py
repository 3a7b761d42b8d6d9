"""Chat alerts: a Slack-compatible JSON POST when an operation is dead-lettered, a call cannot be parsed,
or a Partnero program stays paused longer than `alerts.paused_minutes`.

An alert names the endpoint, event, transaction key and reason — never a secret, a token, a webhook body
or the buyer's email (any email-looking text and any configured secret in a reason is blanked). Alerts are
rate-limited per (kind, endpoint): within `min_interval_seconds` of the last one, further alerts are
counted and the count rides on the next. Each POST is retried with backoff for up to 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bridge.config import Config
from bridge.delivery import Worker
from bridge.partnero import Outcome
from bridge.store.base import Operation, OpStatus, Store, StoredCall

log = logging.getLogger("bridge.alerts")

_EMAIL = re.compile(r"[^\s@<>()\"',;:]+@[^\s@<>()\"',;:]+\.[A-Za-z]{2,}")
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # about 15 s of retries, inside the 30 s promise
PAUSE_CHECK_SECONDS = 15.0


@dataclass(frozen=True)
class Alert:
    kind: str  # dead_letter | unparsable_call | program_paused
    endpoint: str
    reason: str
    event: str | None = None
    transaction_key: str | None = None

    def payload(self, suppressed: int) -> dict[str, Any]:
        title = {
            "dead_letter": "Dead letter: Partnero will not take this operation",
            "unparsable_call": "A webhook could not be parsed (kept for replay)",
            "program_paused": "Delivery to a Partnero program is paused",
        }.get(self.kind, self.kind)
        lines = [f"partnero-bridge — {title}", f"endpoint: {self.endpoint}"]
        if self.event:
            lines.append(f"event: {self.event}")
        if self.transaction_key:
            lines.append(f"transaction key: {self.transaction_key}")
        lines.append(f"reason: {self.reason}")
        if suppressed:
            lines.append(f"(+{suppressed} more like this since the last alert)")
        return {
            "text": "\n".join(lines),
            "kind": self.kind,
            "endpoint": self.endpoint,
            "event": self.event,
            "transaction_key": self.transaction_key,
            "reason": self.reason,
            "suppressed": suppressed,
        }


@dataclass
class _Window:
    last_sent: float = float("-inf")
    suppressed: int = 0


@dataclass
class Alerter:
    url: str
    min_interval: float
    secrets: tuple[str, ...] = ()
    clock: Callable[[], float] = time.monotonic
    client: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10.0))
    _windows: dict[tuple[str, str], _Window] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def from_config(cls, config: Config) -> Alerter | None:
        if not config.alerts.url:
            return None
        secrets = [s for e in config.endpoints.values() for s in e.adapter.secrets]
        secrets += [config.admin.token, config.signups.token, config.partnero.api_key]
        secrets += [e.partnero.api_key for e in config.endpoints.values()]
        return cls(config.alerts.url, config.alerts.min_interval_seconds, tuple(s for s in secrets if s))

    def clean(self, text: str) -> str:
        text = _EMAIL.sub("[email]", text)
        for secret in self.secrets:
            text = text.replace(secret, "[secret]")
        return text[:500]

    def notify(self, alert: Alert) -> None:
        """Queue an alert (rate-limited); never blocks, never raises."""
        window = self._windows.setdefault((alert.kind, alert.endpoint), _Window())
        now = self.clock()
        if now - window.last_sent < self.min_interval:
            window.suppressed += 1
            return
        suppressed, window.suppressed, window.last_sent = window.suppressed, 0, now
        cleaned = Alert(alert.kind, alert.endpoint, self.clean(alert.reason), alert.event, alert.transaction_key)
        task = asyncio.get_running_loop().create_task(self._post(cleaned.payload(suppressed)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, payload: dict[str, Any]) -> None:
        for delay in (*RETRY_DELAYS, None):
            try:
                response = await self.client.post(self.url, json=payload)
                if response.is_success:
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            if delay is None:
                log.warning("alert %s not delivered: %s", payload["kind"], problem)
                return
            await asyncio.sleep(delay)

    def watch(self, worker: Worker) -> None:
        worker.on_finished.append(self._operation_finished)
        worker.on_unparsed.append(self._call_unparsed)

    def _operation_finished(self, op: Operation, outcome: Outcome, final: OpStatus | None, _: float | None) -> None:
        if final is OpStatus.DEAD:
            event = str(op.event_id) if op.event_id is not None else None
            self.notify(Alert("dead_letter", op.endpoint, outcome.detail, event, op.transaction_key))

    def _call_unparsed(self, call: StoredCall, error: str) -> None:
        self.notify(Alert("unparsable_call", call.endpoint, error, f"call:{call.id}"))

    async def watch_pauses(self, config: Config, store: Store, worker: Worker | None, stopping: asyncio.Event) -> None:
        """Alert once per pause that lasts longer than `alerts.paused_minutes` (operator or breaker)."""
        from bridge.console.views import program_rows

        threshold = config.alerts.paused_minutes * 60
        since: dict[str, float] = {}
        alerted: set[str] = set()
        while not stopping.is_set():
            try:
                paused = await store.run(lambda tx: tx.paused_programs())
                now = time.time()
                for row in program_rows(config, paused, worker, now):
                    scope = row["program"]
                    if row["state"] not in ("paused", "open"):
                        since.pop(scope, None)
                        alerted.discard(scope)
                        continue
                    started = paused.get(scope, since.setdefault(scope, now))
                    if now - started >= threshold and scope not in alerted:
                        alerted.add(scope)
                        minutes = int((now - started) // 60)
                        who = "an operator" if row["state"] == "paused" else "its circuit breaker (Partnero failing)"
                        self.notify(Alert("program_paused", row["name"], f"paused by {who} for {minutes} min"))
            except Exception:
                log.exception("checking paused programs failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), PAUSE_CHECK_SECONDS)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self.client.aclose()
