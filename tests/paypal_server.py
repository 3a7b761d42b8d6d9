"""A PayPal-API-shaped server on loopback: OAuth client-credentials tokens and verify-webhook-signature.

It models https://developer.paypal.com/docs/api/webhooks/v1/#verify-webhook-signature as far as the bridge
uses it: `POST /v1/oauth2/token` (HTTP Basic client id and secret, `grant_type=client_credentials`) answers
a bearer token, and `POST /v1/notifications/verify-webhook-signature` (that bearer token) answers
`{"verification_status": "SUCCESS" | "FAILURE"}`. Like PayPal it verifies its own serialisation of the
`webhook_event` object (compact JSON, keys in order): events whose raw body is compact JSON, as PayPal
sends them, verify; it knows the certificates in `certificates` (the test simulator's by default).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from providers.paypal import load_simulator, signed_message, simulator_url
from tests.loopback import LoopbackServer

SIMULATOR_FILE = Path(__file__).resolve().parent / "fixtures" / "paypal" / "simulator.pem"


@dataclass(frozen=True)
class RecordedCall:
    path: str
    authorization: str | None
    json: Any


class PayPalServer:
    """PayPal's OAuth and webhook-verification API in a background thread; `with PayPalServer() as api: ...`."""

    def __init__(
        self,
        client_id: str = "test-client-id",
        client_secret: str = "test-client-secret",
        certificates: dict[str, x509.Certificate] | None = None,
        token_lifetime: int = 32400,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        if certificates is None:
            simulator = load_simulator(str(SIMULATOR_FILE)).certificate
            certificates = {simulator_url(False): simulator, simulator_url(True): simulator}
        self.certificates = certificates
        self._lock = threading.Lock()
        self._tokens: set[str] = set()
        self._calls: list[RecordedCall] = []
        self._failures: list[int] = []
        app = Starlette(
            routes=[
                Route("/v1/oauth2/token", self._token, methods=["POST"]),
                Route("/v1/notifications/verify-webhook-signature", self._verify, methods=["POST"]),
            ]
        )
        self._http = LoopbackServer(app, "PayPal test server")

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API base URL, e.g. http://127.0.0.1:54321 (PayPal's is https://api-m.paypal.com)."""
        return f"http://127.0.0.1:{self._http.port}"

    def start(self, timeout: float = 10.0) -> Self:
        self._http.start(timeout)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._http.stop(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state and controls (test thread) ---------------------------------------------------------------

    @property
    def calls(self) -> list[RecordedCall]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, path: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.path == path]

    def revoke_tokens(self) -> None:
        """Every token issued so far now answers 401, as after PayPal expired or revoked it."""
        with self._lock:
            self._tokens.clear()

    def fail_next(self, count: int, status: int = 503) -> None:
        """The next `count` verification calls answer `status` instead of a verification result."""
        with self._lock:
            self._failures.extend([status] * count)

    # -- HTTP handlers (server thread) ------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        form = (await request.body()).decode()
        self._record(request, form)
        if self._basic_credentials(request) != (self.client_id, self.client_secret):
            return JSONResponse({"error": "invalid_client", "error_description": "Client Authentication failed"}, 401)
        if form != "grant_type=client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        token = "A21AA" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        answer = {"scope": "https://uri.paypal.com/services/applications/webhooks", "access_token": token}
        return JSONResponse(
            {**answer, "token_type": "Bearer", "app_id": "APP-80W284485P519543T", "expires_in": self.token_lifetime}
        )

    async def _verify(self, request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            payload = None
        self._record(request, payload)
        authorization = request.headers.get("authorization", "")
        with self._lock:
            known = authorization.startswith("Bearer ") and authorization[7:] in self._tokens
            status = self._failures.pop(0) if known and self._failures else None
        if not known:
            return JSONResponse(
                {"error": "invalid_token", "error_description": "Token signature verification failed"}, 401
            )
        if status is not None:
            return JSONResponse({"name": "INTERNAL_SERVICE_ERROR"}, status)
        if not isinstance(payload, dict) or not isinstance(payload.get("webhook_event"), dict):
            return JSONResponse({"name": "VALIDATION_ERROR", "message": "Invalid request - see details"}, 400)
        return JSONResponse({"verification_status": "SUCCESS" if self._authentic(payload) else "FAILURE"})

    def _authentic(self, payload: dict[str, Any]) -> bool:
        certificate = self.certificates.get(str(payload.get("cert_url")))
        if certificate is None or payload.get("auth_algo") != "SHA256withRSA":
            return False
        key = certificate.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        body = json.dumps(payload["webhook_event"], separators=(",", ":"), ensure_ascii=False).encode()
        message = signed_message(
            str(payload.get("transmission_id")),
            str(payload.get("transmission_time")),
            str(payload.get("webhook_id")),
            zlib.crc32(body),
        )
        try:
            key.verify(
                base64.b64decode(str(payload.get("transmission_sig"))), message, padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError, binascii.Error):
            return False
        return True

    def _basic_credentials(self, request: Request) -> tuple[str, str] | None:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        except (ValueError, binascii.Error):
            return None
        return user, password

    def _record(self, request: Request, body: Any) -> None:
        with self._lock:
            self._calls.append(RecordedCall(request.url.path, request.headers.get("authorization"), body))
