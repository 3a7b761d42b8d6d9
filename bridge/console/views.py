"""What each console page shows, as plain data: the HTML templates and the JSON twins render the same dicts."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from bridge import admin
from bridge.config import Config
from bridge.console.chart import booked_totals, per_endpoint, svg
from bridge.delivery import Worker
from bridge.metrics import StoreGauges
from bridge.signups import SIGNUP_ENDPOINT
from bridge.store.base import EventFilter, Store, Transaction

CHART_DAYS = 14
# header names that carry credentials or signatures' secrets: never shown, whatever the provider
_CREDENTIAL_HINTS = ("auth", "token", "secret", "password", "api-key", "apikey", "cookie", "session")


@dataclass(frozen=True)
class Program:
    scope: str
    endpoints: tuple[str, ...]
    dry_run: bool

    @property
    def name(self) -> str:
        return ", ".join(self.endpoints)


def programs(config: Config) -> dict[str, Program]:
    """Each Partnero program (API key + URL) the config delivers to, named by the endpoints using it."""
    found: dict[str, tuple[list[str], bool]] = {}
    for endpoint in config.endpoints.values():
        names, _ = found.setdefault(endpoint.partnero.scope, ([], endpoint.partnero.effective_dry_run))
        names.append(endpoint.name)
    if config.signups.enabled:
        settings = config.signup_partnero
        names, _ = found.setdefault(settings.scope, ([], settings.effective_dry_run))
        names.append("sign-ups")
    return {scope: Program(scope, tuple(names), dry) for scope, (names, dry) in sorted(found.items())}


def program_rows(config: Config, paused: dict[str, float], worker: Worker | None, now: float) -> list[dict[str, Any]]:
    automatic = {s.scope: s for s in worker.program_states(now)} if worker is not None else {}
    rows = []
    for scope, program in programs(config).items():
        state = automatic.get(scope)
        if scope in paused:
            status, since, until = "paused", admin.iso(paused[scope]), None
        elif program.dry_run:
            status, since, until = "dry run", None, None
        elif state is None:
            # no worker in this process (`serve --no-worker`): only operator pauses are known here
            status, since, until = "flowing", None, None
        else:
            status, since, until = state.state, None, admin.iso(state.until) if state.until else None
        rows.append(
            {
                "program": scope,
                "name": program.name,
                "state": status,
                "paused_since": since,
                "until": until,
                "operator_paused": scope in paused,
            }
        )
    return rows


async def overview(config: Config, store: Store, worker: Worker | None) -> dict[str, Any]:
    now = time.time()

    def read(tx: Transaction) -> dict[str, Any]:
        return {
            "day": tx.status_counts(now - 86400),
            "week": tx.status_counts(now - 7 * 86400),
            "queue": tx.queue_stats(),
            "paused": tx.paused_programs(),
            "rows": tx.day_rows(now - CHART_DAYS * 86400),
        }

    got = await store.read(read)
    statuses = sorted({s for _, s in got["day"]} | {s for _, s in got["week"]})
    counts = [
        {
            "status": status,
            "last_24h": sum(n for (_, s), n in got["day"].items() if s == status),
            "last_7d": sum(n for (_, s), n in got["week"].items() if s == status),
        }
        for status in statuses
    ]
    queue = got["queue"]
    oldest = queue.oldest_pending_at
    series = per_endpoint(got["rows"], now, CHART_DAYS)
    return {
        "generated": admin.iso(now),
        "counts": counts,
        "queue": {
            "pending_operations": queue.pending_operations,
            "received_calls": queue.received_calls,
            "oldest_pending_age_seconds": round(now - oldest, 1) if oldest is not None else None,
            "dead_operations": queue.dead_operations,
            "failed_calls": queue.failed_calls,
        },
        "programs": program_rows(config, got["paused"], worker, now),
        "charts": [{**s.as_json(), "booked_totals": booked_totals(s), "svg": svg(s)} for s in series],
    }


async def gauges(config: Config, store: Store, worker: Worker | None) -> StoreGauges:
    now = time.time()

    def read(tx: Transaction) -> tuple[Any, ...]:
        return tx.queue_stats(), tx.status_counts(None), tx.paused_programs()

    queue, events, paused = await store.read(read)
    rows = program_rows(config, paused, worker, now)
    oldest = queue.oldest_pending_at
    return StoreGauges(
        queue,
        max(0.0, now - oldest) if oldest is not None else None,
        events,
        [(r["program"], r["name"], r["state"] in ("paused", "open")) for r in rows],
    )


def event_filter(params: dict[str, str], page_size: int) -> tuple[EventFilter, int]:
    """The events page's query string as a store filter; mistakes raise `AdminError` with the field."""
    page = _page(params.get("page"))
    flt = EventFilter(
        status=params.get("status") or None,
        endpoint=params.get("endpoint") or None,
        kind=params.get("kind") or None,
        since=admin.parse_since(params["since"]) if params.get("since") else None,
        until=_until(params["until"]) if params.get("until") else None,
        q=(params.get("q") or "").strip() or None,
        limit=page_size + 1,  # one more tells whether there is a next page
        offset=(page - 1) * page_size,
    )
    return flt, page


