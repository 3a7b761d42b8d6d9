"""Prometheus metrics: this process's counters, and gauges read from the store when scraped.

Names start with `partnero_bridge_`; labels are few and bounded (endpoint names from the config, closed
sets of outcomes), never a payment, customer or unknown endpoint name. With several processes on
PostgreSQL each serves its own counters; the queue gauges are the same everywhere (they come from the store).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from bridge.partnero import Outcome
from bridge.store.base import Operation, OpStatus, QueueStats

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOKS = Counter(
    "partnero_bridge_webhooks_received",
    "Calls to /webhooks/<endpoint> and /signups by outcome (stored, duplicate, acknowledged, rejected_<reason>).",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
INGEST_SECONDS = Histogram(
    "partnero_bridge_ingest_seconds",
    "Time from request to answer on the ingest path, durable commit included.",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
PARTNERO_REQUESTS = Counter(
    "partnero_bridge_partnero_requests",
    "Delivery attempts to Partnero by operation (create, delete, customer) and outcome.",
    ["operation", "outcome"],
    registry=REGISTRY,
)
PARTNERO_SECONDS = Histogram(
    "partnero_bridge_partnero_request_seconds",
    "Time of one delivery attempt to Partnero, look-up before a resend included.",
    ["operation"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
UNKNOWN_ENDPOINT = "-"
_REJECTIONS = {
    400: "bad_request",
    401: "unauthenticated",
    404: "unknown_endpoint",
    413: "too_large",
    422: "invalid",
    431: "headers_too_large",
}


def record_ingest(endpoint: str, status: int, reason: str, seconds: float) -> None:
    """One answer of the ingest path (a 404 is an unknown endpoint: its name is not a label)."""
    label = endpoint if status != 404 else UNKNOWN_ENDPOINT
    if status < 300:
        first = reason.split(":", 1)[0]
        outcome = first if first in ("stored", "duplicate", "acknowledged") else "accepted"
    elif status == 503:
        outcome = "unavailable"
    else:
        outcome = "rejected_" + _REJECTIONS.get(status, str(status))
    _webhooks(label, outcome).inc()
    _ingest_seconds(label).observe(seconds)


# a child per label set, kept: `labels()` validates and locks on every call, which showed in the ingest
# profile; the label sets are bounded (endpoint names from the config, closed outcome sets)
@functools.cache
def _webhooks(endpoint: str, outcome: str) -> Counter:
    return WEBHOOKS.labels(endpoint, outcome)


@functools.cache
def _ingest_seconds(endpoint: str) -> Histogram:
    return INGEST_SECONDS.labels(endpoint)


def record_attempt(op: Operation, outcome: Outcome, final: OpStatus | None, latency: float | None) -> None:
    """A `Worker.on_finished` hook."""
    PARTNERO_REQUESTS.labels(op.action, outcome.result.value).inc()
    if latency is not None:
        PARTNERO_SECONDS.labels(op.action).observe(latency)


@dataclass(frozen=True)
class StoreGauges:
    """What a scrape reads from the store (and the worker) at that moment."""

    queue: QueueStats
    oldest_pending_age: float | None
    events: Mapping[tuple[str, str], int]
    programs: Sequence[tuple[str, str, bool]]  # (program scope, endpoints, paused)


class _Scrape:
    def __init__(self, gauges: StoreGauges) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        g = self.gauges
        depth = GaugeMetricFamily(
            "partnero_bridge_queue_depth", "Work waiting: operations to deliver, calls to parse.", labels=["queue"]
        )
        depth.add_metric(["operations"], g.queue.pending_operations)
        depth.add_metric(["calls"], g.queue.received_calls)
        yield depth
        yield GaugeMetricFamily(
            "partnero_bridge_oldest_pending_age_seconds",
            "Age of the oldest operation or call still waiting (0 when none).",
            value=g.oldest_pending_age or 0.0,
        )
        dead = GaugeMetricFamily(
            "partnero_bridge_dead_letters",
            "Dead operations and unparsable calls kept for replay.",
            labels=["kind"],
        )
        dead.add_metric(["operation"], g.queue.dead_operations)
        dead.add_metric(["call"], g.queue.failed_calls)
        yield dead
        events = GaugeMetricFamily(
            "partnero_bridge_events", "Events in the store by kind and status.", labels=["kind", "status"]
        )
        for (kind, status), count in sorted(g.events.items()):
            events.add_metric([kind, status], count)
        yield events
        paused = GaugeMetricFamily(
            "partnero_bridge_program_paused",
            "1 while delivery to a Partnero program is paused (by an operator or its circuit breaker).",
            labels=["program", "endpoints"],
        )
        for scope, endpoints, is_paused in g.programs:
            paused.add_metric([scope, endpoints], 1.0 if is_paused else 0.0)
        yield paused


def exposition(gauges: StoreGauges, accept: str | None) -> tuple[bytes, str]:
    """The scrape body in the format the scraper asked for (OpenMetrics or text 0.0.4)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(_Scrape(gauges)), content_type
