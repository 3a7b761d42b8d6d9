"""HTTP limits for a public webhook URL: header size, arrival time, idle connections, a connection cap.

uvicorn has settings for the keep-alive timeout and a concurrency cap (`limit_concurrency`, answered
with a clean 503); it has none for the size of a request's headers or for how long a client may take
to send them and the body. `guarded_protocol` adds those to uvicorn's httptools protocol:

- headers over `max_header_bytes` in total are answered 431 and the connection closed, before the
  application sees anything;
- a request whose headers and body have not all arrived `request_timeout_seconds` after its first byte
  (or after the connection opened) is closed: 408 when the headers never completed, a plain close when
  the body stalled (the handler then sees a disconnect and stores nothing);
- when the connection count reaches the cap, the connection idle for longest (waiting for a request or
  for the rest of one's headers) is closed to make room, so idle sockets cannot use up the process's
  file descriptors and lock out genuine deliveries;
- `/healthz` is never refused by the cap: a probe must tell a busy bridge from a dead one.

Log lines these limits cause (and uvicorn's and asyncio's own, e.g. accept errors when file
descriptors run out) pass through `RateLimitFilter`, so an attack cannot flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bridge.config import ServerSettings

log = logging.getLogger("bridge.limits")

HEALTH_PATH = b"/healthz"
# file descriptors kept free for the store, the outbound pool and the log, whatever the cap says
_RESERVED_DESCRIPTORS = 32
_MAX_BACKLOG = 2048
CONSOLE_MAX_CONNECTIONS = 32


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 65_536
    request_timeout_seconds: float = 30.0
    keep_alive_seconds: float = 5.0
    max_connections: int = 1000


def http_limits(server: ServerSettings) -> HttpLimits:
    return HttpLimits(
        max_header_bytes=server.max_header_bytes,
        request_timeout_seconds=server.request_timeout_seconds,
        keep_alive_seconds=server.keep_alive_seconds,
        max_connections=server.max_connections,
    )


def console_limits(limits: HttpLimits) -> HttpLimits:
    """The console's own listener (`admin.host/port`): the same limits, with room for a few operators."""
    return HttpLimits(
        max_header_bytes=limits.max_header_bytes,
        request_timeout_seconds=limits.request_timeout_seconds,
        keep_alive_seconds=limits.keep_alive_seconds,
        max_connections=min(limits.max_connections, CONSOLE_MAX_CONNECTIONS),
    )


def descriptor_budget(requested: int, reserved: int = 0) -> tuple[int, int]:
    """(connection cap, listen backlog) that fit the file descriptors this process may open (`ulimit -n`).

    asyncio accepts up to a backlog's worth of connections per loop turn, and a protocol only sees its
    connection (and can close an idle one) a few turns later; so the cap, a few backlogs in flight and a
    reserve for the store and the outbound pool must fit under the limit. Otherwise accept() fails with
    EMFILE and the loop stops accepting for a second, health probes included. `reserved` is what another
    listener of this process (the console's) may hold.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested, _MAX_BACKLOG
    backlog = min(_MAX_BACKLOG, max(4, soft // 16))
    return max(1, min(requested, soft - 4 * backlog - _RESERVED_DESCRIPTORS - reserved)), backlog


def descriptors_held(settings: dict[str, Any]) -> int:
    """The most file descriptors a listener made with `uvicorn_settings` may hold (see descriptor_budget)."""
    return int(settings["limit_concurrency"]) + 4 * int(settings["backlog"])


def uvicorn_settings(limits: HttpLimits, reserved: int = 0) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` that apply `limits`."""
    cap, backlog = descriptor_budget(limits.max_connections, reserved)
    if cap < limits.max_connections:
        log.warning(
            "server.max_connections lowered from %s to %s: the process may open only %s files (ulimit -n)",
            limits.max_connections,
            cap,
            resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        )
    return {
        "http": guarded_protocol(limits),
        # uvicorn refuses a request when the open connections, its own included, reach this number;
        # `max_connections` promises that many served at once, so the refusal starts one above it
        "limit_concurrency": cap + 1,
        "backlog": backlog,
        # uvicorn takes whole seconds here; anything shorter than a second is one second
        "timeout_keep_alive": max(1, round(limits.keep_alive_seconds)),
    }


def guarded_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    class GuardedProtocol(_GuardedProtocol):
        pass

    GuardedProtocol.limits = limits
    return GuardedProtocol


async def _headers_too_large(scope: Any, receive: Any, send: Any) -> None:
    await _plain_response(send, 431, b"request headers too large")