def _page(text: str | None) -> int:
    if not text:
        return 1
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise admin.AdminError(f"page {text!r}: a number from 1")
    return int(text)


def _until(text: str) -> float:
    moment = admin.parse_since(text)
    # a bare date means "up to the end of that day"
    return moment + 86400 if len(text.strip()) == 10 else moment


async def event_detail(config: Config, store: Store, ident: str) -> dict[str, Any]:
    detail = await admin.show(store, ident)
    call_ident = detail.get("call", ident)
    call_id = int(call_ident.removeprefix(admin.CALL_PREFIX))
    secrets = _secrets(config, detail.get("endpoint"))

    def read(tx: Transaction) -> dict[str, Any]:
        call = tx.get_call(call_id)
        ledger = None
        operations = detail.get("operations") or []
        if operations and detail.get("transaction_key"):
            payment = tx.get_payment(operations[0]["program"], detail["transaction_key"])
            if payment is not None:
                ledger = {
                    "state": payment.state.value,
                    "partnero_key": payment.current_key,
                    "revision": payment.revision,
                    "sale_amount": str(payment.sale_amount) if payment.sale_amount is not None else None,
                    "currency": (payment.sale_request or {}).get("amount_units"),
                    "refunded": str(payment.refunded),
                    "refund_ids": sorted((payment.amounts.get("by_id") or {}).keys()),
                }
        stored = None
        if call is not None:
            stored = {
                "id": f"{admin.CALL_PREFIX}{call.id}",
                "received": admin.iso(call.received_at),
                "method": call.method,
                "path": call.path,
                "query_string": call.query_string,
                "delivery_id": call.delivery_id,
                "headers": {k: v for k, v in sorted(call.headers.items()) if not _credential(k, v, secrets)},
                "hidden_headers": sorted(k for k, v in call.headers.items() if _credential(k, v, secrets)),
                "body": pretty_body(call.body, call.headers.get("content-type", "")),
                "body_purged": not call.body,
            }
        return {"stored_call": stored, "ledger": ledger}

    return {**detail, **await store.read(read)}


def _secrets(config: Config, endpoint: str | None) -> tuple[str, ...]:
    found = config.endpoints.get(endpoint or "")
    return found.adapter.secrets if found is not None else ()


def _credential(name: str, value: str, secrets: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(h in lowered for h in _CREDENTIAL_HINTS) or any(s and s in value for s in secrets)


def pretty_body(body: bytes, content_type: str) -> str:
    """JSON indented, a form one field per line, anything else as text."""
    text = body.decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        pass
    if "form" in content_type:
        return "\n".join(f"{k} = {v}" for k, v in parse_qsl(text, keep_blank_values=True))
    return text


async def signups(store: Store, page: int, page_size: int) -> list[dict[str, Any]]:
    flt = EventFilter(endpoint=SIGNUP_ENDPOINT, limit=page_size + 1, offset=(page - 1) * page_size)
    return await admin.list_rows(store, flt)
