"""Which webhook secrets an endpoint may not run with: empty, a placeholder the project shipped, too short.

A secret anyone can read in this repository (the example configuration once fell back to
`change-me-lemonsqueezy`, and to base64 of "change-me-polar-…" for Polar and Dodo) lets anyone sign a
webhook: with a Partnero key set, that is a commission paid on a sale of the sender's choosing. So a
live endpoint with such a secret does not start. In dry run nothing reaches Partnero, so the endpoint
starts with a warning instead (`make run` works from a clean checkout).

An endpoint whose secret variable is unset or empty starts, in dry run and live alike, with a warning
naming it, and refuses every webhook (401): it cannot verify one. Refusing to start would make the
example configuration (five endpoints) unusable for a merchant who uses one of them; the provider's own
failure notices and the warning say what is missing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Sequence

from providers.base import ProviderAdapter, SignatureError, SignedRequest, WebhookRequest

# every placeholder secret config.example.yaml, the README or docs/ ever shipped (git log -p), exactly
SHIPPED_PLACEHOLDERS = frozenset(
    {
        "change-me",
        "change-me-lemonsqueezy",
        "change-me-gumroad-token",
        "change-me-creem",
        "whsec_Y2hhbmdlLW1lLXBvbGFyLWNoYW5nZS1tZS1wb2xhcg==",
        "whsec_Y2hhbmdlLW1lLWRvZG8tY2hhbmdlLW1lLWRvZG8=",
    }
)
# the bridge's own bearer tokens (admin.token, signups.token): what `openssl rand -hex 8` gives at least
MIN_TOKEN_LENGTH = 16
# and anything built like them: the marker in the text, or in the base64 after `whsec_`
_MARKERS = ("change-me", "changeme", "change_me")


def is_placeholder(secret: str) -> bool:
    if secret in SHIPPED_PLACEHOLDERS:
        return True
    texts = [secret.lower()]
    encoded = secret.strip().removeprefix("whsec_")
    with contextlib.suppress(ValueError, binascii.Error):
        texts.append(base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True).decode("latin-1").lower())
    return any(marker in text for marker in _MARKERS for text in texts)


def weakness(secret: str, minimum: int) -> str | None:
    """Why `secret` must not guard a live endpoint, or None when it may."""
    if not secret.strip():
        return "is empty"
    if is_placeholder(secret):
        return "is a placeholder from the example configuration, public to anyone"
    if len(secret) < minimum:
        return f"is shorter than {minimum} characters"
    return None


def secrets_weakness(secrets: Sequence[str], minimum: int) -> str | None:
    """The first weakness among `secrets` (several while rotating), or None."""
    for position, secret in enumerate(secrets):
        reason = weakness(secret, minimum)
        if reason is not None:
            return reason if len(secrets) == 1 else f"#{position + 1} {reason}"
    return None


class Unverifiable(ProviderAdapter):
    """Stands in for a dry-run endpoint's adapter when it has no secret: every webhook is refused."""

    name = "unverifiable"

    def verify(self, request: WebhookRequest, now: float) -> None:
        raise SignatureError("this endpoint has no secret configured, so no webhook can be verified")

    def sign(self, body: bytes, secret: str, now: float) -> SignedRequest:
        raise SignatureError("this endpoint has no secret configured")