async def _plain_response(send: Any, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _GuardedProtocol(HttpToolsProtocol):
    limits: HttpLimits = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._arrival_timer: asyncio.TimerHandle | None = None
        self._arrival_started: float | None = None  # loop time of the current request's first byte
        self._reading_headers = True
        self._header_bytes = 0
        self._idle_since = time.monotonic()

    # --- connection lifecycle ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_arrival_clock()
        if len(self.connections) >= (self.limit_concurrency or len(self.connections) + 1):
            self._evict_longest_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_arrival_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._arrival_started is None:
            # the first bytes of the next request on a kept-alive connection
            self._start_arrival_clock()
        if self._reading_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._reading_headers and self._header_bytes > self.limits.max_header_bytes and self.parser is not None:
            # headers still incomplete and already over the cap: answer now rather than buffer more
            self._refuse(431, b"request headers too large")

    # --- parser callbacks ----------------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        app, cap = self.app, self.limit_concurrency
        if size > self.limits.max_header_bytes:
            self.app = _headers_too_large
        if httptools.parse_url(self.url).path == HEALTH_PATH:
            self.limit_concurrency = None
        try:
            super().on_headers_complete()
        finally:
            self.app, self.limit_concurrency = app, cap

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # the whole request arrived in time; the next one starts its own clock with its first byte
        self._arrival_started = None
        self._reading_headers = True
        self._header_bytes = 0

    def on_response_complete(self) -> None:
        self._idle_since = time.monotonic()
        super().on_response_complete()

    # --- the limits ----------------------------------------------------------------------------------

    def _start_arrival_clock(self) -> None:
        # one timer serves the connection's requests one after another: it is not cancelled when a request
        # completes in time, and when it fires for a later request it waits out that one's remaining time.
        # Arming and cancelling a timer for every request showed in the ingest profile.
        self._arrival_started = self.loop.time()
        if self._arrival_timer is None:
            self._arrival_timer = self.loop.call_later(self.limits.request_timeout_seconds, self._arrival_timed_out)

    def _cancel_arrival_timer(self) -> None:
        self._arrival_started = None
        if self._arrival_timer is not None:
            self._arrival_timer.cancel()
            self._arrival_timer = None

    def _arrival_timed_out(self) -> None:
        self._arrival_timer = None
        if self._arrival_started is None or self.transport.is_closing():
            return  # no request is arriving now
        remaining = self._arrival_started + self.limits.request_timeout_seconds - self.loop.time()
        if remaining > 0:  # a later request than the one the timer was set for: it has time left
            self._arrival_timer = self.loop.call_later(remaining, self._arrival_timed_out)
            return
        log.info(
            "closed a connection: its request did not arrive within %s s (%s)",
            self.limits.request_timeout_seconds,
            "headers" if self._reading_headers else "body",
        )
        if self._reading_headers:
            self._refuse(408, b"request not received in time")
        else:
            # the handler is reading the body: closing makes it see a disconnect, and it stores nothing
            self.transport.close()

    def _refuse(self, status: int, reason: bytes) -> None:
        if self._in_request():
            self.transport.close()
            return
        phrase = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\nx-content-type-options: nosniff\r\n\r\n%s" % (status, phrase, len(reason), reason)
        )
        self.transport.close()

    def _in_request(self) -> bool:
        """A request's headers arrived and its response is not finished."""
        return self.cycle is not None and not self.cycle.response_complete

    def _evict_longest_idle(self) -> None:
        idle = [
            c
            for c in self.connections
            if c is not self and isinstance(c, _GuardedProtocol) and not c._in_request() and not c._closing()
        ]
        if idle:
            oldest = min(idle, key=lambda c: c._idle_since)
            log.info("closed the connection idle for longest: %s connections open", len(self.connections))
            oldest.transport.close()

    def _closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()


class RateLimitFilter(logging.Filter):
    """Lets through `burst` records per message per `period` seconds, then one summary when it resumes."""

    def __init__(self, burst: int = 5, period: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        self._windows: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        started, count = self._windows.get(key, (now, 0))
        if now - started >= self.period:
            suppressed = count - self.burst
            started, count = now, 0
            if suppressed > 0:
                record.msg = f"{record.msg} ({suppressed} similar lines suppressed in the last {self.period:.0f} s)"
        count += 1
        if len(self._windows) > 1000:
            self._windows.clear()
        self._windows[key] = (started, count)
        return count <= self.burst


_LIMITED_LOGGERS = ("asyncio", "uvicorn.error", "bridge.limits")


def limit_server_logs(burst: int = 5, period: float = 60.0) -> RateLimitFilter:
    """Rate-limit the loggers an attacker can make speak: accept errors, refused and timed-out requests."""
    limiter = RateLimitFilter(burst, period)
    for name in _LIMITED_LOGGERS:
        logger = logging.getLogger(name)
        for existing in [f for f in logger.filters if isinstance(f, RateLimitFilter)]:
            logger.removeFilter(existing)
        logger.addFilter(limiter)
    return limiter
