"""httpx's client API over aiohttp's connection pool, for the Partnero client.

Under concurrency httpcore's pool scans every connection on every request (encode/httpx#3215): with 64
requests in flight that scan was most of the worker's time. aiohttp's pool does not. The mapping of
aiohttp's errors onto httpx's is the part that matters for exactly-once: only errors raised *before the
request was written* (no connection, no pool slot in time) become `ConnectError`/`ConnectTimeout`, which
the client may resend without a look-up; everything else becomes a read or protocol error, which it
treats as "maybe sent".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import aiohttp
import httpx
import yarl


@contextlib.contextmanager
def _as_httpx(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientConnectorError as exc:  # no connection was made: nothing was sent
        raise httpx.ConnectError(type(exc).__name__, request=request) from exc
    except aiohttp.ConnectionTimeoutError as exc:  # no pool slot or no connection in time: nothing was sent
        raise httpx.ConnectTimeout(type(exc).__name__, request=request) from exc
    except (aiohttp.SocketTimeoutError, TimeoutError) as exc:  # sent, no answer in time
        raise httpx.ReadTimeout(type(exc).__name__, request=request) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
        raise httpx.ReadError(type(exc).__name__, request=request) from exc
    except aiohttp.ClientError as exc:  # anything else: the request may have reached Partnero
        raise httpx.RemoteProtocolError(type(exc).__name__, request=request) from exc


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session per event loop, `max_connections` wide; answers are read whole (they are small)."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        body = await request.aread()
        with _as_httpx(request):
            async with self._session_for_loop().request(
                request.method,
                # already encoded by httpx: yarl must not decode `%2E` and fold `/..` (a key of dots)
                yarl.URL(str(request.url), encoded=True),
                headers=[(k, v) for k, v in request.headers.multi_items() if k.lower() != "accept-encoding"],
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                content = await response.read()
                return httpx.Response(
                    response.status,
                    headers=[
                        (k.decode("latin-1"), v.decode("latin-1"))
                        for k, v in response.raw_headers
                        if k.lower() not in (b"content-encoding", b"transfer-encoding", b"content-length")
                    ],
                    content=content,
                    request=request,
                    extensions={"reason_phrase": (response.reason or "").encode("latin-1")},
                )

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing left to close
                await self._session.close()
        self._session = None
