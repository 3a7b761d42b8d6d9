"""`import-affiliates`: a provider's own affiliate program, carried over as Partnero partners.

Lemon Squeezy's built-in affiliate program ends with Lemon Squeezy; its merchants need their affiliates
somewhere else. Each active affiliate becomes a Partnero partner (email, name, surname) in the
endpoint's Partnero program. The import is idempotent: a partner whose email Partnero already has is
left alone, so a second run creates nothing. Partnero gives each new partner its own referral key and
links (the affiliates' old links die with the provider). Output names affiliates by their provider id
and partners by their key, never by name or email.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.config import Config, Endpoint
from bridge.partnero import Outcome, PartneroClient, Result
from providers._api import ApiBudgetSpent, ApiError, ApiRateLimited, HistoryUnavailable, HistoryWindow

__all__ = ["HistoryUnavailable", "ImportSummary", "import_affiliates"]


@dataclass
class ImportSummary:
    lines: list[str] = field(default_factory=list)  # one per affiliate: what was done
    created: int = 0
    existing: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    stopped: str | None = None

    def totals(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.most_common())
        return (
            f"created {self.created}, already partners {self.existing}, "
            f"skipped {sum(self.skipped.values())}{f' ({skipped})' if skipped else ''}, failed {self.failed}"
        )


async def import_affiliates(
    config: Config, endpoint: Endpoint, dry_run: bool, on_affiliate: Callable[[], object] | None = None
) -> ImportSummary:
    summary = ImportSummary()
    program = endpoint.partnero
    if not program.api_key:
        summary.stopped = f"endpoint {endpoint.name} has no Partnero api_key: partners cannot be looked up or created"
        return summary
    whole_history = HistoryWindow(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
    try:
        affiliates = await endpoint.adapter.list_affiliates(whole_history)
    except (ApiBudgetSpent, ApiRateLimited, ApiError) as exc:
        summary.stopped = str(exc)
        return summary
    client = PartneroClient(program.base_url, program.api_key, config.delivery.timeout_seconds)
    try:
        for affiliate in affiliates:
            if on_affiliate is not None:
                on_affiliate()
            if not affiliate.active:
                summary.skipped[f"status {affiliate.status}"] += 1
                summary.lines.append(f"{affiliate.source}: skipped (status {affiliate.status}, not active)")
                continue
            if affiliate.email is None:
                summary.skipped["no email"] += 1
                summary.lines.append(f"{affiliate.source}: skipped (no email)")
                continue
            found = await client.find_partner(affiliate.email)
            if isinstance(found, Outcome):
                summary.failed += 1
                summary.lines.append(f"{affiliate.source}: failed to look up ({found.detail})")
                continue
            if found is not None:
                summary.existing += 1
                summary.lines.append(f"{affiliate.source}: already partner {found.get('key')}")
                continue
            if dry_run:
                summary.created += 1
                summary.lines.append(f"{affiliate.source}: would create a partner")
                continue
            body = {"email": affiliate.email, "name": affiliate.name, "surname": affiliate.surname}
            outcome = await client.create_partner({k: v for k, v in body.items() if v})
            if outcome.result is not Result.DELIVERED:
                summary.failed += 1
                summary.lines.append(f"{affiliate.source}: failed ({outcome.detail})")
            elif outcome.detail.startswith("partner already exists"):
                summary.existing += 1
                summary.lines.append(f"{affiliate.source}: already a partner")
            else:
                created = await client.find_partner(affiliate.email)
                key = created.get("key") if isinstance(created, dict) else None
                summary.created += 1
                summary.lines.append(f"{affiliate.source}: created partner {key or '(key not read back)'}")
    finally:
        await client.aclose()
    return summary
